//! The [`Operator`] trait and the keyed state operators keep in the store.
//!
//! An operator turns input [`Changes`] into output `Changes`. Stateful operators keep their state
//! in a [`StateTable`]: reads go through the epoch's own writes (kept in memory) to the last
//! committed snapshot; at the barrier [`Operator::flush`] moves those writes into the epoch's
//! `WriteBatch`, which commits together with the table rows and view rows of the same epoch.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::changes::Changes;
use crate::error::Result;
use crate::state::{keys, StateSnapshot, WriteBatch};

/// What an operator sees of the store during one epoch.
pub struct EpochContext {
    /// The last committed state.
    pub snapshot: Arc<dyn StateSnapshot>,
    /// The epoch being computed.
    pub epoch: super::Epoch,
}

/// An incremental operator.
pub trait Operator: Send {
    /// Processes the changes arriving on input `port` (0, or 0/1 for joins).
    fn process(&mut self, port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes>;

    /// End of epoch: writes buffered state into `batch` (no-op for stateless operators).
    fn flush(&mut self, _batch: &mut WriteBatch) {}

    /// A one-line description for `EXPLAIN CREATE MATERIALIZED VIEW`.
    fn describe(&self) -> String;

    /// True if insertions in give only insertions out, whatever came before (filters,
    /// projections, unions): a view of such operators over append-only inputs only gains rows.
    fn append_only(&self) -> bool {
        false
    }
}

/// A keyed state table of one operator: keys under `prefix`, written at the barrier.
pub struct StateTable {
    prefix: Vec<u8>,
    dirty: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Committed values read ahead for this epoch ([`StateTable::prefetch`]); dropped at flush.
    read_ahead: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl StateTable {
    /// The state of operator `op` of relation `relation`.
    pub fn new(relation: u32, op: u32, part: u8) -> StateTable {
        StateTable {
            prefix: keys::operator_prefix(relation, op, part),
            dirty: BTreeMap::new(),
            read_ahead: HashMap::new(),
        }
    }

    fn full(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key);
        k
    }

    pub fn get(&self, ctx: &EpochContext, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = self.full(key);
        match self.dirty.get(&k).or_else(|| self.read_ahead.get(&k)) {
            Some(v) => Ok(v.clone()),
            None => ctx.snapshot.get(&k),
        }
    }

    /// Reads the committed values of `keys` in one batched read, so that the `get`s and
    /// `add_count`s of this epoch that follow find them in memory.
    pub fn prefetch<'k>(&mut self, ctx: &EpochContext, keys: impl IntoIterator<Item = &'k [u8]>) -> Result<()> {
        let mut wanted: Vec<Vec<u8>> = keys
            .into_iter()
            .map(|k| self.full(k))
            .filter(|k| !self.dirty.contains_key(k) && !self.read_ahead.contains_key(k))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let refs: Vec<&[u8]> = wanted.iter().map(|k| k.as_slice()).collect();
        let values = ctx.snapshot.multi_get(&refs)?;
        self.read_ahead.extend(wanted.into_iter().zip(values));
        Ok(())
    }

    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        let k = self.full(key);
        self.dirty.insert(k, Some(value));
    }

    pub fn delete(&mut self, key: &[u8]) {
        let k = self.full(key);
        self.dirty.insert(k, None);
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
    /// table prefix), merging this epoch's writes over the snapshot.
    pub fn scan_prefix(&self, ctx: &EpochContext, key_prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let from = self.full(key_prefix);
        let to = keys::prefix_end(&from).unwrap_or_else(|| vec![0xFF; from.len() + 1]);
        let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for kv in ctx.snapshot.scan(&from, &to) {
            let (k, v) = kv?;
            out.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in self
            .dirty
            .range::<Vec<u8>, _>((Bound::Included(&from), Bound::Excluded(&to)))
        {
            match v {
                Some(v) => {
                    out.insert(k.clone(), v.clone());
                }
                None => {
                    out.remove(k);
                }
            }
        }
        let n = self.prefix.len();
        Ok(out.into_iter().map(|(k, v)| (k[n..].to_vec(), v)).collect())
    }

    /// The first `limit` entries under `key_prefix` in key order (keys without the table
    /// prefix), merging this epoch's writes over the snapshot lazily: O(limit), not O(state).
    pub fn scan_first(&self, ctx: &EpochContext, key_prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let from = self.full(key_prefix);
        let to = keys::prefix_end(&from).unwrap_or_else(|| vec![0xFF; from.len() + 1]);
        let mut stored = ctx.snapshot.scan(&from, &to).peekable();
        let mut dirty = self
            .dirty
            .range::<Vec<u8>, _>((Bound::Included(&from), Bound::Excluded(&to)))
            .peekable();
        let n = self.prefix.len();
        let mut out = Vec::new();
        while out.len() < limit {
            let stored_key = match stored.peek() {
                Some(Ok((k, _))) => Some(k.to_vec()),
                Some(Err(_)) => {
                    stored.next().transpose()?;
                    continue;
                }
                None => None,
            };
            let dirty_key = dirty.peek().map(|(k, _)| (*k).clone());
            let take_dirty = match (&stored_key, &dirty_key) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(s), Some(d)) => d <= s,
            };
            if take_dirty {
                if stored_key == dirty_key {
                    stored.next();
                }
                let (k, v) = dirty.next().expect("peeked");
                if let Some(v) = v {
                    out.push((k[n..].to_vec(), v.clone()));
                }
            } else {
                let (k, v) = stored.next().expect("peeked")?;
                out.push((k[n..].to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// The first entry under `key_prefix` (O(1) reads, not a scan of the prefix).
    pub fn first_under(&self, ctx: &EpochContext, key_prefix: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.scan_first(ctx, key_prefix, 1)?.into_iter().next())
    }

    /// Moves this epoch's writes into `batch`.
    pub fn flush(&mut self, batch: &mut WriteBatch) {
        self.read_ahead.clear();
        for (k, v) in std::mem::take(&mut self.dirty) {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
    }
}

pub fn decode_i64(v: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    i64::from_be_bytes(b)
}
