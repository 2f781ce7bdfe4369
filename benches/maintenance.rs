//! View maintenance benchmark: the cost of keeping materialized views fresh under updates,
//! beside DataFusion recomputing the same view from scratch, in the same process and run.
//!
//! A table of `FRESHET_BENCH_ROWS` rows (default 1,000,000) and a 1,000-row dimension table;
//! for each view shape (none, GROUP BY aggregate, join + aggregate, top-N) it applies
//! `FRESHET_BENCH_UPDATES` single-row updates, one epoch each (default 10,000), then the same
//! number of rows in batches of 1,000 rows per epoch, with WAL sync on and off. A bulk update
//! through a filter + GROUP BY view measures changed rows per second. `FRESHET_BENCH_SCALE_ROWS`
//! (default 10,000,000; 0 to skip) repeats the single-row GROUP BY figure at that table size.
//!
//! Run: `cargo bench --bench maintenance` (writes its section of BENCHMARKS.md).

mod common;

use std::sync::Arc;
use std::time::Instant;

use freshet::database::{Database, DatabaseOptions};
use freshet::session::{Output, Session};
use futures::StreamExt;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `sql`, draining any rows; returns the number of rows read.
async fn exec(s: &mut Session, sql: &str) -> usize {
    let mut n = 0;
    for r in s.run_sql(sql).await {
        if let Output::Rows { mut stream, .. } = r.unwrap_or_else(|e| panic!("{sql}: {e}")) {
            while let Some(b) = stream.next().await {
                n += b.unwrap_or_else(|e| panic!("{sql}: {e}")).num_rows();
            }
        }
    }
    n
}

const SHAPES: [(&str, &str); 4] = [
    ("no view (DML only)", ""),
    (
        "GROUP BY aggregate",
        "SELECT g, count(*) AS n, sum(v) AS total FROM t GROUP BY g",
    ),
    (
        "join + aggregate",
        "SELECT d.name, count(*) AS n, sum(t.v) AS total FROM t JOIN d ON t.g = d.g GROUP BY d.name",
    ),
    ("top-N (10)", "SELECT id, v FROM t ORDER BY v DESC, id LIMIT 10"),
];

struct Figures {
    shape: &'static str,
    sync: bool,
    p50_us: f64,
    p99_us: f64,
    single_rows_per_s: f64,
    batch_rows_per_s: f64,
    recompute_ms: f64,
}

async fn open(sync: bool, rows: u64) -> (Arc<Database>, Session, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), DatabaseOptions { sync }).await.unwrap();
    let mut s = Session::new(db.clone(), "freshet", "freshet");
    exec(&mut s, "CREATE TABLE t (id BIGINT PRIMARY KEY, g INT, v BIGINT)").await;
    exec(&mut s, "CREATE TABLE d (g INT PRIMARY KEY, name TEXT)").await;
    exec(
        &mut s,
        "INSERT INTO d SELECT i, 'group ' || (i % 100) FROM generate_series(0, 999) AS s(i)",
    )
    .await;
    let chunk = 500_000;
    let mut from = 1;
    while from <= rows {
        let to = (from + chunk - 1).min(rows);
        exec(
            &mut s,
            &format!(
                "INSERT INTO t SELECT i, i % 1000, (i * 7919) % 1000003 FROM generate_series({from}, {to}) AS s(i)"
            ),
        )
        .await;
        from = to + 1;
    }
    (db, s, dir)
}

/// Single-row updates (one epoch each), then batches of 1,000 rows; latencies in µs.
async fn updates(s: &mut Session, rows: u64, n: u64, seed: &mut u64) -> (Vec<f64>, f64, f64) {
    let mut next = || {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        1 + (*seed >> 33) % rows
    };
    let mut lat = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for _ in 0..n {
        let id = next();
        let t = Instant::now();
        exec(s, &format!("UPDATE t SET v = v + 1 WHERE id = {id}")).await;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let single_rate = n as f64 / started.elapsed().as_secs_f64();
    let batches = (n / 1000).max(1);
    let started = Instant::now();
    for _ in 0..batches {
        let from = next().min(rows.saturating_sub(999)).max(1);
        exec(
            s,
            &format!("UPDATE t SET v = v + 1 WHERE id BETWEEN {from} AND {}", from + 999),
        )
        .await;
    }
    let batch_rate = (batches * 1000) as f64 / started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (lat, single_rate, batch_rate)
}

async fn run_shapes(sync: bool, rows: u64, n: u64) -> Vec<Figures> {
    let (_db, mut s, _dir) = open(sync, rows).await;
    let mut out = Vec::new();
    let mut seed = 42u64;
    for (shape, query) in SHAPES {
        if !query.is_empty() {
            exec(&mut s, &format!("CREATE MATERIALIZED VIEW bench_v AS {query}")).await;
        }
        let (lat, single, batch) = updates(&mut s, rows, n, &mut seed).await;
        let recompute_ms = if query.is_empty() {
            0.0
        } else {
            let t = Instant::now();
            exec(&mut s, query).await;
            t.elapsed().as_secs_f64() * 1e3
        };
        if !query.is_empty() {
            exec(&mut s, "DROP MATERIALIZED VIEW bench_v").await;
        }
        let f = Figures {
            shape,
            sync,
            p50_us: common::quantile(&lat, 0.5),
            p99_us: common::quantile(&lat, 0.99),
            single_rows_per_s: single,
            batch_rows_per_s: batch,
            recompute_ms,
        };
        println!(
            "{shape} (sync {sync}): p50 {:.0} µs, p99 {:.0} µs, single {:.0} rows/s, batched {:.0} rows/s, recompute {:.1} ms",
            f.p50_us, f.p99_us, f.single_rows_per_s, f.batch_rows_per_s, f.recompute_ms
        );
        out.push(f);
    }
    out
}

/// Changed rows per second through a filter + GROUP BY view in bulk (one big UPDATE), beside
/// the same UPDATE without the view.
async fn bulk(rows: u64) -> (f64, f64) {
    let (_db, mut s, _dir) = open(false, rows).await;
    let n = rows.min(200_000);
    let t = Instant::now();
    exec(&mut s, &format!("UPDATE t SET v = v + 1 WHERE id <= {n}")).await;
    let without = n as f64 / t.elapsed().as_secs_f64();
    exec(
        &mut s,
        "CREATE MATERIALIZED VIEW bulk_v AS SELECT g, count(*) AS n, sum(v) AS total FROM t WHERE v % 3 <> 0 GROUP BY g",
    )
    .await;
    let t = Instant::now();
    exec(&mut s, &format!("UPDATE t SET v = v + 1 WHERE id <= {n}")).await;
    let with = n as f64 / t.elapsed().as_secs_f64();
    (without, with)
}

fn main() {
    let rows = env_u64("FRESHET_BENCH_ROWS", 1_000_000);
    let n = env_u64("FRESHET_BENCH_UPDATES", 10_000);
    let scale_rows = env_u64("FRESHET_BENCH_SCALE_ROWS", 10_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut figures = Vec::new();
    for sync in [false, true] {
        figures.extend(rt.block_on(run_shapes(sync, rows, n)));
    }
    let (bulk_without, bulk_with) = rt.block_on(bulk(rows));
    println!("bulk: {bulk_without:.0} rows/s without view, {bulk_with:.0} rows/s with filter + GROUP BY view");
    let scale = (scale_rows > 0).then(|| {
        rt.block_on(async {
            let (_db, mut s, _dir) = open(false, scale_rows).await;
            exec(&mut s, &format!("CREATE MATERIALIZED VIEW bench_v AS {}", SHAPES[1].1)).await;
            let mut seed = 7u64;
            let (lat, _, _) = updates(&mut s, scale_rows, n.min(5_000), &mut seed).await;
            (common::quantile(&lat, 0.5), common::quantile(&lat, 0.99))
        })
    });
    let mut body = format!(
        "Table `t` of {rows} rows (`id` primary key, 1,000 groups) and a 1,000-row dimension table `d`, one \
         process (library API, no network). Each row below: {n} single-row `UPDATE t SET v = v + 1 WHERE id = k` \
         (one epoch each; latency of the whole statement: parse, plan, write, maintain, commit), then the same number \
         of rows in batches of 1,000 rows per epoch. *recompute* is DataFusion running the view's query from scratch \
         over the same table in the same run; *ratio* is recompute time / p50 update latency.\n\n\
         | view | WAL sync | p50 µs | p99 µs | single-row updates/s | batched rows/s | recompute ms | ratio |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for f in &figures {
        let ratio = if f.recompute_ms > 0.0 {
            format!("{:.0}×", f.recompute_ms * 1e3 / f.p50_us)
        } else {
            "—".into()
        };
        body.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |\n",
            f.shape,
            if f.sync { "on" } else { "off" },
            f.p50_us,
            f.p99_us,
            f.single_rows_per_s,
            f.batch_rows_per_s,
            if f.recompute_ms > 0.0 {
                format!("{:.1}", f.recompute_ms)
            } else {
                "—".into()
            },
            ratio
        ));
    }
    body.push_str(&format!(
        "\nBulk: one `UPDATE` of {} rows, sync off: {bulk_without:.0} rows/s without a view, {bulk_with:.0} rows/s \
         through a filter + GROUP BY view.\n",
        rows.min(200_000)
    ));
    if let Some((p50, p99)) = scale {
        let base = figures
            .iter()
            .find(|f| !f.sync && f.shape == SHAPES[1].0)
            .map(|f| f.p50_us)
            .unwrap_or(0.0);
        body.push_str(&format!(
            "\nScaling: GROUP BY view, single-row updates, sync off, {scale_rows} rows: p50 {p50:.0} µs, p99 {p99:.0} µs \
             ({:.2}× the p50 at {rows} rows).\n",
            if base > 0.0 { p50 / base } else { 0.0 }
        ));
    }
    println!("{body}");
    common::write_section(
        "maintenance",
        "View maintenance: incremental updates against recomputation",
        "cargo bench --bench maintenance",
        &body,
    );
}
