//! Per-key linearizability of a register (Wing & Gong search with Lowe's
//! memoisation, P-compositionality across keys).
//!
//! ## What is checked
//!
//! For each key, the sub-history made of
//!
//! * every write statement to the key (single writes and the final write of
//!   each transaction to the key), and
//! * every read of the key that completed with `Ok` and that the client routed
//!   to the primary (single reads, and reads inside transactions that
//!   completed with `Ok` that are not preceded by the transaction's own write
//!   of the key), with the transaction's interval for statements of
//!   transactions, and
//! * the authoritative server's final value of the key as a read that starts
//!   after every recorded event (when final rows were recorded),
//!
//! must be linearizable as a register starting at the key's initial value.
//! Two events at the same timestamp are treated as concurrent.
//!
//! ## Failed and unknown operations
//!
//! A write that failed definitely (or whose transaction was rolled back) never
//! took effect and is left out. A write with an unknown outcome may take
//! effect at any time after its invocation, or never (Jepsen's "info"
//! operations). Because values are unique this is handled exactly and
//! cheaply: an unknown write that no checked read observes is left out (it
//! can always be the one that never happened), and one that is observed must
//! have taken effect before the first read that saw it, so it becomes a
//! required write whose interval ends at the latest completion among those
//! reads. Reads with unknown outcome carry no information and are left out.
//!
//! ## Search
//!
//! Depth-first search over "which operations are linearized so far, and the
//! register's value", memoised on exactly that pair. An operation may be
//! linearized next only if no pending operation completed before it was
//! invoked (real-time order). Three reductions keep it fast, all exact:
//!
//! * a pending read that matches the current value is linearized at once,
//!   without branching (moving it earlier never invalidates an order);
//! * no write may be linearized while a pending read still has to observe the
//!   current value (values are unique, so that read could never be satisfied);
//! * values that no checked read observes share one register value in the
//!   memo (no read can tell them apart).
//!
//! When the memo grows beyond [`LinOptions::max_states_per_key`] the key is
//! reported as inconclusive instead of hanging.
//!
//! On failure, the operations are shrunk (greedily, re-checking each time)
//! to a small sub-history that is still not linearizable — only removals that
//! cannot turn a linearizable history into a non-linearizable one are tried
//! (removing a read, or a write no remaining read observes), so the slice is
//! a genuine witness.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::facts::Facts;
use super::{fmt_val, Checker, Violation};
use crate::history::{History, Key, OpId, Time, Val, WriteEffect};

/// Options for [`linearizable_per_key_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinOptions {
    /// Search budget per key (memoised states); above it the key is
    /// inconclusive.
    pub max_states_per_key: usize,
    /// Shrink a failing key's operations to a small witness.
    pub shrink: bool,
    /// Search budget for each re-check while shrinking.
    pub shrink_states: usize,
    /// Treat the final primary's rows as a final read of each key.
    pub include_final_state: bool,
}

impl Default for LinOptions {
    fn default() -> Self {
        LinOptions {
            max_states_per_key: 1_000_000,
            shrink: true,
            shrink_states: 50_000,
            include_final_state: true,
        }
    }
}

/// A key whose search exceeded its budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InconclusiveKey {
    pub key: Key,
    pub ops: usize,
    pub states: u64,
}

/// Summary of a linearizability check that found no violation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinReport {
    pub keys_checked: usize,
    /// Operations (per key, after dropping failed/unobserved-unknown ones)
    /// that took part in the search, summed over keys.
    pub ops_checked: usize,
    pub states_explored: u64,
    /// Keys on which the search gave up: neither proven nor refuted.
    pub inconclusive: Vec<InconclusiveKey>,
}

impl LinReport {
    pub fn is_conclusive(&self) -> bool {
        self.inconclusive.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read(u32),
    Write(u32),
}

/// One operation of a per-key problem. `src == None` is the final-state read.
#[derive(Clone, Copy, Debug)]
struct LOp {
    inv: Time,
    end: Time,
    kind: Kind,
    src: Option<OpId>,
}

enum Search {
    Linearizable { states: u64 },
    NotLinearizable { states: u64, considered: Vec<bool> },
    GaveUp { states: u64 },
}

/// FNV-1a, so that the memo's hashing is deterministic (no random seed).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // FNV-style multiply-xor, 8 bytes at a time (states are u64 words).
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            h ^= u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            h ^= h >> 29;
        }
        for b in chunks.remainder() {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Memo = HashSet<Box<[u64]>, BuildHasherDefault<Fnv>>;

struct Frame {
    /// Bitset of linearized ops, plus the register value in the last word.
    state: Box<[u64]>,
    done: usize,
    cands: Vec<u32>,
    next: usize,
}

#[inline]
fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1u64 << (i % 64)) != 0
}

/// Index of the first op not yet linearized (`n` if none): whole words of linearized
/// ops are skipped, since linearization mostly proceeds in invocation order.
fn first_pending(state: &[u64], n: usize) -> usize {
    let words = n.div_ceil(64);
    let mut w = 0;
    while w < words && state[w] == u64::MAX {
        w += 1;
    }
    let mut i = w * 64;
    while i < n && bit(state, i) {
        i += 1;
    }
    i
}

/// The ops that may be linearized next from `state`. `readers[v]` lists the reads
/// of interned value `v`.
fn candidates(ops: &[LOp], state: &[u64], considered: &mut [bool], readers: &[Vec<u32>]) -> Vec<u32> {
    let val = *state.last().expect("state has a value word") as u32;
    let lo = first_pending(state, ops.len());
    // The earliest completion among pending ops. Ops are sorted by invocation, so once
    // one is invoked after the minimum so far, no later op can complete before it.
    let mut min_end = Time::MAX;
    for (i, o) in ops.iter().enumerate().skip(lo) {
        if o.inv > min_end {
            break;
        }
        if !bit(state, i) {
            min_end = min_end.min(o.end);
        }
    }
    let pending_reader = readers
        .get(val as usize)
        .is_some_and(|rs| rs.iter().any(|&r| !bit(state, r as usize)));
    let mut out = Vec::new();
    for (i, o) in ops.iter().enumerate().skip(lo) {
        if bit(state, i) {
            continue;
        }
        if o.inv > min_end {
            break;
        }
        considered[i] = true;
        match o.kind {
            Kind::Read(v) if v == val => return vec![i as u32],
            Kind::Read(_) => {}
            // Overwriting a value that a pending read still has to observe
            // makes that read unsatisfiable (values are unique and the
            // initial value never comes back): prune.
            Kind::Write(_) if pending_reader => {}
            Kind::Write(_) => out.push(i as u32),
        }
    }
    out
}

/// `ops` must be sorted by invocation time.
fn search(ops: &[LOp], init: u32, budget: usize) -> Search {
    let n = ops.len();
    if n == 0 {
        return Search::Linearizable { states: 0 };
    }
    let words = n.div_ceil(64);
    let mut readers: Vec<Vec<u32>> = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        if let Kind::Read(v) = o.kind {
            let v = v as usize;
            if readers.len() <= v {
                readers.resize_with(v + 1, Vec::new);
            }
            readers[v].push(i as u32);
        }
    }
    let mut considered = vec![false; n];
    let mut memo: Memo = HashSet::default();
    let mut root = vec![0u64; words + 1].into_boxed_slice();
    root[words] = init as u64;
    let cands = candidates(ops, &root, &mut considered, &readers);
    memo.insert(root.clone());
    let mut stack = vec![Frame {
        state: root,
        done: 0,
        cands,
        next: 0,
    }];
    while let Some(top) = stack.last_mut() {
        if top.next == top.cands.len() {
            stack.pop();
            continue;
        }
        let i = top.cands[top.next] as usize;
        top.next += 1;
        let done = top.done + 1;
        if done == n {
            return Search::Linearizable {
                states: memo.len() as u64,
            };
        }
        let mut state = top.state.clone();
        state[i / 64] |= 1u64 << (i % 64);
        if let Kind::Write(v) = ops[i].kind {
            state[words] = v as u64;
        }
        if !memo.insert(state.clone()) {
            continue;
        }
        if memo.len() > budget {
            return Search::GaveUp {
                states: memo.len() as u64,
            };
        }
        let cands = candidates(ops, &state, &mut considered, &readers);
        if !cands.is_empty() {
            stack.push(Frame {
                state,
                done,
                cands,
                next: 0,
            });
        }
    }
    Search::NotLinearizable {
        states: memo.len() as u64,
        considered,
    }
}

/// A per-key problem: operations sorted by invocation, with values interned.
struct Problem {
    key: Key,
    ops: Vec<LOp>,
    init: u32,
    initial: Option<Val>,
    /// Interned value index → value (index 0: any unobserved value).
    values: Vec<Option<Val>>,
}

/// A checked read: (invoked, completed, value, source op; `None` = final state).
type RawRead = (Time, Time, Option<Val>, Option<OpId>);

fn build_problems(f: &Facts<'_>, opts: &LinOptions) -> Result<Vec<Problem>, Violation> {
    let h = f.h;
    let mut reads: BTreeMap<&str, Vec<RawRead>> = BTreeMap::new();
    let mut max_time: Time = 0;
    for o in h.ops() {
        max_time = max_time
            .max(o.invoked_at)
            .max(o.completed_at().unwrap_or(0));
    }
    for r in f.reads.iter().filter(|r| !r.internal) {
        let op = h.op(r.op);
        if !op.meta.routed_to_primary || op.meta.eventual {
            continue;
        }
        let Some(end) = op.ok_at() else { continue };
        reads
            .entry(r.key.as_str())
            .or_default()
            .push((op.invoked_at, end, r.value, Some(r.op)));
    }
    let mut writes: BTreeMap<&str, Vec<&super::facts::WriteInfo>> = BTreeMap::new();
    for w in f.writes.values() {
        if !w.intermediate && w.effect != WriteEffect::NotApplied {
            writes.entry(w.key.as_str()).or_default().push(w);
        }
    }
    let keys: BTreeSet<&str> = reads.keys().chain(writes.keys()).copied().collect();
    let final_rows = if opts.include_final_state {
        f.auth_rows()
    } else {
        None
    };
    let mut out = Vec::new();
    for key in keys {
        let mut rs = reads.remove(key).unwrap_or_default();
        let ws = writes.remove(key).unwrap_or_default();
        if let Some(rows) = final_rows {
            let vs = rows.get(key).map(|v| v.as_slice()).unwrap_or(&[]);
            if vs.len() <= 1 {
                let v = vs.first().copied();
                // An unknown write seen only by the final state can always be
                // linearized last: drop both.
                let only_final = v.is_some_and(|v| {
                    ws.iter()
                        .any(|w| w.value == v && w.effect == WriteEffect::Indeterminate)
                        && !rs.iter().any(|r| r.2 == Some(v))
                });
                if !only_final {
                    rs.push((max_time + 1, Time::MAX, v, None));
                }
            }
        }
        let initial = h.initial(key);
        // Values no checked read observes are interchangeable for the search
        // (no read can match them): they share one index, which shrinks the
        // memo a lot when unobserved writes overlap.
        let observed: BTreeSet<Option<Val>> = rs.iter().map(|r| r.2).collect();
        const UNOBSERVED: u32 = 0;
        let mut values: Vec<Option<Val>> = vec![None];
        let mut index: BTreeMap<Option<Val>, u32> = BTreeMap::new();
        let mut intern = |v: Option<Val>| -> u32 {
            if !observed.contains(&v) {
                return UNOBSERVED;
            }
            *index.entry(v).or_insert_with(|| {
                values.push(v);
                (values.len() - 1) as u32
            })
        };
        let init = intern(initial);
        let mut ops = Vec::new();
        for w in &ws {
            let op = h.op(w.op);
            let end = match w.effect {
                WriteEffect::Acked => op.ok_at().unwrap_or(Time::MAX),
                _ => {
                    let observers = rs.iter().filter(|r| r.2 == Some(w.value));
                    match observers.map(|r| r.1).max() {
                        Some(end) => end,
                        None => continue,
                    }
                }
            };
            ops.push(LOp {
                inv: op.invoked_at,
                end,
                kind: Kind::Write(intern(Some(w.value))),
                src: Some(w.op),
            });
        }
        let producible: BTreeSet<Option<Val>> = ws
            .iter()
            .map(|w| Some(w.value))
            .chain(std::iter::once(initial))
            .collect();
        for &(inv, end, v, src) in &rs {
            if !producible.contains(&v) {
                let mut ids: Vec<OpId> = src.into_iter().collect();
                ids.extend(f.writes.get(&v.unwrap_or(u64::MAX)).map(|w| w.op));
                let who = match src {
                    Some(id) => format!("read {id}"),
                    None => "the final state of the primary".to_string(),
                };
                let why = match v.and_then(|v| f.writes.get(&v)) {
                    Some(w) if w.key != key => format!("it was written to key {}", w.key),
                    Some(w) if w.intermediate => {
                        format!("{} overwrote it within its own transaction", w.op)
                    }
                    Some(w) => format!("its write {} failed definitely or was rolled back", w.op),
                    None if v.is_none() => {
                        "the key was written before and keys are never deleted".to_string()
                    }
                    None => "no operation wrote it".to_string(),
                };
                let mut viol = Violation::new(
                    Checker::LinearizablePerKey,
                    Some(key),
                    format!(
                        "{who} returned {} for {key}, a value no register history can produce: {why}",
                        fmt_val(v)
                    ),
                    h,
                    &ids,
                );
                if src.is_none() {
                    viol = viol.note(format!(
                        "final value of {key} on the primary: {}",
                        fmt_val(v)
                    ));
                }
                return Err(viol);
            }
            ops.push(LOp {
                inv,
                end,
                kind: Kind::Read(intern(v)),
                src,
            });
        }
        ops.sort_by_key(|o| {
            (
                o.inv,
                o.end,
                o.src.map(|s| s.0).unwrap_or(usize::MAX),
                matches!(o.kind, Kind::Read(_)),
            )
        });
        out.push(Problem {
            key: key.to_string(),
            ops,
            init,
            initial,
            values,
        });
    }
    Ok(out)
}

/// Removes operations while the remaining ones stay non-linearizable.
fn shrink(p: &Problem, considered: &[bool], opts: &LinOptions) -> Vec<LOp> {
    let fails = |ops: &[LOp]| {
        matches!(
            search(ops, p.init, opts.shrink_states),
            Search::NotLinearizable { .. }
        )
    };
    let observed = |ops: &[LOp], v: u32| ops.iter().any(|o| o.kind == Kind::Read(v));
    // Keep what the search looked at, plus writes those reads observe.
    let mut kept: Vec<LOp> = p
        .ops
        .iter()
        .zip(considered)
        .filter(|(_, c)| **c)
        .map(|(o, _)| *o)
        .collect();
    let extra: Vec<LOp> = p
        .ops
        .iter()
        .zip(considered)
        .filter(|(o, c)| !**c && matches!(o.kind, Kind::Write(v) if observed(&kept, v)))
        .map(|(o, _)| *o)
        .collect();
    kept.extend(extra);
    kept.sort_by_key(|o| (o.inv, o.end, o.src.map(|s| s.0).unwrap_or(usize::MAX)));
    if !fails(&kept) {
        kept = p.ops.clone();
    }
    let mut attempts = 0usize;
    let max_attempts = 4 * p.ops.len() + 16;
    loop {
        let mut changed = false;
        let mut i = kept.len();
        while i > 0 && attempts < max_attempts {
            i -= 1;
            let removable = match kept[i].kind {
                Kind::Read(_) => true,
                Kind::Write(v) => !observed(&kept, v),
            };
            if !removable {
                continue;
            }
            attempts += 1;
            let mut trial = kept.clone();
            trial.remove(i);
            if fails(&trial) {
                kept = trial;
                changed = true;
            }
        }
        if !changed || attempts >= max_attempts {
            break;
        }
    }
    kept
}

/// [`linearizable_per_key_with`] with default options.
pub fn linearizable_per_key(h: &History) -> Result<LinReport, Violation> {
    linearizable_per_key_with(h, &LinOptions::default())
}

/// Checks that, per key, the primary-routed reads and all writes form a
/// linearizable register history (see the module docs for exactly which
/// operations and how unknown outcomes are treated). Keys on which the search
/// exceeds its budget are listed in [`LinReport::inconclusive`].
pub fn linearizable_per_key_with(h: &History, opts: &LinOptions) -> Result<LinReport, Violation> {
    linearizable_per_key_in(h, &Facts::build(h)?, opts)
}

/// [`linearizable_per_key_with`] with the facts already built.
pub(crate) fn linearizable_per_key_in(h: &History, f: &Facts<'_>, opts: &LinOptions) -> Result<LinReport, Violation> {
    let problems = build_problems(&f, opts)?;
    let mut report = LinReport::default();
    for p in &problems {
        report.keys_checked += 1;
        report.ops_checked += p.ops.len();
        match search(&p.ops, p.init, opts.max_states_per_key) {
            Search::Linearizable { states } => report.states_explored += states,
            Search::GaveUp { states } => {
                report.states_explored += states;
                report.inconclusive.push(InconclusiveKey {
                    key: p.key.clone(),
                    ops: p.ops.len(),
                    states,
                });
            }
            Search::NotLinearizable { states, considered } => {
                let slice = if opts.shrink {
                    shrink(p, &considered, opts)
                } else {
                    p.ops.clone()
                };
                let ids: Vec<OpId> = slice.iter().filter_map(|o| o.src).collect();
                let has_final = slice.iter().any(|o| o.src.is_none());
                let mut v = Violation::new(
                    Checker::LinearizablePerKey,
                    Some(&p.key),
                    format!(
                        "the {} operations on {} below (writes, and reads routed to the primary{}) cannot be put in any \
                         single order that respects their real-time order (an operation that completed before another was \
                         invoked comes first) in which every read returns the latest preceding write, or the initial value \
                         {}. Unknown-outcome writes were allowed to take effect at any time after invocation or never; \
                         definitely failed writes never. (Search: {} states; slice shrunk from {} operations.)",
                        slice.len(),
                        p.key,
                        if has_final { ", and the primary's final value" } else { "" },
                        fmt_val(p.initial),
                        states,
                        p.ops.len()
                    ),
                    h,
                    &ids,
                );
                if let Some(o) = slice.iter().find(|o| o.src.is_none()) {
                    if let Kind::Read(x) = o.kind {
                        v = v.note(format!(
                            "final value of {} on the primary (a read after everything): {}",
                            p.key,
                            fmt_val(p.values[x as usize])
                        ));
                    }
                }
                return Err(v);
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
pub(super) mod testing {
    //! Direct access to the search for property tests.
    use super::*;

    /// (inv, end, is_write, value) — value `None` is the initial (absent).
    pub fn check_raw(ops: &[(Time, Time, bool, Option<Val>)], budget: usize) -> Option<bool> {
        let mut values: BTreeMap<Option<Val>, u32> = BTreeMap::new();
        values.insert(None, 0);
        let mut lops: Vec<LOp> = ops
            .iter()
            .map(|&(inv, end, w, v)| {
                let n = values.len() as u32;
                let x = *values.entry(v).or_insert(n);
                LOp {
                    inv,
                    end,
                    kind: if w { Kind::Write(x) } else { Kind::Read(x) },
                    src: None,
                }
            })
            .collect();
        lops.sort_by_key(|o| (o.inv, o.end));
        match search(&lops, 0, budget) {
            Search::Linearizable { .. } => Some(true),
            Search::NotLinearizable { .. } => Some(false),
            Search::GaveUp { .. } => None,
        }
    }
}
