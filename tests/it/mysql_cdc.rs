//! MySQL / MariaDB CDC end to end: a throwaway MariaDB (freshet::testkit) feeding a real
//! Freshet server through `CREATE SOURCE ... WITH (connector = 'mysql-cdc')`, checked over
//! pgwire against the upstream tables themselves.

use freshet::testkit::mariadb::MariaDb;

use crate::cdc::{code, eventually, rows};
use crate::harness::TestServer;

/// Upstream rows of a query as `a|b|c` lines (NULL as `NULL`), sorted.
fn upstream(db: &MariaDb, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = db.exec_sync(sql).unwrap().into_iter().map(|r| r.join("|")).collect();
    out.sort();
    out
}

pub(crate) fn create_source_sql(db: &MariaDb, name: &str, database: &str, server_id: u32) -> String {
    format!(
        "CREATE SOURCE {name} WITH (connector = 'mysql-cdc', hostname = '127.0.0.1', port = '{}', \
         username = '{}', password = '{}', database.name = '{database}', server.id = '{server_id}')",
        db.port(),
        MariaDb::CDC_USER,
        MariaDb::CDC_PASSWORD
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_stream_transactions_views_and_ddl() {
    let db = MariaDb::start().unwrap();
    db.exec_sync(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.orders (id INT PRIMARY KEY, customer INT NOT NULL, amount BIGINT, status VARCHAR(20)); \
         CREATE TABLE shop.items (sku VARCHAR(10) PRIMARY KEY, price DECIMAL(10,2), note TEXT); \
         INSERT INTO shop.orders VALUES (1, 1, 100, 'paid'), (2, 1, 50, 'open'), (3, 2, 70, 'paid'); \
         INSERT INTO shop.items VALUES ('a', 1.50, NULL), ('b', 20.00, 'big')",
    )
    .unwrap();
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&create_source_sql(&db, "shop", "shop", 5401))
        .await
        .unwrap();
    c.batch_execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, customer INT NOT NULL, amount BIGINT, status VARCHAR(20)) \
         FROM shop TABLE 'shop.orders'; \
         CREATE TABLE items (*) FROM shop TABLE 'shop.items'; \
         CREATE TABLE customers (id INT PRIMARY KEY, name TEXT); \
         INSERT INTO customers VALUES (1, 'ada'), (2, 'bob'), (3, 'cy'); \
         CREATE MATERIALIZED VIEW spend AS SELECT c.name, count(*) AS n, sum(o.amount) AS total \
           FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.name",
    )
    .await
    .unwrap();
    let orders_sql = "SELECT id, customer, amount, status FROM orders";
    let upstream_orders = "SELECT id, customer, IFNULL(amount, 'NULL'), IFNULL(status, 'NULL') FROM shop.orders";
    eventually(&c, orders_sql, &upstream(&db, upstream_orders)).await;
    eventually(
        &c,
        "SELECT sku, price, note FROM items",
        &["a|1.50|NULL".into(), "b|20.00|big".into()],
    )
    .await;
    eventually(&c, "SELECT * FROM spend", &["ada|2|150".into(), "bob|1|70".into()]).await;
    // Streaming: single statements and a multi-statement transaction.
    db.exec_sync(
        "INSERT INTO shop.orders VALUES (4, 3, 30, 'open'); \
         UPDATE shop.orders SET status = 'paid', amount = amount + 1 WHERE id = 2; \
         DELETE FROM shop.orders WHERE id = 1; \
         START TRANSACTION; INSERT INTO shop.orders VALUES (5, 2, 5, NULL); UPDATE shop.orders SET customer = 3 WHERE id = 3; \
         COMMIT; \
         UPDATE shop.items SET note = 'cheap' WHERE sku = 'a'",
    )
    .unwrap();
    eventually(&c, orders_sql, &upstream(&db, upstream_orders)).await;
    eventually(
        &c,
        "SELECT * FROM spend",
        &["ada|1|51".into(), "bob|1|5".into(), "cy|2|100".into()],
    )
    .await;
    eventually(&c, "SELECT note FROM items WHERE sku = 'a'", &["cheap".into()]).await;
    // The source's tables refuse DML, naming the source.
    let e = c
        .batch_execute("INSERT INTO orders VALUES (9, 1, 1, 'x')")
        .await
        .unwrap_err();
    assert_eq!(code(e), "42809");
    let e = c.batch_execute("DELETE FROM orders").await.unwrap_err();
    assert!(
        e.to_string().contains("source shop") || format!("{e:?}").contains("source shop"),
        "{e:?}"
    );
    // Introspection.
    assert_eq!(rows(&c, "SHOW SOURCES").await, ["shop|mysql-cdc|streaming"]);
    let status = rows(
        &c,
        "SELECT name, connector, state, tables, options LIKE '%password = ''***''%' FROM freshet_catalog.sources",
    )
    .await;
    assert_eq!(status, ["shop|mysql-cdc|streaming|2|t"]);
    let tables = rows(
        &c,
        "SELECT source, \"table\", upstream, state FROM freshet_catalog.source_tables",
    )
    .await;
    assert_eq!(
        tables,
        ["shop|items|shop.items|streaming", "shop|orders|shop.orders|streaming"]
    );
    let lag = rows(
        &c,
        "SELECT lag_seconds >= 0 AND lag_seconds < 30, position IS NOT NULL FROM freshet_catalog.sources",
    )
    .await;
    assert_eq!(lag, ["t|t"]);
    // Declared columns are checked against upstream.
    let e = c
        .batch_execute("CREATE TABLE bad (id INT PRIMARY KEY, amount TEXT) FROM shop TABLE 'shop.orders'")
        .await
        .unwrap_err();
    assert_eq!(code(e), "42804");
    let e = c
        .batch_execute("CREATE TABLE bad (id INT PRIMARY KEY, nope INT) FROM shop TABLE 'shop.orders'")
        .await
        .unwrap_err();
    assert_eq!(code(e), "42703");
    let e = c
        .batch_execute("CREATE TABLE bad (id INT PRIMARY KEY) FROM shop TABLE 'shop.missing'")
        .await
        .unwrap_err();
    assert_eq!(code(e), "42P01");
    // Upstream DDL: a column added upstream is not read; dropping a read column stops the table.
    db.exec_sync("ALTER TABLE shop.orders ADD COLUMN extra INT; INSERT INTO shop.orders VALUES (6, 1, 60, 'open', 7)")
        .unwrap();
    eventually(&c, orders_sql, &upstream(&db, upstream_orders)).await;
    db.exec_sync("ALTER TABLE shop.items DROP COLUMN note; UPDATE shop.items SET price = 2.00 WHERE sku = 'a'")
        .unwrap();
    eventually(
        &c,
        "SELECT \"table\", state, reason IS NOT NULL FROM freshet_catalog.source_tables WHERE \"table\" = 'items'",
        &["items|failed|t".into()],
    )
    .await;
    db.exec_sync("INSERT INTO shop.orders VALUES (7, 2, 1, 'paid', NULL)")
        .unwrap();
    eventually(&c, orders_sql, &upstream(&db, upstream_orders)).await;
    // DROP SOURCE needs CASCADE while tables read it; CASCADE takes tables and views along.
    assert_eq!(code(c.batch_execute("DROP SOURCE shop").await.unwrap_err()), "2BP01");
    c.batch_execute("DROP SOURCE shop CASCADE").await.unwrap();
    assert!(rows(&c, "SHOW SOURCES").await.is_empty());
    assert_eq!(
        code(c.batch_execute("SELECT * FROM orders").await.unwrap_err()),
        "42P01"
    );
    assert_eq!(code(c.batch_execute("SELECT * FROM spend").await.unwrap_err()), "42P01");
    assert_eq!(rows(&c, "SELECT count(*) FROM customers").await, ["3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_mapped_type_with_nulls() {
    let db = MariaDb::start().unwrap();
    db.exec_sync(
        "CREATE DATABASE t; CREATE TABLE t.all_types ( \
           id INT PRIMARY KEY, ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, \
           mi MEDIUMINT, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED, dec_ DECIMAL(12,3), \
           f FLOAT, d DOUBLE, c CHAR(3), vc VARCHAR(20), tx TEXT, bl BLOB, bn BINARY(2), vb VARBINARY(8), \
           dt DATE, dtm DATETIME(3), ts TIMESTAMP(6) NULL, tm TIME, yr YEAR, js JSON, \
           en ENUM('small','large'), st SET('a','b','c'), b1 BIT(1), b8 BIT(8))",
    )
    .unwrap();
    let full = "(1, -5, 250, -300, 65000, -8000000, -2000000000, 4000000000, -9000000000000000000, \
        18000000000000000000, 123456789.125, 1.5, 2.25, 'ab', 'hello', 'long text', x'0102', x'0a0b', x'ff', \
        '2024-02-29', '2024-02-29 12:34:56.789', '2024-03-01 00:00:01.123456', '12:30:00', 2024, \
        '{\"k\": [1, 2]}', 'large', 'a,c', b'1', b'10000001')";
    let nulls = "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";
    db.exec_sync(&format!(
        "SET time_zone = '+00:00'; INSERT INTO t.all_types VALUES {full}"
    ))
    .unwrap();
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&create_source_sql(&db, "src", "t", 5402))
        .await
        .unwrap();
    c.batch_execute("CREATE TABLE all_types (*) FROM src TABLE 't.all_types'")
        .await
        .unwrap();
    let types = rows(
        &c,
        "SELECT column_name || ':' || data_type FROM information_schema.columns WHERE table_name = 'all_types'",
    )
    .await;
    for want in [
        "ti:smallint",
        "tiu:smallint",
        "siu:integer",
        "iu:bigint",
        "biu:numeric",
        "dec_:numeric",
        "f:real",
        "d:double precision",
        "vc:character varying",
        "tx:text",
        "bl:bytea",
        "dt:date",
        "dtm:timestamp without time zone",
        "ts:timestamp with time zone",
        "tm:time without time zone",
        "js:jsonb",
        "en:text",
        "st:text",
        "b1:boolean",
        "b8:bigint",
    ] {
        assert!(types.contains(&want.to_string()), "{want} not in {types:?}");
    }
    let expect_full = "1|-5|250|-300|65000|-8000000|-2000000000|4000000000|-9000000000000000000|\
        18000000000000000000|123456789.125|1.5|2.25|ab|hello|long text|\\x0102|\\x0a0b|\\xff|2024-02-29|\
        2024-02-29 12:34:56.789|2024-03-01 00:00:01.123456+00|12:30:00|2024|{\"k\": [1, 2]}|large|a,c|t|129";
    let expect_nulls = format!("2{}", "|NULL".repeat(28));
    let q = "SELECT * FROM all_types";
    eventually(&c, q, &[expect_full.to_string()]).await;
    // The same values through the binlog (insert) and NULLs both ways.
    db.exec_sync(&format!(
        "SET time_zone = '+00:00'; INSERT INTO t.all_types VALUES {nulls}; \
         INSERT INTO t.all_types SELECT 3, ti, tiu, si, siu, mi, i, iu, bi, biu, dec_, f, d, c, vc, tx, bl, bn, vb, dt, \
         dtm, ts, tm, yr, js, en, st, b1, b8 FROM t.all_types WHERE id = 1"
    ))
    .unwrap();
    eventually(
        &c,
        q,
        &[
            expect_full.to_string(),
            expect_nulls.clone(),
            expect_full.replacen("1|", "3|", 1),
        ],
    )
    .await;
}

/// kill -9 of Freshet mid-stream and a MariaDB restart: the table ends exactly equal to
/// upstream (nothing lost, nothing applied twice), and the source reports its retries.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_across_crashes_and_upstream_restarts() {
    let mut db = MariaDb::start().unwrap();
    // seq_1_to_N needs a current database.
    db.exec_sync(
        "CREATE DATABASE app; USE app; CREATE TABLE app.counters (id INT PRIMARY KEY, n BIGINT NOT NULL); \
         INSERT INTO app.counters SELECT seq, 0 FROM seq_1_to_200",
    )
    .unwrap();
    let mut server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&create_source_sql(&db, "app", "app", 5403))
        .await
        .unwrap();
    c.batch_execute(
        "CREATE TABLE counters (id INT PRIMARY KEY, n BIGINT NOT NULL) FROM app TABLE 'app.counters'; \
         CREATE MATERIALIZED VIEW total AS SELECT sum(n) AS s, count(*) AS c FROM counters",
    )
    .await
    .unwrap();
    let q = "SELECT id, n FROM counters";
    let uq = "SELECT id, n FROM app.counters";
    eventually(&c, q, &upstream(&db, uq)).await;
    // Upstream keeps writing; increments are not idempotent, so a replayed transaction would show.
    for round in 1..=3 {
        db.exec_sync(&format!(
            "UPDATE app.counters SET n = n + 1 WHERE id % {} = 0; \
             START TRANSACTION; UPDATE app.counters SET n = n + 10 WHERE id <= 50; \
             INSERT INTO app.counters VALUES ({}, {round}); COMMIT",
            round + 1,
            1000 + round
        ))
        .unwrap();
        server.kill9();
        db.exec_sync("UPDATE app.counters SET n = n + 100 WHERE id = 7")
            .unwrap();
        server.restart();
        let c = server.connect().await;
        eventually(&c, q, &upstream(&db, uq)).await;
        let want = upstream(&db, "SELECT SUM(n), COUNT(*) FROM app.counters");
        eventually(&c, "SELECT s, c FROM total", &want).await;
    }
    // The upstream server restarts: the source retries and resumes.
    let c = server.connect().await;
    db.restart().unwrap();
    db.exec_sync("UPDATE app.counters SET n = n + 1000 WHERE id = 8")
        .unwrap();
    eventually(&c, q, &upstream(&db, uq)).await;
    eventually(&c, "SELECT state FROM freshet_catalog.sources", &["streaming".into()]).await;
    // The lost connection was retried, and the retry shows in the status.
    assert_eq!(rows(&c, "SELECT retries > 0 FROM freshet_catalog.sources").await, ["t"]);
}

/// A snapshot of a million rows, read in chunks, with its progress visible while it runs.
#[tokio::test(flavor = "multi_thread")]
async fn million_row_snapshot() {
    let db = MariaDb::start().unwrap();
    db.exec_sync(
        "CREATE DATABASE big; USE big; CREATE TABLE big.events (id BIGINT PRIMARY KEY, kind INT, payload VARCHAR(40)); \
         INSERT INTO big.events SELECT seq, seq % 7, CONCAT('payload-', seq) FROM seq_1_to_1000000",
    )
    .unwrap();
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&create_source_sql(&db, "big", "big", 5404))
        .await
        .unwrap();
    c.batch_execute(
        "CREATE TABLE events (*) FROM big TABLE 'big.events'; \
         CREATE MATERIALIZED VIEW kinds AS SELECT kind, count(*) AS n FROM events GROUP BY kind",
    )
    .await
    .unwrap();
    crate::cdc::snapshot_with_visible_progress(&c).await;
    assert_eq!(
        rows(&c, "SELECT count(*), sum(id) FROM events").await,
        ["1000000|500000500000"]
    );
    let kinds = rows(&c, "SELECT kind, n FROM kinds").await;
    assert_eq!(
        kinds,
        upstream(&db, "SELECT kind, COUNT(*) FROM big.events GROUP BY kind")
    );
    db.exec_sync("DELETE FROM big.events WHERE id <= 10").unwrap();
    eventually(&c, "SELECT count(*) FROM events", &["999990".into()]).await;
}
