//! `ProjectOp`: evaluates the output expressions on each change (weights unchanged).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{EpochContext, Operator, RowGroups};
use crate::error::Result;

pub struct ProjectOp {
    exprs: Exprs,
    schema: SchemaRef,
}

impl ProjectOp {
    /// `schema`: the output relation's schema.
    pub fn new(exprs: Exprs, schema: SchemaRef) -> ProjectOp {
        ProjectOp { exprs, schema }
    }
}

impl Operator for ProjectOp {
    fn process(&mut self, _port: usize, input: Changes, _ctx: &EpochContext) -> Result<Changes> {
        let data = input.data();
        let columns = self.exprs.eval(&data)?;
        let columns = super::cast_to_fields(columns, self.schema.fields())?;
        let opts = RecordBatchOptions::new().with_row_count(Some(data.num_rows()));
        let out = RecordBatch::try_new_with_options(Arc::new(relaxed(&self.schema)), columns, &opts)?;
        Changes::new(out, input.weights().values().to_vec())
    }

    fn append_only(&self) -> bool {
        true
    }

    /// The input's groups, where every group column is passed on as it is.
    fn bounded_groups(&self, input: Option<&RowGroups>) -> Option<RowGroups> {
        let input = input?;
        let columns = input
            .columns
            .iter()
            .map(|g| (0..self.exprs.len()).find(|j| self.exprs.column(*j) == Some(*g)))
            .collect::<Option<Vec<usize>>>()?;
        Some(RowGroups {
            columns,
            single: input.single,
        })
    }

    fn describe(&self) -> String {
        format!("Project: {}", self.exprs.display.join(", "))
    }
}

/// `schema` with every field nullable (computed values may be NULL where DataFusion's plan
/// schema says otherwise only for retractions of rows that never existed; be lenient).
pub fn relaxed(schema: &SchemaRef) -> datafusion::arrow::datatypes::Schema {
    datafusion::arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    )
}
