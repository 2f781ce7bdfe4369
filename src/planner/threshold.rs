//! Semi / anti joins whose condition besides the equality keys is one comparison of a left
//! value with a right value (`ThresholdSemiJoinOp`): the comparison, split into its sides.

use datafusion::common::DFSchema;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable};

use crate::dataflow::ops::threshold_join::{comparable, Comparison};
use crate::error::Result;

/// A join condition `left comparison right`.
pub struct Condition {
    /// Over the left side's columns only.
    pub left: Expr,
    /// Over the right side's columns only.
    pub right: Expr,
    pub value_type: datafusion::arrow::datatypes::DataType,
    pub comparison: Comparison,
}

/// `filter` as a comparison of an expression of the left side's columns with one of the
/// right side's (either way round), of one type that row encoding orders as SQL does; None
/// for any other condition (a conjunction, a comparison within one side, floats, text).
pub fn condition(filter: &Expr, left: &DFSchema, right: &DFSchema) -> Result<Option<Condition>> {
    let Expr::BinaryExpr(BinaryExpr { left: a, op, right: b }) = filter else {
        return Ok(None);
    };
    let Some(comparison) = Comparison::of(*op) else {
        return Ok(None);
    };
    let (l, r, comparison) = if only(a, left, right) && only(b, right, left) {
        (a, b, comparison)
    } else if only(b, left, right) && only(a, right, left) {
        // `right op left` is `left op' right` with the operator turned round.
        let Some(swapped) = op.swap().and_then(Comparison::of) else {
            return Ok(None);
        };
        (b, a, swapped)
    } else {
        return Ok(None);
    };
    let value_type = l.get_type(left)?;
    if value_type != r.get_type(right)? || !comparable(&value_type) {
        return Ok(None);
    }
    Ok(Some(Condition {
        left: (**l).clone(),
        right: (**r).clone(),
        value_type,
        comparison,
    }))
}

/// True if `e` reads columns, all of them of `side` and none of `other`.
fn only(e: &Expr, side: &DFSchema, other: &DFSchema) -> bool {
    let cols = e.column_refs();
    !cols.is_empty() && cols.iter().all(|c| side.has_column(c) && !other.has_column(c))
}
