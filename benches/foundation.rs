//! Foundation benchmark: bulk load (COPY and multi-row INSERT) and point lookups over pgwire,
//! Freshet beside a throwaway PostgreSQL started in the same run on the same machine.
//!
//! Run: `cargo bench --bench foundation` (writes the table into BENCHMARKS.md).
//! Sizes can be changed with FRESHET_BENCH_ROWS (default 200000) and FRESHET_BENCH_SECS (10).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::SinkExt;
use rand::{Rng, SeedableRng};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Server {
    name: String,
    url: String,
    child: Option<Child>,
    pg_stop: Option<(PathBuf, PathBuf)>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some((pg_ctl, data)) = &self.pg_stop {
            let _ = pg_command(pg_ctl)
                .args(["-D"])
                .arg(data)
                .args(["-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .status();
        }
    }
}

fn freshet(sync: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_freshet"));
    cmd.arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--pg-listen", &format!("127.0.0.1:{port}")])
        .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !sync {
        cmd.arg("--no-sync");
    }
    let child = cmd.spawn().expect("start freshet");
    wait_port(port);
    Server {
        name: if sync {
            "Freshet".into()
        } else {
            "Freshet (--no-sync)".into()
        },
        url: format!("host=127.0.0.1 port={port} user=freshet dbname=freshet"),
        child: Some(child),
        pg_stop: None,
        _dir: dir,
    }
}

fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    versions.sort();
    versions.pop().map(|v| v.join("bin"))
}

/// Runs `bin` as the `postgres` user when we are root (initdb refuses root).
fn pg_command(bin: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres() -> Option<Server> {
    let bin = pg_bin()?;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pgdata");
    std::fs::create_dir_all(&data).unwrap();
    if running_as_root() {
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .ok()?;
    }
    let ok = pg_command(&bin.join("initdb"))
        .args(["-D"])
        .arg(&data)
        .args(["-A", "trust", "-U", "freshet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let port = free_port();
    let ok = pg_command(&bin.join("pg_ctl"))
        .args(["-D"])
        .arg(&data)
        .args(["-w", "-l"])
        .arg(data.join("log"))
        .args([
            "-o",
            &format!("-p {port} -k {} -c listen_addresses=127.0.0.1", data.display()),
        ])
        .arg("start")
        .stdout(Stdio::null())
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    wait_port(port);
    Command::new(bin.join("createdb"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "freshet", "freshet"])
        .status()
        .ok()?;
    Some(Server {
        name: "PostgreSQL".into(),
        url: format!("host=127.0.0.1 port={port} user=freshet dbname=freshet"),
        child: None,
        pg_stop: Some((bin.join("pg_ctl"), data)),
        _dir: dir,
    })
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

const TABLE: &str = "CREATE TABLE load_{} (id BIGINT PRIMARY KEY, a INTEGER, b TEXT, c DOUBLE PRECISION, d TIMESTAMP)";

fn row_text(i: u64) -> String {
    format!(
        "{i}\t{}\tname-{i}\t{}\t2024-01-01 00:00:{:02}\n",
        i % 1000,
        i as f64 * 0.5,
        i % 60
    )
}

async fn copy_load(c: &tokio_postgres::Client, table: &str, from: u64, rows: u64) -> f64 {
    let start = Instant::now();
    let sink = c
        .copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN"))
        .await
        .unwrap();
    futures::pin_mut!(sink);
    let mut buf = String::new();
    for i in from..from + rows {
        buf.push_str(&row_text(i));
        if buf.len() > 1 << 20 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut buf))).await.unwrap();
        }
    }
    sink.send(bytes::Bytes::from(buf)).await.unwrap();
    let n = sink.finish().await.unwrap();
    assert_eq!(n, rows);
    rows as f64 / start.elapsed().as_secs_f64()
}

async fn insert_load(c: &tokio_postgres::Client, table: &str, rows: u64, per_stmt: u64) -> f64 {
    let start = Instant::now();
    let mut i = 0;
    while i < rows {
        let values: Vec<String> = (i..(i + per_stmt).min(rows))
            .map(|k| {
                format!(
                    "({k}, {}, 'name-{k}', {}, '2024-01-01 00:00:{:02}')",
                    k % 1000,
                    k as f64 * 0.5,
                    k % 60
                )
            })
            .collect();
        c.batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(",")))
            .await
            .unwrap();
        i += per_stmt;
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

struct Lookups {
    qps: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn point_lookups(url: &str, table: &str, keys: u64, clients: usize, secs: u64) -> Lookups {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.to_string();
        let table = table.to_string();
        tasks.push(tokio::spawn(async move {
            let c = connect(&url).await;
            let stmt = c
                .prepare(&format!("SELECT id, a, b, c, d FROM {table} WHERE id = $1"))
                .await
                .unwrap();
            let mut lat = Vec::new();
            let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random());
            while Instant::now() < deadline {
                let k = rng.random_range(0..keys) as i64;
                let t = Instant::now();
                let rows = c.query(&stmt, &[&k]).await.unwrap();
                lat.push(t.elapsed().as_micros() as u64);
                assert_eq!(rows.len(), 1);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64;
    Lookups {
        qps: all.len() as f64 / secs as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

struct Result_ {
    name: String,
    copy: f64,
    insert: f64,
    lookups: Lookups,
}

async fn run(server: &Server, rows: u64, secs: u64) -> Result_ {
    let c = connect(&server.url).await;
    for t in ["copy", "insert"] {
        c.batch_execute(&TABLE.replace("{}", t)).await.unwrap();
    }
    let copy = copy_load(&c, "load_copy", 0, rows).await;
    let insert = insert_load(&c, "load_insert", rows / 2, 1000).await;
    let lookups = point_lookups(&server.url, "load_copy", rows, 8, secs).await;
    Result_ {
        name: server.name.clone(),
        copy,
        insert,
        lookups,
    }
}

fn main() {
    let rows: u64 = std::env::var("FRESHET_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let secs: u64 = std::env::var("FRESHET_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut results = Vec::new();
    let pg = postgres();
    let pg_result = pg.as_ref().map(|pg| rt.block_on(run(pg, rows, secs)));
    drop(pg);
    for sync in [true, false] {
        let s = freshet(sync);
        results.push(rt.block_on(run(&s, rows, secs)));
    }
    if let Some(r) = pg_result {
        results.push(r);
    }
    let base = results.iter().find(|r| r.name == "PostgreSQL");
    let ratio = |v: f64, f: fn(&Result_) -> f64| base.map(|b| format!(" ({:.2}×)", v / f(b))).unwrap_or_default();
    let mut table = String::new();
    table.push_str(&format!(
        "Rows: {rows} (COPY), {} (INSERT, 1,000 rows per statement); point lookups: 8 connections, {secs} s, prepared `SELECT ... WHERE id = $1`.\n\n",
        rows / 2
    ));
    table.push_str(
        "| system | COPY rows/s | INSERT rows/s | lookups QPS | p50 µs | p99 µs |\n|---|---|---|---|---|---|\n",
    );
    for r in &results {
        table.push_str(&format!(
            "| {} | {:.0}{} | {:.0}{} | {:.0}{} | {:.0} | {:.0} |\n",
            r.name,
            r.copy,
            ratio(r.copy, |b| b.copy),
            r.insert,
            ratio(r.insert, |b| b.insert),
            r.lookups.qps,
            ratio(r.lookups.qps, |b| b.lookups.qps),
            r.lookups.p50_us,
            r.lookups.p99_us
        ));
    }
    table.push_str("\nRatios in parentheses are against PostgreSQL in the same run.\n");
    println!("{table}");
    common::write_section(
        "foundation",
        "Foundation: bulk load and point lookups",
        "cargo bench --bench foundation",
        &table,
    );
}
