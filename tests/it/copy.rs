//! COPY FROM STDIN and COPY TO STDOUT over the real protocol (tokio-postgres `copy_in` /
//! `copy_out`), in text and CSV formats: headers, NULLs, quoting, escapes, and bad rows that
//! must insert nothing.

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use tokio_postgres::Client;

use crate::harness::TestServer;

/// Sends `data` with `COPY ... FROM STDIN`, returning the row count or the SQLSTATE.
async fn copy_in(client: &Client, sql: &str, data: &str) -> Result<u64, String> {
    let sink = client.copy_in(sql).await.map_err(code)?;
    futures::pin_mut!(sink);
    sink.send(Bytes::from(data.to_string())).await.map_err(code)?;
    sink.finish().await.map_err(code)
}

/// The whole output of `COPY ... TO STDOUT`.
async fn copy_out(client: &Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.expect("copy out");
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("copy out data");
    String::from_utf8(chunks.concat()).expect("utf8")
}

fn code(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.code().code().to_string(),
        None => e.to_string(),
    }
}

async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

fn row(cells: &[Option<&str>]) -> Vec<Option<String>> {
    cells.iter().map(|c| c.map(str::to_string)).collect()
}

#[tokio::test]
async fn copy_text_format_in_and_out() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE t (id INT PRIMARY KEY, name TEXT, amount NUMERIC(8,2), tags TEXT[])")
        .await
        .unwrap();

    // Tabs, newlines and backslashes are escaped; \N is NULL; an empty field is an empty string.
    let data = "1\tplain\t1.50\t{a,b}\n2\ttab\\there\\nnewline \\\\ slash\t\\N\t\\N\n3\t\t0\t{}\n";
    assert_eq!(copy_in(&c, "COPY t FROM STDIN", data).await, Ok(3));
    assert_eq!(
        rows(&c, "SELECT id, name, amount, tags FROM t ORDER BY id").await,
        vec![
            row(&[Some("1"), Some("plain"), Some("1.50"), Some("{a,b}")]),
            row(&[Some("2"), Some("tab\there\nnewline \\ slash"), None, None]),
            row(&[Some("3"), Some(""), Some("0.00"), Some("{}")]),
        ]
    );

    // A column list; the others take their defaults.
    assert_eq!(copy_in(&c, "COPY t (name, id) FROM STDIN", "late\t4\n").await, Ok(1));
    assert_eq!(
        rows(&c, "SELECT name, amount FROM t WHERE id = 4").await,
        vec![row(&[Some("late"), None])]
    );

    // The end-of-data marker, octal escapes, and a custom delimiter and NULL string.
    assert_eq!(
        copy_in(
            &c,
            "COPY t (id, name) FROM STDIN WITH (DELIMITER '|', NULL 'nil')",
            "5|\\101BC\n6|nil\n\\.\n"
        )
        .await,
        Ok(2)
    );
    assert_eq!(
        rows(&c, "SELECT id, name FROM t WHERE id IN (5, 6) ORDER BY id").await,
        vec![row(&[Some("5"), Some("ABC")]), row(&[Some("6"), None])]
    );

    let out = copy_out(&c, "COPY t TO STDOUT").await;
    assert_eq!(
        out,
        "1\tplain\t1.50\t{a,b}\n2\ttab\\there\\nnewline \\\\ slash\t\\N\t\\N\n3\t\t0.00\t{}\n\
         4\tlate\t\\N\t\\N\n5\tABC\t\\N\t\\N\n6\t\\N\t\\N\t\\N\n"
    );

    // A query, with a header (PostgreSQL 15 allows HEADER in text format).
    let out = copy_out(
        &c,
        "COPY (SELECT id, name FROM t WHERE id <= 2 ORDER BY id) TO STDOUT WITH (HEADER)",
    )
    .await;
    assert_eq!(out, "id\tname\n1\tplain\n2\ttab\\there\\nnewline \\\\ slash\n");

    // Text format with a header on input: the first line is skipped.
    assert_eq!(
        copy_in(&c, "COPY t (id, name) FROM STDIN WITH (HEADER)", "id\tname\n7\tseven\n").await,
        Ok(1)
    );
    assert_eq!(
        rows(&c, "SELECT name FROM t WHERE id = 7").await,
        vec![row(&[Some("seven")])]
    );
}

#[tokio::test]
async fn copy_csv_format_in_and_out() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE c (id INT PRIMARY KEY, a TEXT, b TEXT)")
        .await
        .unwrap();

    // Quoted fields with delimiters, doubled quotes and newlines; unquoted empty is NULL, quoted
    // empty is the empty string.
    let data = "id,a,b\n1,\"x,y\",\"say \"\"hi\"\"\"\n2,,\"\"\n3,\"multi\nline\",plain\n";
    assert_eq!(
        copy_in(&c, "COPY c FROM STDIN WITH (FORMAT csv, HEADER true)", data).await,
        Ok(3)
    );
    assert_eq!(
        rows(&c, "SELECT id, a, b FROM c ORDER BY id").await,
        vec![
            row(&[Some("1"), Some("x,y"), Some("say \"hi\"")]),
            row(&[Some("2"), None, Some("")]),
            row(&[Some("3"), Some("multi\nline"), Some("plain")]),
        ]
    );

    let out = copy_out(&c, "COPY c TO STDOUT WITH (FORMAT csv, HEADER)").await;
    assert_eq!(
        out,
        "id,a,b\n1,\"x,y\",\"say \"\"hi\"\"\"\n2,,\"\"\n3,\"multi\nline\",plain\n"
    );

    // Legacy syntax, a custom NULL string, a custom quote and escape.
    assert_eq!(
        copy_in(&c, "COPY c FROM STDIN WITH CSV NULL 'NA'", "4,NA,\"NA\"\n").await,
        Ok(1)
    );
    assert_eq!(
        rows(&c, "SELECT a, b FROM c WHERE id = 4").await,
        vec![row(&[None, Some("NA")])]
    );
    assert_eq!(
        copy_in(
            &c,
            "COPY c FROM STDIN WITH (FORMAT csv, QUOTE '''', ESCAPE '\\')",
            "5,'it\\'s',x\n"
        )
        .await,
        Ok(1)
    );
    assert_eq!(
        rows(&c, "SELECT a FROM c WHERE id = 5").await,
        vec![row(&[Some("it's")])]
    );

    let out = copy_out(
        &c,
        "COPY (SELECT id, a FROM c WHERE id >= 4 ORDER BY id) TO STDOUT WITH (FORMAT csv, DELIMITER ';')",
    )
    .await;
    assert_eq!(out, "4;\n5;it's\n");
}

#[tokio::test]
async fn copy_bad_rows_insert_nothing() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE b (id INT PRIMARY KEY, n SMALLINT NOT NULL)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO b VALUES (100, 1)").await.unwrap();

    // A value of the wrong type in the last row.
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN", "1\t1\n2\t2\n3\tthree\n").await,
        Err("22P02".to_string())
    );
    // Out of range.
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN WITH (FORMAT csv)", "1,1\n2,99999\n").await,
        Err("22003".to_string())
    );
    // Too many / too few columns.
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN", "1\t1\t1\n").await,
        Err("22P04".to_string())
    );
    assert_eq!(copy_in(&c, "COPY b FROM STDIN", "1\n").await, Err("22P04".to_string()));
    // An unterminated quoted CSV field.
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN WITH (FORMAT csv)", "1,\"2\n").await,
        Err("22P04".to_string())
    );
    // A NULL in a NOT NULL column, a duplicate key (within the data and against the table).
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN", "1\t\\N\n").await,
        Err("23502".to_string())
    );
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN", "1\t1\n1\t2\n").await,
        Err("23505".to_string())
    );
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN", "2\t1\n100\t2\n").await,
        Err("23505".to_string())
    );
    // Unknown table and column.
    assert_eq!(copy_in(&c, "COPY nope FROM STDIN", "").await, Err("42P01".to_string()));
    assert_eq!(
        copy_in(&c, "COPY b (zz) FROM STDIN", "").await,
        Err("42703".to_string())
    );

    assert_eq!(
        rows(&c, "SELECT id, n FROM b").await,
        vec![row(&[Some("100"), Some("1")])]
    );

    // Inside a transaction, a failed COPY fails the transaction; ROLLBACK recovers.
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(copy_in(&c, "COPY b FROM STDIN", "5\t5\n").await, Ok(1));
    assert_eq!(
        copy_in(&c, "COPY b FROM STDIN", "6\tx\n").await,
        Err("22P02".to_string())
    );
    assert_eq!(code(c.batch_execute("SELECT 1").await.unwrap_err()), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(rows(&c, "SELECT count(*) FROM b").await, vec![row(&[Some("1")])]);

    // A good COPY after all that still works.
    assert_eq!(copy_in(&c, "COPY b FROM STDIN", "7\t7\n8\t8\n").await, Ok(2));
    assert_eq!(rows(&c, "SELECT count(*) FROM b").await, vec![row(&[Some("3")])]);
}
