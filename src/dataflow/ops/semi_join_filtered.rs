//! `FilteredSemiJoinOp`: `IN` / `EXISTS` / `NOT EXISTS` whose correlation has a non-equality
//! part besides the equality keys, e.g. `EXISTS (SELECT 1 FROM r WHERE r.k = l.k AND r.v > l.v)`.
//!
//! Whether a left row belongs to the output depends on the row itself, not only on its key, so
//! the state keeps, per left row, how many right rows match it (same key, condition true):
//! left rows by key ((key, row) → multiplicity), that match count per left row, and right rows
//! by key. A left change is matched against the right rows of its key; a right change against
//! the left rows of its key, and a left row whose match count crosses zero flips in or out.
//! Rows with a NULL key never match (a semi join drops them, an anti join keeps them).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};

use super::join::row_key as prefixed;
use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{decode_i64, EpochContext, Operator, StateTable};
use crate::error::Result;
use crate::state::row_codec::RowCodec;

/// The state of a [`FilteredSemiJoinOp`].
pub struct FilteredSemiState {
    /// (key, left row) → multiplicity.
    pub left_rows: StateTable,
    /// (key, left row) → number of matching right rows.
    pub left_matched: StateTable,
    /// (key, right row) → multiplicity.
    pub right_rows: StateTable,
}

pub struct FilteredSemiJoinOp {
    anti: bool,
    left_keys: Exprs,
    right_keys: Exprs,
    key_types: Vec<DataType>,
    key_codec: RowCodec,
    left_codec: RowCodec,
    right_codec: RowCodec,
    /// The extra condition, over the left columns then the right columns.
    filter: Exprs,
    joined: SchemaRef,
    state: FilteredSemiState,
    /// The output (the left side's) schema.
    schema: SchemaRef,
    /// Plan version 11: the output is declared append-only (see `inserts_only`).
    inserts_only: bool,
}

impl FilteredSemiJoinOp {
    /// Plan version 11: a semi join (not an anti join) declares that insertions give only
    /// insertions (a new right row can only make left rows match), so over append-only inputs
    /// its output is append-only.
    pub fn inserts_only(mut self, on: bool) -> FilteredSemiJoinOp {
        self.inserts_only = on && !self.anti;
        self
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        anti: bool,
        left_keys: Exprs,
        right_keys: Exprs,
        key_types: Vec<DataType>,
        filter: Exprs,
        state: FilteredSemiState,
        left: SchemaRef,
        right: SchemaRef,
    ) -> Result<FilteredSemiJoinOp> {
        let types = |s: &SchemaRef| s.fields().iter().map(|f| f.data_type().clone()).collect::<Vec<_>>();
        let joined = Arc::new(Schema::new(
            left.fields()
                .iter()
                .chain(right.fields().iter())
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(FilteredSemiJoinOp {
            inserts_only: false,
            key_codec: RowCodec::new(&key_types)?,
            left_codec: RowCodec::new(&types(&left))?,
            right_codec: RowCodec::new(&types(&right))?,
            anti,
            left_keys,
            right_keys,
            key_types,
            filter,
            joined,
            state,
            schema: left,
        })
    }

    /// Row-encoded keys of `data` (None for a NULL key).
    fn keys(&self, exprs: &Exprs, data: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>> {
        super::encoded_keys(exprs, &self.key_types, &self.key_codec, data)
    }

    /// The condition over pairs given as left and right columns (NULL counts as false).
    fn passes(&self, left: Vec<ArrayRef>, right: Vec<ArrayRef>) -> Result<BooleanArray> {
        let columns = super::cast_to_fields(left.into_iter().chain(right), self.joined.fields())?;
        let batch = RecordBatch::try_new(self.joined.clone(), columns)?;
        self.filter.mask(&batch)
    }

    fn member(&self, null_key: bool, matches: i64) -> bool {
        match (self.anti, null_key) {
            (false, true) => false,
            (true, true) => true,
            (false, false) => matches > 0,
            (true, false) => matches <= 0,
        }
    }

    fn left_change(&mut self, data: &RecordBatch, weights: &[i64], ctx: &EpochContext) -> Result<Changes> {
        let keys = self.keys(&self.left_keys, data)?;
        let rows = self.left_codec.encode(data.columns())?;
        // Pairs with the right rows of the same key.
        let mut pair_left = Vec::new();
        let mut pair_right = Vec::new();
        let mut pair_count = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let Some(k) = key else { continue };
            let prefix = prefixed(k, &[]);
            for (rk, c) in self.state.right_rows.scan_prefix(ctx, &prefix)? {
                pair_left.push(i as u32);
                pair_right.push(rk[prefix.len()..].to_vec());
                pair_count.push(decode_i64(&c));
            }
        }
        let mut matches = vec![0i64; data.num_rows()];
        if !pair_left.is_empty() {
            let idx = UInt32Array::from(pair_left.clone());
            let left_cols = data
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let right_cols = self.right_codec.decode(pair_right.iter().map(|r| r.as_slice()))?;
            let mask = self.passes(left_cols, right_cols)?;
            for (p, i) in pair_left.iter().enumerate() {
                if mask.value(p) {
                    matches[*i as usize] += pair_count[p];
                }
            }
        }
        let mut out_idx = Vec::new();
        let mut out_w = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if self.member(key.is_none(), matches[i]) {
                out_idx.push(i as u32);
                out_w.push(weights[i]);
            }
            // NULL-keyed rows never change membership: they need no state.
            let Some(k) = key else { continue };
            let sk = prefixed(k, rows.row(i).as_ref());
            let (_, mult) = self.state.left_rows.add_count(ctx, &sk, weights[i])?;
            if mult > 0 && matches[i] != 0 {
                self.state.left_matched.put(&sk, matches[i].to_be_bytes().to_vec());
            } else {
                self.state.left_matched.delete(&sk);
            }
        }
        super::take_rows(data, out_idx, out_w, &self.schema)
    }

    fn right_change(&mut self, data: &RecordBatch, weights: &[i64], ctx: &EpochContext) -> Result<Changes> {
        let keys = self.keys(&self.right_keys, data)?;
        let rows = self.right_codec.encode(data.columns())?;
        // Pairs with the left rows of the same key.
        let mut pair_right = Vec::new();
        let mut pair_left: Vec<Vec<u8>> = Vec::new();
        let mut pair_left_key = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let Some(k) = key else { continue };
            let prefix = prefixed(k, &[]);
            self.state
                .right_rows
                .add_count(ctx, &prefixed(k, rows.row(i).as_ref()), weights[i])?;
            for (lk, _) in self.state.left_rows.scan_prefix(ctx, &prefix)? {
                pair_right.push(i as u32);
                pair_left.push(lk[prefix.len()..].to_vec());
                pair_left_key.push(lk);
            }
        }
        if pair_right.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let idx = UInt32Array::from(pair_right.clone());
        let right_cols = data
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let left_cols = self.left_codec.decode(pair_left.iter().map(|r| r.as_slice()))?;
        let mask = self.passes(left_cols, right_cols)?;
        let mut out_rows = Vec::new();
        let mut out_w = Vec::new();
        for (p, i) in pair_right.iter().enumerate() {
            if !mask.value(p) {
                continue;
            }
            let sk = &pair_left_key[p];
            let (old, new) = self.state.left_matched.add_count(ctx, sk, weights[*i as usize])?;
            let d = self.member(false, new) as i64 - self.member(false, old) as i64;
            if d != 0 {
                let mult = self.state.left_rows.get(ctx, sk)?.map(|v| decode_i64(&v)).unwrap_or(0);
                out_rows.push(pair_left[p].clone());
                out_w.push(d * mult);
            }
        }
        super::decoded_rows(&self.left_codec, &out_rows, out_w, &self.schema)
    }
}

impl Operator for FilteredSemiJoinOp {
    fn process(&mut self, port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes> {
        let input = input.consolidate()?;
        if input.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let data = input.data();
        let weights = input.weights().values().to_vec();
        if port == 0 {
            self.left_change(&data, &weights, ctx)
        } else {
            self.right_change(&data, &weights, ctx)?.consolidate()
        }
    }

    fn append_only(&self) -> bool {
        self.inserts_only
    }

    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        let s = &mut self.state;
        vec![&mut s.left_rows, &mut s.left_matched, &mut s.right_rows]
    }

    fn describe(&self) -> String {
        format!(
            "{}Join: on [{}] = [{}], filter {} (state: left rows by key with their match counts; right rows by key)",
            if self.anti { "Anti" } else { "Semi" },
            self.left_keys.display.join(", "),
            self.right_keys.display.join(", "),
            self.filter.display.join(" AND ")
        )
    }
}
