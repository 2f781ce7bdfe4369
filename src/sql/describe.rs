//! Describe for the extended protocol: the parameter types and result columns of a statement,
//! computed without running it (drivers bind typed values from the parameter types).

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::DataType;
use datafusion::sql::parser::Statement as DfStatement;
use pgwire::api::Type;
use sqlparser::ast::{AssignmentTarget, Expr, FromTable, SelectItem, SetExpr, Statement, TableObject, Value};

use super::params;
use crate::catalog::SqlType;
use crate::error::Result;
use crate::query::context::{session_context, QueryEnv};

pub struct Described {
    pub params: Vec<Type>,
    pub fields: Option<Vec<(String, Type, i32)>>,
}

fn placeholder(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('$')?.parse().ok(),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => placeholder(expr),
        _ => None,
    }
}

/// Plans `sql` and reports its parameter types and output columns.
async fn plan_types(
    env: &QueryEnv,
    stmt: Statement,
) -> Result<(HashMap<String, Option<DataType>>, Vec<(String, Type, i32)>)> {
    let ctx = session_context(env);
    let plan = ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
        .await?;
    let params = plan.get_parameter_types()?;
    let fields = plan
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let t = SqlType::from_field(f);
            (f.name().clone(), t.pg_type(), t.typmod())
        })
        .collect();
    Ok((params, fields))
}

async fn plan_sql_types(
    env: &QueryEnv,
    sql: &str,
) -> Result<(HashMap<String, Option<DataType>>, Vec<(String, Type, i32)>)> {
    let mut stmt = super::parse(sql)?
        .pop()
        .ok_or_else(|| crate::error::Error::internal("empty statement"))?;
    super::rewrite::rewrite(&mut stmt);
    plan_types(env, stmt).await
}

fn merge(types: &mut [Option<Type>], inferred: HashMap<String, Option<DataType>>) {
    for (name, dt) in inferred {
        let Some(i) = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        if let (Some(slot), Some(dt)) = (types.get_mut(i.wrapping_sub(1)), dt) {
            if slot.is_none() {
                *slot = Some(SqlType::from_arrow(&dt).pg_type());
            }
        }
    }
}

fn returning_sql(table: &str, items: &[SelectItem]) -> String {
    format!(
        "SELECT {} FROM {table}",
        items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    )
}

pub async fn describe(env: &QueryEnv, stmt: &Statement, client_types: &[Option<Type>]) -> Result<Described> {
    let n = params::count(stmt);
    let mut types: Vec<Option<Type>> = (0..n)
        .map(|i| client_types.get(i).cloned().flatten().filter(|t| *t != Type::UNKNOWN))
        .collect();
    let mut fields = None;
    let catalog = env.view.committed.catalog.clone();
    let text = |name: &str| Some(vec![(name.to_string(), Type::TEXT, -1)]);
    match stmt {
        Statement::Query(_) => {
            let (p, mut f) = plan_types(env, stmt.clone()).await?;
            merge(&mut types, p);
            if let Some(names) = super::dml::postgres_column_names(stmt) {
                if names.len() == f.len() {
                    for (field, n) in f.iter_mut().zip(names) {
                        field.0 = n;
                    }
                }
            }
            fields = Some(f);
        }
        Statement::Explain { .. } => fields = text("QUERY PLAN"),
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            fields = if name == "all" {
                Some(vec![
                    ("name".into(), Type::TEXT, -1),
                    ("setting".into(), Type::TEXT, -1),
                    ("description".into(), Type::TEXT, -1),
                ])
            } else if name == "tables" {
                text("Name")
            } else {
                text(&name)
            };
        }
        Statement::ShowTables { .. } => fields = text("Name"),
        Statement::ExplainTable { .. } => {
            fields = Some(
                ["Name", "Type", "Nullable", "Default"]
                    .iter()
                    .map(|n| (n.to_string(), Type::TEXT, -1))
                    .collect(),
            )
        }
        Statement::Insert(ins) => {
            if let TableObject::TableName(name) = &ins.table {
                if let Ok(t) = catalog.resolve_table(&super::object_name_parts(name), &env.search_path) {
                    let visible: Vec<usize> = (0..t.def.columns.len()).filter(|i| !t.def.columns[*i].hidden).collect();
                    let targets: Vec<usize> = if ins.columns.is_empty() {
                        visible
                    } else {
                        ins.columns
                            .iter()
                            .filter_map(|c| t.column_index(&super::object_name_parts(c).pop().unwrap_or_default()))
                            .collect()
                    };
                    if let Some(q) = &ins.source {
                        if let SetExpr::Values(values) = q.body.as_ref() {
                            for row in &values.rows {
                                for (i, e) in row.iter().enumerate() {
                                    if let (Some(p), Some(col)) = (placeholder(e), targets.get(i)) {
                                        if let Some(slot) = types.get_mut(p - 1) {
                                            slot.get_or_insert_with(|| t.def.columns[*col].ty.pg_type());
                                        }
                                    }
                                }
                            }
                        }
                    }
                    if let Some(items) = &ins.returning {
                        fields = Some(plan_sql_types(env, &returning_sql(&t.qualified_name(), items)).await?.1);
                    }
                }
            }
        }
        Statement::Update(u) => {
            if let sqlparser::ast::TableFactor::Table { name, .. } = &u.table.relation {
                if let Ok(t) = catalog.resolve_table(&super::object_name_parts(name), &env.search_path) {
                    for a in &u.assignments {
                        if let (AssignmentTarget::ColumnName(c), Some(p)) = (&a.target, placeholder(&a.value)) {
                            if let Some(idx) = t.column_index(&super::object_name_parts(c).pop().unwrap_or_default()) {
                                if let Some(slot) = types.get_mut(p - 1) {
                                    slot.get_or_insert_with(|| t.def.columns[idx].ty.pg_type());
                                }
                            }
                        }
                    }
                    if let Some(sel) = &u.selection {
                        if let Ok((p, _)) = plan_sql_types(env, &format!("SELECT 1 FROM {} WHERE {sel}", u.table)).await
                        {
                            merge(&mut types, p);
                        }
                    }
                    if let Some(items) = &u.returning {
                        fields = Some(
                            plan_sql_types(env, &returning_sql(&u.table.to_string(), items))
                                .await?
                                .1,
                        );
                    }
                }
            }
        }
        Statement::Delete(d) => {
            let tables = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            if let Some(target) = tables.first() {
                if let Some(sel) = &d.selection {
                    if let Ok((p, _)) = plan_sql_types(env, &format!("SELECT 1 FROM {target} WHERE {sel}")).await {
                        merge(&mut types, p);
                    }
                }
                if let Some(items) = &d.returning {
                    fields = Some(plan_sql_types(env, &returning_sql(&target.to_string(), items)).await?.1);
                }
            }
        }
        Statement::Copy { source, to: false, .. } => super::copy::check_target(env, source)?,
        _ => {}
    }
    let _ = ControlFlow::<()>::Continue(());
    Ok(Described {
        params: types.into_iter().map(|t| t.unwrap_or(Type::TEXT)).collect(),
        fields,
    })
}
