//! `TopNOp`: `ORDER BY .. LIMIT n [OFFSET m]`, and per group
//! `row_number() OVER (PARTITION BY p ORDER BY o) <= n` (the group's top n, with their rank).
//!
//! State: part 0 holds every input row ordered by group then sort key (key: group prefix, sort-key
//! bytes, row bytes; value: multiplicity then row bytes), part 1 the rows currently in the output
//! (key: group prefix, [rank], row bytes; value: multiplicity). After an epoch's changes the first
//! `m + n` rows of each group touched are read in key order — O(m + n) per group, whatever the
//! input size — and compared with the group's previous output: the difference is emitted.
//! Deleting a row inside the top brings the next one in (and, with ranks, renumbers the rows
//! below it). Rows with equal sort keys are ordered by their encoded bytes, so ranks are
//! deterministic.
//!
//! Over an input that only ever gains rows (`append_only_input`), a row that falls below the
//! first `m + n` of its group can never come back: after each epoch a touched group's ordered
//! rows are trimmed to those, so the state is O(groups × (m + n)), not O(input).
//!
//! The group prefix is the length (u32, big-endian) and bytes of the row-encoded group key, so
//! one group's entries never interleave with another's; without PARTITION BY it is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;

use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{decode_i64, EpochContext, Operator, StateTable};
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
    output: StateTable,
    spec: TopNSpec,
    /// The output schema: the input's columns, plus the rank when `spec.rank`.
    schema: SchemaRef,
    row_codec: RowCodec,
    /// The input only ever gains rows: groups keep only their first `skip + fetch` rows.
    append_only: bool,
}

/// One output row: the input row's bytes and its rank (0 without ranks).
type OutputRow = (u64, Vec<u8>);

impl TopNOp {
    pub fn new(ordered: StateTable, output: StateTable, spec: TopNSpec, schema: SchemaRef) -> Result<TopNOp> {
        let n_input = schema.fields().len() - usize::from(spec.rank);
        let types: Vec<DataType> = schema
            .fields()
            .iter()
            .take(n_input)
            .map(|f| f.data_type().clone())
            .collect();
        // Without PARTITION BY the whole table is one group, scanned from its first row.
        let (ordered, output) = if spec.partition_exprs.is_none() {
            (ordered.ordered(), output.ordered())
        } else {
            (ordered, output)
        };
        Ok(TopNOp {
            row_codec: RowCodec::new(&types)?,
            ordered,
            output,
            spec,
            schema,
            append_only: false,
        })
    }

    /// For an input that only ever gains rows (a deletion is then an error): each group keeps
    /// only the rows that can still be in its top.
    pub fn append_only_input(mut self, append_only: bool) -> TopNOp {
        self.append_only = append_only;
        self
    }

    /// Deletes the ordered rows of a group past its first `skip + fetch` (append-only input:
    /// they can never re-enter the top).
    fn trim(&mut self, ctx: &EpochContext, prefix: &[u8]) -> Result<()> {
        let end = self.spec.skip.saturating_add(self.spec.fetch);
        let mut seen = 0usize;
        for (key, value) in self.ordered.scan_prefix(ctx, prefix)? {
            if seen >= end {
                self.ordered.delete(&key);
            } else {
                seen += decode_i64(&value[..8]).max(0) as usize;
            }
        }
        Ok(())
    }

    fn converter(types: &[DataType], options: Option<&[SortOptions]>) -> Result<RowConverter> {
        Ok(RowConverter::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| match options {
                    Some(o) => SortField::new_with_options(t.clone(), o[i]),
                    None => SortField::new(t.clone()),
                })
                .collect(),
        )?)
    }

    /// The group prefix of every row of `data`.
    fn group_prefixes(&self, data: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let Some((exprs, types)) = &self.spec.partition_exprs else {
            return Ok(vec![Vec::new(); data.num_rows()]);
        };
        let cols = super::cast_columns(&exprs.eval(data)?, types)?;
        let rows = Self::converter(types, None)?.convert_columns(&cols)?;
        Ok((0..data.num_rows())
            .map(|i| {
                let r = rows.row(i);
                let mut p = (r.as_ref().len() as u32).to_be_bytes().to_vec();
                p.extend_from_slice(r.as_ref());
                p
            })
            .collect())
    }

    /// The group's output after this epoch's changes.
    fn new_top(&self, ctx: &EpochContext, prefix: &[u8]) -> Result<BTreeMap<OutputRow, i64>> {
        let mut top = BTreeMap::new();
        let mut seen = 0usize;
        let end = self.spec.skip.saturating_add(self.spec.fetch);
        if end == 0 {
            return Ok(top);
        }
        for (_, value) in self.ordered.scan_first(ctx, prefix, end)? {
            let count = decode_i64(&value[..8]).max(0) as usize;
            let row = value[8..].to_vec();
            let from = seen.max(self.spec.skip);
            let to = (seen + count).min(end);
            if self.spec.rank {
                for position in from..to {
                    top.insert((position as u64 + 1, row.clone()), 1);
                }
            } else if to > from {
                *top.entry((0, row)).or_default() += (to - from) as i64;
            }
            seen += count;
            if seen >= end {
                break;
            }
        }
        Ok(top)
    }

    fn output_key(&self, prefix: &[u8], (rank, row): &OutputRow) -> Vec<u8> {
        let mut key = prefix.to_vec();
        if self.spec.rank {
            key.extend_from_slice(&rank.to_be_bytes());
        }
        key.extend_from_slice(row);
        key
    }

    /// The group's output before this epoch.
    fn old_top(&self, ctx: &EpochContext, prefix: &[u8]) -> Result<BTreeMap<OutputRow, i64>> {
        Ok(self
            .output
            .scan_prefix(ctx, prefix)?
            .into_iter()
            .map(|(k, v)| {
                let rest = &k[prefix.len()..];
                let key = if self.spec.rank {
                    (
                        u64::from_be_bytes(rest[..8].try_into().expect("rank")),
                        rest[8..].to_vec(),
                    )
                } else {
                    (0, rest.to_vec())
                };
                (key, decode_i64(&v))
            })
            .collect())
    }

    fn emit(&self, rows: Vec<OutputRow>, weights: Vec<i64>) -> Result<Changes> {
        if rows.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let mut cols = self.row_codec.decode(rows.iter().map(|(_, r)| r.as_slice()))?;
        if self.spec.rank {
            let rank_type = self.schema.field(self.schema.fields().len() - 1).data_type();
            let ranks = ScalarValue::iter_to_array(rows.iter().map(|(rank, _)| ScalarValue::UInt64(Some(*rank))))?;
            cols.push(datafusion::arrow::compute::cast(&ranks, rank_type)?);
        }
        let batch = RecordBatch::try_new(Arc::new(super::project::relaxed(&self.schema)), cols)?;
        Changes::new(batch, weights)
    }
}

impl Operator for TopNOp {
    fn process(&mut self, _port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes> {
        let input = input.consolidate()?;
        if input.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        if self.append_only && input.weights().values().iter().any(|w| *w <= 0) {
            return Err(crate::error::Error::internal(
                "a top-N over an append-only input received a deletion",
            ));
        }
        let data = input.data();
        let sort_cols = self.spec.sort_exprs.eval(&data)?;
        let sort_cols: Vec<ArrayRef> = super::cast_columns(&sort_cols, &self.spec.sort_types)?;
        let sort_keys =
            Self::converter(&self.spec.sort_types, Some(&self.spec.sort_options))?.convert_columns(&sort_cols)?;
        let prefixes = self.group_prefixes(&data)?;
        let rows = self.row_codec.encode(data.columns())?;
        let mut touched = BTreeSet::new();
        for (i, w) in input.weights().values().iter().enumerate() {
            let row = rows.row(i);
            let mut key = prefixes[i].clone();
            key.extend_from_slice(sort_keys.row(i).as_ref());
            key.extend_from_slice(row.as_ref());
            let old = self.ordered.get(ctx, &key)?.map(|v| decode_i64(&v)).unwrap_or(0);
            let new = old + w;
            if new <= 0 {
                self.ordered.delete(&key);
            } else {
                let mut value = new.to_be_bytes().to_vec();
                value.extend_from_slice(row.as_ref());
                self.ordered.put(&key, value);
            }
            touched.insert(prefixes[i].clone());
        }
        let mut out_rows = Vec::new();
        let mut weights = Vec::new();
        for prefix in touched {
            let new_top = self.new_top(ctx, &prefix)?;
            let old_top = self.old_top(ctx, &prefix)?;
            if self.append_only {
                self.trim(ctx, &prefix)?;
            }
            for (row, c) in &old_top {
                let n = new_top.get(row).copied().unwrap_or(0);
                if n != *c {
                    out_rows.push(row.clone());
                    weights.push(n - c);
                }
                if n == 0 {
                    self.output.delete(&self.output_key(&prefix, row));
                }
            }
            for (row, c) in &new_top {
                if !old_top.contains_key(row) {
                    out_rows.push(row.clone());
                    weights.push(*c);
                }
                if old_top.get(row) != Some(c) {
                    self.output
                        .put(&self.output_key(&prefix, row), c.to_be_bytes().to_vec());
                }
            }
        }
        self.emit(out_rows, weights)
    }

    fn state_tables(&mut self) -> Vec<&mut StateTable> {
        vec![&mut self.ordered, &mut self.output]
    }

    fn describe(&self) -> String {
        match &self.spec.partition_exprs {
            None => format!(
                "TopN: order by [{}] offset {} limit {} (state: {} ordered by sort key; current top)",
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
                "GroupTopN: partition by [{}] order by [{}] limit {}{} (state: {} by group and sort key; \
                 current top per group)",
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
