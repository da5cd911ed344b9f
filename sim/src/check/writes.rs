//! No lost and no duplicated writes.

use std::collections::BTreeMap;

use super::facts::Facts;
use super::{fmt_val, Checker, Violation};
use crate::history::{fmt_key_lists, History, Key, OpId, Val, WriteEffect};

/// A write (or a transaction's write) whose outcome the client does not know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownWrite {
    pub op: OpId,
    pub key: Key,
    pub value: Val,
    /// `Some(true)`: applied (in the final log or rows, or observed by a
    /// read); `Some(false)`: absent from the authoritative applied log;
    /// `None`: cannot tell (no log, overwritten).
    pub applied: Option<bool>,
}

/// What [`no_lost_or_duplicate_writes`] established besides "no violation".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WritesReport {
    /// Acknowledged writes (including those of committed transactions).
    pub acked: usize,
    /// Writes with an unknown outcome, in value order.
    pub unknown_writes: Vec<UnknownWrite>,
    /// Whether the authoritative server recorded an applied log (exact
    /// check) or only final rows (see the function docs).
    pub used_log: bool,
}

fn count_positions(vs: &[Val]) -> BTreeMap<Val, Vec<usize>> {
    let mut m: BTreeMap<Val, Vec<usize>> = BTreeMap::new();
    for (i, v) in vs.iter().enumerate() {
        m.entry(*v).or_default().push(i);
    }
    m
}

/// Every acknowledged write is applied exactly once, every write that failed
/// definitely (or whose transaction was aborted) never, every write with an
/// unknown outcome at most once (listed in the report, not a violation).
///
/// Evidence, in order of strength:
///
/// * **Applied logs.** If the authoritative server (final primary) recorded
///   an applied log, each acknowledged write's value must appear in its key's
///   log exactly once; values of failed writes never; unknown ones at most
///   once; and no log may hold a value no write wrote, or a value under
///   another key. Values in any server's log (replicas too) must not repeat.
/// * **Final rows** (no authoritative log). A value may not appear twice among
///   a key's rows, and a key (a register) has at most one row. An
///   acknowledged write of `v` is *lost* if the key is absent at the end, or
///   if its final value was certainly written before `v` (see the order in
///   [`crate::check`]) — an overwritten write cannot be told from a lost one
///   otherwise.
/// * **Reads.** A read may not observe a value that no write wrote, that was
///   written to another key, or whose write failed definitely; an observed
///   unknown write was applied and so must be in the authoritative log.
///
/// Writes overwritten inside their own transaction may appear at most once.
pub fn no_lost_or_duplicate_writes(h: &History) -> Result<WritesReport, Violation> {
    no_lost_or_duplicate_writes_in(h, &Facts::build(h)?)
}

/// [`no_lost_or_duplicate_writes`] with the facts already built.
pub(crate) fn no_lost_or_duplicate_writes_in(h: &History, f: &Facts<'_>) -> Result<WritesReport, Violation> {
    let checker = Checker::NoLostOrDuplicateWrites;
    let mut observed: BTreeMap<Val, OpId> = BTreeMap::new();

    // Reads.
    for r in f.reads.iter().filter(|r| !r.internal) {
        let Some(u) = r.value else { continue };
        match f.writes.get(&u) {
            None => {
                return Err(Violation::new(
                    checker,
                    Some(&r.key),
                    format!("read {} of {} returned {u}, a value that no operation wrote", r.op, r.key),
                    h,
                    &[r.op],
                ))
            }
            Some(w) if w.key != r.key => {
                return Err(Violation::new(
                    checker,
                    Some(&r.key),
                    format!("read {} of {} returned {u}, which {} wrote to key {}", r.op, r.key, w.op, w.key),
                    h,
                    &[w.op, r.op],
                ))
            }
            Some(w) if w.effect == WriteEffect::NotApplied && w.op != r.op => {
                return Err(Violation::new(
                    checker,
                    Some(&r.key),
                    format!(
                        "read {} of {} returned {u}, written by {} which failed definitely (or was rolled back) and so \
                         must never be applied",
                        r.op, r.key, w.op
                    ),
                    h,
                    &[w.op, r.op],
                ))
            }
            Some(_) => {
                observed.entry(u).or_insert(r.op);
            }
        }
    }

    // Per-server consistency of logs and rows.
    for (server, st) in h.servers() {
        for (what, map) in [("applied log", &st.log), ("final rows", &st.rows)] {
            let Some(map) = map else { continue };
            for (key, vs) in map {
                for (v, pos) in count_positions(vs) {
                    let w = f.writes.get(&v);
                    let base = |expl: String, ids: &[OpId]| {
                        Violation::new(checker, Some(key), expl, h, ids).note(format!(
                            "{what} of {server} for {key}: {}",
                            fmt_key_lists(&[(key.clone(), vs.clone())].into())
                        ))
                    };
                    match w {
                        None => {
                            return Err(base(
                                format!("the {what} of {server} holds {v} for {key}, a value that no operation wrote"),
                                &[],
                            ))
                        }
                        Some(w) if w.key != *key => {
                            return Err(base(
                                format!("the {what} of {server} holds {v} under {key}, but {} wrote it to {}", w.op, w.key),
                                &[w.op],
                            ))
                        }
                        Some(w) if w.effect == WriteEffect::NotApplied => {
                            return Err(base(
                                format!(
                                    "the {what} of {server} holds {v} for {key}, written by {} which failed definitely (or \
                                     was rolled back) and so must never be applied",
                                    w.op
                                ),
                                &[w.op],
                            ))
                        }
                        Some(w) if pos.len() > 1 => {
                            return Err(base(
                                format!(
                                    "the {what} of {server} holds {v} for {key} {} times (positions {:?}): the write {} was \
                                     applied more than once",
                                    pos.len(),
                                    pos,
                                    w.op
                                ),
                                &[w.op],
                            ))
                        }
                        Some(_) => {}
                    }
                }
                if what == "final rows" && vs.len() > 1 {
                    let ids: Vec<OpId> = vs
                        .iter()
                        .filter_map(|v| f.writes.get(v).map(|w| w.op))
                        .collect();
                    return Err(Violation::new(
                        checker,
                        Some(key),
                        format!(
                            "the final rows of {server} hold {} rows for {key}; a key is a register and holds at most one \
                             row, so a write was applied as an extra row",
                            vs.len()
                        ),
                        h,
                        &ids,
                    )
                    .note(format!("final rows of {server}: {}", fmt_key_lists(&[(key.clone(), vs.clone())].into()))));
                }
            }
        }
    }

    let mut report = WritesReport::default();
    let auth_name = f.auth.map(|(n, _)| n).unwrap_or("");
    let empty: Vec<Val> = Vec::new();
    if let Some(log) = f.auth_log() {
        report.used_log = true;
        for w in f.writes.values() {
            let in_log = log.get(&w.key).unwrap_or(&empty).contains(&w.value);
            let must = w.effect == WriteEffect::Acked && !w.intermediate;
            if must && !in_log {
                let mut ids = vec![w.op];
                ids.extend(observed.get(&w.value));
                return Err(Violation::new(
                    checker,
                    Some(&w.key),
                    format!(
                        "the write of {} to {} ({}) was acknowledged but is missing from the applied log of {auth_name}, \
                         the final primary: an acknowledged write was lost",
                        w.value, w.key, w.op
                    ),
                    h,
                    &ids,
                )
                .note(format!("applied log of {auth_name}: {}", fmt_key_lists(&[(w.key.clone(), log.get(&w.key).cloned().unwrap_or_default())].into()))));
            }
            if !in_log && !w.intermediate && w.effect == WriteEffect::Indeterminate {
                if let Some(r) = observed.get(&w.value) {
                    return Err(Violation::new(
                        checker,
                        Some(&w.key),
                        format!(
                            "the write of {} to {} ({}) had an unknown outcome, was observed by read {r} and so was \
                             applied, but is missing from the applied log of {auth_name}, the final primary: it was lost",
                            w.value, w.key, w.op
                        ),
                        h,
                        &[w.op, *r],
                    ));
                }
            }
            if w.effect == WriteEffect::Acked && !w.intermediate {
                report.acked += 1;
            }
            if w.effect == WriteEffect::Indeterminate && !w.intermediate {
                report.unknown_writes.push(UnknownWrite {
                    op: w.op,
                    key: w.key.clone(),
                    value: w.value,
                    applied: Some(in_log),
                });
            }
        }
        return Ok(report);
    }

    let rows = f.auth_rows();
    for w in f.writes.values().filter(|w| !w.intermediate) {
        let final_vals = rows.map(|r| r.get(&w.key).map(|v| v.as_slice()).unwrap_or(&[]));
        let final_val: Option<Option<Val>> =
            final_vals.map(|vs| vs.first().copied().or(f.h.initial(&w.key)));
        match w.effect {
            WriteEffect::Acked => {
                report.acked += 1;
                let Some(fv) = final_val else { continue };
                if fv == Some(w.value) {
                    continue;
                }
                let why = if f.is_initial(&w.key, fv) {
                    Some(format!(
                        "the key still holds its initial value {}",
                        fmt_val(fv)
                    ))
                } else {
                    f.precedes(&w.key, fv, Some(w.value))
                        .map(|p| p.describe(fv, Some(w.value)))
                };
                if let Some(why) = why {
                    let mut ids = vec![w.op];
                    ids.extend(f.writer_op(&w.key, fv));
                    return Err(Violation::new(
                        checker,
                        Some(&w.key),
                        format!(
                            "the write of {} to {} ({}) was acknowledged, but the final primary {auth_name} holds {} for \
                             the key, which is older ({why}): the acknowledged write was lost",
                            w.value,
                            w.key,
                            w.op,
                            fmt_val(fv)
                        ),
                        h,
                        &ids,
                    )
                    .note(format!("final value of {} on {auth_name}: {}", w.key, fmt_val(fv))));
                }
            }
            WriteEffect::Indeterminate => {
                let applied = if final_val == Some(Some(w.value)) || observed.contains_key(&w.value)
                {
                    Some(true)
                } else {
                    None
                };
                report.unknown_writes.push(UnknownWrite {
                    op: w.op,
                    key: w.key.clone(),
                    value: w.value,
                    applied,
                });
            }
            WriteEffect::NotApplied => {}
        }
    }
    Ok(report)
}
