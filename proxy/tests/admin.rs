//! The admin interface against a real MariaDB primary and two replicas: logging in
//! with mysql_async, the `mariadb` CLI and PyMySQL; `SHOW SLUICE NODES | SESSIONS |
//! POOLS | USERS | QUERY DIGESTS | CONFIG | VERSION`; `SLUICE KILL`; draining and
//! enabling a replica; the HTTP listener's `/metrics`, `/health` and `/ready`; the slow
//! statement counter.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{mariadb_cli, python};
use mysql_async::prelude::*;
use sluice::net::TokioNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cluster() -> chaos::Cluster {
    let spec = chaos::ClusterSpec { replicas: 2, ..Default::default() };
    let cluster = chaos::Cluster::start(spec).expect("start MariaDB cluster");
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.a (id INT PRIMARY KEY, v INT)").expect("create table");
    cluster.app_sql(0, "INSERT INTO test.a VALUES (1, 10), (2, 20), (3, 30)").expect("rows");
    cluster.wait_replicas_caught_up(Duration::from_secs(30)).expect("replicas catch up");
    cluster
}

const ADMIN: &str = r#"
[admin]
listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
[[admin.users]]
name = "ops"
password = "opspw"
[[admin.users]]
name = "viewer"
[stats]
slow_query_ms = 150
"#;

async fn proxy(cluster: &chaos::Cluster) -> sluice::ProxyHandle {
    let text = format!("{}{ADMIN}", common::split_config(cluster, ""));
    let cfg = sluice::Config::parse(&text).expect("config");
    sluice::start(TokioNet, cfg, 11).await.expect("proxy starts")
}

fn opts(addr: &str, user: &str, pass: &str, db: Option<&str>) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(common::port_of(addr))
        .user(Some(user))
        .pass(Some(pass))
        .db_name(db)
        .prefer_socket(false)
        .into()
}

async fn admin(p: &sluice::ProxyHandle) -> mysql_async::Conn {
    mysql_async::Conn::new(opts(p.admin_addr().expect("admin listener"), "ops", "opspw", None)).await.expect("admin login")
}

/// `sql`'s rows as maps of column name → value.
async fn rows(c: &mut mysql_async::Conn, sql: &str) -> Vec<BTreeMap<String, String>> {
    let result: Vec<mysql_async::Row> = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    result
        .into_iter()
        .map(|r| {
            let cols: Vec<String> = r.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
            cols.into_iter().enumerate().map(|(i, name)| (name, r.get::<Option<String>, _>(i).flatten().unwrap_or_default())).collect()
        })
        .collect()
}

async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("http connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: sluice\r\n\r\n").as_bytes()).await.expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

async fn server_id(c: &mut mysql_async::Conn) -> u32 {
    c.query_first::<u32, _>("SELECT @@server_id").await.expect("server id").expect("a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_statements_show_nodes_sessions_pools_users_digests_and_config() {
    let cluster = cluster();
    let p = proxy(&cluster).await;
    let mut app = mysql_async::Conn::new(opts(p.local_addr(), "app", "app", Some("test"))).await.expect("app login");
    for id in 1..=3 {
        let _: Option<i32> = app.query_first(format!("SELECT v FROM a WHERE id = {id}")).await.expect("select");
    }
    app.query_drop("SELECT v FROM a WHERE id IN (1, 2, 3)").await.expect("select in");
    app.query_drop("SELECT v FROM a WHERE id IN (4, 5)").await.expect("select in");
    let _ = app.query_drop("SELECT * FROM no_such_table").await.expect_err("missing table");

    let mut a = admin(&p).await;
    let nodes = rows(&mut a, "SHOW SLUICE NODES").await;
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let primary = cluster.node(0).addr();
    let roles: BTreeMap<String, String> = nodes.iter().map(|n| (n["node"].clone(), n["role"].clone())).collect();
    assert_eq!(roles[&primary], "primary", "{nodes:?}");
    assert_eq!(roles.values().filter(|r| *r == "replica").count(), 2, "{nodes:?}");
    assert!(nodes.iter().all(|n| n["up"] == "yes" && !n["gtid_position"].is_empty()), "{nodes:?}");
    let routed: u64 = nodes.iter().map(|n| n["routed"].parse::<u64>().unwrap()).sum();
    assert!(routed >= 6, "statements were routed: {nodes:?}");

    let sessions = rows(&mut a, "SHOW SLUICE SESSIONS").await;
    let mine: Vec<_> = sessions.iter().filter(|s| s["user"] == "app").collect();
    assert_eq!(mine.len(), 1, "{sessions:?}");
    assert_eq!(mine[0]["state"], "idle", "{sessions:?}");
    assert!(mine[0]["client"].starts_with("127.0.0.1:"), "{sessions:?}");
    assert!(mine[0]["commands"].parse::<u64>().unwrap() >= 6, "{sessions:?}");

    let digests = rows(&mut a, "SHOW SLUICE QUERY DIGESTS LIMIT 50").await;
    let by_text: BTreeMap<String, &BTreeMap<String, String>> = digests.iter().map(|d| (d["digest_text"].clone(), d)).collect();
    let point = by_text.get("SELECT v FROM a WHERE id = ?").unwrap_or_else(|| panic!("point select digest: {digests:?}"));
    assert_eq!(point["count"], "3", "literals fold into one digest");
    assert_eq!(point["rows"], "3");
    let list = by_text.get("SELECT v FROM a WHERE id IN (...)").unwrap_or_else(|| panic!("IN-list digest: {digests:?}"));
    assert_eq!(list["count"], "2", "IN lists of any length fold into one digest");
    let missing = by_text.get("SELECT * FROM no_such_table").unwrap_or_else(|| panic!("error digest: {digests:?}"));
    assert_eq!(missing["errors"], "1");
    a.query_drop("SLUICE RESET DIGESTS").await.expect("reset digests");
    assert!(rows(&mut a, "SHOW SLUICE QUERY DIGESTS").await.is_empty());

    let pools = rows(&mut a, "SHOW SLUICE POOLS").await;
    assert_eq!(pools.len(), 3, "{pools:?}");
    assert!(pools.iter().map(|r| r["leases"].parse::<u64>().unwrap()).sum::<u64>() >= 6, "multiplexed statements borrowed pool connections: {pools:?}");

    let users = rows(&mut a, "SHOW SLUICE USERS").await;
    let app_row = users.iter().find(|u| u["user"] == "app").unwrap_or_else(|| panic!("{users:?}"));
    assert_eq!(app_row["connections"], "1");
    assert_eq!(app_row["errors"], "1", "the missing table's error: {users:?}");

    let config = rows(&mut a, "SHOW SLUICE CONFIG").await;
    let get = |k: &str| config.iter().find(|r| r["key"] == k).map(|r| r["value"].clone());
    assert_eq!(get("backend.password").as_deref(), Some("********"));
    assert_eq!(get("admin.users[0].name").as_deref(), Some("ops"));
    assert_eq!(get("routing.read_write_split").as_deref(), Some("true"));
    assert!(!format!("{config:?}").contains("opspw"));

    let version = rows(&mut a, "SHOW SLUICE VERSION").await;
    assert_eq!(version[0]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version[0]["primary"], primary);

    let e = a.query_drop("SELECT 1").await.expect_err("not an admin statement");
    assert!(e.to_string().contains("SHOW SLUICE NODES"), "{e}");
    // The app's session still works; the admin's errors did not touch it.
    assert_eq!(app.query_first::<i32, _>("SELECT 1").await.unwrap(), Some(1));
    drop(app);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_login_works_with_command_line_clients_and_refuses_bad_credentials() {
    let cluster = cluster();
    let p = proxy(&cluster).await;
    let addr = p.admin_addr().unwrap().to_string();
    let (ok, out, err) = mariadb_cli(&addr, "ops", "opspw", &[], "SHOW SLUICE NODES");
    assert!(ok, "mariadb CLI: {err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let (ok, _, err) = mariadb_cli(&addr, "ops", "wrong", &[], "SHOW SLUICE NODES");
    assert!(!ok && err.contains("1045") && err.contains("Access denied for user 'ops'"), "{err}");
    let (ok, _, err) = mariadb_cli(&addr, "nobody", "opspw", &[], "SHOW SLUICE NODES");
    assert!(!ok && err.contains("1045"), "{err}");
    // An account with an empty password, and a client that prefers caching_sha2_password.
    let (ok, out, err) = python(
        &addr,
        r#"
import pymysql
c = pymysql.connect(host="127.0.0.1", port=__PORT__, user="viewer", password="", auth_plugin_map={})
cur = c.cursor()
cur.execute("SHOW SLUICE VERSION")
print(cur.fetchone()[0])
"#,
    );
    assert!(ok, "PyMySQL: {err}");
    assert_eq!(out.trim(), env!("CARGO_PKG_VERSION"));
    let e = mysql_async::Conn::new(opts(&addr, "viewer", "x", None)).await.expect_err("wrong password");
    assert!(e.to_string().contains("1045") || e.to_string().contains("Access denied"), "{e}");
    // The client port does not take admin accounts.
    let e = mysql_async::Conn::new(opts(p.local_addr(), "ops", "opspw", None)).await.expect_err("admin account on the client port");
    assert!(e.to_string().contains("Access denied"), "{e}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_replica_gets_no_new_reads_until_enabled_and_the_primary_cannot_be_drained() {
    let cluster = cluster();
    let p = proxy(&cluster).await;
    let mut a = admin(&p).await;
    let mut app = mysql_async::Conn::new(opts(p.local_addr(), "app", "app", Some("test"))).await.expect("app login");
    let ids: Vec<u32> = (0..3).map(|i| cluster.node(i).server_id()).collect();
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        *seen.entry(server_id(&mut app).await).or_insert(0) += 1;
    }
    assert!(seen.contains_key(&ids[1]) && seen.contains_key(&ids[2]), "both replicas serve reads: {seen:?}");

    let r1 = cluster.node(1).addr();
    let r2 = cluster.node(2).addr();
    a.query_drop(format!("SLUICE NODE '{r1}' DRAIN")).await.expect("drain");
    for _ in 0..20 {
        assert_eq!(server_id(&mut app).await, ids[2], "reads avoid the drained replica");
    }
    let nodes = rows(&mut a, "SHOW SLUICE NODES").await;
    assert_eq!(nodes.iter().find(|n| n["node"] == r1).unwrap()["drained"], "yes");
    a.query_drop(format!("SLUICE NODE '{r2}' DRAIN")).await.expect("drain the other");
    for _ in 0..10 {
        assert_eq!(server_id(&mut app).await, ids[0], "with every replica drained, reads go to the primary");
    }
    let primary = cluster.node(0).addr();
    let e = a.query_drop(format!("SLUICE NODE '{primary}' DRAIN")).await.expect_err("the primary cannot be drained");
    assert!(e.to_string().contains("SWITCHOVER"), "{e}");
    let e = a.query_drop("SLUICE NODE '10.9.9.9:1' DRAIN").await.expect_err("unknown node");
    assert!(e.to_string().contains("Unknown node"), "{e}");
    a.query_drop(format!("SLUICE NODE '{r1}' ENABLE")).await.expect("enable");
    a.query_drop(format!("SLUICE NODE '{r2}' ENABLE")).await.expect("enable");
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        *seen.entry(server_id(&mut app).await).or_insert(0) += 1;
    }
    assert!(seen.contains_key(&ids[1]) && seen.contains_key(&ids[2]), "enabled replicas serve reads again: {seen:?}");
    let (_, metrics) = http_get(p.http_addr().unwrap(), "/metrics").await;
    assert!(metrics.contains(&format!("sluice_node_drained{{node=\"{r1}\"}} 0")), "{metrics}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_kill_query_stops_the_running_statement_and_kill_closes_the_session() {
    let cluster = cluster();
    let p = proxy(&cluster).await;
    let mut a = admin(&p).await;
    let mut app = mysql_async::Conn::new(opts(p.local_addr(), "app", "app", Some("test"))).await.expect("app login");
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let r = app.query_drop("SELECT SLEEP(30) FROM a WHERE id = 1 FOR UPDATE").await;
        (r, started.elapsed(), app)
    });
    let mut id = None;
    for _ in 0..100 {
        let sessions = rows(&mut a, "SHOW SLUICE SESSIONS").await;
        // The client's login query may still show for a moment after its answer went
        // out (the session records the end of a command after relaying it).
        if let Some(s) = sessions.iter().find(|s| s["user"] == "app" && s["state"] == "query" && s["statement"] == "SELECT SLEEP(?) FROM a WHERE id = ? FOR UPDATE") {
            assert_eq!(s["node"], cluster.node(0).addr());
            id = Some(s["id"].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = id.expect("the running statement shows in SHOW SLUICE SESSIONS, as its digest");
    a.query_drop(format!("SLUICE KILL QUERY {id}")).await.expect("kill query");
    let (r, took, mut app) = sleeper.await.unwrap();
    // SLEEP interrupted returns 1 (MariaDB) rather than an error; either way it ends now.
    assert!(took < Duration::from_secs(10), "the statement ended at the kill ({took:?}, {r:?})");
    assert_eq!(app.query_first::<i32, _>("SELECT 1").await.unwrap(), Some(1), "KILL QUERY keeps the session");
    a.query_drop(format!("SLUICE KILL {id}")).await.expect("kill connection");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.query_first::<i32, _>("SELECT 1").await.is_err(), "KILL closes the session");
    let e = a.query_drop("SLUICE KILL 12345").await.expect_err("unknown id");
    assert!(e.to_string().contains("Unknown thread id"), "{e}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_serves_metrics_health_and_readiness() {
    let cluster = cluster();
    let p = proxy(&cluster).await;
    let http = p.http_addr().expect("http listener").to_string();
    let mut app = mysql_async::Conn::new(opts(p.local_addr(), "app", "app", Some("test"))).await.expect("app login");
    app.query_drop("UPDATE a SET v = v + 1 WHERE id = 1").await.expect("write");
    let _: Option<i32> = app.query_first("SELECT v FROM a WHERE id = 2").await.expect("read");
    let _ = app.query_drop("SELECT * FROM no_such_table").await;
    app.query_drop("SELECT SLEEP(0.3)").await.expect("slow statement");
    let _ = mysql_async::Conn::new(opts(p.local_addr(), "app", "wrong", None)).await.expect_err("bad password");

    let (status, body) = http_get(&http, "/metrics").await;
    assert_eq!(status, 200);
    let primary = cluster.node(0).addr();
    for needle in [
        format!("sluice_node_statements_total{{node=\"{primary}\",reason=\"write\"}} 1\n"),
        format!("sluice_node_up{{node=\"{primary}\"}} 1\n"),
        format!("sluice_node_role{{node=\"{primary}\",role=\"primary\"}} 1\n"),
        "sluice_user_connections{user=\"app\"} 1\n".to_string(),
        "sluice_user_errors_total{user=\"app\",code=\"1146\"} 1\n".to_string(),
        "sluice_slow_statements_total 1\n".to_string(),
        "sluice_login_failures_total 1\n".to_string(),
        "# TYPE sluice_node_statement_seconds histogram\n".to_string(),
        "# TYPE sluice_pool_open gauge\n".to_string(),
        "sluice_client_sessions 1\n".to_string(),
    ] {
        assert!(body.contains(&needle), "missing {needle:?} in\n{body}");
    }
    let reads: u64 = body
        .lines()
        .filter(|l| l.starts_with("sluice_node_statements_total") && l.contains("reason=\"read\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(reads >= 1, "the read was counted: {body}");
    assert_eq!(http_get(&http, "/health").await.0, 200);
    let (status, body) = http_get(&http, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&primary));
    assert_eq!(http_get(&http, "/nope").await.0, 404);
    // A malformed request gets an answer, and the listener keeps serving.
    let mut s = tokio::net::TcpStream::connect(&http).await.unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(http_get(&http, "/health").await.0, 200);
    drop(app);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_that_cannot_bind_is_a_startup_error() {
    let cluster = cluster();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = format!("{}\n[admin]\nhttp_listen = \"127.0.0.1:{port}\"\n", common::split_config(&cluster, ""));
    let cfg = sluice::Config::parse(&text).expect("config");
    let e = sluice::start(TokioNet, cfg, 1).await.err().expect("bind fails");
    assert!(e.to_string().contains("admin.http_listen"), "{e}");
    let bad = format!("{}\n[admin]\nlisten = \"127.0.0.1:0\"\n", common::split_config(&cluster, ""));
    let e = sluice::Config::parse(&bad).err().expect("admin.listen without accounts is refused");
    assert!(e.to_string().contains("admin.users"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_admin_session_is_closed_after_the_admin_idle_timeout() {
    let cluster = cluster();
    let text = format!("{}{}", common::split_config(&cluster, ""), ADMIN.replace("http_listen = \"127.0.0.1:0\"", "http_listen = \"127.0.0.1:0\"\nidle_timeout_ms = 400"));
    let p = sluice::start(TokioNet, sluice::Config::parse(&text).expect("config"), 3).await.expect("proxy starts");
    let mut busy = admin(&p).await;
    let mut idle = admin(&p).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        busy.query_drop("SHOW SLUICE VERSION").await.expect("a session in use stays open");
    }
    assert!(idle.query_drop("SHOW SLUICE VERSION").await.is_err(), "the idle session was closed");
    assert!(admin(&p).await.query_drop("SHOW SLUICE VERSION").await.is_ok(), "new admin sessions are served");
    p.shutdown().await;
}
