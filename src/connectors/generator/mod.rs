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

use crate::error::{Error, Result, SqlState};

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
