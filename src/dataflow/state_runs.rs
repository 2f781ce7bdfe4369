//! [`Runs`]: the in-memory layout of an *additive* [`super::state_table::StateTable`], a table
//! of i64 counters that an operator only adds to, an epoch's additions at a time (a join side's
//! rows: (key, row) → multiplicity), and reads a range at a time, rarely.
//!
//! The hashed [`super::state_index::Index`] finds one key in one probe, but inserting millions
//! of new keys into it costs a probe (a cache miss or three in a big table) and an allocation
//! each: a third of Nexmark q7, whose every bid is stored by price. Here, as in DBSP's spine,
//! the counters are sorted *runs*: an epoch's additions are sorted and consolidated into a new
//! run, and a run is merged into the one before it once it is as large (a binary counter: each
//! entry is merged O(log n) times, sequentially, and there are O(log n) runs). A key's count is
//! the sum of its counts in every run; a merge sums them and drops the keys that reach zero.
//! A read seeks each run (a binary search) and merges what it finds.
//!
//! A run is a list of blocks of about [`BLOCK_BYTES`] of entries, so that a merge frees its
//! inputs block by block as it goes, instead of holding both inputs and the whole output. A
//! block at least half full that none of the other run's keys falls among moves to the merged
//! run whole: where new keys come after the old ones (ids, time windows), a merge moves blocks.
//! Entries are prefix-compressed as in RocksDB's blocks: sorted keys share long prefixes
//! (a join side's keys start with the join key's length and value), so each entry keeps only
//! what differs from the key before it, and its count as a varint (almost always 1 byte:
//! rows are mostly added once). Every [`RESTART`]-th entry is whole, for binary search.

use std::cmp::Ordering;

use super::state_index::byte_order;
use super::state_log::put_varint;

/// Bytes of entries a block holds (about).
const BLOCK_BYTES: usize = 32 << 10;
/// Runs kept at most: additions of ever smaller batches would otherwise each stay a run (the
/// binary counter keeps about log2(entries / batch) for batches of one size, 8 for 3M
/// entries added 20,000 at a time).
const MAX_RUNS: usize = 16;
/// Every this many entries, one is written whole (a restart point of the binary search).
const RESTART: usize = 16;
/// Bytes of an entry's varints, at most (a shared length and a rest length below 2^32 and a
/// count).
const MAX_VARINTS: usize = 5 + 5 + 10;

/// Reads the varint at `*at` ([`put_varint`]'s LEB128), moving `*at` past it. Blocks are
/// this module's own writing: no error to report.
fn get_varint(data: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = data[*at];
        *at += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// How many leading bytes `a` and `b` share (eight at a time).
#[inline]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"))
            ^ u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Decodes the entry at `*at` over `key` (the previous entry's key; anything at a restart),
/// leaving its key in `key` and `*at` at the next entry; returns its count.
#[inline]
fn decode(data: &[u8], at: &mut usize, key: &mut Vec<u8>) -> i64 {
    let shared = get_varint(data, at) as usize;
    let rest = get_varint(data, at) as usize;
    key.truncate(shared);
    key.extend_from_slice(&data[*at..*at + rest]);
    *at += rest;
    let z = get_varint(data, at);
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// The key of the whole entry (a restart) at `at`.
fn whole_key(data: &[u8], mut at: usize) -> &[u8] {
    let shared = get_varint(data, &mut at);
    debug_assert_eq!(shared, 0);
    let rest = get_varint(data, &mut at) as usize;
    &data[at..at + rest]
}

/// Entries in key order, each key once: `shared:varint | rest_len:varint | rest |
/// count:varint (zigzag)`, `shared` bytes of the key being the previous entry's (0 at every
/// [`RESTART`]-th entry, whose offsets `restarts` keeps).
#[derive(Default)]
struct Block {
    data: Vec<u8>,
    restarts: Vec<u32>,
    len: usize,
    /// Bytes of its keys (whole).
    key_bytes: usize,
    /// The last key.
    last: Box<[u8]>,
}

impl Block {
    fn bytes(&self) -> usize {
        self.data.capacity() + self.restarts.capacity() * 4 + self.last.len()
    }

    /// `pos` at the first entry whose key is at least `target` (at entry `len` if none).
    fn seek(&self, target: &[u8], pos: &mut Position) {
        // The last restart before `target`: the entry sought is at most RESTART entries on.
        let r = self
            .restarts
            .partition_point(|&at| byte_order(whole_key(&self.data, at as usize), target) == Ordering::Less)
            .saturating_sub(1);
        pos.entry = r * RESTART;
        pos.at = self.restarts.get(r).map_or(self.data.len(), |&at| at as usize);
        while pos.entry < self.len {
            pos.read(self);
            if byte_order(&pos.key, target) != Ordering::Less {
                return;
            }
            pos.entry += 1;
        }
    }
}

/// A reader's place in a block: entry `entry`, whose key is `key` and count `count`, the next
/// entry's bytes at `at`.
#[derive(Default)]
struct Position {
    entry: usize,
    at: usize,
    key: Vec<u8>,
    count: i64,
}

impl Position {
    /// Decodes the entry at `at` of `block` (this position's block).
    fn read(&mut self, block: &Block) {
        self.count = decode(&block.data, &mut self.at, &mut self.key);
    }

    /// Moves to the next entry of `block` (true), or to the start of the next block, nothing
    /// read yet, past its last entry (false).
    fn next_in(&mut self, block: &Block) -> bool {
        self.entry += 1;
        if self.entry < block.len {
            self.read(block);
            true
        } else {
            (self.entry, self.at) = (0, 0);
            false
        }
    }
}

/// One sorted run: its blocks in key order.
#[derive(Default)]
struct Run {
    blocks: Vec<Block>,
    len: usize,
    bytes: usize,
    /// Bytes of its keys (whole).
    key_bytes: usize,
}

impl Run {
    /// A cursor at the first entry whose key is at least `target`.
    fn seek(&self, target: &[u8]) -> Cursor<'_> {
        let block = self
            .blocks
            .partition_point(|blk| byte_order(&blk.last, target) == Ordering::Less);
        let mut pos = Position::default();
        if let Some(b) = self.blocks.get(block) {
            b.seek(target, &mut pos);
        }
        Cursor { run: self, block, pos }
    }
}

/// Builds a run from entries given in key order (each key once).
struct RunBuilder {
    run: Run,
    block: Block,
    prev: Vec<u8>,
    /// Bytes of entries still to come (about: at most): a block takes no more room than
    /// that, so that a small run is not a mostly empty 32 KiB block.
    to_come: usize,
}

impl RunBuilder {
    /// For `entries` entries of `key_bytes` bytes of keys in all (at most).
    fn new(key_bytes: usize, entries: usize) -> RunBuilder {
        RunBuilder {
            run: Run::default(),
            block: Block::default(),
            prev: Vec::new(),
            to_come: key_bytes + 3 * entries,
        }
    }

    fn push(&mut self, key: &[u8], count: i64) {
        #[cfg(test)]
        tests::ENTRIES_WRITTEN.with(|n| n.set(n.get() + 1));
        if self.block.data.len() + key.len() + MAX_VARINTS > BLOCK_BYTES && self.block.len > 0 {
            self.end_block();
        }
        if self.block.data.capacity() == 0 {
            self.block
                .data
                .reserve_exact(BLOCK_BYTES.min(self.to_come).max(key.len() + MAX_VARINTS));
        }
        let before = self.block.data.len();
        let shared = if self.block.len.is_multiple_of(RESTART) {
            self.block.restarts.push(before as u32);
            0
        } else {
            common_prefix(&self.prev, key)
        };
        let data = &mut self.block.data;
        put_varint(data, shared as u64);
        put_varint(data, (key.len() - shared) as u64);
        data.extend_from_slice(&key[shared..]);
        put_varint(data, ((count << 1) ^ (count >> 63)) as u64);
        self.to_come = self.to_come.saturating_sub(data.len() - before);
        self.block.len += 1;
        self.block.key_bytes += key.len();
        self.prev.truncate(shared);
        self.prev.extend_from_slice(&key[shared..]);
    }

    fn end_block(&mut self) {
        let mut block = std::mem::take(&mut self.block);
        block.data.shrink_to_fit();
        block.restarts.shrink_to_fit();
        block.last = self.prev.as_slice().into();
        self.add_block(block);
    }

    fn add_block(&mut self, block: Block) {
        self.run.len += block.len;
        self.run.bytes += block.bytes();
        self.run.key_bytes += block.key_bytes;
        self.run.blocks.push(block);
    }

    /// Appends a whole block of another run, its keys all after the ones pushed so far: it is
    /// kept as it is (not decoded and encoded again), after the block being built.
    fn push_block(&mut self, block: Block) {
        if self.block.len > 0 {
            self.end_block();
        }
        self.to_come = self.to_come.saturating_sub(block.data.len());
        self.prev.clear();
        self.add_block(block);
    }

    fn finish(mut self) -> Run {
        if self.block.len > 0 {
            self.end_block();
        }
        self.run
    }
}

/// Reads a run's entries in order from a position in block `block`.
struct Cursor<'r> {
    run: &'r Run,
    block: usize,
    pos: Position,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<(&[u8], i64)> {
        let b = self.run.blocks.get(self.block)?;
        (self.pos.entry < b.len).then_some((self.pos.key.as_slice(), self.pos.count))
    }

    fn advance(&mut self) {
        let Some(b) = self.run.blocks.get(self.block) else {
            return;
        };
        if !self.pos.next_in(b) {
            self.block += 1;
            if let Some(next) = self.run.blocks.get(self.block) {
                self.pos.read(next);
            }
        }
    }
}

/// Takes a run's entries in order, freeing each block once it is read.
struct Drain {
    blocks: std::vec::IntoIter<Block>,
    block: Option<Block>,
    pos: Position,
}

impl Drain {
    fn new(run: Run) -> Drain {
        let mut blocks = run.blocks.into_iter();
        let block = blocks.next();
        let mut pos = Position::default();
        if let Some(b) = &block {
            pos.read(b);
        }
        Drain { blocks, block, pos }
    }

    fn peek(&self) -> Option<(&[u8], i64)> {
        self.block.as_ref().map(|_| (self.pos.key.as_slice(), self.pos.count))
    }

    fn advance(&mut self) {
        let Some(b) = &self.block else {
            return;
        };
        if !self.pos.next_in(b) {
            self.next_block();
        }
    }

    fn next_block(&mut self) {
        self.block = self.blocks.next();
        (self.pos.entry, self.pos.at) = (0, 0);
        if let Some(next) = &self.block {
            self.pos.read(next);
        }
    }

    /// Takes the current block whole if none of its entries has been taken yet, it is worth
    /// keeping whole (at least half full: smaller blocks are merged into larger ones) and its
    /// keys all come before `other`'s next key.
    fn take_block_before(&mut self, other: &Drain) -> Option<Block> {
        let b = self.block.as_ref()?;
        let whole = self.pos.entry == 0 && b.data.len() >= BLOCK_BYTES / 2;
        if !whole
            || other
                .peek()
                .is_some_and(|(k, _)| byte_order(&b.last, k) != Ordering::Less)
        {
            return None;
        }
        let b = self.block.take();
        self.next_block();
        b
    }
}

/// `older` and `newer` as one run, the counts of a key in both summed (zero sums dropped).
fn merge(older: Run, newer: Run) -> Run {
    let mut out = RunBuilder::new(older.key_bytes + newer.key_bytes, older.len + newer.len);
    let (mut a, mut b) = (Drain::new(older), Drain::new(newer));
    loop {
        // A block whose keys all come before the other run's next key is kept whole: where
        // the runs do not interleave (keys that grow, such as ids or time windows, added at
        // the end), a merge moves blocks instead of decoding and encoding their entries.
        if let Some(block) = a.take_block_before(&b).or_else(|| b.take_block_before(&a)) {
            out.push_block(block);
            continue;
        }
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((k, c)), None) => {
                out.push(k, c);
                a.advance();
            }
            (None, Some((k, c))) => {
                out.push(k, c);
                b.advance();
            }
            (Some((ka, ca)), Some((kb, cb))) => match byte_order(ka, kb) {
                Ordering::Less => {
                    out.push(ka, ca);
                    a.advance();
                }
                Ordering::Greater => {
                    out.push(kb, cb);
                    b.advance();
                }
                Ordering::Equal => {
                    if ca + cb != 0 {
                        out.push(ka, ca + cb);
                    }
                    a.advance();
                    b.advance();
                }
            },
        }
    }
    out.finish()
}

/// Counters kept as sorted runs (see the module documentation).
#[derive(Default)]
pub struct Runs {
    /// Oldest (largest) first.
    runs: Vec<Run>,
}

impl Runs {
    /// Entries in all runs (a key in several runs counts several times).
    pub fn len(&self) -> usize {
        self.runs.iter().map(|r| r.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Bytes the runs hold.
    pub fn bytes(&self) -> usize {
        self.runs.iter().map(|r| r.bytes).sum()
    }

    /// Bytes the runs would hold uncompressed: each entry's whole key, a 4-byte offset and an
    /// 8-byte count.
    pub fn whole_bytes(&self) -> usize {
        self.runs.iter().map(|r| r.key_bytes + 12 * r.len).sum()
    }

    /// Runs (at most [`MAX_RUNS`]).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Adds each `(key, delta)` to its key's counter (a key may come several times).
    pub fn add(&mut self, mut deltas: Vec<(&[u8], i64)>) {
        deltas.sort_unstable_by(|a, b| byte_order(a.0, b.0));
        let mut run = RunBuilder::new(deltas.iter().map(|(k, _)| k.len()).sum(), deltas.len());
        let mut i = 0;
        while i < deltas.len() {
            let key = deltas[i].0;
            let mut sum = 0;
            while i < deltas.len() && deltas[i].0 == key {
                sum += deltas[i].1;
                i += 1;
            }
            if sum != 0 {
                run.push(key, sum);
            }
        }
        let run = run.finish();
        if run.len == 0 {
            return;
        }
        self.runs.push(run);
        while self.runs.len() >= 2 {
            let n = self.runs.len();
            if self.runs[n - 2].len > self.runs[n - 1].len && n <= MAX_RUNS {
                break;
            }
            let newer = self.runs.pop().expect("two runs");
            let older = self.runs.pop().expect("two runs");
            self.runs.push(merge(older, newer));
        }
    }

    /// The counter of `key` (0: none).
    pub fn get(&self, key: &[u8]) -> i64 {
        let mut sum = 0;
        for run in &self.runs {
            if let Some((k, n)) = run.seek(key).peek() {
                if k == key {
                    sum += n;
                }
            }
        }
        sum
    }

    /// Calls `f(key, count)` for the keys under `prefix` from `start` on (a key under
    /// `prefix`), in key order, each key once with its summed count (keys summing to zero
    /// skipped), until `f` returns false or fails.
    pub fn try_for_each_from<E>(
        &self,
        prefix: &[u8],
        start: &[u8],
        mut f: impl FnMut(&[u8], i64) -> Result<bool, E>,
    ) -> Result<(), E> {
        let mut cursors: Vec<Cursor> = self.runs.iter().map(|run| run.seek(start)).collect();
        let mut key = Vec::new();
        loop {
            let mut least: Option<&[u8]> = None;
            for c in &cursors {
                if let Some((k, _)) = c.peek() {
                    if k.starts_with(prefix) && least.is_none_or(|l| byte_order(k, l) == Ordering::Less) {
                        least = Some(k);
                    }
                }
            }
            let Some(least) = least else {
                return Ok(());
            };
            key.clear();
            key.extend_from_slice(least);
            let mut sum = 0;
            for c in &mut cursors {
                if let Some((k, n)) = c.peek() {
                    if k == key {
                        sum += n;
                        c.advance();
                    }
                }
            }
            if sum != 0 && !f(&key, sum)? {
                return Ok(());
            }
        }
    }

    /// The first `limit` keys under `prefix` from `start` on, with their counts, in key order.
    pub fn scan_from(&self, prefix: &[u8], start: &[u8], limit: usize) -> Vec<(Vec<u8>, i64)> {
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        let Ok(()) = self.try_for_each_from(prefix, start, |k, n| {
            out.push((k.to_vec(), n));
            Ok::<bool, std::convert::Infallible>(out.len() < limit)
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::cell::Cell;
    use std::collections::BTreeMap;

    thread_local! {
        /// Entries encoded into blocks, in this thread.
        pub(super) static ENTRIES_WRITTEN: Cell<usize> = const { Cell::new(0) };
    }

    /// Random additions (repeated keys, retractions to zero, keys of random lengths sharing
    /// prefixes), batch after batch: every read agrees with a map of the sums, and the runs
    /// stay few.
    #[test]
    fn runs_sum_like_a_map() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut runs = Runs::default();
        let mut want: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let key = |rng: &mut rand::rngs::StdRng| -> Vec<u8> {
            let mut k = vec![rng.random_range(0..4u8)];
            // Long enough at times to fill a block with few keys.
            let n = if rng.random_bool(0.01) {
                5000
            } else {
                rng.random_range(0..12)
            };
            k.extend((0..n).map(|_| rng.random_range(0..3u8)));
            k
        };
        for batch in 0..300 {
            let n = rng.random_range(0..if batch % 50 == 0 { 3000 } else { 120 });
            let mut keys: Vec<Vec<u8>> = Vec::new();
            let mut deltas: Vec<i64> = Vec::new();
            for _ in 0..n {
                // Now and then the retraction of a key's whole count.
                let k = if rng.random_bool(0.2) && !want.is_empty() {
                    let i = rng.random_range(0..want.len());
                    want.keys().nth(i).expect("in range").clone()
                } else {
                    key(&mut rng)
                };
                let d = match want.get(&k) {
                    Some(c) if rng.random_bool(0.5) => -c,
                    _ => rng.random_range(-2..4i64),
                };
                *want.entry(k.clone()).or_default() += d;
                keys.push(k);
                deltas.push(d);
            }
            want.retain(|_, c| *c != 0);
            runs.add(keys.iter().map(|k| k.as_slice()).zip(deltas).collect());
            assert!(runs.run_count() <= MAX_RUNS);
            // Every key, a prefix's keys from a start, point reads.
            let all: Vec<(Vec<u8>, i64)> = want.iter().map(|(k, c)| (k.clone(), *c)).collect();
            assert_eq!(runs.scan_from(&[], &[], usize::MAX), all, "batch {batch}");
            let p = vec![rng.random_range(0..4u8)];
            let mut start = p.clone();
            start.push(rng.random_range(0..3u8));
            let limit = rng.random_range(0..20);
            let some: Vec<(Vec<u8>, i64)> = want
                .range(start.clone()..)
                .take_while(|(k, _)| k.starts_with(&p))
                .take(limit)
                .map(|(k, c)| (k.clone(), *c))
                .collect();
            assert_eq!(runs.scan_from(&p, &start, limit), some, "batch {batch}");
            let probe = key(&mut rng);
            assert_eq!(runs.get(&probe), want.get(&probe).copied().unwrap_or(0));
        }
        assert!(!want.is_empty());
    }

    /// Keys that grow batch after batch (ids, time windows), now and then with retractions and
    /// additions among the older keys: reads agree with a map of the sums, and merges keep the
    /// older run's blocks whole where the newer run's keys do not fall among theirs.
    #[test]
    fn merges_keep_blocks_the_other_run_does_not_reach() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut runs = Runs::default();
        let mut want: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let key = |id: u64| -> Vec<u8> {
            let mut k = b"window".to_vec();
            k.extend_from_slice(&id.to_be_bytes());
            k.extend_from_slice(b"a row of some length");
            k
        };
        let mut next = 0u64;
        let written = ENTRIES_WRITTEN.with(Cell::get);
        let mut added = 0;
        for batch in 0..200 {
            let mut deltas: Vec<(Vec<u8>, i64)> = (0..rng.random_range(1..3000))
                .map(|_| {
                    next += 1;
                    (key(next), 1)
                })
                .collect();
            if batch % 10 == 9 {
                for _ in 0..5 {
                    let id = rng.random_range(1..=next);
                    deltas.push((key(id), if want.contains_key(&key(id)) { -1 } else { 1 }));
                }
            }
            for (k, d) in &deltas {
                *want.entry(k.clone()).or_default() += d;
            }
            want.retain(|_, c| *c != 0);
            added += deltas.len();
            runs.add(deltas.iter().map(|(k, d)| (k.as_slice(), *d)).collect());
            if batch % 20 != 19 {
                continue;
            }
            let all: Vec<(Vec<u8>, i64)> = want.iter().map(|(k, c)| (k.clone(), *c)).collect();
            assert_eq!(runs.scan_from(&[], &[], usize::MAX), all, "batch {batch}");
            let id = rng.random_range(1..=next);
            assert_eq!(runs.get(&key(id)), want.get(&key(id)).copied().unwrap_or(0));
        }
        // An entry is encoded when added and again only while its block is less than half
        // full or meets a retraction (re-encoded at each of the ~8 levels of merges, it would
        // be ~8 times).
        let written = ENTRIES_WRITTEN.with(Cell::get) - written;
        assert!(written <= 2 * added, "{written} entries encoded for {added} added");
        // Blocks stay mostly full: small ones are merged, not kept.
        let (n, bytes) = runs
            .runs
            .iter()
            .flat_map(|r| &r.blocks)
            .fold((0, 0), |(n, b), blk| (n + 1, b + blk.data.len()));
        assert!(bytes / n >= BLOCK_BYTES / 4, "{n} blocks of {bytes} bytes");
    }

    /// A small run takes the room of its entries, not a whole block's; entries keep only what
    /// their key does not share with the key before.
    #[test]
    fn small_runs_are_small() {
        let mut runs = Runs::default();
        runs.add(vec![(&b"key"[..], 1), (&b"other"[..], 2)]);
        // Entries (shared, length, rest, count): 0 3 "key" 1, 0 5 "other" 2; one restart
        // offset; the last key.
        assert_eq!(runs.bytes(), (3 + 3) + (3 + 5) + 4 + 5);
        runs.add(vec![(&b"more"[..], 1), (&b"keys"[..], 1)]);
        assert_eq!(runs.run_count(), 1);
        // "keys" after "key": 3 shared, 1 byte of its own.
        assert_eq!(runs.bytes(), (3 + 3) + (3 + 1) + (3 + 4) + (3 + 5) + 4 + 5);
        assert_eq!(runs.scan_from(b"", b"", 10).len(), 4);
        assert_eq!(runs.get(b"keys"), 1);
        assert_eq!(runs.get(b"ke"), 0);
    }

    #[test]
    fn common_prefixes() {
        let a = b"0123456789abcdefXYZ";
        for n in 0..=a.len() {
            let mut b = a[..n].to_vec();
            assert_eq!(common_prefix(a, &b), n);
            b.push(b'!');
            assert_eq!(common_prefix(a, &b), n.min(a.len()));
            assert_eq!(common_prefix(&b, a), n.min(a.len()));
        }
    }

    /// Large runs: many blocks and restarts, every key found by a point read and a scan
    /// from it, counts of any size.
    #[test]
    fn long_runs_seek_every_key() {
        let mut runs = Runs::default();
        let mut want = BTreeMap::new();
        for batch in 0..4u64 {
            let keys: Vec<Vec<u8>> = (0..20_000u64)
                .map(|i| format!("group{:03}/row{:08}", (i * 7 + batch) % 300, i * 4 + batch).into_bytes())
                .collect();
            let counts: Vec<i64> = (0..20_000i64)
                .map(|i| [1, -3, i64::MAX / 4, 1 << 40][(i % 4) as usize])
                .collect();
            for (k, c) in keys.iter().zip(&counts) {
                *want.entry(k.clone()).or_insert(0i64) += c;
            }
            runs.add(keys.iter().map(|k| k.as_slice()).zip(counts).collect());
        }
        assert_eq!(runs.len(), want.len());
        for (k, c) in want.iter().step_by(97) {
            assert_eq!(runs.get(k), *c);
            let from = runs.scan_from(&k[..8], k, 3);
            let expect: Vec<(Vec<u8>, i64)> = want
                .range(k.clone()..)
                .take_while(|(x, _)| x.starts_with(&k[..8]))
                .take(3)
                .map(|(x, c)| (x.clone(), *c))
                .collect();
            assert_eq!(from, expect);
        }
        assert_eq!(runs.scan_from(b"", b"", usize::MAX).len(), want.len());
        // Prefix compression: an entry of a 20-byte key takes well under its key's size (a
        // whole key with a 4-byte offset and an 8-byte count took 32).
        assert!(
            runs.bytes() < want.len() * 16,
            "{} bytes for {} keys",
            runs.bytes(),
            want.len()
        );
    }
}
