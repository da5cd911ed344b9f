//! Read/write splitting against a real MariaDB primary and two replicas: which node
//! serves each statement (read back with `@@server_id`), with mysql_async, the
//! `mariadb` CLI and PyMySQL; session state carried to the replicas; hints, session
//! commands and `SHOW SLUICE ROUTE`; a replica stopped mid-run; replication stopped on
//! one replica; a manual promotion; the load-balancing policies' distributions.
//!
//! Each test starts its own cluster (primary = node 0, server ids 1, 2, 3), so tests
//! that stop nodes or promote one do not disturb the others.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{mariadb_cli, python};
use mysql_async::prelude::*;
use sluice::net::TokioNet;

struct Fixture {
    cluster: chaos::Cluster,
}

fn cluster() -> Fixture {
    let spec = chaos::ClusterSpec { replicas: 2, ..Default::default() };
    let cluster = chaos::Cluster::start(spec).expect("start MariaDB cluster");
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.r (id INT PRIMARY KEY AUTO_INCREMENT, v INT)").expect("create table");
    cluster.wait_replicas_caught_up(Duration::from_secs(30)).expect("replicas catch up");
    Fixture { cluster }
}

impl Fixture {
    fn server_id(&self, node: usize) -> u32 {
        self.cluster.node(node).server_id()
    }

    fn config(&self, routing: &str) -> String {
        common::split_config(&self.cluster, routing)
    }

    async fn proxy(&self, routing: &str) -> sluice::ProxyHandle {
        let cfg = sluice::Config::parse(&self.config(routing)).expect("config");
        sluice::start(TokioNet, cfg, 7).await.expect("proxy starts")
    }
}

fn opts(addr: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(common::port_of(addr))
        .user(Some("app"))
        .pass(Some("app"))
        .db_name(Some("test"))
        .prefer_socket(false)
        .into()
}

/// The first column of the first row of `sql` (a server id).
async fn server_id(c: &mut mysql_async::Conn, sql: &str) -> u32 {
    let row: mysql_async::Row = c.query_first(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).expect("a row");
    row.get::<u32, _>(0).expect("a server id")
}

/// How many of `n` runs of `sql` each server id served.
async fn spread(c: &mut mysql_async::Conn, sql: &str, n: usize) -> BTreeMap<u32, usize> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        *m.entry(server_id(c, sql).await).or_default() += 1;
    }
    m
}

/// Waits until `cond` holds, checking every 50 ms, up to `limit`.
async fn eventually<F: std::future::Future<Output = bool>>(limit: Duration, mut cond: impl FnMut() -> F) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_and_writes_transactions_and_session_bound_statements_to_the_primary() {
    let f = cluster();
    let proxy = f.proxy("").await;
    let (p, r1, r2) = (f.server_id(0), f.server_id(1), f.server_id(2));
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();

    let reads = spread(&mut c, "SELECT @@server_id", 20).await;
    assert_eq!(reads.get(&r1), Some(&10), "{reads:?}");
    assert_eq!(reads.get(&r2), Some(&10), "{reads:?}");

    // Writes and session-bound reads on the primary.
    c.query_drop("INSERT INTO r (v) VALUES (1)").await.unwrap();
    let (id, sid): (u64, u32) = c.query_first("SELECT LAST_INSERT_ID(), @@server_id").await.unwrap().unwrap();
    assert!(id > 0);
    assert_eq!(sid, p);
    assert_eq!(server_id(&mut c, "SELECT @@server_id FROM r LIMIT 1 FOR UPDATE").await, p);
    c.query_drop("SET @mine = 5").await.unwrap();
    let (mine, sid): (u32, u32) = c.query_first("SELECT @mine, @@server_id").await.unwrap().unwrap();
    assert_eq!((mine, sid), (5, p));

    // Inside a transaction everything stays on the primary.
    c.query_drop("BEGIN").await.unwrap();
    assert_eq!(server_id(&mut c, "SELECT @@server_id").await, p);
    assert_eq!(server_id(&mut c, "SELECT @@server_id").await, p);
    c.query_drop("COMMIT").await.unwrap();
    c.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(server_id(&mut c, "SELECT @@server_id").await, p);
    c.query_drop("COMMIT").await.unwrap();
    c.query_drop("SET autocommit = 1").await.unwrap();
    assert_ne!(server_id(&mut c, "SELECT @@server_id").await, p);

    // A read-only transaction runs whole on one replica.
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let first = server_id(&mut c, "SELECT @@server_id").await;
    assert!(first == r1 || first == r2);
    for _ in 0..4 {
        assert_eq!(server_id(&mut c, "SELECT @@server_id").await, first);
    }
    c.query_drop("COMMIT").await.unwrap();

    // Temporary tables keep the session on the primary from then on.
    let mut t = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    t.query_drop("CREATE TEMPORARY TABLE tmp (x INT)").await.unwrap();
    assert_eq!(server_id(&mut t, "SELECT @@server_id").await, p);
    assert_eq!(server_id(&mut t, "SELECT @@server_id FROM (SELECT 1) AS one LEFT JOIN tmp ON 1 = 0").await, p);
    t.disconnect().await.unwrap();
    c.disconnect().await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_follows_the_session_to_the_replicas() {
    let f = cluster();
    let proxy = f.proxy("").await;
    let p = f.server_id(0);
    f.cluster.app_sql(0, "CREATE DATABASE IF NOT EXISTS other").unwrap();
    f.cluster.wait_replicas_caught_up(Duration::from_secs(30)).unwrap();
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+03:00'").await.unwrap();
    c.query_drop("SET NAMES latin1").await.unwrap();
    c.query_drop("USE other").await.unwrap();
    for _ in 0..4 {
        let (mode, tz, cs, db, sid): (String, String, String, String, u32) =
            c.query_first("SELECT @@sql_mode, @@time_zone, @@character_set_client, DATABASE(), @@server_id").await.unwrap().unwrap();
        assert_ne!(sid, p, "a read on a replica");
        assert_eq!((mode.as_str(), tz.as_str(), cs.as_str(), db.as_str()), ("ANSI_QUOTES", "+03:00", "latin1", "other"), "on server {sid}");
    }
    c.query_drop("USE test").await.unwrap();
    for _ in 0..2 {
        let (db, sid): (String, u32) = c.query_first("SELECT DATABASE(), @@server_id").await.unwrap().unwrap();
        assert_eq!(db, "test", "on server {sid}");
    }
    // Prepared statements: routed by their SQL, prepared lazily on each replica, the
    // client's one statement id working everywhere.
    let stmt = c.prep("SELECT @@server_id, ? + 1").await.unwrap();
    let mut seen = BTreeMap::new();
    for i in 0..6i64 {
        let (sid, v): (u32, i64) = c.exec_first(&stmt, (i,)).await.unwrap().unwrap();
        assert_eq!(v, i + 1);
        *seen.entry(sid).or_insert(0) += 1;
    }
    assert!(!seen.contains_key(&p) && seen.len() == 2, "{seen:?}");
    let ins = c.prep("INSERT INTO test.r (v) VALUES (?)").await.unwrap();
    c.exec_drop(&ins, (7,)).await.unwrap();
    let (last, sid): (u64, u32) = c.query_first("SELECT LAST_INSERT_ID(), @@server_id").await.unwrap().unwrap();
    assert!(last > 0);
    assert_eq!(sid, p);
    c.close(stmt).await.unwrap();
    c.disconnect().await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_session_commands_and_show_sluice_route() {
    let f = cluster();
    let proxy = f.proxy("").await;
    let p = f.server_id(0);
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    assert_eq!(server_id(&mut c, "SELECT /* sluice: route=primary */ @@server_id").await, p);
    assert_ne!(server_id(&mut c, "SELECT @@server_id").await, p);

    let route: Vec<(String, String, String)> = c.query_map("SHOW SLUICE ROUTE FOR SELECT * FROM r FOR UPDATE", |row: mysql_async::Row| {
        (row.get::<String, _>("node").unwrap(), row.get::<String, _>("role").unwrap(), row.get::<String, _>("reason").unwrap())
    })
    .await
    .unwrap();
    assert_eq!(route, vec![(f.cluster.node(0).addr(), "primary".into(), "locking_read".into())]);
    let (role, reason): (String, String) = c.query_first("SHOW SLUICE ROUTE FOR SELECT 1").await.unwrap().map(|r: mysql_async::Row| (r.get("role").unwrap(), r.get("reason").unwrap())).unwrap();
    assert_eq!((role.as_str(), reason.as_str()), ("replica", "read"));

    c.query_drop("SET @@sluice_route = primary").await.unwrap();
    assert_eq!(server_id(&mut c, "SELECT @@server_id").await, p);
    c.query_drop("SET @@sluice_route = auto").await.unwrap();
    c.query_drop("SET @@sluice_read_write_split = OFF").await.unwrap();
    assert_eq!(server_id(&mut c, "SELECT @@server_id").await, p);
    let e = c.query_drop("SET @@sluice_route = nowhere").await.unwrap_err();
    assert!(e.to_string().contains("1231"), "{e}");
    // Sluice's variables never reach the server: the server would not know them.
    c.query_drop("SET @@sluice_read_write_split = ON").await.unwrap();
    assert_ne!(server_id(&mut c, "SELECT @@server_id").await, p);
    c.disconnect().await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_and_pymysql_reads_are_split() {
    let f = cluster();
    let proxy = f.proxy("").await;
    let p = f.server_id(0).to_string();
    let sql = "SELECT @@server_id; SELECT @@server_id; SELECT @@server_id; SELECT @@server_id; INSERT INTO r (v) VALUES (3); SELECT LAST_INSERT_ID() > 0, @@server_id";
    let (ok, out, err) = mariadb_cli(proxy.local_addr(), "app", "app", &[], sql);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[..4].iter().all(|l| *l != p), "reads on replicas: {out}");
    assert_eq!(lines[4], format!("1\t{p}"), "LAST_INSERT_ID on the primary: {out}");
    let code = r#"
import pymysql
# PyMySQL turns autocommit off by default: every statement is then in a transaction,
# and stays on the primary.
off = pymysql.connect(host="127.0.0.1", port=__PORT__, user="app", password="app", database="test")
cur = off.cursor()
cur.execute("SELECT @@server_id")
print(cur.fetchone()[0])
c = pymysql.connect(host="127.0.0.1", port=__PORT__, user="app", password="app", database="test", autocommit=True)
cur = c.cursor()
ids = []
for _ in range(6):
    cur.execute("SELECT @@server_id")
    ids.append(cur.fetchone()[0])
cur.execute("INSERT INTO r (v) VALUES (%s)", (4,))
c.commit()
cur.execute("SELECT @@server_id")
print(" ".join(str(i) for i in ids))
"#;
    let (ok, out, err) = python(proxy.local_addr(), code);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(p.as_str()), "autocommit off: on the primary: {out}");
    let ids: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(ids.len(), 6, "{out}");
    assert!(ids.iter().all(|i| *i != p), "PyMySQL reads on replicas: {out}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_mid_run_leaves_reads_served_by_the_others() {
    let f = cluster();
    let proxy = f.proxy("").await;
    let (p, r2) = (f.server_id(0), f.server_id(2));
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let before = spread(&mut c, "SELECT @@server_id", 10).await;
    assert_eq!(before.len(), 2, "{before:?}");
    f.cluster.kill_node(1).unwrap();
    // Every read keeps succeeding (a read that hits the dead node before the monitor
    // notices is sent elsewhere), and soon only the live replica serves them.
    let mut after = BTreeMap::new();
    for _ in 0..40 {
        let sid = server_id(&mut c, "SELECT @@server_id").await;
        *after.entry(sid).or_insert(0) += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(after.keys().all(|s| *s == r2 || *s == p), "{after:?}");
    assert!(after.get(&r2).copied().unwrap_or(0) > 20, "{after:?}");
    // Writes are unaffected.
    c.query_drop("INSERT INTO r (v) VALUES (9)").await.unwrap();
    f.cluster.start_node(1).unwrap();
    f.cluster.follow_primary(1).unwrap();
    let back = eventually(Duration::from_secs(20), || {
        let addr = proxy.local_addr().to_string();
        async move {
            let mut c = mysql_async::Conn::new(opts(&addr)).await.unwrap();
            let s = spread(&mut c, "SELECT @@server_id", 6).await;
            c.disconnect().await.ok();
            s.len() == 2
        }
    })
    .await;
    assert!(back, "the restarted replica serves reads again");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_replication_takes_a_replica_out_of_reads_until_it_runs_again() {
    let f = cluster();
    let proxy = f.proxy("").await;
    let (r1, r2) = (f.server_id(1), f.server_id(2));
    f.cluster.root_sql(1, "STOP SLAVE").unwrap();
    let addr = proxy.local_addr().to_string();
    let only_r2 = eventually(Duration::from_secs(10), || {
        let addr = addr.clone();
        async move {
            let mut c = mysql_async::Conn::new(opts(&addr)).await.unwrap();
            let s = spread(&mut c, "SELECT @@server_id", 6).await;
            c.disconnect().await.ok();
            s.keys().all(|k| *k == r2)
        }
    })
    .await;
    assert!(only_r2, "a replica whose replication stopped gets no reads");
    f.cluster.root_sql(1, "START SLAVE").unwrap();
    let both = eventually(Duration::from_secs(10), || {
        let addr = addr.clone();
        async move {
            let mut c = mysql_async::Conn::new(opts(&addr)).await.unwrap();
            let s = spread(&mut c, "SELECT @@server_id", 6).await;
            c.disconnect().await.ok();
            s.contains_key(&r1)
        }
    })
    .await;
    assert!(both, "the replica serves reads again once replication runs");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_promotion_moves_writes_to_the_new_primary() {
    let f = cluster();
    let proxy = f.proxy("").await;
    let new_primary = f.server_id(1);
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    c.query_drop("INSERT INTO r (v) VALUES (1)").await.unwrap();
    let lid: u64 = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap().unwrap();
    let started = Instant::now();
    f.cluster.promote(1).unwrap();
    let promoted_in = started.elapsed();
    // Within the monitor interval × debounce (plus the probe), writes reach node 1.
    let moved = eventually(Duration::from_secs(5), || {
        let addr = proxy.local_addr().to_string();
        async move {
            let Ok(mut c) = mysql_async::Conn::new(opts(&addr)).await else { return false };
            let ok = c.query_drop("INSERT INTO r (v) VALUES (2)").await.is_ok();
            let sid: Option<(u64, u32)> = c.query_first("SELECT LAST_INSERT_ID(), @@server_id").await.ok().flatten();
            c.disconnect().await.ok();
            ok && sid.is_some_and(|(_, s)| s == new_primary)
        }
    })
    .await;
    assert!(moved, "writes follow the promotion (promote took {promoted_in:?})");
    // The session that wrote before the promotion follows it: its last insert id is
    // carried by Sluice, not left on the old primary.
    let carried: u64 = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap().unwrap();
    assert_eq!(carried, lid, "LAST_INSERT_ID() after the promotion is the session's own");
    c.query_drop("INSERT INTO r (v) VALUES (3)").await.expect("the writer follows the promotion");
    let sid: u32 = c.query_first("SELECT @@server_id FROM r LIMIT 1 FOR UPDATE").await.unwrap().unwrap();
    assert_eq!(sid, new_primary);
    // A session with state only the old primary has (a temporary table) is told so and
    // closed rather than silently losing it.
    let mut holder = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    holder.query_drop("CREATE TEMPORARY TABLE tt (a INT)").await.unwrap();
    // A session that only read before the promotion follows it transparently.
    let mut reader = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let _ = server_id(&mut reader, "SELECT @@server_id").await;
    reader.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'").await.unwrap();
    f.cluster.promote(2).unwrap();
    let third = f.server_id(2);
    let mut followed = false;
    for _ in 0..100 {
        let ok = reader.query_drop("INSERT INTO r (v) VALUES (4)").await.is_ok();
        let row: Option<(u32, String)> = reader.query_first("SELECT @@server_id, @@sql_mode FROM r LIMIT 1 FOR UPDATE").await.ok().flatten();
        if ok && row.is_some_and(|(s, m)| s == third && m == "ANSI_QUOTES") {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(followed, "a session without state on the old primary writes to the new one, its session variables carried over");
    let e = holder.query_drop("INSERT INTO tt VALUES (1)").await.unwrap_err();
    assert!(e.to_string().contains("1927") && e.to_string().contains("primary moved"), "{e}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_load_balancing_policy_spreads_reads_as_documented() {
    let f = cluster();
    let (p, r1, r2) = (f.server_id(0), f.server_id(1), f.server_id(2));
    let (a1, a2) = (f.cluster.node(1).addr(), f.cluster.node(2).addr());
    let a0 = f.cluster.node(0).addr();

    // round_robin with weights 1:3: exactly a quarter on replica 1.
    let proxy = f.proxy(&format!("policy = \"round_robin\"\nweights = {{ \"{a1}\" = 1, \"{a2}\" = 3 }}")).await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let s = spread(&mut c, "SELECT @@server_id", 40).await;
    eprintln!("round_robin 1:3 {s:?}");
    assert_eq!((s.get(&r1).copied(), s.get(&r2).copied()), (Some(10), Some(30)), "{s:?}");
    drop(c);
    proxy.shutdown().await;

    // random, equal weights, the primary taking a share too (weight 1 of 3).
    let proxy = f.proxy("policy = \"random\"\nprimary_read_weight = 1").await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let s = spread(&mut c, "SELECT @@server_id", 90).await;
    eprintln!("random with primary share {s:?}");
    for id in [p, r1, r2] {
        assert!((12..=50).contains(&s.get(&id).copied().unwrap_or(0)), "{s:?}");
    }
    drop(c);
    proxy.shutdown().await;

    // least_connections: a replica busy with a long statement gets no new reads.
    let proxy = f.proxy("policy = \"least_connections\"").await;
    let mut busy = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let sleeper = tokio::spawn(async move {
        server_id(&mut busy, "SELECT @@server_id, SLEEP(2)").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = spread(&mut c, "SELECT @@server_id", 20).await;
    let slept_on = sleeper.await.unwrap();
    eprintln!("least_connections while {slept_on} is busy: {s:?}");
    assert!(!s.contains_key(&slept_on) && s.values().sum::<usize>() == 20, "{s:?}");
    drop(c);
    proxy.shutdown().await;

    // least_latency: a replica whose reads are slowed (a table lock held most of the
    // time) loses them to the fast one.
    let proxy = f.proxy("policy = \"least_latency\"").await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let locker = {
        let stop = stop.clone();
        let root = f.cluster.root_user();
        let root_opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(opts(&a1)).user(Some(root.user.clone())).pass(Some(root.password.clone())).into();
        let mut lock_conn = mysql_async::Conn::new(root_opts).await.unwrap();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                lock_conn.query_drop("LOCK TABLES r WRITE").await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
                lock_conn.query_drop("UNLOCK TABLES").await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let s = spread(&mut c, "SELECT @@server_id, COUNT(*) FROM r", 60).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    locker.await.unwrap();
    eprintln!("least_latency with replica 1 slowed: {s:?}");
    assert!(s.get(&r2).copied().unwrap_or(0) >= 45, "{s:?}");
    drop(c);
    proxy.shutdown().await;

    // least_lag: a replica applying with a delay lags (still within the limit): the
    // other one gets the reads.
    f.cluster.root_sql(1, "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE").unwrap();
    for i in 0..5 {
        f.cluster.app_sql(0, &format!("INSERT INTO test.r (v) VALUES ({i})")).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let proxy = f.proxy("policy = \"least_lag\"\nmax_replica_lag_ms = 60000").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let s = spread(&mut c, "SELECT @@server_id", 20).await;
    eprintln!("least_lag with replica 1 delayed: {s:?}");
    assert_eq!(s.get(&r2).copied(), Some(20), "{s:?}");
    let _ = a0;
    drop(c);
    proxy.shutdown().await;
    f.cluster.root_sql(1, "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE").unwrap();
}

/// Whether `needle` shows in the primary's process list (as root).
fn running_on(f: &Fixture, node: usize, needle: &str) -> bool {
    f.cluster.root_sql(node, "SELECT INFO FROM information_schema.PROCESSLIST WHERE INFO IS NOT NULL").unwrap().contains(needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_statement_aborts_its_backend_statement() {
    let f = cluster();
    let proxy = f.proxy("").await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let running = tokio::spawn(async move {
        let _ = c.query_drop("SELECT /* sluice: route=primary */ SLEEP(30) AS left_behind").await;
    });
    assert!(eventually(Duration::from_secs(5), || async { running_on(&f, 0, "left_behind") }).await, "the statement runs");
    // The client goes away without a word (its task and socket are dropped).
    running.abort();
    let _ = running.await;
    let gone = eventually(Duration::from_secs(5), || async { !running_on(&f, 0, "left_behind") }).await;
    assert!(gone, "Sluice noticed the client leaving and ended the backend statement");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_stays_silent_past_the_read_timeout_ends_the_session_with_an_error() {
    let f = cluster();
    let text = f.config("").replace("[routing]", "read_timeout_ms = 700\n[routing]");
    let proxy = sluice::start(TokioNet, sluice::Config::parse(&text).expect("config"), 7).await.expect("proxy starts");
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    let started = Instant::now();
    let e = c.query_drop("SELECT SLEEP(5)").await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "gave up after the read timeout, not the statement's end: {took:?} ({e})");
    // Other sessions are served as before.
    let mut d = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();
    assert_eq!(server_id(&mut d, "SELECT /* sluice: route=primary */ @@server_id").await, f.server_id(0));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_statement_state_is_read_where_that_statement_ran() {
    let f = cluster();
    let proxy = f.proxy("").await;
    let p = f.server_id(0);
    f.cluster.app_sql(0, "INSERT INTO test.r (v) VALUES (1), (2), (3)").unwrap();
    f.cluster.wait_replicas_caught_up(Duration::from_secs(30)).unwrap();
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr())).await.unwrap();

    // FOUND_ROWS() and ROW_COUNT() after a read on a replica: that replica's counts.
    let rows: Vec<(i64, u32)> = c.query("SELECT v, @@server_id FROM test.r WHERE v <= 2").await.unwrap();
    assert!(rows.iter().all(|r| r.1 != p), "the read ran on a replica: {rows:?}");
    let (found, rc): (i64, i64) = c.query_first("SELECT FOUND_ROWS(), ROW_COUNT()").await.unwrap().unwrap();
    assert_eq!((found, rc), (2, -1));
    // … and after a write: the primary's.
    c.query_drop("UPDATE test.r SET v = v WHERE v >= 0").await.unwrap();
    let (rc, sid): (i64, u32) = c.query_first("SELECT ROW_COUNT(), @@server_id").await.unwrap().unwrap();
    assert_eq!((rc, sid), (0, p), "ROW_COUNT() of the UPDATE (no row changed), read on the primary");

    // Prepared SHOW ERRORS / @@error_count after a replica read that failed.
    let err = c.query_drop("SELECT 9223372036854775807 + 1").await.expect_err("overflow");
    assert!(err.to_string().contains("out of range"), "{err}");
    let stmt = c.prep("SHOW ERRORS").await.unwrap();
    let errors: Vec<(String, u32, String)> = c.exec(&stmt, ()).await.unwrap();
    assert_eq!(errors.len(), 1, "the prepared SHOW ERRORS sees the replica's error: {errors:?}");
    assert_eq!(errors[0].1, 1690);

    // The session's database dropped under it: no node keeps it.
    c.query_drop("CREATE DATABASE dropme").await.unwrap();
    // The replicas have the database before the session reads there (on a loaded
    // machine a replica that has not applied it yet cannot `USE` it, and the read then
    // runs on the primary — correct, but not what this test looks at).
    f.cluster.wait_replicas_caught_up(Duration::from_secs(30)).unwrap();
    c.query_drop("USE dropme").await.unwrap();
    let (db, sid): (String, u32) = c.query_first("SELECT DATABASE(), @@server_id").await.unwrap().unwrap();
    assert_eq!(db, "dropme");
    assert_ne!(sid, p);
    c.query_drop("DROP DATABASE dropme").await.unwrap();
    for _ in 0..4 {
        let (db, sid): (Option<String>, u32) = c.query_first("SELECT DATABASE(), @@server_id").await.unwrap().unwrap();
        assert_eq!(db, None, "on server {sid}");
    }
    c.disconnect().await.unwrap();
    proxy.shutdown().await;
}
