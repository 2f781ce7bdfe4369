//! Sessions: one per client connection. A session owns its settings and its transaction, and
//! runs statements: it decides what each statement reads (a committed epoch, plus its own
//! uncommitted writes inside a transaction) and when its writes are committed.
//!
//! Transactions are snapshot-isolated: `BEGIN` pins the latest committed epoch; writes are
//! buffered in the session and committed by the coordinator at `COMMIT` (one epoch, all or
//! nothing). Outside a transaction each statement is its own transaction, retried automatically
//! when it loses a write-write race (40001).

pub mod settings;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use sqlparser::ast::Statement;

use crate::database::Database;
use crate::dataflow::coordinator::{Committed, SnapshotGuard, TxnWrites};
use crate::error::{Error, Result, SqlState};
use crate::query::context::QueryEnv;
use crate::query::point_lookup::PointLookup;
use crate::query::ReadView;
use crate::sql;
use crate::sql::params::BoundParam;
use crate::sql::syntax::Stmt;
use settings::Settings;

/// What a statement returns to the client.
pub enum Output {
    /// Rows, with the command tag to report (e.g. "SELECT", or "INSERT 0" for RETURNING).
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        tag: String,
    },
    /// A command tag, with a row count where PostgreSQL reports one.
    Command {
        tag: String,
        rows: Option<usize>,
    },
    TxnStart(String),
    TxnEnd(String),
    /// The client must now send COPY data.
    CopyIn {
        columns: usize,
    },
    /// COPY TO STDOUT: the rows, already formatted.
    CopyOut {
        columns: usize,
        data: Vec<Vec<u8>>,
    },
    Empty,
}

impl Output {
    pub fn command(tag: &str) -> Output {
        Output::Command {
            tag: tag.to_string(),
            rows: None,
        }
    }
}

/// A NOTICE or WARNING to send before the statement's result.
#[derive(Clone, Debug)]
pub struct Notice {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
}

struct Txn {
    committed: Arc<Committed>,
    _guard: SnapshotGuard,
    /// Shared with the read views of the transaction's statements; a statement's writes are
    /// merged in once it succeeds (copy-on-write, so a statement never copies the whole set).
    writes: Arc<TxnWrites>,
    /// The session's settings at BEGIN: a rolled-back transaction undoes its SETs.
    settings: Settings,
    /// (name, writes, settings) at each SAVEPOINT.
    savepoints: Vec<(String, Arc<TxnWrites>, Settings)>,
    /// An error happened: only ROLLBACK (or ROLLBACK TO SAVEPOINT) is accepted.
    failed: bool,
}

/// One client session.
pub struct Session {
    pub db: Arc<Database>,
    pub id: i32,
    pub user: String,
    pub database: String,
    pub settings: Settings,
    txn: Option<Txn>,
    pub(crate) copy_in: Option<sql::copy::CopyIn>,
    notices: Vec<Notice>,
    /// Set when a result stream failed while its rows were being sent (after the statement
    /// itself returned): the transaction is then failed, as in PostgreSQL.
    stream_failed: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a statement outside a transaction keeps retrying after losing a write-write race.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Randomised, growing backoff before retry `attempt`.
async fn backoff(attempt: u32) {
    let cap_us = 200u64 << attempt.min(6);
    let jitter = rand::random::<u64>() % cap_us.max(1);
    tokio::time::sleep(std::time::Duration::from_micros(jitter)).await;
}

impl Session {
    pub fn new(db: Arc<Database>, user: &str, database: &str) -> Session {
        let id = db.next_session_id();
        Session {
            db,
            id,
            user: user.to_string(),
            database: database.to_string(),
            settings: Settings::default(),
            txn: None,
            copy_in: None,
            notices: Vec::new(),
            stream_failed: Arc::default(),
        }
    }

    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    pub fn transaction_failed(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| t.failed)
    }

    /// Fails the transaction if a result stream of an earlier statement failed.
    fn note_stream_failures(&mut self) {
        if self.stream_failed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.mark_failed();
        }
    }

    /// Wraps a row stream so that an error in it fails the transaction.
    fn watch_stream(&self, out: Output) -> Output {
        match out {
            Output::Rows { schema, stream, tag } if self.txn.is_some() => {
                use futures::StreamExt;
                let flag = self.stream_failed.clone();
                let stream_schema = stream.schema();
                let watched = stream.inspect(move |b| {
                    if b.is_err() {
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                });
                Output::Rows {
                    schema,
                    stream: Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                        stream_schema,
                        watched,
                    )),
                    tag,
                }
            }
            other => other,
        }
    }

    pub fn notice(&mut self, severity: &'static str, code: &'static str, message: impl Into<String>) {
        self.notices.push(Notice {
            severity,
            code,
            message: message.into(),
        });
    }

    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// The environment statements of this session are planned in.
    pub fn query_env(&self) -> QueryEnv {
        let view = match &self.txn {
            Some(t) => ReadView {
                committed: t.committed.clone(),
                overlay: t.writes.clone(),
            },
            None => ReadView {
                committed: self.db.coordinator.current(),
                overlay: Arc::new(TxnWrites::default()),
            },
        };
        QueryEnv {
            view,
            search_path: self.settings.search_path(&self.user),
            user: self.user.clone(),
            database: self.database.clone(),
            expose_hidden_of: None,
            sources: self.db.sources.board.clone(),
        }
    }

    /// Runs a point lookup matched when its statement was prepared; `None` when the general
    /// path must run the statement instead (see [`PointLookup::run`]).
    pub fn run_lookup(&mut self, lookup: &PointLookup, params: &[BoundParam]) -> Option<Result<Output>> {
        self.note_stream_failures();
        if self.transaction_failed() {
            return None;
        }
        let view = match &self.txn {
            Some(t) => ReadView {
                committed: t.committed.clone(),
                overlay: t.writes.clone(),
            },
            None => ReadView {
                committed: self.db.coordinator.current(),
                overlay: Arc::default(),
            },
        };
        if !lookup.still_valid(&view, &self.settings.search_path(&self.user)) {
            return None;
        }
        match lookup.run(&view, params) {
            Ok(Some(batch)) => Some(sql::dml::rows_output(batch, "SELECT")),
            Ok(None) => None,
            Err(e) => {
                self.mark_failed();
                Some(Err(e))
            }
        }
    }

    /// Parses and runs every statement of `sql` (the simple query protocol), stopping at the
    /// first error.
    pub async fn run_sql(&mut self, sql: &str) -> Vec<Result<Output>> {
        let stmts = match sql::syntax::parse(sql) {
            Ok(s) => s,
            Err(e) => {
                self.mark_failed();
                return vec![Err(e)];
            }
        };
        // As in PostgreSQL, several statements sent in one query string run as one implicit
        // transaction: an error in any of them undoes the writes of all. Strings that manage
        // transactions themselves, or hold DDL (which commits on its own), run statement by
        // statement.
        let implicit = self.txn.is_none()
            && stmts.len() > 1
            && stmts.iter().all(|s| {
                let Stmt::Pg(s) = s else {
                    // Freshet's own statements are all DDL.
                    return false;
                };
                !matches!(
                    s,
                    Statement::StartTransaction { .. }
                        | Statement::Commit { .. }
                        | Statement::Rollback { .. }
                        | Statement::Savepoint { .. }
                        | Statement::ReleaseSavepoint { .. }
                        | Statement::CreateSchema { .. }
                        | Statement::CreateTable(_)
                        | Statement::AlterTable(_)
                        | Statement::Drop { .. }
                        | Statement::Copy { .. }
                )
            });
        if implicit {
            self.begin_txn();
        }
        let mut out = Vec::with_capacity(stmts.len());
        for stmt in stmts {
            let r = self.execute(stmt).await;
            let stop = r.is_err();
            out.push(r);
            if stop {
                break;
            }
        }
        if implicit {
            match self.txn.take() {
                Some(t) if t.failed => self.settings = t.settings,
                Some(t) if !t.writes.is_empty() => {
                    let writes = Arc::unwrap_or_clone(t.writes);
                    if let Err(e) = self.db.coordinator.commit(t.committed.epoch, writes, None).await {
                        self.settings = t.settings;
                        // The statements' results stand only if their writes committed.
                        out.clear();
                        out.push(Err(e));
                    }
                }
                Some(_) => {}
                None => {}
            }
        }
        out
    }

    fn mark_failed(&mut self) {
        if let Some(t) = &mut self.txn {
            t.failed = true;
        }
    }

    /// Runs one statement, keeping the transaction state machine right.
    pub async fn execute(&mut self, stmt: Stmt) -> Result<Output> {
        self.note_stream_failures();
        let stmt = match stmt {
            Stmt::Pg(s) => {
                let out = self.execute_pg(s).await?;
                return Ok(self.watch_stream(out));
            }
            other => other,
        };
        if self.transaction_failed() {
            return Err(Error::user(
                SqlState::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let r = match stmt {
            Stmt::ShowSources => sql::show::show_sources(self),
            ddl => self.ddl(ddl).await,
        };
        if r.is_err() {
            self.mark_failed();
        }
        r
    }

    /// Runs one PostgreSQL statement.
    async fn execute_pg(&mut self, mut stmt: Statement) -> Result<Output> {
        if self.transaction_failed() && !matches!(stmt, Statement::Rollback { .. } | Statement::Commit { .. }) {
            return Err(Error::user(
                SqlState::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        sql::rewrite::rewrite(&mut stmt);
        let r = self.dispatch(stmt).await;
        if r.is_err() {
            self.mark_failed();
        }
        r
    }

    async fn dispatch(&mut self, stmt: Statement) -> Result<Output> {
        match stmt {
            Statement::StartTransaction { .. } => self.begin(),
            Statement::Commit { .. } => self.commit().await,
            Statement::Rollback { savepoint: None, .. } => {
                match self.txn.take() {
                    Some(t) => self.settings = t.settings,
                    None => self.notice("WARNING", "25P01", "there is no transaction in progress"),
                }
                Ok(Output::TxnEnd("ROLLBACK".into()))
            }
            Statement::Rollback {
                savepoint: Some(name), ..
            } => self.rollback_to(&sql::ident_name(&name)),
            Statement::Savepoint { name } => {
                let t = self.txn.as_mut().ok_or_else(|| {
                    Error::user(
                        SqlState::NO_ACTIVE_SQL_TRANSACTION,
                        "SAVEPOINT can only be used in transaction blocks",
                    )
                })?;
                t.savepoints
                    .push((sql::ident_name(&name), t.writes.clone(), self.settings.clone()));
                Ok(Output::command("SAVEPOINT"))
            }
            Statement::ReleaseSavepoint { name } => {
                let n = sql::ident_name(&name);
                let t = self.txn.as_mut().ok_or_else(|| {
                    Error::user(
                        SqlState::NO_ACTIVE_SQL_TRANSACTION,
                        "RELEASE SAVEPOINT can only be used in transaction blocks",
                    )
                })?;
                let pos = t
                    .savepoints
                    .iter()
                    .rposition(|(s, _, _)| *s == n)
                    .ok_or_else(|| Error::user(SqlState("3B001"), format!("savepoint \"{n}\" does not exist")))?;
                t.savepoints.truncate(pos);
                Ok(Output::command("RELEASE"))
            }
            Statement::Explain { statement, .. } if matches!(statement.as_ref(), Statement::CreateView(_)) => {
                let Statement::CreateView(cv) = statement.as_ref() else {
                    unreachable!()
                };
                let lines = sql::view::explain(&self.query_env(), cv).await?;
                sql::dml::rows_output(sql::dml::text_batch("QUERY PLAN", lines)?, "EXPLAIN")
            }
            Statement::Query(_) | Statement::Explain { .. } => {
                let env = self.query_env();
                if let Some(lookup) = crate::query::point_lookup::match_lookup(&env, &stmt) {
                    if let Some(batch) = lookup.run(&env.view, &[])? {
                        return sql::dml::rows_output(batch, "SELECT");
                    }
                }
                sql::dml::query(&env, stmt).await
            }
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => self.write(stmt).await,
            Statement::Copy { .. } => sql::copy::start(self, stmt).await,
            Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::Reset(_)
            | Statement::ShowTables { .. }
            | Statement::ExplainTable { .. } => sql::show::execute(self, stmt).await,
            Statement::Deallocate { name, .. } => {
                // Prepared statements of the extended protocol live in the connection; SQL-level
                // PREPARE is not supported, so there is nothing else to release.
                let all = name.value.eq_ignore_ascii_case("all");
                Ok(Output::command(if all { "DEALLOCATE ALL" } else { "DEALLOCATE" }))
            }
            Statement::Discard { .. } => {
                self.settings.reset_all();
                Ok(Output::command("DISCARD ALL"))
            }
            Statement::ShowViews { materialized: true, .. } => sql::show::show_views(self),
            Statement::CreateSchema { .. }
            | Statement::CreateView(_)
            | Statement::CreateTable(_)
            | Statement::AlterTable(_)
            | Statement::Drop { .. } => self.ddl(Stmt::Pg(stmt)).await,
            other => Err(Error::unsupported(format!(
                "the statement \"{}\"",
                first_words(&other.to_string())
            ))),
        }
    }

    fn begin(&mut self) -> Result<Output> {
        if self.txn.is_some() {
            self.notice("WARNING", "25001", "there is already a transaction in progress");
            return Ok(Output::TxnStart("BEGIN".into()));
        }
        self.begin_txn();
        Ok(Output::TxnStart("BEGIN".into()))
    }

    /// Opens a transaction on the latest committed epoch.
    fn begin_txn(&mut self) {
        let (committed, guard) = self.db.coordinator.pin();
        self.txn = Some(Txn {
            committed,
            _guard: guard,
            writes: Arc::default(),
            settings: self.settings.clone(),
            savepoints: vec![],
            failed: false,
        });
    }

    async fn commit(&mut self) -> Result<Output> {
        let Some(t) = self.txn.take() else {
            self.notice("WARNING", "25P01", "there is no transaction in progress");
            return Ok(Output::TxnEnd("COMMIT".into()));
        };
        if t.failed {
            self.settings = t.settings;
            return Ok(Output::TxnEnd("ROLLBACK".into()));
        }
        if !t.writes.is_empty() {
            let writes = Arc::unwrap_or_clone(t.writes);
            self.db.coordinator.commit(t.committed.epoch, writes, None).await?;
        }
        Ok(Output::TxnEnd("COMMIT".into()))
    }

    fn rollback_to(&mut self, name: &str) -> Result<Output> {
        let t = self.txn.as_mut().ok_or_else(|| {
            Error::user(
                SqlState::NO_ACTIVE_SQL_TRANSACTION,
                "ROLLBACK TO SAVEPOINT can only be used in transaction blocks",
            )
        })?;
        let pos = t
            .savepoints
            .iter()
            .rposition(|(s, _, _)| s == name)
            .ok_or_else(|| Error::user(SqlState("3B001"), format!("savepoint \"{name}\" does not exist")))?;
        t.writes = t.savepoints[pos].1.clone();
        self.settings = t.savepoints[pos].2.clone();
        t.savepoints.truncate(pos + 1);
        t.failed = false;
        Ok(Output::command("ROLLBACK"))
    }

    /// Ends COPY FROM STDIN: parses the data received and inserts it.
    pub async fn finish_copy(&mut self) -> Result<Output> {
        let copy = self
            .copy_in
            .take()
            .ok_or_else(|| Error::user(SqlState::PROTOCOL_VIOLATION, "no COPY in progress"))?;
        let r = async {
            let columns = sql::copy::parse_rows(&copy)?;
            self.write_job(WriteJob::Copy(&copy, columns)).await
        }
        .await;
        if r.is_err() {
            self.mark_failed();
        }
        r
    }

    /// Abandons COPY FROM STDIN (CopyFail from the client).
    pub fn fail_copy(&mut self) {
        if self.copy_in.take().is_some() {
            self.mark_failed();
        }
    }

    async fn write(&mut self, stmt: Statement) -> Result<Output> {
        self.write_job(WriteJob::Statement(&stmt)).await
    }

    /// INSERT / UPDATE / DELETE / COPY: into the open transaction, or as a transaction of its own.
    async fn write_job(&mut self, job: WriteJob<'_>) -> Result<Output> {
        if let Some(t) = &mut self.txn {
            let mut env = QueryEnv {
                view: ReadView {
                    committed: t.committed.clone(),
                    overlay: t.writes.clone(),
                },
                search_path: self.settings.search_path(&self.user),
                user: self.user.clone(),
                database: self.database.clone(),
                expose_hidden_of: None,
                sources: self.db.sources.board.clone(),
            };
            // The statement reads the transaction's writes so far and records its own apart:
            // they join the transaction only if the whole statement succeeds.
            let mut delta = TxnWrites::default();
            let out = job.run(&mut env, &mut delta).await?;
            drop(env);
            if let Some(t) = &mut self.txn {
                Arc::make_mut(&mut t.writes).merge(delta);
            }
            return Ok(out);
        }
        let mut attempt = 0;
        let started = std::time::Instant::now();
        loop {
            let (committed, _guard) = self.db.coordinator.pin();
            let epoch = committed.epoch;
            let mut env = QueryEnv {
                view: ReadView {
                    committed,
                    overlay: Arc::new(TxnWrites::default()),
                },
                search_path: self.settings.search_path(&self.user),
                user: self.user.clone(),
                database: self.database.clone(),
                expose_hidden_of: None,
                sources: self.db.sources.board.clone(),
            };
            let mut writes = TxnWrites::default();
            let out = job.run(&mut env, &mut writes).await?;
            if writes.is_empty() {
                return Ok(out);
            }
            match self.db.coordinator.commit(epoch, writes, None).await {
                Ok(_) => return Ok(out),
                Err(e) if e.code() == SqlState::SERIALIZATION_FAILURE && started.elapsed() < RETRY_FOR => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// DDL runs as its own epoch. Inside a transaction it is allowed only before any write
    /// (it then commits on its own, with a notice), so a transaction is never half applied.
    async fn ddl(&mut self, stmt: Stmt) -> Result<Output> {
        if let Some(t) = &self.txn {
            if !t.writes.is_empty() {
                return Err(Error::user(
                    SqlState::ACTIVE_SQL_TRANSACTION,
                    "DDL cannot run inside a transaction block that has already written rows",
                ));
            }
        }
        let mut attempt = 0;
        let started = std::time::Instant::now();
        loop {
            let env = {
                let mut e = self.query_env();
                e.view = ReadView {
                    committed: self.db.coordinator.current(),
                    overlay: Arc::new(TxnWrites::default()),
                };
                e
            };
            let (out, change) = match sql::ddl::plan(self, &env, &stmt).await? {
                sql::ddl::Planned::Done(out) => return Ok(out),
                sql::ddl::Planned::Change(out, change) => (out, change),
            };
            match self
                .db
                .coordinator
                .commit(env.view.committed.epoch, TxnWrites::default(), Some(change))
                .await
            {
                Ok(_) => {
                    // Source tasks follow the catalog: started, restarted or stopped.
                    self.db.sources.reconcile(&self.db.coordinator).await;
                    if let Some(t) = &mut self.txn {
                        // Later statements of the transaction see the new catalog.
                        let (committed, guard) = self.db.coordinator.pin();
                        t.committed = committed;
                        t._guard = guard;
                    }
                    return Ok(out);
                }
                Err(e) if e.code() == SqlState::SERIALIZATION_FAILURE && started.elapsed() < RETRY_FOR => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A statement's or a COPY's writes.
enum WriteJob<'a> {
    Statement(&'a Statement),
    Copy(&'a sql::copy::CopyIn, Vec<datafusion::arrow::array::ArrayRef>),
}

impl WriteJob<'_> {
    async fn run(&self, env: &mut QueryEnv, writes: &mut TxnWrites) -> Result<Output> {
        match self {
            WriteJob::Statement(stmt) => sql::dml::write(env, stmt, writes).await,
            WriteJob::Copy(copy, columns) => {
                // Re-resolve the table: the COPY may be retried after a concurrent change.
                let table = env
                    .view
                    .committed
                    .catalog
                    .table_by_id(copy.table.def.id)
                    .cloned()
                    .ok_or_else(|| Error::user(SqlState::UNDEFINED_TABLE, "the COPY target table was dropped"))?;
                let n = sql::dml::insert_columns(env, &table, &copy.targets, columns.clone(), writes).await?;
                Ok(Output::Command {
                    tag: "COPY".into(),
                    rows: Some(n),
                })
            }
        }
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}
