//! Connectors: the outside world in (sources) and, later, out (sinks).
//!
//! A change-data-capture source follows an upstream database: a consistent snapshot of each
//! captured table first, then every committed upstream transaction, each applied to Freshet's
//! tables in one epoch together with the position to resume from. Everything connector-specific
//! (protocol, type mapping, positions) lives in the connector's folder; what all sources share
//! (the running tasks, their status, turning changes into an epoch's writes) is in [`runtime`].
//!
//! ```text
//!  CREATE SOURCE ──▶ validate()          CREATE TABLE .. FROM src TABLE 'x' ──▶ describe()
//!  catalog change ──▶ runtime::SourceRuntime::reconcile ──▶ one task per source:
//!        snapshot (chunks) ─▶ stream ─▶ SourceTask::commit(rows + position) ─▶ coordinator
//! ```
//!
//! - [`mysql`]: MySQL / MariaDB change-data-capture (consistent snapshot, then the binlog).
//! - [`postgres`]: PostgreSQL change-data-capture (exported snapshot, then logical replication).
//! - [`generator`]: generated streams (Nexmark).

pub mod generator;
pub mod mysql;
pub mod postgres;
pub mod runtime;

use std::collections::BTreeMap;

use crate::catalog::SqlType;
use crate::error::{Error, Result, SqlState};

/// The connectors `CREATE SOURCE ... WITH (connector = '...')` accepts.
pub const SOURCE_CONNECTORS: &[&str] = &["mysql-cdc", "postgres-cdc", "nexmark", "datagen"];

/// One upstream column, mapped to a Freshet type where possible.
#[derive(Clone, Debug)]
pub struct UpstreamColumn {
    pub name: String,
    /// The upstream type as upstream spells it (for messages).
    pub upstream_type: String,
    pub nullable: bool,
    /// `Err`: no Freshet type holds it (the reason says why).
    pub sql_type: std::result::Result<SqlType, String>,
}

/// An upstream table as a connector sees it.
#[derive(Clone, Debug)]
pub struct UpstreamTable {
    /// The name as the source names it (`db.table`).
    pub name: String,
    pub columns: Vec<UpstreamColumn>,
    /// Primary-key column names, in key order.
    pub primary_key: Vec<String>,
    /// Rows are only ever added (a generated stream): a table without a primary key may read
    /// it, keyed by a hidden row id.
    pub append_only: bool,
}

/// The connector named by a source's options, refused when unknown.
pub fn connector_of(options: &BTreeMap<String, String>) -> Result<String> {
    let Some(c) = options.get("connector") else {
        return Err(Error::user(
            SqlState::INVALID_PARAMETER_VALUE,
            "CREATE SOURCE needs WITH (connector = '...')",
        ));
    };
    if !SOURCE_CONNECTORS.contains(&c.as_str()) {
        return Err(Error::unsupported(format!(
            "source connector '{c}' (available: {})",
            if SOURCE_CONNECTORS.is_empty() {
                "none yet".to_string()
            } else {
                SOURCE_CONNECTORS.join(", ")
            }
        )));
    }
    Ok(c.clone())
}

/// Checks a source's options and that its upstream is reachable and configured for capture.
pub async fn validate(connector: &str, options: &BTreeMap<String, String>) -> Result<()> {
    match connector {
        "mysql-cdc" => mysql::MysqlConfig::from_options(options)?.check().await,
        "postgres-cdc" => postgres::PostgresConfig::from_options(options)?.check().await,
        "nexmark" => generator::nexmark::NexmarkOptions::from_options(options).map(|_| ()),
        "datagen" => Err(Error::unsupported(
            "CREATE SOURCE .. (connector = 'datagen'): datagen makes rows for a table's columns; use CREATE TABLE t (..) WITH (connector = 'datagen', ..)",
        )),
        other => Err(Error::unsupported(format!("source connector '{other}'"))),
    }
}

/// Describes upstream table `external` of a source.
pub async fn describe(connector: &str, options: &BTreeMap<String, String>, external: &str) -> Result<UpstreamTable> {
    match connector {
        "mysql-cdc" => {
            let cfg = mysql::MysqlConfig::from_options(options)?;
            let t = mysql::describe_table(&cfg, external).await?;
            Ok(UpstreamTable {
                name: format!("{}.{}", t.database, t.name),
                primary_key: t.primary_key.iter().map(|i| t.columns[*i].name.clone()).collect(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| UpstreamColumn {
                        name: c.name.clone(),
                        upstream_type: c.column_type.clone(),
                        nullable: c.nullable,
                        sql_type: c.sql_type.clone().map_err(|e| e.to_string()),
                    })
                    .collect(),
                append_only: false,
            })
        }
        "postgres-cdc" => {
            let cfg = postgres::PostgresConfig::from_options(options)?;
            let t = postgres::describe_table(&cfg, external).await?;
            postgres::schema::check_replica_identity(&cfg, &t)?;
            Ok(UpstreamTable {
                name: t.qualified(),
                primary_key: t.primary_key.iter().map(|i| t.columns[*i].name.clone()).collect(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| UpstreamColumn {
                        name: c.name.clone(),
                        upstream_type: c.type_name.clone(),
                        nullable: c.nullable,
                        sql_type: c.sql_type.clone(),
                    })
                    .collect(),
                append_only: false,
            })
        }
        "nexmark" => {
            generator::nexmark::NexmarkOptions::from_options(options)?;
            generator::nexmark::describe(external)
        }
        other => Err(Error::unsupported(format!("source connector '{other}'"))),
    }
}

/// The upstream table a `CREATE TABLE name .. WITH (connector = ..)` reads: for `nexmark`, the
/// `nexmark.table.type` option (person, auction or bid).
pub fn table_of_options(connector: &str, options: &BTreeMap<String, String>, _table: &str) -> Result<String> {
    match connector {
        "nexmark" => options.get("nexmark.table.type").cloned().ok_or_else(|| {
            Error::user(
                SqlState::INVALID_PARAMETER_VALUE,
                "a nexmark table needs the option nexmark.table.type (person, auction or bid)",
            )
        }),
        other => Err(Error::unsupported(format!(
            "CREATE TABLE .. WITH (connector = '{other}'): use CREATE SOURCE, then CREATE TABLE .. FROM"
        ))),
    }
}

/// Replays streams for the views created over them (`dataflow::stream_history`): the
/// generators regenerate their rows up to the committed position.
pub struct StreamReplay;

impl crate::dataflow::stream_history::StreamHistory for StreamReplay {
    fn replay(
        &self,
        catalog: &crate::catalog::Catalog,
        table: &std::sync::Arc<crate::catalog::Table>,
        snapshot: &dyn crate::state::StateSnapshot,
    ) -> Result<crate::dataflow::changes::Changes> {
        let source = table
            .def
            .source
            .as_ref()
            .and_then(|s| catalog.source_by_id(s.source))
            .ok_or_else(|| Error::internal(format!("stream {} has no source", table.def.name)))?;
        let rows = match source.connector.as_str() {
            "nexmark" => generator::nexmark::replay(source, table, snapshot)?,
            "datagen" => generator::datagen::replay(source, table, snapshot)?,
            other => {
                return Err(Error::internal(format!(
                    "stream {} reads a '{other}' source, which cannot replay it",
                    table.def.name
                )))
            }
        };
        runtime::stream_rows(table, rows)
    }
}

/// Whether `options` of a `connector` source name one upstream table (CREATE SOURCE with them
/// makes a stream of that table).
pub fn names_one_table(connector: &str, options: &BTreeMap<String, String>) -> bool {
    connector == "nexmark" && options.contains_key("nexmark.table.type")
}

/// Whether a connector's sources only ever add rows (never update or delete): the sources a
/// stream can read.
pub fn only_appends(connector: &str) -> bool {
    matches!(connector, "nexmark" | "datagen")
}

/// Cleans up upstream after a source was dropped (a `postgres-cdc` source with
/// `slot.drop.on.drop` drops its replication slot). Failures are logged, not returned: the
/// source is gone either way.
pub async fn source_dropped(source: &crate::catalog::SourceDef) {
    if source.connector == "postgres-cdc" {
        postgres::source::drop_slot_if_asked(source).await;
    }
}
