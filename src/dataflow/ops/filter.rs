//! `FilterOp`: keeps the changes whose row satisfies the predicate (weights unchanged).

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;

use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{EpochContext, Operator};
use crate::error::{Error, Result};

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
        let mask = self.predicate.eval(&input.data())?.remove(0);
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::internal("filter predicate is not boolean"))?;
        // NULL is not true: prep_null_mask_filter semantics.
        let mask = crate::dataflow::ops::nulls_are_false(mask);
        Changes::from_weighted(filter_record_batch(input.batch(), &mask)?)
    }

    fn append_only(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("Filter: {}", self.predicate.display.join(", "))
    }
}
