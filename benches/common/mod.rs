//! What every benchmark program shares: the machine line, and writing its section into
//! BENCHMARKS.md (between `<!-- name:start -->` and `<!-- name:end -->`, replaced in place).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// "N cores, M GiB RAM".
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0))
        })
        .unwrap_or(0);
    format!("{cores} cores, {} GiB RAM", mem / 1024 / 1024)
}

fn output_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Replaces (or appends) section `name` of BENCHMARKS.md with `title` and `body`.
pub fn write_section(name: &str, title: &str, command: &str, body: &str) {
    // "-dirty" when the run measured uncommitted changes.
    let commit = output_of("git", &["describe", "--always", "--dirty"]);
    let date = output_of("date", &["-u", "+%Y-%m-%d"]);
    let (start, end) = (format!("<!-- {name}:start -->"), format!("<!-- {name}:end -->"));
    let section = format!(
        "{start}\n## {title}\n\nCommand: `{command}`. Date: {date}. Commit: {commit}. Machine: {}.\n\n{body}{end}",
        machine()
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) => format!("{}{}{}", &old[..a], section, &old[b + end.len()..]),
        _ => format!("{}\n\n{}\n", old.trim_end(), section),
    };
    std::fs::write(&path, new).unwrap();
}

/// The q-quantile (0..=1) of sorted `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

// ---- A Freshet server process, and the CDC freshness probe (the CDC benches). ----

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `FRESHET_BENCH_SERVER_WRAPPER`: a command (words split at spaces) the server runs under,
/// e.g. a profiler (`scripts/symbol-order.sh`). Its figures are then the wrapper's, not the
/// server's: the Nexmark bench neither runs its peer nor writes BENCHMARKS.md.
pub fn wrapper() -> Option<Vec<String>> {
    let w = std::env::var("FRESHET_BENCH_SERVER_WRAPPER").ok()?;
    let words: Vec<String> = w.split_whitespace().map(str::to_string).collect();
    (!words.is_empty()).then_some(words)
}

/// The command that starts the Freshet binary this bench was built with (under the wrapper,
/// if one is set).
fn server_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_freshet");
    match wrapper() {
        Some(words) => {
            let mut c = Command::new(&words[0]);
            c.args(&words[1..]).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

pub struct Freshet {
    child: Option<Child>,
    data: std::path::PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Freshet {
    pub fn start() -> Freshet {
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

    /// Starts the server on the data directory. A server that exits at once (a port taken
    /// between `free_port` and its bind: two `free_port`s may even answer the same port) is
    /// started again on new ports, up to three times.
    pub fn launch(&mut self) {
        for attempt in 1..=3 {
            let http = std::iter::repeat_with(free_port)
                .find(|p| *p != self.port)
                .expect("a port");
            let mut child = server_command()
                .arg("server")
                .arg("--data-dir")
                .arg(&self.data)
                .args(["--pg-listen", &format!("127.0.0.1:{}", self.port)])
                .args(["--http-listen", &format!("127.0.0.1:{http}")])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start freshet");
            let start = Instant::now();
            let exited = loop {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    break None;
                }
                if let Some(status) = child.try_wait().expect("the server's status") {
                    break Some(status);
                }
                assert!(start.elapsed() < Duration::from_secs(60), "freshet did not start");
                std::thread::sleep(Duration::from_millis(20));
            };
            match exited {
                None => {
                    self.child = Some(child);
                    return;
                }
                Some(status) if attempt < 3 => {
                    eprintln!("freshet exited at start ({status}); starting it again on other ports");
                    self.port = free_port();
                }
                Some(status) => panic!("freshet exited at start ({status})"),
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if wrapper().is_some() {
                // A profiler writes its profile when the server exits, not when it is killed.
                let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(120) && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
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

pub async fn first_i64(c: &tokio_postgres::Client, sql: &str) -> i64 {
    let msgs = c.simple_query(sql).await.unwrap();
    msgs.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .unwrap_or(-1)
}

pub async fn wait_for(c: &tokio_postgres::Client, sql: &str, want: i64, limit: Duration) {
    wait_polling(c, sql, want, limit, Duration::from_millis(5)).await
}

/// [`wait_for`], asking every `every`: each ask is a query the server plans and runs, which
/// a figure of the server's CPU time counts.
pub async fn wait_polling(c: &tokio_postgres::Client, sql: &str, want: i64, limit: Duration, every: Duration) {
    let start = Instant::now();
    while first_i64(c, sql).await != want {
        assert!(start.elapsed() < limit, "{sql} did not reach {want}");
        tokio::time::sleep(every).await;
    }
}

/// An upstream database connection the freshness probe writes through.
pub trait Upstream: Send {
    fn exec(&mut self, sql: String) -> impl std::future::Future<Output = ()> + Send;
}

impl Upstream for mysql_async::Conn {
    async fn exec(&mut self, sql: String) {
        use mysql_async::prelude::Queryable;
        self.query_drop(sql).await.unwrap()
    }
}

impl Upstream for tokio_postgres::Client {
    async fn exec(&mut self, sql: String) {
        self.batch_execute(&sql).await.unwrap()
    }
}

/// Freshness (µs) at `rate` row changes per second: COMMIT upstream → visible in a view.
pub async fn freshness<U: Upstream + 'static>(
    mut load: U,
    mut probe: U,
    f: &Freshet,
    rate: u64,
    secs: u64,
) -> (f64, f64, usize) {
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
            load.exec(format!("UPDATE churn SET v = v + 1 WHERE id BETWEEN {from} AND {to}"))
                .await;
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
            probe.exec(format!("UPDATE probe SET seq = {seq} WHERE id = 1")).await;
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
    (quantile(&lat, 0.5), quantile(&lat, 0.99), lat.len())
}
