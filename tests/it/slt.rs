//! Runs every `tests/slt/**/*.slt` file over pgwire, each against its own fresh server.
//!
//! Errors are matched on their SQLSTATE with `statement error (23505)`, or on their message.
//!
//! With `SLT_PG=postgres://user@host:port/db` the same files run against a real PostgreSQL
//! instead (each file in a fresh database `slt_<stem>`), to check that the expected outputs are
//! PostgreSQL's. Records where Freshet deliberately differs are marked `onlyif freshet`, or
//! `skipif postgres`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::SimpleQueryMessage;

use crate::harness::TestServer;

#[derive(Debug)]
pub struct PgError {
    message: String,
    code: Option<String>,
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PgError {}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => PgError {
                message: db.message().to_string(),
                code: Some(db.code().code().to_string()),
            },
            None => PgError {
                message: e.to_string(),
                code: None,
            },
        }
    }
}

pub struct Pg {
    client: tokio_postgres::Client,
    engine: &'static str,
}

#[async_trait]
impl AsyncDB for Pg {
    type Error = PgError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut width = None;
        let mut count = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(cols) => width = Some(cols.len()),
                SimpleQueryMessage::Row(r) => {
                    width = Some(r.len());
                    rows.push(
                        (0..r.len())
                            .map(|i| match r.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(v) => v.to_string(),
                            })
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        match width {
            Some(w) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; w],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(count)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        self.engine
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &Self::Error) -> Option<String> {
        err.code.clone()
    }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            slt_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "slt") {
            out.push(p);
        }
    }
}

/// Runs `path` against real PostgreSQL at `url`, in a freshly created database.
async fn run_file_on_postgres(path: PathBuf, url: String) -> Result<(), String> {
    let stem = path
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let db = format!("slt_{stem}");
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| PgError::from(e).to_string())?;
    tokio::spawn(conn);
    {
        // CREATE DATABASE copies template1, which concurrent CREATE DATABASEs may be reading.
        static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = CREATING.lock().await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("CREATE DATABASE {db}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("{sql}: {}", PgError::from(e)))?;
        }
    }
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| e.to_string())?;
    config.dbname(&db);
    let mut runner = sqllogictest::Runner::new(move || {
        let config = config.clone();
        async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok(Pg {
                client,
                engine: "postgres",
            })
        }
    });
    runner
        .run_file_async(&path)
        .await
        .map_err(|e| format!("{} (on PostgreSQL): {e}", path.display()))
}

async fn run_file(path: PathBuf) -> Result<(), String> {
    if let Ok(url) = std::env::var("SLT_PG") {
        return run_file_on_postgres(path, url).await;
    }
    let server = Arc::new(TestServer::start());
    let s = server.clone();
    let mut runner = sqllogictest::Runner::new(move || {
        let s = s.clone();
        async move {
            Ok(Pg {
                client: s.connect().await,
                engine: "freshet",
            })
        }
    });
    runner.run_file_async(&path).await.map_err(|e| {
        format!(
            "{}: {e}\n--- server log ---\n{}",
            path.display(),
            tail(&server.log_text())
        )
    })
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqllogictest_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    assert!(!files.is_empty(), "no .slt files under {}", root.display());
    let filter = std::env::var("SLT").ok();
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| filter.as_ref().is_none_or(|p| f.to_string_lossy().contains(p.as_str())))
        .collect();
    let limit = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = Vec::new();
    for f in files.clone() {
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            run_file(f).await
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} slt files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
