//! Assembling a running proxy: TLS material, the backend monitor, the listener and the
//! accept loop, connection limits, graceful shutdown, and draining after the listener
//! was handed to another process (`upgrade`).
//!
//! Everything a proxy instance uses (config, network, RNG) is passed in, so several
//! proxies can live in one process or one simulation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use crate::sync::Locked;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Semaphore;

use crate::backend::accounts::{self, Accounts};
use crate::backend::conn::{Login, Secret};
use crate::config::AuthMode;
use crate::health::{Monitor, Observation, Settings as MonitorSettings, Topology};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::faults::{Faults, NoFaults};
use crate::signal::Signal;
use crate::net::{Listener, Net};
use crate::protocol::auth::RsaKeys;
use crate::protocol::constants::{cap, err};
use crate::protocol::conn::PacketConn;
use crate::protocol::packets::err_payload;
use crate::route::balance::NodeStats;
use crate::route::classify::Classifier;
use crate::server::registry::Registry;
use crate::session;
use crate::tls::BackendTls;

/// State shared by every session of one proxy instance.
pub struct Shared<N: Net> {
    pub cfg: Config,
    pub net: N,
    pub rng: Arc<Mutex<ChaCha8Rng>>,
    pub topology: Signal<Option<Topology>>,
    pub registry: Registry,
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
    pub backend_tls: Option<BackendTls>,
    pub rsa: RsaKeys,
    /// Users whose caching_sha2_password full authentication succeeded (fast path next time).
    pub sha2_cache: Mutex<BTreeSet<String>>,
    pub shutdown: Signal<bool>,
    /// Another process accepts on the listener now: stop accepting, close sessions as
    /// they fall idle outside a transaction (`[proxy] drain_idle_ms`).
    pub draining: Signal<bool>,
    /// Pass-through mode: the backend's accounts.
    pub accounts: Accounts,
    /// When the account table in `accounts` was read (the start of that read).
    accounts_loaded: Mutex<Option<tokio::time::Instant>>,
    /// Held while the account table is read on demand.
    accounts_reading: tokio::sync::Mutex<()>,
    /// Injected misbehaviour (simulation only; [`NoFaults`] in production).
    pub faults: Arc<dyn Faults>,
    /// The first primary seen (only used by the injected `ignore_promotion` bug).
    first_primary: Mutex<Option<String>>,
    /// Statement classifier with its cache, shared by every session.
    pub classifier: Classifier,
    /// Per-node counters (in flight, latency, routed statements), by address.
    pub node_stats: crate::sync::NodeMap<NodeStats>,
    /// The configured backend nodes; a reload may change them (the monitor and the
    /// failover actor follow).
    pub node_list: Signal<Vec<String>>,
    /// Turn counter of the load balancer (round robin, tie breaks).
    pub turn: AtomicU64,
    /// Known GTID positions of the nodes, and what was written through this Sluice.
    pub positions: crate::consistency::positions::Positions,
    /// Backend connection pools, one per node.
    pub pools: crate::pool::Pools<N::Stream>,
    /// How often sessions were pinned to a backend connection, per user and reason.
    pub pins: crate::session::state::PinCounters,
    /// Primary-bound statements waiting for a primary (`[failover]`).
    pub failover_buffer: Arc<crate::failover::Buffer>,
    /// To the failover actor: `SLUICE SWITCHOVER` requests.
    pub switchover: tokio::sync::mpsc::Sender<crate::failover::actor::SwitchoverRequest>,
    /// What the failover actor did.
    pub failover_counters: Arc<crate::failover::actor::Counters>,
    /// Counters and digests (`/metrics`, the admin interface).
    pub metrics: crate::metrics::Metrics,
    /// When the instance started.
    pub started: tokio::time::Instant,
    /// The config in force for what can change live (`crate::reload`); `cfg` is the
    /// config the instance started with.
    pub live: crate::reload::Live,
    /// Query rules and per-user limits in force (rebuilt by a reload).
    policy: Mutex<Arc<crate::session::rules::Policy>>,
}

impl<N: Net> crate::pool::Opener<N::Stream> for Shared<N> {
    fn open<'a>(&'a self, node: &'a str, login: &'a Login) -> Pin<Box<dyn Future<Output = Result<crate::backend::conn::BackendConn<N::Stream>>> + Send + 'a>> {
        Box::pin(async move {
            let conn = crate::backend::conn::connect(&self.net, node, login, &self.rng).await?;
            if conn.ext_caps != login.ext_caps {
                let addr = conn.addr.clone();
                conn.quit().await;
                return Err(Error::backend_protocol(&addr, "node's extended capabilities differ from the client's"));
            }
            Ok(conn)
        })
    }
}

impl<N: Net> Shared<N> {
    /// The query rules and per-user limits in force.
    pub fn policy(&self) -> Arc<crate::session::rules::Policy> {
        self.policy.locked().clone()
    }

    /// Re-reads the config file and puts its live settings in force (`crate::reload`),
    /// logging what changed and what needs a restart. A file that does not load changes
    /// nothing (logged, and returned).
    pub fn reload(&self) -> Result<crate::reload::Plan> {
        let primary = self.primary();
        let r = crate::reload::reload(&self.live, primary.as_deref(), |next| {
            self.metrics.slow_ns.store(next.stats.slow_query_ms.saturating_mul(1_000_000), std::sync::atomic::Ordering::Relaxed);
            let policy = crate::session::rules::Policy::from_config(next, Some(&self.policy()));
            *self.policy.locked() = Arc::new(policy);
            // Counters first, so that a node is counted from its first statement; the
            // monitor then probes added nodes (they join the topology once probed).
            let nodes = &next.backend.nodes;
            self.node_stats.set_nodes(nodes);
            self.metrics.nodes.set_nodes(nodes);
            if self.node_list.with(|n| n != nodes) {
                self.node_list.set(nodes.clone());
            }
            self.pools.set_nodes(nodes);
            self.pools.reconfigure(next.pool.clone());
        });
        match &r {
            Ok(p) => {
                if let Some(kept) = &p.kept_primary {
                    tracing::error!(node = %kept, "the reloaded file leaves out the current primary; it stays a node (switch over first, then reload)");
                }
                tracing::warn!(changed = ?p.changed, "configuration reloaded");
                if !p.restart_needed.is_empty() {
                    tracing::warn!(settings = ?p.restart_needed, "these settings changed in the file but only take effect after a restart; running values kept");
                }
            }
            Err(e) => tracing::error!(error = %e, "configuration reload refused; the running configuration stays"),
        }
        r
    }

    /// `(server version, capabilities, extended capabilities, charset)` to announce to
    /// clients, from the primary.
    pub fn handshake_facts(&self) -> (String, u32, u32, u8) {
        let facts = self.topology.with(|t| t.as_ref().and_then(|t| t.primary_facts()).map(|(v, c, e, ch)| (v.to_string(), c, e, ch)));
        let (version, caps, ext_caps, charset) = facts.unwrap_or_else(|| ("5.5.5-10.11.0-MariaDB".to_string(), cap::SUPPORTED, 0, 45));
        (self.cfg.proxy.server_version.clone().unwrap_or(version), caps, ext_caps, charset)
    }

    /// The node primary-bound statements go to: the monitor's current primary (or,
    /// with the injected `ignore_promotion` bug, the first one it ever found).
    pub fn primary(&self) -> Option<String> {
        let current = self.topology.with(|t| t.as_ref().and_then(|t| t.primary.clone()));
        if self.faults.ignore_promotion() {
            let mut first = self.first_primary.locked();
            if first.is_none() {
                *first = current.clone();
            }
            return first.clone();
        }
        current
    }

    /// A backend login as `user` with `secret`, with the client's session parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn backend_login(&self, user: &str, secret: &Secret, database: Option<Vec<u8>>, charset: u8, caps: u32, ext_caps: u32, attrs: Option<Vec<u8>>) -> Login {
        Login {
            user: user.to_string(),
            secret: secret.clone(),
            database,
            charset,
            caps,
            ext_caps,
            attrs,
            tls: self.backend_tls.clone(),
            timeout: Duration::from_millis(self.cfg.backend.connect_timeout_ms),
        }
    }

    /// A login as Sluice's own backend account (monitoring, KILL, account reads).
    pub fn service_login(&self) -> Login {
        service_login(&self.cfg, self.backend_tls.clone())
    }

    /// Pass-through mode: makes sure the account table was read after `since` (when a
    /// login began), re-reading it now when not; returns whether such a table is loaded.
    /// Logins that fail at the same time share one read: reads are serialized, and a read
    /// that started after `since` serves every login that began before it. So an account
    /// created, changed or dropped just before a client connects is seen as the server
    /// sees it, and failed logins cost at most one account read at a time.
    pub async fn refresh_accounts_since(&self, since: tokio::time::Instant) -> bool {
        let _reading = self.accounts_reading.lock().await;
        if self.accounts_loaded.locked().is_some_and(|t| t >= since) {
            return true;
        }
        let started = tokio::time::Instant::now();
        match self.load_accounts().await {
            Ok(()) => {
                *self.accounts_loaded.locked() = Some(started);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read backend accounts");
                false
            }
        }
    }

    async fn load_accounts(&self) -> Result<()> {
        let primary = self.primary().ok_or(Error::NoBackend("primary"))?;
        let mut c = crate::backend::conn::connect(&self.net, &primary, &self.service_login(), &self.rng).await?;
        let list = accounts::load(&mut c).await;
        let resolves = c.query("SELECT @@skip_name_resolve").await;
        c.quit().await;
        let list = list?;
        let resolves = resolves?.rows.first().and_then(|r| r.first().cloned().flatten()).is_some_and(|v| v == b"0");
        self.accounts.set_resolves_names(resolves);
        tracing::debug!(accounts = list.len(), "backend accounts loaded");
        self.accounts.replace(list);
        Ok(())
    }
}

fn service_login(cfg: &Config, tls: Option<BackendTls>) -> Login {
    Login {
        user: cfg.backend.user.clone(),
        secret: Secret::Password(cfg.backend.password.clone()),
        database: None,
        charset: 45,
        caps: cap::SERVICE,
        ext_caps: 0,
        attrs: None,
        tls,
        timeout: Duration::from_millis(cfg.backend.connect_timeout_ms),
    }
}

/// A running proxy.
pub struct ProxyHandle {
    local_addr: String,
    admin_addr: Option<String>,
    http_addr: Option<String>,
    shutdown: Signal<bool>,
    draining: Signal<bool>,
    sessions: Arc<Semaphore>,
    max_sessions: usize,
    timeout: Duration,
    stats: Arc<dyn Fn() -> ProxyStats + Send + Sync>,
    reload: Arc<dyn Fn() -> Result<crate::reload::Plan> + Send + Sync>,
    /// Wakes every session to look at `shutdown` / `draining` (`Registry::wake_all`).
    wake_sessions: Arc<dyn Fn() + Send + Sync>,
}

/// A snapshot of an instance's pools and pin counters (what the admin interface and
/// metrics will show).
#[derive(Debug, Clone, Default)]
pub struct ProxyStats {
    /// Per node address.
    pub pools: BTreeMap<String, crate::pool::PoolStats>,
    /// `(user, reason) → times a session of that user was pinned for it`.
    pub pins: BTreeMap<(String, crate::session::state::Pin), u64>,
    /// Open client sessions.
    pub sessions: usize,
    /// The failover buffer's counters.
    pub failover: crate::failover::BufferStats,
}

impl ProxyHandle {
    /// Re-reads the config file the instance started from (SIGHUP, `SLUICE RELOAD`):
    /// see [`crate::reload`].
    pub fn reload(&self) -> Result<crate::reload::Plan> {
        (self.reload)()
    }

    /// The pools' and pins' counters now.
    pub fn stats(&self) -> ProxyStats {
        (self.stats)()
    }

    /// What [`ProxyHandle::stats`] reads, to keep after the handle is gone.
    pub fn stats_source(&self) -> Arc<dyn Fn() -> ProxyStats + Send + Sync> {
        self.stats.clone()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> &str {
        &self.local_addr
    }

    /// The address the MySQL-protocol admin listener is bound to (`[admin] listen`).
    pub fn admin_addr(&self) -> Option<&str> {
        self.admin_addr.as_deref()
    }

    /// The address the admin HTTP listener is bound to (`[admin] http_listen`).
    pub fn http_addr(&self) -> Option<&str> {
        self.http_addr.as_deref()
    }

    /// Client sessions open now (logging in or logged in).
    pub fn open_sessions(&self) -> usize {
        self.max_sessions - self.sessions.available_permits()
    }

    /// Stops accepting, closes idle sessions, lets running commands finish up to the
    /// configured timeout. Returns the number of sessions still open at the deadline.
    pub async fn shutdown(&self) -> usize {
        self.shutdown.set(true);
        (self.wake_sessions)();
        self.wait_for_sessions(tokio::time::Instant::now() + self.timeout).await
    }

    /// After the listener was handed to another process: stops accepting and lets the
    /// sessions end on their own terms for up to the shutdown timeout — a session is
    /// closed at a statement boundary once it has waited `[proxy] drain_idle_ms` for
    /// its next command outside a transaction; a transaction runs to its end. At the
    /// timeout, what is left is shut down as by [`ProxyHandle::shutdown`] (sessions
    /// between statements close at once, running commands get one more second).
    /// Returns the number of sessions still open then.
    pub async fn drain(&self) -> usize {
        self.draining.set(true);
        (self.wake_sessions)();
        let open = self.wait_for_sessions(tokio::time::Instant::now() + self.timeout).await;
        if open == 0 {
            self.shutdown.set(true);
            (self.wake_sessions)();
            return 0;
        }
        tracing::warn!(sessions = open, "drain timeout reached; closing the sessions left at their next statement boundary");
        self.shutdown.set(true);
        (self.wake_sessions)();
        self.wait_for_sessions(tokio::time::Instant::now() + Duration::from_secs(1)).await
    }

    async fn wait_for_sessions(&self, deadline: tokio::time::Instant) -> usize {
        loop {
            let open = self.open_sessions();
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A client session ready to run: give it the client's stream and poll the future to
/// completion. Dropping the future closes the session.
pub type Session<N> = Box<dyn FnOnce(<N as Net>::Stream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Decides where accepted client sessions run.
///
/// The accept loop calls [`Dispatch::dispatch`] once per accepted connection that is
/// within `max_connections`. The default, [`SpawnHere`], spawns the session as a task of
/// the runtime the accept loop runs on. The `sluice` binary can instead hand each
/// connection to one of several single-threaded runtimes, so a session and its backend
/// connection stay on one thread for their whole life.
pub trait Dispatch<N: Net>: Send + Sync + 'static {
    /// Runs `session` on `stream` somewhere; must not block.
    fn dispatch(&self, stream: N::Stream, session: Session<N>);
}

/// Spawns every session on the current runtime ([`tokio::spawn`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SpawnHere;

impl<N: Net> Dispatch<N> for SpawnHere {
    fn dispatch(&self, stream: N::Stream, session: Session<N>) {
        tokio::spawn(session(stream));
    }
}

/// Starts a proxy: discovers the backends, binds the listener and serves clients.
/// `seed` seeds the proxy's RNG (nonces, RSA padding, key generation).
pub async fn start<N: Net>(net: N, cfg: Config, seed: u64) -> Result<ProxyHandle> {
    start_inner(net, cfg, seed, Arc::new(NoFaults), Arc::new(SpawnHere), None).await
}

/// [`start`] with injected fault hooks (simulation only).
pub async fn start_with_faults<N: Net>(net: N, cfg: Config, seed: u64, faults: Arc<dyn Faults>) -> Result<ProxyHandle> {
    start_inner(net, cfg, seed, faults, Arc::new(SpawnHere), None).await
}

/// [`start`] with sessions run wherever `dispatch` puts them.
pub async fn start_with_dispatch<N: Net>(net: N, cfg: Config, seed: u64, dispatch: Arc<dyn Dispatch<N>>) -> Result<ProxyHandle> {
    start_inner(net, cfg, seed, Arc::new(NoFaults), dispatch, None).await
}

/// [`start_with_dispatch`] serving clients on `listener` (bound already, or handed over
/// by another process) instead of binding `[proxy] listen`.
pub async fn start_on_listener<N: Net>(net: N, cfg: Config, seed: u64, dispatch: Arc<dyn Dispatch<N>>, listener: N::Listener) -> Result<ProxyHandle> {
    start_inner(net, cfg, seed, Arc::new(NoFaults), dispatch, Some(listener)).await
}

async fn start_inner<N: Net>(net: N, cfg: Config, seed: u64, faults: Arc<dyn Faults>, dispatch: Arc<dyn Dispatch<N>>, listener: Option<N::Listener>) -> Result<ProxyHandle> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let acceptor = cfg.proxy.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    let backend_tls = cfg.backend.tls.as_ref().map(BackendTls::from_config).transpose()?;
    let rsa = match &cfg.proxy.rsa_private_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
            RsaKeys::from_private_pem(&pem).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        }
        None => RsaKeys::generate(&mut rng).map_err(|e| Error::Config(e.to_string()))?,
    };
    let rng = Arc::new(Mutex::new(rng));
    let shutdown_tx = Signal::new(false);
    let shutdown_rx = shutdown_tx.clone();
    let draining = Signal::new(false);
    let monitor_login = service_login(&cfg, backend_tls.clone());
    let node_list = Signal::new(cfg.backend.nodes.clone());
    let (topology, directives) = Monitor::start_directed(net.clone(), node_list.clone(), monitor_login, MonitorSettings::from_config(&cfg), rng.clone(), shutdown_rx.clone());
    let (switchover, requests) = tokio::sync::mpsc::channel(4);
    let failover_counters = Arc::new(crate::failover::actor::Counters::default());
    {
        let f = &cfg.failover;
        let mut login = service_login(&cfg, backend_tls.clone());
        if let Some(u) = &f.user {
            login.user = u.clone();
            login.secret = Secret::Password(f.password.clone().unwrap_or_default());
        }
        let interval = Duration::from_millis(cfg.backend.monitor_interval_ms);
        let actor = crate::failover::actor::Actor {
            net: net.clone(),
            nodes: node_list.clone(),
            login,
            settings: crate::failover::actor::Settings {
                builtin: f.manager == crate::config::FailoverManager::Builtin,
                cooldown: Duration::from_millis(f.cooldown_ms),
                catch_up_timeout: Duration::from_millis(f.catch_up_timeout_ms),
                drain_timeout: Duration::from_millis(f.drain_timeout_ms),
                op_timeout: Duration::from_millis(cfg.backend.connect_timeout_ms.max(cfg.backend.monitor_timeout_ms * 4).max(1000)),
                retry: interval,
                lock_name: f.lock_name.clone(),
                replication: f.replication_user.clone().zip(f.replication_password.clone()),
            },
            rng: rng.clone(),
            topology: topology.clone(),
            directives,
            requests,
            shutdown: shutdown_rx.clone(),
            stats: failover_counters.clone(),
        };
        tokio::spawn(actor.run());
    }
    // A failed start stops the monitor it began.
    let stop_monitor = |e: Error| {
        shutdown_tx.set(true);
        e
    };
    let first_wait = Duration::from_millis(cfg.backend.connect_timeout_ms.max(cfg.backend.monitor_timeout_ms) + 1000);
    let topo = match tokio::time::timeout(first_wait, topology.wait_for(|t| t.is_some())).await {
        // cannot fail: the wait above returned because the value is `Some`.
        Ok(()) => topology.get().expect("some"),
        _ => return Err(stop_monitor(Error::Config("backend discovery did not finish in time".into()))),
    };
    check_startup_topology(&topo).map_err(stop_monitor)?;

    // Taken over from a running process: that process still holds the admin
    // listeners until it drains, so they are bound as soon as it lets them go.
    let takeover = listener.is_some();
    let listener = match listener {
        Some(l) => l,
        None => net.bind(&cfg.proxy.listen).await.map_err(|e| stop_monitor(Error::Config(format!("cannot listen on {}: {e}", cfg.proxy.listen))))?,
    };
    let local_addr = listener.local_addr().map_err(|e| stop_monitor(Error::Config(e.to_string())))?;
    // `Err(address)`: to bind once the process handing over lets it go.
    let mut admin_listeners: [Option<std::result::Result<N::Listener, String>>; 2] = [None, None];
    if let Some(a) = &cfg.admin {
        for (i, (key, addr)) in [("admin.listen", &a.listen), ("admin.http_listen", &a.http_listen)].into_iter().enumerate() {
            let Some(addr) = addr else { continue };
            admin_listeners[i] = Some(match net.bind(addr).await {
                Ok(l) => Ok(l),
                Err(e) if takeover && e.kind() == std::io::ErrorKind::AddrInUse => Err(addr.clone()),
                Err(e) => return Err(stop_monitor(Error::Config(format!("cannot listen on {key} {addr}: {e}")))),
            });
        }
    }
    let max_sessions = cfg.proxy.max_connections;
    let sessions = Arc::new(Semaphore::new(max_sessions));
    let timeout = Duration::from_millis(cfg.proxy.shutdown_timeout_ms);
    let classifier_capacity = cfg.routing.classifier_cache;
    let pool_cfg = cfg.pool.clone();
    let cfg_failover_limits = cfg.failover.limits();
    let first_nodes = cfg.backend.nodes.clone();
    let stats_cfg = cfg.stats.clone();
    let live_cfg = cfg.clone();
    let node_stats = crate::sync::NodeMap::new(&cfg.backend.nodes);
    let shared = Arc::new(Shared {
        cfg,
        net,
        rng,
        topology,
        registry: Registry::default(),
        acceptor,
        backend_tls,
        rsa,
        sha2_cache: Mutex::new(BTreeSet::new()),
        shutdown: shutdown_rx,
        draining: draining.clone(),
        accounts: Accounts::default(),
        accounts_loaded: Mutex::new(None),
        accounts_reading: tokio::sync::Mutex::new(()),
        faults,
        first_primary: Mutex::new(None),
        classifier: Classifier::new(classifier_capacity),
        node_stats,
        node_list,
        turn: AtomicU64::new(0),
        positions: Default::default(),
        pools: crate::pool::Pools::new(pool_cfg),
        pins: Default::default(),
        failover_buffer: crate::failover::Buffer::new(cfg_failover_limits),
        switchover,
        failover_counters,
        metrics: crate::metrics::Metrics::new(&first_nodes, stats_cfg.max_digests, stats_cfg.slow_query_ms),
        started: tokio::time::Instant::now(),
        policy: Mutex::new(Arc::new(crate::session::rules::Policy::from_config(&live_cfg, None))),
        live: crate::reload::Live::new(live_cfg),
    });
    if shared.cfg.proxy.auth_mode == AuthMode::Passthrough {
        let started = tokio::time::Instant::now();
        shared.load_accounts().await.map_err(|e| stop_monitor(Error::Config(format!("cannot read the backend's accounts for pass-through mode: {e}"))))?;
        *shared.accounts_loaded.locked() = Some(started);
        tokio::spawn(refresh_accounts(shared.clone()));
    }
    tokio::spawn(maintain_pools(shared.clone(), topo.clone()));
    let mut admin_addrs = (None, None);
    let [admin_listener, http_listener] = admin_listeners;
    match admin_listener {
        Some(Ok(l)) => {
            admin_addrs.0 = l.local_addr().ok();
            tracing::info!(listen = ?admin_addrs.0, "admin interface is serving");
            tokio::spawn(crate::admin::serve(shared.clone(), l));
        }
        Some(Err(addr)) => {
            admin_addrs.0 = Some(addr.clone());
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Some(l) = bind_when_free(&shared, &addr).await {
                    crate::admin::serve(shared, l).await;
                }
            });
        }
        None => {}
    }
    match http_listener {
        Some(Ok(l)) => {
            admin_addrs.1 = l.local_addr().ok();
            tracing::info!(listen = ?admin_addrs.1, "admin HTTP interface is serving");
            tokio::spawn(crate::admin::http::serve(shared.clone(), l));
        }
        Some(Err(addr)) => {
            admin_addrs.1 = Some(addr.clone());
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Some(l) = bind_when_free(&shared, &addr).await {
                    crate::admin::http::serve(shared, l).await;
                }
            });
        }
        None => {}
    }
    let stats_source = shared.clone();
    let wake_sessions: Arc<dyn Fn() + Send + Sync> = {
        let shared = shared.clone();
        Arc::new(move || shared.registry.wake_all())
    };
    let reload = {
        let shared = shared.clone();
        Arc::new(move || shared.reload())
    };
    tracing::info!(listen = %local_addr, primary = ?topo.primary, "sluice is serving");
    tokio::spawn(accept_loop(shared, listener, sessions.clone(), dispatch));
    let stats = {
        let shared = stats_source;
        Arc::new(move || ProxyStats {
            pools: shared.node_list.get().iter().map(|n| (n.clone(), shared.pools.stats(n))).collect(),
            pins: shared.pins.snapshot(),
            sessions: shared.registry.len(),
            failover: shared.failover_buffer.stats(),
        })
    };
    Ok(ProxyHandle { local_addr, admin_addr: admin_addrs.0, http_addr: admin_addrs.1, shutdown: shutdown_tx, draining, sessions, max_sessions, timeout, stats, reload, wake_sessions })
}

/// Startup refuses to run when no node answers or none is the primary.
fn check_startup_topology(t: &Topology) -> Result<()> {
    let describe = || {
        t.nodes
            .iter()
            .map(|(a, n)| match &n.observation {
                Observation::Down { error } => format!("{a}: {error}"),
                Observation::Up { .. } => format!("{a}: {:?}", n.role).to_lowercase(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if t.nodes.values().all(|n| matches!(n.observation, Observation::Down { .. })) {
        return Err(Error::Config(format!("none of the backend nodes is reachable ({})", describe())));
    }
    if t.primary.is_none() {
        return Err(Error::Config(format!("no primary among the backend nodes ({})", describe())));
    }
    Ok(())
}

/// Warms the pools up (config mode: `min_idle` connections per reachable node, with
/// the capabilities Sluice offers clients), then keeps them within their idle and
/// lifetime limits until shutdown, when idle connections are closed.
async fn maintain_pools<N: Net>(shared: Arc<Shared<N>>, topo: Topology) {
    if shared.cfg.proxy.auth_mode == AuthMode::Config && shared.cfg.pool.min_idle > 0 {
        let (_, caps, ext_caps, charset) = shared.handshake_facts();
        for (addr, n) in &topo.nodes {
            if matches!(n.observation, Observation::Down { .. }) {
                continue;
            }
            let mut login = shared.service_login();
            login.caps = (caps & cap::SUPPORTED) | cap::SESSION_TRACK;
            login.ext_caps = ext_caps & cap::ext::SUPPORTED;
            login.charset = charset;
            login.attrs = None;
            if let Err(e) = shared.pools.warm_up(&*shared, addr, &login).await {
                tracing::info!(node = %addr, error = %e, "pool warm-up failed");
            }
        }
    }
    let every = Duration::from_millis(1000);
    let shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(every) => {}
        }
        shared.pools.maintain(&*shared).await;
    }
    shared.pools.close_idle().await;
}

/// Pass-through mode: re-reads the account table periodically until shutdown.
async fn refresh_accounts<N: Net>(shared: Arc<Shared<N>>) {
    let every = Duration::from_millis(shared.cfg.proxy.accounts_refresh_ms);
    let shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
        if !shared.refresh_accounts_since(tokio::time::Instant::now()).await {
            tracing::warn!("keeping the previous account table");
        }
    }
}

/// The next connection `listener` accepts, or `None` once `stop` completes. Failed
/// accepts (e.g. out of file descriptors) are logged and retried after a pause.
pub(crate) async fn accept_next<L: Listener, F: Future<Output = ()> + Unpin>(listener: &mut L, stop: &mut F, what: &str) -> Option<(L::Stream, String)> {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut *stop => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok(x) => return Some(x),
            Err(e) => {
                tracing::warn!(error = %e, listener = what, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// After a hand-over: binds `addr` (an admin listener the previous process still holds)
/// as soon as it is free, retrying every 50 ms until shutdown.
async fn bind_when_free<N: Net>(shared: &Shared<N>, addr: &str) -> Option<N::Listener> {
    tracing::info!(listen = addr, "admin listener still held by the previous process: bound once it drains");
    let shutdown = shared.shutdown.clone();
    loop {
        match shared.net.bind(addr).await {
            Ok(l) => {
                tracing::info!(listen = addr, "admin listener bound");
                return Some(l);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => {
                tracing::error!(listen = addr, error = %e, "cannot bind the admin listener");
                return None;
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return None,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Completes when the instance shuts down or drains (after a hand-over): its listeners
/// stop accepting.
pub(crate) async fn stop_accepting<N: Net>(shared: &Shared<N>) {
    let (shutdown, draining) = (shared.shutdown.clone(), shared.draining.clone());
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|s| *s) => {}
        _ = draining.wait_for(|d| *d) => {}
    }
}

async fn accept_loop<N: Net>(shared: Arc<Shared<N>>, mut listener: N::Listener, sessions: Arc<Semaphore>, dispatch: Arc<dyn Dispatch<N>>) {
    let stop = stop_accepting(&shared);
    tokio::pin!(stop);
    while let Some((stream, peer)) = accept_next(&mut listener, &mut stop, "client").await {
        match sessions.clone().try_acquire_owned() {
            Ok(permit) => {
                let shared = shared.clone();
                dispatch.dispatch(
                    stream,
                    Box::new(move |stream| {
                        Box::pin(async move {
                            session::run(shared, stream, peer).await;
                            drop(permit);
                        })
                    }),
                );
            }
            Err(_) => {
                tracing::warn!(%peer, "too many connections");
                tokio::spawn(async move {
                    let mut conn = PacketConn::new(stream, 1024);
                    let _ = conn.send(0, &err_payload(err::ER_CON_COUNT_ERROR, "08004", "Too many connections")).await;
                    conn.shutdown().await;
                });
            }
        }
    }
    tracing::info!("listener closed");
}
