//! CREATE SOURCE, DROP SOURCE and CREATE TABLE ... FROM source TABLE 'x': planned into a new
//! catalog like any DDL (see `ddl`). The connector checks the upstream side: reachable and
//! configured for capture (CREATE SOURCE), the declared columns matching the upstream table's
//! (CREATE TABLE ... FROM).

use sqlparser::ast::ColumnOption;

use crate::catalog::{Catalog, ColumnDef, Layout, SourceDef, TableDef, TableSource, SYSTEM_SCHEMAS};
use crate::connectors::{self, UpstreamTable};
use crate::dataflow::coordinator::now_micros;
use crate::error::{Error, Result, SqlState};
use crate::query::context::QueryEnv;
use crate::session::{Output, Session};
use crate::sql::syntax::{CreateSource, CreateTableFrom, CreateTableWith, DropSource};
use crate::state::WriteBatch;

/// Plans CREATE SOURCE; `None` when IF NOT EXISTS found it.
pub async fn create_source(
    session: &mut Session,
    env: &QueryEnv,
    catalog: &mut Catalog,
    cs: &CreateSource,
    batch: &mut WriteBatch,
) -> Result<Option<Output>> {
    let mut parts = super::object_name_parts(&cs.name);
    let name = parts.pop().unwrap_or_default();
    let schema = parts.pop().unwrap_or_else(|| env.default_schema());
    if SYSTEM_SCHEMAS.contains(&schema.as_str()) {
        return Err(Error::user(
            SqlState("42501"),
            format!("cannot create sources in schema {schema}"),
        ));
    }
    if catalog.sources().any(|s| s.schema == schema && s.name == name) {
        if cs.if_not_exists {
            session.notice("NOTICE", "42710", format!("source \"{name}\" already exists, skipping"));
            return Ok(None);
        }
        return Err(Error::user(
            SqlState::DUPLICATE_OBJECT,
            format!("source \"{name}\" already exists"),
        ));
    }
    let connector = connectors::connector_of(&cs.options)?;
    if cs.columns.is_some() || connectors::names_one_table(&connector, &cs.options) {
        return create_stream(env, catalog, cs, &connector, batch).await;
    }
    let mut options = cs.options.clone();
    options.remove("connector");
    connectors::validate(&connector, &options).await?;
    catalog.create_source(
        SourceDef {
            id: 0,
            schema,
            name,
            connector,
            options,
            implicit: false,
        },
        batch,
    )?;
    Ok(Some(Output::command("CREATE SOURCE")))
}

/// Plans CREATE SOURCE name [(cols)] WITH (connector = ..) for one upstream table: a stream,
/// stored as nothing (its rows only reach the views over it), fed by a source of its own.
async fn create_stream(
    env: &QueryEnv,
    catalog: &mut Catalog,
    cs: &CreateSource,
    connector: &str,
    batch: &mut WriteBatch,
) -> Result<Option<Output>> {
    if !connectors::only_appends(connector) {
        return Err(Error::unsupported(format!(
            "a stream from a '{connector}' source (its changes update and delete rows): \
             CREATE SOURCE .. WITH (..) without columns, then CREATE TABLE .. FROM it"
        )));
    }
    let create = cs.columns.clone().unwrap_or_else(|| {
        sqlparser::ast::helpers::stmt_create_table::CreateTableBuilder::new(cs.name.clone())
            .if_not_exists(cs.if_not_exists)
            .build()
    });
    let ct = CreateTableWith {
        create,
        all_columns: cs.all_columns || cs.columns.is_none(),
        options: cs.options.clone(),
    };
    if !create_table_with(env, catalog, &ct, Layout::Stream, batch).await? {
        return Ok(None);
    }
    Ok(Some(Output::command("CREATE SOURCE")))
}

/// Plans DROP SOURCE: refused while tables read from it, unless CASCADE (which drops them and
/// the views over them). A stream's source drops the stream; views over it need CASCADE.
pub fn drop_sources(
    session: &mut Session,
    env: &QueryEnv,
    catalog: &mut Catalog,
    ds: &DropSource,
    batch: &mut WriteBatch,
    dropped_views: &mut Vec<u32>,
) -> Result<()> {
    for name in &ds.names {
        let parts = super::object_name_parts(name);
        let source = match catalog.resolve_source(&parts, &env.search_path) {
            Ok(s) => s,
            Err(_) if ds.if_exists => {
                session.notice(
                    "NOTICE",
                    "00000",
                    format!("source \"{}\" does not exist, skipping", parts.join(".")),
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        let tables = catalog.tables_of_source(source.id);
        if !ds.cascade {
            let stored = tables.iter().find(|t| t.def.layout != Layout::Stream);
            let viewed = tables
                .iter()
                .find_map(|t| catalog.dependents(t.def.id).into_iter().next().map(|v| (t, v)));
            if let Some(t) = stored {
                return Err(Error::user_detail(
                    SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("cannot drop source {} because other objects depend on it", source.name),
                    format!("table {} depends on source {}", t.def.name, source.name),
                ));
            }
            if let Some((t, v)) = viewed {
                return Err(Error::user_detail(
                    SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("cannot drop source {} because other objects depend on it", source.name),
                    format!("materialized view {} depends on source {}", v.def.name, t.def.name),
                ));
            }
        }
        for t in tables {
            for v in catalog.transitive_dependents(t.def.id) {
                dropped_views.push(v.def.id);
                catalog.drop_view(&v, batch);
            }
            catalog.drop_table(&t, batch);
        }
        catalog.drop_source(&source, batch);
    }
    Ok(())
}

/// Plans CREATE TABLE ... FROM source TABLE 'x': the table's definition, its columns checked
/// against (or, for `(*)`, taken from) the upstream table. `None` when IF NOT EXISTS found it.
pub async fn table_from_source(env: &QueryEnv, catalog: &Catalog, ct: &CreateTableFrom) -> Result<Option<TableDef>> {
    let source = catalog.resolve_source(&super::object_name_parts(&ct.source), &env.search_path)?;
    let mut parts = super::object_name_parts(&ct.create.name);
    let name = parts.pop().unwrap_or_default();
    let schema = parts.pop().unwrap_or_else(|| env.default_schema());
    if catalog.resolve_relation(&[schema.clone(), name.clone()], &[]).is_some() && ct.create.if_not_exists {
        return Ok(None);
    }
    if ct.create.query.is_some() {
        return Err(Error::unsupported("CREATE TABLE ... AS ... FROM a source"));
    }
    let started = now_micros();
    let upstream = connectors::describe(&source.connector, &source.options, &ct.external).await?;
    tracing::debug!(table = %name, upstream = %upstream.name, micros = now_micros() - started, "upstream described");
    if upstream.primary_key.is_empty() && !upstream.append_only {
        return Err(Error::user(
            SqlState::INVALID_TABLE_DEFINITION,
            format!(
                "upstream table {} has no primary key: a table captured from a source needs one",
                upstream.name
            ),
        ));
    }
    let mut def = if ct.all_columns {
        all_columns(&schema, &name, &upstream, super::ddl::generated_columns(&ct.create)?)?
    } else {
        let def = super::ddl::table_def(env, &ct.create).await?;
        check_declared(&def, &ct.create, &upstream)?;
        def
    };
    def.source = Some(TableSource {
        source: source.id,
        external: ct.external.clone(),
    });
    def.layout = append_layout(&def, upstream.append_only);
    Ok(Some(def))
}

/// Plans CREATE TABLE t (..) WITH (connector = '..', ..): a table with a source of its own
/// (named like the table, dropped with it); with `Layout::Stream`, a stream (nothing stored).
/// False when IF NOT EXISTS found the table.
pub async fn create_table_with(
    env: &QueryEnv,
    catalog: &mut Catalog,
    ct: &CreateTableWith,
    layout: Layout,
    batch: &mut WriteBatch,
) -> Result<bool> {
    let mut parts = super::object_name_parts(&ct.create.name);
    let name = parts.pop().unwrap_or_default();
    let schema = parts.pop().unwrap_or_else(|| env.default_schema());
    if catalog.resolve_relation(&[schema.clone(), name.clone()], &[]).is_some() && ct.create.if_not_exists {
        return Ok(false);
    }
    let connector = connectors::connector_of(&ct.options)?;
    let mut options = ct.options.clone();
    options.remove("connector");
    if connector == "datagen" {
        // Rows for whatever columns the table declares.
        if ct.all_columns {
            return Err(Error::user(
                SqlState::INVALID_TABLE_DEFINITION,
                "a datagen table declares its columns: CREATE TABLE t (col type, ..) WITH (connector = 'datagen', ..)",
            ));
        }
        let mut def = super::ddl::table_def(env, &ct.create).await?;
        if def.columns.iter().any(|c| c.default.is_some()) {
            return Err(Error::unsupported("DEFAULT on a column of a datagen table"));
        }
        if def.columns.iter().any(|c| c.generated.is_some()) {
            return Err(Error::unsupported("a generated column on a datagen table"));
        }
        let datagen = connectors::generator::datagen::Datagen::new(&def, &options)?;
        // Views rely on a stream's primary key being unique (`planner::unique`): only sequence
        // fields are.
        if layout == Layout::Stream && !def.has_row_id() {
            if let Some(c) = def
                .primary_key
                .iter()
                .map(|i| &def.columns[*i].name)
                .find(|c| !datagen.is_sequence(c))
            {
                return Err(Error::user(
                    SqlState::INVALID_TABLE_DEFINITION,
                    format!(
                        "primary key column \"{c}\" of a datagen stream is not a sequence field: a stream's primary key must be unique (fields.{c}.kind = 'sequence'), or leave the key out"
                    ),
                ));
            }
        }
        let source = catalog.create_source(
            SourceDef {
                id: 0,
                schema: schema.clone(),
                name: name.clone(),
                connector,
                options,
                implicit: true,
            },
            batch,
        )?;
        def.source = Some(TableSource {
            source: source.id,
            external: name,
        });
        // A datagen table only gains rows.
        def.layout = if layout == Layout::Stream {
            layout
        } else {
            append_layout(&def, true)
        };
        catalog.create_table(def, batch)?;
        return Ok(true);
    }
    let external = connectors::table_of_options(&connector, &options, &name)?;
    connectors::validate(&connector, &options).await?;
    let source = catalog.create_source(
        SourceDef {
            id: 0,
            schema: schema.clone(),
            name: name.clone(),
            connector,
            options,
            implicit: true,
        },
        batch,
    )?;
    let from = CreateTableFrom {
        create: ct.create.clone(),
        all_columns: ct.all_columns,
        source: sqlparser::ast::ObjectName::from(vec![
            sqlparser::ast::Ident::with_quote('"', schema),
            sqlparser::ast::Ident::with_quote('"', source.name.clone()),
        ]),
        external,
    };
    let mut def = table_from_source(env, catalog, &from)
        .await?
        .ok_or_else(|| Error::internal("the table appeared while being created"))?;
    if layout == Layout::Stream {
        def.layout = layout;
    }
    catalog.create_table(def, batch)?;
    Ok(true)
}

/// The layout of a source's table: segments when the source only appends rows and the table
/// keys them by a hidden row id (nothing else ever changes them).
fn append_layout(def: &TableDef, append_only: bool) -> Layout {
    if append_only && def.has_row_id() {
        Layout::Segments
    } else {
        Layout::Rows
    }
}

/// The definition of `(*, generated ..)`: every upstream column, in upstream order, with its
/// mapped type, then the generated columns.
fn all_columns(schema: &str, name: &str, upstream: &UpstreamTable, generated: Vec<ColumnDef>) -> Result<TableDef> {
    let mut columns = Vec::with_capacity(upstream.columns.len());
    for c in &upstream.columns {
        let ty = c.sql_type.clone().map_err(|why| {
            Error::unsupported(format!(
                "column {} of upstream table {} (type {}: {why})",
                c.name, upstream.name, c.upstream_type
            ))
        })?;
        columns.push(ColumnDef {
            name: c.name.to_lowercase(),
            ty,
            not_null: !c.nullable || upstream.primary_key.contains(&c.name),
            default: None,
            hidden: false,
            generated: None,
        });
    }
    let primary_key = upstream
        .primary_key
        .iter()
        .map(|k| {
            upstream
                .columns
                .iter()
                .position(|c| &c.name == k)
                .ok_or_else(|| Error::internal("upstream key column missing"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut primary_key = primary_key;
    for g in generated {
        if columns.iter().any(|c| c.name == g.name) {
            return Err(Error::user(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{}\" specified more than once (upstream has it)", g.name),
            ));
        }
        columns.push(g);
    }
    if primary_key.is_empty() {
        // An append-only stream without a key: rows are keyed by a hidden row id.
        columns.push(ColumnDef {
            name: crate::catalog::ROW_ID_COLUMN.into(),
            ty: crate::catalog::SqlType::Int8,
            not_null: true,
            default: None,
            hidden: true,
            generated: None,
        });
        primary_key.push(columns.len() - 1);
    }
    Ok(TableDef {
        id: 0,
        schema: schema.to_string(),
        name: name.to_string(),
        columns,
        primary_key,
        version: 0,
        source: None,
        layout: Default::default(),
    })
}

/// Declared columns must exist upstream with the type the connector maps them to, and the
/// declared primary key must be the upstream one (rows are applied by key).
fn check_declared(def: &TableDef, ct: &sqlparser::ast::CreateTable, upstream: &UpstreamTable) -> Result<()> {
    if ct.columns.iter().any(|c| {
        c.options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::Default(_) | ColumnOption::Generated { .. }))
    }) {
        return Err(Error::unsupported(
            "DEFAULT or a generated column on a declared column of a table captured from a source \
             (its values come from upstream; list PROCTIME() columns after *: (*, p_time TIMESTAMPTZ AS PROCTIME()))",
        ));
    }
    for c in def.columns.iter().filter(|c| !c.hidden) {
        let Some(u) = upstream.columns.iter().find(|u| u.name.eq_ignore_ascii_case(&c.name)) else {
            return Err(Error::user(
                SqlState::UNDEFINED_COLUMN,
                format!(
                    "column \"{}\" does not exist in upstream table {}",
                    c.name, upstream.name
                ),
            ));
        };
        match &u.sql_type {
            Ok(t) if *t == c.ty => {}
            Ok(t) => {
                return Err(Error::user(
                    SqlState::DATATYPE_MISMATCH,
                    format!(
                        "column \"{}\" is declared {} but upstream {}.{} is {} (maps to {})",
                        c.name,
                        c.ty.name(),
                        upstream.name,
                        u.name,
                        u.upstream_type,
                        t.name()
                    ),
                ))
            }
            Err(why) => {
                return Err(Error::unsupported(format!(
                    "column {} of upstream table {} (type {}: {why})",
                    u.name, upstream.name, u.upstream_type
                )))
            }
        }
    }
    let declared_pk: Vec<String> = def
        .primary_key
        .iter()
        .map(|i| &def.columns[*i])
        .filter(|c| !c.hidden)
        .map(|c| c.name.clone())
        .collect();
    let upstream_pk: Vec<String> = upstream.primary_key.iter().map(|k| k.to_lowercase()).collect();
    if declared_pk != upstream_pk {
        return Err(Error::user(
            SqlState::INVALID_TABLE_DEFINITION,
            format!(
                "the primary key of a table captured from {} must be the upstream one: PRIMARY KEY ({})",
                upstream.name,
                upstream_pk.join(", ")
            ),
        ));
    }
    Ok(())
}
