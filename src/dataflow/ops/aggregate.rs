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
//! Distinct families (plan version 5, [`GroupAggregateOp::distinct_families`]): the
//! COUNT(DISTINCT)s of one argument, each under its own FILTER or none (`count(DISTINCT x)`,
//! `count(DISTINCT x) FILTER (WHERE p)`, ..), keep one entry per (group, value) for all of
//! them: a count per member, or over an append-only input a bit per member (whether it has
//! seen the value; a row that brings nothing new writes nothing). A row is one lookup per
//! family instead of one per aggregate. Plan version 8 ([`GroupAggregateOp::group_ids`])
//! keys those entries by a number each group gets when it first appears (kept in its
//! [`GroupState`], the next number under part 0's empty key), not by the group's bytes.
//!
//! Without aggregates (`GROUP BY` alone, `SELECT DISTINCT`), plan version 11
//! ([`GroupAggregateOp::groups_only`]): a group's row is its key, so insertions only ever
//! insert rows (a group's first row) and the output over an append-only input is append-only
//! itself; over such an input a group is written once, when it first appears (its row count
//! is not kept: it can never fall to zero).
//!
//! For each group touched in an epoch the operator emits `-old row, +new row` (nothing when the
//! row did not change). A global aggregate (no GROUP BY) always has exactly one row, as in
//! PostgreSQL: over an empty input COUNT is 0 and SUM is NULL.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    UInt32Array,
};
use datafusion::arrow::compute::{cast, cast_with_options, take, CastOptions};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

use super::grouping::Groups;
use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{EpochContext, Operator, RowGroups, StateTable};
use crate::dataflow::state_log::put_varint;
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
    /// COUNT(DISTINCT) in a distinct family: index among the argument expressions of its
    /// FILTER predicate (a row counts where it is true); `None`: every row counts.
    pub filter: Option<usize>,
}

/// COUNT(DISTINCT)s of one argument kept in one state entry per (group, value).
#[derive(Clone, Debug)]
struct Family {
    /// The member aggregates (at most 64: one bit each in a row's mask).
    members: Vec<usize>,
    /// Their argument (the same expression for all).
    arg: usize,
}

/// What a row does to a distinct family's entry.
enum EntryWrite {
    Unchanged,
    Put(Vec<u8>),
    Delete,
}

impl Family {
    /// The write to a value's entry `old` (a count per member, or over an append-only input
    /// `bits`, a bit per member) when members `mask` (bits) count it `w` times more; adds to
    /// the members' distinct counts in `accs` where the value appears or disappears.
    fn update(&self, old: Option<&[u8]>, mask: u64, w: i64, bits: bool, accs: &mut [Acc]) -> EntryWrite {
        let n = self.members.len();
        if bits {
            let mut b = [0u8; 8];
            if let Some(old) = old {
                let len = old.len().min(8);
                b[..len].copy_from_slice(&old[..len]);
            }
            let old = u64::from_le_bytes(b);
            let new = mask & !old;
            if new == 0 {
                return EntryWrite::Unchanged;
            }
            for (bit, m) in self.members.iter().enumerate() {
                if new & (1 << bit) != 0 {
                    accs[*m].n += 1;
                }
            }
            return EntryWrite::Put((old | mask).to_le_bytes()[..n.div_ceil(8)].to_vec());
        }
        let mut counts = vec![0i64; n];
        for (c, b) in counts.iter_mut().zip(old.unwrap_or_default().chunks_exact(8)) {
            *c = i64::from_le_bytes(b.try_into().expect("8 bytes"));
        }
        for (bit, m) in self.members.iter().enumerate() {
            if mask & (1 << bit) == 0 {
                continue;
            }
            let (before, after) = (counts[bit], counts[bit] + w);
            counts[bit] = after;
            if before <= 0 && after > 0 {
                accs[*m].n += 1;
            } else if before > 0 && after <= 0 {
                accs[*m].n -= 1;
            }
        }
        if counts.iter().all(|c| *c == 0) {
            EntryWrite::Delete
        } else {
            EntryWrite::Put(counts.iter().flat_map(|c| c.to_le_bytes()).collect())
        }
    }
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
    /// Plan version 8: the group's number, which keys its COUNT(DISTINCT) values in place of
    /// its bytes (see [`GroupAggregateOp::group_ids`]); 0: none.
    #[serde(default)]
    id: u64,
}

/// First byte of the binary group-state encodings (older stores hold JSON, which starts `{`):
/// fixed-size accumulators (V2), each followed by an optional extreme (V3), only the fields
/// that are not zero (V4, written now), and V4 with the group's number (V5, plan version 8).
const STATE_V2: u8 = 2;
const STATE_V3: u8 = 3;
const STATE_V4: u8 = 4;
const STATE_V5: u8 = 5;
const ACC_BYTES: usize = 8 + 16 + 8 + 8 + 8;
/// The extreme length of an accumulator without one (V3).
const NO_EXTREME: u32 = u32::MAX;

/// V4: which fields of an accumulator follow its flags byte.
const HAS_N: u8 = 1;
const HAS_INT_SUM: u8 = 2;
const HAS_FLOAT_SUM: u8 = 4;
const HAS_TRUES: u8 = 8;
const HAS_FALSES: u8 = 16;
const HAS_EXTREME: u8 = 32;

impl GroupState {
    /// Binary: `4 | rows:i64 | per accumulator flags:u8, then the fields it flags, in order
    /// n:i64 int_sum:i128 float_sum:f64 trues:i64 falses:i64 extreme(len:u32 bytes)`: a
    /// COUNT(*) group is 10 bytes. A numbered group: `5 | rows:i64 | id:u64 | ..` the same.
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17 + self.accs.len() * 9);
        v.push(if self.id == 0 { STATE_V4 } else { STATE_V5 });
        v.extend_from_slice(&self.rows.to_le_bytes());
        if self.id != 0 {
            v.extend_from_slice(&self.id.to_le_bytes());
        }
        for a in &self.accs {
            let flags = if a.n != 0 { HAS_N } else { 0 }
                | if a.int_sum != 0 { HAS_INT_SUM } else { 0 }
                | if a.float_sum.to_bits() != 0 { HAS_FLOAT_SUM } else { 0 }
                | if a.trues != 0 { HAS_TRUES } else { 0 }
                | if a.falses != 0 { HAS_FALSES } else { 0 }
                | if a.extreme.is_some() { HAS_EXTREME } else { 0 };
            v.push(flags);
            if flags & HAS_N != 0 {
                v.extend_from_slice(&a.n.to_le_bytes());
            }
            if flags & HAS_INT_SUM != 0 {
                v.extend_from_slice(&a.int_sum.to_le_bytes());
            }
            if flags & HAS_FLOAT_SUM != 0 {
                v.extend_from_slice(&a.float_sum.to_le_bytes());
            }
            if flags & HAS_TRUES != 0 {
                v.extend_from_slice(&a.trues.to_le_bytes());
            }
            if flags & HAS_FALSES != 0 {
                v.extend_from_slice(&a.falses.to_le_bytes());
            }
            if let Some(e) = &a.extreme {
                v.extend_from_slice(&(e.len() as u32).to_le_bytes());
                v.extend_from_slice(e);
            }
        }
        v
    }

    /// Decodes the V4 accumulators from offset `o` (after `rows`, and in V5 the id).
    fn decode_v4(v: &[u8], mut o: usize) -> Option<Vec<Acc>> {
        let mut accs = Vec::new();
        let take = |n: usize, o: &mut usize| -> Option<&[u8]> {
            let bytes = v.get(*o..*o + n)?;
            *o += n;
            Some(bytes)
        };
        while o < v.len() {
            let flags = take(1, &mut o)?[0];
            let mut acc = Acc::default();
            let i64_of = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("8 bytes"));
            if flags & HAS_N != 0 {
                acc.n = i64_of(take(8, &mut o)?);
            }
            if flags & HAS_INT_SUM != 0 {
                acc.int_sum = i128::from_le_bytes(take(16, &mut o)?.try_into().expect("16 bytes"));
            }
            if flags & HAS_FLOAT_SUM != 0 {
                acc.float_sum = f64::from_le_bytes(take(8, &mut o)?.try_into().expect("8 bytes"));
            }
            if flags & HAS_TRUES != 0 {
                acc.trues = i64_of(take(8, &mut o)?);
            }
            if flags & HAS_FALSES != 0 {
                acc.falses = i64_of(take(8, &mut o)?);
            }
            if flags & HAS_EXTREME != 0 {
                let len = u32::from_le_bytes(take(4, &mut o)?.try_into().expect("4 bytes"));
                acc.extreme = Some(take(len as usize, &mut o)?.to_vec());
            }
            accs.push(acc);
        }
        Some(accs)
    }

    fn decode(v: &[u8]) -> Result<GroupState> {
        let corrupt = |e: String| Error::internal(format!("corrupt aggregate state: {e}"));
        let v3 = match v.first() {
            Some(&STATE_V2) => false,
            Some(&STATE_V3) => true,
            Some(&STATE_V4 | &STATE_V5) => false,
            _ => return serde_json::from_slice(v).map_err(|e| corrupt(e.to_string())),
        };
        if v.len() < 9 {
            return Err(corrupt(format!("{} bytes", v.len())));
        }
        let i64_at = |o: usize| i64::from_le_bytes(v[o..o + 8].try_into().expect("8 bytes"));
        if v[0] == STATE_V4 || v[0] == STATE_V5 {
            let (id, o) = match v[0] {
                STATE_V5 if v.len() >= 17 => (u64::from_le_bytes(v[9..17].try_into().expect("8 bytes")), 17),
                STATE_V5 => return Err(corrupt(format!("{} bytes", v.len()))),
                _ => (0, 9),
            };
            let accs = Self::decode_v4(v, o).ok_or_else(|| corrupt(format!("{} bytes", v.len())))?;
            return Ok(GroupState {
                rows: i64_at(1),
                accs,
                id,
            });
        }
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
        Ok(GroupState {
            rows: i64_at(1),
            accs,
            id: 0,
        })
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
    input_appends: bool,
    /// Plan version 3's COUNT(DISTINCT) keys: the whole key declares itself one state group,
    /// so that a value is one hashed lookup, not a search among every value of its group
    /// (see [`GroupAggregateOp::distinct_key`]).
    hashed_distinct: bool,
    /// Plan version 5: the COUNT(DISTINCT)s, in families by argument (empty: each keeps its
    /// own values).
    families: Vec<Family>,
    /// Plan version 8: a distinct family's entries are keyed by their group's number, not its
    /// bytes (see [`GroupAggregateOp::group_ids`]).
    group_ids: bool,
    /// The number the next new group gets (read from the group table at first use).
    next_id: Option<u64>,
    /// Plan version 11, without aggregates: the output is declared append-only over an
    /// append-only input (see [`GroupAggregateOp::groups_only`]).
    groups_only: bool,
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
            input_appends: false,
            hashed_distinct: true,
            families: Vec::new(),
            group_ids: false,
            next_id: None,
            groups_only: false,
        })
    }

    /// Whether the COUNT(DISTINCT)s of one argument share one entry per value (plan version
    /// 5; see the module doc), or each keeps its own (older views, whose state is so).
    pub fn distinct_families(mut self, families: bool) -> GroupAggregateOp {
        self.families.clear();
        if !families {
            return self;
        }
        for (a, spec) in self.aggs.iter().enumerate() {
            let (AggKind::CountDistinct, Some(arg)) = (&spec.kind, spec.arg) else {
                continue;
            };
            match self.families.iter_mut().find(|f| f.arg == arg && f.members.len() < 64) {
                Some(f) => f.members.push(a),
                None => self.families.push(Family { members: vec![a], arg }),
            }
        }
        self
    }

    /// Whether aggregate `agg` is a COUNT(DISTINCT) kept in a distinct family.
    fn in_family(&self, agg: usize) -> bool {
        self.families.iter().any(|f| f.members.contains(&agg))
    }

    /// Whether a distinct family's entries are keyed by a number that each group gets when it
    /// first appears (plan version 8; kept in its state), not by the group's bytes: a group
    /// key (a channel name and a day, say) is written once, not once per distinct value
    /// (q16's entries: 64 bytes each, 24 numbered). Without GROUP BY there is one group and
    /// nothing to number. Older views' entries are keyed by the group's bytes.
    pub fn group_ids(mut self, numbered: bool) -> GroupAggregateOp {
        self.group_ids = numbered;
        self
    }

    /// Plan version 11 (`on`), for a GROUP BY without aggregates: its rows are its groups, so
    /// insertions only ever add rows ([`Operator::append_only`]), and over an append-only
    /// input a group that exists is not written again (older views count each group's rows).
    pub fn groups_only(mut self, on: bool) -> GroupAggregateOp {
        self.groups_only = on && self.aggs.is_empty() && !self.global;
        self
    }

    /// Whether this batch's groups are numbered: plan version 8, with a GROUP BY and a
    /// distinct family to key (whatever order the builder methods were called in).
    fn numbers_groups(&self) -> bool {
        self.group_ids && !self.global && !self.families.is_empty()
    }

    /// Whether COUNT(DISTINCT) values are keyed one state group each (plan version 3) or
    /// under their aggregate group (version 2 and older views, whose state is keyed so).
    pub fn hashed_distinct(mut self, hashed: bool) -> GroupAggregateOp {
        self.hashed_distinct = hashed;
        self
    }

    /// For an input that only ever gains rows (a deletion is then an error): MIN / MAX keep
    /// the extreme in the group state instead of every value.
    pub fn append_only_input(mut self, append_only: bool) -> GroupAggregateOp {
        self.input_appends = append_only;
        self
    }

    /// Whether aggregate `agg` keeps its values in the multiset table.
    fn keeps_values(&self, agg: usize) -> bool {
        let kind = &self.aggs[agg].kind;
        kind.uses_multiset() && !(self.input_appends && matches!(kind, AggKind::Min | AggKind::Max))
    }

    /// The changes that create the global row over an empty input (called at backfill).
    pub fn initial(&mut self, ctx: &EpochContext) -> Result<Changes> {
        if !self.global || self.groups.get(ctx, &[])?.is_some() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let state = GroupState {
            rows: 0,
            accs: vec![Acc::default(); self.aggs.len()],
            id: 0,
        };
        let row = self.output_values(ctx, &[], &state)?;
        self.groups.put(&[], state.encode());
        let batch = self.output_batch(&[(&[][..], row)])?;
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

    /// The key of a COUNT(DISTINCT) value, which is only ever looked up (never scanned in
    /// order): the length of all that follows, then group, aggregate and value, so that the
    /// state index takes the whole key as its group (hashed). Its first four bytes differ from
    /// any [`GroupAggregateOp::multiset_key`] prefix of the same group, and a multiset scan
    /// reads only keys under its own longer prefix, so the two forms never mix.
    fn distinct_key(group: &[u8], agg: usize, value: &[u8]) -> Vec<u8> {
        let n = group.len() + 2 + value.len();
        let mut k = Vec::with_capacity(4 + n);
        k.extend_from_slice(&(n as u32).to_be_bytes());
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

    /// The aggregate values of a group's output row, the group in `state` (MIN / MAX over
    /// a multiset, STRING_AGG and ARRAY_AGG read the values stored now).
    fn output_values(&self, ctx: &EpochContext, group: &[u8], state: &GroupState) -> Result<Vec<AggValue>> {
        let mut row = Vec::with_capacity(self.aggs.len());
        for (i, spec) in self.aggs.iter().enumerate() {
            let acc = &state.accs[i];
            let v = match &spec.kind {
                AggKind::CountStar => AggValue::Int(state.rows),
                AggKind::Count | AggKind::CountDistinct => AggValue::Int(acc.n),
                AggKind::Sum | AggKind::Avg if acc.n == 0 => AggValue::Null,
                AggKind::Sum => match (&spec.input, &spec.output) {
                    (DataType::Float16 | DataType::Float32 | DataType::Float64, _) => AggValue::Float(acc.float_sum),
                    (
                        DataType::Decimal128(_, s) | DataType::Decimal64(_, s) | DataType::Decimal32(_, s),
                        DataType::Decimal128(_, os),
                    ) => AggValue::Decimal(rescale(acc.int_sum, *s, *os)),
                    (DataType::Decimal128(..) | DataType::Decimal64(..) | DataType::Decimal32(..), _) => {
                        AggValue::Decimal(acc.int_sum)
                    }
                    _ => AggValue::Int(acc.int_sum as i64),
                },
                AggKind::Avg => match (&spec.input, &spec.output) {
                    // DataFusion: avg of a decimal keeps the exact quotient at the output scale.
                    (DataType::Decimal128(_, s), DataType::Decimal128(_, os)) => {
                        AggValue::Decimal(rescale(acc.int_sum, *s, *os) / acc.n as i128)
                    }
                    (DataType::Float16 | DataType::Float32 | DataType::Float64, _) => {
                        AggValue::Float(acc.float_sum / acc.n as f64)
                    }
                    _ => AggValue::Float(acc.int_sum as f64 / acc.n as f64),
                },
                AggKind::BoolAnd | AggKind::BoolOr => {
                    if acc.trues + acc.falses == 0 {
                        AggValue::Null
                    } else if spec.kind == AggKind::BoolAnd {
                        AggValue::Bool(acc.falses == 0)
                    } else {
                        AggValue::Bool(acc.trues > 0)
                    }
                }
                AggKind::Min | AggKind::Max if !self.keeps_values(i) => match &acc.extreme {
                    Some(bytes) => AggValue::Encoded(bytes.clone()),
                    None => AggValue::Null,
                },
                AggKind::Min | AggKind::Max => {
                    let p = Self::multiset_prefix(group, i);
                    match self.values.first_under(ctx, &p)? {
                        Some((mut k, _)) => {
                            k.drain(..p.len());
                            AggValue::Encoded(k)
                        }
                        None => AggValue::Null,
                    }
                }
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
                        AggValue::Null
                    } else {
                        AggValue::Scalar(ScalarValue::Utf8(Some(parts.join(sep))))
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
                        AggValue::Null
                    } else {
                        AggValue::Scalar(ScalarValue::List(ScalarValue::new_list_nullable(&items, &spec.input)))
                    }
                }
            };
            row.push(v);
        }
        Ok(row)
    }

    /// The output rows (group key, aggregate values) as a batch: the group columns decoded
    /// together, each aggregate column built from its values at once.
    fn output_batch(&self, rows: &[(&[u8], Vec<AggValue>)]) -> Result<RecordBatch> {
        let schema = Arc::new(super::project::relaxed(&self.schema));
        if rows.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        let mut columns: Vec<ArrayRef> = match &self.group_codec {
            Some(codec) => codec.decode(rows.iter().map(|(g, _)| *g))?,
            None => Vec::new(),
        };
        for a in 0..self.aggs.len() {
            columns.push(self.aggregate_column(a, rows.iter().map(|(_, v)| &v[a]))?);
        }
        let columns = super::cast_to_fields(columns, schema.fields())?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Aggregate `a`'s column of output values (cast to its output type by the caller).
    fn aggregate_column<'v>(&self, a: usize, values: impl ExactSizeIterator<Item = &'v AggValue>) -> Result<ArrayRef> {
        let spec = &self.aggs[a];
        let len = values.len();
        Ok(match &spec.kind {
            AggKind::Min | AggKind::Max => {
                // The extremes decoded together; NULLs placed by a `take` with null indices.
                let mut encoded: Vec<&[u8]> = Vec::new();
                let indices: UInt32Array = values
                    .map(|v| match v {
                        AggValue::Encoded(b) => {
                            encoded.push(b);
                            Some(encoded.len() as u32 - 1)
                        }
                        _ => None,
                    })
                    .collect();
                if encoded.is_empty() {
                    new_null_array(&spec.input, len)
                } else {
                    let codec = self.value_codecs[a]
                        .as_ref()
                        .ok_or_else(|| Error::internal("no value codec"))?;
                    let decoded = codec.decode(encoded)?;
                    take(&decoded[0], &indices, None)?
                }
            }
            AggKind::StringAgg(_) | AggKind::ArrayAgg => {
                let null = ScalarValue::try_from(if spec.kind == AggKind::ArrayAgg {
                    &spec.output
                } else {
                    &DataType::Utf8
                })?;
                ScalarValue::iter_to_array(values.map(|v| match v {
                    AggValue::Scalar(s) => s.clone(),
                    _ => null.clone(),
                }))?
            }
            _ => match values_type(spec) {
                DataType::Int64 => Arc::new(Int64Array::from_iter(values.map(|v| match v {
                    AggValue::Int(x) => Some(*x),
                    _ => None,
                }))),
                DataType::Boolean => Arc::new(BooleanArray::from_iter(values.map(|v| match v {
                    AggValue::Bool(x) => Some(*x),
                    _ => None,
                }))),
                DataType::Decimal128(p, s) => Arc::new(
                    Decimal128Array::from_iter(values.map(|v| match v {
                        AggValue::Decimal(x) => Some(*x),
                        _ => None,
                    }))
                    .with_precision_and_scale(p, s)?,
                ),
                _ => Arc::new(Float64Array::from_iter(values.map(|v| match v {
                    AggValue::Float(x) => Some(*x),
                    _ => None,
                }))),
            },
        })
    }

    fn load(&self, ctx: &EpochContext, group: &[u8]) -> Result<Option<GroupState>> {
        self.groups.get(ctx, group)?.map(|v| GroupState::decode(&v)).transpose()
    }

    /// The groups `keys` (a batch's, in first-seen order), each with its output before this
    /// epoch's changes and its state (a new group's empty).
    fn load_touched<'k>(&self, ctx: &EpochContext, keys: &[&'k [u8]]) -> Result<Vec<Touched<'k>>> {
        let mut touched = Vec::with_capacity(keys.len());
        for g in keys {
            let state = self.load(ctx, g)?;
            let old = match &state {
                Some(s) if s.rows > 0 || self.global => Some(self.output_values(ctx, g, s)?),
                _ => None,
            };
            let state = state.unwrap_or_else(|| GroupState {
                rows: 0,
                accs: vec![Acc::default(); self.aggs.len()],
                id: 0,
            });
            touched.push((*g, old, state));
        }
        Ok(touched)
    }

    /// Gives each group of `touched` that has no number the next one (plan version 8). The
    /// next number is kept under the empty key of the group table (no group of a grouped
    /// aggregate encodes to nothing).
    fn number_groups(&mut self, ctx: &EpochContext, touched: &mut [Touched]) -> Result<()> {
        let mut next = match self.next_id {
            Some(n) => n,
            None => match self.groups.get(ctx, &[])? {
                Some(v) => u64::from_le_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| Error::internal("corrupt aggregate group number"))?,
                ),
                None => 1,
            },
        };
        let before = next;
        for (_, _, state) in touched.iter_mut().filter(|t| t.2.id == 0) {
            state.id = next;
            next += 1;
        }
        if next != before {
            self.groups.put(&[], next.to_le_bytes().to_vec());
        }
        self.next_id = Some(next);
        Ok(())
    }
}

/// The type of the values [`GroupAggregateOp::output_values`] gives for a COUNT, SUM, AVG or
/// BOOL_AND / BOOL_OR (before the cast to the output type).
fn values_type(spec: &AggSpec) -> DataType {
    match (&spec.kind, &spec.input, &spec.output) {
        (AggKind::BoolAnd | AggKind::BoolOr, _, _) => DataType::Boolean,
        (AggKind::Sum, DataType::Float16 | DataType::Float32 | DataType::Float64, _) => DataType::Float64,
        (
            AggKind::Sum,
            DataType::Decimal128(..) | DataType::Decimal64(..) | DataType::Decimal32(..),
            DataType::Decimal128(p, s),
        ) => DataType::Decimal128(*p, *s),
        (AggKind::Sum, DataType::Decimal128(_, s) | DataType::Decimal64(_, s) | DataType::Decimal32(_, s), _) => {
            DataType::Decimal128(38, *s)
        }
        (AggKind::Avg, DataType::Decimal128(..), DataType::Decimal128(p, s)) => DataType::Decimal128(*p, *s),
        (AggKind::Avg, _, _) => DataType::Float64,
        _ => DataType::Int64,
    }
}

/// A group an epoch touches: its key, its output row's aggregate values before the epoch
/// (none if it had no row) and its state.
type Touched<'k> = (&'k [u8], Option<Vec<AggValue>>, GroupState);

/// One aggregate's value in an output row, of the type [`values_type`] gives (MIN / MAX:
/// encoded by the aggregate's value codec; STRING_AGG / ARRAY_AGG: a scalar).
#[derive(Clone, Debug, PartialEq)]
enum AggValue {
    Null,
    Int(i64),
    Float(f64),
    Decimal(i128),
    Bool(bool),
    Encoded(Vec<u8>),
    Scalar(ScalarValue),
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
        if self.input_appends && weights.iter().any(|w| *w <= 0) {
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
        // The batch's groups in first-seen order (one, keyed by nothing, without GROUP BY),
        // each row's group, and each row's group key.
        let groups = match &self.group_codec {
            Some(codec) => Some(Groups::of(
                &super::cast_columns(&group_cols, &self.group_types)?,
                codec,
            )?),
            None => None,
        };
        let no_group = vec![0; if groups.is_some() { 0 } else { data.num_rows() }];
        let (group_of, slots): (Vec<&[u8]>, &[u32]) = match &groups {
            Some(g) => (g.keys(), &g.slot),
            None => (vec![&[][..]], &no_group),
        };
        let group_keys = || slots.iter().map(|s| group_of[*s as usize]);
        // Encoded argument values of the aggregates with a value codec, and the multiset keys
        // (group, aggregate, value) of every (row, aggregate) that keeps its values.
        let mut values: Vec<Option<Rows>> = Vec::with_capacity(self.aggs.len());
        let mut multiset_keys: Vec<Option<Vec<Vec<u8>>>> = Vec::with_capacity(self.aggs.len());
        for (a, spec) in self.aggs.iter().enumerate() {
            match (&self.value_codecs[a], spec.arg) {
                (Some(codec), Some(arg)) if !self.in_family(a) => {
                    let col = &arg_cols[arg];
                    let rows = codec.encode(&super::cast_columns(
                        std::slice::from_ref(col),
                        std::slice::from_ref(&spec.input),
                    )?)?;
                    let key_of: fn(&[u8], usize, &[u8]) -> Vec<u8> =
                        if self.hashed_distinct && spec.kind == AggKind::CountDistinct {
                            Self::distinct_key
                        } else {
                            Self::multiset_key
                        };
                    // Rows whose value is NULL touch no multiset (ARRAY_AGG's aside): no key
                    // (`agg(x) FILTER (WHERE p)` is NULL wherever p does not hold).
                    let keep_nulls = matches!(spec.kind, AggKind::ArrayAgg);
                    multiset_keys.push(self.keeps_values(a).then(|| {
                        group_keys()
                            .enumerate()
                            .map(|(i, g)| {
                                if !keep_nulls && arg_cols[arg].is_null(i) {
                                    Vec::new()
                                } else {
                                    key_of(g, a, rows.row(i).data())
                                }
                            })
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
        // Plan version 8: the touched groups first, numbered, their numbers keying the
        // families' entries below.
        let mut touched: Option<Vec<Touched>> = None;
        let mut numbers: Vec<Vec<u8>> = Vec::new();
        if self.numbers_groups() {
            self.groups.prefetch(ctx, group_of.iter().copied())?;
            let mut t = self.load_touched(ctx, &group_of)?;
            self.number_groups(ctx, &mut t)?;
            numbers = t
                .iter()
                .map(|(_, _, s)| {
                    let mut n = Vec::with_capacity(4);
                    put_varint(&mut n, s.id);
                    n
                })
                .collect();
            touched = Some(t);
        }
        let family_group = |slot: u32| -> &[u8] {
            match numbers.get(slot as usize) {
                Some(number) => number,
                None => group_of[slot as usize],
            }
        };
        // Each family's (entry key, members counting the row) per row: mask 0 (and no key)
        // where the value is NULL or no member's FILTER holds.
        let mut family_rows: Vec<Vec<(Vec<u8>, u64)>> = Vec::with_capacity(self.families.len());
        for f in &self.families {
            let first = f.members[0];
            let spec = &self.aggs[first];
            let col = &arg_cols[f.arg];
            let codec = self.value_codecs[first]
                .as_ref()
                .ok_or_else(|| Error::internal("no value codec"))?;
            let encoded = codec.encode(&super::cast_columns(
                std::slice::from_ref(col),
                std::slice::from_ref(&spec.input),
            )?)?;
            let filters: Vec<Option<&BooleanArray>> = f
                .members
                .iter()
                .map(|m| self.aggs[*m].filter.map(|p| arg_cols[p].as_boolean()))
                .collect();
            let rows = slots
                .iter()
                .enumerate()
                .map(|(i, slot)| {
                    let mut mask = 0u64;
                    if !col.is_null(i) {
                        for (bit, filter) in filters.iter().enumerate() {
                            if filter.is_none_or(|p| p.is_valid(i) && p.value(i)) {
                                mask |= 1 << bit;
                            }
                        }
                    }
                    if mask == 0 {
                        (Vec::new(), 0)
                    } else {
                        (
                            Self::distinct_key(family_group(*slot), first, encoded.row(i).data()),
                            mask,
                        )
                    }
                })
                .collect();
            family_rows.push(rows);
        }
        for rows in &family_rows {
            let keys = rows.iter().filter(|(_, mask)| *mask != 0).map(|(k, _)| k.as_slice());
            self.values.prefetch(ctx, keys)?;
        }
        // Touched groups in first-seen order, with their output before this epoch's changes
        // and their state.
        let mut touched = match touched {
            Some(t) => t,
            None => {
                self.groups.prefetch(ctx, group_of.iter().copied())?;
                self.load_touched(ctx, &group_of)?
            }
        };
        for (i, slot) in slots.iter().enumerate() {
            let slot = *slot as usize;
            let w = weights[i];
            let state = &mut touched[slot].2;
            state.rows += w;
            for (a, spec) in self.aggs.iter().enumerate() {
                let arg = &args[a];
                match &spec.kind {
                    AggKind::CountStar => {}
                    AggKind::Min | AggKind::Max if multiset_keys[a].is_none() => {
                        if !arg.is_null(i) {
                            let v = values[a].as_ref().expect("encoded").row(i);
                            let acc = &mut state.accs[a];
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
                    AggKind::CountDistinct if self.families.is_empty() => {
                        if !arg.is_null(i) {
                            let key = &multiset_keys[a].as_ref().expect("multiset")[i];
                            let (old, new) = self.values.add_count(ctx, key, w)?;
                            if old <= 0 && new > 0 {
                                state.accs[a].n += 1;
                            } else if old > 0 && new <= 0 {
                                state.accs[a].n -= 1;
                            }
                        }
                    }
                    // In a family: counted below, once per family.
                    AggKind::CountDistinct => {}
                    kind => arg.accumulate(&mut state.accs[a], kind, i, w),
                }
            }
            for (f, rows) in self.families.iter().zip(&family_rows) {
                let (key, mask) = &rows[i];
                if *mask == 0 {
                    continue;
                }
                let accs = &mut state.accs;
                let write = self
                    .values
                    .read(ctx, key, |old| f.update(old, *mask, w, self.input_appends, accs))?;
                match write {
                    EntryWrite::Unchanged => {}
                    EntryWrite::Put(v) => self.values.put(key, v),
                    EntryWrite::Delete => self.values.delete(key),
                }
            }
        }
        let mut rows: Vec<(&[u8], Vec<AggValue>)> = Vec::new();
        let mut out_weights = Vec::new();
        for (g, old, state) in touched {
            let exists = state.rows > 0 || self.global;
            let new = if exists {
                Some(self.output_values(ctx, g, &state)?)
            } else {
                None
            };
            if self.groups_only && self.input_appends && old.is_some() {
                // A group seen before: nothing to write, nothing to emit.
                continue;
            }
            if exists {
                self.groups.put(g, state.encode());
            } else {
                self.groups.delete(g);
            }
            if old == new {
                continue;
            }
            if let Some(o) = old {
                rows.push((g, o));
                out_weights.push(-1);
            }
            if let Some(n) = new {
                rows.push((g, n));
                out_weights.push(1);
            }
        }
        let batch = self.output_batch(&rows)?;
        Changes::new(batch, out_weights)
    }

    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        vec![&mut self.groups, &mut self.values]
    }

    fn append_only(&self) -> bool {
        self.groups_only
    }

    /// One row per group: the GROUP BY columns, which lead the output (without GROUP BY, the
    /// one global row).
    fn bounded_groups(&self, _input: Option<&RowGroups>) -> Option<RowGroups> {
        Some(RowGroups {
            columns: (0..self.group_types.len()).collect(),
            single: true,
        })
    }

    fn describe(&self) -> String {
        let aggs: Vec<String> = self.aggs.iter().map(|a| format!("{:?}", a.kind)).collect();
        if self.groups_only && self.input_appends {
            return format!(
                "GroupAggregate: group by [{}], aggregates [] (state: the groups seen, each written once; append-only input)",
                self.group_exprs.display.join(", "),
            );
        }
        format!(
            "GroupAggregate: group by [{}], aggregates [{}] (state: group -> accumulators{})",
            self.group_exprs.display.join(", "),
            aggs.join(", "),
            if self.input_appends {
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

    /// `SELECT g, count(DISTINCT v), min(v), count(DISTINCT v) FILTER (WHERE v % 2 = 0) FROM t
    /// GROUP BY g` over random changes, with restarts, in every COUNT(DISTINCT) layout: grouped
    /// (version 2 views), hashed (version 3), in a distinct family (version 5; over an input
    /// with deletions and over an append-only one), keyed by group number (version 8, both
    /// inputs): the accumulated output matches a recomputation after every epoch.
    #[test]
    fn count_distinct_matches_a_recomputation_in_every_layout_across_restarts() {
        use crate::dataflow::ops::testing::{run_epoch, RandomBag};
        use crate::state::memory::MemoryStore;
        use datafusion::arrow::array::{Array, Int64Array};
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::common::DFSchema;
        use datafusion::logical_expr::{lit, when};
        use datafusion::prelude::col;
        use std::collections::BTreeMap;
        use std::sync::Arc;

        let df = DFSchema::try_from(RandomBag::schema().as_ref().clone()).unwrap();
        // (hashed, families, append-only, numbered groups)
        let layouts = [
            (false, false, false, false),
            (true, false, false, false),
            (true, true, false, false),
            (true, true, true, false),
            (true, true, false, true),
            (true, true, true, true),
        ];
        let op = |(hashed, families, append_only, numbered): (bool, bool, bool, bool)| {
            let spec = |kind, arg, filter| AggSpec {
                kind,
                arg: Some(arg),
                output: DataType::Int64,
                input: DataType::Int64,
                filter,
            };
            let even = (col("v") % lit(2i64)).eq(lit(0i64));
            // A family member takes its FILTER apart; the older layouts read it in the argument.
            let (args, evens) = if families {
                (vec![col("v"), even], spec(AggKind::CountDistinct, 0, Some(1)))
            } else {
                (
                    vec![col("v"), when(even, col("v")).end().unwrap()],
                    spec(AggKind::CountDistinct, 1, None),
                )
            };
            let schema = Arc::new(Schema::new(vec![
                Field::new("g", DataType::Int64, true),
                Field::new("n", DataType::Int64, true),
                Field::new("m", DataType::Int64, true),
                Field::new("e", DataType::Int64, true),
            ]));
            GroupAggregateOp::new(
                StateTable::new(2, 0, 0),
                StateTable::new(2, 0, 1),
                Exprs::new(&[col("g")], &df).unwrap(),
                Exprs::new(&args, &df).unwrap(),
                vec![
                    spec(AggKind::CountDistinct, 0, None),
                    spec(AggKind::Min, 0, None),
                    evens,
                ],
                schema,
            )
            .unwrap()
            .hashed_distinct(hashed)
            .append_only_input(append_only)
            .distinct_families(families)
            .group_ids(numbered)
        };
        for layout in layouts {
            let store = Arc::new(MemoryStore::default());
            let mut bag = RandomBag::new(5, 3, 6);
            if layout.2 {
                bag = bag.insertions_only();
            }
            let mut agg = op(layout);
            let mut view: BTreeMap<[i64; 4], i64> = BTreeMap::new();
            for epoch in 1..=40u64 {
                let out = run_epoch(&mut agg, &store, epoch, bag.changes());
                let col = |i: usize| out.columns()[i].as_any().downcast_ref::<Int64Array>().unwrap().clone();
                let cols = [col(0), col(1), col(2), col(3)];
                for (i, w) in out.weights().values().iter().enumerate() {
                    *view.entry(cols.each_ref().map(|c| c.value(i))).or_default() += w;
                }
                view.retain(|_, w| *w != 0);
                let mut expected = BTreeMap::new();
                for group in 0..3 {
                    let values: Vec<i64> = bag.rows.keys().filter(|(g, _)| *g == group).map(|(_, v)| *v).collect();
                    let evens = values.iter().filter(|v| *v % 2 == 0).count() as i64;
                    if let Some(min) = values.first() {
                        expected.insert([group, values.len() as i64, *min, evens], 1);
                    }
                }
                assert_eq!(view, expected, "epoch {epoch}, layout {layout:?}");
                if epoch % 7 == 0 {
                    agg = op(layout);
                }
            }
        }
    }

    /// `SELECT g, v FROM t GROUP BY g, v` over random insertions (plan version 11): the
    /// operator declares its output append-only, emits each group once, when it first appears
    /// (across restarts), and writes state only in epochs that bring a new group; the same
    /// aggregate in an older view rewrites its groups' row counts in the others.
    #[test]
    fn groups_only_over_insertions_emits_and_writes_each_group_once() {
        use crate::dataflow::ops::testing::RandomBag;
        use crate::state::memory::MemoryStore;
        use crate::state::{StateStore, WriteBatch};
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::common::DFSchema;
        use datafusion::prelude::col;
        use std::collections::BTreeSet;

        let df = DFSchema::try_from(RandomBag::schema().as_ref().clone()).unwrap();
        let op = |version_11: bool| {
            let schema = Arc::new(Schema::new(vec![
                Field::new("g", DataType::Int64, true),
                Field::new("v", DataType::Int64, true),
            ]));
            GroupAggregateOp::new(
                StateTable::new(2, 0, 0),
                StateTable::new(2, 0, 1),
                Exprs::new(&[col("g"), col("v")], &df).unwrap(),
                Exprs::new(&[], &df).unwrap(),
                Vec::new(),
                schema,
            )
            .unwrap()
            .append_only_input(true)
            .groups_only(version_11)
        };
        for version_11 in [true, false] {
            let store = Arc::new(MemoryStore::default());
            let mut bag = RandomBag::new(11, 4, 5).insertions_only();
            let mut agg = op(version_11);
            assert_eq!(agg.append_only(), version_11);
            let mut seen: BTreeSet<(i64, i64)> = BTreeSet::new();
            // Epochs without a new group that wrote state.
            let mut rewrites = 0;
            for epoch in 1..=40u64 {
                let input = bag.changes();
                let ctx = EpochContext {
                    snapshot: store.snapshot(),
                    store: store.clone(),
                    epoch,
                    written: Default::default(),
                };
                let out = agg.process(0, input, &ctx).unwrap();
                let mut batch = WriteBatch::default();
                for t in agg.state_tables() {
                    t.flush(&ctx, &mut batch).unwrap();
                }
                let col = |i: usize| out.columns()[i].as_any().downcast_ref::<Int64Array>().unwrap().clone();
                let (g, v) = (col(0), col(1));
                for (i, w) in out.weights().values().iter().enumerate() {
                    assert_eq!(*w, 1, "epoch {epoch}: only insertions");
                    assert!(
                        seen.insert((g.value(i), v.value(i))),
                        "epoch {epoch}: a group emitted twice"
                    );
                }
                if out.is_empty() && !batch.ops.is_empty() {
                    rewrites += 1;
                }
                if !out.is_empty() {
                    assert!(!batch.ops.is_empty(), "epoch {epoch}: a new group not written");
                }
                store.commit(batch, false).unwrap();
                let expected: BTreeSet<(i64, i64)> = bag.rows.keys().copied().collect();
                assert_eq!(seen, expected, "epoch {epoch}");
                if epoch % 7 == 0 {
                    agg = op(version_11);
                }
            }
            if version_11 {
                assert_eq!(rewrites, 0, "epochs without a new group wrote state");
            } else {
                assert!(rewrites > 0, "no epoch without a new group: the test shows nothing");
            }
        }
    }

    /// The encodings of older stores: V2 (no extremes) or V3, every field fixed-size.
    fn encode_v2_v3(state: &GroupState) -> Vec<u8> {
        let v3 = state.accs.iter().any(|a| a.extreme.is_some());
        let mut v = vec![if v3 { STATE_V3 } else { STATE_V2 }];
        v.extend_from_slice(&state.rows.to_le_bytes());
        for a in &state.accs {
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

    #[test]
    fn group_state_round_trips_and_reads_the_encodings_of_older_stores() {
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
            id: 0,
        };
        let bytes = state.encode();
        // Only the fields that are not zero: the second accumulator is its flags byte.
        assert_eq!(bytes.len(), 9 + 1 + 8 + 16 + 8 + 8 + 8 + 1);
        assert_eq!(GroupState::decode(&bytes).unwrap(), state);
        // With extremes (MIN / MAX over an append-only input), empty ones included, and a
        // negative zero sum (kept: it is not zero bits).
        let mut with = state.clone();
        with.accs[0].extreme = Some(vec![]);
        with.accs[1].float_sum = -0.0;
        with.accs.push(Acc {
            extreme: Some(b"\x01abc".to_vec()),
            ..Acc::default()
        });
        let bytes = with.encode();
        assert_eq!(bytes[0], STATE_V4);
        let back = GroupState::decode(&bytes).unwrap();
        assert_eq!(back, with);
        assert!(back.accs[1].float_sum.is_sign_negative());
        for cut in [bytes.len() - 1, 20, 10] {
            assert!(GroupState::decode(&bytes[..cut]).is_err(), "{cut} bytes");
        }
        // Older stores: the fixed-size encodings and JSON.
        for old in [&state, &with] {
            let bytes = encode_v2_v3(old);
            assert_eq!(GroupState::decode(&bytes).unwrap(), *old);
            assert!(GroupState::decode(&bytes[..bytes.len() - 1]).is_err());
        }
        assert_eq!(encode_v2_v3(&state).len(), 9 + 2 * ACC_BYTES);
        // A numbered group (plan version 8): V5, the number after the row count.
        let numbered = GroupState { id: 300, ..with };
        let bytes = numbered.encode();
        assert_eq!(bytes[0], STATE_V5);
        assert_eq!(GroupState::decode(&bytes).unwrap(), numbered);
        for cut in [16, 12] {
            assert!(GroupState::decode(&bytes[..cut]).is_err(), "{cut} bytes");
        }
        let json = serde_json::to_vec(&state).unwrap();
        assert_eq!(GroupState::decode(&json).unwrap(), state);
    }
}
