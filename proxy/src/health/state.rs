//! What the monitor publishes: node roles, what one probe saw, each node's state and
//! the cluster [`Topology`] that sessions and the router read.
//!
//! The replication fields mirror the rows of MariaDB's
//! [`SHOW ALL SLAVES STATUS`](https://mariadb.com/kb/en/show-replica-status/) and MySQL's
//! [`SHOW REPLICA STATUS`](https://dev.mysql.com/doc/refman/8.0/en/show-replica-status.html);
//! GTID positions are kept as the server printed them (MariaDB
//! [GTID variables](https://mariadb.com/kb/en/gtid/), MySQL `@@gtid_executed`).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    /// Writable and not replicating, but another node is too (split brain), or
    /// read-only and not replicating (a fenced old primary).
    Standalone,
    Down,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Standalone => "standalone",
            Role::Down => "down",
        }
    }
}

/// The server family, which decides what the probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    MariaDb,
    MySql,
}

impl Flavour {
    /// From the version string of the server's handshake (`5.5.5-10.11.6-MariaDB`).
    pub fn of(version: &str) -> Flavour {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        }
    }
}

/// One replication channel of a node (a row of the replica status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    /// `Connection_name` (MariaDB multi-source) or `Channel_Name` (MySQL); empty for
    /// the default channel.
    pub name: String,
    /// `host:port` of the node it replicates from.
    pub source: String,
    /// `Slave_IO_Running` / `Replica_IO_Running`: `Yes`, `No`, `Connecting`, `Preparing`.
    pub io_running: String,
    /// `Slave_SQL_Running` / `Replica_SQL_Running`: `Yes` or `No`.
    pub sql_running: String,
    /// `Seconds_Behind_Master` / `Seconds_Behind_Source`; `None` when the server shows
    /// NULL (a thread is stopped or the IO thread is not connected: lag unknown).
    pub seconds_behind: Option<u64>,
    pub last_io_errno: u32,
    pub last_io_error: String,
    pub last_sql_errno: u32,
    pub last_sql_error: String,
    /// GTIDs received from the source: `Gtid_IO_Pos` (MariaDB) or `Retrieved_Gtid_Set`
    /// (MySQL), as printed.
    pub received_gtid: String,
    /// `Master_Server_Id` / `Source_Server_Id`: the source's `@@server_id` (`None`
    /// when 0: never connected).
    pub source_server_id: Option<u32>,
}

impl Channel {
    pub fn io_running(&self) -> bool {
        self.io_running.eq_ignore_ascii_case("Yes")
    }

    pub fn sql_running(&self) -> bool {
        self.sql_running.eq_ignore_ascii_case("Yes")
    }

    /// Why this channel keeps its node from serving reads, if it does: a thread that is
    /// not running (with the error it stopped on, when the server reports one). An
    /// error left over while both threads run is not a problem (the lag check decides).
    pub fn problem(&self) -> Option<String> {
        let label = if self.name.is_empty() { String::new() } else { format!(" (channel '{}')", self.name) };
        if !self.sql_running() && (self.last_sql_errno != 0 || !self.last_sql_error.is_empty()) {
            return Some(format!("replication error{label}: SQL {}: {}", self.last_sql_errno, self.last_sql_error));
        }
        if !self.io_running() && (self.last_io_errno != 0 || !self.last_io_error.is_empty()) {
            return Some(format!("replication error{label}: IO {}: {}", self.last_io_errno, self.last_io_error));
        }
        if !self.io_running() || !self.sql_running() {
            return Some(format!("replication stopped{label}: IO thread {}, SQL thread {}", or_none(&self.io_running), or_none(&self.sql_running)));
        }
        None
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}

/// A node's GTID positions as the server printed them (the consistency work parses
/// them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gtid {
    /// `@@gtid_current_pos`, `@@gtid_slave_pos`, `@@gtid_binlog_pos`.
    MariaDb { current_pos: String, slave_pos: String, binlog_pos: String },
    /// `@@gtid_executed`.
    MySql { executed: String },
}

/// One probe's result for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Up {
        read_only: bool,
        /// Replication is configured (the replica status has at least one row), whether
        /// or not its threads run.
        replicating: bool,
        version: String,
        /// The handshake facts new client sessions mirror.
        caps: u32,
        ext_caps: u32,
        charset: u8,
    },
    Down { error: String },
}

/// The published state of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub role: Role,
    /// The latest successful probe while the node counts as up; the error that made it
    /// down otherwise.
    pub observation: Observation,
    /// May serve reads: an up replica whose replication threads all run, none stopped on
    /// an error, whose lag is known and within `routing.max_replica_lag_ms` — each change
    /// confirmed by `backend.monitor_debounce` consecutive probes.
    pub readable: bool,
    /// Replication lag of a replica in milliseconds (whole seconds as the server reports
    /// them; the largest over its channels), from the latest probe; `None` when unknown
    /// or not a replica.
    pub lag_ms: Option<u64>,
    /// Why a node that is not the primary is not readable (`SHOW SLUICE ROUTE`, logs):
    /// `down`, `not a replica`, `replication stopped…`, `replication error…`,
    /// `lag unknown`, `lag 7000 ms > 5000 ms`, or a recovery not yet confirmed.
    pub unreadable_because: Option<String>,
    /// The replication channels seen by the latest successful probe.
    pub channels: Vec<Channel>,
    /// GTID positions from the latest successful probe.
    pub gtid: Option<Gtid>,
    /// `@@server_id` from the latest successful probe.
    pub server_id: Option<u32>,
    /// How long the latest successful probe took (connecting included when it had to).
    pub probe_latency: Option<Duration>,
    /// When the latest probe (successful or not) started.
    pub last_probe: Option<Instant>,
    /// When the latest successful probe started.
    pub last_seen_up: Option<Instant>,
    /// Consecutive failed probes up to now.
    pub failed_probes: u32,
}

impl Default for NodeState {
    /// A node nothing is known about: down, never probed.
    fn default() -> Self {
        NodeState {
            role: Role::Down,
            observation: Observation::Down { error: "not probed yet".into() },
            readable: false,
            lag_ms: None,
            unreadable_because: Some("down".into()),
            channels: Vec::new(),
            gtid: None,
            server_id: None,
            probe_latency: None,
            last_probe: None,
            last_seen_up: None,
            failed_probes: 0,
        }
    }
}

/// The current view of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub nodes: BTreeMap<String, NodeState>,
    pub primary: Option<String>,
}

impl Topology {
    pub fn replicas(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter(|(_, n)| n.role == Role::Replica).map(|(a, _)| a.as_str())
    }

    /// The replicas that may serve reads now, in address order.
    pub fn readable(&self) -> impl Iterator<Item = (&str, &NodeState)> {
        self.nodes.iter().filter(|(_, n)| n.readable).map(|(a, n)| (a.as_str(), n))
    }

    /// The readable nodes other than `except` (the primary) whose reported lag is the
    /// least, in address order; empty when none reports a lag.
    pub fn least_lagging_readers(&self, except: Option<&str>) -> Vec<String> {
        let lags = || self.readable().filter(|(a, _)| Some(*a) != except).filter_map(|(a, n)| Some((a, n.lag_ms?)));
        let Some(min) = lags().map(|(_, l)| l).min() else { return Vec::new() };
        lags().filter(|(_, l)| *l == min).map(|(a, _)| a.to_string()).collect()
    }

    /// The primary's `(version, caps, extended caps, charset)`.
    pub fn primary_facts(&self) -> Option<(&str, u32, u32, u8)> {
        let p = self.nodes.get(self.primary.as_ref()?)?;
        match &p.observation {
            Observation::Up { version, caps, ext_caps, charset, .. } => Some((version, *caps, *ext_caps, *charset)),
            Observation::Down { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(nodes: &[(&str, bool, Option<u64>)]) -> Topology {
        let mut t = Topology { nodes: BTreeMap::new(), primary: Some("p:1".into()) };
        t.nodes.insert("p:1".into(), NodeState { role: Role::Primary, readable: true, lag_ms: Some(0), ..NodeState::default() });
        for &(a, readable, lag_ms) in nodes {
            t.nodes.insert(a.into(), NodeState { role: Role::Replica, readable, lag_ms, ..NodeState::default() });
        }
        t
    }

    #[test]
    fn reads_that_must_wait_prefer_the_least_lagging_readable_replicas() {
        let t = topo(&[("r1:1", true, Some(1000)), ("r2:1", true, Some(0)), ("r3:1", true, Some(0)), ("r4:1", false, None)]);
        assert_eq!(t.least_lagging_readers(Some("p:1")), vec!["r2:1".to_string(), "r3:1".to_string()]);
        // An unreadable replica never counts, whatever its lag.
        let t = topo(&[("r1:1", true, Some(3000)), ("r2:1", false, Some(0))]);
        assert_eq!(t.least_lagging_readers(Some("p:1")), vec!["r1:1".to_string()]);
        // No replica reports a lag: no preference.
        let t = topo(&[("r1:1", true, None)]);
        assert!(t.least_lagging_readers(Some("p:1")).is_empty());
    }
}
