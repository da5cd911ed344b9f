//! The simulation suite on madsim: `RUSTFLAGS="--cfg madsim" cargo test -p sim
//! --test madsim_suite --target-dir target-madsim` (or `scripts/sim.sh madsim`).
//!
//! The same proxy code runs on madsim's simulated network through Sluice's own
//! `TokioNet` (madsim's TCP under `--cfg madsim`), the servers through
//! `SimCluster::run_node(i, TokioNet)` on madsim nodes, with the same workload, fault
//! schedules and checkers as the turmoil suite.
//!
//! * `madsim_seed_holds_every_property` — `#[madsim::test]`: one seed per madsim run;
//!   `MADSIM_TEST_SEED=<n>` picks the seed, `MADSIM_TEST_NUM=<k>` runs `k` seeds from it.
//! * `madsim_suite_holds_every_property_and_covers_every_fault` — seeds `1..=N`
//!   (`SLUICE_SIM_SEEDS`, default 32) in fresh runtimes, plus one more at `eventual`,
//!   checkers and coverage counters (required ones non-zero over the suite, must-be-zero
//!   ones zero in every run).
//! * `madsim_global_reads_through_one_instance_see_writes_acknowledged_through_the_other`
//!   — two Sluice instances at `global`.
//! * `madsim_same_seed_same_history_hash` — determinism.
#![cfg(madsim)]

use sim::harness::{madsim_run, Coverage, Options};

fn opts() -> Options {
    Options { duration_ms: 10_000, ..Options::default() }.with_env()
}

fn run_in_runtime(seed: u64, opts: &Options) -> sim::harness::RunResult {
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let opts = opts.clone();
    let started = std::time::Instant::now();
    let mut r = rt.block_on(async move { madsim_run::run(seed, &opts).await });
    r.wall = started.elapsed();
    r
}

#[madsim::test]
async fn madsim_seed_holds_every_property() {
    let seed = madsim::runtime::Handle::current().seed();
    let r = madsim_run::run(seed, &opts()).await;
    eprintln!("madsim seed {seed}: {} — {} ops — {}", if r.ok() { "ok" } else { "VIOLATION" }, r.history.len(), r.coverage);
    assert!(r.ok(), "(madsim; replay: MADSIM_TEST_SEED={seed})\n{}", r.failure_report());
}

#[test]
fn madsim_suite_holds_every_property_and_covers_every_fault() {
    let n: u64 = std::env::var("SLUICE_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let seeds: Vec<u64> = match std::env::var("SLUICE_SIM_SEED").ok().and_then(|v| v.parse().ok()) {
        Some(s) => {
            // Replaying one seed: the proxies' log lines too (RUST_LOG, e.g. `sluice=info`).
            if let Ok(filter) = std::env::var("RUST_LOG") {
                let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_ansi(false).with_test_writer().try_init();
            }
            vec![s]
        }
        None => (1..=n).collect(),
    };
    let opts = opts();
    let mut cov = Coverage::default();
    let mut failures = Vec::new();
    let mut sim_secs = 0.0;
    let started = std::time::Instant::now();
    // Seeds run at the level their config rolls; with more than one seed, one more run
    // at `eventual` with splitting on, so the suite always has sessions that may read
    // stale values (the `stale_eventual_reads` coverage: the checker must see them).
    let mut runs: Vec<(u64, Options)> = seeds.iter().map(|&s| (s, opts.clone())).collect();
    if seeds.len() > 1 {
        let eventual = Options { read_write_split: Some(true), consistency: Some(sim::history::Consistency::Eventual), ..opts.clone() };
        runs.push((seeds[seeds.len() - 1] + 1, eventual));
    }
    for (seed, opts) in &runs {
        let seed = *seed;
        let r = run_in_runtime(seed, opts);
        eprintln!(
            "madsim seed {seed}: {} — {} ops — {} — {:.1}s simulated in {:.2}s",
            if r.ok() { "ok" } else { "VIOLATION" },
            r.history.len(),
            r.coverage,
            r.sim_elapsed.as_secs_f64(),
            r.wall.as_secs_f64()
        );
        if std::env::var("SLUICE_SIM_HISTORY").is_ok() {
            eprintln!("{}", r.history.render_all());
        }
        sim_secs += r.sim_elapsed.as_secs_f64();
        cov += &r.coverage;
        if !r.ok() {
            failures.push(format!("(madsim)\n{}", r.failure_report()));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "madsim: {} seeds in {wall:.1}s ({:.1} seeds/min, {:.1} simulated s per wall s); coverage: {cov}",
        runs.len(),
        runs.len() as f64 * 60.0 / wall,
        sim_secs / wall
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if seeds.len() > 1 {
        let missing = cov.missing();
        assert!(missing.is_empty(), "coverage counters stayed at zero: {missing:?} ({cov})");
    }
}

/// Two Sluice instances at `global` with splitting on, under the seed's faults: reads
/// through one instance right after writes through the other go to replicas, and
/// `reads_see_acknowledged_writes` (with every other checker) passes.
#[test]
fn madsim_global_reads_through_one_instance_see_writes_acknowledged_through_the_other() {
    let opts = Options {
        duration_ms: 6_000,
        read_write_split: Some(true),
        consistency: Some(sim::history::Consistency::Global),
        consistency_timeout_ms: Some(2_000),
        consistency_fallback_error: Some(false),
        proxies: Some(2),
        ..Options::default()
    };
    let r = run_in_runtime(1, &opts);
    assert!(r.ok(), "(madsim)\n{}", r.failure_report());
    assert!(r.coverage.cross_instance_global_reads > 0, "no global replica read right after a write through the other instance ({})", r.coverage);
}

#[test]
fn madsim_same_seed_same_history_hash() {
    let opts = Options { duration_ms: 6_000, settle_ms: 3_000, ..Options::default() };
    let a = run_in_runtime(7, &opts);
    let b = run_in_runtime(7, &opts);
    assert!(a.history.len() > 50, "too few operations: {}", a.history.len());
    assert_eq!(a.history_hash, b.history_hash, "madsim seed 7 is not deterministic");
    assert_eq!(a.fault_log, b.fault_log);
}

/// Seed sweep for `scripts/sim.sh madsim` (ignored in ordinary runs); same knobs as the
/// turmoil sweep (`SLUICE_SIM_SWEEP_SEEDS` / `_MINUTES` / `_START`,
/// `SLUICE_SIM_DURATION_MS`), one seed at a time.
#[test]
#[ignore]
fn sweep() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let minutes = env("SLUICE_SIM_SWEEP_MINUTES");
    let deadline = minutes.map(|m| std::time::Instant::now() + std::time::Duration::from_secs(m * 60));
    let count = env("SLUICE_SIM_SWEEP_SEEDS").unwrap_or(if deadline.is_some() { u64::MAX } else { 20 });
    let start = env("SLUICE_SIM_SWEEP_START").unwrap_or(1_000);
    let opts = Options::default().with_env();
    let (mut n, mut sim_secs, mut cov, mut failed) = (0u64, 0f64, Coverage::default(), Vec::new());
    let started = std::time::Instant::now();
    for i in 0..count {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
        let seed = start + i;
        let r = run_in_runtime(seed, &opts);
        n += 1;
        if std::env::var("SLUICE_SIM_HISTORY").is_ok() {
            eprintln!("{}", r.history.render_all());
        }
        sim_secs += r.sim_elapsed.as_secs_f64();
        cov += &r.coverage;
        if r.ok() {
            eprintln!("madsim seed {seed}: ok ({} ops, {:.2}s wall)", r.history.len(), r.wall.as_secs_f64());
        } else {
            failed.push(seed);
            eprintln!("FAILED madsim seed {seed}\n{}", r.failure_report());
        }
    }
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "madsim sweep: {n} seeds in {wall:.1}s = {:.1} seeds/min, {:.2} simulated s per wall s; coverage: {cov}",
        n as f64 * 60.0 / wall,
        sim_secs / wall
    );
    eprintln!("failing seeds: {}", if failed.is_empty() { "none".to_string() } else { format!("{failed:?}") });
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}

/// The built-in failover manager under madsim: the primary crashes for 4 s with no
/// external promotion; Sluice promotes a replica (reads, all on the primary, are served
/// by db1 or db2 meanwhile) and every property holds, with and without semi-sync.
#[test]
fn madsim_builtin_manager_promotes_after_the_primary_crashes() {
    for seed in 1..=4u64 {
        let opts = Options::builtin_failover(seed);
        let r = run_in_runtime(seed, &opts);
        assert!(r.ok(), "(madsim) seed {seed}\n{}", r.failure_report());
        let resumed = r.history.writes_resumed_after(2_000_000);
        assert!(resumed.is_some_and(|us| us < 3_000_000), "(madsim) seed {seed}: writes resumed {resumed:?} µs after the crash (target 3 s)");
        let h = r.history.render_all();
        assert!(h.contains("served by db1(primary)") || h.contains("served by db2(primary)"), "(madsim) seed {seed}: no promoted primary served anything");
    }
}

/// The same with a *hung* primary (it keeps its connections, answers nothing for 5 s,
/// then wakes up writable with what it had received): Sluice promotes a replica, cuts
/// the statements waiting on the hung one, and no answer of it reaches a client.
#[test]
fn madsim_builtin_manager_promotes_when_the_primary_hangs_and_ignores_its_late_answers() {
    for seed in 1..=4u64 {
        let opts = Options::builtin_failover_hang(seed);
        let r = run_in_runtime(seed, &opts);
        assert!(r.ok(), "(madsim) seed {seed}\n{}", r.failure_report());
        let resumed = r.history.writes_resumed_after(2_000_000);
        assert!(resumed.is_some_and(|us| us < 5_000_000), "(madsim) seed {seed}: writes resumed {resumed:?} µs after the hang began (target 5 s)");
        let h = r.history.render_all();
        assert!(h.contains("served by db1(primary)") || h.contains("served by db2(primary)"), "(madsim) seed {seed}: no promoted primary served anything");
    }
}

/// A planned switchover under the workload (`SLUICE SWITCHOVER TO 'db1:3306'` at 3 s): the
/// primary is handed over, every property holds, writes pause under 1 s.
#[test]
fn madsim_planned_switchover_hands_the_primary_over() {
    for seed in 1..=4u64 {
        let r = run_in_runtime(seed, &Options::switchover(seed));
        assert!(r.ok(), "(madsim) seed {seed}\n{}", r.failure_report());
        assert_eq!(r.coverage.switchovers, 1, "(madsim) seed {seed}: {:?}", r.fault_log);
        let resumed = r.history.writes_resumed_after(3_000_000);
        assert!(resumed.is_some_and(|us| us < 1_000_000), "(madsim) seed {seed}: writes resumed {resumed:?} µs after the switchover began");
    }
}
