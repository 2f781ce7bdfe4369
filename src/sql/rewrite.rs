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
        Expr::Function(f) => {
            // pg_catalog.fn(...) -> fn(...)
            if f.name.0.len() == 2 {
                let first = f.name.0[0].as_ident().map(|i| i.value.to_lowercase());
                if first.as_deref() == Some("pg_catalog") {
                    f.name.0.remove(0);
                }
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
