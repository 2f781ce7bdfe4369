//! The table function behind `FOR SYSTEM_TIME AS OF PROCTIME()` (`crate::sql::temporal`
//! rewrites the clause into a call of it): resolves the table like a plain table reference and
//! returns its provider marked temporal, which a plain query scans as usual and the view planner
//! turns into a lookup join (`crate::dataflow::ops::temporal_join`).

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Expr;

use super::context::QueryEnv;
use super::provider::StoredTable;
use crate::error::{Error, SqlState};
use crate::sql::temporal::PROCTIME;

pub struct TemporalTableFn {
    pub env: QueryEnv,
}

impl std::fmt::Debug for TemporalTableFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemporalTableFn")
    }
}

fn ours(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl TableFunctionImpl for TemporalTableFn {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let texts: Vec<&str> = args
            .exprs()
            .iter()
            .map(|e| match e {
                Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Ok(s.as_str()),
                _ => Err(ours(Error::internal(format!(
                    "{} takes text arguments",
                    crate::sql::temporal::FUNCTION
                )))),
            })
            .collect::<DfResult<_>>()?;
        let (as_of, name) = match texts.split_first() {
            Some((a, n)) if !n.is_empty() && n.len() <= 2 => (*a, n),
            _ => {
                return Err(ours(Error::user(
                    SqlState::SYNTAX_ERROR,
                    "FOR SYSTEM_TIME AS OF applies to a table name (schema.table or table)",
                )))
            }
        };
        if as_of != PROCTIME {
            return Err(ours(Error::unsupported(format!(
                "{as_of} (a table is read FOR SYSTEM_TIME AS OF PROCTIME() only: a process-time temporal join)"
            ))));
        }
        let catalog = &self.env.view.committed.catalog;
        let schemas: Vec<String> = match name {
            [schema, _] => vec![schema.to_string()],
            _ => std::iter::once(self.env.default_schema())
                .chain(self.env.search_path.iter().cloned())
                .collect(),
        };
        let table_name = name[name.len() - 1];
        for schema in &schemas {
            if let Some(t) = catalog.table(schema, table_name) {
                let table = StoredTable::new(t.clone(), self.env.view.clone(), false).temporal();
                return Ok(Arc::new(table));
            }
            if catalog.view(schema, table_name).is_some() {
                return Err(ours(Error::unsupported(format!(
                    "FOR SYSTEM_TIME AS OF PROCTIME() on materialized view {table_name}: a temporal join looks rows up in a table by its primary key"
                ))));
            }
        }
        Err(ours(Error::user(
            SqlState::UNDEFINED_TABLE,
            format!("relation \"{}\" does not exist", name.join(".")),
        )))
    }
}
