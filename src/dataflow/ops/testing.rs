//! Helpers of the operators' differential tests: random changes to a bag of (g, v) rows, and
//! one epoch of an operator committed to an in-memory store.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rand::{Rng, SeedableRng};

use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{EpochContext, Operator};
use crate::state::memory::MemoryStore;
use crate::state::{StateStore, WriteBatch};

/// A multiset of (g, v) rows changed at random: inserts of g in `0..groups`, v in `0..values`,
/// and deletions of rows it holds.
pub struct RandomBag {
    /// Row → multiplicity (positive).
    pub rows: BTreeMap<(i64, i64), i64>,
    rng: rand::rngs::StdRng,
    groups: i64,
    values: i64,
    /// Chance that a change deletes a held row.
    deletes: f64,
}

impl RandomBag {
    pub fn new(seed: u64, groups: i64, values: i64) -> RandomBag {
        RandomBag {
            rows: BTreeMap::new(),
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            groups,
            values,
            deletes: 0.4,
        }
    }

    /// A bag that only ever gains rows (an append-only input).
    pub fn insertions_only(mut self) -> RandomBag {
        self.deletes = 0.0;
        self
    }

    /// The relation's schema: `g`, `v`, both BIGINT.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    /// One to eleven random changes (about 40 % deletions of a held row, unless
    /// [`RandomBag::insertions_only`]), applied to `rows`.
    pub fn changes(&mut self) -> Changes {
        let (mut gs, mut vs, mut ws) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..self.rng.random_range(1..12) {
            let held: Vec<(i64, i64)> = self.rows.keys().copied().collect();
            let (g, v, w) = if !held.is_empty() && self.rng.random_bool(self.deletes) {
                let (g, v) = held[self.rng.random_range(0..held.len())];
                (g, v, -1)
            } else {
                (
                    self.rng.random_range(0..self.groups),
                    self.rng.random_range(0..self.values),
                    1,
                )
            };
            *self.rows.entry((g, v)).or_default() += w;
            self.rows.retain(|_, n| *n > 0);
            gs.push(g);
            vs.push(v);
            ws.push(w);
        }
        let batch = RecordBatch::try_new(
            Self::schema(),
            vec![Arc::new(Int64Array::from(gs)), Arc::new(Int64Array::from(vs))],
        )
        .expect("two columns of one length");
        Changes::new(batch, ws).expect("one weight per row")
    }
}

/// Runs `op` on `input` as epoch `epoch` and commits its state to `store`; returns its output.
pub fn run_epoch(op: &mut dyn Operator, store: &Arc<MemoryStore>, epoch: u64, input: Changes) -> Changes {
    let ctx = EpochContext {
        snapshot: store.snapshot(),
        store: store.clone(),
        epoch,
        written: Default::default(),
    };
    let out = op.process(0, input, &ctx).expect("the operator runs");
    let mut batch = WriteBatch::default();
    for t in op.state_tables() {
        t.flush(&ctx, &mut batch).expect("state flushes");
    }
    store.commit(batch, false).expect("the epoch commits");
    out
}
