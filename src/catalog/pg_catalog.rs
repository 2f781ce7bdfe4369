//! `pg_catalog` and `information_schema`, derived from the catalog on demand.
//!
//! Each system table is built as an in-memory table from the statement's catalog version when a
//! query names it, so it is always consistent with the data the statement reads. The columns are
//! PostgreSQL's (those psql, drivers and BI tools read); OIDs follow PostgreSQL's conventions
//! (built-in types keep their real OIDs, user objects start at 16384).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result as DfResult;
use pgwire::api::Type;

use super::{Catalog, SqlType, Table, PUBLIC_SCHEMA_OID};
use crate::query::context::QueryEnv;

pub const PG_CATALOG_OID: i64 = 11;
pub const INFORMATION_SCHEMA_OID: i64 = 13_000;
pub const DATABASE_OID: i64 = 5;
pub const OWNER_OID: i64 = 10;
/// PostgreSQL's btree access method.
const BTREE_AM_OID: i64 = 403;
const HEAP_AM_OID: i64 = 2;

pub const PG_CATALOG_TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_database",
    "pg_index",
    "pg_constraint",
    "pg_description",
    "pg_settings",
    "pg_am",
    "pg_attrdef",
    "pg_proc",
    "pg_roles",
    "pg_user",
    "pg_authid",
    "pg_tables",
    "pg_views",
    "pg_matviews",
    "pg_inherits",
    "pg_collation",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_trigger",
    "pg_rewrite",
    "pg_extension",
    "pg_enum",
    "pg_range",
    "pg_tablespace",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_sequence",
    "pg_language",
    "pg_event_trigger",
    "pg_opclass",
    "pg_depend",
    "pg_shdescription",
    "pg_stat_activity",
    "pg_locks",
    "pg_cast",
    "pg_operator",
    "pg_aggregate",
    "pg_indexes",
    "pg_db_role_setting",
];

pub const INFORMATION_SCHEMA_TABLES: &[&str] = &[
    "schemata",
    "tables",
    "columns",
    "views",
    "table_constraints",
    "key_column_usage",
    "routines",
    "character_sets",
];

/// The OID of a table's primary-key index.
pub fn pk_index_oid(t: &Table) -> i64 {
    1_000_000 + t.oid() as i64
}

/// The OID of a table's primary-key constraint.
pub fn pk_constraint_oid(t: &Table) -> i64 {
    2_000_000 + t.oid() as i64
}

/// A column: name and Arrow type (all nullable).
type Col = (&'static str, DataType);

fn i64c(name: &'static str) -> Col {
    (name, DataType::Int64)
}
fn i32c(name: &'static str) -> Col {
    (name, DataType::Int32)
}
fn i16c(name: &'static str) -> Col {
    (name, DataType::Int16)
}
fn txt(name: &'static str) -> Col {
    (name, DataType::Utf8)
}
fn boolc(name: &'static str) -> Col {
    (name, DataType::Boolean)
}
fn f32c(name: &'static str) -> Col {
    (name, DataType::Float32)
}
fn txt_list(name: &'static str) -> Col {
    (name, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))))
}
fn i16_list(name: &'static str) -> Col {
    (
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Int16, true))),
    )
}
fn i64_list(name: &'static str) -> Col {
    (
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
    )
}

fn s(v: impl Into<String>) -> ScalarValue {
    ScalarValue::Utf8(Some(v.into()))
}
fn i(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}
fn i4(v: i32) -> ScalarValue {
    ScalarValue::Int32(Some(v))
}
fn i2(v: i16) -> ScalarValue {
    ScalarValue::Int16(Some(v))
}
fn b(v: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(v))
}

fn build(cols: Vec<Col>, rows: Vec<Vec<ScalarValue>>) -> DfResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(cols.len());
    for (idx, (_, ty)) in cols.iter().enumerate() {
        let values = rows.iter().map(|r| {
            let v = r.get(idx).cloned().unwrap_or(ScalarValue::Null);
            if v.is_null() {
                ScalarValue::try_from(ty).unwrap_or(ScalarValue::Null)
            } else {
                v
            }
        });
        let arr = if rows.is_empty() {
            datafusion::arrow::array::new_empty_array(ty)
        } else {
            ScalarValue::iter_to_array(values)?
        };
        arrays.push(if arr.data_type() == ty {
            arr
        } else {
            datafusion::arrow::compute::cast(&arr, ty)?
        });
    }
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn null_row(n: usize) -> Vec<ScalarValue> {
    vec![ScalarValue::Null; n]
}

/// Built-in types listed in pg_type: (oid, name, len, category, element oid).
fn builtin_types() -> Vec<(i64, String, i16, &'static str, i64)> {
    let scalars = [
        SqlType::Bool,
        SqlType::Int2,
        SqlType::Int4,
        SqlType::Int8,
        SqlType::Float4,
        SqlType::Float8,
        SqlType::Numeric(None),
        SqlType::Varchar(None),
        SqlType::Text,
        SqlType::Bytea,
        SqlType::Date,
        SqlType::Time,
        SqlType::Timestamp,
        SqlType::Timestamptz,
        SqlType::Interval,
        SqlType::Uuid,
        SqlType::Jsonb,
    ];
    let mut out = Vec::new();
    for t in scalars {
        let pg = t.pg_type();
        out.push((pg.oid() as i64, pg.name().to_string(), type_len(&pg), category(&t), 0));
        let arr = SqlType::Array(Box::new(t)).pg_type();
        out.push((arr.oid() as i64, arr.name().to_string(), -1, "A", pg.oid() as i64));
    }
    for pg in [
        Type::OID,
        Type::NAME,
        Type::CHAR,
        Type::JSON,
        Type::BPCHAR,
        Type::REGCLASS,
        Type::REGPROC,
        Type::REGTYPE,
        Type::INT2_VECTOR,
        Type::OID_VECTOR,
        Type::UNKNOWN,
        Type::VOID,
        Type::RECORD,
        Type::ANY,
    ] {
        out.push((pg.oid() as i64, pg.name().to_string(), type_len(&pg), "U", 0));
    }
    out
}

fn type_len(t: &Type) -> i16 {
    match *t {
        Type::BOOL | Type::CHAR => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE | Type::OID | Type::REGCLASS | Type::REGPROC | Type::REGTYPE => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => 8,
        Type::INTERVAL | Type::UUID => 16,
        Type::NAME => 64,
        _ => -1,
    }
}

fn category(t: &SqlType) -> &'static str {
    match t {
        SqlType::Bool => "B",
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 | SqlType::Float4 | SqlType::Float8 | SqlType::Numeric(_) => "N",
        SqlType::Varchar(_) | SqlType::Text => "S",
        SqlType::Date | SqlType::Time | SqlType::Timestamp | SqlType::Timestamptz => "D",
        SqlType::Interval => "T",
        SqlType::Array(_) => "A",
        _ => "U",
    }
}

/// `format_type(oid, typmod)`.
pub fn format_type(oid: i64, typmod: i64) -> Option<String> {
    let ty = Type::from_oid(oid as u32)?;
    let Some(sql) = SqlType::from_pg_type(&ty) else {
        return Some(match ty {
            Type::CHAR => "\"char\"".into(),
            other => other.name().to_string(),
        });
    };
    let with_mod = |t: SqlType| -> SqlType {
        match t {
            SqlType::Varchar(_) if typmod >= 4 => SqlType::Varchar(Some((typmod - 4) as u32)),
            SqlType::Numeric(_) if typmod >= 4 => {
                let m = typmod - 4;
                SqlType::Numeric(Some(((m >> 16) as u8, (m & 0xFFFF) as i8)))
            }
            other => other,
        }
    };
    Some(match sql {
        SqlType::Array(e) => SqlType::Array(Box::new(with_mod(*e))).name(),
        SqlType::Int4 if ty == Type::OID => "oid".into(),
        SqlType::Varchar(_) if ty == Type::NAME => "name".into(),
        SqlType::Varchar(_) if ty == Type::BPCHAR => "character".into(),
        other => with_mod(other).name(),
    })
}

/// `to_regtype(name)`: the OID of a type named as in SQL (`int4`, `integer`, `text[]`,
/// `character varying(10)`), or `None` for a type Freshet does not have.
pub fn type_oid(name: &str) -> Option<i64> {
    let name = name.trim();
    let bare = name.strip_prefix("pg_catalog.").unwrap_or(name);
    if let Some(quoted) = bare.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        return builtin_types().into_iter().find(|t| t.1 == quoted).map(|t| t.0);
    }
    let lower = bare.to_ascii_lowercase();
    if let Some(t) = builtin_types().into_iter().find(|t| t.1 == lower && t.1 != "char") {
        return Some(t.0);
    }
    SqlType::parse(&lower).ok().map(|t| t.pg_type().oid() as i64)
}

/// The OID of a relation named by `parts`, resolved along `search_path`.
pub fn relation_oid(catalog: &Catalog, parts: &[String], search_path: &[String]) -> Option<i64> {
    match catalog.resolve_relation(parts, search_path)? {
        super::Relation::Table(t) => Some(t.oid() as i64),
        super::Relation::View(v) => Some(v.oid() as i64),
    }
}

/// Splits `schema.name` (either part possibly double-quoted) into its parts.
pub fn split_qualified_name(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c if quoted => cur.push(c),
            c => cur.push(c.to_ascii_lowercase()),
        }
    }
    parts.push(cur);
    parts
}

/// The OID of a schema (`pg_namespace.oid`).
pub fn namespace_oid(catalog: &Catalog, name: &str) -> Option<i64> {
    match name {
        "pg_catalog" => Some(PG_CATALOG_OID),
        "information_schema" => Some(INFORMATION_SCHEMA_OID),
        _ => catalog.schema(name).map(|s| s.oid() as i64),
    }
}

/// The name of the schema with OID `oid`.
pub fn namespace_name(catalog: &Catalog, oid: i64) -> Option<String> {
    match oid {
        PG_CATALOG_OID => Some("pg_catalog".into()),
        INFORMATION_SCHEMA_OID => Some("information_schema".into()),
        _ => catalog
            .schemas()
            .find(|s| s.oid() as i64 == oid)
            .map(|s| s.name.clone()),
    }
}

/// The name `oid::regclass` prints for a table or its primary-key index: bare when its schema
/// is on `search_path`, qualified otherwise, quoted where needed.
pub fn relation_name(catalog: &Catalog, oid: i64, search_path: &[String]) -> Option<String> {
    let (t, name) = catalog.tables().find_map(|t| {
        if t.oid() as i64 == oid {
            Some((t, t.def.name.clone()))
        } else if user_pk(t) && pk_index_oid(t) == oid {
            Some((t, format!("{}_pkey", t.def.name)))
        } else {
            None
        }
    })?;
    // Visible when no earlier schema on the path holds a table of the same name.
    let visible = search_path
        .iter()
        .find(|s| catalog.table(s, &t.def.name).is_some())
        .is_some_and(|s| *s == t.def.schema);
    Some(if visible {
        quote_ident(&name)
    } else {
        format!("{}.{}", quote_ident(&t.def.schema), quote_ident(&name))
    })
}

/// `quote_ident()`: double-quotes a name unless it is a plain lower-case identifier.
pub fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn table_by_index_oid(catalog: &Catalog, oid: i64) -> Option<Arc<Table>> {
    catalog
        .tables()
        .find(|t| pk_index_oid(t) == oid || pk_constraint_oid(t) == oid)
        .cloned()
}

fn pk_columns(t: &Table) -> String {
    t.def
        .primary_key
        .iter()
        .map(|i| t.def.columns[*i].name.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pg_get_indexdef(index_oid [, column, pretty])`: the index's definition, or with a column
/// number above 0 that column's definition (its name).
pub fn index_def(catalog: &Catalog, oid: i64, column: i64) -> Option<String> {
    let t = table_by_index_oid(catalog, oid)?;
    if column > 0 {
        let k = *t.def.primary_key.get(column as usize - 1)?;
        return Some(quote_ident(&t.def.columns[k].name));
    }
    Some(format!(
        "CREATE UNIQUE INDEX {}_pkey ON {} USING btree ({})",
        t.def.name,
        t.qualified_name(),
        pk_columns(&t)
    ))
}

/// `pg_get_constraintdef(constraint_oid)`.
pub fn constraint_def(catalog: &Catalog, oid: i64) -> Option<String> {
    let t = table_by_index_oid(catalog, oid)?;
    Some(format!("PRIMARY KEY ({})", pk_columns(&t)))
}

fn user_pk(t: &Table) -> bool {
    !t.def.primary_key.is_empty() && !t.has_row_id()
}

fn schema_oid(catalog: &Catalog, name: &str) -> i64 {
    catalog
        .schema(name)
        .map(|s| s.oid() as i64)
        .unwrap_or(PUBLIC_SCHEMA_OID as i64)
}

/// One `pg_attribute` row: column `n` (0-based) of relation `relid`.
fn attribute_row(relid: i64, n: usize, c: &super::ColumnDef) -> Vec<ScalarValue> {
    let pg = c.ty.pg_type();
    let collation = if matches!(c.ty, SqlType::Text | SqlType::Varchar(_)) {
        100
    } else {
        0
    };
    vec![
        i(relid),
        s(c.name.clone()),
        i(pg.oid() as i64),
        i2(type_len(&pg)),
        i2(n as i16 + 1),
        i4(c.ty.typmod()),
        i4(if matches!(c.ty, SqlType::Array(_)) { 1 } else { 0 }),
        b(c.not_null),
        b(c.default.is_some()),
        b(false),
        s(""),
        s(if c.generated.is_some() { "s" } else { "" }),
        b(false),
        b(true),
        i4(0),
        i(collation),
        i2(-1),
        s("x"),
        s("i"),
    ]
}

/// Builds the system table `schema.name` for the statement's catalog, if it exists.
pub fn system_table(env: &QueryEnv, schema: &str, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let cat = env.view.committed.catalog.as_ref();
    let t = match (schema, name) {
        ("pg_catalog", n) => pg_table(env, cat, n)?,
        ("information_schema", n) => info_table(env, cat, n)?,
        _ => None,
    };
    Ok(t)
}

fn pg_table(env: &QueryEnv, cat: &Catalog, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let visible_cols = |t: &Table| -> Vec<(usize, super::ColumnDef)> {
        t.def
            .columns
            .iter()
            .filter(|c| !c.hidden)
            .cloned()
            .enumerate()
            .collect()
    };
    let table = match name {
        "pg_namespace" => {
            let mut rows = vec![
                vec![i(PG_CATALOG_OID), s("pg_catalog"), i(OWNER_OID), ScalarValue::Null],
                vec![
                    i(INFORMATION_SCHEMA_OID),
                    s("information_schema"),
                    i(OWNER_OID),
                    ScalarValue::Null,
                ],
            ];
            for sc in cat.schemas() {
                rows.push(vec![
                    i(sc.oid() as i64),
                    s(sc.name.clone()),
                    i(OWNER_OID),
                    ScalarValue::Null,
                ]);
            }
            build(vec![i64c("oid"), txt("nspname"), i64c("nspowner"), txt("nspacl")], rows)?
        }
        "pg_class" => {
            let cols = vec![
                i64c("oid"),
                txt("relname"),
                i64c("relnamespace"),
                i64c("reltype"),
                i64c("reloftype"),
                i64c("relowner"),
                i64c("relam"),
                i64c("relfilenode"),
                i64c("reltablespace"),
                i32c("relpages"),
                f32c("reltuples"),
                i32c("relallvisible"),
                i64c("reltoastrelid"),
                boolc("relhasindex"),
                boolc("relisshared"),
                txt("relpersistence"),
                txt("relkind"),
                i16c("relnatts"),
                i16c("relchecks"),
                boolc("relhasrules"),
                boolc("relhastriggers"),
                boolc("relhassubclass"),
                boolc("relrowsecurity"),
                boolc("relforcerowsecurity"),
                boolc("relispopulated"),
                txt("relreplident"),
                boolc("relispartition"),
                i64c("relrewrite"),
                txt_list("relacl"),
                txt_list("reloptions"),
                txt("relpartbound"),
            ];
            let mut rows = Vec::new();
            for t in cat.tables() {
                let ns = schema_oid(cat, &t.def.schema);
                let natts = visible_cols(t).len() as i16;
                rows.push(vec![
                    i(t.oid() as i64),
                    s(t.def.name.clone()),
                    i(ns),
                    i(0),
                    i(0),
                    i(OWNER_OID),
                    i(HEAP_AM_OID),
                    i(t.oid() as i64),
                    i(0),
                    i4(0),
                    ScalarValue::Float32(Some(-1.0)),
                    i4(0),
                    i(0),
                    b(user_pk(t)),
                    b(false),
                    s("p"),
                    // A stream stores no rows: shown as PostgreSQL shows a foreign table.
                    s(if t.def.layout == crate::catalog::Layout::Stream {
                        "f"
                    } else {
                        "r"
                    }),
                    i2(natts),
                    i2(0),
                    b(false),
                    b(false),
                    b(false),
                    b(false),
                    b(false),
                    b(true),
                    s("d"),
                    b(false),
                    i(0),
                ]);
                if user_pk(t) {
                    rows.push(vec![
                        i(pk_index_oid(t)),
                        s(format!("{}_pkey", t.def.name)),
                        i(ns),
                        i(0),
                        i(0),
                        i(OWNER_OID),
                        i(BTREE_AM_OID),
                        i(pk_index_oid(t)),
                        i(0),
                        i4(0),
                        ScalarValue::Float32(Some(0.0)),
                        i4(0),
                        i(0),
                        b(false),
                        b(false),
                        s("p"),
                        s("i"),
                        i2(t.def.primary_key.len() as i16),
                        i2(0),
                        b(false),
                        b(false),
                        b(false),
                        b(false),
                        b(false),
                        b(true),
                        s("n"),
                        b(false),
                        i(0),
                    ]);
                }
            }
            for v in cat.views() {
                rows.push(vec![
                    i(v.oid() as i64),
                    s(v.def.name.clone()),
                    i(schema_oid(cat, &v.def.schema)),
                    i(0),
                    i(0),
                    i(OWNER_OID),
                    i(HEAP_AM_OID),
                    i(v.oid() as i64),
                    i(0),
                    i4(0),
                    ScalarValue::Float32(Some(-1.0)),
                    i4(0),
                    i(0),
                    b(false),
                    b(false),
                    s("p"),
                    s("m"),
                    i2(v.def.columns.len() as i16),
                    i2(0),
                    b(false),
                    b(false),
                    b(false),
                    b(false),
                    b(false),
                    b(true),
                    s("d"),
                    b(false),
                    i(0),
                ]);
            }
            build(cols, rows)?
        }
        "pg_attribute" => {
            let cols = vec![
                i64c("attrelid"),
                txt("attname"),
                i64c("atttypid"),
                i16c("attlen"),
                i16c("attnum"),
                i32c("atttypmod"),
                i32c("attndims"),
                boolc("attnotnull"),
                boolc("atthasdef"),
                boolc("atthasmissing"),
                txt("attidentity"),
                txt("attgenerated"),
                boolc("attisdropped"),
                boolc("attislocal"),
                i32c("attinhcount"),
                i64c("attcollation"),
                i16c("attstattarget"),
                txt("attstorage"),
                txt("attalign"),
                txt_list("attacl"),
                txt_list("attoptions"),
            ];
            let mut rows = Vec::new();
            for t in cat.tables() {
                for (n, c) in visible_cols(t) {
                    rows.push(attribute_row(t.oid() as i64, n, &c));
                }
                // The primary-key index's own columns (psql's `\d t_pkey` lists them).
                if user_pk(t) {
                    for (n, k) in t.def.primary_key.iter().enumerate() {
                        let c = &t.def.columns[*k];
                        let pg = c.ty.pg_type();
                        rows.push(vec![
                            i(pk_index_oid(t)),
                            s(c.name.clone()),
                            i(pg.oid() as i64),
                            i2(type_len(&pg)),
                            i2(n as i16 + 1),
                            i4(c.ty.typmod()),
                            i4(0),
                            b(false),
                            b(false),
                            b(false),
                            s(""),
                            s(""),
                            b(false),
                            b(true),
                            i4(0),
                            i(0),
                            i2(-1),
                            s("p"),
                            s("i"),
                        ]);
                    }
                }
            }
            for v in cat.views() {
                for (n, c) in v.def.columns.iter().enumerate() {
                    rows.push(attribute_row(v.oid() as i64, n, c));
                }
            }
            build(cols, rows)?
        }
        "pg_type" => {
            let cols = vec![
                i64c("oid"),
                txt("typname"),
                i64c("typnamespace"),
                i64c("typowner"),
                i16c("typlen"),
                boolc("typbyval"),
                txt("typtype"),
                txt("typcategory"),
                boolc("typispreferred"),
                boolc("typisdefined"),
                txt("typdelim"),
                i64c("typrelid"),
                i64c("typelem"),
                i64c("typarray"),
                txt("typinput"),
                txt("typoutput"),
                txt("typreceive"),
                txt("typsend"),
                txt("typalign"),
                txt("typstorage"),
                boolc("typnotnull"),
                i64c("typbasetype"),
                i32c("typtypmod"),
                i32c("typndims"),
                i64c("typcollation"),
                txt("typdefault"),
                txt_list("typacl"),
            ];
            let types = builtin_types();
            let rows = types
                .iter()
                .map(|(oid, name, len, cat_, elem)| {
                    let array_oid = types.iter().find(|t| t.4 == *oid).map(|t| t.0).unwrap_or(0);
                    vec![
                        i(*oid),
                        s(name.clone()),
                        i(PG_CATALOG_OID),
                        i(OWNER_OID),
                        i2(*len),
                        b(*len > 0 && *len <= 8),
                        s("b"),
                        s(*cat_),
                        b(false),
                        b(true),
                        s(","),
                        i(0),
                        i(*elem),
                        i(array_oid),
                        s(format!("{name}in")),
                        s(format!("{name}out")),
                        s(format!("{name}recv")),
                        s(format!("{name}send")),
                        s("i"),
                        s("x"),
                        b(false),
                        i(0),
                        i4(-1),
                        i4(0),
                        i(if *cat_ == "S" { 100 } else { 0 }),
                    ]
                })
                .collect();
            build(cols, rows)?
        }
        "pg_database" => build(
            vec![
                i64c("oid"),
                txt("datname"),
                i64c("datdba"),
                i32c("encoding"),
                txt("datlocprovider"),
                boolc("datistemplate"),
                boolc("datallowconn"),
                i32c("datconnlimit"),
                i64c("dattablespace"),
                txt("datcollate"),
                txt("datctype"),
                txt("daticulocale"),
                txt("datcollversion"),
                txt_list("datacl"),
            ],
            vec![vec![
                i(DATABASE_OID),
                s(env.database.clone()),
                i(OWNER_OID),
                i4(6),
                s("c"),
                b(false),
                b(true),
                i4(-1),
                i(1663),
                s("C.UTF-8"),
                s("C.UTF-8"),
            ]],
        )?,
        "pg_index" => {
            let cols = vec![
                i64c("indexrelid"),
                i64c("indrelid"),
                i16c("indnatts"),
                i16c("indnkeyatts"),
                boolc("indisunique"),
                boolc("indnullsnotdistinct"),
                boolc("indisprimary"),
                boolc("indisexclusion"),
                boolc("indimmediate"),
                boolc("indisclustered"),
                boolc("indisvalid"),
                boolc("indcheckxmin"),
                boolc("indisready"),
                boolc("indislive"),
                boolc("indisreplident"),
                i16_list("indkey"),
                txt("indexprs"),
                txt("indpred"),
            ];
            let rows = cat
                .tables()
                .filter(|t| user_pk(t))
                .map(|t| {
                    let keys: Vec<ScalarValue> = t
                        .def
                        .primary_key
                        .iter()
                        .map(|k| ScalarValue::Int16(Some(*k as i16 + 1)))
                        .collect();
                    vec![
                        i(pk_index_oid(t)),
                        i(t.oid() as i64),
                        i2(keys.len() as i16),
                        i2(keys.len() as i16),
                        b(true),
                        b(false),
                        b(true),
                        b(false),
                        b(true),
                        b(false),
                        b(true),
                        b(false),
                        b(true),
                        b(true),
                        b(false),
                        ScalarValue::List(ScalarValue::new_list_nullable(&keys, &DataType::Int16)),
                    ]
                })
                .collect();
            build(cols, rows)?
        }
        "pg_constraint" => {
            let cols = vec![
                i64c("oid"),
                txt("conname"),
                i64c("connamespace"),
                txt("contype"),
                boolc("condeferrable"),
                boolc("condeferred"),
                boolc("convalidated"),
                i64c("conrelid"),
                i64c("contypid"),
                i64c("conindid"),
                i64c("conparentid"),
                i64c("confrelid"),
                txt("confupdtype"),
                txt("confdeltype"),
                txt("confmatchtype"),
                boolc("conislocal"),
                i32c("coninhcount"),
                boolc("connoinherit"),
                i16_list("conkey"),
                i16_list("confkey"),
                txt("conbin"),
            ];
            let rows = cat
                .tables()
                .filter(|t| user_pk(t))
                .map(|t| {
                    let keys: Vec<ScalarValue> = t
                        .def
                        .primary_key
                        .iter()
                        .map(|k| ScalarValue::Int16(Some(*k as i16 + 1)))
                        .collect();
                    vec![
                        i(pk_constraint_oid(t)),
                        s(format!("{}_pkey", t.def.name)),
                        i(schema_oid(cat, &t.def.schema)),
                        s("p"),
                        b(false),
                        b(false),
                        b(true),
                        i(t.oid() as i64),
                        i(0),
                        i(pk_index_oid(t)),
                        i(0),
                        i(0),
                        s(" "),
                        s(" "),
                        s(" "),
                        b(true),
                        i4(0),
                        b(true),
                        ScalarValue::List(ScalarValue::new_list_nullable(&keys, &DataType::Int16)),
                    ]
                })
                .collect();
            build(cols, rows)?
        }
        "pg_attrdef" => {
            let mut rows = Vec::new();
            for t in cat.tables() {
                for (n, c) in visible_cols(t) {
                    if let Some(d) = &c.default {
                        rows.push(vec![
                            i(3_000_000 + t.oid() as i64 * 100 + n as i64),
                            i(t.oid() as i64),
                            i2(n as i16 + 1),
                            s(d.clone()),
                        ]);
                    }
                }
            }
            build(vec![i64c("oid"), i64c("adrelid"), i16c("adnum"), txt("adbin")], rows)?
        }
        "pg_description" => build(
            vec![i64c("objoid"), i64c("classoid"), i32c("objsubid"), txt("description")],
            vec![],
        )?,
        "pg_shdescription" => build(vec![i64c("objoid"), i64c("classoid"), txt("description")], vec![])?,
        "pg_settings" => {
            let rows = crate::session::settings::all_settings_rows();
            build(
                vec![
                    txt("name"),
                    txt("setting"),
                    txt("unit"),
                    txt("category"),
                    txt("short_desc"),
                    txt("extra_desc"),
                    txt("context"),
                    txt("vartype"),
                    txt("source"),
                    txt("min_val"),
                    txt("max_val"),
                    txt_list("enumvals"),
                    txt("boot_val"),
                    txt("reset_val"),
                    txt("sourcefile"),
                    i32c("sourceline"),
                    boolc("pending_restart"),
                ],
                rows.into_iter()
                    .map(|(n, v, d)| {
                        vec![
                            s(n),
                            s(v.clone()),
                            ScalarValue::Null,
                            s("Freshet"),
                            s(d),
                            ScalarValue::Null,
                            s("user"),
                            s("string"),
                            s("default"),
                            ScalarValue::Null,
                            ScalarValue::Null,
                            ScalarValue::Null,
                            s(v.clone()),
                            s(v),
                        ]
                    })
                    .collect(),
            )?
        }
        "pg_am" => build(
            vec![i64c("oid"), txt("amname"), txt("amhandler"), txt("amtype")],
            vec![
                vec![i(HEAP_AM_OID), s("heap"), s("heap_tableam_handler"), s("t")],
                vec![i(BTREE_AM_OID), s("btree"), s("bthandler"), s("i")],
            ],
        )?,
        "pg_proc" => build(
            vec![
                i64c("oid"),
                txt("proname"),
                i64c("pronamespace"),
                i64c("proowner"),
                i64c("prolang"),
                txt("prokind"),
                boolc("prosecdef"),
                boolc("proretset"),
                txt("provolatile"),
                i16c("pronargs"),
                i64c("prorettype"),
                i64_list("proargtypes"),
                txt_list("proargnames"),
                txt("prosrc"),
                boolc("proisstrict"),
                txt_list("proacl"),
            ],
            vec![],
        )?,
        "pg_roles" | "pg_user" | "pg_authid" => build(
            vec![
                i64c("oid"),
                txt("rolname"),
                boolc("rolsuper"),
                boolc("rolinherit"),
                boolc("rolcreaterole"),
                boolc("rolcreatedb"),
                boolc("rolcanlogin"),
                boolc("rolreplication"),
                i32c("rolconnlimit"),
                txt("rolpassword"),
                txt("rolvaliduntil"),
                boolc("rolbypassrls"),
                txt_list("rolconfig"),
                txt("usename"),
                i64c("usesysid"),
                boolc("usesuper"),
            ],
            vec![vec![
                i(OWNER_OID),
                s(env.user.clone()),
                b(true),
                b(true),
                b(true),
                b(true),
                b(true),
                b(true),
                i4(-1),
                s("********"),
                ScalarValue::Null,
                b(true),
                ScalarValue::Null,
                s(env.user.clone()),
                i(OWNER_OID),
                b(true),
            ]],
        )?,
        "pg_tables" => {
            let rows = cat
                .tables()
                .map(|t| {
                    vec![
                        s(t.def.schema.clone()),
                        s(t.def.name.clone()),
                        s(env.user.clone()),
                        ScalarValue::Null,
                        b(user_pk(t)),
                        b(false),
                        b(false),
                        b(false),
                    ]
                })
                .collect();
            build(
                vec![
                    txt("schemaname"),
                    txt("tablename"),
                    txt("tableowner"),
                    txt("tablespace"),
                    boolc("hasindexes"),
                    boolc("hasrules"),
                    boolc("hastriggers"),
                    boolc("rowsecurity"),
                ],
                rows,
            )?
        }
        "pg_indexes" => {
            let rows = cat
                .tables()
                .filter(|t| user_pk(t))
                .map(|t| {
                    vec![
                        s(t.def.schema.clone()),
                        s(t.def.name.clone()),
                        s(format!("{}_pkey", t.def.name)),
                        ScalarValue::Null,
                        s(index_def(cat, pk_index_oid(t), 0).unwrap_or_default()),
                    ]
                })
                .collect();
            build(
                vec![
                    txt("schemaname"),
                    txt("tablename"),
                    txt("indexname"),
                    txt("tablespace"),
                    txt("indexdef"),
                ],
                rows,
            )?
        }
        "pg_views" => build(
            vec![txt("schemaname"), txt("viewname"), txt("viewowner"), txt("definition")],
            vec![],
        )?,
        "pg_matviews" => build(
            vec![
                txt("schemaname"),
                txt("matviewname"),
                txt("matviewowner"),
                txt("tablespace"),
                boolc("hasindexes"),
                boolc("ispopulated"),
                txt("definition"),
            ],
            cat.views()
                .map(|v| {
                    vec![
                        s(v.def.schema.clone()),
                        s(v.def.name.clone()),
                        s(env.user.clone()),
                        ScalarValue::Null,
                        b(false),
                        b(true),
                        s(format!(" {};", v.def.query)),
                    ]
                })
                .collect(),
        )?,
        "pg_inherits" => build(
            vec![
                i64c("inhrelid"),
                i64c("inhparent"),
                i32c("inhseqno"),
                boolc("inhdetachpending"),
            ],
            vec![],
        )?,
        "pg_collation" => build(
            vec![
                i64c("oid"),
                txt("collname"),
                i64c("collnamespace"),
                txt("collprovider"),
                txt("collcollate"),
                txt("collctype"),
            ],
            vec![vec![i(100), s("default"), i(PG_CATALOG_OID), s("d"), s(""), s("")]],
        )?,
        "pg_policy" => build(
            vec![
                i64c("oid"),
                txt("polname"),
                i64c("polrelid"),
                txt("polcmd"),
                boolc("polpermissive"),
                i64_list("polroles"),
                txt("polqual"),
                txt("polwithcheck"),
            ],
            vec![],
        )?,
        "pg_statistic_ext" => build(
            vec![
                i64c("oid"),
                i64c("stxrelid"),
                txt("stxname"),
                i64c("stxnamespace"),
                i64c("stxowner"),
                i32c("stxstattarget"),
                i16_list("stxkeys"),
                txt_list("stxkind"),
            ],
            vec![],
        )?,
        "pg_publication" => build(
            vec![
                i64c("oid"),
                txt("pubname"),
                i64c("pubowner"),
                boolc("puballtables"),
                boolc("pubinsert"),
                boolc("pubupdate"),
                boolc("pubdelete"),
                boolc("pubtruncate"),
                boolc("pubviaroot"),
            ],
            vec![],
        )?,
        "pg_publication_rel" => build(
            vec![
                i64c("oid"),
                i64c("prpubid"),
                i64c("prrelid"),
                txt("prqual"),
                i16_list("prattrs"),
            ],
            vec![],
        )?,
        "pg_publication_namespace" => build(vec![i64c("oid"), i64c("pnpubid"), i64c("pnnspid")], vec![])?,
        "pg_trigger" => build(
            vec![
                i64c("oid"),
                i64c("tgrelid"),
                i64c("tgparentid"),
                txt("tgname"),
                i64c("tgfoid"),
                i16c("tgtype"),
                txt("tgenabled"),
                boolc("tgisinternal"),
            ],
            vec![],
        )?,
        "pg_rewrite" => build(
            vec![
                i64c("oid"),
                txt("rulename"),
                i64c("ev_class"),
                txt("ev_type"),
                txt("ev_enabled"),
                boolc("is_instead"),
            ],
            vec![],
        )?,
        "pg_extension" => build(
            vec![
                i64c("oid"),
                txt("extname"),
                i64c("extowner"),
                i64c("extnamespace"),
                boolc("extrelocatable"),
                txt("extversion"),
            ],
            vec![vec![
                i(13_500),
                s("plpgsql"),
                i(OWNER_OID),
                i(PG_CATALOG_OID),
                b(false),
                s("1.0"),
            ]],
        )?,
        "pg_enum" => build(
            vec![i64c("oid"), i64c("enumtypid"), f32c("enumsortorder"), txt("enumlabel")],
            vec![],
        )?,
        "pg_range" => build(
            vec![i64c("rngtypid"), i64c("rngsubtype"), i64c("rngmultitypid")],
            vec![],
        )?,
        "pg_tablespace" => build(
            vec![
                i64c("oid"),
                txt("spcname"),
                i64c("spcowner"),
                txt_list("spcacl"),
                txt_list("spcoptions"),
            ],
            vec![
                vec![i(1663), s("pg_default"), i(OWNER_OID)],
                vec![i(1664), s("pg_global"), i(OWNER_OID)],
            ],
        )?,
        "pg_foreign_table" => build(vec![i64c("ftrelid"), i64c("ftserver"), txt_list("ftoptions")], vec![])?,
        "pg_partitioned_table" => build(
            vec![
                i64c("partrelid"),
                txt("partstrat"),
                i16c("partnatts"),
                i64c("partdefid"),
            ],
            vec![],
        )?,
        "pg_sequence" => build(
            vec![
                i64c("seqrelid"),
                i64c("seqtypid"),
                i64c("seqstart"),
                i64c("seqincrement"),
            ],
            vec![],
        )?,
        "pg_language" => build(
            vec![
                i64c("oid"),
                txt("lanname"),
                i64c("lanowner"),
                boolc("lanispl"),
                boolc("lanpltrusted"),
            ],
            vec![
                vec![i(12), s("internal"), i(OWNER_OID), b(false), b(false)],
                vec![i(14), s("sql"), i(OWNER_OID), b(false), b(true)],
            ],
        )?,
        "pg_event_trigger" => build(
            vec![
                i64c("oid"),
                txt("evtname"),
                txt("evtevent"),
                i64c("evtowner"),
                i64c("evtfoid"),
                txt("evtenabled"),
            ],
            vec![],
        )?,
        "pg_opclass" => build(
            vec![
                i64c("oid"),
                i64c("opcmethod"),
                txt("opcname"),
                i64c("opcnamespace"),
                i64c("opcintype"),
                boolc("opcdefault"),
            ],
            vec![],
        )?,
        "pg_depend" => build(
            vec![
                i64c("classid"),
                i64c("objid"),
                i32c("objsubid"),
                i64c("refclassid"),
                i64c("refobjid"),
                i32c("refobjsubid"),
                txt("deptype"),
            ],
            vec![],
        )?,
        "pg_stat_activity" => build(
            vec![
                i64c("datid"),
                txt("datname"),
                i32c("pid"),
                txt("usename"),
                txt("application_name"),
                txt("client_addr"),
                txt("state"),
                txt("query"),
            ],
            vec![],
        )?,
        "pg_locks" => build(
            vec![
                txt("locktype"),
                i64c("database"),
                i64c("relation"),
                i32c("pid"),
                txt("mode"),
                boolc("granted"),
            ],
            vec![],
        )?,
        "pg_cast" => build(
            vec![
                i64c("oid"),
                i64c("castsource"),
                i64c("casttarget"),
                i64c("castfunc"),
                txt("castcontext"),
                txt("castmethod"),
            ],
            vec![],
        )?,
        "pg_operator" => build(
            vec![
                i64c("oid"),
                txt("oprname"),
                i64c("oprnamespace"),
                i64c("oprleft"),
                i64c("oprright"),
                i64c("oprresult"),
            ],
            vec![],
        )?,
        "pg_aggregate" => build(vec![i64c("aggfnoid"), txt("aggkind"), i16c("aggnumdirectargs")], vec![])?,
        "pg_db_role_setting" => build(
            vec![i64c("setdatabase"), i64c("setrole"), txt_list("setconfig")],
            vec![],
        )?,
        _ => return Ok(None),
    };
    let _ = null_row;
    Ok(Some(table))
}

fn info_table(env: &QueryEnv, cat: &Catalog, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
    let db = env.database.clone();
    let table = match name {
        "schemata" => {
            let mut names: Vec<String> = cat.schemas().map(|s| s.name.clone()).collect();
            names.extend(super::SYSTEM_SCHEMAS.iter().map(|s| s.to_string()));
            let rows = names
                .into_iter()
                .map(|n| {
                    vec![
                        s(db.clone()),
                        s(n),
                        s(env.user.clone()),
                        ScalarValue::Null,
                        ScalarValue::Null,
                        ScalarValue::Null,
                        ScalarValue::Null,
                    ]
                })
                .collect();
            build(
                vec![
                    txt("catalog_name"),
                    txt("schema_name"),
                    txt("schema_owner"),
                    txt("default_character_set_catalog"),
                    txt("default_character_set_schema"),
                    txt("default_character_set_name"),
                    txt("sql_path"),
                ],
                rows,
            )?
        }
        "tables" => {
            let rows = cat
                .tables()
                .map(|t| {
                    vec![
                        s(db.clone()),
                        s(t.def.schema.clone()),
                        s(t.def.name.clone()),
                        s(if t.def.layout == crate::catalog::Layout::Stream {
                            "FOREIGN"
                        } else {
                            "BASE TABLE"
                        }),
                        ScalarValue::Null,
                        ScalarValue::Null,
                        ScalarValue::Null,
                        ScalarValue::Null,
                        ScalarValue::Null,
                        ScalarValue::Null,
                        s("YES"),
                        s("NO"),
                        ScalarValue::Null,
                    ]
                })
                .collect();
            build(
                vec![
                    txt("table_catalog"),
                    txt("table_schema"),
                    txt("table_name"),
                    txt("table_type"),
                    txt("self_referencing_column_name"),
                    txt("reference_generation"),
                    txt("user_defined_type_catalog"),
                    txt("user_defined_type_schema"),
                    txt("user_defined_type_name"),
                    txt("is_insertable_into_placeholder"),
                    txt("is_insertable_into"),
                    txt("is_typed"),
                    txt("commit_action"),
                ],
                rows,
            )?
        }
        "columns" => {
            let mut rows = Vec::new();
            for t in cat.tables() {
                for (n, c) in t.def.columns.iter().filter(|c| !c.hidden).enumerate() {
                    let (char_len, num_prec, num_scale) = match &c.ty {
                        SqlType::Varchar(Some(l)) => (Some(*l as i64), None, None),
                        SqlType::Numeric(Some((p, sc))) => (None, Some(*p as i64), Some(*sc as i64)),
                        SqlType::Int2 => (None, Some(16), Some(0)),
                        SqlType::Int4 => (None, Some(32), Some(0)),
                        SqlType::Int8 => (None, Some(64), Some(0)),
                        SqlType::Float4 => (None, Some(24), None),
                        SqlType::Float8 => (None, Some(53), None),
                        _ => (None, None, None),
                    };
                    let data_type = match &c.ty {
                        SqlType::Array(_) => "ARRAY".to_string(),
                        SqlType::Varchar(_) => "character varying".to_string(),
                        SqlType::Numeric(_) => "numeric".to_string(),
                        other => other.name(),
                    };
                    let udt = c.ty.pg_type().name().to_string();
                    rows.push(vec![
                        s(db.clone()),
                        s(t.def.schema.clone()),
                        s(t.def.name.clone()),
                        s(c.name.clone()),
                        i(n as i64 + 1),
                        c.default.clone().map(s).unwrap_or(ScalarValue::Null),
                        s(if c.not_null { "NO" } else { "YES" }),
                        s(data_type),
                        char_len.map(i).unwrap_or(ScalarValue::Null),
                        num_prec.map(i).unwrap_or(ScalarValue::Null),
                        if num_prec.is_some() {
                            i(if matches!(c.ty, SqlType::Numeric(_)) { 10 } else { 2 })
                        } else {
                            ScalarValue::Null
                        },
                        num_scale.map(i).unwrap_or(ScalarValue::Null),
                        s(db.clone()),
                        s("pg_catalog"),
                        s(udt),
                        s("NO"),
                        s(if c.generated.is_some() { "ALWAYS" } else { "NEVER" }),
                        s(if c.generated.is_some() { "NO" } else { "YES" }),
                    ]);
                }
            }
            build(
                vec![
                    txt("table_catalog"),
                    txt("table_schema"),
                    txt("table_name"),
                    txt("column_name"),
                    i64c("ordinal_position"),
                    txt("column_default"),
                    txt("is_nullable"),
                    txt("data_type"),
                    i64c("character_maximum_length"),
                    i64c("numeric_precision"),
                    i64c("numeric_precision_radix"),
                    i64c("numeric_scale"),
                    txt("udt_catalog"),
                    txt("udt_schema"),
                    txt("udt_name"),
                    txt("is_identity"),
                    txt("is_generated"),
                    txt("is_updatable"),
                ],
                rows,
            )?
        }
        "views" => build(
            vec![
                txt("table_catalog"),
                txt("table_schema"),
                txt("table_name"),
                txt("view_definition"),
                txt("check_option"),
                txt("is_updatable"),
            ],
            vec![],
        )?,
        "table_constraints" => {
            let rows = cat
                .tables()
                .filter(|t| user_pk(t))
                .map(|t| {
                    vec![
                        s(db.clone()),
                        s(t.def.schema.clone()),
                        s(format!("{}_pkey", t.def.name)),
                        s(db.clone()),
                        s(t.def.schema.clone()),
                        s(t.def.name.clone()),
                        s("PRIMARY KEY"),
                        s("NO"),
                        s("NO"),
                        s("YES"),
                    ]
                })
                .collect();
            build(
                vec![
                    txt("constraint_catalog"),
                    txt("constraint_schema"),
                    txt("constraint_name"),
                    txt("table_catalog"),
                    txt("table_schema"),
                    txt("table_name"),
                    txt("constraint_type"),
                    txt("is_deferrable"),
                    txt("initially_deferred"),
                    txt("enforced"),
                ],
                rows,
            )?
        }
        "key_column_usage" => {
            let mut rows = Vec::new();
            for t in cat.tables().filter(|t| user_pk(t)) {
                for (pos, k) in t.def.primary_key.iter().enumerate() {
                    rows.push(vec![
                        s(db.clone()),
                        s(t.def.schema.clone()),
                        s(format!("{}_pkey", t.def.name)),
                        s(db.clone()),
                        s(t.def.schema.clone()),
                        s(t.def.name.clone()),
                        s(t.def.columns[*k].name.clone()),
                        i(pos as i64 + 1),
                    ]);
                }
            }
            build(
                vec![
                    txt("constraint_catalog"),
                    txt("constraint_schema"),
                    txt("constraint_name"),
                    txt("table_catalog"),
                    txt("table_schema"),
                    txt("table_name"),
                    txt("column_name"),
                    i64c("ordinal_position"),
                ],
                rows,
            )?
        }
        "routines" => build(
            vec![
                txt("routine_catalog"),
                txt("routine_schema"),
                txt("routine_name"),
                txt("routine_type"),
                txt("data_type"),
            ],
            vec![],
        )?,
        "character_sets" => build(
            vec![
                txt("character_set_catalog"),
                txt("character_set_schema"),
                txt("character_set_name"),
                txt("character_repertoire"),
                txt("form_of_use"),
            ],
            vec![vec![
                ScalarValue::Null,
                ScalarValue::Null,
                s("UTF8"),
                s("UCS"),
                s("UTF8"),
            ]],
        )?,
        _ => return Ok(None),
    };
    Ok(Some(table))
}
