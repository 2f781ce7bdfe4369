//! The server process: opens the database, binds the pgwire and HTTP listeners, serves until
//! SIGINT / SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::database::{Database, DatabaseOptions};
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub pg_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub sync: bool,
    /// Memory for the in-memory copies of operator state (see [`crate::dataflow::state_table`]).
    pub state_cache_bytes: usize,
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::io(
            format!("cannot listen for {what} on {addr} (is another server using this port?)"),
            e,
        )
    })
}

/// Runs the server until a shutdown signal arrives.
pub async fn run(config: ServerConfig) -> Result<()> {
    crate::dataflow::state_table::set_cache_budget(config.state_cache_bytes);
    let pg = bind(config.pg_listen, "PostgreSQL clients").await?;
    let http = bind(config.http_listen, "HTTP").await?;
    let db = Database::open(&config.data_dir, DatabaseOptions { sync: config.sync }).await?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        pg = %pg.local_addr().map_err(|e| Error::io("listener", e))?,
        http = %http.local_addr().map_err(|e| Error::io("listener", e))?,
        epoch = db.coordinator.current().epoch,
        "freshet is ready"
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let pg_task = tokio::spawn(crate::serve::pgwire::serve(pg, db.clone(), rx.clone()));
    let http_task = tokio::spawn(crate::serve::http::serve(http, db.clone(), rx));
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = tx.send(true);
    let _ = pg_task.await;
    let _ = http_task.await;
    db.sources.stop_all().await;
    db.coordinator.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
