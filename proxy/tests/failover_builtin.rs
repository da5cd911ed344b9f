//! The built-in failover manager and planned switchover on real MariaDB (a primary and
//! two replicas), under a write load of unique keys through Sluice:
//!
//! * the primary SIGKILLed: Sluice promotes the replica with the most advanced GTID
//!   position, re-points the other, writes resume within the target (3 s with 250 ms
//!   checks), reads are never refused, no acknowledged write is lost (semi-synchronous
//!   replication) and none is applied twice; the old primary restarting writable is
//!   fenced (read-only) and rejoins as a replica — or, when it committed writes no
//!   replica received (unacknowledged: their clients got 1317), stays fenced;
//! * `SLUICE SWITCHOVER TO …` under load: no client-visible error, a short write pause,
//!   the old primary replicates from the new one.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use sluice::net::TokioNet;

fn cluster(semi_sync: bool) -> Arc<chaos::Cluster> {
    // Sluice's failover log lines go with the test's output (RUST_LOG to change).
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "sluice=warn".into())).with_test_writer().try_init();
    let spec = chaos::ClusterSpec { replicas: 2, semi_sync, ..Default::default() };
    let cluster = chaos::Cluster::start(spec).expect("start MariaDB");
    cluster.app_sql(0, "CREATE TABLE IF NOT EXISTS test.w (id BIGINT PRIMARY KEY, writer INT)").expect("table");
    cluster.wait_replicas_caught_up(Duration::from_secs(30)).expect("replicas caught up");
    Arc::new(cluster)
}

async fn proxy(cluster: &chaos::Cluster, manager: &str) -> sluice::ProxyHandle {
    let nodes: Vec<String> = cluster.nodes().iter().map(|n| n.addr()).collect();
    proxy_for(cluster, manager, &nodes).await
}

/// A proxy in front of `nodes` (the cluster's, or relays in front of them).
async fn proxy_for(cluster: &chaos::Cluster, manager: &str, nodes: &[String]) -> sluice::ProxyHandle {
    let cfg = chaos::scenario::sluice_config("127.0.0.1:0", nodes, cluster, manager);
    sluice::start(TokioNet, sluice::Config::parse(&cfg).expect("config"), 7).await.expect("proxy starts")
}

async fn client(proxy: &sluice::ProxyHandle, user: &str) -> mysql_async::Conn {
    let o = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(common::port_of(proxy.local_addr()))
        .user(Some(user))
        .pass(Some(user))
        .db_name(Some("test"))
        .prefer_socket(false);
    mysql_async::Conn::new(o).await.expect("client connects")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// What the load saw.
#[derive(Default)]
struct Record {
    /// Acknowledged writes.
    acked: BTreeSet<i64>,
    /// Writes whose outcome is unknown (1317).
    unknown: BTreeSet<i64>,
    /// Other errors: (code or message, when).
    errors: Vec<(String, Instant)>,
    /// Ends of acknowledged writes.
    write_done: Vec<Instant>,
    /// Longest single write.
    longest_write: Duration,
    read_errors: Vec<String>,
    reads: u64,
}

/// Runs `writers` sessions inserting unique keys (one in three in a transaction) and one
/// reader until `stop`.
fn load(proxy: &sluice::ProxyHandle, writers: usize, stop: Arc<AtomicBool>, rec: Arc<Mutex<Record>>) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (stop, rec, next) = (stop.clone(), rec.clone(), next.clone());
        let port = common::port_of(proxy.local_addr());
        tasks.push(tokio::spawn(async move {
            let o = mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(port).user(Some("app")).pass(Some("app")).db_name(Some("test")).prefer_socket(false);
            let mut c = mysql_async::Conn::new(o).await.expect("writer connects");
            while !stop.load(Ordering::Relaxed) {
                let id = next.fetch_add(1, Ordering::Relaxed) as i64;
                let started = Instant::now();
                let r = if id % 3 == 0 {
                    async {
                        c.query_drop("BEGIN").await?;
                        c.query_drop(format!("INSERT INTO w VALUES ({id}, {w})")).await?;
                        c.query_drop("COMMIT").await
                    }
                    .await
                } else {
                    c.query_drop(format!("INSERT INTO w VALUES ({id}, {w})")).await
                };
                let reconnect = {
                    let mut r2 = rec.lock().unwrap();
                    match r {
                        Ok(()) => {
                            r2.acked.insert(id);
                            r2.write_done.push(Instant::now());
                            r2.longest_write = r2.longest_write.max(started.elapsed());
                            false
                        }
                        Err(mysql_async::Error::Server(e)) if e.code == 1317 => {
                            // Outcome unknown; a COMMIT's also ends the session.
                            r2.unknown.insert(id);
                            true
                        }
                        Err(e) => {
                            r2.unknown.insert(id);
                            r2.errors.push((e.to_string(), Instant::now()));
                            true
                        }
                    }
                };
                if reconnect {
                    // The error may have ended the session (a cut transaction): reconnect.
                    let o = mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(port).user(Some("app")).pass(Some("app")).db_name(Some("test")).prefer_socket(false);
                    c = mysql_async::Conn::new(o).await.expect("writer reconnects");
                }
            }
        }));
    }
    let port = common::port_of(proxy.local_addr());
    tasks.push(tokio::spawn(async move {
        let o = mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(port).user(Some("app")).pass(Some("app")).db_name(Some("test")).prefer_socket(false);
        let mut c = mysql_async::Conn::new(o).await.expect("reader connects");
        while !stop.load(Ordering::Relaxed) {
            let r: Result<Option<u64>, _> = c.query_first("SELECT COUNT(*) FROM w").await;
            {
                let mut r2 = rec.lock().unwrap();
                match r {
                    Ok(_) => r2.reads += 1,
                    Err(e) => r2.read_errors.push(e.to_string()),
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
    tasks
}

/// The longest time without an acknowledged write between `from` and the last one.
fn longest_gap(done: &[Instant], from: Instant) -> Duration {
    let mut t: Vec<Instant> = done.to_vec();
    t.sort();
    let mut prev = from;
    let mut gap = Duration::ZERO;
    for x in t.into_iter().filter(|x| *x >= from) {
        gap = gap.max(x - prev);
        prev = x;
    }
    gap
}

fn keys_on(c: &chaos::Cluster, node: usize) -> BTreeSet<i64> {
    c.app_sql(node, "SELECT id FROM test.w").expect("read keys").lines().filter_map(|l| l.trim().parse().ok()).collect()
}

async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_manager_promotes_a_replica_when_the_primary_is_killed_and_fences_the_old_one_when_it_returns() {
    let c = cluster(true);
    let proxy = proxy(&c, "builtin").await;
    let stop = Arc::new(AtomicBool::new(false));
    let rec = Arc::new(Mutex::new(Record::default()));
    let tasks = load(&proxy, 4, stop.clone(), rec.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = Instant::now();
    let cc = c.clone();
    blocking(move || cc.kill_node(0).expect("kill primary")).await;
    // Writes resume; let them run a while on the new primary.
    let resumed = eventually(Duration::from_secs(20), || rec.lock().unwrap().write_done.iter().any(|t| *t > killed_at + Duration::from_millis(50))).await;
    assert!(resumed, "writes never resumed after the primary was killed");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let cc = c.clone();
    let new = blocking(move || cc.find_primary()).await.expect("exactly one writable non-replica");
    assert_ne!(new, 0);
    let r = std::mem::take(&mut *rec.lock().unwrap());
    let gap = longest_gap(&r.write_done, killed_at);
    let on_new = keys_on(&c, new);
    let lost: Vec<&i64> = r.acked.iter().filter(|k| !on_new.contains(k)).collect();
    eprintln!(
        "builtin failover after SIGKILL: writes resumed after {gap:?} (longest write {:?}); {} acknowledged, {} unknown outcome, errors {:?}; reads {} ok, {} failed; {} acknowledged writes lost",
        r.longest_write,
        r.acked.len(),
        r.unknown.len(),
        r.errors.iter().map(|e| &e.0).collect::<Vec<_>>(),
        r.reads,
        r.read_errors.len(),
        lost.len()
    );
    assert!(gap < Duration::from_secs(3), "writes resumed within 3 s of the kill: {gap:?}");
    assert!(lost.is_empty(), "acknowledged writes lost with semi-sync: {lost:?}");
    assert!(r.read_errors.is_empty(), "reads were refused: {:?}", r.read_errors);
    // Only transactions cut by the crash may fail (1927); nothing else.
    assert!(r.errors.iter().all(|(e, _)| e.contains("1927")), "{:?}", r.errors);
    // The other replica follows the new primary.
    let other = [1, 2].into_iter().find(|i| *i != new).expect("the other replica");
    let source = c.slave_status(other).expect("status").expect("a replica");
    assert_eq!(source.get("Master_Port").map(String::as_str), Some(c.node(new).port().to_string().as_str()), "{source:?}");
    // The old primary comes back writable: Sluice fences it. It rejoins as a replica
    // unless it committed transactions no replica received before it died (with
    // semi-sync, commits whose acknowledgement never came: their clients got 1317):
    // then it stays read-only for an operator.
    let on_new_before = keys_on(&c, new);
    let cc = c.clone();
    blocking(move || cc.start_node(0).expect("restart the old primary")).await;
    let fenced = eventually(Duration::from_secs(20), || c.root_sql(0, "SELECT @@read_only").map(|s| s.trim() == "1").unwrap_or(false)).await;
    assert!(fenced, "the old primary was fenced");
    let replicating = || c.slave_status(0).ok().flatten().is_some_and(|s| s.get("Slave_IO_Running").map(String::as_str) == Some("Yes") && s.get("Slave_SQL_Running").map(String::as_str) == Some("Yes"));
    let rejoined = eventually(Duration::from_secs(10), replicating).await;
    let extra: Vec<i64> = keys_on(&c, 0).into_iter().filter(|k| !on_new_before.contains(k)).collect();
    if !rejoined {
        assert!(!extra.is_empty(), "the old primary holds nothing the new one lacks, yet it did not rejoin: {:?}", c.slave_status(0));
        assert!(extra.iter().all(|k| r.unknown.contains(k)), "only unacknowledged writes are on the old primary alone: {extra:?}");
        assert!(c.slave_status(0).ok().flatten().is_none(), "a diverged old primary is not pointed at the new one");
        eprintln!("the old primary stays fenced: it committed {} unacknowledged writes no replica received", extra.len());
        proxy.shutdown().await;
        return;
    }
    c.adopt_primary(new);
    let mut app = client(&proxy, "app").await;
    app.query_drop("INSERT INTO w VALUES (-1, -1)").await.expect("writes go to the new primary");
    // The rejoined old primary replays what it missed (a loaded machine runs three
    // clusters of this file at once: allow time).
    if let Err(e) = c.wait_replicas_caught_up(Duration::from_secs(90)) {
        panic!("every node caught up, the old primary included: {e:#}; node 0: {:?}", c.slave_status(0));
    }
    assert!(keys_on(&c, 0).contains(&-1));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_switchover_under_load_has_no_client_errors_and_a_short_write_pause() {
    let c = cluster(false);
    let proxy = proxy(&c, "external").await;
    let stop = Arc::new(AtomicBool::new(false));
    let rec = Arc::new(Mutex::new(Record::default()));
    let tasks = load(&proxy, 4, stop.clone(), rec.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Not an admin: refused.
    let mut app = client(&proxy, "app").await;
    let e = app.query_drop("SLUICE SWITCHOVER").await.expect_err("app is no admin");
    assert!(e.to_string().contains("1227") || e.to_string().contains("admin = true"), "{e}");
    let mut ops = client(&proxy, "ops").await;
    let target = c.node(1).addr();
    let started = Instant::now();
    ops.query_drop(format!("SLUICE SWITCHOVER TO '{target}'")).await.expect("switchover");
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let r = std::mem::take(&mut *rec.lock().unwrap());
    let gap = longest_gap(&r.write_done, started);
    eprintln!(
        "switchover under load: command took {took:?}; longest write {:?}, longest gap {gap:?}; {} acknowledged, {} unknown, errors {:?}; reads {} ok, {} failed",
        r.longest_write,
        r.acked.len(),
        r.unknown.len(),
        r.errors,
        r.reads,
        r.read_errors.len()
    );
    assert!(r.errors.is_empty() && r.unknown.is_empty(), "no client-visible errors: {:?}", r.errors);
    assert!(r.read_errors.is_empty(), "{:?}", r.read_errors);
    assert!(r.longest_write < Duration::from_secs(1), "write pause under 1 s: {:?}", r.longest_write);
    let acked = r.acked.clone();
    let cc = c.clone();
    assert_eq!(blocking(move || cc.find_primary()).await, Some(1));
    c.adopt_primary(1);
    c.wait_replicas_caught_up(Duration::from_secs(30)).expect("the old primary replicates from the new one");
    let on_new = keys_on(&c, 1);
    assert!(acked.iter().all(|k| on_new.contains(k)), "every acknowledged write is on the new primary");
    assert_eq!(keys_on(&c, 0), on_new, "the old primary caught up with the new one");
    let source = c.slave_status(0).expect("status").expect("the old primary replicates");
    assert_eq!(source.get("Master_Port").map(String::as_str), Some(c.node(1).port().to_string().as_str()));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_link_to_the_primary_pauses_writes_without_errors_or_a_promotion() {
    let c = cluster(false);
    // Sluice reaches the primary through a fault relay; replication does not.
    let relay = chaos::Relay::start(c.node(0).addr().parse().expect("address")).expect("relay");
    let nodes = vec![relay.addr(), c.node(1).addr(), c.node(2).addr()];
    let proxy = proxy_for(&c, "builtin", &nodes).await;
    let stop = Arc::new(AtomicBool::new(false));
    let rec = Arc::new(Mutex::new(Record::default()));
    let tasks = load(&proxy, 4, stop.clone(), rec.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let started = Instant::now();
    relay.set(chaos::LinkFault::BlackHole);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    relay.set(chaos::LinkFault::Healthy);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let r = std::mem::take(&mut *rec.lock().unwrap());
    let gap = longest_gap(&r.write_done, started);
    eprintln!(
        "primary link black-holed 2 s: longest write {:?}, longest gap {gap:?}; {} acknowledged, {} unknown, errors {:?}; reads {} ok, {} failed",
        r.longest_write,
        r.acked.len(),
        r.unknown.len(),
        r.errors,
        r.reads,
        r.read_errors.len()
    );
    assert!(r.errors.is_empty() && r.unknown.is_empty(), "no client-visible errors: {:?}", r.errors);
    assert!(r.read_errors.is_empty(), "{:?}", r.read_errors);
    assert!(gap < Duration::from_secs(4), "writes resume after the heal: {gap:?}");
    let acked = r.acked.clone();
    // No promotion: the replicas still replicated from the primary.
    let cc = c.clone();
    assert_eq!(blocking(move || cc.find_primary()).await, Some(0));
    let on_primary = keys_on(&c, 0);
    assert!(acked.iter().all(|k| on_primary.contains(k)));
    proxy.shutdown().await;
}
