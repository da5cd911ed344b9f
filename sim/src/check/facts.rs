//! Facts derived from a history that several checkers share: who wrote each
//! value, every observation made by a read, the authoritative applied log and
//! the "certainly older" relation between two values of a key.

use std::collections::{BTreeMap, BTreeSet};

use super::{fmt_val, Checker, Violation};
use crate::history::{
    History, Key, Op, OpId, OpResult, ServerState, Time, TxnOp, TxnOpResult, Val, WriteEffect,
};

/// One write statement (a single write, or one statement of a transaction).
#[derive(Clone, Debug)]
pub(crate) struct WriteInfo {
    pub op: OpId,
    pub key: Key,
    pub value: Val,
    pub effect: WriteEffect,
    /// Statement index inside a transaction.
    pub stmt: Option<usize>,
    /// Overwritten later by the same transaction: never visible to others.
    pub intermediate: bool,
}

/// One value observed by a read that completed with `Ok`.
#[derive(Clone, Debug)]
pub(crate) struct ReadObs {
    pub op: OpId,
    pub key: Key,
    pub value: Option<Val>,
    /// Statement index inside a transaction.
    pub stmt: Option<usize>,
    /// Inside a transaction, after that transaction's own write of the key.
    pub internal: bool,
}

/// Why value `a` certainly precedes value `b` on a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Precedence {
    /// `a` is the key's initial value, `b` was written.
    Initial,
    /// Both are in the authoritative applied log, `a` first.
    Log {
        server: String,
        a_pos: usize,
        b_pos: usize,
    },
    /// `a`'s write was acknowledged before `b`'s write was invoked.
    RealTime {
        a_op: OpId,
        a_done: Time,
        b_op: OpId,
        b_invoked: Time,
    },
}

impl Precedence {
    pub fn describe(&self, a: Option<Val>, b: Option<Val>) -> String {
        match self {
            Precedence::Initial => format!("{} is the key's initial value and {} was written later", fmt_val(a), fmt_val(b)),
            Precedence::Log { server, a_pos, b_pos } => format!(
                "the applied log of {server} has {} at position {a_pos} and {} at position {b_pos}",
                fmt_val(a),
                fmt_val(b)
            ),
            Precedence::RealTime { a_op, a_done, b_op, b_invoked } => format!(
                "the write of {} ({a_op}) was acknowledged at t={a_done}, before the write of {} ({b_op}) was invoked at t={b_invoked}",
                fmt_val(a),
                fmt_val(b)
            ),
        }
    }

    /// Operations that justify the precedence.
    pub fn ops(&self) -> Vec<OpId> {
        match self {
            Precedence::RealTime { a_op, b_op, .. } => vec![*a_op, *b_op],
            _ => Vec::new(),
        }
    }
}

pub(crate) struct Facts<'h> {
    pub h: &'h History,
    /// value → the write statement that wrote it.
    pub writes: BTreeMap<Val, WriteInfo>,
    /// op → the values its write statements wrote, in statement order.
    pub writes_by_op: BTreeMap<OpId, Vec<Val>>,
    /// Every observation, in (op id, statement) order.
    pub reads: Vec<ReadObs>,
    /// The authoritative server (final primary), if recorded.
    pub auth: Option<(&'h str, &'h ServerState)>,
    /// Positions in the authoritative log: key → value → first position.
    log_pos: BTreeMap<&'h str, BTreeMap<Val, usize>>,
}

impl<'h> Facts<'h> {
    pub fn build(h: &'h History) -> Result<Facts<'h>, Violation> {
        let mut writes: BTreeMap<Val, WriteInfo> = BTreeMap::new();
        let mut reads = Vec::new();
        for o in h.ops() {
            let effect = o.write_effect();
            let mut add_write = |w: WriteInfo| -> Result<(), Violation> {
                if let Some(prev) = writes.get(&w.value) {
                    return Err(Violation::new(
                        Checker::WellFormed,
                        Some(&w.key),
                        format!(
                            "value {} is written by two write statements ({} and {}); every write must store a value unique \
                             across the history so that observations can be attributed",
                            w.value, prev.op, w.op
                        ),
                        h,
                        &[prev.op, w.op],
                    ));
                }
                if h.initial(&w.key) == Some(w.value) {
                    return Err(Violation::new(
                        Checker::WellFormed,
                        Some(&w.key),
                        format!(
                            "value {} written by {} is also the initial value of key {}",
                            w.value, w.op, w.key
                        ),
                        h,
                        &[w.op],
                    ));
                }
                writes.insert(w.value, w);
                Ok(())
            };
            match &o.op {
                Op::Write { key, value } => add_write(WriteInfo {
                    op: o.id,
                    key: key.clone(),
                    value: *value,
                    effect,
                    stmt: None,
                    intermediate: false,
                })?,
                Op::Read { key } => {
                    if let Some(OpResult::Read(v)) = o.ok_result() {
                        reads.push(ReadObs {
                            op: o.id,
                            key: key.clone(),
                            value: *v,
                            stmt: None,
                            internal: false,
                        });
                    }
                }
                Op::SessionRead { .. } => {}
                Op::Txn { ops } => {
                    let last_write: BTreeMap<&str, usize> = ops
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| matches!(t, TxnOp::Write { .. }))
                        .map(|(i, t)| (t.key(), i))
                        .collect();
                    let results = match o.ok_result() {
                        Some(OpResult::Txn { results, .. }) => Some(results),
                        _ => None,
                    };
                    let mut written: BTreeSet<&str> = BTreeSet::new();
                    for (i, t) in ops.iter().enumerate() {
                        match t {
                            TxnOp::Write { key, value } => {
                                add_write(WriteInfo {
                                    op: o.id,
                                    key: key.clone(),
                                    value: *value,
                                    effect,
                                    stmt: Some(i),
                                    intermediate: last_write.get(key.as_str()) != Some(&i),
                                })?;
                                written.insert(key);
                            }
                            TxnOp::Read { key } => {
                                if let Some(TxnOpResult::Read(v)) = results.and_then(|r| r.get(i)) {
                                    reads.push(ReadObs {
                                        op: o.id,
                                        key: key.clone(),
                                        value: *v,
                                        stmt: Some(i),
                                        internal: written.contains(key.as_str()),
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        let auth = h.authoritative_server();
        let mut log_pos: BTreeMap<&str, BTreeMap<Val, usize>> = BTreeMap::new();
        if let Some((_, st)) = auth {
            if let Some(log) = &st.log {
                for (k, vs) in log {
                    let m = log_pos.entry(k.as_str()).or_default();
                    for (i, v) in vs.iter().enumerate() {
                        m.entry(*v).or_insert(i);
                    }
                }
            }
        }
        let mut writes_by_op: BTreeMap<OpId, Vec<Val>> = BTreeMap::new();
        for w in writes.values() {
            writes_by_op.entry(w.op).or_default().push(w.value);
        }
        for vs in writes_by_op.values_mut() {
            vs.sort_by_key(|v| writes[v].stmt);
        }
        Ok(Facts {
            h,
            writes,
            writes_by_op,
            reads,
            auth,
            log_pos,
        })
    }

    /// The authoritative applied log, if recorded.
    pub fn auth_log(&self) -> Option<&'h BTreeMap<Key, Vec<Val>>> {
        self.auth.and_then(|(_, s)| s.log.as_ref())
    }

    /// The authoritative final rows, if recorded.
    pub fn auth_rows(&self) -> Option<&'h BTreeMap<Key, Vec<Val>>> {
        self.auth.and_then(|(_, s)| s.rows.as_ref())
    }

    /// The write statements of operation `id`, in statement order.
    pub fn writes_of(&self, id: OpId) -> impl Iterator<Item = &WriteInfo> {
        self.writes_by_op
            .get(&id)
            .into_iter()
            .flatten()
            .map(move |v| &self.writes[v])
    }

    /// The write of `v` to `key` (None if `v` was never written to `key`).
    pub fn writer(&self, key: &str, v: Option<Val>) -> Option<&WriteInfo> {
        v.and_then(|v| self.writes.get(&v)).filter(|w| w.key == key)
    }

    /// The operation that wrote `v` to `key`, if any.
    pub fn writer_op(&self, key: &str, v: Option<Val>) -> Option<OpId> {
        self.writer(key, v).map(|w| w.op)
    }

    pub fn is_initial(&self, key: &str, v: Option<Val>) -> bool {
        self.h.initial(key) == v
    }

    pub fn log_position(&self, key: &str, v: Val) -> Option<usize> {
        self.log_pos.get(key).and_then(|m| m.get(&v)).copied()
    }

    /// Whether value `a` of `key` was certainly written before value `b` (see
    /// the module docs of [`crate::check`] for the order used).
    pub fn precedes(&self, key: &str, a: Option<Val>, b: Option<Val>) -> Option<Precedence> {
        if a == b || self.is_initial(key, b) {
            return None;
        }
        let b_known = match b {
            Some(bv) => self.writer(key, b).is_some() || self.log_position(key, bv).is_some(),
            None => false,
        };
        if self.is_initial(key, a) {
            return b_known.then_some(Precedence::Initial);
        }
        let (Some(av), Some(bv)) = (a, b) else {
            return None;
        };
        if let (Some(pa), Some(pb)) = (self.log_position(key, av), self.log_position(key, bv)) {
            let server = self.auth.map(|(n, _)| n.to_string()).unwrap_or_default();
            return (pa < pb).then_some(Precedence::Log {
                server,
                a_pos: pa,
                b_pos: pb,
            });
        }
        let wa = self.writer(key, a)?;
        let wb = self.writer(key, b)?;
        if wa.effect != WriteEffect::Acked {
            return None;
        }
        let a_done = self.h.op(wa.op).ok_at()?;
        let b_invoked = self.h.op(wb.op).invoked_at;
        (a_done < b_invoked).then_some(Precedence::RealTime {
            a_op: wa.op,
            a_done,
            b_op: wb.op,
            b_invoked,
        })
    }
}
