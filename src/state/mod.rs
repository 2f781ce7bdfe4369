//! Durable state: the [`StateStore`] trait, its RocksDB implementation, an in-memory store for unit
//! tests, and the key layout shared by tables, views and operator state.
//!
//! Invariant: everything of one epoch is written by ONE [`WriteBatch`] (`commit`), so a reader that
//! takes a [`StateSnapshot`] sees exactly one committed epoch, and a crash never leaves half an
//! epoch behind. No RocksDB type appears in these signatures.

pub mod groups;
pub mod keys;
pub mod memory;
pub mod rocks;
pub mod row_codec;
pub mod segment;

use std::sync::Arc;

use crate::error::Result;

/// One key/value pair read from a store.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// An ordered list of writes applied atomically.
#[derive(Default, Debug, Clone)]
pub struct WriteBatch {
    pub(crate) ops: Vec<WriteOp>,
}

#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Deletes every key in `[from, to)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

impl WriteBatch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(WriteOp::Put(key, value));
    }
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(WriteOp::Delete(key));
    }
    pub fn delete_range(&mut self, from: Vec<u8>, to: Vec<u8>) {
        self.ops.push(WriteOp::DeleteRange(from, to));
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A durable, ordered key/value store with atomic batches and consistent snapshots.
pub trait StateStore: Send + Sync + 'static {
    /// A point-in-time view of everything committed so far.
    fn snapshot(&self) -> Arc<dyn StateSnapshot>;
    /// Applies `batch` atomically; with `sync`, returns only once it is durable (WAL fsync).
    fn commit(&self, batch: WriteBatch, sync: bool) -> Result<()>;
    /// Stops background work (flushes, compactions) before the process exits; reads still
    /// work, nothing is written after it.
    fn close(&self) {}
}

/// A consistent, immutable read view of a [`StateStore`].
pub trait StateSnapshot: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The values of `keys` (sorted ascending, no duplicates), in the same order: one batched
    /// read instead of one read per key.
    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    /// [`StateSnapshot::multi_get`] of keys unlikely to be read again soon: what it reads
    /// from files is not kept in the store's block cache.
    fn multi_get_uncached(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>> {
        self.multi_get(keys)
    }
    /// Key/value pairs with `from <= key < to`, in key order.
    fn scan<'a>(&'a self, from: &[u8], to: &[u8]) -> Box<dyn Iterator<Item = Result<KeyValue>> + Send + 'a>;
    /// The last key/value pair with `from <= key < to`.
    fn last(&self, from: &[u8], to: &[u8]) -> Result<Option<KeyValue>>;
}
