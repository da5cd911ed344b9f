//! The built-in failover manager's decisions (`[failover] manager = "builtin"`), as plain
//! code: given the monitor's topology, whether to promote a replica and which one,
//! whether a node must be fenced, and when to hold back. The async side
//! ([`super::actor`]) carries a decision out with SQL against the nodes and confirms it
//! with fresh reads under the coordination lock before it changes anything.
//!
//! Rules (`docs/failover.md`, "Built-in manager"):
//!
//! * A promotion is considered only when no primary is published, the last known
//!   primary is *down* (the monitor's `monitor_failures` consecutive failed probes: a
//!   refused connection — dead — or a probe that timed out on an open connection —
//!   hung), and at least one other node answers: when Sluice reaches no node at all the
//!   fault is likelier its own network, and it does nothing.
//! * A primary that is up but read-only, or two writable nodes, are an operator's doing:
//!   no promotion.
//! * The candidate is a replica of the old primary whose SQL thread runs without error,
//!   with the most advanced GTID position counting what it has received but not yet
//!   applied (it applies its relay log before it is promoted): a position that contains
//!   every other candidate's; else the largest; ties go to the first address.
//! * After a promotion none is made again within `cooldown_ms`.
//! * A node this manager demoted (the old primary) that shows up writable again is
//!   fenced: made read-only, its client connections killed, and re-pointed at the new
//!   primary when it has nothing the new primary lacks.
//!
//! GTID positions: <https://mariadb.com/kb/en/gtid/>.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::consistency::gtid::GtidSet;
use crate::health::state::{Channel, Flavour, Gtid, NodeState, Observation, Role, Topology};

/// What the manager needs from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// No second promotion within this long of one.
    pub cooldown: Duration,
}

/// A promotion to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The primary that went away.
    pub old: String,
    /// Its `@@server_id`, if it was ever seen.
    pub old_server_id: Option<u32>,
    /// The replica to promote (chosen again from fresh reads under the lock).
    pub candidate: String,
    /// The other nodes that answer, to be re-pointed at the candidate.
    pub others: Vec<String>,
    /// Why (for the log): how the old primary failed.
    pub why: String,
}

/// The manager's verdict on one topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do: a primary is published, or none was ever known.
    Idle,
    /// A failover is called for but must not happen now (logged once per reason).
    Hold(String),
    Promote(Plan),
    /// `node` is writable although this manager replaced it with `primary`.
    Fence { node: String, primary: String },
}

/// One node's replication facts for choosing a candidate (from a probe or a fresh read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateFacts {
    pub addr: String,
    /// Everything the node has (applied) or received: its GTID position merged with
    /// the channels' received positions.
    pub position: GtidSet,
    /// Its replication channel from the old primary is usable: the SQL thread runs and
    /// has no error (a replica that cannot apply its relay log cannot be promoted).
    pub usable: bool,
}

impl CandidateFacts {
    /// Reads the facts off a published node state; `None` unless it is an up replica
    /// replicating from `old`.
    pub fn of(addr: &str, n: &NodeState, old: &str, old_id: Option<u32>) -> Option<CandidateFacts> {
        if n.role != Role::Replica {
            return None;
        }
        let channel = n.channels.iter().find(|c| replicates_from(c, old, old_id))?;
        let flavour = match &n.gtid {
            Some(Gtid::MySql { .. }) => Flavour::MySql,
            _ => Flavour::MariaDb,
        };
        Some(CandidateFacts { addr: addr.to_string(), position: position_of(flavour, n.gtid.as_ref(), &n.channels), usable: usable(channel) })
    }
}

/// Whether channel `c` replicates from the node at `addr` whose `@@server_id` is
/// `server_id`: by server id when both are known (addresses differ when Sluice reaches
/// nodes through other names or a relay), else by address.
pub fn replicates_from(c: &Channel, addr: &str, server_id: Option<u32>) -> bool {
    match (c.source_server_id, server_id) {
        (Some(a), Some(b)) => a == b,
        _ => same_node(&c.source, addr),
    }
}

/// Whether a channel can apply what it received: its SQL thread runs without error.
pub fn usable(c: &Channel) -> bool {
    c.sql_running() && c.last_sql_errno == 0
}

/// A node's GTID position merged with what its channels received.
pub fn position_of(flavour: Flavour, gtid: Option<&Gtid>, channels: &[Channel]) -> GtidSet {
    let mut set = GtidSet::default();
    let mut add = |text: &str| {
        if let Ok(g) = GtidSet::parse(flavour, text) {
            set.merge(&g);
        }
    };
    match gtid {
        Some(Gtid::MariaDb { current_pos, slave_pos, .. }) => {
            add(current_pos);
            add(slave_pos);
        }
        Some(Gtid::MySql { executed }) => add(executed),
        None => {}
    }
    for c in channels {
        add(&c.received_gtid);
    }
    set
}

/// Whether the replication source `source` (as the server prints it, `host:port`) is the
/// node `addr`: equal, or the same port with `localhost` / `127.0.0.1` spelled either way.
pub fn same_node(source: &str, addr: &str) -> bool {
    if source.eq_ignore_ascii_case(addr) {
        return true;
    }
    let split = |s: &str| s.rsplit_once(':').map(|(h, p)| (h.to_ascii_lowercase(), p.to_string()));
    let local = |h: &str| h == "localhost" || h == "127.0.0.1" || h == "::1";
    match (split(source), split(addr)) {
        (Some((h1, p1)), Some((h2, p2))) => p1 == p2 && (h1 == h2 || (local(&h1) && local(&h2))),
        _ => false,
    }
}

/// How far a position goes, to break ties between incomparable positions: the sum of
/// MariaDB sequence numbers plus the number of MySQL transactions.
fn weight(g: &GtidSet) -> u128 {
    let m: u128 = g.mariadb().values().map(|&(_, seq)| seq as u128).sum();
    let y: u128 = g.mysql().values().flat_map(|ivs| ivs.iter().map(|&(a, b)| (b - a + 1) as u128)).sum();
    m + y
}

/// The candidate to promote among `facts` (usable ones only): the one whose position
/// contains every other's; else the largest; ties to the first address.
pub fn choose(facts: &[CandidateFacts]) -> Option<&CandidateFacts> {
    let mut usable: Vec<&CandidateFacts> = facts.iter().filter(|f| f.usable).collect();
    usable.sort_by(|a, b| a.addr.cmp(&b.addr));
    if let Some(best) = usable.iter().find(|f| usable.iter().all(|o| f.position.contains(&o.position))) {
        return Some(best);
    }
    let max = usable.iter().map(|f| weight(&f.position)).max()?;
    usable.into_iter().find(|f| weight(&f.position) == max)
}

/// The manager's memory between topologies.
#[derive(Debug, Clone)]
pub struct Manager {
    settings: Settings,
    /// The primary last published, and its server id.
    last_primary: Option<String>,
    last_primary_id: Option<u32>,
    /// When this manager last promoted, and whom.
    promoted: Option<(String, Instant)>,
    /// Nodes this manager demoted: fenced if they show up writable.
    demoted: BTreeSet<String>,
}

impl Manager {
    pub fn new(settings: Settings) -> Self {
        Manager { settings, last_primary: None, last_primary_id: None, promoted: None, demoted: BTreeSet::new() }
    }

    /// The node this manager promoted last, if any.
    pub fn promoted(&self) -> Option<&str> {
        self.promoted.as_ref().map(|(a, _)| a.as_str())
    }

    /// Records a promotion carried out (by this manager or a switchover): the cool-down
    /// starts, `old` is to be fenced if it shows up writable.
    pub fn record_promotion(&mut self, old: &str, new: &str, now: Instant) {
        self.promoted = Some((new.to_string(), now));
        self.demoted.insert(old.to_string());
        self.demoted.remove(new);
        self.last_primary = Some(new.to_string());
        self.last_primary_id = None;
    }

    /// Records that `node` was fenced and now follows the primary (or stays fenced).
    pub fn record_fenced(&mut self, node: &str, rejoined: bool) {
        if rejoined {
            self.demoted.remove(node);
        }
    }

    /// What to do about `topo` at `now`.
    pub fn decide(&mut self, topo: &Topology, now: Instant) -> Decision {
        if let Some(p) = &topo.primary {
            self.last_primary = Some(p.clone());
            self.last_primary_id = topo.nodes.get(p).and_then(|n| n.server_id);
            // An old primary of ours back and writable: fence it.
            for addr in &self.demoted {
                if addr == p {
                    continue;
                }
                if let Some(n) = topo.nodes.get(addr) {
                    if writable_standalone(n) {
                        return Decision::Fence { node: addr.clone(), primary: p.clone() };
                    }
                }
            }
            return Decision::Idle;
        }
        let writable: Vec<&String> = topo.nodes.iter().filter(|(_, n)| writable_standalone(n)).map(|(a, _)| a).collect();
        if let Some(mine) = self.promoted.as_ref().map(|(a, _)| a) {
            // Our promoted node and a demoted one both writable: fence the demoted one.
            if writable.contains(&mine) {
                if let Some(old) = writable.iter().find(|a| self.demoted.contains(a.as_str())) {
                    return Decision::Fence { node: (*old).clone(), primary: mine.clone() };
                }
            }
        }
        if writable.len() > 1 {
            let names: Vec<&str> = writable.iter().map(|s| s.as_str()).collect();
            return Decision::Hold(format!("several writable nodes ({}): a split brain for an operator to resolve", names.join(", ")));
        }
        let Some(old) = self.last_primary.clone() else {
            return Decision::Idle;
        };
        let Some(old_state) = topo.nodes.get(&old) else {
            return Decision::Hold(format!("the last primary {old} is no longer configured"));
        };
        // Its server id as last seen up (a down node's state keeps the last probe's).
        let old_id = old_state.server_id.or(self.last_primary_id);
        if old_state.role != Role::Down {
            return Decision::Hold(format!("the primary {old} answers ({}): not a failure", old_state.role.name()));
        }
        if topo.nodes.values().all(|n| n.role == Role::Down) {
            return Decision::Hold("no node answers: Sluice's own network may be at fault".into());
        }
        if let Some((new, at)) = &self.promoted {
            if now < *at + self.settings.cooldown {
                let left = (*at + self.settings.cooldown).saturating_duration_since(now);
                return Decision::Hold(format!("promoted {new} {} ms ago: cool-down ({} ms left)", now.saturating_duration_since(*at).as_millis(), left.as_millis()));
            }
        }
        // A replica whose IO thread is still connected to the old primary says it is
        // alive: what failed is Sluice's own link to it (a partition, a black hole).
        // Promoting then would make two writable primaries. (A hung primary is seen so
        // once the replicas' IO threads give up: `slave_net_timeout`.)
        let still_fed: Vec<&str> = topo
            .nodes
            .iter()
            .filter(|(_, n)| n.role == Role::Replica && n.channels.iter().any(|c| replicates_from(c, &old, old_id) && c.io_running()))
            .map(|(a, _)| a.as_str())
            .collect();
        if !still_fed.is_empty() {
            return Decision::Hold(format!("{} still replicate from {old} (IO thread connected): the primary is alive, Sluice's link to it is at fault", still_fed.join(", ")));
        }
        let facts: Vec<CandidateFacts> = topo.nodes.iter().filter_map(|(a, n)| CandidateFacts::of(a, n, &old, old_id)).collect();
        let Some(best) = choose(&facts) else {
            return Decision::Hold(format!("no replica of {old} can be promoted (none answers with a running SQL thread)"));
        };
        let others = topo.nodes.iter().filter(|(a, n)| **a != best.addr && **a != old && n.role != Role::Down).map(|(a, _)| a.clone()).collect();
        let why = match &old_state.observation {
            Observation::Down { error } if error.contains("timed out") => format!("the primary {old} is hung: {error}"),
            Observation::Down { error } => format!("the primary {old} is down: {error}"),
            Observation::Up { .. } => format!("the primary {old} is down"),
        };
        Decision::Promote(Plan { old, old_server_id: old_id, candidate: best.addr.clone(), others, why })
    }
}

/// An up node that takes writes and replicates from nobody, without being the
/// published primary.
/// Whether a MariaDB server whose binary log ends at `mine` (`@@gtid_binlog_pos`: the last
/// GTID per domain) holds nothing a server with binary log state `theirs`
/// (`@@gtid_binlog_state`: the last GTID per domain *and server id*) lacks, so it can
/// replicate from it. Sequence numbers alone cannot tell: after a failover the new
/// primary's own GTIDs outnumber a transaction the old primary committed that no replica
/// received, which has the old primary's server id and a sequence number past the last
/// one of that server id the new primary holds. Unparseable text: `false`.
pub fn binlog_state_covers(theirs: &str, mine: &str) -> bool {
    fn entries(s: &str) -> Option<Vec<(u32, u32, u64)>> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let mut p = e.split('-');
                let d = p.next()?.parse().ok()?;
                let sid = p.next()?.parse().ok()?;
                let n = p.next()?.parse().ok()?;
                p.next().is_none().then_some((d, sid, n))
            })
            .collect()
    }
    let (Some(theirs), Some(mine)) = (entries(theirs), entries(mine)) else { return false };
    mine.iter().all(|&(d, sid, n)| theirs.iter().any(|&(d2, sid2, n2)| d2 == d && sid2 == sid && n2 >= n))
}

fn writable_standalone(n: &NodeState) -> bool {
    n.role != Role::Down && matches!(n.observation, Observation::Up { read_only: false, replicating: false, .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn up(role: Role, read_only: bool, replicating: bool) -> NodeState {
        NodeState {
            role,
            observation: Observation::Up { read_only, replicating, version: "10.11.6-MariaDB".into(), caps: 0, ext_caps: 0, charset: 45 },
            ..NodeState::default()
        }
    }

    fn replica(source: &str, current: &str, received: &str, sql_running: bool) -> NodeState {
        let mut n = up(Role::Replica, true, true);
        n.channels = vec![Channel {
            source: source.into(),
            io_running: "Connecting".into(),
            sql_running: if sql_running { "Yes" } else { "No" }.into(),
            received_gtid: received.into(),
            last_sql_errno: if sql_running { 0 } else { 1062 },
            ..Channel::default()
        }];
        n.gtid = Some(Gtid::MariaDb { current_pos: current.into(), slave_pos: current.into(), binlog_pos: String::new() });
        n
    }

    fn down(error: &str) -> NodeState {
        NodeState { observation: Observation::Down { error: error.into() }, ..NodeState::default() }
    }

    fn topo(primary: Option<&str>, nodes: Vec<(&str, NodeState)>) -> Topology {
        Topology { primary: primary.map(String::from), nodes: nodes.into_iter().map(|(a, n)| (a.to_string(), n)).collect::<BTreeMap<_, _>>() }
    }

    fn manager() -> (Manager, Instant) {
        let mut m = Manager::new(Settings { cooldown: Duration::from_secs(60) });
        let now = Instant::now();
        let healthy = topo(Some("p:1"), vec![("p:1", up(Role::Primary, false, false)), ("r:2", replica("p:1", "0-1-5", "0-1-5", true)), ("r:3", replica("p:1", "0-1-5", "0-1-5", true))]);
        assert_eq!(m.decide(&healthy, now), Decision::Idle);
        (m, now)
    }

    #[test]
    fn a_dead_primary_is_replaced_by_the_replica_that_received_most() {
        let (mut m, now) = manager();
        // r:3 applied less but received more (its relay log holds 0-1-9).
        let t = topo(None, vec![("p:1", down("connection refused")), ("r:2", replica("p:1", "0-1-7", "0-1-7", true)), ("r:3", replica("127.0.0.1:1", "0-1-6", "0-1-9", true))]);
        // (r:3's source is spelled differently but is not p:1: only r:2 is p:1's replica.)
        match m.decide(&t, now) {
            Decision::Promote(p) => assert_eq!((p.old.as_str(), p.candidate.as_str(), p.others.clone()), ("p:1", "r:2", vec!["r:3".to_string()])),
            d => panic!("{d:?}"),
        }
        let t = topo(None, vec![("p:1", down("connection refused")), ("r:2", replica("p:1", "0-1-7", "0-1-7", true)), ("r:3", replica("p:1", "0-1-6", "0-1-9", true))]);
        match m.decide(&t, now) {
            Decision::Promote(p) => {
                assert_eq!(p.candidate, "r:3");
                assert!(p.why.contains("down: connection refused"), "{}", p.why);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_hung_primary_is_named_as_such() {
        let (mut m, now) = manager();
        let t = topo(None, vec![("p:1", down("probe timed out after 150ms")), ("r:2", replica("p:1", "0-1-5", "0-1-5", true))]);
        match m.decide(&t, now) {
            Decision::Promote(p) => assert!(p.why.contains("is hung"), "{}", p.why),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn no_failover_while_replicas_still_receive_from_the_primary() {
        let (mut m, now) = manager();
        let mut fed = replica("p:1", "0-1-5", "0-1-5", true);
        fed.channels[0].io_running = "Yes".into();
        let t = topo(None, vec![("p:1", down("probe timed out")), ("r:2", fed), ("r:3", replica("p:1", "0-1-5", "0-1-5", true))]);
        assert!(matches!(m.decide(&t, now), Decision::Hold(w) if w.contains("link to it is at fault")), "{:?}", m.decide(&t, now));
    }

    #[test]
    fn no_failover_when_no_node_answers() {
        let (mut m, now) = manager();
        let t = topo(None, vec![("p:1", down("timed out")), ("r:2", down("timed out")), ("r:3", down("timed out"))]);
        assert!(matches!(m.decide(&t, now), Decision::Hold(w) if w.contains("own network")));
    }

    #[test]
    fn a_read_only_primary_or_two_writable_nodes_are_left_to_the_operator() {
        let (mut m, now) = manager();
        let t = topo(None, vec![("p:1", up(Role::Standalone, true, false)), ("r:2", replica("p:1", "0-1-5", "0-1-5", true))]);
        assert!(matches!(m.decide(&t, now), Decision::Hold(w) if w.contains("not a failure")));
        let t = topo(None, vec![("p:1", up(Role::Standalone, false, false)), ("r:2", up(Role::Standalone, false, false))]);
        assert!(matches!(m.decide(&t, now), Decision::Hold(w) if w.contains("split brain")));
    }

    #[test]
    fn a_replica_that_cannot_apply_its_relay_log_is_never_promoted() {
        let (mut m, now) = manager();
        let t = topo(None, vec![("p:1", down("refused")), ("r:2", replica("p:1", "0-1-5", "0-1-9", false)), ("r:3", replica("p:1", "0-1-4", "0-1-4", true))]);
        assert!(matches!(m.decide(&t, now), Decision::Promote(p) if p.candidate == "r:3"));
        let t = topo(None, vec![("p:1", down("refused")), ("r:2", replica("p:1", "0-1-5", "0-1-9", false))]);
        assert!(matches!(m.decide(&t, now), Decision::Hold(w) if w.contains("can be promoted")));
    }

    #[test]
    fn no_second_promotion_within_the_cool_down_and_the_old_primary_is_fenced_when_back() {
        let (mut m, now) = manager();
        m.record_promotion("p:1", "r:2", now);
        // The new primary dies at once: held by the cool-down.
        let t = topo(None, vec![("p:1", down("refused")), ("r:2", down("refused")), ("r:3", replica("r:2", "0-1-5", "0-1-5", true))]);
        assert!(matches!(m.decide(&t, now + Duration::from_secs(5)), Decision::Hold(w) if w.contains("cool-down")));
        assert!(matches!(m.decide(&t, now + Duration::from_secs(61)), Decision::Promote(p) if p.candidate == "r:3" && p.old == "r:2"));
        // The old primary restarts writable while r:2 is primary: fenced.
        let (mut m, now) = manager();
        m.record_promotion("p:1", "r:2", now);
        let t = topo(Some("r:2"), vec![("p:1", up(Role::Standalone, false, false)), ("r:2", up(Role::Primary, false, false))]);
        assert_eq!(m.decide(&t, now), Decision::Fence { node: "p:1".into(), primary: "r:2".into() });
        // … also while the monitor sees two writable nodes and publishes none.
        let t = topo(None, vec![("p:1", up(Role::Standalone, false, false)), ("r:2", up(Role::Standalone, false, false))]);
        assert_eq!(m.decide(&t, now), Decision::Fence { node: "p:1".into(), primary: "r:2".into() });
        m.record_fenced("p:1", true);
        assert!(matches!(m.decide(&t, now), Decision::Hold(_)));
    }

    #[test]
    fn positions_compare_by_containment_then_size() {
        let f = |a: &str, g: &str| CandidateFacts { addr: a.into(), position: GtidSet::parse_mariadb(g).unwrap(), usable: true };
        assert_eq!(choose(&[f("a", "0-1-5"), f("b", "0-1-5,1-2-3")]).unwrap().addr, "b");
        assert_eq!(choose(&[f("a", "0-1-9,1-2-1"), f("b", "0-1-5,1-2-3")]).unwrap().addr, "a");
        assert_eq!(choose(&[f("b", "0-1-5"), f("a", "0-1-5")]).unwrap().addr, "a");
        assert!(same_node("localhost:3307", "127.0.0.1:3307"));
        assert!(!same_node("127.0.0.1:3308", "127.0.0.1:3307"));
    }

    #[test]
    fn an_old_primary_with_a_transaction_no_replica_received_is_not_covered_by_the_new_primary() {
        // The new primary got 0-1-1478 from the old one, then wrote 0-2-1479..3950; the
        // old primary committed 0-1-1479..1484 alone.
        assert!(!super::binlog_state_covers("0-1-1478,0-2-3950", "0-1-1484"));
        assert!(super::binlog_state_covers("0-1-1484,0-2-3950", "0-1-1484"));
        assert!(super::binlog_state_covers("0-1-1490,0-2-3950", "0-1-1484"));
    }

    #[test]
    fn binlog_state_cover_needs_every_domain_and_parseable_text() {
        assert!(super::binlog_state_covers("0-1-10,1-1-5", "0-1-10,1-1-5"));
        assert!(!super::binlog_state_covers("0-1-10", "0-1-10,1-1-5"));
        assert!(super::binlog_state_covers("0-1-10", ""));
        assert!(!super::binlog_state_covers("garbage", "0-1-1"));
        assert!(!super::binlog_state_covers("0-1-10", "0-1"));
    }
}
