//! Reading captured tables as of an exported snapshot: one REPEATABLE READ transaction that
//! imports the snapshot a replication slot's creation exported, then `COPY (SELECT ..) TO
//! STDOUT` per table, cut into chunks.
//!
//! The slot's stream starts exactly after that snapshot, so snapshot rows + the stream from the
//! slot's consistent point = each table, nothing lost or doubled.

use std::pin::Pin;

use futures::StreamExt;
use tokio_postgres::{Client, CopyOutStream};

use super::config::PostgresConfig;
use super::schema::Captured;
use super::upstream_error;
use super::values::{copy_text_cells, TextRows};
use crate::dataflow::changes::Changes;
use crate::error::{Error, Result};

/// How far the snapshot of one table has got.
#[derive(Clone, Debug)]
pub struct SnapshotProgress {
    pub table: String,
    pub rows_done: u64,
    pub rows_estimated: u64,
}

/// Reads the tables one after the other, in chunks.
pub struct SnapshotReader {
    cfg: PostgresConfig,
    client: Client,
    tables: Vec<Captured>,
    current: usize,
    stream: Option<Pin<Box<CopyOutStream>>>,
    /// Bytes of a line not yet complete.
    partial: Vec<u8>,
    progress: Vec<SnapshotProgress>,
}

impl SnapshotReader {
    /// Opens a transaction on `snapshot` (the name a slot's creation exported). The exporting
    /// replication connection must still be open and idle until this returns.
    pub async fn open(cfg: &PostgresConfig, snapshot: &str, tables: Vec<Captured>) -> Result<SnapshotReader> {
        let client = cfg.connect().await?;
        let setup = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        );
        client
            .batch_execute(&setup)
            .await
            .map_err(|e| upstream_error(cfg, "import the exported snapshot", e))?;
        let progress = tables
            .iter()
            .map(|t| SnapshotProgress {
                table: t.upstream.qualified(),
                rows_done: 0,
                rows_estimated: t.upstream.estimated_rows,
            })
            .collect();
        Ok(SnapshotReader {
            cfg: cfg.clone(),
            client,
            tables,
            current: 0,
            stream: None,
            partial: Vec::new(),
            progress,
        })
    }

    pub fn progress(&self) -> &[SnapshotProgress] {
        &self.progress
    }

    /// The next chunk of at most `max` rows: (index of the table in the list given to
    /// `open`, its rows as +1 changes), or None when every table was read.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Option<(usize, Changes)>> {
        loop {
            if self.current >= self.tables.len() {
                if let Err(e) = self.client.batch_execute("COMMIT").await {
                    tracing::debug!(error = %e, "postgres-cdc snapshot commit");
                }
                return Ok(None);
            }
            let t = &self.tables[self.current];
            if self.stream.is_none() {
                let cols: Vec<String> = t.columns.iter().map(|c| super::quote_ident(c)).collect();
                let sql = format!(
                    "COPY (SELECT {} FROM {}) TO STDOUT",
                    cols.join(", "),
                    t.upstream.quoted()
                );
                let stream = self
                    .client
                    .copy_out(&sql)
                    .await
                    .map_err(|e| upstream_error(&self.cfg, "snapshot", e))?;
                self.stream = Some(Box::pin(stream));
            }
            let mut rows = TextRows::new(&t.columns, &t.types);
            let stream = self.stream.as_mut().expect("opened above");
            let mut ended = false;
            while rows.len() < max {
                match stream.next().await {
                    None => {
                        ended = true;
                        break;
                    }
                    Some(Err(e)) => return Err(upstream_error(&self.cfg, "snapshot", e)),
                    Some(Ok(bytes)) => {
                        self.partial.extend_from_slice(&bytes);
                        while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = self.partial.drain(..=nl).collect();
                            let text = std::str::from_utf8(&line[..line.len() - 1])
                                .map_err(|_| Error::internal("postgres-cdc: COPY output is not UTF-8"))?;
                            rows.push(copy_text_cells(text)?, 1);
                        }
                    }
                }
            }
            let index = self.current;
            if ended {
                self.stream = None;
                self.current += 1;
            }
            if rows.is_empty() {
                continue;
            }
            self.progress[index].rows_done += rows.len() as u64;
            return Ok(Some((index, rows.finish()?)));
        }
    }
}
