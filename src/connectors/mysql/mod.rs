//! MySQL / MariaDB change-data-capture: a consistent snapshot of the captured tables, then the
//! binary log from exactly the position that snapshot saw.
//!
//! ```text
//!  describe_table ─▶ capture / capture_all ─▶ CapturedTable (Freshet schema ⇄ upstream columns)
//!                                                  │
//!  SnapshotReader::open ── chunks in PK order ─────┤ position() = binlog position of the snapshot
//!                                                  ▼
//!  BinlogReader::connect(from = that position) ─▶ next(): Transaction | Progress | SchemaChange
//! ```
//!
//! Invariants the caller relies on:
//! - A [`BinlogItem::Transaction`] is one whole upstream transaction (never split), and its `end`
//!   is the position just after its commit: resuming from `end` replays none of it and misses
//!   nothing after it. Committing `end` in the same epoch as the changes gives exactly-once.
//! - The snapshot and the position it reports are one consistent cut: snapshot rows + the binlog
//!   from [`SnapshotReader::position`] = the table, nothing lost or doubled.
//! - Every value goes through one conversion path ([`types`]) whether it came from a snapshot
//!   query or a binlog row image.
//!
//! ## Client crate
//! We use [`mysql_async`] (tokio-native) with its `binlog` feature, which brings `mysql_common`'s
//! binlog event parser. Checked against MariaDB 10.11 here: it negotiates checksums
//! (`@master_binlog_checksum`), parses the v1 row events MariaDB writes and keeps the TABLE_MAP
//! cache; MariaDB's own events (GTID, GTID_LIST, ANNOTATE_ROWS, BINLOG_CHECKPOINT) come through
//! as unknown events with their raw bytes, and [`binlog`] decodes the two it needs (GTID and
//! GTID_LIST) itself. `mysql_cdc` 0.2.1 was the alternative: it is blocking, so it would need a
//! thread per source, and it is far less used. Default features are off (`minimal-rust`: no
//! TLS, pure-Rust flate2); see [`SslMode`] for what that means for `ssl.mode`.
//!
//! ## MySQL 8 versus MariaDB
//! Both are read; only MariaDB can be tested on this project's machines (MySQL 8 is not packaged
//! for Debian 12). On MariaDB the position carries the GTID state (`domain-server-seq,...`) and
//! a reconnect resumes from it; on MySQL the position is file + offset only (`gtid` is `None`):
//! following a MySQL GTID set across a failover is not built.

mod binlog;
mod config;
mod schema;
mod snapshot;
pub mod source;
mod types;

#[cfg(test)]
mod tests;

pub use binlog::{BinlogItem, BinlogPosition, BinlogReader};
pub use config::{MysqlConfig, SslMode};
pub use schema::{capture, capture_all, describe_table, CapturedTable, UpstreamColumn, UpstreamTable};
pub use snapshot::{SnapshotProgress, SnapshotReader};

use crate::error::{Error, SqlState};

/// Maps a client error to Freshet's: unreachable or dropped connections are retryable 08xxx;
/// a missing table is 42P01; refused credentials and privileges are 28000 / 42501.
pub(crate) fn upstream_error(cfg: &MysqlConfig, what: &str, e: mysql_async::Error) -> Error {
    let at = format!("mysql-cdc {}:{}: {what}", cfg.hostname, cfg.port);
    match e {
        mysql_async::Error::Server(se) => match se.code {
            1146 | 1049 => Error::user(SqlState::UNDEFINED_TABLE, format!("{at}: {}", se.message)),
            1045 => Error::External {
                state: SqlState("28000"),
                message: format!("{at}: {}", se.message),
                retryable: false,
            },
            1044 | 1142 | 1227 | 1143 => Error::External {
                state: SqlState("42501"),
                message: format!("{at}: {}", se.message),
                retryable: false,
            },
            // 1236: the requested binlog position is gone (purged) or invalid.
            1236 => Error::External {
                state: SqlState("55000"),
                message: format!(
                    "{at}: the binlog position cannot be read: {} (error {})",
                    se.message, se.code
                ),
                retryable: false,
            },
            // Shutdown in progress, too many connections, killed connection: try again later.
            1053 | 1040 | 1927 | 2013 => Error::External {
                state: SqlState::CONNECTION_EXCEPTION,
                message: format!("{at}: {} (error {})", se.message, se.code),
                retryable: true,
            },
            _ => Error::External {
                state: SqlState("58000"),
                message: format!("{at}: {} (error {})", se.message, se.code),
                retryable: false,
            },
        },
        mysql_async::Error::Io(io) => Error::External {
            state: if what == "connect" {
                SqlState("08001")
            } else {
                SqlState("08006")
            },
            message: format!("{at}: {io}"),
            retryable: true,
        },
        mysql_async::Error::Driver(d) => Error::External {
            state: SqlState("08006"),
            message: format!("{at}: {d}"),
            retryable: true,
        },
        other => Error::External {
            state: SqlState::CONNECTION_EXCEPTION,
            message: format!("{at}: {other}"),
            retryable: false,
        },
    }
}

/// `db`.`name` quoted for MySQL.
pub(crate) fn quote_table(db: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(db), quote_ident(name))
}

pub(crate) fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}
