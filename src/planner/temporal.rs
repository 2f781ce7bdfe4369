//! Temporal joins in the view planner: a join whose right side is a table read `FOR SYSTEM_TIME
//! AS OF PROCTIME()` (`crate::sql::temporal`) becomes a [`TemporalJoinOp`], a lookup of each
//! left row's partner by the table's primary key.

use std::sync::Arc;

use datafusion::logical_expr::{Expr, JoinType, LogicalPlan};

use super::chain::{scan_chain, scan_table, trace_column};
use super::{arrow_schema, Builder};
use crate::dataflow::ops::temporal_join::{Stage, TableSide, TemporalJoinOp};
use crate::dataflow::ops::Exprs;
use crate::error::{Error, Result};

impl Builder {
    /// A join whose right side is a table read `FOR SYSTEM_TIME AS OF PROCTIME()` (`chain`: the
    /// right side's nodes from the join down to the table's scan): a lookup of each left row's
    /// partner by the table's primary key ([`TemporalJoinOp`]).
    pub(super) fn temporal_join(
        &mut self,
        j: &datafusion::logical_expr::Join,
        chain: &[&LogicalPlan],
    ) -> Result<usize> {
        let left_join = match j.join_type {
            JoinType::Inner => false,
            JoinType::Left => true,
            other => {
                return Err(Error::unsupported(format!(
                    "a {other} temporal join (FOR SYSTEM_TIME AS OF PROCTIME()) in materialized views: it is INNER or LEFT, with the table on the right"
                )))
            }
        };
        let Some(LogicalPlan::TableScan(scan)) = chain.last() else {
            return Err(Error::internal("a temporal side ends in a scan"));
        };
        let table = temporal_table(scan).ok_or_else(|| Error::internal("a temporal side ends in a scan"))?;
        if scan.fetch.is_some() {
            return Err(Error::unsupported("LIMIT pushed into a scan in materialized views"));
        }
        if table.has_row_id() || !table.def.layout.is_rows() {
            return Err(Error::unsupported(format!(
                "FOR SYSTEM_TIME AS OF PROCTIME() on table {}, which has no primary key: a temporal join looks rows up by primary key",
                table.def.name
            )));
        }
        let left = self.build(&j.left)?;
        if !self.only_insertions(left) {
            return Err(Error::unsupported(
                "a temporal join (FOR SYSTEM_TIME AS OF PROCTIME()) whose left side can update or delete rows, in materialized views: its left side must only gain rows (a stream, or a table or view that is only appended to)",
            ));
        }
        // Each primary-key column equated with a left value; any other equality is a condition.
        let pk = &table.def.primary_key;
        let mut key: Vec<Option<Expr>> = vec![None; pk.len()];
        let mut residual: Vec<Expr> = Vec::new();
        for (l, r) in &j.on {
            let at = trace_column(chain, r).and_then(|c| pk.iter().position(|k| *k == c));
            match at {
                Some(p) if key[p].is_none() => key[p] = Some(l.clone()),
                _ => residual.push(datafusion::logical_expr::binary_expr(
                    l.clone(),
                    datafusion::logical_expr::Operator::Eq,
                    r.clone(),
                )),
            }
        }
        let Some(key) = key.into_iter().collect::<Option<Vec<Expr>>>() else {
            let names: Vec<&str> = pk.iter().map(|k| table.def.columns[*k].name.as_str()).collect();
            return Err(Error::unsupported(format!(
                "a temporal join (FOR SYSTEM_TIME AS OF PROCTIME()) that does not look table {} up by its whole primary key ({}): its ON clause must equate each of those columns with a value of the left side",
                table.def.name,
                names.join(", ")
            )));
        };
        residual.extend(j.filter.clone());
        let joined = j.left.schema().join(j.right.schema())?;
        let residual = datafusion::logical_expr::utils::conjunction(residual)
            .map(|e| Exprs::new(&[e], &joined))
            .transpose()?;
        // The table side: its scan's columns, then the filters and projections above it.
        let visible: Vec<usize> = (0..table.def.columns.len())
            .filter(|i| !table.def.columns[*i].hidden)
            .collect();
        let scan_columns = match &scan.projection {
            Some(p) => p.iter().map(|i| visible[*i]).collect(),
            None => visible,
        };
        let mut stages = Vec::new();
        for node in chain.iter().rev() {
            match node {
                LogicalPlan::Filter(f) => stages.push(Stage::Filter(Exprs::new(
                    std::slice::from_ref(&f.predicate),
                    f.input.schema(),
                )?)),
                LogicalPlan::Projection(p) => stages.push(Stage::Project(
                    Exprs::new(&p.expr, p.input.schema())?,
                    arrow_schema(&p.schema),
                )),
                _ => {}
            }
        }
        let side = TableSide {
            table,
            scan_columns,
            scan_schema: arrow_schema(&scan.projected_schema),
            stages,
            schema: arrow_schema(j.right.schema()),
        };
        let schema = arrow_schema(&j.schema);
        let op = TemporalJoinOp::new(
            Exprs::new(&key, j.left.schema())?,
            side,
            residual,
            left_join,
            schema.clone(),
        );
        Ok(self.push(Box::new(op), vec![left], schema))
    }
}

/// The table a scan reads `FOR SYSTEM_TIME AS OF PROCTIME()`, if it does.
pub(super) fn temporal_table(scan: &datafusion::logical_expr::TableScan) -> Option<Arc<crate::catalog::Table>> {
    scan_table(scan).and_then(|(table, temporal)| temporal.then_some(table))
}

/// `plan`'s nodes down to the scan of a table read `FOR SYSTEM_TIME AS OF PROCTIME()`, if it is
/// such a scan under filters, projections and aliases only.
pub(super) fn temporal_chain(plan: &LogicalPlan) -> Option<Vec<&LogicalPlan>> {
    let (chain, scan) = scan_chain(plan)?;
    temporal_table(scan).map(|_| chain)
}
