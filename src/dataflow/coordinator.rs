//! The commit coordinator: a single writer thread that turns waiting transactions into epochs.
//!
//! ```text
//!  sessions ──CommitRequest──▶ [queue] ──▶ coordinator thread
//!                                            │  drain everything waiting (group commit)
//!                                            │  validate each request (write-write conflicts,
//!                                            │  catalog version), in arrival order
//!                                            │  one WriteBatch + epoch number, WAL fsync
//!                                            ▼
//!                                   publish Committed{epoch, snapshot, catalog}; reply to all
//! ```
//! Concurrency control is optimistic, first-committer-wins (snapshot isolation): a transaction
//! reads one committed epoch; at commit it fails with 40001 if a row it writes was written by an
//! epoch newer than its snapshot. An INSERT whose key another transaction inserted meanwhile gets
//! 23505, as it would in PostgreSQL after waiting for the other transaction.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::Rows;
// hashbrown with foldhash: the per-row maps of an epoch hash every written key.
use datafusion::common::HashMap;
use tokio::sync::{mpsc, oneshot};

use super::changes::Changes;
use super::column_reads::{ColumnReads, Columns};
use super::graph::ViewDataflow;
use super::operator::{EpochContext, RelationWrites};
use super::stored_rows::StoredRows;
use super::stream_history::StreamHistory;
use super::Epoch;
use crate::catalog::Catalog;
use crate::catalog::Layout;
use crate::error::{Error, Result, SqlState};
use crate::state::{keys, segment, StateSnapshot, StateStore, WriteBatch};

/// What a reader sees: one committed epoch, its data and its catalog.
pub struct Committed {
    pub epoch: Epoch,
    pub snapshot: Arc<dyn StateSnapshot>,
    pub catalog: Arc<Catalog>,
    /// When the epoch was committed (µs since the Unix epoch; process start for a reopened one).
    pub committed_at_micros: i64,
    /// The columns the views of this epoch read, by relation (a stream's source builds only those).
    pub reads: Arc<ColumnReads>,
}

/// Now, in µs since the Unix epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A stored row before and after an epoch's write (None: absent).
type RowChange = (Option<Vec<u8>>, Option<Vec<u8>>);

/// One buffered row write of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum RowWrite {
    /// A new row: the key must not exist (23505 otherwise).
    Insert(Vec<u8>),
    /// Overwrites (or creates) the row.
    Put(Vec<u8>),
    Delete,
}

impl RowWrite {
    /// The row value this write leaves, if any.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            RowWrite::Insert(v) | RowWrite::Put(v) => Some(v),
            RowWrite::Delete => None,
        }
    }
}

/// The writes of one transaction, keyed by full store key.
#[derive(Default, Clone, Debug)]
pub struct TxnWrites {
    pub rows: BTreeMap<Vec<u8>, RowWrite>,
    /// Tables written, with the definition version the writes were planned against.
    pub tables: BTreeMap<u32, u64>,
    /// Other keys committed with the epoch (a source's resume position).
    pub meta: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Set when a source writes: its tables have no other writer, so the writes are blind
    /// (no conflict checks, in arrival order) and are refused only if the source was dropped.
    pub source: Option<u32>,
    /// Rows a source appends to tables keyed by hidden row ids (see [`Append`]).
    pub appends: Vec<Append>,
}

/// Rows a source appends to a table keyed by a hidden row id. Their keys are new row ids that
/// nothing else writes, so the coordinator reads no old values and checks no conflicts for
/// them, and views get the appended rows as they are (no decoding back from the store).
#[derive(Clone, Debug)]
pub struct Append {
    pub table: u32,
    pub store: AppendStore,
    /// The same rows in the table's visible columns, each with weight +1.
    pub changes: Changes,
    /// The columns holding real values (None: all). A stream's source leaves out the columns
    /// no view reads (`super::column_reads`); the others hold placeholders.
    pub present: Columns,
}

/// What an [`Append`] puts in the store, by the table's layout.
#[derive(Clone, Debug)]
pub enum AppendStore {
    /// The encoded primary keys (the row ids) and rows, one per appended row.
    Rows { keys: Arc<Rows>, values: Arc<Rows> },
    /// One segment holding every row (`state::segment`).
    Segment { key: Vec<u8>, value: Vec<u8> },
    /// Nothing: the table is a stream (`Layout::Stream`), its rows only reach the views.
    Nothing,
}

impl TxnWrites {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.meta.is_empty() && self.appends.is_empty()
    }

    /// How many rows these writes put or delete.
    pub fn row_count(&self) -> usize {
        self.rows.len() + self.appends.iter().map(|a| a.changes.len()).sum::<usize>()
    }

    /// Adds the writes of a later statement of the same transaction.
    pub fn merge(&mut self, later: TxnWrites) {
        for (key, write) in later.rows {
            self.record(key, write);
        }
        self.tables.extend(later.tables);
        self.meta.extend(later.meta);
        self.appends.extend(later.appends);
    }

    /// Records a write, keeping INSERT semantics when a row inserted by this transaction is
    /// later updated (the key still must not exist outside the transaction).
    pub fn record(&mut self, key: Vec<u8>, write: RowWrite) {
        use std::collections::btree_map::Entry;
        match self.rows.entry(key) {
            Entry::Vacant(e) => {
                e.insert(write);
            }
            Entry::Occupied(mut e) => {
                let merged = match (e.get(), write) {
                    (RowWrite::Insert(_), RowWrite::Put(v)) => RowWrite::Insert(v),
                    (RowWrite::Insert(_), RowWrite::Delete) => {
                        e.remove();
                        return;
                    }
                    (RowWrite::Delete, RowWrite::Insert(v)) => RowWrite::Put(v),
                    (_, w) => w,
                };
                e.insert(merged);
            }
        }
    }
}

/// A catalog change committed with the epoch.
pub struct DdlChange {
    /// The catalog version the change was computed from; refused (40001) if it moved.
    pub base_version: u64,
    pub catalog: Catalog,
    pub batch: WriteBatch,
    /// Dataflows of views this change creates: backfilled in the same epoch.
    pub created_views: Vec<ViewDataflow>,
    /// Views this change drops.
    pub dropped_views: Vec<u32>,
}

/// What the coordinator thread is asked to do.
// Nearly every message is a commit: boxing it would add an allocation per commit for nothing.
#[allow(clippy::large_enum_variant)]
enum Request {
    Commit(CommitRequest),
    /// Commit what was queued before, then stop (see [`Coordinator::shutdown`]).
    Stop,
}

struct CommitRequest {
    snapshot_epoch: Epoch,
    writes: TxnWrites,
    ddl: Option<DdlChange>,
    reply: oneshot::Sender<Result<Epoch>>,
}

/// Counts open snapshots per epoch, so conflict bookkeeping older than all of them can go.
#[derive(Default)]
struct OpenSnapshots(Mutex<BTreeMap<Epoch, usize>>);

/// Keeps a snapshot registered while alive.
pub struct SnapshotGuard {
    epoch: Epoch,
    open: Arc<OpenSnapshots>,
}

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        let mut m = self.open.0.lock().expect("lock");
        if let Some(n) = m.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.epoch);
            }
        }
    }
}

/// Handle to the commit coordinator (cheap to clone via `Arc`).
pub struct Coordinator {
    queue: mpsc::UnboundedSender<Request>,
    current: Arc<RwLock<Arc<Committed>>>,
    open: Arc<OpenSnapshots>,
    /// The coordinator thread, until [`Coordinator::shutdown`] joins it.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Coordinator {
    /// The committed state of `store` (bootstrapping a new store), before the coordinator runs.
    pub fn open_state(store: &Arc<dyn StateStore>) -> Result<Committed> {
        let snapshot = store.snapshot();
        let epoch = match snapshot.get(&keys::epoch_key())? {
            Some(b) => u64::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| Error::internal("corrupt epoch record"))?,
            ),
            None => 0,
        };
        let catalog = Catalog::load(snapshot.as_ref())?;
        let (snapshot, epoch) = if epoch == 0 {
            // A new store: persist the bootstrap catalog as epoch 1.
            let mut batch = WriteBatch::default();
            catalog.bootstrap_writes(&mut batch);
            batch.put(keys::epoch_key(), 1u64.to_be_bytes().to_vec());
            store.commit(batch, true)?;
            (store.snapshot(), 1)
        } else {
            (snapshot, epoch)
        };
        Ok(Committed {
            epoch,
            snapshot,
            catalog: Arc::new(catalog),
            committed_at_micros: now_micros(),
            reads: Arc::default(),
        })
    }

    /// Starts the coordinator thread over `state` (from [`Coordinator::open_state`]), maintaining
    /// the given view dataflows; `history` replays streams for the views created over them.
    pub fn start(
        store: Arc<dyn StateStore>,
        state: Committed,
        views: Vec<ViewDataflow>,
        history: Arc<dyn StreamHistory>,
        sync: bool,
    ) -> Result<Arc<Coordinator>> {
        let reads = Arc::new(ColumnReads::of(&views));
        let current = Arc::new(RwLock::new(Arc::new(Committed {
            reads: reads.clone(),
            ..state
        })));
        // Free memory goes back to the system once the epochs stop (`crate::memory`).
        let watched = Arc::downgrade(&current);
        let epoch = move || watched.upgrade().map(|c| c.read().expect("lock").epoch);
        if let Err(e) = crate::memory::trim_when_idle(epoch) {
            tracing::warn!("cannot start the memory trim thread: {e}");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let open = Arc::new(OpenSnapshots::default());
        let worker = Worker {
            reads,
            store,
            sync,
            current: current.clone(),
            open: open.clone(),
            last_write: HashMap::new(),
            views: views.into_iter().map(|v| (v.view, v)).collect(),
            history,
            written: Default::default(),
        };
        let thread = std::thread::Builder::new()
            .name("freshet-commit".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| Error::io("cannot start the commit thread", e))?;
        Ok(Arc::new(Coordinator {
            queue: tx,
            current,
            open,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Commits the transactions already queued, then stops the coordinator thread and waits
    /// for it, so that nothing writes to the store any more (later commits fail: "the commit
    /// coordinator has stopped"); then lets the store finish its background work. A process
    /// that exits while the thread or the store's background jobs still run aborts in RocksDB.
    pub async fn shutdown(&self) {
        let Some(thread) = self.thread.lock().expect("lock").take() else {
            return;
        };
        let _ = self.queue.send(Request::Stop);
        if tokio::task::spawn_blocking(move || thread.join()).await.is_err() {
            tracing::error!("the commit thread did not stop cleanly");
        }
    }

    /// The latest committed epoch.
    pub fn current(&self) -> Arc<Committed> {
        self.current.read().expect("lock").clone()
    }

    /// The latest committed epoch, registered as open until the guard drops.
    pub fn pin(&self) -> (Arc<Committed>, SnapshotGuard) {
        let c = self.current();
        *self.open.0.lock().expect("lock").entry(c.epoch).or_default() += 1;
        let guard = SnapshotGuard {
            epoch: c.epoch,
            open: self.open.clone(),
        };
        (c, guard)
    }

    /// Commits a transaction read at `snapshot_epoch`; returns the epoch it committed in, once
    /// that epoch is durable.
    pub async fn commit(&self, snapshot_epoch: Epoch, writes: TxnWrites, ddl: Option<DdlChange>) -> Result<Epoch> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Request::Commit(CommitRequest {
                snapshot_epoch,
                writes,
                ddl,
                reply,
            }))
            .map_err(|_| Error::internal("the commit coordinator has stopped"))?;
        rx.await
            .map_err(|_| Error::internal("the commit coordinator has stopped"))?
    }
}

struct Worker {
    store: Arc<dyn StateStore>,
    sync: bool,
    current: Arc<RwLock<Arc<Committed>>>,
    open: Arc<OpenSnapshots>,
    /// Key → epoch of its last write, for conflict checks (pruned below the oldest snapshot).
    last_write: HashMap<Vec<u8>, Epoch>,
    /// The dataflow of every materialized view, by view id (id order is dependency order).
    views: BTreeMap<u32, ViewDataflow>,
    /// The columns `views` read (recomputed when views come and go).
    reads: Arc<ColumnReads>,
    history: Arc<dyn StreamHistory>,
    /// The last committed epoch that wrote each relation, for the operators' contexts.
    written: Arc<RelationWrites>,
}

/// Queued requests committed together as one epoch, at most.
const MAX_GROUP: usize = 1024;
/// Rows one epoch takes from queued requests, at most (a larger request is an epoch of its
/// own). Grouping lets many small transactions share one fsync; but a source that outruns
/// view maintenance queues requests of its full batch size (a Nexmark stream: 20,000 events),
/// and merging up to four of them made epochs of 80,000 events whose transient buffers (the
/// changes, each operator's deltas, the write batch) were all alive at once: 25-50 MiB more
/// peak memory on Nexmark q5 and q7 (see BENCHMARKS.md).
const MAX_GROUP_ROWS: usize = 20_000;

/// What a queue holds next.
enum Queued<T> {
    Request(T),
    Stop,
    Empty,
}

/// The requests of the next epoch: `first`, then those already queued (`queued`) while there
/// are fewer than [`MAX_GROUP`] and their `rows` stay within [`MAX_GROUP_ROWS`]. Returns the
/// group, the request that would have taken it past the rows (the next group's first), and
/// whether a stop was read (after the group: it is committed first).
fn next_group<T>(
    first: T,
    rows: impl Fn(&T) -> usize,
    mut queued: impl FnMut() -> Queued<T>,
) -> (Vec<T>, Option<T>, bool) {
    let mut total = rows(&first);
    let mut group = vec![first];
    while group.len() < MAX_GROUP && total < MAX_GROUP_ROWS {
        match queued() {
            Queued::Request(r) => {
                total += rows(&r);
                if total > MAX_GROUP_ROWS {
                    return (group, Some(r), false);
                }
                group.push(r);
            }
            Queued::Stop => return (group, None, true),
            Queued::Empty => break,
        }
    }
    (group, None, false)
}

impl Worker {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        // A request that would have taken its group past `MAX_GROUP_ROWS`: the next group's
        // first.
        let mut carried = None;
        loop {
            let first = match carried.take() {
                Some(r) => r,
                None => match rx.blocking_recv() {
                    Some(Request::Commit(r)) => r,
                    Some(Request::Stop) | None => break,
                },
            };
            let queued = || match rx.try_recv() {
                Ok(Request::Commit(r)) => Queued::Request(r),
                Ok(Request::Stop) => Queued::Stop,
                Err(_) => Queued::Empty,
            };
            let (group, next, stopping) = next_group(first, |r| r.writes.row_count(), queued);
            carried = next;
            // A bug in an operator must not take the whole server down: the epoch fails, its
            // buffered state is dropped, and the coordinator goes on.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit_group(group)));
            if outcome.is_err() {
                tracing::error!("epoch processing panicked; the epoch was not committed");
                for v in self.views.values_mut() {
                    v.abort();
                }
            }
            if stopping {
                break;
            }
        }
        // Requests still queued get "the coordinator has stopped" when `rx` drops.
        drop(rx);
        self.views.clear();
        self.store.close();
    }

    fn commit_group(&mut self, group: Vec<CommitRequest>) {
        // DDL commits alone (a created view backfills from everything committed before it).
        let mut segment = Vec::new();
        for req in group {
            if req.ddl.is_some() {
                self.commit_segment(std::mem::take(&mut segment));
                self.commit_segment(vec![req]);
            } else {
                segment.push(req);
            }
        }
        self.commit_segment(segment);
    }

    /// Commits `segment` as one epoch. If maintaining the views fails, the requests are retried
    /// one per epoch so that only the offending one fails.
    fn commit_segment(&mut self, segment: Vec<CommitRequest>) {
        if segment.is_empty() {
            return;
        }
        let single = segment.len() == 1;
        match self.try_commit(segment) {
            Ok(()) => {}
            Err((requests, e)) => {
                if single {
                    for r in requests {
                        let _ = r.reply.send(Err(e.clone()));
                    }
                } else {
                    tracing::warn!(error = %e, requests = requests.len(), "epoch failed; retrying its requests one by one");
                    for r in requests {
                        self.commit_segment(vec![r]);
                    }
                }
            }
        }
    }

    #[allow(clippy::result_large_err)]
    fn try_commit(&mut self, segment: Vec<CommitRequest>) -> std::result::Result<(), (Vec<CommitRequest>, Error)> {
        let prev = self.current.read().expect("lock").clone();
        let epoch = prev.epoch + 1;
        let mut catalog = prev.catalog.clone();
        let mut batch = WriteBatch::default();
        // Writes accepted so far in this epoch: key → new value.
        let mut overlay: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        // Row changes of tables that views read: table → (old, new) values.
        let mut table_changes: BTreeMap<u32, Vec<RowChange>> = BTreeMap::new();
        // Rows appended to such tables (new keys: no old values).
        let mut appended: BTreeMap<u32, Vec<Changes>> = BTreeMap::new();
        let watched: std::collections::HashSet<u32> = self.views.values().flat_map(|v| v.sources()).collect();
        let mut accepted: Vec<CommitRequest> = Vec::with_capacity(segment.len());
        let mut created: Vec<ViewDataflow> = Vec::new();
        let mut last_write_updates: Vec<Vec<u8>> = Vec::new();
        // The relations whose rows this epoch writes, and whether it changes the catalog.
        let mut written: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
        let mut catalog_changed = false;
        for mut req in segment {
            if let Err(e) = self.validate(&req, &prev, &catalog, &overlay, epoch) {
                let _ = req.reply.send(Err(e));
                continue;
            }
            written.extend(req.writes.tables.keys().copied());
            written.extend(req.writes.appends.iter().map(|a| a.table));
            if let Some(ddl) = req.ddl.as_mut() {
                catalog_changed = true;
                batch.ops.extend(std::mem::take(&mut ddl.batch.ops));
                catalog = Arc::new(std::mem::take(&mut ddl.catalog));
                created.extend(std::mem::take(&mut ddl.created_views));
            }
            // Copied, not taken: if the epoch fails, the request is retried with its writes.
            for (k, w) in &req.writes.rows {
                let table = table_of_key(k);
                written.extend(table);
                if table.is_some_and(|t| watched.contains(&t)) {
                    let old = match overlay.get(k) {
                        Some(v) => v.clone(),
                        None => match prev.snapshot.get(k) {
                            Ok(v) => v,
                            Err(e) => return Err((accepted.into_iter().chain([req]).collect(), e)),
                        },
                    };
                    table_changes
                        .entry(table.expect("checked"))
                        .or_default()
                        .push((old, w.value().map(|v| v.to_vec())));
                }
                overlay.insert(k.clone(), w.value().map(|v| v.to_vec()));
                last_write_updates.push(k.clone());
                match w {
                    RowWrite::Insert(v) | RowWrite::Put(v) => batch.put(k.clone(), v.clone()),
                    RowWrite::Delete => batch.delete(k.clone()),
                }
            }
            for a in &req.writes.appends {
                match &a.store {
                    AppendStore::Rows { keys: ks, values } => {
                        for (k, v) in ks.iter().zip(values.iter()) {
                            batch.put(keys::row_key(a.table, k.as_ref()), v.as_ref().to_vec());
                        }
                    }
                    AppendStore::Segment { key, value } => batch.put(key.clone(), value.clone()),
                    AppendStore::Nothing => {}
                }
                if watched.contains(&a.table) {
                    appended.entry(a.table).or_default().push(a.changes.clone());
                }
            }
            for (k, v) in &req.writes.meta {
                batch.put(k.clone(), v.clone());
            }
            accepted.push(req);
        }
        if accepted.is_empty() {
            return Ok(());
        }
        // Dropped views stop being maintained.
        let mut views_changed = !created.is_empty();
        for req in &accepted {
            if let Some(ddl) = &req.ddl {
                for v in &ddl.dropped_views {
                    views_changed |= self.views.remove(v).is_some();
                }
            }
        }
        let ctx = EpochContext {
            snapshot: prev.snapshot.clone(),
            store: self.store.clone(),
            epoch,
            written: self.written.clone(),
        };
        if let Err(e) = self.maintain_views(&catalog, &ctx, table_changes, appended, created, &mut batch) {
            // Throw away the operators' buffered state of the failed epoch.
            for v in self.views.values_mut() {
                v.abort();
            }
            return Err((accepted, e));
        }
        batch.put(keys::epoch_key(), epoch.to_be_bytes().to_vec());
        if let Err(e) = self.store.commit(batch, self.sync) {
            tracing::error!(epoch, error = %e, "epoch commit failed");
            // The state mirrors already hold this epoch's writes: reload them from the store.
            for v in self.views.values_mut() {
                v.abort();
            }
            for req in accepted {
                let _ = req.reply.send(Err(Error::io("commit failed", &e)));
            }
            return Ok(());
        }
        for k in last_write_updates {
            self.last_write.insert(k, epoch);
        }
        drop(ctx);
        Arc::make_mut(&mut self.written).record(epoch, written, catalog_changed);
        if views_changed {
            self.reads = Arc::new(ColumnReads::of(self.views.values()));
        }
        let committed = Arc::new(Committed {
            epoch,
            snapshot: self.store.snapshot(),
            catalog,
            committed_at_micros: now_micros(),
            reads: self.reads.clone(),
        });
        *self.current.write().expect("lock") = committed;
        for req in accepted {
            let _ = req.reply.send(Ok(epoch));
        }
        self.prune(epoch);
        Ok(())
    }

    /// Runs every view over this epoch's changes and writes view rows and operator state.
    fn maintain_views(
        &mut self,
        catalog: &Arc<Catalog>,
        ctx: &EpochContext,
        table_changes: BTreeMap<u32, Vec<RowChange>>,
        mut appended: BTreeMap<u32, Vec<Changes>>,
        created: Vec<ViewDataflow>,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let mut deltas: std::collections::HashMap<u32, Changes> = std::collections::HashMap::new();
        for (table_id, changes) in table_changes {
            if let Some(t) = catalog.table_by_id(table_id) {
                appended.entry(table_id).or_default().push(table_delta(t, &changes)?);
            }
        }
        for (table_id, mut parts) in appended {
            let Some(t) = catalog.table_by_id(table_id) else {
                continue;
            };
            let delta = if parts.len() == 1 {
                parts.pop().expect("one part")
            } else {
                Changes::concat(&t.visible_schema, &parts)?
            };
            deltas.insert(table_id, delta);
        }
        let mut view_rows: HashMap<Vec<u8>, i64> = HashMap::new();
        if !deltas.is_empty() {
            for (id, df) in self.views.iter_mut() {
                if !df.sources().iter().any(|s| deltas.contains_key(s)) {
                    continue;
                }
                let out = df.run(&deltas, ctx, false)?;
                if let Some(v) = catalog.view_by_id(*id) {
                    let out = apply_view_delta(v, &out, ctx, &mut view_rows, &mut df.stored_rows, batch)?;
                    deltas.insert(*id, out);
                }
            }
        }
        for mut df in created {
            // Backfill: the full current contents of every source.
            let mut full: std::collections::HashMap<u32, Changes> = std::collections::HashMap::new();
            for s in df.sources() {
                full.insert(s, relation_contents(catalog, s, ctx, &*self.history)?);
            }
            let out = df.run(&full, ctx, true)?;
            if let Some(v) = catalog.view_by_id(df.view) {
                apply_view_delta(v, &out, ctx, &mut view_rows, &mut df.stored_rows, batch)?;
            }
            self.views.insert(df.view, df);
        }
        for df in self.views.values_mut() {
            df.flush(ctx, batch)?;
        }
        Ok(())
    }

    fn validate(
        &self,
        req: &CommitRequest,
        prev: &Committed,
        catalog: &Arc<Catalog>,
        overlay: &HashMap<Vec<u8>, Option<Vec<u8>>>,
        epoch: Epoch,
    ) -> Result<()> {
        if let Some(ddl) = &req.ddl {
            if ddl.base_version != catalog.version {
                return Err(Error::user(
                    SqlState::SERIALIZATION_FAILURE,
                    "could not serialize access due to a concurrent catalog change",
                ));
            }
        }
        if let Some(source) = req.writes.source {
            if catalog.source_by_id(source).is_none() {
                return Err(Error::user(
                    SqlState::UNDEFINED_OBJECT,
                    "the source of these changes was dropped",
                ));
            }
        }
        // Stream rows built before a view that reads more of the stream was created: the
        // source is restarted with the wider set and generates them again.
        if let Some(a) = req
            .writes
            .appends
            .iter()
            .find(|a| !self.reads.covered_by(a.table, &a.present))
        {
            return Err(Error::External {
                state: SqlState::SERIALIZATION_FAILURE,
                message: format!(
                    "rows of stream {} lack columns a view created since reads",
                    catalog
                        .table_by_id(a.table)
                        .map_or_else(|| a.table.to_string(), |t| t.qualified_name())
                ),
                retryable: true,
            });
        }
        for (table, version) in &req.writes.tables {
            match catalog.table_by_id(*table) {
                Some(t) if t.def.version == *version => {}
                Some(t) => {
                    return Err(Error::user(
                        SqlState::SERIALIZATION_FAILURE,
                        format!(
                            "could not serialize access: table {} was altered concurrently",
                            t.qualified_name()
                        ),
                    ))
                }
                None if req.ddl.is_some() => {}
                None => {
                    return Err(Error::user(
                        SqlState::UNDEFINED_TABLE,
                        "the table written by this transaction was dropped concurrently",
                    ))
                }
            }
        }
        if req.writes.source.is_some() {
            return Ok(());
        }
        for (k, w) in &req.writes.rows {
            // Written by a committed epoch newer than the snapshot, or by an earlier request of
            // this epoch (which no snapshot can have seen).
            let written_after = overlay.contains_key(k)
                || match self.last_write.get(k) {
                    Some(e) => *e > req.snapshot_epoch,
                    None => false,
                };
            if !written_after {
                continue;
            }
            if matches!(w, RowWrite::Insert(_)) {
                let exists = match overlay.get(k) {
                    Some(present) => present.is_some(),
                    None => prev.snapshot.get(k)?.is_some(),
                };
                if exists {
                    return Err(Error::user(
                        SqlState::UNIQUE_VIOLATION,
                        "duplicate key value violates unique constraint (inserted by a concurrent transaction)",
                    ));
                }
            }
            return Err(Error::user(
                SqlState::SERIALIZATION_FAILURE,
                format!("could not serialize access due to concurrent update (epoch {epoch})"),
            ));
        }
        Ok(())
    }

    fn prune(&mut self, epoch: Epoch) {
        if self.last_write.len() < 100_000 {
            return;
        }
        let oldest = self
            .open
            .0
            .lock()
            .expect("lock")
            .keys()
            .next()
            .copied()
            .unwrap_or(epoch);
        self.last_write.retain(|_, e| *e > oldest);
    }
}

/// The table id of a table-row key.
fn table_of_key(k: &[u8]) -> Option<u32> {
    if k.first() != Some(&keys::TABLE_ROWS) || k.len() < 5 {
        return None;
    }
    Some(u32::from_be_bytes([k[1], k[2], k[3], k[4]]))
}

/// The visible-column changes of a table from (old, new) stored values.
fn table_delta(table: &crate::catalog::Table, changes: &[RowChange]) -> Result<Changes> {
    if table.def.layout == Layout::Segments {
        return segment_delta(&table.visible_schema, changes);
    }
    let mut values: Vec<&[u8]> = Vec::new();
    let mut weights: Vec<i64> = Vec::new();
    for (old, new) in changes {
        if old == new {
            continue;
        }
        if let Some(o) = old {
            values.push(o);
            weights.push(-1);
        }
        if let Some(n) = new {
            values.push(n);
            weights.push(1);
        }
    }
    let visible: Vec<usize> = (0..table.def.columns.len())
        .filter(|i| !table.def.columns[*i].hidden)
        .collect();
    if values.is_empty() {
        return Ok(Changes::empty(table.visible_schema.clone()));
    }
    let cols = table.row_codec.decode(values)?;
    let cols: Vec<_> = visible.iter().map(|i| cols[*i].clone()).collect();
    let batch = datafusion::arrow::array::RecordBatch::try_new(table.visible_schema.clone(), cols)?;
    Changes::new(batch, weights)?.consolidate()
}

/// The changes of an append-only relation from (old, new) segment values: every row of an old
/// segment deleted, every row of a new one inserted.
fn segment_delta(schema: &SchemaRef, changes: &[RowChange]) -> Result<Changes> {
    let mut parts = Vec::new();
    for (old, new) in changes {
        if old == new {
            continue;
        }
        for (value, weight) in [(old, -1), (new, 1)] {
            if let Some(v) = value {
                parts.push(Changes::uniform(segment::decode(v, schema)?, weight)?);
            }
        }
    }
    let all = Changes::concat(schema, &parts)?;
    // Only a segment replaced or deleted (a truncate) can cancel rows out.
    if changes.iter().any(|(old, _)| old.is_some()) {
        all.consolidate()
    } else {
        Ok(all)
    }
}

/// Every row of a table or view, as insertions (a stream's replayed by `history`).
fn relation_contents(catalog: &Catalog, id: u32, ctx: &EpochContext, history: &dyn StreamHistory) -> Result<Changes> {
    if let Some(t) = catalog.table_by_id(id) {
        if t.def.layout == Layout::Stream {
            return history.replay(catalog, t, &*ctx.snapshot);
        }
        let (from, to) = keys::table_range(id);
        if t.def.layout == Layout::Segments {
            return segment_contents(&t.visible_schema, ctx, &from, &to);
        }
        let mut rows = Vec::new();
        for kv in ctx.snapshot.scan(&from, &to) {
            rows.push((None, Some(kv?.1.to_vec())));
        }
        return table_delta(t, &rows);
    }
    if let Some(v) = catalog.view_by_id(id) {
        let (from, to) = keys::view_range(id);
        if v.def.layout == Layout::Segments {
            return segment_contents(&v.schema, ctx, &from, &to);
        }
        if v.def.layout == Layout::Groups {
            let mut parts = Vec::new();
            super::view_groups::read(v, &*ctx.snapshot, usize::MAX, |batch, counts| {
                parts.push(Changes::new(batch, counts)?);
                Ok(true)
            })?;
            return Changes::concat(&v.schema, &parts);
        }
        let mut rows: Vec<Box<[u8]>> = Vec::new();
        let mut weights = Vec::new();
        for kv in ctx.snapshot.scan(&from, &to) {
            let (k, c) = kv?;
            rows.push(k);
            weights.push(super::operator::decode_i64(&c));
        }
        let n = from.len();
        if rows.is_empty() {
            return Ok(Changes::empty(v.schema.clone()));
        }
        let cols = v.row_codec.decode(rows.iter().map(|r| &r[n..]))?;
        let batch = datafusion::arrow::array::RecordBatch::try_new(v.schema.clone(), cols)?;
        return Changes::new(batch, weights);
    }
    Err(Error::internal(format!("relation {id} read by a view does not exist")))
}

/// Applies a view's changes to its stored rows; returns them cast to the view's types.
fn apply_view_delta(
    view: &crate::catalog::View,
    delta: &Changes,
    ctx: &EpochContext,
    counts: &mut HashMap<Vec<u8>, i64>,
    stored_rows: &mut StoredRows,
    batch: &mut WriteBatch,
) -> Result<Changes> {
    if delta.is_empty() {
        return Ok(Changes::empty(view.schema.clone()));
    }
    let cols_of = |delta: &Changes| super::ops::cast_to_fields(delta.columns().iter().cloned(), view.schema.fields());
    let cols = cols_of(delta)?;
    if view.def.layout == Layout::Segments {
        if delta.weights().values().iter().any(|w| *w <= 0) {
            // Only a retraction cancelled within the epoch; anything else is refused there.
            let delta = delta.consolidate()?;
            return append_view_segment(view, cols_of(&delta)?, &delta, ctx, batch);
        }
        return append_view_segment(view, cols, delta, ctx, batch);
    }
    let rows = view.row_codec.encode(&cols)?;
    // The graph's output is not consolidated: equal rows are summed here, on the encoding the
    // view's keys need anyway.
    let live = super::ops::consolidate_encoded(&rows, delta.weights().values());
    if view.def.layout == Layout::Groups {
        super::view_groups::apply(view, &cols, &rows, &live, ctx, stored_rows, batch)?;
        return live_changes(view, cols, &live);
    }
    let prefix = keys::view_prefix(view.def.id);
    let row_keys: Vec<Vec<u8>> = live
        .iter()
        .map(|(i, _)| {
            let mut k = prefix.clone();
            k.extend_from_slice(rows.row(*i as usize).as_ref());
            k
        })
        .collect();
    // The stored counts of the rows not seen earlier in this epoch that the view may hold,
    // in one batched read.
    stored_rows.load(&*ctx.snapshot, view.def.id, true)?;
    let hashes: Vec<u64> = row_keys.iter().map(|k| stored_rows.hash(k)).collect();
    let mut unseen: Vec<&[u8]> = row_keys
        .iter()
        .zip(&hashes)
        .filter(|(k, h)| !counts.contains_key(*k) && stored_rows.may_hold(**h))
        .map(|(k, _)| k.as_slice())
        .collect();
    unseen.sort_unstable();
    unseen.dedup();
    // Not kept in the block cache: a view row is read when it changes, and a changed row is
    // a new key (the row is the key), so the blocks read are seldom read again; cached, they
    // filled up to 84 MiB of Nexmark q16's peak (10k rows changing every epoch).
    let stored = ctx.snapshot.multi_get_uncached(&unseen)?;
    for (k, v) in unseen.iter().zip(stored) {
        counts.insert(k.to_vec(), v.map(|v| super::operator::decode_i64(&v)).unwrap_or(0));
    }
    for ((k, (_, w)), h) in row_keys.into_iter().zip(&live).zip(hashes) {
        let old = counts.get(&k).copied().unwrap_or(0);
        let new = old + w;
        if new < 0 {
            return Err(Error::internal(format!(
                "materialized view {} would hold a row {} times",
                view.def.name, new
            )));
        }
        if new == 0 {
            batch.delete(k.clone());
        } else {
            batch.put(k.clone(), new.to_be_bytes().to_vec());
        }
        stored_rows.changed(h, old, new);
        counts.insert(k, new);
    }
    live_changes(view, cols, &live)
}

/// The changes `live` (row of `cols`, weight) of a view, as `Changes` in the view's schema.
fn live_changes(
    view: &crate::catalog::View,
    cols: Vec<datafusion::arrow::array::ArrayRef>,
    live: &[(u32, i64)],
) -> Result<Changes> {
    let data = datafusion::arrow::array::RecordBatch::try_new(view.schema.clone(), cols)?;
    let weights: Vec<i64> = live.iter().map(|(_, w)| *w).collect();
    if live.len() == data.num_rows() && live.iter().enumerate().all(|(j, (i, _))| *i as usize == j) {
        return Changes::new(data, weights);
    }
    let idx: datafusion::arrow::array::UInt32Array = live.iter().map(|(i, _)| *i).collect();
    Changes::new(datafusion::arrow::compute::take_record_batch(&data, &idx)?, weights)
}

/// Appends a view's insertions as one segment keyed by the epoch (an append-only view gets at
/// most one delta per epoch).
fn append_view_segment(
    view: &crate::catalog::View,
    cols: Vec<datafusion::arrow::array::ArrayRef>,
    delta: &Changes,
    ctx: &EpochContext,
    batch: &mut WriteBatch,
) -> Result<Changes> {
    let weights = delta.weights().values();
    if let Some(w) = weights.iter().find(|w| **w <= 0) {
        return Err(Error::internal(format!(
            "append-only materialized view {} received a change of weight {w}",
            view.def.name
        )));
    }
    let data = datafusion::arrow::array::RecordBatch::try_new(view.schema.clone(), cols)?;
    // A row inserted n times is stored n times.
    let rows = if weights.iter().all(|w| *w == 1) {
        data.clone()
    } else {
        let idx: Vec<u32> = weights
            .iter()
            .enumerate()
            .flat_map(|(i, w)| std::iter::repeat_n(i as u32, *w as usize))
            .collect();
        datafusion::arrow::compute::take_record_batch(&data, &datafusion::arrow::array::UInt32Array::from(idx))?
    };
    let mut key = keys::view_prefix(view.def.id);
    key.extend_from_slice(&ctx.epoch.to_be_bytes());
    batch.put(key, segment::encode(0, &rows)?);
    Changes::new(data, weights.to_vec())
}

/// Every row of an append-only relation stored as segments under `[from, to)`.
fn segment_contents(schema: &SchemaRef, ctx: &EpochContext, from: &[u8], to: &[u8]) -> Result<Changes> {
    let mut parts = Vec::new();
    for kv in ctx.snapshot.scan(from, to) {
        parts.push(Changes::uniform(segment::decode(&kv?.1, schema)?, 1)?);
    }
    Changes::concat(schema, &parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups queued requests (each its row count) as the worker does, from a queue that ends
    /// in `end`.
    fn groups(requests: &[usize], end: Queued<usize>) -> Vec<Vec<usize>> {
        let mut queue: std::collections::VecDeque<usize> = requests.iter().copied().collect();
        let mut end = Some(end);
        let mut out = Vec::new();
        let mut carried = None;
        while let Some(first) = carried.take().or_else(|| queue.pop_front()) {
            let queued = || match queue.pop_front() {
                Some(r) => Queued::Request(r),
                None => end.take().unwrap_or(Queued::Empty),
            };
            let (group, next, stop) = next_group(first, |r| *r, queued);
            out.push(group);
            carried = next;
            if stop {
                break;
            }
        }
        out
    }

    #[test]
    fn an_epoch_takes_queued_requests_up_to_its_rows() {
        // Small transactions share an epoch; full batches of a source that outruns maintenance
        // are an epoch each; a request larger than the limit is alone.
        assert_eq!(groups(&[1, 1, 1], Queued::Empty), [vec![1, 1, 1]]);
        assert_eq!(
            groups(&[18_000, 18_000, 2_000, 5_000], Queued::Empty),
            [vec![18_000], vec![18_000, 2_000], vec![5_000]]
        );
        assert_eq!(groups(&[50_000, 1], Queued::Empty), [vec![50_000], vec![1]]);
        assert_eq!(groups(&[5_000; 5], Queued::Empty), [vec![5_000; 4], vec![5_000]]);
        // At most MAX_GROUP requests.
        assert_eq!(groups(&[0; MAX_GROUP + 1], Queued::Empty).len(), 2);
        // A stop read while grouping ends the work after that group, a held-back request first.
        assert_eq!(groups(&[1, 2], Queued::Stop), [vec![1, 2]]);
        assert_eq!(groups(&[19_000, 2_000], Queued::Stop), [vec![19_000], vec![2_000]]);
    }
}
