//! PostgreSQL compatibility functions that DataFusion lacks: `version()`, `current_schema()`,
//! `pg_table_is_visible()`, `format_type()`, ... — enough for psql, drivers and BI tools.
//!
//! Static functions are registered once; session functions close over the statement's
//! [`QueryEnv`] (user, search path, catalog).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, ListArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, TypeSignature, Volatility};

use super::context::QueryEnv;
use crate::catalog::pg_catalog;

/// The server version reported to clients (psql adapts its catalog queries to it).
pub const SERVER_VERSION: &str = "15.0";

fn udf<F>(name: &str, signature: Signature, ret: DataType, f: F) -> ScalarUDF
where
    F: Fn(&[ColumnarValue]) -> DfResult<ColumnarValue> + Send + Sync + 'static,
{
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(name, signature, ret, Arc::new(f)))
}

fn arities(n: &[usize]) -> Signature {
    let sigs = n
        .iter()
        .map(|k| {
            if *k == 0 {
                TypeSignature::Nullary
            } else {
                TypeSignature::Any(*k)
            }
        })
        .collect();
    Signature::one_of(sigs, Volatility::Stable)
}

fn constant_text(name: &str, value: String) -> ScalarUDF {
    udf(name, arities(&[0]), DataType::Utf8, move |_| {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(value.clone()))))
    })
}

/// Applies `f` row by row over the arguments (as `ScalarValue`s).
fn per_row<T, F, B>(args: &[ColumnarValue], f: F, build: B) -> DfResult<ColumnarValue>
where
    F: Fn(&[ScalarValue]) -> T,
    B: Fn(Vec<T>) -> ArrayRef,
{
    let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let rows = arrays.first().map(|a| a.len()).unwrap_or(1);
    let mut out = Vec::with_capacity(rows);
    let mut row = Vec::with_capacity(arrays.len());
    for i in 0..rows {
        row.clear();
        for a in &arrays {
            row.push(ScalarValue::try_from_array(a, i)?);
        }
        out.push(f(&row));
    }
    let array = build(out);
    if all_scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?))
    } else {
        Ok(ColumnarValue::Array(array))
    }
}

fn text_fn<F>(name: &str, sig: Signature, f: F) -> ScalarUDF
where
    F: Fn(&[ScalarValue]) -> Option<String> + Send + Sync + 'static,
{
    udf(name, sig, DataType::Utf8, move |args| {
        per_row(args, &f, |v| Arc::new(StringArray::from(v)) as ArrayRef)
    })
}

fn bool_fn<F>(name: &str, sig: Signature, f: F) -> ScalarUDF
where
    F: Fn(&[ScalarValue]) -> Option<bool> + Send + Sync + 'static,
{
    udf(name, sig, DataType::Boolean, move |args| {
        per_row(args, &f, |v| Arc::new(BooleanArray::from(v)) as ArrayRef)
    })
}

fn int_fn<F>(name: &str, sig: Signature, f: F) -> ScalarUDF
where
    F: Fn(&[ScalarValue]) -> Option<i64> + Send + Sync + 'static,
{
    udf(name, sig, DataType::Int64, move |args| {
        per_row(args, &f, |v| Arc::new(Int64Array::from(v)) as ArrayRef)
    })
}

/// An integer out of a scalar of any numeric or text type.
pub fn as_i64(v: &ScalarValue) -> Option<i64> {
    if v.is_null() {
        return None;
    }
    match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(x) => x,
        _ => None,
    }
}

pub fn as_string(v: &ScalarValue) -> Option<String> {
    if v.is_null() {
        return None;
    }
    match v.cast_to(&DataType::Utf8).ok()? {
        ScalarValue::Utf8(s) => s,
        _ => None,
    }
}

/// Functions that do not depend on the session.
pub fn static_udfs() -> Vec<ScalarUDF> {
    let always_true = |name: &str, n: &[usize]| bool_fn(name, arities(n), |_| Some(true));
    let null_text = |name: &str, n: &[usize]| text_fn(name, arities(n), |_| None);
    vec![
        constant_text(
            "version",
            format!(
                "PostgreSQL {SERVER_VERSION} (Freshet {}) on x86_64-pc-linux-gnu",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        always_true("pg_table_is_visible", &[1]),
        always_true("pg_type_is_visible", &[1]),
        always_true("pg_function_is_visible", &[1]),
        always_true("pg_opclass_is_visible", &[1]),
        always_true("has_table_privilege", &[2, 3]),
        always_true("has_schema_privilege", &[2, 3]),
        always_true("has_database_privilege", &[2, 3]),
        always_true("has_column_privilege", &[3, 4]),
        always_true("has_function_privilege", &[2, 3]),
        always_true("has_sequence_privilege", &[2, 3]),
        null_text("obj_description", &[1, 2]),
        null_text("col_description", &[2]),
        null_text("shobj_description", &[2]),
        null_text("pg_get_triggerdef", &[1, 2]),
        null_text("pg_get_viewdef", &[1, 2]),
        null_text("pg_get_function_identity_arguments", &[1]),
        null_text("pg_get_function_arguments", &[1]),
        null_text("pg_get_function_result", &[1]),
        null_text("pg_get_statisticsobjdef_columns", &[1]),
        text_fn("pg_get_userbyid", arities(&[1]), |_| Some("freshet".into())),
        text_fn("pg_encoding_to_char", arities(&[1]), |_| Some("UTF8".into())),
        text_fn("pg_get_expr", arities(&[2, 3]), |a| as_string(&a[0])),
        text_fn("format_type", arities(&[2]), |a| {
            let oid = as_i64(&a[0])?;
            pg_catalog::format_type(oid, as_i64(&a[1]).unwrap_or(-1))
        }),
        text_fn("quote_ident", arities(&[1]), |a| {
            let s = as_string(&a[0])?;
            let plain = s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !s.starts_with(|c: char| c.is_ascii_digit());
            Some(if plain && !s.is_empty() {
                s
            } else {
                format!("\"{}\"", s.replace('"', "\"\""))
            })
        }),
        text_fn("pg_size_pretty", arities(&[1]), |a| {
            let n = as_i64(&a[0])?;
            Some(size_pretty(n))
        }),
        int_fn("pg_total_relation_size", arities(&[1]), |_| Some(0)),
        int_fn("pg_relation_size", arities(&[1, 2]), |_| Some(0)),
        int_fn("pg_table_size", arities(&[1]), |_| Some(0)),
        int_fn("pg_database_size", arities(&[1]), |_| Some(0)),
        text_fn("pg_get_partkeydef", arities(&[1]), |_| None),
        text_fn("array_to_string_compat", arities(&[2]), |_| None),
        bool_fn("pg_is_in_recovery", arities(&[0]), |_| Some(false)),
        udf("txid_current", arities(&[0]), DataType::Int64, |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(1))))
        }),
    ]
}

fn size_pretty(n: i64) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 10240.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{} {}", v.round() as i64, units[u])
}

/// Functions that depend on the session (user, search path, catalog).
pub fn session_udfs(env: &QueryEnv) -> Vec<ScalarUDF> {
    let user = env.user.clone();
    let schema = env.default_schema();
    let search_path = env.search_path.clone();
    let catalog = env.view.committed.catalog.clone();
    let catalog2 = catalog.clone();
    let catalog3 = catalog.clone();
    let search_path2 = search_path.clone();
    let schemas_list = {
        let mut v: Vec<String> = vec!["pg_catalog".into()];
        v.extend(search_path.iter().filter(|s| catalog.schema(s).is_some()).cloned());
        v
    };
    vec![
        constant_text("current_user", user.clone()),
        constant_text("session_user", user.clone()),
        constant_text("user", user.clone()),
        constant_text("current_role", user),
        constant_text("current_database", env.database.clone()),
        constant_text("current_catalog", env.database.clone()),
        constant_text("current_schema", schema),
        udf(
            "current_schemas",
            arities(&[1]),
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            move |_| {
                let values = Arc::new(StringArray::from(schemas_list.clone())) as ArrayRef;
                let list = ListArray::new(
                    Arc::new(Field::new("item", DataType::Utf8, true)),
                    datafusion::arrow::buffer::OffsetBuffer::from_lengths([values.len()]),
                    values,
                    None,
                );
                Ok(ColumnarValue::Scalar(ScalarValue::List(Arc::new(list))))
            },
        ),
        int_fn("freshet_regclass", arities(&[1]), move |a| {
            let name = as_string(&a[0])?;
            if let Ok(oid) = name.parse::<i64>() {
                return Some(oid);
            }
            let parts: Vec<String> = name.split('.').map(|p| p.trim_matches('"').to_string()).collect();
            pg_catalog::relation_oid(&catalog2, &parts, &search_path2)
        }),
        text_fn("pg_get_indexdef", arities(&[1, 3]), move |a| {
            pg_catalog::index_def(&catalog3, as_i64(&a[0])?)
        }),
        text_fn("pg_get_constraintdef", arities(&[1, 2]), move |a| {
            pg_catalog::constraint_def(&catalog, as_i64(&a[0])?)
        }),
    ]
}
