//! Joins with a side that has one row per join key, ever (a stream keyed by the join key): the
//! other side's rows are kept only until their partner arrives, then joined and dropped. The
//! views are checked against DataFusion's batch answer over stored copies of the same rows,
//! across a kill -9 mid-stream.

use std::time::{Duration, Instant};

use crate::cdc::{code, rows};
use crate::harness::TestServer;

const ORDERS: i64 = 3000;
const ITEMS: i64 = 6000;

/// The columns and generator options of `orders` (keyed by a sequence) and `items` (random
/// order ids: many arrive before their order, many after), at `rate` rows per second.
fn orders(name: &str, rate: i64, key: &str) -> String {
    format!(
        "{name} (id BIGINT{key}, amount BIGINT) WITH (connector = 'datagen', datagen.rows.per.second = '{rate}', \
         fields.id.kind = 'sequence', fields.id.start = '1', fields.id.end = '{ORDERS}', \
         fields.amount.min = '0', fields.amount.max = '100', fields.amount.seed = '3')"
    )
}

fn items(name: &str, rate: i64) -> String {
    format!(
        "{name} (order_id BIGINT, qty BIGINT) WITH (connector = 'datagen', datagen.rows.per.second = '{rate}', \
         datagen.rows.num = '{ITEMS}', fields.order_id.min = '1', fields.order_id.max = '{ORDERS}', \
         fields.order_id.seed = '5', fields.qty.min = '0', fields.qty.max = '100', fields.qty.seed = '7')"
    )
}

/// The views, each as (name, query over `o` = orders and `i` = items).
fn views(orders: &str, items: &str) -> Vec<(&'static str, String)> {
    vec![
        // The unique side on the right.
        (
            "by_item",
            format!("SELECT i.order_id, i.qty, o.amount FROM {items} i JOIN {orders} o ON i.order_id = o.id"),
        ),
        // On the left, with a condition on both sides, under an aggregate.
        (
            "by_order",
            format!(
                "SELECT o.id, count(*) AS n, sum(i.qty) AS q FROM {orders} o JOIN {items} i \
                 ON o.id = i.order_id AND i.qty < o.amount GROUP BY o.id"
            ),
        ),
        // Filtered: the filter on the unique side is checked on the joined rows.
        (
            "big_items",
            format!(
                "SELECT i.order_id, i.qty, o.amount FROM {items} i JOIN {orders} o ON i.order_id = o.id \
                 WHERE o.amount > 50 AND i.qty > 10"
            ),
        ),
        // Filtered and renamed in a subquery.
        (
            "big_orders",
            format!(
                "SELECT i.qty, x.amount FROM {items} i JOIN (SELECT id AS oid, amount FROM {orders} WHERE amount > 50) x \
                 ON x.oid = i.order_id"
            ),
        ),
    ]
}

async fn wait_generated(c: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let pending = "SELECT count(*) FROM freshet_catalog.sources WHERE connector = 'datagen' \
                   AND coalesce(reason, '') NOT LIKE 'all % generated'";
    while rows(c, pending).await != ["0"] {
        assert!(Instant::now() < deadline, "the generators did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_with_a_unique_side_keep_rows_only_until_their_partner_arrives() {
    let mut server = TestServer::start();
    let c = server.connect().await;
    // Items are generated faster than orders: most of the later orders' items arrive first.
    c.batch_execute(&format!(
        "CREATE SOURCE {}; CREATE SOURCE {}",
        orders("orders", 1000, " PRIMARY KEY"),
        items("items", 3000)
    ))
    .await
    .unwrap();
    for (name, query) in views("orders", "items") {
        c.batch_execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}"))
            .await
            .unwrap();
    }
    let plan = |view: usize| {
        let (_, query) = views("orders", "items").swap_remove(view);
        format!("EXPLAIN CREATE MATERIALIZED VIEW x AS {query}")
    };
    let explained = rows(&c, &plan(0)).await.join("\n");
    assert!(
        explained.contains("left rows only until their right row arrives"),
        "{explained}"
    );
    let explained = rows(&c, &plan(1)).await.join("\n");
    assert!(
        explained.contains("right rows only until their left row arrives"),
        "{explained}"
    );
    let explained = rows(&c, &plan(2)).await.join("\n");
    assert!(
        explained.contains("filter o.amount > Int64(50)") && explained.contains("left rows only until"),
        "{explained}"
    );
    // Kill -9 while both streams are half way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows(&c, "SELECT count(*) FROM by_item").await[0]
        .parse::<i64>()
        .unwrap()
        < 500
    {
        assert!(Instant::now() < deadline, "no rows reached the view");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9();
    server.restart();
    let c = server.connect().await;
    wait_generated(&c).await;
    // Stored copies of the same rows (row n is a function of n and the seeds).
    c.batch_execute(&format!(
        "CREATE TABLE {}; CREATE TABLE {}",
        orders("orders_t", 0, " PRIMARY KEY"),
        items("items_t", 0)
    ))
    .await
    .unwrap();
    wait_generated(&c).await;
    assert_eq!(rows(&c, "SELECT count(*) FROM orders_t").await, [ORDERS.to_string()]);
    assert_eq!(rows(&c, "SELECT count(*) FROM items_t").await, [ITEMS.to_string()]);
    let batch = views("orders_t", "items_t");
    for (name, query) in batch {
        let want = rows(&c, &query).await;
        assert!(want.len() > 100, "{name}: only {} rows", want.len());
        assert_eq!(rows(&c, &format!("SELECT * FROM {name}")).await, want, "{name}");
    }
    // Items before and after their order: every item whose order exists was joined once.
    assert_eq!(
        rows(&c, "SELECT count(*) FROM by_item").await,
        rows(&c, "SELECT count(*) FROM items_t WHERE order_id BETWEEN 1 AND 3000").await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datagen_stream_key_must_be_a_sequence() {
    let server = TestServer::start();
    let c = server.connect().await;
    let err = c
        .batch_execute(&format!(
            "CREATE SOURCE {}",
            items("bad", 10).replace("order_id BIGINT", "order_id BIGINT PRIMARY KEY")
        ))
        .await
        .unwrap_err();
    assert_eq!(code(err), "42P16");
    c.batch_execute(&format!("CREATE SOURCE {}", orders("good", 10, " PRIMARY KEY")))
        .await
        .unwrap();
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM freshet_catalog.sources WHERE name IN ('bad', 'good')"
        )
        .await,
        ["1"]
    );
}
