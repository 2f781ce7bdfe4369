//! Primary-key pushdown: turns filters on primary-key columns into store key ranges, so that
//! `WHERE id = 42` reads one key and `WHERE id BETWEEN 10 AND 20` one range, never the table.
//!
//! Ranges are a superset of the matching rows (DataFusion still applies every filter), so an
//! unrecognised filter simply leaves the full-table range.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

use crate::catalog::Table;
use crate::error::Result;
use crate::state::keys;

/// A half-open key range `[from, to)` of full store keys.
pub type KeyRange = (Vec<u8>, Vec<u8>);

/// Bounds on the first primary-key column (or exact values of it).
#[derive(Default, Debug)]
struct Bounds {
    points: Option<Vec<ScalarValue>>,
    lower: Option<(ScalarValue, bool)>,
    upper: Option<(ScalarValue, bool)>,
}

/// The key ranges to scan for `filters` (all ANDed). One full-table range when nothing helps.
pub fn key_ranges(table: &Table, filters: &[Expr]) -> Result<Vec<KeyRange>> {
    let full = keys::table_range(table.def.id);
    let Some(&first) = table.def.primary_key.first() else {
        return Ok(vec![full]);
    };
    let col_name = &table.def.columns[first].name;
    let col_type = table.full_schema.field(first).data_type().clone();
    let mut b = Bounds::default();
    for f in filters {
        collect(f, col_name, &col_type, &mut b);
    }
    let prefix = keys::table_prefix(table.def.id);
    let codec = match table.def.primary_key.len() {
        1 => None,
        _ => Some(crate::state::row_codec::RowCodec::new(std::slice::from_ref(&col_type))?),
    };
    let encode = |v: &ScalarValue| -> Result<Vec<u8>> {
        let arr = v.to_array_of_size(1)?;
        let row = match &codec {
            Some(c) => c.encode_one(&[arr])?,
            None => table.key_codec.encode_one(&[arr])?,
        };
        let mut k = prefix.clone();
        k.extend_from_slice(row.row().as_ref());
        Ok(k)
    };
    if let Some(points) = b.points {
        let mut ranges = Vec::with_capacity(points.len());
        for p in points {
            if p.is_null() {
                continue;
            }
            let k = encode(&p)?;
            let end = keys::prefix_end(&k).unwrap_or_else(|| full.1.clone());
            ranges.push((k, end));
        }
        ranges.sort();
        ranges.dedup();
        return Ok(ranges);
    }
    let from = match &b.lower {
        Some((v, inclusive)) if !v.is_null() => {
            let k = encode(v)?;
            if *inclusive {
                k
            } else {
                keys::prefix_end(&k).unwrap_or_else(|| full.1.clone())
            }
        }
        _ => full.0.clone(),
    };
    let to = match &b.upper {
        Some((v, inclusive)) if !v.is_null() => {
            let k = encode(v)?;
            if *inclusive {
                keys::prefix_end(&k).unwrap_or_else(|| full.1.clone())
            } else {
                k
            }
        }
        _ => full.1.clone(),
    };
    if from >= to {
        return Ok(vec![]);
    }
    Ok(vec![(from, to)])
}

/// Whether `e` is a filter this module can narrow the scan with.
pub fn is_key_filter(table: &Table, e: &Expr) -> bool {
    let Some(&first) = table.def.primary_key.first() else {
        return false;
    };
    let mut b = Bounds::default();
    collect(
        e,
        &table.def.columns[first].name,
        table.full_schema.field(first).data_type(),
        &mut b,
    );
    b.points.is_some() || b.lower.is_some() || b.upper.is_some()
}

fn literal_of(e: &Expr, ty: &datafusion::arrow::datatypes::DataType) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) if v.data_type() == *ty => Some(v.clone()),
        _ => None,
    }
}

fn is_col(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Column(c) if c.name == name)
}

fn collect(e: &Expr, col: &str, ty: &datafusion::arrow::datatypes::DataType, b: &mut Bounds) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                collect(left, col, ty, b);
                collect(right, col, ty, b);
                return;
            }
            let (op, v) = if is_col(left, col) {
                match literal_of(right, ty) {
                    Some(v) => (*op, v),
                    None => return,
                }
            } else if is_col(right, col) {
                match (literal_of(left, ty), op.swap()) {
                    (Some(v), Some(op)) => (op, v),
                    _ => return,
                }
            } else {
                return;
            };
            match op {
                Operator::Eq => b.points = Some(vec![v]),
                Operator::Gt => tighten_lower(b, v, false),
                Operator::GtEq => tighten_lower(b, v, true),
                Operator::Lt => tighten_upper(b, v, false),
                Operator::LtEq => tighten_upper(b, v, true),
                _ => {}
            }
        }
        Expr::InList(list) if !list.negated && is_col(&list.expr, col) => {
            let vals: Option<Vec<_>> = list.list.iter().map(|x| literal_of(x, ty)).collect();
            if let Some(vals) = vals {
                b.points = Some(vals);
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_col(expr, col) => {
            if let (Some(lo), Some(hi)) = (literal_of(low, ty), literal_of(high, ty)) {
                tighten_lower(b, lo, true);
                tighten_upper(b, hi, true);
            }
        }
        _ => {}
    }
}

fn tighten_lower(b: &mut Bounds, v: ScalarValue, inclusive: bool) {
    let replace = match &b.lower {
        None => true,
        Some((cur, _)) => v.partial_cmp(cur) == Some(std::cmp::Ordering::Greater),
    };
    if replace {
        b.lower = Some((v, inclusive));
    }
}

fn tighten_upper(b: &mut Bounds, v: ScalarValue, inclusive: bool) {
    let replace = match &b.upper {
        None => true,
        Some((cur, _)) => v.partial_cmp(cur) == Some(std::cmp::Ordering::Less),
    };
    if replace {
        b.upper = Some((v, inclusive));
    }
}
