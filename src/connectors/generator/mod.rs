//! Generator sources: data made up inside Freshet, for benchmarks, demos and tests.
//!
//! - [`nexmark`]: the person / auction / bid streams of the Nexmark benchmark.
//! - [`datagen`]: rows for the columns a table declares (sequences, random values, event time).
//!
//! A generator is deterministic in its position (the number of the next row or event), so it
//! commits that position with each batch exactly as a CDC source commits its upstream
//! position: after a crash it goes on where the last committed epoch ended.

pub mod datagen;
pub mod nexmark;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::connectors::runtime::{CommitPipeline, SourceState, SourceTask};
use crate::dataflow::coordinator::TxnWrites;
use crate::error::{Error, Result, SqlState};

/// Commits a generator has in flight, at most: one batch maintained while the next is made.
/// More only queue up (with four, up to 16 MiB of Nexmark bids waiting: 10-20 MiB more peak
/// memory on q7 and q8, no faster).
pub(crate) const IN_FLIGHT: usize = 2;

/// An unsigned integer option (None when absent).
pub(crate) fn option_u64(opts: &BTreeMap<String, String>, key: &str) -> Result<Option<u64>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            Error::user(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("invalid value for option '{key}': '{v}' (expected a non-negative integer)"),
            )
        }),
    }
}

/// Paces a generator at a rate (rows or events per second), in batches of about 10 ms.
pub(crate) struct Pacer {
    rate: Option<u64>,
    started: Instant,
    done: u64,
}

impl Pacer {
    pub(crate) fn new(rate: Option<u64>) -> Pacer {
        Pacer {
            rate,
            started: Instant::now(),
            done: 0,
        }
    }

    /// How many to generate next, at most `max`.
    pub(crate) fn batch(&self, max: u64) -> u64 {
        match self.rate {
            None => max,
            Some(r) => (r / 100).clamp(1, max),
        }
    }

    /// Waits until `n` more are due.
    pub(crate) async fn wait(&mut self, n: u64) {
        if let Some(r) = self.rate {
            let due = self.started + Duration::from_secs_f64(self.done as f64 / r as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        self.done += n;
    }
}

/// How a generator's items are produced: at most `batch` per commit, `rate` per second (None:
/// as fast as possible), `total` in all (None: no end); `unit` names them in the status.
pub(crate) struct Batches {
    pub rate: Option<u64>,
    pub batch: u64,
    pub total: Option<u64>,
    pub unit: &'static str,
}

/// The loop every generator runs once its tables are ready: paced batches from item `next` on,
/// each written by `fill(writes, first, count)` and committed with `position(next item)`, until
/// the total (then it waits to be stopped) or a stop.
pub(crate) async fn run_batches<P: Serialize>(
    task: &SourceTask,
    plan: Batches,
    mut next: u64,
    mut fill: impl FnMut(&mut TxnWrites, u64, u64) -> Result<()>,
    position: impl Fn(u64) -> P,
) -> Result<()> {
    task.status(|s| {
        s.state = SourceState::Streaming;
        s.reason = None;
        for t in s.tables.values_mut() {
            t.state = "streaming".into();
        }
    });
    let mut pipeline = CommitPipeline::new(task.coordinator.clone(), IN_FLIGHT);
    let Batches {
        rate,
        batch,
        total,
        unit,
    } = plan;
    let mut pacer = Pacer::new(rate);
    let source = task.source.id;
    loop {
        let remaining = total.map(|t| t.saturating_sub(next)).unwrap_or(u64::MAX);
        if remaining == 0 {
            pipeline.drain().await?;
            task.status(|s| s.reason = Some(format!("all {next} {unit} generated")));
            task.stopped().await;
            return Ok(());
        }
        let n = pacer.batch(batch).min(remaining);
        tokio::select! {
            _ = pacer.wait(n) => {}
            _ = task.stopped() => return pipeline.drain().await,
        }
        let mut writes = task.writes();
        fill(&mut writes, next, n)?;
        next += n;
        task.set_position(&mut writes, &position(next));
        let board = task.board.clone();
        let on_commit = Box::new(move || {
            board.update(source, |s| {
                s.position = format!("{unit} {next}");
                s.applied_micros = Some(crate::dataflow::coordinator::now_micros());
            })
        });
        pipeline.push(writes, Some(on_commit)).await?;
    }
}
