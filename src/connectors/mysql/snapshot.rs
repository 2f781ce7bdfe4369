//! The initial snapshot: every captured table read in primary-key chunks inside ONE consistent
//! read transaction, together with the binlog position that transaction sees.
//!
//! - MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT`, then `SHOW STATUS LIKE
//!   'binlog_snapshot_%'` gives the binlog file and offset matching the snapshot exactly, with no
//!   global lock; `BINLOG_GTID_POS(file, pos)` turns it into a GTID state.
//! - MySQL: a short `FLUSH TABLES WITH READ LOCK` around `START TRANSACTION WITH CONSISTENT
//!   SNAPSHOT` + `SHOW MASTER STATUS` (needs RELOAD); the lock is released before any row is read.
//!
//! Chunks are `WHERE pk > last ORDER BY pk LIMIT n` (a composite key is expanded to
//! `a > ? OR (a = ? AND b > ?)`, which both servers turn into index ranges). A table without a
//! primary key is read with `LIMIT n OFFSET k`: stable within the one snapshot transaction, but a
//! full scan per chunk.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::binlog::BinlogPosition;
use super::types::{Origin, RowsBuilder};
use super::{quote_ident, quote_table, upstream_error, CapturedTable, MysqlConfig};
use crate::error::{Error, Result};
use datafusion::arrow::array::RecordBatch;

/// Rows read so far and the server's estimate of the total, for one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotProgress {
    /// `db.table`.
    pub table: String,
    pub rows_done: u64,
    /// `information_schema.TABLES.TABLE_ROWS` when the snapshot opened (an estimate for InnoDB).
    pub rows_estimated: u64,
}

struct TableScan {
    captured: CapturedTable,
    /// Upstream column indexes selected, in SELECT order.
    selected: Vec<usize>,
    /// Positions of the primary-key columns within `selected`.
    pk_pos: Vec<usize>,
    last_key: Option<Vec<Value>>,
    offset: u64,
    done: bool,
    rows_done: u64,
    rows_estimated: u64,
}

/// A consistent snapshot of several tables plus the binlog position exactly matching it.
pub struct SnapshotReader {
    cfg: MysqlConfig,
    conn: Option<Conn>,
    tables: Vec<TableScan>,
    position: BinlogPosition,
    current: usize,
}

impl SnapshotReader {
    /// Opens the snapshot transaction and reads its binlog position (see the module docs).
    pub async fn open(cfg: &MysqlConfig, tables: Vec<CapturedTable>) -> Result<SnapshotReader> {
        let mut conn = cfg.connect().await?;
        let err = |what: &'static str| move |e| upstream_error(cfg, what, e);
        let version: String = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(err("snapshot"))?
            .unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let mut scans = Vec::with_capacity(tables.len());
        for captured in tables {
            let estimate: Option<Option<u64>> = conn
                .exec_first(
                    "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    (&captured.database, &captured.name),
                )
                .await
                .map_err(err("estimate table size"))?;
            let mut selected: Vec<usize> = captured.upstream_index.clone();
            for pk in &captured.upstream.primary_key {
                if !selected.contains(pk) {
                    selected.push(*pk);
                }
            }
            let pk_pos = captured
                .upstream
                .primary_key
                .iter()
                .map(|pk| selected.iter().position(|s| s == pk).expect("selected"))
                .collect();
            scans.push(TableScan {
                captured,
                selected,
                pk_pos,
                last_key: None,
                offset: 0,
                done: false,
                rows_done: 0,
                rows_estimated: estimate.flatten().unwrap_or(0),
            });
        }
        conn.query_drop("SET SESSION time_zone = '+00:00'")
            .await
            .map_err(err("snapshot"))?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(err("snapshot"))?;
        let position = if mariadb {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .map_err(err("start snapshot"))?;
            let status: Vec<(String, String)> = conn
                .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
                .await
                .map_err(err("read snapshot position"))?;
            let get = |name: &str| {
                status
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let file = get("Binlog_snapshot_file").unwrap_or_default();
            let pos: u64 = get("Binlog_snapshot_position")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if file.is_empty() {
                return Err(Error::user(
                    crate::error::SqlState::INVALID_PARAMETER_VALUE,
                    format!(
                        "MySQL server {}:{}: the binary log is off (start it with --log-bin)",
                        cfg.hostname, cfg.port
                    ),
                ));
            }
            let gtid: Option<Option<String>> = conn
                .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, pos))
                .await
                .map_err(err("read snapshot GTID position"))?;
            BinlogPosition {
                file,
                pos,
                gtid: gtid.flatten().filter(|g| !g.is_empty()),
            }
        } else {
            conn.query_drop("FLUSH TABLES WITH READ LOCK")
                .await
                .map_err(err("lock tables for the snapshot"))?;
            let started = async {
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT").await?;
                let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
                    Ok(r) => r,
                    // MySQL 8.4 renamed it.
                    Err(_) => conn.query_first("SHOW BINARY LOG STATUS").await?,
                };
                Ok::<_, mysql_async::Error>(row)
            }
            .await;
            let unlocked = conn.query_drop("UNLOCK TABLES").await;
            let row = started.map_err(err("start snapshot"))?;
            unlocked.map_err(err("unlock tables"))?;
            let row = row.ok_or_else(|| {
                Error::user(
                    crate::error::SqlState::INVALID_PARAMETER_VALUE,
                    format!(
                        "MySQL server {}:{}: the binary log is off (start it with --log-bin)",
                        cfg.hostname, cfg.port
                    ),
                )
            })?;
            let file: String = row.get(0).unwrap_or_default();
            let pos: u64 = row.get(1).unwrap_or(0);
            BinlogPosition { file, pos, gtid: None }
        };
        Ok(SnapshotReader {
            cfg: cfg.clone(),
            conn: Some(conn),
            tables: scans,
            position,
            current: 0,
        })
    }

    /// The binlog position matching the snapshot: stream from here after the last chunk.
    pub fn position(&self) -> &BinlogPosition {
        &self.position
    }

    /// The next chunk of up to `chunk_rows` rows of one table, in primary-key order, as
    /// (table index, rows in the table's Freshet schema). None when every table is done.
    pub async fn next_chunk(&mut self, chunk_rows: usize) -> Result<Option<(usize, RecordBatch)>> {
        let chunk_rows = chunk_rows.max(1);
        while self.current < self.tables.len() {
            let idx = self.current;
            let cfg = self.cfg.clone();
            let Some(conn) = self.conn.as_mut() else {
                return Err(Error::internal("mysql-cdc snapshot read after it finished"));
            };
            let scan = &mut self.tables[idx];
            if scan.done {
                self.current += 1;
                continue;
            }
            let cols = &scan.captured.upstream.columns;
            let select: Vec<String> = scan.selected.iter().map(|i| quote_ident(&cols[*i].name)).collect();
            let pk_names: Vec<String> = scan
                .captured
                .upstream
                .primary_key
                .iter()
                .map(|i| quote_ident(&cols[*i].name))
                .collect();
            let table = quote_table(&scan.captured.database, &scan.captured.name);
            let (sql, params) = if pk_names.is_empty() {
                (
                    format!(
                        "SELECT {} FROM {table} LIMIT {chunk_rows} OFFSET {}",
                        select.join(", "),
                        scan.offset
                    ),
                    Vec::new(),
                )
            } else {
                let mut sql = format!("SELECT {} FROM {table}", select.join(", "));
                let mut params = Vec::new();
                if let Some(last) = &scan.last_key {
                    // a > ? OR (a = ? AND b > ?) OR ...
                    let mut ors = Vec::new();
                    for k in 0..pk_names.len() {
                        let mut ands = Vec::new();
                        for (j, name) in pk_names.iter().enumerate().take(k) {
                            ands.push(format!("{name} = ?"));
                            params.push(last[j].clone());
                        }
                        ands.push(format!("{} > ?", pk_names[k]));
                        params.push(last[k].clone());
                        ors.push(format!("({})", ands.join(" AND ")));
                    }
                    sql.push_str(&format!(" WHERE {}", ors.join(" OR ")));
                }
                sql.push_str(&format!(" ORDER BY {} LIMIT {chunk_rows}", pk_names.join(", ")));
                (sql, params)
            };
            let rows: Vec<mysql_async::Row> = if params.is_empty() {
                conn.exec(sql.as_str(), ()).await
            } else {
                conn.exec(sql.as_str(), params).await
            }
            .map_err(|e| upstream_error(&cfg, "read snapshot chunk", e))?;
            let n = rows.len();
            if n < chunk_rows {
                scan.done = true;
            }
            if n == 0 {
                continue;
            }
            let mut builder = RowsBuilder::new(scan.captured.schema.clone(), scan.captured.decoders());
            let position_of: Vec<Option<usize>> = (0..cols.len())
                .map(|u| scan.selected.iter().position(|s| *s == u))
                .collect();
            let mut last_key = None;
            for (r, row) in rows.into_iter().enumerate() {
                let mut values = row.unwrap();
                if r + 1 == n {
                    last_key = Some(scan.pk_pos.iter().map(|p| values[*p].clone()).collect());
                }
                builder.push(
                    |u| {
                        position_of[u]
                            .map(|p| std::mem::replace(&mut values[p], Value::NULL))
                            .ok_or_else(|| Error::internal("snapshot column not selected"))
                    },
                    Origin::Query,
                )?;
            }
            scan.last_key = last_key;
            scan.offset += n as u64;
            scan.rows_done += n as u64;
            return Ok(Some((idx, builder.finish()?)));
        }
        // Every table read: end the snapshot transaction.
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.query_drop("COMMIT").await;
            let _ = conn.disconnect().await;
        }
        Ok(None)
    }

    /// Rows read so far and estimated totals, per table.
    pub fn progress(&self) -> Vec<SnapshotProgress> {
        self.tables
            .iter()
            .map(|t| SnapshotProgress {
                table: t.captured.qualified(),
                rows_done: t.rows_done,
                rows_estimated: t.rows_estimated.max(t.rows_done),
            })
            .collect()
    }
}
