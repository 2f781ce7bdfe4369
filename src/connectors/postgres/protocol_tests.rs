//! Tests of the replication client and the pgoutput decoder against a real PostgreSQL
//! ([`crate::testkit::PgServer`]).

use std::time::Duration;

use super::pgoutput::{self, OldTuple, PgOutput, Relation, TupleValue};
use super::replication::*;
use crate::error::{Error, Result, SqlState};
use crate::testkit::PgServer;

fn params(pg: &PgServer) -> ConnectParams {
    ConnectParams {
        host: "127.0.0.1".into(),
        port: pg.port(),
        user: PgServer::CDC_USER.into(),
        password: Some(PgServer::CDC_PASSWORD.into()),
        database: PgServer::DATABASE.into(),
        application_name: "freshet-test".into(),
    }
}

/// An ordinary (non-replication) connection as the superuser.
async fn ordinary(pg: &PgServer) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=postgres dbname={}", pg.port(), PgServer::DATABASE),
        tokio_postgres::NoTls,
    )
    .await
    .expect("ordinary connection");
    tokio::spawn(conn);
    client
}

fn text(s: &str) -> TupleValue {
    TupleValue::Text(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

/// One decoded transaction.
#[derive(Debug)]
struct Txn {
    xid: u32,
    final_lsn: Lsn,
    commit_lsn: Lsn,
    end_lsn: Lsn,
    commit_time_micros: i64,
    relations: Vec<Relation>,
    changes: Vec<PgOutput>,
}

struct Stream {
    reader: ReplicationReader,
    writer: ReplicationWriter,
    keepalives: Vec<StreamEvent>,
}

impl Stream {
    async fn start(pg: &PgServer, slot: &str, from: Lsn, publication: &str) -> Result<Stream> {
        let conn = ReplicationConnection::connect(&params(pg)).await?;
        let (reader, writer) = conn.start_replication(slot, from, publication).await?;
        Ok(Stream {
            reader,
            writer,
            keepalives: Vec::new(),
        })
    }

    /// The next pgoutput message, answering keepalives that ask for a reply.
    async fn message(&mut self) -> PgOutput {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(20), self.reader.next())
                .await
                .expect("a stream event within 20 s")
                .expect("a stream event");
            match event {
                StreamEvent::XLogData { data, .. } => {
                    // Every strict prefix of a real message is rejected, never a panic.
                    for n in 0..data.len() {
                        assert!(pgoutput::decode(&data[..n]).is_err(), "prefix {n} of {data:?} decoded");
                    }
                    return pgoutput::decode(&data).expect("a valid pgoutput message");
                }
                StreamEvent::Keepalive { reply_requested, .. } => {
                    if reply_requested {
                        self.writer.send_status(Lsn(0), false).await.expect("status");
                    }
                    self.keepalives.push(event);
                }
            }
        }
    }

    /// The next whole transaction (Begin .. Commit), checking its LSNs agree.
    async fn txn(&mut self) -> Txn {
        let (final_lsn, begin_time, xid) = match self.message().await {
            PgOutput::Begin {
                final_lsn,
                commit_time_micros,
                xid,
            } => (final_lsn, commit_time_micros, xid),
            other => panic!("expected Begin, got {other:?}"),
        };
        let mut relations = Vec::new();
        let mut changes = Vec::new();
        loop {
            match self.message().await {
                PgOutput::Commit {
                    commit_lsn,
                    end_lsn,
                    commit_time_micros,
                } => {
                    assert_eq!(commit_lsn, final_lsn, "Begin's final_lsn is the commit's LSN");
                    assert!(end_lsn > commit_lsn);
                    assert_eq!(commit_time_micros, begin_time);
                    let now = chrono::Utc::now().timestamp_micros();
                    assert!((now - commit_time_micros).abs() < 60_000_000, "commit time is now");
                    return Txn {
                        xid,
                        final_lsn,
                        commit_lsn,
                        end_lsn,
                        commit_time_micros,
                        relations,
                        changes,
                    };
                }
                PgOutput::Relation(r) => relations.push(r),
                PgOutput::Begin { .. } => panic!("Begin inside a transaction"),
                PgOutput::Other(_) => {}
                change => changes.push(change),
            }
        }
    }
}

/// Creates a slot and streams from its consistent point.
async fn new_slot_stream(pg: &PgServer, slot: &str, publication: &str) -> Result<(Stream, CreatedSlot)> {
    let mut conn = ReplicationConnection::connect(&params(pg)).await?;
    let created = conn.create_slot(slot, false).await?;
    drop(conn);
    let stream = Stream::start(pg, slot, created.consistent_point, publication).await?;
    Ok((stream, created))
}

async fn relation_oid(pg: &PgServer, table: &str) -> u32 {
    pg.exec(&format!("SELECT '{table}'::regclass::oid")).await.unwrap()[0][0]
        .parse()
        .unwrap()
}

async fn confirmed_flush(pg: &PgServer, slot: &str) -> Option<Lsn> {
    let rows = pg
        .exec(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
        .await
        .unwrap();
    rows.first().map(|r| r[0].parse().unwrap())
}

/// Waits until no connection streams from the slot (a closed walsender takes a moment to exit).
async fn wait_slot_inactive(pg: &PgServer, slot: &str) {
    for _ in 0..200 {
        let rows = pg
            .exec(&format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"))
            .await
            .unwrap();
        if rows == vec![vec!["f".to_string()]] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("slot {slot} still active after 10 s");
}

fn assert_external(err: &Error, state: &str, retryable: bool) {
    match err {
        Error::External {
            state: s,
            retryable: r,
            ..
        } => {
            assert_eq!(s.code(), state, "{err}");
            assert_eq!(*r, retryable, "{err}");
        }
        other => panic!("expected an external error {state}, got {other:?}"),
    }
}

#[tokio::test]
async fn explore() -> Result<()> {
    let pg = PgServer::start()?;
    pg.exec("CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int); CREATE PUBLICATION p FOR TABLE t")
        .await?;
    let mut conn = ReplicationConnection::connect(&params(&pg)).await?;
    let slot = conn.create_slot("s", false).await?;
    println!("{slot:?}");
    let (mut r, _w) = conn.start_replication("s", slot.consistent_point, "p").await?;
    pg.exec("INSERT INTO u VALUES (1); BEGIN; COMMIT; INSERT INTO t VALUES (1, 'a'); INSERT INTO u VALUES (2); INSERT INTO t VALUES (2, 'b')").await?;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        match tokio::time::timeout(Duration::from_secs(2), r.next()).await {
            Ok(e) => {
                let e = e?;
                match &e {
                    StreamEvent::XLogData { wal_start, wal_end, data } => {
                        println!("X {wal_start} {wal_end} {:?}", pgoutput::decode(data)?)
                    }
                    k => println!("{k:?}"),
                }
            }
            Err(_) => println!("timeout"),
        }
    }
    println!("{:?}", pg.exec("SELECT pg_current_wal_lsn()").await?);
    Ok(())
}
