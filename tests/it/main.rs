//! End-to-end tests: every test talks to a real `freshet server` process over real sockets.
//! One integration-test crate (one binary to link) with a module per area.

mod cdc;
mod clients;
mod copy;
mod crash;
mod harness;
mod mysql_cdc;
mod nexmark;
mod postgres_cdc;
mod slt;
mod temporal;
mod unique_join;
mod views;
