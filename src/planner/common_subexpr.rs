//! Common subexpressions of a filter and the projection over it (plan version 10), computed
//! once. DataFusion eliminates common subexpressions within one plan node; a `SELECT` whose
//! `WHERE` and select list call the same function (Nexmark q21 matches a regular expression
//! against each bid's URL in both) would evaluate it twice per row, once in each operator.
//!
//! Such an expression is evaluated once, in a projection under the filter that also keeps
//! only the input columns the filter and the select list still read; the filter and the
//! select list read its value as a column. Only expressions the filter's predicate evaluates
//! for every row are taken (not one under the right side of an AND / OR, in a CASE branch or
//! in a lazily evaluated function's arguments): computing them for every row before the
//! filter then raises no error the filter did not already raise.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, TableReference};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator, Projection};

use crate::error::Result;

/// The name of the column holding common subexpression `i`.
fn column_name(i: usize) -> String {
    format!("__common_{i}")
}

/// A projection (its expressions, over the schema below) and its output schema.
pub(super) struct Level {
    pub exprs: Vec<Expr>,
    pub schema: DFSchema,
}

/// A filter and the projections over it, rewritten to read their common subexpressions from a
/// projection below the filter.
pub(super) struct Shared {
    /// The projection under the filter: the input columns still read, then each common
    /// subexpression (over the filter's input).
    pub lower: Level,
    /// The filter's predicate, over `lower`.
    pub predicate: Expr,
    /// The projections over the filter, the one over it first: each keeps what the one above
    /// reads, and passes the common subexpressions on.
    pub levels: Vec<Level>,
}

/// `predicate` (over `input`) and `chain`, the projections over the filter (the one over it
/// first; DataFusion puts its own common subexpressions of a select list in a projection of
/// their own), with the subexpressions they share computed once, or `None` if they share none
/// worth computing once (one that calls a function).
pub(super) fn share(predicate: &Expr, input: &DFSchema, chain: &[&Projection]) -> Result<Option<Shared>> {
    let mut candidates = Vec::new();
    unconditional(predicate, &mut candidates);
    // Per projection: the filter's input columns it reads unchanged (as the filter gives them).
    let mut visible: Vec<HashSet<Column>> = Vec::with_capacity(chain.len());
    let mut seen: HashSet<Column> = input.columns().into_iter().collect();
    for p in chain {
        visible.push(seen.clone());
        seen = p
            .expr
            .iter()
            .filter_map(|e| match e {
                Expr::Column(c) if seen.contains(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
    }
    // Where a candidate may be read from its column: in the projections that see all its columns.
    let readable = |p: usize, e: &Expr| e.column_refs().into_iter().all(|c| visible[p].contains(c));
    let mut common: Vec<Expr> = Vec::new();
    for c in candidates {
        let worth = !c.is_volatile() && calls_function(c) && !matches!(c, Expr::Alias(_));
        // Already taken, or inside one taken (`contains` counts the expression itself).
        let covered = common.iter().any(|k| contains(k, c));
        let used = (0..chain.len()).any(|p| readable(p, c) && chain[p].expr.iter().any(|o| contains(o, c)));
        if worth && !covered && used {
            common.push(c.clone());
        }
    }
    if common.is_empty() {
        return Ok(None);
    }
    let columns: Vec<Column> = (0..common.len())
        .map(|i| Column::new_unqualified(column_name(i)))
        .collect();
    let all: HashMap<&Expr, Column> = common.iter().zip(columns.iter().cloned()).collect();
    let fields: Vec<(Option<TableReference>, FieldRef)> = common
        .iter()
        .enumerate()
        .map(|(i, e)| Ok((None, Arc::new(Field::new(column_name(i), e.get_type(input)?, true)))))
        .collect::<Result<_>>()?;
    let predicate = replace(predicate, &all)?;
    // Each projection reads the common subexpressions it sees the columns of from theirs.
    let mut exprs: Vec<Vec<Expr>> = Vec::with_capacity(chain.len());
    for (p, proj) in chain.iter().enumerate() {
        let names: HashMap<&Expr, Column> = all
            .iter()
            .filter(|(e, _)| readable(p, e))
            .map(|(e, c)| (*e, c.clone()))
            .collect();
        exprs.push(proj.expr.iter().map(|e| replace(e, &names)).collect::<Result<_>>()?);
    }
    // From the top down: the top projection as it is (the view's columns); each one below it
    // keeps only what the one above reads, and passes on the common subexpressions it reads.
    let top = chain.len() - 1;
    let mut levels = vec![Level {
        exprs: exprs.pop().expect("a projection"),
        schema: chain[top].schema.as_ref().clone(),
    }];
    let mut read = column_refs(&levels[0].exprs);
    for p in (0..top).rev() {
        let mut kept = Vec::new();
        let mut kept_fields = Vec::new();
        for (i, e) in exprs[p].drain(..).enumerate() {
            let (q, f) = chain[p].schema.qualified_field(i);
            if read.contains(&Column::new(q.cloned(), f.name())) {
                kept.push(e);
                kept_fields.push((q.cloned(), f.clone()));
            }
        }
        for (c, f) in columns.iter().zip(&fields) {
            if read.contains(c) {
                kept.push(Expr::Column(c.clone()));
                kept_fields.push(f.clone());
            }
        }
        let schema = DFSchema::new_with_metadata(kept_fields, chain[p].schema.metadata().clone())?;
        read = column_refs(&kept);
        levels.push(Level { exprs: kept, schema });
    }
    levels.reverse();
    read.extend(predicate.column_refs().into_iter().cloned());
    let mut lower = Vec::new();
    let mut lower_fields = Vec::new();
    for (q, f) in input.iter() {
        let c = Column::new(q.cloned(), f.name());
        if read.contains(&c) {
            lower.push(Expr::Column(c));
            lower_fields.push((q.cloned(), f.clone()));
        }
    }
    for (i, e) in common.iter().enumerate() {
        lower.push(e.clone().alias(column_name(i)));
    }
    lower_fields.extend(fields);
    let schema = DFSchema::new_with_metadata(lower_fields, input.metadata().clone())?;
    Ok(Some(Shared {
        lower: Level { exprs: lower, schema },
        predicate,
        levels,
    }))
}

/// The columns `exprs` read.
fn column_refs(exprs: &[Expr]) -> HashSet<Column> {
    exprs
        .iter()
        .flat_map(|e| e.column_refs().into_iter().cloned())
        .collect()
}

/// Every subexpression of `e` evaluated for every row `e` is evaluated for, outermost first.
fn unconditional<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    out.push(e);
    let children: Vec<&Expr> = match e {
        // AND / OR may skip their right side (for rows, or for a whole batch).
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And | Operator::Or,
            ..
        }) => vec![left],
        Expr::BinaryExpr(b) => vec![&b.left, &b.right],
        // Only the first condition (or the operand) is evaluated for every row.
        Expr::Case(c) => match &c.expr {
            Some(operand) => vec![operand],
            None => c
                .when_then_expr
                .first()
                .map(|(when, _)| vec![when.as_ref()])
                .unwrap_or_default(),
        },
        Expr::ScalarFunction(f) if !f.func.short_circuits() => f.args.iter().collect(),
        Expr::Alias(a) => vec![&a.expr],
        Expr::Not(x)
        | Expr::IsNull(x)
        | Expr::IsNotNull(x)
        | Expr::IsTrue(x)
        | Expr::IsFalse(x)
        | Expr::IsUnknown(x)
        | Expr::IsNotTrue(x)
        | Expr::IsNotFalse(x)
        | Expr::IsNotUnknown(x)
        | Expr::Negative(x) => vec![x],
        Expr::Cast(c) => vec![&c.expr],
        Expr::TryCast(c) => vec![&c.expr],
        Expr::Like(l) | Expr::SimilarTo(l) => vec![&l.expr, &l.pattern],
        Expr::Between(b) => vec![&b.expr, &b.low, &b.high],
        Expr::InList(l) => std::iter::once(l.expr.as_ref()).chain(&l.list).collect(),
        _ => vec![],
    };
    for c in children {
        unconditional(c, out);
    }
}

/// Whether `e` calls a scalar function somewhere (worth computing once).
fn calls_function(e: &Expr) -> bool {
    e.exists(|n| Ok(matches!(n, Expr::ScalarFunction(_)))).unwrap_or(false)
}

/// Whether `e` has `part` as a subexpression (or is it).
fn contains(e: &Expr, part: &Expr) -> bool {
    e.exists(|n| Ok(n == part)).unwrap_or(false)
}

/// `e` with each of `names`' expressions read from its column.
fn replace(e: &Expr, names: &HashMap<&Expr, Column>) -> Result<Expr> {
    Ok(e.clone()
        .transform_down(|n| match names.get(&n) {
            Some(c) => Ok(Transformed::new(Expr::Column(c.clone()), true, TreeNodeRecursion::Jump)),
            None => Ok(Transformed::no(n)),
        })?
        .data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::functions::expr_fn::{lower, regexp_match};
    use datafusion::logical_expr::{col, lit, when, EmptyRelation, LogicalPlan};

    fn input() -> DFSchema {
        DFSchema::from_unqualified_fields(
            vec![
                Field::new("url", DataType::Utf8, true),
                Field::new("channel", DataType::Utf8, true),
                Field::new("price", DataType::Int64, true),
            ]
            .into(),
            Default::default(),
        )
        .unwrap()
    }

    /// A projection of `exprs` over `below` (the filter's input schema, or another projection).
    fn project(exprs: Vec<Expr>, below: LogicalPlan) -> Projection {
        Projection::try_new(exprs, Arc::new(below)).unwrap()
    }

    fn scan() -> LogicalPlan {
        LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(input()),
        })
    }

    fn shares(predicate: &Expr, exprs: Vec<Expr>) -> bool {
        let p = project(exprs, scan());
        share(predicate, &input(), &[&p]).unwrap().is_some()
    }

    #[test]
    fn a_function_the_filter_always_evaluates_is_computed_once() {
        let m = regexp_match(col("url"), lit("x=([^&]*)"), None);
        let predicate = m.clone().is_not_null().or(lower(col("channel")).eq(lit("a")));
        let case = when(lower(col("channel")).eq(lit("a")), lit("0"))
            .otherwise(m.clone())
            .unwrap();
        let p = project(vec![col("price"), case.alias("c")], scan());
        let s = share(&predicate, &input(), &[&p]).unwrap().unwrap();
        // The match once; `lower(channel)` is on the right of the OR (not always evaluated).
        // `url` is no longer read above it.
        assert_eq!(
            s.lower.exprs,
            [col("channel"), col("price"), m.clone().alias("__common_0")]
        );
        let common = Expr::Column(Column::new_unqualified("__common_0"));
        assert!(contains(&s.predicate, &common) && !contains(&s.predicate, &m));
        assert!(contains(&s.levels[0].exprs[1], &common) && !contains(&s.levels[0].exprs[1], &m));
        assert_eq!(s.levels[0].schema.fields().len(), 2);
    }

    #[test]
    fn a_common_subexpression_reaches_a_projection_two_levels_up() {
        // DataFusion's own common subexpression of the select list in a projection of its own,
        // which passes `url` on; the top one reads the match over `url`.
        let m = regexp_match(col("url"), lit("x=([^&]*)"), None);
        let predicate = m.clone().is_not_null();
        let first = project(vec![lower(col("channel")).alias("l"), col("price"), col("url")], scan());
        let top = project(
            vec![
                col("price"),
                when(col("l").eq(lit("a")), lit("0")).otherwise(m.clone()).unwrap(),
            ],
            LogicalPlan::Projection(first.clone()),
        );
        let s = share(&predicate, &input(), &[&first, &top]).unwrap().unwrap();
        let common = Expr::Column(Column::new_unqualified("__common_0"));
        // The first projection no longer passes `url` on, but the match's column.
        assert_eq!(
            s.levels[0].exprs,
            [lower(col("channel")).alias("l"), col("price"), common.clone()]
        );
        assert!(contains(&s.levels[1].exprs[1], &common) && !contains(&s.levels[1].exprs[1], &m));
        assert_eq!(
            s.lower.exprs,
            [col("channel"), col("price"), m.clone().alias("__common_0")]
        );
        // Above a projection that gives another `url`, the same text is another value.
        let other = project(vec![lower(col("channel")).alias("url"), col("price")], scan());
        let top = project(vec![col("price"), m.alias("m")], LogicalPlan::Projection(other.clone()));
        assert!(share(&predicate, &input(), &[&other, &top]).unwrap().is_none());
    }

    #[test]
    fn a_function_evaluated_only_for_some_rows_is_left_in_place() {
        // `lower(channel)` only where price > 0 (in a CASE branch, on the right of an AND):
        // computing it for every row could raise what the filter never raised.
        let f = lower(col("channel"));
        let in_case = when(col("price").gt(lit(0i64)), f.clone().eq(lit("a")))
            .otherwise(lit(false))
            .unwrap();
        assert!(!shares(&in_case, vec![f.clone()]));
        let in_and = col("price").gt(lit(0i64)).and(f.clone().eq(lit("a")));
        assert!(!shares(&in_and, vec![f.clone()]));
        // On the left of the AND it is evaluated for every row.
        let left = f.clone().eq(lit("a")).and(col("price").gt(lit(0i64)));
        assert!(shares(&left, vec![f]));
    }
}
