//! The simulation property suite (turmoil): the real proxy (with read/write splitting
//! on for three seeds in four, at a consistency level from the seed, one or two Sluice
//! instances) in front of simulated MariaDB / MySQL 8 clusters, a
//! generated workload of writes, reads and transactions (text, prepared and
//! multi-statement), session-state read-backs, KILLs and COM_CHANGE_USERs, and a fault
//! schedule derived from each seed (partitions, latency spikes, crashes, pauses,
//! failovers, replication stalls and lag, slow statements). After each run the history
//! checkers (read-your-writes, monotonic reads, no lost or duplicate writes, per-key
//! linearizability, transaction atomicity, primary-only statements never on a replica,
//! service resumes after the heal, reads see acknowledged writes at their consistency
//! level) must pass and the must-be-zero coverage counters must be zero.
//!
//! * `fixed_seeds_…` runs seeds `1..=N` (N = `SLUICE_SIM_SEEDS`, default sized for CI)
//!   and also fails when a required coverage counter (docs/simulation.md, "Coverage
//!   counters") stays zero over them.
//! * `fresh_seeds_…` (proptest) draws fresh seeds and workload parameters every run and
//!   prints them (`--nocapture`).
//! * `replay` runs exactly `SLUICE_SIM_SEED` (ignored otherwise), verbosely.
//!
//! On failure the seed, the replay command, the configuration, the fault schedule, what
//! the nemesis did and the violation (with its minimal slice of history) are printed.
#![cfg(not(madsim))]

use proptest::prelude::*;

// Allocation-heavy simulations run markedly faster on mimalloc (docs/simulation.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sim::harness::{run, suite_seeds, Coverage, Options};

/// Fixed seeds in the default (CI) suite.
const CI_SEEDS: u64 = 64;
/// Simulated workload per seed in the default suite (`SLUICE_SIM_DURATION_MS` overrides).
const CI_DURATION_MS: u64 = 10_000;

fn ci_options() -> Options {
    Options { duration_ms: CI_DURATION_MS, ..Options::default() }.with_env()
}

#[test]
fn fixed_seeds_hold_every_property_and_cover_every_fault() {
    if std::env::var("SLUICE_SIM_SEED").is_ok() {
        return; // `replay` runs that seed.
    }
    let opts = ci_options();
    let seeds = suite_seeds(CI_SEEDS, 0);
    let mut cov = Coverage::default();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for &seed in &seeds {
        let r = run(seed, &opts);
        eprintln!(
            "seed {seed}: {} — {} ops, {} — {:.1}s wall",
            if r.ok() { "ok" } else { "VIOLATION" },
            r.history.len(),
            r.coverage,
            r.wall.as_secs_f64()
        );
        cov += &r.coverage;
        if !r.ok() {
            failures.push(r.failure_report());
        }
    }
    eprintln!("{} seeds in {:.1}s; coverage over the suite: {cov}", seeds.len(), started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{} of {} seeds failed:\n\n{}", failures.len(), seeds.len(), failures.join("\n\n"));
    let missing = cov.missing();
    assert!(
        missing.is_empty(),
        "coverage counters stayed at zero over {} seeds: {missing:?} ({cov}); the fault schedules or the workload no longer reach these situations",
        seeds.len()
    );
    if seeds.len() >= CI_SEEDS as usize {
        assert!(cov.cross_instance_global_reads > 0, "no replica read at global right after a write through the other Sluice instance ({cov})");
        assert!(cov.transactions_replayed > 0, "no transaction was replayed after the loss of its primary in runs with transaction_replay ({cov})");
    }
}

fn fresh_cases() -> u32 {
    std::env::var("SLUICE_SIM_FRESH").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: fresh_cases(),
        max_shrink_iters: 0,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Fresh seeds and workload parameters on every run (printed for replay).
    #[test]
    fn fresh_seeds_hold_every_property(seed in 0u64..1_000_000_000, clients in 4usize..=16, keys in 2usize..=10) {
        if std::env::var("SLUICE_SIM_SEED").is_err() {
            let mut opts = ci_options();
            opts.clients = clients;
            opts.keys = Some(keys);
            eprintln!("fresh seed {seed} (replay: SLUICE_SIM_SEED={seed} SLUICE_SIM_CLIENTS={clients} SLUICE_SIM_KEYS={keys} SLUICE_SIM_DURATION_MS={})", opts.duration_ms);
            let r = run(seed, &opts);
            eprintln!("fresh seed {seed}: {} — {}", if r.ok() { "ok" } else { "VIOLATION" }, r.coverage);
            prop_assert!(r.ok(), "{}", r.failure_report());
        }
    }
}

/// `SLUICE_SIM_SEED=<n> cargo test -p sim --test properties replay -- --nocapture`
/// replays one seed (same options as the suite, plus the env knobs) and prints the run.
#[test]
fn replay() {
    let Ok(seed) = std::env::var("SLUICE_SIM_SEED") else { return };
    let seed: u64 = seed.trim().parse().expect("SLUICE_SIM_SEED must be a number");
    // The proxies' log lines (RUST_LOG, e.g. `sluice=info`), when asked for.
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_ansi(false).with_test_writer().try_init();
    }
    let mut opts = ci_options();
    opts.verbose = true;
    let r = run(seed, &opts);
    if std::env::var("SLUICE_SIM_HISTORY").is_ok() {
        eprintln!("{}", r.history.render_all());
    }
    for l in &r.fault_log {
        eprintln!("  {l}");
    }
    assert!(r.ok(), "{}", r.failure_report());
}

/// Seed sweep for `scripts/sim.sh turmoil` (ignored in ordinary runs): the standard
/// scenario (30 simulated seconds unless `SLUICE_SIM_DURATION_MS`, 3 servers, 16
/// clients) over `SLUICE_SIM_SWEEP_SEEDS` seeds or for `SLUICE_SIM_SWEEP_MINUTES`
/// minutes, from `SLUICE_SIM_SWEEP_START` (default: a fresh random start), on
/// `SLUICE_SIM_JOBS` threads (default: one per CPU). Prints every failing seed, throughput and the
/// coverage counters; fails if any seed failed.
#[test]
#[ignore]
fn sweep() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let count = env("SLUICE_SIM_SWEEP_SEEDS");
    let minutes = env("SLUICE_SIM_SWEEP_MINUTES");
    let start = env("SLUICE_SIM_SWEEP_START").unwrap_or_else(|| suite_seeds(0, 1)[0] * 1000);
    // Default: one job per CPU (independent simulations).
    let jobs = env("SLUICE_SIM_JOBS").unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1)).max(1);
    let opts = Options::default().with_env();
    let deadline = minutes.map(|m| std::time::Instant::now() + std::time::Duration::from_secs(m * 60));
    let count = count.unwrap_or(if deadline.is_some() { u64::MAX } else { 20 });
    eprintln!("turmoil sweep: seeds from {start}, {} , {jobs} job(s), {} simulated ms per seed", if count == u64::MAX { format!("{} minutes", minutes.unwrap_or(0)) } else { format!("{count} seeds") }, opts.duration_ms);
    let next = AtomicU64::new(0);
    let done = Mutex::new((0u64, 0f64, Coverage::default(), Vec::<u64>::new()));
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    return;
                }
                let seed = start + i;
                let r = run(seed, &opts);
                let mut d = done.lock().unwrap();
                d.0 += 1;
                d.1 += r.sim_elapsed.as_secs_f64();
                d.2 += &r.coverage;
                if !r.ok() {
                    d.3.push(seed);
                    eprintln!("FAILED seed {seed}\n{}", r.failure_report());
                } else {
                    eprintln!("seed {seed}: ok ({} ops, {:.2}s wall)", r.history.len(), r.wall.as_secs_f64());
                }
            });
        }
    });
    let (n, sim_secs, cov, failed) = done.into_inner().unwrap();
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "turmoil sweep: {n} seeds in {wall:.1}s = {:.1} seeds/min, {:.2} simulated s per wall s; coverage: {cov}",
        n as f64 * 60.0 / wall,
        sim_secs / wall
    );
    if failed.is_empty() {
        eprintln!("failing seeds: none");
    } else {
        eprintln!("failing seeds: {failed:?}");
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
