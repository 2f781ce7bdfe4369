//! Freshet's statements beyond PostgreSQL's, parsed with sqlparser's own parser (its tokens,
//! identifiers and literals), so they mix freely with PostgreSQL statements in one string:
//!
//! ```sql
//! CREATE SOURCE [IF NOT EXISTS] name WITH (connector = 'mysql-cdc', database.name = 'shop', ...)
//! DROP SOURCE [IF EXISTS] name [, ...] [CASCADE | RESTRICT]
//! SHOW SOURCES
//! CREATE TABLE [IF NOT EXISTS] t (column, ... | * [, column ...]) FROM source TABLE 'db.table'
//! ```
//! A column `name type AS PROCTIME()` (RisingWave's form) is read as `name type GENERATED
//! ALWAYS AS (PROCTIME()) STORED`.
//! Option keys may be dotted (`database.name`); values are literals (strings, numbers, booleans)
//! or bare words, kept as text: each connector checks its own options.

use std::collections::BTreeMap;

use super::dialect::FreshetDialect;
use sqlparser::ast::helpers::stmt_create_table::CreateTableBuilder;
use sqlparser::ast::{CreateTable, ObjectName, Statement};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::error::Result;

/// One parsed statement.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// A statement of PostgreSQL's dialect.
    Pg(Statement),
    CreateSource(CreateSource),
    DropSource(DropSource),
    ShowSources,
    CreateTableFrom(CreateTableFrom),
    CreateTableWith(CreateTableWith),
}

/// `CREATE SOURCE name [(cols | *, ..)] WITH (connector = '..', ..)`. With columns (or with
/// options naming one upstream table, such as `nexmark.table.type`) it is a stream: a relation
/// whose rows only reach the views over it (RisingWave's source).
#[derive(Clone, Debug)]
pub struct CreateSource {
    pub name: ObjectName,
    pub if_not_exists: bool,
    /// Lower-cased keys, values as text.
    pub options: BTreeMap<String, String>,
    /// The declared columns (as a CREATE TABLE; with `all_columns`, only those after `*`).
    pub columns: Option<CreateTable>,
    /// `(*)`: the columns are taken from the upstream table.
    pub all_columns: bool,
}

#[derive(Clone, Debug)]
pub struct DropSource {
    pub names: Vec<ObjectName>,
    pub if_exists: bool,
    pub cascade: bool,
}

/// `CREATE TABLE ... FROM source TABLE 'upstream'`: a table written only by a source.
#[derive(Clone, Debug)]
pub struct CreateTableFrom {
    /// The table as declared (with `all_columns`, only the columns listed after `*`).
    pub create: CreateTable,
    /// `(*)`: the columns are taken from the upstream table.
    pub all_columns: bool,
    pub source: ObjectName,
    /// The upstream table, as the source names it (`db.table`).
    pub external: String,
}

/// `CREATE TABLE t (cols | *) WITH (connector = '..', ..)`: a table with a source of its own.
#[derive(Clone, Debug)]
pub struct CreateTableWith {
    /// The table as declared (with `all_columns`, only the columns listed after `*`).
    pub create: CreateTable,
    pub all_columns: bool,
    /// Lower-cased keys, values as text; `connector` included.
    pub options: BTreeMap<String, String>,
}

impl Stmt {
    /// The PostgreSQL statement, if this is one.
    pub fn as_pg(&self) -> Option<&Statement> {
        match self {
            Stmt::Pg(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for Stmt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stmt::Pg(s) => write!(f, "{s}"),
            Stmt::CreateSource(c) => write!(f, "CREATE SOURCE {}", c.name),
            Stmt::DropSource(d) => write!(f, "DROP SOURCE {}", d.names[0]),
            Stmt::ShowSources => write!(f, "SHOW SOURCES"),
            Stmt::CreateTableFrom(c) => write!(f, "CREATE TABLE {} FROM {}", c.create.name, c.source),
            Stmt::CreateTableWith(c) => write!(f, "CREATE TABLE {} WITH (connector = ..)", c.create.name),
        }
    }
}

/// Parses a query string into statements (empty statements dropped).
pub fn parse(sql: &str) -> Result<Vec<Stmt>> {
    let dialect = FreshetDialect::default();
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(ParserError::from)?;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(proctime_shorthand(tokens));
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        out.push(parse_one(&mut parser)?);
        if !parser.consume_token(&Token::SemiColon) && parser.peek_token().token != Token::EOF {
            return Ok(parser.expected("end of statement", parser.peek_token())?);
        }
    }
    Ok(out)
}

/// RisingWave's column `name type AS PROCTIME()` becomes `name type GENERATED ALWAYS AS
/// (PROCTIME()) STORED`, which PostgreSQL's grammar has (`AS` followed by a call is no alias).
fn proctime_shorthand(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i].token, Token::Whitespace(_)))
        .collect();
    let at = |k: usize| significant.get(k).map(|i| &tokens[*i].token);
    let mut matched = std::collections::HashMap::new();
    for k in 0..significant.len() {
        if at(k).is_some_and(|t| is_word(t, Keyword::AS, "as"))
            && at(k + 1).is_some_and(|t| is_word(t, Keyword::NoKeyword, "proctime"))
            && at(k + 2) == Some(&Token::LParen)
            && at(k + 3) == Some(&Token::RParen)
        {
            matched.insert(significant[k], significant[k + 3]);
        }
    }
    if matched.is_empty() {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len() + 4 * matched.len());
    let mut i = 0;
    while i < tokens.len() {
        let Some(&end) = matched.get(&i) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let span = tokens[i].span;
        let replacement = [
            Token::make_keyword("GENERATED"),
            Token::make_keyword("ALWAYS"),
            Token::make_keyword("AS"),
            Token::LParen,
            Token::make_word("proctime", None),
            Token::LParen,
            Token::RParen,
            Token::RParen,
            Token::make_keyword("STORED"),
        ];
        for t in replacement {
            out.push(TokenWithSpan::new(Token::Whitespace(Whitespace::Space), span));
            out.push(TokenWithSpan::new(t, span));
        }
        i = end + 1;
    }
    out
}

fn is_word(t: &Token, keyword: Keyword, text: &str) -> bool {
    match t {
        Token::Word(w) => {
            w.quote_style.is_none()
                && ((keyword != Keyword::NoKeyword && w.keyword == keyword) || w.value.eq_ignore_ascii_case(text))
        }
        _ => false,
    }
}

fn parse_one(p: &mut Parser) -> Result<Stmt, ParserError> {
    let [t0, t1] = p.peek_tokens();
    if is_word(&t0, Keyword::CREATE, "create") && is_word(&t1, Keyword::SOURCE, "source") {
        p.next_token();
        p.next_token();
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = p.parse_object_name(false)?;
        let mut columns = None;
        let mut all_columns = false;
        if p.peek_token().token == Token::LParen {
            all_columns = p.peek_nth_token(1).token == Token::Mul;
            let builder = CreateTableBuilder::new(name.clone()).if_not_exists(if_not_exists);
            columns = Some(if all_columns {
                builder.columns(parse_star_columns(p)?).build()
            } else {
                let (columns, constraints) = p.parse_columns()?;
                builder.columns(columns).constraints(constraints).build()
            });
        }
        if !p.parse_keyword(Keyword::WITH) {
            return p.expected("WITH (options) after CREATE SOURCE name", p.peek_token());
        }
        let options = parse_options(p)?;
        return Ok(Stmt::CreateSource(CreateSource {
            name,
            if_not_exists,
            options,
            columns,
            all_columns,
        }));
    }
    if is_word(&t0, Keyword::DROP, "drop") && is_word(&t1, Keyword::SOURCE, "source") {
        p.next_token();
        p.next_token();
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = p.parse_comma_separated(|p| p.parse_object_name(false))?;
        let cascade = matches!(
            p.parse_one_of_keywords(&[Keyword::CASCADE, Keyword::RESTRICT]),
            Some(Keyword::CASCADE)
        );
        return Ok(Stmt::DropSource(DropSource {
            names,
            if_exists,
            cascade,
        }));
    }
    if is_word(&t0, Keyword::SHOW, "show") && is_word(&t1, Keyword::NoKeyword, "sources") {
        p.next_token();
        p.next_token();
        return Ok(Stmt::ShowSources);
    }
    if is_word(&t0, Keyword::CREATE, "create") && is_word(&t1, Keyword::TABLE, "table") && connector_ahead(p) {
        p.next_token();
        p.next_token();
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = p.parse_object_name(false)?;
        let all_columns = p.peek_token().token == Token::LParen && p.peek_nth_token(1).token == Token::Mul;
        let mut builder = CreateTableBuilder::new(name).if_not_exists(if_not_exists);
        if all_columns {
            builder = builder.columns(parse_star_columns(p)?);
        } else {
            let (columns, constraints) = p.parse_columns()?;
            builder = builder.columns(columns).constraints(constraints);
        }
        if !p.parse_keyword(Keyword::WITH) {
            return p.expected("WITH (connector = ..)", p.peek_token());
        }
        let options = parse_options(p)?;
        return Ok(Stmt::CreateTableWith(CreateTableWith {
            create: builder.build(),
            all_columns,
            options,
        }));
    }
    if is_word(&t0, Keyword::CREATE, "create") && is_word(&t1, Keyword::TABLE, "table") && star_columns_ahead(p) {
        p.next_token();
        p.next_token();
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = p.parse_object_name(false)?;
        let columns = parse_star_columns(p)?;
        if !p.parse_keyword(Keyword::FROM) {
            return p.expected("FROM source TABLE 'name' after (*)", p.peek_token());
        }
        let (source, external) = parse_from_source(p)?;
        return Ok(Stmt::CreateTableFrom(CreateTableFrom {
            create: CreateTableBuilder::new(name)
                .if_not_exists(if_not_exists)
                .columns(columns)
                .build(),
            all_columns: true,
            source,
            external,
        }));
    }
    let stmt = p.parse_statement()?;
    if let Statement::CreateTable(ct) = &stmt {
        if p.parse_keyword(Keyword::FROM) {
            let (source, external) = parse_from_source(p)?;
            return Ok(Stmt::CreateTableFrom(CreateTableFrom {
                create: ct.clone(),
                all_columns: false,
                source,
                external,
            }));
        }
    }
    Ok(Stmt::Pg(stmt))
}

/// `(*)` or `(*, column, ..)`: every upstream column, then the columns listed (generated ones,
/// such as `p_time TIMESTAMPTZ AS PROCTIME()`).
fn parse_star_columns(p: &mut Parser) -> Result<Vec<sqlparser::ast::ColumnDef>, ParserError> {
    p.expect_token(&Token::LParen)?;
    p.expect_token(&Token::Mul)?;
    let mut columns = Vec::new();
    while p.consume_token(&Token::Comma) {
        columns.push(p.parse_column_def()?);
    }
    p.expect_token(&Token::RParen)?;
    Ok(columns)
}

/// Whether the CREATE TABLE ahead has `WITH (connector = ..)` after its columns.
fn connector_ahead(p: &Parser) -> bool {
    let mut depth = 0usize;
    for i in 2..10_000 {
        match p.peek_nth_token(i).token {
            Token::EOF | Token::SemiColon if depth == 0 => return false,
            Token::EOF => return false,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if depth == 0 && w.keyword == Keyword::WITH => {
                return p.peek_nth_token(i + 1).token == Token::LParen
                    && matches!(&p.peek_nth_token(i + 2).token, Token::Word(w) if w.value.eq_ignore_ascii_case("connector"));
            }
            _ => {}
        }
    }
    false
}

/// Whether the CREATE TABLE ahead declares its columns as `(*)`.
fn star_columns_ahead(p: &Parser) -> bool {
    (2..12).any(|i| {
        p.peek_nth_token(i).token == Token::LParen
            && p.peek_nth_token(i + 1).token == Token::Mul
            && matches!(p.peek_nth_token(i + 2).token, Token::RParen | Token::Comma)
            && (2..i).all(|j| !matches!(p.peek_nth_token(j).token, Token::LParen | Token::EOF))
    })
}

/// `source TABLE 'upstream'` (after FROM).
fn parse_from_source(p: &mut Parser) -> Result<(ObjectName, String), ParserError> {
    let source = p.parse_object_name(false)?;
    if !p.parse_keyword(Keyword::TABLE) {
        return p.expected("TABLE 'upstream table' after the source name", p.peek_token());
    }
    let external = p.parse_literal_string()?;
    Ok((source, external))
}

/// `( key [. key ...] = value [, ...] )`.
pub fn parse_options(p: &mut Parser) -> Result<BTreeMap<String, String>, ParserError> {
    p.expect_token(&Token::LParen)?;
    let mut options = BTreeMap::new();
    if p.consume_token(&Token::RParen) {
        return Ok(options);
    }
    loop {
        let mut key = crate::sql::ident_name(&p.parse_identifier()?);
        while p.consume_token(&Token::Period) {
            key.push('.');
            key.push_str(&crate::sql::ident_name(&p.parse_identifier()?));
        }
        p.expect_token(&Token::Eq)?;
        let t = p.next_token();
        let value = match &t.token {
            Token::SingleQuotedString(s) => s.clone(),
            Token::Number(n, _) => n.clone(),
            Token::Minus => match p.next_token().token {
                Token::Number(n, _) => format!("-{n}"),
                _ => return p.expected("a number", t),
            },
            Token::Word(w) => w.value.clone(),
            _ => return p.expected("an option value", t),
        };
        if options.insert(key.clone(), value).is_some() {
            return Err(ParserError::ParserError(format!("option \"{key}\" given twice")));
        }
        if p.consume_token(&Token::RParen) {
            return Ok(options);
        }
        p.expect_token(&Token::Comma)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streams() {
        let stmts = parse(
            "CREATE SOURCE bid (*, p_time TIMESTAMPTZ AS PROCTIME()) WITH (connector = 'nexmark', nexmark.table.type = 'bid'); \
             CREATE SOURCE IF NOT EXISTS clicks (id BIGINT, url VARCHAR) WITH (connector = 'datagen'); \
             CREATE SOURCE person WITH (connector = 'nexmark', nexmark.table.type = 'person')",
        )
        .unwrap();
        let Stmt::CreateSource(bid) = &stmts[0] else { panic!() };
        assert!(bid.all_columns);
        assert_eq!(bid.columns.as_ref().unwrap().columns[0].name.value, "p_time");
        let Stmt::CreateSource(clicks) = &stmts[1] else {
            panic!()
        };
        let create = clicks.columns.as_ref().unwrap();
        assert!(!clicks.all_columns && create.if_not_exists && clicks.if_not_exists);
        assert_eq!(create.columns.len(), 2);
        assert_eq!(create.name.to_string(), "clicks");
        let Stmt::CreateSource(person) = &stmts[2] else {
            panic!()
        };
        assert!(person.columns.is_none());
        assert_eq!(person.options["nexmark.table.type"], "person");
    }

    #[test]
    fn parses_freshet_statements_among_postgres_ones() {
        let stmts = parse(
            "CREATE SOURCE shop WITH (connector = 'mysql-cdc', port = 3306, database.name = 'shop', ssl.mode = disabled); \
             CREATE TABLE orders (id INT PRIMARY KEY, amount BIGINT) FROM shop TABLE 'shop.orders'; \
             CREATE TABLE IF NOT EXISTS items (*) FROM shop TABLE 'shop.items'; \
             SELECT 1; SHOW SOURCES; DROP SOURCE IF EXISTS shop CASCADE",
        )
        .unwrap();
        assert_eq!(stmts.len(), 6);
        let Stmt::CreateSource(cs) = &stmts[0] else {
            panic!("{:?}", stmts[0])
        };
        assert_eq!(cs.name.to_string(), "shop");
        assert_eq!(cs.options["connector"], "mysql-cdc");
        assert_eq!(cs.options["port"], "3306");
        assert_eq!(cs.options["database.name"], "shop");
        assert_eq!(cs.options["ssl.mode"], "disabled");
        let Stmt::CreateTableFrom(t) = &stmts[1] else {
            panic!("{:?}", stmts[1])
        };
        assert!(!t.all_columns);
        assert_eq!(t.create.columns.len(), 2);
        assert_eq!(
            (t.source.to_string().as_str(), t.external.as_str()),
            ("shop", "shop.orders")
        );
        let Stmt::CreateTableFrom(t) = &stmts[2] else {
            panic!("{:?}", stmts[2])
        };
        assert!(t.all_columns && t.create.if_not_exists && t.create.columns.is_empty());
        assert_eq!(t.create.name.to_string(), "items");
        assert!(matches!(stmts[3], Stmt::Pg(Statement::Query(_))));
        assert!(matches!(stmts[4], Stmt::ShowSources));
        let Stmt::DropSource(d) = &stmts[5] else { panic!() };
        assert!(d.if_exists && d.cascade);
        // Other SHOW statements stay PostgreSQL's.
        assert!(matches!(&parse("SHOW search_path").unwrap()[0], Stmt::Pg(_)));
    }

    #[test]
    fn rejects_malformed_source_statements() {
        assert!(parse("CREATE SOURCE s").is_err());
        assert!(parse("CREATE SOURCE s WITH (a = 1, a = 2)").is_err());
        assert!(parse("CREATE TABLE t (*) FROM s").is_err());
        assert!(parse("CREATE TABLE t (id INT) FROM s TABLE").is_err());
        assert!(parse("CREATE TABLE t (id INT) garbage").is_err());
    }
}
