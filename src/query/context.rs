//! Builds the DataFusion `SessionContext` a statement is planned and run in.
//!
//! The context has one catalog, `freshet`, whose schemas are the user schemas of the read
//! view's catalog plus `pg_catalog` and `information_schema` (derived from the same catalog).
//! Unqualified names resolve along `search_path` (DataFusion looks them up in the first existing
//! schema of the path, which then searches the later ones) and then, as in PostgreSQL, in
//! `pg_catalog`.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProviderList, SchemaProvider};
use datafusion::common::config::Dialect;
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DfResult;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::provider::StoredTable;
use super::{functions, ReadView};
use crate::catalog::pg_catalog;

/// The name of the one DataFusion catalog.
pub const CATALOG_NAME: &str = "freshet";

/// What a statement's context is made of.
#[derive(Clone)]
pub struct QueryEnv {
    pub view: ReadView,
    pub search_path: Vec<String>,
    pub user: String,
    pub database: String,
    /// Table (by id) whose hidden columns are exposed: the target of UPDATE / DELETE.
    pub expose_hidden_of: Option<u32>,
    /// The status of running sources (for `freshet_catalog.sources`).
    pub sources: Arc<crate::connectors::runtime::SourceStatusBoard>,
}

/// Statement-local tables (e.g. the rows RETURNING reads), visible in the default schema.
pub type ExtraTables = Vec<(String, Arc<dyn TableProvider>)>;

impl QueryEnv {
    /// The schema unqualified names resolve in.
    pub fn default_schema(&self) -> String {
        self.search_path
            .iter()
            .find(|s| self.view.committed.catalog.schema(s).is_some())
            .cloned()
            .unwrap_or_else(|| crate::catalog::DEFAULT_SCHEMA.to_string())
    }
}

/// Function registries and settings, built once and cloned per statement.
static BASE_STATE: LazyLock<SessionState> = LazyLock::new(|| {
    let mut config = SessionConfig::new()
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(false)
        .with_target_partitions(2)
        .with_batch_size(4096);
    {
        let opts = config.options_mut();
        opts.sql_parser.dialect = Dialect::PostgreSQL;
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.sql_parser.enable_ident_normalization = true;
        opts.execution.collect_statistics = false;
        opts.execution.parquet.schema_force_view_types = false;
        opts.optimizer.prefer_hash_join = true;
    }
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    for udf in functions::static_udfs() {
        state.register_udf(Arc::new(udf)).expect("register udf");
    }
    state
});

/// A fresh context over `env`.
pub fn session_context(env: &QueryEnv) -> SessionContext {
    session_context_with(env, Vec::new())
}

/// A fresh context over `env` plus statement-local tables.
pub fn session_context_with(env: &QueryEnv, extra: ExtraTables) -> SessionContext {
    // A copy of the base state with a catalog list of its own. Not through
    // `SessionStateBuilder::new_from_existing(..).build()`, which registers every function
    // again (~400 names and aliases into fresh maps): ~100 µs a statement, a third of a
    // single-row UPDATE's latency without fsync (BENCHMARKS.md, stop 46).
    let mut state = BASE_STATE.clone();
    state.config_mut().options_mut().catalog.default_catalog = CATALOG_NAME.to_string();
    state.config_mut().options_mut().catalog.default_schema = env.default_schema();
    state.register_catalog_list(Arc::new(MemoryCatalogProviderList::new()));
    for udf in functions::session_udfs(env) {
        state.register_udf(Arc::new(udf)).expect("register udf");
    }
    let ctx = SessionContext::new_with_state(state);
    ctx.register_udtf(
        crate::sql::temporal::FUNCTION,
        Arc::new(super::temporal::TemporalTableFn { env: env.clone() }),
    );
    ctx.register_catalog(
        CATALOG_NAME,
        Arc::new(FreshetCatalog {
            env: env.clone(),
            extra: Arc::new(extra),
        }),
    );
    ctx
}

#[derive(Clone)]
struct FreshetCatalog {
    env: QueryEnv,
    extra: Arc<ExtraTables>,
}

impl std::fmt::Debug for FreshetCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FreshetCatalog")
    }
}

impl CatalogProvider for FreshetCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .env
            .view
            .committed
            .catalog
            .schemas()
            .map(|s| s.name.clone())
            .collect();
        names.extend(crate::catalog::SYSTEM_SCHEMAS.iter().map(|s| s.to_string()));
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let is_system = crate::catalog::SYSTEM_SCHEMAS.contains(&name);
        if !is_system && self.env.view.committed.catalog.schema(name).is_none() {
            return None;
        }
        let is_default = name == self.env.default_schema();
        Some(Arc::new(FreshetSchema {
            env: self.env.clone(),
            name: name.to_string(),
            falls_back_to_pg_catalog: is_default,
            extra: if is_default {
                self.extra.clone()
            } else {
                Arc::new(Vec::new())
            },
        }))
    }
}

struct FreshetSchema {
    env: QueryEnv,
    name: String,
    falls_back_to_pg_catalog: bool,
    extra: Arc<ExtraTables>,
}

impl std::fmt::Debug for FreshetSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "schema {}", self.name)
    }
}

#[async_trait]
impl SchemaProvider for FreshetSchema {
    fn table_names(&self) -> Vec<String> {
        match self.name.as_str() {
            "pg_catalog" => pg_catalog::PG_CATALOG_TABLES.iter().map(|s| s.to_string()).collect(),
            "information_schema" => pg_catalog::INFORMATION_SCHEMA_TABLES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            _ => {
                let catalog = &self.env.view.committed.catalog;
                catalog
                    .tables()
                    .filter(|t| t.def.schema == self.name)
                    .map(|t| t.def.name.clone())
                    .chain(
                        catalog
                            .views()
                            .filter(|v| v.def.schema == self.name)
                            .map(|v| v.def.name.clone()),
                    )
                    .collect()
            }
        }
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let catalog = &self.env.view.committed.catalog;
        if let Some((_, t)) = self.extra.iter().find(|(n, _)| n == name) {
            return Ok(Some(t.clone()));
        }
        match self.name.as_str() {
            "pg_catalog" => return pg_catalog::system_table(&self.env, "pg_catalog", name),
            "information_schema" => return pg_catalog::system_table(&self.env, "information_schema", name),
            crate::catalog::system::SCHEMA => return crate::catalog::system::system_table(&self.env, name),
            _ => {}
        }
        if let Some(t) = catalog.table(&self.name, name) {
            let hidden = self.env.expose_hidden_of == Some(t.def.id);
            return Ok(Some(Arc::new(StoredTable::new(
                t.clone(),
                self.env.view.clone(),
                hidden,
            ))));
        }
        if let Some(v) = catalog.view(&self.name, name) {
            return Ok(Some(Arc::new(super::view_provider::ViewTable::new(
                v.clone(),
                self.env.view.committed.snapshot.clone(),
            ))));
        }
        if self.falls_back_to_pg_catalog {
            // The rest of search_path, in order (the default schema is the first existing one).
            for schema in self.env.search_path.iter().filter(|s| **s != self.name) {
                if let Some(t) = catalog.table(schema, name) {
                    let hidden = self.env.expose_hidden_of == Some(t.def.id);
                    return Ok(Some(Arc::new(StoredTable::new(
                        t.clone(),
                        self.env.view.clone(),
                        hidden,
                    ))));
                }
            }
            return pg_catalog::system_table(&self.env, "pg_catalog", name);
        }
        Ok(None)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|n| n == name)
    }
}
