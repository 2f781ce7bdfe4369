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
//! (and no value) for a deletion.

use crate::dataflow::Epoch;
use crate::error::{Error, Result};

const CHUNK: u8 = 0;
const LOG: u8 = 1;
const CURRENT: u8 = 2;
const DELETED: u32 = u32::MAX;

/// Bytes of entries a checkpoint chunk holds (about).
pub const CHUNK_BYTES: usize = 1 << 20;

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

/// One entry of a record: a key and its value (`None`: deleted).
pub type Entry<'a> = (&'a [u8], Option<&'a [u8]>);

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
