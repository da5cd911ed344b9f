//! The monitor's tasks: one prober per node and one aggregator.
//!
//! Each prober keeps one connection to its node as Sluice's service account, probes
//! every `monitor_interval_ms` (on a fixed schedule, not interval-after-probe) with
//! `monitor_timeout_ms` for the whole probe (connecting included), and drops the
//! connection after a failure (the next probe connects again). It sends each outcome to
//! the aggregator over a bounded channel; the aggregator feeds the [`Tracker`], logs each
//! change once and publishes the topology on a [`Signal`]. Every task returns when the
//! proxy's shutdown signal is set; the probers close their connections with COM_QUIT.
//!
//! The node set is a [`Signal`] too: when a config reload changes it, the aggregator
//! starts a prober for each added node (which joins the topology once probed) and stops
//! the prober of each removed one (which leaves the topology at once).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backend::conn::{connect, Login};
use crate::config::Config;
use crate::net::Net;
use crate::signal::Signal;

use super::probe::Prober;
use super::state::Topology;
use super::tracker::{self, Change, Directive, Sample, Tracker};

/// How the monitor probes and decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    /// Limit for one probe (connecting included); shorter than `interval`.
    pub timeout: Duration,
    pub decide: tracker::Settings,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            interval: Duration::from_millis(cfg.backend.monitor_interval_ms),
            timeout: Duration::from_millis(cfg.backend.monitor_timeout_ms),
            decide: tracker::Settings {
                failures: cfg.backend.monitor_failures,
                debounce: cfg.backend.monitor_debounce,
                max_replica_lag_ms: cfg.routing.max_replica_lag_ms,
            },
        }
    }
}

/// Runs the probes and publishes the topology.
pub struct Monitor;

impl Monitor {
    /// Starts one probe task per node and an aggregator; they all return once
    /// `shutdown` is set. Returns the topology channel; its first value is published
    /// once every node has been probed once.
    pub fn start<N: Net>(
        net: N,
        nodes: Vec<String>,
        login: Login,
        settings: Settings,
        rng: Arc<Mutex<ChaCha8Rng>>,
        shutdown: Signal<bool>,
    ) -> Signal<Option<Topology>> {
        Self::start_directed(net, Signal::new(nodes), login, settings, rng, shutdown).0
    }

    /// [`Monitor::start`], also returning the sender of the failover actor's
    /// directives to the aggregator.
    /// The node set is `nodes` (followed as it changes).
    pub fn start_directed<N: Net>(
        net: N,
        nodes: Signal<Vec<String>>,
        login: Login,
        settings: Settings,
        rng: Arc<Mutex<ChaCha8Rng>>,
        shutdown: Signal<bool>,
    ) -> (Signal<Option<Topology>>, mpsc::Sender<Directive>) {
        let topology = Signal::new(None);
        let (dir_tx, dir_rx) = mpsc::channel::<Directive>(8);
        let first = nodes.get();
        let (obs_tx, obs_rx) = mpsc::channel::<(String, Sample)>(first.len().max(1) * 4);
        let probers = Probers { net, login, settings, rng, tx: obs_tx, shutdown: shutdown.clone(), stops: BTreeMap::new() };
        tokio::spawn(aggregate(Tracker::new(&first, settings.decide), probers, nodes, obs_rx, dir_rx, topology.clone(), shutdown));
        (topology, dir_tx)
    }
}

/// Starts and stops the probe tasks (one per node).
struct Probers<N: Net> {
    net: N,
    login: Login,
    settings: Settings,
    rng: Arc<Mutex<ChaCha8Rng>>,
    tx: mpsc::Sender<(String, Sample)>,
    shutdown: Signal<bool>,
    /// Per node: set to stop its prober.
    stops: BTreeMap<String, Signal<bool>>,
}

impl<N: Net> Probers<N> {
    fn start(&mut self, addr: &str) {
        if self.stops.contains_key(addr) {
            return;
        }
        let stop = Signal::new(false);
        self.stops.insert(addr.to_string(), stop.clone());
        tokio::spawn(probe_loop(self.net.clone(), addr.to_string(), self.login.clone(), self.settings, self.rng.clone(), self.tx.clone(), self.shutdown.clone(), stop));
    }

    fn stop(&mut self, addr: &str) {
        if let Some(s) = self.stops.remove(addr) {
            s.set(true);
        }
    }
}

/// Returns once the proxy shuts down or this prober is stopped.
async fn ended(shutdown: &Signal<bool>, stop: &Signal<bool>) {
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|s| *s) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

#[allow(clippy::too_many_arguments)]
async fn probe_loop<N: Net>(
    net: N,
    addr: String,
    login: Login,
    settings: Settings,
    rng: Arc<Mutex<ChaCha8Rng>>,
    tx: mpsc::Sender<(String, Sample)>,
    shutdown: Signal<bool>,
    stop: Signal<bool>,
) {
    let mut prober: Option<Prober<N::Stream>> = None;
    let mut next = Instant::now();
    loop {
        let at = Instant::now();
        let attempt = async {
            if prober.is_none() {
                prober = Some(Prober::new(connect(&net, &addr, &login, &rng).await?));
            }
            // cannot fail: set just above when it was `None`.
            prober.as_mut().expect("connected").probe().await
        };
        let outcome = tokio::select! {
            biased;
            _ = ended(&shutdown, &stop) => break,
            r = tokio::time::timeout(settings.timeout, attempt) => r,
        };
        let result = match outcome {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => {
                prober = None;
                tracing::debug!(node = %addr, error = %e, "probe failed");
                Err(e.to_string())
            }
            Err(_) => {
                prober = None;
                tracing::debug!(node = %addr, "probe timed out");
                Err(format!("probe timed out after {:?}", settings.timeout))
            }
        };
        let sample = Sample { at, latency: at.elapsed(), result };
        tokio::select! {
            biased;
            _ = ended(&shutdown, &stop) => break,
            sent = tx.send((addr.clone(), sample)) => if sent.is_err() { break },
        }
        next += settings.interval;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        tokio::select! {
            biased;
            _ = ended(&shutdown, &stop) => break,
            _ = tokio::time::sleep_until(next) => {}
        }
    }
    if let Some(p) = prober {
        // A hung server must not hold the shutdown up.
        let _ = tokio::time::timeout(settings.timeout, p.quit()).await;
    }
}

async fn aggregate<N: Net>(
    mut tracker: Tracker,
    mut probers: Probers<N>,
    nodes: Signal<Vec<String>>,
    mut rx: mpsc::Receiver<(String, Sample)>,
    mut directives: mpsc::Receiver<Directive>,
    topology: Signal<Option<Topology>>,
    shutdown: Signal<bool>,
) {
    let mut current = nodes.get();
    for addr in &current {
        probers.start(addr);
    }
    let mut directed = true;
    loop {
        let changes = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return,
            _ = nodes.wait_for(|n| *n != current) => {
                let new = nodes.get();
                let mut changes = Vec::new();
                for addr in new.iter().filter(|a| !current.contains(a)) {
                    tracing::info!(node = %addr, "backend node added: probing it");
                    tracker.add_node(addr);
                    probers.start(addr);
                }
                for addr in current.iter().filter(|a| !new.contains(a)) {
                    tracing::info!(node = %addr, "backend node removed: no new statements go to it");
                    probers.stop(addr);
                    changes.extend(tracker.remove_node(addr));
                }
                current = new;
                changes
            }
            d = directives.recv(), if directed => match d {
                Some(d) => {
                    tracing::info!(directive = ?d, "monitor directed by the failover actor");
                    tracker.direct(d)
                }
                None => {
                    directed = false;
                    continue;
                }
            },
            m = rx.recv() => match m {
                Some((addr, sample)) => tracker.observe(&addr, sample),
                None => return,
            },
        };
        for change in changes {
            log(&change);
        }
        if let Some(t) = tracker.topology() {
            topology.set(Some(t.clone()));
        }
    }
}

fn log(change: &Change) {
    match change {
        Change::Discovered { primary, roles } => {
            let roles: Vec<String> = roles.iter().map(|(a, r)| format!("{a}={}", r.name())).collect();
            tracing::info!(primary = ?primary, roles = %roles.join(" "), "backend topology");
        }
        Change::Role { node, from, to, reason } => {
            if *to == super::state::Role::Down {
                tracing::warn!(%node, from = from.name(), to = to.name(), %reason, "backend node is down");
            } else {
                tracing::info!(%node, from = from.name(), to = to.name(), %reason, "backend node role changed");
            }
        }
        Change::Readable { node, readable: true, reason } => tracing::info!(%node, %reason, "replica is readable"),
        Change::Readable { node, readable: false, reason } => tracing::warn!(%node, %reason, "replica is not readable"),
        Change::Primary { from, to: Some(to) } => tracing::info!(from = ?from, %to, "new primary"),
        Change::Primary { from, to: None } => tracing::warn!(from = ?from, "no primary"),
    }
}
