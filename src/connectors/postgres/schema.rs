//! Upstream tables as PostgreSQL's catalog describes them, their mapping to Freshet types, and
//! the mapping of a Freshet table's columns onto them ([`Captured`]).

use tokio_postgres::Client;

use super::config::PostgresConfig;
use super::upstream_error;
use crate::catalog::{SqlType, Table};
use crate::error::{Error, Result, SqlState};

/// One upstream column.
#[derive(Clone, Debug)]
pub struct PgColumn {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`, e.g. `character varying(20)`, `integer[]`.
    pub type_name: String,
    pub type_oid: u32,
    pub nullable: bool,
    pub sql_type: std::result::Result<SqlType, String>,
}

/// An upstream table.
#[derive(Clone, Debug)]
pub struct PgTable {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<PgColumn>,
    /// Indexes into `columns`, in key order.
    pub primary_key: Vec<usize>,
    /// `relreplident`: `d` (default: the primary key), `f` (full), `i` (an index), `n` (nothing).
    pub replica_identity: char,
    /// Rows estimated by the planner statistics (`reltuples`; 0 when never analyzed).
    pub estimated_rows: u64,
}

impl PgTable {
    /// `schema.name`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `"schema"."name"` quoted for SQL.
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}",
            super::quote_ident(&self.schema),
            super::quote_ident(&self.name)
        )
    }
}

/// Maps an upstream type (as `format_type` prints it; `typtype` `e` = enum) to Freshet's.
pub fn map_type(type_name: &str, typtype: &str) -> std::result::Result<SqlType, String> {
    if typtype == "e" {
        return Ok(SqlType::Text);
    }
    let t = type_name.trim();
    if t.starts_with("time with time zone") || t.starts_with("time(") && t.ends_with("with time zone") {
        return Err("time with time zone has no Freshet type".into());
    }
    match SqlType::parse(t) {
        Ok(SqlType::Array(e)) if matches!(*e, SqlType::Array(_)) => Err("nested arrays are not supported".into()),
        Ok(ty) => Ok(ty),
        Err(_) => Err(format!("type {t} has no Freshet type")),
    }
}

/// Splits `schema.table` (or `table`, in the source's `schema.name`), unquoting `"..."` parts.
pub fn split_name(cfg: &PostgresConfig, external: &str) -> Result<(String, String)> {
    let parts = split_quoted(external.trim());
    match parts.as_slice() {
        [t] if !t.is_empty() => Ok((cfg.schema.clone(), t.clone())),
        [s, t] if !s.is_empty() && !t.is_empty() => Ok((s.clone(), t.clone())),
        _ => Err(Error::user(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid upstream table name '{external}' (expected 'schema.table' or 'table')"),
        )),
    }
}

fn split_quoted(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                parts.last_mut().expect("a part").push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(String::new()),
            c if quoted => parts.last_mut().expect("a part").push(c),
            c => parts.last_mut().expect("a part").push(c.to_ascii_lowercase()),
        }
    }
    parts
}

/// Describes upstream table `external` (`schema.table`): 42P01 when it does not exist.
pub async fn describe_table(cfg: &PostgresConfig, external: &str) -> Result<PgTable> {
    let client = cfg.connect().await?;
    describe_on(cfg, &client, external).await
}

pub(crate) async fn describe_on(cfg: &PostgresConfig, client: &Client, external: &str) -> Result<PgTable> {
    let (schema, name) = split_name(cfg, external)?;
    let err = |e| upstream_error(cfg, "describe", e);
    let rel = client
        .query_opt(
            "SELECT c.oid, c.relkind::text, c.relreplident::text, greatest(c.reltuples, 0)::int8
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &name],
        )
        .await
        .map_err(err)?;
    let Some(rel) = rel else {
        return Err(Error::user(
            SqlState::UNDEFINED_TABLE,
            format!("postgres-cdc {}: table {schema}.{name} does not exist", cfg.address()),
        ));
    };
    let oid: u32 = rel.get(0);
    let kind: String = rel.get(1);
    if kind != "r" && kind != "p" {
        return Err(Error::user(
            SqlState::WRONG_OBJECT_TYPE,
            format!("postgres-cdc {}: {schema}.{name} is not a table", cfg.address()),
        ));
    }
    let replica_identity = rel.get::<_, String>(2).chars().next().unwrap_or('d');
    let estimated_rows = rel.get::<_, i64>(3) as u64;
    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypid, NOT a.attnotnull, t.typtype::text
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(err)?
        .into_iter()
        .map(|r| {
            let type_name: String = r.get(1);
            let typtype: String = r.get(4);
            PgColumn {
                name: r.get(0),
                sql_type: map_type(&type_name, &typtype),
                type_name,
                type_oid: r.get(2),
                nullable: r.get(3),
            }
        })
        .collect::<Vec<_>>();
    let key_names: Vec<String> = client
        .query(
            "SELECT a.attname::text
             FROM pg_index i
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = $1 AND i.indisprimary
             ORDER BY k.ord",
            &[&oid],
        )
        .await
        .map_err(err)?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let primary_key = key_names
        .iter()
        .filter_map(|k| columns.iter().position(|c| &c.name == k))
        .collect();
    Ok(PgTable {
        oid,
        schema,
        name,
        columns,
        primary_key,
        replica_identity,
        estimated_rows,
    })
}

/// Refuses a table whose updates and deletes would not say which row they change: replica
/// identity must be DEFAULT (with the primary key) or FULL.
pub fn check_replica_identity(cfg: &PostgresConfig, t: &PgTable) -> Result<()> {
    match t.replica_identity {
        'd' | 'f' => Ok(()),
        other => Err(Error::user_detail(
            SqlState("55000"),
            format!(
                "postgres-cdc {}: table {} has REPLICA IDENTITY {}, which does not identify rows by primary key",
                cfg.address(),
                t.qualified(),
                if other == 'n' { "NOTHING" } else { "USING INDEX" }
            ),
            format!("ALTER TABLE {} REPLICA IDENTITY DEFAULT (or FULL)", t.quoted()),
        )),
    }
}

/// A Freshet table mapped onto its upstream table.
#[derive(Clone, Debug)]
pub struct Captured {
    pub table: std::sync::Arc<Table>,
    pub upstream: PgTable,
    /// Upstream column names of the Freshet table's visible columns, in Freshet's order.
    pub columns: Vec<String>,
    /// Freshet's SQL type of each of those columns.
    pub types: Vec<SqlType>,
}

/// Maps `table`'s visible columns onto `upstream` by name; an error names the first column that
/// is missing or whose type no longer maps to the declared one.
pub fn capture(table: &std::sync::Arc<Table>, upstream: &PgTable) -> Result<Captured> {
    let mut columns = Vec::new();
    let mut types = Vec::new();
    for c in table.def.upstream_columns() {
        let Some(u) = upstream.columns.iter().find(|u| u.name.eq_ignore_ascii_case(&c.name)) else {
            return Err(Error::user(
                SqlState::UNDEFINED_COLUMN,
                format!(
                    "column \"{}\" no longer exists in upstream table {}",
                    c.name,
                    upstream.qualified()
                ),
            ));
        };
        match &u.sql_type {
            Ok(t) if *t == c.ty => {}
            _ => {
                return Err(Error::user(
                    SqlState::DATATYPE_MISMATCH,
                    format!(
                        "column \"{}\" of upstream table {} is now {}, declared {}",
                        c.name,
                        upstream.qualified(),
                        u.type_name,
                        c.ty.name()
                    ),
                ))
            }
        }
        columns.push(u.name.clone());
        types.push(c.ty.clone());
    }
    Ok(Captured {
        table: table.clone(),
        upstream: upstream.clone(),
        columns,
        types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_format_type_names() {
        let m = |t: &str| map_type(t, "b");
        assert_eq!(m("integer").unwrap(), SqlType::Int4);
        assert_eq!(m("character varying(20)").unwrap(), SqlType::Varchar(Some(20)));
        assert_eq!(m("character(3)").unwrap(), SqlType::Varchar(Some(3)));
        assert_eq!(m("numeric(10,2)").unwrap(), SqlType::Numeric(Some((10, 2))));
        assert_eq!(m("timestamp(3) with time zone").unwrap(), SqlType::Timestamptz);
        assert_eq!(m("json").unwrap(), SqlType::Jsonb);
        assert_eq!(m("text[]").unwrap(), SqlType::Array(Box::new(SqlType::Text)));
        assert_eq!(map_type("mood", "e").unwrap(), SqlType::Text);
        assert!(m("inet").is_err());
        assert!(m("time with time zone").is_err());
    }

    #[test]
    fn splits_upstream_names() {
        assert_eq!(split_quoted("public.Orders"), vec!["public", "orders"]);
        assert_eq!(split_quoted("\"My.Schema\".\"T\"\"x\""), vec!["My.Schema", "T\"x"]);
    }
}
