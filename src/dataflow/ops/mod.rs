//! Incremental operators, one per file. Each consumes and produces [`Changes`].
//!
//! [`Changes`]: super::changes::Changes

pub mod aggregate;
pub mod distinct;
pub mod filter;
pub mod grouping;
pub mod join;
pub mod project;
pub mod semi_join;
pub mod semi_join_filtered;
pub mod temporal_join;
#[cfg(test)]
pub mod testing;
pub mod threshold_join;
pub mod topn;
pub mod union;
pub mod window_start;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::DFSchema;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};

use crate::error::Result;

/// Scalar expressions compiled once and evaluated on whole batches by DataFusion.
pub struct Exprs {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub display: Vec<String>,
}

impl Exprs {
    pub fn new(exprs: &[Expr], input: &DFSchema) -> Result<Exprs> {
        let props = ExecutionProps::new();
        let ctx = PhysicalPlanningContext::default();
        Ok(Exprs {
            exprs: exprs
                .iter()
                .map(|e| {
                    Ok(create_physical_expr(
                        &window_start::fast(e, input)?,
                        input,
                        &props,
                        &ctx,
                    )?)
                })
                .collect::<Result<_>>()?,
            display: exprs.iter().map(|e| e.to_string()).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.exprs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exprs.is_empty()
    }

    /// The input column that expression `i` is, if it is a plain column reference.
    pub fn column(&self, i: usize) -> Option<usize> {
        self.exprs
            .get(i)?
            .downcast_ref::<datafusion::physical_expr::expressions::Column>()
            .map(|c| c.index())
    }

    pub fn eval(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.exprs
            .iter()
            .map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?))
            .collect()
    }

    /// The first expression, a predicate, as a filter mask over `batch`: true where it holds,
    /// false where it is false or NULL (SQL's WHERE semantics).
    pub fn mask(&self, batch: &RecordBatch) -> Result<datafusion::arrow::array::BooleanArray> {
        use datafusion::arrow::array::{Array, BooleanArray};
        let values = self
            .exprs
            .first()
            .ok_or_else(|| crate::error::Error::internal("a predicate without an expression"))?
            .evaluate(batch)?
            .into_array(batch.num_rows())?;
        let mask = values
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| crate::error::Error::internal(format!("predicate {} is not boolean", self.display[0])))?;
        Ok(nulls_are_false(mask))
    }
}

/// A filter mask where NULL counts as false (SQL's WHERE semantics).
pub fn nulls_are_false(mask: &datafusion::arrow::array::BooleanArray) -> datafusion::arrow::array::BooleanArray {
    use datafusion::arrow::array::Array;
    if mask.null_count() == 0 {
        mask.clone()
    } else {
        datafusion::arrow::compute::prep_null_mask_filter(mask)
    }
}

/// `columns` cast to the types of `fields` where they differ (an output batch's columns to its
/// schema's types).
pub fn cast_to_fields(
    columns: impl IntoIterator<Item = ArrayRef>,
    fields: &datafusion::arrow::datatypes::Fields,
) -> Result<Vec<ArrayRef>> {
    columns
        .into_iter()
        .zip(fields)
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                Ok(datafusion::arrow::compute::cast(&c, f.data_type())?)
            }
        })
        .collect()
}

/// `columns` cast to `types` where they differ (expressions may yield a narrower or wider type
/// than the one state is keyed by).
pub fn cast_columns(columns: &[ArrayRef], types: &[datafusion::arrow::datatypes::DataType]) -> Result<Vec<ArrayRef>> {
    columns
        .iter()
        .zip(types)
        .map(|(c, t)| {
            if c.data_type() == t {
                Ok(c.clone())
            } else {
                Ok(datafusion::arrow::compute::cast(c, t)?)
            }
        })
        .collect()
}

/// The rows of `rows` with their weights summed over equal rows (equal encodings), as
/// (first occurrence, summed weight) in first-occurrence order; rows whose weights sum to zero
/// are dropped. An operator that encodes its input rows anyway consolidates on those bytes
/// instead of encoding them a second time ([`Changes::consolidate`]).
///
/// [`Changes::consolidate`]: crate::dataflow::changes::Changes::consolidate
pub fn consolidate_encoded(rows: &datafusion::arrow::row::Rows, weights: &[i64]) -> Vec<(u32, i64)> {
    let (slot, first) = grouping::byte_groups(rows);
    let mut order: Vec<(u32, i64)> = first.into_iter().map(|i| (i, 0)).collect();
    for (s, w) in slot.iter().zip(weights) {
        order[*s as usize].1 += w;
    }
    order.retain(|(_, w)| *w != 0);
    order
}

/// Row-encoded keys of `data`: `exprs` cast to `types` and encoded by `codec`; None where a
/// key column is NULL (such a key matches nothing in a join).
pub fn encoded_keys(
    exprs: &Exprs,
    types: &[datafusion::arrow::datatypes::DataType],
    codec: &crate::state::row_codec::RowCodec,
    data: &RecordBatch,
) -> Result<Vec<Option<Vec<u8>>>> {
    use datafusion::arrow::array::Array;
    let cols = cast_columns(&exprs.eval(data)?, types)?;
    let rows = codec.encode(&cols)?;
    Ok((0..data.num_rows())
        .map(|i| (!cols.iter().any(|c| c.is_null(i))).then(|| rows.row(i).as_ref().to_vec()))
        .collect())
}

/// Rows `idx` of `data`, with `weights`, as changes of `schema` (its columns nullable).
pub fn take_rows(
    data: &RecordBatch,
    idx: Vec<u32>,
    weights: Vec<i64>,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<crate::dataflow::changes::Changes> {
    let idx = datafusion::arrow::array::UInt32Array::from(idx);
    let cols: Vec<ArrayRef> = data
        .columns()
        .iter()
        .map(|c| datafusion::arrow::compute::take(c.as_ref(), &idx, None))
        .collect::<std::result::Result<_, _>>()?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(project::relaxed(schema)),
        cols,
        &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(idx.len())),
    )?;
    crate::dataflow::changes::Changes::new(batch, weights)
}

/// Rows encoded by `codec`, decoded, with `weights`, as changes of `schema` (its columns
/// nullable).
pub fn decoded_rows(
    codec: &crate::state::row_codec::RowCodec,
    rows: &[Vec<u8>],
    weights: Vec<i64>,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<crate::dataflow::changes::Changes> {
    if rows.is_empty() {
        return Ok(crate::dataflow::changes::Changes::empty(schema.clone()));
    }
    let cols = codec.decode(rows.iter().map(|r| r.as_slice()))?;
    let batch = RecordBatch::try_new(Arc::new(project::relaxed(schema)), cols)?;
    crate::dataflow::changes::Changes::new(batch, weights)
}
