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

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freshet::testkit::mariadb::MariaDb;
use mysql_async::prelude::Queryable;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Freshet {
    child: Option<Child>,
    data: std::path::PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Freshet {
    fn start() -> Freshet {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Freshet {
            child: None,
            data: dir.path().join("data"),
            port: free_port(),
            _dir: dir,
        };
        f.launch();
        f
    }

    fn launch(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_freshet"))
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--pg-listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start freshet");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(60), "freshet did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn connect(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=freshet dbname=freshet", self.port),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        c
    }
}

impl Drop for Freshet {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn upstream_conn(db: &MariaDb) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db.port())
        .user(Some(MariaDb::CDC_USER))
        .pass(Some(MariaDb::CDC_PASSWORD))
        .db_name(Some("bench"));
    mysql_async::Conn::new(opts).await.unwrap()
}

async fn first_i64(c: &tokio_postgres::Client, sql: &str) -> i64 {
    let msgs = c.simple_query(sql).await.unwrap();
    msgs.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .unwrap_or(-1)
}

async fn wait_for(c: &tokio_postgres::Client, sql: &str, want: i64, limit: Duration) {
    let start = Instant::now();
    while first_i64(c, sql).await != want {
        assert!(start.elapsed() < limit, "{sql} did not reach {want}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Binlog row changes per second while catching up on a backlog of `rows` inserts.
async fn ingest(db: &MariaDb, rows: u64) -> (f64, f64) {
    let mut up = upstream_conn(db).await;
    up.query_drop("CREATE TABLE ingest (id BIGINT PRIMARY KEY, g INT, v BIGINT, s VARCHAR(32))")
        .await
        .unwrap();
    let mut f = Freshet::start();
    let c = f.connect().await;
    c.batch_execute(&source_sql(db, "ing", 6101)).await.unwrap();
    c.batch_execute(
        "CREATE TABLE ingest (*) FROM ing TABLE 'bench.ingest'; \
         CREATE MATERIALIZED VIEW ingest_groups AS SELECT g, count(*) AS n, sum(v) AS total FROM ingest GROUP BY g",
    )
    .await
    .unwrap();
    wait_for(
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
    wait_for(
        &c,
        "SELECT sum(n) FROM ingest_groups",
        rows as i64,
        Duration::from_secs(600),
    )
    .await;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    assert_eq!(first_i64(&c, "SELECT count(*) FROM ingest").await, rows as i64);
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

/// Freshness (µs) at `rate` row changes per second: COMMIT upstream → visible in a view.
async fn freshness(db: &MariaDb, f: &Freshet, rate: u64, secs: u64) -> (f64, f64, usize) {
    let mut load = upstream_conn(db).await;
    let mut probe = upstream_conn(db).await;
    let c = f.connect().await;
    let base = first_i64(&c, "SELECT coalesce(max(seq), 0) FROM probe_view").await;
    let stop_at = Instant::now() + Duration::from_secs(secs);
    // Load: every 10 ms a transaction updating rate/100 rows.
    let per_tick = (rate / 100).max(1);
    let load_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut from = 0u64;
        while Instant::now() < stop_at {
            tick.tick().await;
            let to = from + per_tick - 1;
            load.query_drop(format!("UPDATE churn SET v = v + 1 WHERE id BETWEEN {from} AND {to}"))
                .await
                .unwrap();
            from = (to + 1) % 100_000;
        }
    });
    // Probe: every 20 ms a new sequence number, with its commit time.
    let probe_task = tokio::spawn(async move {
        let mut commits = Vec::new();
        let mut seq = base;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while Instant::now() < stop_at {
            tick.tick().await;
            seq += 1;
            probe
                .query_drop(format!("UPDATE probe SET seq = {seq} WHERE id = 1"))
                .await
                .unwrap();
            commits.push((seq, Instant::now()));
        }
        commits
    });
    let mut seen: Vec<(i64, Instant)> = Vec::new();
    let mut last = base;
    let poll = c.prepare("SELECT seq FROM probe_view").await.unwrap();
    while Instant::now() < stop_at + Duration::from_secs(2) {
        let v: i64 = c.query_one(&poll, &[]).await.unwrap().get(0);
        if v != last {
            seen.push((v, Instant::now()));
            last = v;
        }
    }
    load_task.await.unwrap();
    let commits = probe_task.await.unwrap();
    // Each committed seq is visible from the first observation of a value >= it.
    let mut lat = Vec::new();
    for (seq, committed) in &commits {
        if let Some((_, at)) = seen.iter().find(|(v, _)| v >= seq) {
            lat.push(at.saturating_duration_since(*committed).as_secs_f64() * 1e6);
        }
    }
    lat.sort_by(f64::total_cmp);
    (common::quantile(&lat, 0.5), common::quantile(&lat, 0.99), lat.len())
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
    let f = Freshet::start();
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
        wait_for(&c, "SELECT sum(n) FROM churn_groups", 100_000, Duration::from_secs(120)).await;
        for rate in [1_000u64, 5_000, 20_000] {
            let (p50, p99, n) = freshness(&db, &f, rate, secs).await;
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
