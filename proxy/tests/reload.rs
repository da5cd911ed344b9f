//! Hot reload against a real MariaDB primary and two replicas: `SLUICE RELOAD` (and the
//! same path SIGHUP takes, `ProxyHandle::reload`) while clients run statements and log
//! in and out: accounts added and removed, read/write splitting and load balancing
//! changed, a setting that needs a restart named, a bad file refused — with zero client
//! errors.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::*;
use sluice::net::TokioNet;

fn opts(addr: &str, user: &str, pass: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(common::port_of(addr))
        .user(Some(user))
        .pass(Some(pass))
        .db_name(Some("test"))
        .prefer_socket(false)
        .into()
}

const ADMIN: &str = r#"
[admin]
listen = "127.0.0.1:0"
[[admin.users]]
name = "ops"
password = "opspw"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_changes_accounts_and_routing_with_zero_client_errors() {
    let cluster = chaos::Cluster::start(chaos::ClusterSpec { replicas: 2, ..Default::default() }).expect("cluster");
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.rl (id INT PRIMARY KEY AUTO_INCREMENT, v INT)").unwrap();
    cluster.wait_replicas_caught_up(Duration::from_secs(30)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    let base = format!("{}{ADMIN}", common::split_config(&cluster, ""));
    std::fs::write(&path, &base).unwrap();
    let p = sluice::start(TokioNet, sluice::Config::load(&path).unwrap(), 5).await.expect("proxy");
    let addr = p.local_addr().to_string();
    let primary_id = cluster.node(0).server_id();

    // Load: sessions that write and read, and sessions that log in for a few statements.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (addr, stop, errors, done) = (addr.clone(), stop.clone(), errors.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut c: Option<mysql_async::Conn> = None;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if c.is_none() || (i % 2 == 0 && n % 5 == 0) {
                    if let Some(old) = c.take() {
                        let _ = old.disconnect().await;
                    }
                    match mysql_async::Conn::new(opts(&addr, "app", "app")).await {
                        Ok(x) => c = Some(x),
                        Err(e) => {
                            eprintln!("login failed: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                }
                let conn = c.as_mut().unwrap();
                let r = async {
                    conn.exec_drop("INSERT INTO rl (v) VALUES (?)", (n as i64,)).await?;
                    conn.query_drop("SELECT COUNT(*) FROM rl").await
                }
                .await;
                if let Err(e) = r {
                    eprintln!("statement failed: {e}");
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // A long-lived session opened before the reloads; it keeps working throughout.
    let mut long = mysql_async::Conn::new(opts(&addr, "app", "app")).await.unwrap();
    let mut admin = mysql_async::Conn::new(mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(common::port_of(p.admin_addr().unwrap())).user(Some("ops")).pass(Some("opspw")).prefer_socket(false)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. A new account, splitting off: reads of sessions that did not choose go to the primary.
    let second = base.replace("[routing]\nread_write_split = true", "[routing]\nread_write_split = false").replace("[backend]", "[[users]]\nname = \"late\"\npassword = \"latepw\"\n[backend]");
    assert_ne!(second, base);
    std::fs::write(&path, &second).unwrap();
    assert!(mysql_async::Conn::new(opts(&addr, "late", "latepw")).await.is_err(), "not an account before the reload");
    admin.query_drop("SLUICE RELOAD").await.expect("reload");
    let config: Vec<(String, String)> = admin.query("SHOW SLUICE CONFIG").await.unwrap();
    assert!(config.contains(&("routing.read_write_split".to_string(), "false".to_string())), "{config:?}");
    assert!(config.contains(&("users[1].name".to_string(), "late".to_string())), "{config:?}");
    let mut late = mysql_async::Conn::new(opts(&addr, "late", "latepw")).await.expect("the new account logs in");
    assert_eq!(late.query_first::<u32, _>("SELECT @@server_id").await.unwrap(), Some(primary_id));
    for _ in 0..10 {
        assert_eq!(long.query_first::<u32, _>("SELECT @@server_id").await.unwrap(), Some(primary_id), "an open session follows the reloaded default");
    }
    // A session's own choice survives a reload.
    long.query_drop("SET @@sluice_read_write_split = ON").await.unwrap();

    // 2. A bad file is refused; nothing changes.
    std::fs::write(&path, second.replace("[routing]", "[routing]\nno_such_key = 1")).unwrap();
    let e = admin.query_drop("SLUICE RELOAD").await.expect_err("bad file refused");
    assert!(e.to_string().contains("no_such_key") && e.to_string().contains("running configuration stays"), "{e}");
    assert!(mysql_async::Conn::new(opts(&addr, "late", "latepw")).await.is_ok(), "the running config stays");

    // 3. The account removed again, splitting on, a listener change that needs a restart
    //    (through ProxyHandle::reload: SIGHUP's path).
    let third = base.replace("listen = \"127.0.0.1:0\"\n[[users]]", "listen = \"127.0.0.1:1\"\n[[users]]");
    assert_ne!(third, base);
    std::fs::write(&path, &third).unwrap();
    let plan = p.reload().expect("reload");
    assert_eq!(plan.restart_needed, vec!["proxy.listen".to_string()]);
    assert!(mysql_async::Conn::new(opts(&addr, "late", "latepw")).await.is_err(), "the removed account cannot log in");
    assert_eq!(late.query_first::<i32, _>("SELECT 1").await.unwrap(), Some(1), "its open session is not dropped");
    let mut on_replicas = 0;
    for _ in 0..20 {
        if long.query_first::<u32, _>("SELECT @@server_id").await.unwrap() != Some(primary_id) {
            on_replicas += 1;
        }
    }
    assert!(on_replicas > 0, "reads are split again");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(done.load(Ordering::Relaxed) > 50, "the load ran ({} rounds)", done.load(Ordering::Relaxed));
    assert_eq!(errors.load(Ordering::Relaxed), 0, "no client saw an error during the reloads");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_the_sluice_binary_reload_its_config_file() {
    let cluster = chaos::Cluster::start(chaos::ClusterSpec { replicas: 0, ..Default::default() }).expect("cluster");
    let base = common::split_config(&cluster, "");
    let (dir, mut cmd) = common::sluice_with(&base);
    let (mut child, addr) = tokio::task::block_in_place(|| common::spawn_ready(&mut cmd));
    let mut app = mysql_async::Conn::new(opts(&addr, "app", "app")).await.unwrap();
    assert!(mysql_async::Conn::new(opts(&addr, "late", "latepw")).await.is_err());
    std::fs::write(dir.path().join("sluice.toml"), base.replace("[backend]", "[[users]]\nname = \"late\"\npassword = \"latepw\"\n[backend]")).unwrap();
    let _ = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match mysql_async::Conn::new(opts(&addr, "late", "latepw")).await {
            Ok(_) => break,
            Err(e) => assert!(std::time::Instant::now() < deadline, "the account added to the file logs in after SIGHUP: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.query_first::<i32, _>("SELECT 1").await.unwrap(), Some(1), "the open session was not dropped");
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP does not stop the process");
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// The servers 40 reads of `reader` ran on.
async fn servers(reader: &mut mysql_async::Conn) -> std::collections::BTreeSet<u32> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(reader.query_first::<u32, _>("SELECT @@server_id").await.unwrap().unwrap());
    }
    seen
}

/// `SHOW SLUICE POOLS` (or `NODES`) as node → column → value.
async fn admin_rows(admin: &mut mysql_async::Conn, what: &str) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    let rows: Vec<mysql_async::Row> = admin.query(format!("SHOW SLUICE {what}")).await.unwrap();
    rows.into_iter()
        .map(|r| {
            let cols: Vec<String> = r.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
            let m: std::collections::BTreeMap<String, String> = cols.into_iter().enumerate().map(|(i, n)| (n, r.get::<Option<String>, _>(i).flatten().unwrap_or_default())).collect();
            (m["node"].clone(), m)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_adds_and_removes_nodes_and_resizes_pools_with_zero_client_errors() {
    let cluster = chaos::Cluster::start(chaos::ClusterSpec { replicas: 2, ..Default::default() }).expect("cluster");
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.rn (id INT PRIMARY KEY AUTO_INCREMENT, v INT)").unwrap();
    cluster.wait_replicas_caught_up(Duration::from_secs(30)).unwrap();
    let addrs: Vec<String> = cluster.nodes().iter().map(|n| n.addr()).collect();
    let ids: Vec<u32> = (0..3).map(|i| cluster.node(i).server_id()).collect();
    let all = common::split_config(&cluster, "");
    let nodes_line = |list: &[&String]| format!("nodes = [{}]", list.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", "));
    let full_line = nodes_line(&addrs.iter().collect::<Vec<_>>());
    assert!(all.contains(&full_line));
    let with = |list: &[&String], pool: &str| format!("{}{ADMIN}\n[pool]\n{pool}\n", all.replace(&full_line, &nodes_line(list)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    // Start with the primary and the first replica; pools of 6.
    std::fs::write(&path, with(&[&addrs[0], &addrs[1]], "max_per_node = 6")).unwrap();
    let p = sluice::start(TokioNet, sluice::Config::load(&path).unwrap(), 9).await.expect("proxy");
    let addr = p.local_addr().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let (addr, stop, errors, done) = (addr.clone(), stop.clone(), errors.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts(&addr, "app", "app")).await.expect("login");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = async {
                    if n % 4 == i % 4 {
                        c.exec_drop("INSERT INTO rn (v) VALUES (?)", (n as i64,)).await?;
                    }
                    c.query_drop("SELECT COUNT(*) FROM rn").await
                }
                .await;
                if let Err(e) = r {
                    eprintln!("statement failed: {e}");
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            c.disconnect().await.ok();
        }));
    }
    let mut reader = mysql_async::Conn::new(opts(&addr, "app", "app")).await.unwrap();
    let mut admin = mysql_async::Conn::new(mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(common::port_of(p.admin_addr().unwrap())).user(Some("ops")).pass(Some("opspw")).prefer_socket(false)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(servers(&mut reader).await, [ids[1]].into_iter().collect(), "reads go to the one configured replica");
    assert_eq!(admin_rows(&mut admin, "POOLS").await[&addrs[0]]["max"], "6");

    // 1. The second replica added, pools made smaller.
    std::fs::write(&path, with(&[&addrs[0], &addrs[1], &addrs[2]], "max_per_node = 3")).unwrap();
    let plan = p.reload().expect("reload");
    assert!(plan.changed.iter().any(|k| k.starts_with("backend.nodes")) && plan.changed.contains(&"pool.max_per_node".to_string()), "{plan:?}");
    assert!(plan.restart_needed.is_empty(), "{plan:?}");
    let t0 = std::time::Instant::now();
    while !servers(&mut reader).await.contains(&ids[2]) {
        assert!(t0.elapsed() < Duration::from_secs(10), "the added replica never got reads");
    }
    let pools = admin_rows(&mut admin, "POOLS").await;
    assert_eq!(pools[&addrs[0]]["max"], "3", "{pools:?}");
    // Connections beyond the new size close as they come back or sit idle; the load
    // goes on within three.
    let t0 = std::time::Instant::now();
    loop {
        let pools = admin_rows(&mut admin, "POOLS").await;
        let open: usize = pools[&addrs[0]]["open"].parse().unwrap();
        if open <= 3 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the primary's pool stays above its new size: {pools:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(admin_rows(&mut admin, "NODES").await.contains_key(&addrs[2]));

    // 2. The first replica removed: no new statements go to it; pools larger again.
    std::fs::write(&path, with(&[&addrs[0], &addrs[2]], "max_per_node = 8")).unwrap();
    admin.query_drop("SLUICE RELOAD").await.expect("reload");
    assert_eq!(servers(&mut reader).await, [ids[2]].into_iter().collect(), "reads leave the removed replica at once");
    assert!(!admin_rows(&mut admin, "NODES").await.contains_key(&addrs[1]));
    assert_eq!(admin_rows(&mut admin, "POOLS").await[&addrs[0]]["max"], "8");

    // 3. A file without the primary: the primary stays (and says so); writes go on.
    std::fs::write(&path, with(&[&addrs[2]], "max_per_node = 8")).unwrap();
    let plan = p.reload().expect("reload");
    assert_eq!(plan.kept_primary.as_deref(), Some(addrs[0].as_str()));
    reader.exec_drop("INSERT INTO rn (v) VALUES (?)", (-1,)).await.expect("the primary still takes writes");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(done.load(Ordering::Relaxed) > 100, "the load ran ({} statements)", done.load(Ordering::Relaxed));
    assert_eq!(errors.load(Ordering::Relaxed), 0, "no client saw an error during the reloads");
    p.shutdown().await;
}
