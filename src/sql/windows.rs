//! Time windows in FROM, in RisingWave's form, rewritten into plain SQL before planning:
//!
//! - `TUMBLE(t, col, size)`: every row of `t` with `window_start` / `window_end` of the one
//!   window of `size` holding `col`:
//!   `(SELECT *, date_bin(size, col, epoch) AS window_start, .. + size AS window_end FROM t) AS t`
//!   (`+ size` as a duration: integer arithmetic);
//! - `HOP(t, col, slide, size)`: every row once per window of `size` starting every `slide`
//!   that holds `col` (`size` a multiple of `slide`): a UNION ALL of `size / slide`
//!   projections, the i-th starting at `date_bin(slide, col, epoch) - i * slide`.
//!
//! Both become projections (and a UNION ALL), which ad-hoc queries run as they are and
//! materialized views maintain incrementally with the operators they already have. The alias
//! defaults to the table's name, so `bid.price` and `window_start` both resolve.

use std::ops::ControlFlow;

use super::dialect::FreshetDialect;
use sqlparser::ast::{
    DateTimeField, Expr, FunctionArg, FunctionArgExpr, Interval, Query, SetExpr, TableFactor, Value, VisitorMut,
};
use sqlparser::parser::Parser;

const EPOCH: &str = "TIMESTAMP '1970-01-01 00:00:00'";

/// Rewrites every TUMBLE / HOP in FROM of `stmt`. Calls that are not well formed stay as they
/// are (DataFusion then reports the unknown table function).
pub fn rewrite_windows(stmt: &mut sqlparser::ast::Statement) {
    let _ = sqlparser::ast::VisitMut::visit(stmt, &mut Windows);
}

struct Windows;

impl VisitorMut for Windows {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        if let Some(derived) = window_factor(t) {
            *t = derived;
        }
        ControlFlow::Continue(())
    }
}

fn window_factor(t: &TableFactor) -> Option<TableFactor> {
    let TableFactor::Table {
        name,
        alias,
        args: Some(args),
        ..
    } = t
    else {
        return None;
    };
    let func = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    if func != "tumble" && func != "hop" {
        return None;
    }
    let args: Vec<&Expr> = args
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let table = match args.first()? {
        Expr::Identifier(i) => i.to_string(),
        Expr::CompoundIdentifier(parts) => parts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("."),
        _ => return None,
    };
    let column = args.get(1)?.to_string();
    let alias = match alias {
        Some(a) => a.name.to_string(),
        None => table.rsplit('.').next()?.to_string(),
    };
    let sql = match (func.as_str(), args.len()) {
        ("tumble", 3) => {
            let size = micros(args[2])?;
            let start = format!("date_bin(INTERVAL '{size} microseconds', {column}, {EPOCH})");
            format!(
                "SELECT *, {start} AS window_start, {start} + {} AS window_end FROM {table}",
                duration(size)
            )
        }
        ("hop", 4) => {
            let slide = micros(args[2])?;
            let size = micros(args[3])?;
            if slide <= 0 || size <= 0 || size % slide != 0 || size / slide > 1000 {
                return None;
            }
            let base = format!("date_bin(INTERVAL '{slide} microseconds', {column}, {EPOCH})");
            (0..size / slide)
                .map(|i| {
                    let start = format!("{base} - {}", duration(i * slide));
                    format!(
                        "SELECT *, {start} AS window_start, {start} + {} AS window_end FROM {table}",
                        duration(size)
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        }
        _ => return None,
    };
    let wrapped = format!("SELECT * FROM ({sql}) AS {alias}");
    let query: Box<Query> = Parser::new(&FreshetDialect::default())
        .try_with_sql(&wrapped)
        .ok()?
        .parse_query()
        .ok()?;
    let SetExpr::Select(select) = *query.body else {
        return None;
    };
    select.from.into_iter().next().map(|f| f.relation)
}

/// A fixed length as a duration literal: a timestamp plus or minus a duration is integer
/// arithmetic, where plus or minus an interval goes through calendar arithmetic per row (an
/// interval may hold months; a duration never does). It was an eighth of q5's CPU.
fn duration(micros: i64) -> String {
    format!("arrow_cast({micros}, 'Duration(Microsecond)')")
}

/// The length of a fixed interval literal in microseconds (None for months or non-literals).
fn micros(e: &Expr) -> Option<i64> {
    let Expr::Interval(Interval {
        value, leading_field, ..
    }) = e
    else {
        return None;
    };
    let text = match value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.clone(),
            _ => return None,
        },
        _ => return None,
    };
    let unit = match leading_field {
        None => "",
        Some(DateTimeField::Second) | Some(DateTimeField::Seconds) => " seconds",
        Some(DateTimeField::Minute) | Some(DateTimeField::Minutes) => " minutes",
        Some(DateTimeField::Hour) | Some(DateTimeField::Hours) => " hours",
        Some(DateTimeField::Day) | Some(DateTimeField::Days) => " days",
        _ => return None,
    };
    let iv = crate::sql::coerce::parse_interval(&format!("{text}{unit}"))?;
    if iv.months != 0 {
        return None;
    }
    Some(iv.days as i64 * 86_400_000_000 + iv.nanoseconds / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::new(&FreshetDialect::default())
            .try_with_sql(sql)
            .unwrap()
            .parse_statement()
            .unwrap();
        rewrite_windows(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn tumble_becomes_a_projection() {
        let s = rewritten(
            "SELECT window_start, count(*) FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) GROUP BY window_start",
        );
        assert!(
            s.contains("date_bin(INTERVAL '10000000 microseconds', date_time"),
            "{s}"
        );
        assert!(s.contains(") AS bid GROUP BY"), "{s}");
    }

    #[test]
    fn hop_becomes_a_union_of_its_windows() {
        let s = rewritten("SELECT * FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS h");
        assert_eq!(s.matches("UNION ALL").count(), 4, "{s}");
        assert!(s.contains("- arrow_cast(8000000, 'Duration(Microsecond)')"), "{s}");
        assert!(s.ends_with("AS h"), "{s}");
        // Not a multiple, or months: left alone.
        let s = rewritten("SELECT * FROM HOP(bid, date_time, INTERVAL '3' SECOND, INTERVAL '10' SECOND)");
        assert!(s.contains("HOP(bid"), "{s}");
        let s = rewritten("SELECT * FROM TUMBLE(bid, date_time, INTERVAL '1' MONTH)");
        assert!(s.contains("TUMBLE(bid"), "{s}");
    }
}
