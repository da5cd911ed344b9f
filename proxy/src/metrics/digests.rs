//! Per-digest statement statistics (`SHOW SLUICE QUERY DIGESTS`), bounded.
//!
//! At most `capacity` digests are kept, spread over up to 16 shards by hash, each behind
//! its own mutex. The mutex is taken only to find or add a digest: a digest's figures
//! live in a [`DigestCell`] of atomics, which a session keeps a handle to
//! ([`DigestHandles`]) and updates without any lock. A new digest arriving at a full
//! shard replaces the shard's digest with the least total time, whose figures are folded
//! into one "other" row: memory never grows past the bound, the digests that cost the
//! most time stay, and the totals stay exact (but for a statement ending in the instant
//! its digest is folded away: its figures may be missed).

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::route::class::DigestId;

const MAX_SHARDS: usize = 16;

/// Figures of one digest.
#[derive(Debug, Clone)]
pub struct DigestStats {
    pub count: u64,
    pub errors: u64,
    /// Rows returned (result sets) or affected (writes).
    pub rows: u64,
    pub total_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub first_seen: Instant,
    pub last_seen: Instant,
}

impl DigestStats {
    fn merge(&mut self, o: &DigestStats) {
        self.count += o.count;
        self.errors += o.errors;
        self.rows += o.rows;
        self.total_ns += o.total_ns;
        self.min_ns = self.min_ns.min(o.min_ns);
        self.max_ns = self.max_ns.max(o.max_ns);
        self.first_seen = self.first_seen.min(o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
    }
}

/// One digest's figures, updated by every session running it with relaxed atomics.
#[derive(Debug)]
pub struct DigestCell {
    count: AtomicU64,
    errors: AtomicU64,
    rows: AtomicU64,
    total_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
    first_seen: Instant,
    /// Nanoseconds from `first_seen` to the last execution's end.
    last_seen_ns: AtomicU64,
    /// Folded into "other" or cleared: handles to it are dropped and looked up again.
    gone: AtomicBool,
}

impl DigestCell {
    fn new(now: Instant) -> Self {
        DigestCell {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
            first_seen: now,
            last_seen_ns: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        }
    }

    /// Counts one execution that took `ns` and ended at `now`.
    pub fn add(&self, ns: u64, rows: u64, error: bool, now: Instant) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if rows > 0 {
            self.rows.fetch_add(rows, Ordering::Relaxed);
        }
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        // Loads first: the extremes rarely change, and a load does not take the line.
        if ns < self.min_ns.load(Ordering::Relaxed) {
            self.min_ns.fetch_min(ns, Ordering::Relaxed);
        }
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
        let since = now.saturating_duration_since(self.first_seen).as_nanos() as u64;
        if since > self.last_seen_ns.load(Ordering::Relaxed) {
            self.last_seen_ns.fetch_max(since, Ordering::Relaxed);
        }
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> DigestStats {
        DigestStats {
            count: self.count.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            total_ns: self.total_ns.load(Ordering::Relaxed),
            min_ns: self.min_ns.load(Ordering::Relaxed),
            max_ns: self.max_ns.load(Ordering::Relaxed),
            first_seen: self.first_seen,
            last_seen: self.first_seen + std::time::Duration::from_nanos(self.last_seen_ns.load(Ordering::Relaxed)),
        }
    }
}

/// One row of [`Digests::top`]: `None` digest = the "other" row.
#[derive(Debug, Clone)]
pub struct DigestRow {
    pub digest: Option<Arc<DigestId>>,
    pub stats: DigestStats,
}

type Shard = HashMap<u64, (Arc<DigestId>, Arc<DigestCell>)>;

#[derive(Debug)]
pub struct Digests {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    other: Mutex<Option<DigestStats>>,
}

impl Digests {
    /// A table of at most `capacity` digests (0: digests are not kept).
    pub fn new(capacity: usize) -> Self {
        let shards = (capacity / 64).clamp(1, MAX_SHARDS).next_power_of_two().min(MAX_SHARDS);
        Digests {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: if capacity == 0 { 0 } else { capacity.div_ceil(shards) },
            other: Mutex::new(None),
        }
    }

    /// Counts one execution of `digest` (looking its cell up: sessions keep the cell,
    /// [`DigestHandles`]).
    pub fn record(&self, digest: &Arc<DigestId>, ns: u64, rows: u64, error: bool) {
        let now = Instant::now();
        if let Some(c) = self.cell(digest, now) {
            c.add(ns, rows, error, now);
        }
    }

    /// The cell of `digest`, added if new (`None` when digests are not kept).
    pub fn cell(&self, digest: &Arc<DigestId>, now: Instant) -> Option<Arc<DigestCell>> {
        if self.per_shard == 0 {
            return None;
        }
        let shard = &self.shards[(digest.hash as usize) & (self.shards.len() - 1)];
        let mut m = shard.locked();
        if let Some((_, c)) = m.get(&digest.hash) {
            return Some(c.clone());
        }
        if m.len() >= self.per_shard {
            // Room is made by folding the digest that cost the least time into "other".
            if let Some(&victim) = m.iter().min_by_key(|(_, (_, c))| c.total_ns.load(Ordering::Relaxed)).map(|(k, _)| k) {
                if let Some((_, c)) = m.remove(&victim) {
                    c.gone.store(true, Ordering::Relaxed);
                    let s = c.snapshot();
                    let mut o = self.other.locked();
                    match o.as_mut() {
                        Some(o) => o.merge(&s),
                        None => *o = Some(s),
                    }
                }
            }
        }
        let c = Arc::new(DigestCell::new(now));
        m.insert(digest.hash, (digest.clone(), c.clone()));
        Some(c)
    }

    /// The `n` digests with the most total time, then the "other" row if anything was
    /// folded into it.
    pub fn top(&self, n: usize) -> Vec<DigestRow> {
        let mut rows: Vec<DigestRow> = Vec::new();
        for shard in self.shards.iter() {
            let m = shard.locked();
            rows.extend(m.values().map(|(d, c)| DigestRow { digest: Some(d.clone()), stats: c.snapshot() }));
        }
        // A digest added but not yet counted has nothing to show.
        rows.retain(|r| r.stats.count > 0);
        rows.sort_by(|a, b| b.stats.total_ns.cmp(&a.stats.total_ns).then_with(|| a.digest.as_ref().map(|d| d.hash).cmp(&b.digest.as_ref().map(|d| d.hash))));
        rows.truncate(n);
        if let Some(o) = self.other.locked().clone() {
            rows.push(DigestRow { digest: None, stats: o });
        }
        rows
    }

    /// Digests held (not counting "other").
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.locked().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every digest (`SLUICE RESET DIGESTS`).
    pub fn clear(&self) {
        for s in self.shards.iter() {
            for (_, (_, c)) in s.locked().drain() {
                c.gone.store(true, Ordering::Relaxed);
            }
        }
        *self.other.locked() = None;
    }
}

/// A session's handles to the cells of the digests it ran lately: a statement whose
/// digest is here is counted with atomics only; the table is looked up (its shard
/// locked) the first time, and again once the cell was folded away or cleared.
#[derive(Debug, Default)]
pub struct DigestHandles {
    cells: Vec<(u64, Arc<DigestCell>)>,
    /// Where the next new handle goes once `cells` is full.
    next: usize,
}

/// Handles a session keeps (a workload's distinct statements usually fit).
const HANDLES: usize = 16;

impl DigestHandles {
    /// Counts one execution of `digest` in `table`.
    pub fn record(&mut self, table: &Digests, digest: &Arc<DigestId>, ns: u64, rows: u64, error: bool, now: Instant) {
        if let Some(i) = self.cells.iter().position(|(h, _)| *h == digest.hash) {
            let c = &self.cells[i].1;
            if !c.is_gone() {
                c.add(ns, rows, error, now);
                return;
            }
            self.cells.swap_remove(i);
        }
        let Some(c) = table.cell(digest, now) else { return };
        c.add(ns, rows, error, now);
        if self.cells.len() < HANDLES {
            self.cells.push((digest.hash, c));
        } else {
            self.cells[self.next % HANDLES] = (digest.hash, c);
            self.next = self.next.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hash: u64) -> Arc<DigestId> {
        Arc::new(DigestId { hash, text: format!("SELECT {hash}").into_boxed_str() })
    }

    #[test]
    fn one_digest_accumulates_count_time_rows_and_errors() {
        let d = Digests::new(100);
        let a = id(7);
        d.record(&a, 1_000, 1, false);
        d.record(&a, 5_000, 2, true);
        let top = d.top(10);
        assert_eq!(top.len(), 1);
        let s = &top[0].stats;
        assert_eq!((s.count, s.errors, s.rows, s.total_ns, s.min_ns, s.max_ns), (2, 1, 3, 6_000, 1_000, 5_000));
    }

    #[test]
    fn the_table_is_bounded_and_the_rest_folds_into_other_with_exact_totals() {
        let d = Digests::new(64);
        let mut total = 0;
        for h in 0..10_000u64 {
            let ns = (h % 97) * 1000 + 1;
            total += ns;
            d.record(&id(h), ns, 0, false);
        }
        assert!(d.len() <= 64);
        let rows = d.top(usize::MAX);
        assert!(rows.last().is_some_and(|r| r.digest.is_none()), "an other row");
        assert_eq!(rows.iter().map(|r| r.stats.total_ns).sum::<u64>(), total);
        assert_eq!(rows.iter().map(|r| r.stats.count).sum::<u64>(), 10_000);
    }

    #[test]
    fn costly_digests_survive_a_flood_of_cheap_ones() {
        let d = Digests::new(64);
        let heavy = id(u64::MAX);
        for _ in 0..100 {
            d.record(&heavy, 1_000_000_000, 0, false);
        }
        for h in 0..50_000u64 {
            d.record(&id(h), 10, 0, false);
        }
        let top = d.top(1);
        assert_eq!(top[0].digest.as_ref().map(|d| d.hash), Some(u64::MAX));
    }

    #[test]
    fn sessions_count_through_their_handles_and_see_folds_and_clears() {
        let d = Digests::new(1);
        let (mut a, mut b) = (DigestHandles::default(), DigestHandles::default());
        let x = id(1);
        for _ in 0..3 {
            a.record(&d, &x, 10, 1, false, Instant::now());
            b.record(&d, &x, 20, 0, true, Instant::now());
        }
        let s = &d.top(1)[0].stats;
        assert_eq!((s.count, s.errors, s.rows, s.total_ns, s.min_ns, s.max_ns), (6, 3, 3, 90, 10, 20));
        // A costlier digest takes the only place: x is folded into "other", and the
        // handles to it are dropped, not counted into a cell nobody shows.
        let y = id(2);
        b.record(&d, &y, 1_000, 0, false, Instant::now());
        a.record(&d, &x, 5, 0, false, Instant::now());
        let rows = d.top(10);
        let total: u64 = rows.iter().map(|r| r.stats.count).sum();
        assert_eq!(total, 8, "{rows:?}");
        d.clear();
        assert!(d.top(10).is_empty());
        a.record(&d, &y, 7, 0, false, Instant::now());
        assert_eq!(d.top(10)[0].stats.total_ns, 7);
    }

    #[test]
    fn top_orders_by_total_time() {
        let d = Digests::new(100);
        d.record(&id(1), 10, 0, false);
        d.record(&id(2), 30, 0, false);
        d.record(&id(3), 20, 0, false);
        let order: Vec<u64> = d.top(3).iter().map(|r| r.digest.as_ref().unwrap().hash).collect();
        assert_eq!(order, vec![2, 3, 1]);
    }
}
