//! [`ViewTable`]: a DataFusion `TableProvider` over a materialized view's rows in one committed
//! epoch. Rows are stored once with their multiplicity and expanded on read.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;

use super::provider::to_df;
use crate::catalog::{Layout, View};
use crate::dataflow::operator::decode_i64;
use crate::state::{keys, segment, StateSnapshot};

const BATCH_ROWS: usize = 4096;

pub struct ViewTable {
    view: Arc<View>,
    snapshot: Arc<dyn StateSnapshot>,
}

impl std::fmt::Debug for ViewTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ViewTable({})", self.view.qualified_name())
    }
}

impl ViewTable {
    pub fn new(view: Arc<View>, snapshot: Arc<dyn StateSnapshot>) -> ViewTable {
        ViewTable { view, snapshot }
    }

    pub fn view(&self) -> &Arc<View> {
        &self.view
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let stream = Arc::new(ViewScan {
            view: self.view.clone(),
            snapshot: self.snapshot.clone(),
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            self.view.schema.clone(),
            vec![stream],
            projection,
            vec![],
            false,
            limit,
        )?))
    }
}

struct ViewScan {
    view: Arc<View>,
    snapshot: Arc<dyn StateSnapshot>,
}

impl std::fmt::Debug for ViewScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ViewScan({})", self.view.qualified_name())
    }
}

impl PartitionStream for ViewScan {
    fn schema(&self) -> &SchemaRef {
        &self.view.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.view.schema.clone(), 2);
        let tx = builder.tx();
        let view = self.view.clone();
        let snapshot = self.snapshot.clone();
        builder.spawn_blocking(move || {
            let (from, to) = keys::view_range(view.def.id);
            if view.def.layout == Layout::Segments {
                // Append-only: every segment is a batch of rows, each once.
                for kv in snapshot.scan(&from, &to) {
                    let (_, v) = kv.map_err(to_df)?;
                    let batch = segment::decode(&v, &view.schema).map_err(to_df)?;
                    if !super::hand_over(&tx, batch) {
                        break;
                    }
                }
                return Ok(());
            }
            if view.def.layout == Layout::Groups {
                // Each group's rows, each once with its multiplicity.
                return crate::dataflow::view_groups::read(&view, &*snapshot, BATCH_ROWS, |batch, counts| {
                    Ok(super::hand_over(&tx, expand(&batch, &counts)?))
                })
                .map_err(to_df);
            }
            let prefix = from.len();
            let mut rows: Vec<Box<[u8]>> = Vec::new();
            let mut counts: Vec<i64> = Vec::new();
            let flush = |rows: &mut Vec<Box<[u8]>>, counts: &mut Vec<i64>| -> DfResult<bool> {
                if rows.is_empty() {
                    return Ok(true);
                }
                let cols = view
                    .row_codec
                    .decode(rows.iter().map(|r| &r[prefix..]))
                    .map_err(to_df)?;
                let batch = datafusion::arrow::array::RecordBatch::try_new(view.schema.clone(), cols)?;
                let batch = expand(&batch, counts)?;
                rows.clear();
                counts.clear();
                Ok(super::hand_over(&tx, batch))
            };
            for kv in snapshot.scan(&from, &to) {
                let (k, v) = kv.map_err(to_df)?;
                rows.push(k);
                counts.push(decode_i64(&v));
                if rows.len() >= BATCH_ROWS && !flush(&mut rows, &mut counts)? {
                    return Ok(());
                }
            }
            flush(&mut rows, &mut counts)?;
            Ok(())
        });
        builder.build()
    }
}

/// `batch` with each row repeated as many times as its multiplicity in `counts`.
fn expand(
    batch: &datafusion::arrow::array::RecordBatch,
    counts: &[i64],
) -> Result<datafusion::arrow::array::RecordBatch, datafusion::arrow::error::ArrowError> {
    let idx: Vec<u32> = counts
        .iter()
        .enumerate()
        .flat_map(|(i, c)| std::iter::repeat_n(i as u32, (*c).max(0) as usize))
        .collect();
    take_record_batch(batch, &UInt32Array::from(idx))
}
