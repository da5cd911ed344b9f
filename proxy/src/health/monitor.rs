//! The monitor's tasks: one prober per node and one aggregator.
//!
//! Each prober keeps one connection to its node as Sluice's service account, probes
//! every `monitor_interval_ms` (on a fixed schedule, not interval-after-probe) with
//! `monitor_timeout_ms` for the whole probe (connecting included), and drops the
//! connection after a failure (the next probe connects again). It sends each outcome to
//! the aggregator over a bounded channel; the aggregator feeds the [`Tracker`], logs each
//! change once and publishes the topology on a [`Signal`]. Every task returns when the
//! proxy's shutdown signal is set; the probers close their connections with COM_QUIT.

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
        Self::start_directed(net, nodes, login, settings, rng, shutdown).0
    }

    /// [`Monitor::start`], also returning the sender of the failover actor's
    /// directives to the aggregator.
    pub fn start_directed<N: Net>(
        net: N,
        nodes: Vec<String>,
        login: Login,
        settings: Settings,
        rng: Arc<Mutex<ChaCha8Rng>>,
        shutdown: Signal<bool>,
    ) -> (Signal<Option<Topology>>, mpsc::Sender<Directive>) {
        let topology = Signal::new(None);
        let (dir_tx, dir_rx) = mpsc::channel::<Directive>(8);
        let (obs_tx, obs_rx) = mpsc::channel::<(String, Sample)>(nodes.len().max(1) * 4);
        for addr in nodes.iter().cloned() {
            let prober = probe_loop(net.clone(), addr, login.clone(), settings, rng.clone(), obs_tx.clone(), shutdown.clone());
            tokio::spawn(prober);
        }
        drop(obs_tx);
        tokio::spawn(aggregate(Tracker::new(&nodes, settings.decide), obs_rx, dir_rx, topology.clone(), shutdown));
        (topology, dir_tx)
    }
}

async fn probe_loop<N: Net>(
    net: N,
    addr: String,
    login: Login,
    settings: Settings,
    rng: Arc<Mutex<ChaCha8Rng>>,
    tx: mpsc::Sender<(String, Sample)>,
    shutdown: Signal<bool>,
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
            _ = shutdown.wait_for(|s| *s) => break,
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
            _ = shutdown.wait_for(|s| *s) => break,
            sent = tx.send((addr.clone(), sample)) => if sent.is_err() { break },
        }
        next += settings.interval;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep_until(next) => {}
        }
    }
    if let Some(p) = prober {
        // A hung server must not hold the shutdown up.
        let _ = tokio::time::timeout(settings.timeout, p.quit()).await;
    }
}

async fn aggregate(
    mut tracker: Tracker,
    mut rx: mpsc::Receiver<(String, Sample)>,
    mut directives: mpsc::Receiver<Directive>,
    topology: Signal<Option<Topology>>,
    shutdown: Signal<bool>,
) {
    let mut directed = true;
    loop {
        let changes = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return,
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
