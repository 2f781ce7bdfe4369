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

/// The server version reported to clients (psql adapts its catalog queries to it). Freshet
/// answers PostgreSQL 14's catalog queries: psql 15 asks a 15 server for publication column
/// lists with a correlated `generate_series` in FROM, which DataFusion cannot plan.
pub const SERVER_VERSION: &str = "14.0";

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

/// Applies `f` row by row over the arguments (as `ScalarValue`s); the first error ends the call.
fn per_row<T, F, B>(args: &[ColumnarValue], f: F, build: B) -> DfResult<ColumnarValue>
where
    F: Fn(&[ScalarValue]) -> DfResult<T>,
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
        out.push(f(&row)?);
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
        per_row(args, |r| Ok(f(r)), |v| Arc::new(StringArray::from(v)) as ArrayRef)
    })
}

fn bool_fn<F>(name: &str, sig: Signature, f: F) -> ScalarUDF
where
    F: Fn(&[ScalarValue]) -> Option<bool> + Send + Sync + 'static,
{
    udf(name, sig, DataType::Boolean, move |args| {
        per_row(args, |r| Ok(f(r)), |v| Arc::new(BooleanArray::from(v)) as ArrayRef)
    })
}

fn int_fn<F>(name: &str, sig: Signature, f: F) -> ScalarUDF
where
    F: Fn(&[ScalarValue]) -> Option<i64> + Send + Sync + 'static,
{
    try_int_fn(name, sig, move |r| Ok(f(r)))
}

/// An integer function that can fail (e.g. a name that resolves to nothing).
fn try_int_fn<F>(name: &str, sig: Signature, f: F) -> ScalarUDF
where
    F: Fn(&[ScalarValue]) -> DfResult<Option<i64>> + Send + Sync + 'static,
{
    udf(name, sig, DataType::Int64, move |args| {
        per_row(args, &f, |v| Arc::new(Int64Array::from(v)) as ArrayRef)
    })
}

/// A Freshet error carried through DataFusion, so the client sees its SQLSTATE.
fn user_error(state: crate::error::SqlState, message: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::Error::user(state, message)))
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
            Some(pg_catalog::quote_ident(&as_string(&a[0])?))
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
        // Freshet has no publications (pg_publication is empty), so nothing is published.
        bool_fn("pg_relation_is_publishable", arities(&[1]), |_| Some(false)),
        ScalarUDF::from(AnyLookup {
            signature: Signature::any(2, Volatility::Immutable),
        }),
        // `x = '{..}'`: PostgreSQL reads the literal as an array when `x` is one.
        bool_fn("freshet_eq_array_literal", arities(&[2]), |a| {
            let lit = as_string(&a[1])?;
            if matches!(a[0], ScalarValue::List(_)) {
                let norm = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
                Some(norm(&pg_text(&a[0])?) == norm(&lit))
            } else {
                Some(as_string(&a[0])? == lit)
            }
        }),
        int_fn("array_upper", arities(&[2]), |a| {
            // Freshet arrays are one-dimensional and start at 1, so the upper bound is the length.
            let len = list_len(&a[0])?;
            (as_i64(&a[1]) == Some(1) && len > 0).then_some(len)
        }),
        int_fn("array_lower", arities(&[2]), |a| {
            let len = list_len(&a[0])?;
            (as_i64(&a[1]) == Some(1) && len > 0).then_some(1)
        }),
        udf("txid_current", arities(&[0]), DataType::Int64, |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(1))))
        }),
        // DataFusion's to_char, with the format parsed once per batch.
        super::to_char::udf(),
    ]
}

/// The number of elements of a list scalar (NULL for NULL or a non-list).
fn list_len(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::List(l) if !l.is_null(0) => Some(l.value(0).len() as i64),
        ScalarValue::LargeList(l) if !l.is_null(0) => Some(l.value(0).len() as i64),
        ScalarValue::FixedSizeList(l) if !l.is_null(0) => Some(l.value(0).len() as i64),
        _ => None,
    }
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

/// `freshet_any_lookup(keys, pairs)`: the values of `pairs` (a list of `{key, value}` structs,
/// in order) whose key is an element of the list `keys`; an empty list when `keys` is NULL.
/// The rewrite of `ARRAY(SELECT v FROM r WHERE r.k = ANY(outer.keys) ORDER BY ..)` calls it
/// with the uncorrelated `(SELECT array_agg(struct(k, v) ORDER BY ..) FROM r)`, because
/// DataFusion cannot decorrelate a subquery whose correlation is not an equality.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AnyLookup {
    signature: Signature,
}

impl datafusion::logical_expr::ScalarUDFImpl for AnyLookup {
    fn name(&self) -> &str {
        "freshet_any_lookup"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let value = match arg_types.get(1) {
            Some(DataType::List(f)) => match f.data_type() {
                DataType::Struct(fields) if fields.len() == 2 => fields[1].data_type().clone(),
                _ => DataType::Null,
            },
            _ => DataType::Null,
        };
        if value == DataType::Null {
            return Err(datafusion::error::DataFusionError::Plan(
                "freshet_any_lookup needs a list of {key, value} structs".into(),
            ));
        }
        Ok(DataType::List(Arc::new(Field::new("item", value, true))))
    }
    fn invoke_with_args(&self, args: datafusion::logical_expr::ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let value_type = match args.return_field.data_type() {
            DataType::List(f) => f.data_type().clone(),
            other => other.clone(),
        };
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..arrays[0].len() {
            let keys = list_values(&ScalarValue::try_from_array(&arrays[0], row)?)?;
            let mut picked = Vec::new();
            if let ScalarValue::List(pairs) = ScalarValue::try_from_array(&arrays[1], row)? {
                if !pairs.is_null(0) {
                    let entries = pairs.value(0);
                    for i in 0..entries.len() {
                        let ScalarValue::Struct(st) = ScalarValue::try_from_array(&entries, i)? else {
                            continue;
                        };
                        let key = ScalarValue::try_from_array(st.column(0), 0)?;
                        let hit = !key.is_null()
                            && keys
                                .iter()
                                .any(|k| k == &key || key.cast_to(&k.data_type()).is_ok_and(|c| &c == k));
                        if hit {
                            picked.push(ScalarValue::try_from_array(st.column(1), 0)?);
                        }
                    }
                }
            }
            out.push(ScalarValue::List(ScalarValue::new_list_nullable(&picked, &value_type)));
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(datafusion::arrow::array::new_empty_array(
                args.return_field.data_type(),
            )));
        }
        let array = ScalarValue::iter_to_array(out)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?))
        } else {
            Ok(ColumnarValue::Array(array))
        }
    }
}

/// The elements of a list scalar (none for NULL).
fn list_values(v: &ScalarValue) -> DfResult<Vec<ScalarValue>> {
    let ScalarValue::List(l) = v else {
        return Ok(vec![]);
    };
    if l.is_null(0) {
        return Ok(vec![]);
    }
    let values = l.value(0);
    (0..values.len())
        .map(|i| ScalarValue::try_from_array(&values, i))
        .collect()
}

/// PostgreSQL's text form of a value as far as comparing with an array literal needs it:
/// lists as `{a,b}`, everything else as its text.
fn pg_text(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::List(_) => {
            let items: Vec<String> = list_values(v)
                .ok()?
                .iter()
                .map(|e| as_string(e).unwrap_or_else(|| "NULL".into()))
                .collect();
            Some(format!("{{{}}}", items.join(",")))
        }
        other => as_string(other),
    }
}

/// Functions that depend on the session (user, search path, catalog).
pub fn session_udfs(env: &QueryEnv) -> Vec<ScalarUDF> {
    let user = env.user.clone();
    let schema = env.default_schema();
    let search_path = env.search_path.clone();
    let catalog = env.view.committed.catalog.clone();
    let catalog2 = catalog.clone();
    let catalog3 = catalog.clone();
    let catalog4 = catalog.clone();
    let catalog5 = catalog.clone();
    let catalog6 = catalog.clone();
    let catalog7 = catalog.clone();
    let catalog8 = catalog.clone();
    let catalog9 = catalog.clone();
    let search_path4 = search_path.clone();
    let search_path2 = search_path.clone();
    let search_path3 = search_path.clone();
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
        // `'name'::regclass`: the OID of a relation, an error when there is none (as in PostgreSQL).
        try_int_fn("freshet_regclass", arities(&[1]), move |a| {
            let Some(name) = as_string(&a[0]) else {
                return Ok(None);
            };
            if let Ok(oid) = name.parse::<i64>() {
                return Ok(Some(oid));
            }
            let parts = pg_catalog::split_qualified_name(&name);
            match pg_catalog::relation_oid(&catalog2, &parts, &search_path2) {
                Some(oid) => Ok(Some(oid)),
                None => Err(user_error(
                    crate::error::SqlState::UNDEFINED_TABLE,
                    format!("relation \"{name}\" does not exist"),
                )),
            }
        }),
        // `oid::regclass` as output: the relation's name, qualified when its schema is not on
        // the search path; an unknown OID prints as its number (as in PostgreSQL).
        text_fn("freshet_relname", arities(&[1]), move |a| {
            let oid = as_i64(&a[0])?;
            Some(pg_catalog::relation_name(&catalog4, oid, &search_path3).unwrap_or_else(|| oid.to_string()))
        }),
        try_int_fn("freshet_regnamespace", arities(&[1]), move |a| {
            let Some(name) = as_string(&a[0]) else {
                return Ok(None);
            };
            if let Ok(oid) = name.parse::<i64>() {
                return Ok(Some(oid));
            }
            let name = name.trim_matches('"');
            match pg_catalog::namespace_oid(&catalog5, name) {
                Some(oid) => Ok(Some(oid)),
                None => Err(user_error(
                    crate::error::SqlState::INVALID_SCHEMA_NAME,
                    format!("schema \"{name}\" does not exist"),
                )),
            }
        }),
        int_fn("to_regtype", arities(&[1]), |a| {
            pg_catalog::type_oid(&as_string(&a[0])?)
        }),
        int_fn("to_regclass", arities(&[1]), move |a| {
            let parts = pg_catalog::split_qualified_name(&as_string(&a[0])?);
            pg_catalog::relation_oid(&catalog7, &parts, &search_path4)
        }),
        int_fn("to_regnamespace", arities(&[1]), move |a| {
            pg_catalog::namespace_oid(&catalog8, as_string(&a[0])?.trim_matches('"'))
        }),
        text_fn("freshet_nspname", arities(&[1]), move |a| {
            let oid = as_i64(&a[0])?;
            Some(pg_catalog::namespace_name(&catalog6, oid).unwrap_or_else(|| oid.to_string()))
        }),
        text_fn("pg_get_indexdef", arities(&[1, 3]), move |a| {
            pg_catalog::index_def(&catalog3, as_i64(&a[0])?, a.get(1).and_then(as_i64).unwrap_or(0))
        }),
        text_fn("pg_get_constraintdef", arities(&[1, 2]), move |a| {
            pg_catalog::constraint_def(&catalog, as_i64(&a[0])?)
        }),
        text_fn("pg_get_viewdef", arities(&[1, 2]), move |a| {
            let oid = as_i64(&a[0])?;
            catalog9
                .views()
                .find(|v| v.oid() as i64 == oid)
                .map(|v| format!(" {};", v.def.query))
        }),
    ]
}
