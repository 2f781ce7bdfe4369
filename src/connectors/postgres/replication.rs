//! The replication connection: the PostgreSQL wire protocol with `replication=database`.
