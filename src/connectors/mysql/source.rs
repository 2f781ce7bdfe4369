//! `MysqlCdcSource`: the capture loop of a `mysql-cdc` source, from the reader of this folder
//! to Freshet's epochs.
//!
//! ```text
//!  start ─▶ map each table (describe + capture; a mismatch fails that table only)
//!        ─▶ tables never snapshotted: one consistent snapshot at position S, in chunks, the
//!           first chunk also deleting rows a crashed earlier attempt left; the last commit
//!           records "snapshot ended at S" per table (and S as the source position if new)
//!        ─▶ stream from the committed position P: each upstream transaction is one write set
//!           holding its rows and its end position; a table snapshotted at S > P ignores the
//!           transactions that end at or before S (its snapshot has them already)
//! ```
//! Exactly once: rows and the position they lead to commit in one epoch, so after kill -9 the
//! source resumes at the position of the last committed epoch, replaying nothing and missing
//! nothing. Several write sets are kept in flight ([`CommitPipeline`]) so a busy source shares
//! fsyncs with group commit instead of waiting for each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::SnapshotReader;
use super::{capture, describe_table, BinlogItem, BinlogPosition, BinlogReader, CapturedTable, MysqlConfig};
use crate::catalog::Table;
use crate::connectors::runtime::{note_applied, CommitPipeline, SourceState, SourceTask};
use crate::dataflow::changes::Changes;
use crate::error::Result;

/// Rows per snapshot chunk and per snapshot commit.
const SNAPSHOT_CHUNK: usize = 20_000;
/// Write sets in flight while streaming.
const MAX_IN_FLIGHT: usize = 64;
/// A position with nothing captured is committed at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What is stored per table (`keys::source_table_key`).
#[derive(Serialize, Deserialize)]
struct TableState {
    /// The position the table's snapshot was consistent with.
    snapshot_end: BinlogPosition,
}

/// The driver the runtime runs for `mysql-cdc` sources.
pub fn driver(task: Arc<SourceTask>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> {
    Box::pin(async move { run(&task).await })
}

/// Whether position `a` is after `b` (same server, so file names order as their numbers).
fn after(a: &BinlogPosition, b: &BinlogPosition) -> bool {
    (&a.file, a.pos) > (&b.file, b.pos)
}

fn position_text(p: &BinlogPosition) -> String {
    match &p.gtid {
        Some(g) => format!("{}:{} (gtid {g})", p.file, p.pos),
        None => format!("{}:{}", p.file, p.pos),
    }
}

/// The declared columns of a Freshet table, as `capture` takes them.
fn declared(t: &Table) -> (Vec<(String, crate::catalog::SqlType, bool)>, Vec<String>) {
    let columns = t
        .def
        .upstream_columns()
        .map(|c| (c.name.clone(), c.ty.clone(), !c.not_null))
        .collect();
    let pk = t
        .def
        .primary_key
        .iter()
        .map(|i| t.def.columns[*i].name.clone())
        .collect();
    (columns, pk)
}

async fn run(task: &SourceTask) -> Result<()> {
    let cfg = MysqlConfig::from_options(&task.source.options)?;
    let mut captured: Vec<(Arc<Table>, CapturedTable)> = Vec::new();
    for t in &task.tables {
        let Some(src) = &t.def.source else { continue };
        let upstream = describe_table(&cfg, &src.external).await?;
        let (columns, pk) = declared(t);
        match capture(&columns, &pk, &upstream) {
            Ok(c) => captured.push((t.clone(), c)),
            Err(e) => task.table_failed(t.def.id, format!("upstream table no longer matches: {e}")),
        }
    }
    if captured.is_empty() {
        task.status(|s| s.state = SourceState::Failed);
        task.stopped().await;
        return Ok(());
    }
    let mut position: Option<BinlogPosition> = task.stored_position()?;
    let mut skip_until: HashMap<usize, BinlogPosition> = HashMap::new();
    let mut pending = Vec::new();
    for (i, (t, _)) in captured.iter().enumerate() {
        match task.stored_table_state::<TableState>(t.def.id)? {
            None => pending.push(i),
            Some(s) => {
                if position.as_ref().is_some_and(|p| after(&s.snapshot_end, p)) {
                    skip_until.insert(i, s.snapshot_end);
                }
            }
        }
    }
    if !pending.is_empty() {
        let Some(end) = snapshot(task, &cfg, &captured, &pending, position.is_none()).await? else {
            return Ok(());
        };
        match &position {
            None => position = Some(end),
            Some(_) => {
                for i in &pending {
                    skip_until.insert(*i, end.clone());
                }
            }
        }
    }
    let from = position.expect("set by the snapshot");
    stream(task, &cfg, captured, from, skip_until).await
}

/// Snapshots the `pending` tables; the position they are consistent with, or None if the task
/// was asked to stop.
async fn snapshot(
    task: &SourceTask,
    cfg: &MysqlConfig,
    captured: &[(Arc<Table>, CapturedTable)],
    pending: &[usize],
    set_position: bool,
) -> Result<Option<BinlogPosition>> {
    let ids: Vec<u32> = pending.iter().map(|i| captured[*i].0.def.id).collect();
    task.status(|s| {
        s.state = SourceState::Snapshotting;
        s.reason = None;
        for id in &ids {
            if let Some(t) = s.tables.get_mut(id) {
                t.state = "snapshotting".into();
            }
        }
    });
    let mut reader = SnapshotReader::open(cfg, pending.iter().map(|i| captured[*i].1.clone()).collect()).await?;
    let end = reader.position().clone();
    tracing::info!(source = %task.source.qualified_name(), tables = pending.len(), position = %position_text(&end), "snapshot started");
    let mut pipeline = CommitPipeline::new(task.coordinator.clone(), 4);
    let mut writes = task.writes();
    for i in pending {
        task.add_truncate(&mut writes, &captured[*i].0)?;
    }
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        if task.stopping() {
            pipeline.drain().await?;
            return Ok(None);
        }
        let Some((j, batch)) = reader.next_chunk(SNAPSHOT_CHUNK).await? else {
            break;
        };
        let table = &captured[pending[j]].0;
        task.add_changes(&mut writes, table, &Changes::uniform(batch, 1)?)?;
        if writes.row_count() >= SNAPSHOT_CHUNK {
            pipeline
                .push(std::mem::replace(&mut writes, task.writes()), None)
                .await?;
        }
        let progress = reader.progress();
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        task.status(|s| {
            for (k, p) in progress.iter().enumerate() {
                if let Some(t) = s.tables.get_mut(&ids[k]) {
                    t.snapshot_rows = p.rows_done;
                    t.snapshot_rows_estimated = p.rows_estimated;
                    t.snapshot_rows_per_second = p.rows_done as f64 / secs;
                }
            }
        });
        if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            for p in &progress {
                tracing::info!(source = %task.source.qualified_name(), table = %p.table, rows = p.rows_done,
                    estimated = p.rows_estimated, rows_per_second = (p.rows_done as f64 / secs) as u64, "snapshot progress");
            }
        }
    }
    for id in &ids {
        task.set_table_state(
            &mut writes,
            *id,
            &TableState {
                snapshot_end: end.clone(),
            },
        );
    }
    if set_position {
        task.set_position(&mut writes, &end);
    }
    pipeline.push(writes, None).await?;
    pipeline.drain().await?;
    let rows: u64 = reader.progress().iter().map(|p| p.rows_done).sum();
    tracing::info!(source = %task.source.qualified_name(), rows, seconds = started.elapsed().as_secs_f64(), "snapshot done");
    Ok(Some(end))
}

/// Aborts the binlog reader task when the stream loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Streams the binlog from `from` until the task is asked to stop.
async fn stream(
    task: &SourceTask,
    cfg: &MysqlConfig,
    mut captured: Vec<(Arc<Table>, CapturedTable)>,
    from: BinlogPosition,
    skip_until: HashMap<usize, BinlogPosition>,
) -> Result<()> {
    let mut reader = BinlogReader::connect(cfg, captured.iter().map(|c| c.1.clone()).collect(), from.clone()).await?;
    // The reader runs ahead in its own task (its next() is not cancel-safe); items come over
    // a bounded channel, so the loop below can also finish commits while upstream is quiet.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<BinlogItem>>(256);
    let read_ahead = tokio::spawn(async move {
        loop {
            let item = reader.next().await;
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    let _stop_reader = AbortOnDrop(read_ahead);
    let ids: Vec<u32> = captured.iter().map(|c| c.0.def.id).collect();
    task.status(|s| {
        s.state = SourceState::Streaming;
        s.reason = None;
        if s.position.is_empty() {
            s.position = position_text(&from);
        }
        for id in &ids {
            if let Some(t) = s.tables.get_mut(id) {
                if t.state != "failed" {
                    t.state = "streaming".into();
                }
            }
        }
    });
    tracing::info!(source = %task.source.qualified_name(), position = %position_text(&from), "streaming");
    let mut pipeline = CommitPipeline::new(task.coordinator.clone(), MAX_IN_FLIGHT);
    let mut last_position_commit = Instant::now();
    let source = task.source.id;
    loop {
        let in_flight = pipeline.in_flight() > 0;
        let item = tokio::select! {
            biased;
            _ = task.stopped() => return pipeline.drain().await,
            r = pipeline.wait_oldest(), if in_flight => {
                r?;
                continue;
            }
            item = rx.recv() => item,
        };
        let item = match item {
            Some(Ok(item)) => item,
            Some(Err(e)) => {
                pipeline.drain().await?;
                return Err(e);
            }
            None => {
                pipeline.drain().await?;
                return Err(crate::error::Error::internal("the binlog reader stopped"));
            }
        };
        match item {
            BinlogItem::Transaction {
                changes,
                end,
                commit_time_micros,
            } => {
                let mut writes = task.writes();
                for (i, c) in changes {
                    if skip_until.get(&i).is_some_and(|s| !after(&end, s)) {
                        continue;
                    }
                    task.add_changes(&mut writes, &captured[i].0, &c)?;
                }
                task.set_position(&mut writes, &end);
                let board = task.board.clone();
                let text = position_text(&end);
                let on_commit = Box::new(move || note_applied(&board, source, commit_time_micros, text));
                pipeline.push(writes, Some(on_commit)).await?;
                last_position_commit = Instant::now();
            }
            BinlogItem::Progress {
                end,
                commit_time_micros: _,
            } => {
                if last_position_commit.elapsed() >= PROGRESS_EVERY {
                    let mut writes = task.writes();
                    task.set_position(&mut writes, &end);
                    let board = task.board.clone();
                    let text = position_text(&end);
                    let on_commit = Box::new(move || board.update(source, |s| s.position = text));
                    pipeline.push(writes, Some(on_commit)).await?;
                    last_position_commit = Instant::now();
                }
            }
            BinlogItem::SchemaChange {
                table,
                still_mappable,
                reason,
                end,
            } => {
                match still_mappable {
                    Some(mapping) => {
                        tracing::info!(source = %task.source.qualified_name(), table = %captured[table].0.def.name,
                            %reason, "upstream schema change; the table goes on");
                        captured[table].1 = mapping;
                    }
                    None => task.table_failed(captured[table].0.def.id, reason),
                }
                let mut writes = task.writes();
                task.set_position(&mut writes, &end);
                pipeline.push(writes, None).await?;
            }
        }
    }
}
