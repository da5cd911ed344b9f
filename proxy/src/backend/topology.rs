//! Role discovery: which backend node is the primary and which are replicas.
//!
//! The decision ([`decide`]) is plain synchronous code over the latest observation of
//! each node; [`Monitor`] runs one probing task per node (`SELECT @@read_only, @@version`
//! and `SHOW ALL SLAVES STATUS` / `SHOW REPLICA STATUS`) and publishes the result on a
//! `watch` channel. A node is the primary when it is writable (`read_only = OFF`) and not
//! itself replicating; two such nodes mean split brain, and then no node is primary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;

use crate::signal::Signal;

use super::conn::{connect, BackendConn, Login};
use crate::error::Result;
use crate::net::Net;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    /// Writable and not replicating, but another node is too (split brain), or
    /// read-only and not replicating (a fenced old primary).
    Standalone,
    Down,
}

/// One probe's result for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Up {
        read_only: bool,
        replicating: bool,
        version: String,
        /// The handshake facts new client sessions mirror.
        caps: u32,
        ext_caps: u32,
        charset: u8,
    },
    Down { error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub role: Role,
    pub observation: Observation,
    /// May serve reads: an up replica whose replication runs without error and whose
    /// lag is within `routing.max_replica_lag_ms` (debounced).
    pub readable: bool,
    /// Replication lag of a replica in milliseconds, when known.
    pub lag_ms: Option<u64>,
    /// Why a replica is not readable (for `SHOW SLUICE ROUTE` and logs).
    pub unreadable_because: Option<String>,
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

    /// The primary's `(version, caps, extended caps, charset)`.
    pub fn primary_facts(&self) -> Option<(&str, u32, u32, u8)> {
        let p = self.nodes.get(self.primary.as_ref()?)?;
        match &p.observation {
            Observation::Up { version, caps, ext_caps, charset, .. } => Some((version, *caps, *ext_caps, *charset)),
            Observation::Down { .. } => None,
        }
    }
}

/// Decides every node's role from the latest observations.
pub fn decide(obs: &BTreeMap<String, Observation>) -> Topology {
    let writable: Vec<&String> = obs
        .iter()
        .filter(|(_, o)| matches!(o, Observation::Up { read_only: false, replicating: false, .. }))
        .map(|(a, _)| a)
        .collect();
    let primary = if writable.len() == 1 { Some(writable[0].clone()) } else { None };
    let nodes = obs
        .iter()
        .map(|(addr, o)| {
            let role = match o {
                Observation::Down { .. } => Role::Down,
                Observation::Up { replicating: true, .. } => Role::Replica,
                Observation::Up { .. } if primary.as_ref() == Some(addr) => Role::Primary,
                Observation::Up { .. } => Role::Standalone,
            };
            let readable = role == Role::Replica;
            (addr.clone(), NodeState { role, observation: o.clone(), readable, lag_ms: None, unreadable_because: None })
        })
        .collect();
    Topology { nodes, primary }
}

/// Probes one node over an open monitor connection.
async fn probe<S: crate::net::Stream>(conn: &mut BackendConn<S>) -> Result<Observation> {
    let r = conn.query("SELECT @@read_only, @@version").await?;
    let row = r.rows.first().cloned().unwrap_or_default();
    let text = |i: usize| row.get(i).cloned().flatten().map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default();
    let read_only = text(0) != "0";
    let version = text(1);
    let status_sql = if version.contains("MariaDB") { "SHOW ALL SLAVES STATUS" } else { "SHOW REPLICA STATUS" };
    let replicating = !conn.query(status_sql).await?.rows.is_empty();
    Ok(Observation::Up { read_only, replicating, version: String::from_utf8_lossy(&conn.server_version).into_owned(), caps: conn.server_caps, ext_caps: conn.server_ext_caps, charset: conn.server_charset })
}

/// Runs the probes and publishes the topology.
pub struct Monitor;

impl Monitor {
    /// Starts one probe task per node and an aggregator. Returns the topology channel;
    /// its first value is published once every node has been probed once.
    pub fn start<N: Net>(
        net: N,
        nodes: Vec<String>,
        login: Login,
        interval: Duration,
        timeout: Duration,
        failures: u32,
        rng: Arc<Mutex<ChaCha8Rng>>,
    ) -> Signal<Option<Topology>> {
        let tx = Signal::new(None);
        let rx = tx.clone();
        let (obs_tx, mut obs_rx) = mpsc::channel::<(String, Observation)>(nodes.len().max(1) * 4);
        for addr in nodes.iter().cloned() {
            let (net, login, rng, obs_tx) = (net.clone(), login.clone(), rng.clone(), obs_tx.clone());
            tokio::spawn(async move {
                let mut conn: Option<BackendConn<N::Stream>> = None;
                // Consecutive failed probes; a node seen up is declared down only after
                // `failures` of them, so one slow probe is not an outage.
                let mut failed = 0u32;
                let mut seen_up = false;
                loop {
                    let result = tokio::time::timeout(timeout, async {
                        if conn.is_none() {
                            conn = Some(connect(&net, &addr, &login, &rng).await?);
                        }
                        probe(conn.as_mut().expect("connected")).await
                    })
                    .await;
                    let ob = match result {
                        Ok(Ok(o)) => {
                            failed = 0;
                            seen_up = true;
                            Some(o)
                        }
                        Ok(Err(e)) => {
                            conn = None;
                            failed += 1;
                            tracing::debug!(node = %addr, error = %e, failed, "probe failed");
                            (!seen_up || failed >= failures).then(|| Observation::Down { error: e.to_string() })
                        }
                        Err(_) => {
                            conn = None;
                            failed += 1;
                            tracing::debug!(node = %addr, failed, "probe timed out");
                            (!seen_up || failed >= failures).then(|| Observation::Down { error: format!("probe timed out after {timeout:?}") })
                        }
                    };
                    if let Some(ob) = ob {
                        if obs_tx.send((addr.clone(), ob)).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(interval).await;
                }
            });
        }
        drop(obs_tx);
        let expected = nodes.len();
        tokio::spawn(async move {
            let mut latest: BTreeMap<String, Observation> = BTreeMap::new();
            while let Some((addr, ob)) = obs_rx.recv().await {
                if let (Some(Observation::Up { .. }), Observation::Down { error }) = (latest.get(&addr), &ob) {
                    tracing::warn!(node = %addr, %error, "backend node is down");
                }
                latest.insert(addr, ob);
                if latest.len() < expected {
                    continue;
                }
                let topo = decide(&latest);
                let roles = |t: &Topology| t.nodes.iter().map(|(a, n)| (a.clone(), n.role)).collect::<Vec<_>>();
                let changed = tx.with(|t| t.as_ref().map(roles)) != Some(roles(&topo));
                if changed {
                    tracing::info!(primary = ?topo.primary, roles = ?topo.nodes.iter().map(|(a, n)| (a.as_str(), n.role)).collect::<Vec<_>>(), "backend topology");
                }
                tx.set(Some(topo));
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(read_only: bool, replicating: bool) -> Observation {
        Observation::Up { read_only, replicating, version: "10.11".into(), caps: 0, ext_caps: 0, charset: 45 }
    }

    fn obs(list: &[(&str, Observation)]) -> BTreeMap<String, Observation> {
        list.iter().map(|(a, o)| (a.to_string(), o.clone())).collect()
    }

    #[test]
    fn writable_non_replicating_node_is_primary() {
        let t = decide(&obs(&[("a", up(false, false)), ("b", up(true, true)), ("c", up(true, true))]));
        assert_eq!(t.primary.as_deref(), Some("a"));
        assert_eq!(t.replicas().collect::<Vec<_>>(), vec!["b", "c"]);
    }

    #[test]
    fn two_writable_nodes_mean_no_primary() {
        let t = decide(&obs(&[("a", up(false, false)), ("b", up(false, false))]));
        assert_eq!(t.primary, None);
        assert_eq!(t.nodes["a"].role, Role::Standalone);
    }

    #[test]
    fn writable_replica_is_not_primary() {
        let t = decide(&obs(&[("a", up(false, true)), ("b", Observation::Down { error: "x".into() })]));
        assert_eq!(t.primary, None);
        assert_eq!(t.nodes["a"].role, Role::Replica);
        assert_eq!(t.nodes["b"].role, Role::Down);
    }

    #[test]
    fn down_replica_leaves_primary_in_place() {
        let t = decide(&obs(&[("a", up(false, false)), ("b", Observation::Down { error: "refused".into() })]));
        assert_eq!(t.primary.as_deref(), Some("a"));
    }
}
