//! Parameters of prepared statements (`$1`, `$2`, ...): type inference for Describe, and binding
//! by substitution of typed literals into the statement before it runs.

use std::ops::ControlFlow;

use sqlparser::ast::{CastKind, DataType, Expr, Statement, Value};

use crate::catalog::SqlType;
use crate::error::{Error, Result, SqlState};

/// One bound parameter: its text form (`None`: NULL) and its type, when known.
#[derive(Clone, Debug)]
pub struct BoundParam {
    pub text: Option<String>,
    pub ty: Option<SqlType>,
}

/// The number of distinct `$n` placeholders (the largest n).
pub fn count(stmt: &Statement) -> usize {
    let mut max = 0;
    let mut s = stmt.clone();
    let _ = sqlparser::ast::visit_expressions_mut(&mut s, |e| {
        if let Some(n) = placeholder_index(e) {
            max = max.max(n);
        }
        ControlFlow::<()>::Continue(())
    });
    max
}

fn placeholder_index(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('$').and_then(|n| n.parse().ok()),
            _ => None,
        },
        _ => None,
    }
}

/// A SQL type name DataFusion understands for a cast to `ty`.
fn cast_type(ty: &SqlType) -> Option<DataType> {
    let name = match ty {
        SqlType::Bool => "BOOLEAN".to_string(),
        SqlType::Int2 => "SMALLINT".into(),
        SqlType::Int4 => "INTEGER".into(),
        SqlType::Int8 => "BIGINT".into(),
        SqlType::Float4 => "REAL".into(),
        SqlType::Float8 => "DOUBLE PRECISION".into(),
        SqlType::Numeric(Some((p, s))) => format!("DECIMAL({p},{s})"),
        SqlType::Numeric(None) => "DECIMAL(38,10)".into(),
        SqlType::Date => "DATE".into(),
        SqlType::Time => "TIME".into(),
        SqlType::Timestamp => "TIMESTAMP".into(),
        SqlType::Timestamptz => "TIMESTAMPTZ".into(),
        SqlType::Interval => "INTERVAL".into(),
        _ => return None,
    };
    let stmt = crate::sql::parse(&format!("SELECT CAST(NULL AS {name})")).ok()?.pop()?;
    let mut found = None;
    let mut s = stmt;
    let _ = sqlparser::ast::visit_expressions_mut(&mut s, |e| {
        if let Expr::Cast { data_type, .. } = e {
            found = Some(data_type.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Replaces every `$n` with the literal of `params[n-1]`.
pub fn bind(stmt: &mut Statement, params: &[BoundParam]) -> Result<()> {
    let mut error = None;
    let _ = sqlparser::ast::visit_expressions_mut(stmt, |e| {
        if let Some(n) = placeholder_index(e) {
            let Some(p) = params.get(n.wrapping_sub(1)) else {
                error = Some(Error::user(
                    SqlState::PROTOCOL_VIOLATION,
                    format!("there is no parameter ${n}"),
                ));
                return ControlFlow::Break(());
            };
            *e = literal(p);
        }
        ControlFlow::Continue(())
    });
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn literal(p: &BoundParam) -> Expr {
    let Some(text) = &p.text else {
        return match p.ty.as_ref().and_then(cast_type) {
            Some(dt) => Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(Expr::value(Value::Null)),
                data_type: dt,
                array: false,
                format: None,
            },
            None => Expr::value(Value::Null),
        };
    };
    match &p.ty {
        Some(SqlType::Int2 | SqlType::Int4 | SqlType::Int8) if text.parse::<i64>().is_ok() => {
            let v = Expr::value(Value::Number(text.clone(), false));
            match p.ty.as_ref().and_then(cast_type) {
                Some(dt) => Expr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(v),
                    data_type: dt,
                    array: false,
                    format: None,
                },
                None => v,
            }
        }
        Some(SqlType::Bytea) => Expr::value(Value::HexStringLiteral(
            crate::sql::coerce::decode_bytea(text)
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
                .unwrap_or_default(),
        )),
        Some(ty) => match cast_type(ty) {
            Some(dt) => Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(Expr::value(Value::SingleQuotedString(text.clone()))),
                data_type: dt,
                array: false,
                format: None,
            },
            None => Expr::value(Value::SingleQuotedString(text.clone())),
        },
        None => Expr::value(Value::SingleQuotedString(text.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_typed_literals() {
        let mut s = crate::sql::parse("SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $3")
            .unwrap()
            .remove(0);
        assert_eq!(count(&s), 3);
        bind(
            &mut s,
            &[
                BoundParam {
                    text: Some("42".into()),
                    ty: Some(SqlType::Int4),
                },
                BoundParam {
                    text: Some("it's".into()),
                    ty: None,
                },
                BoundParam { text: None, ty: None },
            ],
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "SELECT * FROM t WHERE a = CAST(42 AS INTEGER) AND b = 'it''s' AND c = NULL"
        );
    }
}
