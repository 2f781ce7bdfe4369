//! Upstream table descriptions, and how a Freshet table's columns map onto them.
//!
//! A Freshet table may read a subset of the upstream columns, in its own order, under the same
//! names (case-insensitive). Its declared types must equal the mapped types of [`super::types`],
//! or be one of these safe widenings (every upstream value fits, nothing is rounded):
//!
//! - smallint → integer / bigint / numeric; integer → bigint / numeric; bigint → numeric
//!   (numeric targets need room for the integer digits: 5, 10, 19 or 20 digits left of the point);
//! - numeric(p,s) → numeric(p',s') with s' ≥ s and p'-s' ≥ p-s (bare numeric: 28 integer digits, scale 10);
//! - real → double precision; varchar(n) → varchar(m ≥ n) / varchar / text; text → varchar.
//!
//! The declared primary key must be the upstream one (same columns, same order): changes are
//! keyed by it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use mysql_async::prelude::Queryable;

use super::types::{ColumnDecoder, MysqlType};
use super::{upstream_error, MysqlConfig};
use crate::catalog::types::SqlType;
use crate::error::{Error, Result, SqlState};

/// One column of an upstream table.
#[derive(Clone, Debug)]
pub struct UpstreamColumn {
    pub name: String,
    /// As MySQL prints it, e.g. `int(10) unsigned`.
    pub column_type: String,
    pub nullable: bool,
    /// The Freshet type, or why the column cannot be read.
    pub sql_type: Result<SqlType>,
    /// The parsed upstream type (None when not mappable).
    pub(crate) kind: Option<MysqlType>,
}

/// An upstream table as `information_schema` describes it.
#[derive(Clone, Debug)]
pub struct UpstreamTable {
    pub database: String,
    pub name: String,
    pub columns: Vec<UpstreamColumn>,
    /// Indexes into `columns`, in key order.
    pub primary_key: Vec<usize>,
}

/// How a Freshet table maps to its upstream table.
#[derive(Clone, Debug)]
pub struct CapturedTable {
    pub database: String,
    pub name: String,
    /// Freshet's Arrow schema of the table (visible columns, in Freshet's order).
    pub schema: SchemaRef,
    /// For each Freshet column, the index of the upstream column it reads.
    pub upstream_index: Vec<usize>,
    /// Number of upstream columns when mapped (to detect upstream DDL).
    pub upstream_width: usize,
    /// The upstream description the mapping was made from.
    pub upstream: UpstreamTable,
}

impl CapturedTable {
    /// `db.name`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// One decoder per Freshet column, with the upstream index it reads.
    pub(crate) fn decoders(&self) -> Vec<(usize, ColumnDecoder)> {
        self.schema
            .fields()
            .iter()
            .zip(&self.upstream_index)
            .map(|(f, idx)| {
                let col = &self.upstream.columns[*idx];
                let decoder = ColumnDecoder {
                    name: col.name.clone(),
                    mysql: col.kind.clone().expect("captured columns are mappable"),
                    sql: SqlType::from_field(f),
                };
                (*idx, decoder)
            })
            .collect()
    }

    /// The declared columns (name, type, nullable), as `capture` took them.
    pub(crate) fn declared(&self) -> Vec<(String, SqlType, bool)> {
        self.schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), SqlType::from_field(f), f.is_nullable()))
            .collect()
    }

    /// The declared primary key column names.
    pub(crate) fn declared_pk(&self) -> Vec<String> {
        self.upstream
            .primary_key
            .iter()
            .filter_map(|u| self.upstream_index.iter().position(|i| i == u))
            .map(|k| self.schema.field(k).name().clone())
            .collect()
    }
}

/// Splits `'db.table'` (a bare `table` uses the source's database).
fn split_qualified(cfg: &MysqlConfig, qualified: &str) -> (String, String) {
    let unquote = |s: &str| s.trim().trim_matches('`').to_string();
    match qualified.split_once('.') {
        Some((db, t)) => (unquote(db), unquote(t)),
        None => (cfg.database.clone(), unquote(qualified)),
    }
}

/// Describes `qualified` ('db.table'). Missing table: 42P01; unreachable server: a retryable
/// `Error::External` with an 08xxx SQLSTATE.
pub async fn describe_table(cfg: &MysqlConfig, qualified: &str) -> Result<UpstreamTable> {
    let (db, table) = split_qualified(cfg, qualified);
    let mut conn = cfg.connect().await?;
    let result = describe_on(cfg, &mut conn, &db, &table).await;
    let _ = conn.disconnect().await;
    result
}

pub(crate) async fn describe_on(
    cfg: &MysqlConfig,
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
) -> Result<UpstreamTable> {
    let err = |e| upstream_error(cfg, "describe table", e);
    let found: Option<(String, String, String)> = conn
        .exec_first(
            "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .map_err(err)?;
    let Some((db, table, kind)) = found else {
        return Err(Error::user(
            SqlState::UNDEFINED_TABLE,
            format!("upstream table {db}.{table} does not exist (or the user cannot see it)"),
        ));
    };
    if kind != "BASE TABLE" {
        return Err(Error::unsupported(format!(
            "capturing {db}.{table}, a {kind} (only base tables have row events)"
        )));
    }
    let rows: Vec<(String, String, String, String, Option<String>)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (&db, &table),
        )
        .await
        .map_err(err)?;
    // MariaDB's JSON is LONGTEXT with CHECK (json_valid(`c`)); MySQL has no TABLE_NAME column here.
    let checks: Vec<String> = conn
        .exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
            (&db, &table),
        )
        .await
        .unwrap_or_default();
    let checks: Vec<String> = checks.iter().map(|c| c.to_ascii_lowercase().replace(' ', "")).collect();
    let pk_names: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (&db, &table),
        )
        .await
        .map_err(err)?;
    let columns: Vec<UpstreamColumn> = rows
        .into_iter()
        .map(|(name, data_type, column_type, nullable, charset)| {
            let json_checked = checks
                .iter()
                .any(|c| c.contains(&format!("json_valid(`{}`)", name.to_ascii_lowercase())));
            let kind = MysqlType::parse(&data_type, &column_type, charset.as_deref(), json_checked);
            UpstreamColumn {
                sql_type: kind.as_ref().map(|k| k.sql_type()).map_err(Clone::clone),
                kind: kind.ok(),
                name,
                column_type,
                nullable: nullable == "YES",
            }
        })
        .collect();
    let primary_key = pk_names
        .iter()
        .filter_map(|n| columns.iter().position(|c| &c.name == n))
        .collect();
    Ok(UpstreamTable {
        database: db,
        name: table,
        columns,
        primary_key,
    })
}

/// Whether values of `from` always fit `to` unchanged.
fn widens(from: &SqlType, to: &SqlType) -> bool {
    use SqlType::*;
    let int_digits = |t: &SqlType| match t {
        Int2 => Some(5),
        Int4 => Some(10),
        Int8 => Some(19),
        Numeric(Some((p, s))) => Some(*p as i32 - *s as i32),
        Numeric(None) => Some(28),
        _ => None,
    };
    let scale = |t: &SqlType| match t {
        Numeric(Some((_, s))) => *s as i32,
        Numeric(None) => 10,
        _ => 0,
    };
    match (from, to) {
        (a, b) if a == b => true,
        (Int2, Int4 | Int8) | (Int4, Int8) | (Float4, Float8) => true,
        (Int2 | Int4 | Int8 | Numeric(_), Numeric(_)) => int_digits(from) <= int_digits(to) && scale(from) <= scale(to),
        (Varchar(Some(n)), Varchar(Some(m))) => n <= m,
        (Varchar(_), Varchar(None) | Text) | (Text, Varchar(None)) => true,
        _ => false,
    }
}

/// Checks declared columns against upstream (see the module docs for the rules) and maps them.
pub fn capture(
    declared: &[(String, SqlType, bool)],
    declared_pk: &[String],
    upstream: &UpstreamTable,
) -> Result<CapturedTable> {
    let qualified = format!("{}.{}", upstream.database, upstream.name);
    let mut upstream_index = Vec::with_capacity(declared.len());
    let mut fields = Vec::with_capacity(declared.len());
    for (name, ty, nullable) in declared {
        let idx = upstream
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::user(
                    SqlState::UNDEFINED_COLUMN,
                    format!("column \"{name}\" does not exist in upstream table {qualified}"),
                )
            })?;
        if upstream_index.contains(&idx) {
            return Err(Error::user(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{name}\" is declared twice"),
            ));
        }
        let col = &upstream.columns[idx];
        let mapped = col.sql_type.as_ref().map_err(|e| {
            Error::user(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "column \"{name}\" of upstream table {qualified} ({}) cannot be read: {e}",
                    col.column_type
                ),
            )
        })?;
        if !widens(mapped, ty) {
            return Err(Error::user(
                SqlState::DATATYPE_MISMATCH,
                format!(
                    "column \"{name}\" is declared {} but upstream {qualified}.{} is {} (read as {})",
                    ty.name(),
                    col.name,
                    col.column_type,
                    mapped.name()
                ),
            ));
        }
        if !nullable && col.nullable {
            return Err(Error::user(
                SqlState::DATATYPE_MISMATCH,
                format!(
                    "column \"{name}\" is declared NOT NULL but upstream {qualified}.{} allows NULL",
                    col.name
                ),
            ));
        }
        upstream_index.push(idx);
        fields.push(ty.arrow_field(name, *nullable));
    }
    let upstream_pk: Vec<&str> = upstream
        .primary_key
        .iter()
        .map(|i| upstream.columns[*i].name.as_str())
        .collect();
    let same_pk = upstream_pk.len() == declared_pk.len()
        && upstream_pk
            .iter()
            .zip(declared_pk)
            .all(|(u, d)| u.eq_ignore_ascii_case(d));
    if !same_pk {
        return Err(Error::user(
            SqlState::INVALID_TABLE_DEFINITION,
            format!(
                "primary key ({}) differs from the primary key ({}) of upstream table {qualified}",
                declared_pk.join(", "),
                upstream_pk.join(", ")
            ),
        ));
    }
    Ok(CapturedTable {
        database: upstream.database.clone(),
        name: upstream.name.clone(),
        schema: Arc::new(Schema::new(fields)),
        upstream_index,
        upstream_width: upstream.columns.len(),
        upstream: upstream.clone(),
    })
}

/// Every upstream column with its mapped type, for `CREATE TABLE t (*) FROM src TABLE 'db.t'`.
/// An unmappable column is 0A000 naming it. Date and time columns are reported nullable even when
/// upstream is NOT NULL, because zero dates and out-of-range TIME values read as NULL.
#[allow(clippy::type_complexity)]
pub fn capture_all(upstream: &UpstreamTable) -> Result<(Vec<(String, SqlType, bool)>, Vec<String>, CapturedTable)> {
    let mut declared = Vec::with_capacity(upstream.columns.len());
    for col in &upstream.columns {
        let ty = col.sql_type.as_ref().map_err(|e| {
            Error::user(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "column \"{}\" of upstream table {}.{} ({}) cannot be read: {e}; list the columns to read instead of (*)",
                    col.name, upstream.database, upstream.name, col.column_type
                ),
            )
        })?;
        let may_read_null = matches!(
            ty,
            SqlType::Date | SqlType::Timestamp | SqlType::Timestamptz | SqlType::Time
        );
        declared.push((col.name.clone(), ty.clone(), col.nullable || may_read_null));
    }
    let pk: Vec<String> = upstream
        .primary_key
        .iter()
        .map(|i| upstream.columns[*i].name.clone())
        .collect();
    let captured = capture(&declared, &pk, upstream)?;
    Ok((declared, pk, captured))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ct: &str, dt: &str, nullable: bool) -> UpstreamColumn {
        let kind = MysqlType::parse(dt, ct, Some("utf8mb4"), false);
        UpstreamColumn {
            name: name.into(),
            column_type: ct.into(),
            nullable,
            sql_type: kind.as_ref().map(|k| k.sql_type()).map_err(Clone::clone),
            kind: kind.ok(),
        }
    }

    fn table() -> UpstreamTable {
        UpstreamTable {
            database: "shop".into(),
            name: "orders".into(),
            columns: vec![
                col("id", "int(11)", "int", false),
                col("amount", "decimal(10,2)", "decimal", true),
                col("note", "varchar(20)", "varchar", true),
                col("shape", "geometry", "geometry", true),
            ],
            primary_key: vec![0],
        }
    }

    #[test]
    fn captures_a_subset_in_freshet_order_with_widening() {
        let declared = vec![
            ("note".to_string(), SqlType::Text, true),
            ("ID".to_string(), SqlType::Int8, false),
            ("amount".to_string(), SqlType::Numeric(Some((12, 3))), true),
        ];
        let c = capture(&declared, &["id".into()], &table()).unwrap();
        assert_eq!(c.upstream_index, vec![2, 0, 1]);
        assert_eq!(c.upstream_width, 4);
        assert_eq!(c.declared_pk(), vec!["ID".to_string()]);
    }

    #[test]
    fn refuses_mismatches_naming_the_column() {
        let t = table();
        let e = capture(&[("id".into(), SqlType::Int2, false)], &["id".into()], &t).unwrap_err();
        assert_eq!(e.code(), SqlState::DATATYPE_MISMATCH);
        assert!(
            e.to_string().contains("int(11)") && e.to_string().contains("smallint"),
            "{e}"
        );
        let e = capture(&[("nope".into(), SqlType::Int4, true)], &[], &t).unwrap_err();
        assert_eq!(e.code(), SqlState::UNDEFINED_COLUMN);
        let e = capture(&[("id".into(), SqlType::Int4, false)], &[], &t).unwrap_err();
        assert_eq!(e.code(), SqlState::INVALID_TABLE_DEFINITION);
        let e = capture_all(&t).unwrap_err();
        assert_eq!(e.code(), SqlState::FEATURE_NOT_SUPPORTED);
        assert!(e.to_string().contains("shape"), "{e}");
    }
}
