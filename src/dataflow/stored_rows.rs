//! [`StoredRows`]: which rows a materialized view stored one key per row holds (layout
//! `Rows`: key = the row, value = its multiplicity), or which groups a view stored by group
//! holds (`Groups`), as a multiset of key hashes kept in memory.
//!
//! Applying a view's changes adds each changed row's weight to its stored count, which had to
//! be read first. Most changed rows of a join or top-N view are new, and reading a key that is
//! not there still searches the memtable and every level of the store; with the hashes, a row
//! whose hash is absent has count 0 without a read, and only the others are read (in one
//! batched read). About 16 bytes per stored row; loaded by one scan of the view's keys the
//! first time the view changes after a start, and dropped when an epoch fails (its changes may
//! have reached it), to be loaded again.

use std::hash::BuildHasher;

use datafusion::common::HashMap;

use super::operator::decode_i64;
use crate::error::Result;
use crate::state::{keys, StateSnapshot};

#[derive(Default)]
pub struct StoredRows {
    /// Hash of a stored key → how many stored keys have it. Its hasher, which
    /// [`StoredRows::hash`] uses, stays the same for the life of the view's dataflow.
    hashes: HashMap<u64, u32>,
    loaded: bool,
}

impl StoredRows {
    /// Loads the hashes of view `view`'s stored keys if they are not loaded; `counted`: each
    /// value is a multiplicity and only keys of a positive one are held (`Layout::Rows`),
    /// otherwise every key is (`Layout::Groups`).
    pub fn load(&mut self, snapshot: &dyn StateSnapshot, view: u32, counted: bool) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        self.hashes.clear();
        let (from, to) = keys::view_range(view);
        for kv in snapshot.scan(&from, &to) {
            let (k, v) = kv?;
            if !counted || decode_i64(&v) > 0 {
                let h = self.hash(&k);
                *self.hashes.entry(h).or_insert(0) += 1;
            }
        }
        self.loaded = true;
        Ok(())
    }

    /// The hash of key `key`, for [`StoredRows::may_hold`] and [`StoredRows::changed`].
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hashes.hasher().hash_one(key)
    }

    /// False if no stored row has the key of hash `hash` (its count is 0: no need to read it).
    /// True when not loaded.
    pub fn may_hold(&self, hash: u64) -> bool {
        !self.loaded || self.hashes.contains_key(&hash)
    }

    /// Records that the stored count of the key of hash `hash` went from `old` to `new`.
    pub fn changed(&mut self, hash: u64, old: i64, new: i64) {
        if !self.loaded {
            return;
        }
        if old <= 0 && new > 0 {
            *self.hashes.entry(hash).or_insert(0) += 1;
        } else if old > 0 && new <= 0 {
            if let Some(n) = self.hashes.get_mut(&hash) {
                *n -= 1;
                if *n == 0 {
                    self.hashes.remove(&hash);
                }
            }
        }
    }

    /// Forgets the hashes (the next [`StoredRows::load`] reads them again).
    pub fn forget(&mut self) {
        self.hashes = HashMap::with_hasher(self.hashes.hasher().clone());
        self.loaded = false;
    }
}
