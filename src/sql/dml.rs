//! Queries and row writes: SELECT / EXPLAIN, INSERT (VALUES, SELECT, DEFAULT, ON CONFLICT,
//! RETURNING), UPDATE (incl. FROM), DELETE (incl. USING).
//!
//! Every value is computed by DataFusion: a write is planned as a SELECT over the same read view
//! (e.g. `UPDATE t SET v = v + 1 WHERE k > 3` reads `SELECT <t's columns>, v + 1 FROM t WHERE
//! k > 3`), then turned into row writes on the transaction's write set.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Expr, FromTable, Insert, OnConflictAction, OnInsert, SelectItem, SetExpr,
    Statement, TableFactor, TableObject, UpdateTableFromKind,
};

use super::coerce::coerce;
use crate::catalog::{SqlType, Table};
use crate::dataflow::coordinator::{RowWrite, TxnWrites};
use crate::error::{Error, Result, SqlState};
use crate::query::context::{session_context, session_context_with, QueryEnv};
use crate::session::Output;
use crate::state::keys;

/// Plans `stmt` (a query) and returns its DataFrame.
pub async fn plan(ctx: &SessionContext, stmt: Statement) -> Result<datafusion::dataframe::DataFrame> {
    let plan = ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
        .await?;
    Ok(ctx.execute_logical_plan(plan).await?)
}

/// Whether a planning error is DataFusion refusing a correlated scalar subquery.
fn is_scalar_subquery_error(e: &Error) -> bool {
    let m = e.to_string();
    m.contains("Correlated scalar subquery must be aggregated") || m.contains("ScalarSubquery")
}

/// Plans and starts `stmt`. DataFusion only decorrelates aggregated scalar subqueries;
/// PostgreSQL allows any that return at most one row (psql's `\d` uses them), so on that
/// refusal the statement is rewritten (see `rewrite::aggregate_scalar_subqueries`) and retried.
async fn plan_and_run(
    ctx: &SessionContext,
    stmt: Statement,
) -> Result<(
    datafusion::common::DFSchema,
    datafusion::execution::SendableRecordBatchStream,
)> {
    let attempt = |stmt: Statement| async move {
        let df = plan(ctx, stmt).await?;
        let schema = df.schema().clone();
        let stream = df.execute_stream().await.map_err(Error::from)?;
        Ok::<_, Error>((schema, stream))
    };
    match attempt(stmt.clone()).await {
        Err(e) if is_scalar_subquery_error(&e) => {
            let mut stmt = stmt;
            super::rewrite::aggregate_scalar_subqueries(&mut stmt);
            attempt(stmt).await
        }
        other => other,
    }
}

/// Plans SQL text built by Freshet itself.
pub async fn plan_sql(ctx: &SessionContext, sql: &str) -> Result<datafusion::dataframe::DataFrame> {
    let mut stmts = super::parse(sql)?;
    let mut stmt = stmts
        .pop()
        .ok_or_else(|| Error::internal("empty generated statement"))?;
    super::rewrite::rewrite(&mut stmt);
    plan(ctx, stmt).await
}

/// SELECT / VALUES / EXPLAIN.
pub async fn query(env: &QueryEnv, stmt: Statement) -> Result<Output> {
    let ctx = session_context(env);
    let explain = matches!(stmt, Statement::Explain { .. });
    let names = postgres_column_names(&stmt);
    if explain {
        if let Statement::Explain { statement, .. } = &stmt {
            if matches!(
                statement.as_ref(),
                Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
            ) {
                // Writes do not run as DataFusion plans, so DataFusion's plan of one would be
                // a fiction (and its "physical plan" an error).
                return Err(Error::unsupported(
                    "EXPLAIN of INSERT / UPDATE / DELETE (EXPLAIN the query that computes the rows instead)",
                ));
            }
        }
        return explain_output(plan(&ctx, stmt).await?).await;
    }
    let mut stmt = stmt;
    rewrite_bag_set_ops(&ctx, &mut stmt).await?;
    let (df_schema, stream) = plan_and_run(&ctx, stmt).await?;
    let schema: SchemaRef = rename(df_schema.as_arrow(), names);
    Ok(Output::Rows {
        schema,
        stream,
        tag: "SELECT".into(),
    })
}

/// Rewrites every `EXCEPT ALL` / `INTERSECT ALL` of `stmt` into the DISTINCT form over rows
/// numbered within each group of equal rows. DataFusion plans them as anti / semi joins, which
/// drop (or keep) every copy of a row found on the right: `{1,1,2} EXCEPT ALL {1}` gave `{2}`,
/// not `{1,2}`. Numbering the copies (`row_number() OVER (PARTITION BY <all columns>)`) makes
/// the n-th copy on the left meet the n-th copy on the right: the bag semantics of SQL.
///
/// The rewrite needs the column names of each left side, so it runs in two passes over the
/// same post-order walk: one collects the left sides and plans them, one rewrites. A left side
/// that cannot be planned alone (it reads an outer CTE or column) is left as DataFusion has it.
async fn rewrite_bag_set_ops(ctx: &SessionContext, stmt: &mut Statement) -> Result<()> {
    use sqlparser::ast::{Visit, VisitMut};
    let mut collect = BagSetOps::Collect(Vec::new());
    let _ = Visit::visit(&*stmt, &mut collect);
    let BagSetOps::Collect(lefts) = collect else {
        return Ok(());
    };
    if lefts.is_empty() {
        return Ok(());
    }
    let mut names = Vec::with_capacity(lefts.len());
    for left in lefts {
        names.push(match plan_sql(ctx, &left).await {
            Ok(df) => Some(df.schema().fields().iter().map(|f| f.name().clone()).collect()),
            Err(_) => None,
        });
    }
    let mut rewrite = BagSetOps::Rewrite(names.into_iter());
    let _ = VisitMut::visit(stmt, &mut rewrite);
    Ok(())
}

/// The two passes of [`rewrite_bag_set_ops`].
enum BagSetOps {
    /// Left sides (SQL text) of the bag set operations, in walk order.
    Collect(Vec<String>),
    /// Their column names, in the same order (`None`: leave that one alone).
    Rewrite(std::vec::IntoIter<Option<Vec<String>>>),
}

fn is_bag_set_op(op: &sqlparser::ast::SetOperator, q: &sqlparser::ast::SetQuantifier) -> bool {
    matches!(
        op,
        sqlparser::ast::SetOperator::Except | sqlparser::ast::SetOperator::Intersect
    ) && matches!(q, sqlparser::ast::SetQuantifier::All)
}

impl BagSetOps {
    /// Walks the chain of set operations of one query body (nested queries are visited as
    /// queries of their own), children first.
    fn walk(&mut self, body: &mut SetExpr) {
        let SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } = body
        else {
            return;
        };
        self.walk(left);
        self.walk(right);
        if !is_bag_set_op(op, set_quantifier) {
            return;
        }
        match self {
            BagSetOps::Collect(lefts) => lefts.push(left.to_string()),
            BagSetOps::Rewrite(names) => {
                let Some(Some(names)) = names.next() else { return };
                let cols: Vec<String> = (0..names.len()).map(|i| format!("__c{i}")).collect();
                let cols = cols.join(", ");
                let numbered = |side: &str, alias: &str| {
                    format!(
                        "SELECT {cols}, row_number() OVER (PARTITION BY {cols}) AS __copy FROM ({side}) AS {alias}({cols})"
                    )
                };
                let outer: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("__c{i} AS {}", quote(n)))
                    .collect();
                let sql = format!(
                    "SELECT {} FROM (({}) {} ({})) AS __bag",
                    outer.join(", "),
                    numbered(&left.to_string(), "__l"),
                    if matches!(op, sqlparser::ast::SetOperator::Except) {
                        "EXCEPT"
                    } else {
                        "INTERSECT"
                    },
                    numbered(&right.to_string(), "__r"),
                );
                if let Ok(mut parsed) = super::parse(&sql) {
                    if let Some(Statement::Query(q)) = parsed.pop() {
                        *body = *q.body;
                    }
                }
            }
        }
    }
}

impl sqlparser::ast::Visitor for BagSetOps {
    type Break = ();

    fn post_visit_query(&mut self, query: &sqlparser::ast::Query) -> std::ops::ControlFlow<()> {
        // The collecting pass never changes the body: walk a copy.
        let mut body = (*query.body).clone();
        self.walk(&mut body);
        std::ops::ControlFlow::Continue(())
    }
}

impl sqlparser::ast::VisitorMut for BagSetOps {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut sqlparser::ast::Query) -> std::ops::ControlFlow<()> {
        self.walk(&mut query.body);
        std::ops::ControlFlow::Continue(())
    }
}

/// The column names PostgreSQL gives a query's unaliased select items (`count(*)` is
/// "count", `a + 1` is "?column?"), when the projection has no wildcard.
pub fn postgres_column_names(stmt: &Statement) -> Option<Vec<String>> {
    let Statement::Query(q) = stmt else { return None };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(expr_column_name(e)),
            SelectItem::ExprWithAlias { alias, .. } => Some(super::ident_name(alias)),
            _ => None,
        })
        .collect()
}

fn expr_column_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => super::ident_name(i),
        Expr::CompoundIdentifier(parts) => parts.last().map(super::ident_name).unwrap_or_default(),
        Expr::Function(f) => super::object_name_parts(&f.name).pop().unwrap_or_default(),
        Expr::Cast { expr, data_type, .. } => match expr.as_ref() {
            Expr::Value(_) => data_type
                .to_string()
                .to_lowercase()
                .split('(')
                .next()
                .unwrap_or("")
                .to_string(),
            other => expr_column_name(other),
        },
        Expr::Nested(inner) => expr_column_name(inner),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Array(_) => "array".into(),
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) if s.projection.len() == 1 => match &s.projection[0] {
                SelectItem::UnnamedExpr(e) => expr_column_name(e),
                SelectItem::ExprWithAlias { alias, .. } => super::ident_name(alias),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        _ => "?column?".into(),
    }
}

fn rename(schema: &Schema, names: Option<Vec<String>>) -> SchemaRef {
    match names {
        Some(names) if names.len() == schema.fields().len() => Arc::new(Schema::new_with_metadata(
            schema
                .fields()
                .iter()
                .zip(names)
                .map(|(f, n)| f.as_ref().clone().with_name(n))
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        )),
        _ => Arc::new(schema.clone()),
    }
}

/// EXPLAIN output as PostgreSQL shows it: one text column, "QUERY PLAN".
async fn explain_output(df: datafusion::dataframe::DataFrame) -> Result<Output> {
    let batches = df.collect().await?;
    let mut lines = Vec::new();
    for b in &batches {
        let types = b.column(0).as_any().downcast_ref::<StringArray>();
        let plans = b.column(b.num_columns() - 1).as_any().downcast_ref::<StringArray>();
        if let (Some(types), Some(plans)) = (types, plans) {
            for i in 0..b.num_rows() {
                lines.push(format!("{}:", types.value(i)));
                lines.extend(plans.value(i).lines().map(|l| format!("  {l}")));
            }
        }
    }
    rows_output(text_batch("QUERY PLAN", lines)?, "EXPLAIN")
}

/// A one-column text batch.
pub fn text_batch(name: &str, values: Vec<String>) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]));
    Ok(RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values))])?)
}

/// Wraps one batch as a rows output.
pub fn rows_output(batch: RecordBatch, tag: &str) -> Result<Output> {
    let schema = batch.schema();
    let stream = MemoryStream::try_new(vec![batch], schema.clone(), None)?;
    Ok(Output::Rows {
        schema,
        stream: Box::pin(stream),
        tag: tag.into(),
    })
}

/// INSERT / UPDATE / DELETE into `writes`.
pub async fn write(env: &mut QueryEnv, stmt: &Statement, writes: &mut TxnWrites) -> Result<Output> {
    match stmt {
        Statement::Insert(ins) => insert(env, ins, writes).await,
        Statement::Update(u) => {
            let from = match &u.from {
                Some(UpdateTableFromKind::BeforeSet(f)) | Some(UpdateTableFromKind::AfterSet(f)) => f.clone(),
                None => vec![],
            };
            update(
                env,
                &u.table,
                &u.assignments,
                &from,
                u.selection.as_ref(),
                u.returning.as_ref(),
                writes,
            )
            .await
        }
        Statement::Delete(d) => {
            let tables = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let [target] = tables.as_slice() else {
                return Err(Error::unsupported("DELETE from more than one table"));
            };
            delete(
                env,
                target,
                d.using.as_deref().unwrap_or(&[]),
                d.selection.as_ref(),
                d.returning.as_ref(),
                writes,
            )
            .await
        }
        _ => Err(Error::internal("not a write statement")),
    }
}

/// The target table of a write, refusing system tables.
fn target_table(env: &QueryEnv, name: &sqlparser::ast::ObjectName) -> Result<Arc<Table>> {
    let parts = super::object_name_parts(name);
    if parts.len() >= 2 && crate::catalog::SYSTEM_SCHEMAS.contains(&parts[parts.len() - 2].as_str()) {
        return Err(Error::user(
            SqlState("42501"),
            format!("permission denied: {} is a system table", parts.join(".")),
        ));
    }
    let catalog = &env.view.committed.catalog;
    let table = catalog.resolve_table(&parts, &env.search_path)?;
    table.check_writable(catalog)?;
    Ok(table)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Table columns in storage order as DataFusion computed them, coerced to the column types.
fn coerce_columns(table: &Table, columns: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
    columns
        .iter()
        .zip(&table.def.columns)
        .map(|(a, c)| {
            coerce(a, &c.ty).map_err(|e| match e {
                Error::User { state, message, detail } => Error::User {
                    state,
                    message: format!("{message} (column \"{}\")", c.name),
                    detail,
                },
                other => other,
            })
        })
        .collect()
}

fn check_not_null(table: &Table, columns: &[ArrayRef]) -> Result<()> {
    for (a, c) in columns.iter().zip(&table.def.columns) {
        if c.not_null && a.null_count() > 0 {
            return Err(Error::user(
                SqlState::NOT_NULL_VIOLATION,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    c.name, table.def.name
                ),
            ));
        }
    }
    Ok(())
}

/// Encoded (key, value) of every row of `columns` (full storage order).
fn encode_rows(table: &Table, columns: &[ArrayRef]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let pk: Vec<ArrayRef> = table.def.primary_key.iter().map(|i| columns[*i].clone()).collect();
    let keys_ = table.key_codec.encode(&pk)?;
    let rows = table.row_codec.encode(columns)?;
    Ok((0..rows.num_rows())
        .map(|i| {
            (
                keys::row_key(table.def.id, keys_.row(i).as_ref()),
                rows.row(i).as_ref().to_vec(),
            )
        })
        .collect())
}

/// Whether `key` holds a row: this statement's writes first, then the transaction's earlier
/// writes, then the committed snapshot.
fn exists(env: &QueryEnv, writes: &TxnWrites, key: &[u8]) -> Result<bool> {
    match writes.rows.get(key).or_else(|| env.view.overlay.rows.get(key)) {
        Some(w) => Ok(w.value().is_some()),
        None => Ok(env.view.committed.snapshot.get(key)?.is_some()),
    }
}

fn row_value(env: &QueryEnv, writes: &TxnWrites, key: &[u8]) -> Result<Option<Vec<u8>>> {
    match writes.rows.get(key).or_else(|| env.view.overlay.rows.get(key)) {
        Some(w) => Ok(w.value().map(|v| v.to_vec())),
        None => env.view.committed.snapshot.get(key),
    }
}

fn duplicate_key(table: &Table, columns: &[ArrayRef], row: usize) -> Error {
    let names: Vec<String> = table
        .def
        .primary_key
        .iter()
        .map(|i| table.def.columns[*i].name.clone())
        .collect();
    let values: Vec<String> = table
        .def
        .primary_key
        .iter()
        .map(|i| crate::serve::text::format_cell(&columns[*i], row).unwrap_or_else(|| "NULL".into()))
        .collect();
    Error::user_detail(
        SqlState::UNIQUE_VIOLATION,
        format!(
            "duplicate key value violates unique constraint \"{}_pkey\"",
            table.def.name
        ),
        format!("Key ({})=({}) already exists.", names.join(", "), values.join(", ")),
    )
}

/// The stored form of a table's default for column `idx` (SQL text), or NULL.
fn default_sql(table: &Table, idx: usize) -> String {
    table.def.columns[idx].default.clone().unwrap_or_else(|| "NULL".into())
}

async fn insert(env: &QueryEnv, ins: &Insert, writes: &mut TxnWrites) -> Result<Output> {
    let TableObject::TableName(name) = &ins.table else {
        return Err(Error::unsupported("INSERT into a table function"));
    };
    let table = target_table(env, name)?;
    let visible: Vec<usize> = (0..table.def.columns.len())
        .filter(|i| !table.def.columns[*i].hidden)
        .collect();
    let targets: Vec<usize> = if ins.columns.is_empty() {
        // Without a column list, VALUES rows shorter than the table fill its first columns
        // and the rest get their defaults, as in PostgreSQL.
        let width = match ins.source.as_deref().map(|q| q.body.as_ref()) {
            Some(SetExpr::Values(v)) => v.rows.iter().map(|r| r.len()).max().unwrap_or(visible.len()),
            _ => visible.len(),
        };
        visible.iter().take(width.min(visible.len()).max(1)).copied().collect()
    } else {
        let mut seen = HashSet::new();
        ins.columns
            .iter()
            .map(|c| {
                let n = super::object_name_parts(c).pop().unwrap_or_default();
                let idx = table.visible_column(&n)?;
                if !seen.insert(idx) {
                    return Err(Error::user(
                        SqlState::DUPLICATE_COLUMN,
                        format!("column \"{n}\" specified more than once"),
                    ));
                }
                Ok(idx)
            })
            .collect::<Result<_>>()?
    };
    // The source rows, with DEFAULT in VALUES replaced by each column's default.
    let mut values_rows: Option<Vec<String>> = None;
    let source = match &ins.source {
        Some(q) => {
            let mut q = (**q).clone();
            if let SetExpr::Values(values) = q.body.as_mut() {
                for row in &mut values.rows {
                    if row.len() > targets.len() {
                        return Err(Error::syntax("INSERT has more expressions than target columns"));
                    }
                    if row.len() < targets.len() {
                        return Err(Error::syntax("INSERT has more target columns than expressions"));
                    }
                    for (i, e) in row.iter_mut().enumerate() {
                        if matches!(e, Expr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
                        {
                            let parsed = super::parse(&format!("SELECT {}", default_sql(&table, targets[i])))?;
                            if let Some(Statement::Query(q)) = parsed.into_iter().next() {
                                if let SetExpr::Select(s) = *q.body {
                                    if let Some(SelectItem::UnnamedExpr(d)) = s.projection.into_iter().next() {
                                        *e = d;
                                    }
                                }
                            }
                        }
                    }
                }
                values_rows = Some(
                    values
                        .rows
                        .iter()
                        .map(|r| r.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "))
                        .collect(),
                );
            }
            q.to_string()
        }
        None => "SELECT 1".to_string(),
    };
    let source_cols: Vec<String> = (0..targets.len().max(1)).map(|i| format!("c{i}")).collect();
    let mut items = Vec::with_capacity(table.def.columns.len());
    for (idx, col) in table.def.columns.iter().enumerate() {
        if col.hidden {
            continue;
        }
        match targets.iter().position(|t| *t == idx) {
            Some(p) if ins.source.is_some() => items.push(format!("__src.c{p} AS __v{idx}")),
            _ => items.push(format!("({}) AS __v{idx}", default_sql(&table, idx))),
        }
    }
    let select_from = |source: &str| {
        format!(
            "SELECT {} FROM ({source}) AS __src({})",
            items.join(", "),
            if ins.source.is_some() {
                source_cols.join(", ")
            } else {
                "c0".to_string()
            }
        )
    };
    let ctx = session_context(env);
    let run = |sql: String| {
        let ctx = ctx.clone();
        async move {
            let df = plan_sql(&ctx, &sql).await.map_err(|e| match e {
                Error::User { message, detail, .. } if message.contains("__src") => Error::User {
                    state: SqlState::SYNTAX_ERROR,
                    message: format!("INSERT source does not match the target columns: {message}"),
                    detail,
                },
                other => other,
            })?;
            Ok::<_, Error>(df.collect().await?)
        }
    };
    let batches = match run(select_from(&source)).await {
        // DataFusion wants one type per VALUES column, where PostgreSQL types a quoted literal
        // by its target column (`VALUES (true), ('yes')`, `VALUES (ARRAY[1]), ('{2}')`). Each
        // row then becomes a batch of its own, coerced to the column types like any other.
        Err(e) if values_rows.is_some() && e.to_string().contains("Inconsistent data type across values list") => {
            let mut all = Vec::new();
            for row in values_rows.iter().flatten() {
                all.extend(run(select_from(&format!("VALUES ({row})"))).await?);
            }
            all
        }
        other => other?,
    };
    let mut total = 0;
    let mut returned = Vec::new();
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let n = batch.num_rows();
        let mut full: Vec<ArrayRef> = Vec::with_capacity(table.def.columns.len());
        let mut vis = batch.columns().iter();
        for col in &table.def.columns {
            if col.hidden {
                let first = table.allocate_row_ids(n);
                full.push(Arc::new(Int64Array::from_iter_values(first..first + n as i64)));
            } else {
                full.push(vis.next().expect("one column per visible column").clone());
            }
        }
        let full = coerce_columns(&table, &full)?;
        check_not_null(&table, &full)?;
        let (count, out) = apply_insert(env, &table, &full, ins, writes).await?;
        total += count;
        if let Some(out) = out {
            returned.push(out);
        }
    }
    writes.tables.insert(table.def.id, table.def.version);
    match &ins.returning {
        Some(items) => {
            returning(
                env,
                &table,
                ins.table_alias.as_ref().map(|a| a.alias.value.clone()),
                returned,
                items,
                "INSERT 0",
            )
            .await
        }
        None => Ok(Output::Command {
            tag: "INSERT 0".into(),
            rows: Some(total),
        }),
    }
}

/// Writes the rows of `full` (one batch), honouring ON CONFLICT. Returns the number of rows
/// inserted or updated and those rows (full storage order).
async fn apply_insert(
    env: &QueryEnv,
    table: &Arc<Table>,
    full: &[ArrayRef],
    ins: &Insert,
    writes: &mut TxnWrites,
) -> Result<(usize, Option<RecordBatch>)> {
    let on_conflict = match &ins.on {
        None => None,
        Some(OnInsert::OnConflict(oc)) => {
            if let Some(ConflictTarget::Columns(cols)) = &oc.conflict_target {
                let mut named: Vec<String> = cols.iter().map(super::ident_name).collect();
                let mut pk: Vec<String> = table
                    .def
                    .primary_key
                    .iter()
                    .map(|i| table.def.columns[*i].name.clone())
                    .collect();
                named.sort();
                pk.sort();
                if named != pk || table.has_row_id() {
                    return Err(Error::user(
                        SqlState("42P10"),
                        "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                    ));
                }
            }
            Some(&oc.action)
        }
        Some(other) => return Err(Error::unsupported(format!("INSERT ... {other}"))),
    };
    let rows = encode_rows(table, full)?;
    let mut seen: HashSet<&[u8]> = HashSet::with_capacity(rows.len());
    let mut inserted: Vec<u32> = Vec::with_capacity(rows.len());
    let mut conflicts: Vec<(u32, Vec<u8>)> = Vec::new();
    for (i, (k, v)) in rows.iter().enumerate() {
        let dup_in_batch = !seen.insert(k.as_slice());
        let existing = if table.has_row_id() {
            false
        } else {
            dup_in_batch || exists(env, writes, k)?
        };
        if !existing {
            writes.record(k.clone(), RowWrite::Insert(v.clone()));
            inserted.push(i as u32);
            continue;
        }
        match on_conflict {
            None => return Err(duplicate_key(table, full, i)),
            Some(OnConflictAction::DoNothing) => {}
            Some(OnConflictAction::DoUpdate(_)) => {
                if dup_in_batch
                    && (conflicts.iter().any(|(_, ck)| ck == k) || inserted.iter().any(|j| rows[*j as usize].0 == *k))
                {
                    return Err(Error::user(
                        SqlState::CARDINALITY_VIOLATION,
                        "ON CONFLICT DO UPDATE command cannot affect row a second time",
                    ));
                }
                conflicts.push((i as u32, k.clone()));
            }
        }
    }
    let mut count = inserted.len();
    let schema = table.full_schema.clone();
    let mut out_batches = vec![take_rows(&schema, full, &inserted)?];
    if let Some(OnConflictAction::DoUpdate(du)) = on_conflict {
        if !conflicts.is_empty() {
            let updated = do_update(env, table, full, &conflicts, du, ins, writes).await?;
            count += updated.num_rows();
            out_batches.push(updated);
        }
    }
    Ok((count, Some(concat_batches(&schema, &out_batches)?)))
}

fn take_rows(schema: &SchemaRef, columns: &[ArrayRef], idx: &[u32]) -> Result<RecordBatch> {
    let indices = UInt32Array::from(idx.to_vec());
    let cols = columns
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// ON CONFLICT DO UPDATE: computes the SET expressions over (existing row, excluded row).
async fn do_update(
    env: &QueryEnv,
    table: &Arc<Table>,
    full: &[ArrayRef],
    conflicts: &[(u32, Vec<u8>)],
    du: &sqlparser::ast::DoUpdate,
    ins: &Insert,
    writes: &mut TxnWrites,
) -> Result<RecordBatch> {
    // Existing rows, decoded.
    let mut existing_bytes = Vec::with_capacity(conflicts.len());
    for (_, k) in conflicts {
        existing_bytes.push(row_value(env, writes, k)?.ok_or_else(|| Error::internal("conflicting row vanished"))?);
    }
    let existing = table.row_codec.decode(existing_bytes.iter().map(|v| v.as_slice()))?;
    let excluded = take_rows(
        &table.full_schema,
        full,
        &conflicts.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
    )?;
    let n = conflicts.len();
    let pos: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
    let with_pos = |cols: Vec<ArrayRef>| -> Result<RecordBatch> {
        let mut fields: Vec<Field> = table.full_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("__pos", DataType::Int64, false));
        let mut cols = cols;
        cols.push(pos.clone());
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
    };
    let existing_batch = with_pos(existing.clone())?;
    let excluded_batch = with_pos(excluded.columns().to_vec())?;
    let ctx = session_context_with(
        env,
        vec![
            (
                "__existing".to_string(),
                Arc::new(MemTable::try_new(existing_batch.schema(), vec![vec![existing_batch]])?) as _,
            ),
            (
                "__excluded".to_string(),
                Arc::new(MemTable::try_new(excluded_batch.schema(), vec![vec![excluded_batch]])?) as _,
            ),
        ],
    );
    let alias = ins
        .table_alias
        .as_ref()
        .map(|a| a.alias.value.clone())
        .unwrap_or_else(|| table.def.name.clone());
    let mut items = vec![format!("{}.__pos", quote(&alias))];
    let mut assigned: Vec<usize> = Vec::new();
    for a in &du.assignments {
        let idx = assignment_column(table, &a.target)?;
        assigned.push(idx);
        items.push(a.value.to_string());
    }
    let filter = du.selection.as_ref().map(|w| format!(" WHERE {w}")).unwrap_or_default();
    let sql = format!(
        "SELECT {} FROM __existing AS {} JOIN __excluded AS excluded ON {}.__pos = excluded.__pos{filter} ORDER BY 1",
        items.join(", "),
        quote(&alias),
        quote(&alias)
    );
    let batches = plan_sql(&ctx, &sql).await?.collect().await?;
    let mut rows_idx = Vec::new();
    let mut new_values: Vec<Vec<ArrayRef>> = vec![Vec::new(); assigned.len()];
    for b in &batches {
        let p = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| Error::internal("position column"))?;
        rows_idx.extend(p.values().iter().map(|v| *v as u32));
        for (j, vals) in new_values.iter_mut().enumerate() {
            vals.push(b.column(j + 1).clone());
        }
    }
    let idx = UInt32Array::from(rows_idx.clone());
    let mut cols: Vec<ArrayRef> = existing
        .iter()
        .map(|c| take(c.as_ref(), &idx, None))
        .collect::<std::result::Result<_, _>>()?;
    for (j, col) in assigned.iter().enumerate() {
        let parts: Vec<&dyn Array> = new_values[j].iter().map(|a| a.as_ref()).collect();
        let merged = if parts.is_empty() {
            new_null_array(table.full_schema.field(*col).data_type(), 0)
        } else {
            datafusion::arrow::compute::concat(&parts)?
        };
        cols[*col] = coerce(&merged, &table.def.columns[*col].ty)?;
    }
    check_not_null(table, &cols)?;
    for (i, (k, v)) in encode_rows(table, &cols)?.into_iter().enumerate() {
        if k != conflicts[rows_idx[i] as usize].1 {
            return Err(Error::unsupported("ON CONFLICT DO UPDATE that changes the primary key"));
        }
        writes.record(k, RowWrite::Put(v));
    }
    Ok(RecordBatch::try_new(table.full_schema.clone(), cols)?)
}

fn assignment_column(table: &Table, target: &AssignmentTarget) -> Result<usize> {
    let AssignmentTarget::ColumnName(name) = target else {
        return Err(Error::unsupported("assigning to a tuple of columns"));
    };
    let n = super::object_name_parts(name).pop().unwrap_or_default();
    table.visible_column(&n)
}

/// Name and alias of the target of UPDATE / DELETE.
fn target_of(twj: &sqlparser::ast::TableWithJoins) -> Result<(sqlparser::ast::ObjectName, Option<String>)> {
    if !twj.joins.is_empty() {
        return Err(Error::unsupported(
            "JOIN in the target of UPDATE / DELETE (use FROM / USING)",
        ));
    }
    match &twj.relation {
        TableFactor::Table { name, alias, .. } => {
            Ok((name.clone(), alias.as_ref().map(|a| super::ident_name(&a.name))))
        }
        other => Err(Error::unsupported(format!("UPDATE / DELETE of {other}"))),
    }
}

/// Runs `SELECT <target's columns>[, extra] FROM target [, more] WHERE ...` and returns the
/// distinct target rows (by key) with their extra columns.
async fn select_targets(
    env: &mut QueryEnv,
    table: &Arc<Table>,
    name: &sqlparser::ast::ObjectName,
    alias: &Option<String>,
    extra: &[String],
    more_from: &[sqlparser::ast::TableWithJoins],
    selection: Option<&Expr>,
) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
    let qual = alias.clone().unwrap_or_else(|| table.def.name.clone());
    // `WHERE pk = literal`: read the one row and evaluate the expressions on it, without
    // planning a query (the bulk of a single-row UPDATE / DELETE's cost otherwise).
    if let (true, Some(sel)) = (more_from.is_empty(), selection) {
        if let Some(key) = crate::query::point_lookup::key_of_filter(table, &qual, sel) {
            if let Some(found) = point_targets(env, table, &qual, extra, &key)? {
                return Ok(found);
            }
        }
    }
    env.expose_hidden_of = Some(table.def.id);
    let mut items: Vec<String> = table
        .def
        .columns
        .iter()
        .map(|c| format!("{}.{}", quote(&qual), quote(&c.name)))
        .collect();
    items.extend(extra.iter().cloned());
    let mut from = name.to_string();
    if let Some(a) = alias {
        from.push_str(&format!(" AS {}", quote(a)));
    }
    for f in more_from {
        from.push_str(&format!(", {f}"));
    }
    let filter = selection.map(|w| format!(" WHERE {w}")).unwrap_or_default();
    let sql = format!("SELECT {} FROM {from}{filter}", items.join(", "));
    let ctx = session_context(env);
    let result = plan_sql(&ctx, &sql).await;
    env.expose_hidden_of = None;
    let batches = result?.collect().await?;
    let ncols = table.def.columns.len();
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    if batches.is_empty() {
        let old = table
            .full_schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 0))
            .collect();
        return Ok((old, vec![new_null_array(&DataType::Null, 0); extra.len()]));
    }
    let all = concat_batches(&schema, &batches)?;
    // Distinct target rows (UPDATE ... FROM may match one row several times: the first wins).
    let pk: Vec<ArrayRef> = table.def.primary_key.iter().map(|i| all.column(*i).clone()).collect();
    let encoded = table.key_codec.encode(&pk)?;
    let mut seen = HashSet::new();
    let keep: Vec<u32> = (0..all.num_rows())
        .filter(|i| seen.insert(encoded.row(*i).as_ref().to_vec()))
        .map(|i| i as u32)
        .collect();
    let idx = UInt32Array::from(keep);
    let cols: Vec<ArrayRef> = all
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &idx, None))
        .collect::<std::result::Result<_, _>>()?;
    let (old, extra_cols) = cols.split_at(ncols);
    // Old values come back with the table's own types (possibly renamed metadata): coerce.
    let old = coerce_columns(table, old)?;
    Ok((old, extra_cols.to_vec()))
}

/// The target row of key `key` (none or one) with `extra` evaluated on it; None when an
/// expression needs more than the row (a subquery, ...): the caller plans the general way.
fn point_targets(
    env: &QueryEnv,
    table: &Arc<Table>,
    qual: &str,
    extra: &[String],
    key: &[u8],
) -> Result<Option<(Vec<ArrayRef>, Vec<ArrayRef>)>> {
    let value = match env.view.overlay.rows.get(key) {
        Some(w) => w.value().map(|v| v.to_vec()),
        None => env.view.committed.snapshot.get(key)?,
    };
    let Some(value) = value else {
        let old = table
            .full_schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 0))
            .collect();
        return Ok(Some((old, vec![new_null_array(&DataType::Null, 0); extra.len()])));
    };
    let old = table.row_codec.decode([value.as_slice()])?;
    if extra.is_empty() {
        return Ok(Some((old, Vec::new())));
    }
    let batch = RecordBatch::try_new(table.full_schema.clone(), old.clone())?;
    let schema = datafusion::common::DFSchema::try_from_qualified_schema(qual, &table.full_schema)?;
    let ctx = session_context(env);
    let mut values = Vec::with_capacity(extra.len());
    for e in extra {
        let Ok(expr) = ctx.parse_sql_expr(e, &schema) else {
            return Ok(None);
        };
        if datafusion::common::tree_node::TreeNode::exists(&expr, |x| {
            Ok(matches!(
                x,
                datafusion::logical_expr::Expr::ScalarSubquery(_)
                    | datafusion::logical_expr::Expr::Exists(_)
                    | datafusion::logical_expr::Expr::InSubquery(_)
            ))
        })? {
            return Ok(None);
        }
        let Ok(physical) = ctx.create_physical_expr(expr, &schema) else {
            return Ok(None);
        };
        values.push(physical.evaluate(&batch)?.into_array(1)?);
    }
    Ok(Some((old, values)))
}

async fn update(
    env: &mut QueryEnv,
    target: &sqlparser::ast::TableWithJoins,
    assignments: &[sqlparser::ast::Assignment],
    from: &[sqlparser::ast::TableWithJoins],
    selection: Option<&Expr>,
    returning_items: Option<&Vec<SelectItem>>,
    writes: &mut TxnWrites,
) -> Result<Output> {
    let (name, alias) = target_of(target)?;
    let table = target_table(env, &name)?;
    let mut assigned = Vec::new();
    let mut exprs = Vec::new();
    for a in assignments {
        let idx = assignment_column(&table, &a.target)?;
        if assigned.contains(&idx) {
            return Err(Error::user(
                SqlState::DUPLICATE_COLUMN,
                format!(
                    "multiple assignments to same column \"{}\"",
                    table.def.columns[idx].name
                ),
            ));
        }
        assigned.push(idx);
        let value = if matches!(&a.value, Expr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
        {
            default_sql(&table, idx)
        } else {
            a.value.to_string()
        };
        exprs.push(value);
    }
    let (old, new_vals) = select_targets(env, &table, &name, &alias, &exprs, from, selection).await?;
    let n = old.first().map(|a| a.len()).unwrap_or(0);
    if n == 0 {
        return finish_write(env, &table, alias, vec![], returning_items, "UPDATE").await;
    }
    let mut new_cols = old.clone();
    for (j, idx) in assigned.iter().enumerate() {
        new_cols[*idx] = coerce(&new_vals[j], &table.def.columns[*idx].ty)?;
    }
    check_not_null(&table, &new_cols)?;
    let old_rows = encode_rows(&table, &old)?;
    let new_rows = encode_rows(&table, &new_cols)?;
    let old_keys: HashSet<&[u8]> = old_rows.iter().map(|(k, _)| k.as_slice()).collect();
    // Keys move only when the primary key changes: delete the old keys first, then insert.
    let mut moved = Vec::new();
    for (i, ((ok, _), (nk, nv))) in old_rows.iter().zip(&new_rows).enumerate() {
        if ok == nk {
            writes.record(nk.clone(), RowWrite::Put(nv.clone()));
        } else {
            writes.record(ok.clone(), RowWrite::Delete);
            moved.push(i);
        }
    }
    let mut placed = HashSet::new();
    for i in moved {
        let (nk, nv) = &new_rows[i];
        let taken = !placed.insert(nk.clone())
            || (!old_keys.contains(nk.as_slice()) && exists(env, writes, nk)?)
            || (old_keys.contains(nk.as_slice()) && writes.rows.get(nk).is_some_and(|w| w.value().is_some()));
        if taken {
            return Err(duplicate_key(&table, &new_cols, i));
        }
        writes.record(nk.clone(), RowWrite::Put(nv.clone()));
    }
    writes.tables.insert(table.def.id, table.def.version);
    let batch = RecordBatch::try_new(table.full_schema.clone(), new_cols)?;
    finish_write(env, &table, alias, vec![batch], returning_items, "UPDATE").await
}

async fn delete(
    env: &mut QueryEnv,
    target: &sqlparser::ast::TableWithJoins,
    using: &[sqlparser::ast::TableWithJoins],
    selection: Option<&Expr>,
    returning_items: Option<&Vec<SelectItem>>,
    writes: &mut TxnWrites,
) -> Result<Output> {
    let (name, alias) = target_of(target)?;
    let table = target_table(env, &name)?;
    let (old, _) = select_targets(env, &table, &name, &alias, &[], using, selection).await?;
    if old.first().map(|a| a.len()).unwrap_or(0) == 0 {
        return finish_write(env, &table, alias, vec![], returning_items, "DELETE").await;
    }
    for (k, _) in encode_rows(&table, &old)? {
        writes.record(k, RowWrite::Delete);
    }
    writes.tables.insert(table.def.id, table.def.version);
    let batch = RecordBatch::try_new(table.full_schema.clone(), old)?;
    finish_write(env, &table, alias, vec![batch], returning_items, "DELETE").await
}

async fn finish_write(
    env: &QueryEnv,
    table: &Arc<Table>,
    alias: Option<String>,
    batches: Vec<RecordBatch>,
    returning_items: Option<&Vec<SelectItem>>,
    tag: &str,
) -> Result<Output> {
    match returning_items {
        Some(items) => returning(env, table, alias, batches, items, tag).await,
        None => Ok(Output::Command {
            tag: tag.into(),
            rows: Some(batches.iter().map(|b| b.num_rows()).sum()),
        }),
    }
}

/// Evaluates RETURNING items over the written rows (full storage order).
async fn returning(
    env: &QueryEnv,
    table: &Arc<Table>,
    alias: Option<String>,
    batches: Vec<RecordBatch>,
    items: &[SelectItem],
    tag: &str,
) -> Result<Output> {
    let visible: Vec<usize> = (0..table.def.columns.len())
        .filter(|i| !table.def.columns[*i].hidden)
        .collect();
    let schema = table.visible_schema.clone();
    let projected: Vec<RecordBatch> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| b.project(&visible))
        .collect::<std::result::Result<_, _>>()?;
    let mem = MemTable::try_new(schema, vec![projected])?;
    let ctx = session_context_with(env, vec![("__returning".to_string(), Arc::new(mem) as _)]);
    let name = alias.unwrap_or_else(|| table.def.name.clone());
    let list: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    let sql = format!("SELECT {} FROM __returning AS {}", list.join(", "), quote(&name));
    let df = plan_sql(&ctx, &sql).await?;
    let out_schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let stream = df.execute_stream().await?;
    Ok(Output::Rows {
        schema: out_schema,
        stream,
        tag: tag.into(),
    })
}

/// Inserts already-typed rows (COPY FROM): `columns` in storage order of the visible columns
/// listed by `targets`; other columns get their defaults.
pub async fn insert_columns(
    env: &QueryEnv,
    table: &Arc<Table>,
    targets: &[usize],
    text_columns: Vec<ArrayRef>,
    writes: &mut TxnWrites,
) -> Result<usize> {
    let n = text_columns.first().map(|c| c.len()).unwrap_or(0);
    if n == 0 {
        return Ok(0);
    }
    let mut full: Vec<ArrayRef> = Vec::with_capacity(table.def.columns.len());
    let mut defaults: HashMap<usize, ArrayRef> = HashMap::new();
    let missing: Vec<usize> = (0..table.def.columns.len())
        .filter(|i| !table.def.columns[*i].hidden && !targets.contains(i) && table.def.columns[*i].default.is_some())
        .collect();
    if !missing.is_empty() {
        let ctx = session_context(env);
        let items: Vec<String> = missing
            .iter()
            .map(|i| format!("({})", default_sql(table, *i)))
            .collect();
        let sql = format!("SELECT {} FROM generate_series(1, {n})", items.join(", "));
        let batches = plan_sql(&ctx, &sql).await?.collect().await?;
        let all = concat_batches(&batches[0].schema(), &batches)?;
        for (j, i) in missing.iter().enumerate() {
            defaults.insert(*i, all.column(j).clone());
        }
    }
    for (idx, col) in table.def.columns.iter().enumerate() {
        if col.hidden {
            let first = table.allocate_row_ids(n);
            full.push(Arc::new(Int64Array::from_iter_values(first..first + n as i64)));
        } else if let Some(p) = targets.iter().position(|t| *t == idx) {
            full.push(text_columns[p].clone());
        } else if let Some(d) = defaults.remove(&idx) {
            full.push(d);
        } else {
            full.push(new_null_array(&DataType::Null, n));
        }
    }
    let full = coerce_columns(table, &full)?;
    check_not_null(table, &full)?;
    for (i, (k, v)) in encode_rows(table, &full)?.into_iter().enumerate() {
        if !table.has_row_id() && exists(env, writes, &k)? {
            return Err(duplicate_key(table, &full, i));
        }
        writes.record(k, RowWrite::Insert(v));
    }
    writes.tables.insert(table.def.id, table.def.version);
    Ok(n)
}

/// The SQL type of a computed column (for parameter inference and describe).
pub fn sql_type_of(field: &Field) -> SqlType {
    SqlType::from_field(field)
}
