//! `FOR SYSTEM_TIME AS OF PROCTIME()`: the process-time temporal join (RisingWave's and Flink's
//! lookup join against a table's current version).
//!
//! `stream JOIN t FOR SYSTEM_TIME AS OF PROCTIME() AS s ON stream.k = s.pk` joins each row of
//! `stream`, when it arrives, with the row of `t` that holds its key at that moment; later
//! changes of `t` do not revise rows already joined. In a materialized view this keeps no state
//! for the stream (each row is looked up once, by `t`'s primary key) and the view only gains
//! rows (`crate::dataflow::ops::temporal_join`). In a plain query it reads `t` as it is now.
//!
//! DataFusion's planner ignores table versions, so the clause is rewritten before planning
//! into a call of the table function [`FUNCTION`] (`crate::query::temporal`), which resolves
//! the table and marks its scan as a temporal one for the view planner. A table without an
//! alias keeps its own name as the alias, so `t.col` still resolves.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, TableAlias, TableFactor,
    TableFunctionArgs, TableVersion, Value, VisitMut, VisitorMut,
};

/// The table function a versioned table reference becomes. Its arguments are string literals:
/// [`PROCTIME`] (or, for any other version clause, the clause's text, which it refuses), then
/// the table name's parts, folded.
pub const FUNCTION: &str = "freshet_temporal_table";

/// The first argument of [`FUNCTION`] for `FOR SYSTEM_TIME AS OF PROCTIME()`.
pub const PROCTIME: &str = "proctime";

/// Rewrites every versioned table reference of `stmt` into a call of [`FUNCTION`].
pub fn rewrite(stmt: &mut sqlparser::ast::Statement) {
    let _ = stmt.visit(&mut Versions);
}

struct Versions;

impl VisitorMut for Versions {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            alias,
            args,
            version,
            ..
        } = t
        else {
            return ControlFlow::Continue(());
        };
        let Some(v) = version.take() else {
            return ControlFlow::Continue(());
        };
        let as_of = match &v {
            TableVersion::ForSystemTimeAsOf(e) if is_proctime(e) => PROCTIME.to_string(),
            other => other.to_string(),
        };
        let parts = super::object_name_parts(name);
        if alias.is_none() {
            let last = name.0.last().and_then(|p| p.as_ident()).cloned();
            *alias = last.map(|name| TableAlias {
                explicit: true,
                name,
                columns: Vec::new(),
                at: None,
            });
        }
        let text = |s: String| FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(Value::SingleQuotedString(s))));
        *args = Some(TableFunctionArgs {
            args: std::iter::once(as_of).chain(parts).map(text).collect(),
            settings: None,
        });
        *name = ObjectName::from(vec![Ident::new(FUNCTION)]);
        ControlFlow::Continue(())
    }
}

/// `PROCTIME()` (any case, no arguments).
fn is_proctime(e: &Expr) -> bool {
    match e {
        Expr::Function(f) => {
            f.name.0.len() == 1
                && f.name.0[0]
                    .as_ident()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case(PROCTIME))
                && match &f.args {
                    FunctionArguments::None => false,
                    FunctionArguments::List(l) => l.args.is_empty(),
                    FunctionArguments::Subquery(_) => false,
                }
        }
        Expr::Nested(inner) => is_proctime(inner),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    fn rewritten(sql: &str) -> String {
        let mut stmt = crate::sql::parse(sql).expect("parses").remove(0);
        super::rewrite(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn a_versioned_table_becomes_the_table_function() {
        assert_eq!(
            rewritten("SELECT * FROM b JOIN S.T FOR SYSTEM_TIME AS OF PROCTIME() AS x ON b.k = x.k"),
            "SELECT * FROM b JOIN freshet_temporal_table('proctime', 's', 't') AS x ON b.k = x.k"
        );
        // Without an alias the table's own name qualifies its columns.
        assert_eq!(
            rewritten("SELECT t.v FROM b JOIN t FOR SYSTEM_TIME AS OF proctime() ON b.k = t.k"),
            "SELECT t.v FROM b JOIN freshet_temporal_table('proctime', 't') AS t ON b.k = t.k"
        );
        // Any other version is passed on as text, for the table function to refuse.
        assert_eq!(
            rewritten("SELECT * FROM t FOR SYSTEM_TIME AS OF now() AS x"),
            "SELECT * FROM freshet_temporal_table('FOR SYSTEM_TIME AS OF now()', 't') AS x"
        );
        assert_eq!(rewritten("SELECT * FROM t AS x"), "SELECT * FROM t AS x");
    }
}
