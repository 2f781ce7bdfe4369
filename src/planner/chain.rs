//! A join side read straight from a stored table or stream: its plan nodes down to the scan
//! (through aliases, filters and projections), and the stored column an expression over it
//! passes on. Temporal joins look a table up by the primary key so traced; joins with a unique
//! side find a stream's primary key covered by the join key the same way.

use std::sync::Arc;

use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, TableScan};

use super::unalias;
use crate::catalog::Table;
use crate::query::provider::StoredTable;

/// The table (or stream) a scan reads, if it reads one, and whether it reads it `FOR
/// SYSTEM_TIME AS OF PROCTIME()`.
pub(super) fn scan_table(scan: &TableScan) -> Option<(Arc<Table>, bool)> {
    let provider = source_as_provider(&scan.source).ok()?;
    let t = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<StoredTable>()?;
    Some((t.table().clone(), t.is_temporal()))
}

/// `plan`'s nodes down to a scan (the last of them), if `plan` is a scan under aliases,
/// filters and projections only.
pub(super) fn scan_chain(plan: &LogicalPlan) -> Option<(Vec<&LogicalPlan>, &TableScan)> {
    let mut chain = Vec::new();
    let mut node = plan;
    loop {
        chain.push(node);
        node = match node {
            LogicalPlan::TableScan(scan) => return Some((chain, scan)),
            LogicalPlan::SubqueryAlias(a) => &a.input,
            LogicalPlan::Filter(f) => &f.input,
            LogicalPlan::Projection(p) => &p.input,
            _ => return None,
        };
    }
}

/// The stored column (an index among all of the table's columns) that `e`, an expression over
/// the top of `chain` (as [`scan_chain`] gives), passes on unchanged, if it does. An integer column
/// widened to another integer type counts (the left value is narrowed to look it up).
pub(super) fn trace_column(chain: &[&LogicalPlan], e: &Expr) -> Option<usize> {
    let e = match unalias(e) {
        Expr::Cast(c) => {
            let inner = c.expr.get_type(chain[0].schema()).ok()?;
            if !(inner.is_integer() && c.field.data_type().is_integer()) {
                return None;
            }
            unalias(&c.expr)
        }
        other => other,
    };
    let Expr::Column(c) = e else { return None };
    let mut pos = chain[0].schema().index_of_column(c).ok()?;
    for node in chain {
        match node {
            LogicalPlan::Projection(p) => {
                let Expr::Column(c) = unalias(p.expr.get(pos)?) else {
                    return None;
                };
                pos = p.input.schema().index_of_column(c).ok()?;
            }
            LogicalPlan::TableScan(scan) => {
                let (table, _) = scan_table(scan)?;
                let visible = scan
                    .projection
                    .as_ref()
                    .map(|p| p.get(pos).copied())
                    .unwrap_or(Some(pos))?;
                return (0..table.def.columns.len())
                    .filter(|i| !table.def.columns[*i].hidden)
                    .nth(visible);
            }
            _ => {}
        }
    }
    None
}
