//! What the CDC tests share: reading Freshet's answers as text lines and waiting for them.

use std::time::{Duration, Instant};

pub fn code(e: tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| e.to_string())
}

/// Rows of a query as `a|b|c` lines (NULL as `NULL`), sorted.
pub async fn rows(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let msgs = c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut out: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// Waits until `sql` on Freshet returns `want`.
pub async fn eventually(c: &tokio_postgres::Client, sql: &str, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = rows(c, sql).await;
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            let status = rows(c, "SELECT name, state, reason, position FROM freshet_catalog.sources").await;
            let tables = rows(c, "SELECT * FROM freshet_catalog.source_tables").await;
            let diff = got.iter().zip(want).find(|(g, w)| g != w);
            panic!(
                "{sql}: still {} rows, want {} (first difference: {diff:?}); sources {status:?}; tables {tables:?}",
                got.len(),
                want.len(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the (one) source table finishes its snapshot, and checks that its progress
/// (rows done and estimated) was visible while it ran.
pub async fn snapshot_with_visible_progress(c: &tokio_postgres::Client) {
    let mut saw_progress = false;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let p = rows(
            c,
            "SELECT state, snapshot_rows, snapshot_rows_estimated FROM freshet_catalog.source_tables",
        )
        .await;
        let parts: Vec<&str> = p[0].split('|').collect();
        if parts[0] == "snapshotting" && parts[1] != "0" && parts[2] != "0" {
            saw_progress = true;
        }
        if parts[0] == "streaming" {
            break;
        }
        assert!(Instant::now() < deadline, "snapshot did not finish: {p:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(saw_progress, "snapshot progress was never visible");
}
