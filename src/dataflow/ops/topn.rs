//! `TopNOp`: `ORDER BY .. LIMIT n [OFFSET m]`, and per group
//! `row_number() OVER (PARTITION BY p ORDER BY o) <= n` (the group's top n, with their rank).
//!
//! State: one table of every input row ordered by group then sort key. Plan version 2 keeps each
//! row once, in the key (key: group prefix, sort-key bytes, row bytes, row length as u32
//! big-endian; value: multiplicity); version 1 views keep the row in the value too (key: group
//! prefix, sort-key bytes, row bytes; value: multiplicity then row bytes). For each group an
//! epoch touches, its first `m + n` rows are read in key order before and after the group's
//! changes are applied — O(m + n) per group, whatever the input size — and the difference of
//! the two tops is emitted. Deleting a row inside the top brings the next one in (and, with
//! ranks, renumbers the rows below it). Rows with equal sort keys are ordered by their encoded
//! bytes, so ranks are deterministic.
//!
//! Over an input that only ever gains rows (`append_only_input`), a row that falls below the
//! first `m + n` of its group can never come back: after each epoch a touched group's ordered
//! rows are trimmed to those, so the state is O(groups × (m + n)), not O(input). Nor is every
//! input row written first: of a group's rows in one epoch only the first `m + n` in key
//! order can stay, and only those that sort before the group's `m + n`-th row are written.
//!
//! The group prefix is the length (u32, big-endian) and bytes of the row-encoded group key, so
//! one group's entries never interleave with another's; without PARTITION BY it is empty.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};

use super::grouping::Groups;
use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{decode_i64, EpochContext, Operator, RowGroups, StateTable};
use crate::error::Result;
use crate::state::row_codec::RowCodec;

/// How the rows are ordered and how many are kept.
pub struct TopNSpec {
    pub sort_exprs: Exprs,
    pub sort_types: Vec<DataType>,
    pub sort_options: Vec<SortOptions>,
    pub skip: usize,
    pub fetch: usize,
    /// PARTITION BY expressions and their types (empty: one group).
    pub partition_exprs: Option<(Exprs, Vec<DataType>)>,
    /// Appends the row's 1-based position in its group (row_number()) as the last column.
    pub rank: bool,
}

pub struct TopNOp {
    ordered: StateTable,
    spec: TopNSpec,
    /// The output schema: the input's columns, plus the rank when `spec.rank`.
    schema: SchemaRef,
    row_codec: RowCodec,
    /// Encodes the sort key (its byte order is the ORDER BY order).
    sort_converter: RowConverter,
    /// Encodes the PARTITION BY key (None without).
    group_codec: Option<RowCodec>,
    /// The input only ever gains rows: groups keep only their first `skip + fetch` rows.
    append_only: bool,
    /// Plan version 2's layout: the row only in the key (see the module documentation).
    rows_in_keys: bool,
}

/// One output row: the input row's bytes and its rank (0 without ranks).
type OutputRow = (u64, Vec<u8>);

/// Over an append-only input, the input rows of one group (`members`, indices of rows of
/// `weights`) that can be among its first `end` rows after the epoch: the first in key order
/// until they hold `end` rows, since every row after them sorts after `end` rows of this epoch
/// alone, and none of them will ever be deleted. `key_of(i, out)` writes row `i`'s key
/// without the group prefix (the same in all of them) to `out`.
fn best_members(members: Vec<usize>, end: usize, weights: &[i64], key_of: impl Fn(usize, &mut Vec<u8>)) -> Vec<usize> {
    let mut keyed: Vec<(Vec<u8>, usize)> = members
        .into_iter()
        .map(|i| {
            let mut key = Vec::new();
            key_of(i, &mut key);
            (key, i)
        })
        .collect();
    keyed.sort_unstable();
    let mut held = 0i64;
    let mut kept = Vec::new();
    for (_, i) in keyed {
        if held >= end as i64 {
            break;
        }
        held += weights[i];
        kept.push(i);
    }
    kept
}

impl TopNOp {
    pub fn new(ordered: StateTable, spec: TopNSpec, schema: SchemaRef) -> Result<TopNOp> {
        let n_input = schema.fields().len() - usize::from(spec.rank);
        let types: Vec<DataType> = schema
            .fields()
            .iter()
            .take(n_input)
            .map(|f| f.data_type().clone())
            .collect();
        // Without PARTITION BY the whole table is one group, scanned from its first row.
        let ordered = if spec.partition_exprs.is_none() {
            ordered.ordered()
        } else {
            ordered
        };
        Ok(TopNOp {
            row_codec: RowCodec::new(&types)?,
            sort_converter: RowConverter::new(
                spec.sort_types
                    .iter()
                    .zip(&spec.sort_options)
                    .map(|(t, o)| SortField::new_with_options(t.clone(), *o))
                    .collect(),
            )?,
            group_codec: match &spec.partition_exprs {
                Some((_, types)) => Some(RowCodec::new(types)?),
                None => None,
            },
            ordered,
            spec,
            schema,
            append_only: false,
            rows_in_keys: true,
        })
    }

    /// For an input that only ever gains rows (a deletion is then an error): each group keeps
    /// only the rows that can still be in its top.
    pub fn append_only_input(mut self, append_only: bool) -> TopNOp {
        self.append_only = append_only;
        self
    }

    /// Whether rows are kept only in the keys (plan version 2) or in the values too (version 1,
    /// whose views' state was written that way).
    pub fn rows_in_keys(mut self, rows_in_keys: bool) -> TopNOp {
        self.rows_in_keys = rows_in_keys;
        self
    }

    /// The state value of a row with multiplicity `count`.
    fn entry_value(&self, row: &[u8], count: i64) -> Vec<u8> {
        let mut value = count.to_be_bytes().to_vec();
        if !self.rows_in_keys {
            value.extend_from_slice(row);
        }
        value
    }

    /// The row and multiplicity of a state entry.
    fn entry_row<'e>(&self, key: &'e [u8], value: &'e [u8]) -> (&'e [u8], i64) {
        let count = decode_i64(&value[..8]);
        if !self.rows_in_keys {
            return (&value[8..], count);
        }
        let n = key.len();
        let len = u32::from_be_bytes(key[n - 4..].try_into().expect("row length")) as usize;
        (&key[n - 4 - len..n - 4], count)
    }

    /// The groups of the rows of `data` (one, of every row, without PARTITION BY) and each
    /// group's prefix.
    fn groups(&self, data: &RecordBatch) -> Result<(Vec<u32>, Vec<Vec<u8>>)> {
        let Some((exprs, types)) = &self.spec.partition_exprs else {
            return Ok((vec![0; data.num_rows()], vec![Vec::new()]));
        };
        let cols = super::cast_columns(&exprs.eval(data)?, types)?;
        let codec = self.group_codec.as_ref().expect("a group codec with PARTITION BY");
        let groups = Groups::of(&cols, codec)?;
        let prefixes = groups
            .keys()
            .into_iter()
            .map(|k| {
                let mut p = Vec::with_capacity(4 + k.len());
                p.extend_from_slice(&(k.len() as u32).to_be_bytes());
                p.extend_from_slice(k);
                p
            })
            .collect();
        Ok((groups.slot, prefixes))
    }

    /// The top of a group whose entries start with `entries` (in key order; at least its
    /// first `skip + fetch` rows).
    fn top_of(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<OutputRow, i64> {
        let mut top = BTreeMap::new();
        let mut seen = 0usize;
        let end = self.spec.skip.saturating_add(self.spec.fetch);
        for (key, value) in entries {
            if seen >= end {
                break;
            }
            let (row, count) = self.entry_row(key, value);
            let count = count.max(0) as usize;
            let from = seen.max(self.spec.skip);
            let to = (seen + count).min(end);
            if self.spec.rank {
                for position in from..to {
                    top.insert((position as u64 + 1, row.to_vec()), 1);
                }
            } else if to > from {
                *top.entry((0, row.to_vec())).or_default() += (to - from) as i64;
            }
            seen += count;
        }
        top
    }

    /// The key of the entry of `entries` (a group's first ones, in key order) that holds the
    /// `end`-th row, if they hold that many.
    fn last_kept<'e>(&self, entries: &'e [(Vec<u8>, Vec<u8>)], end: usize) -> Option<&'e [u8]> {
        let mut seen = 0usize;
        for (key, value) in entries {
            seen += self.entry_row(key, value).1.max(0) as usize;
            if seen >= end {
                return Some(key);
            }
        }
        None
    }

    /// The first `skip + fetch` entries of a group.
    fn first_entries(&self, ctx: &EpochContext, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let end = self.spec.skip.saturating_add(self.spec.fetch);
        if end == 0 {
            return Ok(Vec::new());
        }
        self.ordered.scan_first(ctx, prefix, end)
    }

    fn emit(&self, rows: Vec<OutputRow>, weights: Vec<i64>) -> Result<Changes> {
        if rows.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let mut cols = self.row_codec.decode(rows.iter().map(|(_, r)| r.as_slice()))?;
        if self.spec.rank {
            let rank_type = self.schema.field(self.schema.fields().len() - 1).data_type();
            let ranks: ArrayRef = Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(rank, _)| *rank)));
            cols.push(datafusion::arrow::compute::cast(&ranks, rank_type)?);
        }
        let batch = RecordBatch::try_new(Arc::new(super::project::relaxed(&self.schema)), cols)?;
        Changes::new(batch, weights)
    }
}

impl Operator for TopNOp {
    fn process(&mut self, _port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes> {
        if input.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        if self.append_only && input.weights().values().iter().any(|w| *w <= 0) {
            return Err(crate::error::Error::internal(
                "a top-N over an append-only input received a deletion",
            ));
        }
        let data = input.data();
        let weights_in = input.weights().values();
        let sort_cols = self.spec.sort_exprs.eval(&data)?;
        let sort_cols: Vec<ArrayRef> = super::cast_columns(&sort_cols, &self.spec.sort_types)?;
        let sort_keys = self.sort_converter.convert_columns(&sort_cols)?;
        let (slots, prefixes) = self.groups(&data)?;
        let rows = self.row_codec.encode(data.columns())?;
        // The input rows of each group, groups in the order they first appear.
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); prefixes.len()];
        for (i, g) in slots.iter().enumerate() {
            groups[*g as usize].push(i);
        }
        let end = self.spec.skip.saturating_add(self.spec.fetch);
        let mut out_rows = Vec::new();
        let mut weights = Vec::new();
        let mut key = Vec::new();
        // Row `i`'s state key after the group prefix (the one place its layout is written).
        let rows_in_keys = self.rows_in_keys;
        let key_of = |i: usize, out: &mut Vec<u8>| {
            let row = rows.row(i);
            let row = row.as_ref();
            out.extend_from_slice(sort_keys.row(i).as_ref());
            out.extend_from_slice(row);
            if rows_in_keys {
                out.extend_from_slice(&(row.len() as u32).to_be_bytes());
            }
        };
        for (members, prefix) in groups.into_iter().zip(&prefixes) {
            let prefix = prefix.as_slice();
            // Over an append-only input, at most the epoch's first `end` rows of the group
            // can stay in it: the others are not written at all (Nexmark q19, the ten highest
            // bids of each auction: a third fewer instructions in this operator).
            let members = if self.append_only && members.len() > end {
                best_members(members, end, weights_in, key_of)
            } else {
                members
            };
            let first = self.first_entries(ctx, prefix)?;
            // Over an append-only input, a group that holds its first `skip + fetch` rows
            // keeps out the rows that sort after the last of them: they would be cut at once.
            let cutoff = if self.append_only {
                self.last_kept(&first, end)
            } else {
                None
            };
            let mut changed = false;
            for i in members {
                key.clear();
                key.extend_from_slice(prefix);
                key_of(i, &mut key);
                if cutoff.is_some_and(|last| key.as_slice() > last) {
                    continue;
                }
                changed = true;
                if self.rows_in_keys {
                    // The value is the multiplicity alone: one update finds and sets it.
                    self.ordered.add_count(ctx, &key, weights_in[i])?;
                    continue;
                }
                let old = self.ordered.get(ctx, &key)?.map(|v| decode_i64(&v[..8])).unwrap_or(0);
                let new = old + weights_in[i];
                if new <= 0 {
                    self.ordered.delete(&key);
                } else {
                    let value = self.entry_value(rows.row(i).as_ref(), new);
                    self.ordered.put(&key, value);
                }
            }
            if !changed {
                continue;
            }
            let old_top = self.top_of(&first);
            let new_top = if self.append_only {
                // Rows past the first `skip + fetch` can never come back: drop them.
                let entries = self.ordered.scan_prefix(ctx, prefix)?;
                let mut seen = 0usize;
                for (key, value) in &entries {
                    if seen >= end {
                        self.ordered.delete(key);
                    } else {
                        seen += self.entry_row(key, value).1.max(0) as usize;
                    }
                }
                self.top_of(&entries)
            } else {
                self.top_of(&self.first_entries(ctx, prefix)?)
            };
            for (row, c) in &old_top {
                let n = new_top.get(row).copied().unwrap_or(0);
                if n != *c {
                    out_rows.push(row.clone());
                    weights.push(n - c);
                }
            }
            for (row, c) in new_top {
                if !old_top.contains_key(&row) {
                    out_rows.push(row);
                    weights.push(c);
                }
            }
        }
        self.emit(out_rows, weights)
    }

    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        vec![&mut self.ordered]
    }

    /// Each group's top holds at most `skip + fetch` rows: small tops are grouped by the
    /// PARTITION BY columns (the output keeps the input's columns in place), when they are
    /// plain columns.
    fn bounded_groups(&self, _input: Option<&RowGroups>) -> Option<RowGroups> {
        if self.spec.fetch > crate::state::groups::MAX_ROWS.saturating_sub(self.spec.skip) {
            return None;
        }
        let columns = match &self.spec.partition_exprs {
            None => Vec::new(),
            Some((exprs, _)) => (0..exprs.len()).map(|i| exprs.column(i)).collect::<Option<_>>()?,
        };
        Some(RowGroups {
            columns,
            single: self.spec.fetch == 1,
        })
    }

    fn describe(&self) -> String {
        match &self.spec.partition_exprs {
            None => format!(
                "TopN: order by [{}] offset {} limit {} (state: {} ordered by sort key)",
                self.spec.sort_exprs.display.join(", "),
                self.spec.skip,
                self.spec.fetch,
                if self.append_only {
                    "the first offset + limit rows"
                } else {
                    "rows"
                }
            ),
            Some((exprs, _)) => format!(
                "GroupTopN: partition by [{}] order by [{}] limit {}{} (state: {} by group and sort key)",
                exprs.display.join(", "),
                self.spec.sort_exprs.display.join(", "),
                self.spec.fetch,
                if self.spec.rank { ", row_number()" } else { "" },
                if self.append_only {
                    "the first limit rows"
                } else {
                    "rows"
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, UInt64Array};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::common::DFSchema;
    use datafusion::prelude::col;

    use super::*;
    use crate::dataflow::ops::testing::{run_epoch, RandomBag};
    use crate::state::memory::MemoryStore;
    use crate::state::StateStore;

    const LIMIT: usize = 2;

    /// `row_number() OVER (PARTITION BY g ORDER BY v) <= 2` over (g, v), in either layout.
    fn op(rows_in_keys: bool) -> TopNOp {
        let df = DFSchema::try_from(RandomBag::schema().as_ref().clone()).unwrap();
        let spec = TopNSpec {
            sort_exprs: Exprs::new(&[col("v")], &df).unwrap(),
            sort_types: vec![DataType::Int64],
            sort_options: vec![SortOptions::default()],
            skip: 0,
            fetch: LIMIT,
            partition_exprs: Some((Exprs::new(&[col("g")], &df).unwrap(), vec![DataType::Int64])),
            rank: true,
        };
        let mut fields: Vec<Field> = RandomBag::schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("rn", DataType::UInt64, false));
        TopNOp::new(StateTable::new(1, 0, 0), spec, Arc::new(Schema::new(fields)))
            .unwrap()
            .rows_in_keys(rows_in_keys)
    }

    /// Random inserts and deletes over several epochs, with restarts (a new operator reading
    /// the committed state): the accumulated output is each group's two smallest values with
    /// their ranks, in both layouts (version 1 views keep the row in the value as well), and
    /// over an append-only input (inserts only: the state keeps each group's first rows, and
    /// rows sorting after them never reach it).
    #[test]
    fn group_top_n_matches_a_recomputation_in_both_layouts_across_restarts() {
        for (rows_in_keys, append_only) in [(false, false), (true, false), (false, true), (true, true)] {
            let store = Arc::new(MemoryStore::default());
            let mut bag = RandomBag::new(11, 4, 10);
            if append_only {
                bag = bag.insertions_only();
            }
            let op = |rows_in_keys| op(rows_in_keys).append_only_input(append_only);
            let mut top = op(rows_in_keys);
            let mut view: BTreeMap<(i64, i64, u64), i64> = BTreeMap::new();
            for epoch in 1..=40u64 {
                let out = run_epoch(&mut top, &store, epoch, bag.changes());
                let g = out.columns()[0].as_any().downcast_ref::<Int64Array>().unwrap();
                let v = out.columns()[1].as_any().downcast_ref::<Int64Array>().unwrap();
                let rn = out.columns()[2].as_any().downcast_ref::<UInt64Array>().unwrap();
                for (i, w) in out.weights().values().iter().enumerate() {
                    *view.entry((g.value(i), v.value(i), rn.value(i))).or_default() += w;
                }
                view.retain(|_, n| *n != 0);
                let mut expected: BTreeMap<(i64, i64, u64), i64> = BTreeMap::new();
                for group in 0..4 {
                    let values = bag
                        .rows
                        .iter()
                        .filter(|((g, _), _)| *g == group)
                        .flat_map(|((_, v), n)| std::iter::repeat_n(*v, *n as usize));
                    for (rank, v) in values.take(LIMIT).enumerate() {
                        expected.insert((group, v, rank as u64 + 1), 1);
                    }
                }
                assert_eq!(
                    view, expected,
                    "epoch {epoch}, rows in keys: {rows_in_keys}, append-only: {append_only}"
                );
                assert_eq!(out.columns()[2].null_count(), 0);
                if append_only {
                    let ctx = EpochContext {
                        snapshot: store.snapshot(),
                        store: store.clone(),
                        epoch,
                        written: Default::default(),
                    };
                    let kept = top.ordered.scan_prefix(&ctx, &[]).unwrap();
                    assert!(kept.len() <= 4 * LIMIT, "epoch {epoch}: {} entries kept", kept.len());
                }
                if epoch % 7 == 0 {
                    top = op(rows_in_keys);
                }
            }
        }
    }
}
