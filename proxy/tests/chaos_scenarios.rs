//! The chaos suite's CI subset: every `chaos` scenario (`chaos/src/scenario/`) once,
//! with short phases, against a real MariaDB primary and two replicas with
//! semi-synchronous replication and the `sluice` binary of this build in front. Each
//! test prints the scenario's report and fails when one of its expectations does not
//! hold (no acknowledged write lost, none applied twice, no violation found by `sim`'s
//! checkers over the recorded history, and the scenario's own: failover time, no
//! client-visible error where none is allowed, …).
//!
//! The scenarios run one at a time (a lock): they measure pauses, and two clusters
//! under load on a two-core machine would measure each other. Longer runs:
//! `scripts/chaos.sh` (all scenarios, more seeds, longer phases).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use chaos::scenario::{self, Scenario};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(s: Scenario) {
    run_with(s, 1);
}

fn run_with(s: Scenario, instances: u32) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut o = scenario::Options::new(PathBuf::from(env!("CARGO_BIN_EXE_sluice")));
    o.instances = instances;
    o.clients = 4;
    o.warmup = Duration::from_millis(1500);
    o.fault = Duration::from_millis(2000);
    o.tail = Duration::from_millis(2000);
    let report = scenario::run(s, &o).expect("the scenario ran");
    eprintln!("{report}");
    assert!(report.passed, "scenario {} failed its expectations:\n{report}", s.name());
}

#[test]
fn primary_sigkill_is_failed_over_within_the_target_without_losing_acknowledged_writes() {
    run(Scenario::PrimaryKill);
}

#[test]
fn a_hung_primary_is_failed_over_and_fenced_when_it_wakes_up_without_acknowledging_lost_writes() {
    run(Scenario::PrimaryHang);
}

#[test]
fn a_black_holed_primary_link_is_a_pause_without_errors_or_promotion() {
    run(Scenario::PrimaryBlackHole);
}

#[test]
fn a_planned_switchover_under_load_has_no_client_errors() {
    run(Scenario::Switchover);
}

#[test]
fn a_replica_crash_and_rejoin_is_invisible_to_clients() {
    run(Scenario::ReplicaCrash);
}

#[test]
fn a_rolling_restart_of_the_replicas_is_invisible_to_clients() {
    run(Scenario::RollingRestart);
}

#[test]
fn a_sluice_restart_costs_only_the_cut_connections() {
    run(Scenario::SluiceRestart);
}

#[test]
fn with_two_sluice_instances_a_primary_sigkill_is_failed_over_by_exactly_one_of_them() {
    run_with(Scenario::PrimaryKill, 2);
}
