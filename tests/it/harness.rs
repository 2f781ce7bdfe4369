//! Starts real Freshet servers on free ports with throwaway data directories.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `freshet server` process.
pub struct TestServer {
    pub pg_port: u16,
    pub http_port: u16,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    log: PathBuf,
    /// Extra `freshet server` arguments.
    args: Vec<String>,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestServer {
    /// Starts a server on a new, empty data directory.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server on a new, empty data directory with extra `freshet server` arguments.
    pub fn start_with(args: &[&str]) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut s = TestServer {
            pg_port: 0,
            http_port: 0,
            data_dir: dir,
            log: tmp.path().join("server.log"),
            _tmp: Some(tmp),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        for _attempt in 0..5 {
            self.pg_port = free_port();
            self.http_port = free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_freshet"))
                .arg("server")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--pg-listen")
                .arg(format!("127.0.0.1:{}", self.pg_port))
                .arg("--http-listen")
                .arg(format!("127.0.0.1:{}", self.http_port))
                .args(&self.args)
                .env("RUST_LOG", "info")
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn freshet");
            self.child = Some(child);
            if self.wait_ready(Duration::from_secs(60)) {
                return;
            }
            self.kill9();
        }
        panic!("freshet did not start; log:\n{}", self.log_text());
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        let addr: SocketAddr = format!("127.0.0.1:{}", self.pg_port).parse().unwrap();
        while start.elapsed() < timeout {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9` the server.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGINT (a graceful shutdown) and returns how it exited (`None`:
    /// it was still running after `timeout`, and was killed).
    pub fn interrupt(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -INT failed");
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The extra `freshet server` arguments of the next (re)start.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Starts the server again on the same data directory (new ports).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn pg_url(&self) -> String {
        format!("host=127.0.0.1 port={} user=freshet dbname=freshet", self.pg_port)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// A connected tokio-postgres client (its connection task spawned).
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.pg_url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log_text()));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Where a command-line tool is, if installed.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}
