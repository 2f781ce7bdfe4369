//! Compatibility rewrites applied to every statement before DataFusion plans it.
//!
//! psql, drivers and BI tools send PostgreSQL-specific syntax that DataFusion's planner does
//! not know: `pg_catalog.` qualified function names, `OPERATOR(pg_catalog.~)`, `COLLATE`,
//! casts to `regclass` / `oid` / `name` / `"char"`. These are rewritten into plain SQL with the
//! same meaning (e.g. `'t'::regclass` becomes `freshet_regclass('t')`).

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Statement,
};

/// Rewrites `stmt` in place.
pub fn rewrite(stmt: &mut Statement) {
    let _ = sqlparser::ast::visit_expressions_mut(stmt, |e| {
        rewrite_expr(e);
        ControlFlow::<()>::Continue(())
    });
}

/// Makes correlated scalar subqueries plannable by DataFusion, keeping their meaning when they
/// return at most one row (PostgreSQL errors otherwise):
/// - conjuncts of the subquery's WHERE that only read outer columns move out:
///   `(SELECT x FROM d WHERE d.k = a.k AND a.flag)` becomes
///   `CASE WHEN a.flag THEN (SELECT max(x) FROM d WHERE d.k = a.k) END`;
/// - the single output is aggregated with `max()` (the same value for zero or one row).
pub fn aggregate_scalar_subqueries(stmt: &mut Statement) {
    let _ = sqlparser::ast::visit_expressions_mut(stmt, |e| {
        let Expr::Subquery(q) = e else {
            return ControlFlow::<()>::Continue(());
        };
        let sqlparser::ast::SetExpr::Select(select) = q.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        // psql's `\d` asks for a column's collation when it differs from its type's default.
        // Freshet has only the default collation, so such a lookup is always empty.
        let reads_collations = select.from.iter().any(|t| t.relation.to_string().contains("pg_collation"));
        let compares_collations = select.selection.as_ref().is_some_and(|w| w.to_string().contains("collation <>"));
        if reads_collations && compares_collations {
            *e = Expr::value(sqlparser::ast::Value::Null);
            return ControlFlow::Continue(());
        }
        let grouped = !matches!(&select.group_by, sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty());
        if grouped || select.projection.len() != 1 || has_aggregate(&select.projection[0]) {
            return ControlFlow::Continue(());
        }
        match &mut select.projection[0] {
            sqlparser::ast::SelectItem::UnnamedExpr(inner) => *inner = call("max", vec![inner.clone()]),
            sqlparser::ast::SelectItem::ExprWithAlias { expr, .. } => *expr = call("max", vec![expr.clone()]),
            _ => return ControlFlow::Continue(()),
        }
        let inner_names: Vec<String> = select
            .from
            .iter()
            .flat_map(|twj| std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)))
            .filter_map(|r| match r {
                sqlparser::ast::TableFactor::Table { name, alias, .. } => Some(match alias {
                    Some(a) => a.name.value.to_lowercase(),
                    None => name.0.last().map(|p| p.to_string().to_lowercase()).unwrap_or_default(),
                }),
                _ => None,
            })
            .collect();
        let mut outer = Vec::new();
        if let Some(sel) = select.selection.take() {
            let mut inner = Vec::new();
            for c in conjuncts(sel) {
                if reads_only_outer(&c, &inner_names) {
                    outer.push(c);
                } else {
                    inner.push(c);
                }
            }
            select.selection = and_all(inner);
        }
        if let Some(cond) = and_all(outer) {
            *e = Expr::Case {
                case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                operand: None,
                conditions: vec![sqlparser::ast::CaseWhen {
                    condition: cond,
                    result: e.clone(),
                }],
                else_result: None,
            };
        }
        ControlFlow::Continue(())
    });
}

fn conjuncts(e: Expr) -> Vec<Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut v = conjuncts(*left);
            v.extend(conjuncts(*right));
            v
        }
        Expr::Nested(inner) => conjuncts(*inner),
        other => vec![other],
    }
}

fn and_all(mut v: Vec<Expr>) -> Option<Expr> {
    let first = if v.is_empty() { return None } else { v.remove(0) };
    Some(v.into_iter().fold(first, |acc, c| Expr::BinaryOp {
        left: Box::new(acc),
        op: BinaryOperator::And,
        right: Box::new(c),
    }))
}

/// Whether `e` reads at least one qualified column and only columns qualified by names that
/// are not the subquery's own relations.
fn reads_only_outer(e: &Expr, inner_names: &[String]) -> bool {
    let mut e = e.clone();
    let mut qualified = 0;
    let mut inner = false;
    let _ = sqlparser::ast::visit_expressions_mut(&mut e, |x| {
        match x {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                qualified += 1;
                if inner_names.contains(&parts[parts.len() - 2].value.to_lowercase()) {
                    inner = true;
                }
            }
            Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => inner = true,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    qualified > 0 && !inner
}

fn has_aggregate(item: &sqlparser::ast::SelectItem) -> bool {
    let text = item.to_string().to_lowercase();
    ["count(", "max(", "min(", "sum(", "avg(", "array_agg(", "string_agg(", "bool_and(", "bool_or("]
        .iter()
        .any(|f| text.starts_with(f))
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn cast(expr: Expr, data_type: DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type,
        array: false,
        format: None,
    }
}

fn rewrite_expr(e: &mut Expr) {
    match e {
        // pg_catalog.fn(...) -> fn(...)
        Expr::Function(f) if f.name.0.len() == 2 => {
            let first = f.name.0[0].as_ident().map(|i| i.value.to_lowercase());
            if first.as_deref() == Some("pg_catalog") {
                f.name.0.remove(0);
            }
        }
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                let sym = parts.last().cloned().unwrap_or_default();
                let mapped = match sym.as_str() {
                    "~" => Some(BinaryOperator::PGRegexMatch),
                    "~*" => Some(BinaryOperator::PGRegexIMatch),
                    "!~" => Some(BinaryOperator::PGRegexNotMatch),
                    "!~*" => Some(BinaryOperator::PGRegexNotIMatch),
                    "=" => Some(BinaryOperator::Eq),
                    "<>" => Some(BinaryOperator::NotEq),
                    "<" => Some(BinaryOperator::Lt),
                    ">" => Some(BinaryOperator::Gt),
                    "<=" => Some(BinaryOperator::LtEq),
                    ">=" => Some(BinaryOperator::GtEq),
                    "~~" => Some(BinaryOperator::PGLikeMatch),
                    "||" => Some(BinaryOperator::StringConcat),
                    _ => None,
                };
                if let Some(m) = mapped {
                    *op = m;
                }
            }
        }
        Expr::Collate { expr, .. } => {
            *e = (**expr).clone();
        }
        Expr::Cast { expr, data_type, .. } => {
            let inner = (**expr).clone();
            let target = match data_type {
                DataType::Custom(name, _) => name.to_string().to_lowercase().replace("pg_catalog.", ""),
                DataType::Regclass => "regclass".into(),
                DataType::JSON | DataType::JSONB => "jsonb".into(),
                DataType::Uuid => "uuid".into(),
                _ => return,
            };
            *e = match target.trim_matches('"') {
                "regclass" => call("freshet_regclass", vec![inner]),
                "regtype" => call("format_type", vec![inner, Expr::value(sqlparser::ast::Value::Null)]),
                "regproc" | "regprocedure" | "regnamespace" | "regrole" | "name" | "char" | "bpchar" | "jsonb"
                | "json" | "uuid" | "text" => cast(inner, DataType::Text),
                "oid" | "xid" | "regoper" | "cid" | "tid" => cast(inner, DataType::BigInt(None)),
                "int2vector" | "oidvector" => cast(inner, DataType::Text),
                _ => return,
            };
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(sql: &str) -> String {
        let mut s = crate::sql::parse(sql).unwrap().remove(0);
        rewrite(&mut s);
        s.to_string()
    }

    #[test]
    fn psql_constructs_become_plain_sql() {
        assert_eq!(
            rw("SELECT pg_catalog.format_type(1, 2) FROM t WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default"),
            "SELECT format_type(1, 2) FROM t WHERE c.relname ~ '^(t)$'"
        );
        assert_eq!(rw("SELECT 't'::regclass"), "SELECT freshet_regclass('t')");
        assert_eq!(rw("SELECT x::oid"), "SELECT CAST(x AS BIGINT)");
    }
}
