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

/// The cells of psql's aligned output: every line with a `|`, split and trimmed.
fn cells(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| l.contains('|'))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// Asserts that psql's aligned output `out` of `cmd` has the row `row`.
fn assert_row(cmd: &str, out: &str, row: &[&str]) {
    assert!(cells(out).iter().any(|r| r == row), "{cmd}: no row {row:?} in\n{out}");
}

#[tokio::test]
async fn psql_describes_and_queries() {
    let server = TestServer::start();
    let (ok, out) = psql(
        &server,
        &[
            "-c",
            "CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(20) NOT NULL, balance NUMERIC(12,2) DEFAULT 0, tags TEXT[])",
            "-c",
            "CREATE TABLE events (at TIMESTAMP, payload TEXT)",
            "-c",
            "INSERT INTO accounts VALUES (1, 'ada', 10.5, '{x}'), (2, 'bob', DEFAULT, NULL)",
        ],
    );
    assert!(ok, "{out}");
    let run = |cmd: &str| {
        let (ok, out) = psql(&server, &["-c", cmd]);
        assert!(ok && !out.contains("ERROR"), "{cmd} failed: {out}");
        out
    };
    for cmd in ["\\dt", "\\d"] {
        let out = run(cmd);
        assert!(out.contains("List of relations"), "{cmd}: {out}");
        assert_row(cmd, &out, &["Schema", "Name", "Type", "Owner"]);
        assert_row(cmd, &out, &["public", "accounts", "table", "freshet"]);
        assert_row(cmd, &out, &["public", "events", "table", "freshet"]);
        assert!(out.contains("(2 rows)"), "{cmd}: {out}");
    }
    let out = run("\\d accounts");
    assert!(out.contains("Table \"public.accounts\""), "\\d accounts: {out}");
    assert_row(
        "\\d accounts",
        &out,
        &["Column", "Type", "Collation", "Nullable", "Default"],
    );
    assert_row("\\d accounts", &out, &["id", "integer", "", "not null", ""]);
    assert_row(
        "\\d accounts",
        &out,
        &["owner", "character varying(20)", "", "not null", ""],
    );
    assert_row("\\d accounts", &out, &["balance", "numeric(12,2)", "", "", "0"]);
    assert_row("\\d accounts", &out, &["tags", "text[]", "", "", ""]);
    assert!(
        out.contains("Indexes:\n    \"accounts_pkey\" PRIMARY KEY, btree (id)"),
        "\\d accounts: {out}"
    );
    let out = run("\\d events");
    assert!(out.contains("Table \"public.events\""), "\\d events: {out}");
    assert_row("\\d events", &out, &["at", "timestamp without time zone", "", "", ""]);
    assert_row("\\d events", &out, &["payload", "text", "", "", ""]);
    assert!(
        !out.contains("Indexes:") && !out.contains("row_id"),
        "\\d events: {out}"
    );
    let out = run("\\d accounts_pkey");
    assert!(
        out.contains("Index \"public.accounts_pkey\""),
        "\\d accounts_pkey: {out}"
    );
    assert!(
        out.contains("primary key, btree, for table \"public.accounts\""),
        "{out}"
    );
    let out = run("\\di");
    assert_row(
        "\\di",
        &out,
        &["public", "accounts_pkey", "index", "freshet", "accounts"],
    );
    assert!(out.contains("(1 row)"), "\\di: {out}");
    let out = run("\\dn");
    assert!(out.contains("List of schemas"), "\\dn: {out}");
    assert_row("\\dn", &out, &["public", "freshet"]);
    let out = run("\\l");
    assert!(out.contains("List of databases"), "\\l: {out}");
    let db = cells(&out).into_iter().find(|r| r[0] == "freshet");
    assert!(
        db.as_ref().is_some_and(|r| r[1] == "freshet" && r[2] == "UTF8"),
        "\\l: {out}"
    );
    // Freshet has no user-defined functions or plain views.
    let out = run("\\df");
    assert_row(
        "\\df",
        &out,
        &["Schema", "Name", "Result data type", "Argument data types", "Type"],
    );
    assert!(out.contains("(0 rows)"), "\\df: {out}");
    assert!(run("\\dv").contains("Did not find any relations."), "\\dv");
    assert!(run("\\dm").contains("Did not find any relations."), "\\dm");
    let (ok, out) = psql(
        &server,
        &[
            "-c",
            "CREATE MATERIALIZED VIEW rich AS SELECT owner, balance FROM accounts WHERE balance > 5",
        ],
    );
    assert!(ok, "{out}");
    let out = run("\\dm");
    assert_row("\\dm", &out, &["public", "rich", "materialized view", "freshet"]);
    let out = run("\\d rich");
    assert!(
        out.contains("Materialized view \"public.rich\"") && out.contains("numeric(12,2)"),
        "\\d rich: {out}"
    );
    let (ok, out) = psql(&server, &["-c", "\\d nosuch"]);
    assert!(
        !ok && out.contains("Did not find any relation named \"nosuch\""),
        "\\d nosuch: {out}"
    );
    let (ok, out) = psql(
        &server,
        &["-A", "-t", "-c", "SELECT owner, balance FROM accounts ORDER BY id"],
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "ada|10.50\nbob|0.00");
}

#[test]
fn regclass_casts_resolve_names_and_refuse_unknown_ones() {
    let server = TestServer::start();
    let (ok, out) = psql(
        &server,
        &[
            "-A",
            "-t",
            "-c",
            "CREATE SCHEMA other",
            "-c",
            "CREATE TABLE other.t2 (id INT PRIMARY KEY)",
            "-c",
            "SELECT relname, oid::regclass, relnamespace::regnamespace FROM pg_class WHERE oid = 'other.t2'::regclass",
            "-c",
            "SELECT to_regclass('nosuch') IS NULL, to_regtype('integer') = 23, to_regtype('hstore') IS NULL",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("t2|other.t2|other\n"), "{out}");
    assert!(out.contains("t|t|t"), "{out}");
    let (ok, out) = psql(&server, &["-c", "SELECT 'nosuch'::regclass"]);
    assert!(!ok && out.contains("relation \"nosuch\" does not exist"), "{out}");
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

/// A directory where `npm install pg` has been run (once per machine; later runs reuse it).
/// Panics when npm cannot provide the package: the test must not pass without its client.
fn node_pg_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("freshet-test-node-pg");
    std::fs::create_dir_all(&dir).unwrap();
    let has_pg = |dir: &std::path::Path| {
        Command::new("node")
            .args(["-e", "require('pg')"])
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has_pg(&dir) {
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "pg"])
            .current_dir(&dir)
            .output()
            .expect("npm is needed for the node-postgres test");
        assert!(
            out.status.success(),
            "npm install pg: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(has_pg(&dir), "the pg package is not loadable after npm install");
    dir
}

#[test]
fn node_postgres_runs_parameterised_queries() {
    let server = TestServer::start();
    let dir = node_pg_dir();
    let script = r#"
const { Client } = require('pg');
const assert = require('assert');
(async () => {
  const c = new Client({ host: '127.0.0.1', port: +process.argv[1], user: 'freshet', database: 'freshet' });
  await c.connect();
  await c.query('CREATE TABLE people (id INT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION, born DATE, tags TEXT[])');
  for (let i = 1; i <= 4; i++) {
    await c.query('INSERT INTO people VALUES ($1, $2, $3, $4, $5)', [i, `p${i}`, i * 1.5, `2000-01-0${i}`, ['x', `t${i}`]]);
  }
  const r = await c.query('SELECT id, name, score, tags FROM people WHERE id > $1 AND name <> $2 ORDER BY id', [1, 'p3']);
  assert.deepStrictEqual(r.rows, [
    { id: 2, name: 'p2', score: 3, tags: ['x', 't2'] },
    { id: 4, name: 'p4', score: 6, tags: ['x', 't4'] },
  ]);
  const n = await c.query({ text: 'SELECT count(*) AS n FROM people WHERE score >= $1', values: [3], rowMode: 'array' });
  assert.deepStrictEqual(n.rows, [['3']]);
  const d = await c.query('SELECT born FROM people WHERE name = $1', ['p2']);
  assert.strictEqual(d.rows[0].born.getDate(), 2);
  let code = null;
  try { await c.query('INSERT INTO people VALUES ($1, $2, $3, $4, $5)', [1, 'dup', 0, null, null]); }
  catch (e) { code = e.code; }
  assert.strictEqual(code, '23505');
  const u = await c.query('UPDATE people SET score = $1 WHERE id = $2', [16, 4]);
  assert.strictEqual(u.rowCount, 1);
  const s = await c.query('SELECT score FROM people WHERE id = $1', [4]);
  assert.strictEqual(s.rows[0].score, 16);
  await c.end();
  console.log('ok');
})().catch(e => { console.error(e); process.exit(1); });
"#;
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(server.pg_port.to_string())
        .current_dir(&dir)
        .output()
        .expect("node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("ok"),
        "node-postgres: {text}\n{}",
        server.log_text()
    );
}

/// A directory holding SQLAlchemy (`pip install --target`, once per machine), to put on
/// PYTHONPATH beside the installed psycopg. Panics when pip cannot provide it.
fn sqlalchemy_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("freshet-test-sqlalchemy");
    let has_it = |dir: &std::path::Path| {
        Command::new("python3")
            .args(["-c", "import sqlalchemy, psycopg"])
            .env("PYTHONPATH", dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has_it(&dir) {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--target"])
            .arg(&dir)
            .arg("sqlalchemy")
            .output()
            .expect("pip is needed for the SQLAlchemy test");
        assert!(
            out.status.success(),
            "pip install sqlalchemy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        has_it(&dir),
        "sqlalchemy (with psycopg) is not importable after pip install"
    );
    dir
}

#[test]
fn sqlalchemy_connects_and_queries() {
    let server = TestServer::start();
    let dir = sqlalchemy_dir();
    let script = r#"
import sys
from sqlalchemy import create_engine, text, inspect
eng = create_engine(f"postgresql+psycopg://freshet@127.0.0.1:{sys.argv[1]}/freshet")
with eng.connect() as conn:
    conn.execute(text("CREATE TABLE sa_items (id INT PRIMARY KEY, name VARCHAR(30) NOT NULL, qty BIGINT)"))
    conn.execute(text("INSERT INTO sa_items VALUES (:i, :n, :q)"), [{"i": 1, "n": "a", "q": 5}, {"i": 2, "n": "b", "q": None}])
    conn.commit()
    rows = conn.execute(text("SELECT name, qty FROM sa_items WHERE id >= :i ORDER BY id"), {"i": 1}).all()
    assert [tuple(r) for r in rows] == [("a", 5), ("b", None)], rows
insp = inspect(eng)
assert "sa_items" in insp.get_table_names(), insp.get_table_names()
assert insp.has_table("sa_items") and not insp.has_table("nosuch")
print("ok")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(server.pg_port.to_string())
        .env("PYTHONPATH", &dir)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("ok"),
        "sqlalchemy: {text}\n{}",
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

/// Prepared point lookups (`WHERE pk = $1`) take the fast path matched at Parse: they must
/// still see the transaction's own writes, follow DDL, and agree with the general path.
#[tokio::test]
async fn prepared_point_lookups_see_transactions_and_ddl() {
    let server = TestServer::start();
    let mut c = server.connect().await;
    c.batch_execute("CREATE TABLE kv (k INT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    let get = c.prepare("SELECT v FROM kv WHERE k = $1").await.unwrap();
    let v = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>();
    assert_eq!(v(c.query(&get, &[&1i32]).await.unwrap()), ["one"]);
    assert!(c.query(&get, &[&9i32]).await.unwrap().is_empty());
    let t = c.transaction().await.unwrap();
    t.execute("INSERT INTO kv VALUES (3, 'three')", &[]).await.unwrap();
    t.execute("UPDATE kv SET v = 'uno' WHERE k = 1", &[]).await.unwrap();
    t.execute("DELETE FROM kv WHERE k = 2", &[]).await.unwrap();
    assert_eq!(v(t.query(&get, &[&3i32]).await.unwrap()), ["three"]);
    assert_eq!(v(t.query(&get, &[&1i32]).await.unwrap()), ["uno"]);
    assert!(t.query(&get, &[&2i32]).await.unwrap().is_empty());
    t.rollback().await.unwrap();
    assert!(c.query(&get, &[&3i32]).await.unwrap().is_empty());
    assert_eq!(v(c.query(&get, &[&2i32]).await.unwrap()), ["two"]);
    // After DDL the prepared lookup re-resolves the table.
    c.batch_execute("DROP TABLE kv; CREATE TABLE kv (k INT PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'new')")
        .await
        .unwrap();
    assert_eq!(v(c.query(&get, &[&1i32]).await.unwrap()), ["new"]);
    // A failed transaction refuses the lookup like any statement.
    let t = c.transaction().await.unwrap();
    assert!(t.execute("SELECT 1/0", &[]).await.is_err());
    let err = t.query(&get, &[&1i32]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "25P02");
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
