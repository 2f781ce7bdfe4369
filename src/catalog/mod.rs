//! The catalog: schemas, tables, sources and views (later sinks), persisted in the store.
//!
//! A [`Catalog`] value is immutable: DDL builds a new one and the commit path publishes it
//! together with the data of the same epoch, so a reader always sees a catalog and data that
//! belong together. Objects are stored as JSON under `keys::catalog_key(kind, id)`.

pub mod pg_catalog;
pub mod source;
pub mod system;
pub mod types;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SqlState};
use crate::state::row_codec::RowCodec;
pub use crate::state::segment::Layout;
use crate::state::{keys, StateSnapshot, WriteBatch};
pub use source::{SourceDef, TableSource};
pub use types::SqlType;

/// Name of the hidden key column of a table declared without a primary key.
pub const ROW_ID_COLUMN: &str = "_row_id";
/// The schema new objects go to when none is named.
pub const DEFAULT_SCHEMA: &str = "public";
/// Schemas that exist without being created and cannot hold user objects.
pub const SYSTEM_SCHEMAS: [&str; 3] = ["pg_catalog", "information_schema", "freshet_catalog"];
/// OIDs of user objects start here, as in PostgreSQL.
pub const FIRST_USER_OID: u32 = 16384;
/// The OID PostgreSQL gives the `public` schema.
pub const PUBLIC_SCHEMA_OID: u32 = 2200;

const KIND_SCHEMA: u8 = 1;
const KIND_TABLE: u8 = 2;
const KIND_VIEW: u8 = 3;
const KIND_SOURCE: u8 = 4;
const KIND_COUNTER: u8 = 0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: SqlType,
    pub not_null: bool,
    /// The DEFAULT expression as SQL text.
    pub default: Option<String>,
    /// Hidden columns (the row id) are not in `SELECT *`.
    #[serde(default)]
    pub hidden: bool,
    /// Set for a column whose values Freshet writes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<Generated>,
}

/// How Freshet makes the values of a generated column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Generated {
    /// `AS PROCTIME()`: the time the row was written (processing time), in µs.
    ProcTime,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: u32,
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` of the primary key, in key order.
    pub primary_key: Vec<usize>,
    /// Bumped by every ALTER: writes planned against an older version are refused.
    #[serde(default)]
    pub version: u64,
    /// Set for a table written only by a source (CDC); DML on it is refused.
    #[serde(default)]
    pub source: Option<TableSource>,
    /// How rows are stored: `Segments` for a table only a generator source appends to.
    #[serde(default, skip_serializing_if = "Layout::is_rows")]
    pub layout: Layout,
}

impl TableDef {
    /// True for a table without a primary key: its rows are keyed by a hidden row id.
    pub fn has_row_id(&self) -> bool {
        self.columns.iter().any(|c| c.hidden && c.name == ROW_ID_COLUMN)
    }

    /// The columns a source fills from upstream: visible and not generated, in table order.
    pub fn upstream_columns(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns.iter().filter(|c| !c.hidden && c.generated.is_none())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaDef {
    pub id: u32,
    pub name: String,
}

impl SchemaDef {
    pub fn oid(&self) -> u32 {
        if self.name == DEFAULT_SCHEMA {
            PUBLIC_SCHEMA_OID
        } else {
            FIRST_USER_OID + self.id
        }
    }
}

/// A materialized view's definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    pub id: u32,
    pub schema: String,
    pub name: String,
    /// The defining query, as SQL text.
    pub query: String,
    pub columns: Vec<ColumnDef>,
    /// Tables and views the query reads (ids).
    pub depends_on: Vec<u32>,
    /// The epoch the view was created in.
    #[serde(default)]
    pub created_epoch: u64,
    /// How rows are stored: `Segments` for a view that only gains rows (see
    /// `ViewDataflow::append_only`).
    #[serde(default, skip_serializing_if = "Layout::is_rows")]
    pub layout: Layout,
    /// With `Layout::Groups`: the columns whose values make a group (none: the whole view
    /// is one group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_columns: Vec<usize>,
    /// With `Layout::Groups`: each group holds at most one row, once (an aggregate's groups,
    /// a top-1), so an epoch's changes to a group give its new contents without a read.
    #[serde(default, skip_serializing_if = "is_false")]
    pub single_row_groups: bool,
    /// The planner version the view was created with (`planner::PLAN_VERSION`): a restart
    /// re-plans with the same operator variants, which wrote its state (0: before versions).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub plan_version: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// A materialized view with its derived forms. Rows are stored as the order-preserving
/// encoding of the whole row (key) with their multiplicity (value), or by group
/// (`Layout::Groups`: key the encoding of the group columns, value the group's encoded rows).
#[derive(Debug)]
pub struct View {
    pub def: ViewDef,
    pub schema: SchemaRef,
    pub row_codec: RowCodec,
    /// With `Layout::Groups` and group columns: encodes the group columns into a group's key.
    pub group_codec: Option<RowCodec>,
}

impl View {
    pub fn new(def: ViewDef) -> Result<View> {
        let fields: Vec<_> = def.columns.iter().map(|c| c.ty.arrow_field(&c.name, true)).collect();
        let types: Vec<DataType> = fields.iter().map(|f| f.data_type().clone()).collect();
        let group_codec = if def.layout == Layout::Groups && !def.group_columns.is_empty() {
            let group_types = def
                .group_columns
                .iter()
                .map(|i| {
                    types
                        .get(*i)
                        .cloned()
                        .ok_or_else(|| Error::internal(format!("view {} groups by a missing column", def.name)))
                })
                .collect::<Result<Vec<_>>>()?;
            Some(RowCodec::new(&group_types)?)
        } else {
            None
        };
        Ok(View {
            row_codec: RowCodec::new(&types)?,
            group_codec,
            schema: Arc::new(Schema::new(fields)),
            def,
        })
    }

    pub fn oid(&self) -> u32 {
        FIRST_USER_OID + self.def.id
    }

    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.def.schema, self.def.name)
    }
}

/// A table or a materialized view.
#[derive(Clone, Debug)]
pub enum Relation {
    Table(Arc<Table>),
    View(Arc<View>),
}

/// A table with what is derived from its definition: Arrow schemas and row codecs.
#[derive(Debug)]
pub struct Table {
    pub def: TableDef,
    /// Every column, hidden ones included, in storage order.
    pub full_schema: SchemaRef,
    /// The columns `SELECT *` shows.
    pub visible_schema: SchemaRef,
    pub key_codec: RowCodec,
    pub row_codec: RowCodec,
    /// Next hidden row id (tables without a primary key).
    pub row_id_seq: Arc<AtomicI64>,
}

impl Table {
    pub fn new(def: TableDef, row_id_seq: Arc<AtomicI64>) -> Result<Table> {
        let fields: Vec<_> = def
            .columns
            .iter()
            .map(|c| c.ty.arrow_field(&c.name, !c.not_null))
            .collect();
        let visible: Vec<_> = def
            .columns
            .iter()
            .zip(&fields)
            .filter(|(c, _)| !c.hidden)
            .map(|(_, f)| f.clone())
            .collect();
        let key_types: Vec<DataType> = def.primary_key.iter().map(|i| fields[*i].data_type().clone()).collect();
        let row_types: Vec<DataType> = fields.iter().map(|f| f.data_type().clone()).collect();
        Ok(Table {
            key_codec: RowCodec::new(&key_types)?,
            row_codec: RowCodec::new(&row_types)?,
            full_schema: Arc::new(Schema::new(fields)),
            visible_schema: Arc::new(Schema::new(visible)),
            def,
            row_id_seq,
        })
    }

    pub fn oid(&self) -> u32 {
        FIRST_USER_OID + self.def.id
    }

    /// Refuses DML on a table written only by a source.
    pub fn check_writable(&self, catalog: &Catalog) -> Result<()> {
        match &self.def.source {
            None => Ok(()),
            Some(s) => {
                let source = catalog
                    .source_by_id(s.source)
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                Err(Error::user(
                    SqlState::WRONG_OBJECT_TYPE,
                    format!(
                        "cannot write to table {}: it is written only by source {source} (upstream table {})",
                        self.def.name, s.external
                    ),
                ))
            }
        }
    }

    pub fn has_row_id(&self) -> bool {
        self.def.has_row_id()
    }

    /// The index of visible column `name`, or 42703.
    pub fn visible_column(&self, name: &str) -> Result<usize> {
        self.column_index(name)
            .filter(|i| !self.def.columns[*i].hidden)
            .ok_or_else(|| {
                Error::user(
                    SqlState::UNDEFINED_COLUMN,
                    format!("column \"{name}\" of relation \"{}\" does not exist", self.def.name),
                )
            })
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.def.columns.iter().position(|c| c.name == name)
    }

    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.def.schema, self.def.name)
    }
}

/// An immutable version of the catalog.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Bumped by every DDL.
    pub version: u64,
    next_id: u32,
    schemas: BTreeMap<String, Arc<SchemaDef>>,
    tables: BTreeMap<(String, String), Arc<Table>>,
    views: BTreeMap<(String, String), Arc<View>>,
    sources: BTreeMap<(String, String), Arc<SourceDef>>,
}

impl Catalog {
    /// Loads the catalog persisted in `snap` (an empty store yields the `public` schema only).
    pub fn load(snap: &dyn StateSnapshot) -> Result<Catalog> {
        let mut cat = Catalog::default();
        let (from, to) = keys::catalog_range();
        let mut saw_anything = false;
        for kv in snap.scan(&from, &to) {
            let (k, v) = kv?;
            saw_anything = true;
            let corrupt = |e: serde_json::Error| Error::internal(format!("corrupt catalog entry: {e}"));
            match k.get(1) {
                Some(&KIND_COUNTER) => cat.next_id = serde_json::from_slice(&v).map_err(corrupt)?,
                Some(&KIND_SCHEMA) => {
                    let s: SchemaDef = serde_json::from_slice(&v).map_err(corrupt)?;
                    cat.schemas.insert(s.name.clone(), Arc::new(s));
                }
                Some(&KIND_TABLE) => {
                    let def: TableDef = serde_json::from_slice(&v).map_err(corrupt)?;
                    let seq = Arc::new(AtomicI64::new(next_row_id(snap, def.id)?));
                    let t = Table::new(def, seq)?;
                    cat.tables
                        .insert((t.def.schema.clone(), t.def.name.clone()), Arc::new(t));
                }
                Some(&KIND_SOURCE) => {
                    let def: SourceDef = serde_json::from_slice(&v).map_err(corrupt)?;
                    cat.sources
                        .insert((def.schema.clone(), def.name.clone()), Arc::new(def));
                }
                Some(&KIND_VIEW) => {
                    let def: ViewDef = serde_json::from_slice(&v).map_err(corrupt)?;
                    let view = View::new(def)?;
                    cat.views
                        .insert((view.def.schema.clone(), view.def.name.clone()), Arc::new(view));
                }
                _ => return Err(Error::internal("unknown catalog entry kind")),
            }
        }
        if !saw_anything {
            cat.next_id = 1;
            cat.schemas.insert(
                DEFAULT_SCHEMA.into(),
                Arc::new(SchemaDef {
                    id: 0,
                    name: DEFAULT_SCHEMA.into(),
                }),
            );
        }
        Ok(cat)
    }

    /// The writes that persist the initial catalog of a new store.
    pub fn bootstrap_writes(&self, batch: &mut WriteBatch) {
        for s in self.schemas.values() {
            put_json(batch, KIND_SCHEMA, s.id, s.as_ref());
        }
        put_json(batch, KIND_COUNTER, 0, &self.next_id);
    }

    pub fn schema(&self, name: &str) -> Option<&Arc<SchemaDef>> {
        self.schemas.get(name)
    }

    pub fn schemas(&self) -> impl Iterator<Item = &Arc<SchemaDef>> {
        self.schemas.values()
    }

    pub fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.tables.values()
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&Arc<Table>> {
        self.tables.get(&(schema.to_string(), name.to_string()))
    }

    pub fn table_by_id(&self, id: u32) -> Option<&Arc<Table>> {
        self.tables.values().find(|t| t.def.id == id)
    }

    pub fn views(&self) -> impl Iterator<Item = &Arc<View>> {
        self.views.values()
    }

    pub fn view(&self, schema: &str, name: &str) -> Option<&Arc<View>> {
        self.views.get(&(schema.to_string(), name.to_string()))
    }

    pub fn view_by_id(&self, id: u32) -> Option<&Arc<View>> {
        self.views.values().find(|v| v.def.id == id)
    }

    /// Views in creation order (every view after the relations it reads).
    pub fn views_in_order(&self) -> Vec<Arc<View>> {
        let mut v: Vec<Arc<View>> = self.views.values().cloned().collect();
        v.sort_by_key(|v| v.def.id);
        v
    }

    /// The names of the views reading relation `id` directly.
    pub fn dependents(&self, id: u32) -> Vec<Arc<View>> {
        self.views_in_order()
            .into_iter()
            .filter(|v| v.def.depends_on.contains(&id))
            .collect()
    }

    /// Resolves a name to a table or view along `search_path`.
    pub fn resolve_relation(&self, parts: &[String], search_path: &[String]) -> Option<Relation> {
        let lookup = |s: &str, n: &str| {
            self.table(s, n)
                .map(|t| Relation::Table(t.clone()))
                .or_else(|| self.view(s, n).map(|v| Relation::View(v.clone())))
        };
        match parts {
            [name] => search_path.iter().find_map(|s| lookup(s, name)),
            [schema, name] | [_, schema, name] => lookup(schema, name),
            _ => None,
        }
    }

    /// Resolves a materialized view by name.
    pub fn resolve_view(&self, parts: &[String], search_path: &[String]) -> Result<Arc<View>> {
        match self.resolve_relation(parts, search_path) {
            Some(Relation::View(v)) => Ok(v),
            Some(Relation::Table(_)) => Err(Error::user(
                SqlState::WRONG_OBJECT_TYPE,
                format!("\"{}\" is not a materialized view", parts.join(".")),
            )),
            None => Err(Error::user(
                SqlState::UNDEFINED_TABLE,
                format!("materialized view \"{}\" does not exist", parts.join(".")),
            )),
        }
    }

    /// A new table or view may be created as `schema.name`.
    fn check_new_relation(&self, schema: &str, name: &str) -> Result<()> {
        if !self.schemas.contains_key(schema) {
            return Err(Error::user(
                SqlState::INVALID_SCHEMA_NAME,
                format!("schema \"{schema}\" does not exist"),
            ));
        }
        if self.name_taken(schema, name) {
            return Err(Error::user(
                SqlState::DUPLICATE_TABLE,
                format!("relation \"{name}\" already exists"),
            ));
        }
        Ok(())
    }

    fn name_taken(&self, schema: &str, name: &str) -> bool {
        self.table(schema, name).is_some() || self.view(schema, name).is_some()
    }

    pub fn sources(&self) -> impl Iterator<Item = &Arc<SourceDef>> {
        self.sources.values()
    }

    pub fn source_by_id(&self, id: u32) -> Option<&Arc<SourceDef>> {
        self.sources.values().find(|s| s.id == id)
    }

    /// The tables a source writes.
    pub fn tables_of_source(&self, id: u32) -> Vec<Arc<Table>> {
        self.tables
            .values()
            .filter(|t| t.def.source.as_ref().is_some_and(|s| s.source == id))
            .cloned()
            .collect()
    }

    /// The tables of source `id` it must feed: every stored one, and the streams that
    /// materialized views read (a stream no view reads has nowhere for its rows to go).
    pub fn fed_tables_of_source(&self, id: u32) -> Vec<Arc<Table>> {
        self.tables_of_source(id)
            .into_iter()
            .filter(|t| t.def.layout != Layout::Stream || !self.dependents(t.def.id).is_empty())
            .collect()
    }

    /// Finds a source by (optionally schema-qualified) name along the search path.
    pub fn resolve_source(&self, parts: &[String], search_path: &[String]) -> Result<Arc<SourceDef>> {
        let found = match parts {
            [schema, name] => self.sources.get(&(schema.clone(), name.clone())).cloned(),
            [name] => search_path
                .iter()
                .find_map(|s| self.sources.get(&(s.clone(), name.clone())).cloned()),
            _ => None,
        };
        found.ok_or_else(|| {
            Error::user(
                SqlState::UNDEFINED_OBJECT,
                format!("source \"{}\" does not exist", parts.join(".")),
            )
        })
    }

    /// Adds a source; `def.id` is assigned here.
    pub fn create_source(&mut self, mut def: SourceDef, batch: &mut WriteBatch) -> Result<Arc<SourceDef>> {
        if !self.schemas.contains_key(&def.schema) {
            return Err(Error::user(
                SqlState::INVALID_SCHEMA_NAME,
                format!("schema \"{}\" does not exist", def.schema),
            ));
        }
        if self.sources.contains_key(&(def.schema.clone(), def.name.clone())) {
            return Err(Error::user(
                SqlState::DUPLICATE_OBJECT,
                format!("source \"{}\" already exists", def.name),
            ));
        }
        def.id = self.allocate_id(batch);
        put_json(batch, KIND_SOURCE, def.id, &def);
        let s = Arc::new(def);
        self.sources.insert((s.schema.clone(), s.name.clone()), s.clone());
        self.version += 1;
        Ok(s)
    }

    /// Removes a source and its stored progress (the caller drops its tables first).
    pub fn drop_source(&mut self, def: &SourceDef, batch: &mut WriteBatch) {
        let (from, to) = keys::source_state_range(def.id);
        batch.delete_range(from, to);
        batch.delete(keys::catalog_key(KIND_SOURCE, def.id));
        self.sources.remove(&(def.schema.clone(), def.name.clone()));
        self.version += 1;
    }

    /// Adds a materialized view; `def.id` is assigned here.
    pub fn create_view(&mut self, mut def: ViewDef, batch: &mut WriteBatch) -> Result<Arc<View>> {
        self.check_new_relation(&def.schema, &def.name)?;
        def.id = self.allocate_id(batch);
        put_json(batch, KIND_VIEW, def.id, &def);
        let v = Arc::new(View::new(def)?);
        self.views.insert((v.def.schema.clone(), v.def.name.clone()), v.clone());
        self.version += 1;
        Ok(v)
    }

    /// Removes a view, its rows and its operator state.
    pub fn drop_view(&mut self, view: &View, batch: &mut WriteBatch) {
        let (from, to) = keys::view_range(view.def.id);
        batch.delete_range(from, to);
        let (from, to) = keys::operator_range(view.def.id);
        batch.delete_range(from, to);
        batch.delete(keys::catalog_key(KIND_VIEW, view.def.id));
        self.views.remove(&(view.def.schema.clone(), view.def.name.clone()));
        self.version += 1;
    }

    /// Every view depending on `id`, directly or not, latest first (the order to drop them).
    pub fn transitive_dependents(&self, id: u32) -> Vec<Arc<View>> {
        let mut out: Vec<Arc<View>> = Vec::new();
        let mut frontier = vec![id];
        while let Some(r) = frontier.pop() {
            for v in self.dependents(r) {
                if !out.iter().any(|o| o.def.id == v.def.id) {
                    frontier.push(v.def.id);
                    out.push(v);
                }
            }
        }
        out.sort_by_key(|v| std::cmp::Reverse(v.def.id));
        out
    }

    /// Resolves a possibly qualified name (`[schema.]name`) along `search_path`.
    pub fn resolve_table(&self, parts: &[String], search_path: &[String]) -> Result<Arc<Table>> {
        let found = match parts {
            [name] => search_path.iter().find_map(|s| self.table(s, name)),
            [schema, name] => self.table(schema, name),
            [_db, schema, name] => self.table(schema, name),
            _ => None,
        };
        found.cloned().ok_or_else(|| {
            Error::user(
                SqlState::UNDEFINED_TABLE,
                format!("relation \"{}\" does not exist", parts.join(".")),
            )
        })
    }

    fn allocate_id(&mut self, batch: &mut WriteBatch) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        put_json(batch, KIND_COUNTER, 0, &self.next_id);
        id
    }

    pub fn create_schema(&mut self, name: &str, batch: &mut WriteBatch) -> Result<()> {
        if self.schemas.contains_key(name) || SYSTEM_SCHEMAS.contains(&name) {
            return Err(Error::user(
                SqlState::DUPLICATE_SCHEMA,
                format!("schema \"{name}\" already exists"),
            ));
        }
        let id = self.allocate_id(batch);
        let def = SchemaDef { id, name: name.into() };
        put_json(batch, KIND_SCHEMA, id, &def);
        self.schemas.insert(name.into(), Arc::new(def));
        self.version += 1;
        Ok(())
    }

    pub fn drop_schema(&mut self, name: &str, cascade: bool, batch: &mut WriteBatch) -> Result<()> {
        let def = self.schemas.get(name).cloned().ok_or_else(|| {
            Error::user(
                SqlState::INVALID_SCHEMA_NAME,
                format!("schema \"{name}\" does not exist"),
            )
        })?;
        let members: Vec<_> = self.tables.values().filter(|t| t.def.schema == name).cloned().collect();
        let views: Vec<_> = self.views.values().filter(|v| v.def.schema == name).cloned().collect();
        let sources: Vec<_> = self.sources.values().filter(|s| s.schema == name).cloned().collect();
        if let (Some(s), false) = (sources.first(), cascade) {
            return Err(Error::user_detail(
                SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                format!("cannot drop schema {name} because other objects depend on it"),
                format!("source {} depends on schema {name}", s.qualified_name()),
            ));
        }
        if (!members.is_empty() || !views.is_empty()) && !cascade {
            if members.is_empty() {
                return Err(Error::user_detail(
                    SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("cannot drop schema {name} because other objects depend on it"),
                    format!(
                        "materialized view {} depends on schema {name}",
                        views[0].qualified_name()
                    ),
                ));
            }
            return Err(Error::user_detail(
                SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
                format!("cannot drop schema {name} because other objects depend on it"),
                format!("table {} depends on schema {name}", members[0].qualified_name()),
            ));
        }
        for t in &members {
            for v in self.transitive_dependents(t.def.id) {
                self.drop_view(&v, batch);
            }
        }
        for v in self
            .views
            .values()
            .filter(|v| v.def.schema == name)
            .cloned()
            .collect::<Vec<_>>()
        {
            for d in self.transitive_dependents(v.def.id) {
                self.drop_view(&d, batch);
            }
            self.drop_view(&v, batch);
        }
        for t in members {
            self.drop_table(&t, batch);
        }
        for s in sources {
            for t in self.tables_of_source(s.id) {
                for v in self.transitive_dependents(t.def.id) {
                    self.drop_view(&v, batch);
                }
                self.drop_table(&t, batch);
            }
            self.drop_source(&s, batch);
        }
        batch.delete(keys::catalog_key(KIND_SCHEMA, def.id));
        self.schemas.remove(name);
        self.version += 1;
        Ok(())
    }

    /// Adds a table; `def.id` is assigned here.
    pub fn create_table(&mut self, mut def: TableDef, batch: &mut WriteBatch) -> Result<Arc<Table>> {
        self.check_new_relation(&def.schema, &def.name)?;
        def.id = self.allocate_id(batch);
        put_json(batch, KIND_TABLE, def.id, &def);
        let t = Arc::new(Table::new(def, Arc::new(AtomicI64::new(1)))?);
        self.tables
            .insert((t.def.schema.clone(), t.def.name.clone()), t.clone());
        self.version += 1;
        Ok(t)
    }

    /// How the rows of table or view `id` are stored (None: no such relation).
    pub fn layout_of(&self, id: u32) -> Option<Layout> {
        match (self.table_by_id(id), self.view_by_id(id)) {
            (Some(t), _) => Some(t.def.layout),
            (_, Some(v)) => Some(v.def.layout),
            _ => None,
        }
    }

    /// Removes a table and all of its rows (and, for a source's table, its capture progress).
    pub fn drop_table(&mut self, table: &Table, batch: &mut WriteBatch) {
        let (from, to) = keys::table_range(table.def.id);
        batch.delete_range(from, to);
        if let Some(s) = &table.def.source {
            batch.delete(keys::source_table_key(s.source, table.def.id));
        }
        batch.delete(keys::catalog_key(KIND_TABLE, table.def.id));
        self.tables.remove(&(table.def.schema.clone(), table.def.name.clone()));
        self.version += 1;
    }

    /// Replaces a table's definition (ALTER). The caller rewrites stored rows when their
    /// encoding changes.
    pub fn replace_table(&mut self, old: &Table, mut def: TableDef, batch: &mut WriteBatch) -> Result<Arc<Table>> {
        def.version = old.def.version + 1;
        if (def.schema.clone(), def.name.clone()) != (old.def.schema.clone(), old.def.name.clone())
            && self.tables.contains_key(&(def.schema.clone(), def.name.clone()))
        {
            return Err(Error::user(
                SqlState::DUPLICATE_TABLE,
                format!("relation \"{}\" already exists", def.name),
            ));
        }
        put_json(batch, KIND_TABLE, def.id, &def);
        if def.name != old.def.name && self.view(&def.schema, &def.name).is_some() {
            return Err(Error::user(
                SqlState::DUPLICATE_TABLE,
                format!("relation \"{}\" already exists", def.name),
            ));
        }
        self.tables.remove(&(old.def.schema.clone(), old.def.name.clone()));
        let t = Arc::new(Table::new(def, old.row_id_seq.clone())?);
        self.tables
            .insert((t.def.schema.clone(), t.def.name.clone()), t.clone());
        self.version += 1;
        Ok(t)
    }
}

fn put_json<T: Serialize>(batch: &mut WriteBatch, kind: u8, id: u32, value: &T) {
    let json = serde_json::to_vec(value).expect("catalog objects serialize");
    batch.put(keys::catalog_key(kind, id), json);
}

/// One past the largest row id stored for `table` (1 for an empty table).
fn next_row_id(snap: &dyn StateSnapshot, table: u32) -> Result<i64> {
    let (from, to) = keys::table_range(table);
    let Some((k, _)) = snap.last(&from, &to)? else {
        return Ok(1);
    };
    // Row-id keys are arrow-row encoded Int64: a validity byte then 8 bytes, sign bit flipped.
    let body = &k[from.len()..];
    if body.len() != 9 {
        return Ok(1);
    }
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&body[1..]);
    let v = (u64::from_be_bytes(raw) ^ (1 << 63)) as i64;
    Ok(v.max(0) + 1)
}

impl Table {
    /// Allocates `n` consecutive hidden row ids.
    pub fn allocate_row_ids(&self, n: usize) -> i64 {
        self.row_id_seq.fetch_add(n as i64, Ordering::SeqCst)
    }
}
