//! What Sluice knows about every node's executed GTID position, and what was written
//! through this Sluice (the `instance` level). Shared by all sessions of one proxy;
//! locks are held for a map lookup and a set comparison, never across I/O.
//!
//! A node's known position is the one the monitor last read (`@@gtid_slave_pos` of a
//! MariaDB replica, `@@gtid_executed` on MySQL; see
//! <https://mariadb.com/kb/en/gtid/#gtid_slave_pos>), raised by every wait Sluice ran
//! there that succeeded. Each monitor reading replaces what was known (a replica that
//! was reset or re-pointed may go back): knowing too little costs a wait, knowing too
//! much would cost a stale read.

use std::collections::BTreeMap;
use std::sync::Mutex;
use crate::sync::Locked;

use super::gtid::GtidSet;
use super::level::Written;
use crate::health::{Gtid, Topology};

#[derive(Debug, Default)]
pub struct Positions {
    known: Mutex<Known>,
    instance: Mutex<Written>,
}

#[derive(Debug, Default)]
struct Known {
    /// Topology version last applied.
    version: Option<u64>,
    nodes: BTreeMap<String, GtidSet>,
}

/// The executed position a monitor reading says a node has.
pub fn executed(g: &Gtid) -> GtidSet {
    match g {
        Gtid::MariaDb { slave_pos, current_pos, .. } => {
            let mut s = GtidSet::parse_mariadb(slave_pos).unwrap_or_default();
            // A node that was a primary has its own transactions in gtid_current_pos
            // (binlog), not in gtid_slave_pos; both count as executed.
            if let Ok(c) = GtidSet::parse_mariadb(current_pos) {
                s.merge(&c);
            }
            s
        }
        Gtid::MySql { executed } => GtidSet::parse_mysql(executed).unwrap_or_default(),
    }
}

impl Positions {
    /// Takes the positions of topology `version` unless already done.
    pub fn observe(&self, version: u64, topo: &Topology) {
        let mut k = self.known.locked();
        if k.version.is_some_and(|v| v >= version) {
            return;
        }
        k.version = Some(version);
        k.nodes = topo.nodes.iter().filter_map(|(a, n)| Some((a.clone(), executed(n.gtid.as_ref()?)))).collect();
    }

    /// `node` has applied `gtids` (a wait there succeeded).
    pub fn reached(&self, node: &str, gtids: &GtidSet) {
        let mut k = self.known.locked();
        k.nodes.entry(node.to_string()).or_default().merge(gtids);
    }

    /// Whether `node` is known to have applied `gtids`.
    pub fn has(&self, node: &str, gtids: &GtidSet) -> bool {
        let k = self.known.locked();
        k.nodes.get(node).is_some_and(|p| p.contains(gtids))
    }

    /// The known position of `node` (diagnostics).
    pub fn of(&self, node: &str) -> Option<GtidSet> {
        self.known.locked().nodes.get(node).cloned()
    }

    /// Records GTIDs acknowledged through this Sluice on `node` (`current`: the
    /// primary as the monitor sees it now; see [`Written::record`]).
    pub fn written(&self, node: &str, current: Option<&str>, gtids: &GtidSet) {
        self.instance.locked().record(node, current, gtids);
    }

    /// A write acknowledged through this Sluice whose GTID it did not see.
    pub fn written_unknown(&self, node: &str, current: Option<&str>) {
        self.instance.locked().record_unknown(node, current);
    }

    /// The primary's own position, read for a read that needed it.
    pub fn resolve_unknown(&self, primary: &str, position: &GtidSet) {
        let mut i = self.instance.locked();
        if i.unknown && i.primary.as_deref() == Some(primary) {
            i.resolve_unknown(primary, position);
        }
    }

    /// What every session of this Sluice has written.
    pub fn instance(&self) -> Written {
        self.instance.locked().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::NodeState;

    fn topo(nodes: &[(&str, &str)]) -> Topology {
        let mut t = Topology { nodes: BTreeMap::new(), primary: None };
        for (a, pos) in nodes {
            let n = NodeState { gtid: Some(Gtid::MariaDb { current_pos: String::new(), slave_pos: pos.to_string(), binlog_pos: String::new() }), ..NodeState::default() };
            t.nodes.insert(a.to_string(), n);
        }
        t
    }

    fn g(s: &str) -> GtidSet {
        GtidSet::parse_mariadb(s).unwrap()
    }

    #[test]
    fn a_replica_known_to_have_a_position_serves_it_without_a_wait() {
        let p = Positions::default();
        p.observe(1, &topo(&[("r1:1", "0-1-10"), ("r2:1", "0-1-4")]));
        assert!(p.has("r1:1", &g("0-1-10")));
        assert!(!p.has("r2:1", &g("0-1-10")));
        assert!(!p.has("r3:1", &g("0-1-1")));
    }

    #[test]
    fn a_successful_wait_raises_the_known_position_until_the_next_reading() {
        let p = Positions::default();
        p.observe(1, &topo(&[("r1:1", "0-1-4")]));
        p.reached("r1:1", &g("0-1-9"));
        assert!(p.has("r1:1", &g("0-1-9")));
        // An old version is ignored; a newer reading replaces (a reset replica may go back).
        p.observe(1, &topo(&[("r1:1", "0-1-1")]));
        assert!(p.has("r1:1", &g("0-1-9")));
        p.observe(2, &topo(&[("r1:1", "0-1-5")]));
        assert!(!p.has("r1:1", &g("0-1-9")));
    }

    #[test]
    fn a_former_primary_counts_its_own_binlogged_transactions() {
        let g1 = Gtid::MariaDb { current_pos: "0-1-20".into(), slave_pos: "0-2-3".into(), binlog_pos: "0-1-20".into() };
        assert!(executed(&g1).contains(&g("0-1-20")));
    }

    #[test]
    fn instance_writes_follow_the_primary() {
        let p = Positions::default();
        p.written("p:1", Some("p:1"), &g("0-1-3"));
        p.written("p:1", Some("p:1"), &g("0-1-2"));
        assert_eq!(p.instance().gtids, g("0-1-3"));
        p.written_unknown("p:1", Some("p:1"));
        assert!(p.instance().unknown);
        p.resolve_unknown("p:1", &g("0-1-8"));
        assert!(!p.instance().unknown);
        assert_eq!(p.instance().gtids, g("0-1-8"));
    }
}
