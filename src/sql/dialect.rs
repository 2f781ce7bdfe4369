//! [`FreshetDialect`]: PostgreSQL's SQL plus `FOR SYSTEM_TIME AS OF` after a table name (the
//! process-time temporal join of RisingWave and Flink: `JOIN t FOR SYSTEM_TIME AS OF
//! PROCTIME() AS s ON ..`, see [`super::temporal`]).
//!
//! sqlparser parses a table version only for dialects that declare table versioning, which
//! its PostgreSQL dialect does not. This dialect is PostgreSQL's in every other respect: each
//! method PostgreSQL's dialect overrides is delegated to it, and it reports PostgreSQL's type
//! id, so that the parser's `dialect_of!(.. is PostgreSqlDialect)` branches are taken too.

use std::any::TypeId;

use sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};

/// PostgreSQL with table versions (`FOR SYSTEM_TIME AS OF ..`).
#[derive(Debug, Default)]
pub struct FreshetDialect(PostgreSqlDialect);

impl Dialect for FreshetDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<PostgreSqlDialect>()
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.0.identifier_quote_style(identifier)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.0.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.0.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.0.is_identifier_part(ch)
    }

    fn supports_unicode_string_literal(&self) -> bool {
        self.0.supports_unicode_string_literal()
    }

    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        self.0.is_reserved_for_identifier(kw)
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.0.is_custom_operator_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.0.get_next_precedence(parser)
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        self.0.supports_filter_during_aggregation()
    }

    fn supports_group_by_expr(&self) -> bool {
        self.0.supports_group_by_expr()
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        self.0.prec_value(prec)
    }

    fn allow_extract_custom(&self) -> bool {
        self.0.allow_extract_custom()
    }

    fn allow_extract_single_quotes(&self) -> bool {
        self.0.allow_extract_single_quotes()
    }

    fn supports_create_index_with_clause(&self) -> bool {
        self.0.supports_create_index_with_clause()
    }

    fn supports_explain_with_utility_options(&self) -> bool {
        self.0.supports_explain_with_utility_options()
    }

    fn supports_listen_notify(&self) -> bool {
        self.0.supports_listen_notify()
    }

    fn supports_factorial_operator(&self) -> bool {
        self.0.supports_factorial_operator()
    }

    fn supports_bitwise_shift_operators(&self) -> bool {
        self.0.supports_bitwise_shift_operators()
    }

    fn supports_comment_on(&self) -> bool {
        self.0.supports_comment_on()
    }

    fn supports_load_extension(&self) -> bool {
        self.0.supports_load_extension()
    }

    fn supports_named_fn_args_with_colon_operator(&self) -> bool {
        self.0.supports_named_fn_args_with_colon_operator()
    }

    fn supports_named_fn_args_with_expr_name(&self) -> bool {
        self.0.supports_named_fn_args_with_expr_name()
    }

    fn supports_empty_projections(&self) -> bool {
        self.0.supports_empty_projections()
    }

    fn supports_nested_comments(&self) -> bool {
        self.0.supports_nested_comments()
    }

    fn supports_string_escape_constant(&self) -> bool {
        self.0.supports_string_escape_constant()
    }

    fn supports_numeric_literal_underscores(&self) -> bool {
        self.0.supports_numeric_literal_underscores()
    }

    fn supports_array_typedef_with_brackets(&self) -> bool {
        self.0.supports_array_typedef_with_brackets()
    }

    fn supports_geometric_types(&self) -> bool {
        self.0.supports_geometric_types()
    }

    fn supports_set_names(&self) -> bool {
        self.0.supports_set_names()
    }

    fn supports_alter_column_type_using(&self) -> bool {
        self.0.supports_alter_column_type_using()
    }

    fn supports_notnull_operator(&self) -> bool {
        self.0.supports_notnull_operator()
    }

    fn supports_interval_options(&self) -> bool {
        self.0.supports_interval_options()
    }

    fn supports_insert_table_alias(&self) -> bool {
        self.0.supports_insert_table_alias()
    }

    fn supports_create_table_like_parenthesized(&self) -> bool {
        self.0.supports_create_table_like_parenthesized()
    }

    fn supports_select_wildcard_with_alias(&self) -> bool {
        self.0.supports_select_wildcard_with_alias()
    }

    fn supports_comma_separated_trim(&self) -> bool {
        self.0.supports_comma_separated_trim()
    }

    fn supports_xml_expressions(&self) -> bool {
        self.0.supports_xml_expressions()
    }

    fn supports_comment_optimizer_hint(&self) -> bool {
        self.0.supports_comment_optimizer_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dialect: &dyn Dialect, sql: &str) -> String {
        match Parser::new(dialect)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements())
        {
            Ok(stmts) => format!("{stmts:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Statements that exercise what PostgreSQL's dialect overrides parse to the same trees
    /// (or the same errors) in both dialects.
    #[test]
    fn parses_postgresql_like_postgresql() {
        let corpus = [
            "SELECT \"Col\", a$b, _x FROM t WHERE a->>'k' = 'v' AND b @> '{}' OR c ~* 'x'",
            "SELECT 2 ^ 3 * 4, 5 ! , 1 << 2, x::int, x IS NOT NULL, y NOTNULL FROM t",
            "SELECT count(*) FILTER (WHERE a > 1) FROM t GROUP BY a + 1",
            "SELECT extract('hour' FROM ts), extract(epoch FROM ts), U&'d\\0061t', E'a\\nb'",
            "SELECT interval '1 day' hour, trim(a, b), f(a => 1), g(a := 2), 1_000 FROM t",
            "SELECT /*+ hint */ * FROM t /* outer /* nested */ */ AS x",
            "CREATE INDEX i ON t (a) WITH (fillfactor = 70)",
            "EXPLAIN (ANALYZE, VERBOSE) SELECT 1",
            "LISTEN ch; NOTIFY ch, 'x'; COMMENT ON TABLE t IS 'c'; SET NAMES 'utf8'",
            "ALTER TABLE t ALTER COLUMN a TYPE int USING a::int",
            "INSERT INTO t AS x (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = x.a + 1",
            "CREATE TABLE u (LIKE t); SELECT int[] '{1}', point '(1,2)', t.* AS r FROM t",
            "SELECT a FROM t interval",
            "SELECT 1 +",
        ];
        for sql in corpus {
            assert_eq!(
                parse(&FreshetDialect::default(), sql),
                parse(&PostgreSqlDialect {}, sql),
                "{sql}"
            );
        }
    }

    #[test]
    fn parses_a_system_time_version_after_a_table_name() {
        let sql = "SELECT * FROM b JOIN s FOR SYSTEM_TIME AS OF PROCTIME() AS x ON b.k = x.k";
        let shown = parse(&FreshetDialect::default(), sql);
        assert!(shown.contains("ForSystemTimeAsOf"), "{shown}");
        assert!(parse(&PostgreSqlDialect {}, sql).starts_with("error"));
    }
}
