//! The Prometheus text exposition of an instance's counters
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{Histogram, Metrics, LATENCY_BOUNDS_US};
use crate::failover::BufferStats;
use crate::health::{Observation, Topology};
use crate::pool::PoolStats;
use crate::route::classify::ClassifierStats;
use crate::route::decide::Reason;
use crate::session::state::Pin;

/// Everything `/metrics` shows, read by the caller at one moment.
pub struct Sources<'a> {
    pub metrics: &'a Metrics,
    pub topology: Option<&'a Topology>,
    pub pools: BTreeMap<String, PoolStats>,
    pub pins: BTreeMap<(String, Pin), u64>,
    pub failover: BufferStats,
    /// `(failovers, switchovers, fenced, failed attempts)` of the failover actor.
    pub failover_actor: (u64, u64, u64, u64),
    pub classifier: ClassifierStats,
    pub sessions: usize,
    /// Per node: statements in flight now (the load balancer's counter).
    pub in_flight: BTreeMap<String, u32>,
    /// Nodes drained by `SLUICE NODE … DRAIN`.
    pub drained: Vec<String>,
    pub uptime_s: u64,
    /// Per query rule: `(name, hits, blocked, timed out, queued, throttled, capped)`.
    pub rules: Vec<(String, [u64; 6])>,
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let (buckets, sum_ns) = h.snapshot();
    for (i, b) in LATENCY_BOUNDS_US.iter().enumerate() {
        let le = *b as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {}", buckets[i]);
    }
    let total = buckets[LATENCY_BOUNDS_US.len()];
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum_ns as f64 / 1e9);
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

/// The whole exposition.
pub fn render(s: &Sources<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let o = &mut out;
    let m = s.metrics;

    header(o, "sluice_uptime_seconds", "gauge", "Seconds since the instance started.");
    let _ = writeln!(o, "sluice_uptime_seconds {}", s.uptime_s);
    header(o, "sluice_login_failures_total", "counter", "Client logins refused or abandoned (credentials, handshake, timeout, no primary).");
    let _ = writeln!(o, "sluice_login_failures_total {}", m.login_failures.load(Ordering::Relaxed));
    header(o, "sluice_client_sessions", "gauge", "Client sessions open now.");
    let _ = writeln!(o, "sluice_client_sessions {}", s.sessions);

    // Nodes: monitor results (each family's samples grouped, as the format requires).
    let nodes: Vec<(String, &crate::health::NodeState)> = s.topology.map(|t| t.nodes.iter().map(|(a, n)| (esc(a), n)).collect()).unwrap_or_default();
    header(o, "sluice_node_up", "gauge", "1 when the monitor counts the node as up.");
    for (a, n) in &nodes {
        let _ = writeln!(o, "sluice_node_up{{node=\"{a}\"}} {}", matches!(n.observation, Observation::Up { .. }) as u8);
    }
    header(o, "sluice_node_role", "gauge", "The node's role as the monitor sees it (1 for the current role).");
    for (a, n) in &nodes {
        let _ = writeln!(o, "sluice_node_role{{node=\"{a}\",role=\"{}\"}} 1", n.role.name());
    }
    header(o, "sluice_node_readable", "gauge", "1 when the node may serve reads as a replica.");
    for (a, n) in &nodes {
        let _ = writeln!(o, "sluice_node_readable{{node=\"{a}\"}} {}", n.readable as u8);
    }
    header(o, "sluice_node_lag_seconds", "gauge", "Replication lag the monitor last read (absent when unknown).");
    for (a, n) in &nodes {
        if let Some(lag) = n.lag_ms {
            let _ = writeln!(o, "sluice_node_lag_seconds{{node=\"{a}\"}} {}", lag as f64 / 1000.0);
        }
    }
    header(o, "sluice_node_failed_probes", "gauge", "Consecutive failed monitor probes of the node.");
    for (a, n) in &nodes {
        let _ = writeln!(o, "sluice_node_failed_probes{{node=\"{a}\"}} {}", n.failed_probes);
    }
    header(o, "sluice_node_probe_seconds", "gauge", "How long the node's latest successful monitor probe took.");
    for (a, n) in &nodes {
        if let Some(d) = n.probe_latency {
            let _ = writeln!(o, "sluice_node_probe_seconds{{node=\"{a}\"}} {}", d.as_secs_f64());
        }
    }
    header(o, "sluice_node_drained", "gauge", "1 when the node was drained with SLUICE NODE ... DRAIN.");
    if let Some(t) = s.topology {
        for addr in t.nodes.keys() {
            let _ = writeln!(o, "sluice_node_drained{{node=\"{}\"}} {}", esc(addr), s.drained.iter().any(|d| d == addr) as u8);
        }
    }
    header(o, "sluice_node_in_flight", "gauge", "Statements running on the node now.");
    for (addr, n) in &s.in_flight {
        let _ = writeln!(o, "sluice_node_in_flight{{node=\"{}\"}} {n}", esc(addr));
    }

    // Nodes: statements.
    header(o, "sluice_node_statements_total", "counter", "Statements routed to the node, by routing reason.");
    for (addr, n) in m.nodes().iter() {
        for r in Reason::ALL {
            let c = n.routed[r.index()].load(Ordering::Relaxed);
            if c > 0 {
                let _ = writeln!(o, "sluice_node_statements_total{{node=\"{}\",reason=\"{}\"}} {c}", esc(addr), r.name());
            }
        }
    }
    header(o, "sluice_node_errors_total", "counter", "Error packets the node answered statements with, by error code.");
    for (addr, n) in m.nodes().iter() {
        for (code, c) in n.errors.snapshot() {
            let _ = writeln!(o, "sluice_node_errors_total{{node=\"{}\",code=\"{code}\"}} {c}", esc(addr));
        }
    }
    header(o, "sluice_node_bytes_in_total", "counter", "Statement bytes sent to the node.");
    for (addr, n) in m.nodes().iter() {
        let _ = writeln!(o, "sluice_node_bytes_in_total{{node=\"{}\"}} {}", esc(addr), n.bytes_in.load(Ordering::Relaxed));
    }
    header(o, "sluice_node_bytes_out_total", "counter", "Response bytes relayed from the node to clients.");
    for (addr, n) in m.nodes().iter() {
        let _ = writeln!(o, "sluice_node_bytes_out_total{{node=\"{}\"}} {}", esc(addr), n.bytes_out.load(Ordering::Relaxed));
    }
    header(o, "sluice_node_statement_seconds", "histogram", "Response time of statements on the node.");
    for (addr, n) in m.nodes().iter() {
        histogram(o, "sluice_node_statement_seconds", &format!("node=\"{}\"", esc(addr)), &n.latency);
    }

    // Users.
    let users = m.users();
    let user_counter = |o: &mut String, name: &str, help: &str, f: &dyn Fn(&super::UserMetrics) -> i64| {
        header(o, name, if name.ends_with("_total") { "counter" } else { "gauge" }, help);
        for (u, um) in &users {
            let _ = writeln!(o, "{name}{{user=\"{}\"}} {}", esc(u), f(um));
        }
    };
    user_counter(o, "sluice_user_connections", "Client sessions of the user open now.", &|u| u.connections.load(Ordering::Relaxed));
    user_counter(o, "sluice_user_logins_total", "Logins accepted.", &|u| u.logins.load(Ordering::Relaxed) as i64);
    user_counter(o, "sluice_user_commands_total", "Commands answered.", &|u| u.statements.load(Ordering::Relaxed) as i64);
    user_counter(o, "sluice_user_bytes_in_total", "Bytes read from the user's clients.", &|u| u.bytes_in.load(Ordering::Relaxed) as i64);
    user_counter(o, "sluice_user_bytes_out_total", "Bytes written to the user's clients.", &|u| u.bytes_out.load(Ordering::Relaxed) as i64);
    header(o, "sluice_user_errors_total", "counter", "Errors the user's clients got, by error code (the servers' and Sluice's own).");
    for (u, um) in &users {
        for (code, c) in um.errors.snapshot() {
            let _ = writeln!(o, "sluice_user_errors_total{{user=\"{}\",code=\"{code}\"}} {c}", esc(u));
        }
    }
    header(o, "sluice_user_command_seconds", "histogram", "Time from a command's arrival to the end of its answer.");
    for (u, um) in &users {
        histogram(o, "sluice_user_command_seconds", &format!("user=\"{}\"", esc(u)), &um.latency);
    }
    header(o, "sluice_pins_total", "counter", "Times a session was pinned to its backend connection, by user and reason.");
    for ((user, pin), c) in &s.pins {
        let _ = writeln!(o, "sluice_pins_total{{user=\"{}\",reason=\"{}\"}} {c}", esc(user), pin.name());
    }

    // Pools.
    let pool_rows: [(&str, &str, &str, fn(&PoolStats) -> u64); 12] = [
        ("sluice_pool_max", "gauge", "Largest size of the node's pool.", |p| p.max as u64),
        ("sluice_pool_open", "gauge", "Backend connections open in the node's pool.", |p| p.open as u64),
        ("sluice_pool_idle", "gauge", "Idle backend connections in the node's pool.", |p| p.idle as u64),
        ("sluice_pool_waiting", "gauge", "Sessions waiting for a connection of the node's pool.", |p| p.waiting as u64),
        ("sluice_pool_created_total", "counter", "Backend connections opened.", |p| p.created),
        ("sluice_pool_closed_total", "counter", "Backend connections closed.", |p| p.closed),
        ("sluice_pool_leases_total", "counter", "Connections lent to sessions.", |p| p.leases),
        ("sluice_pool_waits_total", "counter", "Leases that had to wait.", |p| p.waits),
        ("sluice_pool_timeouts_total", "counter", "Waits that timed out.", |p| p.timeouts),
        ("sluice_pool_refused_total", "counter", "Leases refused (queue full).", |p| p.refused),
        ("sluice_pool_pings_failed_total", "counter", "Idle connections that failed their check.", |p| p.pings_failed),
        ("sluice_pool_found_closed_total", "counter", "Idle connections found closed by their server.", |p| p.found_closed),
    ];
    for (name, kind, help, f) in pool_rows {
        header(o, name, kind, help);
        for (addr, p) in &s.pools {
            let _ = writeln!(o, "{name}{{node=\"{}\"}} {}", esc(addr), f(p));
        }
    }

    // Failover.
    let f = &s.failover;
    let failover_rows: [(&str, &str, &str, u64); 11] = [
        ("sluice_failover_buffer_waiting", "gauge", "Statements waiting for a primary now.", f.waiting as u64),
        ("sluice_failover_buffer_waiting_bytes", "gauge", "Bytes of the statements waiting for a primary now.", f.waiting_bytes as u64),
        ("sluice_failover_buffered_total", "counter", "Statements that waited for a primary.", f.buffered),
        ("sluice_failover_resumed_total", "counter", "Buffered statements sent to a new primary.", f.resumed),
        ("sluice_failover_buffer_timeouts_total", "counter", "Buffered statements that waited out the window.", f.timed_out),
        ("sluice_failover_buffer_refused_total", "counter", "Statements refused because a buffer bound was reached.", f.refused),
        ("sluice_failover_transactions_replayed_total", "counter", "Cut transactions replayed on the new primary.", f.transactions_replayed),
        ("sluice_failovers_total", "counter", "Failovers the built-in manager carried out.", s.failover_actor.0),
        ("sluice_switchovers_total", "counter", "Planned switchovers carried out.", s.failover_actor.1),
        ("sluice_fenced_total", "counter", "Old primaries fenced.", s.failover_actor.2),
        ("sluice_failover_failed_attempts_total", "counter", "Failover or switchover attempts that failed.", s.failover_actor.3),
    ];
    for (name, kind, help, v) in failover_rows {
        header(o, name, kind, help);
        let _ = writeln!(o, "{name} {v}");
    }

    // Query rules.
    let rule_rows: [(&str, &str); 6] = [
        ("sluice_rule_hits_total", "Statements the query rule matched."),
        ("sluice_rule_blocked_total", "Statements the query rule blocked."),
        ("sluice_rule_timeouts_total", "Statements killed at the query rule's timeout."),
        ("sluice_rule_queued_total", "Statements that waited for a slot under the rule's max_concurrency."),
        ("sluice_rule_throttled_total", "Statements refused: the rule's queue was full or the wait too long."),
        ("sluice_rule_capped_total", "Answers cut at the rule's max_rows or max_bytes."),
    ];
    for (i, (name, help)) in rule_rows.iter().enumerate() {
        header(o, name, "counter", help);
        for (rule, v) in &s.rules {
            let _ = writeln!(o, "{name}{{rule=\"{}\"}} {}", esc(rule), v[i]);
        }
    }

    // Classifier and digests.
    let c = &s.classifier;
    header(o, "sluice_classifier_total", "counter", "Statement classifications, by outcome (cache hit, miss, miss needing the full parser).");
    let _ = writeln!(o, "sluice_classifier_total{{result=\"hit\"}} {}", c.hits);
    let _ = writeln!(o, "sluice_classifier_total{{result=\"miss\"}} {}", c.misses);
    let _ = writeln!(o, "sluice_classifier_total{{result=\"parsed\"}} {}", c.parses);
    header(o, "sluice_digests", "gauge", "Statement digests held.");
    let _ = writeln!(o, "sluice_digests {}", m.digests.len());
    header(o, "sluice_slow_statements_total", "counter", "Statements slower than [stats] slow_query_ms.");
    let _ = writeln!(o, "sluice_slow_statements_total {}", m.slow_statements.load(Ordering::Relaxed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_well_formed_and_counts_what_happened() {
        let m = Metrics::new(&["db1:3306".to_string()], 10, 0);
        m.node("db1:3306").unwrap().statement(Reason::Read, 2_000_000, 30, 100, Some(1146));
        let u = m.user("app\"x");
        u.statements.fetch_add(3, Ordering::Relaxed);
        let s = Sources {
            metrics: &m,
            topology: None,
            pools: BTreeMap::new(),
            pins: BTreeMap::new(),
            failover: BufferStats::default(),
            failover_actor: (1, 0, 0, 0),
            classifier: ClassifierStats::default(),
            sessions: 2,
            in_flight: BTreeMap::new(),
            drained: Vec::new(),
            uptime_s: 5,
            rules: vec![("no-deletes".to_string(), [3, 3, 0, 0, 0, 0])],
        };
        let text = render(&s);
        assert!(text.contains("sluice_node_statements_total{node=\"db1:3306\",reason=\"read\"} 1\n"));
        assert!(text.contains("sluice_node_errors_total{node=\"db1:3306\",code=\"1146\"} 1\n"));
        assert!(text.contains("sluice_node_statement_seconds_bucket{node=\"db1:3306\",le=\"0.0025\"} 1\n"));
        assert!(text.contains("sluice_node_statement_seconds_bucket{node=\"db1:3306\",le=\"0.001\"} 0\n"));
        assert!(text.contains("sluice_user_commands_total{user=\"app\\\"x\"} 3\n"));
        assert!(text.contains("sluice_failovers_total 1\n"));
        assert!(text.contains("sluice_rule_blocked_total{rule=\"no-deletes\"} 3\n"));
        // Each family's samples are one group, after its one TYPE line.
        let mut seen = std::collections::BTreeSet::new();
        let mut current = String::new();
        for line in text.lines() {
            let family = match line.strip_prefix("# TYPE ") {
                Some(rest) => rest.split(' ').next().unwrap().to_string(),
                None if line.starts_with('#') => continue,
                None => {
                    let name = line.split(['{', ' ']).next().unwrap();
                    ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| if current.len() + s.len() == n.len() { n.strip_suffix(s).unwrap_or(n) } else { n }).to_string()
                }
            };
            if family != current {
                assert!(seen.insert(family.clone()), "{family} appears in two groups");
                current = family;
            }
        }
        // Every sample line: a metric name, optional labels, one number.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name and value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
