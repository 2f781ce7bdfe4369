//! Durable state: the [`StateStore`] trait, its RocksDB implementation, an in-memory store for unit
//! tests, and the key layout shared by tables, views and operator state.
//!
//! Invariant: everything of one epoch is written by ONE [`WriteBatch`] (`commit`), so a reader that
//! takes a [`StateSnapshot`] sees exactly one committed epoch, and a crash never leaves half an
//! epoch behind. No RocksDB type appears in these signatures.

pub mod keys;
pub mod memory;
pub mod rocks;
pub mod row_codec;
pub mod segment;

use std::sync::Arc;

use crate::error::Result;

/// One key/value pair read from a store.
pub type KeyValue = (Box<[u8]>, Box<[u8]>);

/// An ordered list of writes applied atomically, in one flat buffer: each write is a tag byte
/// and its key, then its value (a put) or range end (a range delete), each after its u32
/// length. One growing allocation for all of an epoch's writes, not a key and a value
/// allocated (and freed) per write: a view's rows and its operators' state are written here
/// every epoch.
#[derive(Default, Debug, Clone)]
pub struct WriteBatch {
    buf: Vec<u8>,
    len: usize,
}

/// One write of a [`WriteBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOp<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
    /// Deletes every key in `[from, to)`.
    DeleteRange(&'a [u8], &'a [u8]),
}

const PUT: u8 = 0;
const DELETE: u8 = 1;
const DELETE_RANGE: u8 = 2;

impl WriteBatch {
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.push(PUT, key.as_ref(), Some(value.as_ref()));
    }
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.push(DELETE, key.as_ref(), None);
    }
    pub fn delete_range(&mut self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) {
        self.push(DELETE_RANGE, from.as_ref(), Some(to.as_ref()));
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Adds `later`'s writes after these.
    pub fn append(&mut self, later: WriteBatch) {
        if self.buf.is_empty() {
            *self = later;
        } else {
            self.buf.extend_from_slice(&later.buf);
            self.len += later.len;
        }
    }

    fn push(&mut self, tag: u8, key: &[u8], second: Option<&[u8]>) {
        let part = |buf: &mut Vec<u8>, b: &[u8]| {
            let n = u32::try_from(b.len()).expect("a key or value under 4 GiB");
            buf.extend_from_slice(&n.to_le_bytes());
            buf.extend_from_slice(b);
        };
        self.buf.push(tag);
        part(&mut self.buf, key);
        if let Some(b) = second {
            part(&mut self.buf, b);
        }
        self.len += 1;
    }

    /// The writes, in order.
    pub(crate) fn ops(&self) -> impl Iterator<Item = WriteOp<'_>> {
        let mut rest = self.buf.as_slice();
        std::iter::from_fn(move || {
            let (&tag, after) = rest.split_first()?;
            rest = after;
            let mut part = || {
                let (n, after) = rest.split_at(4);
                let n = u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize;
                let (b, after) = after.split_at(n);
                rest = after;
                b
            };
            let key = part();
            Some(match tag {
                PUT => WriteOp::Put(key, part()),
                DELETE => WriteOp::Delete(key),
                _ => WriteOp::DeleteRange(key, part()),
            })
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_batch_gives_back_its_writes_in_order() {
        let mut a = WriteBatch::default();
        a.put(b"k1", b"v1");
        a.delete(vec![0u8; 3]);
        a.put(b"", b"");
        let mut b = WriteBatch::default();
        b.delete_range(b"a", b"b");
        b.put(vec![7u8; 300], vec![9u8; 70_000]);
        a.append(b);
        assert_eq!(a.len(), 5);
        let ops: Vec<WriteOp> = a.ops().collect();
        assert_eq!(
            ops,
            [
                WriteOp::Put(b"k1", b"v1"),
                WriteOp::Delete(&[0, 0, 0]),
                WriteOp::Put(b"", b""),
                WriteOp::DeleteRange(b"a", b"b"),
                WriteOp::Put(&[7; 300], &[9; 70_000]),
            ]
        );
        let mut empty = WriteBatch::default();
        assert!(empty.is_empty() && empty.ops().next().is_none());
        empty.append(a.clone());
        assert_eq!(empty.ops().count(), 5);
    }
}
