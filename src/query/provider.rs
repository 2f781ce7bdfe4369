//! [`StoredTable`]: a DataFusion `TableProvider` over a table's rows in one [`ReadView`].
//!
//! A scan reads the committed snapshot over the key ranges computed from primary-key filters
//! ([`super::key_range`]), merges the reading transaction's own writes in key order, and decodes
//! rows into Arrow batches on a blocking thread, streaming them to DataFusion.

use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;

use super::key_range::{self, KeyRange};
use super::ReadView;
use crate::catalog::{Layout, Table};
use crate::dataflow::coordinator::RowWrite;
use crate::error::Result;
use crate::state::segment;

const BATCH_ROWS: usize = 4096;

/// A table as seen by one statement.
#[derive(Debug)]
pub struct StoredTable {
    table: Arc<Table>,
    view: ViewHandle,
    /// Expose hidden columns (the row id): used by UPDATE / DELETE on their target table.
    with_hidden: bool,
    /// Read `FOR SYSTEM_TIME AS OF PROCTIME()` (`crate::sql::temporal`): a view looks its rows
    /// up by primary key instead of joining with its changes.
    temporal: bool,
}

/// `ReadView` with a `Debug` impl (DataFusion requires providers to be `Debug`).
#[derive(Clone)]
struct ViewHandle(ReadView);

impl std::fmt::Debug for ViewHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {}", self.0.committed.epoch)
    }
}

impl StoredTable {
    pub fn new(table: Arc<Table>, view: ReadView, with_hidden: bool) -> Self {
        StoredTable {
            table,
            view: ViewHandle(view),
            with_hidden,
            temporal: false,
        }
    }

    /// This table read `FOR SYSTEM_TIME AS OF PROCTIME()`.
    pub fn temporal(self) -> Self {
        StoredTable { temporal: true, ..self }
    }

    pub fn is_temporal(&self) -> bool {
        self.temporal
    }

    /// The table this provider reads.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    fn output_schema(&self) -> SchemaRef {
        if self.with_hidden {
            self.table.full_schema.clone()
        } else {
            self.table.visible_schema.clone()
        }
    }
}

#[async_trait]
impl TableProvider for StoredTable {
    fn schema(&self) -> SchemaRef {
        self.output_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.table.def.layout == Layout::Stream {
            return Err(to_df(crate::error::Error::user_detail(
                crate::error::SqlState::FEATURE_NOT_SUPPORTED,
                format!("cannot read source {}: a stream keeps no rows", self.table.def.name),
                "Its rows only reach the materialized views over it; a table (CREATE TABLE .. WITH (connector = ..)) stores them.",
            )));
        }
        let ranges = key_range::key_ranges(&self.table, filters).map_err(to_df)?;
        let stream = Arc::new(ScanStream {
            table: self.table.clone(),
            view: self.view.clone(),
            ranges,
            schema: self.output_schema(),
            with_hidden: self.with_hidden,
            limit,
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            self.output_schema(),
            vec![stream],
            projection,
            vec![],
            false,
            limit,
        )?))
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: the ranges narrow the scan, DataFusion still applies the filter.
        Ok(filters
            .iter()
            .map(|f| {
                if key_range::is_key_filter(&self.table, f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }
}

pub(super) fn to_df(e: crate::error::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

#[derive(Debug)]
struct ScanStream {
    table: Arc<Table>,
    view: ViewHandle,
    ranges: Vec<KeyRange>,
    schema: SchemaRef,
    with_hidden: bool,
    limit: Option<usize>,
}

impl PartitionStream for ScanStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let tx = builder.tx();
        let table = self.table.clone();
        let view = self.view.0.clone();
        let ranges = self.ranges.clone();
        let schema = self.schema.clone();
        let with_hidden = self.with_hidden;
        let limit = self.limit.unwrap_or(usize::MAX);
        builder.spawn_blocking(move || {
            if table.def.layout == Layout::Segments {
                return scan_segments(&table, &view, &schema, with_hidden, limit, &tx);
            }
            let mut sent = 0usize;
            let mut pending: Vec<Box<[u8]>> = Vec::with_capacity(BATCH_ROWS.min(limit));
            let flush = |pending: &mut Vec<Box<[u8]>>| -> DfResult<bool> {
                if pending.is_empty() {
                    return Ok(true);
                }
                let batch = decode(&table, &schema, with_hidden, pending).map_err(to_df)?;
                pending.clear();
                Ok(super::hand_over(&tx, batch))
            };
            for (from, to) in &ranges {
                let snap = view.committed.snapshot.clone();
                let stored = snap.scan(from, to);
                let overlay = view
                    .overlay
                    .rows
                    .range::<Vec<u8>, _>((Bound::Included(from), Bound::Excluded(to)));
                for row in merge(stored, overlay) {
                    pending.push(row.map_err(to_df)?);
                    sent += 1;
                    if pending.len() >= BATCH_ROWS && !flush(&mut pending)? {
                        return Ok(());
                    }
                    if sent >= limit {
                        flush(&mut pending)?;
                        return Ok(());
                    }
                }
            }
            flush(&mut pending)?;
            Ok(())
        });
        builder.build()
    }
}

/// Scans a table stored as segments (`state::segment`): every segment is a batch. Such a table
/// is written only by its source, so the reading transaction has no writes of its own to merge.
fn scan_segments(
    table: &Table,
    view: &ReadView,
    schema: &SchemaRef,
    with_hidden: bool,
    limit: usize,
    tx: &tokio::sync::mpsc::Sender<DfResult<RecordBatch>>,
) -> DfResult<()> {
    let (from, to) = crate::state::keys::table_range(table.def.id);
    let mut left = limit;
    for kv in view.committed.snapshot.scan(&from, &to) {
        if left == 0 {
            break;
        }
        let (_, v) = kv.map_err(to_df)?;
        let visible = segment::decode(&v, &table.visible_schema).map_err(to_df)?;
        let columns = if with_hidden {
            // Storage order: the hidden row id where the definition has it.
            let mut next_visible = visible.columns().iter();
            let mut c = Vec::with_capacity(table.def.columns.len());
            for col in &table.def.columns {
                match col.hidden {
                    true => c.push(segment::row_ids(&v).map_err(to_df)?),
                    false => c.push(next_visible.next().expect("a visible column").clone()),
                }
            }
            c
        } else {
            visible.columns().to_vec()
        };
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let batch = batch.slice(0, batch.num_rows().min(left));
        left -= batch.num_rows();
        if !super::hand_over(tx, batch) {
            break;
        }
    }
    Ok(())
}

fn decode(table: &Table, schema: &SchemaRef, with_hidden: bool, rows: &[Box<[u8]>]) -> Result<RecordBatch> {
    let columns = table.row_codec.decode(rows.iter().map(|r| r.as_ref()))?;
    let columns = if with_hidden {
        columns
    } else {
        columns
            .into_iter()
            .zip(&table.def.columns)
            .filter(|(_, c)| !c.hidden)
            .map(|(a, _)| a)
            .collect()
    };
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Merges stored rows with a transaction's writes (both in key order); the writes win.
fn merge<'a>(
    stored: impl Iterator<Item = Result<crate::state::KeyValue>> + 'a,
    overlay: impl Iterator<Item = (&'a Vec<u8>, &'a RowWrite)> + 'a,
) -> impl Iterator<Item = Result<Box<[u8]>>> + 'a {
    let mut stored = stored.peekable();
    let mut overlay = overlay.peekable();
    std::iter::from_fn(move || loop {
        let next_stored_key = match stored.peek() {
            Some(Ok((k, _))) => Some(k.clone()),
            Some(Err(_)) => return stored.next().map(|r| r.map(|(_, v)| v)),
            None => None,
        };
        let next_overlay_key = overlay.peek().map(|(k, _)| (*k).clone());
        match (next_stored_key, next_overlay_key) {
            (None, None) => return None,
            (Some(_), None) => return stored.next().map(|r| r.map(|(_, v)| v)),
            (sk, Some(ok)) => {
                let take_overlay = match &sk {
                    None => true,
                    Some(sk) => ok.as_slice() <= sk.as_ref(),
                };
                if !take_overlay {
                    return stored.next().map(|r| r.map(|(_, v)| v));
                }
                if sk.as_deref() == Some(ok.as_slice()) {
                    stored.next();
                }
                let (_, w) = overlay.next().expect("peeked");
                if let Some(v) = w.value() {
                    return Some(Ok(v.to_vec().into_boxed_slice()));
                }
                // A delete: skip and continue.
            }
        }
    })
}
