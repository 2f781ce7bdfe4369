//! SQL text to statements: parsing (sqlparser, PostgreSQL dialect), compatibility rewrites, and
//! parameter binding. Execution lives in `session`, one module per statement family here.

pub mod coerce;
pub mod copy;
pub mod datetime_format;
pub mod ddl;
pub mod describe;
pub mod dialect;
pub mod dml;
pub mod params;
pub mod rewrite;
pub mod show;
pub mod source;
pub mod syntax;
pub mod temporal;
pub mod view;
pub mod windows;

use dialect::FreshetDialect;
use sqlparser::ast::Statement;
use sqlparser::parser::Parser;

use crate::error::Result;

/// Parses PostgreSQL statements (empty statements dropped). Client input goes through
/// [`syntax::parse`], which also knows Freshet's own statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let stmts = Parser::new(&FreshetDialect::default())
        .try_with_sql(sql)?
        .parse_statements()?;
    Ok(stmts)
}

/// Lower-cased identifier value as PostgreSQL folds unquoted names.
pub fn ident_name(ident: &sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The parts of an object name, folded.
pub fn object_name_parts(name: &sqlparser::ast::ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) => ident_name(i),
            None => p.to_string(),
        })
        .collect()
}
