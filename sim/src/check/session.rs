//! Session guarantees: read-your-writes and monotonic reads.
//!
//! A session is one client connection ([`SessionRef`]); its operations are
//! taken in invocation order. Reads from any backend count (these are the
//! guarantees a read/write-splitting proxy must keep when it routes reads to
//! replicas), except reads marked eventually consistent
//! ([`crate::history::OpMeta::eventual`]: a proxy read a replica served while
//! read-after-write consistency is not promised), which are left out entirely.
//! Reads inside a transaction that follow the transaction's own write of the
//! same key are left to [`super::transactions_atomic`].

use std::collections::BTreeMap;

use super::facts::{Facts, ReadObs};
use super::{fmt_val, Checker, Violation};
use crate::history::{History, Key, OpId, SessionRef, Time, Val, WriteEffect};

fn sessions(h: &History) -> BTreeMap<SessionRef, Vec<OpId>> {
    let mut m: BTreeMap<SessionRef, Vec<OpId>> = BTreeMap::new();
    for o in h.ops() {
        m.entry(o.session).or_default().push(o.id);
    }
    m
}

/// Observations grouped by operation (eventually consistent reads, which no session
/// guarantee covers, left out).
fn reads_by_op<'a>(f: &'a Facts<'_>) -> BTreeMap<OpId, Vec<&'a ReadObs>> {
    let mut m: BTreeMap<OpId, Vec<&ReadObs>> = BTreeMap::new();
    for r in &f.reads {
        if !r.internal && !f.h.op(r.op).meta.eventual {
            m.entry(r.op).or_default().push(r);
        }
    }
    m
}

/// Read-your-writes: once a session's write of `v` to `k` was acknowledged, a
/// later read of `k` by the same session (invoked after the acknowledgement)
/// must return `v` or a value that is not certainly older than `v` (see the
/// order in [`crate::check`]).
pub fn read_your_writes(h: &History) -> Result<(), Violation> {
    read_your_writes_in(h, &Facts::build(h)?)
}

/// [`read_your_writes`] with the facts already built.
pub(crate) fn read_your_writes_in(h: &History, f: &Facts<'_>) -> Result<(), Violation> {
    let reads = reads_by_op(&f);
    for (session, ids) in sessions(h) {
        // key → acknowledged own writes: (value, op, acknowledged at)
        let mut own: BTreeMap<Key, Vec<(Val, OpId, Time)>> = BTreeMap::new();
        for id in ids {
            let op = h.op(id);
            for r in reads.get(&id).into_iter().flatten() {
                for &(v, w, done) in own.get(&r.key).into_iter().flatten() {
                    if done > op.invoked_at || r.value == Some(v) {
                        continue;
                    }
                    if let Some(p) = f.precedes(&r.key, r.value, Some(v)) {
                        let mut ids = vec![w, id];
                        ids.extend(f.writer_op(&r.key, r.value));
                        ids.extend(p.ops());
                        return Err(Violation::new(
                            Checker::ReadYourWrites,
                            Some(&r.key),
                            format!(
                                "session {session} wrote {v} to {key} ({w}, acknowledged at t={done}); its later read {id} \
                                 (invoked at t={inv}) returned {u}, which is older than its own write: {why}. A session must \
                                 observe its own acknowledged writes or newer values.",
                                key = r.key,
                                inv = op.invoked_at,
                                u = fmt_val(r.value),
                                why = p.describe(r.value, Some(v)),
                            ),
                            h,
                            &ids,
                        ));
                    }
                }
            }
            if op.write_effect() == WriteEffect::Acked {
                if let Some(done) = op.ok_at() {
                    for w in f.writes_of(id).filter(|w| !w.intermediate) {
                        own.entry(w.key.clone())
                            .or_default()
                            .push((w.value, id, done));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Monotonic reads: for two reads of a key by one session, where the first
/// completed before the second was invoked, the second must not return a
/// value certainly older than the first's.
pub fn monotonic_reads(h: &History) -> Result<(), Violation> {
    monotonic_reads_in(h, &Facts::build(h)?)
}

/// [`monotonic_reads`] with the facts already built.
pub(crate) fn monotonic_reads_in(h: &History, f: &Facts<'_>) -> Result<(), Violation> {
    let reads = reads_by_op(&f);
    for (session, ids) in sessions(h) {
        // key → distinct values seen so far: value → (first op that saw it, its completion)
        let mut seen: BTreeMap<Key, BTreeMap<Option<Val>, (OpId, Time)>> = BTreeMap::new();
        for id in ids {
            let op = h.op(id);
            let Some(done) = op.ok_at() else { continue };
            let rs = reads.get(&id).map(|v| v.as_slice()).unwrap_or(&[]);
            for r in rs {
                for (&u1, &(r1, done1)) in seen.get(&r.key).into_iter().flatten() {
                    if done1 > op.invoked_at {
                        continue;
                    }
                    if let Some(p) = f.precedes(&r.key, r.value, u1) {
                        let mut ids = vec![r1, id];
                        ids.extend(f.writer_op(&r.key, u1));
                        ids.extend(f.writer_op(&r.key, r.value));
                        ids.extend(p.ops());
                        return Err(Violation::new(
                            Checker::MonotonicReads,
                            Some(&r.key),
                            format!(
                                "session {session} read {key} = {a} ({r1}, completed at t={done1}) and then read {key} = {b} \
                                 ({id}, invoked at t={inv}), going back to an older value: {why}. Successive reads of a key \
                                 by one session must never return an older value.",
                                key = r.key,
                                a = fmt_val(u1),
                                b = fmt_val(r.value),
                                inv = op.invoked_at,
                                why = p.describe(r.value, u1),
                            ),
                            h,
                            &ids,
                        ));
                    }
                }
            }
            for r in rs {
                seen.entry(r.key.clone())
                    .or_default()
                    .entry(r.value)
                    .or_insert((id, done));
            }
        }
    }
    Ok(())
}
