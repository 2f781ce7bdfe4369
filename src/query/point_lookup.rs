//! The point-lookup fast path: `SELECT cols FROM t WHERE pk = literal [AND ...]`, covering the
//! whole primary key, reads one key from the view without planning through DataFusion.
//!
//! Point lookups are the most frequent query of serving workloads; planning them costs far more
//! than the lookup itself. A prepared statement of this shape (`WHERE pk = $1`) is matched once,
//! at Parse, and each Execute then only binds the key: no AST copy, rewrite or table resolution. Anything that does not match the narrow shape below (joins, aliases
//! in projections, expressions, ORDER BY, ...) goes the general way, so results are identical.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::Schema;
use sqlparser::ast::{BinaryOperator, Expr, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor, Value};

use super::context::QueryEnv;
use super::ReadView;
use crate::catalog::{SqlType, Table};
use crate::error::Result;
use crate::sql::params::BoundParam;
use crate::state::keys;

/// A matched lookup: the table, the projected column indexes, the key values.
#[derive(Debug)]
pub struct PointLookup {
    table: Arc<Table>,
    columns: Vec<usize>,
    key: Vec<KeyValue>,
    /// The catalog version and search path the table was resolved with: a prepared lookup run
    /// after either changed goes the general way.
    catalog_version: u64,
    search_path: Vec<String>,
}

/// One primary-key value of a lookup.
#[derive(Debug)]
enum KeyValue {
    /// A literal, as text (converted to the column's type when run).
    Literal(String),
    /// Parameter `$n` of a prepared statement (0-based index).
    Param(usize),
}

fn key_value(e: &Expr) -> Option<KeyValue> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(KeyValue::Literal(n.clone())),
            Value::SingleQuotedString(s) => Some(KeyValue::Literal(s.clone())),
            Value::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                Some(KeyValue::Param(n.checked_sub(1)?))
            }
            _ => None,
        },
        Expr::Cast { expr, .. } => match key_value(expr)? {
            // A cast of a parameter may change its value (`$1::int` of '1.5'): general path.
            KeyValue::Param(_) => None,
            literal => Some(literal),
        },
        Expr::Nested(inner) => key_value(inner),
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => match key_value(expr)? {
            KeyValue::Literal(t) => Some(KeyValue::Literal(format!("-{t}"))),
            KeyValue::Param(_) => None,
        },
        _ => None,
    }
}

fn column_of(e: &Expr, qualifier: &str) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(crate::sql::ident_name(i)),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 && crate::sql::ident_name(&parts[0]) == qualifier => {
            Some(crate::sql::ident_name(&parts[1]))
        }
        _ => None,
    }
}

fn equalities(e: &Expr, qualifier: &str, out: &mut Vec<(String, KeyValue)>) -> bool {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => equalities(left, qualifier, out) && equalities(right, qualifier, out),
        Expr::Nested(inner) => equalities(inner, qualifier, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => match (
            column_of(left, qualifier),
            key_value(right),
            column_of(right, qualifier),
            key_value(left),
        ) {
            (Some(c), Some(v), _, _) | (_, _, Some(c), Some(v)) => {
                out.push((c, v));
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// The row key a WHERE clause pins down: `pk = literal [AND ...]` covering exactly the primary
/// key of `table` (columns bare or qualified by `qualifier`), literals only. None for any other
/// shape, which the caller then runs the general way.
pub fn key_of_filter(table: &Table, qualifier: &str, selection: &Expr) -> Option<Vec<u8>> {
    if table.has_row_id() {
        return None;
    }
    let mut eqs = Vec::new();
    if !equalities(selection, qualifier, &mut eqs) || eqs.len() != table.def.primary_key.len() {
        return None;
    }
    let mut key_cols: Vec<ArrayRef> = Vec::with_capacity(eqs.len());
    for k in &table.def.primary_key {
        let name = &table.def.columns[*k].name;
        let mut matching = eqs.iter().filter(|(c, _)| c == name);
        let (_, value) = matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        let KeyValue::Literal(text) = value else {
            return None;
        };
        let raw: ArrayRef = Arc::new(StringArray::from(vec![text.as_str()]));
        key_cols.push(crate::sql::coerce::coerce(&raw, &table.def.columns[*k].ty).ok()?);
    }
    let encoded = table.key_codec.encode_one(&key_cols).ok()?;
    Some(keys::row_key(table.def.id, encoded.row().as_ref()))
}

/// Matches `stmt` against the fast-path shape.
pub fn match_lookup(env: &QueryEnv, stmt: &Statement) -> Option<PointLookup> {
    let Statement::Query(q) = stmt else { return None };
    if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() || !q.locks.is_empty()
    {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if s.distinct.is_some()
        || s.from.len() != 1
        || !s.from[0].joins.is_empty()
        || s.having.is_some()
        || !s.named_window.is_empty()
        || s.qualify.is_some()
        || s.top.is_some()
        || s.into.is_some()
        || !matches!(&s.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
    {
        return None;
    }
    let TableFactor::Table {
        name,
        alias,
        args: None,
        ..
    } = &s.from[0].relation
    else {
        return None;
    };
    if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return None;
    }
    let parts = crate::sql::object_name_parts(name);
    if parts.len() >= 2 && crate::catalog::SYSTEM_SCHEMAS.contains(&parts[parts.len() - 2].as_str()) {
        return None;
    }
    let table = env
        .view
        .committed
        .catalog
        .resolve_table(&parts, &env.search_path)
        .ok()?;
    if table.has_row_id() {
        return None;
    }
    let qualifier = match alias {
        Some(a) => crate::sql::ident_name(&a.name),
        None => parts.last()?.clone(),
    };
    let mut columns = Vec::new();
    for item in &s.projection {
        match item {
            SelectItem::Wildcard(opts)
                if opts.opt_exclude.is_none()
                    && opts.opt_except.is_none()
                    && opts.opt_replace.is_none()
                    && opts.opt_rename.is_none()
                    && opts.opt_ilike.is_none() =>
            {
                columns.extend((0..table.def.columns.len()).filter(|i| !table.def.columns[*i].hidden))
            }
            SelectItem::UnnamedExpr(e) => {
                let c = column_of(e, &qualifier)?;
                columns.push(table.column_index(&c).filter(|i| !table.def.columns[*i].hidden)?);
            }
            _ => return None,
        }
    }
    let mut eqs = Vec::new();
    if !equalities(s.selection.as_ref()?, &qualifier, &mut eqs) {
        return None;
    }
    if eqs.len() != table.def.primary_key.len() {
        return None;
    }
    let mut key = Vec::with_capacity(table.def.primary_key.len());
    for k in &table.def.primary_key {
        let name = &table.def.columns[*k].name;
        let mut matching = eqs.iter().filter(|(c, _)| c == name);
        matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        let at = eqs.iter().position(|(c, _)| c == name)?;
        key.push(eqs.swap_remove(at).1);
    }
    Some(PointLookup {
        table,
        columns,
        key,
        catalog_version: env.view.committed.catalog.version,
        search_path: env.search_path.clone(),
    })
}

impl PointLookup {
    /// Whether the lookup can run against `view` with `search_path` (matched against the
    /// same catalog version and search path).
    pub fn still_valid(&self, view: &ReadView, search_path: &[String]) -> bool {
        view.committed.catalog.version == self.catalog_version && self.search_path == search_path
    }

    /// Runs the lookup with the parameters of a prepared statement (none for a plain query).
    /// `None` if the general path must run instead: a key value does not convert to its
    /// column's type (the general path then reports the error exactly as it would) or is NULL.
    pub fn run(&self, view: &ReadView, params: &[BoundParam]) -> Result<Option<RecordBatch>> {
        let mut key_cols: Vec<ArrayRef> = Vec::with_capacity(self.key.len());
        for (k, value) in self.table.def.primary_key.iter().zip(&self.key) {
            let text = match value {
                KeyValue::Literal(t) => t.as_str(),
                KeyValue::Param(i) => match params.get(*i) {
                    Some(BoundParam {
                        text: Some(t),
                        ty: None | Some(SqlType::Text | SqlType::Varchar(_)),
                    }) => t.as_str(),
                    Some(BoundParam {
                        text: Some(t),
                        ty: Some(ty),
                    }) if *ty == self.table.def.columns[*k].ty => t.as_str(),
                    _ => return Ok(None),
                },
            };
            let raw: ArrayRef = Arc::new(StringArray::from(vec![text]));
            match crate::sql::coerce::coerce(&raw, &self.table.def.columns[*k].ty) {
                Ok(a) => key_cols.push(a),
                Err(_) => return Ok(None),
            }
        }
        let key = keys::row_key(
            self.table.def.id,
            self.table.key_codec.encode_one(&key_cols)?.row().as_ref(),
        );
        let value = match view.overlay.rows.get(&key) {
            Some(w) => w.value().map(|v| v.to_vec()),
            None => view.committed.snapshot.get(&key)?,
        };
        let fields: Vec<_> = self
            .columns
            .iter()
            .map(|i| self.table.full_schema.field(*i).clone())
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let columns: Vec<ArrayRef> = match value {
            Some(v) => {
                let all = self.table.row_codec.decode([v.as_slice()])?;
                self.columns.iter().map(|i| all[*i].clone()).collect()
            }
            None => schema
                .fields()
                .iter()
                .map(|f| datafusion::arrow::array::new_empty_array(f.data_type()))
                .collect(),
        };
        Ok(Some(RecordBatch::try_new(schema, columns)?))
    }
}
