//! Running sources: one tokio task per source, restarted when its tables change, supervised
//! (retries with backoff on upstream errors), with a status board the system tables read.
//!
//! A connector's driver gets a [`SourceTask`]: the source, its tables, and the means to turn
//! upstream changes into an epoch: [`SourceTask::writes`] starts a blind write set (a source's
//! tables have no other writer), `add_changes` appends weighted rows (-1 deletes the row's key,
//! +1 puts the row), `set_position` records where to resume, and the write set commits through
//! the coordinator as one atomic epoch, so the position can never run ahead of the data or
//! behind it. [`CommitPipeline`] keeps several such commits in flight (group commit shares one
//! fsync between them) while preserving their order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

use crate::catalog::{ColumnDef, Generated, Layout, SourceDef, Table};
use crate::dataflow::changes::Changes;
use crate::dataflow::column_reads::{ColumnReads, Columns};
use crate::dataflow::coordinator::{now_micros, Append, AppendStore, Coordinator, RowWrite, TxnWrites};
use crate::dataflow::Epoch;
use crate::error::{Error, Result, SqlState};
use crate::state::{keys, segment, StateSnapshot};

/// What a source is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceState {
    Starting,
    Snapshotting,
    Streaming,
    /// An upstream error; retrying with backoff.
    Retrying,
    /// Stopped for good (e.g. an upstream schema change it cannot follow); `reason` says why.
    Failed,
}

impl SourceState {
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceState::Starting => "starting",
            SourceState::Snapshotting => "snapshotting",
            SourceState::Streaming => "streaming",
            SourceState::Retrying => "retrying",
            SourceState::Failed => "failed",
        }
    }
}

/// Snapshot and capture progress of one table of a source.
#[derive(Clone, Debug, Default)]
pub struct TableProgress {
    pub table: String,
    pub upstream: String,
    /// `snapshotting`, `streaming` or `failed`.
    pub state: String,
    pub reason: Option<String>,
    pub snapshot_rows: u64,
    pub snapshot_rows_estimated: u64,
    pub snapshot_rows_per_second: f64,
}

/// The status of one source.
#[derive(Clone, Debug)]
pub struct SourceStatus {
    pub state: SourceState,
    pub reason: Option<String>,
    /// The resume position last committed, as text.
    pub position: String,
    /// Upstream commit time of the last transaction applied (µs since the Unix epoch).
    pub upstream_commit_micros: Option<i64>,
    /// When that transaction was committed in Freshet.
    pub applied_micros: Option<i64>,
    pub retries: u64,
    pub tables: BTreeMap<u32, TableProgress>,
}

impl Default for SourceStatus {
    fn default() -> Self {
        SourceStatus {
            state: SourceState::Starting,
            reason: None,
            position: String::new(),
            upstream_commit_micros: None,
            applied_micros: None,
            retries: 0,
            tables: BTreeMap::new(),
        }
    }
}

impl SourceStatus {
    /// Seconds between the upstream commit and the apply of the last transaction.
    pub fn lag_seconds(&self) -> Option<f64> {
        match (self.upstream_commit_micros, self.applied_micros) {
            (Some(u), Some(a)) => Some(((a - u).max(0)) as f64 / 1e6),
            _ => None,
        }
    }
}

/// The status of every running source, by source id.
#[derive(Default)]
pub struct SourceStatusBoard(Mutex<BTreeMap<u32, SourceStatus>>);

impl SourceStatusBoard {
    pub fn get(&self, source: u32) -> Option<SourceStatus> {
        self.0.lock().expect("lock").get(&source).cloned()
    }

    pub fn update(&self, source: u32, f: impl FnOnce(&mut SourceStatus)) {
        f(self.0.lock().expect("lock").entry(source).or_default())
    }

    fn remove(&self, source: u32) {
        self.0.lock().expect("lock").remove(&source);
    }
}

/// What a connector's driver works with.
pub struct SourceTask {
    pub source: Arc<SourceDef>,
    /// The source's tables (by the catalog of when the task started).
    pub tables: Vec<Arc<Table>>,
    pub coordinator: Arc<Coordinator>,
    pub board: Arc<SourceStatusBoard>,
    /// The columns views read, as of when the task started (a change restarts it).
    reads: Arc<ColumnReads>,
    stop: watch::Receiver<bool>,
}

impl SourceTask {
    /// Whether the task must stop (source dropped or its tables changed).
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves when the task must stop.
    pub async fn stopped(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|s| *s).await;
    }

    pub fn status(&self, f: impl FnOnce(&mut SourceStatus)) {
        self.board.update(self.source.id, f)
    }

    /// Stops capturing one table (its state becomes `failed`, with the reason); the source's
    /// other tables go on.
    pub fn table_failed(&self, table: u32, reason: String) {
        tracing::error!(source = %self.source.qualified_name(), table, %reason, "captured table stopped");
        self.status(|s| {
            if let Some(t) = s.tables.get_mut(&table) {
                t.state = "failed".into();
                t.reason = Some(reason);
            }
        });
    }

    /// The resume position committed last (None: never started).
    pub fn stored_position<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        stored_position(&*self.coordinator.current().snapshot, self.source.id)
    }

    /// A table's capture progress committed last (None: not yet snapshotted).
    pub fn stored_table_state<T: DeserializeOwned>(&self, table: u32) -> Result<Option<T>> {
        stored_json(
            &*self.coordinator.current().snapshot,
            &keys::source_table_key(self.source.id, table),
        )
    }

    /// An empty write set of this source.
    pub fn writes(&self) -> TxnWrites {
        TxnWrites {
            source: Some(self.source.id),
            tables: self.tables.iter().map(|t| (t.def.id, t.def.version)).collect(),
            ..TxnWrites::default()
        }
    }

    /// The visible columns of stream `table` that views read (None: every column, or `table`
    /// is not a stream). A source may leave the others out of the stream's rows
    /// ([`SourceTask::add_stream_rows`]); its task is restarted when the set changes.
    pub fn read_columns(&self, table: &Table) -> Columns {
        stream_columns(table, &self.reads)
    }

    /// Appends weighted rows of `table` (in the table's upstream columns, or all its visible
    /// columns, in order): -1 deletes the row's key, +1 puts the row. Applied in order, so an
    /// update is its -1 then its +1. Generated columns get their values here.
    pub fn add_changes(&self, writes: &mut TxnWrites, table: &Table, changes: &Changes) -> Result<()> {
        self.add_stream_rows(writes, table, changes, None)
    }

    /// [`SourceTask::add_changes`], for rows whose visible columns outside `present` (None:
    /// all present) hold placeholders, because no view reads them ([`SourceTask::read_columns`]).
    /// Only a stream's rows may leave columns out.
    pub fn add_stream_rows(
        &self,
        writes: &mut TxnWrites,
        table: &Table,
        changes: &Changes,
        present: Columns,
    ) -> Result<()> {
        if present.is_some() && table.def.layout != Layout::Stream {
            return Err(Error::internal(format!(
                "{} stores its rows: its source must give every column",
                table.def.name
            )));
        }
        if changes.is_empty() {
            return Ok(());
        }
        if table.def.layout == Layout::Stream {
            if changes.weights().values().iter().any(|w| *w != 1) {
                return Err(Error::internal(format!(
                    "{} is a stream: its source may only add rows",
                    table.def.name
                )));
            }
            writes.appends.push(Append {
                table: table.def.id,
                store: AppendStore::Nothing,
                changes: stream_rows(table, changes.data())?,
                present,
            });
            return Ok(());
        }
        let data = with_generated(table, changes.data())?;
        if table.has_row_id() {
            return self.add_appended(writes, table, data.columns(), changes.weights().values());
        }
        let columns: Vec<ArrayRef> = data.columns().to_vec();
        let pk: Vec<ArrayRef> = table.def.primary_key.iter().map(|i| columns[*i].clone()).collect();
        if let Some(i) = pk.iter().position(|c| c.null_count() > 0) {
            return Err(Error::user(
                crate::error::SqlState::NOT_NULL_VIOLATION,
                format!(
                    "upstream row of {} has NULL in key column {}",
                    table.def.name, table.def.columns[table.def.primary_key[i]].name
                ),
            ));
        }
        let keys_ = table.key_codec.encode(&pk)?;
        let rows = table.row_codec.encode(&columns)?;
        for (i, w) in changes.weights().values().iter().enumerate() {
            let key = keys::row_key(table.def.id, keys_.row(i).as_ref());
            if *w < 0 {
                writes.record(key, RowWrite::Delete);
            } else if *w > 0 {
                writes.record(key, RowWrite::Put(rows.row(i).as_ref().to_vec()));
            }
        }
        Ok(())
    }

    /// Appends rows to a table keyed by a hidden row id: each row gets the next row id.
    fn add_appended(&self, writes: &mut TxnWrites, table: &Table, visible: &[ArrayRef], weights: &[i64]) -> Result<()> {
        if weights.iter().any(|w| *w != 1) {
            return Err(Error::internal(format!(
                "{} has no primary key: its source may only add rows",
                table.def.name
            )));
        }
        let n = weights.len();
        let first = table.allocate_row_ids(n);
        let data = RecordBatch::try_new(table.visible_schema.clone(), visible.to_vec())?;
        if table.def.layout == Layout::Segments {
            // One key for the whole batch: the row key of its last row id.
            let last: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(vec![first + n as i64 - 1]));
            let key = keys::row_key(table.def.id, table.key_codec.encode_one(&[last])?.row().as_ref());
            writes.appends.push(Append {
                table: table.def.id,
                store: AppendStore::Segment {
                    key,
                    value: segment::encode(first, &data)?,
                },
                changes: Changes::uniform(data, 1)?,
                present: None,
            });
            return Ok(());
        }
        let ids: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
            first..first + n as i64,
        ));
        let mut next_visible = visible.iter();
        let columns: Vec<ArrayRef> = table
            .def
            .columns
            .iter()
            .map(|c| {
                if c.hidden {
                    ids.clone()
                } else {
                    next_visible.next().expect("a visible column").clone()
                }
            })
            .collect();
        let pk: Vec<ArrayRef> = table.def.primary_key.iter().map(|i| columns[*i].clone()).collect();
        writes.appends.push(Append {
            table: table.def.id,
            store: AppendStore::Rows {
                keys: Arc::new(table.key_codec.encode(&pk)?),
                values: Arc::new(table.row_codec.encode(&columns)?),
            },
            changes: Changes::uniform(data, 1)?,
            present: None,
        });
        Ok(())
    }

    /// Deletes every row `table` holds: its committed rows and those `writes` put so far (a
    /// snapshot that starts over after a crash, an upstream TRUNCATE). Rows of commits still
    /// in flight are not seen: wait for them first.
    pub fn add_truncate(&self, writes: &mut TxnWrites, table: &Table) -> Result<()> {
        let (from, to) = keys::table_range(table.def.id);
        let written: Vec<Vec<u8>> = writes
            .rows
            .range(from.clone()..to.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for k in written {
            writes.rows.remove(&k);
        }
        writes.appends.retain(|a| a.table != table.def.id);
        for kv in self.coordinator.current().snapshot.scan(&from, &to) {
            let (k, _) = kv?;
            writes.record(k.to_vec(), RowWrite::Delete);
        }
        Ok(())
    }

    /// The committed row of `table` whose primary key is `key` (one-element key columns), as
    /// one-element columns of every column. Commits still in flight are not seen.
    pub fn committed_row(&self, table: &Table, key: &[ArrayRef]) -> Result<Option<Vec<ArrayRef>>> {
        let encoded = table.key_codec.encode(key)?;
        let k = keys::row_key(table.def.id, encoded.row(0).as_ref());
        match self.coordinator.current().snapshot.get(&k)? {
            None => Ok(None),
            Some(v) => Ok(Some(table.row_codec.decode([v.as_ref()])?)),
        }
    }

    /// Records the position to resume from, committed with the writes.
    pub fn set_position<T: Serialize>(&self, writes: &mut TxnWrites, position: &T) {
        let json = serde_json::to_vec(position).expect("positions serialize");
        writes.meta.insert(keys::source_position_key(self.source.id), json);
    }

    /// Records a table's capture progress, committed with the writes.
    pub fn set_table_state<T: Serialize>(&self, writes: &mut TxnWrites, table: u32, state: &T) {
        let json = serde_json::to_vec(state).expect("table states serialize");
        writes.meta.insert(keys::source_table_key(self.source.id, table), json);
    }

    /// Commits a write set as (part of) one epoch and waits for it.
    pub async fn commit(&self, writes: TxnWrites) -> Result<Epoch> {
        let epoch = self.coordinator.current().epoch;
        self.coordinator.commit(epoch, writes, None).await
    }
}

type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Epoch>> + Send>>;
/// Runs once a commit is durable.
pub type OnCommit = Box<dyn FnOnce() + Send>;

/// Commits in flight, in order. Each pushed write set is one epoch request; the coordinator
/// commits waiting requests together, so a busy source shares fsyncs instead of waiting for
/// each.
pub struct CommitPipeline {
    coordinator: Arc<Coordinator>,
    pending: VecDeque<(Pending, Option<OnCommit>)>,
    max_in_flight: usize,
}

impl CommitPipeline {
    pub fn new(coordinator: Arc<Coordinator>, max_in_flight: usize) -> CommitPipeline {
        CommitPipeline {
            coordinator,
            pending: VecDeque::new(),
            max_in_flight: max_in_flight.max(1),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Sends `writes`; `on_commit` runs once it is durable. Waits for the oldest commit when
    /// too many are in flight.
    pub async fn push(&mut self, writes: TxnWrites, on_commit: Option<OnCommit>) -> Result<()> {
        let coordinator = self.coordinator.clone();
        let epoch = coordinator.current().epoch;
        // The request is queued now (commit() sends before its first await), keeping order.
        let fut: Pending = Box::pin(async move { coordinator.commit(epoch, writes, None).await });
        let mut fut = fut;
        // Poll once so the request enters the coordinator's queue immediately.
        let first = futures::poll!(&mut fut);
        match first {
            std::task::Poll::Ready(r) => {
                r?;
                if let Some(f) = on_commit {
                    f();
                }
            }
            std::task::Poll::Pending => self.pending.push_back((fut, on_commit)),
        }
        while self.pending.len() > self.max_in_flight {
            self.wait_oldest().await?;
        }
        // Finish what is already durable, so callbacks run promptly.
        while let Some((fut, _)) = self.pending.front_mut() {
            match futures::poll!(fut) {
                std::task::Poll::Ready(r) => self.finish(r)?,
                std::task::Poll::Pending => break,
            }
        }
        Ok(())
    }

    fn finish(&mut self, r: Result<Epoch>) -> Result<()> {
        let (_, on_commit) = self.pending.pop_front().expect("a commit in flight");
        r?;
        if let Some(f) = on_commit {
            f();
        }
        Ok(())
    }

    /// Waits for the oldest commit in flight (at once if none). Cancel-safe: if the wait is
    /// dropped, the commit stays in flight.
    pub async fn wait_oldest(&mut self) -> Result<()> {
        let Some((fut, _)) = self.pending.front_mut() else {
            return Ok(());
        };
        let r = fut.await;
        self.finish(r)
    }

    /// Waits for every commit in flight.
    pub async fn drain(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(())
    }
}

/// A connector's capture loop: returns Ok when the task is asked to stop, Err on failure
/// (retried when the error is retryable).
pub type Driver = fn(Arc<SourceTask>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// The capture loop of a connector, if Freshet has one.
fn driver_of(connector: &str) -> Option<Driver> {
    match connector {
        "mysql-cdc" => Some(crate::connectors::mysql::source::driver),
        "postgres-cdc" => Some(crate::connectors::postgres::source::driver),
        "nexmark" => Some(crate::connectors::generator::nexmark::driver),
        "datagen" => Some(crate::connectors::generator::datagen::driver),
        _ => None,
    }
}

struct Running {
    /// What the task was started with: [`fingerprint`].
    tables: Vec<(u32, u64, Columns)>,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

/// Starts, restarts and stops source tasks to match the catalog.
#[derive(Default)]
pub struct SourceRuntime {
    pub board: Arc<SourceStatusBoard>,
    running: tokio::sync::Mutex<HashMap<u32, Running>>,
    /// The sources of the catalog last reconciled (to notice the ones dropped since).
    known: tokio::sync::Mutex<HashMap<u32, Arc<SourceDef>>>,
}

impl SourceRuntime {
    /// Makes the running tasks match the latest committed catalog: a task per source with at
    /// least one table to feed (stored, or a stream that views read), restarted when those
    /// tables changed, stopped when its source went. A stopping task first finishes its
    /// commits in flight.
    pub async fn reconcile(&self, coordinator: &Arc<Coordinator>) {
        let mut running = self.running.lock().await;
        let current = coordinator.current();
        let catalog = current.catalog.clone();
        let mut wanted: HashMap<u32, (Arc<SourceDef>, Vec<Arc<Table>>)> = HashMap::new();
        for s in catalog.sources() {
            let mut tables = catalog.fed_tables_of_source(s.id);
            if tables.is_empty() {
                continue;
            }
            tables.sort_by_key(|t| t.def.id);
            wanted.insert(s.id, (s.clone(), tables));
        }
        let ids: Vec<u32> = running.keys().copied().collect();
        for id in ids {
            let same = wanted
                .get(&id)
                .is_some_and(|(_, tables)| fingerprint(tables, &current.reads) == running[&id].tables);
            if !same {
                if wanted.contains_key(&id) {
                    tracing::info!(
                        source = %wanted[&id].0.qualified_name(),
                        "restarting the source: its tables, or the columns views read of its streams, changed"
                    );
                }
                let r = running.remove(&id).expect("listed");
                let _ = r.stop.send(true);
                let _ = r.handle.await;
                self.board.remove(id);
            }
        }
        let mut known = self.known.lock().await;
        let now: HashMap<u32, Arc<SourceDef>> = catalog.sources().map(|s| (s.id, s.clone())).collect();
        for (id, s) in known.iter() {
            if !now.contains_key(id) {
                crate::connectors::source_dropped(s).await;
            }
        }
        *known = now;
        drop(known);
        for (id, (source, tables)) in wanted {
            if running.contains_key(&id) {
                continue;
            }
            let (stop_tx, stop_rx) = watch::channel(false);
            let started_with = fingerprint(&tables, &current.reads);
            let task = Arc::new(SourceTask {
                source: source.clone(),
                tables,
                coordinator: coordinator.clone(),
                board: self.board.clone(),
                reads: current.reads.clone(),
                stop: stop_rx,
            });
            task.status(|s| {
                s.state = SourceState::Starting;
                for t in &task.tables {
                    s.tables.insert(
                        t.def.id,
                        TableProgress {
                            table: t.def.name.clone(),
                            upstream: t.def.source.as_ref().map(|s| s.external.clone()).unwrap_or_default(),
                            state: "starting".into(),
                            ..TableProgress::default()
                        },
                    );
                }
            });
            let handle = tokio::spawn(supervise(task, driver_of(&source.connector)));
            running.insert(
                id,
                Running {
                    tables: started_with,
                    stop: stop_tx,
                    handle,
                },
            );
        }
    }

    /// Stops every task (server shutdown), letting commits in flight finish.
    pub async fn stop_all(&self) {
        let mut running = self.running.lock().await;
        for (_, r) in running.drain() {
            let _ = r.stop.send(true);
            let _ = r.handle.await;
        }
    }
}

/// What a source task depends on: each table's id and definition version, and for a stream the
/// columns views read (a task builds only those: [`SourceTask::read_columns`]).
fn fingerprint(tables: &[Arc<Table>], reads: &ColumnReads) -> Vec<(u32, u64, Columns)> {
    tables
        .iter()
        .map(|t| (t.def.id, t.def.version, stream_columns(t, reads)))
        .collect()
}

/// The visible columns of `table` that views read if it is a stream (None: every column, or
/// not a stream: a stored table always gets every column).
fn stream_columns(table: &Table, reads: &ColumnReads) -> Columns {
    match table.def.layout {
        Layout::Stream => reads.get(table.def.id).cloned().flatten(),
        _ => None,
    }
}

/// Runs a source's driver, retrying retryable failures with backoff (1 s doubling to 30 s),
/// until the task is asked to stop.
async fn supervise(task: Arc<SourceTask>, driver: Option<Driver>) {
    let name = task.source.qualified_name();
    let Some(driver) = driver else {
        task.status(|s| {
            s.state = SourceState::Failed;
            s.reason = Some(format!("no capture driver for connector '{}'", task.source.connector));
        });
        return;
    };
    let mut delay = Duration::from_secs(1);
    loop {
        let outcome = driver(task.clone()).await;
        if task.stopping() {
            return;
        }
        match outcome {
            Ok(()) => return,
            Err(e) if is_retryable(&e) && e.code() == SqlState::SERIALIZATION_FAILURE => {
                // Rows refused because views now read more of a stream than the task builds
                // (`dataflow::column_reads`): `reconcile` is about to start a task with the
                // wider set in its place.
                tracing::debug!(source = %name, error = %e, "source superseded; waiting to be restarted");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = task.stopped() => return,
                }
            }
            Err(e) if is_retryable(&e) => {
                tracing::warn!(source = %name, error = %e, retry_in = ?delay, "source failed; retrying");
                task.status(|s| {
                    s.state = SourceState::Retrying;
                    s.reason = Some(e.to_string());
                    s.retries += 1;
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = task.stopped() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                tracing::error!(source = %name, error = %e, "source failed");
                task.status(|s| {
                    s.state = SourceState::Failed;
                    s.reason = Some(e.to_string());
                });
                return;
            }
        }
    }
}

fn is_retryable(e: &Error) -> bool {
    matches!(e, Error::External { retryable: true, .. })
}

/// The resume position of source `source` committed in `snapshot` (None: never started).
pub fn stored_position<T: DeserializeOwned>(snapshot: &dyn StateSnapshot, source: u32) -> Result<Option<T>> {
    stored_json(snapshot, &keys::source_position_key(source))
}

/// Source state stored as JSON under `key` in `snapshot`.
fn stored_json<T: DeserializeOwned>(snapshot: &dyn StateSnapshot, key: &[u8]) -> Result<Option<T>> {
    match snapshot.get(key)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| Error::internal(format!("corrupt source state: {e}"))),
    }
}

/// Marks a transaction applied (for the lag figure): its upstream commit time.
pub fn note_applied(board: &SourceStatusBoard, source: u32, upstream_commit_micros: i64, position: String) {
    board.update(source, |s| {
        s.upstream_commit_micros = Some(upstream_commit_micros);
        s.applied_micros = Some(now_micros());
        s.position = position;
    });
}

/// Rows of stream `table` (its upstream columns, or all its visible columns) as the insertions
/// views read: generated columns filled in, in the table's visible schema.
pub(crate) fn stream_rows(table: &Table, data: RecordBatch) -> Result<Changes> {
    let data = with_generated(table, data)?;
    Changes::uniform(
        RecordBatch::try_new(table.visible_schema.clone(), data.columns().to_vec())?,
        1,
    )
}

/// `data` (a table's upstream columns, or all its visible columns) with the generated columns
/// filled in: `PROCTIME()` columns get the time of this write.
fn with_generated(table: &Table, data: RecordBatch) -> Result<RecordBatch> {
    let visible: Vec<&ColumnDef> = table.def.columns.iter().filter(|c| !c.hidden).collect();
    if visible.iter().all(|c| c.generated.is_none()) {
        return Ok(data);
    }
    let all_given = data.num_columns() == visible.len();
    let mut given = data.columns().iter();
    let now = now_micros();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(visible.len());
    for (i, c) in visible.iter().enumerate() {
        let value = if all_given || c.generated.is_none() {
            given.next()
        } else {
            None
        };
        match c.generated {
            Some(Generated::ProcTime) => columns.push(Arc::new(
                TimestampMicrosecondArray::from_value(now, data.num_rows())
                    .with_data_type(table.visible_schema.field(i).data_type().clone()),
            )),
            None => columns.push(
                value
                    .ok_or_else(|| Error::internal(format!("{}: fewer columns than the table has", table.def.name)))?
                    .clone(),
            ),
        }
    }
    Ok(RecordBatch::try_new(table.visible_schema.clone(), columns)?)
}
