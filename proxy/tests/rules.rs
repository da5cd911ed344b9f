//! Query rules and per-user limits against a real MariaDB primary and replicas: a test
//! per action (block with a configured error, route to primary / replica / a node,
//! statement timeout, concurrency limit, row and byte limits) and per limit (connections, statements per
//! second), rules matched on user, schema, digest, regular expression and kind, their
//! counters in `SHOW SLUICE RULES` and `/metrics`, and rules changed by a reload.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use sluice::net::TokioNet;

fn cluster(replicas: usize) -> chaos::Cluster {
    let cluster = chaos::Cluster::start(chaos::ClusterSpec { replicas, ..Default::default() }).expect("cluster");
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.t (id INT PRIMARY KEY, v INT)").unwrap();
    cluster.app_sql(0, "INSERT INTO test.t VALUES (1, 1), (2, 2)").unwrap();
    cluster.wait_replicas_caught_up(Duration::from_secs(30)).unwrap();
    cluster
}

const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n[[admin.users]]\nname = \"ops\"\npassword = \"opspw\"\n";

fn config(cluster: &chaos::Cluster, extra: &str) -> String {
    common::split_config(cluster, "").replace("[backend]", "[[users]]\nname = \"bi\"\npassword = \"bi\"\n[backend]") + ADMIN + extra
}

async fn proxy(text: &str) -> sluice::ProxyHandle {
    sluice::start(TokioNet, sluice::Config::parse(text).expect("config"), 3).await.expect("proxy")
}

fn opts(addr: &str, user: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(common::port_of(addr))
        .user(Some(user))
        .pass(Some(user))
        .db_name(Some("test"))
        .prefer_socket(false)
        .into()
}

async fn connect(p: &sluice::ProxyHandle, user: &str) -> mysql_async::Conn {
    mysql_async::Conn::new(opts(p.local_addr(), user)).await.unwrap_or_else(|e| panic!("{user} login: {e}"))
}

fn code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// `SHOW SLUICE RULES` as rule name → row.
async fn rule_rows(p: &sluice::ProxyHandle) -> BTreeMap<String, BTreeMap<String, String>> {
    let a = mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(common::port_of(p.admin_addr().unwrap())).user(Some("ops")).pass(Some("opspw")).prefer_socket(false);
    let mut c = mysql_async::Conn::new(a).await.unwrap();
    let rows: Vec<mysql_async::Row> = c.query("SHOW SLUICE RULES").await.unwrap();
    rows.into_iter()
        .map(|r| {
            let cols: Vec<String> = r.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
            let m: BTreeMap<String, String> = cols.into_iter().enumerate().map(|(i, n)| (n, r.get::<String, _>(i).unwrap_or_default())).collect();
            (m["rule"].clone(), m)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_rule_refuses_matching_statements_with_its_error_and_counts_them() {
    let cluster = cluster(1);
    let rules = r#"
[[rules]]
name = "no-deletes"
kind = "write"
match = "(?i)^\\s*delete\\s"
block = true
error_code = 1142
error_message = "DELETE is not allowed through this proxy"
[[rules]]
name = "bi-no-t"
user = "bi"
schema = "test"
match = "(?i)\\bfrom\\s+t\\b"
block = true
"#;
    let p = proxy(&config(&cluster, rules)).await;
    let mut app = connect(&p, "app").await;
    let e = app.query_drop("DELETE FROM t WHERE id = 2").await.expect_err("blocked");
    assert_eq!(code(&e), Some(1142), "{e}");
    assert!(e.to_string().contains("DELETE is not allowed"), "{e}");
    // Not a write-kind DELETE text: a SELECT mentioning delete passes.
    let n: Option<i64> = app.query_first("SELECT COUNT(*) FROM t WHERE 'delete ' <> ''").await.unwrap();
    assert_eq!(n, Some(2), "nothing was deleted, other statements pass");
    assert_eq!(app.query_first::<i32, _>("SELECT v FROM t WHERE id = 1").await.unwrap(), Some(1), "user app is not matched by bi's rule");
    let mut bi = connect(&p, "bi").await;
    let e = bi.query_drop("SELECT v FROM t WHERE id = 1").await.expect_err("bi is blocked on t");
    assert_eq!(code(&e), Some(1105));
    assert!(e.to_string().contains("Sluice query rule 'bi-no-t'"), "{e}");
    assert_eq!(bi.query_first::<i32, _>("SELECT 1").await.unwrap(), Some(1), "the session goes on");
    // Prepared statements are matched too.
    let e = app.exec_drop("DELETE FROM t WHERE id = ?", (2,)).await.expect_err("blocked when prepared");
    assert_eq!(code(&e), Some(1142), "{e}");
    let rows = rule_rows(&p).await;
    assert_eq!(rows["no-deletes"]["blocked"], "2", "{rows:?}");
    assert_eq!(rows["bi-no-t"]["hits"], "1", "{rows:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rules_send_matching_reads_to_the_primary_a_replica_or_one_node() {
    let cluster = cluster(2);
    let r2 = cluster.node(2).addr();
    let rules = format!(
        r#"
[[rules]]
name = "fresh"
match = "(?i)/\\* fresh \\*/"
route = "primary"
[[rules]]
name = "reports"
user = "bi"
route = "{r2}"
"#
    );
    let p = proxy(&config(&cluster, &rules)).await;
    let ids: Vec<u32> = (0..3).map(|i| cluster.node(i).server_id()).collect();
    let mut app = connect(&p, "app").await;
    for _ in 0..10 {
        assert_eq!(app.query_first::<u32, _>("SELECT /* fresh */ @@server_id").await.unwrap(), Some(ids[0]));
    }
    let mut seen = BTreeMap::new();
    for _ in 0..20 {
        *seen.entry(app.query_first::<u32, _>("SELECT @@server_id").await.unwrap().unwrap()).or_insert(0) += 1;
    }
    assert!(!seen.contains_key(&ids[0]) && seen.len() == 2, "unmatched reads are balanced over the replicas: {seen:?}");
    let mut bi = connect(&p, "bi").await;
    for _ in 0..10 {
        assert_eq!(bi.query_first::<u32, _>("SELECT @@server_id").await.unwrap(), Some(ids[2]), "bi's reads go to {r2}");
    }
    // A write of bi still goes to the primary: a node route applies to reads only.
    bi.query_drop("UPDATE t SET v = v + 1 WHERE id = 2").await.unwrap();
    let rows = rule_rows(&p).await;
    assert_eq!(rows["fresh"]["hits"], "10");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_rule_kills_the_statement_on_its_backend_and_the_client_gets_the_servers_error() {
    let cluster = cluster(1);
    let rules = r#"
[[rules]]
name = "short"
match = "(?i)collations|benchmark"
timeout_ms = 300
"#;
    let p = proxy(&config(&cluster, rules)).await;
    let mut app = connect(&p, "app").await;
    let t0 = Instant::now();
    let long = "SELECT COUNT(*) FROM information_schema.COLLATIONS a, information_schema.COLLATIONS b, information_schema.COLLATIONS c, information_schema.COLLATIONS d";
    let e = app.query_drop(long).await.expect_err("killed");
    let took = t0.elapsed();
    assert_eq!(code(&e), Some(1317), "the server's own error for an interrupted statement: {e}");
    assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(app.query_first::<i32, _>("SELECT 1").await.unwrap(), Some(1), "the session goes on");
    // A statement that ends before the timeout is not touched, nor is the next one.
    assert_eq!(app.query_first::<i64, _>("SELECT BENCHMARK(10, 1)").await.unwrap(), Some(0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.query_first::<i32, _>("SELECT SLEEP(0.5)").await.unwrap(), Some(0), "a later statement runs whole");
    let rows = rule_rows(&p).await;
    assert_eq!(rows["short"]["timed_out"], "1", "{rows:?}");
    p.shutdown().await;
}

/// Rows a text query passes before its error (or the end): `(rows, error code)`.
async fn rows_until_error(c: &mut mysql_async::Conn, sql: &str) -> (usize, Option<u16>) {
    let mut n = 0;
    let mut r = match c.query_iter(sql).await {
        Ok(r) => r,
        Err(e) => return (0, code(&e)),
    };
    loop {
        match r.next().await {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, None),
            Err(e) => return (n, code(&e)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_and_byte_limits_cut_a_read_with_the_rules_error_and_the_session_goes_on() {
    let cluster = cluster(1);
    let rules = r#"
[[rules]]
name = "few-rows"
match = "seq_1_to_"
max_rows = 5
[[rules]]
name = "few-bytes"
match = "(?i)repeat"
max_bytes = 2000
error_code = 1105
error_message = "result too large for this proxy"
"#;
    let p = proxy(&config(&cluster, rules)).await;
    let mut app = connect(&p, "app").await;
    // Text protocol: five rows, then the rule's error instead of the sixth.
    assert_eq!(
        rows_until_error(&mut app, "SELECT seq FROM seq_1_to_100").await,
        (5, Some(1104))
    );
    assert_eq!(
        app.query_first::<i32, _>("SELECT 1").await.unwrap(),
        Some(1),
        "the session goes on"
    );
    // A result within the limit is untouched.
    let all: Vec<u64> = app.query("SELECT seq FROM seq_1_to_5").await.unwrap();
    assert_eq!(all, vec![1, 2, 3, 4, 5]);
    // Binary protocol (a prepared statement) is cut the same way.
    let stmt = app
        .prep("SELECT seq FROM seq_1_to_100 WHERE seq > ?")
        .await
        .unwrap();
    let mut n = 0;
    let mut r = app.exec_iter(&stmt, (0,)).await.unwrap();
    let err = loop {
        match r.next().await {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("the prepared read ended after {n} rows, uncut"),
            Err(e) => break e,
        }
    };
    drop(r);
    assert_eq!((n, code(&err)), (5, Some(1104)), "{err}");
    let kept: Vec<u64> = app.exec(&stmt, (97,)).await.unwrap();
    assert_eq!(
        kept,
        vec![98, 99, 100],
        "the statement runs again within the limit"
    );
    // A statement with a huge answer is killed on its backend rather than read to the end.
    let t0 = Instant::now();
    assert_eq!(
        rows_until_error(&mut app, "SELECT a.seq FROM seq_1_to_1000000000 a").await,
        (5, Some(1104))
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the rest of the answer was not waited for: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        app.query_first::<i32, _>("SELECT SLEEP(0.3)")
            .await
            .unwrap(),
        Some(0),
        "the next statement is not killed"
    );
    // Bytes: whole rows while the answer stays within 2000 bytes, then the configured error.
    let (rows, err_code) =
        rows_until_error(&mut app, "SELECT REPEAT('x', 100) FROM seq_0_to_999").await;
    assert_eq!(err_code, Some(1105));
    assert!(
        (10..19).contains(&rows),
        "about 2000 / 105 rows of 105 bytes: {rows}"
    );
    // Writes are never cut: what they did would be hidden.
    app.query_drop("CREATE TABLE test.s (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    app.query_drop("INSERT INTO test.s SELECT seq FROM seq_1_to_50")
        .await
        .unwrap();
    let rows = rule_rows(&p).await;
    assert_eq!(rows["few-rows"]["capped"], "3", "{rows:?}");
    assert_eq!(rows["few-bytes"]["capped"], "1", "{rows:?}");
    assert!(
        rows["few-rows"]["action"].contains("max_rows=5"),
        "{rows:?}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_rule_queues_then_refuses_matching_statements() {
    let cluster = cluster(1);
    let rules = r#"
[[rules]]
name = "one-at-a-time"
match = "(?i)sleep"
max_concurrency = 1
max_queue = 1
queue_timeout_ms = 300
"#;
    let p = proxy(&config(&cluster, rules)).await;
    let mut a = connect(&p, "app").await;
    let mut b = connect(&p, "app").await;
    let mut c = connect(&p, "app").await;
    let first = tokio::spawn(async move { a.query_first::<i32, _>("SELECT SLEEP(1.5)").await.map(|_| a) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let e = b.query_drop("SELECT SLEEP(0.1)").await.expect_err("waits 300 ms, then is refused");
    assert!(t0.elapsed() >= Duration::from_millis(290), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("waited 300 ms"), "{e}");
    assert_eq!(c.query_first::<i32, _>("SELECT 2").await.unwrap(), Some(2), "statements the rule does not match run");
    let mut a = first.await.unwrap().expect("the first one ran");
    // Its slot is free again: one waits its turn and runs.
    let t = tokio::spawn(async move { a.query_first::<i32, _>("SELECT SLEEP(0.15)").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.query_first::<i32, _>("SELECT SLEEP(0.01)").await.unwrap(), Some(0), "queued (about 100 ms of its 300), then ran");
    t.await.unwrap().unwrap();
    let rows = rule_rows(&p).await;
    assert_eq!(rows["one-at-a-time"]["throttled"], "1", "{rows:?}");
    assert_eq!(rows["one-at-a-time"]["queued"], "2", "{rows:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_limits_bound_connections_and_statements_per_second() {
    let cluster = cluster(1);
    let limits = r#"
[[limits]]
user = "bi"
max_connections = 2
statements_per_second = 10
"#;
    let p = proxy(&config(&cluster, limits)).await;
    let mut b1 = connect(&p, "bi").await;
    let _b2 = connect(&p, "bi").await;
    let e = mysql_async::Conn::new(opts(p.local_addr(), "bi")).await.expect_err("a third session is over the limit");
    assert_eq!(code(&e), Some(1203), "{e}");
    let _app = connect(&p, "app").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut refused = 0;
    for _ in 0..30 {
        match b1.query_drop("SELECT 1").await {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(code(&e), Some(1226), "{e}");
                refused += 1;
            }
        }
    }
    assert!((15..=22).contains(&refused), "about 10 of a burst of 30 pass ({refused} refused)");
    drop(_b2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _b3 = connect(&p, "bi").await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_change_with_a_reload_and_open_sessions_follow() {
    let cluster = cluster(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let base = config(&cluster, "");
    std::fs::write(&path, &base).unwrap();
    let p = sluice::start(TokioNet, sluice::Config::load(&path).unwrap(), 3).await.unwrap();
    let mut app = connect(&p, "app").await;
    app.query_drop("UPDATE t SET v = 5 WHERE id = 1").await.unwrap();
    std::fs::write(&path, format!("{base}\n[[rules]]\nname = \"freeze\"\nkind = \"write\"\nblock = true\n")).unwrap();
    let plan = p.reload().unwrap();
    assert!(plan.changed.iter().any(|k| k.starts_with("rules")), "{plan:?}");
    let e = app.query_drop("UPDATE t SET v = 6 WHERE id = 1").await.expect_err("the new rule applies to the open session");
    assert!(e.to_string().contains("'freeze'"), "{e}");
    std::fs::write(&path, &base).unwrap();
    p.reload().unwrap();
    app.query_drop("UPDATE t SET v = 6 WHERE id = 1").await.expect("the rule is gone");
    p.shutdown().await;
}
