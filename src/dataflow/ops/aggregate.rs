//! `GroupAggregateOp`: grouped and global aggregation with retraction.
//!
//! State (per view operator):
//! - part 0: group key → [`GroupState`] (row count and one accumulator per aggregate);
//! - part 1: (group, aggregate, value) → multiplicity, for aggregates that must survive the
//!   deletion of any row: MIN / MAX (the next extreme is the next key), COUNT(DISTINCT),
//!   STRING_AGG / ARRAY_AGG.
//!
//! Over an input that only ever gains rows (`append_only_input`), MIN / MAX keep no multiset:
//! the extreme can only improve, so the group state holds its encoded value.
//!
//! For each group touched in an epoch the operator emits `-old row, +new row` (nothing when the
//! row did not change). A global aggregate (no GROUP BY) always has exactly one row, as in
//! PostgreSQL: over an empty input COUNT is 0 and SUM is NULL.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
};
use datafusion::arrow::compute::{cast, cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{EpochContext, Operator, StateTable};
use crate::error::{Error, Result};
use crate::state::row_codec::RowCodec;

/// Which aggregate function.
#[derive(Clone, Debug, PartialEq)]
pub enum AggKind {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
    BoolAnd,
    BoolOr,
    /// STRING_AGG(value, separator): values joined in ascending order.
    StringAgg(String),
    /// ARRAY_AGG(value): values (NULLs included) in ascending order.
    ArrayAgg,
}

impl AggKind {
    fn uses_multiset(&self) -> bool {
        matches!(
            self,
            AggKind::Min | AggKind::Max | AggKind::CountDistinct | AggKind::StringAgg(_) | AggKind::ArrayAgg
        )
    }
}

/// One aggregate of the operator.
#[derive(Clone, Debug)]
pub struct AggSpec {
    pub kind: AggKind,
    /// Index of the argument among the evaluated argument expressions.
    pub arg: Option<usize>,
    /// The output type (from the plan).
    pub output: DataType,
    /// The argument's type.
    pub input: DataType,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Acc {
    /// Non-null inputs (COUNT, SUM, AVG) or distinct values (COUNT DISTINCT).
    n: i64,
    /// Exact sum of integer / decimal inputs (as unscaled i128).
    int_sum: i128,
    float_sum: f64,
    trues: i64,
    falses: i64,
    /// MIN / MAX over an append-only input: the extreme so far, as the value codec encodes it
    /// (ascending for MIN, descending for MAX: the extreme is the smallest encoding).
    #[serde(default)]
    extreme: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct GroupState {
    rows: i64,
    accs: Vec<Acc>,
}

/// First byte of the binary group-state encodings (older stores hold JSON, which starts `{`):
/// fixed-size accumulators, and accumulators each followed by an optional extreme.
const STATE_V2: u8 = 2;
const STATE_V3: u8 = 3;
const ACC_BYTES: usize = 8 + 16 + 8 + 8 + 8;
/// The extreme length of an accumulator without one (V3).
const NO_EXTREME: u32 = u32::MAX;

impl GroupState {
    /// Binary: `2 | rows:i64 | per accumulator n:i64 int_sum:i128 float_sum:f64 trues falses`;
    /// with an extreme anywhere, `3 | rows | per accumulator the same, then len:u32 | bytes`.
    fn encode(&self) -> Vec<u8> {
        let v3 = self.accs.iter().any(|a| a.extreme.is_some());
        let mut v = Vec::with_capacity(1 + 8 + self.accs.len() * (ACC_BYTES + 4));
        v.push(if v3 { STATE_V3 } else { STATE_V2 });
        v.extend_from_slice(&self.rows.to_le_bytes());
        for a in &self.accs {
            v.extend_from_slice(&a.n.to_le_bytes());
            v.extend_from_slice(&a.int_sum.to_le_bytes());
            v.extend_from_slice(&a.float_sum.to_le_bytes());
            v.extend_from_slice(&a.trues.to_le_bytes());
            v.extend_from_slice(&a.falses.to_le_bytes());
            if v3 {
                match &a.extreme {
                    Some(e) => {
                        v.extend_from_slice(&(e.len() as u32).to_le_bytes());
                        v.extend_from_slice(e);
                    }
                    None => v.extend_from_slice(&NO_EXTREME.to_le_bytes()),
                }
            }
        }
        v
    }

    fn decode(v: &[u8]) -> Result<GroupState> {
        let corrupt = |e: String| Error::internal(format!("corrupt aggregate state: {e}"));
        let v3 = match v.first() {
            Some(&STATE_V2) => false,
            Some(&STATE_V3) => true,
            _ => return serde_json::from_slice(v).map_err(|e| corrupt(e.to_string())),
        };
        if v.len() < 9 {
            return Err(corrupt(format!("{} bytes", v.len())));
        }
        let i64_at = |o: usize| i64::from_le_bytes(v[o..o + 8].try_into().expect("8 bytes"));
        let mut accs = Vec::new();
        let mut o = 9;
        while o < v.len() {
            if v.len() < o + ACC_BYTES + if v3 { 4 } else { 0 } {
                return Err(corrupt(format!("{} bytes", v.len())));
            }
            let mut acc = Acc {
                n: i64_at(o),
                int_sum: i128::from_le_bytes(v[o + 8..o + 24].try_into().expect("16 bytes")),
                float_sum: f64::from_le_bytes(v[o + 24..o + 32].try_into().expect("8 bytes")),
                trues: i64_at(o + 32),
                falses: i64_at(o + 40),
                extreme: None,
            };
            o += ACC_BYTES;
            if v3 {
                let len = u32::from_le_bytes(v[o..o + 4].try_into().expect("4 bytes"));
                o += 4;
                if len != NO_EXTREME {
                    let end = o + len as usize;
                    let bytes = v.get(o..end).ok_or_else(|| corrupt(format!("{} bytes", v.len())))?;
                    acc.extreme = Some(bytes.to_vec());
                    o = end;
                }
            }
            accs.push(acc);
        }
        Ok(GroupState { rows: i64_at(1), accs })
    }
}

pub struct GroupAggregateOp {
    groups: StateTable,
    values: StateTable,
    group_exprs: Exprs,
    arg_exprs: Exprs,
    aggs: Vec<AggSpec>,
    /// Output schema: group columns, then one column per aggregate.
    schema: SchemaRef,
    group_types: Vec<DataType>,
    /// Codec of each aggregate's argument values (multiset keys).
    value_codecs: Vec<Option<RowCodec>>,
    group_codec: Option<RowCodec>,
    /// Whether the global (no GROUP BY) row has been emitted.
    global: bool,
    /// The input only ever gains rows: MIN / MAX keep their extreme in the group state.
    append_only: bool,
}

impl GroupAggregateOp {
    pub fn new(
        groups: StateTable,
        values: StateTable,
        group_exprs: Exprs,
        arg_exprs: Exprs,
        aggs: Vec<AggSpec>,
        schema: SchemaRef,
    ) -> Result<GroupAggregateOp> {
        let ngroups = schema.fields().len() - aggs.len();
        let group_types: Vec<DataType> = schema.fields()[..ngroups]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let value_codecs = aggs
            .iter()
            .map(|a| {
                if a.kind == AggKind::Max {
                    // Largest first: MAX is the first key, found without scanning the group.
                    RowCodec::descending(std::slice::from_ref(&a.input)).map(Some)
                } else if a.kind.uses_multiset() {
                    RowCodec::new(std::slice::from_ref(&a.input)).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect::<Result<_>>()?;
        Ok(GroupAggregateOp {
            groups,
            values,
            group_codec: if group_types.is_empty() {
                None
            } else {
                Some(RowCodec::new(&group_types)?)
            },
            group_exprs,
            arg_exprs,
            aggs,
            schema,
            group_types,
            value_codecs,
            global: ngroups == 0,
            append_only: false,
        })
    }

    /// For an input that only ever gains rows (a deletion is then an error): MIN / MAX keep
    /// the extreme in the group state instead of every value.
    pub fn append_only_input(mut self, append_only: bool) -> GroupAggregateOp {
        self.append_only = append_only;
        self
    }

    /// Whether aggregate `agg` keeps its values in the multiset table.
    fn keeps_values(&self, agg: usize) -> bool {
        let kind = &self.aggs[agg].kind;
        kind.uses_multiset() && !(self.append_only && matches!(kind, AggKind::Min | AggKind::Max))
    }

    /// The changes that create the global row over an empty input (called at backfill).
    pub fn initial(&mut self, ctx: &EpochContext) -> Result<Changes> {
        if !self.global || self.groups.get(ctx, &[])?.is_some() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let state = GroupState {
            rows: 0,
            accs: vec![Acc::default(); self.aggs.len()],
        };
        let row = self.output_row(ctx, &[], &state)?;
        self.groups.put(&[], state.encode());
        let batch = self.rows_to_batch(vec![row])?;
        Changes::new(batch, vec![1])
    }

    fn multiset_key(group: &[u8], agg: usize, value: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(4 + group.len() + 2 + value.len());
        k.extend_from_slice(&(group.len() as u32).to_be_bytes());
        k.extend_from_slice(group);
        k.extend_from_slice(&(agg as u16).to_be_bytes());
        k.extend_from_slice(value);
        k
    }

    fn multiset_prefix(group: &[u8], agg: usize) -> Vec<u8> {
        Self::multiset_key(group, agg, &[])
    }

    fn decode_value(&self, agg: usize, bytes: &[u8]) -> Result<ScalarValue> {
        let codec = self.value_codecs[agg]
            .as_ref()
            .ok_or_else(|| Error::internal("no value codec"))?;
        let arr = codec.decode([bytes])?;
        Ok(ScalarValue::try_from_array(&arr[0], 0)?)
    }

    /// The output row (group values + aggregate values) of a group in `state`.
    fn output_row(&self, ctx: &EpochContext, group: &[u8], state: &GroupState) -> Result<Vec<ScalarValue>> {
        let mut row = Vec::with_capacity(self.schema.fields().len());
        if let Some(codec) = &self.group_codec {
            let cols = codec.decode([group])?;
            for c in cols {
                row.push(ScalarValue::try_from_array(&c, 0)?);
            }
        }
        for (i, spec) in self.aggs.iter().enumerate() {
            let acc = &state.accs[i];
            let v = match &spec.kind {
                AggKind::CountStar => ScalarValue::Int64(Some(state.rows)),
                AggKind::Count | AggKind::CountDistinct => ScalarValue::Int64(Some(acc.n)),
                AggKind::Sum => {
                    if acc.n == 0 {
                        ScalarValue::try_from(&spec.output)?
                    } else {
                        sum_value(acc, &spec.input, &spec.output)?
                    }
                }
                AggKind::Avg => {
                    if acc.n == 0 {
                        ScalarValue::try_from(&spec.output)?
                    } else {
                        avg_value(acc, &spec.input, &spec.output)?
                    }
                }
                AggKind::BoolAnd | AggKind::BoolOr => {
                    if acc.trues + acc.falses == 0 {
                        ScalarValue::Boolean(None)
                    } else if spec.kind == AggKind::BoolAnd {
                        ScalarValue::Boolean(Some(acc.falses == 0))
                    } else {
                        ScalarValue::Boolean(Some(acc.trues > 0))
                    }
                }
                AggKind::Min | AggKind::Max if !self.keeps_values(i) => match &acc.extreme {
                    Some(bytes) => self.decode_value(i, bytes)?,
                    None => ScalarValue::try_from(&spec.output)?,
                },
                AggKind::Min | AggKind::Max => match self.values.first_under(ctx, &Self::multiset_prefix(group, i))? {
                    Some((k, _)) => {
                        let p = Self::multiset_prefix(group, i).len();
                        self.decode_value(i, &k[p..])?
                    }
                    None => ScalarValue::try_from(&spec.output)?,
                },
                AggKind::StringAgg(sep) => {
                    let p = Self::multiset_prefix(group, i);
                    let mut parts: Vec<String> = Vec::new();
                    for (k, count) in self.values.scan_prefix(ctx, &p)? {
                        let v = self.decode_value(i, &k[p.len()..])?;
                        let s = match v.cast_to(&DataType::Utf8)? {
                            ScalarValue::Utf8(Some(s)) => s,
                            _ => continue,
                        };
                        for _ in 0..crate::dataflow::operator::decode_i64(&count).max(0) {
                            parts.push(s.clone());
                        }
                    }
                    if parts.is_empty() {
                        ScalarValue::Utf8(None)
                    } else {
                        ScalarValue::Utf8(Some(parts.join(sep)))
                    }
                }
                AggKind::ArrayAgg => {
                    let p = Self::multiset_prefix(group, i);
                    let mut items: Vec<ScalarValue> = Vec::new();
                    for (k, count) in self.values.scan_prefix(ctx, &p)? {
                        let v = self.decode_value(i, &k[p.len()..])?;
                        for _ in 0..crate::dataflow::operator::decode_i64(&count).max(0) {
                            items.push(v.clone());
                        }
                    }
                    if items.is_empty() {
                        ScalarValue::try_from(&spec.output)?
                    } else {
                        ScalarValue::List(ScalarValue::new_list_nullable(&items, &spec.input))
                    }
                }
            };
            let v = if v.data_type() == spec.output || v.is_null() {
                v
            } else {
                v.cast_to(&spec.output)?
            };
            row.push(v);
        }
        Ok(row)
    }

    fn rows_to_batch(&self, rows: Vec<Vec<ScalarValue>>) -> Result<RecordBatch> {
        let schema = Arc::new(super::project::relaxed(&self.schema));
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (c, f) in schema.fields().iter().enumerate() {
            let values = rows.iter().map(|r| {
                let v = r[c].clone();
                if v.is_null() {
                    ScalarValue::try_from(f.data_type()).unwrap_or(v)
                } else {
                    v
                }
            });
            let arr = ScalarValue::iter_to_array(values)?;
            columns.push(if arr.data_type() == f.data_type() {
                arr
            } else {
                datafusion::arrow::compute::cast(&arr, f.data_type())?
            });
        }
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    fn load(&self, ctx: &EpochContext, group: &[u8]) -> Result<Option<GroupState>> {
        self.groups.get(ctx, group)?.map(|v| GroupState::decode(&v)).transpose()
    }
}

fn sum_value(acc: &Acc, input: &DataType, output: &DataType) -> Result<ScalarValue> {
    Ok(match input {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ScalarValue::Float64(Some(acc.float_sum)),
        DataType::Decimal128(_, s) | DataType::Decimal64(_, s) | DataType::Decimal32(_, s) => match output {
            DataType::Decimal128(p, os) => ScalarValue::Decimal128(Some(rescale(acc.int_sum, *s, *os)), *p, *os),
            _ => ScalarValue::Decimal128(Some(acc.int_sum), 38, *s),
        },
        _ => ScalarValue::Int64(Some(acc.int_sum as i64)),
    })
}

fn avg_value(acc: &Acc, input: &DataType, output: &DataType) -> Result<ScalarValue> {
    Ok(match (input, output) {
        (DataType::Decimal128(_, s), DataType::Decimal128(p, os)) => {
            // DataFusion: avg of a decimal keeps the exact quotient at the output scale.
            let scaled = rescale(acc.int_sum, *s, *os);
            ScalarValue::Decimal128(Some(scaled / acc.n as i128), *p, *os)
        }
        (DataType::Float16 | DataType::Float32 | DataType::Float64, _) => {
            ScalarValue::Float64(Some(acc.float_sum / acc.n as f64))
        }
        _ => ScalarValue::Float64(Some(acc.int_sum as f64 / acc.n as f64)),
    })
}

fn rescale(v: i128, from: i8, to: i8) -> i128 {
    if to >= from {
        v * 10i128.pow((to - from) as u32)
    } else {
        v / 10i128.pow((from - to) as u32)
    }
}

/// One aggregate's argument column of a batch, cast once so that each row is a typed read.
enum ArgColumn {
    /// No argument (COUNT(*)): every row counts as NULL.
    None,
    /// Only nullness matters (COUNT, MIN, MAX, DISTINCT, STRING_AGG, ARRAY_AGG).
    Nulls(ArrayRef),
    Float(Float64Array),
    /// Unscaled decimal values.
    Decimal(Decimal128Array),
    Int(Int64Array),
    Bool(BooleanArray),
}

impl ArgColumn {
    fn new(kind: &AggKind, col: Option<&ArrayRef>) -> Result<ArgColumn> {
        let Some(col) = col else {
            return Ok(ArgColumn::None);
        };
        let strict = CastOptions {
            safe: false,
            ..Default::default()
        };
        Ok(match kind {
            AggKind::Sum | AggKind::Avg => match col.data_type() {
                DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                    ArgColumn::Float(cast(col, &DataType::Float64)?.as_primitive::<Float64Type>().clone())
                }
                DataType::Decimal128(_, _) => ArgColumn::Decimal(col.as_primitive::<Decimal128Type>().clone()),
                _ => ArgColumn::Int(
                    cast_with_options(col, &DataType::Int64, &strict)?
                        .as_primitive::<Int64Type>()
                        .clone(),
                ),
            },
            AggKind::BoolAnd | AggKind::BoolOr => ArgColumn::Bool(
                cast_with_options(col, &DataType::Boolean, &strict)?
                    .as_boolean()
                    .clone(),
            ),
            _ => ArgColumn::Nulls(col.clone()),
        })
    }

    fn is_null(&self, i: usize) -> bool {
        match self {
            ArgColumn::None => true,
            ArgColumn::Nulls(a) => a.is_null(i),
            ArgColumn::Float(a) => a.is_null(i),
            ArgColumn::Decimal(a) => a.is_null(i),
            ArgColumn::Int(a) => a.is_null(i),
            ArgColumn::Bool(a) => a.is_null(i),
        }
    }

    /// Adds row `i` (weight `w`) to an accumulator of `kind`.
    fn accumulate(&self, acc: &mut Acc, kind: &AggKind, i: usize, w: i64) {
        if self.is_null(i) {
            return;
        }
        match (kind, self) {
            (AggKind::Count, _) => acc.n += w,
            (AggKind::Sum | AggKind::Avg, ArgColumn::Float(a)) => {
                acc.n += w;
                acc.float_sum += a.value(i) * w as f64;
            }
            (AggKind::Sum | AggKind::Avg, ArgColumn::Decimal(a)) => {
                acc.n += w;
                acc.int_sum += a.value(i) * w as i128;
            }
            (AggKind::Sum | AggKind::Avg, ArgColumn::Int(a)) => {
                acc.n += w;
                acc.int_sum += a.value(i) as i128 * w as i128;
            }
            (AggKind::BoolAnd | AggKind::BoolOr, ArgColumn::Bool(a)) => {
                if a.value(i) {
                    acc.trues += w;
                } else {
                    acc.falses += w;
                }
            }
            _ => {}
        }
    }
}

impl Operator for GroupAggregateOp {
    fn process(&mut self, _port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes> {
        if input.is_empty() {
            // The backfill epoch creates the global row even over an empty input.
            return self.initial(ctx);
        }
        let data = input.data();
        let weights = input.weights().values().to_vec();
        if self.append_only && weights.iter().any(|w| *w <= 0) {
            return Err(Error::internal(
                "an aggregate over an append-only input received a deletion",
            ));
        }
        let group_cols = self.group_exprs.eval(&data)?;
        let arg_cols = self.arg_exprs.eval(&data)?;
        let args: Vec<ArgColumn> = self
            .aggs
            .iter()
            .map(|spec| ArgColumn::new(&spec.kind, spec.arg.map(|a| &arg_cols[a])))
            .collect::<Result<_>>()?;
        let group_keys: Vec<Vec<u8>> = if self.group_types.is_empty() {
            vec![Vec::new(); data.num_rows()]
        } else {
            let cols: Vec<ArrayRef> = super::cast_columns(&group_cols, &self.group_types)?;
            let rows = self.group_codec.as_ref().expect("grouped").encode(&cols)?;
            (0..data.num_rows()).map(|i| rows.row(i).as_ref().to_vec()).collect()
        };
        // Encoded argument values of the aggregates with a value codec, and the multiset keys
        // (group, aggregate, value) of every (row, aggregate) that keeps its values.
        let mut values: Vec<Option<Rows>> = Vec::with_capacity(self.aggs.len());
        let mut multiset_keys: Vec<Option<Vec<Vec<u8>>>> = Vec::with_capacity(self.aggs.len());
        for (a, spec) in self.aggs.iter().enumerate() {
            match (&self.value_codecs[a], spec.arg) {
                (Some(codec), Some(arg)) => {
                    let col = &arg_cols[arg];
                    let col = if col.data_type() == &spec.input {
                        col.clone()
                    } else {
                        datafusion::arrow::compute::cast(col, &spec.input)?
                    };
                    let rows = codec.encode(&[col])?;
                    multiset_keys.push(self.keeps_values(a).then(|| {
                        group_keys
                            .iter()
                            .enumerate()
                            .map(|(i, g)| Self::multiset_key(g, a, rows.row(i).as_ref()))
                            .collect()
                    }));
                    values.push(Some(rows));
                }
                _ => {
                    multiset_keys.push(None);
                    values.push(None);
                }
            }
        }
        // The value multisets (MIN, MAX, DISTINCT, STRING_AGG, ARRAY_AGG) and group states this
        // batch updates, read ahead in batched reads.
        for (a, spec) in self.aggs.iter().enumerate() {
            let (Some(keys), Some(arg)) = (&multiset_keys[a], spec.arg) else {
                continue;
            };
            let keep_nulls = matches!(spec.kind, AggKind::ArrayAgg);
            let updated = keys
                .iter()
                .enumerate()
                .filter(|(i, _)| keep_nulls || !arg_cols[arg].is_null(*i))
                .map(|(_, k)| k.as_slice());
            self.values.prefetch(ctx, updated)?;
        }
        self.groups.prefetch(ctx, group_keys.iter().map(|g| g.as_slice()))?;
        // Touched groups in first-seen order, with their state before this epoch's changes.
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut touched: HashMap<Vec<u8>, (Option<Vec<ScalarValue>>, GroupState)> = HashMap::new();
        for (i, g) in group_keys.iter().enumerate() {
            if !touched.contains_key(g) {
                let state = self.load(ctx, g)?;
                let old = match &state {
                    Some(s) if s.rows > 0 || self.global => Some(self.output_row(ctx, g, s)?),
                    _ => None,
                };
                let state = state.unwrap_or_else(|| GroupState {
                    rows: 0,
                    accs: vec![Acc::default(); self.aggs.len()],
                });
                touched.insert(g.clone(), (old, state));
                order.push(g.clone());
            }
            let w = weights[i];
            let entry = touched.get_mut(g).expect("inserted");
            entry.1.rows += w;
            for (a, spec) in self.aggs.iter().enumerate() {
                let arg = &args[a];
                match &spec.kind {
                    AggKind::CountStar => {}
                    AggKind::Min | AggKind::Max if multiset_keys[a].is_none() => {
                        if !arg.is_null(i) {
                            let v = values[a].as_ref().expect("encoded").row(i);
                            let acc = &mut entry.1.accs[a];
                            if acc.extreme.as_deref().is_none_or(|e| v.as_ref() < e) {
                                acc.extreme = Some(v.as_ref().to_vec());
                            }
                        }
                    }
                    AggKind::Min | AggKind::Max | AggKind::StringAgg(_) => {
                        if !arg.is_null(i) {
                            let key = &multiset_keys[a].as_ref().expect("multiset")[i];
                            self.values.add_count(ctx, key, w)?;
                        }
                    }
                    AggKind::ArrayAgg => {
                        let key = &multiset_keys[a].as_ref().expect("multiset")[i];
                        self.values.add_count(ctx, key, w)?;
                    }
                    AggKind::CountDistinct => {
                        if !arg.is_null(i) {
                            let key = &multiset_keys[a].as_ref().expect("multiset")[i];
                            let (old, new) = self.values.add_count(ctx, key, w)?;
                            if old <= 0 && new > 0 {
                                entry.1.accs[a].n += 1;
                            } else if old > 0 && new <= 0 {
                                entry.1.accs[a].n -= 1;
                            }
                        }
                    }
                    kind => arg.accumulate(&mut entry.1.accs[a], kind, i, w),
                }
            }
        }
        let mut rows = Vec::new();
        let mut out_weights = Vec::new();
        for g in order {
            let (old, state) = touched.remove(&g).expect("touched");
            let exists = state.rows > 0 || self.global;
            let new = if exists {
                Some(self.output_row(ctx, &g, &state)?)
            } else {
                None
            };
            if old == new {
                if exists {
                    self.groups.put(&g, state.encode());
                }
                continue;
            }
            if let Some(o) = old {
                rows.push(o);
                out_weights.push(-1);
            }
            if let Some(n) = new {
                rows.push(n);
                out_weights.push(1);
            }
            if exists {
                self.groups.put(&g, state.encode());
            } else {
                self.groups.delete(&g);
            }
        }
        let batch = self.rows_to_batch(rows)?;
        Changes::new(batch, out_weights)
    }

    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        vec![&mut self.groups, &mut self.values]
    }

    fn describe(&self) -> String {
        let aggs: Vec<String> = self.aggs.iter().map(|a| format!("{:?}", a.kind)).collect();
        format!(
            "GroupAggregate: group by [{}], aggregates [{}] (state: group -> accumulators{})",
            self.group_exprs.display.join(", "),
            aggs.join(", "),
            if self.append_only {
                " and min/max; distinct/string_agg values; append-only input"
            } else {
                "; min/max/distinct/string_agg values"
            }
        )
    }
}

/// Field of a sort key for arrow-row.
pub fn sort_field(t: &DataType) -> SortField {
    SortField::new(t.clone())
}

/// A row converter for `types` (helper for operators keying state by several columns).
pub fn converter(types: &[DataType]) -> Result<RowConverter> {
    Ok(RowConverter::new(types.iter().map(sort_field).collect())?)
}

#[allow(dead_code)]
fn _array_is_used(_: &dyn Array) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_state_round_trips_and_reads_the_json_of_older_stores() {
        let state = GroupState {
            rows: 7,
            accs: vec![
                Acc {
                    n: 3,
                    int_sum: -(1i128 << 100),
                    float_sum: 2.5,
                    trues: 1,
                    falses: 2,
                    extreme: None,
                },
                Acc::default(),
            ],
        };
        let bytes = state.encode();
        assert_eq!(bytes.len(), 9 + 2 * ACC_BYTES);
        assert_eq!(GroupState::decode(&bytes).unwrap(), state);
        // With extremes (MIN / MAX over an append-only input), empty ones included.
        let mut with = state.clone();
        with.accs[0].extreme = Some(vec![]);
        with.accs.push(Acc {
            extreme: Some(b"\x01abc".to_vec()),
            ..Acc::default()
        });
        let bytes = with.encode();
        assert_eq!(bytes[0], STATE_V3);
        assert_eq!(GroupState::decode(&bytes).unwrap(), with);
        assert!(GroupState::decode(&bytes[..bytes.len() - 1]).is_err());
        let json = serde_json::to_vec(&state).unwrap();
        assert_eq!(GroupState::decode(&json).unwrap(), state);
        assert!(GroupState::decode(&bytes[..20]).is_err());
    }
}
