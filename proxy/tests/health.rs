//! The backend monitor against real MariaDB clusters (started by the `chaos` launcher,
//! one per test because every test changes replication): replication stopped and started
//! again, a replica delayed past the lag limit, a replica that goes down and comes back,
//! a manual promotion, and the monitor's connections closing politely on shutdown.
//!
//! Blocking `chaos` calls run on the blocking pool so the monitor's tasks keep their
//! schedule; the elapsed times printed are the detection delays measured.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos::{Cluster, ClusterSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sluice::backend::conn::{Login, Secret};
use sluice::health::{tracker, Monitor, Role, Settings, Topology};
use sluice::net::TokioNet;
use sluice::protocol::constants::cap;
use sluice::signal::Signal;

const INTERVAL_MS: u64 = 300;
const TIMEOUT_MS: u64 = 250;
const FAILURES: u32 = 3;
const DEBOUNCE: u32 = 2;
const MAX_LAG_MS: u64 = 2000;

fn settings() -> Settings {
    Settings {
        interval: Duration::from_millis(INTERVAL_MS),
        timeout: Duration::from_millis(TIMEOUT_MS),
        decide: tracker::Settings { failures: FAILURES, debounce: DEBOUNCE, max_replica_lag_ms: MAX_LAG_MS },
    }
}

/// The longest a change may take to show: the probe that sees it can start up to one
/// interval later, `DEBOUNCE` probes must agree, each may take up to the timeout; plus
/// a margin for a loaded machine.
fn detection_bound() -> Duration {
    Duration::from_millis(INTERVAL_MS * DEBOUNCE as u64 + TIMEOUT_MS + 1500)
}

fn start_cluster(replicas: usize) -> Arc<Cluster> {
    let spec = ClusterSpec { replicas, ..Default::default() };
    Arc::new(Cluster::start(spec).expect("start MariaDB cluster"))
}

/// Runs `sql` as root on `node` off the runtime's threads.
async fn root_sql(cluster: &Arc<Cluster>, node: usize, sql: &str) -> String {
    let (c, sql) = (cluster.clone(), sql.to_string());
    tokio::task::spawn_blocking(move || c.root_sql(node, &sql)).await.unwrap().unwrap_or_else(|e| panic!("node {node}: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn monitor_login() -> Login {
    Login {
        user: "app".into(),
        secret: Secret::Password("app".into()),
        database: None,
        charset: 45,
        caps: cap::SERVICE,
        ext_caps: 0,
        attrs: None,
        tls: None,
        timeout: Duration::from_secs(5),
    }
}

/// Starts a monitor over every node of `cluster`; returns the topology and its shutdown.
fn monitor(cluster: &Cluster) -> (Signal<Option<Topology>>, Signal<bool>) {
    let nodes = cluster.nodes().iter().map(|n| n.addr()).collect();
    let rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(7)));
    let shutdown = Signal::new(false);
    let topology = Monitor::start(TokioNet, nodes, monitor_login(), settings(), rng, shutdown.clone());
    (topology, shutdown)
}

/// Waits up to `limit` for `pred` to hold; returns the topology and how long it took.
async fn wait_for(topology: &Signal<Option<Topology>>, what: &str, limit: Duration, pred: impl Fn(&Topology) -> bool) -> (Topology, Duration) {
    let started = Instant::now();
    let holds = |t: &Option<Topology>| t.as_ref().is_some_and(&pred);
    if tokio::time::timeout(limit, topology.wait_for(holds)).await.is_err() {
        panic!("{what}: not within {limit:?}; topology: {:#?}", topology.get());
    }
    let took = started.elapsed();
    eprintln!("{what}: {took:?}");
    (topology.get().expect("published"), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_replication_makes_the_replica_unreadable_until_it_runs_again() {
    let cluster = blocking(|| start_cluster(1)).await;
    let (primary, replica) = (cluster.node(0).addr(), cluster.node(1).addr());
    let (topology, shutdown) = monitor(&cluster);
    let (t, _) = wait_for(&topology, "replica readable at start", Duration::from_secs(10), |t| t.nodes[&replica].readable).await;
    assert_eq!(t.primary.as_deref(), Some(primary.as_str()));
    assert_eq!(t.nodes[&replica].lag_ms, Some(0));
    let ch = &t.nodes[&replica].channels;
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].source, primary);
    assert!(matches!(&t.nodes[&primary].gtid, Some(sluice::health::Gtid::MariaDb { binlog_pos, .. }) if !binlog_pos.is_empty()));

    root_sql(&cluster, 1, "STOP SLAVE").await;
    let (t, took) = wait_for(&topology, "STOP SLAVE -> not readable", detection_bound(), |t| !t.nodes[&replica].readable).await;
    let why = t.nodes[&replica].unreadable_because.clone().unwrap();
    assert!(why.starts_with("replication stopped"), "{why}");
    assert_eq!(t.nodes[&replica].role, Role::Replica, "a stopped replica is still a replica");
    assert!(took >= Duration::from_millis(INTERVAL_MS * (DEBOUNCE as u64 - 1)) / 2, "debounced: {took:?}");

    root_sql(&cluster, 1, "START SLAVE").await;
    let (t, _) = wait_for(&topology, "START SLAVE -> readable", detection_bound(), |t| t.nodes[&replica].readable).await;
    assert_eq!(t.nodes[&replica].unreadable_because, None);
    shutdown.set(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_delayed_past_the_lag_limit_is_not_readable() {
    let cluster = blocking(|| start_cluster(1)).await;
    let replica = cluster.node(1).addr();
    root_sql(&cluster, 0, "CREATE TABLE test.lag (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3))").await;
    blocking({
        let c = cluster.clone();
        move || c.wait_replicas_caught_up(Duration::from_secs(30)).unwrap()
    })
    .await;
    root_sql(&cluster, 1, "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=6; START SLAVE").await;
    let (topology, shutdown) = monitor(&cluster);
    wait_for(&topology, "delayed replica readable while idle", Duration::from_secs(10), |t| t.nodes[&replica].readable).await;

    // Writes every 200 ms: the replica applies each 6 s late, so its lag climbs past 2 s.
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (c, w) = (cluster.clone(), writing.clone());
        tokio::task::spawn_blocking(move || {
            while w.load(std::sync::atomic::Ordering::Relaxed) {
                c.app_sql(0, "INSERT INTO test.lag () VALUES ()").unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let (t, _) = wait_for(&topology, "delayed replica not readable", Duration::from_secs(15), |t| !t.nodes[&replica].readable).await;
    let why = t.nodes[&replica].unreadable_because.clone().unwrap();
    assert!(why.starts_with("lag ") && why.ends_with(&format!("> {MAX_LAG_MS} ms")), "{why}");
    assert!(t.nodes[&replica].lag_ms.unwrap() > MAX_LAG_MS);
    assert_eq!(t.nodes[&replica].role, Role::Replica);

    // Once the writes stop and the delay has passed, it catches up and serves reads again.
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let (t, _) = wait_for(&topology, "caught up -> readable", Duration::from_secs(20), |t| t.nodes[&replica].readable).await;
    assert!(t.nodes[&replica].lag_ms.unwrap() <= MAX_LAG_MS);
    shutdown.set(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_that_goes_down_is_down_after_the_failures_and_comes_back() {
    let cluster = blocking(|| start_cluster(1)).await;
    let replica = cluster.node(1).addr();
    let (topology, shutdown) = monitor(&cluster);
    wait_for(&topology, "replica readable at start", Duration::from_secs(10), |t| t.nodes[&replica].readable).await;

    blocking({
        let c = cluster.clone();
        move || c.kill_node(1).unwrap()
    })
    .await;
    let down_bound = Duration::from_millis(INTERVAL_MS * FAILURES as u64 + TIMEOUT_MS + 1500);
    let (t, _) = wait_for(&topology, "killed replica -> down", down_bound, |t| t.nodes[&replica].role == Role::Down).await;
    assert!(!t.nodes[&replica].readable);
    assert_eq!(t.nodes[&replica].unreadable_because.as_deref(), Some("down"));
    assert!(t.primary.is_some(), "a replica going down leaves the primary in place");

    blocking({
        let c = cluster.clone();
        move || c.start_node(1).unwrap()
    })
    .await;
    // The monitor connects again by itself.
    let (t, _) = wait_for(&topology, "restarted replica -> readable", detection_bound() + Duration::from_secs(5), |t| t.nodes[&replica].readable).await;
    assert_eq!(t.nodes[&replica].role, Role::Replica);
    shutdown.set(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_promotion_moves_the_primary() {
    let cluster = blocking(|| start_cluster(1)).await;
    let (old, new) = (cluster.node(0).addr(), cluster.node(1).addr());
    let (topology, shutdown) = monitor(&cluster);
    wait_for(&topology, "initial primary", Duration::from_secs(10), |t| t.primary.as_deref() == Some(old.as_str())).await;

    // Records every primary the monitor publishes while the promotion runs.
    let seen = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
    let watcher = {
        let (topology, seen) = (topology.clone(), seen.clone());
        tokio::spawn(async move {
            topology
                .wait_for(|t| {
                    let p = t.as_ref().and_then(|t| t.primary.clone());
                    let mut s = seen.lock().unwrap();
                    if s.last() != Some(&p) {
                        s.push(p);
                    }
                    false
                })
                .await
        })
    };
    blocking({
        let c = cluster.clone();
        move || c.promote(1).unwrap()
    })
    .await;
    let (t, _) = wait_for(&topology, "promotion -> new primary", detection_bound(), |t| t.primary.as_deref() == Some(new.as_str())).await;
    assert_eq!(t.nodes[&new].role, Role::Primary);
    assert!(!t.nodes[&new].readable);
    // The old primary follows the new one: a replica again (after the debounce).
    let (t, _) = wait_for(&topology, "old primary -> replica", detection_bound(), |t| t.nodes[&old].role == Role::Replica).await;
    assert_eq!(t.nodes[&old].channels[0].source, new);
    watcher.abort();
    // The watcher may not have run since the last publication: add the current value.
    let mut seen = seen.lock().unwrap().clone();
    if seen.last() != Some(&t.primary) {
        seen.push(t.primary.clone());
    }
    eprintln!("primaries published: {seen:?}");
    assert_eq!(seen.first(), Some(&Some(old.clone())), "{seen:?}");
    assert_eq!(seen.last(), Some(&Some(new.clone())), "{seen:?}");
    assert!(seen.iter().all(|p| p.is_none() || p.as_deref() == Some(old.as_str()) || p.as_deref() == Some(new.as_str())), "{seen:?}");
    shutdown.set(true);
}

/// `(app connections, Aborted_clients)` of `node`.
async fn app_connections(cluster: &Arc<Cluster>, node: usize) -> (u32, u64) {
    let out = root_sql(
        cluster,
        node,
        "SELECT (SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'), \
         (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'ABORTED_CLIENTS')",
    )
    .await;
    let (a, b) = out.trim().split_once('\t').unwrap_or_else(|| panic!("{out:?}"));
    (a.parse().unwrap(), b.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_connections_close_politely_on_proxy_shutdown() {
    let cluster = blocking(|| start_cluster(1)).await;
    let nodes: Vec<String> = cluster.nodes().iter().map(|n| format!("\"{}\"", n.addr())).collect();
    let cfg = format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
shutdown_timeout_ms = 2000
[[users]]
name = "app"
password = "app"
[backend]
user = "app"
password = "app"
nodes = [{}]
monitor_interval_ms = {INTERVAL_MS}
monitor_timeout_ms = {TIMEOUT_MS}
[pool]
# No warm-up: the monitor's connection is the only one.
min_idle = 0
"#,
        nodes.join(", ")
    );
    let proxy = sluice::start(TokioNet, sluice::Config::parse(&cfg).unwrap(), 1).await.expect("proxy starts");
    let mut before = Vec::new();
    for node in 0..2 {
        let (conns, aborted) = app_connections(&cluster, node).await;
        assert_eq!(conns, 1, "node {node}: one monitor connection");
        before.push(aborted);
    }
    assert_eq!(proxy.shutdown().await, 0);
    let started = Instant::now();
    for node in 0..2 {
        loop {
            let (conns, _) = app_connections(&cluster, node).await;
            if conns == 0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "node {node}: monitor connection still open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!("monitor connections gone {:?} after shutdown", started.elapsed());
    // The probers have stopped: nothing connects again over several intervals.
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 5)).await;
    for (node, aborted_before) in before.into_iter().enumerate() {
        let (conns, aborted) = app_connections(&cluster, node).await;
        assert_eq!(conns, 0, "node {node}: a monitor reconnected after shutdown");
        assert_eq!(aborted, aborted_before, "node {node}: a monitor connection closed without COM_QUIT");
    }
}
