//! PostgreSQL change-data-capture: logical replication with the `pgoutput` plugin, after a
//! snapshot read from the snapshot exported by the slot's creation.
//!
//! ```text
//!  describe_table ─▶ schema::capture ─▶ Captured (Freshet columns ⇄ upstream columns)
//!  ReplicationConnection::create_slot ─▶ (consistent point S, exported snapshot)
//!        SnapshotReader::open(snapshot) ── COPY per table, chunks ─▶ rows as of S
//!  ReplicationConnection::start_replication(slot, from) ─▶ pgoutput messages ─▶ pgoutput::decode
//!        Begin .. Relation / Insert / Update / Delete / Truncate .. Commit(end LSN)
//! ```
//!
//! Invariants the driver ([`source`]) relies on:
//! - Protocol version 1 of pgoutput: a transaction is sent whole, after it committed, so one
//!   upstream transaction becomes one write set and is never split across epochs.
//! - Snapshot rows + the stream from the slot's consistent point = each table.
//! - Every value goes through one conversion path ([`values`]): PostgreSQL's text output (COPY
//!   text format and pgoutput text tuples alike), parsed as Freshet's COPY FROM parses it.
//!
//! ## Client crates
//! Ordinary connections (describe, publication, snapshot) use `tokio-postgres`; the replication
//! connection ([`replication`]) speaks the wire protocol itself on top of `postgres-protocol`
//! (message framing, MD5 and SCRAM-SHA-256), because `tokio-postgres` has no replication mode.

pub mod config;
pub mod pgoutput;
pub mod replication;
pub mod schema;
pub mod snapshot;
pub mod source;
pub mod values;

#[cfg(test)]
mod protocol_tests;

pub use config::PostgresConfig;
pub use schema::{describe_table, PgTable};

use crate::error::{Error, SqlState};

/// Maps a `tokio-postgres` error to Freshet's: lost or refused connections and server
/// shutdowns are retryable; a server error keeps its SQLSTATE.
pub(crate) fn upstream_error(cfg: &PostgresConfig, what: &str, e: tokio_postgres::Error) -> Error {
    let at = format!("postgres-cdc {}: {what}", cfg.address());
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let retryable = code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "55006");
            let mut message = format!("{at}: {}", db.message());
            if let Some(d) = db.detail() {
                message.push_str(&format!(" ({d})"));
            }
            Error::External {
                state: SqlState::intern(code),
                message,
                retryable,
            }
        }
        None => Error::External {
            state: if what == "connect" {
                SqlState("08001")
            } else {
                SqlState("08006")
            },
            message: format!("{at}: {e}"),
            retryable: true,
        },
    }
}

/// An identifier quoted for PostgreSQL.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
