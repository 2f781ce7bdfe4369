//! Join sides that have at most one row per join key, ever: a stream (append-only, nothing
//! stored) whose primary key the join key covers, read through filters, projections and
//! aliases. Its rows never change and no two share a key, so a row of the other side that has
//! met its partner will never meet another (`HashJoinOp::with_unique`).
//!
//! A stream's primary key is unique by construction: Nexmark's persons and auctions are
//! numbered, and a `datagen` stream may only declare a primary key of sequence fields
//! (`sql::source`).

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::chain::{scan_chain, scan_table, trace_column};
use crate::catalog::Layout;
use crate::error::Result;

/// True if `plan` yields at most one row per value of `keys` (expressions over its output),
/// ever.
pub(super) fn one_row_per_key(plan: &LogicalPlan, keys: &[Expr]) -> bool {
    let Some((chain, scan)) = scan_chain(plan) else {
        return false;
    };
    let Some((table, false)) = scan_table(scan) else {
        return false;
    };
    if scan.fetch.is_some() {
        return false;
    }
    let def = &table.def;
    def.layout == Layout::Stream
        && !table.has_row_id()
        && !def.primary_key.is_empty()
        && def
            .primary_key
            .iter()
            .all(|c| keys.iter().any(|k| trace_column(&chain, k) == Some(*c)))
}

/// The filters right above a unique join side's input (under aliases), lifted into an inner
/// join's condition: `side`'s node to build without them, and their predicates as expressions
/// over `side`'s output. Filtered there, a row of the other side whose partner the filter
/// drops would wait for it forever; joined with every partner and filtered after, it is
/// dropped. `None` if there is no filter to lift.
pub(super) fn lifted_filters(side: &LogicalPlan) -> Result<Option<(&LogicalPlan, Vec<Expr>)>> {
    let mut node = side;
    let mut predicates = Vec::new();
    loop {
        node = match node {
            LogicalPlan::SubqueryAlias(a) => &a.input,
            LogicalPlan::Filter(f) => {
                predicates.push(f.predicate.clone());
                &f.input
            }
            _ => break,
        };
    }
    if predicates.is_empty() {
        return Ok(None);
    }
    // Aliases and filters keep the columns in place: a column of the node's output is the
    // column at the same index of the side's output.
    let (inner, outer) = (node.schema(), side.schema());
    let lifted = predicates
        .into_iter()
        .map(|p| {
            p.transform(|e| match e {
                Expr::Column(c) => {
                    let i = inner.index_of_column(&c)?;
                    Ok(Transformed::yes(Expr::Column(Column::from(outer.qualified_field(i)))))
                }
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
        })
        .collect::<datafusion::error::Result<Vec<Expr>>>()?;
    Ok(Some((node, lifted)))
}
