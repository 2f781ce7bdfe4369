//! [`StateTable`]: the keyed state of one operator, kept in the store and mirrored in memory.
//!
//! Writes of an epoch stay in memory (`dirty`) until the barrier, when [`StateTable::flush`]
//! moves them into the epoch's `WriteBatch`, which commits together with the table rows and view
//! rows of the same epoch. Reads see this epoch's writes over the last committed state.
//!
//! The committed state is also mirrored in memory, loaded from the store on the first read, so
//! that an operator's reads cost a map lookup rather than a store read. All mirrors share one
//! budget ([`set_cache_budget`], `freshet server --state-cache-mb`): a table whose mirror would
//! exceed it is *spilled* and reads the store instead, with batched read-ahead
//! ([`StateTable::prefetch`]). The store stays the truth: if an epoch fails after its writes
//! reached the mirror, [`StateTable::abort`] drops the mirror and the next read reloads it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::operator::EpochContext;
use super::state_index::Index;
use crate::error::Result;
use crate::state::{keys, WriteBatch};

/// Bytes all mirrors together may hold.
static BUDGET: AtomicUsize = AtomicUsize::new(2 << 30);
/// Bytes all mirrors together hold now.
static USED: AtomicUsize = AtomicUsize::new(0);
/// Bookkeeping bytes counted per mirrored entry besides its key and value.
const ENTRY_OVERHEAD: usize = 64;

/// Sets the bytes all state mirrors together may hold (0: every table reads the store).
pub fn set_cache_budget(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
}

/// Bytes all state mirrors together hold now.
pub fn cache_used() -> usize {
    USED.load(Ordering::Relaxed)
}

fn entry_size(k: &[u8], v: &[u8]) -> usize {
    k.len() + v.len() + ENTRY_OVERHEAD
}

/// Reserves `bytes` of the shared budget; false (nothing reserved) if it would be exceeded.
fn reserve(bytes: usize) -> bool {
    let budget = BUDGET.load(Ordering::Relaxed);
    USED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
        (used + bytes <= budget).then_some(used + bytes)
    })
    .is_ok()
}

fn release(bytes: usize) {
    USED.fetch_sub(bytes, Ordering::Relaxed);
}

/// The in-memory copy of a table's committed entries.
enum Mirror {
    /// Not read yet (or dropped by [`StateTable::abort`]).
    Unloaded,
    /// Every committed entry (keys without the table prefix) and the bytes reserved for them.
    Loaded { entries: Index<Vec<u8>>, bytes: usize },
    /// Over the budget: reads go to the store.
    Spilled,
}

/// A keyed state table of one operator: keys under `prefix`, written at the barrier.
pub struct StateTable {
    prefix: Vec<u8>,
    /// Bytes before the group length in this table's keys (`state_index`); `None`: keys
    /// are kept in one ordered group.
    group_offset: Option<usize>,
    /// This epoch's writes (keys without the table prefix; `None` deletes).
    dirty: Index<Option<Vec<u8>>>,
    /// Committed values read ahead for this epoch when spilled ([`StateTable::prefetch`]).
    read_ahead: HashMap<Vec<u8>, Option<Vec<u8>>>,
    mirror: RefCell<Mirror>,
}

impl StateTable {
    /// The state of operator `op` of relation `relation`.
    pub fn new(relation: u32, op: u32, part: u8) -> StateTable {
        StateTable {
            prefix: keys::operator_prefix(relation, op, part),
            group_offset: Some(0),
            dirty: Index::new(Some(0)),
            read_ahead: HashMap::new(),
            mirror: RefCell::new(Mirror::Unloaded),
        }
    }

    /// For keys that start with `offset` bytes (a tag) before their group's length (see
    /// `state_index`): lookups and group scans stay hashed.
    pub fn with_group_offset(mut self, offset: usize) -> StateTable {
        self.group_offset = Some(offset);
        self.dirty = Index::new(self.group_offset);
        self
    }

    /// For a table scanned in key order across all its keys (not group by group): one
    /// ordered group.
    pub fn ordered(mut self) -> StateTable {
        self.group_offset = None;
        self.dirty = Index::new(None);
        self
    }

    fn full(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key);
        k
    }

    fn prefix_end(&self) -> Vec<u8> {
        keys::prefix_end(&self.prefix).unwrap_or_else(|| vec![0xFF; self.prefix.len() + 1])
    }

    /// Loads the mirror from the committed snapshot if it is not loaded (or spilled) yet.
    fn ensure_loaded(&self, ctx: &EpochContext) -> Result<()> {
        if !matches!(*self.mirror.borrow(), Mirror::Unloaded) {
            return Ok(());
        }
        let n = self.prefix.len();
        let mut entries = Index::new(self.group_offset);
        let mut bytes = 0;
        let mut spilled = BUDGET.load(Ordering::Relaxed) == 0;
        for kv in ctx.snapshot.scan(&self.prefix, &self.prefix_end()) {
            if spilled {
                break;
            }
            let (k, v) = kv?;
            let size = entry_size(&k[n..], &v);
            if !reserve(size) {
                spilled = true;
                break;
            }
            bytes += size;
            entries.insert(&k[n..], v.into_vec());
        }
        if spilled {
            release(bytes);
            *self.mirror.borrow_mut() = Mirror::Spilled;
        } else {
            *self.mirror.borrow_mut() = Mirror::Loaded { entries, bytes };
        }
        Ok(())
    }

    /// True if the mirror holds every committed entry.
    fn loaded(&self, ctx: &EpochContext) -> Result<bool> {
        self.ensure_loaded(ctx)?;
        Ok(matches!(*self.mirror.borrow(), Mirror::Loaded { .. }))
    }

    pub fn get(&self, ctx: &EpochContext, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.dirty.get(key) {
            return Ok(v.clone());
        }
        if self.loaded(ctx)? {
            if let Mirror::Loaded { entries, .. } = &*self.mirror.borrow() {
                return Ok(entries.get(key).cloned());
            }
        }
        match self.read_ahead.get(key) {
            Some(v) => Ok(v.clone()),
            None => ctx.snapshot.get(&self.full(key)),
        }
    }

    /// Reads the committed values of `keys` in one batched read, so that the `get`s and
    /// `add_count`s of this epoch that follow find them in memory (a no-op when mirrored).
    pub fn prefetch<'k>(&mut self, ctx: &EpochContext, keys: impl IntoIterator<Item = &'k [u8]>) -> Result<()> {
        if self.loaded(ctx)? {
            return Ok(());
        }
        let mut wanted: Vec<&[u8]> = keys
            .into_iter()
            .filter(|k| self.dirty.get(k).is_none() && !self.read_ahead.contains_key(*k))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let full: Vec<Vec<u8>> = wanted.iter().map(|k| self.full(k)).collect();
        let refs: Vec<&[u8]> = full.iter().map(|k| k.as_slice()).collect();
        let values = ctx.snapshot.multi_get(&refs)?;
        let fetched: Vec<(Vec<u8>, Option<Vec<u8>>)> = wanted.iter().map(|k| k.to_vec()).zip(values).collect();
        self.read_ahead.extend(fetched);
        Ok(())
    }

    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.dirty.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.dirty.insert(key, None);
    }

    /// Adds `delta` to the i64 counter under `key` (deleting it at zero); returns (old, new).
    pub fn add_count(&mut self, ctx: &EpochContext, key: &[u8], delta: i64) -> Result<(i64, i64)> {
        let old = self.get(ctx, key)?.map(|v| decode_i64(&v)).unwrap_or(0);
        let new = old + delta;
        if new == 0 {
            self.delete(key);
        } else {
            self.put(key, new.to_be_bytes().to_vec());
        }
        Ok((old, new))
    }

    /// Entries whose key starts with `key_prefix`, in key order (keys returned without the
    /// table prefix), merging this epoch's writes over the committed state.
    pub fn scan_prefix(&self, ctx: &EpochContext, key_prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_first(ctx, key_prefix, usize::MAX)
    }

    /// The first `limit` entries under `key_prefix` in key order (keys without the table
    /// prefix), merging this epoch's writes over the committed state lazily: O(limit), not
    /// O(state).
    pub fn scan_first(&self, ctx: &EpochContext, key_prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let dirty = self.dirty.scan(key_prefix, usize::MAX);
        // Each dirty entry hides at most one stored entry.
        let stored_limit = limit.saturating_add(dirty.len());
        if self.loaded(ctx)? {
            if let Mirror::Loaded { entries, .. } = &*self.mirror.borrow() {
                let stored = entries
                    .scan(key_prefix, stored_limit)
                    .into_iter()
                    .map(|(k, v)| Ok((k, v.clone())));
                return merge(stored, dirty.into_iter(), limit);
            }
        }
        let end = keys::prefix_end(key_prefix);
        let from = self.full(key_prefix);
        let to = match &end {
            Some(e) => self.full(e),
            None => self.prefix_end(),
        };
        let n = self.prefix.len();
        let stored = ctx
            .snapshot
            .scan(&from, &to)
            .map(|kv| kv.map(|(k, v)| (k[n..].to_vec(), v.into_vec())));
        merge(stored, dirty.into_iter(), limit)
    }

    /// The first entry under `key_prefix` (O(1) reads, not a scan of the prefix).
    pub fn first_under(&self, ctx: &EpochContext, key_prefix: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.scan_first(ctx, key_prefix, 1)?.into_iter().next())
    }

    /// Moves this epoch's writes into `batch` and into the mirror.
    pub fn flush(&mut self, batch: &mut WriteBatch) {
        self.read_ahead.clear();
        let mut mirror = self.mirror.borrow_mut();
        let mut over_budget = false;
        // In key order: RocksDB's memtable inserts sequential keys from a hint, random ones
        // each from the top of its skip list.
        let mut writes = self.dirty.drain();
        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in writes {
            if let Mirror::Loaded { entries, bytes } = &mut *mirror {
                let old = match &v {
                    Some(v) => entries.insert(&k, v.clone()),
                    None => entries.remove(&k),
                };
                if let Some(old) = old {
                    let size = entry_size(&k, &old);
                    release(size);
                    *bytes -= size;
                }
                if let Some(v) = &v {
                    let size = entry_size(&k, v);
                    if reserve(size) {
                        *bytes += size;
                    } else {
                        entries.remove(&k);
                        over_budget = true;
                    }
                }
            }
            let k = self.full(&k);
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        if over_budget {
            if let Mirror::Loaded { bytes, .. } = &*mirror {
                release(*bytes);
            }
            *mirror = Mirror::Spilled;
        }
    }

    /// Forgets this epoch's writes and the mirror (the epoch did not commit: the next read
    /// reloads the committed state).
    pub fn abort(&mut self) {
        self.dirty = Index::new(self.group_offset);
        self.read_ahead.clear();
        let mut mirror = self.mirror.borrow_mut();
        if let Mirror::Loaded { bytes, .. } = &*mirror {
            release(*bytes);
        }
        *mirror = Mirror::Unloaded;
    }
}

impl Drop for StateTable {
    fn drop(&mut self) {
        if let Mirror::Loaded { bytes, .. } = &*self.mirror.borrow() {
            release(*bytes);
        }
    }
}

/// The first `limit` entries of `stored` (committed, in key order) with `dirty` (this epoch's
/// writes, in key order) applied over them.
fn merge<'d>(
    stored: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
    dirty: impl Iterator<Item = (Vec<u8>, &'d Option<Vec<u8>>)>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut stored = stored.peekable();
    let mut dirty = dirty.peekable();
    let mut out = Vec::new();
    while out.len() < limit {
        if let Some(Err(_)) = stored.peek() {
            stored.next().transpose()?;
        }
        let take_dirty = match (stored.peek(), dirty.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(Ok((s, _))), Some((d, _))) => d <= s,
            (Some(Err(_)), _) => unreachable!("errors are returned above"),
        };
        if take_dirty {
            let (k, v) = dirty.next().expect("peeked");
            if matches!(stored.peek(), Some(Ok((s, _))) if *s == k) {
                stored.next();
            }
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        } else {
            out.push(stored.next().expect("peeked")?);
        }
    }
    Ok(out)
}

pub fn decode_i64(v: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    i64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use crate::state::StateStore;

    fn ctx(store: &MemoryStore, epoch: u64) -> EpochContext {
        EpochContext {
            snapshot: store.snapshot(),
            epoch,
        }
    }

    fn commit(store: &MemoryStore, t: &mut StateTable) {
        let mut batch = WriteBatch::default();
        t.flush(&mut batch);
        store.commit(batch, false).unwrap();
    }

    #[test]
    fn mirror_matches_the_store() {
        let store = MemoryStore::default();
        let mut t = StateTable::new(7, 1, 0);
        let c = ctx(&store, 1);
        t.put(b"a1", b"x".to_vec());
        t.put(b"a2", b"y".to_vec());
        t.put(b"b1", b"z".to_vec());
        assert_eq!(t.get(&c, b"a1").unwrap(), Some(b"x".to_vec()));
        commit(&store, &mut t);
        // A second table over the same keys reads the store; both must agree.
        let fresh = StateTable::new(7, 1, 0);
        let c = ctx(&store, 2);
        t.delete(b"a2");
        t.put(b"a0", b"w".to_vec());
        let scanned = t.scan_prefix(&c, b"a").unwrap();
        assert_eq!(
            scanned,
            vec![(b"a0".to_vec(), b"w".to_vec()), (b"a1".to_vec(), b"x".to_vec())]
        );
        assert_eq!(fresh.scan_prefix(&c, b"").unwrap().len(), 3);
        commit(&store, &mut t);
        let c = ctx(&store, 3);
        let fresh = StateTable::new(7, 1, 0);
        assert_eq!(t.scan_prefix(&c, b"").unwrap(), fresh.scan_prefix(&c, b"").unwrap());
        assert_eq!(t.first_under(&c, b"b").unwrap(), Some((b"b1".to_vec(), b"z".to_vec())));
        assert_eq!(t.get(&c, b"a2").unwrap(), None);
    }

    #[test]
    fn abort_forgets_uncommitted_writes() {
        let store = MemoryStore::default();
        let mut t = StateTable::new(8, 1, 0);
        let c = ctx(&store, 1);
        assert_eq!(t.add_count(&c, b"k", 2).unwrap(), (0, 2));
        commit(&store, &mut t);
        let c = ctx(&store, 2);
        assert_eq!(t.add_count(&c, b"k", 3).unwrap(), (2, 5));
        // The epoch reached the mirror but its batch was never committed.
        t.flush(&mut WriteBatch::default());
        t.abort();
        let c = ctx(&store, 2);
        assert_eq!(t.get(&c, b"k").unwrap().map(|v| decode_i64(&v)), Some(2));
    }
}
