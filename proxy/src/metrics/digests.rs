//! Per-digest statement statistics (`SHOW SLUICE QUERY DIGESTS`), bounded.
//!
//! At most `capacity` digests are kept, spread over up to 16 shards by hash (each
//! behind its own mutex, so sessions rarely wait for each other). A new digest arriving
//! at a full shard replaces the shard's digest with the least total time, whose figures
//! are folded into one "other" row: memory never grows past the bound, the digests that
//! cost the most time stay, and the totals stay exact.

use crate::sync::Locked;
use std::collections::HashMap;
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
    fn new(now: Instant) -> Self {
        DigestStats { count: 0, errors: 0, rows: 0, total_ns: 0, min_ns: u64::MAX, max_ns: 0, first_seen: now, last_seen: now }
    }

    fn add(&mut self, ns: u64, rows: u64, error: bool, now: Instant) {
        self.count += 1;
        self.errors += error as u64;
        self.rows += rows;
        self.total_ns += ns;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.last_seen = self.last_seen.max(now);
    }

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

/// One row of [`Digests::top`]: `None` digest = the "other" row.
#[derive(Debug, Clone)]
pub struct DigestRow {
    pub digest: Option<Arc<DigestId>>,
    pub stats: DigestStats,
}

#[derive(Debug)]
pub struct Digests {
    shards: Box<[Mutex<HashMap<u64, (Arc<DigestId>, DigestStats)>>]>,
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

    /// Counts one execution of `digest`.
    pub fn record(&self, digest: &Arc<DigestId>, ns: u64, rows: u64, error: bool) {
        if self.per_shard == 0 {
            return;
        }
        let now = Instant::now();
        let shard = &self.shards[(digest.hash as usize) & (self.shards.len() - 1)];
        let mut m = shard.locked();
        if let Some((_, s)) = m.get_mut(&digest.hash) {
            s.add(ns, rows, error, now);
            return;
        }
        if m.len() >= self.per_shard {
            // Room is made by folding the digest that cost the least time into "other".
            if let Some(&victim) = m.iter().min_by_key(|(_, (_, s))| s.total_ns).map(|(k, _)| k) {
                if let Some((_, s)) = m.remove(&victim) {
                    let mut o = self.other.locked();
                    match o.as_mut() {
                        Some(o) => o.merge(&s),
                        None => *o = Some(s),
                    }
                }
            }
        }
        let mut s = DigestStats::new(now);
        s.add(ns, rows, error, now);
        m.insert(digest.hash, (digest.clone(), s));
    }

    /// The `n` digests with the most total time, then the "other" row if anything was
    /// folded into it.
    pub fn top(&self, n: usize) -> Vec<DigestRow> {
        let mut rows: Vec<DigestRow> = Vec::new();
        for shard in self.shards.iter() {
            let m = shard.locked();
            rows.extend(m.values().map(|(d, s)| DigestRow { digest: Some(d.clone()), stats: s.clone() }));
        }
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
            s.locked().clear();
        }
        *self.other.locked() = None;
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
    fn top_orders_by_total_time() {
        let d = Digests::new(100);
        d.record(&id(1), 10, 0, false);
        d.record(&id(2), 30, 0, false);
        d.record(&id(3), 20, 0, false);
        let order: Vec<u64> = d.top(3).iter().map(|r| r.digest.as_ref().unwrap().hash).collect();
        assert_eq!(order, vec![2, 3, 1]);
    }
}
