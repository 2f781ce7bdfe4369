//! # Freshet
//!
//! A SQL-first streaming database. Operational data comes in through change-data-capture
//! sources and DML; materialized views over it are maintained incrementally; tables and views
//! are served over the PostgreSQL wire protocol and HTTP.
//!
//! ## Theory in one paragraph
//! Every relation is a Z-set: a bag of rows with integer weights. A change is a batch of rows
//! with weights (+1 insert, -1 delete). Time advances in *epochs*: everything that happened in one
//! epoch (table writes, view deltas, operator state, source offsets) is committed in one atomic
//! store write, so every reader sees exactly one epoch, across all relations.
//!
//! ## Layers
//! ```text
//! connectors/ ──▶ dataflow/ (epochs, commit coordinator, operators) ──▶ state/ (RocksDB)
//!                                                                          │
//! serve/ (pgwire, HTTP) ◀── session/ + sql/ (statements) ◀── query/ (DataFusion over one epoch)
//! ```
//! `catalog/` describes every relation; `error` holds the one error type (with SQLSTATEs).

pub mod catalog;
pub mod connectors;
pub mod database;
pub mod dataflow;
pub mod error;
pub mod memory;
pub mod planner;
pub mod query;
pub mod serve;
pub mod server;
pub mod session;
pub mod sql;
pub mod state;
pub mod testkit;
