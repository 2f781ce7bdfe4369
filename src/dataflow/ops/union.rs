//! `UnionOp`: UNION ALL — the changes of every input, passed through.

use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{EpochContext, Operator};
use crate::error::Result;

pub struct UnionOp {
    inputs: usize,
}

impl UnionOp {
    pub fn new(inputs: usize) -> UnionOp {
        UnionOp { inputs }
    }
}

impl Operator for UnionOp {
    fn process(&mut self, _port: usize, input: Changes, _ctx: &EpochContext) -> Result<Changes> {
        Ok(input)
    }

    fn append_only(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("Union All: {} inputs", self.inputs)
    }
}
