//! `HashJoinOp`: inner, left, right and full outer equi-joins, with an optional extra
//! (non-equality) condition.
//!
//! State: each side's rows indexed by join key ((key, row) → multiplicity), and per key the
//! number of rows on each side where an outer join without a condition needs it (see
//! `HashJoinOp::counted`). A change on one side is joined with the other
//! side's state: `Δ(L ⋈ R) = ΔL ⋈ R + L' ⋈ ΔR` (L' = L after ΔL), which is exactly what
//! processing port 0 before port 1 in an epoch computes. Outer joins emit a NULL-padded row for
//! a row that has no match, retract it when the first match appears and emit it again when the
//! last match goes. Without an extra condition a match is any row of the same key (the per-key
//! counts tell); with one, whether a row matches depends on the row, so a padded side keeps per
//! row the number of partner rows that satisfy the condition ((key, row) → matches).
//!
//! An inner join whose side has at most one row per join key, ever (`HashJoinOp::unique`: a
//! stream keyed by its join key, such as Nexmark's auctions joined on `auction.id`), keeps the
//! other side's rows only while they wait for that partner: a bid whose auction is there is
//! joined and not stored (no other auction of its key can come), and the bids stored before
//! their auction came are joined with it and deleted.

use std::sync::Arc;

use datafusion::common::hash_map::Entry as Entry_;
use datafusion::common::HashMap;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::JoinType;

use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{decode_i64, EpochContext, Operator, StateTable};
use crate::error::{Error, Result};
use crate::state::row_codec::RowCodec;

/// A state entry: (key without the table prefix, value).
type Entry = (Vec<u8>, Vec<u8>);

/// One side of the join.
pub struct JoinSide {
    pub keys: Exprs,
    /// Rows by key: (key, row) → multiplicity.
    pub rows: StateTable,
    /// Rows per key: key → count.
    pub counts: StateTable,
    pub types: Vec<DataType>,
    /// Rows → partner rows satisfying the extra condition (outer joins with one, padded side).
    pub matched: Option<StateTable>,
    codec: RowCodec,
}

impl JoinSide {
    pub fn new(keys: Exprs, rows: StateTable, counts: StateTable, types: Vec<DataType>) -> Result<JoinSide> {
        Ok(JoinSide {
            codec: RowCodec::new(&types)?,
            keys,
            rows,
            counts,
            types,
            matched: None,
        })
    }

    /// Adds the per-row match state an outer join with an extra condition needs.
    pub fn with_matched(mut self, matched: StateTable) -> JoinSide {
        self.matched = Some(matched);
        self
    }
}

pub struct HashJoinOp {
    sides: [JoinSide; 2],
    key_types: Vec<DataType>,
    key_codec: RowCodec,
    filter: Option<Exprs>,
    join_type: JoinType,
    /// Per side: it has at most one row per join key, ever (append-only, keyed by a unique
    /// key the join key covers). Inner joins only.
    unique: [bool; 2],
    /// Output schema: left columns then right columns.
    schema: SchemaRef,
}

/// `len(key) ++ key ++ row`: one key's entries stay together and never mix with another key's.
pub(super) fn row_key(key: &[u8], row: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len() + row.len());
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k.extend_from_slice(row);
    k
}

fn key_prefix(key: &[u8]) -> Vec<u8> {
    row_key(key, &[])
}

/// Whether a join of `join_type` NULL-pads the rows of `side` that have no match.
fn side_pads(join_type: JoinType, side: usize) -> bool {
    matches!(
        (side, join_type),
        (0, JoinType::Left) | (0, JoinType::Full) | (1, JoinType::Right) | (1, JoinType::Full)
    )
}

/// Many `row_key`s in one buffer (one allocation for a whole input batch).
#[derive(Default)]
pub(super) struct KeyList {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl KeyList {
    /// Appends `row_key(key, rest)`, `rest` given in parts.
    pub(super) fn push_row_key(&mut self, key: &[u8], rest: &[&[u8]]) {
        self.bytes.extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(key);
        for part in rest {
            self.bytes.extend_from_slice(part);
        }
        self.ends.push(self.bytes.len());
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, e)| &self.bytes[s..*e])
    }
}

impl HashJoinOp {
    pub fn new(
        left: JoinSide,
        right: JoinSide,
        key_types: Vec<DataType>,
        filter: Option<Exprs>,
        join_type: JoinType,
        schema: SchemaRef,
    ) -> Result<HashJoinOp> {
        if !matches!(
            join_type,
            JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
        ) {
            return Err(Error::unsupported(format!("{join_type} join in materialized views")));
        }
        let op = HashJoinOp {
            key_codec: RowCodec::new(&key_types)?,
            sides: [left, right],
            key_types,
            filter,
            join_type,
            unique: [false; 2],
            schema,
        };
        for side in 0..2 {
            if op.filter.is_some() && op.pads(side) && op.sides[side].matched.is_none() {
                return Err(Error::internal(
                    "an outer join with a condition needs per-row match state",
                ));
            }
        }
        Ok(op)
    }

    /// Declares which sides have at most one row per join key, ever (see the module docs); an
    /// outer join keeps every row (its padded rows depend on them).
    pub fn with_unique(mut self, unique: [bool; 2]) -> HashJoinOp {
        if self.join_type == JoinType::Inner {
            self.unique = unique;
        }
        self
    }

    /// Whether rows of `side` without a match are NULL-padded into the output.
    fn pads(&self, side: usize) -> bool {
        side_pads(self.join_type, side)
    }

    /// Whether `side`'s rows are best kept additive (`StateTable::additive`: sorted runs,
    /// an epoch's rows added by one sort and sequential merges, a key's rows found by a
    /// binary search in each run): when the side only ever gains rows (its state grows with
    /// every row of its input) and the other side does not (an aggregate, a table: its
    /// changes, each a read of this side's rows, are few), its rows are never deleted (the
    /// other side is not `unique`) and they are written in batches (not one by one, as a
    /// padded side with a condition writes them).
    pub fn additive_side(
        join_type: JoinType,
        has_filter: bool,
        unique: [bool; 2],
        appends: [bool; 2],
        side: usize,
    ) -> bool {
        let pads = side_pads(join_type, side);
        let grows_alone = appends[side] && !appends[1 - side];
        let never_deleted = !unique[1 - side];
        let batched = !(has_filter && pads);
        grows_alone && never_deleted && batched
    }

    /// Whether `side` keeps its rows per key (`counts`): only to tell, without a condition,
    /// when a key of this side gains its first row or loses its last, which flips the other
    /// side's NULL-padded rows. An inner join, or a join with a condition (which counts
    /// matches per row instead), keeps none.
    fn counted(&self, side: usize) -> bool {
        self.filter.is_none() && self.pads(1 - side)
    }

    /// Joined output from `this` side's columns and the other side's columns.
    fn assemble(&self, side: usize, this: Vec<ArrayRef>, other: Vec<ArrayRef>, weights: Vec<i64>) -> Result<Changes> {
        let (left, right) = if side == 0 { (this, other) } else { (other, this) };
        let mut columns = left;
        columns.extend(right);
        let schema = Arc::new(super::project::relaxed(&self.schema));
        let columns = super::cast_to_fields(columns, schema.fields())?;
        let opts = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(weights.len()));
        Changes::new(RecordBatch::try_new_with_options(schema, columns, &opts)?, weights)
    }

    fn nulls_of(&self, side: usize, n: usize) -> Vec<ArrayRef> {
        self.sides[side].types.iter().map(|t| new_null_array(t, n)).collect()
    }
}

impl Operator for HashJoinOp {
    fn process(&mut self, port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes> {
        if input.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let this = port;
        let other = 1 - port;
        let data = input.data();
        let rows = self.sides[this].codec.encode(data.columns())?;
        // Equal rows have equal keys: consolidating on the encoded rows is enough.
        let live = super::consolidate_encoded(&rows, input.weights().values());
        if live.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let key_cols = self.sides[this].keys.eval(&data)?;
        let key_cols: Vec<ArrayRef> = super::cast_columns(&key_cols, &self.key_types)?;
        let keys = self.key_codec.encode(&key_cols)?;
        let null_key = |i: u32| key_cols.iter().any(|c| c.is_null(i as usize));

        // The other side's rows of each distinct key, read once per key (nothing below writes
        // the other side's rows). `slot_of[j]`: the key slot of live row j (`None`: NULL key).
        let mut slots: HashMap<&[u8], u32> = HashMap::with_capacity(live.len());
        let mut others: Vec<Vec<Entry>> = Vec::new();
        let mut prefix_lens: Vec<usize> = Vec::new();
        let mut slot_of: Vec<Option<u32>> = Vec::with_capacity(live.len());
        for (i, _) in &live {
            if null_key(*i) {
                slot_of.push(None);
                continue;
            }
            let key = keys.row(*i as usize).data();
            let slot = match slots.entry(key) {
                Entry_::Occupied(e) => *e.get(),
                Entry_::Vacant(e) => {
                    let prefix = key_prefix(key);
                    others.push(self.sides[other].rows.scan_prefix(ctx, &prefix)?);
                    prefix_lens.push(prefix.len());
                    *e.insert(others.len() as u32 - 1)
                }
            };
            slot_of.push(Some(slot));
        }
        let other_row = |(slot, e): (u32, u32)| -> &[u8] {
            let slot = slot as usize;
            &others[slot][e as usize].0[prefix_lens[slot]..]
        };
        let count_of = |(slot, e): (u32, u32)| decode_i64(&others[slot as usize][e as usize].1);

        // Pass 1: pairs with the other side's current state (same key). `pairs_of[j]`: the
        // range of live row j's pairs.
        let mut pair_live: Vec<u32> = Vec::new();
        let mut pair_other: Vec<(u32, u32)> = Vec::new();
        let mut pairs_of: Vec<(usize, usize)> = Vec::with_capacity(live.len());
        for (j, slot) in slot_of.iter().enumerate() {
            let start = pair_live.len();
            if let Some(slot) = slot {
                for e in 0..others[*slot as usize].len() {
                    pair_live.push(j as u32);
                    pair_other.push((*slot, e as u32));
                }
            }
            pairs_of.push((start, pair_live.len()));
        }
        let mut parts = Vec::new();
        // Which pairs satisfy the extra condition (all without one).
        let mut passes = vec![true; pair_live.len()];
        if !pair_live.is_empty() {
            // Every input row matched exactly once, in input order: this side's columns are
            // the input's as they are.
            let identity = pair_live.len() == data.num_rows()
                && pair_live
                    .iter()
                    .enumerate()
                    .all(|(p, j)| live[*j as usize].0 as usize == p);
            let this_cols: Vec<ArrayRef> = if identity {
                data.columns().to_vec()
            } else {
                let idx: UInt32Array = pair_live.iter().map(|j| live[*j as usize].0).collect();
                data.columns()
                    .iter()
                    .map(|c| take(c.as_ref(), &idx, None))
                    .collect::<std::result::Result<_, _>>()?
            };
            let other_cols = self.sides[other]
                .codec
                .decode(pair_other.iter().map(|p| other_row(*p)))?;
            let match_w: Vec<i64> = pair_live
                .iter()
                .zip(&pair_other)
                .map(|(j, p)| live[*j as usize].1 * count_of(*p))
                .collect();
            let joined = self.assemble(this, this_cols, other_cols, match_w)?;
            let joined = match &self.filter {
                Some(f) => {
                    let mask = f.mask(&joined.data())?;
                    for (p, ok) in passes.iter_mut().enumerate() {
                        *ok = mask.value(p);
                    }
                    Changes::from_weighted(filter_record_batch(joined.batch(), &mask)?)?
                }
                None => joined,
            };
            parts.push(joined);
        }

        // Pass 2: padded rows, and state. The counts and rows it updates are read ahead in
        // two batched reads.
        let counted = self.counted(this);
        if counted {
            let keyed = live.iter().zip(&slot_of).filter(|(_, s)| s.is_some());
            self.sides[this]
                .counts
                .prefetch(ctx, keyed.map(|((i, _), _)| keys.row(*i as usize).data()))?;
        }
        let mut this_rows = KeyList::default();
        for ((i, _), slot) in live.iter().zip(&slot_of) {
            if slot.is_some() {
                this_rows.push_row_key(keys.row(*i as usize).data(), &[rows.row(*i as usize).data()]);
            }
        }
        self.sides[this].rows.prefetch(ctx, this_rows.iter())?;
        let mut this_rows = this_rows.iter();
        let mut pad_this: Vec<u32> = Vec::new();
        let mut pad_w: Vec<i64> = Vec::new();
        // Other side's padded rows retracted / re-emitted as their matches come and go.
        let mut flip_other: Vec<(u32, u32)> = Vec::new();
        let mut flip_w: Vec<i64> = Vec::new();
        // This side's row counts, added after the loop in an order of the state's own (none
        // depends on another), unless a padded side's match state needs each new count.
        let defer = !(self.filter.is_some() && self.pads(this));
        let mut deferred: Vec<(&[u8], i64)> = Vec::new();
        for (j, ((i, w), slot)) in live.iter().zip(&slot_of).enumerate() {
            let (i, w) = (*i, *w);
            let Some(slot) = slot else {
                if self.pads(this) {
                    pad_this.push(i);
                    pad_w.push(w);
                }
                continue;
            };
            let this_row = this_rows.next().expect("one per keyed row");
            let (start, end) = pairs_of[j];
            // With a condition: the partner rows satisfying it.
            let matches: i64 = if self.filter.is_some() {
                (start..end)
                    .filter(|p| passes[*p])
                    .map(|p| count_of(pair_other[p]))
                    .sum()
            } else {
                0
            };
            if self.filter.is_none() {
                if self.pads(this) && others[*slot as usize].is_empty() {
                    pad_this.push(i);
                    pad_w.push(w);
                }
                let (old, new) = if counted {
                    self.sides[this].counts.add_count(ctx, keys.row(i as usize).data(), w)?
                } else {
                    (0, 0)
                };
                if counted && (old <= 0) != (new <= 0) {
                    let sign = if new > 0 { -1 } else { 1 };
                    for p in &pair_other[start..end] {
                        flip_other.push(*p);
                        flip_w.push(sign * count_of(*p));
                    }
                }
            } else {
                if self.pads(this) && matches <= 0 {
                    pad_this.push(i);
                    pad_w.push(w);
                }
                if self.pads(other) {
                    for p in (start..end).filter(|p| passes[*p]) {
                        let (s, e) = pair_other[p];
                        // The other side's entry key is its (key, row) key.
                        let entry = &others[s as usize][e as usize].0;
                        let matched = self.sides[other].matched.as_mut().expect("checked in new");
                        let (old, new) = matched.add_count(ctx, entry, w)?;
                        if (old <= 0) != (new <= 0) {
                            let sign = if new > 0 { -1 } else { 1 };
                            flip_other.push(pair_other[p]);
                            flip_w.push(sign * count_of(pair_other[p]));
                        }
                    }
                }
            }
            // A row whose partner is the only one its key will ever have is not kept.
            if self.unique[other] && !others[*slot as usize].is_empty() {
                continue;
            }
            if defer {
                deferred.push((this_row, w));
                continue;
            }
            // Not deferred: a padded side with a condition, whose match state needs the count.
            let (_, mult) = self.sides[this].rows.add_count(ctx, this_row, w)?;
            let matched = self.sides[this].matched.as_mut().expect("checked in new");
            if mult > 0 && matches != 0 {
                matched.put(this_row, matches.to_be_bytes().to_vec());
            } else {
                matched.delete(this_row);
            }
        }

        self.sides[this].rows.add_counts(ctx, deferred)?;

        // The other side's rows that waited for this side's row of their key have found it,
        // the only one their key will ever have: they are not needed any more.
        if self.unique[this] {
            for entries in &others {
                for (key, _) in entries {
                    self.sides[other].rows.delete(key);
                }
            }
        }

        // Distinct input rows paired with distinct partner rows give distinct output rows:
        // only padded rows need consolidating against the rest.
        let pairs_only = pad_this.is_empty() && flip_other.is_empty();
        if !pad_this.is_empty() {
            let idx = UInt32Array::from(pad_this);
            let this_cols: Vec<ArrayRef> = data
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &idx, None))
                .collect::<std::result::Result<_, _>>()?;
            let n = idx.len();
            parts.push(self.assemble(this, this_cols, self.nulls_of(other, n), pad_w)?);
        }
        if !flip_other.is_empty() {
            let other_cols = self.sides[other]
                .codec
                .decode(flip_other.iter().map(|p| other_row(*p)))?;
            let n = flip_other.len();
            parts.push(self.assemble(other, other_cols, self.nulls_of(this, n), flip_w)?);
        }
        let out = Changes::concat(&self.schema, &parts)?;
        if out.is_empty() {
            return Ok(Changes::empty(Arc::new(super::project::relaxed(&self.schema))));
        }
        if pairs_only {
            Ok(out)
        } else {
            out.consolidate()
        }
    }

    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        let mut tables = Vec::new();
        for s in &mut self.sides {
            tables.push(&mut s.rows);
            tables.push(&mut s.counts);
            if let Some(m) = &mut s.matched {
                tables.push(m);
            }
        }
        tables
    }

    /// An inner join of insertions yields insertions (outer joins retract padded rows).
    fn append_only(&self) -> bool {
        self.join_type == JoinType::Inner
    }

    fn describe(&self) -> String {
        let state = match self.unique {
            [false, false] => "rows of both sides by key",
            [true, false] => "rows of both sides by key; right rows only until their left row arrives",
            [false, true] => "rows of both sides by key; left rows only until their right row arrives",
            [true, true] => "rows of both sides by key; each row only until its partner arrives",
        };
        let runs = match [self.sides[0].rows.is_additive(), self.sides[1].rows.is_additive()] {
            [true, false] => "; left rows as sorted runs",
            [false, true] => "; right rows as sorted runs",
            [true, true] => "; rows as sorted runs",
            [false, false] => "",
        };
        format!(
            "HashJoin ({}): on [{}] = [{}]{} (state: {state}{runs})",
            self.join_type,
            self.sides[0].keys.display.join(", "),
            self.sides[1].keys.display.join(", "),
            self.filter
                .as_ref()
                .map(|f| format!(", filter {}", f.display.join(" AND ")))
                .unwrap_or_default()
        )
    }
}
