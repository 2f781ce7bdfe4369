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
