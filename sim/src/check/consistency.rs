//! Read-after-write consistency of proxy reads: [`reads_see_acknowledged_writes`], and
//! the count of stale reads at `eventual` ([`stale_eventual_reads`]).
//!
//! Every single-key read through the proxy records the consistency level in effect for
//! it ([`crate::history::OpMeta::consistency`]) and the proxy instance it went through
//! ([`crate::history::OpMeta::instance`]). Whoever served it (the primary or a replica),
//! a successful read at a level must not return a value *certainly older* (the order of
//! [`crate::check`]: initial value, authoritative applied log, real time) than any write
//! acknowledged before the read was invoked:
//!
//! | level | writes it must see |
//! | --- | --- |
//! | `eventual` | none |
//! | `session` | those acknowledged to the same session (client connection) |
//! | `instance` | those acknowledged through the same proxy instance, by any session |
//! | `global` | those acknowledged to anyone (any instance, any direct client) |
//!
//! A write counts at its acknowledgement (a transaction's writes at its `COMMIT`'s, the
//! last write of each key only); writes with an unknown outcome, failed writes and
//! rolled-back transactions add no requirement. When the authoritative applied log is
//! recorded, an acknowledged write missing from it adds no requirement either: it was
//! lost, which [`super::no_lost_or_duplicate_writes`] reports on its own. A read that
//! failed (e.g. Sluice's consistency timeout, error 1969, with
//! `consistency_fallback = error`) is a definite failure, not a violation.

use std::collections::BTreeMap;

use super::facts::{Facts, ReadObs};
use super::{fmt_val, Checker, Violation};
use crate::history::{Consistency, History, Key, Op, OpId, SessionRef, Time, Val, WriteEffect};

/// Whose acknowledged writes a read must see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Session(SessionRef),
    Instance(u32),
    Global,
}

impl Scope {
    fn describe(self) -> String {
        match self {
            Scope::Session(s) => format!("to its own session {s}"),
            Scope::Instance(i) => format!("through the same proxy instance ({})", crate::history::instance_name(i)),
            Scope::Global => "to anyone".to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Ack {
    at: Time,
    value: Val,
    op: OpId,
}

/// The acknowledged writes of one key in one scope, by acknowledgement time; `latest[i]`
/// is the index of the write latest in the applied log among `list[..=i]`.
#[derive(Default)]
struct Acks {
    list: Vec<Ack>,
    latest: Vec<Option<usize>>,
}

struct Index<'f, 'h> {
    f: &'f Facts<'h>,
    acks: BTreeMap<(Key, Scope), Acks>,
    /// Whether the authoritative applied log is recorded (then writes missing from it
    /// are lost and add no requirement, and the latest write of a prefix decides).
    logged: bool,
}

impl<'f, 'h> Index<'f, 'h> {
    fn build(h: &History, f: &'f Facts<'h>) -> Self {
        let logged = f.auth_log().is_some();
        let mut acks: BTreeMap<(Key, Scope), Acks> = BTreeMap::new();
        for o in h.ops() {
            if o.write_effect() != WriteEffect::Acked {
                continue;
            }
            let Some(at) = o.ok_at() else { continue };
            for w in f.writes_of(o.id).filter(|w| !w.intermediate) {
                if logged && f.log_position(&w.key, w.value).is_none() {
                    continue;
                }
                let a = Ack { at, value: w.value, op: o.id };
                let mut scopes = vec![Scope::Global, Scope::Session(o.session)];
                if let Some(i) = o.meta.instance {
                    scopes.push(Scope::Instance(i));
                }
                for s in scopes {
                    acks.entry((w.key.clone(), s)).or_default().list.push(a);
                }
            }
        }
        for ((key, _), a) in acks.iter_mut() {
            a.list.sort_by_key(|x| (x.at, x.op));
            let mut best: Option<(usize, usize)> = None; // (log position, index)
            for (i, x) in a.list.iter().enumerate() {
                if let Some(p) = f.log_position(key, x.value) {
                    if best.is_none_or(|(bp, _)| p > bp) {
                        best = Some((p, i));
                    }
                }
                a.latest.push(best.map(|(_, i)| i));
            }
        }
        Index { f, acks, logged }
    }

    /// An acknowledged write in `scope` that the read `r` (invoked at `invoked`) should
    /// have seen and did not, with why its value is older.
    fn stale(&self, r: &ReadObs, scope: Scope, invoked: Time) -> Option<(Ack, super::facts::Precedence)> {
        let a = self.acks.get(&(r.key.clone(), scope))?;
        let n = a.list.partition_point(|x| x.at <= invoked);
        if n == 0 {
            return None;
        }
        let read_in_log = r.value.is_none_or(|v| self.f.log_position(&r.key, v).is_some()) || self.f.is_initial(&r.key, r.value);
        if self.logged && read_in_log {
            // The applied log orders every candidate and the read's value: the latest
            // acknowledged write decides.
            let x = a.list[a.latest[n - 1]?];
            return self.f.precedes(&r.key, r.value, Some(x.value)).map(|p| (x, p));
        }
        a.list[..n].iter().rev().find_map(|x| self.f.precedes(&r.key, r.value, Some(x.value)).map(|p| (*x, p)))
    }
}

/// The scope a read at `level` must see, if any.
fn scope_of(level: Consistency, session: SessionRef, instance: Option<u32>) -> Option<Scope> {
    match level {
        Consistency::Eventual => None,
        Consistency::Session => Some(Scope::Session(session)),
        Consistency::Instance => instance.map(Scope::Instance),
        Consistency::Global => Some(Scope::Global),
    }
}

/// The single-key reads with a recorded level (reads inside transactions have none).
fn leveled_reads<'a>(f: &'a Facts<'_>) -> impl Iterator<Item = (&'a ReadObs, Consistency)> + 'a {
    let h = f.h;
    f.reads.iter().filter_map(move |r| {
        let o = h.op(r.op);
        if r.internal || r.stmt.is_some() || !matches!(o.op, Op::Read { .. }) {
            return None;
        }
        o.meta.consistency.map(|l| (r, l))
    })
}

/// Reads at `session`, `instance` and `global` see the writes acknowledged before they
/// began to their session / through their proxy instance / to anyone (see the module
/// docs).
pub fn reads_see_acknowledged_writes(h: &History) -> Result<(), Violation> {
    reads_see_acknowledged_writes_in(h, &Facts::build(h)?)
}

/// [`reads_see_acknowledged_writes`] with the facts already built.
pub(crate) fn reads_see_acknowledged_writes_in(h: &History, f: &Facts<'_>) -> Result<(), Violation> {
    let ix = Index::build(h, f);
    for (r, level) in leveled_reads(f) {
        let o = h.op(r.op);
        let Some(scope) = scope_of(level, o.session, o.meta.instance) else { continue };
        let Some((w, p)) = ix.stale(r, scope, o.invoked_at) else { continue };
        let wo = h.op(w.op);
        let mut ids = vec![w.op, r.op];
        ids.extend(f.writer_op(&r.key, r.value));
        ids.extend(p.ops());
        return Err(Violation::new(
            Checker::ReadsSeeAcknowledgedWrites,
            Some(&r.key),
            format!(
                "read {rid} of {key} at consistency level {lvl} by session {s}{via} (invoked at t={inv}) returned {u}, \
                 but {v} had been written by {wid} (session {ws}{wvia}) and acknowledged at t={done}, before the read began, \
                 and {u} is older: {why}. At level {lvl} a read must see every write acknowledged {scope} before it began.",
                rid = r.op,
                key = r.key,
                lvl = level.name(),
                s = o.session,
                via = o.meta.instance.map(|i| format!(" via {}", crate::history::instance_name(i))).unwrap_or_default(),
                inv = o.invoked_at,
                u = fmt_val(r.value),
                v = w.value,
                wid = w.op,
                ws = wo.session,
                wvia = wo.meta.instance.map(|i| format!(" via {}", crate::history::instance_name(i))).unwrap_or_default(),
                done = w.at,
                why = p.describe(r.value, Some(w.value)),
                scope = scope.describe(),
            ),
            h,
            &ids,
        ));
    }
    Ok(())
}

/// How many successful reads at `eventual` returned a value certainly older than a write
/// their own session had acknowledged before they began: the staleness the checker
/// would report at `session`.
pub fn stale_eventual_reads(h: &History) -> u64 {
    let Ok(f) = Facts::build(h) else { return 0 };
    let ix = Index::build(h, &f);
    leveled_reads(&f)
        .filter(|(_, l)| *l == Consistency::Eventual)
        .filter(|(r, _)| {
            let o = h.op(r.op);
            ix.stale(r, Scope::Session(o.session), o.invoked_at).is_some()
        })
        .count() as u64
}
