//! What an instance counts: per node and per user statements, latency histograms,
//! errors by code, bytes in and out, connections; routing reasons per node; statement
//! digests ([`digests`]); and the rendering of all of it, with the pools', pins',
//! failover's and monitor's own counters, in the Prometheus text exposition format
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>) for `/metrics`.
//!
//! The hot path only touches atomics of structures a session looked up once (its
//! user's at login, a node's from a map that never changes while the instance runs):
//! no lock per statement. Error counts take a small lock, only when an error happens.

pub mod digests;
mod render;

use crate::sync::Locked;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::route::decide::Reason;

pub use render::{render, Sources};

/// Upper bounds of the latency histogram buckets, in microseconds (the last bucket,
/// `+Inf`, is implicit).
pub const LATENCY_BOUNDS_US: [u64; 16] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000];

/// A latency histogram with fixed buckets ([`LATENCY_BOUNDS_US`]).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe_ns(&self, ns: u64) {
        let us = ns / 1000;
        let i = LATENCY_BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last one is the total), and the sum in ns.
    pub fn snapshot(&self) -> ([u64; LATENCY_BOUNDS_US.len() + 1], u64) {
        let mut out = [0u64; LATENCY_BOUNDS_US.len() + 1];
        let mut acc = 0;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            acc += b.load(Ordering::Relaxed);
            *o = acc;
        }
        (out, self.sum_ns.load(Ordering::Relaxed))
    }
}

/// Errors by code. Locked only when an error is counted or read.
#[derive(Debug, Default)]
pub struct ErrorCounts(Mutex<BTreeMap<u16, u64>>);

/// Distinct error codes one [`ErrorCounts`] keeps; further codes count under 0.
const MAX_ERROR_CODES: usize = 256;

impl ErrorCounts {
    pub fn add(&self, code: u16) {
        let mut m = self.0.locked();
        let code = if m.len() >= MAX_ERROR_CODES && !m.contains_key(&code) { 0 } else { code };
        *m.entry(code).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<u16, u64> {
        self.0.locked().clone()
    }
}

/// Counters of one backend node.
#[derive(Debug)]
pub struct NodeMetrics {
    /// Statements by routing reason ([`Reason::index`]).
    pub routed: [AtomicU64; Reason::ALL.len()],
    /// Response times of statements on the node.
    pub latency: Histogram,
    /// Errors the node answered with, by code.
    pub errors: ErrorCounts,
    /// Statement bytes sent to the node, and response bytes relayed from it.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics {
            routed: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Histogram::default(),
            errors: ErrorCounts::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }
}

impl NodeMetrics {
    /// A statement ran on the node for `reason`; its response took `ns`, had
    /// `bytes_out` bytes and ended with `error` (if any).
    pub fn statement(&self, reason: Reason, ns: u64, bytes_in: u64, bytes_out: u64, error: Option<u16>) {
        self.routed[reason.index()].fetch_add(1, Ordering::Relaxed);
        self.latency.observe_ns(ns);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        if let Some(code) = error {
            self.errors.add(code);
        }
    }
}

/// Counters of one client user.
#[derive(Debug, Default)]
pub struct UserMetrics {
    /// Client sessions open now.
    pub connections: AtomicI64,
    /// Logins accepted.
    pub logins: AtomicU64,
    /// Commands answered (statements, executes, pings, …).
    pub statements: AtomicU64,
    /// Time from a command's arrival to the end of its answer.
    pub latency: Histogram,
    /// Errors the user's clients got, by code (the servers' and Sluice's own).
    pub errors: ErrorCounts,
    /// Bytes read from and written to the user's clients.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// Distinct user names counted one by one; further names count under `"(other)"` (in
/// pass-through mode any account can log in).
const MAX_USERS: usize = 4096;

/// An instance's counters.
#[derive(Debug)]
pub struct Metrics {
    /// Per node address (the configured nodes; a reload may change them).
    pub nodes: crate::sync::NodeMap<NodeMetrics>,
    /// Per user name; looked up once per login.
    users: Mutex<BTreeMap<String, Arc<UserMetrics>>>,
    /// Statement digests.
    pub digests: digests::Digests,
    /// Statements slower than this are logged (0: never).
    pub slow_ns: AtomicU64,
    /// Slow statements logged.
    pub slow_statements: AtomicU64,
    /// Logins refused or abandoned (bad credentials, bad handshake, timeout, no
    /// primary), whoever tried.
    pub login_failures: AtomicU64,
}

impl Metrics {
    pub fn new(nodes: &[String], max_digests: usize, slow_ms: u64) -> Self {
        Metrics {
            nodes: crate::sync::NodeMap::new(nodes),
            users: Mutex::new(BTreeMap::new()),
            digests: digests::Digests::new(max_digests),
            slow_ns: AtomicU64::new(slow_ms.saturating_mul(1_000_000)),
            slow_statements: AtomicU64::new(0),
            login_failures: AtomicU64::new(0),
        }
    }

    /// The counters of `node`, if it is configured.
    pub fn node(&self, node: &str) -> Option<Arc<NodeMetrics>> {
        self.nodes.get(node)
    }

    /// Every node's counters.
    pub fn nodes(&self) -> Arc<BTreeMap<String, Arc<NodeMetrics>>> {
        self.nodes.snapshot()
    }

    /// The counters of `user` (made on first use).
    pub fn user(&self, user: &str) -> Arc<UserMetrics> {
        let mut m = self.users.locked();
        if let Some(u) = m.get(user) {
            return u.clone();
        }
        let key = if m.len() >= MAX_USERS { "(other)" } else { user };
        m.entry(key.to_string()).or_default().clone()
    }

    /// Every user's counters.
    pub fn users(&self) -> Vec<(String, Arc<UserMetrics>)> {
        self.users.locked().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_the_last_is_the_total() {
        let h = Histogram::default();
        h.observe_ns(50_000); // 50 µs
        h.observe_ns(3_000_000); // 3 ms
        h.observe_ns(60_000_000_000); // 60 s
        let (b, sum) = h.snapshot();
        assert_eq!(b[0], 1);
        assert_eq!(b[5], 2); // ≤ 5 ms
        assert_eq!(b[LATENCY_BOUNDS_US.len() - 1], 2);
        assert_eq!(b[LATENCY_BOUNDS_US.len()], 3);
        assert_eq!(sum, 50_000 + 3_000_000 + 60_000_000_000);
    }

    #[test]
    fn error_codes_beyond_the_bound_count_together() {
        let e = ErrorCounts::default();
        for code in 0..(MAX_ERROR_CODES as u16 + 10) {
            e.add(code + 1);
        }
        let s = e.snapshot();
        assert!(s.len() <= MAX_ERROR_CODES + 1);
        assert_eq!(s.values().sum::<u64>(), MAX_ERROR_CODES as u64 + 10);
    }

    #[test]
    fn user_counters_are_shared_per_name_and_bounded() {
        let m = Metrics::new(&["a:1".to_string()], 10, 0);
        let u1 = m.user("app");
        u1.statements.fetch_add(1, Ordering::Relaxed);
        assert_eq!(m.user("app").statements.load(Ordering::Relaxed), 1);
        for i in 0..MAX_USERS + 5 {
            m.user(&format!("u{i}"));
        }
        assert!(m.users().len() <= MAX_USERS + 1);
    }
}
