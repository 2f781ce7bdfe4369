//! The database: the store, the commit coordinator and what sessions share.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use crate::dataflow::coordinator::Coordinator;
use crate::error::Result;
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
    next_session_id: AtomicI32,
}

impl Database {
    /// Opens (or creates) the database stored under `dir`.
    pub fn open(dir: &Path, opts: DatabaseOptions) -> Result<Arc<Database>> {
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::error::Error::io(format!("cannot create {}", dir.display()), e))?;
        let store: Arc<dyn StateStore> = Arc::new(RocksStore::open(dir)?);
        Self::with_store(store, opts)
    }

    pub fn with_store(store: Arc<dyn StateStore>, opts: DatabaseOptions) -> Result<Arc<Database>> {
        let coordinator = Coordinator::start(store, opts.sync)?;
        Ok(Arc::new(Database {
            coordinator,
            next_session_id: AtomicI32::new(1),
        }))
    }

    pub fn next_session_id(&self) -> i32 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }
}
