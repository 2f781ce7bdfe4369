//! The capture loop of a `postgres-cdc` source, from the replication stream to Freshet's epochs.
//!
//! ```text
//!  start ─▶ describe + map each table (a mismatch fails that table only)
//!        ─▶ publication: created, or the captured tables added to it (publication.create.enable)
//!        ─▶ never started: (re)create the slot; its exported snapshot is read in chunks, the
//!           last chunk committing "snapshot ended at S" per table and S as the position
//!        ─▶ tables added to a running source: a TEMPORARY slot exports a snapshot at S'; those
//!           tables ignore the stream's transactions that end at or before S'
//!        ─▶ stream from the committed LSN: each upstream transaction is one write set holding
//!           its rows and its end LSN; the slot's confirmed flush LSN is reported only up to
//!           what Freshet has committed
//! ```
//! Exactly once: rows and the LSN they lead to commit in one epoch, and PostgreSQL is told that
//! LSN is flushed only after that epoch is durable, so the slot keeps all Freshet has not
//! applied and a restart resumes at the last committed LSN. While no captured table changes,
//! the keepalives' WAL position is committed (at most once a second) and confirmed, so the slot
//! does not hold WAL back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::ArrayRef;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::config::PostgresConfig;
use super::pgoutput::{self, OldTuple, PgOutput, Relation, Tuple, TupleValue};
use super::replication::{Lsn, ReplicationConnection, StreamEvent};
use super::schema::{capture, check_replica_identity, describe_on, Captured};
use super::snapshot::SnapshotReader;
use super::upstream_error;
use super::values::TextRows;
use crate::connectors::runtime::{note_applied, CommitPipeline, SourceState, SourceTask};
use crate::error::{Error, Result, SqlState};

/// Rows per snapshot chunk and per snapshot commit.
const SNAPSHOT_CHUNK: usize = 20_000;
/// Write sets in flight while streaming.
const MAX_IN_FLIGHT: usize = 64;
/// A position with nothing captured is committed at most this often; status updates go out
/// as often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The source's resume position (`keys::source_position_key`).
#[derive(Serialize, Deserialize)]
struct Position {
    /// START_REPLICATION from here: every transaction ending at or before it is applied.
    lsn: Lsn,
}

/// What is stored per table (`keys::source_table_key`).
#[derive(Serialize, Deserialize)]
struct TableState {
    /// The LSN the table's snapshot was consistent with.
    snapshot_end: Lsn,
}

/// The driver the runtime runs for `postgres-cdc` sources.
pub fn driver(task: Arc<SourceTask>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> {
    Box::pin(async move { run(&task).await })
}

async fn run(task: &SourceTask) -> Result<()> {
    let cfg = PostgresConfig::from_options(&task.source.options)?;
    let slot = cfg.slot_for(&task.source);
    let client = cfg.connect().await?;
    let mut captured: Vec<Captured> = Vec::new();
    for t in &task.tables {
        let Some(src) = &t.def.source else { continue };
        let mapped = match describe_on(&cfg, &client, &src.external).await {
            Ok(u) => check_replica_identity(&cfg, &u).and_then(|_| capture(t, &u)),
            Err(e @ Error::External { .. }) => return Err(e),
            Err(e) => Err(e),
        };
        match mapped {
            Ok(c) => captured.push(c),
            Err(e) => task.table_failed(t.def.id, format!("upstream table cannot be captured: {e}")),
        }
    }
    if captured.is_empty() {
        task.status(|s| s.state = SourceState::Failed);
        task.stopped().await;
        return Ok(());
    }
    ensure_publication(&cfg, &client, &captured).await?;
    let mut position: Option<Position> = task.stored_position()?;
    let mut skip_until: HashMap<usize, Lsn> = HashMap::new();
    let mut pending = Vec::new();
    for (i, c) in captured.iter().enumerate() {
        match task.stored_table_state::<TableState>(c.table.def.id)? {
            None => pending.push(i),
            Some(s) => {
                if position.as_ref().is_some_and(|p| s.snapshot_end > p.lsn) {
                    skip_until.insert(i, s.snapshot_end);
                }
            }
        }
    }
    if !pending.is_empty() {
        let fresh = position.is_none();
        let mut repl = ReplicationConnection::connect(&cfg.replication_params()).await?;
        let created = if fresh {
            // Nothing was ever applied from the slot: start it over, so that its exported
            // snapshot is the one the tables are read at.
            if slot_exists(&cfg, &client, &slot).await? {
                tracing::info!(source = %task.source.qualified_name(), %slot, "dropping the slot of an unfinished snapshot");
                repl.drop_slot(&slot).await?;
            }
            repl.create_slot(&slot, false).await?
        } else {
            let temp = format!("freshet_snap_{}_{}", task.source.id, rand::random::<u32>());
            repl.create_slot(&temp, true).await?
        };
        let tables: Vec<Captured> = pending.iter().map(|i| captured[*i].clone()).collect();
        let reader = SnapshotReader::open(&cfg, &created.snapshot_name, tables.clone()).await?;
        // The snapshot is imported: the exporting connection (and a temporary slot) may go.
        drop(repl);
        let end = created.consistent_point;
        if !snapshot(task, reader, &tables, end, fresh).await? {
            return Ok(());
        }
        match &position {
            None => position = Some(Position { lsn: end }),
            Some(_) => {
                for i in &pending {
                    skip_until.insert(*i, end);
                }
            }
        }
    }
    let from = position.expect("set by the snapshot").lsn;
    drop(client);
    stream(task, &cfg, &slot, captured, from, skip_until).await
}

/// Drops the replication slot of a dropped source when its `slot.drop.on.drop` asks for it.
pub async fn drop_slot_if_asked(source: &crate::catalog::SourceDef) {
    let Ok(cfg) = PostgresConfig::from_options(&source.options) else {
        return;
    };
    if !cfg.slot_drop_on_drop {
        return;
    }
    let slot = cfg.slot_for(source);
    let result = async {
        let mut repl = ReplicationConnection::connect(&cfg.replication_params()).await?;
        repl.drop_slot(&slot).await
    }
    .await;
    match result {
        Ok(()) => tracing::info!(source = %source.qualified_name(), %slot, "replication slot dropped"),
        Err(e) if e.code() == SqlState::UNDEFINED_OBJECT => {}
        Err(e) => {
            tracing::warn!(source = %source.qualified_name(), %slot, error = %e, "could not drop the replication slot")
        }
    }
}

async fn slot_exists(cfg: &PostgresConfig, client: &Client, slot: &str) -> Result<bool> {
    Ok(!client
        .query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(|e| upstream_error(cfg, "look up the slot", e))?
        .is_empty())
}

/// Makes sure the publication publishes every captured table: creates it, or adds the tables
/// it lacks, when `publication.create.enable` allows; otherwise a missing table is an error.
async fn ensure_publication(cfg: &PostgresConfig, client: &Client, captured: &[Captured]) -> Result<()> {
    let err = |e| upstream_error(cfg, "publication", e);
    let publication = super::quote_ident(&cfg.publication);
    let exists = !client
        .query("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&cfg.publication])
        .await
        .map_err(err)?
        .is_empty();
    let names: Vec<String> = captured.iter().map(|c| c.upstream.quoted()).collect();
    if !exists {
        if !cfg.publication_create {
            return Err(Error::user(
                SqlState::UNDEFINED_OBJECT,
                format!(
                    "postgres-cdc {}: publication \"{}\" does not exist",
                    cfg.address(),
                    cfg.publication
                ),
            ));
        }
        let sql = format!("CREATE PUBLICATION {publication} FOR TABLE {}", names.join(", "));
        return client.batch_execute(&sql).await.map_err(err);
    }
    let members: Vec<(String, String)> = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&cfg.publication],
        )
        .await
        .map_err(err)?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for c in captured {
        if members
            .iter()
            .any(|(s, t)| *s == c.upstream.schema && *t == c.upstream.name)
        {
            continue;
        }
        if !cfg.publication_create {
            return Err(Error::user(
                SqlState("55000"),
                format!(
                    "postgres-cdc {}: table {} is not in publication \"{}\" (and publication.create.enable is false)",
                    cfg.address(),
                    c.upstream.qualified(),
                    cfg.publication
                ),
            ));
        }
        let sql = format!("ALTER PUBLICATION {publication} ADD TABLE {}", c.upstream.quoted());
        client.batch_execute(&sql).await.map_err(err)?;
    }
    Ok(())
}

/// Reads a snapshot into the tables, in chunks; the last commit records the snapshot's LSN per
/// table (and as the source's position when `set_position`). False if asked to stop first.
async fn snapshot(
    task: &SourceTask,
    mut reader: SnapshotReader,
    tables: &[Captured],
    end: Lsn,
    set_position: bool,
) -> Result<bool> {
    let ids: Vec<u32> = tables.iter().map(|c| c.table.def.id).collect();
    task.status(|s| {
        s.state = SourceState::Snapshotting;
        s.reason = None;
        for id in &ids {
            if let Some(t) = s.tables.get_mut(id) {
                t.state = "snapshotting".into();
            }
        }
    });
    tracing::info!(source = %task.source.qualified_name(), tables = ids.len(), lsn = %end, "snapshot started");
    let mut pipeline = CommitPipeline::new(task.coordinator.clone(), 4);
    let mut writes = task.writes();
    for c in tables {
        task.add_truncate(&mut writes, &c.table)?;
    }
    let started = Instant::now();
    loop {
        if task.stopping() {
            pipeline.drain().await?;
            return Ok(false);
        }
        let Some((j, changes)) = reader.next_chunk(SNAPSHOT_CHUNK).await? else {
            break;
        };
        task.add_changes(&mut writes, &tables[j].table, &changes)?;
        if writes.row_count() >= SNAPSHOT_CHUNK {
            pipeline
                .push(std::mem::replace(&mut writes, task.writes()), None)
                .await?;
        }
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let progress = reader.progress().to_vec();
        task.status(|s| {
            for (k, p) in progress.iter().enumerate() {
                if let Some(t) = s.tables.get_mut(&ids[k]) {
                    t.snapshot_rows = p.rows_done;
                    t.snapshot_rows_estimated = p.rows_estimated.max(p.rows_done);
                    t.snapshot_rows_per_second = p.rows_done as f64 / secs;
                }
            }
        });
    }
    for id in &ids {
        task.set_table_state(&mut writes, *id, &TableState { snapshot_end: end });
    }
    if set_position {
        task.set_position(&mut writes, &Position { lsn: end });
    }
    pipeline.push(writes, None).await?;
    pipeline.drain().await?;
    let rows: u64 = reader.progress().iter().map(|p| p.rows_done).sum();
    tracing::info!(source = %task.source.qualified_name(), rows, seconds = started.elapsed().as_secs_f64(), "snapshot done");
    Ok(true)
}

/// How a relation's tuples map onto a captured table.
struct RelationMap {
    /// Index into the captured tables.
    table: usize,
    /// For each Freshet column, the index of the relation column holding it.
    columns: Vec<usize>,
}

/// The changes of the upstream transaction being received.
#[derive(Default)]
struct OpenTxn {
    /// Per captured table: its rows in order, and whether a TRUNCATE came first.
    tables: HashMap<usize, (TextRows, bool)>,
}

/// Aborts the reader task when the stream loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Stream<'a> {
    task: &'a SourceTask,
    captured: Vec<Captured>,
    /// Captured tables that stopped (their changes are ignored).
    failed: Vec<bool>,
    relations: HashMap<u32, RelationMap>,
    skip_until: HashMap<usize, Lsn>,
    pipeline: CommitPipeline,
    txn: Option<OpenTxn>,
}

/// Streams from `from` until the task is asked to stop.
async fn stream(
    task: &SourceTask,
    cfg: &PostgresConfig,
    slot: &str,
    captured: Vec<Captured>,
    from: Lsn,
    skip_until: HashMap<usize, Lsn>,
) -> Result<()> {
    let conn = ReplicationConnection::connect(&cfg.replication_params()).await?;
    let (mut reader, mut writer) = conn.start_replication(slot, from, &cfg.publication).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<StreamEvent>>(1024);
    let read_ahead = tokio::spawn(async move {
        loop {
            let ev = reader.next().await;
            let failed = ev.is_err();
            if tx.send(ev).await.is_err() || failed {
                return;
            }
        }
    });
    let _stop_reader = AbortOnDrop(read_ahead);
    let ids: Vec<u32> = captured.iter().map(|c| c.table.def.id).collect();
    task.status(|s| {
        s.state = SourceState::Streaming;
        s.reason = None;
        if s.position.is_empty() {
            s.position = from.to_string();
        }
        for id in &ids {
            if let Some(t) = s.tables.get_mut(id) {
                if t.state != "failed" {
                    t.state = "streaming".into();
                }
            }
        }
    });
    tracing::info!(source = %task.source.qualified_name(), %slot, lsn = %from, "streaming");
    // The LSN Freshet has durably committed: what the slot may be told is flushed.
    let committed = Arc::new(AtomicU64::new(from.0));
    let mut last_position = from;
    let mut last_position_commit = Instant::now();
    let mut status_timer = tokio::time::interval(PROGRESS_EVERY);
    let source = task.source.id;
    let mut s = Stream {
        task,
        failed: vec![false; captured.len()],
        captured,
        relations: HashMap::new(),
        skip_until,
        pipeline: CommitPipeline::new(task.coordinator.clone(), MAX_IN_FLIGHT),
        txn: None,
    };
    loop {
        let in_flight = s.pipeline.in_flight() > 0;
        let ev = tokio::select! {
            biased;
            _ = task.stopped() => {
                s.pipeline.drain().await?;
                let _ = writer.send_status(Lsn(committed.load(Ordering::SeqCst)), false).await;
                return Ok(());
            }
            r = s.pipeline.wait_oldest(), if in_flight => {
                r?;
                continue;
            }
            _ = status_timer.tick() => {
                writer.send_status(Lsn(committed.load(Ordering::SeqCst)), false).await?;
                continue;
            }
            ev = rx.recv() => ev,
        };
        let ev = match ev {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                s.pipeline.drain().await?;
                return Err(e);
            }
            None => {
                s.pipeline.drain().await?;
                return Err(Error::internal("the replication reader stopped"));
            }
        };
        match ev {
            StreamEvent::Keepalive {
                wal_end,
                reply_requested,
            } => {
                if reply_requested {
                    writer.send_status(Lsn(committed.load(Ordering::SeqCst)), false).await?;
                }
                // Between transactions, with nothing in flight, the WAL up to `wal_end` holds
                // nothing more for Freshet: commit that position so the slot can advance.
                if s.txn.is_none()
                    && s.pipeline.in_flight() == 0
                    && wal_end > last_position
                    && last_position_commit.elapsed() >= PROGRESS_EVERY
                {
                    let mut writes = task.writes();
                    task.set_position(&mut writes, &Position { lsn: wal_end });
                    let board = task.board.clone();
                    let committed = committed.clone();
                    let on_commit = Box::new(move || {
                        committed.fetch_max(wal_end.0, Ordering::SeqCst);
                        board.update(source, |st| st.position = wal_end.to_string());
                    });
                    s.pipeline.push(writes, Some(on_commit)).await?;
                    last_position = wal_end;
                    last_position_commit = Instant::now();
                }
            }
            StreamEvent::XLogData { data, .. } => match pgoutput::decode(&data)? {
                PgOutput::Begin { .. } => s.txn = Some(OpenTxn::default()),
                PgOutput::Relation(r) => s.relation(r),
                PgOutput::Insert { relation, new } => {
                    if let Some(i) = s.mapped(relation) {
                        let row = s.cells(relation, &new, None, i).await?;
                        s.rows(i).push(row, 1);
                    }
                }
                PgOutput::Update { relation, old, new } => {
                    if let Some(i) = s.mapped(relation) {
                        let old_tuple = match &old {
                            Some(OldTuple::Key(t)) | Some(OldTuple::Full(t)) => Some(t),
                            None => None,
                        };
                        if let Some(o) = old_tuple {
                            let old_row = s.cells(relation, o, None, i).await?;
                            s.rows(i).push(old_row, -1);
                        }
                        let full_old = match &old {
                            Some(OldTuple::Full(t)) => Some(t),
                            _ => None,
                        };
                        let row = s.cells(relation, &new, full_old, i).await?;
                        s.rows(i).push(row, 1);
                    }
                }
                PgOutput::Delete { relation, old } => {
                    if let Some(i) = s.mapped(relation) {
                        let (OldTuple::Key(t) | OldTuple::Full(t)) = &old;
                        let row = s.cells(relation, t, None, i).await?;
                        s.rows(i).push(row, -1);
                    }
                }
                PgOutput::Truncate { relations, .. } => {
                    for r in relations {
                        if let Some(i) = s.mapped(r) {
                            let (rows, truncated) = s.entry(i);
                            let _ = rows.finish()?;
                            *truncated = true;
                        }
                    }
                }
                PgOutput::Commit {
                    end_lsn,
                    commit_time_micros,
                    ..
                } => {
                    let txn = s.txn.take().unwrap_or_default();
                    let mut writes = task.writes();
                    let mut order: Vec<usize> = txn.tables.keys().copied().collect();
                    order.sort_unstable();
                    let mut txn = txn;
                    for i in order {
                        let (mut rows, truncated) = txn.tables.remove(&i).expect("listed");
                        if s.failed[i] || s.skip_until.get(&i).is_some_and(|until| end_lsn <= *until) {
                            continue;
                        }
                        let table = s.captured[i].table.clone();
                        if truncated {
                            s.pipeline.drain().await?;
                            task.add_truncate(&mut writes, &table)?;
                        }
                        if !rows.is_empty() {
                            task.add_changes(&mut writes, &table, &rows.finish()?)?;
                        }
                    }
                    task.set_position(&mut writes, &Position { lsn: end_lsn });
                    let board = task.board.clone();
                    let committed = committed.clone();
                    let on_commit = Box::new(move || {
                        committed.fetch_max(end_lsn.0, Ordering::SeqCst);
                        note_applied(&board, source, commit_time_micros, end_lsn.to_string());
                    });
                    s.pipeline.push(writes, Some(on_commit)).await?;
                    last_position = last_position.max(end_lsn);
                    last_position_commit = Instant::now();
                }
                PgOutput::Other(_) => {}
            },
        }
    }
}

impl Stream<'_> {
    /// Maps a relation onto its captured table by name; a captured table whose columns are no
    /// longer all there (or changed type) stops.
    fn relation(&mut self, r: Relation) {
        let Some(i) = self
            .captured
            .iter()
            .position(|c| c.upstream.schema == r.namespace && c.upstream.name == r.name)
        else {
            return;
        };
        let c = &self.captured[i];
        let mut columns = Vec::with_capacity(c.columns.len());
        for name in &c.columns {
            let described = c.upstream.columns.iter().find(|u| &u.name == name);
            match r.columns.iter().position(|rc| &rc.name == name) {
                Some(j) if described.is_some_and(|d| d.type_oid == r.columns[j].type_oid) => columns.push(j),
                Some(j) => {
                    self.stop_table(
                        i,
                        format!(
                            "upstream column {}.{} changed type (now oid {})",
                            c.upstream.qualified(),
                            name,
                            r.columns[j].type_oid
                        ),
                    );
                    return;
                }
                None => {
                    self.stop_table(i, format!("upstream column {}.{name} is gone", c.upstream.qualified()));
                    return;
                }
            }
        }
        self.relations.insert(r.oid, RelationMap { table: i, columns });
    }

    fn stop_table(&mut self, i: usize, reason: String) {
        self.failed[i] = true;
        self.task.table_failed(self.captured[i].table.def.id, reason);
    }

    /// The captured table a relation's changes go to (None: not captured, or stopped).
    fn mapped(&self, relation: u32) -> Option<usize> {
        self.relations
            .get(&relation)
            .map(|m| m.table)
            .filter(|i| !self.failed[*i])
    }

    fn entry(&mut self, i: usize) -> &mut (TextRows, bool) {
        let c = &self.captured[i];
        self.txn
            .get_or_insert_with(OpenTxn::default)
            .tables
            .entry(i)
            .or_insert_with(|| (TextRows::new(&c.columns, &c.types), false))
    }

    fn rows(&mut self, i: usize) -> &mut TextRows {
        &mut self.entry(i).0
    }

    /// A tuple as the captured table's cells. An unchanged TOASTed value (not sent) is taken
    /// from the old tuple (REPLICA IDENTITY FULL), else from an earlier change of the same row
    /// in this transaction, else from the row Freshet holds.
    async fn cells(
        &mut self,
        relation: u32,
        tuple: &Tuple,
        old: Option<&Tuple>,
        i: usize,
    ) -> Result<Vec<Option<String>>> {
        let map = &self.relations[&relation];
        let mut row = Vec::with_capacity(map.columns.len());
        let mut missing = Vec::new();
        for (k, j) in map.columns.iter().enumerate() {
            let v = tuple
                .get(*j)
                .ok_or_else(|| Error::internal("pgoutput tuple shorter than its relation"))?;
            row.push(match v {
                TupleValue::Null => None,
                TupleValue::Text(b) => Some(text(b)?),
                TupleValue::UnchangedToast => match old.and_then(|o| o.get(*j)) {
                    Some(TupleValue::Text(b)) => Some(text(b)?),
                    _ => {
                        missing.push(k);
                        None
                    }
                },
            });
        }
        if !missing.is_empty() {
            self.fill_unchanged(i, &mut row, &missing).await?;
        }
        Ok(row)
    }

    async fn fill_unchanged(&mut self, i: usize, row: &mut [Option<String>], missing: &[usize]) -> Result<()> {
        let table = self.captured[i].table.clone();
        let pk = table.def.primary_key.clone();
        // An earlier change of the same row in this transaction.
        if let Some((rows, _)) = self.txn.as_ref().and_then(|t| t.tables.get(&i)) {
            for r in (0..rows.len()).rev() {
                let earlier = rows.row(r);
                if pk.iter().all(|p| earlier[*p] == row[*p]) {
                    for k in missing {
                        row[*k] = earlier[*k].clone();
                    }
                    return Ok(());
                }
            }
        }
        // The row as committed, once every commit in flight is durable.
        self.pipeline.drain().await?;
        let c = &self.captured[i];
        let mut key_rows = TextRows::new(&c.columns, &c.types);
        key_rows.push(row.to_vec(), 1);
        let typed = key_rows.finish()?;
        let key: Vec<ArrayRef> = pk.iter().map(|p| typed.columns()[*p].clone()).collect();
        let Some(current) = self.task.committed_row(&table, &key)? else {
            return Err(Error::External {
                state: SqlState("55000"),
                message: format!(
                    "postgres-cdc: an update of {} left a TOASTed value unchanged, but Freshet does not hold the row",
                    c.upstream.qualified()
                ),
                retryable: false,
            });
        };
        for k in missing {
            row[*k] = crate::serve::text::format_cell(&current[*k], 0);
        }
        Ok(())
    }
}

fn text(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| Error::internal("pgoutput value is not UTF-8"))
}
