//! The PostgreSQL wire protocol, on the `pgwire` crate.
//!
//! pgwire speaks the protocol (startup, simple and extended query, COPY, cancel); this module
//! maps it onto [`Session`]s: one session per connection, stored in the connection's extensions.
//! Authentication is trust (the server listens on loopback by default); the database must be
//! `freshet`.

pub mod encode;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, DefaultServerParameterProvider,
    StartupHandler,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type, METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;

use crate::database::Database;
use crate::error::{Error, SqlState};
use crate::session::{Output, Session};
use crate::sql::params::BoundParam;
use crate::sql::syntax::Stmt;

/// The only database name accepted.
pub const DATABASE_NAME: &str = "freshet";

type SessionRef = Arc<Mutex<Session>>;

/// Per-connection session, kept in pgwire's session extensions.
struct SessionSlot(SessionRef);

/// The handlers shared by every connection.
pub struct Backend {
    db: Arc<Database>,
    manager: Arc<ConnectionManager>,
    parser: Arc<FreshetParser>,
    /// Cancel signals by (pid, secret key): they also stop result streams, which pgwire's own
    /// cancel (covering statement execution only) does not reach.
    cancels: Arc<std::sync::Mutex<HashMap<(i32, bytes::Bytes), CancelSignal>>>,
}

/// Bumped by each cancel request for the connection.
#[derive(Clone)]
struct CancelSignal(Arc<tokio::sync::watch::Sender<u64>>);

/// Removes the connection's cancel signal when the connection ends.
struct CancelRegistration {
    key: (i32, bytes::Bytes),
    cancels: Arc<std::sync::Mutex<HashMap<(i32, bytes::Bytes), CancelSignal>>>,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.cancels.lock().expect("lock").remove(&self.key);
    }
}

pub struct Handlers {
    backend: Arc<Backend>,
}

impl Handlers {
    pub fn new(db: Arc<Database>) -> Arc<Handlers> {
        let manager = Arc::new(ConnectionManager::new());
        Arc::new(Handlers {
            backend: Arc::new(Backend {
                db: db.clone(),
                manager,
                parser: Arc::new(FreshetParser { db }),
                cancels: Arc::new(std::sync::Mutex::new(HashMap::new())),
            }),
        })
    }
}

#[async_trait]
impl pgwire::api::cancel::CancelHandler for Backend {
    async fn on_cancel_request(&self, req: pgwire::messages::cancel::CancelRequest) {
        let signal = self
            .cancels
            .lock()
            .expect("lock")
            .get(&(req.pid, req.secret_key.to_bytes()))
            .cloned();
        if let Some(s) = signal {
            s.0.send_modify(|n| *n += 1);
        }
        DefaultCancelHandler::new(self.manager.clone())
            .on_cancel_request(req)
            .await;
    }
}

/// Ends `stream` with 57014 as soon as the connection's cancel signal moves.
fn cancellable<S>(
    stream: S,
    signal: Option<CancelSignal>,
) -> futures::stream::BoxStream<'static, PgWireResult<pgwire::messages::data::DataRow>>
where
    S: futures::Stream<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send + 'static,
{
    let Some(signal) = signal else {
        return stream.boxed();
    };
    let mut rx = signal.0.subscribe();
    rx.mark_unchanged();
    let state = (stream.boxed(), rx, false);
    futures::stream::unfold(state, |(mut s, mut rx, done)| async move {
        if done {
            return None;
        }
        tokio::select! {
            item = s.next() => item.map(|i| (i, (s, rx, false))),
            _ = rx.changed() => Some((
                Err(to_pg_error(&Error::user(SqlState::QUERY_CANCELED, "canceling statement due to user request"))),
                (s, rx, true),
            )),
        }
    })
    .boxed()
}

fn cancel_signal<C: ClientInfo + ?Sized>(client: &C) -> Option<CancelSignal> {
    client.session_extensions().get::<CancelSignal>().map(|s| (*s).clone())
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.backend.clone()
    }
    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.backend.clone()
    }
    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.backend.clone()
    }
}

fn session_of<C: ClientInfo + ?Sized>(db: &Arc<Database>, client: &C) -> SessionRef {
    let user = client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_else(|| "freshet".into());
    let database = client
        .metadata()
        .get(METADATA_DATABASE)
        .cloned()
        .unwrap_or_else(|| DATABASE_NAME.into());
    client
        .session_extensions()
        .get_or_insert_with(|| SessionSlot(Arc::new(Mutex::new(Session::new(db.clone(), &user, &database)))))
        .0
        .clone()
}

/// Freshet error → pgwire error.
pub fn to_pg_error(e: &Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

fn error_info(e: &Error) -> ErrorInfo {
    if let Error::Internal(_) = e {
        tracing::error!(error = %e, "internal error");
    }
    let mut info = ErrorInfo::new("ERROR".into(), e.code().code().into(), e.to_string());
    info.detail = e.detail().map(|d| d.to_string());
    info
}

async fn send_notices<C>(client: &mut C, session: &mut Session) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for n in session.take_notices() {
        let info = ErrorInfo::new(n.severity.into(), n.code.into(), n.message);
        client
            .send(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(info)))
            .await?;
    }
    Ok(())
}

/// Turns a statement's output into a pgwire response; `format_of` gives each column's format.
fn to_response(out: Output, format_of: &dyn Fn(usize) -> FieldFormat, cancel: Option<CancelSignal>) -> Response {
    match out {
        Output::Rows { schema, stream, tag } => {
            let fields = Arc::new(encode::field_infos(&schema, format_of));
            let f = fields.clone();
            let rows = stream.flat_map(move |batch| {
                let rows: Vec<PgWireResult<_>> = match batch {
                    Ok(b) => match encode::encode_batch(&f, &b) {
                        Ok(rows) => rows.into_iter().map(Ok).collect(),
                        Err(e) => vec![Err(e)],
                    },
                    Err(e) => vec![Err(to_pg_error(&Error::from(e)))],
                };
                stream::iter(rows)
            });
            let mut resp = QueryResponse::new(fields, cancellable(rows, cancel));
            resp.set_command_tag(&tag);
            Response::Query(resp)
        }
        Output::Command { tag, rows } => {
            let t = Tag::new(&tag);
            Response::Execution(match rows {
                Some(n) => t.with_rows(n),
                None => t,
            })
        }
        Output::TxnStart(tag) => Response::TransactionStart(Tag::new(&tag)),
        Output::TxnEnd(tag) => Response::TransactionEnd(Tag::new(&tag)),
        Output::CopyIn { columns } => Response::CopyIn(CopyResponse::new(0, columns, stream::empty())),
        Output::CopyOut { columns, data } => Response::CopyOut(CopyResponse::new(
            0,
            columns,
            stream::iter(data.into_iter().map(|d| Ok(CopyData::new(d.into())))),
        )),
        Output::Empty => Response::EmptyQuery,
    }
}

static PID_GENERATOR: LazyLock<RandomPidSecretKeyGenerator> = LazyLock::new(RandomPidSecretKeyGenerator::default);

#[async_trait]
impl StartupHandler for Backend {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
            let db = client
                .metadata()
                .get(METADATA_DATABASE)
                .cloned()
                .unwrap_or_else(|| user.clone());
            if db != DATABASE_NAME {
                return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "3D000".into(),
                    format!("database \"{db}\" does not exist (Freshet serves the database \"{DATABASE_NAME}\")"),
                ))));
            }
            client.metadata_mut().insert(METADATA_DATABASE.into(), db);
            let (pid, key) = PID_GENERATOR.generate(client);
            client.set_pid_and_secret_key(pid, key.clone());
            let (signal, _) = tokio::sync::watch::channel(0u64);
            let signal = CancelSignal(Arc::new(signal));
            let ckey = (pid, key.to_bytes());
            self.cancels.lock().expect("lock").insert(ckey.clone(), signal.clone());
            client.session_extensions().insert(signal);
            client.session_extensions().insert(CancelRegistration {
                key: ckey,
                cancels: self.cancels.clone(),
            });
            let (handle, guard) = self.manager.register(pid, key);
            client.session_extensions().insert::<Arc<ConnectionHandle>>(handle);
            client.session_extensions().insert(guard);
            let mut params = DefaultServerParameterProvider::default();
            params.server_version = crate::query::functions::SERVER_VERSION.to_string();
            params.time_zone = "UTC".into();
            finish_authentication(client, &params).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(&self.db, client);
        let mut session = session.lock().await;
        let results = session.run_sql(query).await;
        send_notices(client, &mut session).await?;
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(o) => out.push(to_response(o, &|_| FieldFormat::Text, cancel_signal(client))),
                Err(e) => out.push(Response::Error(Box::new(error_info(&e)))),
            }
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

#[async_trait]
impl CopyHandler for Backend {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(&self.db, client);
        let mut session = session.lock().await;
        if let Some(c) = session.copy_in.as_mut() {
            c.data.extend_from_slice(&copy_data.data);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(&self.db, client);
        let mut session = session.lock().await;
        match session.finish_copy().await {
            Ok(Output::Command { tag, rows }) => {
                let tag = Tag::new(&tag).with_rows(rows.unwrap_or(0));
                client.send(PgWireBackendMessage::CommandComplete(tag.into())).await?;
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(to_pg_error(&e)),
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(&self.db, client);
        session.lock().await.fail_copy();
        to_pg_error(&Error::user(
            SqlState::QUERY_CANCELED,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}

/// A statement prepared by the extended protocol.
#[derive(Debug)]
pub struct Prepared {
    pub stmt: Option<Stmt>,
    pub param_types: Vec<Type>,
    /// Result columns (name, type, typmod), when the statement returns rows.
    pub fields: Option<Vec<(String, Type, i32)>>,
    /// The statement is a primary-key point lookup, matched once here (see `query::point_lookup`).
    pub lookup: Option<crate::query::point_lookup::PointLookup>,
}

pub struct FreshetParser {
    db: Arc<Database>,
}

#[async_trait]
impl QueryParser for FreshetParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut stmts = crate::sql::syntax::parse(sql).map_err(|e| to_pg_error(&e))?;
        if stmts.len() > 1 {
            return Err(to_pg_error(&Error::syntax(
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(None);
        };
        let Stmt::Pg(mut stmt) = stmt else {
            // Freshet's own statements take no parameters and return no rows but SHOW SOURCES.
            let fields = matches!(stmt, Stmt::ShowSources).then(|| {
                crate::sql::show::SOURCES_COLUMNS
                    .iter()
                    .map(|n| (n.to_string(), Type::TEXT, -1))
                    .collect()
            });
            return Ok(Some(Arc::new(Prepared {
                stmt: Some(stmt),
                param_types: vec![],
                fields,
                lookup: None,
            })));
        };
        crate::sql::rewrite::rewrite(&mut stmt);
        let session = session_of(&self.db, client);
        let env = session.lock().await.query_env();
        let described = crate::sql::describe::describe(&env, &stmt, types)
            .await
            .map_err(|e| to_pg_error(&e))?;
        let lookup = crate::query::point_lookup::match_lookup(&env, &stmt);
        Ok(Some(Arc::new(Prepared {
            stmt: Some(Stmt::Pg(stmt)),
            param_types: described.params,
            fields: described.fields,
            lookup,
        })))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(fields_of(stmt, column_format))
    }
}

fn fields_of(stmt: &Prepared, format: Option<&Format>) -> Vec<FieldInfo> {
    stmt.fields
        .as_ref()
        .map(|f| {
            f.iter()
                .enumerate()
                .map(|(i, (name, ty, typmod))| {
                    let fmt = format.map(|f| f.format_for(i)).unwrap_or(FieldFormat::Text);
                    FieldInfo::new(name.clone(), None, None, ty.clone(), fmt).with_type_modifier(*typmod)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Arc<Prepared>;
    type QueryParser = FreshetParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = &target.statement;
        let params = (0..p.param_types.len().max(target.parameter_types.len()))
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| p.param_types.get(i).cloned())
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        match &p.fields {
            Some(_) => Ok(DescribeStatementResponse::new(params, fields_of(p, None))),
            None => Ok(DescribeStatementResponse::new(params, vec![])),
        }
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        target: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = &target.statement.statement;
        match &p.fields {
            Some(_) => Ok(DescribePortalResponse::new(fields_of(
                p,
                Some(&target.result_column_format),
            ))),
            None => Ok(DescribePortalResponse::no_data()),
        }
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let Some(stmt) = &prepared.stmt else {
            return Ok(Response::EmptyQuery);
        };
        let mut params = Vec::with_capacity(portal.parameters.len());
        for (i, value) in portal.parameters.iter().enumerate() {
            let declared = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN);
            let ty = declared
                .or_else(|| prepared.param_types.get(i).cloned())
                .unwrap_or(Type::TEXT);
            let sql_ty = crate::catalog::SqlType::from_pg_type(&ty);
            let text = match value {
                None => None,
                Some(bytes) if portal.parameter_format.format_for(i) == FieldFormat::Binary => {
                    Some(encode::binary_param_text(bytes, &ty).ok_or_else(|| {
                        to_pg_error(&Error::user(
                            SqlState::INVALID_TEXT_REPRESENTATION,
                            format!("invalid binary value for parameter ${} of type {}", i + 1, ty.name()),
                        ))
                    })?)
                }
                Some(bytes) => Some(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| to_pg_error(&Error::user(SqlState("22021"), "invalid UTF-8 in a parameter")))?,
                ),
            };
            params.push(BoundParam { text, ty: sql_ty });
        }
        let session = session_of(&self.db, client);
        let mut session = session.lock().await;
        let fast = prepared.lookup.as_ref().and_then(|l| session.run_lookup(l, &params));
        let result = match fast {
            Some(r) => r,
            None => {
                let mut stmt = stmt.clone();
                if let Stmt::Pg(s) = &mut stmt {
                    crate::sql::params::bind(s, &params).map_err(|e| to_pg_error(&e))?;
                }
                session.execute(stmt).await
            }
        };
        send_notices(client, &mut session).await?;
        let out = result.map_err(|e| to_pg_error(&e))?;
        let format = portal.result_column_format.clone();
        Ok(to_response(out, &move |i| format.format_for(i), cancel_signal(client)))
    }
}

/// Serves pgwire connections from `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Arc<Database>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let handlers = Handlers::new(db);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, addr)) => {
                    let _ = socket.set_nodelay(true);
                    let h = handlers.clone();
                    tokio::spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, h).await {
                            tracing::debug!(%addr, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = shutdown.changed() => break,
        }
    }
}
