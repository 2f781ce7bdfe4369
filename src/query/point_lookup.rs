//! The point-lookup fast path: `SELECT cols FROM t WHERE pk = literal [AND ...]`, covering the
//! whole primary key, reads one key from the view without planning through DataFusion.
//!
//! Point lookups are the most frequent query of serving workloads; planning them costs far more
//! than the lookup itself. Anything that does not match the narrow shape below (joins, aliases
//! in projections, expressions, ORDER BY, ...) goes the general way, so results are identical.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::Schema;
use sqlparser::ast::{BinaryOperator, Expr, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor, Value};

use super::context::QueryEnv;
use crate::catalog::Table;
use crate::error::Result;
use crate::state::keys;

/// A matched lookup: the table, the projected column indexes, the key values as text.
pub struct PointLookup {
    table: Arc<Table>,
    columns: Vec<usize>,
    key_text: Vec<String>,
}

fn literal_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.clone()),
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::Cast { expr, .. } => literal_text(expr),
        Expr::Nested(inner) => literal_text(inner),
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => literal_text(expr).map(|t| format!("-{t}")),
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

fn equalities(e: &Expr, qualifier: &str, out: &mut Vec<(String, String)>) -> bool {
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
            literal_text(right),
            column_of(right, qualifier),
            literal_text(left),
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
    let mut key_text = Vec::with_capacity(table.def.primary_key.len());
    for k in &table.def.primary_key {
        let name = &table.def.columns[*k].name;
        let mut matching = eqs.iter().filter(|(c, _)| c == name);
        let (_, v) = matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        key_text.push(v.clone());
    }
    if eqs.len() != key_text.len() {
        return None;
    }
    Some(PointLookup {
        table,
        columns,
        key_text,
    })
}

impl PointLookup {
    /// Runs the lookup. `None` if a key value does not convert to its column's type (the
    /// general path then reports the error exactly as it would).
    pub fn run(&self, env: &QueryEnv) -> Result<Option<RecordBatch>> {
        let mut key_cols: Vec<ArrayRef> = Vec::with_capacity(self.key_text.len());
        for (k, text) in self.table.def.primary_key.iter().zip(&self.key_text) {
            let raw: ArrayRef = Arc::new(StringArray::from(vec![text.as_str()]));
            match crate::sql::coerce::coerce(&raw, &self.table.def.columns[*k].ty) {
                Ok(a) => key_cols.push(a),
                Err(_) => return Ok(None),
            }
        }
        let key = keys::row_key(
            self.table.def.id,
            self.table.key_codec.encode_one(&key_cols)?.row().as_ref(),
        );
        let value = match env.view.overlay.rows.get(&key) {
            Some(w) => w.value().map(|v| v.to_vec()),
            None => env.view.committed.snapshot.get(&key)?,
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
