//! # History checkers
//!
//! Pure, synchronous, deterministic checks over a recorded
//! [`History`](crate::history::History). Each checker returns `Ok` or a
//! [`Violation`] that names the checker, explains the problem in one
//! paragraph and carries the minimal slice of the history involved.
//!
//! | checker | what it verifies |
//! | --- | --- |
//! | [`read_your_writes`] | per session: a read sees the session's own acknowledged writes (or something newer) |
//! | [`monotonic_reads`] | per session: successive reads of a key never go back to an older value |
//! | [`no_lost_or_duplicate_writes`] | acknowledged writes applied exactly once, failed ones never, unknown ones at most once |
//! | [`linearizable_per_key`] | per key, primary-routed reads and all writes form a linearizable register history |
//! | [`transactions_atomic`] | committed transactions visible all-or-nothing, aborted ones never, never split across backends |
//! | [`primary_only_statements_never_reach_a_replica`] | no write or connection-bound statement runs on a node that has been a replica for longer than the proxy's detection window |
//! | [`service_resumes_after_heal`] | once every fault is healed, a write and a read through the proxy succeed within a bound |
//! | [`reads_see_acknowledged_writes`] | a proxy read at `session` / `instance` / `global` sees every write acknowledged before it began to its session / through its proxy instance / to anyone |
//!
//! Reads a replica served through a read/write-splitting proxy
//! ([`crate::history::OpMeta::eventual`]) are held by the checkers of the primary's
//! guarantees only to "the value was written by some write, or is the initial one"
//! (checked with the other reads in [`no_lost_or_duplicate_writes`] and
//! [`transactions_atomic`]); what their consistency level promises is checked by
//! [`reads_see_acknowledged_writes`], whoever served them.
//!
//! [`check_all`] runs them all and returns a [`Report`].
//!
//! ## "Older" and "newer" values
//!
//! Several checkers need to know whether a value `a` of a key was certainly
//! written *before* a value `b`. The order used is, in priority:
//!
//! 1. the key's initial value precedes every written value;
//! 2. if the authoritative (final primary) server recorded an applied log for
//!    the key and both values are in it, their positions in that log;
//! 3. otherwise real time: `a`'s write was acknowledged before `b`'s write was
//!    invoked.
//!
//! When none of these applies the two values are unordered, and no checker
//! reports a violation based on them.

mod consistency;
mod facts;
mod linearizable;
mod liveness;
mod routing;
mod session;
mod txn;
mod writes;

#[cfg(test)]
mod tests;

use std::fmt;

use crate::history::{render_ops, History, Key, OpId, Operation, Val};

pub use linearizable::{
    linearizable_per_key, linearizable_per_key_with, InconclusiveKey, LinOptions, LinReport,
};
pub use consistency::{reads_see_acknowledged_writes, stale_eventual_reads};
pub use liveness::service_resumes_after_heal;
pub use routing::primary_only_statements_never_reach_a_replica;
pub use session::{monotonic_reads, read_your_writes};
pub use txn::transactions_atomic;
pub use writes::{no_lost_or_duplicate_writes, UnknownWrite, WritesReport};

/// Which checker found a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Checker {
    /// The history itself breaks the recording rules (e.g. a value written
    /// twice), so nothing can be attributed reliably.
    WellFormed,
    ReadYourWrites,
    MonotonicReads,
    NoLostOrDuplicateWrites,
    LinearizablePerKey,
    TransactionsAtomic,
    PrimaryOnlyOnReplica,
    Liveness,
    ReadsSeeAcknowledgedWrites,
}

impl Checker {
    pub fn name(self) -> &'static str {
        match self {
            Checker::WellFormed => "history_well_formed",
            Checker::ReadYourWrites => "read_your_writes",
            Checker::MonotonicReads => "monotonic_reads",
            Checker::NoLostOrDuplicateWrites => "no_lost_or_duplicate_writes",
            Checker::LinearizablePerKey => "linearizable_per_key",
            Checker::TransactionsAtomic => "transactions_atomic",
            Checker::PrimaryOnlyOnReplica => "primary_only_statements_never_reach_a_replica",
            Checker::Liveness => "service_resumes_after_heal",
            Checker::ReadsSeeAcknowledgedWrites => "reads_see_acknowledged_writes",
        }
    }
}

impl fmt::Display for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A property violation with the minimal slice of history that shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub checker: Checker,
    /// The key involved, when the violation is about one key.
    pub key: Option<Key>,
    /// One paragraph: what was expected, what happened.
    pub explanation: String,
    /// The operations involved (sorted by id), cloned out of the history.
    pub ops: Vec<Operation>,
    /// Facts that are not operations (final rows, applied-log positions).
    pub notes: Vec<String>,
}

impl Violation {
    pub(crate) fn new(
        checker: Checker,
        key: Option<&str>,
        explanation: String,
        h: &History,
        ids: &[OpId],
    ) -> Self {
        let mut ids: Vec<OpId> = ids.to_vec();
        ids.sort();
        ids.dedup();
        Violation {
            checker,
            key: key.map(|k| k.to_string()),
            explanation,
            ops: ids.iter().map(|id| h.op(*id).clone()).collect(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn note(mut self, n: impl Into<String>) -> Self {
        self.notes.push(n.into());
        self
    }

    /// Ids of the operations in the slice.
    pub fn op_ids(&self) -> Vec<OpId> {
        self.ops.iter().map(|o| o.id).collect()
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated", self.checker)?;
        if let Some(k) = &self.key {
            write!(f, " on key {k}")?;
        }
        writeln!(f, ": {}", self.explanation)?;
        if !self.ops.is_empty() {
            writeln!(f, "operations involved:")?;
            f.write_str(&render_ops(&self.ops))?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// Summary of a checked history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub ops: usize,
    pub reads: usize,
    pub writes: usize,
    pub txns: usize,
    /// Session-state read-backs ([`crate::history::Op::SessionRead`]).
    pub session_reads: usize,
    /// Completed with `Ok` (including client-side rollbacks).
    pub ok: usize,
    /// Definite errors.
    pub failed: usize,
    /// Unknown outcome, indefinite error, or never completed.
    pub unknown: usize,
    /// Ok single-key reads with a backend known to be a replica.
    pub reads_served_by_replica: usize,
    /// Writes with unknown outcome, and whether they were applied.
    pub unknown_writes: Vec<UnknownWrite>,
    /// Linearizability summary (including inconclusive keys).
    pub linearizability: LinReport,
}

impl Report {
    /// Counts operations (no checking).
    pub fn summarize(h: &History) -> Report {
        let mut r = Report {
            ops: h.len(),
            ..Report::default()
        };
        for o in h.ops() {
            match &o.op {
                crate::history::Op::Read { .. } => {
                    r.reads += 1;
                    if o.is_ok() && o.meta.served_by_replica() {
                        r.reads_served_by_replica += 1;
                    }
                }
                crate::history::Op::Write { .. } => r.writes += 1,
                crate::history::Op::Txn { .. } => r.txns += 1,
                crate::history::Op::SessionRead { .. } => r.session_reads += 1,
            }
            if o.is_ok() {
                r.ok += 1;
            } else if o.is_failed() {
                r.failed += 1;
            } else {
                r.unknown += 1;
            }
        }
        r
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ops ({} reads, {} writes, {} txns, {} session reads): {} ok, {} failed, {} unknown; {} reads served by a replica",
            self.ops,
            self.reads,
            self.writes,
            self.txns,
            self.session_reads,
            self.ok,
            self.failed,
            self.unknown,
            self.reads_served_by_replica
        )?;
        let applied = self
            .unknown_writes
            .iter()
            .filter(|u| u.applied == Some(true))
            .count();
        let not_applied = self
            .unknown_writes
            .iter()
            .filter(|u| u.applied == Some(false))
            .count();
        writeln!(
            f,
            "unknown-outcome writes: {} ({} applied, {} not applied, {} undetermined)",
            self.unknown_writes.len(),
            applied,
            not_applied,
            self.unknown_writes.len() - applied - not_applied
        )?;
        let l = &self.linearizability;
        write!(
            f,
            "linearizability: {} keys, {} ops, {} search states",
            l.keys_checked, l.ops_checked, l.states_explored
        )?;
        if !l.inconclusive.is_empty() {
            write!(f, "; INCONCLUSIVE on {} keys:", l.inconclusive.len())?;
            for k in &l.inconclusive {
                write!(f, " {} ({} ops, {} states)", k.key, k.ops, k.states)?;
            }
        }
        writeln!(f)
    }
}

/// Runs every checker (well-formedness, lost/duplicate writes, read your
/// writes, monotonic reads, transactions, linearizability, primary-only
/// statements on replicas, liveness after the heal, reads see acknowledged writes —
/// in that order) and
/// returns the first violation, or a [`Report`].
pub fn check_all(h: &History) -> Result<Report, Violation> {
    check_all_with(h, &LinOptions::default())
}

/// [`check_all`] with explicit linearizability options.
pub fn check_all_with(h: &History, lin: &LinOptions) -> Result<Report, Violation> {
    // The facts are built once and shared by every checker.
    let f = facts::Facts::build(h)?;
    let writes = writes::no_lost_or_duplicate_writes_in(h, &f)?;
    session::read_your_writes_in(h, &f)?;
    session::monotonic_reads_in(h, &f)?;
    txn::transactions_atomic_in(h, &f)?;
    let linearizability = linearizable::linearizable_per_key_in(h, &f, lin)?;
    routing::primary_only_statements_never_reach_a_replica(h)?;
    liveness::service_resumes_after_heal(h)?;
    consistency::reads_see_acknowledged_writes_in(h, &f)?;
    let mut report = Report::summarize(h);
    report.unknown_writes = writes.unknown_writes;
    report.linearizability = linearizability;
    Ok(report)
}

/// Every violation found by the checkers, one per checker at most (useful
/// for reports that want more than the first).
pub fn all_violations(h: &History) -> Vec<Violation> {
    if let Err(v) = facts::Facts::build(h) {
        return vec![v];
    }
    let mut out = Vec::new();
    if let Err(v) = no_lost_or_duplicate_writes(h) {
        out.push(v);
    }
    if let Err(v) = read_your_writes(h) {
        out.push(v);
    }
    if let Err(v) = monotonic_reads(h) {
        out.push(v);
    }
    if let Err(v) = transactions_atomic(h) {
        out.push(v);
    }
    if let Err(v) = linearizable_per_key(h) {
        out.push(v);
    }
    if let Err(v) = primary_only_statements_never_reach_a_replica(h) {
        out.push(v);
    }
    if let Err(v) = service_resumes_after_heal(h) {
        out.push(v);
    }
    if let Err(v) = reads_see_acknowledged_writes(h) {
        out.push(v);
    }
    out
}

pub(crate) fn fmt_val(v: Option<Val>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "nil (absent)".to_string(),
    }
}
