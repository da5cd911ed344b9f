//! Transaction atomicity.

use std::collections::BTreeMap;

use super::facts::{Facts, ReadObs};
use super::{fmt_val, Checker, Violation};
use crate::history::{History, Op, OpId, ReadIsolation, Val, WriteEffect};

/// Checks, for every multi-statement transaction (`Op::Txn`):
///
/// 1. **Not split across backends**: all statements of a transaction were
///    served by one backend (when the metadata names backends).
/// 2. **Internal consistency**: inside a transaction that completed, a read of
///    a key the transaction already wrote returns its own latest write.
/// 3. **Aborted and intermediate writes stay invisible**: no other operation
///    reads a value written by a transaction that was rolled back or failed
///    definitely, or a value the transaction itself overwrote later; no
///    server's final rows or applied log hold an aborted transaction's value
///    (nor final rows an overwritten one).
/// 4. **No fractured reads**: let reader `R` be a transaction that completed
///    with `Ok` (committed or rolled back by the client) and read key `a`
///    returning value `x` written by another transaction `T` (acknowledged or
///    unknown — it was visibly committed). Then for every other key `b` that
///    `T` wrote (final value `y`) and that `R` also read (not after its own
///    write of `b`), `R`'s read of `b` must return `y` or a value not certainly
///    older than `y` (order as in [`crate::check`]). Under
///    [`ReadIsolation::ReadCommitted`] only reads of `b` issued after the read
///    of `a` are held to this; under the default snapshot isolation all are.
/// 5. **All-or-nothing in the log**: when the final primary recorded an
///    applied log, a committed or unknown transaction's final writes appear in
///    it all or none.
pub fn transactions_atomic(h: &History) -> Result<(), Violation> {
    transactions_atomic_in(h, &Facts::build(h)?)
}

/// [`transactions_atomic`] with the facts already built.
pub(crate) fn transactions_atomic_in(h: &History, f: &Facts<'_>) -> Result<(), Violation> {
    let checker = Checker::TransactionsAtomic;

    // 1. Split across backends.
    for o in h.ops().iter().filter(|o| o.op.is_txn()) {
        let b = o.meta.distinct_backends();
        if b.len() > 1 {
            return Err(Violation::new(
                checker,
                None,
                format!(
                    "transaction {} was served by {} different backends ({}); a transaction must run on one backend \
                     connection from BEGIN to COMMIT",
                    o.id,
                    b.len(),
                    b.into_iter().collect::<Vec<_>>().join(", ")
                ),
                h,
                &[o.id],
            ));
        }
    }

    // 2. Internal consistency.
    for r in f.reads.iter().filter(|r| r.internal) {
        let stmt = r.stmt.unwrap_or(0);
        let own = f
            .writes_of(r.op)
            .filter(|w| w.key == r.key && w.stmt.unwrap_or(0) < stmt)
            .last()
            .map(|w| w.value);
        if own.is_some() && own != r.value {
            return Err(Violation::new(
                checker,
                Some(&r.key),
                format!(
                    "transaction {} wrote {} to {} and then read {} back as {}; a transaction must see its own writes",
                    r.op,
                    fmt_val(own),
                    r.key,
                    r.key,
                    fmt_val(r.value)
                ),
                h,
                &[r.op],
            ));
        }
    }

    // 3. Aborted / intermediate writes visible.
    for r in f.reads.iter().filter(|r| !r.internal) {
        let Some(w) = f.writer(&r.key, r.value) else {
            continue;
        };
        if w.op == r.op || w.stmt.is_none() {
            continue;
        }
        if w.effect == WriteEffect::NotApplied {
            return Err(Violation::new(
                checker,
                Some(&r.key),
                format!(
                    "{} read {} = {}, written by transaction {} which was rolled back or failed definitely; an aborted \
                     transaction's writes must never be visible",
                    r.op,
                    r.key,
                    fmt_val(r.value),
                    w.op
                ),
                h,
                &[w.op, r.op],
            ));
        }
        if w.intermediate {
            return Err(Violation::new(
                checker,
                Some(&r.key),
                format!(
                    "{} read {} = {}, an intermediate value that transaction {} overwrote before committing; only a \
                     transaction's final writes may be visible",
                    r.op,
                    r.key,
                    fmt_val(r.value),
                    w.op
                ),
                h,
                &[w.op, r.op],
            ));
        }
    }
    for (server, st) in h.servers() {
        for (what, map) in [("final rows", &st.rows), ("applied log", &st.log)] {
            for (key, vs) in map.iter().flat_map(|m| m.iter()) {
                for v in vs {
                    let Some(w) = f.writer(key, Some(*v)) else {
                        continue;
                    };
                    if w.stmt.is_none() {
                        continue;
                    }
                    let bad = w.effect == WriteEffect::NotApplied
                        || (w.intermediate && what == "final rows");
                    if bad {
                        return Err(Violation::new(
                            checker,
                            Some(key),
                            format!(
                                "the {what} of {server} hold {v} for {key}, written by transaction {} {}",
                                w.op,
                                if w.effect == WriteEffect::NotApplied {
                                    "which was rolled back or failed definitely"
                                } else {
                                    "which overwrote it before committing"
                                }
                            ),
                            h,
                            &[w.op],
                        ));
                    }
                }
            }
        }
    }

    // 4. Fractured reads.
    let mut external: BTreeMap<OpId, Vec<&ReadObs>> = BTreeMap::new();
    for r in f.reads.iter().filter(|r| !r.internal && r.stmt.is_some()) {
        external.entry(r.op).or_default().push(r);
    }
    let rc = h.read_isolation() == ReadIsolation::ReadCommitted;
    for (&rid, reads) in &external {
        for a in reads {
            let Some(wa) = f.writer(&a.key, a.value) else {
                continue;
            };
            if wa.op == rid
                || wa.stmt.is_none()
                || wa.intermediate
                || wa.effect == WriteEffect::NotApplied
            {
                continue;
            }
            let t = wa.op;
            for wb in f.writes_of(t).filter(|w| !w.intermediate && w.key != a.key) {
                for b in reads.iter().filter(|b| b.key == wb.key) {
                    if rc && b.stmt < a.stmt {
                        continue;
                    }
                    if b.value == Some(wb.value) {
                        continue;
                    }
                    if let Some(p) = f.precedes(&wb.key, b.value, Some(wb.value)) {
                        let mut ids = vec![t, rid];
                        ids.extend(f.writer_op(&wb.key, b.value));
                        ids.extend(p.ops());
                        return Err(Violation::new(
                            checker,
                            Some(&wb.key),
                            format!(
                                "transaction {rid} read {ka} = {x}, written by transaction {t}, so {t}'s commit is visible \
                                 to it; but it read {kb} = {u}, which is older than {t}'s write {kb} := {y} ({why}). A \
                                 transaction's writes must become visible all at once: a reader that sees one of them must \
                                 see every other one it reads (or a newer value).",
                                ka = a.key,
                                x = fmt_val(a.value),
                                kb = wb.key,
                                u = fmt_val(b.value),
                                y = wb.value,
                                why = p.describe(b.value, Some(wb.value)),
                            ),
                            h,
                            &ids,
                        ));
                    }
                }
            }
        }
    }

    // 5. All-or-nothing in the authoritative log.
    if let Some(log) = f.auth_log() {
        let server = f.auth.map(|(n, _)| n).unwrap_or("");
        for o in h.ops().iter().filter(|o| matches!(o.op, Op::Txn { .. })) {
            if o.write_effect() == WriteEffect::NotApplied {
                continue;
            }
            type KeyVals<'a> = Vec<(&'a str, Val)>;
            let (present, absent): (KeyVals, KeyVals) = f
                .writes_of(o.id)
                .filter(|w| !w.intermediate)
                .map(|w| (w.key.as_str(), w.value))
                .partition(|(k, v)| log.get(*k).is_some_and(|l| l.contains(v)));
            if !present.is_empty() && !absent.is_empty() {
                let list = |xs: &[(&str, Val)]| {
                    xs.iter()
                        .map(|(k, v)| format!("{k}:={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(Violation::new(
                    checker,
                    None,
                    format!(
                        "transaction {} was partially applied: the applied log of {server} (final primary) holds {} but \
                         not {}",
                        o.id,
                        list(&present),
                        list(&absent)
                    ),
                    h,
                    &[o.id],
                ));
            }
        }
    }
    Ok(())
}
