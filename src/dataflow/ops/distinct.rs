//! `DistinctOp`: a row is in the output once while its multiplicity in the input is positive.
//! State: row → multiplicity. Emits +1 when it goes 0 → n, -1 when it goes n → 0.

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{EpochContext, Operator, StateTable};
use crate::error::Result;

pub struct DistinctOp {
    state: StateTable,
    /// Plan version 11: the output is declared append-only (see `inserts_only`).
    inserts_only: bool,
}

impl DistinctOp {
    pub fn new(state: StateTable) -> DistinctOp {
        DistinctOp {
            state,
            inserts_only: false,
        }
    }

    /// Plan version 11: insertions give only insertions (a row's first copy), so over an
    /// append-only input the output is append-only.
    pub fn inserts_only(mut self, on: bool) -> DistinctOp {
        self.inserts_only = on;
        self
    }
}

impl Operator for DistinctOp {
    fn process(&mut self, _port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes> {
        if input.is_empty() {
            return Ok(input);
        }
        let data = input.data();
        let converter = RowConverter::new(
            data.schema()
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let rows = converter.convert_columns(data.columns())?;
        let mut idx = Vec::new();
        let mut weights = Vec::new();
        for (i, w) in super::consolidate_encoded(&rows, input.weights().values()) {
            let (old, new) = self.state.add_count(ctx, rows.row(i as usize).as_ref(), w)?;
            if old <= 0 && new > 0 {
                idx.push(i);
                weights.push(1);
            } else if old > 0 && new <= 0 {
                idx.push(i);
                weights.push(-1);
            }
        }
        let out = take_record_batch(&data, &UInt32Array::from(idx))?;
        Changes::new(out, weights)
    }

    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        vec![&mut self.state]
    }

    fn append_only(&self) -> bool {
        self.inserts_only
    }

    fn describe(&self) -> String {
        "Distinct (state: row -> multiplicity)".into()
    }
}
