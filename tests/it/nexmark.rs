//! Generator sources (`nexmark`, `datagen`) and the Nexmark queries as materialized views: each view,
//! maintained while the events arrive, equals DataFusion's batch answer to the same query over
//! the same events.

use std::time::{Duration, Instant};

use freshet::connectors::generator::nexmark::{stream_sources, stream_tables, QUERIES, SIDE_INPUT};

use crate::cdc::{eventually, rows};
use crate::harness::TestServer;

/// Every query's view, maintained while 20,000 events arrive, equals its batch answer.
#[tokio::test(flavor = "multi_thread")]
async fn nexmark_views_equal_batch_answers() {
    let server = TestServer::start();
    let c = server.connect().await;
    // The side input first: q13 looks each bid up in it as the bid arrives.
    c.batch_execute(SIDE_INPUT).await.unwrap();
    eventually(&c, "SELECT count(*) FROM side_input", &["10000".into()]).await;
    // One source feeds the three tables, so that they are one consistent event stream.
    let started = std::time::SystemTime::now();
    c.batch_execute(&format!(
        "CREATE SOURCE nx WITH (connector = 'nexmark', nexmark.event.num = '20000', nexmark.events.per.second = '20000', \
           nexmark.base.time = '1700000000000'); {}",
        stream_tables("nx")
    ))
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
    // Event time starts at the base time (2023-11-14 22:13:20 UTC).
    assert_eq!(
        rows(
            &c,
            "SELECT min(date_time) >= '2023-11-14 22:13:20', max(date_time) < '2023-11-14 22:14:00' FROM bid"
        )
        .await,
        ["t|t"]
    );
    // Processing time: when each bid was written, between the source's creation and now.
    let since = started.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() - 1.0;
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 1.0;
    assert_eq!(
        rows(
            &c,
            &format!(
                "SELECT count(*) FROM bid WHERE p_time >= to_timestamp({since}) AND p_time <= to_timestamp({until})"
            )
        )
        .await,
        ["18400"]
    );
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

/// The events of the Nexmark tests: 20,000 from a fixed base time, paced.
const EVENTS: &str =
    "nexmark.event.num = '20000', nexmark.events.per.second = '20000', nexmark.base.time = '1700000000000'";

/// Views over the three streams (`CREATE SOURCE bid (*) WITH (connector = 'nexmark', ..)`,
/// nothing stored) equal the batch answers over stored tables of the same events, whether they
/// were created before the streams generated anything or while they generate (a new view
/// replays the stream so far). A stream no view reads generates nothing; one cannot be read
/// directly, written or dropped as a table.
#[tokio::test(flavor = "multi_thread")]
async fn views_over_streams_equal_batch_answers() {
    let server = TestServer::start();
    let c = server.connect().await;
    // The truth: the same events stored in tables (schema public).
    c.batch_execute(&format!(
        "CREATE SOURCE nx WITH (connector = 'nexmark', {EVENTS}); {}; {SIDE_INPUT}",
        stream_tables("nx")
    ))
    .await
    .unwrap();
    eventually(&c, "SELECT count(*) FROM side_input", &["10000".into()]).await;
    c.batch_execute("CREATE SCHEMA st").await.unwrap();
    c.batch_execute("SET search_path = st, public").await.unwrap();
    c.batch_execute(&stream_sources(EVENTS)).await.unwrap();
    let states = "SELECT name, state FROM freshet_catalog.sources WHERE schema = 'st'";
    assert_eq!(rows(&c, states).await, ["auction|idle", "bid|idle", "person|idle"]);
    assert_eq!(rows(&c, "SHOW TABLES").await, Vec::<String>::new());
    // q12 windows by processing time, which differs between the two copies.
    let queries: Vec<&(&str, &str)> = QUERIES.iter().filter(|(n, _)| *n != "q12").collect();
    let (early, late) = queries.split_at(4);
    for (name, sql) in early {
        c.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {sql}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    // The others once the bids are flowing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows(&c, "SELECT count(*) FROM q0").await[0] == "0" {
        assert!(Instant::now() < deadline, "no bids reached q0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (name, sql) in late {
        c.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {sql}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    eventually(
        &c,
        "SELECT count(*) FROM freshet_catalog.sources WHERE connector = 'nexmark' \
         AND coalesce(reason, '') NOT LIKE 'all 20000 events generated'",
        &["0".into()],
    )
    .await;
    let log = server.log_text();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("epoch failed")).collect();
    assert!(failures.is_empty(), "view maintenance failed: {failures:?}");
    c.batch_execute("SET search_path = public").await.unwrap();
    for (name, sql) in &queries {
        let want = rows(&c, sql).await;
        assert!(!want.is_empty() || *name == "q2", "{name}: the batch answer is empty");
        let got = rows(&c, &format!("SELECT * FROM st.{name}")).await;
        assert_eq!(got.len(), want.len(), "{name}: row count");
        assert!(
            got == want,
            "{name}: the view over streams differs from the batch answer"
        );
    }
    // A view created after the last event replays the whole stream.
    c.batch_execute("CREATE MATERIALIZED VIEW st.bids AS SELECT count(*) AS n, sum(price) AS s FROM st.bid")
        .await
        .unwrap();
    assert_eq!(
        rows(&c, "SELECT n, s FROM st.bids").await,
        rows(&c, "SELECT count(*), sum(price) FROM bid").await
    );
    // A stream is a source, not a table; catalogs show it as PostgreSQL shows a foreign table.
    assert_eq!(
        rows(
            &c,
            "SELECT c.relkind, t.table_type FROM pg_class c JOIN pg_namespace n ON c.relnamespace = n.oid \
             JOIN information_schema.tables t ON t.table_schema = n.nspname AND t.table_name = c.relname \
             WHERE c.relname IN ('bid', 'auction') ORDER BY 1, 2"
        )
        .await,
        ["f|FOREIGN", "f|FOREIGN", "r|BASE TABLE", "r|BASE TABLE"]
    );
    for (sql, code) in [
        ("SELECT count(*) FROM st.bid", "0A000"),
        ("INSERT INTO st.bid (auction) VALUES (1)", "42809"),
        ("DROP TABLE st.bid", "42809"),
        ("DROP SOURCE st.bid", "2BP01"),
        (
            "CREATE SOURCE st.orders (id INT) WITH (connector = 'postgres-cdc', hostname = 'localhost')",
            "0A000",
        ),
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(crate::cdc::code(e), code, "{sql}");
    }
    c.batch_execute("DROP SOURCE st.bid CASCADE").await.unwrap();
    assert_eq!(
        rows(&c, "SELECT name FROM freshet_catalog.sources WHERE schema = 'st'").await,
        ["auction", "person"]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT name FROM freshet_catalog.materialized_views WHERE schema = 'st' AND name IN ('q0', 'q3', 'bids')"
        )
        .await,
        ["q3"]
    );
}

/// A stream's source builds only the columns views read (projection pushdown): with one view
/// reading two columns of `bid`, the others are placeholders; a view created mid-stream that
/// reads every column restarts the source with them, and both views still equal their batch
/// answers over the same events stored in full (no placeholder reached either).
#[tokio::test(flavor = "multi_thread")]
async fn stream_sources_build_only_the_columns_views_read() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(&format!(
        "CREATE SOURCE nx WITH (connector = 'nexmark', {EVENTS}); {}",
        stream_tables("nx")
    ))
    .await
    .unwrap();
    c.batch_execute("CREATE SCHEMA st").await.unwrap();
    c.batch_execute("SET search_path = st, public").await.unwrap();
    c.batch_execute(&stream_sources(EVENTS)).await.unwrap();
    let narrow = "SELECT auction, count(*) AS n, max(price) AS top FROM bid GROUP BY auction";
    let wide = "SELECT auction, bidder, price, channel, url, date_time, extra FROM bid";
    c.batch_execute(&format!("CREATE MATERIALIZED VIEW narrow AS {narrow}"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows(&c, "SELECT count(*) FROM narrow").await[0] == "0" {
        assert!(Instant::now() < deadline, "no bids reached the first view");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // (Source `nx` restarted as its tables were added.)
    let restarts = |log: &str| log.matches("restarting the source").count();
    let before = restarts(&server.log_text());
    c.batch_execute(&format!("CREATE MATERIALIZED VIEW wide AS {wide}"))
        .await
        .unwrap();
    assert_eq!(
        restarts(&server.log_text()),
        before + 1,
        "the bid stream's source restarts to build the columns the new view reads"
    );
    eventually(
        &c,
        "SELECT count(*) FROM freshet_catalog.sources WHERE connector = 'nexmark' AND state <> 'idle' \
         AND coalesce(reason, '') NOT LIKE 'all 20000 events generated'",
        &["0".into()],
    )
    .await;
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM wide WHERE channel = '' OR url = '' OR bidder = 0 OR date_time = '1970-01-01'"
        )
        .await,
        ["0"],
        "placeholders reached the view"
    );
    c.batch_execute("SET search_path = public").await.unwrap();
    for (name, sql) in [("narrow", narrow), ("wide", wide)] {
        let mut want = rows(&c, sql).await;
        let mut got = rows(&c, &format!("SELECT * FROM st.{name}")).await;
        want.sort();
        got.sort();
        assert_eq!(got.len(), want.len(), "{name}: row count");
        assert!(got == want, "{name}: the view differs from the batch answer");
    }
    assert_eq!(
        rows(&c, "SELECT count(*) FROM st.wide").await,
        rows(&c, "SELECT count(*) FROM bid").await
    );
}

/// Views over a paced stream, killed (-9) mid-stream and restarted, see every event exactly
/// once; a datagen stream replays too.
#[tokio::test(flavor = "multi_thread")]
async fn stream_views_resume_exactly_after_kill9() {
    let mut server = TestServer::start();
    let c = server.connect().await;
    let events = "nexmark.event.num = '30000', nexmark.base.time = '1700000000000'";
    c.batch_execute(&format!(
        "CREATE SOURCE bid (*) WITH (connector = 'nexmark', nexmark.table.type = 'bid', \
           nexmark.events.per.second = '10000', {events}); \
         CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(price) AS s FROM bid; \
         CREATE MATERIALIZED VIEW cheap AS SELECT auction, price, bidder FROM bid WHERE price < 5000; \
         CREATE MATERIALIZED VIEW top AS SELECT auction, max(price) AS p, count(*) AS n FROM bid GROUP BY auction; \
         CREATE SOURCE seq (n BIGINT, label VARCHAR) WITH (connector = 'datagen', datagen.rows.per.second = '0', \
           fields.n.kind = 'sequence', fields.n.start = '1', fields.n.end = '1000', fields.label.length = '4'); \
         CREATE MATERIALIZED VIEW seq_sum AS SELECT sum(n) AS s, count(DISTINCT label) > 900 AS varied FROM seq"
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = rows(&c, "SELECT n FROM totals")
            .await
            .first()
            .map_or(0, |n| n.parse().unwrap());
        if n > 2000 {
            assert!(n < 27_600, "generation was not paced: {n} bids already");
            break;
        }
        assert!(Instant::now() < deadline, "no bids reached the view");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill9();
    server.restart();
    let c = server.connect().await;
    eventually(
        &c,
        "SELECT reason FROM freshet_catalog.sources WHERE name = 'bid'",
        &["all 30000 events generated".into()],
    )
    .await;
    // The truth: a table of the same events.
    c.batch_execute(&format!(
        "CREATE TABLE bid_t (*) WITH (connector = 'nexmark', nexmark.table.type = 'bid', \
           nexmark.events.per.second = '0', {events})"
    ))
    .await
    .unwrap();
    eventually(&c, "SELECT count(*) FROM bid_t", &["27600".into()]).await;
    assert_eq!(
        rows(&c, "SELECT n, s FROM totals").await,
        rows(&c, "SELECT count(*), sum(price) FROM bid_t").await
    );
    for (view, query) in [
        ("cheap", "SELECT auction, price, bidder FROM bid_t WHERE price < 5000"),
        (
            "top",
            "SELECT auction, max(price), count(*) FROM bid_t GROUP BY auction",
        ),
    ] {
        let want = rows(&c, query).await;
        assert!(want.len() > 100, "{view}: {} rows", want.len());
        assert_eq!(rows(&c, &format!("SELECT * FROM {view}")).await, want, "{view}");
    }
    eventually(&c, "SELECT s, varied FROM seq_sum", &["500500|t".into()]).await;
    c.batch_execute("CREATE MATERIALIZED VIEW seq_late AS SELECT sum(n) AS s, count(*) AS c FROM seq")
        .await
        .unwrap();
    assert_eq!(rows(&c, "SELECT s, c FROM seq_late").await, ["500500|1000"]);
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
         CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(price) AS s FROM bid; \
         CREATE MATERIALIZED VIEW cheap AS SELECT auction, price, bidder FROM bid WHERE price < 5000; \
         CREATE MATERIALIZED VIEW cheap_union AS SELECT auction FROM cheap UNION ALL SELECT auction FROM cheap WHERE price < 1000; \
         CREATE MATERIALIZED VIEW per_auction AS SELECT auction, count(*) AS n, max(price) AS top FROM cheap GROUP BY auction; \
         CREATE MATERIALIZED VIEW extremes AS SELECT bidder % 7 AS b, min(price) AS lo, max(date_time) AS last, \
           min(channel) AS first_channel, count(*) AS n FROM bid GROUP BY bidder % 7; \
         CREATE MATERIALIZED VIEW top_per_auction AS SELECT auction, price, bidder, rn FROM ( \
           SELECT auction, price, bidder, row_number() OVER (PARTITION BY auction ORDER BY price DESC, bidder) AS rn \
           FROM bid) t WHERE rn <= 2; \
         CREATE MATERIALIZED VIEW top_bids AS SELECT auction, price, bidder FROM bid \
           ORDER BY price DESC, bidder, auction LIMIT 3 OFFSET 2; \
         CREATE MATERIALIZED VIEW best_bids AS SELECT b.auction, b.bidder, b.date_time, m.top FROM bid b \
           JOIN (SELECT auction, max(price) AS top FROM bid GROUP BY auction) m \
           ON b.auction = m.auction AND b.price = m.top; \
         CREATE MATERIALIZED VIEW bidders AS SELECT DISTINCT bidder % 1000 AS b FROM bid; \
         CREATE MATERIALIZED VIEW cheap_bidders_bids AS SELECT auction, bidder, price FROM bid \
           WHERE bidder IN (SELECT bidder FROM cheap WHERE price < 1000); \
         CREATE MATERIALIZED VIEW pairs AS SELECT a.auction, c.bidder FROM \
           (SELECT auction FROM bid GROUP BY auction) a JOIN \
           (SELECT auction, bidder FROM cheap GROUP BY auction, bidder) c ON a.auction = c.auction",
    )
    .await
    .unwrap();
    // A view that only filters and projects an appended table only gains rows: it is stored
    // as appended batches (so is a union of such views); an aggregate is not, but a GROUP BY
    // without aggregates (a DISTINCT) and a semi join are (plan version 11): insertions only
    // ever insert their rows. An anti join's rows leave when a partner arrives.
    for (query, append_only) in [
        ("SELECT auction, price FROM bid WHERE price < 5000", true),
        ("SELECT auction FROM cheap UNION ALL SELECT auction FROM cheap", true),
        ("SELECT DISTINCT auction FROM bid", true),
        ("SELECT auction, bidder FROM cheap GROUP BY auction, bidder", true),
        ("SELECT auction, count(*) AS n FROM cheap GROUP BY auction", false),
        (
            "SELECT auction, price FROM bid WHERE auction IN (SELECT auction FROM cheap)",
            true,
        ),
        (
            "SELECT auction, price FROM bid b WHERE EXISTS \
             (SELECT 1 FROM cheap c WHERE c.auction = b.auction AND c.price > b.price)",
            true,
        ),
        (
            "SELECT auction, price FROM bid b WHERE NOT EXISTS (SELECT 1 FROM cheap c WHERE c.auction = b.auction)",
            false,
        ),
        (
            "SELECT a.auction, c.bidder FROM (SELECT DISTINCT auction FROM bid) a \
             JOIN (SELECT DISTINCT auction, bidder FROM cheap) c ON a.auction = c.auction",
            true,
        ),
        // An inner join of appended tables only gains rows.
        (
            "SELECT b.auction, c.price FROM bid b JOIN cheap c ON b.auction = c.auction",
            true,
        ),
    ] {
        let plan = rows(&c, &format!("EXPLAIN CREATE MATERIALIZED VIEW x AS {query}")).await;
        let header = plan
            .iter()
            .find(|l| l.starts_with("Materialized view"))
            .expect("a header line");
        assert_eq!(header.ends_with(", append-only"), append_only, "{query}: {plan:?}");
    }
    // Over inputs that only gain rows, a GROUP BY without aggregates writes each group once,
    // MIN / MAX keep no value multiset and a top-N keeps only its top.
    let plan = rows(
        &c,
        "EXPLAIN CREATE MATERIALIZED VIEW x AS SELECT DISTINCT auction FROM bid",
    )
    .await;
    assert!(plan.iter().any(|l| l.contains("each written once")), "{plan:?}");
    let plan = rows(
        &c,
        "EXPLAIN CREATE MATERIALIZED VIEW x AS SELECT auction, max(price) FROM bid GROUP BY auction",
    )
    .await;
    assert!(plan.iter().any(|l| l.contains("append-only input")), "{plan:?}");
    let plan = rows(
        &c,
        "EXPLAIN CREATE MATERIALIZED VIEW x AS SELECT price FROM bid ORDER BY price LIMIT 3",
    )
    .await;
    assert!(
        plan.iter().any(|l| l.contains("the first offset + limit rows")),
        "{plan:?}"
    );
    // A join of an appended table (its rows only gain) with an aggregate of it (whose changes
    // are few) keeps the appended side as sorted runs; a join of two appended inputs does not.
    for (query, runs) in [
        (
            "SELECT b.auction, m.top FROM bid b JOIN (SELECT auction, max(price) AS top FROM bid GROUP BY auction) m \
             ON b.auction = m.auction AND b.price = m.top",
            true,
        ),
        (
            "SELECT b.auction FROM bid b JOIN cheap c ON b.auction = c.auction",
            false,
        ),
    ] {
        let plan = rows(&c, &format!("EXPLAIN CREATE MATERIALIZED VIEW x AS {query}")).await;
        let join = plan.iter().find(|l| l.contains("HashJoin")).expect("a join");
        assert_eq!(join.contains("left rows as sorted runs"), runs, "{query}: {plan:?}");
        assert!(!join.contains("right rows as sorted runs"), "{query}: {plan:?}");
    }
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
    // The append-only views, after the crash and the rest of the stream, equal their batch
    // answers; so does one created now (backfilled from the stored batches).
    c.batch_execute("CREATE MATERIALIZED VIEW late AS SELECT bidder, price * 2 AS p2 FROM bid WHERE auction % 3 = 0")
        .await
        .unwrap();
    for (view, query) in [
        ("cheap", "SELECT auction, price, bidder FROM bid WHERE price < 5000"),
        (
            "cheap_union",
            "SELECT auction FROM bid WHERE price < 5000 UNION ALL SELECT auction FROM bid WHERE price < 1000",
        ),
        (
            "per_auction",
            "SELECT auction, count(*), max(price) FROM bid WHERE price < 5000 GROUP BY auction",
        ),
        ("late", "SELECT bidder, price * 2 FROM bid WHERE auction % 3 = 0"),
        (
            "extremes",
            "SELECT bidder % 7, min(price), max(date_time), min(channel), count(*) FROM bid GROUP BY bidder % 7",
        ),
        (
            "top_per_auction",
            "SELECT auction, price, bidder, rn FROM (SELECT auction, price, bidder, \
             row_number() OVER (PARTITION BY auction ORDER BY price DESC, bidder) AS rn FROM bid) t WHERE rn <= 2",
        ),
        (
            "top_bids",
            "SELECT auction, price, bidder FROM bid ORDER BY price DESC, bidder, auction LIMIT 3 OFFSET 2",
        ),
        (
            "best_bids",
            "SELECT b.auction, b.bidder, b.date_time, m.top FROM bid b \
             JOIN (SELECT auction, max(price) AS top FROM bid GROUP BY auction) m \
             ON b.auction = m.auction AND b.price = m.top",
        ),
        ("bidders", "SELECT DISTINCT bidder % 1000 FROM bid"),
        (
            "cheap_bidders_bids",
            "SELECT auction, bidder, price FROM bid WHERE bidder IN (SELECT bidder FROM bid WHERE price < 1000)",
        ),
        (
            "pairs",
            "SELECT DISTINCT a.auction, c.bidder FROM bid a JOIN bid c ON a.auction = c.auction WHERE c.price < 5000",
        ),
    ] {
        let want = rows(&c, &format!("SELECT * FROM ({query}) q")).await;
        let least = match view {
            "extremes" => 7,
            "top_bids" => 3,
            _ => 100,
        };
        assert!(want.len() >= least, "{view}: {} rows", want.len());
        assert_eq!(rows(&c, &format!("SELECT * FROM {view}")).await, want, "{view}");
    }
    assert_eq!(
        rows(
            &c,
            "SELECT row_count FROM freshet_catalog.materialized_views WHERE name = 'cheap'"
        )
        .await,
        rows(&c, "SELECT count(*) FROM bid WHERE price < 5000").await
    );
    let e = c
        .batch_execute("ALTER TABLE bid ADD COLUMN note TEXT")
        .await
        .unwrap_err();
    assert_eq!(crate::cdc::code(e), "0A000");
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

/// `AS PROCTIME()` columns after `*` hold the time each row was written, survive a restart, and
/// are refused where Freshet cannot fill them.
#[tokio::test(flavor = "multi_thread")]
async fn proctime_columns_hold_the_write_time() {
    let mut server = TestServer::start();
    let c = server.connect().await;
    let before = rows(&c, "SELECT now()").await;
    c.batch_execute(
        "CREATE TABLE b (*, p TIMESTAMP GENERATED ALWAYS AS (PROCTIME()) STORED, pz TIMESTAMPTZ AS PROCTIME()) \
         WITH (connector = 'nexmark', nexmark.table.type = 'bid', nexmark.event.num = '1000')",
    )
    .await
    .unwrap();
    eventually(&c, "SELECT count(*) FROM b", &["920".into()]).await;
    let after = rows(&c, "SELECT now()").await;
    let check = format!(
        "SELECT count(*) FROM b WHERE pz >= '{}'::timestamptz - INTERVAL '1' SECOND AND pz <= '{}'::timestamptz \
           AND p = pz::timestamp",
        before[0], after[0]
    );
    assert_eq!(rows(&c, &check).await, ["920"]);
    assert_eq!(
        rows(
            &c,
            "SELECT column_name, is_generated, is_updatable FROM information_schema.columns \
             WHERE table_name = 'b' AND column_name IN ('p', 'price') ORDER BY column_name"
        )
        .await,
        // (`rows` sorts the rows as text.)
        ["price|NEVER|YES", "p|ALWAYS|NO"]
    );
    let stored = rows(&c, "SELECT count(DISTINCT pz), min(pz), max(pz) FROM b").await;
    server.restart();
    let c = server.connect().await;
    assert_eq!(
        rows(&c, "SELECT count(DISTINCT pz), min(pz), max(pz) FROM b").await,
        stored
    );
    // Where Freshet cannot fill them.
    for (sql, code) in [
        ("CREATE TABLE t (a INT, p TIMESTAMPTZ AS PROCTIME())", "0A000"),
        ("CREATE TABLE t (a INT, p TIMESTAMPTZ GENERATED ALWAYS AS (now()) STORED)", "0A000"),
        (
            "CREATE TABLE t (*, x INT) WITH (connector = 'nexmark', nexmark.table.type = 'bid')",
            "42P16",
        ),
        (
            "CREATE TABLE t (*, p INT AS PROCTIME()) WITH (connector = 'nexmark', nexmark.table.type = 'bid')",
            "42804",
        ),
        (
            "CREATE TABLE t (*, price TIMESTAMPTZ AS PROCTIME()) WITH (connector = 'nexmark', nexmark.table.type = 'bid')",
            "42701",
        ),
        (
            "CREATE TABLE t (n INT, p TIMESTAMPTZ AS PROCTIME()) WITH (connector = 'datagen')",
            "0A000",
        ),
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(crate::cdc::code(e), code, "{sql}");
    }
    assert_eq!(
        rows(&c, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").await,
        ["0"]
    );
}

/// `datagen`: rows for the declared columns, sequences and bounded random values, exactly the
/// requested number, paced or at full speed; a view over them equals its batch answer.
#[tokio::test(flavor = "multi_thread")]
async fn datagen_tables_generate_what_their_options_say() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE dg (id INT PRIMARY KEY, name VARCHAR(6), score INT, ts TIMESTAMP) WITH (connector = 'datagen', \
           fields.id.kind = 'sequence', fields.id.start = '1', fields.id.end = '500', fields.name.length = '6', \
           fields.score.min = '1', fields.score.max = '3', datagen.rows.per.second = '0'); \
         CREATE MATERIALIZED VIEW by_score AS SELECT score, count(*) AS n FROM dg GROUP BY score",
    )
    .await
    .unwrap();
    eventually(&c, "SELECT count(*), sum(id) FROM dg", &["500|125250".into()]).await;
    assert_eq!(
        rows(
            &c,
            "SELECT min(score), max(score), min(length(name)), max(length(name)), max(ts) > min(ts) FROM dg"
        )
        .await,
        ["1|3|6|6|t"]
    );
    assert_eq!(
        rows(&c, "SELECT * FROM by_score").await,
        rows(&c, "SELECT score, count(*) FROM dg GROUP BY score").await
    );
    // Paced: 50 rows a second.
    c.batch_execute(
        "CREATE TABLE slow (n BIGINT) WITH (connector = 'datagen', fields.n.kind = 'sequence', datagen.rows.per.second = '50')",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n: i64 = rows(&c, "SELECT count(*) FROM slow").await[0].parse().unwrap();
    assert!((20..=150).contains(&n), "{n} rows after 1.5 s at 50 rows/s");
    // What cannot be generated is refused.
    let e = c
        .batch_execute("CREATE TABLE j (doc JSONB) WITH (connector = 'datagen')")
        .await
        .unwrap_err();
    assert_eq!(crate::cdc::code(e), "0A000");
    let e = c
        .batch_execute("CREATE TABLE a (*) WITH (connector = 'datagen')")
        .await
        .unwrap_err();
    assert_eq!(crate::cdc::code(e), "42P16");
    let e = c
        .batch_execute("CREATE TABLE b (x INT) WITH (connector = 'datagen', fields.y.kind = 'random')")
        .await
        .unwrap_err();
    assert_eq!(crate::cdc::code(e), "22023");
    let e = c
        .batch_execute("CREATE SOURCE d WITH (connector = 'datagen')")
        .await
        .unwrap_err();
    assert_eq!(crate::cdc::code(e), "0A000");
}
