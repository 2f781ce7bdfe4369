//! `ThresholdSemiJoinOp`: a semi or anti join whose condition besides the equality keys is one
//! comparison of a left value with a right value, e.g. q5 of Nexmark's
//! `JOIN (SELECT max(num) AS maxn, .. GROUP BY starttime) m ON a.starttime = m.starttime
//! AND a.num >= m.maxn` when only the left side's columns are selected, or
//! `WHERE l.v > (SELECT min(r.v) FROM r WHERE r.k = l.k)`.
//!
//! Whether a right row of the same key matches a left row `l` is `l.v OP r.v`, so a left row
//! belongs to the semi join's output exactly when it passes the key's *threshold*: the least
//! right value for `>` / `>=` (some right value is below `l.v` iff the least is), the greatest
//! for `<` / `<=`. The state keeps each key's right values, ordered so that its threshold is
//! the key's first entry, and the left rows of each key ordered by their compared value. A
//! left change is checked against its key's threshold (one lookup); a right change that moves
//! a key's threshold from `t1` to `t2` flips only the left rows whose value lies between the
//! two, found by a range scan. [`super::semi_join_filtered::FilteredSemiJoinOp`], which handles
//! any condition, pairs a right change with every left row of its key instead: for q5 that is
//! every auction of a window, each time the window's maximum moves.
//!
//! Plan version 9 keeps the left rows as sorted runs (`StateTable::additive`: an epoch's rows
//! are sorted into a run, not inserted one by one into a tree per key) and stores of each left
//! row only the columns that its key and compared value do not give back (`slim_rows`): of
//! q5's (auction, num, starttime) only the auction, keyed by starttime and ordered by num.
//!
//! Compared values are row-encoded (`RowCodec`: byte order is value order), so only types whose
//! encoding is fixed-width and whose order is SQL's are taken (integers, decimals, dates, times
//! and timestamps; not floats, whose encoding orders -0 before 0). NULL keys and NULL values
//! never match: such left rows are never in a semi join's output and always in an anti join's,
//! and need no state.

use std::collections::HashSet;

use datafusion::arrow::array::{new_null_array, Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::Operator as CmpOp;

use super::grouping::Groups;
use super::join::{row_key as prefixed, KeyList};
use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{decode_i64, EpochContext, Operator, StateTable};
use crate::error::{Error, Result};
use crate::state::row_codec::RowCodec;

/// Left rows read per range scan step when a threshold moves.
const SCAN_STEP: usize = 256;

/// How a left value is compared with its key's right values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// `left > right` or `left >= right` (the threshold is the least right value); otherwise
    /// `<` or `<=` (the greatest).
    pub above: bool,
    /// `>` or `<` (not `>=` / `<=`).
    pub strict: bool,
}

impl Comparison {
    /// The comparison `left op right`; None for an operator that is not an ordering.
    pub fn of(op: CmpOp) -> Option<Comparison> {
        let (above, strict) = match op {
            CmpOp::Gt => (true, true),
            CmpOp::GtEq => (true, false),
            CmpOp::Lt => (false, true),
            CmpOp::LtEq => (false, false),
            _ => return None,
        };
        Some(Comparison { above, strict })
    }

    /// Whether encoded left value `v` passes encoded threshold `t`.
    fn passes(self, v: &[u8], t: &[u8]) -> bool {
        match (self.above, self.strict) {
            (true, true) => v > t,
            (true, false) => v >= t,
            (false, true) => v < t,
            (false, false) => v <= t,
        }
    }

    fn symbol(self) -> &'static str {
        match (self.above, self.strict) {
            (true, true) => ">",
            (true, false) => ">=",
            (false, true) => "<",
            (false, false) => "<=",
        }
    }
}

/// Whether values of type `t` can be compared by their row encoding (see the module docs).
pub fn comparable(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Int8 | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Decimal128(..)
            | Decimal256(..)
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(..)
    )
}

/// The state of a [`ThresholdSemiJoinOp`].
pub struct ThresholdState {
    /// (key, left value, left row) → multiplicity, for left rows whose key and value are not
    /// NULL.
    pub left_rows: StateTable,
    /// (key, right value) → multiplicity; the value's bytes are complemented when the
    /// threshold is the greatest, so that a key's first entry is always its threshold.
    pub right_values: StateTable,
}

pub struct ThresholdSemiJoinOp {
    anti: bool,
    left_keys: Exprs,
    right_keys: Exprs,
    key_types: Vec<DataType>,
    key_codec: RowCodec,
    /// The compared left and right values (one expression each, of one type).
    left_value: Exprs,
    right_value: Exprs,
    value_type: DataType,
    value_codec: RowCodec,
    /// Bytes of an encoded value.
    value_len: usize,
    comparison: Comparison,
    left_codec: RowCodec,
    /// Plan version 9: the left rows stored without their key and value columns.
    slim: Option<SlimRows>,
    state: ThresholdState,
    /// The output (the left side's) schema.
    schema: SchemaRef,
    /// Plan version 11: the output is declared append-only (see `inserts_only`).
    inserts_only: bool,
}

/// Where a left column of a row read back from the state comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// The i-th key column (the column is that key, of the key's type).
    Key(usize),
    /// The compared value (the column is the compared expression).
    Value,
    /// The i-th column stored in the row.
    Stored(usize),
}

/// The left rows as stored by plan version 9: the columns that are neither a key nor the
/// compared value (those are in the state key already; a stored row is never NULL in either).
struct SlimRows {
    /// Per left column.
    parts: Vec<Part>,
    /// The stored columns (left column indexes) and their codec (None: no column is stored).
    stored: Vec<usize>,
    codec: Option<RowCodec>,
}

/// Row-encoded values of one expression per row (None where NULL).
struct Encoded {
    rows: datafusion::arrow::row::Rows,
    nulls: Vec<bool>,
}

impl Encoded {
    fn get(&self, i: usize) -> Option<&[u8]> {
        (!self.nulls[i]).then(|| self.rows.row(i).data())
    }
}

impl ThresholdSemiJoinOp {
    /// Plan version 11: a semi join (not an anti join) declares that insertions give only
    /// insertions (a new right row can only make left rows match), so over append-only inputs
    /// its output is append-only.
    pub fn inserts_only(mut self, on: bool) -> ThresholdSemiJoinOp {
        self.inserts_only = on && !self.anti;
        self
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        anti: bool,
        left_keys: Exprs,
        right_keys: Exprs,
        key_types: Vec<DataType>,
        (left_value, right_value, value_type): (Exprs, Exprs, DataType),
        comparison: Comparison,
        state: ThresholdState,
        left: SchemaRef,
    ) -> Result<ThresholdSemiJoinOp> {
        if !comparable(&value_type) {
            return Err(Error::internal(format!(
                "a threshold join cannot compare values of type {value_type}"
            )));
        }
        let value_codec = RowCodec::new(std::slice::from_ref(&value_type))?;
        // Fixed-width types encode every value, NULL or not, in as many bytes.
        let value_len = value_codec
            .encode(&[new_null_array(&value_type, 1)])?
            .row(0)
            .data()
            .len();
        let types: Vec<DataType> = left.fields().iter().map(|f| f.data_type().clone()).collect();
        Ok(ThresholdSemiJoinOp {
            inserts_only: false,
            anti,
            key_codec: RowCodec::new(&key_types)?,
            left_keys,
            right_keys,
            key_types,
            left_value,
            right_value,
            value_type,
            value_codec,
            value_len,
            comparison,
            left_codec: RowCodec::new(&types)?,
            slim: None,
            state,
            schema: left,
        })
    }

    /// Plan version 9: store each left row without the columns its key and compared value
    /// give back (a plain column reference of the key's or value's type).
    pub fn slim_rows(mut self, slim: bool) -> Result<ThresholdSemiJoinOp> {
        if !slim {
            return Ok(self);
        }
        let fields = self.schema.fields();
        let mut parts = Vec::with_capacity(fields.len());
        let mut stored = Vec::new();
        for (c, field) in fields.iter().enumerate() {
            let t = field.data_type();
            let key =
                (0..self.key_types.len()).find(|k| self.left_keys.column(*k) == Some(c) && &self.key_types[*k] == t);
            let part = match key {
                Some(k) => Part::Key(k),
                None if self.left_value.column(0) == Some(c) && t == &self.value_type => Part::Value,
                None => {
                    stored.push(c);
                    Part::Stored(stored.len() - 1)
                }
            };
            parts.push(part);
        }
        let codec = if stored.is_empty() {
            None
        } else {
            let types: Vec<DataType> = stored.iter().map(|c| fields[*c].data_type().clone()).collect();
            Some(RowCodec::new(&types)?)
        };
        self.slim = Some(SlimRows { parts, stored, codec });
        Ok(self)
    }

    /// Encoded left rows as stored (all columns, or version 9's stored columns; None: no
    /// column is stored).
    fn stored_rows(&self, data: &RecordBatch) -> Result<Option<datafusion::arrow::row::Rows>> {
        match &self.slim {
            None => Ok(Some(self.left_codec.encode(data.columns())?)),
            Some(SlimRows { codec: None, .. }) => Ok(None),
            Some(SlimRows {
                stored,
                codec: Some(codec),
                ..
            }) => {
                let cols: Vec<_> = stored.iter().map(|c| data.column(*c).clone()).collect();
                Ok(Some(codec.encode(&cols)?))
            }
        }
    }

    /// Left rows read back from the state, as (key, value, stored row) bytes, with weights.
    fn read_back(&self, rows: &[(Vec<u8>, Vec<u8>, Vec<u8>)], weights: Vec<i64>) -> Result<Changes> {
        if rows.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let stored_bytes = || rows.iter().map(|(_, _, r)| r.as_slice());
        let columns = match &self.slim {
            None => self.left_codec.decode(stored_bytes())?,
            Some(slim) => {
                let keys = self.key_codec.decode(rows.iter().map(|(k, _, _)| k.as_slice()))?;
                let values = self.value_codec.decode(rows.iter().map(|(_, v, _)| v.as_slice()))?;
                let stored = match &slim.codec {
                    Some(codec) => codec.decode(stored_bytes())?,
                    None => Vec::new(),
                };
                slim.parts
                    .iter()
                    .map(|p| match p {
                        Part::Key(k) => keys[*k].clone(),
                        Part::Value => values[0].clone(),
                        Part::Stored(s) => stored[*s].clone(),
                    })
                    .collect()
            }
        };
        let columns = super::cast_to_fields(columns, self.schema.fields())?;
        let batch = RecordBatch::try_new_with_options(
            std::sync::Arc::new(super::project::relaxed(&self.schema)),
            columns,
            &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?;
        Changes::new(batch, weights)
    }

    /// Row-encoded keys of `data` (None for a NULL key).
    fn keys(&self, exprs: &Exprs, data: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>> {
        super::encoded_keys(exprs, &self.key_types, &self.key_codec, data)
    }

    fn values(&self, exprs: &Exprs, data: &RecordBatch) -> Result<Encoded> {
        let col = exprs
            .eval(data)?
            .pop()
            .ok_or_else(|| Error::internal("a threshold join without its compared value"))?;
        let nulls = (0..col.len()).map(|i| col.is_null(i)).collect();
        Ok(Encoded {
            rows: self.value_codec.encode(&[col])?,
            nulls,
        })
    }

    /// A right value as stored: complemented when the threshold is the greatest.
    fn stored_value(&self, v: &[u8]) -> Vec<u8> {
        if self.comparison.above {
            v.to_vec()
        } else {
            v.iter().map(|b| !b).collect()
        }
    }

    /// Key `k`'s threshold (encoded as left values are), None if it has no right value.
    fn threshold(&self, ctx: &EpochContext, k: &[u8]) -> Result<Option<Vec<u8>>> {
        let prefix = prefixed(k, &[]);
        Ok(self
            .state
            .right_values
            .first_under(ctx, &prefix)?
            .map(|(key, _)| self.stored_value(&key[prefix.len()..])))
    }

    fn member(&self, passes: bool) -> bool {
        passes != self.anti
    }

    fn left_change(&mut self, data: &RecordBatch, weights: &[i64], ctx: &EpochContext) -> Result<Changes> {
        let key_cols = super::cast_columns(&self.left_keys.eval(data)?, &self.key_types)?;
        let groups = Groups::of(&key_cols, &self.key_codec)?;
        let null_key = |i: usize| key_cols.iter().any(|c| c.is_null(i));
        let values = self.values(&self.left_value, data)?;
        let rows = self.stored_rows(data)?;
        // Each key's threshold, read when the key first occurs.
        let mut thresholds: Vec<Option<Option<Vec<u8>>>> = vec![None; groups.len()];
        let mut out_idx = Vec::new();
        let mut out_w = Vec::new();
        // Every row's state key and weight, added in one call (an additive table sorts them
        // into a run).
        let mut state_keys = KeyList::default();
        let mut state_w = Vec::new();
        for (i, slot) in groups.slot.iter().enumerate() {
            let v = match values.get(i) {
                Some(v) if !null_key(i) => v,
                // A NULL key or value matches no right row, now or later.
                _ => {
                    if self.anti {
                        out_idx.push(i as u32);
                        out_w.push(weights[i]);
                    }
                    continue;
                }
            };
            let k = groups.key(*slot as usize);
            let threshold = match &mut thresholds[*slot as usize] {
                Some(t) => t,
                t => t.insert(self.threshold(ctx, k)?),
            };
            let passes = threshold.as_deref().is_some_and(|t| self.comparison.passes(v, t));
            if self.member(passes) {
                out_idx.push(i as u32);
                out_w.push(weights[i]);
            }
            let row = rows.as_ref().map_or(&[][..], |r| r.row(i).data());
            state_keys.push_row_key(k, &[v, row]);
            state_w.push(weights[i]);
        }
        self.state
            .left_rows
            .add_counts(ctx, state_keys.iter().zip(state_w).collect())?;
        super::take_rows(data, out_idx, out_w, &self.schema)
    }

    fn right_change(&mut self, data: &RecordBatch, weights: &[i64], ctx: &EpochContext) -> Result<Changes> {
        let keys = self.keys(&self.right_keys, data)?;
        let values = self.values(&self.right_value, data)?;
        // Each key's threshold before this change, then its right values updated.
        let mut before: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            let (Some(k), Some(v)) = (key, values.get(i)) else {
                continue;
            };
            if seen.insert(k.clone()) {
                before.push((k.clone(), self.threshold(ctx, k)?));
            }
            let sk = prefixed(k, &self.stored_value(v));
            self.state.right_values.add_count(ctx, &sk, weights[i])?;
        }
        let mut out_rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut out_w = Vec::new();
        for (k, old) in before {
            let new = self.threshold(ctx, &k)?;
            if old == new {
                continue;
            }
            // The left values whose outcome may differ lie between the two thresholds (from
            // one end of the key's values when the key had or has no threshold).
            let (lo, hi) = match (&old, &new) {
                (Some(a), Some(b)) => (Some(a.min(b).clone()), Some(a.max(b).clone())),
                (Some(t), None) | (None, Some(t)) if self.comparison.above => (Some(t.clone()), None),
                (Some(t), None) | (None, Some(t)) => (None, Some(t.clone())),
                (None, None) => unreachable!("the thresholds differ"),
            };
            let prefix = prefixed(&k, &[]);
            let mut start = prefixed(&k, lo.as_deref().unwrap_or(&[]));
            'scan: loop {
                let entries = self.state.left_rows.scan_from(ctx, &prefix, &start, SCAN_STEP)?;
                let full = entries.len() == SCAN_STEP;
                for (sk, mult) in &entries {
                    let rest = &sk[prefix.len()..];
                    let (v, row) = rest.split_at(self.value_len);
                    if hi.as_deref().is_some_and(|h| v > h) {
                        break 'scan;
                    }
                    let was = self.member(old.as_deref().is_some_and(|t| self.comparison.passes(v, t)));
                    let is = self.member(new.as_deref().is_some_and(|t| self.comparison.passes(v, t)));
                    if was != is {
                        out_rows.push((k.clone(), v.to_vec(), row.to_vec()));
                        out_w.push((is as i64 - was as i64) * decode_i64(mult));
                    }
                }
                match entries.last() {
                    Some((last, _)) if full => {
                        start = last.clone();
                        start.push(0);
                    }
                    _ => break,
                }
            }
        }
        self.read_back(&out_rows, out_w)
    }
}

impl Operator for ThresholdSemiJoinOp {
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
            self.right_change(&data, &weights, ctx)
        }
    }

    fn append_only(&self) -> bool {
        self.inserts_only
    }

    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        let s = &mut self.state;
        vec![&mut s.left_rows, &mut s.right_values]
    }

    fn describe(&self) -> String {
        format!(
            "{}Join: on [{}] = [{}], where {} {} the {} {} of the key (state: left rows by key ordered by {}{}; right values by key)",
            if self.anti { "Anti" } else { "Semi" },
            self.left_keys.display.join(", "),
            self.right_keys.display.join(", "),
            self.left_value.display.join(""),
            self.comparison.symbol(),
            if self.comparison.above { "least" } else { "greatest" },
            self.right_value.display.join(""),
            self.left_value.display.join(""),
            if self.slim.is_some() {
                ", in sorted runs, without their key and value columns"
            } else {
                ""
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::ops::semi_join_filtered::{FilteredSemiJoinOp, FilteredSemiState};
    use crate::dataflow::ops::testing::RandomBag;
    use crate::state::memory::MemoryStore;
    use crate::state::{StateStore, WriteBatch};
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::{binary_expr, col, lit};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn schema(q: &str) -> DFSchema {
        DFSchema::try_from_qualified_schema(q, RandomBag::schema().as_ref()).expect("a schema")
    }

    /// Runs both ports of `op` for one epoch and commits its state; returns its output.
    fn epoch(op: &mut dyn Operator, store: &Arc<MemoryStore>, e: u64, left: Changes, right: Changes) -> Changes {
        let ctx = EpochContext {
            snapshot: store.snapshot(),
            store: store.clone(),
            epoch: e,
            written: Default::default(),
        };
        let a = op.process(0, left, &ctx).expect("left changes");
        let b = op.process(1, right, &ctx).expect("right changes");
        let mut batch = WriteBatch::default();
        for t in op.state_tables() {
            t.flush(&ctx, &mut batch).expect("flush");
        }
        store.commit(batch, false).expect("commit");
        Changes::concat(&RandomBag::schema(), &[a, b]).expect("one schema")
    }

    fn apply(view: &mut BTreeMap<(i64, i64), i64>, c: &Changes) {
        let rows = c.data();
        let g = rows
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap();
        let v = rows
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .unwrap();
        for (i, w) in c.weights().values().iter().enumerate() {
            *view.entry((g.value(i), v.value(i))).or_default() += w;
        }
        view.retain(|_, n| *n != 0);
    }

    /// Random changes on both sides, every operator and anti-ness, left rows whole in an
    /// ordered tree per key (plan versions 6–8) and slim in sorted runs (version 9; compared
    /// value a column, not stored, or an expression, stored), the threshold join restarted
    /// from its committed state every 37 epochs: the view the threshold join
    /// maintains is the one the general filtered semi join maintains, and what the definition
    /// gives over the final bags.
    #[test]
    fn maintains_what_the_filtered_semi_join_maintains() {
        for (seed, op, v9) in [CmpOp::Gt, CmpOp::GtEq, CmpOp::Lt, CmpOp::LtEq]
            .into_iter()
            .enumerate()
            .flat_map(|(seed, op)| [(seed, op, false), (seed, op, true)])
        {
            for anti in [false, true] {
                let (l, r) = (schema("l"), schema("r"));
                let joined = l.join(&r).unwrap();
                let exprs = |e: &[datafusion::logical_expr::Expr], s: &DFSchema| Exprs::new(e, s).unwrap();
                let threshold = || -> Box<dyn Operator> {
                    let left_rows = StateTable::new(1, 1, 0);
                    // `l.v + 0`: the same values, but not a column, so stored in the row.
                    let left_value = if seed % 2 == 0 {
                        col("l.v")
                    } else {
                        col("l.v") + lit(0i64)
                    };
                    let op = ThresholdSemiJoinOp::new(
                        anti,
                        exprs(&[col("l.g")], &l),
                        exprs(&[col("r.g")], &r),
                        vec![DataType::Int64],
                        (exprs(&[left_value], &l), exprs(&[col("r.v")], &r), DataType::Int64),
                        Comparison::of(op).unwrap(),
                        ThresholdState {
                            left_rows: if v9 { left_rows.additive() } else { left_rows },
                            right_values: StateTable::new(1, 1, 1),
                        },
                        RandomBag::schema(),
                    )
                    .unwrap()
                    .slim_rows(v9)
                    .unwrap();
                    if v9 {
                        let stored = if seed % 2 == 0 { vec![] } else { vec![1] };
                        assert_eq!(op.slim.as_ref().map(|s| s.stored.clone()), Some(stored));
                    }
                    Box::new(op)
                };
                let filtered = FilteredSemiJoinOp::new(
                    anti,
                    exprs(&[col("l.g")], &l),
                    exprs(&[col("r.g")], &r),
                    vec![DataType::Int64],
                    exprs(&[binary_expr(col("l.v"), op, col("r.v"))], &joined),
                    FilteredSemiState {
                        left_rows: StateTable::new(2, 1, 0),
                        left_matched: StateTable::new(2, 1, 1),
                        right_rows: StateTable::new(2, 1, 2),
                    },
                    RandomBag::schema(),
                    RandomBag::schema(),
                )
                .unwrap();
                let (mut a, mut b): (Box<dyn Operator>, Box<dyn Operator>) = (threshold(), Box::new(filtered));
                let store = Arc::new(MemoryStore::default());
                let mut left = RandomBag::new(seed as u64 * 2 + anti as u64, 4, 12);
                let mut right = RandomBag::new(100 + seed as u64, 4, 12);
                let (mut va, mut vb) = (BTreeMap::new(), BTreeMap::new());
                for e in 1..300u64 {
                    let lc = left.changes();
                    // Some epochs change the left side only.
                    let rc = if e % 3 == 0 {
                        Changes::empty(RandomBag::schema())
                    } else {
                        right.changes()
                    };
                    if e % 37 == 0 {
                        a = threshold();
                    }
                    apply(&mut va, &epoch(a.as_mut(), &store, e, lc.clone(), rc.clone()));
                    apply(&mut vb, &epoch(b.as_mut(), &store, e, lc, rc));
                    assert_eq!(va, vb, "{op} anti {anti} version 9 {v9} epoch {e}");
                }
                // And the definition over the final bags.
                let want: BTreeMap<(i64, i64), i64> = left
                    .rows
                    .iter()
                    .filter(|((g, v), _)| {
                        let hit = right.rows.keys().any(|(rg, rv)| {
                            rg == g
                                && match op {
                                    CmpOp::Gt => v > rv,
                                    CmpOp::GtEq => v >= rv,
                                    CmpOp::Lt => v < rv,
                                    _ => v <= rv,
                                }
                        });
                        hit != anti
                    })
                    .map(|(k, n)| (*k, *n))
                    .collect();
                assert_eq!(va, want, "{op} anti {anti} version 9 {v9}");
            }
        }
    }
}
