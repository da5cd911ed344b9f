//! Liveness: once every fault is healed, the proxy serves writes and reads again.
//!
//! Safety checkers pass for a proxy that refuses everything. This one does not: the
//! history declares when the run's faults were all healed and a bound
//! ([`crate::history::Liveness`]); among the operations issued through the proxy
//! (not on a direct connection) invoked at or after the heal, some write must be
//! acknowledged (a single write, or a committed transaction with a write) and some
//! read must succeed, each completing no later than `heal_at + bound`. The harness
//! derives the bound from the proxy's monitor and connection settings
//! (docs/simulation.md, "Checkers") and has every client probe with a write and a read
//! after the heal.

use super::{Checker, Violation};
use crate::history::{History, OpId, Operation, Outcome, WriteEffect};

/// Checks the history's liveness requirement, if it declares one.
pub fn service_resumes_after_heal(h: &History) -> Result<(), Violation> {
    let Some(l) = h.liveness() else { return Ok(()) };
    let deadline = l.heal_at.saturating_add(l.bound);
    let after: Vec<&Operation> = h
        .ops()
        .iter()
        .filter(|o| !o.meta.direct && o.invoked_at >= l.heal_at)
        .collect();
    for what in ["write", "read"] {
        let attempts: Vec<&Operation> = after
            .iter()
            .copied()
            .filter(|o| {
                if what == "write" {
                    o.op.has_writes()
                } else {
                    o.op.has_reads()
                }
            })
            .collect();
        let succeeded = |o: &Operation| {
            if what == "write" {
                o.write_effect() == WriteEffect::Acked && o.is_ok()
            } else {
                o.is_ok()
            }
        };
        let first = attempts
            .iter()
            .filter(|o| succeeded(o))
            .filter_map(|o| o.completed_at())
            .min();
        if first.is_some_and(|t| t <= deadline) {
            continue;
        }
        let failed: Vec<OpId> = attempts
            .iter()
            .filter(|o| !o.is_ok())
            .map(|o| o.id)
            .take(6)
            .collect();
        let mut errors: Vec<String> = attempts
            .iter()
            .filter_map(|o| match o.outcome() {
                Outcome::Err { code, .. } => Some(code.to_string()),
                Outcome::Unknown => Some("unknown".to_string()),
                Outcome::Ok(_) => None,
            })
            .collect();
        errors.sort();
        errors.dedup();
        let mut v = Violation::new(
            Checker::Liveness,
            None,
            format!(
                "every fault was healed at t={heal}, but no {what} through the proxy succeeded within {bound} (by \
                 t={deadline}): {n} {what}s were attempted after the heal, {ok} succeeded{first}{errs}. Once the \
                 cluster is whole again, the proxy must serve {what}s again.",
                heal = l.heal_at,
                bound = l.bound,
                n = attempts.len(),
                ok = attempts.iter().filter(|o| succeeded(o)).count(),
                first = match first {
                    Some(t) => format!(", the first at t={t}"),
                    None => String::new(),
                },
                errs = if errors.is_empty() { String::new() } else { format!("; failures: {}", errors.join(", ")) },
            ),
            h,
            &failed,
        );
        if attempts.is_empty() {
            v = v.note(format!(
                "no {what} was attempted after the heal (the harness should have probed)"
            ));
        }
        return Err(v);
    }
    Ok(())
}
