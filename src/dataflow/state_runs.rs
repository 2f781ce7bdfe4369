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
//! A run is a list of blocks of about [`BLOCK_BYTES`] of keys, so that a merge frees its inputs
//! block by block as it goes, instead of holding both inputs and the whole output at its end.

use std::cmp::Ordering;

use super::state_index::byte_order;

/// Bytes of keys a block holds (about).
const BLOCK_BYTES: usize = 32 << 10;
/// Runs kept at most: additions of ever smaller batches would otherwise each stay a run (the
/// binary counter keeps about log2(entries / batch) for batches of one size, 8 for 3M
/// entries added 20,000 at a time).
const MAX_RUNS: usize = 16;

/// Entries in key order, each key once: `keys` concatenated, `ends[i]` where key `i` ends.
#[derive(Default)]
struct Block {
    keys: Vec<u8>,
    ends: Vec<u32>,
    counts: Vec<i64>,
}

impl Block {
    fn len(&self) -> usize {
        self.ends.len()
    }

    #[inline]
    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.keys[start..self.ends[i] as usize]
    }

    fn bytes(&self) -> usize {
        self.keys.capacity() + self.ends.capacity() * 4 + self.counts.capacity() * 8
    }

    /// The first entry whose key is at least `target` (`len()` if none).
    fn seek(&self, target: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if byte_order(self.key(mid), target) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// One sorted run: its blocks in key order.
#[derive(Default)]
struct Run {
    blocks: Vec<Block>,
    len: usize,
    bytes: usize,
    /// Bytes of its keys.
    key_bytes: usize,
}

impl Run {
    /// Where the first entry whose key is at least `target` is: (block, entry).
    fn seek(&self, target: &[u8]) -> (usize, usize) {
        let b = self
            .blocks
            .partition_point(|blk| byte_order(blk.key(blk.len() - 1), target) == Ordering::Less);
        if b == self.blocks.len() {
            return (b, 0);
        }
        (b, self.blocks[b].seek(target))
    }
}

/// Builds a run from entries given in key order (each key once).
struct RunBuilder {
    run: Run,
    block: Block,
    /// Bytes of keys still to come (about: at most): a block takes no more room than that,
    /// so that a small run is not a mostly empty 32 KiB block.
    to_come: usize,
}

impl RunBuilder {
    fn new(key_bytes: usize) -> RunBuilder {
        RunBuilder {
            run: Run::default(),
            block: Block::default(),
            to_come: key_bytes,
        }
    }

    fn push(&mut self, key: &[u8], count: i64) {
        if self.block.keys.len() + key.len() > BLOCK_BYTES && self.block.len() > 0 {
            self.end_block();
        }
        if self.block.keys.capacity() == 0 {
            self.block
                .keys
                .reserve_exact(BLOCK_BYTES.min(self.to_come).max(key.len()));
        }
        self.to_come = self.to_come.saturating_sub(key.len());
        self.run.key_bytes += key.len();
        self.block.keys.extend_from_slice(key);
        self.block.ends.push(self.block.keys.len() as u32);
        self.block.counts.push(count);
    }

    fn end_block(&mut self) {
        let mut block = std::mem::take(&mut self.block);
        block.ends.shrink_to_fit();
        block.counts.shrink_to_fit();
        self.run.len += block.len();
        self.run.bytes += block.bytes();
        self.run.blocks.push(block);
    }

    fn finish(mut self) -> Run {
        if self.block.len() > 0 {
            self.end_block();
        }
        self.run
    }
}

/// Reads a run's entries in order from a position.
struct Cursor<'r> {
    run: &'r Run,
    block: usize,
    entry: usize,
}

impl<'r> Cursor<'r> {
    fn peek(&self) -> Option<(&'r [u8], i64)> {
        let b = self.run.blocks.get(self.block)?;
        Some((b.key(self.entry), b.counts[self.entry]))
    }

    fn advance(&mut self) {
        self.entry += 1;
        if self.entry == self.run.blocks[self.block].len() {
            self.block += 1;
            self.entry = 0;
        }
    }
}

/// Takes a run's entries in order, freeing each block once it is read.
struct Drain {
    blocks: std::vec::IntoIter<Block>,
    block: Option<Block>,
    entry: usize,
}

impl Drain {
    fn new(run: Run) -> Drain {
        let mut blocks = run.blocks.into_iter();
        let block = blocks.next();
        Drain {
            blocks,
            block,
            entry: 0,
        }
    }

    fn peek(&self) -> Option<(&[u8], i64)> {
        let b = self.block.as_ref()?;
        Some((b.key(self.entry), b.counts[self.entry]))
    }

    fn advance(&mut self) {
        self.entry += 1;
        if self.block.as_ref().is_some_and(|b| self.entry == b.len()) {
            self.block = self.blocks.next();
            self.entry = 0;
        }
    }
}

/// `older` and `newer` as one run, the counts of a key in both summed (zero sums dropped).
fn merge(older: Run, newer: Run) -> Run {
    let mut out = RunBuilder::new(older.key_bytes + newer.key_bytes);
    let (mut a, mut b) = (Drain::new(older), Drain::new(newer));
    loop {
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

    /// Runs (at most [`MAX_RUNS`]).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Adds each `(key, delta)` to its key's counter (a key may come several times).
    pub fn add(&mut self, mut deltas: Vec<(&[u8], i64)>) {
        deltas.sort_unstable_by(|a, b| byte_order(a.0, b.0));
        let mut run = RunBuilder::new(deltas.iter().map(|(k, _)| k.len()).sum());
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
            let (b, e) = run.seek(key);
            if let Some(block) = run.blocks.get(b) {
                if block.key(e) == key {
                    sum += block.counts[e];
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
        let mut cursors: Vec<Cursor> = self
            .runs
            .iter()
            .map(|run| {
                let (block, entry) = run.seek(start);
                Cursor { run, block, entry }
            })
            .collect();
        loop {
            let mut least: Option<&[u8]> = None;
            for c in &cursors {
                if let Some((k, _)) = c.peek() {
                    if k.starts_with(prefix) && least.is_none_or(|l| byte_order(k, l) == Ordering::Less) {
                        least = Some(k);
                    }
                }
            }
            let Some(key) = least else {
                return Ok(());
            };
            let mut sum = 0;
            for c in &mut cursors {
                if let Some((k, n)) = c.peek() {
                    if k == key {
                        sum += n;
                        c.advance();
                    }
                }
            }
            if sum != 0 && !f(key, sum)? {
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
    use std::collections::BTreeMap;

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

    /// A small run takes the room of its keys, not a whole block's.
    #[test]
    fn small_runs_are_small() {
        let mut runs = Runs::default();
        runs.add(vec![(&b"key"[..], 1), (&b"other"[..], 2)]);
        assert_eq!(runs.bytes(), 8 + 2 * 4 + 2 * 8);
        runs.add(vec![(&b"more"[..], 1), (&b"keys"[..], 1)]);
        assert_eq!(runs.run_count(), 1);
        assert!(runs.bytes() <= 16 + 4 * 12, "{}", runs.bytes());
    }
}
