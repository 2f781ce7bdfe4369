//! [`StateTable`]: the keyed state of one operator, kept in the store and mirrored in memory.
//!
//! The writes of an epoch reach the store at the barrier, when [`StateTable::flush`] puts them
//! in the epoch's `WriteBatch`, which commits together with the table rows and view rows of
//! the same epoch. Reads see this epoch's writes over the last committed state.
//!
//! The state is also mirrored in memory, loaded from the store on the first read, so that an
//! operator's reads cost a map lookup rather than a store read. A loaded mirror takes an
//! epoch's writes as they happen, and the epoch's log record is built beside it
//! ([`state_log::EpochRecord`]); a table not loaded (or spilled) keeps them in a buffer
//! (`dirty`) read before the store, until the barrier. All mirrors share one
//! budget ([`set_cache_budget`], `freshet server --state-cache-mb`): a table whose mirror would
//! exceed it is *spilled* and reads the store instead, with batched read-ahead
//! ([`StateTable::prefetch`]). The store stays the truth: if an epoch fails after its writes
//! reached the mirror, [`StateTable::abort`] drops the mirror and the next read reloads it.
//!
//! Writes go to the mirror only when this epoch's buffer is empty: a table loaded by a read
//! after the epoch's first writes were buffered keeps buffering until the barrier, so that a
//! key's writes are never split between the two.
//!
//! A mirrored table writes its epoch's changes as one log record and checkpoints itself from
//! time to time ([`super::state_log`]); a spilled one keeps one store key per entry, which it
//! reads back. A mirror that outgrows the budget rewrites its table per key before spilling.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::operator::EpochContext;
use super::state_index::Index;
use super::state_log::{self, Checkpoint, EpochRecord};
use super::state_runs::Runs;
use crate::error::{Error, Result};
use crate::state::{keys, WriteBatch};

/// Bytes all mirrors together may hold.
static BUDGET: AtomicUsize = AtomicUsize::new(2 << 30);
/// Bytes all mirrors together hold now.
static USED: AtomicUsize = AtomicUsize::new(0);
/// Bookkeeping bytes counted per mirrored entry besides its key and value.
const ENTRY_OVERHEAD: usize = 64;
/// A logged table checkpoints once its logs since the last checkpoint hold more bytes than
/// its mirror, and this many at least: checkpoints then rewrite each byte of state about
/// twice, and loading reads at most twice the table.
const CHECKPOINT_MIN_BYTES: usize = 64 << 10;

/// Sets the bytes all state mirrors together may hold (0: every table reads the store).
pub fn set_cache_budget(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
}

/// Bytes all state mirrors together hold now.
pub fn cache_used() -> usize {
    USED.load(Ordering::Relaxed)
}

/// Reserves `bytes` of the shared budget; false (nothing reserved) if it would be exceeded.
fn reserve(bytes: usize) -> bool {
    let budget = BUDGET.load(Ordering::Relaxed);
    USED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
        (used + bytes <= budget).then_some(used + bytes)
    })
    .is_ok()
}

/// Counts `bytes` against the budget whether or not they fit (a logged table must load).
fn force_reserve(bytes: usize) {
    USED.fetch_add(bytes, Ordering::Relaxed);
}

fn release(bytes: usize) {
    USED.fetch_sub(bytes, Ordering::Relaxed);
}

/// The in-memory copy of a table's committed entries.
enum Mirror {
    /// Not read yet (or dropped by [`StateTable::abort`]).
    Unloaded,
    Loaded(Loaded),
    /// Over the budget: reads go to the store, which holds one key per entry.
    Spilled,
}

/// A loaded mirror. Its bytes are released from the budget when it is dropped.
struct Loaded {
    /// Every committed entry (keys without the table prefix), but an additive table's.
    entries: Index,
    /// An additive table's entries (`entries` is then empty).
    runs: Option<Runs>,
    /// Bytes reserved for them.
    bytes: usize,
    /// The store holds a checkpoint or logs of this table (not only per-key entries).
    logged: bool,
    /// The store holds per-key entries of this table (the next checkpoint deletes them).
    per_key: bool,
    /// Bytes of log records since the last checkpoint.
    log_bytes: usize,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        release(self.bytes);
    }
}

impl Loaded {
    /// Applies one write to the entries; false if a new entry did not fit in the budget (it
    /// is kept all the same).
    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> bool {
        let (group, rest) = self.entries.split(key);
        self.apply_write(group, rest, value).0
    }

    /// [`Loaded::apply`] of the key `group` then `rest`, split as the entries split it; also
    /// tells whether the key had an entry before.
    fn apply_write(&mut self, group: &[u8], rest: &[u8], value: Option<&[u8]>) -> (bool, bool) {
        let old = match value {
            Some(v) => self.entries.insert_parts(group, rest, Some(v)),
            None => self.entries.remove_parts(group, rest),
        };
        let fit = self.account(group.len() + rest.len(), old, value.map(|v| v.len()));
        (fit, old.is_some())
    }

    /// Adds `delta` to the i64 counter under the key `group` then `rest` (removing it at
    /// zero), finding it once; returns (old, new, whether it fit in the budget, whether it had
    /// an entry).
    fn add_count(&mut self, group: &[u8], rest: &[u8], delta: i64) -> (i64, i64, bool, bool) {
        let counts = std::cell::Cell::new((0, 0));
        let old = self.entries.update_parts(group, rest, delta < 0, |v| {
            let old = v.map_or(0, decode_i64);
            counts.set((old, old + delta));
            (old + delta != 0).then(|| (old + delta).to_be_bytes())
        });
        let (old_count, new_count) = counts.get();
        let fit = self.account(group.len() + rest.len(), old, (new_count != 0).then_some(8));
        (old_count, new_count, fit, old.is_some())
    }

    /// Calls `f(group, rest, value)` for every entry (in runs: `rest` empty), until it fails.
    fn try_for_each<E>(&self, mut f: impl FnMut(&[u8], &[u8], Option<&[u8]>) -> Result<(), E>) -> Result<(), E> {
        match &self.runs {
            Some(runs) => runs.try_for_each_from(&[], &[], |k, n| f(k, &[], Some(&n.to_be_bytes())).map(|()| true)),
            None => self.entries.try_for_each(f),
        }
    }

    /// Adds `deltas` to an additive table's runs; false if they did not fit in the budget
    /// (they are kept all the same).
    fn add_to_runs(&mut self, deltas: Vec<(&[u8], i64)>) -> bool {
        let runs = self.runs.as_mut().expect("an additive table");
        let before = runs.bytes();
        runs.add(deltas);
        let after = runs.bytes();
        if after <= before {
            release(before - after);
            self.bytes -= before - after;
            return true;
        }
        self.bytes += after - before;
        if reserve(after - before) {
            true
        } else {
            force_reserve(after - before);
            false
        }
    }

    /// What the logs are weighed against for a checkpoint: the mirror's bytes, or an additive
    /// table's bytes uncompressed (its runs are prefix-compressed: weighed as they are held,
    /// a growing table checkpointed twice as often, for twice the bytes written on Nexmark q7).
    fn checkpoint_bytes(&self) -> usize {
        self.runs.as_ref().map_or(self.bytes, Runs::whole_bytes)
    }

    /// The entries as runs (an additive table, as it loads).
    fn make_runs(&mut self) {
        let mut keys: Vec<(Vec<u8>, i64)> = Vec::with_capacity(self.entries.len());
        let Ok(()) = self.entries.try_for_each(|group, rest, v| {
            if let Some(v) = v {
                keys.push(([group, rest].concat(), decode_i64(v)));
            }
            Ok::<(), std::convert::Infallible>(())
        });
        self.entries = Index::new(Some(0));
        release(self.bytes);
        self.bytes = 0;
        self.runs = Some(Runs::default());
        self.add_to_runs(keys.iter().map(|(k, n)| (k.as_slice(), *n)).collect());
    }

    /// Accounts for the entry of a `key_len`-byte key going from a value of `old` bytes to
    /// one of `new` bytes (`None`: no entry); false if the new entry did not fit in the
    /// budget (it is counted all the same).
    fn account(&mut self, key_len: usize, old: Option<usize>, new: Option<usize>) -> bool {
        if let Some(old) = old {
            let size = key_len + old + ENTRY_OVERHEAD;
            release(size);
            self.bytes -= size;
        }
        let Some(new) = new else {
            return true;
        };
        let size = key_len + new + ENTRY_OVERHEAD;
        self.bytes += size;
        if reserve(size) {
            true
        } else {
            force_reserve(size);
            false
        }
    }
}

/// A keyed state table of one operator: keys under `prefix`, written at the barrier.
pub struct StateTable {
    prefix: Vec<u8>,
    /// Where the table's logs and checkpoints are (`state_log`).
    log_prefix: Vec<u8>,
    /// Bytes before the group length in this table's keys (`state_index`); `None`: keys
    /// are kept in one ordered group.
    group_offset: Option<usize>,
    /// This epoch's writes while the mirror is not loaded (keys without the table prefix;
    /// `None` deletes).
    dirty: Index,
    /// The log record of this epoch's writes made to the loaded mirror.
    record: EpochRecord,
    /// An additive table (see [`StateTable::additive`]).
    additive: bool,
    /// An additive table's log record of this epoch's additions to the loaded mirror (its
    /// entries, without the marker).
    deltas: Vec<u8>,
    /// A write to the mirror this epoch did not fit in the budget: the table spills at the
    /// barrier.
    over_budget: bool,
    /// Committed values read ahead for this epoch when spilled ([`StateTable::prefetch`]).
    read_ahead: HashMap<Vec<u8>, Option<Vec<u8>>>,
    mirror: RefCell<Mirror>,
}

impl StateTable {
    /// The state of operator `op` of relation `relation`.
    pub fn new(relation: u32, op: u32, part: u8) -> StateTable {
        StateTable {
            prefix: keys::operator_prefix(relation, op, part),
            log_prefix: keys::operator_log_prefix(relation, op, part),
            group_offset: Some(0),
            dirty: Index::new(Some(0)),
            record: EpochRecord::default(),
            additive: false,
            deltas: Vec::new(),
            over_budget: false,
            read_ahead: HashMap::new(),
            mirror: RefCell::new(Mirror::Unloaded),
        }
    }

    /// For keys that start with `offset` bytes (a tag) before their group's length (see
    /// `state_index`): lookups and group scans stay hashed.
    pub fn with_group_offset(self, offset: usize) -> StateTable {
        self.grouped(Some(offset))
    }

    /// For a table scanned in key order across all its keys (not group by group): one
    /// ordered group.
    pub fn ordered(self) -> StateTable {
        self.grouped(None)
    }

    /// For a table of i64 counters written by [`StateTable::add_counts`] and read by range,
    /// rarely (a join side's rows when the other side changes seldom): mirrored as sorted runs
    /// (`state_runs`), an epoch's additions sorted and merged instead of hashed one by one,
    /// and logged as additions. Point reads and single writes work, slower than hashed.
    pub fn additive(mut self) -> StateTable {
        self.additive = true;
        self
    }

    pub fn is_additive(&self) -> bool {
        self.additive
    }

    fn grouped(mut self, group_offset: Option<usize>) -> StateTable {
        self.group_offset = group_offset;
        self.dirty = Index::new(group_offset);
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

    /// Loads the mirror from the committed snapshot if it is not loaded (or spilled) yet: the
    /// per-key entries, then the current checkpoint, then the logs after it. A table without
    /// logs spills if it does not fit in the budget; a logged one loads all the same (its
    /// entries are only in the logs) and spills at its next flush.
    fn ensure_loaded(&self, ctx: &EpochContext) -> Result<()> {
        if !matches!(*self.mirror.borrow(), Mirror::Unloaded) {
            return Ok(());
        }
        let checkpoint = match ctx.snapshot.get(&state_log::current_key(&self.log_prefix))? {
            Some(v) => Some(Checkpoint::decode(&v)?),
            None => None,
        };
        let (from, to) = state_log::logs(&self.log_prefix);
        let mut logs = ctx.snapshot.scan(&from, &to).peekable();
        let logged = checkpoint.is_some() || logs.peek().is_some();
        let mut loaded = Loaded {
            entries: Index::new(self.group_offset),
            runs: None,
            bytes: 0,
            logged,
            per_key: false,
            log_bytes: 0,
        };
        let n = self.prefix.len();
        let mut spilled = !logged && BUDGET.load(Ordering::Relaxed) == 0;
        for kv in ctx.snapshot.scan(&self.prefix, &self.prefix_end()) {
            if spilled {
                break;
            }
            let (k, v) = kv?;
            loaded.per_key = true;
            if !loaded.apply(&k[n..], Some(&v[..])) && !logged {
                spilled = true;
            }
        }
        if spilled {
            *self.mirror.borrow_mut() = Mirror::Spilled;
            return Ok(());
        }
        // An additive table loads into runs: its per-key entries (rare: written while spilled),
        // then each checkpoint chunk and log record added as one batch. Per-key entries,
        // checkpoints and logs never overlap but as additions (a checkpoint deletes the
        // per-key entries, a spill the checkpoints and logs), so adding them all is exact, and
        // loading holds the runs and one batch, not a hashed copy of the table as well.
        if self.additive {
            loaded.make_runs();
        }
        if let Some(c) = checkpoint {
            for i in 0..c.chunks {
                let chunk = ctx
                    .snapshot
                    .get(&state_log::chunk_key(&self.log_prefix, c.epoch, i))?
                    .ok_or_else(|| Error::internal("an operator state checkpoint lost a chunk"))?;
                let entries = state_log::decode(&chunk)?;
                if loaded.runs.is_some() {
                    loaded.add_to_runs(entries.iter().map(|(k, v)| (*k, v.map_or(0, decode_i64))).collect());
                    continue;
                }
                for (k, v) in entries {
                    loaded.apply(k, v);
                }
            }
        }
        for kv in logs {
            let (k, record) = kv?;
            if checkpoint.is_some_and(|c| state_log::log_epoch(&self.log_prefix, &k).is_ok_and(|e| e <= c.epoch)) {
                continue;
            }
            loaded.log_bytes += record.len();
            match state_log::decode_record(&record)? {
                state_log::Record::Values(_) if loaded.runs.is_some() => {
                    return Err(Error::internal("an additive operator state table has a log of values"));
                }
                state_log::Record::Values(entries) => {
                    for (k, v) in entries {
                        loaded.apply(k, v);
                    }
                }
                state_log::Record::Additions(entries) if loaded.runs.is_some() => {
                    loaded.add_to_runs(entries);
                }
                state_log::Record::Additions(entries) => {
                    for (k, delta) in entries {
                        let (group, rest) = loaded.entries.split(k);
                        loaded.add_count(group, rest, delta);
                    }
                }
            }
        }
        *self.mirror.borrow_mut() = Mirror::Loaded(loaded);
        Ok(())
    }

    /// True if the mirror holds every committed entry.
    fn loaded(&self, ctx: &EpochContext) -> Result<bool> {
        self.ensure_loaded(ctx)?;
        Ok(matches!(*self.mirror.borrow(), Mirror::Loaded { .. }))
    }

    pub fn get(&self, ctx: &EpochContext, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(ctx, key, |v| v.map(|v| v.to_vec()))
    }

    /// `f` of the value of `key` as this epoch sees it (read in place where it is in memory).
    pub fn read<T>(&self, ctx: &EpochContext, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> T) -> Result<T> {
        if !self.dirty.is_empty() {
            if let Some(v) = self.dirty.get(key) {
                return Ok(f(v));
            }
        }
        if self.loaded(ctx)? {
            if let Mirror::Loaded(Loaded { entries, runs, .. }) = &*self.mirror.borrow() {
                if let Some(runs) = runs {
                    let n = runs.get(key);
                    return Ok(f((n != 0).then_some(&n.to_be_bytes()[..])));
                }
                return Ok(f(entries.get(key).flatten()));
            }
        }
        match self.read_ahead.get(key) {
            Some(v) => Ok(f(v.as_deref())),
            None => Ok(f(ctx.snapshot.get(&self.full(key))?.as_deref())),
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
        self.write(key, Some(value.as_slice()));
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.write(key, None);
    }

    /// Sets `key` to `value` (`None`: deletes it): in the mirror if it is loaded and nothing
    /// was buffered this epoch, else in the buffer.
    fn write(&mut self, key: &[u8], value: Option<&[u8]>) {
        if self.dirty.is_empty() {
            if let Mirror::Loaded(Loaded { runs: Some(runs), .. }) = self.mirror.get_mut() {
                let delta = value.map_or(0, decode_i64) - runs.get(key);
                self.add_to_runs_logged(vec![(key, delta)]);
                return;
            }
            if let Mirror::Loaded(loaded) = self.mirror.get_mut() {
                let (group, rest) = loaded.entries.split(key);
                let (fit, existed) = loaded.apply_write(group, rest, value);
                self.over_budget |= !fit;
                self.record.write(group, rest, value, existed);
                return;
            }
        }
        self.dirty.insert(key, value);
    }

    /// Adds `deltas` to a loaded additive table's runs and logs them.
    fn add_to_runs_logged(&mut self, deltas: Vec<(&[u8], i64)>) {
        let Mirror::Loaded(loaded) = self.mirror.get_mut() else {
            unreachable!("loaded")
        };
        for (key, delta) in &deltas {
            if *delta != 0 {
                state_log::encode_addition(&mut self.deltas, key, *delta);
            }
        }
        self.over_budget |= !loaded.add_to_runs(deltas);
    }

    /// Whether the mirror is loaded as runs (an additive table) and takes this epoch's writes.
    fn runs_take_writes(&self, ctx: &EpochContext) -> Result<bool> {
        Ok(self.additive
            && self.dirty.is_empty()
            && self.loaded(ctx)?
            && matches!(&*self.mirror.borrow(), Mirror::Loaded(Loaded { runs: Some(_), .. })))
    }

    /// Adds `delta` to the i64 counter under `key` (deleting it at zero); returns (old, new).
    pub fn add_count(&mut self, ctx: &EpochContext, key: &[u8], delta: i64) -> Result<(i64, i64)> {
        if delta != 0 && self.runs_take_writes(ctx)? {
            let old = self.read(ctx, key, |v| v.map_or(0, decode_i64))?;
            self.add_to_runs_logged(vec![(key, delta)]);
            return Ok((old, old + delta));
        }
        if delta != 0 && self.dirty.is_empty() && self.loaded(ctx)? {
            let Mirror::Loaded(loaded) = self.mirror.get_mut() else {
                unreachable!("loaded")
            };
            let (group, rest) = loaded.entries.split(key);
            let (old, new, fit, existed) = loaded.add_count(group, rest, delta);
            self.over_budget |= !fit;
            let value = new.to_be_bytes();
            self.record
                .write(group, rest, (new != 0).then_some(&value[..]), existed);
            return Ok((old, new));
        }
        let old = self.read(ctx, key, |v| v.map(decode_i64))?.unwrap_or(0);
        let new = old + delta;
        if new == 0 {
            self.delete(key);
        } else {
            self.write(key, Some(&new.to_be_bytes()));
        }
        Ok((old, new))
    }

    /// [`StateTable::add_count`] of each `(key, delta)`, in an order of its own: with the
    /// mirror loaded, by the hash-table bucket of each key's group.
    pub fn add_counts(&mut self, ctx: &EpochContext, mut writes: Vec<(&[u8], i64)>) -> Result<()> {
        if !writes.is_empty() && self.runs_take_writes(ctx)? {
            self.add_to_runs_logged(writes);
            return Ok(());
        }
        if writes.len() > 1 && self.dirty.is_empty() && self.loaded(ctx)? {
            if let Mirror::Loaded(loaded) = self.mirror.get_mut() {
                writes.sort_by_cached_key(|(key, _)| loaded.entries.bucket_of(key));
            }
        }
        for (key, delta) in writes {
            self.add_count(ctx, key, delta)?;
        }
        Ok(())
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
        self.scan_from(ctx, key_prefix, key_prefix, limit)
    }

    /// The first `limit` entries under `key_prefix` whose key is at least `start` (a key
    /// under `key_prefix`), in key order, as [`StateTable::scan_first`] reads them: a range
    /// of one group without reading the entries before it.
    pub fn scan_from(
        &self,
        ctx: &EpochContext,
        key_prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let dirty = self.dirty.scan_from(key_prefix, start, usize::MAX);
        // Each dirty entry hides at most one stored entry.
        let stored_limit = limit.saturating_add(dirty.len());
        if self.loaded(ctx)? {
            if let Mirror::Loaded(Loaded { entries, runs, .. }) = &*self.mirror.borrow() {
                if let Some(runs) = runs {
                    let stored = runs
                        .scan_from(key_prefix, start, stored_limit)
                        .into_iter()
                        .map(|(k, n)| Ok((k, n.to_be_bytes().to_vec())));
                    return merge(stored, dirty.into_iter(), limit);
                }
                let stored = entries
                    .scan_from(key_prefix, start, stored_limit)
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| Ok((k, v.to_vec()))));
                return merge(stored, dirty.into_iter(), limit);
            }
        }
        let end = keys::prefix_end(key_prefix);
        let from = self.full(start);
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

    /// Moves this epoch's writes into the mirror and into `batch`: as one log record if the
    /// table is mirrored (or a checkpoint, when its logs have grown), per key if it is spilled.
    pub fn flush(&mut self, ctx: &EpochContext, batch: &mut WriteBatch) -> Result<()> {
        self.read_ahead.clear();
        if !self.record.is_empty() || !self.deltas.is_empty() || self.over_budget {
            return self.flush_mirrored(ctx, batch);
        }
        if self.dirty.is_empty() {
            return Ok(());
        }
        // The writes of a logged table belong in its log, so its form must be known.
        self.ensure_loaded(ctx)?;
        let mut mirror = self.mirror.borrow_mut();
        let Mirror::Loaded(loaded) = &mut *mirror else {
            let writes = self.dirty.drain();
            self.write_per_key(writes, batch);
            return Ok(());
        };
        if let Some(runs) = &loaded.runs {
            // An additive table: each buffered value becomes the amount that makes it so.
            let mut keys = Vec::new();
            let Ok(()) = self.dirty.try_for_each(|group, rest, v| {
                let key = [group, rest].concat();
                let delta = v.map_or(0, decode_i64) - runs.get(&key);
                if delta != 0 {
                    keys.push((key, delta));
                }
                Ok::<(), std::convert::Infallible>(())
            });
            self.dirty.clear();
            if keys.is_empty() {
                return Ok(());
            }
            let mut record = state_log::additive_record();
            for (key, delta) in &keys {
                state_log::encode_addition(&mut record, key, *delta);
            }
            if !loaded.add_to_runs(keys.iter().map(|(k, d)| (k.as_slice(), *d)).collect()) {
                self.spill(loaded, batch);
                *mirror = Mirror::Spilled;
                return Ok(());
            }
            return self.log(ctx, loaded, record, batch);
        }
        // The writes go to the log record and the mirror straight from the buffer (which
        // splits keys as the mirror does), then the buffer is cleared, keeping its room. The
        // mirror holds every committed entry, so a deletion of a key it does not have (an
        // entry written and deleted within the epoch, as a top-N over an append-only input
        // does with rows that never make its top) changes nothing and is not logged.
        let mut record = Vec::new();
        let mut fits = true;
        let Ok(()) = self.dirty.try_for_each(|group, rest, v| {
            let (fit, existed) = loaded.apply_write(group, rest, v);
            if v.is_some() || existed {
                state_log::encode_entry(&mut record, &[group, rest], v);
            }
            fits &= fit;
            Ok::<(), std::convert::Infallible>(())
        });
        self.dirty.clear();
        if !fits {
            self.spill(loaded, batch);
            *mirror = Mirror::Spilled;
            return Ok(());
        }
        self.log(ctx, loaded, record, batch)
    }

    /// [`StateTable::flush`] of an epoch whose writes went to the loaded mirror.
    fn flush_mirrored(&mut self, ctx: &EpochContext, batch: &mut WriteBatch) -> Result<()> {
        let record = if self.deltas.is_empty() {
            self.record.take()
        } else {
            let mut record = state_log::additive_record();
            record.append(&mut self.deltas);
            record
        };
        let mut mirror = self.mirror.borrow_mut();
        let Mirror::Loaded(loaded) = &mut *mirror else {
            return Err(Error::internal("an operator state mirror was dropped mid-epoch"));
        };
        if std::mem::take(&mut self.over_budget) {
            self.spill(loaded, batch);
            *mirror = Mirror::Spilled;
            return Ok(());
        }
        self.log(ctx, loaded, record, batch)
    }

    /// Puts the epoch's log `record` in `batch` (or a checkpoint, when the logs have grown).
    fn log(&self, ctx: &EpochContext, loaded: &mut Loaded, record: Vec<u8>, batch: &mut WriteBatch) -> Result<()> {
        if record.is_empty() {
            return Ok(());
        }
        loaded.logged = true;
        loaded.log_bytes += record.len();
        if loaded.log_bytes > loaded.checkpoint_bytes().max(CHECKPOINT_MIN_BYTES) {
            self.checkpoint(ctx, loaded, batch)?;
        } else {
            batch.put(state_log::log_key(&self.log_prefix, ctx.epoch), record);
        }
        Ok(())
    }

    /// Writes every entry as one chunked checkpoint at this epoch, replacing the logs, the
    /// older checkpoints and the per-key entries. The chunks go to the store now, one at a
    /// time; `batch` makes them current.
    fn checkpoint(&self, ctx: &EpochContext, loaded: &mut Loaded, batch: &mut WriteBatch) -> Result<()> {
        let epoch = ctx.epoch;
        let mut chunks = 0u32;
        let mut chunk = Vec::new();
        let write = |chunk: &mut Vec<u8>, chunks: &mut u32| -> Result<()> {
            let mut b = WriteBatch::default();
            b.put(
                state_log::chunk_key(&self.log_prefix, epoch, *chunks),
                std::mem::take(chunk),
            );
            ctx.store.commit(b, false)?;
            *chunks += 1;
            Ok(())
        };
        loaded.try_for_each(|group, rest, v| {
            state_log::encode_entry(&mut chunk, &[group, rest], v);
            if chunk.len() >= state_log::CHUNK_BYTES {
                write(&mut chunk, &mut chunks)?;
            }
            Ok::<(), Error>(())
        })?;
        if !chunk.is_empty() {
            write(&mut chunk, &mut chunks)?;
        }
        let (from, to) = state_log::chunks_before(&self.log_prefix, epoch);
        batch.delete_range(from, to);
        let (from, to) = state_log::logs(&self.log_prefix);
        batch.delete_range(from, to);
        if loaded.per_key {
            batch.delete_range(self.prefix.clone(), self.prefix_end());
            loaded.per_key = false;
        }
        batch.put(
            state_log::current_key(&self.log_prefix),
            Checkpoint { epoch, chunks }.encode(),
        );
        loaded.log_bytes = 0;
        Ok(())
    }

    /// Rewrites the table as one store key per entry (and no logs), for reads once spilled.
    fn spill(&self, loaded: &Loaded, batch: &mut WriteBatch) {
        tracing::info!(
            entries = loaded.runs.as_ref().map_or(loaded.entries.len(), |r| r.len()),
            bytes = loaded.bytes,
            "operator state outgrew the state cache (--state-cache-mb): it is read from the store from now on"
        );
        if loaded.logged {
            let (from, to) = state_log::all(&self.log_prefix);
            batch.delete_range(from, to);
        }
        batch.delete_range(self.prefix.clone(), self.prefix_end());
        let mut entries = Vec::new();
        let Ok(()) = loaded.try_for_each(|group, rest, v| {
            entries.push(([group, rest].concat(), v.map(|v| v.to_vec())));
            Ok::<(), std::convert::Infallible>(())
        });
        self.write_per_key(entries, batch);
    }

    /// Writes entries (keys relative to the table) as one store key each, in key order:
    /// RocksDB's memtable inserts sequential keys from a hint, random ones each from the top
    /// of its skip list.
    fn write_per_key(&self, mut entries: Vec<(Vec<u8>, Option<Vec<u8>>)>, batch: &mut WriteBatch) {
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in entries {
            let k = self.full(&k);
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
    }

    /// Forgets this epoch's writes and the mirror (the epoch did not commit: the next read
    /// reloads the committed state).
    pub fn abort(&mut self) {
        self.dirty = Index::new(self.group_offset);
        self.record.clear();
        self.deltas.clear();
        self.over_budget = false;
        self.read_ahead.clear();
        *self.mirror.borrow_mut() = Mirror::Unloaded;
    }
}

/// The first `limit` entries of `stored` (committed, in key order) with `dirty` (this epoch's
/// writes, in key order) applied over them.
fn merge<'d>(
    stored: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
    dirty: impl Iterator<Item = (Vec<u8>, Option<&'d [u8]>)>,
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
                out.push((k, v.to_vec()));
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
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::state::memory::MemoryStore;
    use crate::state::StateStore;

    fn ctx(store: &Arc<MemoryStore>, epoch: u64) -> EpochContext {
        EpochContext {
            snapshot: store.snapshot(),
            store: store.clone(),
            epoch,
            written: Default::default(),
        }
    }

    fn commit(store: &Arc<MemoryStore>, t: &mut StateTable, epoch: u64) {
        let mut batch = WriteBatch::default();
        t.flush(&ctx(store, epoch), &mut batch).unwrap();
        store.commit(batch, false).unwrap();
    }

    #[test]
    fn mirror_matches_the_store() {
        let store = Arc::new(MemoryStore::default());
        let mut t = StateTable::new(7, 1, 0);
        let c = ctx(&store, 1);
        t.put(b"a1", b"x".to_vec());
        t.put(b"a2", b"y".to_vec());
        t.put(b"b1", b"z".to_vec());
        assert_eq!(t.get(&c, b"a1").unwrap(), Some(b"x".to_vec()));
        commit(&store, &mut t, 1);
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
        commit(&store, &mut t, 2);
        let c = ctx(&store, 3);
        let fresh = StateTable::new(7, 1, 0);
        assert_eq!(t.scan_prefix(&c, b"").unwrap(), fresh.scan_prefix(&c, b"").unwrap());
        assert_eq!(t.first_under(&c, b"b").unwrap(), Some((b"b1".to_vec(), b"z".to_vec())));
        assert_eq!(t.get(&c, b"a2").unwrap(), None);
    }

    /// Counters added in bucket order (`add_counts`) end as added one by one, in the mirror
    /// (loaded by the first call) and in the store.
    #[test]
    fn counts_added_in_bucket_order_equal_counts_added_one_by_one() {
        let store = Arc::new(MemoryStore::default());
        let (mut sorted, mut plain) = (StateTable::new(11, 1, 0), StateTable::new(11, 2, 0));
        let key = |g: u32, r: u32| [&4u32.to_be_bytes()[..], &g.to_be_bytes(), &r.to_be_bytes()].concat();
        for epoch in 1..=3u64 {
            let c = ctx(&store, epoch);
            // Groups of one and of many, keys repeated across epochs, deltas that cancel.
            let writes: Vec<(Vec<u8>, i64)> = (0..300u32)
                .map(|i| {
                    (
                        key(i % 37, (i * 7 + epoch as u32) % 11),
                        if i % 5 == 0 { -1 } else { 1 },
                    )
                })
                .collect();
            let refs: Vec<(&[u8], i64)> = writes.iter().map(|(k, d)| (k.as_slice(), *d)).collect();
            sorted.add_counts(&c, refs).unwrap();
            for (k, d) in &writes {
                plain.add_count(&c, k, *d).unwrap();
            }
            for (k, _) in &writes {
                assert_eq!(sorted.get(&c, k).unwrap(), plain.get(&c, k).unwrap());
            }
            for t in [&mut sorted, &mut plain] {
                commit(&store, t, epoch);
            }
        }
        let c = ctx(&store, 4);
        let (a, b) = (StateTable::new(11, 1, 0), StateTable::new(11, 2, 0));
        let all_a = a.scan_prefix(&c, &[]).unwrap();
        assert!(!all_a.is_empty());
        assert_eq!(all_a, b.scan_prefix(&c, &[]).unwrap());
    }

    /// An additive table (sorted runs, logged as additions) holds what a hashed table given
    /// the same writes holds, epoch after epoch: batched additions with repeated keys and
    /// retractions, single additions, puts and deletes (before the mirror loads, buffered, and
    /// after), across checkpoints, reloads from its logs by a fresh table, an aborted epoch,
    /// and read by a table that is not additive.
    #[test]
    fn additive_tables_hold_what_hashed_tables_hold() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let store = Arc::new(MemoryStore::default());
        let additive = || StateTable::new(12, 1, 0).additive();
        let (mut a, mut p) = (additive(), StateTable::new(12, 2, 0));
        let key = |g: u32, r: u32| [&4u32.to_be_bytes()[..], &g.to_be_bytes(), &r.to_be_bytes()].concat();
        for epoch in 1..=80u64 {
            if epoch % 9 == 0 {
                a = additive();
            }
            let c = ctx(&store, epoch);
            let aborted = epoch % 13 == 0;
            // Now and then a put or a delete first: before the mirror loads, it is buffered.
            if epoch % 3 == 0 {
                let k = key(rng.random_range(0..30), rng.random_range(0..9));
                let v: i64 = rng.random_range(0..3);
                for t in [&mut a, &mut p] {
                    if aborted && !t.is_additive() {
                        continue;
                    }
                    if v == 0 {
                        t.delete(&k);
                    } else {
                        t.put(&k, v.to_be_bytes().to_vec());
                    }
                }
            }
            let writes: Vec<(Vec<u8>, i64)> = (0..rng.random_range(0..400))
                .map(|_| {
                    (
                        key(rng.random_range(0..30), rng.random_range(0..9)),
                        rng.random_range(-1..3),
                    )
                })
                .collect();
            let refs: Vec<(&[u8], i64)> = writes.iter().map(|(k, d)| (k.as_slice(), *d)).collect();
            a.add_counts(&c, refs).unwrap();
            if !aborted {
                for (k, d) in &writes {
                    p.add_count(&c, k, *d).unwrap();
                }
            }
            let (k, d) = (key(rng.random_range(0..30), 1), rng.random_range(-2..3));
            let old_a = a.add_count(&c, &k, d).unwrap();
            if !aborted {
                assert_eq!(old_a, p.add_count(&c, &k, d).unwrap());
            }
            if aborted {
                a.flush(&c, &mut WriteBatch::default()).unwrap();
                a.abort();
                continue;
            }
            let g = [&4u32.to_be_bytes()[..], &rng.random_range(0..30u32).to_be_bytes()].concat();
            assert_eq!(
                a.scan_prefix(&c, &g).unwrap(),
                p.scan_prefix(&c, &g).unwrap(),
                "epoch {epoch}"
            );
            assert_eq!(a.get(&c, &k).unwrap(), p.get(&c, &k).unwrap());
            for t in [&mut a, &mut p] {
                commit(&store, t, epoch);
            }
            let c = ctx(&store, epoch + 1);
            let all = p.scan_prefix(&c, &[]).unwrap();
            assert_eq!(a.scan_prefix(&c, &[]).unwrap(), all, "epoch {epoch}");
            // The store as a fresh additive table and a hashed one read it.
            assert_eq!(additive().scan_prefix(&c, &[]).unwrap(), all);
            assert_eq!(StateTable::new(12, 1, 0).scan_prefix(&c, &[]).unwrap(), all);
        }
        let log_prefix = keys::operator_log_prefix(12, 1, 0);
        let (from, to) = state_log::logs(&log_prefix);
        assert!(!stored_keys(&store, &from, &to).is_empty(), "no logs");
        assert!(
            store
                .snapshot()
                .get(&state_log::current_key(&log_prefix))
                .unwrap()
                .is_some(),
            "no checkpoint"
        );
    }

    #[test]
    fn abort_forgets_uncommitted_writes() {
        let store = Arc::new(MemoryStore::default());
        let mut t = StateTable::new(8, 1, 0);
        let c = ctx(&store, 1);
        assert_eq!(t.add_count(&c, b"k", 2).unwrap(), (0, 2));
        commit(&store, &mut t, 1);
        let c = ctx(&store, 2);
        assert_eq!(t.add_count(&c, b"k", 3).unwrap(), (2, 5));
        // The epoch reached the mirror but its batch was never committed.
        t.flush(&c, &mut WriteBatch::default()).unwrap();
        t.abort();
        let c = ctx(&store, 2);
        assert_eq!(t.get(&c, b"k").unwrap().map(|v| decode_i64(&v)), Some(2));
    }

    /// Every key under `from..to` in the store.
    fn stored_keys(store: &Arc<MemoryStore>, from: &[u8], to: &[u8]) -> Vec<Vec<u8>> {
        store
            .snapshot()
            .scan(from, to)
            .map(|kv| kv.unwrap().0.to_vec())
            .collect()
    }

    #[test]
    fn logged_tables_checkpoint_and_reload_over_per_key_entries() {
        let store = Arc::new(MemoryStore::default());
        // Per-key entries, as a table written before logs existed left them.
        let prefix = keys::operator_prefix(9, 2, 1);
        let mut batch = WriteBatch::default();
        let mut expected = BTreeMap::new();
        for i in 0..50u32 {
            let mut k = prefix.clone();
            k.extend_from_slice(&i.to_be_bytes());
            batch.put(k, vec![1; 10]);
            expected.insert(i.to_be_bytes().to_vec(), vec![1u8; 10]);
        }
        store.commit(batch, false).unwrap();
        let log_prefix = keys::operator_log_prefix(9, 2, 1);
        let mut t = StateTable::new(9, 2, 1);
        let mut checkpoints = 0;
        for epoch in 2..60u64 {
            let c = ctx(&store, epoch);
            assert_eq!(t.scan_prefix(&c, b"").unwrap().len(), expected.len());
            // Rewrite, delete and add keys: logs outgrow the table and checkpoints replace them.
            for j in 0..300u32 {
                let key = ((epoch as u32 * 7 + j * 13) % 400).to_be_bytes().to_vec();
                if j % 5 == 0 {
                    t.delete(&key);
                    expected.remove(&key);
                } else {
                    let v = vec![epoch as u8; 1 + (j as usize % 40)];
                    t.put(&key, v.clone());
                    expected.insert(key, v);
                }
            }
            // Counters, updated in place in the mirror, some reaching zero (deleted).
            for j in 0..50u32 {
                let key = [b"c".as_slice(), &(j % 17).to_be_bytes()].concat();
                let delta = (epoch as i64 + j as i64) % 3 - 1;
                let old = expected.get(&key).map_or(0, |v| decode_i64(v));
                assert_eq!(t.add_count(&c, &key, delta).unwrap(), (old, old + delta));
                if old + delta == 0 {
                    expected.remove(&key);
                } else {
                    expected.insert(key, (old + delta).to_be_bytes().to_vec());
                }
            }
            commit(&store, &mut t, epoch);
            let c = ctx(&store, epoch + 1);
            let fresh = StateTable::new(9, 2, 1);
            let want: Vec<(Vec<u8>, Vec<u8>)> = expected.clone().into_iter().collect();
            assert_eq!(fresh.scan_prefix(&c, b"").unwrap(), want, "epoch {epoch}");
            assert_eq!(t.scan_prefix(&c, b"").unwrap(), want, "epoch {epoch}");
            if let Some(v) = c.snapshot.get(&state_log::current_key(&log_prefix)).unwrap() {
                let cp = Checkpoint::decode(&v).unwrap();
                if cp.epoch == epoch {
                    checkpoints += 1;
                    // The checkpoint replaced the logs, older chunks and per-key entries.
                    let (from, to) = state_log::logs(&log_prefix);
                    assert!(stored_keys(&store, &from, &to).is_empty());
                    let (from, to) = state_log::chunks_before(&log_prefix, epoch);
                    assert!(stored_keys(&store, &from, &to).is_empty());
                    assert!(stored_keys(&store, &prefix, &keys::prefix_end(&prefix).unwrap()).is_empty());
                }
            } else {
                // Before the first checkpoint: the per-key entries are still there.
                assert_eq!(
                    stored_keys(&store, &prefix, &keys::prefix_end(&prefix).unwrap()).len(),
                    50
                );
            }
        }
        assert!(checkpoints >= 3, "{checkpoints} checkpoints");
    }

    /// An entry written and deleted within one epoch leaves nothing in the log; deleting a
    /// committed entry is logged and survives a reload.
    #[test]
    fn deletions_of_entries_never_committed_are_not_logged() {
        let store = Arc::new(MemoryStore::default());
        let log_prefix = keys::operator_log_prefix(10, 1, 0);
        let (from, to) = state_log::logs(&log_prefix);
        let mut t = StateTable::new(10, 1, 0);
        t.put(b"kept", b"1".to_vec());
        commit(&store, &mut t, 1);
        let logs = stored_keys(&store, &from, &to).len();
        assert_eq!(logs, 1);
        let c2 = ctx(&store, 2);
        t.put(b"passing", b"2".to_vec());
        t.delete(b"passing");
        assert_eq!(t.get(&c2, b"passing").unwrap(), None);
        commit(&store, &mut t, 2);
        assert_eq!(
            stored_keys(&store, &from, &to).len(),
            logs,
            "an empty epoch wrote a log record"
        );
        t.delete(b"kept");
        t.put(b"new", b"3".to_vec());
        t.delete(b"passing");
        commit(&store, &mut t, 3);
        let c4 = ctx(&store, 4);
        let fresh = StateTable::new(10, 1, 0);
        assert_eq!(
            fresh.scan_prefix(&c4, b"").unwrap(),
            vec![(b"new".to_vec(), b"3".to_vec())]
        );
        assert_eq!(t.scan_prefix(&c4, b"").unwrap(), fresh.scan_prefix(&c4, b"").unwrap());
    }

    #[test]
    fn a_failed_epoch_leaves_no_trace_of_its_checkpoint() {
        let store = Arc::new(MemoryStore::default());
        let log_prefix = keys::operator_log_prefix(10, 1, 0);
        let mut t = StateTable::new(10, 1, 0);
        // Four epochs of logs, just short of a checkpoint.
        for epoch in 1..=4u64 {
            t.put(b"k", vec![epoch as u8; 15_000]);
            commit(&store, &mut t, epoch);
        }
        assert!(store
            .snapshot()
            .get(&state_log::current_key(&log_prefix))
            .unwrap()
            .is_none());
        // The fifth checkpoints: its chunks reach the store, but the batch naming them never
        // commits.
        let c = ctx(&store, 5);
        t.put(b"k", vec![5; 15_000]);
        t.flush(&c, &mut WriteBatch::default()).unwrap();
        t.abort();
        let (from, to) = state_log::chunks_before(&log_prefix, u64::MAX);
        assert_eq!(stored_keys(&store, &from, &to).len(), 1, "the orphan chunk");
        let c = ctx(&store, 5);
        let fresh = StateTable::new(10, 1, 0);
        assert_eq!(fresh.get(&c, b"k").unwrap(), Some(vec![4; 15_000]));
        assert_eq!(t.get(&c, b"k").unwrap(), Some(vec![4; 15_000]));
        // The retried epoch checkpoints again, and a later checkpoint deletes both.
        t.put(b"k", vec![6; 15_000]);
        commit(&store, &mut t, 5);
        for epoch in 6..=10u64 {
            t.put(b"k", vec![epoch as u8; 15_000]);
            commit(&store, &mut t, epoch);
        }
        assert_eq!(
            stored_keys(&store, &from, &to).len(),
            1,
            "only the current checkpoint's chunk"
        );
        let fresh = StateTable::new(10, 1, 0);
        assert_eq!(fresh.get(&ctx(&store, 11), b"k").unwrap(), Some(vec![10; 15_000]));
    }
}
