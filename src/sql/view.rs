//! Materialized views: planning `CREATE MATERIALIZED VIEW`, `EXPLAIN` of it, `SHOW
//! MATERIALIZED VIEWS`.

use datafusion::common::tree_node::TreeNode;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use sqlparser::ast::{CreateView, Query, Statement};

use crate::catalog::{ColumnDef, Layout, SqlType, ViewDef};
use crate::dataflow::graph::ViewDataflow;
use crate::error::{Error, Result, SqlState};
use crate::query::context::{session_context, QueryEnv};
use crate::query::provider::StoredTable;
use crate::query::view_provider::ViewTable;

/// A view query planned against a catalog.
pub struct PlannedQuery {
    pub plan: LogicalPlan,
    pub columns: Vec<ColumnDef>,
    pub depends_on: Vec<u32>,
}

/// Plans and optimises `query` for a view.
pub async fn plan_query(env: &QueryEnv, query: &Query, column_names: &[String]) -> Result<PlannedQuery> {
    let mut stmt = Statement::Query(Box::new(query.clone()));
    super::rewrite::rewrite(&mut stmt);
    let ctx = session_context(env);
    let state = ctx.state();
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(stmt.clone())))
        .await?;
    let plan = state.optimize(&plan)?;
    let mut depends_on = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Ok(p) = source_as_provider(&scan.source) {
                if let Some(t) = (p.as_ref() as &dyn std::any::Any).downcast_ref::<StoredTable>() {
                    depends_on.push(t.table().def.id);
                } else if let Some(v) = (p.as_ref() as &dyn std::any::Any).downcast_ref::<ViewTable>() {
                    depends_on.push(v.view().def.id);
                }
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    depends_on.sort_unstable();
    depends_on.dedup();
    let mut names: Vec<String> = match super::dml::postgres_column_names(&stmt) {
        Some(n) if n.len() == plan.schema().fields().len() => n,
        _ => plan.schema().fields().iter().map(|f| f.name().clone()).collect(),
    };
    if !column_names.is_empty() {
        if column_names.len() > names.len() {
            return Err(Error::user(
                SqlState::SYNTAX_ERROR,
                "CREATE MATERIALIZED VIEW specifies more column names than columns",
            ));
        }
        for (n, c) in names.iter_mut().zip(column_names) {
            *n = c.clone();
        }
    }
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        if !seen.insert(n.clone()) {
            return Err(Error::user(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{n}\" specified more than once (alias the columns of the view)"),
            ));
        }
    }
    let columns = plan
        .schema()
        .fields()
        .iter()
        .zip(names)
        .map(|(f, name)| ColumnDef {
            name,
            ty: SqlType::from_field(f),
            not_null: false,
            default: None,
            hidden: false,
            generated: None,
        })
        .collect();
    Ok(PlannedQuery {
        plan,
        columns,
        depends_on,
    })
}

/// Plans a CREATE MATERIALIZED VIEW into its definition (id not yet assigned) and checks that
/// every construct has an incremental operator.
pub async fn plan_create(env: &QueryEnv, cv: &CreateView) -> Result<(ViewDef, PlannedQuery)> {
    if !cv.materialized {
        return Err(Error::unsupported(
            "CREATE VIEW (plain views); use CREATE MATERIALIZED VIEW",
        ));
    }
    if cv.or_replace || cv.or_alter {
        return Err(Error::unsupported("CREATE OR REPLACE MATERIALIZED VIEW"));
    }
    let mut parts = super::object_name_parts(&cv.name);
    let name = parts.pop().unwrap_or_default();
    let schema = parts.pop().unwrap_or_else(|| env.default_schema());
    let column_names: Vec<String> = cv.columns.iter().map(|c| super::ident_name(&c.name)).collect();
    let planned = plan_query(env, &cv.query, &column_names).await?;
    // Validate now: every node must have an operator (0A000 otherwise).
    let dataflow = crate::planner::build_dataflow(0, &planned.plan, crate::planner::PLAN_VERSION)?;
    // A view that only gains rows is stored as appended batches; one whose rows fall into
    // small groups (a per-group top-N, an aggregate's groups) one key per group; any other one
    // key per row.
    let (layout, group_columns, single_row_groups) = match (dataflow.append_only, dataflow.groups) {
        (true, _) => (Layout::Segments, Vec::new(), false),
        (false, Some(mut groups)) => {
            // Keys in the view's column order, as its rows would be: a group's neighbours in
            // the store are those of its first columns (for q18, of the same auction).
            groups.columns.sort_unstable();
            (Layout::Groups, groups.columns, groups.single)
        }
        (false, None) => (Layout::Rows, Vec::new(), false),
    };
    let def = ViewDef {
        id: 0,
        schema,
        name,
        query: cv.query.to_string(),
        columns: planned.columns.clone(),
        depends_on: planned.depends_on.clone(),
        created_epoch: env.view.committed.epoch + 1,
        layout,
        group_columns,
        single_row_groups,
        plan_version: crate::planner::PLAN_VERSION,
    };
    Ok((def, planned))
}

/// Rebuilds the dataflow of an existing view (at startup).
pub async fn rebuild(env: &QueryEnv, def: &ViewDef) -> Result<ViewDataflow> {
    let query = match super::parse(&def.query)?.pop() {
        Some(Statement::Query(q)) => q,
        _ => {
            return Err(Error::internal(format!(
                "stored definition of view {} is not a query",
                def.name
            )))
        }
    };
    let planned = plan_query(env, &query, &[]).await?;
    crate::planner::build_dataflow(def.id, &planned.plan, def.plan_version)
}

/// `EXPLAIN CREATE MATERIALIZED VIEW`: the dataflow, one operator per line.
pub async fn explain(env: &QueryEnv, cv: &CreateView) -> Result<Vec<String>> {
    let (def, planned) = plan_create(env, cv).await?;
    let df = crate::planner::build_dataflow(0, &planned.plan, def.plan_version)?;
    let mut lines = vec![format!(
        "Materialized view {} ({})",
        def.name,
        def.columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.ty.name()))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    if def.layout == Layout::Segments {
        // Its rows are only ever added: stored as appended batches, not one key per row.
        lines[0].push_str(", append-only");
    }
    if def.layout == Layout::Groups {
        // One key per group of rows (a per-group top-N's, an aggregate's), not one key per
        // row; "by key" when each group is one row.
        let names: Vec<&str> = def
            .group_columns
            .iter()
            .map(|i| def.columns[*i].name.as_str())
            .collect();
        let unit = if def.single_row_groups { "row" } else { "group" };
        lines[0].push_str(&match names.is_empty() {
            true => format!(", stored as one {unit}"),
            false if def.single_row_groups => format!(", stored by key ({})", names.join(", ")),
            false => format!(", stored by group ({})", names.join(", ")),
        });
    }
    lines.extend(df.explain().into_iter().map(|l| format!("  {l}")));
    Ok(lines)
}
