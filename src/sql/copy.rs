//! COPY: `COPY t [(cols)] FROM STDIN` and `COPY t | (query) TO STDOUT`, text and CSV formats.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use futures::StreamExt;
use sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement};

use crate::catalog::Table;
use crate::error::{Error, Result, SqlState};
use crate::query::context::session_context;
use crate::serve::text::format_cell;
use crate::session::{Output, Session};

/// COPY format options.
#[derive(Clone, Debug)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

impl CopyFormat {
    fn from_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
        let mut csv = false;
        let mut delimiter = None;
        let mut null = None;
        let mut header = false;
        let mut quote = '"';
        let mut escape = None;
        for o in options {
            match o {
                CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                    "csv" => csv = true,
                    "text" => csv = false,
                    other => return Err(Error::unsupported(format!("COPY format \"{other}\""))),
                },
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(s) => null = Some(s.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = *c,
                CopyOption::Escape(c) => escape = Some(*c),
                CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(Error::unsupported(format!("COPY option {other}"))),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Csv(opts) => {
                    csv = true;
                    for c in opts {
                        match c {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(q) => quote = *q,
                            CopyLegacyCsvOption::Escape(e) => escape = Some(*e),
                            other => return Err(Error::unsupported(format!("COPY option {other}"))),
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(s) => null = Some(s.clone()),
                other => return Err(Error::unsupported(format!("COPY option {other}"))),
            }
        }
        Ok(CopyFormat {
            csv,
            delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }
}

/// A COPY FROM STDIN waiting for its data.
pub struct CopyIn {
    pub table: Arc<Table>,
    pub targets: Vec<usize>,
    pub format: CopyFormat,
    pub data: Vec<u8>,
}

fn target_columns(table: &Table, columns: &[sqlparser::ast::Ident]) -> Result<Vec<usize>> {
    if columns.is_empty() {
        return Ok((0..table.def.columns.len())
            .filter(|i| !table.def.columns[*i].hidden)
            .collect());
    }
    columns
        .iter()
        .map(|c| {
            let n = super::ident_name(c);
            table.visible_column(&n)
        })
        .collect()
}

/// Checks that the table and columns of `COPY t [(cols)] FROM STDIN` exist, so that the
/// extended protocol reports them at Parse / Describe time, as PostgreSQL does.
pub fn check_target(env: &crate::query::context::QueryEnv, source: &CopySource) -> Result<()> {
    if let CopySource::Table { table_name, columns } = source {
        let table = env
            .view
            .committed
            .catalog
            .resolve_table(&super::object_name_parts(table_name), &env.search_path)?;
        target_columns(&table, columns)?;
    }
    Ok(())
}

/// Starts a COPY statement.
pub async fn start(session: &mut Session, stmt: Statement) -> Result<Output> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = stmt
    else {
        return Err(Error::internal("not a COPY statement"));
    };
    let format = CopyFormat::from_options(&options, &legacy_options)?;
    let env = session.query_env();
    if !to {
        if !matches!(target, CopyTarget::Stdin) {
            return Err(Error::unsupported(
                "COPY FROM a server-side file or program (use COPY FROM STDIN)",
            ));
        }
        let CopySource::Table { table_name, columns } = source else {
            return Err(Error::syntax("COPY FROM needs a table"));
        };
        let table = env
            .view
            .committed
            .catalog
            .resolve_table(&super::object_name_parts(&table_name), &env.search_path)?;
        table.check_writable(&env.view.committed.catalog)?;
        let targets = target_columns(&table, &columns)?;
        let columns = targets.len();
        session.copy_in = Some(CopyIn {
            table,
            targets,
            format,
            data: Vec::new(),
        });
        return Ok(Output::CopyIn { columns });
    }
    if !matches!(target, CopyTarget::Stdout) {
        return Err(Error::unsupported(
            "COPY TO a server-side file or program (use COPY TO STDOUT)",
        ));
    }
    let sql = match source {
        CopySource::Table { table_name, columns } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
            };
            format!("SELECT {cols} FROM {table_name}")
        }
        CopySource::Query(q) => q.to_string(),
    };
    let ctx = session_context(&env);
    let df = super::dml::plan_sql(&ctx, &sql).await?;
    let names: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut stream = df.execute_stream().await?;
    let mut data = Vec::new();
    // PostgreSQL 15 writes a header line in text format too.
    if format.header {
        data.push(format_line(&format, names.iter().map(|n| Some(n.clone())).collect()).into_bytes());
    }
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            let cells = batch.columns().iter().map(|c| format_cell(c, row)).collect();
            data.push(format_line(&format, cells).into_bytes());
        }
    }
    Ok(Output::CopyOut {
        columns: names.len(),
        data,
    })
}

fn format_line(f: &CopyFormat, cells: Vec<Option<String>>) -> String {
    let mut line = String::new();
    for (i, c) in cells.into_iter().enumerate() {
        if i > 0 {
            line.push(f.delimiter);
        }
        match c {
            None => line.push_str(&f.null),
            Some(v) if f.csv => {
                let needs = v.is_empty() && f.null.is_empty()
                    || v.contains(f.delimiter)
                    || v.contains(f.quote)
                    || v.contains('\n')
                    || v.contains('\r')
                    || v == f.null;
                if needs {
                    line.push(f.quote);
                    for ch in v.chars() {
                        if ch == f.quote || ch == f.escape {
                            line.push(f.escape);
                        }
                        line.push(ch);
                    }
                    line.push(f.quote);
                } else {
                    line.push_str(&v);
                }
            }
            Some(v) => {
                for ch in v.chars() {
                    match ch {
                        '\\' => line.push_str("\\\\"),
                        '\n' => line.push_str("\\n"),
                        '\r' => line.push_str("\\r"),
                        '\t' => line.push_str("\\t"),
                        c if c == f.delimiter => {
                            line.push('\\');
                            line.push(c);
                        }
                        c => line.push(c),
                    }
                }
            }
        }
    }
    line.push('\n');
    line
}

/// Parses COPY data into one text column per target column.
pub fn parse_rows(copy: &CopyIn) -> Result<Vec<ArrayRef>> {
    let text = std::str::from_utf8(&copy.data)
        .map_err(|_| Error::user(SqlState("22021"), "invalid byte sequence for encoding \"UTF8\""))?;
    let rows = if copy.format.csv {
        parse_csv(text, &copy.format)?
    } else {
        parse_text(text, &copy.format)?
    };
    let n = copy.targets.len();
    let mut cols: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); n];
    for (line, row) in rows.into_iter().enumerate() {
        if row.len() != n {
            return Err(Error::user(
                SqlState::BAD_COPY_FILE_FORMAT,
                format!(
                    "COPY {}, line {}: expected {n} columns, got {}",
                    copy.table.def.name,
                    line + 1,
                    row.len()
                ),
            ));
        }
        for (c, v) in row.into_iter().enumerate() {
            cols[c].push(v);
        }
    }
    Ok(cols
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
        .collect())
}

fn parse_text(text: &str, f: &CopyFormat) -> Result<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    // HEADER (allowed in text format since PostgreSQL 15): the first line is skipped.
    let text = if f.header {
        text.split_once('\n').map(|(_, rest)| rest).unwrap_or("")
    } else {
        text
    };
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line == "\\." {
            break;
        }
        if line.is_empty() && i > 0 && text[..].ends_with('\n') && rows.len() == i {
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let mut row = Vec::new();
        for raw in line.split(f.delimiter) {
            if raw == f.null {
                row.push(None);
                continue;
            }
            row.push(Some(unescape_text(raw)?));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Undoes COPY text format's backslash escapes.
pub(crate) fn unescape_text(raw: &str) -> Result<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek() {
                        Some(n @ '0'..='7') => {
                            v = v * 8 + n.to_digit(8).unwrap_or(0);
                            chars.next();
                        }
                        _ => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('?'));
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

fn parse_csv(text: &str, f: &CopyFormat) -> Result<Vec<Vec<Option<String>>>> {
    let mut rows = Vec::new();
    let mut row: Vec<Option<String>> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let mut at_line_start = true;
    let mut skip_header = f.header;
    let push_field = |row: &mut Vec<Option<String>>, field: &mut String, was_quoted: bool| {
        if !was_quoted && *field == f.null {
            row.push(None);
        } else {
            row.push(Some(std::mem::take(field)));
        }
        field.clear();
    };
    while let Some(c) = chars.next() {
        if at_line_start && !quoted && c == '\\' && chars.peek() == Some(&'.') {
            break;
        }
        at_line_start = false;
        if quoted {
            if c == f.escape && chars.peek() == Some(&f.quote) && f.escape != f.quote {
                field.push(f.quote);
                chars.next();
            } else if c == f.quote {
                if f.escape == f.quote && chars.peek() == Some(&f.quote) {
                    field.push(f.quote);
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        if c == f.quote {
            quoted = true;
            was_quoted = true;
        } else if c == f.delimiter {
            push_field(&mut row, &mut field, was_quoted);
            was_quoted = false;
        } else if c == '\n' || c == '\r' {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            push_field(&mut row, &mut field, was_quoted);
            was_quoted = false;
            let r = std::mem::take(&mut row);
            if skip_header {
                skip_header = false;
            } else {
                rows.push(r);
            }
            at_line_start = true;
        } else {
            field.push(c);
        }
    }
    if quoted {
        return Err(Error::user(
            SqlState::BAD_COPY_FILE_FORMAT,
            "unterminated CSV quoted field",
        ));
    }
    if !field.is_empty() || !row.is_empty() || was_quoted {
        push_field(&mut row, &mut field, was_quoted);
        if skip_header {
            skip_header = false;
        } else {
            rows.push(row);
        }
    }
    let _ = skip_header;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(csv: bool) -> CopyFormat {
        CopyFormat::from_options(
            &if csv {
                vec![CopyOption::Format(sqlparser::ast::Ident::new("csv"))]
            } else {
                vec![]
            },
            &[],
        )
        .unwrap()
    }

    #[test]
    fn text_format_round_trips() {
        let f = fmt(false);
        let line = format_line(&f, vec![Some("a\tb\\c".into()), None, Some("x".into())]);
        assert_eq!(line, "a\\tb\\\\c\t\\N\tx\n");
        let rows = parse_text(&line, &f).unwrap();
        assert_eq!(rows, vec![vec![Some("a\tb\\c".into()), None, Some("x".into())]]);
    }

    #[test]
    fn csv_quotes_and_nulls() {
        let f = fmt(true);
        let rows = parse_csv("1,\"a,\"\"b\"\"\",\n2,\"\",x\n", &f).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("a,\"b\"".into()), None],
                vec![Some("2".into()), Some("".into()), Some("x".into())]
            ]
        );
        assert_eq!(format_line(&f, vec![Some("a,b".into()), None]), "\"a,b\",\n");
    }
}
