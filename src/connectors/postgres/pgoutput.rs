//! Decoding of `pgoutput` logical replication messages (protocol version 1).
//!
//! Each XLogData payload of the replication stream is one message: a tag byte, then fixed-width
//! big-endian integers, NUL-terminated strings and tuples. Pure functions, no I/O: the bytes come
//! from [`super::replication::ReplicationReader`].
//!
//! ```text
//!  Begin ─▶ (Relation | Type | Origin | Insert | Update | Delete | Truncate | Message)* ─▶ Commit
//! ```
//!
//! What the caller relies on:
//! - A Relation message precedes the first change of a table in a stream, and comes again after
//!   anything that invalidated the server's cache entry for the table (ALTER TABLE, but also
//!   TRUNCATE, often unchanged): changes refer to tables by OID only, so the caller keeps the
//!   latest Relation per OID and compares rather than assumes a change.
//! - Values are in PostgreSQL's text output format, formatted with the walsender session's
//!   settings (see [`super::replication::SESSION_SETTINGS`]).
//! - [`TupleValue::UnchangedToast`] means "this column kept its value, which is stored out of
//!   line and was not sent": the caller must take it from its own copy of the row.
//! - The old row of an Update comes only when the replica identity key changed (`Key`, the key
//!   columns only, others `Null`) or the table has `REPLICA IDENTITY FULL` (`Full`). A Delete
//!   always carries one of them (with `REPLICA IDENTITY NOTHING` the server refuses the delete).
//! - Malformed input (short, over-long, unknown tag, binary values) is an `Err`, never a panic.
//!   Messages of later protocol versions (streamed or two-phase transactions) are errors too: we
//!   ask for version 1, so they never come.

use bytes::{Buf, Bytes};

use super::replication::{Lsn, POSTGRES_EPOCH_UNIX_MICROS};
use crate::error::{Error, Result};

/// One column value of a tuple, in pgoutput text format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TupleValue {
    Null,
    /// An out-of-line (TOASTed) value the change did not modify, so the server did not send it.
    UnchangedToast,
    /// The value's text representation (UTF-8 for a UTF-8 database).
    Text(Bytes),
}

impl TupleValue {
    /// The text of a `Text` value, if it is one and is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            TupleValue::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// One row: a value per column of the relation, in column order.
pub type Tuple = Vec<TupleValue>;

/// A column of a [`Relation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (the primary key with `REPLICA IDENTITY DEFAULT`).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    /// `atttypmod`: -1 when the type has no modifier.
    pub type_modifier: i32,
}

/// A table's definition as the stream knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    /// The schema (pgoutput sends an empty string for `pg_catalog`; we report `pg_catalog`).
    pub namespace: String,
    pub name: String,
    /// `relreplident`: b'd' default (primary key), b'n' nothing, b'f' full, b'i' index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// The old row of an Update or Delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OldTuple {
    /// 'K': the replica identity columns; the others are `Null`.
    Key(Tuple),
    /// 'O': the whole old row (`REPLICA IDENTITY FULL`).
    Full(Tuple),
}

/// A decoded pgoutput message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgOutput {
    Begin {
        /// The LSN of the commit record (the Commit's `commit_lsn`).
        final_lsn: Lsn,
        /// Microseconds since the Unix epoch (PG sends µs since 2000-01-01).
        commit_time_micros: i64,
        xid: u32,
    },
    Commit {
        /// The LSN of the commit record.
        commit_lsn: Lsn,
        /// Just past the commit record: resuming the stream here replays nothing of this
        /// transaction and misses nothing after it.
        end_lsn: Lsn,
        commit_time_micros: i64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Tuple,
    },
    Update {
        relation: u32,
        old: Option<OldTuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: OldTuple,
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// Type ('Y'), Origin ('O'), logical Message ('M'): nothing to apply.
    Other(u8),
}

/// Decodes one pgoutput message (copying it once; values then share that copy).
pub fn decode(data: &[u8]) -> Result<PgOutput> {
    decode_bytes(Bytes::copy_from_slice(data))
}

/// Decodes one pgoutput message without copying: `Text` values are slices of `data`.
pub fn decode_bytes(data: Bytes) -> Result<PgOutput> {
    let tag = data.first().copied();
    let mut r = Reader { buf: data };
    let out = r.message().map_err(|what| {
        let tag = tag.map_or_else(|| "empty".to_string(), |t| format!("'{}'", t.escape_ascii()));
        Error::internal(format!("malformed pgoutput message ({tag}): {what}"))
    })?;
    if r.buf.has_remaining() {
        return Err(Error::internal(format!(
            "malformed pgoutput message ('{}'): {} unexpected trailing bytes",
            tag.unwrap_or(0).escape_ascii(),
            r.buf.remaining()
        )));
    }
    Ok(out)
}

type Decoded<T> = std::result::Result<T, String>;

/// A bounds-checked cursor: every read says what it wanted when the bytes run out.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize, what: &str) -> Decoded<()> {
        if self.buf.remaining() < n {
            Err(format!(
                "truncated: {what} needs {n} bytes, {} left",
                self.buf.remaining()
            ))
        } else {
            Ok(())
        }
    }

    fn u8(&mut self, what: &str) -> Decoded<u8> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    fn u32(&mut self, what: &str) -> Decoded<u32> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    fn i32(&mut self, what: &str) -> Decoded<i32> {
        self.need(4, what)?;
        Ok(self.buf.get_i32())
    }

    fn i16(&mut self, what: &str) -> Decoded<i16> {
        self.need(2, what)?;
        Ok(self.buf.get_i16())
    }

    fn u64(&mut self, what: &str) -> Decoded<u64> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }

    fn lsn(&mut self, what: &str) -> Decoded<Lsn> {
        self.u64(what).map(Lsn)
    }

    /// A PG timestamp (µs since 2000-01-01) as µs since the Unix epoch.
    fn timestamp(&mut self, what: &str) -> Decoded<i64> {
        self.need(8, what)?;
        self.buf
            .get_i64()
            .checked_add(POSTGRES_EPOCH_UNIX_MICROS)
            .ok_or_else(|| format!("{what} out of range"))
    }

    fn cstr(&mut self, what: &str) -> Decoded<String> {
        let nul = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| format!("{what} is not NUL-terminated"))?;
        let s = self.buf.split_to(nul);
        self.buf.advance(1);
        String::from_utf8(s.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn message(&mut self) -> Decoded<PgOutput> {
        let tag = self.u8("message tag")?;
        Ok(match tag {
            b'B' => PgOutput::Begin {
                final_lsn: self.lsn("Begin final LSN")?,
                commit_time_micros: self.timestamp("Begin commit time")?,
                xid: self.u32("Begin xid")?,
            },
            b'C' => {
                let _flags = self.u8("Commit flags")?;
                PgOutput::Commit {
                    commit_lsn: self.lsn("Commit LSN")?,
                    end_lsn: self.lsn("Commit end LSN")?,
                    commit_time_micros: self.timestamp("Commit time")?,
                }
            }
            b'R' => PgOutput::Relation(self.relation()?),
            b'I' => {
                let relation = self.u32("Insert relation")?;
                match self.u8("Insert tuple kind")? {
                    b'N' => PgOutput::Insert {
                        relation,
                        new: self.tuple()?,
                    },
                    k => return Err(format!("Insert tuple kind '{}' (expected 'N')", k.escape_ascii())),
                }
            }
            b'U' => {
                let relation = self.u32("Update relation")?;
                let (old, kind) = match self.u8("Update tuple kind")? {
                    b'K' => (Some(OldTuple::Key(self.tuple()?)), self.u8("Update new tuple kind")?),
                    b'O' => (Some(OldTuple::Full(self.tuple()?)), self.u8("Update new tuple kind")?),
                    k => (None, k),
                };
                if kind != b'N' {
                    return Err(format!("Update tuple kind '{}' (expected 'N')", kind.escape_ascii()));
                }
                PgOutput::Update {
                    relation,
                    old,
                    new: self.tuple()?,
                }
            }
            b'D' => {
                let relation = self.u32("Delete relation")?;
                let old = match self.u8("Delete tuple kind")? {
                    b'K' => OldTuple::Key(self.tuple()?),
                    b'O' => OldTuple::Full(self.tuple()?),
                    k => {
                        return Err(format!(
                            "Delete tuple kind '{}' (expected 'K' or 'O')",
                            k.escape_ascii()
                        ))
                    }
                };
                PgOutput::Delete { relation, old }
            }
            b'T' => {
                let count = self.u32("Truncate relation count")?;
                let options = self.u8("Truncate options")?;
                // Each OID takes 4 bytes: check before allocating for a garbage count.
                self.need((count as usize).saturating_mul(4), "Truncate relations")?;
                let relations = (0..count).map(|_| self.buf.get_u32()).collect();
                PgOutput::Truncate {
                    relations,
                    cascade: options & 1 != 0,
                    restart_identity: options & 2 != 0,
                }
            }
            b'Y' => {
                let _oid = self.u32("Type OID")?;
                let _namespace = self.cstr("Type namespace")?;
                let _name = self.cstr("Type name")?;
                PgOutput::Other(tag)
            }
            b'O' => {
                let _lsn = self.lsn("Origin LSN")?;
                let _name = self.cstr("Origin name")?;
                PgOutput::Other(tag)
            }
            b'M' => {
                let _flags = self.u8("Message flags")?;
                let _lsn = self.lsn("Message LSN")?;
                let _prefix = self.cstr("Message prefix")?;
                let len = self.u32("Message length")? as usize;
                self.need(len, "Message content")?;
                self.buf.advance(len);
                PgOutput::Other(tag)
            }
            b'S' | b'E' | b'c' | b'A' | b'b' | b'P' | b'K' | b'r' | b'p' => {
                return Err(format!(
                    "message '{}' belongs to a later protocol version (streamed or two-phase transactions); \
                     we asked for version 1",
                    tag as char
                ))
            }
            other => return Err(format!("unknown message tag '{}'", other.escape_ascii())),
        })
    }

    fn relation(&mut self) -> Decoded<Relation> {
        let oid = self.u32("Relation OID")?;
        let mut namespace = self.cstr("Relation namespace")?;
        if namespace.is_empty() {
            namespace = "pg_catalog".into();
        }
        let name = self.cstr("Relation name")?;
        let replica_identity = self.u8("Relation replica identity")?;
        if !matches!(replica_identity, b'd' | b'n' | b'f' | b'i') {
            return Err(format!("replica identity '{}'", replica_identity.escape_ascii()));
        }
        let count = self.i16("Relation column count")?;
        let count = usize::try_from(count).map_err(|_| format!("Relation column count {count}"))?;
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let flags = self.u8("column flags")?;
            columns.push(RelationColumn {
                key: flags & 1 != 0,
                name: self.cstr("column name")?,
                type_oid: self.u32("column type OID")?,
                type_modifier: self.i32("column type modifier")?,
            });
        }
        Ok(Relation {
            oid,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }

    /// TupleData: i16 column count, then per column 'n' | 'u' | 't' i32 length, bytes.
    fn tuple(&mut self) -> Decoded<Tuple> {
        let count = self.i16("tuple column count")?;
        let count = usize::try_from(count).map_err(|_| format!("tuple column count {count}"))?;
        // Each column takes at least one byte: check before allocating for a garbage count.
        self.need(count, "tuple columns")?;
        let mut tuple = Vec::with_capacity(count);
        for i in 0..count {
            tuple.push(match self.u8("column kind")? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                b't' => {
                    let len = self.i32("text value length")?;
                    let len = usize::try_from(len).map_err(|_| format!("column {i} has length {len}"))?;
                    self.need(len, "text value")?;
                    TupleValue::Text(self.buf.split_to(len))
                }
                b'b' => return Err(format!("column {i} is in binary format, which we never ask for")),
                k => return Err(format!("column {i} has kind '{}'", k.escape_ascii())),
            });
        }
        Ok(tuple)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pgoutput message built field by field.
    #[derive(Default)]
    struct Msg(Vec<u8>);

    impl Msg {
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: i16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn cstr(mut self, s: &str) -> Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        fn text(self, s: &str) -> Self {
            let mut m = self.u8(b't').i32(s.len() as i32);
            m.0.extend_from_slice(s.as_bytes());
            m
        }
    }

    fn text(s: &str) -> TupleValue {
        TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn decodes_each_message_kind() {
        let begin = Msg::default().u8(b'B').u64(0x10).u64(0).u32(7);
        assert_eq!(
            decode(&begin.0).unwrap(),
            PgOutput::Begin {
                final_lsn: Lsn(0x10),
                commit_time_micros: POSTGRES_EPOCH_UNIX_MICROS,
                xid: 7
            }
        );
        let commit = Msg::default().u8(b'C').u8(0).u64(0x10).u64(0x40).u64(1_000_000);
        assert_eq!(
            decode(&commit.0).unwrap(),
            PgOutput::Commit {
                commit_lsn: Lsn(0x10),
                end_lsn: Lsn(0x40),
                commit_time_micros: POSTGRES_EPOCH_UNIX_MICROS + 1_000_000
            }
        );
        let rel = Msg::default()
            .u8(b'R')
            .u32(16384)
            .cstr("")
            .cstr("t")
            .u8(b'd')
            .i16(2)
            .u8(1)
            .cstr("id")
            .u32(23)
            .i32(-1)
            .u8(0)
            .cstr("v")
            .u32(1043)
            .i32(14);
        let PgOutput::Relation(r) = decode(&rel.0).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(
            (r.oid, r.namespace.as_str(), r.name.as_str()),
            (16384, "pg_catalog", "t")
        );
        assert!(r.columns[0].key);
        assert_eq!((r.columns[1].name.as_str(), r.columns[1].type_modifier), ("v", 14));

        let upd = Msg::default()
            .u8(b'U')
            .u32(5)
            .u8(b'K')
            .i16(2)
            .text("1")
            .u8(b'n')
            .u8(b'N')
            .i16(2)
            .text("2")
            .u8(b'u');
        assert_eq!(
            decode(&upd.0).unwrap(),
            PgOutput::Update {
                relation: 5,
                old: Some(OldTuple::Key(vec![text("1"), TupleValue::Null])),
                new: vec![text("2"), TupleValue::UnchangedToast],
            }
        );
        let del = Msg::default().u8(b'D').u32(5).u8(b'O').i16(1).text("x");
        assert_eq!(
            decode(&del.0).unwrap(),
            PgOutput::Delete {
                relation: 5,
                old: OldTuple::Full(vec![text("x")])
            }
        );
        let trunc = Msg::default().u8(b'T').u32(2).u8(3).u32(5).u32(6);
        assert_eq!(
            decode(&trunc.0).unwrap(),
            PgOutput::Truncate {
                relations: vec![5, 6],
                cascade: true,
                restart_identity: true
            }
        );
        let msg = Msg::default().u8(b'M').u8(1).u64(9).cstr("p").u32(2).u8(b'h').u8(b'i');
        assert_eq!(decode(&msg.0).unwrap(), PgOutput::Other(b'M'));
        let typ = Msg::default().u8(b'Y').u32(99).cstr("public").cstr("mood");
        assert_eq!(decode(&typ.0).unwrap(), PgOutput::Other(b'Y'));
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(decode(b"").is_err());
        assert!(decode(b"Z").is_err());
        assert!(decode(b"S\0\0\0\x01\0").is_err()); // stream start: protocol v2
                                                    // Every strict prefix of a valid message fails, as does one extra byte.
        let ins = Msg::default().u8(b'I').u32(5).u8(b'N').i16(2).text("hello").u8(b'n');
        assert!(matches!(decode(&ins.0).unwrap(), PgOutput::Insert { relation: 5, .. }));
        for n in 0..ins.0.len() {
            let err = decode(&ins.0[..n]).unwrap_err();
            assert!(matches!(err, Error::Internal(_)), "{err}");
        }
        let mut longer = ins.0.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().to_string().contains("trailing"));
        // Absurd counts and lengths.
        assert!(decode(&Msg::default().u8(b'I').u32(5).u8(b'N').i16(-1).0).is_err());
        assert!(decode(&Msg::default().u8(b'I').u32(5).u8(b'N').i16(1).u8(b't').i32(-5).0).is_err());
        assert!(decode(&Msg::default().u8(b'I').u32(5).u8(b'N').i16(1).u8(b'b').i32(0).0).is_err());
        assert!(decode(&Msg::default().u8(b'T').u32(u32::MAX).u8(0).0).is_err());
        assert!(decode(&Msg::default().u8(b'R').u32(1).cstr("s").cstr("t").u8(b'x').i16(0).0).is_err());
        // Deterministic pseudo-random garbage never panics.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..2000 {
            let bytes: Vec<u8> = (0..len % 64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"BCRIUDTYOMtnuNKO\0\x01\xff"[(x % 19) as usize]
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
