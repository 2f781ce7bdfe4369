//! Compatibility rewrites applied to every statement before DataFusion plans it.
//!
//! psql, drivers and BI tools send PostgreSQL-specific syntax that DataFusion's planner does
//! not know: `pg_catalog.` qualified function names, `OPERATOR(pg_catalog.~)`, `COLLATE`,
//! casts to `regclass` / `oid` / `name` / `"char"`, `ARRAY(subquery)`. These are rewritten into
//! plain SQL with the same meaning (e.g. `'t'::regclass` becomes `freshet_regclass('t')`).
//!
//! `regclass` and `regnamespace` are OID types that print as names. A cast of a literal or a
//! parameter is an input (`'t'::regclass` compares with OIDs) and becomes the OID; a cast of any
//! other expression (`c.oid::regclass` in a select list) is an output and becomes the name.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Statement,
};

/// Rewrites `stmt` in place.
pub fn rewrite(stmt: &mut Statement) {
    super::temporal::rewrite(stmt);
    super::windows::rewrite_windows(stmt);
    let _ = sqlparser::ast::visit_expressions_mut(stmt, |e| {
        rewrite_expr(e);
        ControlFlow::<()>::Continue(())
    });
    let _ = sqlparser::ast::VisitMut::visit(stmt, &mut SelectListFixer);
}

/// Select-list rewrites DataFusion needs:
/// - `EXISTS (SELECT .. FROM .. WHERE ..)` as a value (DataFusion plans EXISTS only as a
///   filter) becomes `(SELECT count(*) FROM .. WHERE ..) > 0`;
/// - repeated unaliased items (`SELECT name, NULL, NULL`), which PostgreSQL allows and
///   DataFusion refuses as duplicate names, get distinct aliases from the second on.
struct SelectListFixer;

impl sqlparser::ast::VisitorMut for SelectListFixer {
    type Break = ();

    /// `FROM pg_catalog.generate_series(..)`: table functions are known by their bare names.
    fn pre_visit_table_factor(&mut self, t: &mut sqlparser::ast::TableFactor) -> ControlFlow<()> {
        if let sqlparser::ast::TableFactor::Table {
            name, args: Some(_), ..
        } = t
        {
            let first = name
                .0
                .first()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_lowercase());
            if name.0.len() == 2 && first.as_deref() == Some("pg_catalog") {
                name.0.remove(0);
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &mut sqlparser::ast::Select) -> ControlFlow<()> {
        use sqlparser::ast::SelectItem;
        for item in select.projection.iter_mut() {
            if let SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } = item {
                let _ = sqlparser::ast::visit_expressions_mut(x, |e| {
                    if let Expr::Exists { subquery, negated } = e {
                        if let Some(count) = exists_as_count(subquery) {
                            *e = Expr::BinaryOp {
                                left: Box::new(count),
                                op: if *negated {
                                    BinaryOperator::Eq
                                } else {
                                    BinaryOperator::Gt
                                },
                                right: Box::new(Expr::value(sqlparser::ast::Value::Number("0".into(), false))),
                            };
                        }
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (n, item) in select.projection.iter_mut().enumerate() {
            if let SelectItem::UnnamedExpr(x) = item {
                if !seen.insert(x.to_string()) {
                    *item = SelectItem::ExprWithAlias {
                        expr: x.clone(),
                        alias: Ident::with_quote('"', format!("?column?{}", n + 1)),
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `(SELECT count(*) FROM .. WHERE ..)` for the subquery of an EXISTS, when it is a plain
/// SELECT (no grouping, DISTINCT or LIMIT, which would change the count's meaning).
fn exists_as_count(q: &sqlparser::ast::Query) -> Option<Expr> {
    let sqlparser::ast::SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let grouped = !matches!(&select.group_by, sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty());
    if grouped || select.having.is_some() || q.limit_clause.is_some() || q.fetch.is_some() || q.with.is_some() {
        return None;
    }
    let mut count = Box::new(q.clone());
    count.order_by = None;
    if let sqlparser::ast::SetExpr::Select(sel) = count.body.as_mut() {
        sel.distinct = None;
        let mut f = call("count", vec![]);
        if let Expr::Function(func) = &mut f {
            if let FunctionArguments::List(l) = &mut func.args {
                l.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)];
            }
        }
        sel.projection = vec![sqlparser::ast::SelectItem::UnnamedExpr(f)];
    }
    Some(Expr::Subquery(count))
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
        let reads_collations = select
            .from
            .iter()
            .any(|t| t.relation.to_string().contains("pg_collation"));
        let compares_collations = select
            .selection
            .as_ref()
            .is_some_and(|w| w.to_string().contains("collation <>"));
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
        let inner_names = relation_names(select);
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

/// The names (aliases, else last name parts) by which a SELECT's own relations are qualified.
fn relation_names(select: &sqlparser::ast::Select) -> Vec<String> {
    select
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
        .collect()
}

/// Whether `e` reads no column qualified by a name outside `inner_names` (unqualified columns
/// are taken as the subquery's own).
fn reads_no_outer(e: &Expr, inner_names: &[String]) -> bool {
    let mut e = e.clone();
    let mut outer = false;
    let _ = sqlparser::ast::visit_expressions_mut(&mut e, |x| {
        if let Expr::CompoundIdentifier(parts) = x {
            if parts.len() >= 2 && !inner_names.contains(&parts[parts.len() - 2].value.to_lowercase()) {
                outer = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    !outer
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
    [
        "count(",
        "max(",
        "min(",
        "sum(",
        "avg(",
        "array_agg(",
        "string_agg(",
        "bool_and(",
        "bool_or(",
    ]
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

/// `ARRAY(SELECT x FROM .. WHERE .. ORDER BY ..)` becomes
/// `coalesce((SELECT array_agg(x ORDER BY ..) FROM .. WHERE ..), [])`, the same array (an empty
/// subquery gives an empty array, not NULL). Subqueries that are not a plain single-column
/// SELECT (grouped, DISTINCT, LIMIT, set operations) are left alone, so DataFusion refuses
/// them by name rather than answering wrongly.
fn array_subquery(q: &sqlparser::ast::Query) -> Option<Expr> {
    use sqlparser::ast::{FunctionArgumentClause, OrderByKind, SelectItem, SetExpr, Value};
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let grouped = !matches!(&select.group_by, sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty());
    if grouped
        || select.having.is_some()
        || select.distinct.is_some()
        || q.limit_clause.is_some()
        || q.fetch.is_some()
        || q.with.is_some()
        || select.projection.len() != 1
    {
        return None;
    }
    let (item, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(x) => (x.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.value.to_lowercase())),
        _ => return None,
    };
    if has_aggregate(&select.projection[0]) {
        return None;
    }
    let mut order = Vec::new();
    if let Some(ob) = &q.order_by {
        let OrderByKind::Expressions(exprs) = &ob.kind else {
            return None;
        };
        for o in exprs {
            let mut o = o.clone();
            // `ORDER BY 1` and `ORDER BY alias` name the select item.
            let names_item = match &o.expr {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, _) if n == "1" => true,
                    Value::Number(..) => return None,
                    _ => false,
                },
                Expr::Identifier(id) => alias.as_deref() == Some(id.value.to_lowercase().as_str()),
                _ => false,
            };
            if names_item {
                o.expr = item.clone();
            }
            order.push(o);
        }
    }
    // A correlation `k = ANY(outer.list)` (DataFusion decorrelates only equalities) is
    // evaluated by `freshet_any_lookup` over the uncorrelated list of (k, item) pairs.
    let inner_names = relation_names(select);
    let mut lookup = None;
    let mut rest = Vec::new();
    for c in select.selection.clone().map(conjuncts).unwrap_or_default() {
        match &c {
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } if lookup.is_none() && reads_no_outer(left, &inner_names) && reads_only_outer(right, &inner_names) => {
                lookup = Some(((**left).clone(), (**right).clone()));
            }
            _ => rest.push(c),
        }
    }
    let aggregated = match &lookup {
        Some((key, _)) => call("struct", vec![key.clone(), item]),
        None => item,
    };
    let mut agg = call("array_agg", vec![aggregated]);
    if let Expr::Function(f) = &mut agg {
        if let FunctionArguments::List(l) = &mut f.args {
            if !order.is_empty() {
                l.clauses.push(FunctionArgumentClause::OrderBy(order));
            }
        }
    }
    let mut inner = Box::new(q.clone());
    inner.order_by = None;
    if let SetExpr::Select(sel) = inner.body.as_mut() {
        sel.projection = vec![SelectItem::UnnamedExpr(agg)];
        if lookup.is_some() {
            sel.selection = and_all(rest);
        }
    }
    Some(match lookup {
        Some((_, keys)) => call("freshet_any_lookup", vec![keys, Expr::Subquery(inner)]),
        None => call("coalesce", vec![Expr::Subquery(inner), call("make_array", vec![])]),
    })
}

/// `pg_catalog.int2` (and arrays of such) as the plain type DataFusion knows (`int2`); names
/// that are not plain SQL types (`regclass`, `name`, ...) stay for the cast rewrite.
fn unqualify_type(dt: &mut DataType) {
    match dt {
        DataType::Custom(name, modifiers) if modifiers.is_empty() && name.0.len() == 2 => {
            let text = name.to_string().to_lowercase();
            let Some(bare) = text.strip_prefix("pg_catalog.") else {
                return;
            };
            let parsed = sqlparser::parser::Parser::new(&super::dialect::FreshetDialect::default())
                .try_with_sql(bare)
                .and_then(|mut p| p.parse_data_type());
            if let Ok(t) = parsed {
                if !matches!(t, DataType::Custom(..)) {
                    *dt = t;
                }
            }
        }
        DataType::Array(sqlparser::ast::ArrayElemTypeDef::SquareBracket(inner, _)) => unqualify_type(inner),
        _ => {}
    }
}

/// A string literal in PostgreSQL's array syntax, `'{..}'`.
fn is_array_literal(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(&v.value, sqlparser::ast::Value::SingleQuotedString(s) if s.starts_with('{') && s.ends_with('}')))
}

fn rewrite_expr(e: &mut Expr) {
    match e {
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("array") => {
            if let FunctionArguments::Subquery(q) = &f.args {
                if let Some(replacement) = array_subquery(q) {
                    *e = replacement;
                }
            }
        }
        // to_char(x, 'PostgreSQL pattern') -> to_char(x, 'chrono format')
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("to_char") => {
            if let FunctionArguments::List(l) = &mut f.args {
                if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) = l.args.get_mut(1) {
                    if let sqlparser::ast::Value::SingleQuotedString(p) = &mut v.value {
                        *p = super::datetime_format::pg_to_chrono(p);
                    }
                }
            }
        }
        // pg_catalog.fn(...) -> fn(...)
        Expr::Function(f) if f.name.0.len() == 2 => {
            let first = f.name.0[0].as_ident().map(|i| i.value.to_lowercase());
            if first.as_deref() == Some("pg_catalog") {
                f.name.0.remove(0);
            }
        }
        Expr::BinaryOp {
            left,
            op: op @ (BinaryOperator::Eq | BinaryOperator::NotEq),
            right,
        } if is_array_literal(right) && !matches!(**left, Expr::Value(_)) => {
            let eq = call("freshet_eq_array_literal", vec![(**left).clone(), (**right).clone()]);
            *e = if *op == BinaryOperator::Eq {
                eq
            } else {
                Expr::UnaryOp {
                    op: sqlparser::ast::UnaryOperator::Not,
                    expr: Box::new(eq),
                }
            };
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
            unqualify_type(data_type);
            let inner = (**expr).clone();
            let target = match data_type {
                DataType::Custom(name, _) => name.to_string().to_lowercase().replace("pg_catalog.", ""),
                DataType::Regclass => "regclass".into(),
                DataType::JSON | DataType::JSONB => "jsonb".into(),
                DataType::Uuid => "uuid".into(),
                _ => return,
            };
            // A literal or a parameter is an input (a name to resolve); anything else an output.
            let input = matches!(inner, Expr::Value(_))
                || matches!(&inner, Expr::Cast { expr, .. } if matches!(**expr, Expr::Value(_)));
            *e = match target.trim_matches('"') {
                "regclass" if input => call("freshet_regclass", vec![inner]),
                "regclass" => call("freshet_relname", vec![inner]),
                "regnamespace" if input => call("freshet_regnamespace", vec![inner]),
                "regnamespace" => call("freshet_nspname", vec![inner]),
                "regtype" => call("format_type", vec![inner, Expr::value(sqlparser::ast::Value::Null)]),
                "regproc" | "regprocedure" | "regrole" | "name" | "char" | "bpchar" | "jsonb" | "json" | "uuid"
                | "text" => cast(inner, DataType::Text),
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
        assert_eq!(rw("SELECT x::pg_catalog.int2[]"), "SELECT x::INT2[]");
        assert_eq!(rw("SELECT c.oid::regclass"), "SELECT freshet_relname(c.oid)");
        assert_eq!(rw("SELECT $1::regclass"), "SELECT freshet_regclass($1)");
    }

    #[test]
    fn array_subquery_becomes_an_ordered_array_agg() {
        assert_eq!(
            rw("SELECT array(select r.rolname from pg_roles r where r.oid = p.owner order by 1) FROM p"),
            "SELECT coalesce((SELECT array_agg(r.rolname ORDER BY r.rolname) FROM pg_roles r WHERE r.oid = p.owner), make_array()) FROM p"
        );
        assert_eq!(
            rw("SELECT a, NULL, NULL, EXISTS (SELECT 1 FROM c WHERE c.r = t.r) AS e FROM t"),
            "SELECT a, NULL, NULL AS \"?column?3\", (SELECT count(*) FROM c WHERE c.r = t.r) > 0 AS e FROM t"
        );
        assert_eq!(
            rw("SELECT 1 WHERE x.a = '{0}'"),
            "SELECT 1 WHERE freshet_eq_array_literal(x.a, '{0}')"
        );
        assert_eq!(
            rw("SELECT array(select rolname from pg_roles where oid = any (p.r) and rolcanlogin order by 1) FROM p"),
            "SELECT freshet_any_lookup(p.r, (SELECT array_agg(struct(oid, rolname) ORDER BY rolname) FROM pg_roles WHERE rolcanlogin)) FROM p"
        );
        assert_eq!(
            rw("SELECT ARRAY(SELECT a AS x FROM t ORDER BY x DESC, b)"),
            "SELECT coalesce((SELECT array_agg(a ORDER BY a DESC, b) FROM t), make_array())"
        );
        // Not a plain single-column select: left for DataFusion to refuse by name.
        assert_eq!(
            rw("SELECT ARRAY(SELECT a FROM t LIMIT 2)"),
            "SELECT ARRAY(SELECT a FROM t LIMIT 2)"
        );
    }
}
