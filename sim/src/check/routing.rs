//! Primary-only statements never reach a replica.
//!
//! A read/write-splitting proxy may send plain reads to replicas, but a write, and any
//! statement that uses or sets state of its connection (user variables,
//! `LAST_INSERT_ID()`, `ROW_COUNT()`, `FOUND_ROWS()`, `CONNECTION_ID()`, user locks),
//! must run on the primary: on a replica a write fails (or, with a privileged account,
//! forks the data), and connection state lives on the connection that set it.
//!
//! The facts come from the servers themselves ([`crate::history::NodeFacts`]): each
//! simulated server logs the primary-only statements it executed from client sessions
//! while it was replicating, and when it started or stopped replicating. Only the proxy
//! sends client statements to the servers (the harness's direct connections send plain
//! reads and GTID waits), so every such statement was routed there by the proxy.
//!
//! ## The detection window
//!
//! A proxy learns roles from its monitor. A node that *became* a replica (an old primary
//! that was failed over and came back) may still be taken for the primary until the
//! monitor has seen enough probes: the statement is then allowed if it ran less than
//! [`History::detection_window`](crate::history::History::detection_window) after the
//! node started replicating. A node that was a replica from the start of the run gets
//! no window. The harness derives the window from the proxy's monitor settings
//! (docs/simulation.md, "Checkers").

use super::{Checker, Violation};
use crate::history::{History, Op, OpId, PrimaryOnlyKind, TxnOp};

/// Checks that no node executed a write or a connection-bound statement while it was a
/// replica, except within the detection window after it became one.
pub fn primary_only_statements_never_reach_a_replica(h: &History) -> Result<(), Violation> {
    let window = h.detection_window().unwrap_or(0);
    for (node, facts) in h.node_facts() {
        for x in &facts.on_replica {
            // The server logged it while replicating: when did that start?
            let since = facts
                .role_changes
                .iter()
                .filter(|(at, r)| *r && *at <= x.at)
                .map(|(at, _)| *at)
                .next_back();
            if since.is_some_and(|s| x.at.saturating_sub(s) < window) {
                continue;
            }
            let when = match since {
                Some(s) => format!(
                    "it had been a replica since t={s}, {} before — longer than the proxy's detection window of {window}",
                    x.at - s
                ),
                None => "it was a replica from the start of the run".to_string(),
            };
            let ids = ops_named_in(h, &x.sql);
            let mut v = Violation::new(
                Checker::PrimaryOnlyOnReplica,
                None,
                format!(
                    "{node} executed a {} at t={} while it was replicating ({when}): `{}`{}. Writes and statements \
                     that use connection-bound state must go to the primary.",
                    x.kind,
                    x.at,
                    x.sql,
                    match x.error {
                        Some(c) => format!(" (it failed with error {c})"),
                        None => String::new(),
                    }
                ),
                h,
                &ids,
            );
            for (at, r) in &facts.role_changes {
                v = v.note(format!(
                    "{node} {} replicating at t={at}",
                    if *r { "started" } else { "stopped" }
                ));
            }
            let others = facts
                .on_replica
                .iter()
                .filter(|y| y.at != x.at || y.sql != x.sql)
                .count() as u64
                + facts.on_replica_dropped;
            if others > 0 {
                v = v.note(format!(
                    "{node} logged {others} more primary-only statements while replicating"
                ));
            }
            if x.kind == PrimaryOnlyKind::SessionBound && ids.is_empty() {
                v = v.note(
                    "no recorded operation names the statement's value (it may be the proxy's own)"
                        .to_string(),
                );
            }
            return Err(v);
        }
    }
    Ok(())
}

/// Operations whose written or expected values appear in `sql` (values are unique in a
/// run, so this names the operation that sent the statement).
fn ops_named_in(h: &History, sql: &str) -> Vec<OpId> {
    let numbers: Vec<u64> = sql
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| t.len() >= 6)
        .filter_map(|t| t.parse().ok())
        .collect();
    if numbers.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for o in h.ops() {
        let named = match &o.op {
            Op::Write { value, .. } => numbers.contains(value),
            Op::Txn { ops } => ops
                .iter()
                .any(|t| matches!(t, TxnOp::Write { value, .. } if numbers.contains(value))),
            Op::SessionRead { expected, .. } => numbers.contains(expected),
            Op::Read { .. } => false,
        };
        if named {
            out.push(o.id);
        }
    }
    out.truncate(4);
    out
}
