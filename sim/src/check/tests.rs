//! Unit and property tests for the checkers, on hand-written histories.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::*;
use crate::history::{
    Backend, History, Op, OpId, OpMeta, OpResult, Outcome, ReadIsolation, Role, SessionRef, Time,
    TxnOp, TxnOpResult, Val,
};

// ---------------------------------------------------------------------------
// A small builder for hand-written histories.

#[derive(Default)]
struct B {
    h: History,
}

fn sess(c: u32) -> SessionRef {
    SessionRef::new(c, 0)
}

impl B {
    fn new() -> Self {
        B::default()
    }

    fn op(&mut self, c: u32, op: Op, meta: OpMeta, inv: Time, end: Time, out: Outcome) -> OpId {
        let id = self.h.invoke(sess(c), op, meta, inv);
        self.h.complete(id, out, end);
        id
    }

    /// Acknowledged write.
    fn w(&mut self, c: u32, k: &str, v: Val, inv: Time, end: Time) -> OpId {
        self.op(
            c,
            Op::write(k, v),
            OpMeta::primary(),
            inv,
            end,
            Outcome::Ok(OpResult::Written),
        )
    }

    fn w_unknown(&mut self, c: u32, k: &str, v: Val, inv: Time, end: Time) -> OpId {
        self.op(
            c,
            Op::write(k, v),
            OpMeta::primary(),
            inv,
            end,
            Outcome::Unknown,
        )
    }

    fn w_failed(&mut self, c: u32, k: &str, v: Val, inv: Time, end: Time) -> OpId {
        let e = Outcome::Err {
            code: 1290,
            message: "read-only".into(),
            definite: true,
        };
        self.op(c, Op::write(k, v), OpMeta::primary(), inv, end, e)
    }

    /// Read routed to the primary.
    fn r(&mut self, c: u32, k: &str, v: Option<Val>, inv: Time, end: Time) -> OpId {
        self.op(
            c,
            Op::read(k),
            OpMeta::primary().served_by(Backend::primary("db1")),
            inv,
            end,
            Outcome::Ok(OpResult::Read(v)),
        )
    }

    /// Read served by a replica.
    fn rr(&mut self, c: u32, k: &str, v: Option<Val>, inv: Time, end: Time) -> OpId {
        self.op(
            c,
            Op::read(k),
            OpMeta::any().served_by(Backend::replica("db2")),
            inv,
            end,
            Outcome::Ok(OpResult::Read(v)),
        )
    }

    /// Committed transaction: `ops` as (key, Some(v) = write v / None = read),
    /// `reads` the values its reads returned, in order.
    fn txn(
        &mut self,
        c: u32,
        ops: &[(&str, Option<Val>)],
        reads: &[Option<Val>],
        inv: Time,
        end: Time,
    ) -> OpId {
        self.txn_with(c, ops, reads, true, inv, end)
    }

    fn txn_with(
        &mut self,
        c: u32,
        ops: &[(&str, Option<Val>)],
        reads: &[Option<Val>],
        committed: bool,
        inv: Time,
        end: Time,
    ) -> OpId {
        let (tops, results) = txn_parts(ops, reads);
        self.op(
            c,
            Op::txn(tops),
            OpMeta::primary().served_by(Backend::primary("db1")),
            inv,
            end,
            Outcome::Ok(OpResult::Txn { committed, results }),
        )
    }

    fn log(&mut self, entries: &[(&str, &[Val])]) {
        self.h
            .record_applied_log("db1", Role::Primary, map(entries));
    }

    fn rows(&mut self, entries: &[(&str, &[Val])]) {
        self.h
            .record_final_state("db1", Role::Primary, map(entries));
    }
}

fn txn_parts(ops: &[(&str, Option<Val>)], reads: &[Option<Val>]) -> (Vec<TxnOp>, Vec<TxnOpResult>) {
    let mut reads = reads.iter();
    let mut tops = Vec::new();
    let mut results = Vec::new();
    for (k, w) in ops {
        match w {
            Some(v) => {
                tops.push(TxnOp::write(*k, *v));
                results.push(TxnOpResult::Written);
            }
            None => {
                tops.push(TxnOp::read(*k));
                results.push(TxnOpResult::Read(
                    *reads.next().expect("a read result per read"),
                ));
            }
        }
    }
    (tops, results)
}

fn map(entries: &[(&str, &[Val])]) -> BTreeMap<String, Vec<Val>> {
    entries
        .iter()
        .map(|(k, vs)| (k.to_string(), vs.to_vec()))
        .collect()
}

fn ids(v: &Violation) -> Vec<usize> {
    v.op_ids().into_iter().map(|i| i.0).collect()
}

// ---------------------------------------------------------------------------
// Well-formedness.

#[test]
fn value_written_twice_makes_history_ill_formed() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 1);
    b.w(2, "a", 1, 2, 3);
    let v = check_all(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::WellFormed);
    assert_eq!(ids(&v), vec![0, 1]);
}

// ---------------------------------------------------------------------------
// Read your writes.

#[test]
fn stale_read_after_own_write_is_a_read_your_writes_violation() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.rr(2, "a", Some(1), 12, 14); // someone else: irrelevant
    b.rr(1, "a", None, 20, 25); // replica has not caught up
    let v = read_your_writes(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::ReadYourWrites);
    assert_eq!(v.key.as_deref(), Some("a"));
    assert_eq!(ids(&v), vec![0, 2]);
    let text = v.to_string();
    assert!(
        text.starts_with("read_your_writes violated on key a:"),
        "{text}"
    );
    assert!(
        text.contains("#0") && text.contains("#2") && !text.contains("  #1 "),
        "{text}"
    );
}

#[test]
fn read_of_older_written_value_after_own_write_is_a_read_your_writes_violation() {
    let mut b = B::new();
    b.w(2, "a", 1, 0, 5);
    b.w(1, "a", 2, 10, 15);
    b.rr(1, "a", Some(1), 20, 25);
    let v = read_your_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1, 2]);
    assert!(
        v.explanation.contains("acknowledged at t=5"),
        "{}",
        v.explanation
    );
}

#[test]
fn reading_own_write_or_a_newer_value_satisfies_read_your_writes() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.rr(1, "a", Some(1), 11, 12);
    b.w(2, "a", 2, 13, 14);
    b.rr(1, "a", Some(2), 15, 16);
    read_your_writes(&b.h).unwrap();
}

#[test]
fn concurrent_foreign_write_may_be_read_after_own_write() {
    // Client 2's write overlaps client 1's: without a log they are unordered.
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.w(2, "a", 2, 5, 30);
    b.rr(1, "a", Some(2), 40, 45);
    read_your_writes(&b.h).unwrap();
}

#[test]
fn read_your_writes_uses_the_applied_log_order_when_recorded() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.w(2, "a", 2, 5, 30);
    b.rr(1, "a", Some(2), 40, 45);
    b.log(&[("a", &[2, 1])]); // 2 was applied first: reading it is going back
    let v = read_your_writes(&b.h).unwrap_err();
    assert!(
        v.explanation.contains("applied log of db1"),
        "{}",
        v.explanation
    );
    assert_eq!(ids(&v), vec![0, 1, 2]);
}

#[test]
fn other_sessions_and_reconnects_are_not_bound_by_read_your_writes() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.rr(2, "a", None, 20, 25);
    let id =
        b.h.invoke(SessionRef::new(1, 1), Op::read("a"), OpMeta::any(), 30);
    b.h.complete(id, Outcome::Ok(OpResult::Read(None)), 31);
    read_your_writes(&b.h).unwrap();
}

#[test]
fn read_invoked_before_own_write_was_acknowledged_is_not_bound() {
    let mut b = B::new();
    let w = b.h.invoke(sess(1), Op::write("a", 1), OpMeta::primary(), 0);
    let r = b.h.invoke(sess(1), Op::read("a"), OpMeta::any(), 5);
    b.h.complete(w, Outcome::Ok(OpResult::Written), 10);
    b.h.complete(r, Outcome::Ok(OpResult::Read(None)), 12);
    read_your_writes(&b.h).unwrap();
}

#[test]
fn unknown_or_failed_own_write_does_not_bind_read_your_writes() {
    let mut b = B::new();
    b.w_unknown(1, "a", 1, 0, 10);
    b.w_failed(1, "b", 2, 11, 12);
    b.rr(1, "a", None, 20, 25);
    b.rr(1, "b", None, 26, 27);
    read_your_writes(&b.h).unwrap();
}

#[test]
fn stale_read_in_transaction_after_own_committed_txn_is_a_read_your_writes_violation() {
    let mut b = B::new();
    b.txn(1, &[("a", Some(1)), ("b", Some(2))], &[], 0, 10);
    b.txn(1, &[("a", None)], &[None], 20, 30);
    let v = read_your_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1]);
}

// ---------------------------------------------------------------------------
// Monotonic reads.

#[test]
fn going_back_to_an_older_value_is_a_monotonic_reads_violation() {
    let mut b = B::new();
    b.w(2, "a", 1, 0, 5);
    b.w(2, "a", 2, 10, 15);
    b.rr(1, "a", Some(2), 20, 21);
    b.rr(1, "a", Some(1), 22, 23);
    let v = monotonic_reads(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::MonotonicReads);
    assert_eq!(ids(&v), vec![0, 1, 2, 3]);
}

#[test]
fn reading_absent_after_a_value_is_a_monotonic_reads_violation() {
    let mut b = B::new();
    b.w(2, "a", 1, 0, 5);
    b.rr(1, "a", Some(1), 20, 21);
    b.rr(1, "a", None, 22, 23);
    let v = monotonic_reads(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1, 2]);
    assert!(v.explanation.contains("initial value"), "{}", v.explanation);
}

#[test]
fn monotonic_reads_allow_unordered_concurrent_values_and_progress() {
    let mut b = B::new();
    b.w(2, "a", 1, 0, 50);
    b.w(3, "a", 2, 0, 50);
    b.rr(1, "a", None, 1, 2);
    b.rr(1, "a", Some(2), 3, 4);
    b.rr(1, "a", Some(1), 5, 6); // 1 and 2 are concurrent: unordered
    b.rr(1, "a", Some(1), 60, 61);
    monotonic_reads(&b.h).unwrap();
}

#[test]
fn monotonic_reads_are_per_session() {
    let mut b = B::new();
    b.w(2, "a", 1, 0, 5);
    b.rr(1, "a", Some(1), 20, 21);
    b.rr(3, "a", None, 22, 23);
    monotonic_reads(&b.h).unwrap();
}

// ---------------------------------------------------------------------------
// Lost and duplicate writes.

#[test]
fn lost_acknowledged_write_is_a_no_lost_writes_violation() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.w(1, "a", 2, 6, 10);
    b.w(2, "b", 3, 0, 10);
    b.log(&[("a", &[1]), ("b", &[3])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::NoLostOrDuplicateWrites);
    assert_eq!(ids(&v), vec![1]);
    assert!(v.explanation.contains("lost"), "{}", v.explanation);
    assert!(
        v.to_string().contains("note: applied log of db1: a=[1]"),
        "{v}"
    );
}

#[test]
fn lost_acknowledged_write_is_detected_from_final_rows_by_real_time() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.w(2, "a", 2, 6, 10);
    b.rows(&[("a", &[1])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1]);
}

#[test]
fn acknowledged_write_to_a_key_absent_at_the_end_is_lost() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.rows(&[]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0]);
}

#[test]
fn overwritten_write_is_not_lost_in_final_rows() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.w(2, "a", 2, 6, 10);
    b.w(3, "a", 3, 0, 20); // concurrent with both
    b.rows(&[("a", &[2])]);
    let rep = no_lost_or_duplicate_writes(&b.h).unwrap();
    assert_eq!(rep.acked, 3);
    assert!(!rep.used_log);
}

#[test]
fn duplicated_write_in_the_applied_log_is_a_violation() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.w(1, "a", 2, 6, 10);
    b.log(&[("a", &[1, 2, 1])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0]);
    assert!(v.explanation.contains("2 times"), "{}", v.explanation);
}

#[test]
fn duplicated_write_in_a_replica_log_is_a_violation() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.log(&[("a", &[1])]);
    b.h.record_applied_log("db2", Role::Replica, map(&[("a", &[1, 1])]));
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert!(v.explanation.contains("db2"), "{}", v.explanation);
}

#[test]
fn duplicated_row_in_final_state_is_a_violation() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.rows(&[("a", &[1, 1])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0]);
    assert!(
        v.explanation.contains("more than once"),
        "{}",
        v.explanation
    );
}

#[test]
fn definitely_failed_write_that_appears_is_a_violation() {
    let mut b = B::new();
    b.w_failed(1, "a", 1, 0, 5);
    b.log(&[("a", &[1])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0]);

    let mut b = B::new();
    b.w_failed(1, "a", 1, 0, 5);
    b.rr(2, "a", Some(1), 6, 7);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1]);
}

#[test]
fn unknown_write_that_appears_once_is_fine_and_reported_as_applied() {
    let mut b = B::new();
    b.w_unknown(1, "a", 1, 0, 5);
    b.w(2, "a", 2, 6, 8);
    b.w_unknown(3, "a", 3, 0, 5);
    b.log(&[("a", &[1, 2])]);
    let rep = no_lost_or_duplicate_writes(&b.h).unwrap();
    assert!(rep.used_log);
    assert_eq!(rep.acked, 1);
    let got: Vec<(usize, Option<bool>)> = rep
        .unknown_writes
        .iter()
        .map(|u| (u.op.0, u.applied))
        .collect();
    assert_eq!(got, vec![(0, Some(true)), (2, Some(false))]);
}

#[test]
fn unknown_write_applied_twice_is_a_violation() {
    let mut b = B::new();
    b.w_unknown(1, "a", 1, 0, 5);
    b.log(&[("a", &[1, 1])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0]);
}

#[test]
fn observed_unknown_write_missing_from_the_log_is_lost() {
    let mut b = B::new();
    b.w_unknown(1, "a", 1, 0, 5);
    b.rr(2, "a", Some(1), 6, 7);
    b.log(&[("a", &[])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1]);
}

#[test]
fn unknown_write_in_final_rows_or_observed_is_reported_applied_without_log() {
    let mut b = B::new();
    b.w_unknown(1, "a", 1, 0, 5);
    b.w_unknown(1, "b", 2, 0, 5);
    b.w_unknown(1, "c", 3, 0, 5);
    b.rr(2, "b", Some(2), 6, 7);
    b.rows(&[("a", &[1]), ("b", &[2])]);
    let rep = no_lost_or_duplicate_writes(&b.h).unwrap();
    let got: Vec<Option<bool>> = rep.unknown_writes.iter().map(|u| u.applied).collect();
    assert_eq!(got, vec![Some(true), Some(true), None]);
}

#[test]
fn read_of_a_value_nobody_wrote_is_a_violation() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.rr(2, "a", Some(77), 6, 7);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![1]);
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.rr(2, "b", Some(1), 6, 7);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1]);
}

#[test]
fn value_in_log_that_nobody_wrote_is_a_violation() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.log(&[("a", &[1, 9])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert!(
        v.explanation.contains("no operation wrote"),
        "{}",
        v.explanation
    );
}

#[test]
fn register_key_with_two_distinct_rows_is_a_violation() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 5);
    b.w(1, "a", 2, 6, 7);
    b.rows(&[("a", &[1, 2])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1]);
}

#[test]
fn committed_txn_writes_must_be_in_the_log() {
    let mut b = B::new();
    b.txn(1, &[("a", Some(1)), ("b", Some(2))], &[], 0, 5);
    b.log(&[("a", &[1])]);
    let v = no_lost_or_duplicate_writes(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0]);
    assert_eq!(v.key.as_deref(), Some("b"));
}

// ---------------------------------------------------------------------------
// Linearizability.

#[test]
fn stale_primary_read_is_not_linearizable() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.w(2, "a", 2, 20, 30);
    b.r(3, "a", Some(1), 40, 50);
    let v = linearizable_per_key(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::LinearizablePerKey);
    assert_eq!(ids(&v), vec![0, 1, 2]);
}

#[test]
fn value_flip_flop_between_concurrent_writes_is_not_linearizable() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 100);
    b.w(2, "a", 2, 0, 100);
    b.r(3, "a", Some(2), 10, 20);
    b.r(3, "a", Some(1), 30, 40);
    b.r(3, "a", Some(2), 50, 60);
    let v = linearizable_per_key(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1, 2, 3, 4]);
}

#[test]
fn concurrent_reads_may_see_either_side_of_a_write() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.w(2, "a", 2, 15, 40);
    b.r(3, "a", Some(2), 16, 20);
    b.r(4, "a", Some(1), 18, 30);
    let v = linearizable_per_key(&b.h);
    // #2 saw 2 and completed at 20, before... #3 invoked at 18: concurrent, so
    // #3 (=1) can be ordered before #2 (=2): linearizable.
    v.unwrap();
    let mut b2 = B::new();
    b2.w(1, "a", 1, 0, 10);
    b2.w(2, "a", 2, 15, 40);
    b2.r(3, "a", Some(2), 16, 20);
    b2.r(4, "a", Some(1), 21, 30); // strictly after a read of the new value
    assert!(linearizable_per_key(&b2.h).is_err());
}

#[test]
fn events_at_the_same_instant_are_concurrent() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.r(2, "a", None, 10, 12);
    linearizable_per_key(&b.h).unwrap();
}

#[test]
fn unknown_write_may_take_effect_late_or_never() {
    let mut b = B::new();
    b.w_unknown(1, "a", 1, 0, 5);
    b.w(2, "a", 2, 10, 20);
    b.r(3, "a", Some(2), 30, 40);
    b.r(3, "a", Some(1), 100, 110); // the unknown write landed late
    b.w_unknown(4, "a", 3, 0, 5); // never observed: never happened
    b.r(3, "a", Some(1), 120, 130);
    let rep = linearizable_per_key(&b.h).unwrap();
    assert_eq!(rep.keys_checked, 1);
    assert_eq!(rep.ops_checked, 5);
    assert!(rep.is_conclusive());
}

#[test]
fn unknown_write_cannot_take_effect_before_its_invocation() {
    let mut b = B::new();
    b.r(3, "a", Some(1), 0, 5);
    b.w_unknown(1, "a", 1, 10, 20);
    assert!(linearizable_per_key(&b.h).is_err());
}

#[test]
fn read_of_failed_write_value_is_not_linearizable() {
    let mut b = B::new();
    b.w_failed(1, "a", 1, 0, 5);
    b.r(2, "a", Some(1), 6, 7);
    let v = linearizable_per_key(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1]);
    assert!(
        v.explanation.contains("failed definitely"),
        "{}",
        v.explanation
    );
}

#[test]
fn replica_reads_are_not_held_to_linearizability() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.w(2, "a", 2, 20, 30);
    b.rr(3, "a", Some(1), 40, 50);
    linearizable_per_key(&b.h).unwrap();
}

#[test]
fn final_state_older_than_last_acknowledged_write_is_not_linearizable() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.w(2, "a", 2, 20, 30);
    b.rows(&[("a", &[1])]);
    let v = linearizable_per_key(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1]);
    assert!(
        v.to_string()
            .contains("note: final value of a on the primary"),
        "{v}"
    );
    // Without the final state the history is fine.
    let opts = LinOptions {
        include_final_state: false,
        ..LinOptions::default()
    };
    linearizable_per_key_with(&b.h, &opts).unwrap();
}

#[test]
fn unknown_write_seen_only_in_final_state_is_linearizable() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.w_unknown(2, "a", 2, 0, 5);
    b.r(3, "a", Some(1), 20, 30);
    b.rows(&[("a", &[2])]);
    linearizable_per_key(&b.h).unwrap();
}

#[test]
fn transaction_writes_and_reads_take_part_in_linearizability() {
    let mut b = B::new();
    b.txn(1, &[("a", Some(1)), ("b", Some(2))], &[], 0, 10);
    b.txn(2, &[("a", None), ("b", None)], &[Some(1), None], 20, 30);
    let v = linearizable_per_key(&b.h).unwrap_err();
    assert_eq!(v.key.as_deref(), Some("b"));
    assert_eq!(ids(&v), vec![0, 1]);
}

#[test]
fn violation_slice_is_shrunk_to_the_operations_involved() {
    let mut b = B::new();
    let mut t = 0;
    let mut v = 1;
    for i in 0..40u32 {
        b.w(i % 4, "a", v, t, t + 5);
        b.r(4 + i % 3, "a", Some(v), t + 6, t + 8);
        t += 10;
        v += 1;
    }
    b.r(9, "a", Some(3), t, t + 5); // stale
    for _ in 0..10 {
        b.w(1, "a", v, t + 10, t + 15);
        t += 20;
        v += 1;
    }
    let viol = linearizable_per_key(&b.h).unwrap_err();
    assert!(viol.ops.len() <= 3, "slice not minimal:\n{viol}");
    assert!(viol.op_ids().contains(&OpId(80)), "{viol}");
}

#[test]
fn search_budget_exhaustion_is_inconclusive_not_a_violation() {
    let mut b = B::new();
    for i in 0..12u32 {
        b.w(i, "a", i as Val + 1, 0, 100);
    }
    b.r(20, "a", Some(1), 50, 60);
    let opts = LinOptions {
        max_states_per_key: 10,
        ..LinOptions::default()
    };
    let rep = linearizable_per_key_with(&b.h, &opts).unwrap();
    assert_eq!(rep.inconclusive.len(), 1);
    assert_eq!(rep.inconclusive[0].key, "a");
    assert!(!rep.is_conclusive());
    // With the default budget it is decided.
    assert!(linearizable_per_key(&b.h).unwrap().is_conclusive());
}

#[test]
fn linearizability_search_handles_many_concurrent_writes_quickly() {
    // 24 mutually concurrent writes and reads that pin an order: the memo keeps
    // this polynomial.
    let mut b = B::new();
    for i in 0..24u32 {
        b.w(i, "a", i as Val + 1, 0, 1000);
    }
    for i in 0..24u64 {
        b.r(100, "a", Some(i + 1), 10 + 2 * i, 11 + 2 * i);
    }
    let rep = linearizable_per_key(&b.h).unwrap();
    assert!(rep.is_conclusive());
}

// ---------------------------------------------------------------------------
// Transactions.

#[test]
fn partially_visible_txn_is_a_transactions_atomic_violation() {
    let mut b = B::new();
    b.txn(1, &[("a", Some(1)), ("b", Some(2))], &[], 0, 10);
    b.txn(2, &[("a", None), ("b", None)], &[Some(1), None], 20, 30);
    let v = transactions_atomic(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::TransactionsAtomic);
    assert_eq!(ids(&v), vec![0, 1]);
    assert!(v.explanation.contains("all at once"), "{}", v.explanation);
}

#[test]
fn partially_visible_txn_with_older_written_value_is_a_violation() {
    let mut b = B::new();
    b.w(3, "b", 7, 0, 1);
    b.txn(1, &[("a", Some(1)), ("b", Some(2))], &[], 5, 10);
    b.txn(2, &[("b", None), ("a", None)], &[Some(7), Some(1)], 20, 30);
    let v = transactions_atomic(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1, 2]);
}

#[test]
fn fully_visible_or_invisible_txn_and_newer_values_are_atomic() {
    let mut b = B::new();
    b.txn(1, &[("a", Some(1)), ("b", Some(2))], &[], 0, 10);
    b.txn(2, &[("a", None), ("b", None)], &[None, None], 2, 4); // before
    b.txn(2, &[("a", None), ("b", None)], &[Some(1), Some(2)], 20, 30);
    b.w(3, "b", 3, 31, 32);
    b.txn(2, &[("a", None), ("b", None)], &[Some(1), Some(3)], 40, 50);
    transactions_atomic(&b.h).unwrap();
}

#[test]
fn read_committed_readers_are_only_checked_after_seeing_the_write() {
    let mut b = B::new();
    b.txn(1, &[("a", Some(1)), ("b", Some(2))], &[], 0, 10);
    // Reads b (old) first, then a (new): fine under READ COMMITTED.
    b.txn(2, &[("b", None), ("a", None)], &[None, Some(1)], 5, 30);
    assert!(transactions_atomic(&b.h).is_err());
    b.h.set_read_isolation(ReadIsolation::ReadCommitted);
    transactions_atomic(&b.h).unwrap();
}

#[test]
fn aborted_txn_write_visible_to_a_reader_is_a_violation() {
    let mut b = B::new();
    b.txn_with(1, &[("a", Some(1))], &[], false, 0, 10);
    b.rr(2, "a", Some(1), 5, 6);
    let v = transactions_atomic(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0, 1]);
    assert!(v.explanation.contains("aborted"), "{}", v.explanation);
}

#[test]
fn aborted_txn_write_in_final_rows_is_a_violation() {
    let mut b = B::new();
    let (ops, _) = txn_parts(&[("a", Some(1))], &[]);
    let e = Outcome::Err {
        code: 1213,
        message: "deadlock".into(),
        definite: true,
    };
    b.op(1, Op::txn(ops), OpMeta::primary(), 0, 10, e);
    b.rows(&[("a", &[1])]);
    let v = transactions_atomic(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0]);
}

#[test]
fn txn_split_across_backends_is_a_violation() {
    let mut b = B::new();
    let (ops, results) = txn_parts(&[("a", Some(1)), ("b", None)], &[None]);
    let meta = OpMeta::primary()
        .served_by(Backend::primary("db1"))
        .served_by(Backend::replica("db2"));
    b.op(
        1,
        Op::txn(ops),
        meta,
        0,
        10,
        Outcome::Ok(OpResult::Txn {
            committed: true,
            results,
        }),
    );
    let v = transactions_atomic(&b.h).unwrap_err();
    assert_eq!(ids(&v), vec![0]);
    assert!(v.explanation.contains("db1, db2"), "{}", v.explanation);
}

#[test]
fn txn_must_read_its_own_writes() {
    let mut b = B::new();
    b.txn(1, &[("a", Some(1)), ("a", None)], &[None], 0, 10);
    let v = transactions_atomic(&b.h).unwrap_err();
    assert!(v.explanation.contains("own writes"), "{}", v.explanation);
    let mut b = B::new();
    b.txn(
        1,
        &[("a", Some(1)), ("a", Some(2)), ("a", None)],
        &[Some(2)],
        0,
        10,
    );
    transactions_atomic(&b.h).unwrap();
}

#[test]
fn intermediate_txn_value_visible_to_others_is_a_violation() {
    let mut b = B::new();
    b.txn(1, &[("a", Some(1)), ("a", Some(2))], &[], 0, 10);
    b.rr(2, "a", Some(1), 20, 21);
    let v = transactions_atomic(&b.h).unwrap_err();
    assert!(v.explanation.contains("intermediate"), "{}", v.explanation);
}

#[test]
fn partially_applied_txn_in_the_log_is_a_violation() {
    let mut b = B::new();
    let (ops, _) = txn_parts(&[("a", Some(1)), ("b", Some(2))], &[]);
    b.op(1, Op::txn(ops), OpMeta::primary(), 0, 10, Outcome::Unknown);
    b.log(&[("a", &[1]), ("b", &[])]);
    let v = transactions_atomic(&b.h).unwrap_err();
    assert!(
        v.explanation.contains("partially applied"),
        "{}",
        v.explanation
    );
    // ...whereas none applied is fine for an unknown transaction.
    let mut b2 = B::new();
    let (ops, _) = txn_parts(&[("a", Some(1)), ("b", Some(2))], &[]);
    b2.op(1, Op::txn(ops), OpMeta::primary(), 0, 10, Outcome::Unknown);
    b2.log(&[("a", &[]), ("b", &[])]);
    transactions_atomic(&b2.h).unwrap();
    no_lost_or_duplicate_writes(&b2.h).unwrap();
}

// ---------------------------------------------------------------------------
// check_all and the report.

#[test]
fn check_all_summarises_a_clean_history() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.rr(1, "a", Some(1), 11, 12);
    b.r(2, "a", Some(1), 13, 14);
    b.w_unknown(2, "b", 2, 15, 20);
    b.w_failed(3, "b", 3, 15, 20);
    b.txn(3, &[("a", Some(4)), ("b", None)], &[Some(2)], 21, 30);
    b.log(&[("a", &[1, 4]), ("b", &[2])]);
    b.rows(&[("a", &[4]), ("b", &[2])]);
    let rep = check_all(&b.h).unwrap();
    assert_eq!((rep.ops, rep.reads, rep.writes, rep.txns), (6, 2, 3, 1));
    assert_eq!((rep.ok, rep.failed, rep.unknown), (4, 1, 1));
    assert_eq!(rep.reads_served_by_replica, 1);
    assert_eq!(rep.unknown_writes.len(), 1);
    assert_eq!(rep.unknown_writes[0].applied, Some(true));
    assert_eq!(rep.linearizability.keys_checked, 2);
    let text = rep.to_string();
    assert!(text.contains("6 ops (2 reads, 3 writes, 1 txns, 0 session reads): 4 ok, 1 failed, 1 unknown; 1 reads served by a replica"), "{text}");
    assert!(
        text.contains("unknown-outcome writes: 1 (1 applied"),
        "{text}"
    );
}

#[test]
fn check_all_reports_the_first_violation_and_all_violations_collects_them() {
    let mut b = B::new();
    b.w(1, "a", 1, 0, 10);
    b.w(1, "a", 2, 11, 20);
    b.r(1, "a", Some(1), 30, 40); // stale: RYW and linearizability
    let v = check_all(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::ReadYourWrites);
    let all: Vec<Checker> = all_violations(&b.h).iter().map(|v| v.checker).collect();
    assert_eq!(
        all,
        vec![Checker::ReadYourWrites, Checker::LinearizablePerKey]
    );
}

// ---------------------------------------------------------------------------
// Generated histories.

/// Runs `clients` sessions of `ops_per_client` operations over `keys` keys
/// against a linearizable register (each operation takes effect at a random
/// point inside its interval), recording the history, the final rows and the
/// applied log. `unknown_pct` of writes get an unknown outcome (half of them
/// applied, possibly after the client gave up).
fn generate(
    seed: u64,
    clients: u32,
    ops_per_client: usize,
    keys: usize,
    unknown_pct: u32,
) -> History {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    struct Planned {
        client: u32,
        op: Op,
        inv: Time,
        end: Time,
        point: Time,
        unknown: bool,
        applied: bool,
    }
    let mut planned = Vec::new();
    let mut next_val: Val = 1;
    for c in 0..clients {
        let mut t: Time = rng.gen_range(0..20);
        for _ in 0..ops_per_client {
            let key = format!("k{}", rng.gen_range(0..keys));
            let dur = rng.gen_range(1..60);
            let write = rng.gen_bool(0.5);
            let unknown = write && rng.gen_range(0..100) < unknown_pct;
            let applied = !unknown || rng.gen_bool(0.5);
            let point = if unknown {
                t + rng.gen_range(0..2 * dur)
            } else {
                t + rng.gen_range(0..=dur)
            };
            let op = if write {
                next_val += 1;
                Op::write(key, next_val)
            } else {
                Op::read(key)
            };
            planned.push(Planned {
                client: c,
                op,
                inv: t,
                end: t + dur,
                point,
                unknown,
                applied,
            });
            t += dur + rng.gen_range(0..15);
        }
    }
    // Apply at the linearization points.
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| (planned[i].point, i));
    let mut reg: BTreeMap<String, Val> = BTreeMap::new();
    let mut log: BTreeMap<String, Vec<Val>> = BTreeMap::new();
    let mut results: Vec<Option<Val>> = vec![None; planned.len()];
    for &i in &order {
        let p = &planned[i];
        match &p.op {
            Op::Write { key, value } if p.applied => {
                reg.insert(key.clone(), *value);
                log.entry(key.clone()).or_default().push(*value);
            }
            Op::Read { key } => results[i] = reg.get(key).copied(),
            _ => {}
        }
    }
    // Record in invocation order, completing in time order.
    let mut h = History::new();
    let mut events: Vec<(Time, bool, usize)> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        events.push((p.inv, false, i));
        events.push((p.end, true, i));
    }
    events.sort();
    let mut ids = vec![OpId(0); planned.len()];
    for (t, is_end, i) in events {
        let p = &planned[i];
        if !is_end {
            ids[i] = h.invoke(
                SessionRef::new(p.client, 0),
                p.op.clone(),
                OpMeta::primary(),
                t,
            );
        } else {
            let out = match &p.op {
                Op::Write { .. } if p.unknown => Outcome::Unknown,
                Op::Write { .. } => Outcome::Ok(OpResult::Written),
                _ => Outcome::Ok(OpResult::Read(results[i])),
            };
            h.complete(ids[i], out, t);
        }
    }
    let rows: BTreeMap<String, Vec<Val>> = reg.into_iter().map(|(k, v)| (k, vec![v])).collect();
    h.record_final_state("db1", Role::Primary, rows);
    h.record_applied_log("db1", Role::Primary, log);
    h
}

#[test]
fn generated_correct_histories_pass_every_checker() {
    for seed in 0..20 {
        let h = generate(seed, 8, 40, 4, 10);
        match check_all(&h) {
            Ok(rep) => assert!(rep.linearizability.is_conclusive(), "seed {seed}: {rep}"),
            Err(v) => panic!("seed {seed}: {v}"),
        }
    }
}

#[test]
fn generated_history_hash_is_deterministic() {
    assert_eq!(
        generate(7, 4, 20, 3, 10).hash(),
        generate(7, 4, 20, 3, 10).hash()
    );
    assert_ne!(
        generate(7, 4, 20, 3, 10).hash(),
        generate(8, 4, 20, 3, 10).hash()
    );
}

#[test]
fn linearizability_of_16_clients_by_200_ops_is_conclusive() {
    let h = generate(42, 16, 200, 50, 5);
    let rep = check_all(&h).unwrap();
    assert!(rep.linearizability.is_conclusive(), "{rep}");
}

/// Timing: `cargo test -p sim --release --lib check::tests::perf -- --ignored --nocapture`.
#[test]
#[ignore]
fn perf_linearizability_16x200() {
    for (keys, unknown) in [(50, 5), (5, 5), (1, 5), (1, 20)] {
        let h = generate(42, 16, 200, keys, unknown);
        let start = std::time::Instant::now();
        let rep = linearizable_per_key(&h).unwrap();
        let lin = start.elapsed();
        let start = std::time::Instant::now();
        check_all(&h).unwrap();
        let all = start.elapsed();
        println!(
            "16x200 ops, {keys} keys, {unknown}% unknown writes: linearizable_per_key {lin:?} ({} ops, {} states, conclusive: {}); check_all {all:?}",
            rep.ops_checked,
            rep.states_explored,
            rep.is_conclusive()
        );
    }
}

/// A sequential register history: (is_write, key) steps, values and read
/// results computed from a correct register.
fn sequential(steps: &[(bool, u8)]) -> (History, Vec<OpId>) {
    let mut h = History::new();
    let mut reg: BTreeMap<String, Val> = BTreeMap::new();
    let mut reads = Vec::new();
    let mut t = 0;
    for (i, &(write, k)) in steps.iter().enumerate() {
        let key = format!("k{k}");
        let (op, res) = if write {
            let v = i as Val + 1;
            reg.insert(key.clone(), v);
            (Op::write(key, v), OpResult::Written)
        } else {
            let v = reg.get(&key).copied();
            (Op::read(key), OpResult::Read(v))
        };
        let id = h.invoke(SessionRef::new(i as u32 % 3, 0), op, OpMeta::primary(), t);
        h.complete(id, Outcome::Ok(res), t + 1);
        if !write {
            reads.push(id);
        }
        t += 2;
    }
    (h, reads)
}

proptest! {
    #[test]
    fn check_proptest_sequential_register_histories_are_linearizable(
        steps in proptest::collection::vec((any::<bool>(), 0u8..3), 0..60)
    ) {
        let (h, _) = sequential(&steps);
        let rep = linearizable_per_key(&h);
        prop_assert!(rep.is_ok(), "{}", rep.unwrap_err());
        prop_assert!(check_all(&h).is_ok());
    }

    #[test]
    fn check_proptest_corrupted_read_breaks_linearizability(
        steps in proptest::collection::vec((any::<bool>(), 0u8..3), 1..60),
        pick in any::<proptest::sample::Index>(),
        choice in 0usize..1000,
    ) {
        let (h, reads) = sequential(&steps);
        prop_assume!(!reads.is_empty());
        let victim = reads[pick.index(reads.len())];
        let op = h.op(victim).clone();
        let Some(OpResult::Read(actual)) = op.ok_result().cloned() else { unreachable!() };
        // Any other value: absent, another written value (of any key), or
        // one never written.
        let mut options: Vec<Option<Val>> = vec![None, Some(10_000)];
        options.extend(h.ops().iter().filter_map(|o| match o.op { Op::Write { value, .. } => Some(Some(value)), _ => None }));
        options.retain(|v| *v != actual);
        let wrong = options[choice % options.len()];
        // Rebuild with the corrupted read.
        let mut h2 = History::new();
        for o in h.ops() {
            let id = h2.invoke(o.session, o.op.clone(), o.meta.clone(), o.invoked_at);
            let c = o.completion.clone().unwrap();
            let out = if id == victim { Outcome::Ok(OpResult::Read(wrong)) } else { c.outcome };
            h2.complete(id, out, c.at);
        }
        let res = linearizable_per_key(&h2);
        prop_assert!(res.is_err(), "corrupting {} to {:?} went unnoticed", victim, wrong);
        let v = res.unwrap_err();
        prop_assert!(v.op_ids().contains(&victim), "slice misses the corrupted read: {}", v);
    }

    #[test]
    fn check_proptest_concurrent_linearizable_histories_pass(seed in any::<u64>()) {
        let h = generate(seed, 5, 12, 2, 20);
        let res = check_all(&h);
        prop_assert!(res.is_ok(), "{}", res.unwrap_err());
    }

    #[test]
    fn check_proptest_raw_search_agrees_on_sequential_histories(
        steps in proptest::collection::vec(any::<bool>(), 0..40)
    ) {
        let mut reg: Option<Val> = None;
        let ops: Vec<(Time, Time, bool, Option<Val>)> = steps.iter().enumerate().map(|(i, &w)| {
            let t = 2 * i as Time;
            if w { reg = Some(i as Val + 1); (t, t + 1, true, reg) } else { (t, t + 1, false, reg) }
        }).collect();
        prop_assert_eq!(super::linearizable::testing::check_raw(&ops, 100_000), Some(true));
    }
}

// ---------------------------------------------------------------------------
// Cross-check of the search against brute force on small random histories.

#[derive(Clone, Debug)]
struct SmallOp {
    inv: Time,
    end: Time,
    /// Some(v): write of v; None: read.
    write: Option<Val>,
    /// For reads: the value returned.
    read: Option<Val>,
    unknown: bool,
}

/// Brute force: some subset of the unknown writes takes effect, and the
/// chosen operations have a total order that respects real time (a before b
/// whenever a completed strictly before b was invoked; unknown writes never
/// complete) in which every read returns the latest write (or absent).
fn brute_force(ops: &[SmallOp]) -> bool {
    fn rec(ops: &[SmallOp], chosen: &[bool], done: &mut Vec<bool>, reg: Option<Val>) -> bool {
        let pending: Vec<usize> = (0..ops.len()).filter(|&i| chosen[i] && !done[i]).collect();
        if pending.is_empty() {
            return true;
        }
        for &i in &pending {
            let blocked = pending
                .iter()
                .any(|&j| j != i && !ops[j].unknown && ops[j].end < ops[i].inv);
            if blocked {
                continue;
            }
            let next = match ops[i].write {
                Some(v) => Some(v),
                None if ops[i].read == reg => reg,
                None => continue,
            };
            done[i] = true;
            let ok = rec(ops, chosen, done, next);
            done[i] = false;
            if ok {
                return true;
            }
        }
        false
    }
    let unknown: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].unknown).collect();
    for mask in 0u32..(1 << unknown.len()) {
        let mut chosen = vec![true; ops.len()];
        for (b, &i) in unknown.iter().enumerate() {
            chosen[i] = mask & (1 << b) != 0;
        }
        if rec(ops, &chosen, &mut vec![false; ops.len()], None) {
            return true;
        }
    }
    false
}

fn small_history(ops: &[SmallOp]) -> History {
    let mut h = History::new();
    for (i, o) in ops.iter().enumerate() {
        let op = match o.write {
            Some(v) => Op::write("k", v),
            None => Op::read("k"),
        };
        let id = h.invoke(SessionRef::new(i as u32, 0), op, OpMeta::primary(), o.inv);
        let out = match (o.write, o.unknown) {
            (Some(_), true) => Outcome::Unknown,
            (Some(_), false) => Outcome::Ok(OpResult::Written),
            (None, _) => Outcome::Ok(OpResult::Read(o.read)),
        };
        h.complete(id, out, o.end);
    }
    h
}

fn small_ops() -> impl Strategy<Value = Vec<SmallOp>> {
    proptest::collection::vec((0u64..12, 0u64..6, any::<bool>(), 0u64..5, 0u32..4), 1..8).prop_map(
        |raw| {
            let writes = raw.iter().filter(|r| r.2).count() as u64;
            let mut next = 0;
            raw.into_iter()
                .map(|(inv, len, is_write, pick, unk)| {
                    if is_write {
                        next += 1;
                        SmallOp {
                            inv,
                            end: inv + len,
                            write: Some(next),
                            read: None,
                            unknown: unk == 0,
                        }
                    } else {
                        // Read one of the written values or absent.
                        let v = pick % (writes + 1);
                        SmallOp {
                            inv,
                            end: inv + len,
                            write: None,
                            read: (v > 0).then_some(v),
                            unknown: false,
                        }
                    }
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn check_proptest_search_agrees_with_brute_force(ops in small_ops()) {
        let expected = brute_force(&ops);
        let h = small_history(&ops);
        let got = linearizable_per_key(&h);
        prop_assert_eq!(got.is_ok(), expected, "history:\n{}\nresult: {:?}", h.render_all(), got.err().map(|v| v.to_string()));
        if let Ok(rep) = got {
            prop_assert!(rep.is_conclusive());
        }
    }
}

// ---------------------------------------------------------------------------
// Eventually consistent reads (a replica served them through a splitting proxy).

/// Read through the proxy that a replica served: eventual.
fn read_eventual(b: &mut B, c: u32, k: &str, v: Option<Val>, inv: Time, end: Time) -> OpId {
    let id = b.op(c, Op::read(k), OpMeta::primary().served_by(Backend::replica("db2")), inv, end, Outcome::Ok(OpResult::Read(v)));
    b.h.mark_eventual(id);
    id
}

#[test]
fn stale_replica_read_through_a_splitting_proxy_is_not_a_session_or_linearizability_violation() {
    let mut b = B::new();
    b.w(1, "x", 1, 0, 10);
    b.w(1, "x", 2, 20, 30);
    // The same session reads the older value from a replica after both writes.
    read_eventual(&mut b, 1, "x", Some(1), 40, 50);
    // ... and then the initial absence, going back further.
    read_eventual(&mut b, 1, "x", None, 60, 70);
    b.log(&[("x", &[1, 2])]);
    b.rows(&[("x", &[2])]);
    assert!(check_all(&b.h).is_ok(), "{:?}", check_all(&b.h).err());
}

#[test]
fn the_same_stale_read_served_by_the_primary_is_a_violation() {
    let mut b = B::new();
    b.w(1, "x", 1, 0, 10);
    b.w(1, "x", 2, 20, 30);
    b.r(1, "x", Some(1), 40, 50);
    b.log(&[("x", &[1, 2])]);
    b.rows(&[("x", &[2])]);
    assert_eq!(check_all(&b.h).unwrap_err().checker, Checker::ReadYourWrites);
}

#[test]
fn eventual_read_of_a_value_no_write_produced_is_a_violation() {
    let mut b = B::new();
    b.w(1, "x", 1, 0, 10);
    read_eventual(&mut b, 2, "x", Some(99), 40, 50);
    let v = check_all(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::NoLostOrDuplicateWrites, "{v}");
}

#[test]
fn eventual_read_of_a_failed_write_is_a_violation() {
    let mut b = B::new();
    b.w_failed(1, "x", 5, 0, 10);
    read_eventual(&mut b, 2, "x", Some(5), 40, 50);
    assert!(check_all(&b.h).is_err());
}

#[test]
fn eventual_read_of_an_aborted_transactions_value_is_a_violation() {
    let mut b = B::new();
    let (ops, results) = txn_parts(&[("x", Some(7))], &[]);
    b.op(1, Op::txn(ops), OpMeta::primary(), 0, 10, Outcome::Ok(OpResult::Txn { committed: false, results }));
    read_eventual(&mut b, 2, "x", Some(7), 40, 50);
    assert!(check_all(&b.h).is_err());
}

// ---------------------------------------------------------------------------
// primary_only_statements_never_reach_a_replica

fn replica_stmt(at: Time, kind: crate::history::PrimaryOnlyKind, sql: &str) -> crate::history::ReplicaStatement {
    crate::history::ReplicaStatement { at, kind, sql: sql.into(), error: Some(1290) }
}

#[test]
fn write_on_a_node_that_was_always_a_replica_is_a_violation() {
    let mut b = B::new();
    let w = b.w(1, "x", 4294967297, 0, 10);
    b.h.set_detection_window(5_000);
    b.h.record_node_facts(
        "db1",
        crate::history::NodeFacts {
            on_replica: vec![replica_stmt(5, crate::history::PrimaryOnlyKind::Write, "INSERT INTO kv (k, v, n) VALUES ('x', 4294967297, 1)")],
            ..Default::default()
        },
    );
    let v = primary_only_statements_never_reach_a_replica(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::PrimaryOnlyOnReplica);
    assert!(v.explanation.contains("db1") && v.explanation.contains("from the start of the run"), "{v}");
    // The operation that sent it is named by its unique value.
    assert_eq!(v.op_ids(), vec![w]);
    assert_eq!(check_all(&b.h).unwrap_err().checker, Checker::PrimaryOnlyOnReplica);
}

#[test]
fn session_bound_read_on_a_replica_is_a_violation() {
    let mut b = B::new();
    b.h.set_detection_window(5_000);
    b.h.record_node_facts(
        "db2",
        crate::history::NodeFacts {
            role_changes: vec![(1_000, true)],
            on_replica: vec![replica_stmt(9_000, crate::history::PrimaryOnlyKind::SessionBound, "SELECT @sim_v, @@server_id, @@read_only")],
            ..Default::default()
        },
    );
    let v = primary_only_statements_never_reach_a_replica(&b.h).unwrap_err();
    assert!(v.explanation.contains("session-bound statement") && v.explanation.contains("since t=1000"), "{v}");
}

#[test]
fn write_within_the_detection_window_after_becoming_a_replica_is_allowed() {
    let mut b = B::new();
    b.h.set_detection_window(5_000);
    b.h.record_node_facts(
        "db0",
        crate::history::NodeFacts {
            role_changes: vec![(10_000, true)],
            on_replica: vec![replica_stmt(14_999, crate::history::PrimaryOnlyKind::Write, "INSERT …")],
            ..Default::default()
        },
    );
    assert!(primary_only_statements_never_reach_a_replica(&b.h).is_ok());
    // One microsecond later it is past the window.
    b.h.record_node_facts(
        "db0",
        crate::history::NodeFacts {
            role_changes: vec![(10_000, true)],
            on_replica: vec![replica_stmt(15_000, crate::history::PrimaryOnlyKind::Write, "INSERT …")],
            ..Default::default()
        },
    );
    assert!(primary_only_statements_never_reach_a_replica(&b.h).is_err());
}

#[test]
fn the_window_counts_from_the_latest_time_the_node_started_replicating() {
    let mut b = B::new();
    b.h.set_detection_window(5_000);
    // Replica from the start, promoted at t=2000, a replica again at t=20000.
    b.h.record_node_facts(
        "db1",
        crate::history::NodeFacts {
            role_changes: vec![(2_000, false), (20_000, true)],
            on_replica: vec![replica_stmt(21_000, crate::history::PrimaryOnlyKind::Write, "UPDATE …")],
            ..Default::default()
        },
    );
    assert!(primary_only_statements_never_reach_a_replica(&b.h).is_ok());
    assert_eq!(b.h.node_facts()["db1"].replica_since(21_000, true), Some(Some(20_000)));
    assert_eq!(b.h.node_facts()["db1"].replica_since(3_000, true), None);
    assert_eq!(b.h.node_facts()["db1"].replica_since(1_000, true), Some(None));
}

#[test]
fn without_a_detection_window_every_primary_only_statement_on_a_replica_is_a_violation() {
    let mut b = B::new();
    b.h.record_node_facts(
        "db0",
        crate::history::NodeFacts {
            role_changes: vec![(10_000, true)],
            on_replica: vec![replica_stmt(10_001, crate::history::PrimaryOnlyKind::Write, "INSERT …")],
            ..Default::default()
        },
    );
    assert!(primary_only_statements_never_reach_a_replica(&b.h).is_err());
}

// ---------------------------------------------------------------------------
// service_resumes_after_heal

fn healed_at(b: &mut B, heal_at: Time, bound: Time) {
    b.h.set_liveness(crate::history::Liveness { heal_at, bound });
}

#[test]
fn no_write_succeeding_after_the_heal_is_a_liveness_violation() {
    let mut b = B::new();
    b.w(1, "x", 1, 0, 10);
    healed_at(&mut b, 100, 1_000);
    b.w_failed(2, "p2", 2, 150, 160);
    b.w_failed(2, "p2", 3, 300, 310);
    b.r(2, "p2", None, 320, 330);
    let v = service_resumes_after_heal(&b.h).unwrap_err();
    assert_eq!(v.checker, Checker::Liveness);
    assert!(v.explanation.contains("no write") && v.explanation.contains("1290"), "{v}");
    assert_eq!(v.ops.len(), 2);
    assert_eq!(check_all(&b.h).unwrap_err().checker, Checker::Liveness);
}

#[test]
fn no_read_succeeding_after_the_heal_is_a_liveness_violation() {
    let mut b = B::new();
    healed_at(&mut b, 100, 1_000);
    b.w(2, "p2", 2, 150, 160);
    b.op(2, Op::read("p2"), OpMeta::primary(), 170, 3_170, Outcome::Unknown);
    let v = service_resumes_after_heal(&b.h).unwrap_err();
    assert!(v.explanation.contains("no read"), "{v}");
}

#[test]
fn a_write_and_a_read_within_the_bound_after_the_heal_satisfy_liveness() {
    let mut b = B::new();
    healed_at(&mut b, 100, 1_000);
    b.w_failed(2, "p2", 1, 150, 160);
    b.w(2, "p2", 2, 900, 1_100);
    // A committed transaction with a read counts as a read.
    let (ops, results) = txn_parts(&[("p2", None)], &[Some(2)]);
    b.op(3, Op::txn(ops), OpMeta::primary(), 1_000, 1_050, Outcome::Ok(OpResult::Txn { committed: true, results }));
    assert!(service_resumes_after_heal(&b.h).is_ok());
}

#[test]
fn success_only_after_the_bound_is_a_liveness_violation() {
    let mut b = B::new();
    healed_at(&mut b, 100, 1_000);
    b.w(2, "p2", 2, 900, 1_101);
    b.r(2, "p2", Some(2), 1_200, 1_210);
    let v = service_resumes_after_heal(&b.h).unwrap_err();
    assert!(v.explanation.contains("the first at t=1101"), "{v}");
}

#[test]
fn operations_before_the_heal_and_direct_reads_do_not_count_for_liveness() {
    let mut b = B::new();
    healed_at(&mut b, 100, 1_000);
    // Invoked before the heal, completed after it.
    b.w(1, "x", 1, 50, 200);
    b.r(1, "x", Some(1), 60, 210);
    // A read on a direct connection to a replica, after the heal.
    b.op(4, Op::read("x"), OpMeta::direct().served_by(Backend::replica("db1")), 300, 310, Outcome::Ok(OpResult::Read(Some(1))));
    b.w(2, "p2", 2, 400, 410);
    let v = service_resumes_after_heal(&b.h).unwrap_err();
    assert!(v.explanation.contains("no read"), "{v}");
}

#[test]
fn a_rolled_back_transaction_is_not_a_successful_write() {
    let mut b = B::new();
    healed_at(&mut b, 100, 1_000);
    let (ops, results) = txn_parts(&[("p2", Some(5)), ("p3", None)], &[None]);
    b.op(2, Op::txn(ops), OpMeta::primary(), 150, 160, Outcome::Ok(OpResult::Txn { committed: false, results }));
    let v = service_resumes_after_heal(&b.h).unwrap_err();
    assert!(v.explanation.contains("no write"), "{v}");
}

#[test]
fn histories_without_a_liveness_requirement_pass_it() {
    let mut b = B::new();
    b.w_failed(2, "p2", 1, 150, 160);
    assert!(service_resumes_after_heal(&b.h).is_ok());
}

#[test]
fn session_reads_touch_no_key_and_are_reported() {
    let mut b = B::new();
    let id = b.op(1, Op::session_read("@v", 7), OpMeta::primary().served_by(Backend::primary("db0")), 0, 5, Outcome::Ok(OpResult::SessionValue(Some(7))));
    assert!(b.h.op(id).keys().is_empty());
    let r = check_all(&b.h).unwrap();
    assert_eq!(r.session_reads, 1);
    assert!(b.h.render(&[id]).contains("session read @v (set to 7) = 7"));
}

// ---------------------------------------------------------------------------
// reads_see_acknowledged_writes: read-after-write consistency levels.

use crate::history::Consistency;

/// Acknowledged write by client `c` through proxy instance `inst`.
fn w_via(b: &mut B, c: u32, inst: u32, k: &str, v: Val, inv: Time, end: Time) -> OpId {
    b.op(c, Op::write(k, v), OpMeta::primary().via(inst), inv, end, Outcome::Ok(OpResult::Written))
}

/// Read by client `c` through proxy instance `inst` at `level`, served by a replica.
fn read_at(b: &mut B, c: u32, inst: u32, level: Consistency, k: &str, v: Option<Val>, inv: Time, end: Time) -> OpId {
    let meta = OpMeta::primary().served_by(Backend::replica("db2")).at_level(level).via(inst);
    let id = b.op(c, Op::read(k), meta, inv, end, Outcome::Ok(OpResult::Read(v)));
    b.h.mark_eventual(id);
    id
}

fn consistency_violation(b: &B) -> Option<Violation> {
    match check_all(&b.h) {
        Ok(_) => None,
        Err(v) => {
            assert_eq!(v.checker, Checker::ReadsSeeAcknowledgedWrites, "another checker reported first: {v}");
            Some(v)
        }
    }
}

#[test]
fn stale_session_read_after_the_sessions_own_write_is_reported() {
    let mut b = B::new();
    let w = w_via(&mut b, 1, 0, "x", 1, 0, 10);
    let r = read_at(&mut b, 1, 0, Consistency::Session, "x", None, 20, 30);
    b.log(&[("x", &[1])]);
    let v = consistency_violation(&b).expect("stale session read not reported");
    assert_eq!(ids(&v), vec![w.0, r.0]);
    assert!(v.explanation.contains("level session"), "{v}");
}

#[test]
fn session_level_does_not_require_other_sessions_writes() {
    let mut b = B::new();
    w_via(&mut b, 2, 0, "x", 1, 0, 10);
    read_at(&mut b, 1, 0, Consistency::Session, "x", None, 20, 30);
    b.log(&[("x", &[1])]);
    assert!(consistency_violation(&b).is_none());
}

#[test]
fn stale_instance_read_of_another_sessions_write_through_the_same_instance_is_reported() {
    let mut b = B::new();
    w_via(&mut b, 2, 0, "x", 1, 0, 10);
    w_via(&mut b, 2, 0, "x", 2, 12, 18);
    read_at(&mut b, 1, 0, Consistency::Instance, "x", Some(1), 20, 30);
    b.log(&[("x", &[1, 2])]);
    let v = consistency_violation(&b).expect("stale instance read not reported");
    assert!(v.explanation.contains("through the same proxy instance (proxy)"), "{v}");
}

#[test]
fn instance_level_does_not_require_writes_through_another_instance() {
    let mut b = B::new();
    w_via(&mut b, 2, 1, "x", 1, 0, 10);
    read_at(&mut b, 1, 0, Consistency::Instance, "x", None, 20, 30);
    b.log(&[("x", &[1])]);
    assert!(consistency_violation(&b).is_none());
}

#[test]
fn stale_global_read_through_proxy2_of_a_write_acknowledged_through_proxy_is_reported() {
    let mut b = B::new();
    w_via(&mut b, 2, 0, "x", 1, 0, 10);
    read_at(&mut b, 1, 1, Consistency::Global, "x", None, 20, 30);
    b.log(&[("x", &[1])]);
    let v = consistency_violation(&b).expect("stale global read not reported");
    assert!(v.explanation.contains("via proxy2") && v.explanation.contains("to anyone"), "{v}");
}

#[test]
fn fresh_reads_at_every_level_are_not_reported() {
    let mut b = B::new();
    w_via(&mut b, 1, 0, "x", 1, 0, 10);
    w_via(&mut b, 2, 1, "x", 2, 12, 18);
    for (i, l) in Consistency::ALL.into_iter().enumerate() {
        let t = 20 + 20 * i as Time;
        read_at(&mut b, 1, 0, l, "x", Some(2), t, t + 10);
        read_at(&mut b, 3, 1, l, "x", Some(2), t, t + 10);
    }
    b.log(&[("x", &[1, 2])]);
    b.rows(&[("x", &[2])]);
    assert!(check_all(&b.h).is_ok(), "{:?}", check_all(&b.h).err());
}

#[test]
fn stale_eventual_read_is_not_reported_but_counted_as_stale() {
    let mut b = B::new();
    w_via(&mut b, 1, 0, "x", 1, 0, 10);
    w_via(&mut b, 1, 0, "x", 2, 12, 18);
    read_at(&mut b, 1, 0, Consistency::Eventual, "x", Some(1), 20, 30);
    read_at(&mut b, 1, 0, Consistency::Eventual, "x", Some(2), 40, 50);
    // Another session's write does not make an eventual read stale for the count.
    read_at(&mut b, 2, 0, Consistency::Eventual, "x", None, 40, 50);
    b.log(&[("x", &[1, 2])]);
    b.rows(&[("x", &[2])]);
    assert!(check_all(&b.h).is_ok(), "{:?}", check_all(&b.h).err());
    assert_eq!(stale_eventual_reads(&b.h), 1);
}

#[test]
fn stale_session_read_served_by_the_primary_is_reported_too() {
    let mut b = B::new();
    w_via(&mut b, 1, 0, "x", 1, 0, 10);
    let meta = OpMeta::primary().served_by(Backend::primary("db0")).at_level(Consistency::Session).via(0);
    b.op(1, Op::read("x"), meta, 20, 30, Outcome::Ok(OpResult::Read(None)));
    b.log(&[("x", &[1])]);
    let v = reads_see_acknowledged_writes(&b.h).expect_err("stale primary read not reported");
    assert_eq!(v.checker, Checker::ReadsSeeAcknowledgedWrites);
}

#[test]
fn reads_begun_before_the_ack_and_unknown_or_failed_writes_add_no_requirement() {
    let mut b = B::new();
    w_via(&mut b, 1, 0, "x", 1, 0, 25);
    read_at(&mut b, 1, 0, Consistency::Global, "x", None, 20, 30);
    b.op(1, Op::write("y", 2), OpMeta::primary().via(0), 0, 10, Outcome::Unknown);
    b.w_failed(1, "y", 3, 0, 10);
    read_at(&mut b, 1, 0, Consistency::Global, "y", None, 20, 30);
    b.log(&[("x", &[1])]);
    b.rows(&[("x", &[1])]);
    assert!(check_all(&b.h).is_ok(), "{:?}", check_all(&b.h).err());
}

#[test]
fn committed_transaction_counts_at_its_commit_and_a_rolled_back_one_not_at_all() {
    let mut b = B::new();
    b.txn(1, &[("x", Some(1)), ("y", Some(2))], &[], 0, 10);
    b.txn_with(1, &[("z", Some(3))], &[], false, 0, 10);
    read_at(&mut b, 1, 0, Consistency::Session, "z", None, 20, 30);
    read_at(&mut b, 1, 0, Consistency::Session, "x", Some(1), 20, 30);
    b.log(&[("x", &[1]), ("y", &[2])]);
    b.rows(&[("x", &[1]), ("y", &[2])]);
    assert!(check_all(&b.h).is_ok(), "{:?}", check_all(&b.h).err());
    read_at(&mut b, 1, 0, Consistency::Session, "y", None, 40, 50);
    assert!(consistency_violation(&b).is_some());
}

#[test]
fn acknowledged_write_missing_from_the_applied_log_is_left_to_the_lost_writes_checker() {
    let mut b = B::new();
    w_via(&mut b, 1, 0, "x", 1, 0, 10);
    read_at(&mut b, 1, 0, Consistency::Global, "x", None, 20, 30);
    b.log(&[("x", &[])]);
    b.rows(&[("x", &[])]);
    assert!(reads_see_acknowledged_writes(&b.h).is_ok());
    assert_eq!(check_all(&b.h).unwrap_err().checker, Checker::NoLostOrDuplicateWrites);
}

#[test]
fn a_read_that_failed_with_the_consistency_timeout_is_not_a_violation() {
    let mut b = B::new();
    w_via(&mut b, 1, 0, "x", 1, 0, 10);
    let meta = OpMeta::primary().at_level(Consistency::Session).via(0);
    let e = Outcome::Err { code: 1969, message: "Sluice: consistency timeout".into(), definite: true };
    b.op(1, Op::read("x"), meta, 20, 30, e);
    b.log(&[("x", &[1])]);
    b.rows(&[("x", &[1])]);
    assert!(check_all(&b.h).is_ok(), "{:?}", check_all(&b.h).err());
}
