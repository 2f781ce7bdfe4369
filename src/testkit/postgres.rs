//! A throwaway PostgreSQL 15 for connector tests: its own data directory, port and socket.
//!
//! `initdb` fills a fresh directory, then `postgres` starts on a free port with the settings
//! logical replication needs (`wal_level=logical`, replication slots and WAL senders). Both refuse
//! to run as root, so when the tests run as root they run as the `postgres` user (the directory is
//! chowned to it). `pg_hba.conf` makes the CDC user [`PgServer::CDC_USER`] authenticate with
//! SCRAM-SHA-256 over TCP, for both ordinary and replication connections; everyone else is trusted.
//! SQL is run as the superuser `postgres` through `psql` over the server's Unix socket. The server
//! is stopped (immediate shutdown, then SIGKILL if need be) and its directory removed on drop.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A PostgreSQL server started for one test.
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    /// Extra `-c name=value` settings, after (so overriding) the defaults.
    settings: Vec<(String, String)>,
    /// (uid, gid) of `postgres` when we run as root; `None` when we run as an ordinary user.
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
}

fn testkit_err(what: impl std::fmt::Display) -> Error {
    Error::internal(format!("testkit: {what}"))
}

/// A PostgreSQL server binary: the version 15 directory first, then PATH.
fn find_binary(name: &str) -> Result<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/lib/postgresql/15/bin")];
    dirs.extend(
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    dirs.extend(["/usr/bin", "/usr/local/bin", "/usr/local/pgsql/bin"].map(PathBuf::from));
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| testkit_err(format!("{name} not found (apt-get install postgresql-15)")))
}

/// The uid / gid of the `postgres` user, when this process runs as root.
fn postgres_owner() -> Result<Option<(u32, u32)>> {
    let euid = std::fs::metadata("/proc/self").map_err(testkit_err)?.uid();
    if euid != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .arg(flag)
            .arg("postgres")
            .output()
            .map_err(testkit_err)?;
        if !out.status.success() {
            return Err(testkit_err(
                "running as root, and there is no `postgres` user to run the server as",
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| testkit_err("`id postgres` printed no number"))
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

impl PgServer {
    /// LOGIN REPLICATION, authenticated with scram-sha-256 over TCP.
    pub const CDC_USER: &'static str = "freshet_cdc";
    pub const CDC_PASSWORD: &'static str = "cdc-secret";
    /// Created at start, owned by [`PgServer::CDC_USER`] (so it may CREATE PUBLICATION there).
    pub const DATABASE: &'static str = "upstream";

    /// Creates and starts a new server with the CDC user and database.
    pub fn start() -> Result<PgServer> {
        Self::start_with(&[])
    }

    /// [`PgServer::start`] with extra server settings, e.g. `&[("wal_level", "replica")]`.
    pub fn start_with(extra_settings: &[(&str, &str)]) -> Result<PgServer> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "freshet-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(testkit_err)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(testkit_err)?
            .port();
        let mut pg = PgServer {
            dir,
            port,
            settings: extra_settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            run_as: postgres_owner()?,
            child: None,
        };
        pg.chown(&pg.dir)?;
        pg.init()?;
        pg.launch()?;
        pg.psql_sync(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256';\n\
                 CREATE ROLE {u} LOGIN REPLICATION PASSWORD '{p}';\n\
                 CREATE DATABASE {d} OWNER {u};\n",
                u = Self::CDC_USER,
                p = Self::CDC_PASSWORD,
                d = Self::DATABASE
            ),
        )?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(testkit_err)?;
        }
        Ok(())
    }

    /// A command that runs as `postgres` when we are root.
    fn server_command(&self, binary: &str) -> Result<Command> {
        let mut cmd = Command::new(find_binary(binary)?);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.env("LC_ALL", "C").stdin(Stdio::null());
        Ok(cmd)
    }

    /// initdb, then the pg_hba.conf the tests need.
    fn init(&self) -> Result<()> {
        let out = self
            .server_command("initdb")?
            .arg("-D")
            .arg(self.data())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .map_err(testkit_err)?;
        if !out.status.success() {
            return Err(testkit_err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let hba = self.data().join("pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "# TYPE  DATABASE     USER  ADDRESS       METHOD\n\
                 local   all          all                 trust\n\
                 local   replication  all                 trust\n\
                 host    all          {u}   127.0.0.1/32  scram-sha-256\n\
                 host    replication  {u}   127.0.0.1/32  scram-sha-256\n\
                 host    all          all   127.0.0.1/32  trust\n\
                 host    replication  all   127.0.0.1/32  trust\n",
                u = Self::CDC_USER
            ),
        )
        .map_err(testkit_err)?;
        self.chown(&hba)
    }

    /// Starts the postmaster and waits until it answers queries.
    fn launch(&mut self) -> Result<()> {
        let log_path = self.dir.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(testkit_err)?;
        let mut cmd = self.server_command("postgres")?;
        cmd.arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir);
        let defaults = [
            ("listen_addresses", "127.0.0.1"),
            ("wal_level", "logical"),
            ("max_replication_slots", "10"),
            ("max_wal_senders", "10"),
            ("fsync", "off"),
            ("full_page_writes", "off"),
            ("shared_buffers", "16MB"),
            ("max_connections", "40"),
            ("password_encryption", "scram-sha-256"),
        ];
        let extra = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (name, value) in defaults.into_iter().chain(extra) {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(testkit_err)?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.psql_sync("postgres", "SELECT 1").is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(testkit_err(format!("postgres exited ({status}): {log}")));
            }
            if Instant::now() > deadline {
                return Err(testkit_err("postgres did not become ready in 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data directory (`data/`), the socket and `postgres.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `psql` as `postgres` over the socket, reading `file`: unaligned, tuples only, tab-separated,
    /// stopping at the first error. Statements run one by one, each in its own transaction
    /// unless the SQL says BEGIN.
    fn psql_command(&self, database: &str, file: &Path) -> Result<Command> {
        let mut cmd = Command::new(find_binary("psql")?);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
        ])
        .arg("-h")
        .arg(&self.dir)
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-d")
        .arg(database)
        .arg("-f")
        .arg(file)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null());
        Ok(cmd)
    }

    /// Writes `sql` to a file for `psql -f`: no pipe to fill up, and psql splits the statements.
    fn sql_file(&self, sql: &str) -> Result<PathBuf> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = self
            .dir
            .join(format!("exec-{}.sql", COUNTER.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&path, sql).map_err(testkit_err)?;
        Ok(path)
    }

    fn psql_result(sql: &str, out: std::io::Result<std::process::Output>) -> Result<Vec<Vec<String>>> {
        let out = out.map_err(testkit_err)?;
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

    fn psql_sync(&self, database: &str, sql: &str) -> Result<Vec<Vec<String>>> {
        let file = self.sql_file(sql)?;
        let out = self.psql_command(database, &file)?.output();
        let _ = std::fs::remove_file(&file);
        Self::psql_result(sql, out)
    }

    /// Runs SQL (several statements allowed) as superuser `postgres` in [`PgServer::DATABASE`];
    /// rows as text, one per line of output, fields split at tabs, NULL as the empty string (so
    /// values holding tabs or newlines do not come back intact).
    pub fn exec_sync(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        self.psql_sync(Self::DATABASE, sql)
    }

    /// [`PgServer::exec_sync`] without blocking the runtime (any flavour).
    pub async fn exec(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        let file = self.sql_file(sql)?;
        let out = tokio::process::Command::from(self.psql_command(Self::DATABASE, &file)?)
            .output()
            .await;
        let _ = std::fs::remove_file(&file);
        Self::psql_result(sql, out)
    }

    /// Fast stop (pg_ctl -m fast) and start again on the same port and directory.
    pub fn restart(&mut self) -> Result<()> {
        // SIGINT is PostgreSQL's fast shutdown: sessions end, a shutdown checkpoint is written.
        self.stop("-INT", Duration::from_secs(60));
        self.launch()
    }

    /// Signals the postmaster and waits for it to exit; SIGKILL after `patience`.
    fn stop(&mut self, signal: &str, patience: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + patience;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGQUIT is the immediate shutdown: the postmaster ends its children and frees shared
        // memory, which a SIGKILL of the postmaster alone would leave behind.
        self.stop("-QUIT", Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
