//! The database: the store, the commit coordinator and what sessions share.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use crate::connectors::runtime::SourceRuntime;
use crate::dataflow::coordinator::{Committed, Coordinator, TxnWrites};
use crate::error::Result;
use crate::query::context::QueryEnv;
use crate::query::ReadView;
use crate::state::rocks::RocksStore;
use crate::state::StateStore;

/// Options for opening a database.
#[derive(Clone, Debug)]
pub struct DatabaseOptions {
    /// fsync the WAL on every epoch commit (on by default; benchmarks compare both).
    pub sync: bool,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions { sync: true }
    }
}

pub struct Database {
    pub coordinator: Arc<Coordinator>,
    /// The running source tasks and their status.
    pub sources: SourceRuntime,
    next_session_id: AtomicI32,
}

impl Database {
    /// Opens (or creates) the database stored under `dir`.
    pub async fn open(dir: &Path, opts: DatabaseOptions) -> Result<Arc<Database>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::error::Error::io(format!("cannot create {}", dir.display()), e))?;
        let store: Arc<dyn StateStore> = Arc::new(RocksStore::open(dir)?);
        Self::with_store(store, opts).await
    }

    /// Opens the database in `store`: reloads the catalog and rebuilds the dataflow of every
    /// materialized view (their state is already in the store, as of the last committed epoch).
    pub async fn with_store(store: Arc<dyn StateStore>, opts: DatabaseOptions) -> Result<Arc<Database>> {
        let state = Coordinator::open_state(&store)?;
        let committed = Arc::new(Committed {
            epoch: state.epoch,
            snapshot: state.snapshot.clone(),
            catalog: state.catalog.clone(),
            committed_at_micros: state.committed_at_micros,
            reads: state.reads.clone(),
        });
        let env = QueryEnv {
            view: ReadView {
                committed,
                overlay: Arc::new(TxnWrites::default()),
            },
            search_path: vec![crate::catalog::DEFAULT_SCHEMA.to_string()],
            user: "freshet".into(),
            database: "freshet".into(),
            expose_hidden_of: None,
            sources: Arc::default(),
        };
        let mut views = Vec::new();
        for v in state.catalog.views_in_order() {
            views.push(crate::sql::view::rebuild(&env, &v.def).await?);
        }
        if !views.is_empty() {
            tracing::info!(views = views.len(), epoch = state.epoch, "materialized views resumed");
        }
        let coordinator = Coordinator::start(
            store,
            state,
            views,
            Arc::new(crate::connectors::StreamReplay),
            opts.sync,
        )?;
        let db = Arc::new(Database {
            coordinator,
            sources: SourceRuntime::default(),
            next_session_id: AtomicI32::new(1),
        });
        // Sources resume from the positions committed with the last epoch.
        db.sources.reconcile(&db.coordinator).await;
        Ok(db)
    }

    pub fn next_session_id(&self) -> i32 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }
}
