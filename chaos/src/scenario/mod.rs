//! Chaos scenarios: a real MariaDB primary and two replicas, the `sluice` binary in
//! front of them (built-in failover manager, read/write splitting), concurrent client
//! sessions running the recorded workload of [`workload`], and one fault injected while
//! they run. At the end every node's rows and applied log are read back, the history is
//! checked by `sim`'s checkers ([`sim::check`]), and a [`ScenarioReport`] says what the
//! clients saw: errors by code, the longest write and read unavailability, acknowledged
//! writes lost, writes applied twice, writes with an unknown outcome, consistency
//! violations, and whether the scenario's expectations held.
//!
//! The scenarios ([`Scenario`]):
//!
//! | name | fault |
//! |---|---|
//! | `primary-kill` | SIGKILL of the primary; Sluice promotes a replica; the old primary is restarted later (fenced, rejoins) |
//! | `primary-hang` | SIGSTOP of the primary (a hung server: connections stay open, nothing answers) until Sluice has promoted a replica, then SIGCONT; the old primary must be fenced |
//! | `primary-black-hole` | the Sluice↔primary link black-holed for the fault time (replication unaffected): a pause, no promotion |
//! | `switchover` | `SLUICE SWITCHOVER TO` replica 1 under load |
//! | `replica-crash` | SIGKILL of replica 1, restarted after the fault time; it rejoins |
//! | `rolling-restart` | every replica in turn stopped cleanly, restarted, caught up |
//! | `sluice-restart` | SIGKILL of the `sluice` process, started again on the same port; clients reconnect |
//!
//! Shell entry point: `chaos scenario NAME... | all` (see `chaos scenario --help`);
//! tests: `proxy/tests/chaos_scenarios.rs`; figures: `docs/failover.md`.

pub mod sluice;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sim::check::Checker;
use sim::history::{History, Key, Liveness, Op, Role, TxnOp, Val, WriteEffect};

use crate::{Cluster, ClusterSpec, LinkFault, NodeState, Relay};
use sluice::SluiceProcess;
use workload::{Shared, Timeline, WorkloadSpec};

/// A chaos scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    PrimaryKill,
    PrimaryHang,
    PrimaryBlackHole,
    Switchover,
    ReplicaCrash,
    RollingRestart,
    SluiceRestart,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::PrimaryKill,
        Scenario::PrimaryHang,
        Scenario::PrimaryBlackHole,
        Scenario::Switchover,
        Scenario::ReplicaCrash,
        Scenario::RollingRestart,
        Scenario::SluiceRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::PrimaryKill => "primary-kill",
            Scenario::PrimaryHang => "primary-hang",
            Scenario::PrimaryBlackHole => "primary-black-hole",
            Scenario::Switchover => "switchover",
            Scenario::ReplicaCrash => "replica-crash",
            Scenario::RollingRestart => "rolling-restart",
            Scenario::SluiceRestart => "sluice-restart",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn description(self) -> &'static str {
        match self {
            Scenario::PrimaryKill => "primary SIGKILLed; built-in failover; old primary restarted later",
            Scenario::PrimaryHang => "primary SIGSTOPped until a replica is promoted, then SIGCONT",
            Scenario::PrimaryBlackHole => "Sluice-primary link black-holed for the fault time",
            Scenario::Switchover => "SLUICE SWITCHOVER TO replica 1 under load",
            Scenario::ReplicaCrash => "replica 1 SIGKILLed, restarted after the fault time",
            Scenario::RollingRestart => "each replica in turn stopped cleanly, restarted and caught up",
            Scenario::SluiceRestart => "sluice SIGKILLed and started again on the same port",
        }
    }
}

/// How a scenario runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `sluice` binary.
    pub sluice_bin: PathBuf,
    /// Semi-synchronous replication (the default); off: asynchronous, where an
    /// acknowledged write the promoted replica never received is lost and reported
    /// (explained when the old primary holds it).
    pub semi_sync: bool,
    pub clients: u32,
    pub keys: u32,
    pub seed: u64,
    /// Load before the fault.
    pub warmup: Duration,
    /// How long a timed fault lasts (hang, black hole, replica down).
    pub fault: Duration,
    /// Load after the heal.
    pub tail: Duration,
    /// Writes must resume within this after the primary dies (failover target).
    pub failover_target: Duration,
    /// Sluice instances in front of the cluster (clients spread over them); with more
    /// than one, exactly one may promote.
    pub instances: u32,
}

impl Options {
    pub fn new(sluice_bin: PathBuf) -> Options {
        Options {
            sluice_bin,
            semi_sync: true,
            clients: 6,
            keys: 48,
            seed: 1,
            warmup: Duration::from_secs(2),
            fault: Duration::from_secs(3),
            tail: Duration::from_secs(3),
            failover_target: Duration::from_secs(3),
            instances: 1,
        }
    }
}

/// One expectation of a scenario and whether it held.
#[derive(Clone, Debug, Serialize)]
pub struct Expectation {
    pub what: String,
    pub held: bool,
}

/// What a scenario run showed.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    pub description: &'static str,
    pub seed: u64,
    pub replication: &'static str,
    pub clients: u32,
    pub instances: u32,
    pub seconds: f64,
    pub ops: usize,
    pub reads: usize,
    pub writes: usize,
    pub txns: usize,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    pub reads_served_by_replica: usize,
    /// Client-visible errors by code (`io`, `driver`, `timeout`: client-side).
    pub errors: BTreeMap<String, u64>,
    /// Failed connection attempts (while Sluice was down).
    pub connect_failures: u64,
    /// Longest time without an acknowledged write, from the fault to the end.
    pub longest_write_gap_ms: u64,
    /// When that gap began (ms since the load started).
    pub longest_write_gap_at_ms: u64,
    /// Longest time without a successful read, from the fault to the end.
    pub longest_read_gap_ms: u64,
    pub longest_read_gap_at_ms: u64,
    pub acked_writes: usize,
    /// Acknowledged writes missing from the final primary's applied log.
    pub acked_lost: usize,
    /// ... of which some other node (the old primary) applied: the replication gap of
    /// asynchronous replication at the crash.
    pub acked_lost_explained: usize,
    /// Values applied more than once on some node.
    pub duplicated: usize,
    pub unknown_outcome_writes: usize,
    pub unknown_applied: usize,
    pub unknown_not_applied: usize,
    /// Violations found by `sim`'s checkers (one per checker at most).
    pub violations: Vec<String>,
    /// What happened when (milliseconds since the load started).
    pub events: Vec<String>,
    pub expectations: Vec<Expectation>,
    pub passed: bool,
    /// Where Sluice's log was kept (failed runs, or `SLUICE_CHAOS_KEEP_LOGS` set).
    pub sluice_log: Option<String>,
}

impl fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let instances = if self.instances > 1 { format!(", {} Sluice instances", self.instances) } else { String::new() };
        writeln!(f, "== scenario {} ({}; {} replication, {} clients{instances}, seed {}, {:.1} s)", self.scenario, self.description, self.replication, self.clients, self.seed, self.seconds)?;
        for e in &self.events {
            writeln!(f, "   {e}")?;
        }
        writeln!(
            f,
            "   operations: {} ({} reads, {} writes, {} transactions): {} ok, {} failed, {} unknown outcome; {} reads served by a replica",
            self.ops, self.reads, self.writes, self.txns, self.ok, self.failed, self.unknown, self.reads_served_by_replica
        )?;
        let errors = if self.errors.is_empty() {
            "none".to_string()
        } else {
            self.errors.iter().map(|(c, n)| format!("{c}: {n}")).collect::<Vec<_>>().join(", ")
        };
        writeln!(f, "   client-visible errors by code: {errors}; failed connection attempts: {}", self.connect_failures)?;
        writeln!(
            f,
            "   longest write unavailability: {} ms (from {} ms); longest read unavailability: {} ms (from {} ms)",
            self.longest_write_gap_ms, self.longest_write_gap_at_ms, self.longest_read_gap_ms, self.longest_read_gap_at_ms
        )?;
        writeln!(
            f,
            "   acknowledged writes: {}; lost: {} ({} explained by the replication gap); duplicated: {}",
            self.acked_writes, self.acked_lost, self.acked_lost_explained, self.duplicated
        )?;
        writeln!(
            f,
            "   unknown-outcome writes: {} ({} applied, {} not applied, {} undetermined)",
            self.unknown_outcome_writes,
            self.unknown_applied,
            self.unknown_not_applied,
            self.unknown_outcome_writes - self.unknown_applied - self.unknown_not_applied
        )?;
        if self.violations.is_empty() {
            writeln!(f, "   consistency violations: none (sim checkers)")?;
        } else {
            writeln!(f, "   consistency violations: {}", self.violations.len())?;
            for v in &self.violations {
                for line in v.lines().take(30) {
                    writeln!(f, "     {line}")?;
                }
            }
        }
        for e in &self.expectations {
            writeln!(f, "   [{}] {}", if e.held { "ok" } else { "FAILED" }, e.what)?;
        }
        if let Some(p) = &self.sluice_log {
            writeln!(f, "   sluice log: {p}")?;
        }
        writeln!(f, "   verdict: {}", if self.passed { "PASS" } else { "FAIL" })
    }
}

/// Events with their time since the load started.
struct Events {
    start: Instant,
    list: Vec<String>,
}

impl Events {
    fn add(&mut self, what: impl Into<String>) {
        let what = what.into();
        tracing::info!("{what}");
        self.list.push(format!("{:>7} ms  {what}", self.start.elapsed().as_millis()));
    }
}

/// Sluice's configuration for a chaos run: clients `app`/`app` and the admin `ops`/`ops`
/// on `listen`, backend account `app`, checks every 250 ms (down after 2 failures),
/// read/write splitting, failover `manager` (`builtin` or `external`) with the cluster's
/// root and replication accounts, a 20 s buffer window.
pub fn sluice_config(listen: &str, nodes: &[String], cluster: &Cluster, manager: &str) -> String {
    let nodes: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
    let root = cluster.root_user();
    format!(
        r#"[proxy]
listen = "{listen}"
[[users]]
name = "app"
password = "app"
[[users]]
name = "ops"
password = "ops"
admin = true
[backend]
user = "app"
password = "app"
nodes = [{nodes}]
monitor_interval_ms = 250
monitor_timeout_ms = 200
monitor_failures = 2
monitor_debounce = 1
[routing]
read_write_split = true
[failover]
manager = "{manager}"
user = "{user}"
password = "{password}"
replication_user = "{ru}"
replication_password = "{rp}"
buffer_window_ms = 20000
"#,
        nodes = nodes.join(", "),
        user = root.user,
        password = root.password,
        ru = crate::REPL_USER,
        rp = crate::REPL_PASSWORD,
    )
}

/// Sleeps `d` in small steps (the driver thread only waits).
fn pause(d: Duration) {
    thread::sleep(d);
}

/// Waits until `f` holds, up to `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Runs `scenario` and reports. Errors are the harness's own (a cluster that would not
/// start, a missing binary); what the scenario found is in the report.
pub fn run(scenario: Scenario, opts: &Options) -> Result<ScenarioReport> {
    let mut server_options = Vec::new();
    if scenario == Scenario::PrimaryHang {
        // Replicas notice a hung primary after slave_net_timeout; the built-in manager
        // promotes only once no replica's IO thread is still connected to it.
        server_options.push("--slave-net-timeout=3".to_string());
    }
    let spec = ClusterSpec { replicas: 2, semi_sync: opts.semi_sync, server_options, ..ClusterSpec::default() };
    let cluster = Cluster::start(spec).context("starting the cluster")?;
    cluster.root_sql(0, workload::SCHEMA).context("creating the workload's tables")?;
    cluster.wait_replicas_caught_up(Duration::from_secs(30))?;

    // Sluice reaches the primary through a relay in the black-hole scenario only.
    let relay = if scenario == Scenario::PrimaryBlackHole { Some(Relay::start(cluster.node(0).addr().parse()?)?) } else { None };
    let mut nodes: Vec<String> = cluster.nodes().iter().map(|n| n.addr()).collect();
    if let Some(r) = &relay {
        nodes[0] = r.addr();
    }
    let mut proxies = Vec::new();
    for i in 0..opts.instances.max(1) {
        let port = sluice::free_port()?;
        let name = if i == 0 { "sluice".to_string() } else { format!("sluice{}", i + 1) };
        proxies.push(SluiceProcess::start(&opts.sluice_bin, cluster.dir(), &name, &sluice_config(&format!("127.0.0.1:{port}"), &nodes, &cluster, "builtin"), port)?);
    }
    let ports: Vec<u16> = proxies.iter().map(SluiceProcess::port).collect();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let timeline = Timeline::default();
    let shared = Shared::new(timeline.clone());
    let polling = Arc::new(AtomicBool::new(true));
    let mut ev = Events { start: shared.start, list: Vec::new() };

    let spec = WorkloadSpec { clients: opts.clients, keys: opts.keys, seed: opts.seed, statement_timeout: Duration::from_secs(30), think: Duration::from_millis(2) };
    let mut stop_at = 0;
    let outcome = thread::scope(|s| -> Result<(Option<u64>, Option<u64>)> {
        // Which node is the primary, every 150 ms.
        let poller = {
            let (cluster, timeline, polling, shared) = (&cluster, timeline.clone(), polling.clone(), shared.clone());
            s.spawn(move || {
                while polling.load(Ordering::Relaxed) {
                    let p = cluster.find_primary();
                    timeline.push(shared.now(), p);
                    thread::sleep(Duration::from_millis(150));
                }
            })
        };
        // Stops the poller (and the clients) however this closure ends, a panic
        // included: otherwise the scope would wait for the poller for ever.
        struct StopOnDrop<'a>(&'a AtomicBool, &'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
                self.1.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&polling, &shared.stop);
        let tasks: Vec<_> = (0..opts.clients).map(|c| rt.spawn(workload::client(shared.clone(), spec.clone(), c, ports[c as usize % ports.len()]))).collect();
        let r = drive(scenario, opts, &cluster, relay.as_ref(), &mut proxies[0], &rt, &mut ev, &shared);
        stop_at = shared.now();
        shared.stop.store(true, Ordering::Relaxed);
        rt.block_on(async {
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(40), t).await;
            }
        });
        polling.store(false, Ordering::Relaxed);
        let _ = poller.join();
        r
    });
    let (fault_at_us, heal_at_us) = match outcome {
        Ok(x) => x,
        Err(e) => {
            bail!("{e:#}\nsluice log (end):\n{}", proxies[0].log_tail(60));
        }
    };
    let end_us = stop_at;
    ev.add("load stopped");

    // Heal everything, find the final primary, let every node catch up.
    if let Some(r) = &relay {
        r.set(LinkFault::Healthy);
    }
    for n in cluster.nodes() {
        if n.state() == NodeState::Paused {
            let _ = cluster.resume_node(n.index());
        }
    }
    let mut final_primary = None;
    wait_until(Duration::from_secs(30), || {
        final_primary = cluster.find_primary();
        final_primary.is_some()
    });
    let final_primary = match final_primary {
        Some(p) => p,
        None => bail!("no single writable primary after the scenario; sluice log (end):\n{}", proxies[0].log_tail(60)),
    };
    cluster.adopt_primary(final_primary);
    // A node neither primary nor replicating was fenced and left for an operator (it
    // holds transactions the primary lacks): read it as it is, then stop it so the
    // others can be waited for.
    let mut read: BTreeMap<usize, (KeyValues, KeyValues)> = BTreeMap::new();
    for n in cluster.nodes() {
        let i = n.index();
        if i != final_primary && n.state() == NodeState::Running && matches!(cluster.slave_status(i), Ok(None)) {
            let ro = cluster.root_sql(i, "SELECT @@read_only").unwrap_or_default();
            ev.add(format!("node {i} stays fenced (read_only={}), not replicating: it holds transactions the primary lacks", ro.trim()));
            read.insert(i, read_node(&cluster, i)?);
            cluster.stop_node(i)?;
        }
    }
    if let Err(e) = cluster.wait_replicas_caught_up(Duration::from_secs(60)) {
        ev.add(format!("not every node caught up: {e:#}"));
    }
    for p in &mut proxies {
        p.stop();
    }

    let mut history = std::mem::take(&mut *shared.history.lock().unwrap_or_else(|e| e.into_inner()));
    for n in cluster.nodes() {
        if n.state() == NodeState::Running {
            read.insert(n.index(), read_node(&cluster, n.index())?);
        }
    }
    let mut logs: BTreeMap<usize, BTreeMap<Key, Vec<Val>>> = BTreeMap::new();
    for (i, (rows, log)) in read {
        let role = if i == final_primary { Role::Primary } else { Role::Replica };
        history.record_final_state(format!("db{i}"), role, rows);
        history.record_applied_log(format!("db{i}"), role, log.clone());
        logs.insert(i, log);
    }
    if let Some(h) = heal_at_us {
        history.set_liveness(Liveness { heal_at: h, bound: 15_000_000 });
    }
    let mut report = report(scenario, opts, &history, &logs, final_primary, fault_at_us, end_us, &shared, ev.list, &proxies);
    if !report.passed || std::env::var_os("SLUICE_CHAOS_KEEP_LOGS").is_some() {
        // The cluster's directory goes with it: keep Sluice's log.
        let dir = std::env::temp_dir().join("sluice-chaos-logs");
        let mut kept = Vec::new();
        for (i, p) in proxies.iter().enumerate() {
            let path = dir.join(format!("{}-seed{}-{}-sluice{}.log", scenario.name(), opts.seed, std::process::id(), i + 1));
            if fs::create_dir_all(&dir).and_then(|_| fs::copy(p.log_path(), &path)).is_ok() {
                kept.push(path.display().to_string());
            }
        }
        if !kept.is_empty() {
            report.sluice_log = Some(kept.join(" "));
        }
    }
    Ok(report)
}

/// Values per key: a node's rows, or its applied log in order.
type KeyValues = BTreeMap<Key, Vec<Val>>;

/// Node `i`'s rows and applied log.
fn read_node(cluster: &Cluster, i: usize) -> Result<(KeyValues, KeyValues)> {
    let rows = cluster.root_sql(i, "SELECT k, v FROM test.kv").with_context(|| format!("reading node {i}'s rows"))?;
    let log = cluster.root_sql(i, "SELECT k, v FROM test.kv_log ORDER BY seq").with_context(|| format!("reading node {i}'s applied log"))?;
    Ok((parse_kv(&rows)?, parse_kv(&log)?))
}

fn parse_kv(text: &str) -> Result<KeyValues> {
    let mut m: BTreeMap<Key, Vec<Val>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (k, v) = line.split_once('\t').with_context(|| format!("unexpected row {line:?}"))?;
        m.entry(k.to_string()).or_default().push(v.trim().parse().with_context(|| format!("unexpected value in {line:?}"))?);
    }
    Ok(m)
}

/// Injects the scenario's fault while the load runs; returns when the fault began and
/// when the last fault was healed (microseconds since the load started).
#[allow(clippy::too_many_arguments)]
fn drive(
    scenario: Scenario,
    opts: &Options,
    cluster: &Cluster,
    relay: Option<&Relay>,
    proxy: &mut SluiceProcess,
    rt: &tokio::runtime::Runtime,
    ev: &mut Events,
    shared: &Shared,
) -> Result<(Option<u64>, Option<u64>)> {
    ev.add(format!("load running: {} clients through sluice on port {} (and the other instances, if any)", opts.clients, proxy.port()));
    pause(opts.warmup);
    let fault_at = shared.now();
    let heal_at;
    match scenario {
        Scenario::PrimaryKill => {
            cluster.kill_node(0)?;
            ev.add("primary (node 0) SIGKILLed");
            let promoted = wait_until(Duration::from_secs(30), || matches!(cluster.find_primary(), Some(p) if p != 0));
            ev.add(match cluster.find_primary() {
                Some(p) if promoted => format!("node {p} is the primary"),
                _ => "no replica was promoted within 30 s".to_string(),
            });
            pause(opts.tail);
            // The old primary comes back writable, as it was (the harness still takes
            // it for the primary, so it starts it without replication): Sluice must
            // fence it.
            heal_at = shared.now();
            cluster.start_node(0)?;
            ev.add("old primary (node 0) restarted, writable");
            wait_fenced(cluster, ev);
        }
        Scenario::PrimaryHang => {
            cluster.pause_node(0)?;
            ev.add("primary (node 0) SIGSTOPped");
            // Hung until Sluice has promoted a replica (a paused node never counts as
            // the primary), then a little longer.
            let promoted = wait_until(Duration::from_secs(40), || matches!(cluster.find_primary(), Some(p) if p != 0));
            ev.add(match cluster.find_primary() {
                Some(p) if promoted => format!("node {p} is the primary"),
                _ => "no replica was promoted within 40 s".to_string(),
            });
            pause(Duration::from_secs(1));
            cluster.resume_node(0)?;
            heal_at = shared.now();
            ev.add("old primary (node 0) SIGCONT: running again, writable");
            wait_fenced(cluster, ev);
        }
        Scenario::PrimaryBlackHole => {
            let relay = relay.context("the black-hole scenario has a relay")?;
            relay.set(LinkFault::BlackHole);
            ev.add(format!("sluice-primary link black-holed for {} ms", opts.fault.as_millis()));
            pause(opts.fault);
            relay.set(LinkFault::Healthy);
            heal_at = shared.now();
            ev.add("link healed");
        }
        Scenario::Switchover => {
            let target = cluster.node(1).addr();
            let started = Instant::now();
            // Bounded: a switchover that never answers is a finding, not a hung harness.
            // (The timer is created inside the runtime: `timeout` needs its clock.)
            let port = proxy.port();
            let sql = format!("SLUICE SWITCHOVER TO '{target}'");
            let r = rt.block_on(async move {
                tokio::time::timeout(Duration::from_secs(60), async move {
                    let o = mysql_async::OptsBuilder::default().ip_or_hostname("127.0.0.1").tcp_port(port).user(Some("ops")).pass(Some("ops")).prefer_socket(false);
                    let mut c = mysql_async::Conn::new(o).await?;
                    use mysql_async::prelude::Queryable;
                    c.query_drop(sql).await?;
                    c.disconnect().await
                })
                .await
            });
            match r {
                Ok(Ok(())) => ev.add(format!("SLUICE SWITCHOVER TO '{target}' done in {} ms", started.elapsed().as_millis())),
                Ok(Err(e)) => ev.add(format!("SLUICE SWITCHOVER failed: {e}")),
                Err(_) => ev.add("SLUICE SWITCHOVER did not answer within 60 s"),
            }
            heal_at = shared.now();
        }
        Scenario::ReplicaCrash => {
            cluster.kill_node(1)?;
            ev.add(format!("replica node 1 SIGKILLed for {} ms", opts.fault.as_millis()));
            pause(opts.fault);
            cluster.start_node(1)?;
            heal_at = shared.now();
            ev.add("replica node 1 restarted");
            let caught_up = cluster.wait_replicas_caught_up(Duration::from_secs(30)).is_ok();
            ev.add(if caught_up { "replicas caught up" } else { "replicas NOT caught up within 30 s" });
        }
        Scenario::RollingRestart => {
            for i in 1..cluster.nodes().len() {
                cluster.stop_node(i)?;
                ev.add(format!("replica node {i} stopped (clean shutdown)"));
                pause(Duration::from_millis(500));
                cluster.start_node(i)?;
                ev.add(format!("replica node {i} restarted"));
                let caught_up = cluster.wait_replicas_caught_up(Duration::from_secs(30)).is_ok();
                ev.add(if caught_up { format!("replica node {i} caught up") } else { format!("replica node {i} NOT caught up within 30 s") });
                pause(Duration::from_millis(500));
            }
            heal_at = shared.now();
        }
        Scenario::SluiceRestart => {
            proxy.kill()?;
            ev.add("sluice SIGKILLed");
            let started = Instant::now();
            proxy.restart()?;
            heal_at = shared.now();
            ev.add(format!("sluice accepting again after {} ms", started.elapsed().as_millis()));
        }
    }
    pause(opts.tail);
    Ok((Some(fault_at), Some(heal_at)))
}

/// Waits for Sluice to fence the returning old primary (node 0).
fn wait_fenced(cluster: &Cluster, ev: &mut Events) {
    let fenced = wait_until(Duration::from_secs(20), || cluster.root_sql(0, "SELECT @@read_only").is_ok_and(|s| s.trim() == "1"));
    ev.add(if fenced { "old primary fenced (read_only=1)" } else { "old primary NOT fenced within 20 s" });
}

/// The longest gap between successive `times` (completions) from `from` to `to`, and
/// when it began.
fn longest_gap(mut times: Vec<u64>, from: u64, to: u64) -> (u64, u64) {
    times.retain(|t| *t >= from && *t <= to);
    times.sort_unstable();
    let mut prev = from;
    let mut gap = (0, from);
    for t in times.into_iter().chain(std::iter::once(to)) {
        if t - prev > gap.0 {
            gap = (t - prev, prev);
        }
        prev = t;
    }
    gap
}

#[allow(clippy::too_many_arguments)]
fn report(
    scenario: Scenario,
    opts: &Options,
    h: &History,
    logs: &BTreeMap<usize, BTreeMap<Key, Vec<Val>>>,
    final_primary: usize,
    fault_at: Option<u64>,
    end: u64,
    shared: &Shared,
    events: Vec<String>,
    proxies: &[SluiceProcess],
) -> ScenarioReport {
    let summary = sim::check::Report::summarize(h);
    // Acknowledged values, with their keys.
    let mut acked: Vec<(Key, Val)> = Vec::new();
    let mut write_done = Vec::new();
    let mut read_done = Vec::new();
    for o in h.ops() {
        match (&o.op, o.write_effect()) {
            (Op::Write { key, value }, WriteEffect::Acked) => acked.push((key.clone(), *value)),
            (Op::Txn { ops }, WriteEffect::Acked) => {
                for t in ops {
                    if let TxnOp::Write { key, value } = t {
                        acked.push((key.clone(), *value));
                    }
                }
            }
            _ => {}
        }
        if let Some(t) = o.ok_at() {
            if o.op.has_writes() && o.write_effect() == WriteEffect::Acked {
                write_done.push(t);
            }
            if o.op.is_read() {
                read_done.push(t);
            }
        }
    }
    let on = |node: usize, key: &str, v: Val| logs.get(&node).and_then(|l| l.get(key)).is_some_and(|vs| vs.contains(&v));
    let lost: Vec<&(Key, Val)> = acked.iter().filter(|(k, v)| !on(final_primary, k, *v)).collect();
    let explained = lost.iter().filter(|(k, v)| logs.keys().any(|n| *n != final_primary && on(*n, k, *v))).count();
    let mut duplicated = 0;
    for log in logs.values() {
        let mut seen = BTreeSet::new();
        for v in log.values().flatten() {
            if !seen.insert(*v) {
                duplicated += 1;
            }
        }
    }
    let writes = sim::check::no_lost_or_duplicate_writes(h);
    let unknown_writes = writes.as_ref().map(|w| w.unknown_writes.clone()).unwrap_or_default();
    // With asynchronous replication, acknowledged writes the promoted replica never
    // received are lost by design: counted above and explained, not a checker failure.
    let async_gap_only = !opts.semi_sync && lost.len() == explained && duplicated == 0;
    let violations: Vec<String> = sim::check::all_violations(h)
        .into_iter()
        .filter(|v| !(async_gap_only && v.checker == Checker::NoLostOrDuplicateWrites))
        .map(|v| v.to_string())
        .collect();
    let from = fault_at.unwrap_or(0);
    let (w, w_at) = longest_gap(write_done, from, end);
    let (r, r_at) = longest_gap(read_done, from, end);
    let (longest_write_gap_ms, longest_write_gap_at_ms) = (w / 1000, w_at / 1000);
    let (longest_read_gap_ms, longest_read_gap_at_ms) = (r / 1000, r_at / 1000);
    let mut events = events;
    if w >= 500_000 {
        // What the clients were waiting for across the longest write gap.
        let (g0, g1) = (w_at, w_at + w);
        let across: Vec<String> = h
            .ops()
            .iter()
            .filter(|o| o.invoked_at <= g0 + 50_000 && o.completed_at().is_none_or(|c| c + 50_000 >= g1))
            .map(|o| format!("{} {:?} at {} ms..{} ms via {:?}", o.session, o.op, o.invoked_at / 1000, o.completed_at().map_or("never".into(), |c| (c / 1000).to_string()), o.meta.distinct_backends()))
            .collect();
        events.push(format!("in flight across the longest write gap: {}", if across.is_empty() { "nothing".into() } else { across.join("; ") }));
    }
    let errors = shared.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Deadlocks and lock wait timeouts are the workload's own (transactions writing the
    // same registers in different orders), faults or not: not held against a scenario.
    let own = |c: &str| c == "1213" || c == "1205";
    let error_total: u64 = errors.iter().filter(|(c, _)| !own(c)).map(|(_, n)| n).sum();

    let mut ex = Vec::new();
    let mut expect = |what: String, held: bool| ex.push(Expectation { what, held });
    expect("no write applied twice".into(), duplicated == 0);
    if opts.semi_sync {
        expect("no acknowledged write lost (semi-synchronous replication)".into(), lost.is_empty());
    } else {
        expect("every lost acknowledged write explained by the replication gap".into(), lost.len() == explained);
    }
    expect("no consistency violation found by the sim checkers".into(), violations.is_empty());
    match scenario {
        Scenario::PrimaryKill => {
            expect("a replica was promoted".into(), final_primary != 0);
            expect(format!("writes resumed within {} ms of the kill", opts.failover_target.as_millis()), longest_write_gap_ms < opts.failover_target.as_millis() as u64);
            let only = errors.keys().all(|c| c == "1317" || c == "1927" || own(c));
            expect("client errors only for statements cut by the crash (1317 outcome unknown, 1927 transaction cut)".into(), only);
        }
        Scenario::PrimaryHang => {
            let only = errors.keys().all(|c| c == "1317" || c == "1927" || own(c));
            expect("client errors only for statements cut by the hang (1317, 1927)".into(), only);
        }
        Scenario::PrimaryBlackHole | Scenario::Switchover | Scenario::ReplicaCrash | Scenario::RollingRestart => {
            expect("no client-visible error (the workload's own deadlocks aside)".into(), error_total == 0);
        }
        Scenario::SluiceRestart => {
            let only = errors.keys().all(|c| c == "io" || c == "driver" || own(c));
            expect("client errors only for the connections the restart cut (io)".into(), only);
            expect("writes resumed within 2 s of the kill".into(), longest_write_gap_ms < 2_000);
        }
    }
    match scenario {
        Scenario::PrimaryBlackHole => expect("no promotion (node 0 still the primary)".into(), final_primary == 0),
        Scenario::Switchover => {
            expect("node 1 is the primary".into(), final_primary == 1);
            expect("longest write pause under 1 s".into(), longest_write_gap_ms < 1_000);
        }
        Scenario::ReplicaCrash | Scenario::RollingRestart | Scenario::SluiceRestart => expect("node 0 still the primary".into(), final_primary == 0),
        _ => {}
    }
    let panics: usize = proxies.iter().map(|p| p.log_lines("panicked").len()).sum();
    expect("sluice logged no panic".into(), panics == 0);
    if proxies.len() > 1 {
        // The GET_LOCK majority: one instance acts, the others follow.
        let promotions: usize = proxies.iter().map(|p| p.log_lines("failover: promoted").len()).sum();
        let expected = usize::from(matches!(scenario, Scenario::PrimaryKill | Scenario::PrimaryHang));
        expect(format!("{} promotion(s) over {} Sluice instances (found {promotions})", expected, proxies.len()), promotions == expected);
    }
    let passed = ex.iter().all(|e| e.held);
    ScenarioReport {
        scenario: scenario.name(),
        description: scenario.description(),
        seed: opts.seed,
        replication: if opts.semi_sync { "semi-synchronous" } else { "asynchronous" },
        clients: opts.clients,
        instances: proxies.len() as u32,
        seconds: end as f64 / 1e6,
        ops: summary.ops,
        reads: summary.reads,
        writes: summary.writes,
        txns: summary.txns,
        ok: summary.ok,
        failed: summary.failed,
        unknown: summary.unknown,
        reads_served_by_replica: summary.reads_served_by_replica,
        errors,
        connect_failures: shared.connect_failures.load(Ordering::Relaxed),
        longest_write_gap_ms,
        longest_write_gap_at_ms,
        longest_read_gap_ms,
        longest_read_gap_at_ms,
        acked_writes: acked.len(),
        acked_lost: lost.len(),
        acked_lost_explained: explained,
        duplicated,
        unknown_outcome_writes: unknown_writes.len(),
        unknown_applied: unknown_writes.iter().filter(|u| u.applied == Some(true)).count(),
        unknown_not_applied: unknown_writes.iter().filter(|u| u.applied == Some(false)).count(),
        violations,
        events,
        expectations: ex,
        passed,
        sluice_log: None,
    }
}
