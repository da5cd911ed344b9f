//! The checkers catch a real proxy bug.
//!
//! The bug (`sluice::faults::Faults::resend_after_lost_backend`, compiled into the proxy
//! but reachable only through injected fault hooks): when the backend connection fails
//! after a command was sent and before any byte of its response reached the client,
//! the proxy opens a new backend connection and sends the command again. That is the
//! classic unsafe retry: the first attempt may already have been applied. A single
//! write is then applied twice (the client sees one OK), and a statement of a
//! transaction is re-run in autocommit mode on a fresh session, outside its
//! transaction.
//!
//! The faults that expose it: semi-synchronous replication with the replicas' IO threads
//! stalled, so every commit on the primary is durable but waits for an ack; then the
//! primary crashes and restarts at once. Every write waiting for its ack was applied,
//! its connection is cut, and the buggy proxy resends it to the restarted primary. The
//! workload's writes (`INSERT … ON DUPLICATE KEY UPDATE v = <unique>, n = n + 1`) change
//! the row on every application, so the binlog (the per-key applied log) holds the
//! value twice and `no_lost_or_duplicate_writes` reports it.
//!
//! The correct proxy under the same schedule answers "Lost connection to backend"
//! (an unknown outcome) instead, and every checker passes.
#![cfg(not(madsim))]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::harness::schedule::{FaultKind, NodeSel};
use sim::harness::{derive_seed, run, Fault, Options};

const DURATION_MS: u64 = 10_000;
/// Seeds tried before giving up (the CI budget).
const BUDGET: u64 = 6;

/// Replication stalls followed by an immediate crash-restart of the primary, repeated.
fn bug_schedule(seed: u64) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "bug-schedule", 0));
    let mut out = Vec::new();
    let mut t = rng.gen_range(500..1_500);
    while t + 3_000 < DURATION_MS {
        for k in 0..2 {
            out.push(Fault { at_ms: t, kind: FaultKind::StallReplication { replica: k, dur_ms: 2_500 } });
        }
        out.push(Fault { at_ms: t + rng.gen_range(400..1_500), kind: FaultKind::Crash { node: NodeSel::Primary, down_ms: rng.gen_range(0..5) } });
        t += rng.gen_range(3_000..4_500);
    }
    out
}

fn opts(seed: u64, bug: bool) -> Options {
    Options {
        duration_ms: DURATION_MS,
        semi_sync: Some(true),
        semi_sync_timeout_ms: Some(30_000),
        schedule: Some(bug_schedule(seed)),
        proxy_bug_resend: bug,
        ..Options::default()
    }
}

#[test]
fn checkers_catch_the_resend_after_lost_backend_bug() {
    catch_bug(2);
}

/// The same with turmoil's finer 1 ms tick (the standard scenario uses 2 ms).
#[test]
fn checkers_catch_the_resend_after_lost_backend_bug_with_a_1ms_tick() {
    catch_bug(1);
}

fn catch_bug(tick_ms: u64) {
    for seed in 1..=BUDGET {
        let r = run(seed, &Options { tick_ms, ..opts(seed, true) });
        match &r.outcome {
            Err(v) => {
                eprintln!("injected bug caught at seed {seed} with a {tick_ms} ms tick ({} ops):\n{v}", r.history.len());
                eprintln!("nemesis:\n  {}", r.fault_log.join("\n  "));
                return;
            }
            Ok(_) => eprintln!("seed {seed}: bug not exposed ({})", r.coverage),
        }
    }
    panic!("the checkers did not catch the injected resend-after-lost-backend bug within {BUDGET} seeds ({tick_ms} ms tick)");
}

#[test]
fn the_same_faults_without_the_bug_pass() {
    for seed in 1..=2 {
        let r = run(seed, &opts(seed, false));
        assert!(r.ok(), "{}", r.failure_report());
        assert!(r.coverage.crashes_during_write > 0, "seed {seed}: the schedule cut no write ({})", r.coverage);
    }
}
