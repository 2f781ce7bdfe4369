//! PostgreSQL change-data-capture: logical replication with the `pgoutput` plugin, after a
//! snapshot taken from the snapshot exported by the slot's creation.

pub mod pgoutput;
pub mod replication;

#[cfg(test)]
mod protocol_tests;
