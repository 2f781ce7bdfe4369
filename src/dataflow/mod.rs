//! The dataflow layer: epochs and the commit coordinator.
//!
//! Today every write (DML, DDL) reaches the store through the [`coordinator::Coordinator`], which
//! groups the transactions waiting at one moment into one epoch, validates them, and commits the
//! epoch as ONE store `WriteBatch` (one WAL fsync shared by all of them: group commit). The
//! incremental operators of materialized views will run inside the same epoch, so that view
//! deltas, operator state and source offsets land in that same batch.

pub mod changes;
pub mod column_reads;
pub mod coordinator;
pub mod graph;
pub mod operator;
pub mod ops;
pub mod state_index;
pub mod state_log;
pub mod state_runs;
pub mod state_table;
pub mod stored_rows;
pub mod stream_history;
pub mod thin_bytes;
pub mod view_groups;

/// A commit epoch: a monotonically increasing number, persisted with the data it committed.
pub type Epoch = u64;
