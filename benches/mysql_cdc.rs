//! MySQL CDC benchmark: binlog ingest throughput and end-to-end freshness, Freshet (the server
//! binary, over pgwire) following a throwaway MariaDB started in the same run.
//!
//! - Ingest: the source is created over an empty table, Freshet is stopped, `FRESHET_BENCH_ROWS`
//!   rows (default 500,000) are inserted upstream in transactions of 1,000 rows, and Freshet is
//!   started again: the time until every row is in Freshet (and in a GROUP BY view over the
//!   table) gives binlog row changes per second.
//! - Freshness: upstream updates at 1k, 5k and 20k row changes per second while a probe row is
//!   updated every 20 ms; a client polls a view over the probe over pgwire: the time from the
//!   upstream COMMIT returning to the new value being visible in the view, p50 / p99.
//!
//! Run: `cargo bench --bench mysql_cdc` (writes its section of BENCHMARKS.md).

mod common;

use std::time::{Duration, Instant};

use freshet::testkit::mariadb::MariaDb;
use mysql_async::prelude::Queryable;

async fn upstream_conn(db: &MariaDb) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db.port())
        .user(Some(MariaDb::CDC_USER))
        .pass(Some(MariaDb::CDC_PASSWORD))
        .db_name(Some("bench"));
    mysql_async::Conn::new(opts).await.unwrap()
}

/// Binlog row changes per second while catching up on a backlog of `rows` inserts.
async fn ingest(db: &MariaDb, rows: u64) -> (f64, f64) {
    let mut up = upstream_conn(db).await;
    up.query_drop("CREATE TABLE ingest (id BIGINT PRIMARY KEY, g INT, v BIGINT, s VARCHAR(32))")
        .await
        .unwrap();
    let mut f = common::Freshet::start();
    let c = f.connect().await;
    c.batch_execute(&source_sql(db, "ing", 6101)).await.unwrap();
    c.batch_execute(
        "CREATE TABLE ingest (*) FROM ing TABLE 'bench.ingest'; \
         CREATE MATERIALIZED VIEW ingest_groups AS SELECT g, count(*) AS n, sum(v) AS total FROM ingest GROUP BY g",
    )
    .await
    .unwrap();
    common::wait_for(
        &c,
        "SELECT count(*) FROM freshet_catalog.sources WHERE state = 'streaming'",
        1,
        Duration::from_secs(60),
    )
    .await;
    drop(c);
    f.stop();
    let started = Instant::now();
    let mut done = 0;
    while done < rows {
        let n = (rows - done).min(1000);
        let values: Vec<String> = (done..done + n)
            .map(|i| format!("({i}, {}, {}, 'row {i}')", i % 100, i * 3))
            .collect();
        up.query_drop(format!("INSERT INTO ingest VALUES {}", values.join(",")))
            .await
            .unwrap();
        done += n;
    }
    let upstream_rate = rows as f64 / started.elapsed().as_secs_f64();
    f.launch();
    let started = Instant::now();
    let c = f.connect().await;
    common::wait_for(
        &c,
        "SELECT sum(n) FROM ingest_groups",
        rows as i64,
        Duration::from_secs(600),
    )
    .await;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    assert_eq!(common::first_i64(&c, "SELECT count(*) FROM ingest").await, rows as i64);
    (rate, upstream_rate)
}

fn source_sql(db: &MariaDb, name: &str, server_id: u32) -> String {
    format!(
        "CREATE SOURCE {name} WITH (connector = 'mysql-cdc', hostname = '127.0.0.1', port = '{}', \
         username = '{}', password = '{}', database.name = 'bench', server.id = '{server_id}')",
        db.port(),
        MariaDb::CDC_USER,
        MariaDb::CDC_PASSWORD
    )
}

fn main() {
    let rows = std::env::var("FRESHET_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000u64);
    let secs = std::env::var("FRESHET_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10u64);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = MariaDb::start().unwrap();
    db.exec_sync(&format!(
        "CREATE DATABASE bench; GRANT ALL ON bench.* TO '{}'@'%'; USE bench; \
         CREATE TABLE churn (id INT PRIMARY KEY, g INT, v BIGINT); \
         INSERT INTO churn SELECT seq, seq % 100, 0 FROM seq_0_to_99999; \
         CREATE TABLE probe (id INT PRIMARY KEY, seq BIGINT); INSERT INTO probe VALUES (1, 0)",
        MariaDb::CDC_USER
    ))
    .unwrap();
    let (ingest_rate, upstream_rate) = rt.block_on(ingest(&db, rows));
    println!("ingest: {ingest_rate:.0} rows/s (upstream wrote {upstream_rate:.0} rows/s)");
    let f = common::Freshet::start();
    let mut fresh = Vec::new();
    rt.block_on(async {
        let c = f.connect().await;
        c.batch_execute(&source_sql(&db, "fr", 6102)).await.unwrap();
        c.batch_execute(
            "CREATE TABLE churn (*) FROM fr TABLE 'bench.churn'; \
             CREATE TABLE probe (*) FROM fr TABLE 'bench.probe'; \
             CREATE MATERIALIZED VIEW churn_groups AS SELECT g, count(*) AS n, sum(v) AS total FROM churn GROUP BY g; \
             CREATE MATERIALIZED VIEW probe_view AS SELECT id, seq FROM probe WHERE seq >= 0",
        )
        .await
        .unwrap();
        common::wait_for(&c, "SELECT sum(n) FROM churn_groups", 100_000, Duration::from_secs(120)).await;
        for rate in [1_000u64, 5_000, 20_000] {
            let (p50, p99, n) =
                common::freshness(upstream_conn(&db).await, upstream_conn(&db).await, &f, rate, secs).await;
            println!("freshness at {rate} changes/s: p50 {p50:.0} µs, p99 {p99:.0} µs ({n} probes)");
            fresh.push((rate, p50, p99, n));
        }
    });
    let mut body = format!(
        "A throwaway MariaDB 10.11 (binlog_format ROW, FULL row images) and the Freshet server (release \
         build, WAL sync on) on the same machine.\n\n\
         Ingest: {rows} upstream inserts (transactions of 1,000 rows) queued in the binlog while Freshet was \
         stopped, then caught up into a table and a GROUP BY view over it: **{ingest_rate:.0} row changes/s** \
         (upstream wrote them at {upstream_rate:.0} rows/s).\n\n\
         Freshness: upstream COMMIT returned → the new value visible over pgwire in a materialized view over \
         the CDC table, while a background load updates other rows at the given rate (transactions every 10 ms; \
         a probe row is updated every 20 ms and polled by a client).\n\n\
         | upstream row changes/s | p50 ms | p99 ms | probes |\n|---|---|---|---|\n"
    );
    for (rate, p50, p99, n) in &fresh {
        body.push_str(&format!("| {rate} | {:.1} | {:.1} | {n} |\n", p50 / 1e3, p99 / 1e3));
    }
    body.push_str(
        "\nThe binlog carries commit times in whole seconds, so freshness is measured by the client: \
         the time between the upstream COMMIT returning to the probe writer and the poller first seeing \
         the value.\n",
    );
    println!("{body}");
    common::write_section(
        "mysql_cdc",
        "MySQL CDC: binlog ingest and freshness",
        "cargo bench --bench mysql_cdc",
        &body,
    );
}
