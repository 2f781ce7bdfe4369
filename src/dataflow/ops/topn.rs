//! `TopNOp`: `ORDER BY .. LIMIT n [OFFSET m]`.
//!
//! State: part 0 holds every input row ordered by its sort key (key: sort-key bytes then row
//! bytes; value: multiplicity then row bytes), part 1 the rows currently in the output. After
//! an epoch's changes the first `m + n` rows are read in key order — O(m + n), whatever the
//! input size — and compared with the previous output: the difference is emitted. Deleting a
//! row inside the top brings the next one in.

use std::collections::BTreeMap;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};

use super::Exprs;
use crate::dataflow::changes::Changes;
use crate::dataflow::operator::{decode_i64, EpochContext, Operator, StateTable};
use crate::error::Result;
use crate::state::row_codec::RowCodec;

pub struct TopNOp {
    ordered: StateTable,
    output: StateTable,
    sort_exprs: Exprs,
    sort_types: Vec<DataType>,
    sort_options: Vec<SortOptions>,
    skip: usize,
    fetch: usize,
    schema: SchemaRef,
    row_codec: RowCodec,
}

impl TopNOp {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ordered: StateTable,
        output: StateTable,
        sort_exprs: Exprs,
        sort_types: Vec<DataType>,
        sort_options: Vec<SortOptions>,
        skip: usize,
        fetch: usize,
        schema: SchemaRef,
    ) -> Result<TopNOp> {
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        Ok(TopNOp {
            row_codec: RowCodec::new(&types)?,
            ordered,
            output,
            sort_exprs,
            sort_types,
            sort_options,
            skip,
            fetch,
            schema,
        })
    }

    fn sort_converter(&self) -> Result<RowConverter> {
        Ok(RowConverter::new(
            self.sort_types
                .iter()
                .zip(&self.sort_options)
                .map(|(t, o)| SortField::new_with_options(t.clone(), *o))
                .collect(),
        )?)
    }
}

impl Operator for TopNOp {
    fn process(&mut self, _port: usize, input: Changes, ctx: &EpochContext) -> Result<Changes> {
        let input = input.consolidate()?;
        if input.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let data = input.data();
        let sort_cols = self.sort_exprs.eval(&data)?;
        let sort_cols: Vec<ArrayRef> = super::cast_columns(&sort_cols, &self.sort_types)?;
        let sort_keys = self.sort_converter()?.convert_columns(&sort_cols)?;
        let rows = self.row_codec.encode(data.columns())?;
        for (i, w) in input.weights().values().iter().enumerate() {
            let row = rows.row(i);
            let mut key = sort_keys.row(i).as_ref().to_vec();
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
        }
        // The new window: rows skip..skip+fetch in order (multiplicities expanded).
        let mut new_top: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let mut seen = 0usize;
        let end = self.skip + self.fetch;
        for (_, value) in self.ordered.scan_first(ctx, &[], end)? {
            let count = decode_i64(&value[..8]).max(0) as usize;
            let row = value[8..].to_vec();
            let from = seen.max(self.skip);
            let to = (seen + count).min(end);
            if to > from {
                *new_top.entry(row).or_default() += (to - from) as i64;
            }
            seen += count;
            if seen >= end {
                break;
            }
        }
        let old_top: BTreeMap<Vec<u8>, i64> = self
            .output
            .scan_prefix(ctx, &[])?
            .into_iter()
            .map(|(k, v)| (k, decode_i64(&v)))
            .collect();
        let mut out_rows: Vec<Vec<u8>> = Vec::new();
        let mut weights = Vec::new();
        for (row, c) in &old_top {
            let n = new_top.get(row).copied().unwrap_or(0);
            if n != *c {
                out_rows.push(row.clone());
                weights.push(n - c);
            }
            if n == 0 {
                self.output.delete(row);
            }
        }
        for (row, c) in &new_top {
            if !old_top.contains_key(row) {
                out_rows.push(row.clone());
                weights.push(*c);
            }
            if old_top.get(row) != Some(c) {
                self.output.put(row, c.to_be_bytes().to_vec());
            }
        }
        if out_rows.is_empty() {
            return Ok(Changes::empty(self.schema.clone()));
        }
        let cols = self.row_codec.decode(out_rows.iter().map(|r| r.as_slice()))?;
        let batch = datafusion::arrow::array::RecordBatch::try_new(
            std::sync::Arc::new(super::project::relaxed(&self.schema)),
            cols,
        )?;
        Changes::new(batch, weights)
    }

    fn flush(&mut self, batch: &mut crate::state::WriteBatch) {
        self.ordered.flush(batch);
        self.output.flush(batch);
    }

    fn describe(&self) -> String {
        format!(
            "TopN: order by [{}] offset {} limit {} (state: rows ordered by sort key; current top)",
            self.sort_exprs.display.join(", "),
            self.skip,
            self.fetch
        )
    }
}
