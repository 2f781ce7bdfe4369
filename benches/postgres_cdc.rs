//! PostgreSQL CDC benchmark: logical replication ingest throughput and end-to-end freshness,
//! Freshet (the server binary, over pgwire) following a throwaway PostgreSQL 15 started in the
//! same run.
//!
//! - Ingest: the source is created over an empty table, Freshet is stopped, `FRESHET_BENCH_ROWS`
//!   rows (default 500,000) are inserted upstream in transactions of 1,000 rows (the slot keeps
//!   them), and Freshet is started again: the time until every row is in Freshet (and in a
//!   GROUP BY view over the table) gives row changes per second.
//! - Freshness: upstream updates at 1k, 5k and 20k row changes per second while a probe row is
//!   updated every 20 ms; a client polls a view over the probe over pgwire: the time from the
//!   upstream COMMIT returning to the new value being visible in the view, p50 / p99.
//!
//! Run: `cargo bench --bench postgres_cdc` (writes its section of BENCHMARKS.md).

mod common;

use std::time::{Duration, Instant};

use freshet::testkit::postgres::PgServer;

async fn upstream_conn(db: &PgServer) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={} password={} dbname={}",
            db.port(),
            PgServer::CDC_USER,
            PgServer::CDC_PASSWORD,
            PgServer::DATABASE
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    c
}

fn source_sql(db: &PgServer, name: &str) -> String {
    format!(
        "CREATE SOURCE {name} WITH (connector = 'postgres-cdc', hostname = '127.0.0.1', port = '{}', \
         username = '{}', password = '{}', database.name = '{}', slot.name = 'bench_{name}', \
         publication.name = 'bench_{name}', slot.drop.on.drop = 'true')",
        db.port(),
        PgServer::CDC_USER,
        PgServer::CDC_PASSWORD,
        PgServer::DATABASE
    )
}

/// Row changes per second while catching up on a backlog of `rows` inserts.
async fn ingest(db: &PgServer, rows: u64) -> (f64, f64) {
    let up = upstream_conn(db).await;
    up.batch_execute("CREATE TABLE ingest (id BIGINT PRIMARY KEY, g INT, v BIGINT, s VARCHAR(32))")
        .await
        .unwrap();
    let mut f = common::Freshet::start();
    let c = f.connect().await;
    c.batch_execute(&source_sql(db, "ing")).await.unwrap();
    c.batch_execute(
        "CREATE TABLE ingest (*) FROM ing TABLE 'public.ingest'; \
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
        up.batch_execute(&format!("INSERT INTO ingest VALUES {}", values.join(",")))
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
    c.batch_execute("DROP SOURCE ing CASCADE").await.unwrap();
    (rate, upstream_rate)
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
    let db = PgServer::start().unwrap();
    let (ingest_rate, upstream_rate) = rt.block_on(ingest(&db, rows));
    println!("ingest: {ingest_rate:.0} rows/s (upstream wrote {upstream_rate:.0} rows/s)");
    let f = common::Freshet::start();
    let mut fresh = Vec::new();
    rt.block_on(async {
        let up = upstream_conn(&db).await;
        up.batch_execute(
            "CREATE TABLE churn (id INT PRIMARY KEY, g INT, v BIGINT); \
             INSERT INTO churn SELECT i, i % 100, 0 FROM generate_series(0, 99999) i; \
             CREATE TABLE probe (id INT PRIMARY KEY, seq BIGINT); INSERT INTO probe VALUES (1, 0)",
        )
        .await
        .unwrap();
        let c = f.connect().await;
        c.batch_execute(&source_sql(&db, "fr")).await.unwrap();
        c.batch_execute(
            "CREATE TABLE churn (*) FROM fr TABLE 'public.churn'; \
             CREATE TABLE probe (*) FROM fr TABLE 'public.probe'; \
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
        "A throwaway PostgreSQL 15 (wal_level logical, fsync off) and the Freshet server (release build, WAL \
         sync on) on the same machine.\n\n\
         Ingest: {rows} upstream inserts (transactions of 1,000 rows) kept by the replication slot while \
         Freshet was stopped, then caught up into a table and a GROUP BY view over it: **{ingest_rate:.0} row \
         changes/s** (upstream wrote them at {upstream_rate:.0} rows/s).\n\n\
         Freshness: upstream COMMIT returned → the new value visible over pgwire in a materialized view over \
         the CDC table, while a background load updates other rows at the given rate (transactions every 10 ms; \
         a probe row is updated every 20 ms and polled by a client).\n\n\
         | upstream row changes/s | p50 ms | p99 ms | probes |\n|---|---|---|---|\n"
    );
    for (rate, p50, p99, n) in &fresh {
        body.push_str(&format!("| {rate} | {:.1} | {:.1} | {n} |\n", p50 / 1e3, p99 / 1e3));
    }
    println!("{body}");
    common::write_section(
        "postgres_cdc",
        "PostgreSQL CDC: logical replication ingest and freshness",
        "cargo bench --bench postgres_cdc",
        &body,
    );
}
