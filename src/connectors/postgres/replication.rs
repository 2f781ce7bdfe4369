//! The replication connection: the PostgreSQL wire protocol (v3) with `replication=database`.
//!
//! A walsender connection speaks the ordinary startup and simple-query protocol, plus replication
//! commands (`IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`, ...) sent as simple queries. We frame
//! the backend messages ourselves (one tag byte, a big-endian `i32` length that counts itself,
//! then the body) because `postgres_protocol`'s backend parser does not know `CopyBothResponse`;
//! its `frontend` module writes the messages we send, and its `authentication` module does MD5 and
//! SCRAM-SHA-256.
//!
//! ```text
//!  connect: StartupMessage ─▶ Authentication* ─▶ ParameterStatus* / BackendKeyData ─▶ ReadyForQuery
//!  command: Query ─▶ RowDescription? DataRow* CommandComplete ... (ErrorResponse) ─▶ ReadyForQuery
//!  START_REPLICATION ─▶ CopyBothResponse ─▶ CopyData('w' XLogData | 'k' keepalive) ...
//!                                          ◀─ CopyData('r' standby status update) ...
//! ```
//!
//! Invariants and facts the caller relies on:
//! - A [`CreatedSlot`]'s exported snapshot lives only while the connection that created it stays
//!   idle: the next command (or closing it) ends the snapshot.
//! - The walsender formats pgoutput's text values with the *session's* settings, so the startup
//!   packet pins them ([`SESSION_SETTINGS`]: UTF-8, ISO dates, UTC, round-trip floats). A value
//!   decoded from the stream is then formatted exactly as a snapshot query with the same settings.
//! - Once streaming, [`ReplicationReader::next`] returns XLogData and keepalives in server order.
//!   Any ErrorResponse, EOF or end of the COPY ends the stream as an `Err`; it is retryable when
//!   it means a lost connection or a server shutting down (08xxx, 57P01..57P03, EOF, and the
//!   CommandComplete / CopyDone a stopping walsender sends).
//! - Resuming: `START_REPLICATION ... LOGICAL start` streams from `max(start, the slot's
//!   confirmed_flush_lsn)` and skips every transaction whose commit record begins before that.
//!   Passing the end LSN of the last applied commit therefore replays nothing already applied.
//!   Always pass it: PostgreSQL 15 does not save a slot whose only change is a newer
//!   confirmed_flush_lsn at a clean shutdown, so after a restart the slot alone may replay
//!   transactions that were confirmed (fixed in PostgreSQL 17).
//! - Confirming: [`ReplicationWriter::send_status`] moves the slot (and lets the server recycle
//!   WAL). Transactions that touch no published table send nothing (PG 15 skips empty
//!   transactions), only keepalives whose `wal_end` advances; when every transaction received
//!   is applied, confirm that `wal_end`, or the slot holds WAL back while the tables are idle.
//!   A stopping server (fast shutdown) waits until the client has confirmed all it was sent,
//!   asking with `reply_requested` keepalives, and only then ends the stream; a client that
//!   does not confirm holds the shutdown until `wal_sender_timeout` (60 s by default).
//! - Keepalives: the walsender sends unrequested ones when idle or skipping WAL, and one with
//!   `reply_requested` after `wal_sender_timeout / 2` without a status update; it disconnects
//!   after `wal_sender_timeout` without one.
//! - Network input is never trusted: a short or oversized frame is an error, not a panic.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::error::{Error, Result, SqlState};

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
pub const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Session settings sent in the startup packet. pgoutput renders text values with them.
pub const SESSION_SETTINGS: &[(&str, &str)] = &[
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "3"),
];

/// How long a TCP connect may take before it counts as a (retryable) failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest backend message accepted. PostgreSQL caps a datum at 1 GiB; a pgoutput row can
/// carry several, but anything near this is a corrupt length, not data.
const MAX_MESSAGE_LEN: usize = 1 << 30;

/// A WAL position. Display and FromStr use PostgreSQL's `X/X` hex form (e.g. `0/16B3748`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 as u32)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    /// Parses `X/X` where each half is 1 to 8 hex digits (as `pg_lsn` input does).
    fn from_str(s: &str) -> Result<Lsn> {
        let bad = || {
            Error::user(
                SqlState::INVALID_TEXT_REPRESENTATION,
                format!("invalid WAL position \"{s}\": expected two hex numbers as X/X"),
            )
        };
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(h, 16).map_err(|_| bad())
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

/// Where and as whom to connect. The password is left out of `Debug`.
#[derive(Clone)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub application_name: String,
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemInfo {
    /// The cluster's system identifier (a decimal u64, kept as text).
    pub system_id: String,
    pub timeline: u32,
    /// The current WAL flush position.
    pub xlog_pos: Lsn,
    /// The database connected to (`None` for a physical replication connection).
    pub database: Option<String>,
}

/// The answer to `CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedSlot {
    pub slot_name: String,
    /// The first LSN the slot decodes from: every transaction committed before it is in the
    /// exported snapshot, every later one comes through the stream.
    pub consistent_point: Lsn,
    /// For `SET TRANSACTION SNAPSHOT`, valid while the creating connection stays idle.
    pub snapshot_name: String,
}

/// One backend message: its tag and its body (without the length).
struct BackendMessage {
    tag: u8,
    body: Bytes,
}

/// The host:port label every error names, and the SQLSTATE mapping.
#[derive(Clone)]
struct Peer(String);

impl Peer {
    fn io(&self, what: &str, e: impl fmt::Display) -> Error {
        Error::External {
            state: SqlState("08006"),
            message: format!("postgres {}: {what}: connection lost: {e}", self.0),
            retryable: true,
        }
    }

    fn eof(&self, what: &str) -> Error {
        Error::External {
            state: SqlState("08006"),
            message: format!("postgres {}: {what}: the server closed the connection", self.0),
            retryable: true,
        }
    }

    fn protocol(&self, what: &str, detail: impl fmt::Display) -> Error {
        Error::External {
            state: SqlState::PROTOCOL_VIOLATION,
            message: format!("postgres {}: {what}: protocol violation: {detail}", self.0),
            retryable: false,
        }
    }

    /// An ErrorResponse (or a FATAL one during startup) as an error naming the server.
    fn server_error(&self, what: &str, body: &[u8]) -> Error {
        let fields = match parse_error_fields(body) {
            Ok(f) => f,
            Err(detail) => return self.protocol(what, detail),
        };
        let field = |c: u8| fields.iter().find(|(k, _)| *k == c).map(|(_, v)| v.as_str());
        let code = field(b'C').unwrap_or("");
        let state = intern_sqlstate(code);
        let mut message = format!(
            "postgres {}: {what}: {}: {} (SQLSTATE {state})",
            self.0,
            field(b'V').or(field(b'S')).unwrap_or("ERROR"),
            field(b'M').unwrap_or("(no message)")
        );
        if let Some(d) = field(b'D') {
            message.push_str(&format!("; detail: {d}"));
        }
        if let Some(h) = field(b'H') {
            message.push_str(&format!("; hint: {h}"));
        }
        let retryable = state.code().starts_with("08") || matches!(state.code(), "57P01" | "57P02" | "57P03" | "55006");
        Error::External {
            state,
            message,
            retryable,
        }
    }
}

/// ErrorResponse / NoticeResponse fields: (type byte, value) pairs, each value a C string,
/// terminated by a zero byte.
fn parse_error_fields(mut body: &[u8]) -> std::result::Result<Vec<(u8, String)>, String> {
    let mut fields = Vec::new();
    loop {
        let (&kind, rest) = body.split_first().ok_or("error fields not terminated")?;
        if kind == 0 {
            return Ok(fields);
        }
        let (value, rest) = split_cstr(rest).ok_or("error field value not terminated")?;
        fields.push((kind, String::from_utf8_lossy(value).into_owned()));
        body = rest;
    }
}

/// `SqlState` holds a `&'static str`: server codes are interned, each distinct one leaked once
/// (there are a few hundred SQLSTATEs, so the leak is bounded).
fn intern_sqlstate(code: &str) -> SqlState {
    static CODES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return SqlState("58000");
    }
    let mut codes = CODES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&c) = codes.get(code) {
        return SqlState(c);
    }
    let leaked: &'static str = Box::leak(code.to_owned().into_boxed_str());
    codes.insert(leaked);
    SqlState(leaked)
}

/// Splits a NUL-terminated string off the front.
fn split_cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    Some((&b[..nul], &b[nul + 1..]))
}

/// Reads whole backend messages from the socket.
struct FrameReader {
    inner: BufReader<OwnedReadHalf>,
    peer: Peer,
}

impl FrameReader {
    async fn read(&mut self, what: &str) -> Result<BackendMessage> {
        let mut header = [0u8; 5];
        if let Err(e) = self.inner.read_exact(&mut header).await {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.peer.eof(what)
            } else {
                self.peer.io(what, e)
            });
        }
        let tag = header[0];
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let body_len = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_sub(4))
            .filter(|&l| l <= MAX_MESSAGE_LEN)
            .ok_or_else(|| {
                self.peer
                    .protocol(what, format!("message '{}' has an invalid length {len}", tag as char))
            })?;
        // Grow with the data that arrives rather than trusting the length with one allocation.
        let mut body = BytesMut::with_capacity(body_len.min(1 << 16));
        while body.len() < body_len {
            body.reserve((body_len - body.len()).min(1 << 20));
            let limit = (body_len - body.len()) as u64;
            match (&mut self.inner).take(limit).read_buf(&mut body).await {
                Ok(0) => return Err(self.peer.eof(what)),
                Ok(_) => {}
                Err(e) => return Err(self.peer.io(what, e)),
            }
        }
        Ok(BackendMessage {
            tag,
            body: body.freeze(),
        })
    }
}

/// Writes frontend messages.
struct FrameWriter {
    inner: OwnedWriteHalf,
    peer: Peer,
}

impl FrameWriter {
    async fn send(&mut self, what: &str, buf: &[u8]) -> Result<()> {
        self.inner.write_all(buf).await.map_err(|e| self.peer.io(what, e))
    }
}

/// A connection in replication mode (startup parameter replication=database).
pub struct ReplicationConnection {
    reader: FrameReader,
    writer: FrameWriter,
    peer: Peer,
}

impl ReplicationConnection {
    /// Connects and authenticates: trust, cleartext, MD5 and SCRAM-SHA-256 (no channel binding; no TLS).
    pub async fn connect(p: &ConnectParams) -> Result<ReplicationConnection> {
        let peer = Peer(format!("{}:{}", p.host, p.port));
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((p.host.as_str(), p.port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(Error::External {
                    state: SqlState("08001"),
                    message: format!("postgres {}: cannot connect: {e}", peer.0),
                    retryable: true,
                })
            }
            Err(_) => {
                return Err(Error::External {
                    state: SqlState("08001"),
                    message: format!("postgres {}: cannot connect: no answer in {CONNECT_TIMEOUT:?}", peer.0),
                    retryable: true,
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut conn = ReplicationConnection {
            reader: FrameReader {
                inner: BufReader::with_capacity(64 * 1024, read),
                peer: peer.clone(),
            },
            writer: FrameWriter {
                inner: write,
                peer: peer.clone(),
            },
            peer,
        };
        conn.startup(p).await?;
        Ok(conn)
    }

    /// StartupMessage, authentication, then everything up to the first ReadyForQuery.
    async fn startup(&mut self, p: &ConnectParams) -> Result<()> {
        const WHAT: &str = "connect";
        let mut params = vec![
            ("user", p.user.as_str()),
            ("database", p.database.as_str()),
            ("replication", "database"),
            ("application_name", p.application_name.as_str()),
        ];
        params.extend_from_slice(SESSION_SETTINGS);
        let mut buf = BytesMut::new();
        frontend::startup_message(params, &mut buf).map_err(|e| self.peer.protocol(WHAT, e))?;
        self.writer.send(WHAT, &buf).await?;

        let mut scram: Option<ScramSha256> = None;
        loop {
            let msg = self.reader.read(WHAT).await?;
            match msg.tag {
                b'R' => {
                    let mut body = msg.body;
                    if body.len() < 4 {
                        return Err(self.peer.protocol(WHAT, "short Authentication message"));
                    }
                    let code = body.get_i32();
                    buf.clear();
                    match code {
                        0 => {} // AuthenticationOk
                        3 => {
                            let pw = self.password(p)?;
                            frontend::password_message(pw.as_bytes(), &mut buf)
                                .map_err(|e| self.peer.protocol(WHAT, e))?;
                        }
                        5 => {
                            let pw = self.password(p)?;
                            let salt: [u8; 4] = body[..]
                                .try_into()
                                .map_err(|_| self.peer.protocol(WHAT, "MD5 salt is not 4 bytes"))?;
                            let hash = md5_hash(p.user.as_bytes(), pw.as_bytes(), salt);
                            frontend::password_message(hash.as_bytes(), &mut buf)
                                .map_err(|e| self.peer.protocol(WHAT, e))?;
                        }
                        10 => {
                            let mechanisms = parse_cstr_list(&body);
                            if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                                return Err(self.auth_unsupported(format!(
                                    "SASL mechanisms {mechanisms:?} (only {SCRAM_SHA_256} without channel binding is supported)"
                                )));
                            }
                            let pw = self.password(p)?;
                            // "n,,": this client does not support channel binding (we have no TLS).
                            let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                            frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut buf)
                                .map_err(|e| self.peer.protocol(WHAT, e))?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| self.peer.protocol(WHAT, "SASLContinue before SASL"))?;
                            s.update(&body)
                                .map_err(|e| self.peer.protocol(WHAT, format!("SCRAM: {e}")))?;
                            frontend::sasl_response(s.message(), &mut buf).map_err(|e| self.peer.protocol(WHAT, e))?;
                        }
                        12 => {
                            let mut s = scram
                                .take()
                                .ok_or_else(|| self.peer.protocol(WHAT, "SASLFinal before SASL"))?;
                            // Verifies the server's signature: the server knows the password too.
                            s.finish(&body).map_err(|e| Error::External {
                                state: SqlState("28000"),
                                message: format!(
                                    "postgres {}: connect: SCRAM server verification failed: {e}",
                                    self.peer.0
                                ),
                                retryable: false,
                            })?;
                        }
                        other => {
                            let name = match other {
                                2 => "Kerberos V5",
                                6 => "SCM credentials",
                                7 | 8 => "GSSAPI",
                                9 => "SSPI",
                                _ => "an unknown method",
                            };
                            return Err(self.auth_unsupported(format!("{name} (authentication request {other})")));
                        }
                    }
                    if !buf.is_empty() {
                        self.writer.send(WHAT, &buf).await?;
                    }
                }
                b'E' => return Err(self.peer.server_error(WHAT, &msg.body)),
                b'Z' => return Ok(()),
                // ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion.
                b'S' | b'K' | b'N' | b'v' => {}
                other => {
                    return Err(self
                        .peer
                        .protocol(WHAT, format!("unexpected message '{}' during startup", other as char)))
                }
            }
        }
    }

    fn password<'a>(&self, p: &'a ConnectParams) -> Result<&'a str> {
        p.password.as_deref().ok_or_else(|| Error::External {
            state: SqlState("28P01"),
            message: format!(
                "postgres {}: connect: the server asks user \"{}\" for a password and none is configured",
                self.peer.0, p.user
            ),
            retryable: false,
        })
    }

    fn auth_unsupported(&self, what: String) -> Error {
        Error::External {
            state: SqlState::FEATURE_NOT_SUPPORTED,
            message: format!(
                "postgres {}: connect: authentication by {what} is not supported",
                self.peer.0
            ),
            retryable: false,
        }
    }

    /// IDENTIFY_SYSTEM: system id, timeline, current WAL flush position, database.
    pub async fn identify_system(&mut self) -> Result<SystemInfo> {
        const WHAT: &str = "IDENTIFY_SYSTEM";
        let rows = self.simple_query(WHAT).await?;
        let row = match rows.as_slice() {
            [row] if row.len() >= 4 => row,
            _ => {
                return Err(self
                    .peer
                    .protocol(WHAT, format!("expected one row of 4 columns, got {rows:?}")))
            }
        };
        let text = |i: usize| {
            row[i]
                .as_deref()
                .ok_or_else(|| self.peer.protocol(WHAT, format!("column {i} is NULL")))
        };
        Ok(SystemInfo {
            system_id: text(0)?.to_string(),
            timeline: text(1)?
                .parse()
                .map_err(|_| self.peer.protocol(WHAT, format!("bad timeline {:?}", row[1])))?,
            xlog_pos: text(2)?
                .parse()
                .map_err(|_| self.peer.protocol(WHAT, format!("bad xlogpos {:?}", row[2])))?,
            database: row[3].clone(),
        })
    }

    /// Runs a replication command or plain SQL with the simple query protocol; rows as text (None = NULL).
    ///
    /// Several statements may be sent at once: their rows come back one after another. If one
    /// fails, the first error is returned (after the server is ready again, so the connection
    /// stays usable). COPY is refused: use [`ReplicationConnection::start_replication`].
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let what = command_label(sql);
        let mut buf = BytesMut::new();
        frontend::query(sql, &mut buf).map_err(|e| self.peer.protocol(&what, e))?;
        self.writer.send(&what, &buf).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let msg = self.reader.read(&what).await?;
            match msg.tag {
                b'D' => rows.push(parse_data_row(&msg.body).map_err(|d| self.peer.protocol(&what, d))?),
                b'E' => {
                    error.get_or_insert_with(|| self.peer.server_error(&what, &msg.body));
                }
                b'Z' => return error.map_or(Ok(rows), Err),
                // RowDescription, CommandComplete, EmptyQueryResponse, NoticeResponse, ParameterStatus.
                b'T' | b'C' | b'I' | b'N' | b'S' => {}
                b'G' | b'H' | b'W' => {
                    return Err(Error::internal(format!(
                        "postgres {}: `{what}` started a COPY, which simple_query cannot run; \
                         the connection is no longer usable",
                        self.peer.0
                    )))
                }
                other => {
                    return Err(self
                        .peer
                        .protocol(&what, format!("unexpected message '{}'", other as char)))
                }
            }
        }
    }

    /// CREATE_REPLICATION_SLOT <slot> [TEMPORARY] LOGICAL pgoutput EXPORT_SNAPSHOT. The exported snapshot
    /// stays usable (SET TRANSACTION SNAPSHOT from another, ordinary connection) until this connection runs
    /// another command or closes: the caller keeps the connection alive while it reads the snapshot.
    pub async fn create_slot(&mut self, slot: &str, temporary: bool) -> Result<CreatedSlot> {
        const WHAT: &str = "CREATE_REPLICATION_SLOT";
        check_slot_name(slot)?;
        let sql = format!(
            "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput EXPORT_SNAPSHOT",
            quote_ident(slot),
            if temporary { " TEMPORARY" } else { "" }
        );
        let rows = self.simple_query(&sql).await?;
        // slot_name, consistent_point, snapshot_name, output_plugin
        let row = match rows.as_slice() {
            [row] if row.len() >= 3 => row,
            _ => {
                return Err(self
                    .peer
                    .protocol(WHAT, format!("expected one row of 4 columns, got {rows:?}")))
            }
        };
        let text = |i: usize| {
            row[i]
                .clone()
                .ok_or_else(|| self.peer.protocol(WHAT, format!("column {i} is NULL")))
        };
        Ok(CreatedSlot {
            slot_name: text(0)?,
            consistent_point: text(1)?
                .parse()
                .map_err(|_| self.peer.protocol(WHAT, format!("bad consistent_point {:?}", row[1])))?,
            snapshot_name: text(2)?,
        })
    }

    /// DROP_REPLICATION_SLOT <slot> WAIT: waits while another connection uses the slot. A slot that
    /// does not exist is an error with SQLSTATE 42704.
    pub async fn drop_slot(&mut self, slot: &str) -> Result<()> {
        check_slot_name(slot)?;
        self.simple_query(&format!("DROP_REPLICATION_SLOT {} WAIT", quote_ident(slot)))
            .await?;
        Ok(())
    }

    /// START_REPLICATION SLOT <slot> LOGICAL <start> (proto_version '1', publication_names '<publication>').
    /// Consumes the connection; returns once the server answered CopyBothResponse (errors such as a missing
    /// slot or publication come back here).
    ///
    /// The server streams from `max(start, the slot's confirmed_flush_lsn)`, skipping every
    /// transaction whose commit record starts before that point. A missing publication is only
    /// noticed when the first change is decoded, so it arrives as an error from
    /// [`ReplicationReader::next`].
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        publication: &str,
    ) -> Result<(ReplicationReader, ReplicationWriter)> {
        const WHAT: &str = "START_REPLICATION";
        check_slot_name(slot)?;
        // publication_names is a list of identifiers inside a string literal.
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} (proto_version '1', publication_names {})",
            quote_ident(slot),
            quote_literal(&quote_ident(publication))
        );
        let mut buf = BytesMut::new();
        frontend::query(&sql, &mut buf).map_err(|e| self.peer.protocol(WHAT, e))?;
        self.writer.send(WHAT, &buf).await?;
        loop {
            let msg = self.reader.read(WHAT).await?;
            match msg.tag {
                b'W' => break,
                b'E' => return Err(self.peer.server_error(WHAT, &msg.body)),
                b'N' | b'S' => {}
                other => {
                    return Err(self.peer.protocol(
                        WHAT,
                        format!("unexpected message '{}' before CopyBothResponse", other as char),
                    ))
                }
            }
        }
        Ok((
            ReplicationReader {
                reader: self.reader,
                peer: self.peer.clone(),
            },
            ReplicationWriter {
                writer: self.writer,
                peer: self.peer,
            },
        ))
    }
}

/// One message of the replication stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// A pgoutput message ([`super::pgoutput::decode`]). For logical replication the walsender
    /// puts the same LSN in both: the change's, the commit's end LSN for a Commit, and 0/0 for
    /// a Relation. Positions should come from the Begin / Commit messages, not from these.
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        data: bytes::Bytes,
    },
    /// The server is alive; `wal_end` is its WAL end. `reply_requested` asks for a status update
    /// now (the server disconnects after `wal_sender_timeout` without one).
    Keepalive { wal_end: Lsn, reply_requested: bool },
}

/// The read half. next() need not be cancel-safe (the caller runs it in its own task).
pub struct ReplicationReader {
    reader: FrameReader,
    peer: Peer,
}

impl ReplicationReader {
    /// The next XLogData or keepalive. An ErrorResponse, EOF or CopyDone is an `Err`: retryable
    /// when it is a connection loss or a server shutdown.
    pub async fn next(&mut self) -> Result<StreamEvent> {
        const WHAT: &str = "replication stream";
        loop {
            let msg = self.reader.read(WHAT).await?;
            match msg.tag {
                b'd' => return parse_copy_data(msg.body).map_err(|d| self.peer.protocol(WHAT, d)),
                b'E' => return Err(self.peer.server_error(WHAT, &msg.body)),
                // A walsender that stops (server shutdown) ends the stream: a logical one with
                // CommandComplete ("COPY 0") once the client confirmed all it was sent, a
                // physical one with CopyDone.
                b'C' | b'c' => {
                    return Err(Error::External {
                        state: SqlState("57P01"),
                        message: format!(
                            "postgres {}: {WHAT}: the server ended the stream ({}), as it does when shutting down",
                            self.peer.0,
                            if msg.tag == b'c' { "CopyDone" } else { "CommandComplete" }
                        ),
                        retryable: true,
                    })
                }
                b'N' | b'S' => {}
                other => {
                    return Err(self
                        .peer
                        .protocol(WHAT, format!("unexpected message '{}'", other as char)))
                }
            }
        }
    }
}

/// The write half: standby status updates.
pub struct ReplicationWriter {
    writer: FrameWriter,
    peer: Peer,
}

impl ReplicationWriter {
    /// Standby status update ('r'): write = flush = apply = `flushed`, client time now, reply flag.
    ///
    /// The server may discard WAL before `flushed` and will not send a transaction committed
    /// before it again on this slot (but see the module docs on PostgreSQL 15 restarts): report
    /// only what is durably applied.
    pub async fn send_status(&mut self, flushed: Lsn, reply_requested: bool) -> Result<()> {
        let now = chrono::Utc::now().timestamp_micros() - POSTGRES_EPOCH_UNIX_MICROS;
        let payload = encode_status_update(flushed, now, reply_requested);
        let mut buf = BytesMut::new();
        frontend::CopyData::new(&payload[..])
            .map_err(|e| self.peer.protocol("standby status update", e))?
            .write(&mut buf);
        self.writer.send("standby status update", &buf).await
    }
}

/// The 34-byte body of a standby status update.
fn encode_status_update(flushed: Lsn, client_time_pg_micros: i64, reply_requested: bool) -> [u8; 34] {
    let mut out = [0u8; 34];
    out[0] = b'r';
    out[1..9].copy_from_slice(&flushed.0.to_be_bytes()); // written
    out[9..17].copy_from_slice(&flushed.0.to_be_bytes()); // flushed
    out[17..25].copy_from_slice(&flushed.0.to_be_bytes()); // applied
    out[25..33].copy_from_slice(&client_time_pg_micros.to_be_bytes());
    out[33] = u8::from(reply_requested);
    out
}

/// A CopyData body of the replication stream: 'w' XLogData or 'k' primary keepalive.
fn parse_copy_data(mut body: Bytes) -> std::result::Result<StreamEvent, String> {
    match body.first() {
        Some(b'w') => {
            // 'w', wal_start u64, wal_end u64, server time i64, data...
            if body.len() < 25 {
                return Err(format!(
                    "XLogData of {} bytes is shorter than its 25-byte header",
                    body.len()
                ));
            }
            body.advance(1);
            let wal_start = Lsn(body.get_u64());
            let wal_end = Lsn(body.get_u64());
            let _server_time = body.get_i64();
            Ok(StreamEvent::XLogData {
                wal_start,
                wal_end,
                data: body,
            })
        }
        Some(b'k') => {
            // 'k', wal_end u64, server time i64, reply requested u8.
            if body.len() != 18 {
                return Err(format!("keepalive of {} bytes (expected 18)", body.len()));
            }
            body.advance(1);
            let wal_end = Lsn(body.get_u64());
            let _server_time = body.get_i64();
            Ok(StreamEvent::Keepalive {
                wal_end,
                reply_requested: body.get_u8() != 0,
            })
        }
        Some(&other) => Err(format!("unknown CopyData message '{}'", other as char)),
        None => Err("empty CopyData message".into()),
    }
}

/// A DataRow: i16 column count, then per column an i32 length (-1 = NULL) and the text.
fn parse_data_row(mut body: &[u8]) -> std::result::Result<Vec<Option<String>>, String> {
    let count = take_i16(&mut body).ok_or("DataRow without a column count")?;
    let count = usize::try_from(count).map_err(|_| format!("DataRow with {count} columns"))?;
    let mut row = Vec::with_capacity(count);
    for i in 0..count {
        let len = take_i32(&mut body).ok_or_else(|| format!("DataRow column {i} has no length"))?;
        if len < 0 {
            row.push(None);
            continue;
        }
        let len = len as usize;
        if body.len() < len {
            return Err(format!("DataRow column {i} is truncated"));
        }
        let (value, rest) = body.split_at(len);
        let text = std::str::from_utf8(value).map_err(|_| format!("DataRow column {i} is not UTF-8"))?;
        row.push(Some(text.to_string()));
        body = rest;
    }
    if !body.is_empty() {
        return Err(format!("DataRow has {} trailing bytes", body.len()));
    }
    Ok(row)
}

fn take_i16(b: &mut &[u8]) -> Option<i16> {
    let (head, rest) = b.split_first_chunk::<2>()?;
    *b = rest;
    Some(i16::from_be_bytes(*head))
}

fn take_i32(b: &mut &[u8]) -> Option<i32> {
    let (head, rest) = b.split_first_chunk::<4>()?;
    *b = rest;
    Some(i32::from_be_bytes(*head))
}

/// The NUL-separated strings of an AuthenticationSASL message (terminated by an empty one).
fn parse_cstr_list(mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((s, rest)) = split_cstr(b) {
        if s.is_empty() {
            break;
        }
        out.push(String::from_utf8_lossy(s).into_owned());
        b = rest;
    }
    out
}

/// The first two words of a command, for error messages (never the whole SQL).
fn command_label(sql: &str) -> String {
    let label = sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    if label.is_empty() {
        "empty query".into()
    } else {
        label
    }
}

/// Slot names are what PostgreSQL accepts: 1..=63 of `[a-z0-9_]`.
fn check_slot_name(slot: &str) -> Result<()> {
    let ok = !slot.is_empty()
        && slot.len() <= 63
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::user(
            SqlState("42602"),
            format!(
                "replication slot name \"{slot}\" is invalid: use 1 to 63 lower-case letters, digits and underscores"
            ),
        ))
    }
}

/// `"name"` with embedded quotes doubled.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings is always on since PG 9.1).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_display_and_parse_round_trip() {
        assert_eq!(Lsn(0x16B3748).to_string(), "0/16B3748");
        assert_eq!(Lsn(0x0000_0001_0000_0000).to_string(), "1/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert_eq!(Lsn::default().to_string(), "0/0");
        for s in ["0/16B3748", "1/0", "FFFFFFFF/FFFFFFFF", "0/0", "AB/CDEF0123"] {
            assert_eq!(s.parse::<Lsn>().unwrap().to_string(), s);
        }
        assert_eq!("16/b374d848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!("00000000/00000010".parse::<Lsn>().unwrap(), Lsn(16));
        assert!(Lsn(0x1_0000_0000) > Lsn(0xFFFF_FFFF));
    }

    #[test]
    fn lsn_rejects_malformed_text() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "16B3748",
            "0/16B3748/1",
            "G/0",
            "0/ 1",
            "+1/0",
            "123456789/0",
            "0x1/0",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert_eq!(err.code(), SqlState::INVALID_TEXT_REPRESENTATION, "{bad:?}");
        }
    }

    #[test]
    fn lsn_serde_is_the_number() {
        assert_eq!(serde_json::to_string(&Lsn(42)).unwrap(), "42");
        assert_eq!(serde_json::from_str::<Lsn>("42").unwrap(), Lsn(42));
    }

    #[test]
    fn copy_data_parsing_rejects_short_frames() {
        assert!(parse_copy_data(Bytes::from_static(b"")).is_err());
        assert!(parse_copy_data(Bytes::from_static(b"w\0\0")).is_err());
        assert!(parse_copy_data(Bytes::from_static(b"k\0\0\0\0\0\0\0\x01")).is_err());
        assert!(parse_copy_data(Bytes::from_static(b"x")).is_err());
        let mut k = vec![b'k'];
        k.extend_from_slice(&7u64.to_be_bytes());
        k.extend_from_slice(&0i64.to_be_bytes());
        k.push(1);
        assert_eq!(
            parse_copy_data(Bytes::from(k)).unwrap(),
            StreamEvent::Keepalive {
                wal_end: Lsn(7),
                reply_requested: true
            }
        );
        let mut w = vec![b'w'];
        w.extend_from_slice(&1u64.to_be_bytes());
        w.extend_from_slice(&2u64.to_be_bytes());
        w.extend_from_slice(&0i64.to_be_bytes());
        w.extend_from_slice(b"B...");
        assert_eq!(
            parse_copy_data(Bytes::from(w)).unwrap(),
            StreamEvent::XLogData {
                wal_start: Lsn(1),
                wal_end: Lsn(2),
                data: Bytes::from_static(b"B...")
            }
        );
    }

    #[test]
    fn status_update_layout() {
        let b = encode_status_update(Lsn(0x0102), 5, true);
        assert_eq!(b[0], b'r');
        assert_eq!(&b[1..9], &0x0102u64.to_be_bytes());
        assert_eq!(&b[9..17], &0x0102u64.to_be_bytes());
        assert_eq!(&b[17..25], &0x0102u64.to_be_bytes());
        assert_eq!(&b[25..33], &5i64.to_be_bytes());
        assert_eq!(b[33], 1);
    }

    #[test]
    fn data_rows_and_error_fields() {
        let mut row = Vec::new();
        row.extend_from_slice(&2i16.to_be_bytes());
        row.extend_from_slice(&(-1i32).to_be_bytes());
        row.extend_from_slice(&2i32.to_be_bytes());
        row.extend_from_slice(b"ok");
        assert_eq!(parse_data_row(&row).unwrap(), vec![None, Some("ok".to_string())]);
        assert!(parse_data_row(&row[..row.len() - 1]).is_err());
        assert!(parse_data_row(&[0, 1, 0, 0, 0, 9, b'x']).is_err());

        let peer = Peer("h:1".into());
        let err = peer.server_error("X", b"SFATAL\0VFATAL\0C57P01\0Mbye\0Dmore\0Hretry\0\0");
        assert_eq!(err.code(), SqlState("57P01"));
        assert!(matches!(err, Error::External { retryable: true, .. }));
        assert_eq!(
            err.to_string(),
            "postgres h:1: X: FATAL: bye (SQLSTATE 57P01); detail: more; hint: retry"
        );
        let err = peer.server_error("X", b"SERROR\0C42704\0Mgone\0\0");
        assert!(matches!(err, Error::External { retryable: false, .. }));
        assert_eq!(err.code(), SqlState::UNDEFINED_OBJECT);
        assert_eq!(
            peer.server_error("X", b"SERROR\0C42").code(),
            SqlState::PROTOCOL_VIOLATION
        );
        assert_eq!(peer.server_error("X", b"C!!\0\0").code(), SqlState("58000"));
    }

    #[test]
    fn names_are_checked_and_quoted() {
        assert!(check_slot_name("freshet_1").is_ok());
        assert!(check_slot_name("Freshet").is_err());
        assert!(check_slot_name("").is_err());
        assert!(check_slot_name(&"a".repeat(64)).is_err());
        assert_eq!(quote_literal(&quote_ident("my \"pub\"'s")), "'\"my \"\"pub\"\"''s\"'");
    }
}
