//! Test harnesses: real upstream servers started for a test and torn down after it.
//!
//! This is an ordinary public module (not `#[cfg(test)]`) because three kinds of code use it:
//! the library's unit tests, the integration tests in `tests/it` (which link the library as any
//! user would, and cannot see `cfg(test)` items), and the benches. It adds no dependency: it
//! only runs the server binaries installed on the machine.

pub mod mariadb;
pub mod postgres;

pub use mariadb::MariaDb;
pub use postgres::PgServer;
