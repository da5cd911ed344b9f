//! Pooling and multiplexing against a real MariaDB: several clients interleaved on a
//! pool of one backend connection each see only their own session state (schema,
//! character set, autocommit, isolation and access mode, `sql_mode`, `time_zone`, any
//! session variable); every pin reason keeps a client on its connection (counted per
//! user) while the others share what is left; `LAST_INSERT_ID()` and `ROW_COUNT()`
//! answer each client's own value without pinning, in the text and binary protocols;
//! the pool's bound gives error 1040 instead of growing; prepared statements survive
//! moving between connections.
//!
//! Each test starts its own one-node cluster, so pool sizes and counters are the test's.

mod common;

use std::time::Duration;

use mysql_async::prelude::*;
use sluice::net::TokioNet;
use sluice::session::state::Pin;

struct Fixture {
    cluster: chaos::Cluster,
}

fn cluster() -> Fixture {
    let spec = chaos::ClusterSpec { replicas: 0, ..Default::default() };
    let cluster = chaos::Cluster::start(spec).expect("start MariaDB");
    for db in ["pa", "pb", "pc"] {
        cluster.root_sql(0, &format!("CREATE DATABASE IF NOT EXISTS {db}")).expect("create database");
        cluster.root_sql(0, &format!("GRANT ALL ON {db}.* TO 'app'@'%'")).expect("grant");
    }
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.ids (id INT PRIMARY KEY AUTO_INCREMENT, who VARCHAR(8))").expect("table");
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.rows3 (id INT PRIMARY KEY, v INT)").expect("table");
    Fixture { cluster }
}

impl Fixture {
    async fn proxy(&self, pool: &str) -> sluice::ProxyHandle {
        let node = self.cluster.primary().addr();
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
nodes = ["{node}"]
monitor_interval_ms = 300
monitor_timeout_ms = 250
[pool]
min_idle = 0
{pool}
"#
        );
        sluice::start(TokioNet, sluice::Config::parse(&cfg).expect("config"), 7).await.expect("proxy starts")
    }
}

async fn client(proxy: &sluice::ProxyHandle, db: Option<&str>) -> mysql_async::Conn {
    let mut o = mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(common::port_of(proxy.local_addr())).user(Some("app")).pass(Some("app")).prefer_socket(false);
    if let Some(db) = db {
        o = o.db_name(Some(db));
    }
    mysql_async::Conn::new(o).await.expect("client connects")
}

async fn one<T: FromValue + Send + 'static>(c: &mut mysql_async::Conn, sql: &str) -> T {
    c.query_first(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).unwrap_or_else(|| panic!("{sql}: no row"))
}

fn backend_connections(proxy: &sluice::ProxyHandle) -> usize {
    proxy.stats().pools.values().map(|p| p.open).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sharing_one_backend_connection_each_see_only_their_own_session_state() {
    let f = cluster();
    let proxy = f.proxy("max_per_node = 1").await;
    // Schema three ways: USE, COM_INIT_DB, the handshake's database.
    let mut a = client(&proxy, None).await;
    let mut b = client(&proxy, None).await;
    let mut c = client(&proxy, Some("pc")).await;
    a.query_drop("USE pa").await.unwrap();
    b.reset().await.ok();
    b.query_drop("USE pb").await.unwrap();
    a.query_drop("SET NAMES latin1").await.unwrap();
    b.query_drop("SET CHARACTER SET cp1251").await.unwrap();
    a.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE").await.unwrap();
    b.query_drop("SET SESSION TRANSACTION READ ONLY").await.unwrap();
    a.query_drop("SET sql_mode = 'ANSI_QUOTES', time_zone = '+03:00'").await.unwrap();
    b.query_drop("SET @@session.sql_mode = 'NO_ZERO_DATE'").await.unwrap();
    b.query_drop("SET @@time_zone = '-05:00'").await.unwrap();
    c.query_drop("SET SESSION sort_buffer_size = 1048576, @@session.max_sort_length = 2000").await.unwrap();
    for round in 0..5 {
        let (db, cs, iso, ro, mode, tz): (String, String, String, i64, String, String) =
            a.query_first("SELECT DATABASE(), @@character_set_client, @@tx_isolation, @@tx_read_only, @@sql_mode, @@time_zone").await.unwrap().unwrap();
        assert_eq!((db.as_str(), cs.as_str(), iso.as_str(), ro, mode.as_str(), tz.as_str()), ("pa", "latin1", "SERIALIZABLE", 0, "ANSI_QUOTES", "+03:00"), "a, round {round}");
        let (db, cs, res, iso, ro, mode, tz): (String, String, String, String, i64, String, String) =
            b.query_first("SELECT DATABASE(), @@character_set_client, @@character_set_results, @@tx_isolation, @@tx_read_only, @@sql_mode, @@time_zone").await.unwrap().unwrap();
        assert_eq!(
            (db.as_str(), cs.as_str(), res.as_str(), iso.as_str(), ro, mode.as_str(), tz.as_str()),
            ("pb", "cp1251", "cp1251", "REPEATABLE-READ", 1, "NO_ZERO_DATE", "-05:00"),
            "b, round {round}"
        );
        let (db, sort, len, mode): (String, i64, i64, String) = c.query_first("SELECT DATABASE(), @@sort_buffer_size, @@max_sort_length, @@sql_mode").await.unwrap().unwrap();
        assert_eq!(db, "pc");
        assert_eq!((sort, len), (1048576, 2000));
        assert!(mode.contains("STRICT_TRANS_TABLES"), "c keeps the server's default sql_mode: {mode}");
    }
    // Autocommit: a's is off, the others' on; a's first statement opens a transaction
    // (a pin) that its COMMIT ends.
    a.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(one::<i64>(&mut b, "SELECT @@autocommit").await, 1);
    assert_eq!(one::<i64>(&mut a, "SELECT @@autocommit").await, 0);
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(one::<i64>(&mut c, "SELECT @@autocommit").await, 1);
    assert_eq!(one::<i64>(&mut a, "SELECT @@autocommit").await, 0);
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(backend_connections(&proxy), 1, "everything ran on one backend connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_insert_id_and_row_count_are_each_clients_own_without_pinning() {
    let f = cluster();
    let proxy = f.proxy("max_per_node = 1").await;
    let mut a = client(&proxy, Some("test")).await;
    let mut b = client(&proxy, Some("test")).await;
    a.query_drop("INSERT INTO ids (who) VALUES ('a')").await.unwrap();
    let a_id = a.last_insert_id().unwrap();
    b.query_drop("INSERT INTO ids (who) VALUES ('b'), ('b')").await.unwrap();
    let b_id = b.last_insert_id().unwrap();
    assert_ne!(a_id, b_id);
    for sql in ["SELECT LAST_INSERT_ID()", "select last_insert_id() AS id", "SELECT @@identity", "SELECT @@last_insert_id", "SELECT LAST_INSERT_ID() + 0"] {
        assert_eq!(one::<u64>(&mut a, sql).await, a_id, "{sql} (text)");
        assert_eq!(one::<u64>(&mut b, sql).await, b_id, "{sql} (text)");
        let v: u64 = a.exec_first(sql, ()).await.unwrap().unwrap();
        assert_eq!(v, a_id, "{sql} (binary)");
        let v: u64 = b.exec_first(sql, ()).await.unwrap().unwrap();
        assert_eq!(v, b_id, "{sql} (binary)");
    }
    // Used inside a write: the child row gets the client's own id.
    a.query_drop("INSERT INTO ids (who) VALUES (CONCAT('c', LAST_INSERT_ID()))").await.unwrap();
    let child = a.last_insert_id().unwrap();
    let who: String = one(&mut a, &format!("SELECT who FROM ids WHERE id = {child}")).await;
    assert_eq!(who, format!("c{a_id}"));

    a.query_drop("REPLACE INTO rows3 VALUES (1, 0), (2, 0), (3, 0)").await.unwrap();
    a.query_drop("UPDATE rows3 SET v = v + 1").await.unwrap();
    b.query_drop("UPDATE rows3 SET v = v + 1 WHERE id = 1").await.unwrap();
    assert_eq!(one::<i64>(&mut a, "SELECT ROW_COUNT()").await, 3);
    assert_eq!(one::<i64>(&mut b, "SELECT ROW_COUNT()").await, 1);
    b.query_drop("DELETE FROM rows3 WHERE id = 99").await.unwrap();
    let v: i64 = b.query_first("select row_count() AS `n`").await.unwrap().unwrap();
    assert_eq!(v, 0);
    assert_eq!(one::<i64>(&mut b, "SELECT ROW_COUNT()").await, -1, "after a SELECT, as the server says");
    // Inside a larger expression the statement runs on the shared connection, which
    // `a`'s UPDATE used last: Sluice sets the client's value there first (-1 after a
    // result set, 0 after a statement that changed no rows), keeping FOUND_ROWS().
    for binary in [false, true] {
        b.query_drop("SELECT 1 UNION ALL SELECT 2").await.unwrap();
        a.query_drop("UPDATE rows3 SET v = v + 1").await.unwrap();
        let sql = "SELECT ROW_COUNT() + 0, FOUND_ROWS()";
        let v: (i64, u64) = if binary { b.exec_first(sql, ()).await.unwrap().unwrap() } else { b.query_first(sql).await.unwrap().unwrap() };
        assert_eq!(v, (-1, 2), "{sql} after a SELECT (binary: {binary})");
        b.query_drop("SET @@session.sql_notes = 1").await.unwrap();
        a.query_drop("UPDATE rows3 SET v = v + 1").await.unwrap();
        let sql = "SELECT IF(ROW_COUNT() = 0, 'none', 'some')";
        let v: String = if binary { b.exec_first(sql, ()).await.unwrap().unwrap() } else { b.query_first(sql).await.unwrap().unwrap() };
        assert_eq!(v, "none", "{sql} after a SET (binary: {binary})");
    }
    let pins = proxy.stats().pins;
    assert!(!pins.keys().any(|(_, p)| *p != Pin::Diagnostics), "no pin but diagnostics: {pins:?}");
}

/// Runs `pin` on `a` (which must then hold its connection), shows `b` and `c` share the
/// other one while `a` keeps its state, then `unpin` (if any) gives it back.
async fn pinned_case(proxy: &sluice::ProxyHandle, reason: Pin, pin: &[&str], check: &str, want: i64, unpin: &[&str]) {
    let mut a = client(proxy, Some("test")).await;
    let mut b = client(proxy, Some("test")).await;
    let mut c = client(proxy, Some("test")).await;
    let before = proxy.stats().pins.get(&("app".to_string(), reason)).copied().unwrap_or(0);
    for s in pin {
        a.query_drop(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    for round in 0..3 {
        b.query_drop(format!("SET @@session.sort_buffer_size = {}", 300_000 + round)).await.unwrap();
        c.query_drop(format!("SET @@session.sort_buffer_size = {}", 400_000 + round)).await.unwrap();
        assert_eq!(one::<i64>(&mut b, "SELECT @@sort_buffer_size").await, 300_000 + round, "{reason:?}");
        assert_eq!(one::<i64>(&mut c, "SELECT @@sort_buffer_size").await, 400_000 + round, "{reason:?}");
        assert_eq!(one::<i64>(&mut a, check).await, want, "{reason:?}: {check}");
    }
    for s in unpin {
        a.query_drop(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let after = proxy.stats().pins.get(&("app".to_string(), reason)).copied().unwrap_or(0);
    assert!(after > before, "{reason:?} counted for user app");
    assert!(backend_connections(proxy) <= 2);
    drop((a, b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pin_reason_keeps_its_client_on_one_connection_while_others_share_the_rest() {
    let f = cluster();
    let proxy = f.proxy("max_per_node = 2").await;
    pinned_case(&proxy, Pin::Transaction, &["BEGIN", "INSERT INTO ids (who) VALUES ('txn')"], "SELECT COUNT(*) FROM ids WHERE who = 'txn'", 1, &["ROLLBACK"]).await;
    pinned_case(&proxy, Pin::LockTables, &["LOCK TABLES ids READ"], "SELECT COUNT(*) >= 0 FROM ids", 1, &["UNLOCK TABLES"]).await;
    pinned_case(&proxy, Pin::UserLock, &["DO GET_LOCK('pool_lock', 1)"], "SELECT IS_USED_LOCK('pool_lock') = CONNECTION_ID()", 1, &[]).await;
    pinned_case(&proxy, Pin::TemporaryTable, &["CREATE TEMPORARY TABLE tmp_pool (x INT)", "INSERT INTO tmp_pool VALUES (5)"], "SELECT x FROM tmp_pool", 5, &[]).await;
    pinned_case(&proxy, Pin::UserVariable, &["SELECT @uv := 41 + 1"], "SELECT @uv", 42, &[]).await;
    pinned_case(&proxy, Pin::UserVariable, &["SET @sv = 17"], "SELECT @sv", 17, &[]).await;
    pinned_case(&proxy, Pin::FoundRows, &["SELECT SQL_CALC_FOUND_ROWS id FROM ids LIMIT 0"], "SELECT FOUND_ROWS() >= 0", 1, &[]).await;
    pinned_case(&proxy, Pin::SqlPrepare, &["PREPARE ps FROM 'SELECT 7'"], "SELECT 7", 7, &["DEALLOCATE PREPARE ps"]).await;
    pinned_case(&proxy, Pin::Sequence, &["CREATE SEQUENCE IF NOT EXISTS seq_pool", "SELECT NEXTVAL(seq_pool)"], "SELECT LASTVAL(seq_pool) >= 1", 1, &[]).await;
    pinned_case(&proxy, Pin::Diagnostics, &["DO 1/0"], "SELECT @@warning_count", 1, &[]).await;
    // A pinned client that leaves frees its connection for the others.
    let mut x = client(&proxy, Some("test")).await;
    x.query_drop("BEGIN").await.unwrap();
    drop(x);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut y = client(&proxy, Some("test")).await;
    assert_eq!(one::<i64>(&mut y, "SELECT 1").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_makes_waiters_wait_then_answers_1040_never_grows() {
    let f = cluster();
    let proxy = f.proxy("max_per_node = 1\nacquire_timeout_ms = 500").await;
    let mut a = client(&proxy, Some("test")).await;
    let mut b = client(&proxy, Some("test")).await;
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("SELECT 1").await.unwrap();
    let started = std::time::Instant::now();
    let e = b.query_drop("SELECT 2").await.unwrap_err();
    assert!(e.to_string().contains("1040") && e.to_string().contains("pool"), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(450), "waited for the pool first");
    // b's session goes on; once a's transaction ends, b gets the connection.
    let waiter = tokio::spawn(async move {
        let v: i64 = b.query_first("SELECT 3").await.unwrap().unwrap();
        v
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(waiter.await.unwrap(), 3);
    let s = proxy.stats();
    let pool = s.pools.values().next().unwrap();
    assert_eq!((pool.max, pool.open), (1, 1));
    assert!(pool.timeouts >= 1 && pool.waits >= 2, "{pool:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_move_between_connections_with_their_types() {
    let f = cluster();
    f.cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS pa.tt (v VARCHAR(4)); REPLACE INTO pa.tt VALUES ('a')").unwrap();
    f.cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS pb.tt (v VARCHAR(4)); REPLACE INTO pb.tt VALUES ('b')").unwrap();
    let proxy = f.proxy("max_per_node = 2").await;
    let mut a = client(&proxy, Some("test")).await;
    let mut b = client(&proxy, Some("test")).await;
    let sa = a.prep("SELECT ? + 1").await.unwrap();
    let sb = b.prep("SELECT ? + 1").await.unwrap();
    for i in 0..20i64 {
        let v: i64 = a.exec_first(&sa, (i,)).await.unwrap().unwrap();
        assert_eq!(v, i + 1);
        let v: f64 = b.exec_first(&sb, (format!("{i}.5"),)).await.unwrap().unwrap();
        assert_eq!(v, i as f64 + 1.5, "b's string parameter, whatever types a bound on a shared server statement");
        b.query_drop(format!("SET @@session.sort_buffer_size = {}", 300_000 + i)).await.unwrap();
    }
    // A statement prepared in one schema and executed after USE: as on one server.
    let mut direct = mysql_async::Conn::new(
        mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(common::port_of(&f.cluster.primary().addr())).user(Some("app")).pass(Some("app")).db_name(Some("pa")).prefer_socket(false),
    )
    .await
    .unwrap();
    let mut via = client(&proxy, Some("pa")).await;
    let mut answers = Vec::new();
    for c in [&mut direct, &mut via] {
        let st = c.prep("SELECT v, DATABASE() FROM tt").await.unwrap();
        c.query_drop("USE pb").await.unwrap();
        let r: (String, String) = c.exec_first(&st, ()).await.unwrap().unwrap();
        let again = c.prep("SELECT v, DATABASE() FROM tt").await.unwrap();
        let r2: (String, String) = c.exec_first(&again, ()).await.unwrap().unwrap();
        answers.push((r, r2));
    }
    assert_eq!(answers[0], answers[1], "direct vs through Sluice");
    a.close(sa).await.unwrap();
    let v: i64 = a.exec_first("SELECT ? * 2", (21,)).await.unwrap().unwrap();
    assert_eq!(v, 42);
}
