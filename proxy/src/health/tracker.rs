//! The monitor's decisions: probe results in, the published [`Topology`] and its
//! changes out. Plain synchronous code; the monitor's tasks only feed it.
//!
//! Per node, each successful probe is classified as *writable* (`read_only` off, no
//! replication configured), *replicating* (at least one channel configured, running or
//! not) or *read-only* (neither). The published class changes only after
//! `debounce` consecutive successful probes show the same new class, so one odd answer
//! does not move the primary — except that a writable node turning read-only or
//! replicating is taken at once (it must stop getting primary statements now). A node is published down after `failures` consecutive
//! failed probes, or at its first probe if it was never seen up; a down node comes back
//! after `debounce` consecutive successful probes agree (a failed probe meanwhile agrees
//! with "down" and restarts the count). A failed probe below `failures` changes nothing.
//!
//! Roles follow from the published classes of all nodes: the one writable node is the
//! primary; two or more writable nodes are a split brain and none is primary (all of
//! them standalone); replicating nodes are replicas; read-only non-replicating nodes are
//! standalone.
//!
//! Read eligibility is debounced the same way: each successful probe says whether the
//! node could serve reads (replicating, every channel's IO and SQL threads running, lag
//! known and at most `max_replica_lag_ms`), and the published flag follows after
//! `debounce` consecutive probes say otherwise. A down node is unreadable at once. A
//! node is readable only while its published role is replica.
//!
//! The first probe of a node is taken as is (there is nothing to protect yet), and the
//! topology is published once every node has been probed once.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::probe::Probed;
use super::state::{NodeState, Observation, Role, Topology};

/// Decision parameters (from `[backend]` and `[routing]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub failures: u32,
    pub debounce: u32,
    pub max_replica_lag_ms: u64,
}

/// What the failover actor tells the tracker (`crate::failover::actor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// A switchover holds new primary-bound statements back: publish no primary while
    /// on (sessions wait in the failover buffer).
    Hold(bool),
    /// `new` was promoted in place of `old`: take it as the primary now (no probe
    /// debounce; it was made so), and, while `old` still shows writable, prefer `new`.
    Promoted { new: String, old: String },
}

/// One probe's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the probe started.
    pub at: Instant,
    /// How long it took.
    pub latency: Duration,
    pub result: Result<Probed, String>,
}

/// A change of the published topology, reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The first complete topology.
    Discovered { primary: Option<String>, roles: Vec<(String, Role)> },
    Role { node: String, from: Role, to: Role, reason: String },
    Readable { node: String, readable: bool, reason: String },
    Primary { from: Option<String>, to: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Down,
    Writable,
    Replicating,
    ReadOnly,
}

fn class_of(p: &Probed) -> Class {
    match (p.channels.is_empty(), p.read_only) {
        (false, _) => Class::Replicating,
        (true, false) => Class::Writable,
        (true, true) => Class::ReadOnly,
    }
}

/// A value that changes only after `n` consecutive samples agree on a new one.
#[derive(Debug, Clone)]
struct Debounced<T> {
    value: T,
    pending: Option<(T, u32)>,
}

impl<T: Copy + PartialEq> Debounced<T> {
    fn new(value: T) -> Self {
        Debounced { value, pending: None }
    }

    /// Feeds one sample; returns whether the value changed.
    fn feed(&mut self, sample: T, n: u32) -> bool {
        if sample == self.value {
            self.pending = None;
            return false;
        }
        let count = match self.pending {
            Some((p, c)) if p == sample => c + 1,
            _ => 1,
        };
        if count >= n {
            self.set(sample);
            true
        } else {
            self.pending = Some((sample, count));
            false
        }
    }

    fn set(&mut self, value: T) {
        self.value = value;
        self.pending = None;
    }

    /// Consecutive samples so far for a pending `value`.
    fn pending_for(&self, value: T) -> u32 {
        match self.pending {
            Some((p, c)) if p == value => c,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    /// `None` until the first probe.
    class: Option<Debounced<Class>>,
    readable: Debounced<bool>,
    failed: u32,
    seen_up: bool,
    last_error: String,
    latest: Option<Probed>,
    /// Why the latest successful probe says the node cannot serve reads.
    raw_unreadable: Option<String>,
    lag_ms: Option<u64>,
    probe_latency: Option<Duration>,
    last_probe: Option<Instant>,
    last_seen_up: Option<Instant>,
}

impl Node {
    /// Not probed yet.
    fn unknown() -> Self {
        Node {
            class: None,
            readable: Debounced::new(false),
            failed: 0,
            seen_up: false,
            last_error: String::new(),
            latest: None,
            raw_unreadable: None,
            lag_ms: None,
            probe_latency: None,
            last_probe: None,
            last_seen_up: None,
        }
    }
}

/// Fed probe results, decides and publishes the topology.
#[derive(Debug, Clone)]
pub struct Tracker {
    settings: Settings,
    nodes: BTreeMap<String, Node>,
    published: Option<Topology>,
    /// A switchover holds the primary back.
    hold: bool,
    /// The node the failover actor promoted last: the primary while it is writable,
    /// even if a demoted node still shows writable too.
    promoted: Option<String>,
}

impl Tracker {
    pub fn new(nodes: &[String], settings: Settings) -> Self {
        let nodes = nodes.iter().map(|a| (a.clone(), Node::unknown())).collect();
        Tracker { settings: Settings { failures: settings.failures.max(1), debounce: settings.debounce.max(1), ..settings }, nodes, published: None, hold: false, promoted: None }
    }

    /// Takes a directive of the failover actor; returns what changed.
    pub fn direct(&mut self, d: Directive) -> Vec<Change> {
        match d {
            Directive::Hold(on) => self.hold = on,
            Directive::Promoted { new, old } => {
                if let Some(n) = self.nodes.get_mut(&new) {
                    n.class = Some(Debounced::new(Class::Writable));
                    n.readable.set(false);
                    n.latest.iter_mut().for_each(|p| {
                        p.read_only = false;
                        p.channels.clear();
                    });
                }
                if let Some(n) = self.nodes.get_mut(&old) {
                    if n.class.as_ref().is_some_and(|c| c.value == Class::Writable) {
                        n.class = Some(Debounced::new(Class::ReadOnly));
                        n.latest.iter_mut().for_each(|p| p.read_only = true);
                    }
                }
                self.promoted = Some(new);
            }
        }
        self.publish()
    }

    /// A node added by a config reload: it joins the published topology once probed.
    pub fn add_node(&mut self, addr: &str) {
        self.nodes.entry(addr.to_string()).or_insert_with(Node::unknown);
    }

    /// A node removed by a config reload leaves the published topology now; returns
    /// what changed. (The caller keeps the primary from being removed.)
    pub fn remove_node(&mut self, addr: &str) -> Vec<Change> {
        if self.nodes.remove(addr).is_none() {
            return Vec::new();
        }
        if self.promoted.as_deref() == Some(addr) {
            self.promoted = None;
        }
        self.publish()
    }

    /// The published topology; `None` until every node has been probed once.
    pub fn topology(&self) -> Option<&Topology> {
        self.published.as_ref()
    }

    /// Takes one probe result of `node` (unknown nodes are ignored) and returns what
    /// changed in the published topology.
    pub fn observe(&mut self, node: &str, sample: Sample) -> Vec<Change> {
        let s = self.settings;
        let Some(n) = self.nodes.get_mut(node) else {
            return Vec::new();
        };
        n.last_probe = Some(sample.at);
        match sample.result {
            Ok(p) => {
                n.failed = 0;
                n.seen_up = true;
                n.last_seen_up = Some(sample.at);
                n.probe_latency = Some(sample.latency);
                let class = class_of(&p);
                let (raw_readable, lag_ms, why) = readability(&p, class, s.max_replica_lag_ms);
                n.lag_ms = lag_ms;
                n.raw_unreadable = why;
                n.latest = Some(p);
                match &mut n.class {
                    None => {
                        n.class = Some(Debounced::new(class));
                        n.readable.set(raw_readable);
                    }
                    // Losing writability is taken at once: a node that turned read-only or
                    // replicates (a switchover by another Sluice or an operator) must stop
                    // getting primary statements now — stale reads, or writes refused
                    // with 1290, otherwise. Gaining it is debounced.
                    Some(c) if c.value == Class::Writable && class != Class::Writable => {
                        c.set(class);
                        n.readable.feed(raw_readable, s.debounce);
                    }
                    Some(c) => {
                        c.feed(class, s.debounce);
                        n.readable.feed(raw_readable, s.debounce);
                    }
                }
            }
            Err(error) => {
                n.failed += 1;
                n.last_error = error;
                match &mut n.class {
                    None => n.class = Some(Debounced::new(Class::Down)),
                    Some(c) if c.value == Class::Down => c.set(Class::Down),
                    Some(c) if !n.seen_up || n.failed >= s.failures => c.set(Class::Down),
                    Some(_) => {}
                }
                if n.class.as_ref().is_some_and(|c| c.value == Class::Down) {
                    n.readable.set(false);
                    n.lag_ms = None;
                }
            }
        }
        self.publish()
    }

    fn publish(&mut self) -> Vec<Change> {
        // The first topology waits for every node; a node added later (a reload) is
        // left out of it until its first probe.
        if self.published.is_none() && self.nodes.values().any(|n| n.class.is_none()) {
            return Vec::new();
        }
        let class = |n: &Node| n.class.as_ref().map_or(Class::Down, |c| c.value);
        let writable: Vec<&String> = self.nodes.iter().filter(|(_, n)| n.class.as_ref().is_some_and(|c| c.value == Class::Writable)).map(|(a, _)| a).collect();
        let primary = if self.hold {
            None
        } else if writable.len() == 1 {
            Some(writable[0].clone())
        } else {
            self.promoted.as_ref().filter(|p| writable.contains(p)).cloned()
        };
        let debounce = self.settings.debounce;
        let hold = self.hold;
        let mut reasons: BTreeMap<String, String> = BTreeMap::new();
        let nodes = self
            .nodes
            .iter()
            .filter(|(_, n)| n.class.is_some())
            .map(|(addr, n)| {
                let (role, role_reason) = match class(n) {
                    Class::Down => (Role::Down, format!("down: {}", n.last_error)),
                    Class::Replicating => {
                        let sources: Vec<&str> = n.latest.iter().flat_map(|p| p.channels.iter().map(|c| c.source.as_str())).collect();
                        (Role::Replica, format!("replicating from {}", sources.join(", ")))
                    }
                    Class::Writable if primary.as_ref() == Some(addr) => (Role::Primary, "writable and not replicating".to_string()),
                    Class::Writable if hold && writable.len() == 1 => (Role::Primary, "writable; held back by a switchover".to_string()),
                    Class::Writable => {
                        let others: Vec<&str> = writable.iter().filter(|w| **w != addr).map(|w| w.as_str()).collect();
                        (Role::Standalone, format!("writable, but so is {} (split brain)", others.join(", ")))
                    }
                    Class::ReadOnly => (Role::Standalone, "read-only and not replicating".to_string()),
                };
                let readable = role == Role::Replica && n.readable.value;
                let unreadable_because = match role {
                    _ if readable => None,
                    Role::Primary => None,
                    Role::Down => Some("down".to_string()),
                    Role::Standalone => Some("not a replica".to_string()),
                    Role::Replica => Some(n.raw_unreadable.clone().unwrap_or_else(|| {
                        format!("recovering: {} of {debounce} probes", n.readable.pending_for(true))
                    })),
                };
                reasons.insert(addr.clone(), role_reason);
                let observation = match (&n.latest, role) {
                    (Some(p), r) if r != Role::Down => p.observation(),
                    _ => Observation::Down { error: n.last_error.clone() },
                };
                let state = NodeState {
                    role,
                    observation,
                    readable,
                    lag_ms: if role == Role::Replica { n.lag_ms } else { None },
                    unreadable_because,
                    channels: n.latest.as_ref().map(|p| p.channels.clone()).unwrap_or_default(),
                    gtid: n.latest.as_ref().map(|p| p.gtid.clone()),
                    server_id: n.latest.as_ref().and_then(|p| p.server_id),
                    probe_latency: n.probe_latency,
                    last_probe: n.last_probe,
                    last_seen_up: n.last_seen_up,
                    failed_probes: n.failed,
                };
                (addr.clone(), state)
            })
            .collect();
        let topo = Topology { nodes, primary };
        let changes = match &self.published {
            None => vec![Change::Discovered {
                primary: topo.primary.clone(),
                roles: topo.nodes.iter().map(|(a, n)| (a.clone(), n.role)).collect(),
            }],
            Some(old) => diff(old, &topo, &reasons, self.settings.max_replica_lag_ms),
        };
        self.published = Some(topo);
        changes
    }
}

/// Whether a node could serve reads judging by one probe: `(readable, lag, why not)`.
fn readability(p: &Probed, class: Class, max_lag_ms: u64) -> (bool, Option<u64>, Option<String>) {
    if class != Class::Replicating {
        return (false, None, Some("not a replica".into()));
    }
    let lag_ms = p.channels.iter().try_fold(0u64, |m, c| c.seconds_behind.map(|s| m.max(s.saturating_mul(1000))));
    if let Some(problem) = p.channels.iter().find_map(|c| c.problem()) {
        return (false, lag_ms, Some(problem));
    }
    match lag_ms {
        None => (false, None, Some("lag unknown".into())),
        Some(l) if l > max_lag_ms => (false, Some(l), Some(format!("lag {l} ms > {max_lag_ms} ms"))),
        Some(l) => (true, Some(l), None),
    }
}

fn diff(old: &Topology, new: &Topology, reasons: &BTreeMap<String, String>, max_lag_ms: u64) -> Vec<Change> {
    let mut out = Vec::new();
    for (addr, n) in &new.nodes {
        let Some(o) = old.nodes.get(addr) else { continue };
        if o.role != n.role {
            out.push(Change::Role { node: addr.clone(), from: o.role, to: n.role, reason: reasons.get(addr).cloned().unwrap_or_default() });
        }
        if o.readable != n.readable {
            let reason = match (n.readable, &n.unreadable_because, n.lag_ms) {
                (false, Some(why), _) => why.clone(),
                (false, None, _) => format!("now {}", n.role.name()),
                (true, _, Some(lag)) => format!("replication running, lag {lag} ms <= {max_lag_ms} ms"),
                (true, _, None) => "replication running".into(),
            };
            out.push(Change::Readable { node: addr.clone(), readable: n.readable, reason });
        }
    }
    if old.primary != new.primary {
        out.push(Change::Primary { from: old.primary.clone(), to: new.primary.clone() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::state::{Channel, Gtid};

    const SETTINGS: Settings = Settings { failures: 3, debounce: 2, max_replica_lag_ms: 5000 };

    fn probed(read_only: bool, channels: Vec<Channel>) -> Probed {
        Probed {
            server_id: None,
            read_only,
            version: "5.5.5-10.11.6-MariaDB".into(),
            caps: 0,
            ext_caps: 0,
            charset: 45,
            channels,
            gtid: Gtid::MariaDb { current_pos: "0-1-1".into(), slave_pos: "".into(), binlog_pos: "0-1-1".into() },
        }
    }

    fn channel(io: &str, sql: &str, behind: Option<u64>) -> Channel {
        Channel { source: "a:1".into(), io_running: io.into(), sql_running: sql.into(), seconds_behind: behind, ..Default::default() }
    }

    fn primary() -> Probed {
        probed(false, vec![])
    }
    fn replica() -> Probed {
        probed(true, vec![channel("Yes", "Yes", Some(0))])
    }
    fn replica_with(c: Channel) -> Probed {
        probed(true, vec![c])
    }
    fn fenced() -> Probed {
        probed(true, vec![])
    }

    fn ok(p: Probed) -> Sample {
        Sample { at: Instant::now(), latency: Duration::from_millis(1), result: Ok(p) }
    }
    fn failed() -> Sample {
        Sample { at: Instant::now(), latency: Duration::from_millis(1), result: Err("connection refused".into()) }
    }

    /// A tracker of nodes a, b, c after one probe each.
    fn cluster(a: Probed, b: Probed, c: Probed) -> Tracker {
        let mut t = Tracker::new(&["a".into(), "b".into(), "c".into()], SETTINGS);
        t.observe("a", ok(a));
        t.observe("b", ok(b));
        t.observe("c", ok(c));
        t
    }

    fn topo(t: &Tracker) -> &Topology {
        t.topology().expect("published")
    }

    #[test]
    fn writable_non_replicating_node_is_primary_and_replicas_are_readable() {
        let t = cluster(primary(), replica(), replica());
        assert_eq!(topo(&t).primary.as_deref(), Some("a"));
        assert_eq!(topo(&t).replicas().collect::<Vec<_>>(), vec!["b", "c"]);
        assert_eq!(topo(&t).readable().map(|(a, _)| a).collect::<Vec<_>>(), vec!["b", "c"]);
        assert_eq!(topo(&t).nodes["a"].unreadable_because, None);
        assert_eq!(topo(&t).nodes["b"].lag_ms, Some(0));
    }

    #[test]
    fn topology_is_published_once_every_node_was_probed() {
        let mut t = Tracker::new(&["a".into(), "b".into()], SETTINGS);
        assert!(t.observe("a", ok(primary())).is_empty());
        assert!(t.topology().is_none());
        let changes = t.observe("b", ok(replica()));
        assert_eq!(changes, vec![Change::Discovered { primary: Some("a".into()), roles: vec![("a".into(), Role::Primary), ("b".into(), Role::Replica)] }]);
    }

    #[test]
    fn a_node_added_later_joins_once_probed_and_a_removed_node_leaves_at_once() {
        let mut t = cluster(primary(), replica(), replica());
        t.add_node("d");
        assert!(t.observe("b", ok(replica())).is_empty());
        assert!(!topo(&t).nodes.contains_key("d"), "not probed yet: left out, the others still published");
        t.observe("d", ok(replica()));
        assert_eq!(topo(&t).nodes["d"].role, Role::Replica);
        assert_eq!(topo(&t).readable().map(|(a, _)| a).collect::<Vec<_>>(), vec!["b", "c", "d"]);
        t.remove_node("b");
        assert_eq!(topo(&t).readable().map(|(a, _)| a).collect::<Vec<_>>(), vec!["c", "d"]);
        assert!(t.observe("b", ok(replica())).is_empty(), "a removed node's late probe is ignored");
        assert!(!topo(&t).nodes.contains_key("b"));
        assert_eq!(topo(&t).primary.as_deref(), Some("a"));
    }

    #[test]
    fn two_writable_nodes_mean_no_primary() {
        let t = cluster(primary(), primary(), replica());
        assert_eq!(topo(&t).primary, None);
        assert_eq!(topo(&t).nodes["a"].role, Role::Standalone);
        assert_eq!(topo(&t).nodes["b"].role, Role::Standalone);
    }

    #[test]
    fn writable_replica_is_not_primary() {
        let t = cluster(probed(false, vec![channel("Yes", "Yes", Some(0))]), replica(), fenced());
        assert_eq!(topo(&t).primary, None);
        assert_eq!(topo(&t).nodes["a"].role, Role::Replica);
        assert_eq!(topo(&t).nodes["c"].role, Role::Standalone);
        assert_eq!(topo(&t).nodes["c"].unreadable_because.as_deref(), Some("not a replica"));
    }

    #[test]
    fn promoted_replica_becomes_primary_after_debounce() {
        let mut t = cluster(primary(), replica(), replica());
        // The old primary is fenced, b is promoted (replication reset, read_only off).
        let mut changes = t.observe("a", ok(fenced()));
        changes.extend(t.observe("b", ok(primary())));
        assert_eq!(topo(&t).primary, None, "a lost writability at once; one probe of b is not enough");
        assert_eq!(topo(&t).nodes["b"].role, Role::Replica);
        changes.extend(t.observe("a", ok(fenced())));
        changes.extend(t.observe("b", ok(primary())));
        assert_eq!(topo(&t).primary.as_deref(), Some("b"));
        assert_eq!(topo(&t).nodes["b"].role, Role::Primary);
        assert!(!topo(&t).nodes["b"].readable);
        assert!(changes.contains(&Change::Primary { from: Some("a".into()), to: None }), "{changes:?}");
        assert!(changes.contains(&Change::Primary { from: None, to: Some("b".into()) }), "{changes:?}");
        assert!(changes.contains(&Change::Readable { node: "b".into(), readable: false, reason: "now primary".into() }), "{changes:?}");
        assert!(changes.contains(&Change::Role { node: "b".into(), from: Role::Replica, to: Role::Primary, reason: "writable and not replicating".into() }), "{changes:?}");
    }

    #[test]
    fn old_primary_turned_read_only_loses_writes() {
        let mut t = cluster(primary(), replica(), replica());
        // At the first probe that shows it: a node that lost writability must not get
        // another primary statement (another Sluice or an operator demoted it).
        let changes = t.observe("a", ok(fenced()));
        assert_eq!(topo(&t).primary, None);
        assert_eq!(topo(&t).nodes["a"].role, Role::Standalone);
        assert!(changes.contains(&Change::Role { node: "a".into(), from: Role::Primary, to: Role::Standalone, reason: "read-only and not replicating".into() }), "{changes:?}");
        // Re-pointed at a new primary, it becomes a replica (after the debounce too).
        t.observe("a", ok(replica()));
        assert_eq!(topo(&t).nodes["a"].role, Role::Standalone);
        t.observe("a", ok(replica()));
        assert_eq!(topo(&t).nodes["a"].role, Role::Replica);
    }

    #[test]
    fn one_odd_probe_does_not_make_a_primary_and_one_read_only_answer_unmakes_it_until_the_debounce() {
        let mut t = cluster(primary(), replica(), replica());
        // One answer that says a is read-only: it stops being the primary at once, and is
        // the primary again only after `debounce` writable answers.
        assert!(!t.observe("a", ok(fenced())).is_empty());
        assert_eq!(topo(&t).primary, None);
        assert!(t.observe("a", ok(primary())).is_empty());
        assert_eq!(topo(&t).primary, None);
        t.observe("a", ok(primary()));
        assert_eq!(topo(&t).primary.as_deref(), Some("a"));
        // Alternating odd answers of different kinds never add up to a role either
        // (though both say "no reads here", so the replica stops being readable).
        for p in [primary(), fenced(), primary()] {
            t.observe("b", ok(p));
            assert_eq!(topo(&t).nodes["b"].role, Role::Replica);
            assert_eq!(topo(&t).primary.as_deref(), Some("a"));
        }
        assert!(!topo(&t).nodes["b"].readable);
    }

    #[test]
    fn one_odd_probe_does_not_flip_read_eligibility() {
        let mut t = cluster(primary(), replica(), replica());
        t.observe("b", ok(replica_with(channel("Yes", "Yes", Some(60)))));
        assert!(topo(&t).nodes["b"].readable);
        assert_eq!(topo(&t).nodes["b"].lag_ms, Some(60_000), "the lag itself is the latest measurement");
        t.observe("b", ok(replica()));
        t.observe("b", ok(replica_with(channel("Yes", "Yes", Some(60)))));
        assert!(topo(&t).nodes["b"].readable);
    }

    #[test]
    fn lagging_replica_is_not_readable() {
        let mut t = cluster(primary(), replica(), replica());
        let lagging = || ok(replica_with(channel("Yes", "Yes", Some(7))));
        t.observe("b", lagging());
        let changes = t.observe("b", lagging());
        let b = &topo(&t).nodes["b"];
        assert!(!b.readable);
        assert_eq!(b.lag_ms, Some(7000));
        assert_eq!(b.unreadable_because.as_deref(), Some("lag 7000 ms > 5000 ms"));
        assert_eq!(changes, vec![Change::Readable { node: "b".into(), readable: false, reason: "lag 7000 ms > 5000 ms".into() }]);
        assert_eq!(topo(&t).nodes["b"].role, Role::Replica, "a lagging replica is still a replica");
    }

    #[test]
    fn lag_at_the_limit_is_readable() {
        let t = cluster(primary(), replica_with(channel("Yes", "Yes", Some(5))), replica());
        assert!(topo(&t).nodes["b"].readable);
    }

    #[test]
    fn stopped_sql_thread_makes_replica_unreadable() {
        let mut t = cluster(primary(), replica(), replica());
        let stopped = || ok(replica_with(channel("Yes", "No", None)));
        t.observe("b", stopped());
        assert!(topo(&t).nodes["b"].readable);
        t.observe("b", stopped());
        assert!(!topo(&t).nodes["b"].readable);
        assert_eq!(topo(&t).nodes["b"].unreadable_because.as_deref(), Some("replication stopped: IO thread Yes, SQL thread No"));
        // START SLAVE: readable again after the debounce, with a reason while it waits.
        let changes = t.observe("b", ok(replica()));
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(topo(&t).nodes["b"].unreadable_because.as_deref(), Some("recovering: 1 of 2 probes"));
        let changes = t.observe("b", ok(replica()));
        assert!(topo(&t).nodes["b"].readable);
        assert_eq!(changes, vec![Change::Readable { node: "b".into(), readable: true, reason: "replication running, lag 0 ms <= 5000 ms".into() }]);
    }

    #[test]
    fn stopped_io_thread_makes_replica_unreadable() {
        let mut t = cluster(primary(), replica(), replica());
        t.observe("c", ok(replica_with(channel("Connecting", "Yes", None))));
        t.observe("c", ok(replica_with(channel("Connecting", "Yes", None))));
        assert_eq!(topo(&t).nodes["c"].unreadable_because.as_deref(), Some("replication stopped: IO thread Connecting, SQL thread Yes"));
    }

    #[test]
    fn replication_error_is_the_reason_when_a_thread_stopped_on_one() {
        let broken = Channel { last_sql_errno: 1062, last_sql_error: "Duplicate entry '1'".into(), ..channel("Yes", "No", None) };
        let t = cluster(primary(), replica_with(broken), replica());
        assert_eq!(topo(&t).nodes["b"].unreadable_because.as_deref(), Some("replication error: SQL 1062: Duplicate entry '1'"));
    }

    #[test]
    fn unknown_lag_is_not_readable() {
        let t = cluster(primary(), replica_with(channel("Yes", "Yes", None)), replica());
        let b = &topo(&t).nodes["b"];
        assert!(!b.readable);
        assert_eq!(b.lag_ms, None);
        assert_eq!(b.unreadable_because.as_deref(), Some("lag unknown"));
    }

    #[test]
    fn multi_source_replica_needs_every_channel_healthy_and_reports_the_largest_lag() {
        let two = |second: Channel| ok(probed(true, vec![channel("Yes", "Yes", Some(1)), Channel { name: "other".into(), ..second }]));
        let mut t = Tracker::new(&["a".into(), "b".into()], SETTINGS);
        t.observe("a", ok(primary()));
        t.observe("b", two(channel("Yes", "Yes", Some(3))));
        assert!(topo(&t).nodes["b"].readable);
        assert_eq!(topo(&t).nodes["b"].lag_ms, Some(3000));
        t.observe("b", two(channel("No", "Yes", None)));
        t.observe("b", two(channel("No", "Yes", None)));
        assert_eq!(topo(&t).nodes["b"].unreadable_because.as_deref(), Some("replication stopped (channel 'other'): IO thread No, SQL thread Yes"));
    }

    #[test]
    fn node_never_seen_up_is_down_at_once() {
        let mut t = Tracker::new(&["a".into(), "b".into()], SETTINGS);
        t.observe("a", ok(primary()));
        t.observe("b", failed());
        let b = &topo(&t).nodes["b"];
        assert_eq!(b.role, Role::Down);
        assert_eq!(b.observation, Observation::Down { error: "connection refused".into() });
        assert_eq!(b.unreadable_because.as_deref(), Some("down"));
        // Nor does a later failure of a node that has never answered wait for `failures`.
        let mut t = Tracker::new(&["a".into(), "b".into()], SETTINGS);
        t.observe("a", ok(primary()));
        t.observe("b", failed());
        t.observe("b", failed());
        assert_eq!(topo(&t).nodes["b"].role, Role::Down);
    }

    #[test]
    fn node_seen_up_is_down_only_after_consecutive_failures() {
        let mut t = cluster(primary(), replica(), replica());
        assert!(t.observe("b", failed()).is_empty());
        assert!(t.observe("b", failed()).is_empty());
        assert!(topo(&t).nodes["b"].readable, "two failed probes do not take a replica out");
        assert_eq!(topo(&t).nodes["b"].failed_probes, 2);
        let changes = t.observe("b", failed());
        assert_eq!(topo(&t).nodes["b"].role, Role::Down);
        assert!(!topo(&t).nodes["b"].readable);
        assert_eq!(
            changes,
            vec![
                Change::Role { node: "b".into(), from: Role::Replica, to: Role::Down, reason: "down: connection refused".into() },
                Change::Readable { node: "b".into(), readable: false, reason: "down".into() },
            ]
        );
        // A success in between restarts the count.
        t.observe("c", failed());
        t.observe("c", failed());
        t.observe("c", ok(replica()));
        t.observe("c", failed());
        assert_eq!(topo(&t).nodes["c"].role, Role::Replica);
    }

    #[test]
    fn down_primary_leaves_no_primary_and_down_replica_leaves_primary_in_place() {
        let mut t = cluster(primary(), replica(), replica());
        for _ in 0..3 {
            t.observe("c", failed());
        }
        assert_eq!(topo(&t).primary.as_deref(), Some("a"));
        for _ in 0..3 {
            t.observe("a", failed());
        }
        assert_eq!(topo(&t).primary, None);
        assert_eq!(topo(&t).primary_facts(), None);
    }

    #[test]
    fn down_node_comes_back_after_debounce_and_a_failure_restarts_the_count() {
        let mut t = cluster(primary(), replica(), replica());
        for _ in 0..3 {
            t.observe("b", failed());
        }
        t.observe("b", ok(replica()));
        assert_eq!(topo(&t).nodes["b"].role, Role::Down);
        t.observe("b", failed());
        t.observe("b", ok(replica()));
        assert_eq!(topo(&t).nodes["b"].role, Role::Down, "the failure in between agreed with down");
        let changes = t.observe("b", ok(replica()));
        assert_eq!(topo(&t).nodes["b"].role, Role::Replica);
        assert!(topo(&t).nodes["b"].readable);
        assert_eq!(changes.len(), 2, "{changes:?}");
    }

    #[test]
    fn debounce_of_one_follows_every_probe() {
        let mut t = Tracker::new(&["a".into(), "b".into()], Settings { debounce: 1, ..SETTINGS });
        t.observe("a", ok(primary()));
        t.observe("b", ok(replica()));
        t.observe("a", ok(fenced()));
        assert_eq!(topo(&t).primary, None);
        t.observe("b", ok(replica_with(channel("Yes", "Yes", Some(9)))));
        assert!(!topo(&t).nodes["b"].readable);
    }

    #[test]
    fn node_state_keeps_gtid_channels_and_probe_times() {
        let t = cluster(primary(), replica(), replica());
        let b = &topo(&t).nodes["b"];
        assert_eq!(b.channels.len(), 1);
        assert!(matches!(&b.gtid, Some(Gtid::MariaDb { current_pos, .. }) if current_pos == "0-1-1"));
        assert_eq!(b.probe_latency, Some(Duration::from_millis(1)));
        assert!(b.last_probe.is_some() && b.last_seen_up == b.last_probe);
    }

    #[test]
    fn each_change_is_reported_once() {
        let mut t = cluster(primary(), replica(), replica());
        let lagging = || ok(replica_with(channel("Yes", "Yes", Some(9))));
        let mut all = Vec::new();
        for _ in 0..5 {
            all.extend(t.observe("b", lagging()));
        }
        assert_eq!(all.len(), 1, "{all:?}");
    }
}
