//! Run options ([`Options`], what the caller fixes) and the configuration derived from a
//! seed ([`RunConfig`], what a run actually used — printed with every result).

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::Flavour;

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
    /// Turn on the proxy's injected bug (`Faults::resend_after_lost_backend`).
    pub proxy_bug_resend: bool,
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
            proxy_bug_resend: false,
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
    pub proxy_bug_resend: bool,
    pub faults: FaultProfile,
    pub tick_ms: u64,
    /// The proxy's `backend.monitor_interval_ms` (100, 200, 300 or 500 from the seed):
    /// how soon it notices a failover varies between runs.
    pub monitor_interval_ms: u64,
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
            proxy_bug_resend: opts.proxy_bug_resend,
            faults: opts.faults,
            tick_ms: opts.tick_ms.max(1),
            monitor_interval_ms,
        }
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
             mix(write/read/txn)={}/{}/{} think={}..{}ms lag={}+0..{}ms latency<={}ms op_timeout={}ms monitor={}ms faults={:?}{}{}",
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
            self.faults,
            if self.proxy_bug_resend { " PROXY-BUG(resend_after_lost_backend)" } else { "" },
            format!(" tick={}ms", self.tick_ms),
        )
    }
}
