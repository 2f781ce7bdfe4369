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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot};

use super::Epoch;
use crate::catalog::Catalog;
use crate::error::{Error, Result, SqlState};
use crate::state::{keys, StateSnapshot, StateStore, WriteBatch};

/// What a reader sees: one committed epoch, its data and its catalog.
pub struct Committed {
    pub epoch: Epoch,
    pub snapshot: Arc<dyn StateSnapshot>,
    pub catalog: Arc<Catalog>,
}

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
}

impl TxnWrites {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
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
    queue: mpsc::UnboundedSender<CommitRequest>,
    current: Arc<RwLock<Arc<Committed>>>,
    open: Arc<OpenSnapshots>,
}

impl Coordinator {
    /// Opens the store's committed state and starts the coordinator thread.
    pub fn start(store: Arc<dyn StateStore>, sync: bool) -> Result<Arc<Coordinator>> {
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
        let current = Arc::new(RwLock::new(Arc::new(Committed {
            epoch,
            snapshot,
            catalog: Arc::new(catalog),
        })));
        let (tx, rx) = mpsc::unbounded_channel();
        let open = Arc::new(OpenSnapshots::default());
        let worker = Worker {
            store,
            sync,
            current: current.clone(),
            open: open.clone(),
            last_write: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("freshet-commit".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| Error::io("cannot start the commit thread", e))?;
        Ok(Arc::new(Coordinator {
            queue: tx,
            current,
            open,
        }))
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
            .send(CommitRequest {
                snapshot_epoch,
                writes,
                ddl,
                reply,
            })
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
}

const MAX_GROUP: usize = 1024;

impl Worker {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<CommitRequest>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<CommitRequest>) {
        let prev = self.current.read().expect("lock").clone();
        let epoch = prev.epoch + 1;
        let mut catalog = prev.catalog.clone();
        let mut batch = WriteBatch::default();
        // Writes accepted so far in this group (later requests must see them).
        let mut overlay: HashMap<Vec<u8>, bool> = HashMap::new();
        let mut accepted = Vec::with_capacity(group.len());
        for req in group {
            match self.validate(&req, &prev, &catalog, &overlay, epoch) {
                Ok(()) => {
                    if let Some(ddl) = req.ddl {
                        batch.ops.extend(ddl.batch.ops);
                        catalog = Arc::new(ddl.catalog);
                    }
                    for (k, w) in req.writes.rows {
                        overlay.insert(k.clone(), w.value().is_some());
                        self.last_write.insert(k.clone(), epoch);
                        match w {
                            RowWrite::Insert(v) | RowWrite::Put(v) => batch.put(k, v),
                            RowWrite::Delete => batch.delete(k),
                        }
                    }
                    accepted.push(req.reply);
                }
                Err(e) => {
                    let _ = req.reply.send(Err(e));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        batch.put(keys::epoch_key(), epoch.to_be_bytes().to_vec());
        if let Err(e) = self.store.commit(batch, self.sync) {
            tracing::error!(epoch, error = %e, "epoch commit failed");
            for reply in accepted {
                let _ = reply.send(Err(Error::io("commit failed", &e)));
            }
            // The conflict bookkeeping now names an epoch that never committed; being
            // conservative (spurious 40001 at worst) is safe.
            return;
        }
        let committed = Arc::new(Committed {
            epoch,
            snapshot: self.store.snapshot(),
            catalog,
        });
        *self.current.write().expect("lock") = committed;
        for reply in accepted {
            let _ = reply.send(Ok(epoch));
        }
        self.prune(epoch);
    }

    fn validate(
        &self,
        req: &CommitRequest,
        prev: &Committed,
        catalog: &Arc<Catalog>,
        overlay: &HashMap<Vec<u8>, bool>,
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
        for (k, w) in &req.writes.rows {
            let written_after = match self.last_write.get(k) {
                Some(e) => *e > req.snapshot_epoch,
                None => false,
            };
            if !written_after {
                continue;
            }
            if matches!(w, RowWrite::Insert(_)) {
                let exists = match overlay.get(k) {
                    Some(present) => *present,
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
