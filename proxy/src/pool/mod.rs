//! Backend connection pools: one per node, shared by every session of an instance.
//!
//! A pool owns the idle connections to one node and the right to open more. Sessions
//! lease a connection ([`Lease`]) for as long as they need it — one statement when
//! multiplexed, the whole session otherwise — and give it back with what it now holds
//! ([`ConnState`]: schema, applied session `SET`s, multi-statement option, GTID
//! tracking, prepared statements), so the next borrower knows what to change.
//! Connections differ by *key* ([`ConnKey`]: backend account and the capabilities,
//! extended capabilities and character set of the handshake, which cannot change
//! after login); a pool lends a connection of the borrower's key, preferring one whose
//! state already matches, and closes an idle one of another key to make room.
//!
//! Bounds: at most `max` connections per node in all (`[pool] max_per_node`, or the
//! node's `max_connections` less `reserve_connections`, read from the first
//! connection); at most `max_queue` borrowers waiting, each at most
//! `acquire_timeout_ms`; a waiter is served in arrival order (a fair semaphore).
//! Connections past `max_lifetime_ms` are closed when returned, idle ones past
//! `idle_timeout_ms` by [`Pools::maintain`], idle ones unused for
//! `check_idle_after_ms` are pinged (COM_PING) before they are lent.
//!
//! Handshake and login: <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html>;
//! COM_PING and COM_RESET_CONNECTION:
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_reset_connection.html>.

pub mod stmts;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use crate::sync::Locked;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::backend::conn::{BackendConn, Login};
use crate::config::PoolConfig;
use crate::error::Error;
use crate::net::Stream;
use crate::protocol::constants::cap;

pub use stmts::StmtCache;

/// Capabilities that do not change how a connection behaves after login: a pool key
/// ignores them.
const LOGIN_ONLY_CAPS: u32 = cap::CONNECT_WITH_DB | cap::CONNECT_ATTRS | cap::PLUGIN_AUTH | cap::PLUGIN_AUTH_LENENC_CLIENT_DATA | cap::SSL | cap::SECURE_CONNECTION;

/// What makes two backend connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnKey {
    pub user: String,
    pub caps: u32,
    pub ext_caps: u32,
    pub charset: u8,
}

impl ConnKey {
    /// The key of a connection opened with `login`.
    pub fn of(login: &Login) -> Self {
        ConnKey { user: login.user.clone(), caps: login.caps & !LOGIN_ONLY_CAPS, ext_caps: login.ext_caps, charset: login.charset }
    }
}

/// What a connection holds of the last session that used it, as the pool keeps it.
#[derive(Debug, Clone, Default)]
pub struct ConnState {
    /// How many of the session's replay entries it applied, and the fingerprint of
    /// those entries ([`crate::session::state::SessionState::replay_fingerprint`]).
    pub replay_len: usize,
    pub replay_hash: u64,
    /// Current schema.
    pub schema: Option<Vec<u8>>,
    /// Last COM_SET_OPTION value sent on it (`None`: as the handshake left it).
    pub set_option: Option<u16>,
    /// Sluice's GTID tracking statement ran on it.
    pub tracking: bool,
    /// What `LAST_INSERT_ID()` returns on it, if known.
    pub last_insert_id: Option<u64>,
    /// Its session state is not known (a statement Sluice cannot follow ran on it):
    /// reset it before the next use.
    pub dirty: bool,
    /// Its prepared statements.
    pub stmts: StmtCache,
}

/// A connection in a pool.
struct Idle<S> {
    key: ConnKey,
    conn: BackendConn<S>,
    state: ConnState,
    uid: u64,
    born: Instant,
    since: Instant,
}

/// A connection lent out of a pool; returned with [`Pools::put`]. Dropped without
/// being returned (closed, lost), it frees its place in the pool.
pub struct Lease {
    node: Arc<NodePool>,
    _permit: Option<OwnedSemaphorePermit>,
    /// Unique id of the backend connection (stays with it while it is pooled).
    pub uid: u64,
    pub born: Instant,
    pub key: ConnKey,
    counted: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The pool shrank while this lease was out: its permit is not given back.
        if let Some(p) = self._permit.take() {
            if self.node.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok() {
                p.forget();
            }
        }
        if self.counted {
            self.node.open.fetch_sub(1, Ordering::Relaxed);
            self.node.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("uid", &self.uid).field("key", &self.key).finish()
    }
}

/// Counters of one node's pool (for the admin interface and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub max: usize,
    pub open: usize,
    pub idle: usize,
    pub waiting: usize,
    pub created: u64,
    pub closed: u64,
    pub leases: u64,
    pub waits: u64,
    pub timeouts: u64,
    pub refused: u64,
    pub pings_failed: u64,
    /// Idle connections found closed by their server when about to be lent.
    pub found_closed: u64,
}

/// One node's pool (type-erased over the stream: the idle list lives in [`Pools`]).
struct NodePool {
    sem: Arc<Semaphore>,
    /// Size, once known (0 before the first connection told the node's limits).
    max: AtomicUsize,
    /// Prepared statements per connection on this node.
    stmt_cache: AtomicUsize,
    open: AtomicUsize,
    waiting: AtomicUsize,
    created: AtomicU64,
    closed: AtomicU64,
    leases: AtomicU64,
    waits: AtomicU64,
    timeouts: AtomicU64,
    refused: AtomicU64,
    pings_failed: AtomicU64,
    found_closed: AtomicU64,
    /// Held while the pool's size is being found out.
    sizing: tokio::sync::Mutex<()>,
    /// The server's `max_connections` (0 before the first connection).
    server_max: AtomicUsize,
    /// Permits to drop as leases come back, after the pool was made smaller than the
    /// connections lent out.
    debt: AtomicUsize,
    /// The node was removed from the config: connections coming back are closed, and
    /// idle ones close at the next [`Pools::maintain`].
    retired: std::sync::atomic::AtomicBool,
}

impl NodePool {
    fn new() -> Self {
        NodePool {
            sem: Arc::new(Semaphore::new(0)),
            max: AtomicUsize::new(0),
            stmt_cache: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            created: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            leases: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            pings_failed: AtomicU64::new(0),
            found_closed: AtomicU64::new(0),
            sizing: tokio::sync::Mutex::new(()),
            server_max: AtomicUsize::new(0),
            debt: AtomicUsize::new(0),
            retired: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// What a borrower gets: the connection, its lease, and what it holds.
pub struct Lent<S> {
    pub conn: BackendConn<S>,
    pub lease: Lease,
    pub state: ConnState,
    /// Opened for this borrower (nothing of anyone else's on it).
    pub fresh: bool,
}

/// How well an idle connection fits a borrower (higher is better); `None`: unusable.
pub type Fit<'a> = dyn Fn(u64, &ConnState) -> Option<u32> + Send + Sync + 'a;

/// Every node's pool of one Sluice instance.
pub struct Pools<S> {
    /// Replaced by a reload ([`Pools::reconfigure`]).
    cfg: Mutex<Arc<PoolConfig>>,
    /// `cfg.max_lifetime_ms` and `cfg.check_idle_after_ms`, read on every lease and
    /// return without taking the lock.
    lifetime_ms: AtomicU64,
    check_idle_after_ms: AtomicU64,
    nodes: Mutex<BTreeMap<String, Arc<NodePool>>>,
    idle: Mutex<BTreeMap<String, Vec<Idle<S>>>>,
    next_uid: AtomicU64,
    /// Per node: the login of the last lease (what warm-up opens).
    last_login: Mutex<BTreeMap<String, Login>>,
    /// Per node and key: a connection's login OK and negotiated capabilities (what a
    /// client login answers without a backend round trip).
    templates: Mutex<BTreeMap<(String, ConnKey), (Vec<u8>, u32, u32)>>,
    /// `(node, account, database)` the server accepted lately, and when.
    databases: Mutex<BTreeMap<(String, String, Vec<u8>), Instant>>,
}

/// How long a database the server accepted for an account counts as accepted for
/// logins that skip the backend round trip.
const DATABASE_TTL: Duration = Duration::from_secs(10);

/// How a connection is opened: `(login) → connection`.
pub trait Opener<S>: Send + Sync {
    fn open<'a>(&'a self, node: &'a str, login: &'a Login) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<BackendConn<S>, Error>> + Send + 'a>>;
}

impl<S: Stream> Pools<S> {
    pub fn new(cfg: PoolConfig) -> Self {
        Pools { lifetime_ms: AtomicU64::new(cfg.max_lifetime_ms), check_idle_after_ms: AtomicU64::new(cfg.check_idle_after_ms), cfg: Mutex::new(Arc::new(cfg)), nodes: Mutex::new(BTreeMap::new()), idle: Mutex::new(BTreeMap::new()), next_uid: AtomicU64::new(1), last_login: Mutex::new(BTreeMap::new()), templates: Mutex::new(BTreeMap::new()), databases: Mutex::new(BTreeMap::new()) }
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<PoolConfig> {
        self.cfg.locked().clone()
    }

    /// A node's size under `cfg`, given its server's `max_connections`.
    fn size_for(cfg: &PoolConfig, server_max: usize) -> usize {
        if cfg.max_per_node > 0 {
            cfg.max_per_node
        } else {
            server_max.saturating_sub(cfg.reserve_connections).max(1)
        }
    }

    /// The configured nodes are now `nodes` (a config reload): the pools of the others
    /// close their connections as they come back or sit idle.
    pub fn set_nodes(&self, nodes: &[String]) {
        for (addr, n) in self.nodes.locked().iter() {
            n.retired.store(!nodes.contains(addr), Ordering::Release);
        }
    }

    /// Puts new settings in force (a config reload): waits, timeouts and lifetimes apply
    /// from the next use; every sized node is resized now. A node made smaller than
    /// what it has lent out shrinks as those connections come back (their permits are
    /// dropped), and its surplus idle connections are closed by the next
    /// [`Pools::maintain`]. Nothing lent out is taken away.
    pub fn reconfigure(&self, cfg: PoolConfig) {
        *self.cfg.locked() = Arc::new(cfg.clone());
        self.lifetime_ms.store(cfg.max_lifetime_ms, Ordering::Relaxed);
        self.check_idle_after_ms.store(cfg.check_idle_after_ms, Ordering::Relaxed);
        let nodes: Vec<(String, Arc<NodePool>)> = self.nodes.locked().iter().map(|(a, n)| (a.clone(), n.clone())).collect();
        for (addr, node) in nodes {
            let _g = match node.sizing.try_lock() {
                Ok(g) => g,
                // Being sized now: it reads the new settings once they are stored.
                Err(_) => continue,
            };
            let old = node.max.load(Ordering::Acquire);
            if old == 0 {
                continue;
            }
            let new = Self::size_for(&cfg, node.server_max.load(Ordering::Acquire));
            if new > old {
                let mut grow = new - old;
                // Permits still owed cancel against the growth first.
                while grow > 0 {
                    let d = node.debt.load(Ordering::Acquire);
                    if d == 0 {
                        break;
                    }
                    let take = d.min(grow);
                    if node.debt.compare_exchange(d, d - take, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        grow -= take;
                    }
                }
                node.sem.add_permits(grow);
            } else if new < old {
                let shrink = old - new;
                let forgotten = node.sem.forget_permits(shrink);
                node.debt.fetch_add(shrink - forgotten, Ordering::AcqRel);
            }
            node.max.store(new, Ordering::Release);
            if new != old {
                tracing::info!(node = %addr, from = old, to = new, "backend pool resized");
            }
        }
    }

    fn node(&self, addr: &str) -> Arc<NodePool> {
        let mut g = self.nodes.locked();
        g.entry(addr.to_string()).or_insert_with(|| Arc::new(NodePool::new())).clone()
    }

    /// Counters of `addr`'s pool.
    pub fn stats(&self, addr: &str) -> PoolStats {
        let n = self.node(addr);
        let idle = self.idle.locked().get(addr).map_or(0, |v| v.len());
        PoolStats {
            max: n.max.load(Ordering::Relaxed),
            open: n.open.load(Ordering::Relaxed),
            idle,
            waiting: n.waiting.load(Ordering::Relaxed),
            created: n.created.load(Ordering::Relaxed),
            closed: n.closed.load(Ordering::Relaxed),
            leases: n.leases.load(Ordering::Relaxed),
            waits: n.waits.load(Ordering::Relaxed),
            timeouts: n.timeouts.load(Ordering::Relaxed),
            refused: n.refused.load(Ordering::Relaxed),
            pings_failed: n.pings_failed.load(Ordering::Relaxed),
            found_closed: n.found_closed.load(Ordering::Relaxed),
        }
    }

    /// Prepared statements a connection to `addr` may keep.
    pub fn stmt_cache_size(&self, addr: &str) -> usize {
        let n = self.node(addr).stmt_cache.load(Ordering::Relaxed);
        if n == 0 { self.config().statement_cache } else { n }
    }

    /// Records what a connection opened with `login` to `addr` answered at login.
    fn record_template(&self, addr: &str, login: &Login, conn: &BackendConn<S>) {
        let mut t = self.templates.locked();
        let key = (addr.to_string(), ConnKey::of(login));
        if !t.contains_key(&key) {
            t.insert(key, (conn.login_ok.clone(), conn.caps, conn.ext_caps));
        }
    }

    /// A login for `login`'s key on `addr` that needs no backend round trip: the login
    /// OK, capabilities and extended capabilities a connection of that key got, if one
    /// was opened, and `login`'s database (if any) was accepted by the server lately.
    pub fn login_template(&self, addr: &str, login: &Login) -> Option<(Vec<u8>, u32, u32)> {
        if let Some(db) = &login.database {
            let d = self.databases.locked();
            let seen = d.get(&(addr.to_string(), login.user.clone(), db.clone()))?;
            if seen.elapsed() > DATABASE_TTL {
                return None;
            }
        }
        self.templates.locked().get(&(addr.to_string(), ConnKey::of(login))).cloned()
    }

    /// The server accepted `db` for `user` on `addr` (a login or a COM_INIT_DB).
    pub fn database_accepted(&self, addr: &str, user: &str, db: &[u8]) {
        let mut d = self.databases.locked();
        if d.len() > 10_000 {
            d.retain(|_, t| t.elapsed() <= DATABASE_TTL);
        }
        d.insert((addr.to_string(), user.to_string(), db.to_vec()), Instant::now());
    }

    fn uid(&self) -> u64 {
        self.next_uid.fetch_add(1, Ordering::Relaxed)
    }

    /// Lends a connection to `addr` for `login`'s key: an idle one (the best by `fit`),
    /// or a new one while the node is below its size; otherwise waits in line (bounded).
    pub async fn acquire(&self, opener: &dyn Opener<S>, addr: &str, login: &Login, fit: &Fit<'_>) -> Result<Lent<S>, Error> {
        let node = self.node(addr);
        if node.max.load(Ordering::Acquire) == 0 {
            self.size(opener, addr, &node, login).await?;
        }
        let key = ConnKey::of(login);
        {
            let mut last = self.last_login.locked();
            if last.get(addr).is_none_or(|l| ConnKey::of(l) != key || l.database != login.database) {
                last.insert(addr.to_string(), login.clone());
            }
        }
        let permit = match node.sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let cfg = self.config();
                let waiting = node.waiting.fetch_add(1, Ordering::Relaxed);
                if waiting >= cfg.max_queue {
                    node.waiting.fetch_sub(1, Ordering::Relaxed);
                    node.refused.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::PoolExhausted { addr: addr.to_string(), detail: format!("{waiting} statements already wait for one of its {} connections (pool.max_queue)", node.max.load(Ordering::Relaxed)) });
                }
                node.waits.fetch_add(1, Ordering::Relaxed);
                let limit = Duration::from_millis(cfg.acquire_timeout_ms);
                let r = tokio::time::timeout(limit, node.sem.clone().acquire_owned()).await;
                node.waiting.fetch_sub(1, Ordering::Relaxed);
                match r {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(Error::PoolExhausted { addr: addr.to_string(), detail: "the pool is closed".into() }),
                    Err(_) => {
                        node.timeouts.fetch_add(1, Ordering::Relaxed);
                        return Err(Error::PoolExhausted {
                            addr: addr.to_string(),
                            detail: format!("no connection came free within {} ms (pool.acquire_timeout_ms; {} connections)", cfg.acquire_timeout_ms, node.max.load(Ordering::Relaxed)),
                        });
                    }
                }
            }
        };
        node.leases.fetch_add(1, Ordering::Relaxed);
        {
            // An idle connection of the key, or room for a new one (closing an idle one
            // of another key when the node is full).
            let (taken, evicted) = {
                let mut idle = self.idle.locked();
                let list = idle.entry(addr.to_string()).or_default();
                let mut best: Option<(usize, u32)> = None;
                for (i, c) in list.iter().enumerate().rev() {
                    if c.key != key {
                        continue;
                    }
                    if let Some(score) = fit(c.uid, &c.state) {
                        if best.is_none_or(|(_, s)| score > s) {
                            best = Some((i, score));
                        }
                    }
                }
                match best {
                    Some((i, _)) => (Some(list.remove(i)), None),
                    None => {
                        let max = node.max.load(Ordering::Relaxed);
                        if node.open.load(Ordering::Relaxed) < max {
                            node.open.fetch_add(1, Ordering::Relaxed);
                            (None, None)
                        } else {
                            // Full, and (holding a permit) at least one connection is idle:
                            // the oldest unusable one makes room.
                            let i = list.iter().position(|c| c.key != key || fit(c.uid, &c.state).is_none()).unwrap_or(0);
                            if list.is_empty() {
                                // Cannot happen while permits never exceed the size; be safe.
                                node.open.fetch_add(1, Ordering::Relaxed);
                                (None, None)
                            } else {
                                (None, Some(list.remove(i)))
                            }
                        }
                    }
                }
            };
            if let Some(old) = evicted {
                node.closed.fetch_add(1, Ordering::Relaxed);
                old.conn.quit().await;
                // Its place in `open` passes to the new connection.
            }
            let Some(c) = taken else {
                let uid = self.uid();
                let lease = Lease { node: node.clone(), _permit: Some(permit), uid, born: Instant::now(), key: key.clone(), counted: true };
                let conn = match opener.open(addr, login).await {
                    Ok(c) => c,
                    // Dropping the lease frees the place.
                    Err(e) => return Err(e),
                };
                node.created.fetch_add(1, Ordering::Relaxed);
                self.record_template(addr, login, &conn);
                let state = ConnState { schema: login.database.clone(), last_insert_id: Some(0), ..ConnState::default() };
                return Ok(Lent { conn, lease, state, fresh: true });
            };
            let lease = Lease { node: node.clone(), _permit: Some(permit), uid: c.uid, born: c.born, key: key.clone(), counted: true };
            let mut conn = c.conn;
            // A connection whose server went away (crash, restart, failover, idle
            // timeout) is seen closed here, before anything is written to it: the
            // statement then provably never reached that server.
            let gone = conn.conn.peer_gone();
            if gone || (c.since.elapsed() >= Duration::from_millis(self.check_idle_after_ms.load(Ordering::Relaxed)) && !ping(&mut conn, login.timeout).await) {
                if gone {
                    node.found_closed.fetch_add(1, Ordering::Relaxed);
                } else {
                    node.pings_failed.fetch_add(1, Ordering::Relaxed);
                }
                drop(lease);
                conn.quit().await;
                // The permit went with the lease: take another one (rare path).
                return Box::pin(self.acquire(opener, addr, login, fit)).await;
            }
            Ok(Lent { conn, lease, state: c.state, fresh: false })
        }
    }

    /// Gives a connection back with what it now holds. One past its lifetime, or with
    /// unread bytes, is closed instead.
    pub async fn put(&self, addr: &str, conn: BackendConn<S>, mut lease: Lease, state: ConnState) {
        let lifetime = self.lifetime_ms.load(Ordering::Relaxed);
        let retired = lease.node.retired.load(Ordering::Acquire);
        let now = Instant::now();
        if retired || (lifetime > 0 && now.saturating_duration_since(lease.born) >= Duration::from_millis(lifetime)) || !conn.conn.buffered().is_empty() {
            drop(lease);
            conn.quit().await;
            return;
        }
        let idle = Idle { key: lease.key.clone(), conn, state, uid: lease.uid, born: lease.born, since: now };
        // The connection stays counted in `open` as an idle one.
        lease.counted = false;
        self.idle.locked().entry(addr.to_string()).or_default().push(idle);
        drop(lease);
    }

    /// Finds the node's size from its first connection (`max_connections`,
    /// `max_prepared_stmt_count`); that connection becomes the pool's first idle one.
    async fn size(&self, opener: &dyn Opener<S>, addr: &str, node: &Arc<NodePool>, login: &Login) -> Result<(), Error> {
        let _g = node.sizing.lock().await;
        if node.max.load(Ordering::Acquire) != 0 {
            return Ok(());
        }
        let mut conn = opener.open(addr, login).await?;
        node.created.fetch_add(1, Ordering::Relaxed);
        self.record_template(addr, login, &conn);
        let limits = conn.query("SELECT @@max_connections, @@max_prepared_stmt_count").await;
        let (max_conns, max_stmts) = match &limits {
            Ok(r) => (
                r.rows.first().and_then(|row| row.first().cloned().flatten()).and_then(|v| String::from_utf8_lossy(&v).parse::<usize>().ok()).unwrap_or(151),
                r.rows.first().and_then(|row| row.get(1).cloned().flatten()).and_then(|v| String::from_utf8_lossy(&v).parse::<usize>().ok()).unwrap_or(16382),
            ),
            Err(_) => (151, 16382),
        };
        let cfg = self.config();
        let max = Self::size_for(&cfg, max_conns);
        node.server_max.store(max_conns, Ordering::Release);
        // Keep every connection's statements within the server's global limit.
        let per_conn = (max_stmts / max.max(1)).max(1).min(cfg.statement_cache.max(1));
        node.stmt_cache.store(per_conn, Ordering::Relaxed);
        tracing::info!(node = addr, max, max_connections = max_conns, statements_per_connection = per_conn, "backend pool sized");
        node.open.fetch_add(1, Ordering::Relaxed);
        let uid = self.uid();
        let now = Instant::now();
        let state = ConnState { schema: login.database.clone(), last_insert_id: Some(0), ..ConnState::default() };
        self.idle.locked().entry(addr.to_string()).or_default().push(Idle { key: ConnKey::of(login), conn, state, uid, born: now, since: now });
        node.max.store(max, Ordering::Release);
        node.sem.add_permits(max);
        Ok(())
    }

    /// Closes idle connections past `idle_timeout_ms` or their lifetime (keeping
    /// `min_idle` per node), and opens connections up to `min_idle` with the login last
    /// used on the node. Run periodically.
    pub async fn maintain(&self, opener: &dyn Opener<S>) {
        let cfg = self.config();
        let idle_limit = Duration::from_millis(cfg.idle_timeout_ms);
        let lifetime = (cfg.max_lifetime_ms > 0).then(|| Duration::from_millis(cfg.max_lifetime_ms));
        let mut close = Vec::new();
        let addrs: Vec<String> = self.nodes.locked().keys().cloned().collect();
        // Connections open beyond a node's size (it was made smaller): idle ones close.
        let surpluses: BTreeMap<String, usize> = self
            .nodes
            .locked()
            .iter()
            .map(|(a, n)| {
                let max = n.max.load(Ordering::Acquire);
                let surplus = if n.retired.load(Ordering::Acquire) {
                    usize::MAX
                } else if max == 0 {
                    0
                } else {
                    n.open.load(Ordering::Relaxed).saturating_sub(max)
                };
                (a.clone(), surplus)
            })
            .collect();
        {
            let mut idle = self.idle.locked();
            for (addr, list) in idle.iter_mut() {
                let mut keep = Vec::with_capacity(list.len());
                let mut kept = 0usize;
                let mut surplus = surpluses.get(addr).copied().unwrap_or(0);
                // Newest first: the ones kept for `min_idle` are the most recently used.
                for c in std::mem::take(list).into_iter().rev() {
                    let expired = lifetime.is_some_and(|l| c.born.elapsed() >= l);
                    let stale = c.since.elapsed() >= idle_limit && kept >= cfg.min_idle;
                    if expired || stale || surplus > 0 {
                        surplus = surplus.saturating_sub(1);
                        close.push((addr.clone(), c));
                    } else {
                        kept += 1;
                        keep.push(c);
                    }
                }
                keep.reverse();
                *list = keep;
            }
        }
        for (addr, c) in close {
            self.node(&addr).open.fetch_sub(1, Ordering::Relaxed);
            self.node(&addr).closed.fetch_add(1, Ordering::Relaxed);
            c.conn.quit().await;
        }
        for addr in addrs {
            let node = self.node(&addr);
            let max = node.max.load(Ordering::Acquire);
            if max == 0 || node.retired.load(Ordering::Acquire) {
                continue;
            }
            let Some(login) = self.last_login.locked().get(&addr).cloned() else { continue };
            loop {
                let idle = self.idle.locked().get(&addr).map_or(0, |v| v.len());
                if idle >= cfg.min_idle.min(max) || !self.reserve_place(&node, max) {
                    break;
                }
                match opener.open(&addr, &login).await {
                    Ok(conn) => {
                        node.created.fetch_add(1, Ordering::Relaxed);
                        let now = Instant::now();
                        let state = ConnState { schema: login.database.clone(), last_insert_id: Some(0), ..ConnState::default() };
                        self.idle.locked().entry(addr.clone()).or_default().push(Idle { key: ConnKey::of(&login), conn, state, uid: self.uid(), born: now, since: now });
                    }
                    Err(e) => {
                        node.open.fetch_sub(1, Ordering::Relaxed);
                        tracing::debug!(node = %addr, error = %e, "pool warm-up could not connect");
                        break;
                    }
                }
            }
        }
    }

    /// Counts one more open connection if the node has room.
    fn reserve_place(&self, node: &NodePool, max: usize) -> bool {
        node.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| (o < max).then_some(o + 1)).is_ok()
    }

    /// Opens `min_idle` connections to `addr` for `login` now (warm-up at start).
    pub async fn warm_up(&self, opener: &dyn Opener<S>, addr: &str, login: &Login) -> Result<(), Error> {
        let node = self.node(addr);
        if node.max.load(Ordering::Acquire) == 0 {
            self.size(opener, addr, &node, login).await?;
        }
        self.last_login.locked().insert(addr.to_string(), login.clone());
        self.maintain(opener).await;
        Ok(())
    }

    /// Closes every idle connection (shutdown).
    pub async fn close_idle(&self) {
        let all: Vec<(String, Idle<S>)> = {
            let mut idle = self.idle.locked();
            std::mem::take(&mut *idle).into_iter().flat_map(|(a, v)| v.into_iter().map(move |c| (a.clone(), c))).collect()
        };
        for (addr, c) in all {
            let node = self.node(&addr);
            node.open.fetch_sub(1, Ordering::Relaxed);
            node.closed.fetch_add(1, Ordering::Relaxed);
            c.conn.quit().await;
        }
    }
}

/// COM_PING on an idle connection; false when it does not answer OK in time.
async fn ping<S: Stream>(conn: &mut BackendConn<S>, limit: Duration) -> bool {
    let exchange = async {
        conn.conn.send(0, &[crate::protocol::constants::com::PING]).await.ok()?;
        let p = conn.read().await.ok()?;
        (p.payload.first() == Some(&0x00)).then_some(())
    };
    matches!(tokio::time::timeout(limit, exchange).await, Ok(Some(())))
}
