//! The facts `primary_only_statements_never_reach_a_replica` checks come from the
//! simulated servers themselves: each logs the writes and connection-bound statements
//! its client sessions ran while it was replicating, and when it started or stopped
//! replicating. These tests drive a cluster's servers directly (no proxy, no network)
//! and check the whole path: server log → `record_final_state` → checker.

use sim::check::{all_violations, primary_only_statements_never_reach_a_replica, Checker};
use sim::cluster::{ClusterConfig, SimCluster};
use sim::engine::ExecOutcome;
use sim::harness::record_final_state;
use sim::history::History;

fn cluster() -> SimCluster {
    let c = SimCluster::new(ClusterConfig::mariadb(3), 7);
    for i in 0..c.len() {
        c.server(i).with(|e| e.clear_role_changes());
    }
    c.admin_sql(0, "CREATE TABLE test.kv (k VARCHAR(32) PRIMARY KEY, v BIGINT NOT NULL, n BIGINT NOT NULL)").unwrap();
    c
}

/// Runs `sql` in a new client session of node `i` at `now_ms`.
fn client_sql(c: &SimCluster, i: usize, sql: &str, now_ms: u64) {
    c.server(i).with(|e| {
        let s = e.open_session("app", Some("test")).unwrap();
        let out = e.execute(s, sql, now_ms).unwrap();
        assert!(matches!(out, ExecOutcome::Done(_)), "{out:?}");
        e.close_session(s);
    });
}

fn history(c: &SimCluster, window_ms: u64) -> History {
    let mut h = History::new();
    record_final_state(c, &mut h);
    h.set_detection_window(window_ms * 1_000);
    h
}

#[test]
fn a_write_sent_to_a_replica_is_reported_from_the_replicas_own_log() {
    let c = cluster();
    client_sql(&c, 0, "INSERT INTO kv (k, v, n) VALUES ('a', 1, 1)", 100);
    client_sql(&c, 1, "SELECT MAX(v), @@server_id FROM kv WHERE k = 'a'", 150);
    assert!(primary_only_statements_never_reach_a_replica(&history(&c, 5_000)).is_ok(), "plain reads may go to replicas");
    client_sql(&c, 1, "INSERT INTO kv (k, v, n) VALUES ('a', 4294967297, 1)", 200);
    let h = history(&c, 5_000);
    let v = primary_only_statements_never_reach_a_replica(&h).unwrap_err();
    assert!(v.explanation.contains("db1 executed a write at t=200000") && v.explanation.contains("from the start of the run"), "{v}");
    // Also among every checker's findings (the hand-made history has no operations, so
    // the write checkers complain about the rows as well).
    assert!(all_violations(&h).iter().any(|v| v.checker == Checker::PrimaryOnlyOnReplica));
}

#[test]
fn reading_a_user_variable_on_a_replica_is_reported() {
    let c = cluster();
    client_sql(&c, 2, "SELECT @v, @@server_id, @@read_only", 300);
    let v = primary_only_statements_never_reach_a_replica(&history(&c, 5_000)).unwrap_err();
    assert!(v.explanation.contains("db2 executed a session-bound statement"), "{v}");
}

#[test]
fn an_old_primary_may_get_writes_only_within_the_window_after_it_became_a_replica() {
    let c = cluster();
    // The primary goes down; db1 is promoted at t=1000 while db0 is down (its own clock
    // stopped at 100): the harness moves every clock to the promotion's time first.
    client_sql(&c, 0, "INSERT INTO kv (k, v, n) VALUES ('a', 1, 1)", 100);
    c.crash_clean(0);
    for i in 0..c.len() {
        c.server(i).with(|e| e.advance_clock(1_000));
    }
    c.promote(1).unwrap();
    c.restart(0);
    assert_eq!(c.server(0).engine().role_changes(), &[(1_000, true)]);
    assert_eq!(c.server(1).engine().role_changes(), &[(1_000, false)]);
    // A proxy that has not noticed yet sends a write to db0 at t=2500: allowed with a
    // 2 s window, not with a 1 s one.
    client_sql(&c, 0, "INSERT INTO kv (k, v, n) VALUES ('a', 2, 1)", 2_500);
    assert!(primary_only_statements_never_reach_a_replica(&history(&c, 2_000)).is_ok());
    assert!(primary_only_statements_never_reach_a_replica(&history(&c, 1_000)).is_err());
    // The promoted node takes writes as the primary.
    client_sql(&c, 1, "INSERT INTO kv (k, v, n) VALUES ('a', 3, 1)", 2_600);
    assert!(primary_only_statements_never_reach_a_replica(&history(&c, 2_000)).is_ok());
}
