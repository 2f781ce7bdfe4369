//! Real clients against a real server: psql, psycopg (Python), tokio-postgres with the extended
//! protocol and binary values, HTTP, cancel requests, many concurrent sessions.

use std::process::Command;

use crate::harness::{which, TestServer};

fn psql(server: &TestServer, args: &[&str]) -> (bool, String) {
    let out = Command::new(which("psql").expect("psql is installed by the test command"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.pg_port.to_string(),
            "-U",
            "freshet",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(args)
        .arg("freshet")
        .output()
        .expect("run psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn psql_describes_and_queries() {
    let server = TestServer::start();
    let (ok, out) = psql(
        &server,
        &[
            "-c",
            "CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(20) NOT NULL, balance NUMERIC(12,2) DEFAULT 0)",
            "-c",
            "INSERT INTO accounts VALUES (1, 'ada', 10.5), (2, 'bob', DEFAULT)",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = psql(&server, &["-c", "\\dt"]);
    assert!(ok && out.contains("accounts") && out.contains("table"), "\\dt: {out}");
    let (ok, out) = psql(&server, &["-c", "\\d accounts"]);
    assert!(ok, "\\d accounts failed: {out}");
    assert!(
        out.contains("owner") && out.contains("character varying(20)") && out.contains("not null"),
        "\\d: {out}"
    );
    assert!(
        out.contains("numeric(12,2)") && out.contains("accounts_pkey"),
        "\\d: {out}"
    );
    for cmd in ["\\dn", "\\l", "\\df", "\\d"] {
        let (ok, out) = psql(&server, &["-c", cmd]);
        assert!(ok, "{cmd} failed: {out}");
    }
    let (ok, out) = psql(
        &server,
        &["-A", "-t", "-c", "SELECT owner, balance FROM accounts ORDER BY id"],
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "ada|10.50\nbob|0.00");
}

#[tokio::test]
async fn psycopg_runs_parameterised_queries() {
    let server = TestServer::start();
    let script = r#"
import sys, psycopg
with psycopg.connect(host="127.0.0.1", port=int(sys.argv[1]), user="freshet", dbname="freshet") as conn:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name TEXT, price DOUBLE PRECISION, tags TEXT[])")
        for i in range(5):
            cur.execute("INSERT INTO items VALUES (%s, %s, %s, %s)", (i, f"item-{i}", i * 1.5, ["a", f"t{i}"]))
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("SELECT name, price FROM items WHERE id >= %s AND name <> %s ORDER BY id", (2, "item-3"))
        rows = cur.fetchall()
        assert rows == [("item-2", 3.0), ("item-4", 6.0)], rows
        cur.execute("SELECT tags FROM items WHERE id = %s", (4,))
        assert cur.fetchone()[0] == ["a", "t4"]
        try:
            cur.execute("INSERT INTO items VALUES (%s, %s, %s, %s)", (1, "dup", 0.0, []))
            raise SystemExit("duplicate insert was accepted")
        except psycopg.errors.UniqueViolation:
            pass
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM items")
        assert cur.fetchone()[0] == 5
print("ok")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(server.pg_port.to_string())
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("ok"),
        "psycopg: {text}\n{}",
        server.log_text()
    );
}

#[tokio::test]
async fn tokio_postgres_extended_protocol_with_binary_values() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE m (id BIGINT PRIMARY KEY, small SMALLINT, flag BOOLEAN, x REAL, y DOUBLE PRECISION, \
         s TEXT, b BYTEA, d DATE, ts TIMESTAMP, n NUMERIC(10,3))",
    )
    .await
    .unwrap();
    let stmt = c
        .prepare("INSERT INTO m (id, small, flag, x, y, s, b) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .await
        .unwrap();
    for i in 0..3i64 {
        c.execute(
            &stmt,
            &[
                &i,
                &(i as i16),
                &(i % 2 == 0),
                &(i as f32 * 0.5),
                &(i as f64 * 0.25),
                &format!("s{i}"),
                &vec![i as u8, 255u8],
            ],
        )
        .await
        .unwrap();
    }
    let rows = c
        .query(
            "SELECT id, small, flag, x, y, s, b FROM m WHERE id > $1 ORDER BY id",
            &[&0i64],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    assert_eq!(rows[0].get::<_, i16>(1), 1);
    assert!(!rows[0].get::<_, bool>(2));
    assert_eq!(rows[1].get::<_, f32>(3), 1.0);
    assert_eq!(rows[1].get::<_, f64>(4), 0.5);
    assert_eq!(rows[1].get::<_, String>(5), "s2");
    assert_eq!(rows[1].get::<_, Vec<u8>>(6), vec![2u8, 255]);
    // Named prepared statement reused; portal-less errors carry SQLSTATEs.
    let q = c.prepare("SELECT count(*) FROM m WHERE s = $1").await.unwrap();
    assert_eq!(c.query_one(&q, &[&"s1"]).await.unwrap().get::<_, i64>(0), 1);
    assert_eq!(c.query_one(&q, &[&"nope"]).await.unwrap().get::<_, i64>(0), 0);
    let err = c
        .execute(&stmt, &[&1i64, &0i16, &true, &0f32, &0f64, &"x", &vec![0u8]])
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23505");
    let err = c.query("SELECT * FROM nope", &[]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01");
}

#[tokio::test]
async fn http_sql_endpoint() {
    let server = TestServer::start();
    let post = |sql: &str| {
        let out = Command::new("curl")
            .args(["-s", "-X", "POST", "-H", "content-type: application/json", "-d"])
            .arg(serde_json::json!({ "sql": sql }).to_string())
            .arg(server.http_url("/v1/sql"))
            .output()
            .expect("curl");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {:?}", out))
    };
    let health = Command::new("curl")
        .args(["-s", &server.http_url("/health")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&health.stdout).contains("ok"));
    post("CREATE TABLE h (id INT PRIMARY KEY, name TEXT)");
    post("INSERT INTO h VALUES (1, 'one'), (2, NULL)");
    let r = post("SELECT id, name FROM h ORDER BY id");
    assert_eq!(r["columns"][0]["name"], "id");
    assert_eq!(r["rows"], serde_json::json!([[1, "one"], [2, null]]));
    let e = post("SELECT * FROM missing");
    assert_eq!(e["error"]["code"], "42P01");
}

#[tokio::test]
async fn cancel_request_stops_a_running_query() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE big (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO big SELECT * FROM generate_series(1, 200000)")
        .await
        .unwrap();
    let token = c.cancel_token();
    let query = tokio::spawn(async move {
        c.query("SELECT count(*) FROM big a, big b WHERE a.id % 1000 = b.id % 977", &[])
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), query)
        .await
        .expect("query ended after cancel")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "57014", "{err}");
}

#[tokio::test]
async fn concurrent_sessions_increment_without_lost_updates() {
    let server = TestServer::start();
    let c = server.connect().await;
    c.batch_execute("CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT); INSERT INTO counter VALUES (1, 0)")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = server.connect().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                c.execute("UPDATE counter SET n = n + 1 WHERE id = 1", &[])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n: i64 = c.query_one("SELECT n FROM counter", &[]).await.unwrap().get(0);
    assert_eq!(n, 320);
}

#[test]
fn server_refuses_a_taken_port_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["server", "--data-dir"])
        .arg(dir.path())
        .args([
            "--pg-listen",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen") && err.contains(&port.to_string()),
        "{err}"
    );
}
