//! Same seed, same run: the whole simulation (cluster, proxy, clients, fault schedule)
//! is a function of the seed, so two runs of one seed record identical histories
//! (same [`sim::history::History::hash`]), and different seeds differ.
#![cfg(not(madsim))]

use sim::harness::{run, Options};

fn opts() -> Options {
    Options { duration_ms: 6_000, settle_ms: 3_000, ..Options::default() }
}

#[test]
fn same_seed_gives_the_same_history_hash() {
    same_seed_same_hash(&opts());
}

/// The standard scenario steps turmoil 2 simulated ms at a time; the finer 1 ms tick
/// (`SLUICE_SIM_TICK_MS=1`) is deterministic too.
#[test]
fn same_seed_gives_the_same_history_hash_with_a_1ms_tick() {
    same_seed_same_hash(&Options { tick_ms: 1, ..opts() });
}

fn same_seed_same_hash(opts: &Options) {
    for seed in [3u64, 11] {
        let a = run(seed, opts);
        let b = run(seed, opts);
        assert!(a.history.len() > 50, "seed {seed}: too few operations ({})", a.history.len());
        assert_eq!(a.history_hash, b.history_hash, "seed {seed} is not deterministic\nfirst:\n{}\nsecond:\n{}", a.failure_report(), b.failure_report());
        assert_eq!(a.fault_log, b.fault_log, "seed {seed}: the nemesis did different things");
        assert_eq!(a.sim_elapsed, b.sim_elapsed);
    }
}

#[test]
fn different_seeds_give_different_histories() {
    let a = run(5, &opts());
    let b = run(6, &opts());
    assert_ne!(a.history_hash, b.history_hash);
}
