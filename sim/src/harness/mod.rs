//! # Simulation harness: one seed, one whole run
//!
//! [`run`] builds a deterministic simulation from a seed — a [`SimCluster`] of simulated
//! MariaDB / MySQL 8 servers, the **real** Sluice proxy on host `proxy` (and a second
//! instance on `proxy2` in one run in three), and simulated
//! clients on their own hosts — runs a generated workload through the proxy while a
//! [`nemesis::Nemesis`] applies a fault schedule derived from the same seed, then heals
//! everything, lets replication settle, reads every server's final rows and binlog
//! (the per-key applied log) into the [`History`], and runs [`check_all`].
//!
//! Under turmoil (`run`, ordinary builds) the driver steps the simulation one tick at a
//! time and applies faults between steps; under madsim (`--cfg madsim`, module
//! [`madsim_run`]) the same clients, proxy and servers run on madsim nodes with the
//! proxy's own `TokioNet`.
//!
//! Everything is derived from the seed: the configuration ([`RunConfig`]), the schedule
//! ([`schedule::generate`]), the cluster's, the proxy's and every client's RNG, and
//! turmoil's own RNG. `SLUICE_SIM_SEED=<n>` replays one seed (see `docs/simulation.md`).

pub mod client;
pub mod config;
pub mod nemesis;
pub mod schedule;
pub mod workload;

#[cfg(madsim)]
pub mod madsim_run;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use config::{derive_seed, FaultProfile, Options, ProxyBugs, RunConfig};
pub use schedule::{Fault, FaultKind};
pub use workload::{Coverage, RunShared};

use crate::check::{check_all, Report, Violation};
use crate::cluster::{ClusterConfig, SimCluster};
use crate::engine::Change;
use crate::history::{History, Key, Liveness, NodeFacts, PrimaryOnlyKind, ReplicaStatement, Role, Val};
use nemesis::{EngineFaultCtl, HarnessHooks};

/// Path of the proxy's RSA key (caching_sha2_password), so a run does not spend its time
/// generating a 2048-bit key. A test fixture; never used outside simulations.
pub const PROXY_RSA_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/proxy_rsa_key.pem");

/// What one run produced.
pub struct RunResult {
    /// `"turmoil"` or `"madsim"`.
    pub simulator: &'static str,
    pub seed: u64,
    pub config: RunConfig,
    pub schedule: Vec<Fault>,
    /// What the nemesis actually did, with simulated times.
    pub fault_log: Vec<String>,
    pub history: History,
    /// [`History::hash`] as hex.
    pub history_hash: String,
    pub outcome: Result<Report, Violation>,
    pub coverage: Coverage,
    /// Simulated time the run took.
    pub sim_elapsed: Duration,
    /// Wall-clock time the run took (measurement only).
    pub wall: Duration,
}

impl RunResult {
    /// No checker found a violation and every must-be-zero coverage counter is zero.
    pub fn ok(&self) -> bool {
        self.outcome.is_ok() && self.coverage.forbidden().is_empty()
    }

    /// What the must-be-zero counters say, if any is not zero.
    fn forbidden_counters(&self) -> Option<String> {
        let f = self.coverage.forbidden();
        (!f.is_empty()).then(|| {
            format!(
                "coverage counters that must stay zero are not: {} (docs/simulation.md, \"Coverage counters\")\n",
                f.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The command that replays this run (the environment knobs reproduce the
    /// options; a run with a hand-written schedule or the injected bug is replayed by
    /// its own test instead).
    pub fn replay_command(&self) -> String {
        let c = &self.config;
        let env = format!(
            "SLUICE_SIM_SEED={} SLUICE_SIM_DURATION_MS={} SLUICE_SIM_CLIENTS={} SLUICE_SIM_KEYS={} SLUICE_SIM_FLAVOUR={}",
            self.seed,
            c.duration_ms,
            c.clients,
            c.keys,
            match c.flavour {
                crate::engine::Flavour::MariaDb => "mariadb",
                crate::engine::Flavour::MySql8 => "mysql",
            }
        );
        match self.simulator {
            "madsim" => format!(
                "{env} RUSTFLAGS=\"--cfg madsim\" cargo test -p sim --test madsim_suite --target-dir target-madsim madsim_suite -- --nocapture"
            ),
            _ => format!("{env} SLUICE_SIM_TICK_MS={} cargo test -p sim --test properties replay -- --nocapture", c.tick_ms),
        }
    }

    /// The failure report: seed, how to replay, configuration, schedule, what the
    /// nemesis did, and the violation with its minimal slice of history.
    pub fn failure_report(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("SIMULATION FAILURE ({}) at seed {}\nreplay: {}\n", self.simulator, self.seed, self.replay_command()));
        s.push_str(&format!("config: {}\n", self.config));
        s.push_str(&format!("fault schedule:\n{}", schedule::render(&self.schedule)));
        s.push_str("what the nemesis did:\n");
        for l in &self.fault_log {
            s.push_str(&format!("  {l}\n"));
        }
        s.push_str(&format!("history hash: {}\n", self.history_hash));
        s.push_str(&format!("coverage: {}\n", self.coverage));
        if let Some(f) = self.forbidden_counters() {
            s.push_str(&f);
        }
        match &self.outcome {
            Ok(r) => s.push_str(&format!("no violation:\n{r}")),
            Err(v) => s.push_str(&format!("{v}")),
        }
        s
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {}: {}", self.seed, if self.ok() { "ok" } else { "VIOLATION" })?;
        writeln!(f, "  config: {}", self.config)?;
        write!(f, "  schedule:\n{}", schedule::render(&self.schedule).replace("\n  ", "\n    ").replacen("  ", "    ", 1))?;
        writeln!(f, "  coverage: {}", self.coverage)?;
        writeln!(
            f,
            "  history {} ({} ops), {:.1}s simulated in {:.2}s wall",
            &self.history_hash[..16],
            self.history.len(),
            self.sim_elapsed.as_secs_f64(),
            self.wall.as_secs_f64()
        )?;
        if let Some(x) = self.forbidden_counters() {
            write!(f, "  {x}")?;
        }
        match &self.outcome {
            Ok(r) => write!(f, "  {}", r.to_string().trim_end().replace('\n', "\n  ")),
            Err(v) => write!(f, "{v}"),
        }
    }
}

/// The seeds a suite runs: `SLUICE_SIM_SEED` (exactly one), else `fixed` plus `fresh`
/// seeds drawn from the OS (printed), with `SLUICE_SIM_SEEDS=<n>` replacing the count of
/// fixed seeds (the first `n` of `1, 2, 3, …`).
pub fn suite_seeds(default_fixed: u64, fresh: usize) -> Vec<u64> {
    if let Some(s) = config::env_u64("SLUICE_SIM_SEED") {
        return vec![s];
    }
    let n = config::env_u64("SLUICE_SIM_SEEDS").unwrap_or(default_fixed);
    let mut seeds: Vec<u64> = (1..=n).collect();
    for _ in 0..fresh {
        // Fresh seeds come from outside the simulation on purpose; they are printed.
        seeds.push(fresh_seed());
    }
    seeds
}

fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish() % 1_000_000_000
}

/// The config of proxy instance `instance` (they differ only in the address they
/// listen on).
fn proxy_config(cluster: &SimCluster, cfg: &RunConfig, instance: u32) -> sluice::Config {
    let nodes = cluster.addrs().iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    let toml = format!(
        r#"
[proxy]
listen = "{listen}"
rsa_private_key = "{key}"

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
connect_timeout_ms = {connect}
monitor_interval_ms = {monitor}
monitor_timeout_ms = {monitor_timeout}
monitor_failures = {failures}
monitor_debounce = {debounce}

[routing]
read_write_split = {split}
policy = "{policy}"
max_replica_lag_ms = {max_lag}
consistency = "{consistency}"
consistency_timeout_ms = {consistency_timeout}
consistency_fallback = "{fallback}"

[pool]
multiplex = {multiplex}
max_per_node = {pool_size}
min_idle = 1
acquire_timeout_ms = {acquire}
pinned_idle_timeout_ms = {pinned_idle}

[failover]
manager = "{manager}"
user = "{admin}"
password = "{admin}"
replication_user = "repl"
replication_password = "repl"
cooldown_ms = 60000
transaction_replay = {replay}
"#,
        listen = workload::proxy_addr(instance),
        key = PROXY_RSA_KEY,
        connect = config::CONNECT_TIMEOUT_MS,
        monitor = cfg.monitor_interval_ms,
        monitor_timeout = cfg.monitor_timeout_ms(),
        failures = config::MONITOR_FAILURES,
        debounce = cfg.monitor_debounce,
        split = cfg.read_write_split,
        policy = cfg.policy.name(),
        max_lag = cfg.max_replica_lag_ms,
        consistency = cfg.consistency,
        consistency_timeout = cfg.consistency_timeout_ms,
        fallback = if cfg.consistency_fallback_error { "error" } else { "primary" },
        multiplex = cfg.multiplex,
        // Without multiplexing every session holds a connection per node: the pool
        // must fit them all.
        pool_size = if cfg.multiplex { cfg.pool_size } else { (cfg.clients + cfg.replica_readers) * 2 + 4 },
        acquire = cfg.op_timeout_ms.max(1000),
        // A client gives up on an operation after op_timeout and may vanish (a
        // partition eats its FIN): its pinned connection must come back to the tiny pool.
        pinned_idle = cfg.op_timeout_ms.max(1000),
        manager = if cfg.failover_builtin { "builtin" } else { "external" },
        replay = cfg.transaction_replay,
        admin = FAILOVER_ACCOUNT,
    );
    sluice::Config::parse(&toml).expect("proxy config")
}

/// The proxy's injected bugs switched on.
struct InjectedBugs(ProxyBugs);

impl sluice::faults::Faults for InjectedBugs {
    fn resend_after_lost_backend(&self) -> bool {
        self.0.resend_after_lost_backend
    }
    fn route_writes_to_replica(&self) -> bool {
        self.0.route_writes_to_replica
    }
    fn route_session_bound_reads_to_replica(&self) -> bool {
        self.0.route_session_bound_reads_to_replica
    }
    fn ignore_promotion(&self) -> bool {
        self.0.ignore_promotion
    }
    fn ignore_consistency(&self) -> bool {
        self.0.ignore_consistency
    }
    fn ignore_pooled_state(&self) -> bool {
        self.0.ignore_pooled_state
    }
}

fn proxy_faults(cfg: &RunConfig) -> Arc<dyn sluice::faults::Faults> {
    if cfg.proxy_bugs.any() {
        Arc::new(InjectedBugs(cfg.proxy_bugs))
    } else {
        Arc::new(sluice::faults::NoFaults)
    }
}

/// Builds the cluster (with engine fault hooks on every node) and the workload's table.
fn build_cluster(cfg: &RunConfig) -> (SimCluster, Vec<Arc<EngineFaultCtl>>) {
    let mut cc = ClusterConfig::new(cfg.flavour, cfg.nodes);
    // Semi-sync is switched on after the table exists (the DDL would wait for an ack).
    cc.semi_sync = false;
    cc.semi_sync_timeout_ms = cfg.semi_sync_timeout_ms;
    cc.lag_ms = cfg.lag_ms;
    cc.lag_jitter_ms = cfg.lag_jitter_ms;
    let cluster = SimCluster::new(cc, derive_seed(cfg.seed, "cluster", 0));
    let mut ctls = Vec::new();
    for i in 0..cluster.len() {
        let ctl = Arc::new(EngineFaultCtl::default());
        let hooks = HarnessHooks { ctl: ctl.clone(), rng: config::rng_for(cfg.seed, "engine-faults", i as u64) };
        cluster.server(i).with(|e| e.set_fault_hooks(Box::new(hooks)));
        ctls.push(ctl);
    }
    cluster
        .admin_sql(0, "CREATE TABLE test.kv (k VARCHAR(32) PRIMARY KEY, v BIGINT NOT NULL, n BIGINT NOT NULL)")
        .expect("creating the workload table");
    if cfg.semi_sync {
        for i in 0..cluster.len() {
            cluster.server(i).with(|e| e.set_semi_sync(true));
        }
    }
    // The roles the cluster starts with are not changes the proxy has to notice.
    for i in 0..cluster.len() {
        cluster.server(i).with(|e| e.clear_role_changes());
    }
    (cluster, ctls)
}

/// Reads every server's final rows and applied log (its binlog's row images of
/// `test.kv`, in order) into the history.
pub fn record_final_state(cluster: &SimCluster, h: &mut History) {
    let primary = cluster.primary();
    for i in 0..cluster.len() {
        let role = if Some(i) == primary { Role::Primary } else { Role::Replica };
        let (rows, log) = {
            let e = cluster.server(i).engine();
            let mut rows: BTreeMap<Key, Vec<Val>> = BTreeMap::new();
            for row in e.table_rows("test", "kv").unwrap_or_default() {
                if let (Some(k), Some(v)) = (row.first().and_then(|v| v.as_string()), row.get(1).and_then(|v| v.to_i64())) {
                    rows.entry(k).or_default().push(v as Val);
                }
            }
            let mut log: BTreeMap<Key, Vec<Val>> = BTreeMap::new();
            for ev in e.binlog() {
                for ch in ev.changes.iter() {
                    let row = match ch {
                        Change::Insert { db, table, row } if db == "test" && table == "kv" => row,
                        Change::Update { db, table, after, .. } if db == "test" && table == "kv" => after,
                        _ => continue,
                    };
                    if let (Some(k), Some(v)) = (row.first().and_then(|v| v.as_string()), row.get(1).and_then(|v| v.to_i64())) {
                        log.entry(k).or_default().push(v as Val);
                    }
                }
            }
            (rows, log)
        };
        let name = cluster.host(i);
        h.record_final_state(name.clone(), role, rows);
        h.record_applied_log(name.clone(), role, log);
        h.record_node_facts(name, node_facts(cluster, i));
    }
}

/// The account Sluice's failover actor uses (its coordination locks, promotions and
/// fencing run on replicas by design: they are not the workload's statements).
pub const FAILOVER_ACCOUNT: &str = "root";

/// What node `i` recorded about its role changes and the primary-only statements it
/// ran while replicating, in history time (µs; the servers' clocks count ms from the
/// start of the simulation, like the clients').
pub fn node_facts(cluster: &SimCluster, i: usize) -> NodeFacts {
    let e = cluster.server(i).engine();
    let (execs, dropped) = e.replica_execs();
    NodeFacts {
        role_changes: e.role_changes().iter().map(|&(ms, r)| (ms * 1_000, r)).collect(),
        on_replica: execs
            .iter()
            .filter(|x| x.user != FAILOVER_ACCOUNT)
            .map(|x| ReplicaStatement {
                at: x.at_ms * 1_000,
                kind: match x.what {
                    crate::engine::PrimaryOnly::Write => PrimaryOnlyKind::Write,
                    crate::engine::PrimaryOnly::SessionBound => PrimaryOnlyKind::SessionBound,
                },
                sql: x.sql.clone(),
                error: x.error,
            })
            .collect(),
        on_replica_dropped: dropped,
    }
}

/// Whether replication has converged after the workload: there is a primary and every
/// other node has executed everything it has. Once the clients are done and faults are
/// healed nothing else changes the data, so the run can stop waiting for `settle_ms`.
pub fn replication_settled(cluster: &SimCluster) -> bool {
    cluster.primary().is_some_and(|p| (0..cluster.len()).all(|j| j == p || cluster.caught_up(j, p)))
}

/// Lets replication settle after the clients finished and faults were healed: returns
/// as soon as [`replication_settled`] holds (checked every 20 simulated ms), or at
/// `deadline` (simulated).
pub async fn settle(cluster: &SimCluster, deadline: tokio::time::Instant) {
    while tokio::time::Instant::now() < deadline && !replication_settled(cluster) {
        tokio::time::sleep(Duration::from_millis(20).min(deadline - tokio::time::Instant::now())).await;
    }
}

/// Finishes a run: final state into the history, checkers, result.
fn finish(
    simulator: &'static str,
    cfg: RunConfig,
    schedule: Vec<Fault>,
    fault_log: Vec<String>,
    shared: &RunShared,
    sim_elapsed: Duration,
    wall: Duration,
) -> RunResult {
    let (mut history, mut coverage) = {
        let mut rec = shared.rec.lock().expect("recorder");
        (std::mem::take(&mut rec.history), rec.cov.clone())
    };
    record_final_state(&shared.cluster, &mut history);
    let window = cfg.detection_window_ms() * 1_000;
    history.set_detection_window(window);
    for nf in history.node_facts().values() {
        for x in &nf.on_replica {
            let since = nf.role_changes.iter().filter(|(at, r)| *r && *at <= x.at).map(|(at, _)| *at).next_back();
            if since.is_some_and(|s| x.at - s < window) {
                coverage.primary_only_in_window += 1;
            }
        }
    }
    history.set_liveness(Liveness { heal_at: cfg.duration_ms * 1_000, bound: cfg.liveness_bound_ms() * 1_000 });
    coverage.stale_eventual_reads = crate::check::stale_eventual_reads(&history);
    let mut fault_log = fault_log;
    fault_log.extend(shared.rec.lock().expect("recorder").operator_log.iter().cloned());
    for stats in shared.proxy_stats.lock().expect("proxy stats").iter() {
        let f = stats().failover;
        coverage.transactions_replayed += f.transactions_replayed;
        coverage.replays_refused += f.replays_refused;
    }
    let outcome = check_all(&history);
    RunResult {
        simulator,
        seed: cfg.seed,
        config: cfg,
        schedule,
        fault_log,
        history_hash: history.hash_hex(),
        history,
        outcome,
        coverage,
        sim_elapsed,
        wall,
    }
}

#[cfg(not(madsim))]
pub use turmoil_run::run;

#[cfg(not(madsim))]
mod turmoil_run {
    use std::sync::Arc;
    use std::time::Duration;

    use super::nemesis::{NetControl, Nemesis};
    use super::schedule::{Endpoint, LinkCut};
    use super::workload::{run_client, run_replica_reader, RunShared};
    use super::*;
    use crate::net::TurmoilNet;

    /// The host every simulated client runs on.
    const CLIENTS_HOST: &str = "clients";

    /// Host names of an endpoint (every proxy instance is "the proxy").
    fn hosts(e: Endpoint, clients: &[String], proxies: &[String]) -> Vec<String> {
        match e {
            Endpoint::Clients => clients.to_vec(),
            Endpoint::Proxy => proxies.to_vec(),
            Endpoint::Db(i) => vec![format!("db{i}")],
        }
    }

    struct TurmoilCtl<'a, 'b> {
        sim: &'a turmoil::Sim<'b>,
        clients: &'a [String],
        proxies: &'a [String],
        max_latency: Duration,
    }

    impl NetControl for TurmoilCtl<'_, '_> {
        fn set_latency(&mut self, a: Endpoint, b: Endpoint, max_ms: Option<u64>) {
            let v = max_ms.map(Duration::from_millis).unwrap_or(self.max_latency);
            for x in hosts(a, self.clients, self.proxies) {
                for y in hosts(b, self.clients, self.proxies) {
                    self.sim.set_link_max_message_latency(x.as_str(), y.as_str(), v);
                }
            }
        }

        fn cut(&mut self, a: Endpoint, b: Endpoint, cut: LinkCut) {
            for x in hosts(a, self.clients, self.proxies) {
                for y in hosts(b, self.clients, self.proxies) {
                    match cut {
                        LinkCut::Stall => self.sim.hold(x.as_str(), y.as_str()),
                        LinkCut::Drop => self.sim.partition(x.as_str(), y.as_str()),
                        LinkCut::DropOneWay => self.sim.partition_oneway(x.as_str(), y.as_str()),
                    }
                }
            }
        }

        fn repair(&mut self, a: Endpoint, b: Endpoint, cut: LinkCut) {
            for x in hosts(a, self.clients, self.proxies) {
                for y in hosts(b, self.clients, self.proxies) {
                    match cut {
                        LinkCut::Stall => self.sim.release(x.as_str(), y.as_str()),
                        LinkCut::Drop => self.sim.repair(x.as_str(), y.as_str()),
                        LinkCut::DropOneWay => self.sim.repair_oneway(x.as_str(), y.as_str()),
                    }
                }
            }
        }
    }

    /// Runs one seed under turmoil. Deterministic: the same seed and options give the
    /// same history (and hash).
    pub fn run(seed: u64, opts: &Options) -> RunResult {
        let wall = std::time::Instant::now();
        let cfg = RunConfig::derive(seed, opts);
        let schedule = opts
            .schedule
            .clone()
            .unwrap_or_else(|| schedule::generate(&cfg, &mut config::rng_for(seed, "schedule", 0)));
        // Every run names its seed and configuration (shown by the test harness on failure
        // or with --nocapture).
        eprintln!("sim run (turmoil) {cfg}");
        if opts.verbose {
            eprintln!("fault schedule:\n{}", schedule::render(&schedule));
        }
        let (cluster, engine_ctl) = build_cluster(&cfg);
        let shared = Arc::new(RunShared::new(cfg.clone(), cluster.clone()));
        let max_latency = Duration::from_millis(cfg.max_latency_ms);
        let total = Duration::from_millis(cfg.duration_ms + cfg.settle_ms);
        let mut sim = turmoil::Builder::new()
            .rng_seed(derive_seed(seed, "turmoil", 0))
            .tick_duration(Duration::from_millis(cfg.tick_ms))
            .simulation_duration(total + Duration::from_secs(120))
            .min_message_latency(Duration::ZERO)
            .max_message_latency(max_latency)
            .build();
        cluster.register_turmoil(&mut sim);
        let mut proxy_hosts = Vec::new();
        for i in 0..cfg.proxies as u32 {
            let pcfg = proxy_config(&cluster, &cfg, i);
            let proxy_seed = derive_seed(seed, "proxy", i as u64);
            let faults = proxy_faults(&cfg);
            let host = crate::history::instance_name(i);
            let stats_to = shared.clone();
            sim.host(host.as_str(), move || {
                let (pcfg, faults, stats_to) = (pcfg.clone(), faults.clone(), stats_to.clone());
                async move {
                    let handle = sluice::start_with_faults(TurmoilNet, pcfg, proxy_seed, faults).await?;
                    stats_to.proxy_stats.lock().expect("proxy stats").push(handle.stats_source());
                    std::future::pending::<()>().await;
                    drop(handle);
                    Ok(())
                }
            });
            proxy_hosts.push(host);
        }
        // All clients, the causal readers and the settle timer share one host: turmoil
        // advances every host every tick and scans its links, so a host per client
        // multiplies the simulator's fixed cost per tick (see docs/simulation.md,
        // "Speed"). Faults target the clients as one endpoint anyway.
        let (clients, readers) = (cfg.clients, cfg.replica_readers);
        let client_shared = shared.clone();
        sim.client(CLIENTS_HOST, async move {
            let shared = client_shared;
            let mut tasks = Vec::with_capacity(clients + readers);
            for c in 0..clients {
                let shared = shared.clone();
                tasks.push(tokio::spawn(async move { run_client(TurmoilNet, shared, c as u32).await }));
            }
            for j in 0..readers {
                let shared = shared.clone();
                let id = (clients + j) as u32;
                tasks.push(tokio::spawn(async move { run_replica_reader(TurmoilNet, shared, id).await }));
            }
            if shared.cfg.switchover.is_some() {
                tasks.push(tokio::spawn(workload::run_operator(TurmoilNet, shared.clone())));
            }
            let start = tokio::time::Instant::now();
            for t in tasks {
                t.await.map_err(|e| format!("client task: {e}"))?;
            }
            // Faults are healed at `duration_ms` (between two steps, before any host
            // runs at that time); the clients probe the proxy after it; then
            // replication gets up to `settle_ms`.
            tokio::time::sleep_until(start + Duration::from_millis(shared.cfg.duration_ms + 1)).await;
            let settled_by = (start + total).max(tokio::time::Instant::now() + Duration::from_millis(shared.cfg.settle_ms));
            settle(&shared.cluster, settled_by).await;
            Ok(())
        });
        let client_hosts = vec![CLIENTS_HOST.to_string()];

        let mut nemesis = Nemesis::new(cluster.clone(), shared.clone(), engine_ctl, &schedule);
        let mut healed = false;
        loop {
            let now_ms = sim.elapsed().as_millis() as u64;
            {
                let mut ctl = TurmoilCtl { sim: &sim, clients: &client_hosts, proxies: &proxy_hosts, max_latency };
                if !healed && now_ms >= cfg.duration_ms {
                    nemesis.heal(now_ms, &mut ctl);
                    healed = true;
                } else if !healed && nemesis.next_due().is_some_and(|t| t <= now_ms) {
                    nemesis.step(now_ms, &mut ctl);
                }
            }
            match sim.step() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => panic!("seed {seed}: simulation error: {e}\nconfig: {cfg}\nschedule:\n{}", schedule::render(&schedule)),
            }
        }
        let sim_elapsed = sim.elapsed();
        drop(sim);
        let fault_log = std::mem::take(&mut nemesis.log);
        let res = finish("turmoil", cfg, schedule, fault_log, &shared, sim_elapsed, wall.elapsed());
        if opts.verbose {
            eprintln!("{res}");
        }
        res
    }
}
