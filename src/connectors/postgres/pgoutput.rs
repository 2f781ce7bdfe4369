//! Decoding of `pgoutput` logical replication messages.
