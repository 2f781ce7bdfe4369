//! SET / SHOW / RESET, SHOW TABLES, DESCRIBE.

use sqlparser::ast::{Expr, Reset, Set, Statement, Value};

use super::dml::{rows_output, text_batch};
use crate::error::{Error, Result};
use crate::session::{Output, Session};

/// The text a SET value stands for (`SET x = 'a'`, `SET x TO a, b`, `SET x = 3`).
fn value_text(values: &[Expr]) -> String {
    values
        .iter()
        .map(|v| match v {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn execute(session: &mut Session, stmt: Statement) -> Result<Output> {
    match stmt {
        Statement::Set(set) => {
            match set {
                Set::SingleAssignment { variable, values, .. } => {
                    let name = variable.to_string();
                    let v = value_text(&values);
                    if v.eq_ignore_ascii_case("default") {
                        session.settings.reset(&name)?;
                    } else {
                        session.settings.set(&name, &v)?;
                    }
                }
                Set::SetTimeZone { value, .. } => session.settings.set("timezone", &value_text(&[value]))?,
                Set::SetNames { charset_name, .. } => session.settings.set("client_encoding", &charset_name.value)?,
                Set::SetNamesDefault {} => session.settings.reset("client_encoding")?,
                Set::SetTransaction { .. } => {}
                Set::SetSessionParam(p) => {
                    return Err(Error::unsupported(format!("SET {p}")));
                }
                other => return Err(Error::unsupported(format!("{other}"))),
            }
            Ok(Output::command("SET"))
        }
        Statement::Reset(r) => {
            match r.reset {
                Reset::ALL => session.settings.reset_all(),
                Reset::ConfigurationParameter(name) => {
                    session.settings.reset(&super::object_name_parts(&name).join("."))?
                }
            }
            Ok(Output::command("RESET"))
        }
        Statement::ShowVariable { variable } => {
            // `SHOW time zone` is two words; `SHOW myapp.flag` is one dotted name.
            let words: Vec<String> = variable.iter().map(|i| i.value.clone()).collect();
            let spaced = words.join(" ");
            let name = match spaced.to_ascii_lowercase().as_str() {
                "time zone" | "transaction isolation level" | "session authorization" => spaced,
                _ => words.join("."),
            };
            if name.eq_ignore_ascii_case("all") {
                let all = session.settings.all();
                let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                    datafusion::arrow::datatypes::Field::new(
                        "name",
                        datafusion::arrow::datatypes::DataType::Utf8,
                        true,
                    ),
                    datafusion::arrow::datatypes::Field::new(
                        "setting",
                        datafusion::arrow::datatypes::DataType::Utf8,
                        true,
                    ),
                    datafusion::arrow::datatypes::Field::new(
                        "description",
                        datafusion::arrow::datatypes::DataType::Utf8,
                        true,
                    ),
                ]));
                let col = |f: fn(&(String, String, String)) -> String| {
                    std::sync::Arc::new(datafusion::arrow::array::StringArray::from(
                        all.iter().map(f).collect::<Vec<_>>(),
                    )) as datafusion::arrow::array::ArrayRef
                };
                let batch = datafusion::arrow::array::RecordBatch::try_new(
                    schema,
                    vec![col(|r| r.0.clone()), col(|r| r.1.clone()), col(|r| r.2.clone())],
                )?;
                return rows_output(batch, "SHOW");
            }
            if name.eq_ignore_ascii_case("tables") {
                return show_tables(session, None);
            }
            let value = session.settings.get(&name)?;
            let column = match name.to_ascii_lowercase().as_str() {
                "time zone" => "TimeZone".to_string(),
                "transaction isolation level" => "transaction_isolation".to_string(),
                _ => name.to_ascii_lowercase(),
            };
            rows_output(text_batch(&column, vec![value])?, "SHOW")
        }
        Statement::ShowTables { show_options, .. } => {
            let schema = show_options
                .show_in
                .and_then(|i| i.parent_name)
                .map(|n| super::object_name_parts(&n).join("."));
            show_tables(session, schema)
        }
        Statement::ExplainTable { table_name, .. } => describe(session, &table_name),
        _ => Err(Error::internal("not a SET / SHOW statement")),
    }
}

fn show_tables(session: &Session, schema: Option<String>) -> Result<Output> {
    let env = session.query_env();
    let schema = schema.unwrap_or_else(|| env.default_schema());
    let names: Vec<String> = env
        .view
        .committed
        .catalog
        .tables()
        // Streams are sources (SHOW SOURCES lists them).
        .filter(|t| t.def.schema == schema && t.def.layout != crate::catalog::Layout::Stream)
        .map(|t| t.def.name.clone())
        .collect();
    rows_output(text_batch("Name", names)?, "SHOW")
}

/// `DESCRIBE t`: one row per visible column, then the primary key.
fn describe(session: &Session, name: &sqlparser::ast::ObjectName) -> Result<Output> {
    let env = session.query_env();
    let t = env
        .view
        .committed
        .catalog
        .resolve_table(&super::object_name_parts(name), &env.search_path)?;
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut nullable = Vec::new();
    let mut defaults = Vec::new();
    for c in t.def.columns.iter().filter(|c| !c.hidden) {
        names.push(c.name.clone());
        types.push(c.ty.name());
        nullable.push(if c.not_null { "NO" } else { "YES" }.to_string());
        defaults.push(c.default.clone());
    }
    if !t.has_row_id() {
        names.push("primary key".into());
        types.push(
            t.def
                .primary_key
                .iter()
                .map(|i| t.def.columns[*i].name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        );
        nullable.push(String::new());
        defaults.push(None);
    }
    use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new("Name", DataType::Utf8, true),
        Field::new("Type", DataType::Utf8, true),
        Field::new("Nullable", DataType::Utf8, true),
        Field::new("Default", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(names)) as ArrayRef,
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(nullable)),
            Arc::new(StringArray::from(defaults)),
        ],
    )?;
    rows_output(batch, "DESCRIBE")
}

/// `SHOW MATERIALIZED VIEWS`: the views of the current schema.
/// SHOW SOURCES: the sources of the current schema, their connector and state.
pub fn show_sources(session: &Session) -> Result<Output> {
    let env = session.query_env();
    let schema = env.default_schema();
    let catalog = &env.view.committed.catalog;
    let mut names = Vec::new();
    let mut connectors = Vec::new();
    let mut states = Vec::new();
    for s in catalog.sources().filter(|s| s.schema == schema) {
        names.push(s.name.clone());
        connectors.push(s.connector.clone());
        let state = match env.sources.get(s.id) {
            Some(st) => st.state.as_str(),
            None if catalog.fed_tables_of_source(s.id).is_empty() => "idle",
            None => "starting",
        };
        states.push(state);
    }
    let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(
        SOURCES_COLUMNS
            .iter()
            .map(|n| datafusion::arrow::datatypes::Field::new(*n, datafusion::arrow::datatypes::DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let batch = datafusion::arrow::array::RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(datafusion::arrow::array::StringArray::from(names)),
            std::sync::Arc::new(datafusion::arrow::array::StringArray::from(connectors)),
            std::sync::Arc::new(datafusion::arrow::array::StringArray::from(states)),
        ],
    )?;
    rows_output(batch, "SHOW")
}

/// The columns of SHOW SOURCES (all text).
pub const SOURCES_COLUMNS: [&str; 3] = ["Name", "Connector", "State"];

pub fn show_views(session: &Session) -> Result<Output> {
    let env = session.query_env();
    let schema = env.default_schema();
    let names: Vec<String> = env
        .view
        .committed
        .catalog
        .views_in_order()
        .into_iter()
        .filter(|v| v.def.schema == schema)
        .map(|v| v.def.name.clone())
        .collect();
    rows_output(text_batch("Name", names)?, "SHOW")
}
