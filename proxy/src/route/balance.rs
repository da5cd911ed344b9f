//! Load balancing: which of the nodes eligible for a read gets it.
//!
//! [`NodeStats`] are the per-node counters every session updates (statements in
//! flight, a moving average of response times, statements routed); [`pick`] chooses
//! among [`Candidate`]s by the configured [`Policy`], in proportion to the nodes'
//! weights. Plain synchronous code: the caller passes the shared turn counter (for
//! round robin and for breaking ties) and its session's seeded RNG (for `random`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::Policy;

/// Counters of one backend node, shared by every session of a proxy. Updated with
/// relaxed atomics: no lock per statement.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Statements sent to the node whose response has not ended yet.
    pub in_flight: AtomicU32,
    /// Exponentially weighted moving average of response times, in nanoseconds (0 =
    /// nothing measured yet).
    pub ewma_ns: AtomicU64,
    /// Statements routed to the node, in total.
    pub routed: AtomicU64,
    /// Of those, reads routed to it as a replica (or as a reader among replicas).
    pub routed_reads: AtomicU64,
    /// Drained by the admin (`SLUICE NODE … DRAIN`): no new reads go there.
    pub drained: std::sync::atomic::AtomicBool,
}

/// Weight of a new sample in the moving average (1/8).
const EWMA_SHIFT: u32 = 3;

impl NodeStats {
    /// A statement starts on the node.
    pub fn start(&self, read: bool) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.routed.fetch_add(1, Ordering::Relaxed);
        if read {
            self.routed_reads.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A statement's response ended after `elapsed_ns`.
    pub fn finish(&self, elapsed_ns: u64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let old = self.ewma_ns.load(Ordering::Relaxed);
        let new = if old == 0 { elapsed_ns.max(1) } else { old - (old >> EWMA_SHIFT) + (elapsed_ns >> EWMA_SHIFT) };
        self.ewma_ns.store(new.max(1), Ordering::Relaxed);
    }
}

/// One node that may serve a read.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub addr: &'a str,
    /// Relative share of reads; 0 never comes here (filtered by the caller).
    pub weight: u32,
    /// Replication lag (0 for the primary); `None` counts as the largest.
    pub lag_ms: Option<u64>,
    pub in_flight: u32,
    pub ewma_ns: u64,
}

/// Chooses a candidate's index, or `None` when there is none. `turn` is the proxy's
/// shared turn counter (incremented on every call), `rng` the session's RNG.
pub fn pick(policy: Policy, cands: &[Candidate<'_>], turn: u64, rng: &mut ChaCha8Rng) -> Option<usize> {
    match cands.len() {
        0 => return None,
        1 => return Some(0),
        _ => {}
    }
    let total: u64 = cands.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return None;
    }
    match policy {
        Policy::RoundRobin => Some(by_weight(cands, turn % total)),
        Policy::Random => Some(by_weight(cands, rng.gen_range(0..total))),
        // Fewest in flight per unit of weight: compare (in_flight + 1) / weight as
        // cross products so no division is needed.
        Policy::LeastConnections => least(cands, turn, |a, b| {
            (u64::from(a.in_flight) + 1) * u64::from(b.weight) < (u64::from(b.in_flight) + 1) * u64::from(a.weight)
        }, |a, b| (u64::from(a.in_flight) + 1) * u64::from(b.weight) == (u64::from(b.in_flight) + 1) * u64::from(a.weight)),
        Policy::LeastLatency => least(cands, turn, |a, b| a.ewma_ns < b.ewma_ns, |a, b| a.ewma_ns == b.ewma_ns),
        Policy::LeastLag => {
            let lag = |c: &Candidate<'_>| c.lag_ms.unwrap_or(u64::MAX);
            least(cands, turn, |a, b| lag(a) < lag(b), |a, b| lag(a) == lag(b))
        }
    }
}

/// The candidate whose cumulative weight range holds `n` (< total weight).
fn by_weight(cands: &[Candidate<'_>], mut n: u64) -> usize {
    for (i, c) in cands.iter().enumerate() {
        let w = u64::from(c.weight);
        if n < w {
            return i;
        }
        n -= w;
    }
    cands.len() - 1
}

/// The best candidate by `better`; among equally good ones, the turn decides (so ties
/// rotate instead of always hitting the first node).
fn least(
    cands: &[Candidate<'_>],
    turn: u64,
    better: impl Fn(&Candidate<'_>, &Candidate<'_>) -> bool,
    same: impl Fn(&Candidate<'_>, &Candidate<'_>) -> bool,
) -> Option<usize> {
    let mut best = 0;
    for i in 1..cands.len() {
        if better(&cands[i], &cands[best]) {
            best = i;
        }
    }
    let ties: Vec<usize> = (0..cands.len()).filter(|&i| same(&cands[i], &cands[best])).collect();
    // cannot fail: `pick`, the only caller, returns earlier without candidates, so `best` itself is in `ties`.
    Some(ties[(turn % ties.len() as u64) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn cand(addr: &str, weight: u32) -> Candidate<'_> {
        Candidate { addr, weight, lag_ms: Some(0), in_flight: 0, ewma_ns: 0 }
    }

    fn counts(policy: Policy, cands: &[Candidate<'_>], n: u64) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut c = vec![0; cands.len()];
        for turn in 0..n {
            c[pick(policy, cands, turn, &mut rng).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_alternates_in_proportion_to_weights() {
        let cands = [cand("a", 1), cand("b", 2)];
        assert_eq!(counts(Policy::RoundRobin, &cands, 300), vec![100, 200]);
        let even = [cand("a", 1), cand("b", 1)];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let seq: Vec<usize> = (0..4).map(|t| pick(Policy::RoundRobin, &even, t, &mut rng).unwrap()).collect();
        assert_eq!(seq, vec![0, 1, 0, 1]);
    }

    #[test]
    fn random_spreads_roughly_by_weight_and_is_seeded() {
        let cands = [cand("a", 1), cand("b", 3)];
        let c = counts(Policy::Random, &cands, 4000);
        assert!((800..1200).contains(&c[0]), "{c:?}");
        assert_eq!(c, counts(Policy::Random, &cands, 4000), "same seed, same choices");
    }

    #[test]
    fn least_connections_prefers_the_node_with_fewer_in_flight() {
        let mut cands = [cand("a", 1), cand("b", 1)];
        cands[0].in_flight = 3;
        cands[1].in_flight = 1;
        assert_eq!(counts(Policy::LeastConnections, &cands, 10), vec![0, 10]);
        // Weight 4 with 3 in flight ((3+1)/4 = 1) beats weight 1 with 1 in flight (2).
        cands[0].weight = 4;
        assert_eq!(counts(Policy::LeastConnections, &cands, 10), vec![10, 0]);
    }

    #[test]
    fn least_latency_prefers_the_fastest_and_ties_rotate() {
        let mut cands = [cand("a", 1), cand("b", 1), cand("c", 1)];
        cands[0].ewma_ns = 900;
        cands[1].ewma_ns = 300;
        cands[2].ewma_ns = 300;
        assert_eq!(counts(Policy::LeastLatency, &cands, 10), vec![0, 5, 5]);
    }

    #[test]
    fn least_lag_prefers_the_most_caught_up_and_unknown_lag_last() {
        let mut cands = [cand("a", 1), cand("b", 1)];
        cands[0].lag_ms = None;
        cands[1].lag_ms = Some(400);
        assert_eq!(counts(Policy::LeastLag, &cands, 6), vec![0, 6]);
    }

    #[test]
    fn no_candidates_or_zero_weight_pick_nothing() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(pick(Policy::RoundRobin, &[], 0, &mut rng), None);
        assert_eq!(pick(Policy::RoundRobin, &[cand("a", 0), cand("b", 0)], 0, &mut rng), None);
    }

    #[test]
    fn ewma_moves_toward_new_samples() {
        let s = NodeStats::default();
        s.start(true);
        s.finish(800);
        assert_eq!(s.ewma_ns.load(Ordering::Relaxed), 800);
        s.start(true);
        s.finish(1600);
        assert_eq!(s.ewma_ns.load(Ordering::Relaxed), 900);
        assert_eq!(s.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(s.routed.load(Ordering::Relaxed), 2);
    }
}
