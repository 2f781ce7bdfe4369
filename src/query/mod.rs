//! Ad-hoc queries: DataFusion over one committed epoch.
//!
//! A [`ReadView`] is what a statement reads: one committed epoch (data + catalog) plus, inside a
//! transaction, the transaction's own uncommitted writes layered on top. [`context`] turns a
//! view into a DataFusion `SessionContext` whose tables are [`provider::StoredTable`]s.

pub mod context;
pub mod errors;
pub mod functions;
pub mod key_range;
pub mod point_lookup;
pub mod provider;
pub mod temporal;
pub mod to_char;
pub mod view_provider;

use std::sync::Arc;

use crate::dataflow::coordinator::{Committed, TxnWrites};

/// What one statement reads.
#[derive(Clone)]
pub struct ReadView {
    pub committed: Arc<Committed>,
    /// The reading transaction's own writes (empty outside transactions).
    pub overlay: Arc<TxnWrites>,
}

/// Hands a batch read by a scan (on a blocking thread) to the query's stream; false once the
/// query no longer reads it. The batch is freed on a runtime worker: the thread that allocated
/// it then takes back, at once, what other threads have freed of its allocations
/// ([`crate::memory::collect_freed_elsewhere`]).
pub(crate) fn hand_over(
    tx: &tokio::sync::mpsc::Sender<datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch>>,
    batch: datafusion::arrow::record_batch::RecordBatch,
) -> bool {
    let sent = tx.blocking_send(Ok(batch)).is_ok();
    crate::memory::collect_freed_elsewhere();
    sent
}
