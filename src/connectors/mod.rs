//! Connectors: where data enters Freshet from the outside world (and, later, leaves it).
//!
//! One folder per connector, its configuration beside its code. A source connector turns an
//! upstream system's changes into [`Changes`](crate::dataflow::changes::Changes) batches and
//! reports the upstream position reached, which the commit coordinator stores with each epoch so
//! that a restart resumes exactly where the last committed epoch ended.
//!
//! - [`mysql`]: MySQL / MariaDB change-data-capture (consistent snapshot, then the binlog).

pub mod mysql;
