//! Read-after-write consistency against a real MariaDB primary and two replicas whose
//! SQL threads are delayed (`MASTER_DELAY`): a read routed to a replica must see what
//! it is promised, or go to the primary, or fail with the documented error — never be
//! answered stale. Each test starts its own cluster (primary = node 0, server ids 1, 2,
//! 3). The controls (`eventual`) show that the delayed replicas really are behind.

mod common;

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use sluice::net::TokioNet;

struct Fixture {
    cluster: chaos::Cluster,
}

/// A cluster whose replicas apply each transaction `delay` seconds after it committed
/// on the primary (0: no delay).
fn cluster(delay: u32) -> Fixture {
    let spec = chaos::ClusterSpec { replicas: 2, ..Default::default() };
    let cluster = chaos::Cluster::start(spec).expect("start MariaDB cluster");
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.c (id INT PRIMARY KEY AUTO_INCREMENT, v INT, UNIQUE KEY (v))").expect("create table");
    cluster.wait_replicas_caught_up(Duration::from_secs(30)).expect("replicas catch up");
    let f = Fixture { cluster };
    if delay > 0 {
        for r in [1, 2] {
            f.set_delay(r, delay);
        }
    }
    f
}

impl Fixture {
    fn server_id(&self, node: usize) -> u32 {
        self.cluster.node(node).server_id()
    }

    fn set_delay(&self, node: usize, secs: u32) {
        self.cluster
            .root_sql(node, &format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = {secs}; START SLAVE"))
            .expect("set MASTER_DELAY");
    }

    fn config(&self, routing: &str) -> String {
        common::split_config(&self.cluster, &format!("max_replica_lag_ms = 60000\n{routing}"))
    }

    async fn proxy(&self, routing: &str) -> sluice::ProxyHandle {
        let cfg = sluice::Config::parse(&self.config(routing)).expect("config");
        let p = sluice::start(TokioNet, cfg, 7).await.expect("proxy starts");
        // Let the monitor find the replicas (reads before that go to the primary).
        let mut c = conn(p.local_addr()).await;
        let r = [self.server_id(1), self.server_id(2)];
        let start = Instant::now();
        while !r.contains(&sid(&mut c, "SELECT @@server_id").await) {
            assert!(start.elapsed() < Duration::from_secs(10), "replicas never became readable");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.disconnect().await.ok();
        p
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

async fn conn(addr: &str) -> mysql_async::Conn {
    mysql_async::Conn::new(opts(addr)).await.expect("connect through Sluice")
}

async fn sid(c: &mut mysql_async::Conn, sql: &str) -> u32 {
    let row: mysql_async::Row = c.query_first(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).expect("a row");
    row.get::<u32, _>(0).expect("a server id")
}

/// `(server id, rows with v = value)` as one read sees them.
async fn seen(c: &mut mysql_async::Conn, value: i32) -> (u32, i64) {
    c.query_first(format!("SELECT @@server_id, COUNT(*) FROM c WHERE v = {value}")).await.expect("read").expect("a row")
}

/// The session variables Sluice reports (`SHOW SLUICE VARIABLES`).
async fn sluice_var(c: &mut mysql_async::Conn, name: &str) -> String {
    let rows: Vec<(String, String)> = c.query("SHOW SLUICE VARIABLES").await.expect("SHOW SLUICE VARIABLES");
    rows.into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_after_write_waits_for_the_gtid_on_a_delayed_replica() {
    let f = cluster(2);
    let replicas = [f.server_id(1), f.server_id(2)];
    // Control: without consistency the delayed replicas answer without the write.
    let proxy = f.proxy("consistency = \"eventual\"").await;
    let mut c = conn(proxy.local_addr()).await;
    c.query_drop("INSERT INTO c (v) VALUES (1)").await.unwrap();
    let (s, n) = seen(&mut c, 1).await;
    assert!(replicas.contains(&s) && n == 0, "the control read is stale on a replica: server {s}, {n} rows");
    c.disconnect().await.ok();
    proxy.shutdown().await;

    // session: the read waits on a replica until it applied the write (about 2 s).
    let proxy = f.proxy("consistency = \"session\"\nconsistency_timeout_ms = 8000").await;
    let mut c = conn(proxy.local_addr()).await;
    c.query_drop("INSERT INTO c (v) VALUES (2)").await.unwrap();
    let gtids = sluice_var(&mut c, "sluice_session_gtids").await;
    assert!(gtids.starts_with("0-1-"), "the write's GTID came in its OK packet: {gtids:?}");
    let started = Instant::now();
    let (s, n) = seen(&mut c, 2).await;
    let waited = started.elapsed();
    assert!(replicas.contains(&s), "a replica served the read (server {s})");
    assert_eq!(n, 1, "the read sees the session's own write");
    assert!(waited >= Duration::from_millis(500), "the replica had to wait for the delayed write ({waited:?})");
    // The replica is now known to have the position: the next read needs no wait.
    let started = Instant::now();
    let (s2, n2) = seen(&mut c, 2).await;
    assert_eq!(n2, 1);
    assert!(replicas.contains(&s2));
    assert!(started.elapsed() < Duration::from_millis(500), "no second wait ({:?})", started.elapsed());
    // Prepared statements: a write through the binary protocol is tracked as well, and
    // a prepared read waits the same way.
    c.exec_drop("INSERT INTO c (v) VALUES (?)", (3,)).await.unwrap();
    let row: (u32, i64) = c.exec_first("SELECT @@server_id, COUNT(*) FROM c WHERE v = ?", (3,)).await.unwrap().unwrap();
    assert!(replicas.contains(&row.0) && row.1 == 1, "prepared read after a prepared write: {row:?}");
    // A write in a multi-statement is tracked too.
    c.query_drop("INSERT INTO c (v) VALUES (4); INSERT INTO c (v) VALUES (5)").await.unwrap();
    let (s, n) = seen(&mut c, 5).await;
    assert!(replicas.contains(&s) && n == 1, "multi-statement write then read: server {s}, {n} rows");
    // A multi-statement read after a write: the wait runs ahead of it, the client gets
    // exactly its two result sets.
    c.query_drop("INSERT INTO c (v) VALUES (10)").await.unwrap();
    let mut r = c.query_iter("SELECT COUNT(*) FROM c WHERE v = 10; SELECT @@server_id").await.unwrap();
    let first: Vec<i64> = r.collect().await.unwrap();
    let second: Vec<u32> = r.collect().await.unwrap();
    drop(r);
    assert_eq!(first, vec![1], "first result set");
    assert!(second.len() == 1 && replicas.contains(&second[0]), "second result set: {second:?}");
    // A write inside a stored procedure: the CALL's OK packet carries its GTID.
    c.query_drop("CREATE PROCEDURE add_c(x INT) INSERT INTO c (v) VALUES (x)").await.unwrap();
    c.query_drop("CALL add_c(6)").await.unwrap();
    let (s, n) = seen(&mut c, 6).await;
    assert!(replicas.contains(&s) && n == 1, "write in a procedure then read: server {s}, {n} rows");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_times_out_goes_to_the_primary_or_fails_as_configured() {
    let f = cluster(3);
    let (p, replicas) = (f.server_id(0), [f.server_id(1), f.server_id(2)]);
    let proxy = f.proxy("consistency_timeout_ms = 300").await;
    let mut c = conn(proxy.local_addr()).await;
    c.query_drop("INSERT INTO c (v) VALUES (1)").await.unwrap();
    let started = Instant::now();
    let (s, n) = seen(&mut c, 1).await;
    assert_eq!((s, n), (p, 1), "after the wait timed out, the primary served the read");
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by the timeout ({:?})", started.elapsed());
    // With fallback = error the client gets 1969 instead; nothing stale either way.
    c.query_drop("SET @@sluice_consistency_fallback = error").await.unwrap();
    c.query_drop("INSERT INTO c (v) VALUES (2)").await.unwrap();
    let e = c.query_drop("SELECT COUNT(*) FROM c WHERE v = 2").await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("1969") && text.contains("consistency timeout"), "{text}");
    // The session goes on: once the replicas applied the write, replicas serve it.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    c.query_drop("SET @@sluice_consistency_timeout_ms = 5000").await.unwrap();
    let (s, n) = seen(&mut c, 2).await;
    assert!(replicas.contains(&s) && n == 1, "server {s}, {n} rows");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_failed_writes_and_rollbacks_add_requirements_only_when_they_commit() {
    let f = cluster(2);
    let proxy = f.proxy("consistency_timeout_ms = 8000").await;
    let mut c = conn(proxy.local_addr()).await;
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO c (v) VALUES (1)").await.unwrap();
    assert_eq!(sluice_var(&mut c, "sluice_session_gtids").await, "", "a write in a transaction requires nothing before COMMIT");
    c.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(sluice_var(&mut c, "sluice_session_gtids").await, "", "a rolled-back transaction requires nothing");
    let e = c.query_drop("INSERT INTO c (v) VALUES (NULL), (7), (7)").await;
    assert!(e.is_err(), "duplicate key");
    assert_eq!(sluice_var(&mut c, "sluice_session_gtids").await, "", "a failed write requires nothing");
    // Reads right after those go to a replica without waiting.
    let started = Instant::now();
    let (_, n) = seen(&mut c, 7).await;
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_millis(500), "no wait ({:?})", started.elapsed());
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO c (v) VALUES (8)").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert!(sluice_var(&mut c, "sluice_session_gtids").await.starts_with("0-1-"), "COMMIT reported the GTID");
    let (s, n) = seen(&mut c, 8).await;
    assert!(s != f.server_id(0) && n == 1, "server {s}, {n} rows");
    // START TRANSACTION READ ONLY runs whole on one replica, which waits once at its start.
    c.query_drop("INSERT INTO c (v) VALUES (9)").await.unwrap();
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let (s1, n1) = seen(&mut c, 9).await;
    let (s2, _) = seen(&mut c, 9).await;
    c.query_drop("COMMIT").await.unwrap();
    assert!(s1 != f.server_id(0) && s1 == s2 && n1 == 1, "read-only transaction on one replica, after the write: {s1} {s2} {n1}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_and_global_levels_see_writes_of_other_sessions() {
    let f = cluster(2);
    let replicas = [f.server_id(1), f.server_id(2)];
    let proxy = f.proxy("consistency_timeout_ms = 8000").await;
    let mut writer = conn(proxy.local_addr()).await;
    let mut reader = conn(proxy.local_addr()).await;
    // session: another session's write is not promised (control: stale on a replica).
    writer.query_drop("INSERT INTO c (v) VALUES (1)").await.unwrap();
    let (s, n) = seen(&mut reader, 1).await;
    assert!(replicas.contains(&s) && n == 0, "session level does not cover other sessions: server {s}, {n} rows");
    // instance: every write acknowledged through this Sluice.
    reader.query_drop("SET @@sluice_consistency = instance").await.unwrap();
    writer.query_drop("INSERT INTO c (v) VALUES (2)").await.unwrap();
    let (s, n) = seen(&mut reader, 2).await;
    assert!(replicas.contains(&s) && n == 1, "instance: server {s}, {n} rows");
    // global: even a write made directly on the primary, not through Sluice.
    reader.query_drop("SET @@sluice_consistency = global").await.unwrap();
    f.cluster.app_sql(0, "INSERT INTO test.c (v) VALUES (3)").unwrap();
    let (s, n) = seen(&mut reader, 3).await;
    assert!(replicas.contains(&s) && n == 1, "global: server {s}, {n} rows");
    // eventual again: stale is allowed (and happens with the delay).
    reader.query_drop("SET @@sluice_consistency = eventual").await.unwrap();
    writer.query_drop("INSERT INTO c (v) VALUES (4)").await.unwrap();
    let (_, n) = seen(&mut reader, 4).await;
    assert_eq!(n, 0, "eventual reads are not held back");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_ok_packets_as_the_server_sends_them_with_and_without_session_tracking() {
    let f = cluster(0);
    let proxy = f.proxy("").await;
    let direct = f.cluster.node(0).addr();
    let via = proxy.local_addr().to_string();
    f.cluster.app_sql(0, "INSERT INTO test.c (v) VALUES (100), (101)").unwrap();
    // The mariadb CLI (session tracking capable) prints affected rows and the info text.
    let run = |addr: &str, v: i32| {
        let out = std::process::Command::new("mariadb")
            .args(["-h127.0.0.1", &format!("-P{}", common::port_of(addr)), "-uapp", "-papp", "-vvv", "test", "-e"])
            .arg(format!("UPDATE c SET v = v + 1000 WHERE v = {v}; SELECT @@session_track_system_variables LIKE '%last_gtid%' AS tracked"))
            .output()
            .expect("mariadb CLI");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).replace(&format!("v = {v}"), "v = V");
        // Timings differ; the rest of each line must not.
        text.lines().map(|l| if l.ends_with(" sec)") { l.rsplit_once(" (").map_or(l, |(a, _)| a) } else { l }).collect::<Vec<_>>().join("\n")
    };
    let d = run(&direct, 100);
    let s = run(&via, 101);
    assert!(d.contains("Rows matched: 1  Changed: 1  Warnings: 0"), "{d}");
    assert!(d.contains("Query OK, 1 row affected"), "{d}");
    assert_eq!(d, s, "direct:\n{d}\nthrough Sluice:\n{s}");
    // PyMySQL does not ask for session tracking: its OK packets are converted.
    let py = |addr: &str| {
        let code = format!(
            "import pymysql\nc = pymysql.connect(host='127.0.0.1', port={}, user='app', password='app', database='test')\ncur = c.cursor()\nn = cur.execute('UPDATE c SET v = v WHERE v > 0')\nprint(n, repr(cur._result.message), c.server_status & 0x4000, c.insert_id())\ncur.execute('INSERT INTO c (v) VALUES (NULL)')\nprint(c.insert_id() > 0, c.server_status & 0x4000)\n",
            common::port_of(addr)
        );
        let out = std::process::Command::new("python3").args(["-c", &code]).output().expect("python3");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (pd, ps) = (py(&direct), py(&via));
    assert!(pd.contains("Rows matched"), "{pd}");
    assert_eq!(pd, ps, "PyMySQL sees the same OK packets");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gtids_of_a_previous_primary_never_make_a_read_hang() {
    let f = cluster(0);
    let proxy = f.proxy("consistency_timeout_ms = 20000").await;
    let mut c = conn(proxy.local_addr()).await;
    c.query_drop("INSERT INTO c (v) VALUES (1)").await.unwrap();
    let before = sluice_var(&mut c, "sluice_session_gtids").await;
    assert!(!before.is_empty());
    f.cluster.promote(1).unwrap();
    // Wait for Sluice to see the new primary (a write of another session lands there).
    let new_primary = f.server_id(1);
    let start = Instant::now();
    loop {
        if let Ok(mut w) = mysql_async::Conn::new(opts(proxy.local_addr())).await {
            let ok = w.query_drop("INSERT INTO c (v) VALUES (NULL)").await.is_ok();
            let at: Option<u32> = w.query_first("SELECT @@server_id FROM c LIMIT 1 FOR UPDATE").await.ok().flatten();
            w.disconnect().await.ok();
            if ok && at == Some(new_primary) {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(10), "Sluice never followed the promotion");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The session's requirement came from the old primary: its reads are served at
    // once (by a node known to have it, or the new primary), never after a 20 s wait.
    let started = Instant::now();
    let (_, n) = seen(&mut c, 1).await;
    assert_eq!(n, 1, "the write is visible");
    assert!(started.elapsed() < Duration::from_secs(3), "no hang ({:?})", started.elapsed());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_read_their_own_tracked_variables_list_where_sluice_tracks_gtids() {
    let f = cluster(0);
    let proxy = f.proxy("").await;
    let direct = f.cluster.node(0).addr();
    let via = proxy.local_addr().to_string();
    // Every statement on the primary (a hint, a transaction, a prepared statement),
    // where Sluice added `last_gtid` to the list: the client reads its own value.
    let script = |addr: String| async move {
        let mut c = conn(&addr).await;
        let mut out = Vec::new();
        let one = "/* sluice: route=primary */ SELECT @@session.session_track_system_variables";
        out.push(c.query_first::<String, _>(one).await.unwrap().unwrap());
        c.query_drop("INSERT INTO c (v) VALUES (NULL)").await.unwrap();
        out.push(c.query_first::<String, _>(one).await.unwrap().unwrap());
        c.query_drop("SET SESSION session_track_system_variables = 'autocommit'").await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        let rows: Vec<(String, String)> = c.query("SHOW SESSION VARIABLES LIKE 'session\\_track%'").await.unwrap();
        out.extend(rows.into_iter().map(|(n, v)| format!("{n}={v}")));
        c.query_drop("COMMIT").await.unwrap();
        c.query_drop("SET SESSION session_track_system_variables = ''").await.unwrap();
        let p = c.prep("/* sluice: route=primary */ SELECT @@session_track_system_variables, ?").await.unwrap();
        let (v, _): (String, i32) = c.exec_first(&p, (1,)).await.unwrap().unwrap();
        out.push(format!("prepared: '{v}'"));
        c.query_drop("SET SESSION session_track_system_variables = DEFAULT").await.unwrap();
        out.push(c.query_first::<String, _>(one).await.unwrap().unwrap());
        c.disconnect().await.ok();
        out
    };
    let d = script(direct.to_string()).await;
    assert!(!d.join(",").contains("last_gtid"), "{d:?}");
    let s = script(via.clone()).await;
    assert_eq!(d, s);
    // And Sluice still learns the GTIDs of this session's writes on that connection.
    let mut c = conn(&via).await;
    c.query_drop("INSERT INTO c (v) VALUES (NULL)").await.unwrap();
    assert!(!sluice_var(&mut c, "sluice_session_gtids").await.is_empty());
    let _: Option<String> = c.query_first("/* sluice: route=primary */ SELECT @@session_track_system_variables").await.unwrap();
    c.query_drop("INSERT INTO c (v) VALUES (NULL)").await.unwrap();
    let after = sluice_var(&mut c, "sluice_session_gtids").await;
    let seq = |g: &str| g.rsplit('-').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    assert!(seq(&after) > 0, "{after}");
    c.disconnect().await.ok();
    proxy.shutdown().await;
}
