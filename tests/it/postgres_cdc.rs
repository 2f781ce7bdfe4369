//! PostgreSQL CDC end to end: a throwaway PostgreSQL with `wal_level=logical`
//! (freshet::testkit) feeding a real Freshet server through `CREATE SOURCE ... WITH (connector =
//! 'postgres-cdc')`, checked over pgwire against the upstream tables themselves.

use std::time::{Duration, Instant};

use freshet::testkit::postgres::PgServer;

use crate::cdc::{code, eventually, rows};
use crate::harness::TestServer;

/// Runs upstream SQL as the CDC user, so that it owns the tables it creates (a publication
/// may only add tables its creator owns).
fn up(db: &PgServer, sql: &str) {
    db.exec_sync(&format!("SET ROLE {}; {sql}", PgServer::CDC_USER))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Upstream rows of a query as `a|b|c` lines, sorted (write NULLs with coalesce).
fn upstream(db: &PgServer, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = db
        .exec_sync(&format!("SET TimeZone = 'UTC'; {sql}"))
        .unwrap()
        .into_iter()
        .map(|r| r.join("|"))
        .collect();
    out.sort();
    out
}

fn create_source_sql(db: &PgServer, name: &str, extra: &str) -> String {
    format!(
        "CREATE SOURCE {name} WITH (connector = 'postgres-cdc', hostname = '127.0.0.1', port = '{}', \
         username = '{}', password = '{}', database.name = '{}', schema.name = 'public', \
         slot.name = 'freshet_{name}', publication.name = 'freshet_{name}_pub'{extra})",
        db.port(),
        PgServer::CDC_USER,
        PgServer::CDC_PASSWORD,
        PgServer::DATABASE,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_stream_transactions_truncate_toast_and_views() {
    let db = PgServer::start().unwrap();
    up(
        &db,
        "CREATE TABLE orders (id INT PRIMARY KEY, customer INT NOT NULL, amount BIGINT, status VARCHAR(20)); \
         CREATE TABLE docs (id INT PRIMARY KEY, title TEXT, body TEXT); \
         ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL; \
         CREATE TABLE audit (id INT PRIMARY KEY, note TEXT); ALTER TABLE audit REPLICA IDENTITY FULL; \
         INSERT INTO orders VALUES (1, 1, 100, 'paid'), (2, 1, 50, 'open'), (3, 2, 70, 'paid'); \
         INSERT INTO docs VALUES (1, 'big', repeat('0123456789', 600)); \
         INSERT INTO audit VALUES (1, 'a')",
    );
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&create_source_sql(&db, "shop", ", slot.drop.on.drop = 'true'"))
        .await
        .unwrap();
    c.batch_execute(
        "CREATE TABLE orders (id INT PRIMARY KEY, customer INT NOT NULL, amount BIGINT, status VARCHAR(20)) \
         FROM shop TABLE 'public.orders'; \
         CREATE TABLE docs (*) FROM shop TABLE 'docs'; \
         CREATE TABLE customers (id INT PRIMARY KEY, name TEXT); \
         INSERT INTO customers VALUES (1, 'ada'), (2, 'bob'), (3, 'cy'); \
         CREATE MATERIALIZED VIEW spend AS SELECT c.name, count(*) AS n, sum(o.amount) AS total \
           FROM orders o JOIN customers c ON o.customer = c.id GROUP BY c.name",
    )
    .await
    .unwrap();
    let orders_sql = "SELECT id, customer, coalesce(amount::text, 'NULL'), coalesce(status, 'NULL') FROM orders";
    let upstream_orders = "SELECT id, customer, coalesce(amount::text, 'NULL'), coalesce(status, 'NULL') FROM orders";
    eventually(&c, orders_sql, &upstream(&db, upstream_orders)).await;
    eventually(&c, "SELECT * FROM spend", &["ada|2|150".into(), "bob|1|70".into()]).await;
    eventually(&c, "SELECT id, title, length(body) FROM docs", &["1|big|6000".into()]).await;

    // Streaming: single statements, a key change, and a multi-statement transaction.
    up(
        &db,
        "INSERT INTO orders VALUES (4, 3, 30, 'open'); \
         UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id = 2; \
         DELETE FROM orders WHERE id = 1; \
         UPDATE orders SET id = 10 WHERE id = 4; \
         BEGIN; INSERT INTO orders VALUES (5, 2, 5, NULL); UPDATE orders SET customer = 3 WHERE id = 3; COMMIT",
    );
    eventually(&c, orders_sql, &upstream(&db, upstream_orders)).await;
    eventually(
        &c,
        "SELECT * FROM spend",
        &["ada|1|51".into(), "bob|1|5".into(), "cy|2|100".into()],
    )
    .await;

    // An update that leaves a TOASTed value alone: pgoutput does not send it; Freshet keeps it.
    up(&db, "UPDATE docs SET title = 'bigger' WHERE id = 1");
    eventually(
        &c,
        "SELECT id, title, length(body), substr(body, 1, 12) FROM docs",
        &["1|bigger|6000|012345678901".into()],
    )
    .await;
    // The same within one transaction, after an earlier change of the row.
    up(
        &db,
        "BEGIN; UPDATE docs SET title = 't1' WHERE id = 1; UPDATE docs SET title = 't2' WHERE id = 1; COMMIT",
    );
    eventually(&c, "SELECT title, length(body) FROM docs", &["t2|6000".into()]).await;

    // A table added to the running source, with REPLICA IDENTITY FULL.
    c.batch_execute("CREATE TABLE audit (*) FROM shop TABLE 'public.audit'")
        .await
        .unwrap();
    eventually(&c, "SELECT id, note FROM audit", &["1|a".into()]).await;
    up(
        &db,
        "INSERT INTO audit VALUES (2, 'b'); UPDATE audit SET note = 'aa' WHERE id = 1; DELETE FROM audit WHERE id = 2; \
         INSERT INTO orders VALUES (6, 1, 1, 'x')",
    );
    eventually(&c, "SELECT id, note FROM audit", &["1|aa".into()]).await;
    eventually(&c, orders_sql, &upstream(&db, upstream_orders)).await;

    // TRUNCATE empties the table; rows inserted after it in the same transaction stay.
    up(&db, "BEGIN; INSERT INTO orders VALUES (7, 1, 7, 'y'); TRUNCATE orders; INSERT INTO orders VALUES (8, 2, 8, 'z'); COMMIT");
    eventually(&c, orders_sql, &["8|2|8|z".into()]).await;
    eventually(&c, "SELECT * FROM spend", &["bob|1|8".into()]).await;

    // The source's tables refuse DML, naming the source.
    let e = c
        .batch_execute("INSERT INTO orders VALUES (9, 1, 1, 'x')")
        .await
        .unwrap_err();
    assert_eq!(code(e), "42809");

    // Status: streaming, with a position (an LSN) and a lag.
    let status = rows(
        &c,
        "SELECT name, connector, state, position LIKE '%/%', lag_seconds IS NOT NULL FROM freshet_catalog.sources",
    )
    .await;
    assert_eq!(status, ["shop|postgres-cdc|streaming|t|t"]);
    let tables = rows(
        &c,
        "SELECT \"table\", upstream, state FROM freshet_catalog.source_tables",
    )
    .await;
    assert_eq!(
        tables,
        [
            "audit|public.audit|streaming",
            "docs|docs|streaming",
            "orders|public.orders|streaming"
        ]
    );
    // The slot's confirmed flush LSN follows what Freshet committed.
    let slot = upstream(
        &db,
        "SELECT slot_name, active, confirmed_flush_lsn IS NOT NULL FROM pg_replication_slots",
    );
    assert_eq!(slot, ["freshet_shop|t|t"]);

    // DROP SOURCE ... CASCADE drops the tables and, as asked, the slot.
    c.batch_execute("DROP SOURCE shop CASCADE").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !upstream(&db, "SELECT slot_name FROM pg_replication_slots").is_empty() {
        assert!(Instant::now() < deadline, "the slot was not dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows(&c, "SELECT count(*) FROM freshet_catalog.sources").await, ["0"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_servers_users_and_tables_that_cannot_be_captured() {
    let db = PgServer::start().unwrap();
    up(
        &db,
        "CREATE TABLE nothing (id INT PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING; \
         CREATE TABLE nokey (id INT, v TEXT); CREATE TABLE weird (id INT PRIMARY KEY, addr inet)",
    );
    db.exec_sync("CREATE ROLE plain LOGIN PASSWORD 'p'").unwrap();
    let server = TestServer::start();
    let c = server.connect().await;
    // A user without REPLICATION.
    let sql = create_source_sql(&db, "s1", "")
        .replace(&format!("username = '{}'", PgServer::CDC_USER), "username = 'plain'")
        .replace(&format!("password = '{}'", PgServer::CDC_PASSWORD), "password = 'p'");
    let e = c.batch_execute(&sql).await.unwrap_err();
    assert_eq!(code(e), "42501");
    // A wrong password.
    let sql = create_source_sql(&db, "s1", "").replace(PgServer::CDC_PASSWORD, "wrong");
    let e = c.batch_execute(&sql).await.unwrap_err();
    assert_eq!(code(e), "28P01");
    // A missing option.
    let e = c
        .batch_execute("CREATE SOURCE s2 WITH (connector = 'postgres-cdc', hostname = '127.0.0.1')")
        .await
        .unwrap_err();
    assert_eq!(code(e), "22023");
    c.batch_execute(&create_source_sql(&db, "s", "")).await.unwrap();
    // Tables that cannot be captured.
    let e = c
        .batch_execute("CREATE TABLE a (*) FROM s TABLE 'public.nothing'")
        .await
        .unwrap_err();
    assert_eq!(code(e), "55000");
    let e = c
        .batch_execute("CREATE TABLE b (*) FROM s TABLE 'public.nokey'")
        .await
        .unwrap_err();
    assert_eq!(code(e), "42P16");
    let e = c
        .batch_execute("CREATE TABLE c (*) FROM s TABLE 'public.missing'")
        .await
        .unwrap_err();
    assert_eq!(code(e), "42P01");
    let e = c
        .batch_execute("CREATE TABLE d (*) FROM s TABLE 'public.weird'")
        .await
        .unwrap_err();
    assert_eq!(code(e), "0A000");
    let e = c
        .batch_execute("CREATE TABLE e (id BIGINT PRIMARY KEY) FROM s TABLE 'public.weird'")
        .await
        .unwrap_err();
    assert_eq!(code(e), "42804");
    // A server without wal_level = logical.
    let plain = PgServer::start_with(&[("wal_level", "replica")]).unwrap();
    let e = c.batch_execute(&create_source_sql(&plain, "s3", "")).await.unwrap_err();
    let text = format!("{e:?}");
    assert_eq!(code(e), "55000");
    assert!(text.contains("wal_level"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_mapped_type_with_nulls() {
    let db = PgServer::start().unwrap();
    let columns = "id INT PRIMARY KEY, i2 SMALLINT, i8 BIGINT, n NUMERIC(12,3), f4 REAL, f8 DOUBLE PRECISION, \
         t TEXT, vc VARCHAR(10), ch CHAR(3), b BOOLEAN, by BYTEA, d DATE, tm TIME, ts TIMESTAMP, tstz TIMESTAMPTZ, \
         iv INTERVAL, u UUID, j JSON, jb JSONB, ai INT[], at TEXT[]";
    let row = |id: i32| {
        format!(
            "({id}, -7, 9000000000, 12.5, 1.25, 3.14159, 'tab\tand \"quote\" ''s', 'vc', 'ab', true, '\\x00ff10', \
             '2024-02-29', '13:14:15.5', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15+02', \
             '1 year 2 mons 3 days 04:05:06', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"k\": [1, 2]}}', \
             '{{\"b\": 1, \"a\": \"x\"}}', '{{1,NULL,3}}', '{{a,\"b c\",NULL}}'), \
             ({}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
            id + 1
        )
    };
    up(
        &db,
        &format!("CREATE TABLE types ({columns}); INSERT INTO types VALUES {}", row(1)),
    );
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&create_source_sql(&db, "ty", "")).await.unwrap();
    c.batch_execute(&format!("CREATE TABLE types ({columns}) FROM ty TABLE 'types'"))
        .await
        .unwrap();
    // Streamed rows go through the same conversion as snapshot rows.
    up(&db, &format!("INSERT INTO types VALUES {}", row(3)));
    let cols = [
        "i2", "i8", "n", "f4", "f8", "t", "vc", "ch", "b", "by", "d", "tm", "ts", "tstz", "iv", "u", "jb", "ai", "at",
    ];
    // Upstream prints each value as text (NULL spelled out); Freshet's text output over pgwire
    // must be the same (json compared as jsonb: Freshet keeps json normalized).
    // (psql's output splits at tabs: tabs are spelled out on both sides; text casts of char(n)
    // and boolean differ from their output forms: those are rebuilt upstream.)
    let tab = "replace(t, chr(9), '<TAB>')";
    let mut parts = vec!["id::text".to_string()];
    parts.extend(cols.iter().map(|c| match *c {
        "t" => format!("coalesce({tab}, 'NULL')"),
        "ch" => "coalesce(rpad(ch::text, 3), 'NULL')".to_string(),
        "b" => "coalesce(CASE WHEN b THEN 't' WHEN NOT b THEN 'f' END, 'NULL')".to_string(),
        c => format!("coalesce({c}::text, 'NULL')"),
    }));
    parts.push("coalesce(j::jsonb::text, 'NULL')".into());
    let want = upstream(&db, &format!("SELECT {} FROM types", parts.join(", ")));
    assert_eq!(want.len(), 4);
    let mine: Vec<String> = cols
        .iter()
        .map(|c| if *c == "t" { tab.to_string() } else { c.to_string() })
        .collect();
    eventually(&c, &format!("SELECT id, {}, j FROM types", mine.join(", ")), &want).await;
}

/// kill -9 of Freshet mid-stream and a PostgreSQL restart: the table ends exactly equal to
/// upstream (nothing lost, nothing applied twice), the slot's confirmed LSN keeps up, and the
/// source reports its retries.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_across_crashes_and_upstream_restarts() {
    let mut db = PgServer::start().unwrap();
    up(
        &db,
        "CREATE TABLE counters (id INT PRIMARY KEY, n BIGINT NOT NULL); \
         INSERT INTO counters SELECT i, 0 FROM generate_series(1, 200) i; \
         CREATE TABLE other (id INT)",
    );
    let mut server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&create_source_sql(&db, "app", "")).await.unwrap();
    c.batch_execute(
        "CREATE TABLE counters (id INT PRIMARY KEY, n BIGINT NOT NULL) FROM app TABLE 'counters'; \
         CREATE MATERIALIZED VIEW total AS SELECT sum(n) AS s, count(*) AS c FROM counters",
    )
    .await
    .unwrap();
    let q = "SELECT id, n FROM counters";
    eventually(&c, q, &upstream(&db, q)).await;
    for round in 1..=3 {
        up(
            &db,
            &format!(
                "UPDATE counters SET n = n + 1 WHERE id % {} = 0; \
                 BEGIN; UPDATE counters SET n = n + 10 WHERE id <= 50; INSERT INTO counters VALUES ({}, {round}); COMMIT",
                round + 1,
                1000 + round
            ),
        );
        server.kill9();
        up(&db, "UPDATE counters SET n = n + 100 WHERE id = 7");
        server.restart();
        let c = server.connect().await;
        eventually(&c, q, &upstream(&db, q)).await;
        let want = upstream(&db, "SELECT sum(n), count(*) FROM counters");
        eventually(&c, "SELECT s, c FROM total", &want).await;
    }
    // Changes to tables Freshet does not capture still let the slot advance: WAL does not
    // pile up upstream.
    let c = server.connect().await;
    up(&db, "INSERT INTO other SELECT generate_series(1, 1000)");
    let target = upstream(&db, "SELECT pg_current_wal_lsn()")[0].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let caught_up = upstream(
            &db,
            &format!("SELECT confirmed_flush_lsn >= '{target}'::pg_lsn FROM pg_replication_slots"),
        );
        if caught_up == ["t"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot's confirmed_flush_lsn stayed behind {target}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The upstream server restarts: the source retries and resumes.
    db.restart().unwrap();
    up(&db, "UPDATE counters SET n = n + 1000 WHERE id = 8");
    eventually(&c, q, &upstream(&db, q)).await;
    eventually(&c, "SELECT state FROM freshet_catalog.sources", &["streaming".into()]).await;
    assert_eq!(rows(&c, "SELECT retries > 0 FROM freshet_catalog.sources").await, ["t"]);
}

/// A view joining a PostgreSQL CDC table with a MySQL CDC table.
#[tokio::test(flavor = "multi_thread")]
async fn view_joins_postgres_and_mysql_sources() {
    let pg = PgServer::start().unwrap();
    up(
        &pg,
        "CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL); \
         INSERT INTO users VALUES (1, 'ada'), (2, 'bob')",
    );
    let my = freshet::testkit::mariadb::MariaDb::start().unwrap();
    my.exec_sync(
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, user_id INT, amount INT); \
         INSERT INTO shop.orders VALUES (1, 1, 10), (2, 1, 5), (3, 2, 7)",
    )
    .unwrap();
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&create_source_sql(&pg, "pgsrc", "")).await.unwrap();
    c.batch_execute(&crate::mysql_cdc::create_source_sql(&my, "mysrc", "shop", 5410))
        .await
        .unwrap();
    c.batch_execute(
        "CREATE TABLE users (*) FROM pgsrc TABLE 'public.users'; \
         CREATE TABLE orders (*) FROM mysrc TABLE 'shop.orders'; \
         CREATE MATERIALIZED VIEW per_user AS SELECT u.name, sum(o.amount) AS total \
           FROM users u JOIN orders o ON o.user_id = u.id GROUP BY u.name",
    )
    .await
    .unwrap();
    eventually(&c, "SELECT * FROM per_user", &["ada|15".into(), "bob|7".into()]).await;
    up(
        &pg,
        "UPDATE users SET name = 'bea' WHERE id = 2; INSERT INTO users VALUES (3, 'cy')",
    );
    my.exec_sync("INSERT INTO shop.orders VALUES (4, 3, 1); DELETE FROM shop.orders WHERE id = 2")
        .unwrap();
    eventually(
        &c,
        "SELECT * FROM per_user",
        &["ada|10".into(), "bea|7".into(), "cy|1".into()],
    )
    .await;
}

/// A snapshot of a million rows, read in chunks, with its progress visible while it runs.
#[tokio::test(flavor = "multi_thread")]
async fn million_row_snapshot() {
    let db = PgServer::start().unwrap();
    up(
        &db,
        "CREATE TABLE events (id BIGINT PRIMARY KEY, kind INT, payload VARCHAR(40)); \
         INSERT INTO events SELECT i, i % 7, 'payload-' || i FROM generate_series(1, 1000000) i; ANALYZE events",
    );
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&create_source_sql(&db, "big", "")).await.unwrap();
    c.batch_execute(
        "CREATE TABLE events (*) FROM big TABLE 'events'; \
         CREATE MATERIALIZED VIEW kinds AS SELECT kind, count(*) AS n FROM events GROUP BY kind",
    )
    .await
    .unwrap();
    crate::cdc::snapshot_with_visible_progress(&c).await;
    assert_eq!(
        rows(&c, "SELECT count(*), sum(id) FROM events").await,
        ["1000000|500000500000"]
    );
    assert_eq!(
        rows(&c, "SELECT kind, n FROM kinds").await,
        upstream(&db, "SELECT kind, count(*) FROM events GROUP BY kind")
    );
    up(&db, "DELETE FROM events WHERE id <= 10");
    eventually(&c, "SELECT count(*) FROM events", &["999990".into()]).await;
}
