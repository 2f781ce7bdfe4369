//! DDL: CREATE / DROP SCHEMA, CREATE / DROP / ALTER TABLE.
//!
//! A DDL statement is planned against the latest catalog into a new catalog plus the store
//! writes that go with it (catalog entries, row rewrites, range deletes), and committed as one
//! epoch by the coordinator, which refuses it (40001, retried) if the catalog moved meanwhile.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use sqlparser::ast::{
    AlterTableOperation, ColumnOption, CreateTable, ObjectType, RenameTableNameKind, SchemaName, Statement,
    TableConstraint,
};

use super::coerce::coerce;
use crate::catalog::{Catalog, ColumnDef, Generated, SqlType, Table, TableDef, ROW_ID_COLUMN, SYSTEM_SCHEMAS};
use crate::dataflow::coordinator::DdlChange;
use crate::error::{Error, Result, SqlState};
use crate::query::context::{session_context, QueryEnv};
use crate::session::{Output, Session};
use crate::sql::syntax::Stmt;
use crate::state::{keys, WriteBatch};

/// The outcome of planning a DDL statement.
pub enum Planned {
    /// Nothing to commit (e.g. IF NOT EXISTS on an existing object).
    Done(Output),
    Change(Output, DdlChange),
}

pub async fn plan(session: &mut Session, env: &QueryEnv, stmt: &Stmt) -> Result<Planned> {
    let mut catalog: Catalog = (*env.view.committed.catalog).clone();
    let base_version = catalog.version;
    let mut batch = WriteBatch::default();
    let mut created_views = Vec::new();
    let mut dropped_views = Vec::new();
    let out = match stmt {
        Stmt::CreateSource(cs) => {
            let Some(out) = super::source::create_source(session, env, &mut catalog, cs, &mut batch).await? else {
                return Ok(Planned::Done(Output::command("CREATE SOURCE")));
            };
            out
        }
        Stmt::CreateTableFrom(ct) => {
            let Some(def) = super::source::table_from_source(env, &catalog, ct).await? else {
                let name = super::object_name_parts(&ct.create.name).pop().unwrap_or_default();
                session.notice(
                    "NOTICE",
                    "42P07",
                    format!("relation \"{name}\" already exists, skipping"),
                );
                return Ok(Planned::Done(Output::command("CREATE TABLE")));
            };
            catalog.create_table(def, &mut batch)?;
            Output::command("CREATE TABLE")
        }
        Stmt::CreateTableWith(ct) => {
            if !super::source::create_table_with(env, &mut catalog, ct, crate::catalog::Layout::Rows, &mut batch)
                .await?
            {
                let name = super::object_name_parts(&ct.create.name).pop().unwrap_or_default();
                session.notice(
                    "NOTICE",
                    "42P07",
                    format!("relation \"{name}\" already exists, skipping"),
                );
                return Ok(Planned::Done(Output::command("CREATE TABLE")));
            }
            Output::command("CREATE TABLE")
        }
        Stmt::DropSource(ds) => {
            super::source::drop_sources(session, env, &mut catalog, ds, &mut batch, &mut dropped_views)?;
            if batch.is_empty() {
                return Ok(Planned::Done(Output::command("DROP SOURCE")));
            }
            Output::command("DROP SOURCE")
        }
        Stmt::ShowSources => return Err(Error::internal("SHOW SOURCES is not DDL")),
        Stmt::Pg(stmt) => match stmt {
            Statement::CreateView(cv) => {
                let (def, planned) = super::view::plan_create(env, cv).await?;
                if catalog
                    .resolve_relation(&[def.schema.clone(), def.name.clone()], &[])
                    .is_some()
                    && cv.if_not_exists
                {
                    session.notice(
                        "NOTICE",
                        "42P07",
                        format!("relation \"{}\" already exists, skipping", def.name),
                    );
                    return Ok(Planned::Done(Output::command("CREATE MATERIALIZED VIEW")));
                }
                let view = catalog.create_view(def, &mut batch)?;
                created_views.push(crate::planner::build_dataflow(
                    view.def.id,
                    &planned.plan,
                    view.def.plan_version,
                )?);
                Output::command("CREATE MATERIALIZED VIEW")
            }
            Statement::Drop {
                object_type: ObjectType::MaterializedView,
                if_exists,
                names,
                cascade,
                ..
            } => {
                for name in names {
                    let parts = super::object_name_parts(name);
                    let view = match catalog.resolve_view(&parts, &env.search_path) {
                        Ok(v) => v,
                        Err(e) if *if_exists && e.code() == SqlState::UNDEFINED_TABLE => {
                            session.notice(
                                "NOTICE",
                                "00000",
                                format!("materialized view \"{}\" does not exist, skipping", parts.join(".")),
                            );
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let deps = catalog.transitive_dependents(view.def.id);
                    if !deps.is_empty() && !cascade {
                        return Err(Error::user_detail(
                            SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                            format!(
                                "cannot drop materialized view {} because other objects depend on it",
                                view.def.name
                            ),
                            format!(
                                "materialized view {} depends on materialized view {}",
                                deps[0].def.name, view.def.name
                            ),
                        ));
                    }
                    for d in deps {
                        dropped_views.push(d.def.id);
                        catalog.drop_view(&d, &mut batch);
                    }
                    dropped_views.push(view.def.id);
                    catalog.drop_view(&view, &mut batch);
                }
                if batch.is_empty() {
                    return Ok(Planned::Done(Output::command("DROP MATERIALIZED VIEW")));
                }
                Output::command("DROP MATERIALIZED VIEW")
            }
            Statement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => {
                let name = match schema_name {
                    SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _) => {
                        super::object_name_parts(n).pop().unwrap_or_default()
                    }
                    SchemaName::UnnamedAuthorization(i) => super::ident_name(i),
                };
                if *if_not_exists && (catalog.schema(&name).is_some() || SYSTEM_SCHEMAS.contains(&name.as_str())) {
                    session.notice("NOTICE", "42P06", format!("schema \"{name}\" already exists, skipping"));
                    return Ok(Planned::Done(Output::command("CREATE SCHEMA")));
                }
                catalog.create_schema(&name, &mut batch)?;
                Output::command("CREATE SCHEMA")
            }
            Statement::CreateTable(ct) => {
                let def = table_def(env, ct).await?;
                if let Some(c) = def.columns.iter().find(|c| c.generated.is_some()) {
                    return Err(Error::unsupported(format!(
                        "generated column \"{}\" on a table written by DML (PROCTIME() columns are for tables fed by a source)",
                        c.name
                    )));
                }
                if ct.if_not_exists && catalog.table(&def.schema, &def.name).is_some() {
                    session.notice(
                        "NOTICE",
                        "42P07",
                        format!("relation \"{}\" already exists, skipping", def.name),
                    );
                    return Ok(Planned::Done(Output::command("CREATE TABLE")));
                }
                catalog.create_table(def, &mut batch)?;
                Output::command("CREATE TABLE")
            }
            Statement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => {
                match object_type {
                    ObjectType::Table => {
                        for name in names {
                            let parts = super::object_name_parts(name);
                            match catalog.resolve_table(&parts, &env.search_path) {
                                Ok(t) if t.def.layout == crate::catalog::Layout::Stream => {
                                    return Err(Error::user_detail(
                                        SqlState::WRONG_OBJECT_TYPE,
                                        format!("\"{}\" is not a table", t.def.name),
                                        format!("It is a source (a stream): DROP SOURCE {}.", t.def.name),
                                    ));
                                }
                                Ok(t) => {
                                    let deps = catalog.transitive_dependents(t.def.id);
                                    if !deps.is_empty() && !cascade {
                                        return Err(Error::user_detail(
                                            SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                                            format!(
                                                "cannot drop table {} because other objects depend on it",
                                                t.def.name
                                            ),
                                            format!(
                                                "materialized view {} depends on table {}",
                                                deps[0].def.name, t.def.name
                                            ),
                                        ));
                                    }
                                    for d in deps {
                                        dropped_views.push(d.def.id);
                                        catalog.drop_view(&d, &mut batch);
                                    }
                                    catalog.drop_table(&t, &mut batch);
                                    // The source CREATE TABLE .. WITH (connector = ..) made goes too.
                                    let implicit = t
                                        .def
                                        .source
                                        .as_ref()
                                        .and_then(|s| catalog.source_by_id(s.source))
                                        .filter(|s| s.implicit)
                                        .cloned();
                                    if let Some(s) = implicit {
                                        catalog.drop_source(&s, &mut batch);
                                    }
                                }
                                Err(_) if *if_exists => session.notice(
                                    "NOTICE",
                                    "00000",
                                    format!("table \"{}\" does not exist, skipping", parts.join(".")),
                                ),
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    ObjectType::Schema => {
                        for name in names {
                            let n = super::object_name_parts(name).pop().unwrap_or_default();
                            dropped_views.extend(catalog.views().filter(|v| v.def.schema == n).map(|v| v.def.id));
                            for t in catalog.tables().filter(|t| t.def.schema == n) {
                                dropped_views.extend(catalog.transitive_dependents(t.def.id).iter().map(|v| v.def.id));
                            }
                            if catalog.schema(&n).is_none() && *if_exists {
                                session.notice("NOTICE", "00000", format!("schema \"{n}\" does not exist, skipping"));
                                continue;
                            }
                            if SYSTEM_SCHEMAS.contains(&n.as_str()) {
                                return Err(Error::user(SqlState("42501"), format!("cannot drop schema {n}")));
                            }
                            catalog.drop_schema(&n, *cascade, &mut batch)?;
                        }
                    }
                    other => return Err(Error::unsupported(format!("DROP {other}"))),
                }
                if batch.is_empty() {
                    return Ok(Planned::Done(Output::command(&format!("DROP {object_type}"))));
                }
                Output::command(&format!("DROP {object_type}"))
            }
            Statement::AlterTable(at) => {
                let parts = super::object_name_parts(&at.name);
                let table = match catalog.resolve_table(&parts, &env.search_path) {
                    Ok(t) => t,
                    Err(_) if at.if_exists => {
                        session.notice(
                            "NOTICE",
                            "00000",
                            format!("relation \"{}\" does not exist, skipping", parts.join(".")),
                        );
                        return Ok(Planned::Done(Output::command("ALTER TABLE")));
                    }
                    Err(e) => return Err(e),
                };
                if let Some(src) = &table.def.source {
                    let source = catalog
                        .source_by_id(src.source)
                        .map(|s| s.name.clone())
                        .unwrap_or_default();
                    return Err(Error::unsupported(format!(
                        "ALTER TABLE {} (its columns follow upstream table {} of source {source})",
                        table.def.name, src.external
                    )));
                }
                if let Some(v) = catalog.dependents(table.def.id).first() {
                    return Err(Error::unsupported(format!(
                        "ALTER TABLE {} while materialized view {} reads it",
                        table.def.name, v.def.name
                    )));
                }
                let mut current = table;
                for op in &at.operations {
                    current = alter(session, env, &mut catalog, &current, op, &mut batch).await?;
                }
                Output::command("ALTER TABLE")
            }
            _ => return Err(Error::internal("not a DDL statement")),
        },
    };
    Ok(Planned::Change(
        out,
        DdlChange {
            base_version,
            catalog,
            batch,
            created_views,
            dropped_views,
        },
    ))
}

fn column_def(
    env_default_check: &mut Vec<String>,
    c: &sqlparser::ast::ColumnDef,
    pk: &mut Vec<String>,
) -> Result<ColumnDef> {
    let name = super::ident_name(&c.name);
    let ty = SqlType::parse(&c.data_type.to_string())?;
    let mut col = ColumnDef {
        name: name.clone(),
        ty,
        not_null: false,
        default: None,
        hidden: false,
        generated: None,
    };
    for opt in &c.options {
        match &opt.option {
            ColumnOption::NotNull => col.not_null = true,
            ColumnOption::Null => col.not_null = false,
            ColumnOption::Default(e) => {
                col.default = Some(e.to_string());
                env_default_check.push(e.to_string());
            }
            ColumnOption::PrimaryKey(_) => {
                col.not_null = true;
                pk.push(name.clone());
            }
            ColumnOption::Generated {
                generation_expr: Some(e),
                ..
            } => {
                col.generated = Some(generated(&name, &col.ty, e)?);
            }
            other => return Err(Error::unsupported(format!("column option {other}"))),
        }
    }
    if name == ROW_ID_COLUMN {
        return Err(Error::user(
            SqlState::DUPLICATE_COLUMN,
            format!("column name \"{ROW_ID_COLUMN}\" is reserved"),
        ));
    }
    Ok(col)
}

/// The columns listed after `*` in `CREATE TABLE t (*, ..) FROM ..`: generated columns only
/// (the others come from upstream).
pub(crate) fn generated_columns(ct: &CreateTable) -> Result<Vec<ColumnDef>> {
    let mut out: Vec<ColumnDef> = Vec::new();
    for c in &ct.columns {
        let mut pk = Vec::new();
        let col = column_def(&mut Vec::new(), c, &mut pk)?;
        if col.generated.is_none() || col.default.is_some() || !pk.is_empty() {
            return Err(Error::user(
                SqlState::INVALID_TABLE_DEFINITION,
                format!(
                    "column \"{}\" after *: only generated columns (AS PROCTIME()) may be listed, the others come from upstream",
                    col.name
                ),
            ));
        }
        if out.iter().any(|x| x.name == col.name) {
            return Err(Error::user(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{}\" specified more than once", col.name),
            ));
        }
        out.push(col);
    }
    Ok(out)
}

/// What a generated column (`AS PROCTIME()`, `GENERATED ALWAYS AS (PROCTIME()) STORED`) holds.
fn generated(name: &str, ty: &SqlType, e: &sqlparser::ast::Expr) -> Result<Generated> {
    let proctime = matches!(e, sqlparser::ast::Expr::Function(f)
    if super::object_name_parts(&f.name).pop().is_some_and(|n| n == "proctime")
        && match &f.args {
            sqlparser::ast::FunctionArguments::None => true,
            sqlparser::ast::FunctionArguments::List(l) => l.args.is_empty(),
            sqlparser::ast::FunctionArguments::Subquery(_) => false,
        });
    if !proctime {
        return Err(Error::unsupported(format!(
            "generated column \"{name}\" AS {e} (the one generated column is AS PROCTIME())"
        )));
    }
    if !matches!(ty, SqlType::Timestamptz | SqlType::Timestamp) {
        return Err(Error::user(
            SqlState::DATATYPE_MISMATCH,
            format!("a PROCTIME() column is timestamptz or timestamp, not {}", ty.name()),
        ));
    }
    Ok(Generated::ProcTime)
}

/// Checks that DEFAULT expressions are valid constant expressions.
async fn check_defaults(env: &QueryEnv, defaults: &[String]) -> Result<()> {
    if defaults.is_empty() {
        return Ok(());
    }
    let ctx = session_context(env);
    let sql = format!(
        "SELECT {}",
        defaults.iter().map(|d| format!("({d})")).collect::<Vec<_>>().join(", ")
    );
    super::dml::plan_sql(&ctx, &sql).await.map_err(|e| match e {
        Error::User { state, message, .. } if state == SqlState::UNDEFINED_COLUMN => Error::user(
            SqlState("0A000"),
            format!("cannot use column reference in DEFAULT expression: {message}"),
        ),
        other => other,
    })?;
    Ok(())
}

pub(crate) async fn table_def(env: &QueryEnv, ct: &CreateTable) -> Result<TableDef> {
    if ct.query.is_some() {
        return Err(Error::unsupported(
            "CREATE TABLE ... AS (create the table, then INSERT ... SELECT)",
        ));
    }
    let mut parts = super::object_name_parts(&ct.name);
    let name = parts.pop().unwrap_or_default();
    let schema = parts.pop().unwrap_or_else(|| env.default_schema());
    if SYSTEM_SCHEMAS.contains(&schema.as_str()) {
        return Err(Error::user(
            SqlState("42501"),
            format!("cannot create tables in schema {schema}"),
        ));
    }
    let mut pk_names = Vec::new();
    let mut defaults = Vec::new();
    let mut columns = Vec::new();
    for c in &ct.columns {
        let col = column_def(&mut defaults, c, &mut pk_names)?;
        if columns.iter().any(|x: &ColumnDef| x.name == col.name) {
            return Err(Error::user(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{}\" specified more than once", col.name),
            ));
        }
        columns.push(col);
    }
    if columns.is_empty() {
        return Err(Error::unsupported("a table without columns"));
    }
    for cons in &ct.constraints {
        match cons {
            TableConstraint::PrimaryKey(pk) => {
                if !pk_names.is_empty() {
                    return Err(Error::user(
                        SqlState::INVALID_TABLE_DEFINITION,
                        format!("multiple primary keys for table \"{name}\" are not allowed"),
                    ));
                }
                for c in &pk.columns {
                    pk_names.push(c.column.expr.to_string().trim_matches('"').to_string());
                }
            }
            other => return Err(Error::unsupported(format!("table constraint {other}"))),
        }
    }
    if pk_names.len() > 1 && ct.constraints.is_empty() {
        return Err(Error::user(
            SqlState::INVALID_TABLE_DEFINITION,
            format!("multiple primary keys for table \"{name}\" are not allowed"),
        ));
    }
    let mut primary_key = Vec::new();
    for n in &pk_names {
        let n = n.to_lowercase();
        let idx = columns.iter().position(|c| c.name == n).ok_or_else(|| {
            Error::user(
                SqlState::UNDEFINED_COLUMN,
                format!("column \"{n}\" named in key does not exist"),
            )
        })?;
        if matches!(columns[idx].ty, SqlType::Jsonb | SqlType::Array(_)) {
            return Err(Error::unsupported(format!(
                "a primary key on a {} column",
                columns[idx].ty.name()
            )));
        }
        columns[idx].not_null = true;
        primary_key.push(idx);
    }
    if primary_key.is_empty() {
        columns.push(ColumnDef {
            name: ROW_ID_COLUMN.into(),
            ty: SqlType::Int8,
            not_null: true,
            default: None,
            hidden: true,
            generated: None,
        });
        primary_key.push(columns.len() - 1);
    }
    check_defaults(env, &defaults).await?;
    Ok(TableDef {
        id: 0,
        schema,
        name,
        columns,
        primary_key,
        version: 0,
        source: None,
        layout: Default::default(),
    })
}

/// Reads every row of `table` (from the committed snapshot) as storage-order columns.
fn read_all(env: &QueryEnv, table: &Table) -> Result<(Vec<Vec<u8>>, Option<RecordBatch>)> {
    if table.def.layout != crate::catalog::Layout::Rows {
        return Err(Error::unsupported(format!(
            "adding or dropping a column of {}, whose rows a generator source appends",
            table.def.name
        )));
    }
    let (from, to) = keys::table_range(table.def.id);
    let mut ks = Vec::new();
    let mut vs = Vec::new();
    for kv in env.view.committed.snapshot.scan(&from, &to) {
        let (k, v) = kv?;
        ks.push(k.to_vec());
        vs.push(v);
    }
    if ks.is_empty() {
        return Ok((ks, None));
    }
    let cols = table.row_codec.decode(vs.iter().map(|v| v.as_ref()))?;
    Ok((ks, Some(RecordBatch::try_new(table.full_schema.clone(), cols)?)))
}

/// Re-encodes every row of `new` from `columns` (same keys).
fn rewrite_rows(new: &Table, row_keys: &[Vec<u8>], columns: &[ArrayRef], batch: &mut WriteBatch) -> Result<()> {
    let rows = new.row_codec.encode(columns)?;
    for (i, k) in row_keys.iter().enumerate() {
        batch.put(k.clone(), rows.row(i).as_ref().to_vec());
    }
    Ok(())
}

async fn alter(
    session: &mut Session,
    env: &QueryEnv,
    catalog: &mut Catalog,
    table: &Arc<Table>,
    op: &AlterTableOperation,
    batch: &mut WriteBatch,
) -> Result<Arc<Table>> {
    let mut def = table.def.clone();
    match op {
        AlterTableOperation::AddColumn {
            if_not_exists,
            column_def: c,
            ..
        } => {
            let mut pk = Vec::new();
            let mut defaults = Vec::new();
            let col = column_def(&mut defaults, c, &mut pk)?;
            if !pk.is_empty() {
                return Err(Error::unsupported("adding a primary-key column"));
            }
            if col.generated.is_some() {
                return Err(Error::unsupported("adding a generated column"));
            }
            if table.column_index(&col.name).is_some() {
                if *if_not_exists {
                    session.notice(
                        "NOTICE",
                        "42701",
                        format!(
                            "column \"{}\" of relation \"{}\" already exists, skipping",
                            col.name, def.name
                        ),
                    );
                    return Ok(table.clone());
                }
                return Err(Error::user(
                    SqlState::DUPLICATE_COLUMN,
                    format!("column \"{}\" of relation \"{}\" already exists", col.name, def.name),
                ));
            }
            check_defaults(env, &defaults).await?;
            // Keep hidden columns last.
            let pos = def.columns.iter().position(|c| c.hidden).unwrap_or(def.columns.len());
            def.columns.insert(pos, col.clone());
            def.primary_key = def
                .primary_key
                .iter()
                .map(|i| if *i >= pos { i + 1 } else { *i })
                .collect();
            let (row_keys, rows) = read_all(env, table)?;
            let new = catalog.replace_table(table, def, batch)?;
            if let Some(rows) = rows {
                let n = rows.num_rows();
                let value: ArrayRef = match &col.default {
                    Some(d) => {
                        let ctx = session_context(env);
                        let sql = format!("SELECT ({d}) FROM generate_series(1, {n})");
                        let b = super::dml::plan_sql(&ctx, &sql).await?.collect().await?;
                        let all = datafusion::arrow::compute::concat_batches(&b[0].schema(), &b)?;
                        coerce(all.column(0), &col.ty)?
                    }
                    None => datafusion::arrow::array::new_null_array(&col.ty.arrow_type(), n),
                };
                if col.not_null && value.null_count() > 0 {
                    return Err(Error::user(
                        SqlState::NOT_NULL_VIOLATION,
                        format!(
                            "column \"{}\" of relation \"{}\" contains null values",
                            col.name, new.def.name
                        ),
                    ));
                }
                let mut cols = rows.columns().to_vec();
                cols.insert(pos, value);
                rewrite_rows(&new, &row_keys, &cols, batch)?;
            }
            Ok(new)
        }
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            ..
        } => {
            let mut current = table.clone();
            for cn in column_names {
                let name = super::ident_name(cn);
                let Some(idx) = current.column_index(&name).filter(|i| !current.def.columns[*i].hidden) else {
                    if *if_exists {
                        session.notice(
                            "NOTICE",
                            "42703",
                            format!(
                                "column \"{name}\" of relation \"{}\" does not exist, skipping",
                                def.name
                            ),
                        );
                        continue;
                    }
                    return Err(Error::user(
                        SqlState::UNDEFINED_COLUMN,
                        format!("column \"{name}\" of relation \"{}\" does not exist", def.name),
                    ));
                };
                if current.def.primary_key.contains(&idx) {
                    return Err(Error::user(
                        SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                        format!(
                            "cannot drop column {name} of table {}: it is part of the primary key",
                            def.name
                        ),
                    ));
                }
                if current.def.columns.iter().filter(|c| !c.hidden).count() == 1 {
                    return Err(Error::unsupported("dropping the last column of a table"));
                }
                let mut d = current.def.clone();
                d.columns.remove(idx);
                d.primary_key = d
                    .primary_key
                    .iter()
                    .map(|i| if *i > idx { i - 1 } else { *i })
                    .collect();
                let (row_keys, rows) = read_all(env, &current)?;
                let new = catalog.replace_table(&current, d, batch)?;
                if let Some(rows) = rows {
                    let mut cols = rows.columns().to_vec();
                    cols.remove(idx);
                    rewrite_rows(&new, &row_keys, &cols, batch)?;
                }
                current = new;
            }
            Ok(current)
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => {
            let old = super::ident_name(old_column_name);
            let new = super::ident_name(new_column_name);
            let idx = table
                .column_index(&old)
                .filter(|i| !def.columns[*i].hidden)
                .ok_or_else(|| Error::user(SqlState::UNDEFINED_COLUMN, format!("column \"{old}\" does not exist")))?;
            if table.column_index(&new).is_some() {
                return Err(Error::user(
                    SqlState::DUPLICATE_COLUMN,
                    format!("column \"{new}\" of relation \"{}\" already exists", def.name),
                ));
            }
            def.columns[idx].name = new;
            catalog.replace_table(table, def, batch)
        }
        AlterTableOperation::RenameTable { table_name } => {
            let n = match table_name {
                RenameTableNameKind::As(n) | RenameTableNameKind::To(n) => n,
            };
            def.name = super::object_name_parts(n).pop().unwrap_or_default();
            catalog.replace_table(table, def, batch)
        }
        other => Err(Error::unsupported(format!("ALTER TABLE ... {other}"))),
    }
}

#[allow(dead_code)]
fn _unused(_: SqlState) {}
