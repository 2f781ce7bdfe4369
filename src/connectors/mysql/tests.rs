//! Tests of the MySQL CDC reader against a real throwaway MariaDB ([`crate::testkit::MariaDb`]).

use std::collections::HashMap;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;

use super::*;
use crate::dataflow::changes::Changes;
use crate::error::{Result, SqlState};
use crate::testkit::MariaDb;

/// Each row of a batch as `v1|v2|...` (NULL as `∅`).
fn rows_of(batch: &RecordBatch) -> Vec<String> {
    (0..batch.num_rows())
        .map(|r| {
            batch
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(r) {
                        "∅".to_string()
                    } else {
                        array_value_to_string(c, r).unwrap()
                    }
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

fn weighted(changes: &Changes) -> Vec<(String, i64)> {
    rows_of(&changes.data())
        .into_iter()
        .zip(changes.weights().values().iter().copied())
        .collect()
}

async fn next_item(reader: &mut BinlogReader) -> BinlogItem {
    tokio::time::timeout(Duration::from_secs(20), reader.next())
        .await
        .expect("binlog item within 20 s")
        .expect("binlog item")
}

/// The next Transaction, skipping Progress items.
async fn next_txn(reader: &mut BinlogReader) -> (Vec<(usize, Changes)>, BinlogPosition) {
    loop {
        match next_item(reader).await {
            BinlogItem::Transaction { changes, end, .. } => return (changes, end),
            BinlogItem::Progress { .. } => continue,
            BinlogItem::SchemaChange { reason, .. } => panic!("unexpected schema change: {reason}"),
        }
    }
}

async fn captured_all(cfg: &MysqlConfig, qualified: &str) -> CapturedTable {
    let upstream = describe_table(cfg, qualified).await.unwrap();
    capture_all(&upstream).unwrap().2
}

const ALL_TYPES: &str = "CREATE TABLE t.all_types (
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
    i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    de DECIMAL(10,3), fl FLOAT, db DOUBLE,
    ch CHAR(5), vc VARCHAR(20), tx TEXT, lt LONGTEXT CHARACTER SET latin1,
    bl BLOB, bn BINARY(4), vb VARBINARY(8),
    d DATE, dt DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(2), yr YEAR,
    js JSON, en ENUM('small','medium','large'), st SET('a','b','c'),
    b1 BIT(1), b9 BIT(9)
)";

const ALL_VALUES: &str = "(ID, -128, 255, -32768, 65535, -8388608, 16777215,
    -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
    -1234567.891, 1.5, -2.25,
    'ab', 'héllo wörld', 'some text', X'636166E9',
    X'00FF10', X'0102', X'0A0B',
    '2024-02-29', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.678', '12:34:56.78', 2024,
    '{\"b\": [1, 2], \"a\": \"x\"}', 'large', 'a,c',
    b'1', b'100000001')";

const EXPECTED: &str = "-128|255|-32768|65535|-8388608|16777215|-2147483648|4294967295|-9223372036854775808|\
18446744073709551615|-1234567.891|1.5|-2.25|ab|héllo wörld|some text|café|00ff10|01020000|0a0b|2024-02-29|\
2024-02-29T13:14:15.123456|2024-02-29T13:14:15.678Z|12:34:56.780|2024|{\"a\": \"x\", \"b\": [1, 2]}|large|a,c|true|257";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_every_type_through_snapshot_and_binlog() -> Result<()> {
    let db = MariaDb::start()?;
    db.exec(&format!("CREATE DATABASE t; {ALL_TYPES}")).await?;
    db.exec(&format!(
        "SET time_zone = '+00:00'; INSERT INTO t.all_types VALUES {}; INSERT INTO t.all_types (id) VALUES (2); \
         SET sql_mode = ''; INSERT INTO t.all_types (id, d, dt, yr, tm) VALUES (3, '0000-00-00', '0000-00-00 00:00:00', 0, '-01:00:00')",
        ALL_VALUES.replace("ID", "1")
    ))
    .await?;
    let cfg = db.config("t", 101);
    let upstream = describe_table(&cfg, "t.all_types").await?;
    let (declared, pk, captured) = capture_all(&upstream)?;
    assert_eq!(pk, vec!["id".to_string()]);
    let ty = |name: &str| declared.iter().find(|d| d.0 == name).unwrap().1.name();
    assert_eq!(ty("tiu"), "smallint");
    assert_eq!(ty("siu"), "integer");
    assert_eq!(ty("iu"), "bigint");
    assert_eq!(ty("biu"), "numeric(20,0)");
    assert_eq!(ty("js"), "jsonb", "MariaDB JSON is LONGTEXT + json_valid: detected");
    assert_eq!(ty("ts"), "timestamp with time zone");
    assert_eq!(ty("b1"), "boolean");
    assert_eq!(ty("yr"), "smallint");

    let nulls = ["∅"; 30].join("|");
    let zero = format!("3|{}|0|{}", ["∅"; 24].join("|"), ["∅"; 5].join("|"));
    let expected = vec![format!("1|{EXPECTED}"), format!("2|{nulls}"), zero];

    let mut snap = SnapshotReader::open(&cfg, vec![captured.clone()]).await?;
    let (idx, batch) = snap.next_chunk(100).await?.expect("one chunk");
    assert_eq!(idx, 0);
    assert_eq!(rows_of(&batch), expected, "snapshot");
    assert!(snap.next_chunk(100).await?.is_none());
    let from = snap.position().clone();
    assert_eq!(snap.progress()[0].rows_done, 3);

    let mut reader = BinlogReader::connect(&cfg, vec![captured], from).await?;
    db.exec(&format!(
        "SET time_zone = '+00:00'; DELETE FROM t.all_types; INSERT INTO t.all_types VALUES {}; INSERT INTO t.all_types (id) VALUES (2); \
         SET sql_mode = ''; INSERT INTO t.all_types (id, d, dt, yr, tm) VALUES (3, '0000-00-00', '0000-00-00 00:00:00', 0, '-01:00:00')",
        ALL_VALUES.replace("ID", "1")
    ))
    .await?;
    let (changes, _) = next_txn(&mut reader).await;
    let deleted: Vec<(String, i64)> = weighted(&changes[0].1);
    assert_eq!(
        deleted,
        expected.iter().map(|r| (r.clone(), -1)).collect::<Vec<_>>(),
        "binlog delete images"
    );
    for want in &expected {
        let (changes, _) = next_txn(&mut reader).await;
        assert_eq!(weighted(&changes[0].1), vec![(want.clone(), 1)], "binlog insert image");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_with_concurrent_writes_plus_stream_is_the_final_table() -> Result<()> {
    let db = MariaDb::start()?;
    db.exec(
        "CREATE DATABASE s; USE s; CREATE TABLE s.kv (k INT, j INT, v VARCHAR(20), PRIMARY KEY (k, j)); \
         INSERT INTO s.kv SELECT seq DIV 10, seq MOD 10, CONCAT('v', seq) FROM seq_0_to_19999;",
    )
    .await?;
    let cfg = db.config("s", 102);
    let captured = captured_all(&cfg, "s.kv").await;
    let mut snap = SnapshotReader::open(&cfg, vec![captured.clone()]).await?;
    let from = snap.position().clone();
    assert!(
        from.gtid.is_some(),
        "MariaDB snapshot carries a GTID position: {from:?}"
    );

    // A real concurrent writer: its own connection, in its own task.
    let root = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db.port())
        .user(Some("root"))
        .prefer_socket(false);
    let mut writer_conn = mysql_async::Conn::new(root).await.expect("root over TCP");
    let writer = tokio::spawn(async move {
        use mysql_async::prelude::Queryable;
        {
            for i in 0..40 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                writer_conn
                    .query_drop(format!(
                        "BEGIN; UPDATE s.kv SET v = CONCAT(v, '+') WHERE k = {a}; DELETE FROM s.kv WHERE k = {b} AND j < 5; \
                         INSERT INTO s.kv VALUES ({c}, 1, 'new'); COMMIT;",
                        a = (i * 37) % 2000,
                        b = (i * 53 + 7) % 2000,
                        c = 5000 + i
                    ))
                    .await
                    .unwrap();
            }
        }
    });
    let reader_side = async {
        let mut total: HashMap<String, i64> = HashMap::new();
        let mut chunks = 0;
        while let Some((_, batch)) = snap.next_chunk(500).await.unwrap() {
            chunks += 1;
            for r in rows_of(&batch) {
                *total.entry(r).or_default() += 1;
            }
        }
        (total, chunks)
    };
    let (mut total, chunks) = reader_side.await;
    writer.await.unwrap();
    assert_eq!(chunks, 40);

    let status = db.exec("SHOW MASTER STATUS").await?;
    let (end_file, end_pos) = (status[0][0].clone(), status[0][1].parse::<u64>().unwrap());
    let mut reader = BinlogReader::connect(&cfg, vec![captured], from).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "did not reach {end_file}:{end_pos}"
        );
        let end = match next_item(&mut reader).await {
            BinlogItem::Transaction { changes, end, .. } => {
                for (_, c) in changes {
                    for (row, w) in weighted(&c) {
                        *total.entry(row).or_default() += w;
                    }
                }
                end
            }
            BinlogItem::Progress { end, .. } => end,
            BinlogItem::SchemaChange { reason, .. } => panic!("{reason}"),
        };
        if end.file == end_file && end.pos >= end_pos {
            break;
        }
    }
    total.retain(|_, w| *w != 0);
    assert!(total.values().all(|w| *w == 1), "nothing doubled");
    let mut got: Vec<String> = total.into_keys().collect();
    got.sort();
    let mut want: Vec<String> = db
        .exec("SELECT k, j, v FROM s.kv")
        .await?
        .into_iter()
        .map(|r| r.join("|"))
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_come_whole_with_update_and_delete_weights() -> Result<()> {
    let db = MariaDb::start()?;
    db.exec(
        "CREATE DATABASE m; CREATE TABLE m.a (id INT PRIMARY KEY, v VARCHAR(10)); \
         CREATE TABLE m.b (id INT PRIMARY KEY, n INT); CREATE TABLE m.other (id INT PRIMARY KEY);",
    )
    .await?;
    let cfg = db.config("m", 103);
    let a = captured_all(&cfg, "m.a").await;
    // b read partially and in another order: only n, id.
    let b_up = describe_table(&cfg, "m.b").await?;
    let b = capture(
        &[
            ("n".into(), crate::catalog::types::SqlType::Int8, true),
            ("id".into(), crate::catalog::types::SqlType::Int4, false),
        ],
        &["id".into()],
        &b_up,
    )?;
    let snap = SnapshotReader::open(&cfg, vec![a.clone(), b.clone()]).await?;
    let from = snap.position().clone();
    drop(snap);
    let mut reader = BinlogReader::connect(&cfg, vec![a, b], from).await?;
    db.exec(
        "BEGIN; INSERT INTO m.a VALUES (1, 'x'), (2, 'y'); INSERT INTO m.b VALUES (1, 10); \
         UPDATE m.a SET v = 'z' WHERE id = 1; DELETE FROM m.a WHERE id = 2; COMMIT; \
         INSERT INTO m.other VALUES (1); \
         INSERT INTO m.b VALUES (2, 20);",
    )
    .await?;
    let (changes, _) = next_txn(&mut reader).await;
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].0, 0);
    assert_eq!(
        weighted(&changes[0].1),
        vec![
            ("1|x".into(), 1),
            ("2|y".into(), 1),
            ("1|x".into(), -1),
            ("1|z".into(), 1),
            ("2|y".into(), -1)
        ]
    );
    assert_eq!((changes[1].0, weighted(&changes[1].1)), (1, vec![("10|1".into(), 1)]));
    // The transaction on m.other is a Progress; then m.b's insert.
    let mut saw_progress = false;
    loop {
        match next_item(&mut reader).await {
            BinlogItem::Progress { .. } => saw_progress = true,
            BinlogItem::Transaction { changes, .. } => {
                assert_eq!(weighted(&changes[0].1), vec![("20|2".into(), 1)]);
                break;
            }
            BinlogItem::SchemaChange { reason, .. } => panic!("{reason}"),
        }
    }
    assert!(saw_progress);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_saved_file_position_and_gtid() -> Result<()> {
    let db = MariaDb::start()?;
    db.exec("CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY);")
        .await?;
    let cfg = db.config("r", 104);
    let t = captured_all(&cfg, "r.t").await;
    let from = SnapshotReader::open(&cfg, vec![t.clone()]).await?.position().clone();
    let mut reader = BinlogReader::connect(&cfg, vec![t.clone()], from).await?;
    db.exec("INSERT INTO r.t VALUES (1); INSERT INTO r.t VALUES (2); INSERT INTO r.t VALUES (3);")
        .await?;
    let mut ends = Vec::new();
    for want in ["1", "2", "3"] {
        let (changes, end) = next_txn(&mut reader).await;
        assert_eq!(weighted(&changes[0].1), vec![(want.to_string(), 1)]);
        ends.push(end);
    }
    assert!(ends[0].gtid.is_some(), "{:?}", ends[0]);
    drop(reader);

    // File + offset only.
    let by_pos = BinlogPosition {
        gtid: None,
        ..ends[0].clone()
    };
    let mut reader = BinlogReader::connect(&cfg, vec![t.clone()], by_pos).await?;
    for want in ["2", "3"] {
        let (changes, end) = next_txn(&mut reader).await;
        assert_eq!(weighted(&changes[0].1), vec![(want.to_string(), 1)]);
        assert_eq!(end, ends[want.parse::<usize>().unwrap() - 1], "positions agree");
    }
    drop(reader);

    // GTID only: a wrong offset proves the GTID state is what is used.
    let by_gtid = BinlogPosition {
        pos: 4,
        ..ends[0].clone()
    };
    let mut reader = BinlogReader::connect(&cfg, vec![t], by_gtid).await?;
    for want in ["2", "3"] {
        let (changes, end) = next_txn(&mut reader).await;
        assert_eq!(weighted(&changes[0].1), vec![(want.to_string(), 1)]);
        assert_eq!(end, ends[want.parse::<usize>().unwrap() - 1], "positions agree");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_gives_schema_changes() -> Result<()> {
    let db = MariaDb::start()?;
    db.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10), w INT);")
        .await?;
    let cfg = db.config("d", 105);
    let up = describe_table(&cfg, "d.t").await?;
    let t = capture(
        &[
            ("id".into(), crate::catalog::types::SqlType::Int4, false),
            ("v".into(), crate::catalog::types::SqlType::Text, true),
        ],
        &["id".into()],
        &up,
    )?;
    let from = SnapshotReader::open(&cfg, vec![t.clone()]).await?.position().clone();
    let mut reader = BinlogReader::connect(&cfg, vec![t], from).await?;
    db.exec("ALTER TABLE d.t ADD COLUMN extra INT; INSERT INTO d.t VALUES (1, 'a', 2, 3);")
        .await?;
    match next_item(&mut reader).await {
        BinlogItem::SchemaChange {
            table: 0,
            still_mappable: Some(c),
            ..
        } => assert_eq!(c.upstream_width, 4),
        other => panic!("expected a mappable schema change, got {other:?}"),
    }
    let (changes, _) = next_txn(&mut reader).await;
    assert_eq!(weighted(&changes[0].1), vec![("1|a".into(), 1)]);
    db.exec("ALTER TABLE d.t DROP COLUMN w; INSERT INTO d.t VALUES (2, 'b', 4);")
        .await?;
    match next_item(&mut reader).await {
        BinlogItem::SchemaChange {
            still_mappable: Some(c),
            ..
        } => assert_eq!(c.upstream_index, vec![0, 1]),
        other => panic!("dropping an unread column keeps the table: {other:?}"),
    }
    let (changes, _) = next_txn(&mut reader).await;
    assert_eq!(weighted(&changes[0].1), vec![("2|b".into(), 1)]);
    db.exec("ALTER TABLE d.t DROP COLUMN v; INSERT INTO d.t VALUES (3, 5);")
        .await?;
    match next_item(&mut reader).await {
        BinlogItem::SchemaChange {
            table: 0,
            still_mappable: None,
            reason,
            ..
        } => {
            assert!(reason.contains("\"v\""), "{reason}")
        }
        other => panic!("expected an unmappable schema change, got {other:?}"),
    }
    // The stopped table's rows are skipped.
    assert!(matches!(next_item(&mut reader).await, BinlogItem::Progress { .. }));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_errors_cleanly_and_reconnecting_resumes() -> Result<()> {
    let mut db = MariaDb::start()?;
    db.exec("CREATE DATABASE x; CREATE TABLE x.t (id INT PRIMARY KEY);")
        .await?;
    let cfg = db.config("x", 106);
    let t = captured_all(&cfg, "x.t").await;
    let from = SnapshotReader::open(&cfg, vec![t.clone()]).await?.position().clone();
    let mut reader = BinlogReader::connect(&cfg, vec![t.clone()], from).await?;
    db.exec("INSERT INTO x.t VALUES (1)").await?;
    let (_, last) = next_txn(&mut reader).await;
    tokio::task::block_in_place(|| db.restart())?;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(40), reader.next())
            .await
            .expect("an answer")
        {
            Ok(BinlogItem::Progress { .. }) => continue,
            Ok(other) => panic!("expected an error, got {other:?}"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, crate::error::Error::External { retryable: true, .. }),
        "{err:?}"
    );
    assert!(err.code().code().starts_with("08"), "{err:?}");
    db.exec("INSERT INTO x.t VALUES (2)").await?;
    let mut reader = BinlogReader::connect(&cfg, vec![t], last).await?;
    let (changes, _) = next_txn(&mut reader).await;
    assert_eq!(weighted(&changes[0].1), vec![("2".into(), 1)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_describe_report_clear_errors() -> Result<()> {
    let db = MariaDb::start()?;
    db.exec("CREATE DATABASE c; CREATE USER 'weak'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON *.* TO 'weak'@'%';")
        .await?;
    let cfg = db.config("c", 107);
    cfg.check().await?;
    let weak = MysqlConfig {
        username: "weak".into(),
        password: "pw".into(),
        ..cfg.clone()
    };
    let e = weak.check().await.unwrap_err();
    assert!(e.to_string().contains("REPLICATION SLAVE"), "{e}");
    let e = describe_table(&cfg, "c.missing").await.unwrap_err();
    assert_eq!(e.code(), SqlState::UNDEFINED_TABLE);
    let closed = MysqlConfig { port: 1, ..cfg.clone() };
    let e = describe_table(&closed, "c.t").await.unwrap_err();
    assert!(
        matches!(e, crate::error::Error::External { retryable: true, .. }),
        "{e:?}"
    );
    assert_eq!(e.code().code(), "08001");
    db.exec("SET GLOBAL binlog_format = 'STATEMENT'").await?;
    let e = cfg.check().await.unwrap_err();
    assert!(e.to_string().contains("binlog_format"), "{e}");
    Ok(())
}
