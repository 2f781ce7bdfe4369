//! The `nexmark` generator source and the Nexmark queries as materialized views: each view,
//! maintained while the events arrive, equals DataFusion's batch answer to the same query over
//! the same events.

use std::time::{Duration, Instant};

use crate::cdc::{eventually, rows};
use crate::harness::TestServer;

/// Nexmark queries (the SQL of RisingWave's suite; the `nexmark` crate spells states in lower
/// case) that Freshet maintains incrementally.
const QUERIES: &[(&str, &str)] = &[
    ("q0", "SELECT auction, bidder, price, date_time, extra FROM bid"),
    ("q1", "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid"),
    (
        "q2",
        "SELECT auction, price FROM bid WHERE auction = 1007 OR auction = 1020 OR auction = 2001 OR auction = 2019 OR auction = 2087",
    ),
    (
        "q3",
        "SELECT p.name, p.city, p.state, a.id FROM auction AS a INNER JOIN person AS p ON a.seller = p.id \
         WHERE a.category = 10 AND (p.state = 'or' OR p.state = 'id' OR p.state = 'ca')",
    ),
    (
        "q4",
        "SELECT q.category, avg(q.final) AS avg FROM ( \
           SELECT max(b.price) AS final, a.category FROM auction a, bid b \
           WHERE a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires \
           GROUP BY a.id, a.category) q GROUP BY q.category",
    ),
    (
        "q9",
        "SELECT id, item_name, seller, category, auction, bidder, price, bid_date_time FROM ( \
           SELECT a.id, a.item_name, a.seller, a.category, b.auction, b.bidder, b.price, b.date_time AS bid_date_time, \
             row_number() OVER (PARTITION BY a.id ORDER BY b.price DESC, b.date_time ASC) AS rownum \
           FROM auction a, bid b WHERE a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires) t \
         WHERE rownum <= 1",
    ),
    (
        "q17",
        "SELECT auction, to_char(date_time, 'YYYY-MM-DD') AS day, count(*) AS total_bids, \
           sum(CASE WHEN price < 10000 THEN 1 ELSE 0 END) AS rank1_bids, min(price) AS min_price, \
           max(price) AS max_price, avg(price) AS avg_price, sum(price) AS sum_price \
         FROM bid GROUP BY auction, to_char(date_time, 'YYYY-MM-DD')",
    ),
    (
        "q18",
        "SELECT auction, bidder, price, channel, url, date_time FROM ( \
           SELECT *, row_number() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC, price DESC) AS rank_number FROM bid) t \
         WHERE rank_number <= 1",
    ),
    (
        "q19",
        "SELECT auction, bidder, price, channel, url, date_time, rank_number FROM ( \
           SELECT *, row_number() OVER (PARTITION BY auction ORDER BY price DESC, bidder, date_time) AS rank_number FROM bid) t \
         WHERE rank_number <= 10",
    ),
    (
        "q20",
        "SELECT b.auction, b.bidder, b.price, b.channel, b.url, b.date_time, a.item_name, a.initial_bid, a.seller, a.category \
         FROM bid b JOIN auction a ON b.auction = a.id WHERE a.category = 10",
    ),
    (
        "q22",
        "SELECT auction, bidder, price, channel, split_part(url, '/', 4) AS dir1, split_part(url, '/', 5) AS dir2, \
           split_part(url, '/', 6) AS dir3 FROM bid",
    ),
];

/// Every query's view, maintained while 20,000 events arrive, equals its batch answer.
#[tokio::test(flavor = "multi_thread")]
async fn nexmark_views_equal_batch_answers() {
    let server = TestServer::start();
    let c = server.connect().await;
    // One source feeds the three tables, so that they are one consistent event stream.
    c.batch_execute(
        "CREATE SOURCE nx WITH (connector = 'nexmark', nexmark.event.num = '20000', nexmark.events.per.second = '20000'); \
         CREATE TABLE person (*) FROM nx TABLE 'person'; \
         CREATE TABLE auction (*) FROM nx TABLE 'auction'; \
         CREATE TABLE bid (*) FROM nx TABLE 'bid'",
    )
    .await
    .unwrap();
    for (name, sql) in QUERIES {
        c.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {sql}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    // 1 : 3 : 46 of 20,000 events.
    eventually(
        &c,
        "SELECT p.n, a.n, b.n FROM (SELECT count(*) AS n FROM person) p, (SELECT count(*) AS n FROM auction) a, \
         (SELECT count(*) AS n FROM bid) b",
        &["400|1200|18400".into()],
    )
    .await;
    let log = server.log_text();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("epoch failed")).collect();
    assert!(failures.is_empty(), "view maintenance failed: {failures:?}");
    for (name, sql) in QUERIES {
        let want = rows(&c, sql).await;
        assert!(!want.is_empty() || *name == "q2", "{name}: the batch answer is empty");
        let got = rows(&c, &format!("SELECT * FROM {name}")).await;
        assert_eq!(got.len(), want.len(), "{name}: row count");
        assert!(got == want, "{name}: the view differs from the batch answer");
    }
}

/// `CREATE TABLE .. WITH (connector = 'nexmark')`, paced generation, and kill -9 mid-stream:
/// the restarted generator goes on with the next event, none lost or repeated.
#[tokio::test(flavor = "multi_thread")]
async fn generated_table_resumes_exactly_after_kill9() {
    let mut server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE bid (*) WITH (connector = 'nexmark', nexmark.table.type = 'bid', \
           nexmark.event.num = '30000', nexmark.events.per.second = '10000'); \
         CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(price) AS s FROM bid",
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = rows(&c, "SELECT count(*) FROM bid").await[0].parse().unwrap();
        if n > 2000 {
            assert!(n < 27_600, "generation was not paced: {n} bids already");
            break;
        }
        assert!(Instant::now() < deadline, "no bids generated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();
    server.restart();
    let c = server.connect().await;
    eventually(&c, "SELECT count(*) FROM bid", &["27600".into()]).await;
    // No event twice: bids are unique by (auction, bidder, date_time, price) in one stream.
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM (SELECT DISTINCT auction, bidder, price, date_time, extra FROM bid) d"
        )
        .await,
        ["27600"]
    );
    eventually(
        &c,
        "SELECT n, s FROM totals",
        &rows(&c, "SELECT count(*), sum(price) FROM bid").await,
    )
    .await;
    // The table's own source is listed, and goes with the table.
    assert_eq!(
        rows(&c, "SELECT name, connector FROM freshet_catalog.sources").await,
        ["bid|nexmark"]
    );
    let e = c
        .batch_execute("INSERT INTO bid VALUES (1, 1, 1, 'c', 'u', now(), 'x')")
        .await
        .unwrap_err();
    assert_eq!(crate::cdc::code(e), "42809");
    c.batch_execute("DROP TABLE bid CASCADE").await.unwrap();
    assert_eq!(rows(&c, "SELECT count(*) FROM freshet_catalog.sources").await, ["0"]);
    // Options are checked.
    let e = c
        .batch_execute("CREATE TABLE p (*) WITH (connector = 'nexmark', nexmark.table.type = 'people')")
        .await
        .unwrap_err();
    assert_eq!(crate::cdc::code(e), "42P01");
    let e = c
        .batch_execute(
            "CREATE TABLE p (*) WITH (connector = 'nexmark', nexmark.event.num = 'many', nexmark.table.type = 'bid')",
        )
        .await
        .unwrap_err();
    assert_eq!(crate::cdc::code(e), "22023");
}
