//! Crash safety: clients commit single inserts and multi-row transactions in a loop while the
//! server is `kill -9`'d at random moments; after each restart every acknowledged row is there
//! and no transaction is partly there. A graceful shutdown (SIGINT) under the same load exits
//! cleanly and keeps every acknowledged row too.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::harness::TestServer;

#[derive(Default)]
struct Ledger {
    /// Rows whose INSERT (autocommit) returned OK.
    acked: BTreeSet<i64>,
    /// Transactions whose COMMIT returned OK: their 3 row ids.
    committed_txns: Vec<[i64; 3]>,
    /// Transactions rolled back: their rows must never appear.
    rolled_back: Vec<[i64; 3]>,
    /// Transactions whose COMMIT outcome is unknown (connection died): all or nothing.
    in_doubt: Vec<[i64; 3]>,
}

async fn writer(server_url: String, worker: i64, ledger: Arc<Mutex<Ledger>>, seed: u64) {
    let Ok((client, conn)) = tokio_postgres::connect(&server_url, tokio_postgres::NoTls).await else {
        return;
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next = worker * 1_000_000_000 + (seed as i64 % 1000) * 1_000_000;
    loop {
        next += 10;
        if rng.random_bool(0.5) {
            let id = next;
            match client
                .simple_query(&format!("INSERT INTO ledger VALUES ({id}, {worker}, 'single')"))
                .await
            {
                Ok(_) => {
                    ledger.lock().unwrap().acked.insert(id);
                }
                Err(_) => return,
            }
        } else {
            let ids = [next + 1, next + 2, next + 3];
            let rollback = rng.random_bool(0.25);
            let sql = format!(
                "BEGIN; INSERT INTO ledger VALUES ({}, {worker}, 'txn'); INSERT INTO ledger VALUES ({}, {worker}, 'txn'); \
                 UPDATE ledger SET note = 'txn-updated' WHERE id = {}; INSERT INTO ledger VALUES ({}, {worker}, 'txn'); {}",
                ids[0],
                ids[1],
                ids[0],
                ids[2],
                if rollback { "ROLLBACK" } else { "COMMIT" }
            );
            if rollback {
                ledger.lock().unwrap().rolled_back.push(ids);
            } else {
                ledger.lock().unwrap().in_doubt.push(ids);
            }
            match client.simple_query(&sql).await {
                Ok(_) if !rollback => {
                    let mut l = ledger.lock().unwrap();
                    l.in_doubt.retain(|t| *t != ids);
                    l.committed_txns.push(ids);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_loses_no_acknowledged_write_and_no_partial_transaction() {
    let mut server = TestServer::start();
    {
        let c = server.connect().await;
        c.simple_query("CREATE TABLE ledger (id BIGINT PRIMARY KEY, worker INT NOT NULL, note TEXT)")
            .await
            .unwrap();
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xF4E5);
    for round in 0..4u64 {
        let mut tasks = Vec::new();
        for w in 1..=4i64 {
            tasks.push(tokio::spawn(writer(
                server.pg_url(),
                w,
                ledger.clone(),
                round * 10 + w as u64,
            )));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        server.kill9();
        for t in tasks {
            let _ = t.await;
        }
        server.restart();
        let c = server.connect().await;
        let rows = c.query("SELECT id, note FROM ledger", &[]).await.unwrap();
        let present: std::collections::BTreeMap<i64, String> = rows
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
            .collect();
        let l = ledger.lock().unwrap();
        assert!(
            !l.acked.is_empty() || !l.committed_txns.is_empty(),
            "round {round}: nothing was written"
        );
        for id in &l.acked {
            assert!(present.contains_key(id), "round {round}: acknowledged row {id} lost");
        }
        for t in &l.committed_txns {
            for id in t {
                assert!(
                    present.contains_key(id),
                    "round {round}: committed transaction row {id} lost"
                );
            }
            assert_eq!(
                present[&t[0]], "txn-updated",
                "round {round}: update inside a committed transaction lost"
            );
        }
        for t in &l.rolled_back {
            for id in t {
                assert!(
                    !present.contains_key(id),
                    "round {round}: rolled-back row {id} is present"
                );
            }
        }
        for t in &l.in_doubt {
            let n = t.iter().filter(|id| present.contains_key(id)).count();
            assert!(
                n == 0 || n == 3,
                "round {round}: transaction {t:?} is partly there ({n} of 3 rows)"
            );
        }
        let known: usize = l.acked.len() + 3 * l.committed_txns.len();
        assert!(present.len() >= known, "round {round}: fewer rows than acknowledged");
    }
}

/// SIGINT while clients write, one client sits idle and a generator fills a table that a view
/// reads, three times over: each time the server commits what was queued, stops, and exits
/// with status 0 (it once aborted in RocksDB now and then, when its background flushes ran
/// at exit); after each restart every acknowledged row is there and the view agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigint_under_load_exits_cleanly_and_keeps_every_acknowledged_write() {
    let mut server = TestServer::start();
    server
        .connect()
        .await
        .batch_execute(
            "CREATE TABLE ledger (id BIGINT PRIMARY KEY, worker INT NOT NULL, note TEXT); \
             CREATE TABLE bid (*) WITH (connector = 'nexmark', nexmark.table.type = 'bid', \
               nexmark.event.num = '100000000', nexmark.events.per.second = '0'); \
             CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n FROM bid GROUP BY auction; \
             CREATE MATERIALIZED VIEW per_worker AS SELECT worker, count(*) AS n FROM ledger GROUP BY worker",
        )
        .await
        .unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..3u64 {
        let idle = server.connect().await;
        let mut tasks = Vec::new();
        for w in 1..=4i64 {
            tasks.push(tokio::spawn(writer(
                server.pg_url(),
                w,
                ledger.clone(),
                100 + round * 10 + w as u64,
            )));
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        let status = server.interrupt(Duration::from_secs(60));
        for t in tasks {
            let _ = t.await;
        }
        let log = server.log_text();
        let status =
            status.unwrap_or_else(|| panic!("round {round}: the server did not stop within 60 s; log:\n{log}"));
        assert!(
            status.success(),
            "round {round}: the server exited with {status}; log:\n{log}"
        );
        drop(idle);
        server.restart();
        let c = server.connect().await;
        let present: BTreeSet<i64> = c
            .query("SELECT id FROM ledger", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        {
            let l = ledger.lock().unwrap();
            assert!(!l.acked.is_empty(), "round {round}: nothing was written");
            for id in l.acked.iter().chain(l.committed_txns.iter().flatten()) {
                assert!(present.contains(id), "round {round}: acknowledged row {id} lost");
            }
        }
        let counted: i64 = c
            .query_one("SELECT coalesce(sum(n), 0)::BIGINT FROM per_worker", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            counted,
            present.len() as i64,
            "round {round}: per_worker disagrees with ledger"
        );
        let (bids, in_view): (i64, i64) = {
            let r = c
                .query_one(
                    "SELECT (SELECT count(*) FROM bid), (SELECT coalesce(sum(n), 0)::BIGINT FROM per_auction)",
                    &[],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert!(bids > 0, "round {round}: the generator wrote nothing");
        assert_eq!(bids, in_view, "round {round}: per_auction disagrees with bid");
    }
}
