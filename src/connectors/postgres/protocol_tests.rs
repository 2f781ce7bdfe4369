//! Tests of the replication client and the pgoutput decoder against a real PostgreSQL.
