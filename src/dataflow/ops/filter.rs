//! `FilterOp`: keeps the changes whose row satisfies the predicate (weights unchanged).

use datafusion::arrow::compute::filter_record_batch;

use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{EpochContext, Operator, RowGroups};
use crate::error::Result;

pub struct FilterOp {
    predicate: Exprs,
}

impl FilterOp {
    pub fn new(predicate: Exprs) -> FilterOp {
        FilterOp { predicate }
    }
}

impl Operator for FilterOp {
    fn process(&mut self, _port: usize, input: Changes, _ctx: &EpochContext) -> Result<Changes> {
        if input.is_empty() {
            return Ok(input);
        }
        let mask = self.predicate.mask(&input.data())?;
        Changes::from_weighted(filter_record_batch(input.batch(), &mask)?)
    }

    fn append_only(&self) -> bool {
        true
    }

    /// A filter only drops rows: its input's groups.
    fn bounded_groups(&self, input: Option<&RowGroups>) -> Option<RowGroups> {
        input.cloned()
    }

    fn describe(&self) -> String {
        format!("Filter: {}", self.predicate.display.join(", "))
    }
}
