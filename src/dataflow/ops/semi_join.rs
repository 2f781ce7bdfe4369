//! `SemiJoinOp`: `IN` / `EXISTS` (semi join), `NOT EXISTS` (anti join) and `NOT IN`
//! (null-aware anti join), as DataFusion decorrelates them; also INTERSECT / EXCEPT.
//!
//! Output: left rows whose membership holds, with their left multiplicity. State: left rows by
//! key, right row counts per key, and the right side's total and NULL-key counts. A right change
//! that moves a key's count across zero flips the membership of every left row with that key;
//! for `NOT IN` a change in whether the right side is empty or holds a NULL flips every left row.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{decode_i64, EpochContext, Operator, StateTable};
use crate::error::Result;
use crate::state::row_codec::RowCodec;

pub struct SemiJoinOp {
    anti: bool,
    null_aware: bool,
    left_keys: Exprs,
    right_keys: Exprs,
    key_types: Vec<DataType>,
    key_codec: RowCodec,
    row_codec: RowCodec,
    /// (key tag + key, row) → multiplicity of left rows; tag 0 = NULL key, 1 = key.
    left_rows: StateTable,
    /// key → number of right rows.
    right_counts: StateTable,
    /// "total" / "nulls" → right rows, right rows with a NULL key.
    right_globals: StateTable,
    schema: SchemaRef,
    /// Plan version 11: the output is declared append-only (see `inserts_only`).
    inserts_only: bool,
}

#[derive(Clone, Copy)]
struct Globals {
    total: i64,
    nulls: i64,
}

impl SemiJoinOp {
    /// Plan version 11: a semi join (not an anti join) declares that insertions give only
    /// insertions (a new right row can only make left rows match), so over append-only inputs
    /// its output is append-only.
    pub fn inserts_only(mut self, on: bool) -> SemiJoinOp {
        self.inserts_only = on && !self.anti;
        self
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        anti: bool,
        null_aware: bool,
        left_keys: Exprs,
        right_keys: Exprs,
        key_types: Vec<DataType>,
        left_rows: StateTable,
        right_counts: StateTable,
        right_globals: StateTable,
        schema: SchemaRef,
    ) -> Result<SemiJoinOp> {
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        Ok(SemiJoinOp {
            inserts_only: false,
            key_codec: RowCodec::new(&key_types)?,
            row_codec: RowCodec::new(&types)?,
            anti,
            null_aware,
            left_keys,
            right_keys,
            key_types,
            // Keys are tagged (`tagged`): the group length follows the tag.
            left_rows: left_rows.with_group_offset(1),
            right_counts,
            right_globals,
            schema,
        })
    }

    /// Whether a left row is in the output.
    fn member(&self, null_key: bool, matches: i64, g: Globals) -> bool {
        if !self.anti {
            return !null_key && matches > 0;
        }
        if !self.null_aware {
            return null_key || matches == 0;
        }
        g.total == 0 || (!null_key && matches == 0 && g.nulls == 0)
    }

    fn globals(&self, ctx: &EpochContext) -> Result<Globals> {
        let get =
            |k: &[u8]| -> Result<i64> { Ok(self.right_globals.get(ctx, k)?.map(|v| decode_i64(&v)).unwrap_or(0)) };
        Ok(Globals {
            total: get(b"total")?,
            nulls: get(b"nulls")?,
        })
    }

    fn keys_of(&self, exprs: &Exprs, data: &RecordBatch) -> Result<(Vec<Option<Vec<u8>>>, usize)> {
        let cols = exprs.eval(data)?;
        let cols: Vec<ArrayRef> = super::cast_columns(&cols, &self.key_types)?;
        let rows = self.key_codec.encode(&cols)?;
        let n = data.num_rows();
        Ok((
            (0..n)
                .map(|i| {
                    if cols.iter().any(|c| c.is_null(i)) {
                        None
                    } else {
                        Some(rows.row(i).as_ref().to_vec())
                    }
                })
                .collect(),
            n,
        ))
    }

    fn tagged(key: &Option<Vec<u8>>) -> Vec<u8> {
        match key {
            None => vec![0],
            Some(k) => {
                let mut t = Vec::with_capacity(k.len() + 5);
                t.push(1);
                t.extend_from_slice(&(k.len() as u32).to_be_bytes());
                t.extend_from_slice(k);
                t
            }
        }
    }

    fn emit(&self, rows: Vec<Vec<u8>>, weights: Vec<i64>) -> Result<Changes> {
        if rows.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let cols = self.row_codec.decode(rows.iter().map(|r| r.as_slice()))?;
        let batch = RecordBatch::try_new(Arc::new(super::project::relaxed(&self.schema)), cols)?;
        Changes::new(batch, weights)
    }
}

impl Operator for SemiJoinOp {
    fn process(&mut self, port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes> {
        if input.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let data = input.data();
        let weights = input.weights().values().to_vec();
        if port == 0 {
            let (keys, _) = self.keys_of(&self.left_keys, &data)?;
            let rows = self.row_codec.encode(data.columns())?;
            let g = self.globals(ctx)?;
            let mut idx = Vec::new();
            let mut out_w = Vec::new();
            for (i, w) in super::consolidate_encoded(&rows, &weights) {
                let key = &keys[i as usize];
                let matches = match key {
                    Some(k) => self.right_counts.get(ctx, k)?.map(|v| decode_i64(&v)).unwrap_or(0),
                    None => 0,
                };
                if self.member(key.is_none(), matches, g) {
                    idx.push(i);
                    out_w.push(w);
                }
                let mut sk = Self::tagged(key);
                sk.extend_from_slice(rows.row(i as usize).as_ref());
                self.left_rows.add_count(ctx, &sk, w)?;
            }
            return super::take_rows(&data, idx, out_w, &self.schema);
        }
        // Right side: net change per key, then the left rows whose membership flips.
        let (keys, n) = self.keys_of(&self.right_keys, &data)?;
        let before = self.globals(ctx)?;
        let mut per_key: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let mut after = before;
        for i in 0..n {
            after.total += weights[i];
            match &keys[i] {
                Some(k) => *per_key.entry(k.clone()).or_default() += weights[i],
                None => after.nulls += weights[i],
            }
        }
        let mut transitions: BTreeMap<Vec<u8>, (i64, i64)> = BTreeMap::new();
        for (k, d) in &per_key {
            let (old, new) = self.right_counts.add_count(ctx, k, *d)?;
            transitions.insert(k.clone(), (old, new));
        }
        self.right_globals.put(b"total", after.total.to_be_bytes().to_vec());
        self.right_globals.put(b"nulls", after.nulls.to_be_bytes().to_vec());
        let global_flip =
            self.null_aware && ((before.total == 0) != (after.total == 0) || (before.nulls == 0) != (after.nulls == 0));
        let mut out_rows = Vec::new();
        let mut out_w = Vec::new();
        if global_flip {
            for (sk, c) in self.left_rows.scan_prefix(ctx, &[])? {
                let null_key = sk[0] == 0;
                let (key, row) = if null_key {
                    (None, sk[1..].to_vec())
                } else {
                    let len = u32::from_be_bytes([sk[1], sk[2], sk[3], sk[4]]) as usize;
                    (Some(sk[5..5 + len].to_vec()), sk[5 + len..].to_vec())
                };
                let (old, new) = match &key {
                    Some(k) => match transitions.get(k) {
                        Some(t) => *t,
                        None => {
                            let n = self.right_counts.get(ctx, k)?.map(|v| decode_i64(&v)).unwrap_or(0);
                            (n, n)
                        }
                    },
                    None => (0, 0),
                };
                let d = self.member(null_key, new, after) as i64 - self.member(null_key, old, before) as i64;
                if d != 0 {
                    out_rows.push(row);
                    out_w.push(d * decode_i64(&c));
                }
            }
        } else {
            for (k, (old, new)) in &transitions {
                let d = self.member(false, *new, after) as i64 - self.member(false, *old, before) as i64;
                if d == 0 {
                    continue;
                }
                let prefix = Self::tagged(&Some(k.clone()));
                for (sk, c) in self.left_rows.scan_prefix(ctx, &prefix)? {
                    out_rows.push(sk[prefix.len()..].to_vec());
                    out_w.push(d * decode_i64(&c));
                }
            }
        }
        self.emit(out_rows, out_w)
    }

    fn append_only(&self) -> bool {
        self.inserts_only
    }

    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        vec![&mut self.left_rows, &mut self.right_counts, &mut self.right_globals]
    }

    fn describe(&self) -> String {
        let kind = match (self.anti, self.null_aware) {
            (false, _) => "Semi",
            (true, false) => "Anti",
            (true, true) => "Anti (null-aware, NOT IN)",
        };
        format!(
            "{kind}Join: on [{}] = [{}] (state: left rows by key; right counts by key)",
            self.left_keys.display.join(", "),
            self.right_keys.display.join(", ")
        )
    }
}
