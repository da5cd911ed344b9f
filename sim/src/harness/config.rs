//! Run options ([`Options`], what the caller fixes) and the configuration derived from a
//! seed ([`RunConfig`], what a run actually used — printed with every result).

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use sluice::config::Policy;

use crate::engine::Flavour;
use crate::history::Consistency;

/// Every load-balancing policy the proxy has, in the order the seed picks from.
pub const POLICIES: [Policy; 5] = [Policy::RoundRobin, Policy::Random, Policy::LeastConnections, Policy::LeastLatency, Policy::LeastLag];

/// The proxy's `backend.connect_timeout_ms` in every run.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// The proxy's `backend.monitor_failures` in every run.
pub const MONITOR_FAILURES: u32 = 3;
/// Added to the detection window: the longest a statement routed just before the
/// proxy noticed a role change can be held on a link before it reaches the node (the
/// schedules' longest stall is 2 s), plus latency.
pub const DETECTION_MARGIN_MS: u64 = 2_500;
/// Added to the liveness bound: the clients' pause between probe attempts, latency.
pub const LIVENESS_MARGIN_MS: u64 = 1_000;

/// Deliberate proxy bugs (`sluice::faults::Faults`) a run switches on; all off by
/// default. Each is there to show that a checker catches it (`sim/tests/injected_bug.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyBugs {
    /// Resend a command after the backend connection was lost (duplicate writes).
    pub resend_after_lost_backend: bool,
    /// Send writes to an eligible replica.
    pub route_writes_to_replica: bool,
    /// Send reads of connection-bound state to an eligible replica.
    pub route_session_bound_reads_to_replica: bool,
    /// Keep the first primary the monitor found, whatever it reports later.
    pub ignore_promotion: bool,
    /// Send reads to any eligible replica without checking or waiting for the GTID
    /// position their consistency level requires.
    pub ignore_consistency: bool,
    /// Lend pooled connections without matching or resetting their session state.
    pub ignore_pooled_state: bool,
}

impl ProxyBugs {
    pub fn any(&self) -> bool {
        self.resend_after_lost_backend || self.route_writes_to_replica || self.route_session_bound_reads_to_replica || self.ignore_promotion || self.ignore_consistency || self.ignore_pooled_state
    }

    fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, n) in [
            (self.resend_after_lost_backend, "resend_after_lost_backend"),
            (self.route_writes_to_replica, "route_writes_to_replica"),
            (self.route_session_bound_reads_to_replica, "route_session_bound_reads_to_replica"),
            (self.ignore_promotion, "ignore_promotion"),
            (self.ignore_consistency, "ignore_consistency"),
            (self.ignore_pooled_state, "ignore_pooled_state"),
        ] {
            if on {
                v.push(n);
            }
        }
        v
    }
}

/// How many faults a run gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultProfile {
    /// No faults at all (baseline).
    None,
    /// A random schedule derived from the seed (the default).
    Random,
}

/// What the caller fixes; everything left `None` is derived from the seed.
#[derive(Clone, Debug)]
pub struct Options {
    /// Server flavour (default: MariaDB or MySQL 8, from the seed).
    pub flavour: Option<Flavour>,
    /// Semi-synchronous replication (default: from the seed, one run in three).
    pub semi_sync: Option<bool>,
    /// Semi-sync ack timeout before falling back to async (default: from the seed).
    pub semi_sync_timeout_ms: Option<u64>,
    /// Number of servers (default 3).
    pub nodes: usize,
    /// Clients running the workload through the proxy (default 16).
    pub clients: usize,
    /// "Causal readers": clients that write through the proxy and read from a replica
    /// directly after a GTID wait (default 2). They exercise replica reads and lag waits,
    /// which the pass-through proxy does not do itself.
    pub replica_readers: usize,
    /// Simulated seconds of workload (default 30).
    pub duration_ms: u64,
    /// Simulated time after the workload (faults healed) for replication to converge.
    pub settle_ms: u64,
    /// Number of keys (default: 4..=10 from the seed).
    pub keys: Option<usize>,
    pub faults: FaultProfile,
    /// Use exactly this fault schedule instead of deriving one.
    pub schedule: Option<Vec<super::schedule::Fault>>,
    /// Injected proxy bugs (default: none).
    pub proxy_bugs: ProxyBugs,
    /// `[routing] read_write_split` (default: from the seed, off for seeds ≡ 3 mod 4).
    pub read_write_split: Option<bool>,
    /// `[failover] manager = "builtin"`: Sluice promotes when the primary dies (default:
    /// off, the schedules' own failovers play the external tool).
    pub failover_builtin: bool,
    /// `[failover] transaction_replay` (default: from the seed, one run in two).
    pub transaction_replay: Option<bool>,
    /// A planned switchover: at this many ms into the workload an operator asks proxy
    /// instance 0 for `SLUICE SWITCHOVER TO` node `.1` (default: none).
    pub switchover: Option<(u64, usize)>,
    /// `[routing] policy` (default: from the seed).
    pub policy: Option<Policy>,
    /// `[routing] max_replica_lag_ms` (default: 50..=2000 from the seed).
    pub max_replica_lag_ms: Option<u64>,
    /// `[routing] consistency` (default: from the seed, `session` most often; `global`
    /// more often in two-instance runs).
    pub consistency: Option<Consistency>,
    /// `[routing] consistency_timeout_ms` (default: from the seed, short 5–50 ms in a
    /// third of the runs so that waits time out, else 500–3000 ms).
    pub consistency_timeout_ms: Option<u64>,
    /// `[routing] consistency_fallback = "error"` instead of `"primary"` (default: from
    /// the seed, one run in five).
    pub consistency_fallback_error: Option<bool>,
    /// Per cent of a client's operations that first switch the session's level with
    /// `SET @@sluice_consistency = …` (default: from the seed, 0, 1 or 3).
    pub level_switch_pct: Option<u32>,
    /// Sluice instances in the simulation (hosts `proxy`, `proxy2`; default: 2 for
    /// every seed ≡ 1 mod 3, else 1). Clients are spread over them.
    pub proxies: Option<usize>,
    /// Client-side timeout of one statement (then the outcome is unknown).
    pub op_timeout_ms: u64,
    /// turmoil's tick (simulated ms per step; default 2, `SLUICE_SIM_TICK_MS`). Every
    /// timer and message delivery is quantised to it; turmoil's cost per tick is fixed
    /// per host, so a 1 ms tick runs the standard scenario ≈ 1.7× slower
    /// (docs/simulation.md, "Speed").
    pub tick_ms: u64,
    /// Print the run's configuration, schedule and result to stderr.
    pub verbose: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flavour: None,
            semi_sync: None,
            semi_sync_timeout_ms: None,
            nodes: 3,
            clients: 16,
            replica_readers: 2,
            duration_ms: 30_000,
            settle_ms: 5_000,
            keys: None,
            faults: FaultProfile::Random,
            schedule: None,
            proxy_bugs: ProxyBugs::default(),
            read_write_split: None,
            failover_builtin: false,
            transaction_replay: None,
            switchover: None,
            policy: None,
            max_replica_lag_ms: None,
            consistency: None,
            consistency_timeout_ms: None,
            consistency_fallback_error: None,
            level_switch_pct: None,
            proxies: None,
            op_timeout_ms: 3_000,
            tick_ms: 2,
            verbose: false,
        }
    }
}

impl Options {
    /// Applies the environment knobs (`SLUICE_SIM_DURATION_MS`, `SLUICE_SIM_CLIENTS`,
    /// `SLUICE_SIM_KEYS`, `SLUICE_SIM_TICK_MS`,
    /// `SLUICE_SIM_FLAVOUR` = `mariadb`|`mysql`, `SLUICE_SIM_VERBOSE`).
    /// The built-in failover scenario of both simulators: MariaDB, `manager =
    /// "builtin"`, no random faults, reads on the primary, and one fault — the primary
    /// crashes at 2 s for 4 s with nobody else promoting. Semi-sync on odd seeds.
    pub fn builtin_failover(seed: u64) -> Options {
        use super::schedule::{Fault, FaultKind, NodeSel};
        Options {
            flavour: Some(Flavour::MariaDb),
            semi_sync: Some(seed % 2 == 1),
            duration_ms: 10_000,
            clients: 8,
            faults: FaultProfile::None,
            read_write_split: Some(false),
            failover_builtin: true,
            schedule: Some(vec![Fault { at_ms: 2_000, kind: FaultKind::Crash { node: NodeSel::Primary, down_ms: 4_000 } }]),
            ..Options::default()
        }
    }

    /// [`Options::builtin_failover`] with a *hung* primary instead of a crashed one: it
    /// keeps its connections but answers nothing for 5 s (the replicas give up on it
    /// after their net timeout and Sluice promotes one), then wakes up writable with the
    /// statements it had received still to run. An answer it gives then must never reach
    /// a client (it would acknowledge a write the new primary never got).
    pub fn builtin_failover_hang(seed: u64) -> Options {
        use super::schedule::{Fault, FaultKind, NodeSel};
        Options {
            schedule: Some(vec![Fault { at_ms: 2_000, kind: FaultKind::Pause { node: NodeSel::Primary, dur_ms: 5_000 } }]),
            // Clients wait out the hang: a statement sent before it is still waiting
            // when the old primary wakes up.
            op_timeout_ms: 12_000,
            ..Options::builtin_failover(seed)
        }
    }

    /// A planned switchover under the workload: MariaDB, no faults, the primary's
    /// role handed to db1 at 3 s by `SLUICE SWITCHOVER TO 'db1:3306'` through proxy
    /// instance 0 (the external manager: switchover needs no built-in one). One Sluice
    /// instance: another one would go on reading the old primary until its next probe
    /// shows it read-only (`docs/failover.md`, "Several Sluice instances").
    pub fn switchover(seed: u64) -> Options {
        Options {
            flavour: Some(Flavour::MariaDb),
            proxies: Some(1),
            semi_sync: Some(seed % 2 == 1),
            duration_ms: 8_000,
            clients: 8,
            faults: FaultProfile::None,
            switchover: Some((3_000, 1)),
            ..Options::default()
        }
    }

    pub fn with_env(mut self) -> Self {
        if let Some(v) = env_u64("SLUICE_SIM_DURATION_MS") {
            self.duration_ms = v;
        }
        if let Some(v) = env_u64("SLUICE_SIM_CLIENTS") {
            self.clients = v as usize;
        }
        if let Some(v) = env_u64("SLUICE_SIM_KEYS") {
            self.keys = Some(v as usize);
        }
        match std::env::var("SLUICE_SIM_FLAVOUR").ok().as_deref() {
            Some("mariadb") => self.flavour = Some(Flavour::MariaDb),
            Some("mysql") => self.flavour = Some(Flavour::MySql8),
            _ => {}
        }
        if let Some(v) = env_u64("SLUICE_SIM_TICK_MS") {
            self.tick_ms = v.max(1);
        }
        if std::env::var("SLUICE_SIM_VERBOSE").is_ok_and(|v| v != "0") {
            self.verbose = true;
        }
        self
    }
}

pub(crate) fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Derives an independent seed for one purpose from the run's seed.
pub fn derive_seed(seed: u64, purpose: &str, index: u64) -> u64 {
    // FNV-1a over the purpose, mixed with the seed and index through ChaCha.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in purpose.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ h.rotate_left(17) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.gen()
}

pub(crate) fn rng_for(seed: u64, purpose: &str, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(seed, purpose, index))
}

/// Everything a run used, derived from the seed and the [`Options`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    pub seed: u64,
    pub flavour: Flavour,
    pub semi_sync: bool,
    pub semi_sync_timeout_ms: u64,
    pub nodes: usize,
    pub clients: usize,
    pub replica_readers: usize,
    pub duration_ms: u64,
    pub settle_ms: u64,
    pub keys: usize,
    /// Workload mix in percent: single writes, single reads, the rest transactions.
    pub write_pct: u32,
    pub read_pct: u32,
    /// Client think time between operations (uniform, ms).
    pub think_ms: (u64, u64),
    /// Per-batch apply lag of the replicas.
    pub lag_ms: u64,
    pub lag_jitter_ms: u64,
    /// Maximum one-way message latency of every link (turmoil: exponential up to this).
    pub max_latency_ms: u64,
    pub op_timeout_ms: u64,
    pub proxy_bugs: ProxyBugs,
    pub faults: FaultProfile,
    pub tick_ms: u64,
    /// The proxy's `backend.monitor_interval_ms` (100, 200, 300 or 500 from the seed):
    /// how soon it notices a failover varies between runs.
    pub monitor_interval_ms: u64,
    /// The proxy's `backend.monitor_debounce` (1..=3 from the seed).
    pub monitor_debounce: u32,
    /// `[routing] read_write_split`.
    pub read_write_split: bool,
    /// `[failover] manager = "builtin"`.
    pub failover_builtin: bool,
    /// `[failover] transaction_replay`.
    pub transaction_replay: bool,
    /// `(at_ms, target node)` of a planned switchover.
    pub switchover: Option<(u64, usize)>,
    /// `[routing] policy`.
    pub policy: Policy,
    /// `[routing] max_replica_lag_ms` (50..=2000 from the seed).
    pub max_replica_lag_ms: u64,
    /// `[routing] consistency`.
    pub consistency: Consistency,
    /// `[routing] consistency_timeout_ms`.
    pub consistency_timeout_ms: u64,
    /// `[routing] consistency_fallback = "error"` (else `"primary"`).
    pub consistency_fallback_error: bool,
    /// Per cent of a client's operations preceded by `SET @@sluice_consistency = …`.
    pub level_switch_pct: u32,
    /// Sluice instances (1 or 2).
    pub proxies: usize,
    /// `[pool] multiplex` (off for one seed in eight).
    pub multiplex: bool,
    /// `[pool] max_per_node`: tiny (1..=4), so that many sessions interleave on few
    /// backend connections.
    pub pool_size: usize,
}

impl RunConfig {
    pub fn derive(seed: u64, opts: &Options) -> RunConfig {
        let mut rng = rng_for(seed, "config", 0);
        let flavour = opts.flavour.unwrap_or(if rng.gen_bool(0.5) { Flavour::MariaDb } else { Flavour::MySql8 });
        let semi_sync = opts.semi_sync.unwrap_or(rng.gen_ratio(1, 3));
        let semi_sync_timeout_ms = [500, 2_000, 10_000][rng.gen_range(0..3)];
        let semi_sync_timeout_ms = opts.semi_sync_timeout_ms.unwrap_or(semi_sync_timeout_ms);
        let keys = opts.keys.unwrap_or(rng.gen_range(4..=10));
        let write_pct = rng.gen_range(30..=50);
        let read_pct = rng.gen_range(25..=45);
        let think_lo = rng.gen_range(10..=40);
        let think_hi = think_lo + rng.gen_range(20..=120);
        let lag_ms = rng.gen_range(5..=60);
        let lag_jitter_ms = rng.gen_range(0..=80);
        let max_latency_ms = rng.gen_range(1..=4);
        let monitor_interval_ms = [100, 200, 300, 500][rng.gen_range(0..4)];
        // Drawn after everything else, so the other settings of a seed stay as they were.
        // Splitting is off for one seed in four (every seed ≡ 3 mod 4, so any run of
        // consecutive seeds has both).
        let read_write_split = opts.read_write_split.unwrap_or(seed % 4 != 3);
        let policy = POLICIES[rng.gen_range(0..POLICIES.len())];
        let policy = opts.policy.unwrap_or(policy);
        let max_replica_lag_ms = rng.gen_range(50..=2_000);
        let max_replica_lag_ms = opts.max_replica_lag_ms.unwrap_or(max_replica_lag_ms);
        let monitor_debounce = rng.gen_range(1..=3);
        // Consistency settings from their own RNG, so every other setting of a seed
        // stays what it was before they existed.
        // Two Sluice instances run `global` more often (what they are there to check:
        // a read through one sees writes acknowledged through the other).
        let mut crng = rng_for(seed, "consistency", 0);
        let proxies = opts.proxies.unwrap_or(if seed % 3 == 1 { 2 } else { 1 }).clamp(1, 2);
        let roll = crng.gen_range(0..20);
        let consistency = if proxies == 1 {
            match roll {
                0..=9 => Consistency::Session,
                10..=12 => Consistency::Eventual,
                13..=15 => Consistency::Instance,
                _ => Consistency::Global,
            }
        } else {
            match roll {
                0..=6 => Consistency::Session,
                7..=8 => Consistency::Eventual,
                9..=10 => Consistency::Instance,
                _ => Consistency::Global,
            }
        };
        let consistency_timeout_ms = if crng.gen_ratio(1, 3) { crng.gen_range(5..=50) } else { crng.gen_range(500..=3_000) };
        let consistency_fallback_error = crng.gen_ratio(1, 5);
        let level_switch_pct = [0, 1, 3][crng.gen_range(0..3)];
        RunConfig {
            seed,
            flavour,
            semi_sync,
            semi_sync_timeout_ms,
            nodes: opts.nodes,
            clients: opts.clients,
            replica_readers: opts.replica_readers,
            duration_ms: opts.duration_ms,
            settle_ms: opts.settle_ms,
            keys,
            write_pct,
            read_pct,
            think_ms: (think_lo, think_hi),
            lag_ms,
            lag_jitter_ms,
            max_latency_ms,
            op_timeout_ms: opts.op_timeout_ms,
            proxy_bugs: opts.proxy_bugs,
            faults: opts.faults,
            tick_ms: opts.tick_ms.max(1),
            monitor_interval_ms,
            monitor_debounce,
            read_write_split,
            failover_builtin: opts.failover_builtin,
            // From its own RNG (the other settings of a seed stay what they were).
            transaction_replay: opts.transaction_replay.unwrap_or_else(|| rng_for(seed, "replay", 0).gen_ratio(1, 2)),
            switchover: opts.switchover,
            policy,
            max_replica_lag_ms,
            consistency: opts.consistency.unwrap_or(consistency),
            consistency_timeout_ms: opts.consistency_timeout_ms.unwrap_or(consistency_timeout_ms),
            consistency_fallback_error: opts.consistency_fallback_error.unwrap_or(consistency_fallback_error),
            level_switch_pct: opts.level_switch_pct.unwrap_or(level_switch_pct),
            proxies,
            // Pool settings from their own RNG (the other settings of a seed stay).
            multiplex: seed % 8 != 5,
            pool_size: rng_for(seed, "pool", 0).gen_range(1..=4),
        }
    }

    /// The proxy's `backend.monitor_timeout_ms`: shorter than the interval, as the
    /// proxy requires.
    pub fn monitor_timeout_ms(&self) -> u64 {
        self.monitor_interval_ms * 4 / 5
    }

    /// Longest time between two probes of one node by the proxy's monitor: a probe may
    /// take up to the timeout, then the monitor waits an interval.
    pub fn probe_cycle_ms(&self) -> u64 {
        self.monitor_interval_ms + self.monitor_timeout_ms()
    }

    /// How long after a node became a replica primary-only statements may still reach
    /// it: the monitor may need the probe in flight plus `monitor_failures` failed probes
    /// (the node was down) plus `monitor_debounce` agreeing probes before the proxy
    /// stops taking the node for the primary, a new session's backend connection may
    /// take up to the connect timeout, and a statement sent just before may be held on
    /// a stalled link ([`DETECTION_MARGIN_MS`]).
    pub fn detection_window_ms(&self) -> u64 {
        (MONITOR_FAILURES as u64 + self.monitor_debounce as u64 + 1) * self.probe_cycle_ms() + CONNECT_TIMEOUT_MS + DETECTION_MARGIN_MS
    }

    /// How soon after the heal a write and a read through the proxy must succeed: the
    /// monitor needs the probe in flight at the heal plus `monitor_debounce` agreeing
    /// probes to see the healed cluster (nothing is down any more, so no failure
    /// count matters), a backend connection attempt made before that may take the
    /// connect timeout, a statement sent on a connection broken by a fault may hang for
    /// the client's timeout before the client retries, a semi-synchronous primary may
    /// hold a commit for its ack timeout while its replicas reconnect, plus
    /// [`LIVENESS_MARGIN_MS`].
    pub fn liveness_bound_ms(&self) -> u64 {
        (self.monitor_debounce as u64 + 2) * self.probe_cycle_ms()
            + CONNECT_TIMEOUT_MS
            + self.op_timeout_ms
            + if self.semi_sync { self.semi_sync_timeout_ms } else { 0 }
            + LIVENESS_MARGIN_MS
    }

    pub fn flavour_name(&self) -> &'static str {
        match self.flavour {
            Flavour::MariaDb => "mariadb",
            Flavour::MySql8 => "mysql8",
        }
    }
}

impl fmt::Display for RunConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} flavour={} replication={} nodes={} clients={} replica_readers={} duration={}ms settle={}ms keys={} \
             mix(write/read/txn)={}/{}/{} think={}..{}ms lag={}+0..{}ms latency<={}ms op_timeout={}ms monitor={}ms/debounce {} \
             split={} proxies={} pool={} faults={:?}{}{}",
            self.seed,
            self.flavour_name(),
            if self.semi_sync { format!("semi-sync(timeout {}ms)", self.semi_sync_timeout_ms) } else { "async".into() },
            self.nodes,
            self.clients,
            self.replica_readers,
            self.duration_ms,
            self.settle_ms,
            self.keys,
            self.write_pct,
            self.read_pct,
            100 - self.write_pct - self.read_pct,
            self.think_ms.0,
            self.think_ms.1,
            self.lag_ms,
            self.lag_jitter_ms,
            self.max_latency_ms,
            self.op_timeout_ms,
            self.monitor_interval_ms,
            self.monitor_debounce,
            if self.read_write_split {
                format!(
                    "on(policy {}, max lag {}ms, consistency {} timeout {}ms fallback {}, level switches {}%)",
                    self.policy.name(),
                    self.max_replica_lag_ms,
                    self.consistency,
                    self.consistency_timeout_ms,
                    if self.consistency_fallback_error { "error" } else { "primary" },
                    self.level_switch_pct
                )
            } else {
                "off".to_string()
            },
            self.proxies,
            if self.multiplex { format!("multiplexed over {} per node", self.pool_size) } else { format!("dedicated (max {} per node)", self.pool_size) },
            self.faults,
            if self.proxy_bugs.any() { format!(" PROXY-BUG({})", self.proxy_bugs.names().join(",")) } else { String::new() },
            format!(
                " tick={}ms{}{}",
                self.tick_ms,
                if self.transaction_replay { " transaction_replay" } else { "" },
                self.switchover.map(|(at, n)| format!(" switchover(to db{n} at {at}ms)")).unwrap_or_default()
            ),
        )
    }
}
