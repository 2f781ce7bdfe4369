//! Following the binary log as a replica: whole upstream transactions as weighted changes.
//!
//! The reader registers with `cfg.server_id`, negotiates checksums, and on MariaDB announces
//! `@mariadb_slave_capability = 4` so that real GTID events arrive (without it MariaDB sends
//! placeholder `BEGIN` queries). A heartbeat is asked for every second so an idle stream still
//! advances, and a silent one is detected.
//!
//! ```text
//!  GTID (MariaDB) / BEGIN ─▶ TABLE_MAP ─▶ WRITE/UPDATE/DELETE_ROWS ... ─▶ XID / COMMIT  => Transaction
//!  GTID (standalone) ─▶ QUERY (DDL)                                                      => SchemaChange / Progress
//!  ROTATE, HEARTBEAT, a transaction touching no captured table                           => Progress
//! ```
//!
//! Positions: `file` follows ROTATE events, `pos` is the end offset of the last event read
//! (its header's `log_pos`), and on MariaDB `gtid` is the replication state (`domain-server-seq`
//! per domain) after the last GTID group, seeded from the starting position. Resuming prefers the
//! GTID state on MariaDB (`@slave_connect_state`), else file + offset.
//!
//! DDL: an ALTER / DROP / RENAME / TRUNCATE naming a captured table, or a TABLE_MAP whose column
//! count, types or names differ from the mapping, gives [`BinlogItem::SchemaChange`]. The table is
//! described again *now* (the server's current definition, which may be ahead of the binlog while
//! catching up) and mapped again with the same declared columns. A `ROLLBACK` group (rows of a
//! transaction that mixed in non-transactional tables and rolled back) is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use mysql_async::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Value};
use serde::{Deserialize, Serialize};

use super::schema::describe_on;
use super::types::{ColumnDecoder, Origin, RowsBuilder};
use super::{capture, upstream_error, CapturedTable, MysqlConfig};
use crate::dataflow::changes::Changes;
use crate::error::{Error, Result, SqlState};

/// A position in the upstream binary log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    /// Offset in `file` of the next event to read.
    pub pos: u64,
    /// MariaDB's GTID state (`domain-server-seq[,...]`) at this position, when known.
    pub gtid: Option<String>,
}

/// What [`BinlogReader::next`] returns.
#[derive(Debug)]
pub enum BinlogItem {
    /// One upstream transaction touching captured tables. `changes`: per table index, rows in
    /// `CapturedTable::schema` with weights (+1 insert, -1 delete, update = -1 before, +1 after),
    /// in binlog order. `end`: the position just after its commit. `commit_time_micros`: the
    /// upstream commit event's timestamp (second precision), for lag.
    Transaction {
        changes: Vec<(usize, Changes)>,
        end: BinlogPosition,
        commit_time_micros: i64,
    },
    /// The position moved with nothing captured; `end` may be committed as the resume point.
    Progress {
        end: BinlogPosition,
        commit_time_micros: i64,
    },
    /// A captured table's upstream definition changed. `still_mappable`: the new mapping when the
    /// table keeps working (e.g. a column added that Freshet does not read); otherwise `reason`
    /// says why the table must stop (its later rows are skipped).
    SchemaChange {
        table: usize,
        still_mappable: Option<CapturedTable>,
        reason: String,
        end: BinlogPosition,
    },
}

/// The GTID state of MariaDB: per replication domain, the last (server id, sequence number).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct GtidState(BTreeMap<u32, (u32, u64)>);

impl GtidState {
    fn parse(s: &str) -> Result<GtidState> {
        let mut state = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let nums: Vec<&str> = part.split('-').collect();
            let parsed = match nums.as_slice() {
                [d, s, n] => d.parse().ok().zip(s.parse().ok()).zip(n.parse().ok()),
                _ => None,
            };
            let ((d, s), n) = parsed.ok_or_else(|| {
                Error::user(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!(
                        "'{part}' is not a MariaDB GTID (domain-server-sequence); MySQL GTID sets are not resumed from"
                    ),
                )
            })?;
            state.insert(d, (s, n));
        }
        Ok(GtidState(state))
    }

    fn render(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        Some(
            self.0
                .iter()
                .map(|(d, (s, n))| format!("{d}-{s}-{n}"))
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// MariaDB event type codes mysql_common does not know.
const MARIADB_GTID_EVENT: u8 = 162;
/// `FL_STANDALONE`: the GTID group is one statement with no COMMIT (DDL).
const GTID_FL_STANDALONE: u8 = 1;
/// `LOG_EVENT_ARTIFICIAL_F`: made up by the server for this stream; its `log_pos` is no position.
const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;
/// Idle streams get a heartbeat this often.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// No event (not even a heartbeat) for this long: the connection is dead.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// One captured table as the reader follows it.
struct Followed {
    captured: CapturedTable,
    decoders: Vec<(usize, ColumnDecoder)>,
    /// Stopped by a schema change that made it unmappable.
    stopped: bool,
}

/// The transaction being assembled.
#[derive(Default)]
struct OpenTxn {
    rows: BTreeMap<usize, (RowsBuilder, Vec<i64>)>,
    gtid: Option<(u32, u32, u64)>,
    standalone: bool,
}

/// Reads the binlog as a replica, from a given position, yielding whole transactions.
pub struct BinlogReader {
    cfg: MysqlConfig,
    stream: BinlogStream,
    tables: Vec<Followed>,
    file: String,
    pos: u64,
    gtid: GtidState,
    /// The server checksums events (then the fake ROTATE sent before the first
    /// FORMAT_DESCRIPTION carries a checksum the parser cannot know about yet).
    checksums: bool,
    seen_format_description: bool,
    txn: Option<OpenTxn>,
    ready: VecDeque<BinlogItem>,
}

impl BinlogReader {
    /// Starts a binlog dump at `from` (the GTID state when `from.gtid` is set on MariaDB, else
    /// file + offset). Row events of tables not in `tables` are skipped.
    pub async fn connect(cfg: &MysqlConfig, tables: Vec<CapturedTable>, from: BinlogPosition) -> Result<BinlogReader> {
        let err = |what: &'static str| move |e| upstream_error(cfg, what, e);
        let mut conn = cfg.connect().await?;
        let version: String = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(err("start binlog"))?
            .unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let start_gtid = from.gtid.as_deref().filter(|g| !g.trim().is_empty() && mariadb);
        let gtid = match start_gtid {
            Some(g) => GtidState::parse(g)?,
            None if mariadb => {
                let g: Option<Option<String>> = conn
                    .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&from.file, from.pos))
                    .await
                    .map_err(err("read GTID position"))?;
                GtidState::parse(&g.flatten().unwrap_or_default())?
            }
            None => GtidState::default(),
        };
        let checksum: Option<String> = conn
            .query_first("SELECT @@global.binlog_checksum")
            .await
            .map_err(err("start binlog"))?;
        let checksums = checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE"));
        let heartbeat_ns = HEARTBEAT.as_nanos() as u64;
        conn.query_drop(format!("SET @master_heartbeat_period = {heartbeat_ns}"))
            .await
            .map_err(err("start binlog"))?;
        if mariadb {
            conn.query_drop("SET @mariadb_slave_capability = 4")
                .await
                .map_err(err("start binlog"))?;
            if let Some(g) = start_gtid {
                conn.exec_drop("SET @slave_connect_state = ?", (g,))
                    .await
                    .map_err(err("start binlog"))?;
                conn.query_drop("SET @slave_gtid_strict_mode = 0")
                    .await
                    .map_err(err("start binlog"))?;
                conn.query_drop("SET @slave_gtid_ignore_duplicates = 0")
                    .await
                    .map_err(err("start binlog"))?;
            }
        }
        let request = BinlogStreamRequest::new(cfg.server_id)
            .with_filename(from.file.as_bytes())
            .with_pos(from.pos.max(4));
        let stream = conn.get_binlog_stream(request).await.map_err(err("start binlog"))?;
        let tables = tables
            .into_iter()
            .map(|captured| Followed {
                decoders: captured.decoders(),
                captured,
                stopped: false,
            })
            .collect();
        Ok(BinlogReader {
            cfg: cfg.clone(),
            stream,
            tables,
            file: from.file,
            pos: from.pos,
            gtid,
            checksums,
            seen_format_description: false,
            txn: None,
            ready: VecDeque::new(),
        })
    }

    /// The position after the last event read.
    fn position(&self) -> BinlogPosition {
        BinlogPosition {
            file: self.file.clone(),
            pos: self.pos,
            gtid: self.gtid.render(),
        }
    }

    /// Next complete upstream transaction, schema change, or position advance. An error means
    /// the stream is unusable: reconnect from the last position committed.
    pub async fn next(&mut self) -> Result<BinlogItem> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(item);
            }
            let event = match tokio::time::timeout(SILENCE_TIMEOUT, self.stream.next()).await {
                Err(_) => {
                    return Err(Error::External {
                        state: SqlState("08006"),
                        message: format!(
                            "mysql-cdc {}:{}: no binlog event or heartbeat for {}s",
                            self.cfg.hostname,
                            self.cfg.port,
                            SILENCE_TIMEOUT.as_secs()
                        ),
                        retryable: true,
                    })
                }
                Ok(None) => {
                    return Err(Error::External {
                        state: SqlState("08006"),
                        message: format!(
                            "mysql-cdc {}:{}: the binlog stream ended",
                            self.cfg.hostname, self.cfg.port
                        ),
                        retryable: true,
                    })
                }
                Ok(Some(Err(e))) => return Err(upstream_error(&self.cfg, "read binlog", e)),
                Ok(Some(Ok(event))) => event,
            };
            self.handle(event).await?;
        }
    }

    async fn handle(&mut self, event: Event) -> Result<()> {
        let header = event.header();
        let timestamp_micros = header.timestamp() as i64 * 1_000_000;
        let artificial = header.flags_raw() & LOG_EVENT_ARTIFICIAL_F != 0;
        let raw_type = header.event_type_raw();
        let bad = |e: std::io::Error| Error::External {
            state: SqlState::PROTOCOL_VIOLATION,
            message: format!("mysql-cdc: cannot parse a binlog event of type {raw_type}: {e}"),
            retryable: false,
        };
        let advance = |this: &mut Self| {
            if !artificial && header.log_pos() != 0 {
                this.pos = header.log_pos() as u64;
            }
        };
        if raw_type == MARIADB_GTID_EVENT {
            let data = event.data();
            if data.len() >= 13 {
                let seq = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
                let domain = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
                let flags = data[12];
                self.txn = Some(OpenTxn {
                    gtid: Some((domain, header.server_id(), seq)),
                    standalone: flags & GTID_FL_STANDALONE != 0,
                    ..OpenTxn::default()
                });
            }
            advance(self);
            return Ok(());
        }
        let data = match event.read_data().map_err(bad)? {
            Some(d) => d,
            None => {
                // Other MariaDB events (GTID_LIST, BINLOG_CHECKPOINT, ANNOTATE_ROWS, ...).
                advance(self);
                return Ok(());
            }
        };
        match data {
            EventData::FormatDescriptionEvent(_) => self.seen_format_description = true,
            EventData::RotateEvent(r) => {
                let mut name = r.name_raw();
                if self.checksums && !self.seen_format_description && name.len() > 4 {
                    name = &name[..name.len() - 4];
                }
                self.file = String::from_utf8_lossy(name).into_owned();
                self.pos = r.position();
                if self.txn.is_none() && header.timestamp() != 0 && !artificial {
                    self.ready.push_back(BinlogItem::Progress {
                        end: self.position(),
                        commit_time_micros: timestamp_micros,
                    });
                }
            }
            EventData::HeartbeatEvent => {
                if header.log_pos() != 0 {
                    self.pos = header.log_pos() as u64;
                }
                if self.txn.is_none() {
                    self.ready.push_back(BinlogItem::Progress {
                        end: self.position(),
                        commit_time_micros: 0,
                    });
                }
            }
            EventData::QueryEvent(q) => {
                advance(self);
                let query = q.query().trim().to_string();
                let upper = query.to_ascii_uppercase();
                if upper == "BEGIN" || upper.starts_with("XA START") {
                    if self.txn.is_none() {
                        self.txn = Some(OpenTxn::default());
                    }
                } else if upper == "COMMIT" || upper.starts_with("XA COMMIT") {
                    self.commit(timestamp_micros)?;
                } else if upper == "ROLLBACK" {
                    let mut txn = self.txn.take().unwrap_or_default();
                    txn.rows.clear();
                    self.finish_group(txn, timestamp_micros)?;
                } else if self.txn.as_ref().is_some_and(|t| !t.standalone) {
                    // A statement inside a transaction (SAVEPOINT, ...): nothing to capture.
                } else {
                    let txn = self.txn.take().unwrap_or_default();
                    let schema = q.schema().into_owned();
                    self.apply_gtid(&txn);
                    let changed = self.ddl(&schema, &query).await?;
                    if !changed {
                        self.ready.push_back(BinlogItem::Progress {
                            end: self.position(),
                            commit_time_micros: timestamp_micros,
                        });
                    }
                }
            }
            EventData::XidEvent(_) => {
                advance(self);
                self.commit(timestamp_micros)?;
            }
            EventData::TableMapEvent(tme) => {
                advance(self);
                self.check_table_map(&tme).await?;
            }
            EventData::RowsEvent(rows) => {
                advance(self);
                self.rows(&rows)?;
            }
            _ => advance(self),
        }
        Ok(())
    }

    fn table_index(&self, db: &str, table: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| !t.stopped && t.captured.database == db && t.captured.name == table)
    }

    fn rows(&mut self, rows: &RowsEventData<'_>) -> Result<()> {
        let Some(tme) = self.stream.get_tme(rows.table_id()) else {
            return Err(Error::External {
                state: SqlState::PROTOCOL_VIOLATION,
                message: format!("mysql-cdc: row event for unknown table id {}", rows.table_id()),
                retryable: false,
            });
        };
        let Some(idx) = self.table_index(&tme.database_name(), &tme.table_name()) else {
            return Ok(());
        };
        let followed = &self.tables[idx];
        let width = followed.captured.upstream_width;
        let (insert_only, delete_only) = match rows {
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => (true, false),
            RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => (false, true),
            RowsEventData::UpdateRowsEvent(_) | RowsEventData::UpdateRowsEventV1(_) => (false, false),
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(Error::unsupported(
                    "partial JSON updates in the binlog (binlog_row_value_options = PARTIAL_JSON) for mysql-cdc",
                ))
            }
        };
        let txn = self.txn.get_or_insert_with(OpenTxn::default);
        let (builder, weights) = txn.rows.entry(idx).or_insert_with(|| {
            (
                RowsBuilder::new(followed.captured.schema.clone(), followed.decoders.clone()),
                Vec::new(),
            )
        });
        let qualified = followed.captured.qualified();
        let mut push = |row: mysql_async::binlog::row::BinlogRow, weight: i64| -> Result<()> {
            if row.len() != width {
                return Err(Error::user(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!(
                        "mysql-cdc: a row image of {qualified} has {} of its {width} columns; set binlog_row_image = FULL",
                        row.len()
                    ),
                ));
            }
            let mut values = row.unwrap();
            builder.push(
                |u| {
                    let v = std::mem::replace(&mut values[u], BinlogValue::Value(Value::NULL));
                    Value::try_from(v).map_err(|e| Error::External {
                        state: SqlState::DATA_EXCEPTION,
                        message: format!("mysql-cdc: {e}"),
                        retryable: false,
                    })
                },
                Origin::Binlog,
            )?;
            weights.push(weight);
            Ok(())
        };
        for row in rows.rows(tme) {
            let (before, after) = row.map_err(|e| Error::External {
                state: SqlState::PROTOCOL_VIOLATION,
                message: format!(
                    "mysql-cdc: cannot decode a row of {}: {e}",
                    self.tables[idx].captured.qualified()
                ),
                retryable: false,
            })?;
            if let Some(before) = before {
                if !insert_only {
                    push(before, -1)?;
                }
            }
            if let Some(after) = after {
                if !delete_only {
                    push(after, 1)?;
                }
            }
        }
        Ok(())
    }

    fn apply_gtid(&mut self, txn: &OpenTxn) {
        if let Some((domain, server, seq)) = txn.gtid {
            self.gtid.0.insert(domain, (server, seq));
        }
    }

    fn commit(&mut self, commit_time_micros: i64) -> Result<()> {
        let txn = self.txn.take().unwrap_or_default();
        self.finish_group(txn, commit_time_micros)
    }

    fn finish_group(&mut self, txn: OpenTxn, commit_time_micros: i64) -> Result<()> {
        self.apply_gtid(&txn);
        let mut changes = Vec::new();
        for (idx, (mut builder, weights)) in txn.rows {
            if builder.len() == 0 {
                continue;
            }
            changes.push((idx, Changes::new(builder.finish()?, weights)?));
        }
        let end = self.position();
        self.ready.push_back(if changes.is_empty() {
            BinlogItem::Progress {
                end,
                commit_time_micros,
            }
        } else {
            BinlogItem::Transaction {
                changes,
                end,
                commit_time_micros,
            }
        });
        Ok(())
    }

    /// A DDL statement: a SchemaChange for each captured table it names. True if any.
    async fn ddl(&mut self, schema: &str, query: &str) -> Result<bool> {
        let normalized = strip_comments(query).to_ascii_lowercase().replace('`', "");
        let words: Vec<&str> = normalized
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | ';'))
            .filter(|w| !w.is_empty())
            .collect();
        let verb = match words.as_slice() {
            ["alter", "online", "table", ..] | ["alter", "ignore", "table", ..] | ["alter", "table", ..] => "alter",
            ["drop", "table", ..] | ["drop", "temporary", "table", ..] => "drop",
            ["rename", "table", ..] => "rename",
            ["truncate", ..] => "truncate",
            _ => return Ok(false),
        };
        let mut any = false;
        for idx in 0..self.tables.len() {
            if self.tables[idx].stopped {
                continue;
            }
            let (db, name) = {
                let c = &self.tables[idx].captured;
                (c.database.to_ascii_lowercase(), c.name.to_ascii_lowercase())
            };
            let qualified = format!("{db}.{name}");
            let named = words
                .iter()
                .any(|w| *w == qualified || (*w == name && schema.eq_ignore_ascii_case(&db)));
            if !named {
                continue;
            }
            any = true;
            let end = self.position();
            let item = match verb {
                "alter" => self.remap(idx, format!("upstream ALTER TABLE: {query}")).await?,
                other => {
                    self.tables[idx].stopped = true;
                    BinlogItem::SchemaChange {
                        table: idx,
                        still_mappable: None,
                        reason: format!(
                            "upstream {} of {qualified} cannot be followed as row changes ({query}); re-create the table to snapshot it again",
                            other.to_ascii_uppercase()
                        ),
                        end,
                    }
                }
            };
            self.ready.push_back(item);
        }
        Ok(any)
    }

    /// Describes table `idx` again and maps the same declared columns onto it.
    async fn remap(&mut self, idx: usize, why: String) -> Result<BinlogItem> {
        let end = self.position();
        let (db, name, declared, pk) = {
            let c = &self.tables[idx].captured;
            (c.database.clone(), c.name.clone(), c.declared(), c.declared_pk())
        };
        let mut conn = self.cfg.connect().await?;
        let described = describe_on(&self.cfg, &mut conn, &db, &name).await;
        let _ = conn.disconnect().await;
        let mapped = described.and_then(|upstream| capture(&declared, &pk, &upstream));
        Ok(match mapped {
            Ok(captured) => {
                let followed = &mut self.tables[idx];
                followed.decoders = captured.decoders();
                followed.captured = captured.clone();
                BinlogItem::SchemaChange {
                    table: idx,
                    still_mappable: Some(captured),
                    reason: why,
                    end,
                }
            }
            Err(e) if matches!(e, Error::External { retryable: true, .. }) => return Err(e),
            Err(e) => {
                self.tables[idx].stopped = true;
                BinlogItem::SchemaChange {
                    table: idx,
                    still_mappable: None,
                    reason: format!("{why}: {e}"),
                    end,
                }
            }
        })
    }

    /// A TABLE_MAP of a captured table that no longer matches its mapping (DDL the reader did
    /// not see as a statement): map again, or stop the table.
    async fn check_table_map(&mut self, tme: &TableMapEvent<'_>) -> Result<()> {
        let Some(idx) = self.table_index(&tme.database_name(), &tme.table_name()) else {
            return Ok(());
        };
        if table_map_matches(&self.tables[idx].captured, tme) {
            return Ok(());
        }
        let item = self
            .remap(
                idx,
                format!("upstream {} changed shape", self.tables[idx].captured.qualified()),
            )
            .await?;
        let still_ok = match &item {
            BinlogItem::SchemaChange {
                still_mappable: Some(c),
                ..
            } => table_map_matches(c, tme),
            _ => false,
        };
        if !still_ok {
            if let BinlogItem::SchemaChange {
                still_mappable, reason, ..
            } = &item
            {
                if still_mappable.is_some() {
                    self.tables[idx].stopped = true;
                    self.ready.push_back(BinlogItem::SchemaChange {
                        table: idx,
                        still_mappable: None,
                        reason: format!(
                            "{reason}: the binlog's row layout differs from the table's current definition"
                        ),
                        end: self.position(),
                    });
                    return Ok(());
                }
            }
        }
        self.ready.push_back(item);
        Ok(())
    }
}

/// Column count, the types of read columns, and (with `binlog_row_metadata = FULL`) their names.
fn table_map_matches(captured: &CapturedTable, tme: &TableMapEvent<'_>) -> bool {
    if tme.columns_count() as usize != captured.upstream_width {
        return false;
    }
    let names: Option<Vec<String>> = tme.iter_optional_meta().find_map(|m| match m {
        Ok(mysql_async::binlog::events::OptionalMetadataField::ColumnName(names)) => Some(
            names
                .iter_names()
                .filter_map(|n| n.ok())
                .map(|n| n.name().into_owned())
                .collect(),
        ),
        _ => None,
    });
    captured.upstream_index.iter().all(|u| {
        let col = &captured.upstream.columns[*u];
        let type_ok = match (tme.get_column_type(*u), &col.kind) {
            (Ok(Some(t)), Some(kind)) => kind.matches_binlog_type(t),
            _ => false,
        };
        let name_ok = names
            .as_ref()
            .is_none_or(|n| n.get(*u).is_some_and(|n| n.eq_ignore_ascii_case(&col.name)));
        type_ok && name_ok
    })
}

/// Removes `/* ... */` and `-- ...` / `# ...` comments (good enough to find a DDL's verb).
fn strip_comments(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut rest = q;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |e| &after[e + 2..]);
            out.push(' ');
        } else if rest.starts_with("-- ") || rest.starts_with('#') {
            rest = rest.find('\n').map_or("", |e| &rest[e..]);
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_state_round_trips() {
        let g = GtidState::parse("0-1-7,2-5-9").unwrap();
        assert_eq!(g.render().as_deref(), Some("0-1-7,2-5-9"));
        assert!(GtidState::parse("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5").is_err());
        assert_eq!(GtidState::parse("").unwrap().render(), None);
    }

    #[test]
    fn strips_comments_before_the_verb() {
        assert_eq!(
            strip_comments("/* x */ALTER TABLE t -- c\n ADD c INT").trim(),
            "ALTER TABLE t \n ADD c INT"
        );
    }
}
