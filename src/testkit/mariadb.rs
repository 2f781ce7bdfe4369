//! A throwaway MariaDB server for connector tests: its own data directory, port and binary log.
//!
//! `mariadb-install-db` fills a fresh directory (owned by `mysql`: mariadbd refuses to run as
//! root), then `mariadbd --no-defaults` starts on a free port with the settings CDC needs
//! (`log_bin`, `binlog_format=ROW`, `binlog_row_image=FULL`, `binlog_row_metadata=FULL`). SQL is
//! run as root through the `mariadb` client over the server's socket; connectors connect over TCP
//! as the CDC user [`MariaDb::CDC_USER`]. The server is killed and its directory removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::connectors::mysql::{MysqlConfig, SslMode};
use crate::error::{Error, Result};

/// A MariaDB server started for one test.
pub struct MariaDb {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

fn find_binary(name: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::internal(format!("testkit: {name} not found (apt-get install mariadb-server)")))
}

fn testkit_err(what: impl std::fmt::Display) -> Error {
    Error::internal(format!("testkit: {what}"))
}

impl MariaDb {
    /// The user connectors log in as (REPLICATION SLAVE, BINLOG MONITOR, SELECT, RELOAD).
    pub const CDC_USER: &'static str = "freshet_cdc";
    pub const CDC_PASSWORD: &'static str = "cdc-secret";

    /// Installs and starts a new server, and creates the CDC user.
    pub fn start() -> Result<MariaDb> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "freshet-mariadb-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(testkit_err)?;
        // Its own tmpdir: concurrent servers sharing /tmp collide on temporary table names.
        std::fs::create_dir_all(dir.join("tmp")).map_err(testkit_err)?;
        let status = Command::new("chown")
            .arg("-R")
            .arg("mysql:mysql")
            .arg(&dir)
            .status()
            .map_err(testkit_err)?;
        if !status.success() {
            return Err(testkit_err("chown mysql of the data directory failed"));
        }
        let out = Command::new(find_binary("mariadb-install-db")?)
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .output()
            .map_err(testkit_err)?;
        if !out.status.success() {
            return Err(testkit_err(format!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(testkit_err)?
            .port();
        let mut db = MariaDb { dir, port, child: None };
        db.launch()?;
        db.exec_sync(&format!(
            "CREATE USER '{u}'@'%' IDENTIFIED BY '{p}'; \
             GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT, RELOAD ON *.* TO '{u}'@'%';",
            u = Self::CDC_USER,
            p = Self::CDC_PASSWORD
        ))?;
        Ok(db)
    }

    fn launch(&mut self) -> Result<()> {
        let data = self.dir.join("data");
        let child = Command::new(find_binary("mariadbd")?)
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--log-bin={}", data.join("binlog").display()))
            .arg("--binlog-format=ROW")
            .arg("--binlog-row-image=FULL")
            .arg("--binlog-row-metadata=FULL")
            .arg("--server-id=1")
            .arg("--skip-name-resolve")
            .arg("--innodb-log-file-size=16M")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--innodb-flush-log-at-trx-commit=2")
            .arg("--sync-binlog=0")
            .arg(format!("--log-error={}", self.dir.join("error.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(testkit_err)?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.exec_sync("SELECT 1").is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                return Err(testkit_err(format!("mariadbd exited ({status}): {log}")));
            }
            if Instant::now() > deadline {
                return Err(testkit_err("mariadbd did not become ready in 60 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A source configuration for the CDC user, reading `database`.
    pub fn config(&self, database: &str, server_id: u32) -> MysqlConfig {
        MysqlConfig {
            hostname: "127.0.0.1".into(),
            port: self.port,
            username: Self::CDC_USER.into(),
            password: Self::CDC_PASSWORD.into(),
            database: database.into(),
            server_id,
            ssl_mode: SslMode::Disabled,
        }
    }

    /// Runs SQL (several statements allowed) as root; returns the rows, tab-separated fields.
    pub fn exec_sync(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let out = Command::new(find_binary("mariadb")?)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--user=root")
            .arg("--batch")
            .arg("--skip-column-names")
            .arg("-e")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .map_err(testkit_err)?;
        if !out.status.success() {
            return Err(testkit_err(format!(
                "`{sql}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect())
    }

    /// [`MariaDb::exec_sync`] off the async runtime's worker thread.
    pub async fn exec(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        tokio::task::block_in_place(|| self.exec_sync(sql))
    }

    /// Stops the server (clean shutdown) and starts it again on the same data and port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
