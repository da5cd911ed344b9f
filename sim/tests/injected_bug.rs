//! The checkers catch real proxy bugs.
//!
//! Each test switches on one of the proxy's injected bugs (`sluice::faults::Faults`,
//! compiled into the proxy but reachable only through these hooks), under faults that
//! expose it, and requires the checker meant for that bug to report it within a few
//! seeds; each has a control run: the same options without the bug pass every checker.
//!
//! * `resend_after_lost_backend` — when the backend connection fails after a command
//!   was sent and before any byte of its response reached the client, the proxy opens a
//!   new backend connection and sends the command again: the classic unsafe retry (the
//!   first attempt may already have been applied). Exposed by semi-synchronous
//!   replication with the replicas' IO threads stalled, so every commit on the primary is
//!   durable but waits for an ack, then a crash and immediate restart of the primary:
//!   the buggy proxy resends the waiting writes, they apply twice (the workload's writes
//!   change the row on every application), and `no_lost_or_duplicate_writes` reports the
//!   value twice in the applied log. The correct proxy answers "Lost connection to
//!   backend" (an unknown outcome).
//! * `route_writes_to_replica` / `route_session_bound_reads_to_replica` — with
//!   read/write splitting on, writes (and `SET @v`) / reads of connection-bound state
//!   (`SELECT @v`, `SELECT LAST_INSERT_ID()`) go to a replica.
//!   `primary_only_statements_never_reach_a_replica` reports the statement from the
//!   replica's own log.
//! * `ignore_promotion` — the proxy keeps sending primary-bound statements to the first
//!   primary its monitor found. After a failover every write fails (the old primary
//!   comes back read-only), and `service_resumes_after_heal` reports that no write
//!   succeeded after the heal. Without the bug the proxy follows the promotion.
//! * `ignore_pooled_state` — the proxy lends pooled connections as they are, without
//!   matching their session state to the borrower's or resetting them. A session's
//!   read-back of its own session variable, after other sessions used the tiny pool,
//!   returns another session's value: the `session_state_lost` coverage counter, which
//!   must stay 0, is not. Control: `splitting_without_routing_bugs_passes_and_reads_back_session_state`.
//! * `ignore_consistency` — the proxy sends reads to any eligible replica without
//!   checking or waiting for the GTID position their consistency level requires. With
//!   splitting on at `session` (or `global`, with two Sluice instances) and the
//!   replicas' IO threads stalled again and again, a read right after a write finds a
//!   replica without it, and `reads_see_acknowledged_writes` reports the stale read.
//!   Without the bug the proxy waits (or falls back to the primary).
#![cfg(not(madsim))]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::check::{all_violations, Checker};
use sim::harness::schedule::{FaultKind, NodeSel};
use sim::harness::{derive_seed, run, Fault, FaultProfile, Options, ProxyBugs, RunResult};
use sim::history::Consistency;

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
        proxy_bugs: ProxyBugs { resend_after_lost_backend: bug, ..ProxyBugs::default() },
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

/// Runs seeds `1..=BUDGET` with `options(seed)` until `checker` reports a violation;
/// panics if it never does.
fn caught_by(checker: Checker, what: &str, options: impl Fn(u64) -> Options) -> RunResult {
    for seed in 1..=BUDGET {
        let r = run(seed, &options(seed));
        let found = all_violations(&r.history);
        if let Some(v) = found.iter().find(|v| v.checker == checker) {
            eprintln!("{what} caught by {checker} at seed {seed} ({} ops):\n{v}", r.history.len());
            let others: Vec<_> = found.iter().filter(|v| v.checker != checker).map(|v| v.checker.name()).collect();
            eprintln!("other checkers reporting it: {others:?}; coverage: {}", r.coverage);
            return r;
        }
        eprintln!("seed {seed}: {what} not caught by {checker} (violations: {:?}; {})", found.iter().map(|v| v.checker).collect::<Vec<_>>(), r.coverage);
    }
    panic!("{checker} did not catch {what} within {BUDGET} seeds");
}

/// Splitting on, no faults: every replica is a replica for the whole run, so any
/// write or connection-bound statement it executes is a violation at once.
fn routing_opts(bugs: ProxyBugs) -> Options {
    Options { duration_ms: 6_000, clients: 8, faults: FaultProfile::None, read_write_split: Some(true), proxy_bugs: bugs, ..Options::default() }
}

#[test]
fn primary_only_checker_catches_writes_routed_to_a_replica() {
    caught_by(Checker::PrimaryOnlyOnReplica, "route_writes_to_replica", |_| {
        routing_opts(ProxyBugs { route_writes_to_replica: true, ..ProxyBugs::default() })
    });
}

#[test]
fn primary_only_checker_catches_session_bound_reads_routed_to_a_replica() {
    caught_by(Checker::PrimaryOnlyOnReplica, "route_session_bound_reads_to_replica", |_| {
        routing_opts(ProxyBugs { route_session_bound_reads_to_replica: true, ..ProxyBugs::default() })
    });
}

#[test]
fn multiplexing_oracle_catches_pooled_connections_lent_with_another_sessions_state() {
    for seed in 1..=BUDGET {
        let mut o = routing_opts(ProxyBugs { ignore_pooled_state: true, ..ProxyBugs::default() });
        o.clients = 16;
        let r = run(seed, &o);
        if r.coverage.session_state_lost > 0 {
            eprintln!("ignore_pooled_state caught at seed {seed}: session_state_lost={} ({})", r.coverage.session_state_lost, r.coverage);
            return;
        }
        eprintln!("seed {seed}: ignore_pooled_state not caught ({})", r.coverage);
    }
    panic!("session_state_lost stayed 0 with ignore_pooled_state within {BUDGET} seeds");
}

#[test]
fn splitting_without_routing_bugs_passes_and_reads_back_session_state() {
    // Coverage over the seeds together: a seed's tiny pool may leave it few operations
    // of one kind.
    let (mut session_reads, mut kills, mut prepared) = (0, 0, 0);
    for seed in 1..=3 {
        let r = run(seed, &routing_opts(ProxyBugs::default()));
        assert!(r.ok(), "{}", r.failure_report());
        session_reads += r.coverage.session_reads;
        kills += r.coverage.kills;
        prepared += r.coverage.prepared;
    }
    assert!(session_reads > 0 && kills > 0 && prepared > 0, "session_reads={session_reads} kills={kills} prepared={prepared}");
}

/// A failover early in the run: the primary crashes, replica #0 is promoted, the old
/// primary comes back as a replica 1.5 s later.
fn failover_opts(bugs: ProxyBugs) -> Options {
    Options {
        duration_ms: 6_000,
        clients: 8,
        schedule: Some(vec![Fault { at_ms: 1_500, kind: FaultKind::Failover { hang_ms: 0, candidate: 0, old_down_ms: 1_500 } }]),
        proxy_bugs: bugs,
        ..Options::default()
    }
}

#[test]
fn liveness_checker_catches_a_proxy_that_ignores_a_promotion() {
    let r = caught_by(Checker::Liveness, "ignore_promotion", |_| failover_opts(ProxyBugs { ignore_promotion: true, ..ProxyBugs::default() }));
    assert_eq!(r.coverage.failovers, 1, "the schedule did not fail over: {}", r.coverage);
}

#[test]
fn a_proxy_that_follows_the_promotion_passes_the_liveness_checker() {
    for seed in 1..=2 {
        let r = run(seed, &failover_opts(ProxyBugs::default()));
        assert_eq!(r.coverage.failovers, 1, "{}", r.coverage);
        assert!(r.ok(), "{}", r.failure_report());
    }
}

/// Splitting on at `level` (with `proxies` Sluice instances), no level switches, and the
/// replicas' IO threads stalled for 1.2 s every 1.5 s: replicas stay healthy in the
/// monitor's eyes (nothing is left to apply) but fall behind the primary, so a read right
/// after a write finds them without it. Waits (2 s) outlast the stalls.
fn consistency_opts(level: Consistency, proxies: usize, bugs: ProxyBugs) -> Options {
    let mut schedule = Vec::new();
    let mut t = 300;
    while t < 5_500 {
        for k in 0..2 {
            schedule.push(Fault { at_ms: t, kind: FaultKind::StallReplication { replica: k, dur_ms: 1_200 } });
        }
        t += 1_500;
    }
    Options {
        duration_ms: 6_000,
        clients: 8,
        schedule: Some(schedule),
        read_write_split: Some(true),
        max_replica_lag_ms: Some(2_000),
        consistency: Some(level),
        consistency_timeout_ms: Some(2_000),
        consistency_fallback_error: Some(false),
        level_switch_pct: Some(0),
        proxies: Some(proxies),
        proxy_bugs: bugs,
        ..Options::default()
    }
}

#[test]
fn consistency_checker_catches_a_proxy_that_ignores_the_session_level() {
    caught_by(Checker::ReadsSeeAcknowledgedWrites, "ignore_consistency at session", |_| {
        consistency_opts(Consistency::Session, 1, ProxyBugs { ignore_consistency: true, ..ProxyBugs::default() })
    });
}

#[test]
fn consistency_checker_catches_a_proxy_that_ignores_the_global_level_across_two_instances() {
    caught_by(Checker::ReadsSeeAcknowledgedWrites, "ignore_consistency at global", |_| {
        consistency_opts(Consistency::Global, 2, ProxyBugs { ignore_consistency: true, ..ProxyBugs::default() })
    });
}

#[test]
fn a_proxy_that_honours_session_and_global_levels_passes_with_stalled_replication() {
    for (level, proxies) in [(Consistency::Session, 1), (Consistency::Global, 2)] {
        let r = run(1, &consistency_opts(level, proxies, ProxyBugs::default()));
        assert!(r.ok(), "{}", r.failure_report());
        assert!(r.coverage.replica_reads_after_own_write > 0, "{level}: no replica read right after an own write ({})", r.coverage);
        if proxies == 2 {
            assert!(r.coverage.cross_instance_global_reads > 0, "no global replica read right after a write through the other instance ({})", r.coverage);
        }
    }
}
