//! Failover as clients see it, on real MariaDB: a primary-bound statement that finds the
//! primary down waits in the failover buffer and runs when the primary is back (a
//! restart) or a replica was promoted (by an external tool); the session's state is
//! re-established there. A write that was in flight when the primary died is never
//! re-sent: the client gets error 1317 ("outcome unknown") and its connection stays
//! open. A transaction cut by the crash gets error 1927 and its session ends.

mod common;

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use sluice::net::TokioNet;

fn cluster(replicas: usize) -> std::sync::Arc<chaos::Cluster> {
    let spec = chaos::ClusterSpec { replicas, ..Default::default() };
    let cluster = chaos::Cluster::start(spec).expect("start MariaDB");
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.fo (id INT PRIMARY KEY)").expect("table");
    if replicas > 0 {
        cluster.wait_replicas_caught_up(Duration::from_secs(30)).expect("replicas caught up");
    }
    std::sync::Arc::new(cluster)
}

async fn proxy(cluster: &chaos::Cluster, window_ms: u64) -> sluice::ProxyHandle {
    proxy_with(cluster, window_ms, "").await
}

/// [`proxy`] with more `[failover]` lines.
async fn proxy_with(cluster: &chaos::Cluster, window_ms: u64, failover: &str) -> sluice::ProxyHandle {
    let nodes: Vec<String> = cluster.nodes().iter().map(|n| format!("\"{}\"", n.addr())).collect();
    let cfg = format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
[[users]]
name = "app"
password = "app"
[backend]
user = "app"
password = "app"
nodes = [{}]
monitor_interval_ms = 200
monitor_timeout_ms = 150
monitor_failures = 2
monitor_debounce = 1
[pool]
min_idle = 1
[failover]
buffer_window_ms = {window_ms}
{failover}
"#,
        nodes.join(", ")
    );
    sluice::start(TokioNet, sluice::Config::parse(&cfg).expect("config"), 7).await.expect("proxy starts")
}

async fn client(proxy: &sluice::ProxyHandle) -> mysql_async::Conn {
    let o = mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(common::port_of(proxy.local_addr())).user(Some("app")).pass(Some("app")).prefer_socket(false);
    mysql_async::Conn::new(o).await.expect("client connects")
}

fn code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Runs a blocking cluster operation off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_a_restarted_primary_instead_of_failing_and_keeps_the_session_state() {
    let c = cluster(0);
    let proxy = proxy(&c, 30_000).await;
    let mut conn = client(&proxy).await;
    conn.query_drop("SET SESSION sort_buffer_size = 300000").await.expect("set");
    conn.query_drop("INSERT INTO test.fo VALUES (1)").await.expect("first write");
    let cc = c.clone();
    blocking(move || cc.kill_node(0).expect("kill primary")).await;
    let cc = c.clone();
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        cc.start_node(0).expect("restart primary");
    });
    let started = Instant::now();
    conn.query_drop("INSERT INTO test.fo VALUES (2)").await.expect("the write waits for the primary and succeeds");
    let waited = started.elapsed();
    restart.join().expect("restart thread");
    eprintln!("write buffered across a primary restart (1.5 s down + restart): waited {waited:?}");
    assert!(waited >= Duration::from_millis(1000), "the write cannot have run before the restart: {waited:?}");
    let sort: u64 = conn.query_first("SELECT @@session.sort_buffer_size").await.expect("read").expect("row");
    assert_eq!(sort, 300000, "the session's variables are re-established on the new connection");
    let n: u64 = conn.query_first("SELECT COUNT(*) FROM test.fo").await.expect("count").expect("row");
    assert_eq!(n, 2);
    let f = proxy.stats().failover;
    assert!(f.buffered >= 1 && f.resumed >= 1 && f.waiting == 0, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_when_the_primary_dies_is_never_resent_and_the_connection_stays_open() {
    let c = cluster(0);
    let proxy = proxy(&c, 30_000).await;
    let mut conn = client(&proxy).await;
    let cc = c.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        cc.kill_node(0).expect("kill primary");
        std::thread::sleep(Duration::from_millis(500));
        cc.start_node(0).expect("restart primary");
    });
    // Still running (SLEEP) when the primary is killed: sent, no reply.
    let e = conn.query_drop("INSERT INTO test.fo SELECT 10 FROM (SELECT SLEEP(3)) AS s").await.expect_err("the write's connection died");
    assert_eq!(code(&e), Some(1317), "outcome unknown: {e}");
    assert!(e.to_string().contains("whether it was applied is unknown"), "{e}");
    killer.join().expect("killer thread");
    // The same client connection goes on (its next statement waits for the restart).
    let n: u64 = conn.query_first("SELECT COUNT(*) FROM test.fo WHERE id = 10").await.expect("the session goes on").expect("row");
    assert_eq!(n, 0, "the write was not re-sent (the server rolled it back with the crash)");
    conn.query_drop("INSERT INTO test.fo VALUES (11)").await.expect("writes go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cut_by_a_primary_crash_is_reported_rolled_back_and_its_session_ends() {
    let c = cluster(0);
    let proxy = proxy(&c, 30_000).await;
    let mut conn = client(&proxy).await;
    conn.query_drop("BEGIN").await.expect("begin");
    conn.query_drop("INSERT INTO test.fo VALUES (20)").await.expect("write in the transaction");
    let cc = c.clone();
    blocking(move || {
        cc.kill_node(0).expect("kill primary");
        cc.start_node(0).expect("restart primary");
    })
    .await;
    let e = conn.query_drop("INSERT INTO test.fo VALUES (21)").await.expect_err("the transaction is gone");
    assert_eq!(code(&e), Some(1927), "{e}");
    assert!(e.to_string().contains("rolled back"), "{e}");
    assert!(conn.query_drop("SELECT 1").await.is_err(), "the session ended");
    let mut fresh = client(&proxy).await;
    let n: u64 = fresh.query_first("SELECT COUNT(*) FROM test.fo WHERE id IN (20, 21)").await.expect("count").expect("row");
    assert_eq!(n, 0, "nothing of the transaction was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_a_replica_promoted_by_an_external_tool_after_the_primary_dies() {
    let c = cluster(2);
    let proxy = proxy(&c, 30_000).await;
    let mut conn = client(&proxy).await;
    conn.query_drop("USE test").await.expect("use");
    conn.query_drop("INSERT INTO fo VALUES (30)").await.expect("first write");
    let cc = c.clone();
    blocking(move || cc.kill_node(0).expect("kill primary")).await;
    let cc = c.clone();
    let promoter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        cc.promote(1).expect("promote replica 1");
    });
    let started = Instant::now();
    // USE test lives in the session: the write runs in it on the new primary.
    conn.query_drop("INSERT INTO fo VALUES (31)").await.expect("the write waits for the promotion");
    let waited = started.elapsed();
    promoter.join().expect("promoter thread");
    eprintln!("write buffered across a promotion (started 1 s after the kill): waited {waited:?}");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    let on_new = c.app_sql(1, "SELECT COUNT(*) FROM test.fo WHERE id IN (30, 31)").expect("read node 1");
    assert_eq!(on_new.trim(), "2", "both writes are on the promoted node");
    let f = proxy.stats().failover;
    assert!(f.resumed >= 1, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_waits_no_longer_than_the_buffer_window() {
    let c = cluster(0);
    let proxy = proxy(&c, 800).await;
    let mut conn = client(&proxy).await;
    let cc = c.clone();
    blocking(move || cc.kill_node(0).expect("kill primary")).await;
    let started = Instant::now();
    let e = conn.query_drop("INSERT INTO test.fo VALUES (40)").await.expect_err("no primary within the window");
    let waited = started.elapsed();
    assert_eq!(code(&e), Some(1429), "{e}");
    assert!(e.to_string().contains("buffer_window_ms"), "{e}");
    assert!(waited >= Duration::from_millis(700) && waited < Duration::from_secs(5), "{waited:?}");
    let f = proxy.stats().failover;
    assert!(f.timed_out >= 1 && f.waiting == 0, "{f:?}");
    let cc = c.clone();
    blocking(move || cc.start_node(0).expect("restart primary")).await;
    conn.query_drop("INSERT INTO test.fo VALUES (41)").await.expect("the same connection works once the primary is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_transaction_replay_a_transaction_cut_by_a_primary_crash_goes_on_on_the_restarted_primary() {
    let c = cluster(0);
    let proxy = proxy_with(&c, 30_000, "transaction_replay = true").await;
    let mut conn = client(&proxy).await;
    conn.query_drop("BEGIN").await.expect("begin");
    conn.query_drop("INSERT INTO test.fo VALUES (30)").await.expect("write in the transaction");
    let seen: Vec<u32> = conn.query("SELECT id FROM test.fo WHERE id >= 30 ORDER BY id").await.expect("read in the transaction");
    assert_eq!(seen, vec![30]);
    let cc = c.clone();
    blocking(move || {
        cc.kill_node(0).expect("kill primary");
        cc.start_node(0).expect("restart primary");
    })
    .await;
    // The server rolled the transaction back; Sluice runs it again there and it goes on.
    conn.query_drop("INSERT INTO test.fo VALUES (31)").await.expect("the transaction was replayed");
    conn.query_drop("COMMIT").await.expect("commit");
    let mut fresh = client(&proxy).await;
    let rows: Vec<u32> = fresh.query("SELECT id FROM test.fo WHERE id IN (30, 31) ORDER BY id").await.expect("rows");
    assert_eq!(rows, vec![30, 31], "the replayed transaction committed whole, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_replay_is_refused_when_a_replayed_statement_answers_differently() {
    let c = cluster(0);
    let proxy = proxy_with(&c, 30_000, "transaction_replay = true").await;
    let mut conn = client(&proxy).await;
    conn.query_drop("BEGIN").await.expect("begin");
    let n: u64 = conn.query_first("SELECT COUNT(*) FROM test.fo WHERE id >= 40").await.expect("count").expect("row");
    assert_eq!(n, 0);
    conn.query_drop("INSERT INTO test.fo VALUES (40)").await.expect("write in the transaction");
    let cc = c.clone();
    blocking(move || {
        cc.kill_node(0).expect("kill primary");
        cc.start_node(0).expect("restart primary");
        // Someone else changes what the transaction read before Sluice replays it.
        cc.app_sql(0, "INSERT INTO test.fo VALUES (41)").expect("other write");
    })
    .await;
    let e = conn.query_drop("INSERT INTO test.fo VALUES (42)").await.expect_err("the replay differs: not replayed");
    assert_eq!(code(&e), Some(1927), "{e}");
    assert!(e.to_string().contains("not replayed: a replayed statement answered"), "{e}");
    let mut fresh = client(&proxy).await;
    let rows: Vec<u32> = fresh.query("SELECT id FROM test.fo WHERE id >= 40 ORDER BY id").await.expect("rows");
    assert_eq!(rows, vec![41], "nothing of the refused transaction was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_transaction_replay_a_transaction_cut_by_a_promotion_goes_on_on_the_new_primary() {
    let c = cluster(1);
    let proxy = proxy_with(&c, 30_000, "transaction_replay = true").await;
    let mut conn = client(&proxy).await;
    conn.query_drop("BEGIN").await.expect("begin");
    conn.query_drop("INSERT INTO test.fo VALUES (50)").await.expect("write in the transaction");
    let cc = c.clone();
    blocking(move || {
        cc.kill_node(0).expect("kill primary");
        cc.promote(1).expect("an external tool promotes the replica");
    })
    .await;
    conn.query_drop("INSERT INTO test.fo VALUES (51)").await.expect("the transaction was replayed on the new primary");
    conn.query_drop("COMMIT").await.expect("commit");
    let rows = c.app_sql(1, "SELECT id FROM test.fo WHERE id IN (50, 51) ORDER BY id").expect("rows");
    assert_eq!(rows.split_whitespace().collect::<Vec<_>>(), vec!["50", "51"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_while_the_primary_is_down_waits_for_it_instead_of_failing() {
    let c = cluster(0);
    let proxy = proxy(&c, 30_000).await;
    let mut first = client(&proxy).await;
    first.query_drop("SELECT 1").await.expect("up");
    let cc = c.clone();
    blocking(move || cc.kill_node(0).expect("kill primary")).await;
    let cc = c.clone();
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        cc.start_node(0).expect("restart primary");
    });
    let started = Instant::now();
    let mut late = client(&proxy).await;
    let waited = started.elapsed();
    late.query_drop("INSERT INTO test.fo VALUES (60)").await.expect("the new session works");
    restart.join().expect("restart thread");
    assert!(waited >= Duration::from_millis(1000), "the login waited for the restarted primary ({waited:?})");
}
