//! The write-then-read runner shared by `tests/rw_consistency.rs` (the default test)
//! and `benches/consistency_cost.rs` (`scripts/bench-consistency.sh`); what it does is
//! described in `tests/rw_consistency.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use sluice::net::TokioNet;

/// The levels, weakest first.
const LEVELS: [&str; 4] = ["eventual", "session", "instance", "global"];

/// What one run does.
#[derive(Clone, Debug)]
struct Opts {
    level: &'static str,
    seconds: f64,
    writers: usize,
    readers: usize,
    /// Keys the direct writer owns (after the writers' keys).
    direct_keys: usize,
    /// The writers' pause between their immediate read and the one after the lag.
    pause: Duration,
    /// Replicas held back by table-lock bursts, and the bursts' length range in ms.
    burst_replicas: Vec<usize>,
    burst_ms: (u64, u64),
    seed: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
        _ => default,
    }
}

/// What kind of read a sample is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A writer reading its own key right after the write was acknowledged.
    OwnNow,
    /// A writer reading its own key again after sleeping longer than the lag.
    OwnAfterLag,
    /// A writer reading another writer's key.
    WriterOther,
    /// A session that never writes.
    Reader,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::OwnNow => "own read at once",
            Kind::OwnAfterLag => "own read after the lag",
            Kind::WriterOther => "writer reads another key",
            Kind::Reader => "read-only session",
        }
    }
}

#[derive(Default, Debug)]
struct Tally {
    reads: u64,
    on_replica: u64,
    /// Returned less than the level promises.
    violations: u64,
    /// Returned less than the session's own / this Sluice's acknowledged value
    /// (counted at every level, the control's evidence at `eventual`).
    stale_own: u64,
    stale_instance: u64,
    latencies_us: Vec<u64>,
}

#[derive(Default, Debug)]
struct Report {
    by_kind: BTreeMap<Kind, Tally>,
    writes: u64,
    direct_writes: u64,
    errors: Vec<String>,
    examples: Vec<String>,
}

/// Values acknowledged per key: through Sluice, and by the direct writer.
struct Acked {
    values: Vec<AtomicI64>,
}

impl Acked {
    fn new(keys: usize) -> Acked {
        Acked { values: (0..keys).map(|_| AtomicI64::new(0)).collect() }
    }
    fn get(&self, k: usize) -> i64 {
        self.values[k].load(Ordering::SeqCst)
    }
    fn set(&self, k: usize, v: i64) {
        self.values[k].fetch_max(v, Ordering::SeqCst);
    }
}

struct Run {
    opts: Opts,
    replicas: Vec<u32>,
    acked: Acked,
    stop: AtomicBool,
    report: Mutex<Report>,
    /// Above every value written before this run.
    base: i64,
}

impl Run {
    /// What the read of `k` that starts now must return at least, at the run's level,
    /// for a session whose own acknowledged value of `k` is `own`; and the instance's
    /// acknowledged value (for the stale counters).
    fn required(&self, k: usize, own: i64) -> (i64, i64) {
        let instance = if k < self.opts.writers { self.acked.get(k) } else { 0 };
        let all = self.acked.get(k);
        let need = match self.opts.level {
            "eventual" => 0,
            "session" => own,
            "instance" => own.max(instance),
            "global" => own.max(all),
            other => panic!("unknown level {other}"),
        };
        (need, instance)
    }

    fn record(&self, kind: Kind, k: usize, own: i64, need: (i64, i64), got: i64, server: u32, took: Duration) {
        let mut r = self.report.lock().unwrap();
        let t = r.by_kind.entry(kind).or_default();
        t.reads += 1;
        if self.replicas.contains(&server) {
            t.on_replica += 1;
        }
        t.latencies_us.push(took.as_micros() as u64);
        let (required, instance) = need;
        if got < own {
            t.stale_own += 1;
        }
        if got < instance {
            t.stale_instance += 1;
        }
        if got < required {
            t.violations += 1;
            if r.examples.len() < 10 {
                r.examples.push(format!(
                    "{} ({}): key {k} read {got} on server {server}, required {required} (own {own}, instance {instance})",
                    kind.name(),
                    self.opts.level
                ));
            }
        }
    }

    fn error(&self, what: String) {
        let mut r = self.report.lock().unwrap();
        if r.errors.len() < 20 {
            r.errors.push(what);
        }
    }
}

fn conn_opts(addr: &str) -> mysql_async::Opts {
    super::common::opts(addr, "app", "app", false)
}

/// Reads key `k`: `(value, server id, time taken)`.
async fn read(c: &mut mysql_async::Conn, k: usize) -> Result<(i64, u32, Duration), mysql_async::Error> {
    let started = Instant::now();
    let row: Option<(i64, u32)> = c.query_first(format!("SELECT v, @@server_id FROM rw WHERE k = {k}")).await?;
    let (v, s) = row.expect("every key has a row");
    Ok((v, s, started.elapsed()))
}

/// A tiny deterministic generator (xorshift), one per task.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

async fn writer(run: Arc<Run>, addr: String, k: usize) {
    let mut rng = Rng::new(run.opts.seed * 1000 + k as u64);
    let mut c = match mysql_async::Conn::new(conn_opts(&addr)).await {
        Ok(c) => c,
        Err(e) => return run.error(format!("writer {k} connect: {e}")),
    };
    let mut own;
    let mut next = run.base;
    while !run.stop.load(Ordering::SeqCst) {
        next += 1;
        let v = next;
        if let Err(e) = c.query_drop(format!("UPDATE rw SET v = {v} WHERE k = {k}")).await {
            run.error(format!("writer {k} update: {e}"));
            break;
        }
        own = v;
        run.acked.set(k, v);
        run.report.lock().unwrap().writes += 1;

        let need = run.required(k, own);
        match read(&mut c, k).await {
            Ok((got, server, took)) => run.record(Kind::OwnNow, k, own, need, got, server, took),
            Err(e) => run.error(format!("writer {k} read: {e}")),
        }
        tokio::time::sleep(run.opts.pause).await;
        let need = run.required(k, own);
        match read(&mut c, k).await {
            Ok((got, server, took)) => run.record(Kind::OwnAfterLag, k, own, need, got, server, took),
            Err(e) => run.error(format!("writer {k} read after lag: {e}")),
        }
        let other = rng.below((run.opts.writers + run.opts.direct_keys) as u64) as usize;
        let need = run.required(other, if other == k { own } else { 0 });
        match read(&mut c, other).await {
            Ok((got, server, took)) => run.record(Kind::WriterOther, other, 0, need, got, server, took),
            Err(e) => run.error(format!("writer {k} read of {other}: {e}")),
        }
    }
    c.disconnect().await.ok();
}

async fn reader(run: Arc<Run>, addr: String, id: usize) {
    let mut rng = Rng::new(run.opts.seed * 7919 + id as u64);
    let mut c = match mysql_async::Conn::new(conn_opts(&addr)).await {
        Ok(c) => c,
        Err(e) => return run.error(format!("reader {id} connect: {e}")),
    };
    while !run.stop.load(Ordering::SeqCst) {
        let k = rng.below((run.opts.writers + run.opts.direct_keys) as u64) as usize;
        let need = run.required(k, 0);
        match read(&mut c, k).await {
            Ok((got, server, took)) => run.record(Kind::Reader, k, 0, need, got, server, took),
            Err(e) => {
                run.error(format!("reader {id} read: {e}"));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.disconnect().await.ok();
}

/// Writes the direct writer's keys on the primary, bypassing Sluice.
async fn direct_writer(run: Arc<Run>, primary: String) {
    let mut c = match mysql_async::Conn::new(conn_opts(&primary)).await {
        Ok(c) => c,
        Err(e) => return run.error(format!("direct writer connect: {e}")),
    };
    let mut v = run.base;
    let mut i = 0usize;
    while !run.stop.load(Ordering::SeqCst) {
        let k = run.opts.writers + i % run.opts.direct_keys;
        // Values of a key only grow: one counter for all of the direct writer's keys.
        v += 1;
        if let Err(e) = c.query_drop(format!("UPDATE rw SET v = {v} WHERE k = {k}")).await {
            run.error(format!("direct writer: {e}"));
            break;
        }
        run.acked.set(k, v);
        run.report.lock().unwrap().direct_writes += 1;
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.disconnect().await.ok();
}

/// Holds a read lock on the table on replica `node` in short random bursts until
/// `stop`, so that its SQL thread keeps falling behind and catching up while the replica
/// stays eligible (its threads run; its lag, in whole seconds, mostly reads 0).
async fn lag_injector(addr: String, stop: Arc<AtomicBool>, seed: u64, (min_ms, max_ms): (u64, u64)) {
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(super::common::port_of(&addr))
        .user(Some("root"))
        .pass(Some(""))
        .prefer_socket(false)
        .into();
    let mut c = mysql_async::Conn::new(opts).await.expect("root connection to the replica");
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::SeqCst) {
        c.query_drop("LOCK TABLES test.rw READ").await.expect("lock");
        tokio::time::sleep(Duration::from_millis(min_ms + rng.below(max_ms.saturating_sub(min_ms) + 1))).await;
        c.query_drop("UNLOCK TABLES").await.expect("unlock");
        tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
    }
    c.disconnect().await.ok();
}

struct Fixture {
    cluster: Arc<chaos::Cluster>,
}

impl Fixture {
    fn start(keys: usize, delay: u32) -> Fixture {
        let cluster = chaos::Cluster::start(chaos::ClusterSpec { replicas: 2, ..Default::default() }).expect("start MariaDB cluster");
        let rows = (0..keys).map(|k| format!("({k}, 0)")).collect::<Vec<_>>().join(", ");
        cluster
            .app_sql(0, &format!("CREATE TABLE test.rw (k INT PRIMARY KEY, v BIGINT NOT NULL); INSERT INTO test.rw VALUES {rows}"))
            .expect("create the table");
        cluster.wait_replicas_caught_up(Duration::from_secs(30)).expect("replicas catch up");
        cluster.set_replica_delay(2, delay).expect("delay replica 2");
        Fixture { cluster: Arc::new(cluster) }
    }

    fn replica_ids(&self) -> Vec<u32> {
        vec![self.cluster.node(1).server_id(), self.cluster.node(2).server_id()]
    }

    async fn proxy(&self, level: &str, extra: &str) -> sluice::ProxyHandle {
        // The delayed replica stays eligible (its lag is below the limit): reads that
        // need its missing writes must wait or go elsewhere.
        let routing = format!("consistency = \"{level}\"\nmax_replica_lag_ms = 60000\n{extra}");
        let cfg = sluice::Config::parse(&super::common::split_config(&self.cluster, &routing)).expect("config");
        let p = sluice::start(TokioNet, cfg, 11).await.expect("proxy starts");
        // Wait until the monitor routes reads to replicas.
        let mut c = mysql_async::Conn::new(conn_opts(p.local_addr())).await.expect("connect");
        let ids = self.replica_ids();
        let started = Instant::now();
        loop {
            let s: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
            if ids.contains(&s) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "reads never reached a replica");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.disconnect().await.ok();
        p
    }

    /// Runs one level's workload through a fresh Sluice.
    async fn run(&self, opts: Opts, extra: &str) -> Report {
        let proxy = self.proxy(opts.level, extra).await;
        let addr = proxy.local_addr().to_string();
        let primary = self.cluster.primary().addr();
        let keys = opts.writers + opts.direct_keys;
        // This run's values start above everything earlier runs wrote (nothing of this
        // run is acknowledged yet, so no read has a requirement before its first write).
        let base: i64 = self.cluster.app_sql(0, "SELECT COALESCE(MAX(v), 0) FROM test.rw").expect("max").parse().expect("a number");
        let run = Arc::new(Run {
            replicas: self.replica_ids(),
            acked: Acked::new(keys),
            stop: AtomicBool::new(false),
            report: Mutex::new(Report::default()),
            opts: opts.clone(),
            base,
        });
        let stop_lag = Arc::new(AtomicBool::new(false));
        let injectors: Vec<_> = opts
            .burst_replicas
            .iter()
            .map(|&n| tokio::spawn(lag_injector(self.cluster.node(n).addr(), stop_lag.clone(), opts.seed * 31 + n as u64, opts.burst_ms)))
            .collect();
        let mut tasks = Vec::new();
        for k in 0..opts.writers {
            tasks.push(tokio::spawn(writer(run.clone(), addr.clone(), k)));
        }
        for r in 0..opts.readers {
            tasks.push(tokio::spawn(reader(run.clone(), addr.clone(), r)));
        }
        if opts.direct_keys > 0 {
            tasks.push(tokio::spawn(direct_writer(run.clone(), primary)));
        }
        tokio::time::sleep(Duration::from_secs_f64(opts.seconds)).await;
        run.stop.store(true, Ordering::SeqCst);
        // Every session stops after its current statement; one that hangs fails the run.
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t).await.expect("a session did not stop within 60 s").expect("task");
        }
        stop_lag.store(true, Ordering::SeqCst);
        for injector in injectors {
            tokio::time::timeout(Duration::from_secs(60), injector).await.expect("the lag injector did not stop within 60 s").expect("lag injector");
        }
        proxy.shutdown().await;
        let mut report = std::mem::take(&mut *run.report.lock().unwrap());
        for t in report.by_kind.values_mut() {
            t.latencies_us.sort_unstable();
        }
        report
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

impl Report {
    fn tally(&self, k: Kind) -> &Tally {
        static EMPTY: Tally = Tally { reads: 0, on_replica: 0, violations: 0, stale_own: 0, stale_instance: 0, latencies_us: Vec::new() };
        self.by_kind.get(&k).unwrap_or(&EMPTY)
    }
    fn violations(&self) -> u64 {
        self.by_kind.values().map(|t| t.violations).sum()
    }
    fn stale(&self) -> u64 {
        self.by_kind.values().map(|t| t.stale_own + t.stale_instance).sum()
    }
    fn print(&self, level: &str) {
        println!("level {level}: {} writes through Sluice, {} direct writes, {} violations", self.writes, self.direct_writes, self.violations());
        println!("  {:<26} {:>7} {:>9} {:>9} {:>9} {:>11} {:>15}", "reads", "count", "replica%", "p50 ms", "p99 ms", "violations", "stale own/inst");
        for (k, t) in &self.by_kind {
            println!(
                "  {:<26} {:>7} {:>8.1}% {:>9.2} {:>9.2} {:>11} {:>8}/{}",
                k.name(),
                t.reads,
                share(t.on_replica, t.reads),
                pct(&t.latencies_us, 0.5),
                pct(&t.latencies_us, 0.99),
                t.violations,
                t.stale_own,
                t.stale_instance
            );
        }
        for e in &self.examples {
            println!("  violation: {e}");
        }
        for e in &self.errors {
            println!("  error: {e}");
        }
    }
}

fn default_opts(level: &'static str) -> Opts {
    Opts {
        level,
        seconds: env_or("SLUICE_RW_SECONDS", 6.0),
        writers: env_or("SLUICE_RW_WRITERS", 6),
        readers: env_or("SLUICE_RW_READERS", 4),
        direct_keys: 4,
        pause: Duration::from_millis(env_or("SLUICE_RW_PAUSE_MS", 1_300)),
        burst_replicas: env_or::<String>("SLUICE_RW_BURST_REPLICAS", "1".into())
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().expect("SLUICE_RW_BURST_REPLICAS: replica numbers (1, 2)"))
            .collect(),
        burst_ms: {
            let r: String = env_or("SLUICE_RW_BURST_MS", "20-220".into());
            let (a, b) = r.split_once('-').expect("SLUICE_RW_BURST_MS is MIN-MAX");
            (a.trim().parse().expect("MIN"), b.trim().parse().expect("MAX"))
        },
        seed: env_or("SLUICE_RW_SEED", 1),
    }
}

/// The default test: every level for a few seconds; zero violations at `session`,
/// `instance` and `global`, stale reads at `eventual`.
pub async fn every_level_holds_its_promise() {
    let opts = default_opts("eventual");
    let f = Fixture::start(opts.writers + opts.direct_keys, 1);
    let mut failures = Vec::new();
    for level in LEVELS {
        let report = f.run(Opts { level, ..default_opts(level) }, "").await;
        report.print(level);
        if !report.errors.is_empty() {
            failures.push(format!("{level}: errors {:?}", report.errors));
        }
        let own = report.tally(Kind::OwnNow);
        if own.reads < 2 * opts.writers as u64 {
            failures.push(format!("{level}: only {} write-then-read loops ran", own.reads));
        }
        if level == "eventual" {
            // The control: the same checker finds stale reads when nothing is promised.
            if report.stale() == 0 {
                failures.push("eventual: no stale read at all; the replicas did not lag and the test proves nothing".into());
            }
        } else if report.violations() > 0 {
            failures.push(format!("{level}: {} stale reads: {:?}", report.violations(), report.examples));
        }
        if level != "eventual" {
            // Replicas still serve reads (the promise is not kept by sending everything
            // to the primary).
            let r = report.tally(Kind::Reader);
            if share(r.on_replica, r.reads) < 50.0 && level != "global" {
                failures.push(format!("{level}: only {:.0}% of read-only sessions' reads on replicas", share(r.on_replica, r.reads)));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// What consistency costs (`benches/consistency_cost.rs`, `scripts/bench-consistency.sh`): per level,
/// where reads went and their latency. Knobs: `SLUICE_RW_SECONDS`, `SLUICE_RW_WRITERS`,
/// `SLUICE_RW_READERS`, `SLUICE_RW_PAUSE_MS`, `SLUICE_RW_DELAY` (the delayed replica's
/// seconds), `SLUICE_RW_BURST_MS` (`MIN-MAX` of the table-lock bursts),
/// `SLUICE_RW_BURST_REPLICAS` (which replicas get them: `1`, `1,2`), `SLUICE_RW_LEVELS`
/// (comma-separated).
pub async fn consistency_cost() {
    let base = default_opts("eventual");
    let delay: u32 = env_or("SLUICE_RW_DELAY", 1);
    let levels: String = env_or("SLUICE_RW_LEVELS", LEVELS.join(","));
    let f = Fixture::start(base.writers + base.direct_keys, delay);
    println!(
        "consistency cost: {} s per level, {} writer sessions, {} read-only sessions, direct writer on {} keys, pause {} ms, replica 2 delayed {delay} s, replicas {:?} held back in bursts of {}-{} ms",
        base.seconds,
        base.writers,
        base.readers,
        base.direct_keys,
        base.pause.as_millis(),
        base.burst_replicas,
        base.burst_ms.0,
        base.burst_ms.1
    );
    let mut reports = Vec::new();
    for level in LEVELS.into_iter().filter(|l| levels.split(',').any(|x| x.trim() == *l)) {
        let report = f.run(Opts { level, ..base.clone() }, "").await;
        report.print(level);
        reports.push((level, report));
    }
    // Every read of a level, for its latency over all kinds (and what it adds to eventual's).
    let all = |r: &Report| {
        let mut v: Vec<u64> = r.by_kind.values().flat_map(|t| t.latencies_us.iter().copied()).collect();
        v.sort_unstable();
        v
    };
    let eventual = reports.iter().find(|(l, _)| *l == "eventual").map(|(_, r)| all(r));
    let mut summary = Vec::new();
    for (level, report) in &reports {
        let (r, now, after) = (report.tally(Kind::Reader), report.tally(Kind::OwnNow), report.tally(Kind::OwnAfterLag));
        let lat = all(report);
        let added = match &eventual {
            Some(e) => format!("{:+.2} / {:+.2}", pct(&lat, 0.5) - pct(e, 0.5), pct(&lat, 0.99) - pct(e, 0.99)),
            None => "-".into(),
        };
        summary.push(format!(
            "| {level} | {:.1} % | {:.1} % | {:.1} % | {:.2} / {:.2} | {added} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {} |",
            share(r.on_replica, r.reads),
            share(now.on_replica, now.reads),
            share(after.on_replica, after.reads),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&r.latencies_us, 0.5),
            pct(&r.latencies_us, 0.99),
            pct(&now.latencies_us, 0.5),
            pct(&now.latencies_us, 0.99),
            pct(&after.latencies_us, 0.5),
            pct(&after.latencies_us, 0.99),
            report.violations(),
            report.stale(),
        ));
    }
    println!("| level | read-only sessions' reads on replicas | own reads at once on replicas | own reads after the lag on replicas | all reads p50 / p99 ms | added vs eventual p50 / p99 ms | read-only p50 / p99 ms | own at once p50 / p99 ms | own after lag p50 / p99 ms | violations | stale (own + instance) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for line in summary {
        println!("{line}");
    }
}
