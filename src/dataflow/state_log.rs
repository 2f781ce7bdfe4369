//! The logged form of a mirrored [`super::state_table::StateTable`]: instead of one store key
//! per entry, each epoch's writes reach the store as ONE log record, and from time to time the
//! whole table is written as a checkpoint (a few large chunks) that replaces the logs before it.
//!
//! A table mirrored in memory never reads its entries back from the store but when it loads,
//! so keeping one store key per entry (a memtable insert, a flush and compactions for every
//! write) buys nothing: RocksDB was a third of the CPU of join- and aggregate-heavy views.
//!
//! Keys under a table's log prefix ([`crate::state::keys::operator_log_prefix`]):
//! - `0 epoch:u64 chunk:u32`: the chunks of the checkpoint taken at `epoch`;
//! - `1 epoch:u64`: the writes of `epoch`;
//! - `2`: the current checkpoint, `epoch:u64 chunks:u32`.
//!
//! A table's entries are its per-key entries (under the table prefix: written before logs
//! existed, or while the table was spilled), overlaid by the current checkpoint's chunks,
//! overlaid by the logs after it in epoch order. A checkpoint's chunks are written to the store
//! ahead of the epoch's batch, so that a checkpoint holds one chunk in memory rather than a copy
//! of the table; they are invisible until the batch that names them (and deletes what they
//! replace) commits, and chunks of a checkpoint that never committed are deleted by a later one.
//!
//! A record is a sequence of entries: `klen:u32 key vlen:u32 value`, with `vlen = u32::MAX`
//! (and no value) for a deletion. An additive table's log records start with a marker and
//! hold amounts to add to counters ([`additive_record`]); its checkpoints hold values, like
//! every other table's.

use std::hash::{BuildHasher, Hasher};

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::dataflow::Epoch;
use crate::error::{Error, Result};

const CHUNK: u8 = 0;
const LOG: u8 = 1;
const CURRENT: u8 = 2;
const DELETED: u32 = u32::MAX;

/// Bytes of entries a checkpoint chunk holds (about).
pub const CHUNK_BYTES: usize = 1 << 20;

/// The first four bytes of an *additive* record (where a key length would be; no key is that
/// long): its entries are amounts to add to the keys' counters, not values (an additive
/// table's log, see `state_runs`), as [`encode_addition`] writes them.
const ADDITIVE: u32 = u32::MAX - 1;

/// The start of an additive record.
pub fn additive_record() -> Vec<u8> {
    ADDITIVE.to_be_bytes().to_vec()
}

/// Appends to an additive record the addition of `delta` to the counter of `key`:
/// `klen:varint key delta:varint` (zigzag), so that a row added once costs its key and two
/// bytes (an additive table logs every row it gains).
pub fn encode_addition(record: &mut Vec<u8>, key: &[u8], delta: i64) {
    put_varint(record, key.len() as u64);
    record.extend_from_slice(key);
    put_varint(record, ((delta << 1) ^ (delta >> 63)) as u64);
}

/// LEB128: seven bits a byte, low first, the top bit set on all but the last.
pub(super) fn put_varint(record: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        record.push(v as u8 | 0x80);
        v >>= 7;
    }
    record.push(v as u8);
}

fn take_varint(rest: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, tail) = rest
            .split_first()
            .ok_or_else(|| Error::internal("corrupt operator state log record"))?;
        *rest = tail;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::internal("corrupt operator state log record"))
}

/// A decoded log record.
#[derive(Debug, PartialEq)]
pub enum Record<'a> {
    /// Keys and their values (`None`: deleted).
    Values(Vec<Entry<'a>>),
    /// Keys and amounts to add to their counters (an additive record).
    Additions(Vec<(&'a [u8], i64)>),
}

/// Appends one entry (`None`: a deletion) to a record.
pub fn encode_entry(record: &mut Vec<u8>, key_parts: &[&[u8]], value: Option<&[u8]>) {
    let klen: usize = key_parts.iter().map(|p| p.len()).sum();
    record.extend_from_slice(&(klen as u32).to_be_bytes());
    for p in key_parts {
        record.extend_from_slice(p);
    }
    match value {
        Some(v) => {
            record.extend_from_slice(&(v.len() as u32).to_be_bytes());
            record.extend_from_slice(v);
        }
        None => record.extend_from_slice(&DELETED.to_be_bytes()),
    }
}

/// The log record of one epoch's writes to a table, built as the writes happen (the table
/// writes them straight into its mirror; see `state_table`), holding one live entry per key:
/// a key written again has its entry's value overwritten in place when its length is
/// unchanged (a counter), else the old entry is marked dead and a new one appended. The dead
/// entries are squeezed out when the record is taken.
///
/// A key that had no committed entry before the epoch and is deleted by the end of it leaves
/// no entry: there is nothing to delete (a top-N over an append-only input writes and deletes
/// many rows that never make its top).
#[derive(Default)]
pub struct EpochRecord {
    /// Entries as [`encode_entry`] writes them, the key length's top bit set on dead ones.
    record: Vec<u8>,
    /// The keys written: where their last entry is, and whether they had a committed entry.
    keys: HashTable<Written>,
    hasher: DefaultHashBuilder,
    /// Bytes of dead entries in `record`.
    dead: usize,
}

struct Written {
    hash: u64,
    /// Offset of the key's last entry in the record (dead if the key is deleted and had no
    /// committed entry).
    at: u32,
    /// The key had a committed entry before this epoch.
    existed: bool,
}

const DEAD: u32 = 1 << 31;

impl EpochRecord {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Records that the key `group` then `rest` now has `value` (`None`: deleted);
    /// `existed`: it had an entry just before this write. A key must be split the same way at
    /// every write (as the mirror's index splits it): the parts are hashed one after the other.
    pub fn write(&mut self, group: &[u8], rest: &[u8], value: Option<&[u8]>, existed: bool) {
        let mut h = self.hasher.build_hasher();
        h.write(group);
        h.write(rest);
        let hash = h.finish();
        let record = &mut self.record;
        let found = self.keys.find_mut(hash, |w| {
            let (klen, key) = key_at(record, w.at);
            klen as usize == group.len() + rest.len() && key.starts_with(group) && key[group.len()..] == *rest
        });
        match found {
            Some(w) => {
                let at = w.at as usize;
                let (klen, _) = key_at(record, w.at);
                let live = klen & DEAD == 0;
                let vat = at + 4 + (klen & !DEAD) as usize;
                let vlen = u32::from_be_bytes(record[vat..vat + 4].try_into().expect("4 bytes"));
                if live {
                    if let Some(v) = value.filter(|v| vlen != DELETED && v.len() == vlen as usize) {
                        record[vat + 4..vat + 4 + v.len()].copy_from_slice(v);
                        return;
                    }
                    record[at..at + 4].copy_from_slice(&(klen | DEAD).to_be_bytes());
                    self.dead += vat + 4 + if vlen == DELETED { 0 } else { vlen as usize } - at;
                }
                if value.is_none() && !w.existed {
                    return;
                }
                w.at = record.len() as u32;
                encode_entry(record, &[group, rest], value);
            }
            None => {
                if value.is_none() && !existed {
                    return;
                }
                let at = record.len() as u32;
                encode_entry(record, &[group, rest], value);
                self.keys.insert_unique(hash, Written { hash, at, existed }, |w| w.hash);
            }
        }
    }

    /// The record of the epoch's writes (empty if they left nothing to log); the record starts
    /// over.
    pub fn take(&mut self) -> Vec<u8> {
        self.keys.clear();
        // The next epoch likely writes about as much: room for it up front, not by doubling.
        let room = Vec::with_capacity(self.record.len());
        let record = std::mem::replace(&mut self.record, room);
        if std::mem::take(&mut self.dead) == 0 {
            return record;
        }
        let mut live = Vec::with_capacity(record.len());
        let mut at = 0;
        while at < record.len() {
            let (klen, _) = key_at(&record, at as u32);
            let vat = at + 4 + (klen & !DEAD) as usize;
            let vlen = u32::from_be_bytes(record[vat..vat + 4].try_into().expect("4 bytes"));
            let end = vat + 4 + if vlen == DELETED { 0 } else { vlen as usize };
            if klen & DEAD == 0 {
                live.extend_from_slice(&record[at..end]);
            }
            at = end;
        }
        live
    }

    /// Forgets the epoch's writes.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.record.clear();
        self.dead = 0;
    }
}

/// The key length (with its dead flag) and key of the entry at `at`.
fn key_at(record: &[u8], at: u32) -> (u32, &[u8]) {
    let at = at as usize;
    let klen = u32::from_be_bytes(record[at..at + 4].try_into().expect("4 bytes"));
    let n = (klen & !DEAD) as usize;
    (klen, &record[at + 4..at + 4 + n])
}

/// One entry of a record: a key and its value (`None`: deleted).
pub type Entry<'a> = (&'a [u8], Option<&'a [u8]>);

/// The entries of a log record, of values or additions (see [`additive_record`]).
pub fn decode_record(record: &[u8]) -> Result<Record<'_>> {
    let Some(mut rest) = record.strip_prefix(&ADDITIVE.to_be_bytes()[..]) else {
        return Ok(Record::Values(decode(record)?));
    };
    let mut out = Vec::new();
    while !rest.is_empty() {
        let n = take_varint(&mut rest)? as usize;
        if rest.len() < n {
            return Err(Error::internal("corrupt operator state log record"));
        }
        let (key, tail) = rest.split_at(n);
        rest = tail;
        let z = take_varint(&mut rest)?;
        out.push((key, (z >> 1) as i64 ^ -((z & 1) as i64)));
    }
    Ok(Record::Additions(out))
}

/// The entries of a record, in the order they were written.
pub fn decode(record: &[u8]) -> Result<Vec<Entry<'_>>> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if rest.len() < n {
            return Err(Error::internal("corrupt operator state log record"));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    let mut out = Vec::new();
    let mut rest = record;
    while !rest.is_empty() {
        let klen = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
        let key = take(&mut rest, klen)?;
        let vlen = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
        let value = if vlen == DELETED {
            None
        } else {
            Some(take(&mut rest, vlen as usize)?)
        };
        out.push((key, value));
    }
    Ok(out)
}

fn key(prefix: &[u8], kind: u8, epoch: Option<Epoch>, chunk: Option<u32>) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 13);
    k.extend_from_slice(prefix);
    k.push(kind);
    if let Some(e) = epoch {
        k.extend_from_slice(&e.to_be_bytes());
    }
    if let Some(c) = chunk {
        k.extend_from_slice(&c.to_be_bytes());
    }
    k
}

/// The key of chunk `chunk` of the checkpoint taken at `epoch`.
pub fn chunk_key(prefix: &[u8], epoch: Epoch, chunk: u32) -> Vec<u8> {
    key(prefix, CHUNK, Some(epoch), Some(chunk))
}

/// `[from, to)` covering the chunks of checkpoints taken before `epoch`.
pub fn chunks_before(prefix: &[u8], epoch: Epoch) -> (Vec<u8>, Vec<u8>) {
    (key(prefix, CHUNK, None, None), key(prefix, CHUNK, Some(epoch), None))
}

/// The key of the log record of `epoch`.
pub fn log_key(prefix: &[u8], epoch: Epoch) -> Vec<u8> {
    key(prefix, LOG, Some(epoch), None)
}

/// `[from, to)` covering every log record.
pub fn logs(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (key(prefix, LOG, None, None), key(prefix, LOG + 1, None, None))
}

/// The epoch of a log record's key.
pub fn log_epoch(prefix: &[u8], log_key: &[u8]) -> Result<Epoch> {
    log_key
        .get(prefix.len() + 1..prefix.len() + 9)
        .map(|b| Epoch::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| Error::internal("corrupt operator state log key"))
}

/// The key naming the current checkpoint.
pub fn current_key(prefix: &[u8]) -> Vec<u8> {
    key(prefix, CURRENT, None, None)
}

/// `[from, to)` covering everything under the log prefix.
pub fn all(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (key(prefix, CHUNK, None, None), key(prefix, CURRENT + 1, None, None))
}

/// A checkpoint: the epoch it was taken at and how many chunks it has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Checkpoint {
    pub epoch: Epoch,
    pub chunks: u32,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.epoch.to_be_bytes().to_vec();
        v.extend_from_slice(&self.chunks.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Result<Checkpoint> {
        if v.len() != 12 {
            return Err(Error::internal("corrupt operator state checkpoint"));
        }
        Ok(Checkpoint {
            epoch: Epoch::from_be_bytes(v[..8].try_into().expect("8 bytes")),
            chunks: u32::from_be_bytes(v[8..].try_into().expect("4 bytes")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut r = Vec::new();
        encode_entry(&mut r, &[b"ab", b"c"], Some(b"value"));
        encode_entry(&mut r, &[b"gone"], None);
        encode_entry(&mut r, &[b""], Some(b""));
        let entries = decode(&r).unwrap();
        assert_eq!(
            entries,
            vec![
                (&b"abc"[..], Some(&b"value"[..])),
                (&b"gone"[..], None),
                (&b""[..], Some(&b""[..]))
            ]
        );
        assert!(decode(&r[..r.len() - 1]).is_err());
        assert_eq!(decode_record(&r).unwrap(), Record::Values(entries));
        let mut a = additive_record();
        let long = vec![7u8; 300];
        let additions = [
            (&b"k"[..], -3i64),
            (&b""[..], 1),
            (&long[..], i64::MAX),
            (&b"m"[..], i64::MIN),
            (&b"n"[..], 64),
        ];
        for (k, d) in additions {
            encode_addition(&mut a, k, d);
        }
        // A row added once: its key and two bytes.
        assert_eq!(
            a.len(),
            4 + (1 + 1 + 1) + (1 + 1) + (2 + 300 + 10) + (1 + 1 + 10) + (1 + 1 + 2)
        );
        assert_eq!(decode_record(&a).unwrap(), Record::Additions(additions.to_vec()));
        assert!(decode_record(&a[..a.len() - 1]).is_err());
        assert!(decode(&a).is_err());
    }

    /// An epoch record holds, per key written, its last value, or its deletion if the key
    /// had a committed entry; over random writes of values of random lengths to few keys,
    /// epoch after epoch.
    #[test]
    fn epoch_records_hold_each_keys_last_write() {
        use rand::{Rng, SeedableRng};
        use std::collections::BTreeMap;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut committed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut r = EpochRecord::default();
        for epoch in 0..200 {
            let mut now = committed.clone();
            let mut written = std::collections::BTreeSet::new();
            for _ in 0..rng.random_range(0..60) {
                let k = vec![b'k'; rng.random_range(1..5)];
                // A key is always split the same way (where the mirror's index splits it).
                let split = k.len() / 2;
                let value = rng
                    .random_bool(0.7)
                    .then(|| vec![rng.random::<u8>(); rng.random_range(0..4)]);
                let existed = now.contains_key(&k);
                r.write(&k[..split], &k[split..], value.as_deref(), existed);
                match value {
                    Some(v) => now.insert(k.clone(), v),
                    None => now.remove(&k),
                };
                written.insert(k);
            }
            let mut want: Vec<(Vec<u8>, Option<Vec<u8>>)> = written
                .iter()
                .filter(|k| now.contains_key(*k) || committed.contains_key(*k))
                .map(|k| (k.clone(), now.get(k).cloned()))
                .collect();
            let record = r.take();
            let mut got: Vec<(Vec<u8>, Option<Vec<u8>>)> = decode(&record)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.map(|v| v.to_vec())))
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "epoch {epoch}");
            assert!(r.is_empty());
            committed = now;
        }
    }

    #[test]
    fn keys_order_and_ranges() {
        let p = b"P";
        let (from, to) = chunks_before(p, 5);
        assert!(from <= chunk_key(p, 4, 9) && chunk_key(p, 4, 9) < to);
        assert!(chunk_key(p, 5, 0) >= to);
        let (lf, lt) = logs(p);
        assert!(lf < log_key(p, 0) && log_key(p, u64::MAX) < lt);
        assert!(to <= lf && lt <= current_key(p));
        assert_eq!(log_epoch(p, &log_key(p, 77)).unwrap(), 77);
        let (af, at) = all(p);
        assert!(af <= chunk_key(p, 0, 0) && current_key(p) < at);
        let c = Checkpoint { epoch: 9, chunks: 3 };
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);
    }
}
