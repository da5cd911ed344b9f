//! One client session: login, then a loop that reads each command, decides which node
//! runs it, and passes the response back byte for byte.
//!
//! The session owns its client connection, its tracked state ([`state`]), a
//! connection per node it uses ([`backends`]: opened lazily, brought to the session's
//! state before each statement) and its prepared statements ([`prepared`]). For every
//! statement it asks the classifier (`crate::route::classify`) what the statement is,
//! the router (`crate::route::decide`) where it goes, and the load balancer
//! (`crate::route::balance`) which replica; then it relays. `SET @@sluice_…` and
//! `SHOW SLUICE ROUTE FOR …` are answered here ([`local`]). See docs/architecture.md.
//!
//! Commands follow <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html>;
//! Sluice answers a few itself: COM_QUIT, `KILL` and COM_PROCESS_KILL (mapped to the right
//! backend thread), COM_CHANGE_USER (re-authenticated against the config or, in
//! pass-through mode, the backend's accounts, then the backend session is changed too),
//! and commands it does not relay (ER_UNKNOWN_COM_ERROR). A backend lost mid-command ends
//! the session: the client sees its connection drop, as with the server itself; a read
//! on a replica whose connection fails before any of its response reached the client is
//! sent to another eligible node instead (a read is safe to send again).

pub mod backends;
pub mod local;
mod lost;
mod observe;
pub mod rules;
pub mod prepared;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use crate::sync::Locked;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::conn::{connect, Secret};
use crate::consistency::gtid::GtidSet;
use crate::consistency::level::{self as consistency, Fallback, Level, Need};
use crate::protocol::constants::cap;
use crate::protocol::rewrite::{ok_for_client, Strip};
use crate::backend::topology::Topology;
use crate::config::AuthMode;
use crate::error::Error;
use crate::failover::Sent;
use crate::net::Net;
use crate::protocol::conn::{PacketConn, ReadError};
use crate::protocol::constants::{com, err, status};
use crate::protocol::handshake::ChangeUser;
use crate::protocol::response::{Expect, Summary};
use crate::proxy::Shared;
use crate::route::balance::{self, Candidate};
use crate::route::class::{Classified, Effect, Kind};
use crate::route::decide::{decide, Bugs, Plan, Reason, SessionView, Target};
use crate::server::login::{self, send_err, ClientLogin};
use crate::server::registry::{parse_kill, Current, Kill};

use backends::{NodeConn, OkRewrite, RelayError, Waited};
use prepared::Statements;
use state::{Pin, SessionState};

/// How a command is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Query,
    Prepare,
    Execute,
    /// COM_STMT_FETCH / COM_STMT_RESET: on the node of the statement's last execute.
    OnStatementNode(Expect),
    SendLongData,
    Close,
    InitDb,
    SetOption,
    ResetConnection,
    /// Relayed to the primary.
    Primary(Expect),
    Quit,
    ProcessKill,
    ChangeUser,
    Unsupported,
}

fn command(cmd: u8) -> Command {
    match cmd {
        com::QUERY => Command::Query,
        com::STMT_PREPARE => Command::Prepare,
        com::STMT_EXECUTE => Command::Execute,
        com::STMT_FETCH => Command::OnStatementNode(Expect::Fetch),
        com::STMT_RESET => Command::OnStatementNode(Expect::OnePacket),
        com::STMT_SEND_LONG_DATA => Command::SendLongData,
        com::STMT_CLOSE => Command::Close,
        com::INIT_DB => Command::InitDb,
        com::SET_OPTION => Command::SetOption,
        com::RESET_CONNECTION => Command::ResetConnection,
        com::PROCESS_INFO => Command::Primary(Expect::Query),
        com::FIELD_LIST => Command::Primary(Expect::FieldList),
        com::PING | com::STATISTICS | com::REFRESH | com::DEBUG | com::CREATE_DB | com::DROP_DB | com::SHUTDOWN => Command::Primary(Expect::OnePacket),
        com::QUIT => Command::Quit,
        com::PROCESS_KILL => Command::ProcessKill,
        com::CHANGE_USER => Command::ChangeUser,
        _ => Command::Unsupported,
    }
}

/// The little-endian `u32` after a command byte (a statement or connection id), if
/// the client sent four bytes of it.
fn u32_after_command(payload: &[u8]) -> Option<u32> {
    let b: [u8; 4] = payload.get(1..5)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Why a session ends.
enum End {
    /// Normal end (COM_QUIT, client closed, shutdown, killed).
    Closed(&'static str),
    Failed(Error),
}

/// A filter on read candidates: `(address, is the primary)` → keep.
type KeepNode<'a> = dyn Fn(&str, bool) -> bool + 'a;

/// Where one statement was sent and why.
#[derive(Debug, Clone)]
pub struct Routed {
    pub node: String,
    pub reason: Reason,
    /// The node is the primary.
    pub primary: bool,
    /// A replica that must first reach these GTIDs (Sluice waits there, in the same
    /// round trip, before the statement runs).
    pub wait: Option<GtidSet>,
}

struct Session<N: Net> {
    shared: Arc<Shared<N>>,
    id: u32,
    peer: String,
    client: PacketConn<N::Stream>,
    login: ClientLogin,
    killed: Arc<Notify>,
    /// The backend connection running the current statement, as the registry sees it.
    current: Current,
    /// The backend connection last used on each node (kept after it went back to the pool).
    last: crate::server::registry::LastUsed,
    /// One connection per node the session uses, by address.
    nodes: BTreeMap<String, NodeConn<N::Stream>>,
    state: SessionState,
    stmts: Statements,
    /// The COM_STMT_EXECUTE being relayed runs SQL that may read the variable Sluice's
    /// GTID tracking changes ([`consistency::may_show_tracking`]).
    execute_shows_tracking: bool,
    /// The topology as of `topo_version`, and the primary statements go to.
    topo: Option<Topology>,
    topo_version: u64,
    primary: Option<String>,
    /// Nodes this session could not use lately (connect or replay failed), until when.
    avoid: BTreeMap<String, Instant>,
    rng: ChaCha8Rng,
    bugs: Bugs,
    read_timeout: Option<Duration>,
    /// The primary's GTID position read for the current statement (`global` reads, or
    /// after a write whose GTID Sluice did not see).
    position_for_read: Option<GtidSet>,
    /// Backend connections are lent per statement (`[pool] multiplex`).
    multiplex: bool,
    /// Why the session keeps its connections now, if it does.
    pinned: Option<Pin>,
    /// The connection that ran the session's last statement, `(node, pool id)`: asked
    /// for again first (its diagnostics are the session's).
    last_conn: Option<(String, u64)>,
    /// The statement about to run may read `LAST_INSERT_ID()`: the connection gets the
    /// session's value first.
    want_lid: bool,
    /// The next connection taken from a pool must be a new one (a login the server
    /// must check itself).
    fresh_next: bool,
    /// The statement about to run reads `FOUND_ROWS()`: the connection gets the
    /// session's value first.
    want_found_rows: Option<u64>,
    /// The statement about to run reads `ROW_COUNT()`: the connection gets the
    /// session's value first where it can (`backends::row_count_sql`).
    want_row_count: bool,
    /// The statement waiting in the failover buffer, and until when.
    buffered: Option<(crate::failover::Ticket, Instant)>,
    /// The open transaction on the primary, kept for `[failover] transaction_replay`.
    txn_log: crate::failover::replay::TxnLog,
    /// The deposition watch of the current primary, for statements sent to it.
    primary_cut: Option<backends::CutWhenDeposed>,
    /// The user's counters (looked up once, at login).
    user_metrics: Arc<crate::metrics::UserMetrics>,
    /// Why the statement being relayed goes where it goes (for the node's counters).
    reason: Reason,
    /// What the session is doing, for the admin interface.
    activity: crate::server::registry::Activity,
    /// Cells of the digests this session ran lately (counted without a lock).
    digest_handles: crate::metrics::digests::DigestHandles,
    /// When the command being served arrived.
    cmd_started: Instant,
    /// When the command's last backend response ended (one clock read shared by the
    /// counters of the node, the digest and the command).
    ended: Option<Instant>,
    /// The config in force for live settings (`crate::reload`) as of `live_version`;
    /// re-read before a command when a reload bumped the version.
    live: Arc<crate::config::Config>,
    live_version: u64,
    /// Query rules and user limits as of `live_version`.
    policy: Arc<rules::Policy>,
    /// A query rule's node for the statement being routed (reads only).
    rule_node: Option<String>,
    /// Per-node counters as of `live_version` (a reload may change the nodes).
    node_stats: Arc<std::collections::BTreeMap<String, Arc<crate::route::balance::NodeStats>>>,
    node_metrics: Arc<std::collections::BTreeMap<String, Arc<crate::metrics::NodeMetrics>>>,
    /// A query rule's `max_rows` / `max_bytes` for the statement being run (set by
    /// `apply_rules`, for single-statement reads only).
    rule_cap: Option<rules::CapRule>,
    /// Client bytes `(read, written)` already counted in `user_metrics`.
    bytes_counted: (u64, u64),
}

/// Serves one accepted client connection until it ends.
pub async fn run<N: Net>(shared: Arc<Shared<N>>, stream: N::Stream, peer: String) {
    let mut client = PacketConn::new(stream, shared.cfg.proxy.max_allowed_packet);
    // A client that stops reading mid-result (or vanished without a FIN or RST) must
    // not hold its session and backend connection for good: see `client_write_timeout_ms`.
    let write_timeout = shared.cfg.proxy.client_write_timeout_ms;
    client.set_write_stall((write_timeout > 0).then(|| Duration::from_millis(write_timeout)));
    let (id, killed, current, last, activity) = shared.registry.register(String::new(), &peer);
    let host = peer.rsplit_once(':').map(|(h, _)| h).unwrap_or(&peer).trim_matches(['[', ']']).to_string();
    let handshake = std::time::Duration::from_millis(shared.cfg.proxy.handshake_timeout_ms);
    let login = match tokio::time::timeout(handshake, login::accept(&shared, &mut client, id, &host)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::info!(conn = id, %peer, error = %e, "login failed");
            client.shutdown().await;
            shared.registry.remove(id);
            shared.metrics.login_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        Err(_) => {
            tracing::info!(conn = id, %peer, "login timed out");
            send_err(&mut client, 0, err::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake").await;
            shared.registry.remove(id);
            shared.metrics.login_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
    };
    shared.registry.set_user(id, &login.user);
    let user_metrics = shared.metrics.user(&login.user);
    user_metrics.logins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _open = observe::OpenSession::new(user_metrics.clone());
    activity.locked().since = Some(Instant::now());
    // A login during a failover waits for a primary like a statement would (the
    // failover buffer's window and statement bound), rather than failing at once.
    let login_deadline = Instant::now() + shared.failover_buffer.limits().window;
    let login_pause = Duration::from_millis((shared.cfg.backend.monitor_interval_ms / 4).clamp(10, 250));
    let mut ticket = None;
    let primary = loop {
        if let Some(p) = shared.primary() {
            break Some(p);
        }
        let now = Instant::now();
        if now >= login_deadline {
            break None;
        }
        if ticket.is_none() {
            match shared.failover_buffer.admit(0) {
                Ok(t) => ticket = Some(t),
                Err(_) => break None,
            }
        }
        let version = shared.topology.version();
        let changed = shared.topology.wait_for(|_| shared.topology.version() != version);
        tokio::select! {
            biased;
            _ = changed => {}
            _ = tokio::time::sleep(login_pause.min(login_deadline - now)) => {}
        }
    };
    let Some(mut primary) = primary else {
        let msg = "Unable to connect to foreign data source: Sluice has no primary right now";
        send_err(&mut client, login.seq, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", msg).await;
        client.shutdown().await;
        shared.registry.remove(id);
        shared.metrics.login_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    };
    let live_version = shared.live.version();
    let live = shared.live.get();
    let policy = shared.policy();
    if let Some(max) = policy.limits.of(&login.user).and_then(|l| l.max_connections) {
        // `_open` counts this session already.
        if user_metrics.connections.load(std::sync::atomic::Ordering::Relaxed) > i64::from(max) {
            let msg = format!("User {} already has more than 'max_user_connections' active connections", login.user);
            send_err(&mut client, login.seq, 1203, "42000", &msg).await;
            client.shutdown().await;
            shared.registry.remove(id);
            shared.metrics.login_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
    }
    let (split, mode) = live.routing.for_user(&login.user);
    let level = live.routing.consistency_for(&login.user);
    let multiplex = live.routing.multiplex_for(&login.user, live.pool.multiplex);
    let mut state = SessionState::new(login.database.clone(), status::AUTOCOMMIT, split, mode);
    state.consistency = level;
    state.consistency_timeout_ms = crate::config::RoutingConfig::wait_limit_ms(live.routing.consistency_timeout_ms, shared.cfg.backend.read_timeout_ms);
    state.consistency_fallback = live.routing.consistency_fallback;
    let seed = shared.rng.locked().gen::<u64>();
    let bugs = Bugs { writes_to_replica: shared.faults.route_writes_to_replica(), session_bound_reads_to_replica: shared.faults.route_session_bound_reads_to_replica() };
    let read_timeout = (shared.cfg.backend.read_timeout_ms > 0).then(|| Duration::from_millis(shared.cfg.backend.read_timeout_ms));
    let login_seq = login.seq;
    let mut s = Session {
        shared: shared.clone(),
        id,
        peer,
        client,
        login,
        killed,
        current,
        last,
        nodes: BTreeMap::new(),
        state,
        stmts: Statements::default(),
        execute_shows_tracking: false,
        topo: None,
        topo_version: u64::MAX,
        primary: None,
        avoid: BTreeMap::new(),
        rng: ChaCha8Rng::seed_from_u64(seed),
        bugs,
        read_timeout,
        position_for_read: None,
        multiplex,
        pinned: None,
        last_conn: None,
        want_lid: false,
        fresh_next: false,
        want_found_rows: None,
        want_row_count: false,
        buffered: None,
        txn_log: crate::failover::replay::TxnLog::new(crate::failover::replay::ReplayLimits {
            max_statements: shared.cfg.failover.transaction_replay_max_statements,
            max_bytes: shared.cfg.failover.transaction_replay_max_bytes,
        }),
        primary_cut: None,
        user_metrics,
        reason: Reason::Unknown,
        bytes_counted: (0, 0),
        activity,
        digest_handles: Default::default(),
        cmd_started: Instant::now(),
        ended: None,
        live,
        live_version,
        policy,
        rule_node: None,
        node_stats: shared.node_stats.snapshot(),
        node_metrics: shared.metrics.nodes(),
        rule_cap: None,
    };
    // The login takes a connection to the primary from its pool (or opens one with the
    // client's login): the server checks the database the client asked for, and its
    // login OK is the client's.
    s.refresh_topology();
    // Pass-through identity: the server authenticates every login itself (its own
    // rules: secure_auth, locked or expired accounts, per-user limits) on a new
    // connection, which then joins the user's pool. Config mode: Sluice checked the
    // password, a pooled connection serves.
    let (template, ready) = loop {
        s.fresh_next = shared.cfg.proxy.auth_mode == AuthMode::Passthrough;
        // Config mode, multiplexed: when a connection of the client's key logged in
        // before and the server accepted its database lately, the login needs no
        // backend connection at all (a burst of logins costs the backends nothing).
        let template = if s.multiplex && !s.fresh_next { shared.pools.login_template(&primary, &s.login_for_pool()) } else { None };
        let ready = match template {
            Some(_) => Ok(()),
            None => s.ready(&primary).await,
        };
        s.fresh_next = false;
        match ready {
            // The published primary is gone (not noticed yet, or restarting): wait for
            // it or its successor within the window.
            Err(e) if lost::is_unreachable(&e) && Instant::now() + login_pause < login_deadline => {
                tracing::info!(conn = id, node = %primary, error = %e, "login waits for a reachable primary");
                s.nodes.remove(&primary);
                tokio::time::sleep(login_pause).await;
                s.refresh_topology();
                if let Some(p) = shared.primary() {
                    primary = p;
                }
            }
            r => break (template, r),
        }
    };
    drop(ticket);
    if let Err(e) = ready {
        tracing::warn!(conn = id, peer = %s.peer, error = %e, "cannot open backend connection");
        let (code, state, msg) = match &e {
            Error::BackendErr { code, state, message, .. } => (*code, state.clone(), message.clone()),
            Error::PoolExhausted { .. } => (err::ER_CON_COUNT_ERROR, "08004".to_string(), e.to_string()),
            Error::BackendProtocol { message, .. } if message.contains("extended capabilities") => {
                (err::ER_HANDSHAKE_ERROR, "08S01".to_string(), "Bad handshake: the primary's capabilities changed during login; reconnect".to_string())
            }
            _ => (err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000".to_string(), format!("Unable to connect to foreign data source: Sluice cannot reach the primary: {e}")),
        };
        send_err(&mut s.client, login_seq, code, &state, &msg).await;
        s.client.shutdown().await;
        s.nodes.clear();
        shared.registry.remove(id);
        return;
    }
    let (login_ok, bcaps, thread, baddr) = match (template, s.nodes.get(&primary)) {
        (_, Some(nc)) => (nc.conn.login_ok.clone(), nc.conn.caps, nc.conn.thread_id, nc.conn.addr.clone()),
        (Some((ok, caps, _)), None) => (ok, caps, 0, primary.clone()),
        // cannot fail: without a template, `ready(&primary)` succeeded (checked above) and holds its connection.
        (None, None) => unreachable!("ready() holds the primary's connection"),
    };
    if let Some(db) = &s.login.database {
        if s.nodes.contains_key(&primary) {
            shared.pools.database_accepted(&primary, &s.login.backend_user, db);
        }
    }
    if thread != 0 {
        *s.current.locked() = Some((baddr.clone(), thread));
    }
    s.state.login_status = crate::protocol::packets::Ok::parse(&login_ok, bcaps).map(|o| o.status).unwrap_or(status::AUTOCOMMIT);
    let login_ok = login_ok_for(&login_ok, bcaps, s.login.database.as_deref());
    let login_ok = ok_for_client(&login_ok, bcaps, s.login.caps, Strip::default()).unwrap_or(login_ok);
    if let Err(e) = s.client.send(login_seq, &login_ok).await {
        tracing::debug!(conn = id, error = %e, "client left after login");
        s.release_all(true).await;
        shared.registry.remove(id);
        return;
    }
    tracing::debug!(conn = id, peer = %s.peer, user = %s.login.user, backend = %baddr, thread, "session open");
    s.after_command().await;
    let end = s.serve().await;
    let clean = match end {
        // A killed session's backend connection may be killed as well.
        End::Closed("killed") => false,
        End::Closed(why) => {
            tracing::debug!(conn = id, why, "session closed");
            true
        }
        End::Failed(e) => {
            tracing::info!(conn = id, peer = %s.peer, error = %e, origin = ?e.origin(), "session ended by error");
            false
        }
    };
    s.client.shutdown().await;
    s.release_all(!clean).await;
    shared.registry.remove(id);
}

impl<N: Net> Session<N> {
    async fn serve(&mut self) -> End {
        // One wait, the session's own: a kill notifies it, and so does the proxy when
        // it shuts down or starts draining (`Registry::wake_all`; the flags are read
        // from the signals' versions). Waiting on the shared signals themselves would
        // lock their waiter lists, shared by every session, on each poll.
        let killed = self.killed.clone();
        let kill = killed.notified();
        tokio::pin!(kill);
        let (shutdown, draining_signal) = (self.shared.shutdown.clone(), self.shared.draining.clone());
        let mut seen = (u64::MAX, u64::MAX);
        // After a hand-over to a new process (`upgrade`): the session closes at a
        // statement boundary once it has waited `drain_idle_ms` for its next command
        // outside a transaction.
        let mut draining = false;
        let drain_idle = Duration::from_millis(self.shared.cfg.proxy.drain_idle_ms);
        let mut idle_since = Instant::now();
        // The client's own `wait_timeout`, recomputed when its SET log changes.
        let mut wait: (usize, u64, Option<Duration>) = (0, 0, None);
        loop {
            let now_seen = (shutdown.version(), draining_signal.version());
            if now_seen != seen {
                seen = now_seen;
                if shutdown.with(|s| *s) {
                    return End::Closed("proxy shutting down");
                }
                draining |= draining_signal.with(|d| *d);
            }
            if (self.state.replay.len(), self.state.replay_generation) != (wait.0, wait.1) {
                wait = (self.state.replay.len(), self.state.replay_generation, state::client_wait_timeout(&self.state.replay));
            }
            // A pinned session holds a pooled backend connection while idle: past
            // `pool.pinned_idle_timeout_ms` it is closed (a client that vanished
            // without a FIN must not hold a pool's connection for good).
            let pinned_limit = match self.pinned {
                Some(p) if p != Pin::MultiplexOff && !self.nodes.is_empty() && self.live.pool.pinned_idle_timeout_ms > 0 => {
                    Some(Duration::from_millis(self.live.pool.pinned_idle_timeout_ms))
                }
                _ => None,
            };
            let idle_limit = match (wait.2, pinned_limit) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let idle_why = if idle_limit.is_some() && idle_limit == pinned_limit { "idle while pinned (pool.pinned_idle_timeout_ms)" } else { "wait_timeout" };
            let closable = draining && self.state.txn_node().is_none();
            let read = tokio::select! {
                biased;
                _ = &mut kill => {
                    if (shutdown.version(), draining_signal.version()) != seen {
                        // Woken for a proxy-wide change (looked at above), not a kill.
                        kill.set(killed.notified());
                        continue;
                    }
                    return End::Closed("killed");
                }
                // (Async blocks: a disabled branch's future is still built, and a bare
                // `sleep` registers nothing but reads the clock.)
                _ = async { tokio::time::sleep_until(idle_since + drain_idle).await }, if closable => {
                    return End::Closed("idle while draining after a hand-over");
                }
                r = self.client.read_packet_idle() => r,
                // As the server would: a session idle past the wait_timeout it set is
                // closed (its pooled backend connections do not see its idleness).
                _ = async { tokio::time::sleep(idle_limit.unwrap_or_default()).await }, if idle_limit.is_some() => {
                    tracing::info!(conn = self.id, pin = ?self.pinned, why = idle_why, "idle session closed");
                    return End::Closed(idle_why);
                }
            };
            let p = match read {
                Ok(p) => p,
                Err(ReadError::Closed) => return End::Closed("client closed the connection"),
                Err(ReadError::Io(e)) => return End::Failed(Error::ClientIo(e)),
                Err(ReadError::TooLarge { .. }) => {
                    let msg = "Got a packet bigger than 'max_allowed_packet' bytes";
                    self.send_err(1, err::ER_NET_PACKET_TOO_LARGE, "08S01", msg).await;
                    // Let the client finish writing the oversized packet so it
                    // reads the ERR instead of a connection reset.
                    let limit = self.shared.cfg.proxy.max_allowed_packet.saturating_mul(2).max(16 << 20);
                    let _ = tokio::time::timeout(Duration::from_secs(5), self.client.drain_and_close(limit)).await;
                    return End::Failed(Error::client_protocol(err::ER_NET_PACKET_TOO_LARGE, msg));
                }
                Err(ReadError::OutOfOrder { got, .. }) => {
                    self.send_err(got.wrapping_add(1), err::ER_NET_PACKETS_OUT_OF_ORDER, "08S01", "Got packets out of order").await;
                    return End::Failed(Error::client_protocol(err::ER_NET_PACKETS_OUT_OF_ORDER, "continuation frame out of order"));
                }
            };
            if p.seq != 0 {
                self.send_err(p.next_seq(), err::ER_NET_PACKETS_OUT_OF_ORDER, "08S01", "Got packets out of order").await;
                return End::Failed(Error::client_protocol(err::ER_NET_PACKETS_OUT_OF_ORDER, format!("command with sequence id {}", p.seq)));
            }
            let Some(&cmd) = p.payload.first() else {
                self.send_err(1, err::ER_MALFORMED_PACKET, "HY000", "Malformed communication packet.").await;
                continue;
            };
            let payload = &p.payload[..];
            let started = Instant::now();
            self.cmd_started = started;
            self.ended = None;
            self.command_started(cmd, started);
            if self.shared.live.version() != self.live_version {
                // A reload: load balancing and `DEFAULT` settings follow it from now on.
                self.live_version = self.shared.live.version();
                self.live = self.shared.live.get();
                self.policy = self.shared.policy();
                self.node_stats = self.shared.node_stats.snapshot();
                self.node_metrics = self.shared.metrics.nodes();
                self.apply_config_defaults();
            }
            let outcome = match command(cmd) {
                Command::Quit => return End::Closed("COM_QUIT"),
                Command::Unsupported => {
                    tracing::info!(conn = self.id, cmd, "unknown or unsupported command");
                    self.send_err(1, err::ER_UNKNOWN_COM_ERROR, "08S01", "Unknown command").await;
                    Ok(())
                }
                Command::ProcessKill => match u32_after_command(payload) {
                    Some(id) => self.kill(Kill::Connection(u64::from(id))).await,
                    None => {
                        self.send_err(1, err::ER_MALFORMED_PACKET, "HY000", "Malformed communication packet.").await;
                        Ok(())
                    }
                },
                Command::ChangeUser => self.change_user(payload).await,
                Command::Query => match parse_kill(&payload[1..]) {
                    // passthrough: the client's own account; the server decides.
                    Some(Kill::User) if self.shared.cfg.proxy.auth_mode == AuthMode::Passthrough => self.on_primary(payload, Expect::Query).await.map(|_| ()),
                    Some(k) => self.kill(k).await,
                    None => self.query(payload).await,
                },
                Command::Prepare => self.prepare(payload).await,
                Command::Execute => self.execute(payload).await,
                Command::OnStatementNode(expect) => self.on_statement_node(payload, expect).await,
                Command::SendLongData => self.send_long_data(payload).await,
                Command::Close => self.close_statement(payload).await,
                Command::InitDb => self.init_db(payload).await,
                Command::SetOption => self.set_option(payload).await,
                Command::ResetConnection => self.reset_connection(payload).await,
                Command::Primary(expect) => self.on_primary(payload, expect).await.map(|_| ()),
            };
            if let Err(e) = outcome {
                if let Error::PrimaryMoved { .. } = &e {
                    // As a server that went away would: the client reconnects and
                    // starts a clean session on the new primary.
                    let msg = format!("Connection was killed: {e}; reconnect");
                    self.send_err(1, err::ER_CONNECTION_KILLED, "70100", &msg).await;
                }
                return End::Failed(e);
            }
            self.after_command().await;
            idle_since = self.command_done(started);
        }
    }

    /// Why the session must keep its backend connections now, if it must.
    fn pin_reason(&self) -> Option<Pin> {
        if !self.multiplex {
            return Some(Pin::MultiplexOff);
        }
        self.state.pin_reason().or_else(|| {
            if self.stmts.cursor_open() {
                Some(Pin::Cursor)
            } else if self.stmts.long_data_pending() {
                Some(Pin::LongData)
            } else {
                None
            }
        })
    }

    /// After each command: counts a pin that begins, and gives the session's backend
    /// connections back to their pools unless it is pinned.
    async fn after_command(&mut self) {
        self.buffered = None;
        let pin = self.pin_reason();
        if pin != self.pinned {
            if let Some(p) = pin {
                self.shared.pins.count(&self.login.user, p);
            }
            self.pinned = pin;
        }
        if pin.is_none() && !self.nodes.is_empty() {
            self.release_all(false).await;
        } else if pin.is_some_and(|p| p != Pin::MultiplexOff) && self.nodes.len() > 1 {
            self.release_unpinned_nodes().await;
        }
    }

    /// A pinned session keeps the connection its state lives on (the transaction's, the
    /// one with its session-bound state, the one whose diagnostics or cursor it will
    /// read) and gives the others back.
    async fn release_unpinned_nodes(&mut self) {
        let keep: Vec<String> = [
            self.state.txn_node().map(str::to_string),
            self.state.bound_to.clone(),
            self.state.previous.clone(),
            self.primary.clone(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let others: Vec<String> = self.nodes.keys().filter(|n| !keep.contains(n)).cloned().collect();
        if others.is_empty() || self.stmts.cursor_open() || self.stmts.long_data_pending() {
            return;
        }
        for node in others {
            if let Some(nc) = self.nodes.remove(&node) {
                let (conn, lease, cs) = nc.into_pooled(&self.state);
                match lease {
                    Some(lease) => self.shared.pools.put(&node, conn, lease, cs).await,
                    None => conn.quit().await,
                }
            }
        }
    }

    /// Gives every connection the session holds back to its pool, with what it holds;
    /// with `close`, or when the session's state on them cannot be handed on (an open
    /// transaction, locks, temporary tables, …), closes them instead.
    async fn release_all(&mut self, close: bool) {
        let keepable = !close && matches!(self.state.pin_reason(), None | Some(Pin::Diagnostics) | Some(Pin::FoundRows)) && !self.stmts.cursor_open() && !self.stmts.long_data_pending();
        if keepable {
            // Whatever the session's statements left on the connections is carried by
            // Sluice from now on: it is bound to no node (a new primary can serve it).
            self.state.bound_to = None;
        }
        let previous = self.state.previous.clone();
        // The session holds no backend connection any more: a KILL of it has none to
        // stop (the pooled one may serve another session next).
        *self.current.locked() = None;
        if !self.nodes.is_empty() {
            let mut last = self.last.locked();
            for (node, nc) in &self.nodes {
                match last.iter_mut().find(|(a, _)| a == node) {
                    Some(e) => e.1 = nc.conn.thread_id,
                    None => last.push((node.clone(), nc.conn.thread_id)),
                }
            }
        }
        for (node, nc) in std::mem::take(&mut self.nodes) {
            if !self.multiplex {
                self.shared.registry.remove_backend(self.id, &node);
            }
            if !keepable {
                nc.conn.quit().await;
                continue;
            }
            let (conn, lease, mut cs) = nc.into_pooled(&self.state);
            if self.state.diagnostics_pending {
                // Its diagnostics area is this session's: reset before the next user.
                cs.dirty = true;
            }
            match lease {
                Some(lease) => {
                    if previous.as_deref() == Some(node.as_str()) {
                        self.last_conn = Some((node.clone(), lease.uid));
                    }
                    self.shared.pools.put(&node, conn, lease, cs).await;
                }
                None => conn.quit().await,
            }
        }
    }

    /// Re-reads the topology when the monitor published a new one.
    fn refresh_topology(&mut self) {
        let v = self.shared.topology.version();
        if v != self.topo_version {
            self.topo_version = v;
            self.topo = self.shared.topology.get();
            self.primary = self.shared.primary();
            if let Some(t) = &self.topo {
                self.shared.positions.observe(v, t);
            }
        }
    }

    fn view(&self) -> SessionView<'_> {
        let primary = self.primary.as_deref();
        SessionView {
            split: self.state.split,
            mode: self.state.mode,
            txn_node: self.state.txn_node(),
            primary,
            autocommit: self.state.autocommit(primary),
            temp_tables: self.state.temp_tables,
            tables_locked: self.state.tables_locked,
            unreplayable: self.state.unreplayable,
            previous: self.state.previous.as_deref(),
        }
    }

    /// Decides where a statement classified as `c` runs. With `peek`, nothing is
    /// consumed (the shared turn counter, the RNG): for `SHOW SLUICE ROUTE`.
    fn route(&mut self, c: &Classified, peek: bool) -> Result<Routed, Error> {
        self.refresh_topology();
        let Plan { target, reason } = decide(c, &self.view(), self.bugs);
        self.resolve(target, reason, peek)
    }

    /// [`Self::route`] for a statement about to run: a read that needs the primary's
    /// GTID position first reads it (one round trip).
    async fn route_to_run(&mut self, c: &Classified) -> Result<Routed, Error> {
        self.refresh_topology();
        let Plan { mut target, mut reason } = decide(c, &self.view(), self.bugs);
        if let Some(node) = self.rule_node.take() {
            // A query rule's node, for a read the router would send to a reader, when
            // that node is up.
            let up = self.topo.as_ref().and_then(|t| t.nodes.get(&node)).is_some_and(|n| n.readable || self.primary.as_deref() == Some(node.as_str()));
            if target == Target::Readers && up {
                (target, reason) = (Target::Node(node), Reason::QueryRule);
            }
        }
        self.position_for_read = None;
        if target == Target::Readers && self.read_need() == Need::PrimaryPosition {
            match self.primary_position().await {
                Ok(g) => self.position_for_read = Some(g),
                Err(e) => tracing::info!(conn = self.id, error = %e, "cannot read the primary's GTID position; the read goes to the primary"),
            }
        }
        self.resolve(target, reason, false)
    }

    /// What the session's next replica read requires.
    fn read_need(&self) -> Need {
        if self.shared.faults.ignore_consistency() {
            return Need::Nothing;
        }
        let level = self.state.consistency;
        let primary = self.primary.as_deref();
        if level == Level::Instance {
            let instance = self.shared.positions.instance();
            return consistency::need(level, &self.state.written, &instance, primary);
        }
        consistency::need(level, &self.state.written, &self.state.written, primary)
    }

    /// Reads the primary's current GTID position (for `global` reads, and after a
    /// write whose GTID Sluice did not see), on the session's primary connection.
    async fn primary_position(&mut self) -> Result<GtidSet, Error> {
        let primary = self.primary.clone().ok_or(Error::NoBackend("primary"))?;
        self.ready(&primary).await?;
        let timeout = self.read_timeout;
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        let nc = self.nodes.get_mut(&primary).expect("ready");
        let mysql = nc.mysql;
        let sql = consistency::position_sql(mysql);
        let mut q = Vec::with_capacity(1 + sql.len());
        q.push(com::QUERY);
        q.extend_from_slice(sql.as_bytes());
        if let Err(source) = nc.conn.conn.send(0, &q).await {
            self.drop_node(&primary).await;
            return Err(Error::BackendIo { addr: primary, sent: true, source });
        }
        let v = match backends::read_scalar(nc, timeout).await {
            Ok(v) => v,
            Err(e) => {
                if !matches!(e, Error::BackendErr { .. }) {
                    self.drop_node(&primary).await;
                }
                return Err(e);
            }
        };
        let text = String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned();
        let g = if mysql { GtidSet::parse_mysql(&text) } else { GtidSet::parse_mariadb(&text) }
            .map_err(|e| Error::backend_protocol(&primary, format!("unreadable GTID position {text:?}: {e}")))?;
        if self.state.written.unknown && self.state.written.primary.as_deref() == Some(primary.as_str()) {
            self.state.written.resolve_unknown(&primary, &g);
        }
        self.shared.positions.resolve_unknown(&primary, &g);
        Ok(g)
    }

    fn resolve(&mut self, target: Target, reason: Reason, peek: bool) -> Result<Routed, Error> {
        let on_primary = |s: &Self, reason| {
            let node = s.primary.clone().ok_or(Error::NoBackend("primary"))?;
            match &s.state.bound_to {
                // The session's state lives on a node that is no longer the primary:
                // following the new primary would silently lose it. (State Sluice
                // carries itself — variables, schema, LAST_INSERT_ID — follows.)
                Some(old) if *old != node && s.holds_state_on(old) => Err(Error::PrimaryMoved { from: old.clone(), to: node }),
                _ => Ok(Routed { node, reason, primary: true, wait: None }),
            }
        };
        // A read needs none of the session's state: it may go to the current primary even
        // when that state lives on an old one.
        let read_on_primary = |s: &Self, reason| {
            let node = s.primary.clone().ok_or(Error::NoBackend("primary"))?;
            Ok(Routed { node, reason, primary: true, wait: None })
        };
        match target {
            Target::Primary => on_primary(self, reason),
            Target::Node(node) => {
                // The session's transaction (or state) is on a node that was the primary
                // and was replaced (declared down, another one promoted): its statements
                // must not run there (a deposed primary that wakes up would commit them,
                // unseen by the new one). A read-only transaction on a replica goes on.
                let held = self.state.txn_node() == Some(node.as_str()) || self.state.bound_to.as_deref() == Some(node.as_str());
                let replica = self.topo.as_ref().and_then(|t| t.nodes.get(&node)).is_some_and(|n| n.role == crate::backend::topology::Role::Replica);
                match self.primary.clone() {
                    Some(p) if held && p != node && !replica => Err(Error::PrimaryMoved { from: node, to: p }),
                    _ => Ok(Routed { primary: self.primary.as_deref() == Some(node.as_str()), node, reason, wait: None }),
                }
            }
            Target::Readers => {
                let need = self.read_need();
                let required = match need {
                    Need::Nothing => None,
                    Need::Gtids(g) => Some((g, false)),
                    Need::FromPreviousPrimary(g) => Some((g, true)),
                    Need::PrimaryPosition => match self.position_for_read.clone() {
                        Some(g) => Some((g, false)),
                        // Not read (or unreadable): only the primary is sure to have it.
                        None => return read_on_primary(self, Reason::ConsistencyFallback),
                    },
                };
                let Some((g, previous_primary)) = required else {
                    return match self.pick_reader(peek, None) {
                        Some(node) if self.primary.as_deref() == Some(node.as_str()) => Ok(Routed { node, reason: Reason::ReadOnPrimary, primary: true, wait: None }),
                        Some(node) => Ok(Routed { node, reason, primary: false, wait: None }),
                        None => read_on_primary(self, Reason::NoEligibleReplica),
                    };
                };
                // A replica known to have the position serves the read without a wait.
                let positions = &self.shared.positions;
                let has = |addr: &str| positions.has(addr, &g);
                let known = self.topo.as_ref().is_some_and(|t| t.readable().any(|(a, _)| self.primary.as_deref() != Some(a) && has(a)));
                if known {
                    let shared = self.shared.clone();
                    let keep = move |addr: &str, is_primary: bool| is_primary || shared.positions.has(addr, &g);
                    return match self.pick_reader(peek, Some(&keep)) {
                        Some(node) if self.primary.as_deref() == Some(node.as_str()) => Ok(Routed { node, reason: Reason::ReadOnPrimary, primary: true, wait: None }),
                        Some(node) => Ok(Routed { node, reason, primary: false, wait: None }),
                        None => read_on_primary(self, Reason::NoEligibleReplica),
                    };
                }
                if previous_primary {
                    return read_on_primary(self, Reason::ConsistencyFallback);
                }
                // The read must wait: among the eligible replicas, those with the least
                // reported lag are the likeliest to get there soonest (a replica far
                // behind, e.g. a delayed one, would make the read wait longest or time
                // out). Ties keep the configured policy.
                let least_lag = self.topo.as_ref().map(|t| t.least_lagging_readers(self.primary.as_deref())).unwrap_or_default();
                let keep = move |addr: &str, is_primary: bool| is_primary || least_lag.is_empty() || least_lag.iter().any(|a| a == addr);
                match self.pick_reader(peek, Some(&keep)) {
                    Some(node) if self.primary.as_deref() == Some(node.as_str()) => Ok(Routed { node, reason: Reason::ReadOnPrimary, primary: true, wait: None }),
                    Some(node) => Ok(Routed { node, reason, primary: false, wait: Some(g) }),
                    None => read_on_primary(self, Reason::NoEligibleReplica),
                }
            }
        }
    }

    /// Chooses a node for a read among the eligible replicas (and the primary, when it
    /// has a read weight), by the configured policy.
    fn pick_reader(&mut self, peek: bool, keep: Option<&KeepNode<'_>>) -> Option<String> {
        let topo = self.topo.as_ref()?;
        let now = Instant::now();
        self.avoid.retain(|_, until| *until > now);
        let routing = &self.live.routing;
        let mut cands: Vec<Candidate<'_>> = Vec::with_capacity(topo.nodes.len());
        for (addr, n) in &topo.nodes {
            let is_primary = self.primary.as_deref() == Some(addr.as_str());
            let weight = if is_primary { routing.primary_read_weight } else { routing.weight(addr) };
            if weight == 0 || self.avoid.contains_key(addr) || !(is_primary || n.readable) || keep.is_some_and(|k| !k(addr, is_primary)) {
                continue;
            }
            let stats = self.node_stats.get(addr);
            // Drained by the admin (`SLUICE NODE … DRAIN`): no new reads.
            if stats.is_some_and(|s| s.drained.load(std::sync::atomic::Ordering::Relaxed)) {
                continue;
            }
            cands.push(Candidate {
                addr,
                weight,
                lag_ms: if is_primary { Some(0) } else { n.lag_ms },
                in_flight: stats.map_or(0, |s| s.in_flight.load(std::sync::atomic::Ordering::Relaxed)),
                ewma_ns: stats.map_or(0, |s| s.ewma_ns.load(std::sync::atomic::Ordering::Relaxed)),
            });
        }
        let turn = if peek {
            self.shared.turn.load(std::sync::atomic::Ordering::Relaxed)
        } else {
            self.shared.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        let i = if peek {
            balance::pick(routing.policy, &cands, turn, &mut self.rng.clone())
        } else {
            balance::pick(routing.policy, &cands, turn, &mut self.rng)
        }?;
        Some(cands[i].addr.to_string())
    }

    /// The connection to `node`: the session's own if it holds one, else one lent by
    /// the node's pool (opened with the client's login if none is idle), brought to
    /// the session's state.
    async fn ready(&mut self, node: &str) -> Result<(), Error> {
        let track = self.tracks_gtids_on(node);
        // The session has no default schema any more (its database was dropped), but
        // this connection has one, and `USE` cannot unset it: a new connection (logged
        // in without a database, the session's state replayed) replaces it — unless
        // session-bound state lives on it.
        let stale_schema = self.state.schema.is_none() && self.nodes.get(node).is_some_and(|nc| nc.schema.is_some());
        if stale_schema && self.state.bound_to.as_deref() != Some(node) && self.pin_reason().is_none_or(|p| p == Pin::MultiplexOff) {
            self.drop_node(node).await;
        }
        if !self.nodes.contains_key(node) {
            let blogin = self.login_for_pool();
            let affinity = self.last_conn.as_ref().filter(|(n, _)| n == node).map(|(_, u)| *u);
            let shared = self.shared.clone();
            let state = &self.state;
            let fresh = self.fresh_next;
            let fit = move |uid: u64, cs: &crate::pool::ConnState| -> Option<u32> {
                if fresh || (state.schema.is_none() && cs.schema.is_some()) {
                    return None;
                }
                let mut score = 1;
                if affinity == Some(uid) {
                    score += 1000;
                }
                if !cs.dirty && cs.replay_len <= state.replay.len() && state.replay_fingerprint(cs.replay_len) == cs.replay_hash {
                    score += 100 + cs.replay_len.min(64) as u32;
                }
                if cs.schema == state.schema {
                    score += 10;
                }
                if cs.tracking == track {
                    score += 1;
                }
                Some(score)
            };
            let lent = shared.pools.acquire(&*shared, node, &blogin, &fit).await?;
            if !self.multiplex {
                self.shared.registry.add_backend(self.id, &lent.conn.addr, lent.conn.thread_id);
            }
            let ignore_state = self.shared.faults.ignore_pooled_state();
            self.nodes.insert(node.to_string(), NodeConn::leased(lent, &self.state, ignore_state));
        }
        let lid = self.want_lid.then_some(self.state.last_insert_id);
        let found_rows = self.want_found_rows.take();
        let row_count = self.want_row_count.then_some(self.state.row_count);
        // cannot fail: checked present (`contains_key` / `ready`) just before.
        let nc = self.nodes.get_mut(node).expect("present");
        let track = track && nc.conn.caps & cap::SESSION_TRACK != 0;
        if nc.needs_sync(&self.state, track, lid) || found_rows.is_some() || (row_count.is_some() && !nc.row_count_own) {
            if let Err(e) = backends::sync(nc, &self.state, track, lid, found_rows, row_count, self.read_timeout).await {
                self.drop_node(node).await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// The login a backend connection for this session is opened with (its pool key):
    /// the client's account (or Sluice's), capabilities and character set, the
    /// session's schema. Every backend connection reports session state (schema,
    /// GTIDs): OK packets are rewritten for clients that did not ask for it.
    fn login_for_pool(&self) -> crate::backend::conn::Login {
        let mut blogin = self.shared.backend_login(
            &self.login.backend_user,
            &self.login.backend_secret,
            self.state.schema.clone(),
            self.login.charset,
            self.login.caps,
            self.login.ext_caps,
            self.login.attrs.clone(),
        );
        blogin.caps |= cap::SESSION_TRACK;
        blogin
    }

    /// Whether the session's connection to `node` should report the GTIDs of its
    /// transactions: it is the primary and the session's reads may go to replicas.
    fn tracks_gtids_on(&self, node: &str) -> bool {
        self.state.split && self.state.consistency != Level::Eventual && self.primary.as_deref() == Some(node)
    }

    /// How OK packets of `nc` reach the client: rewritten when the capabilities differ
    /// (Sluice asked for session tracking) or when they carry GTIDs the client did not
    /// ask for.
    fn ok_rewrite(&self, nc: &NodeConn<N::Stream>) -> Option<OkRewrite> {
        let client_caps = self.login.caps;
        let differs = (nc.conn.caps ^ client_caps) & cap::SESSION_TRACK != 0;
        let ours = nc.tracking && !self.state.client_tracks_gtids;
        let strip = Strip { last_gtid: ours && !nc.mysql, gtids: ours && nc.mysql };
        (differs || ours).then_some(OkRewrite { client_caps, strip })
    }

    /// Records the GTIDs a statement on the primary reported (what later reads of this
    /// session, and of the instance, require); a write whose GTID could not be seen
    /// makes the next consistent read ask the primary for its position.
    fn record_gtids(&mut self, node: &str, kind: Option<Kind>, statements: u32, summary: &Summary) {
        // GTIDs count whichever node reported them: the monitor may have marked the
        // node down or seen another primary while this commit completed on it, and
        // the commit is acknowledged all the same.
        if !summary.session_state.is_empty() {
            if let Some(g) = GtidSet::from_session_state(&summary.session_state) {
                // The monitor's latest primary, not this session's snapshot of it: a
                // commit an old primary acknowledged may be relayed after a promotion.
                let current = self.shared.primary();
                self.state.written.record(node, current.as_deref(), &g);
                self.shared.positions.written(node, current.as_deref(), &g);
                return;
            }
        }
        // A replica's reads and read-only transactions write nothing. A node the monitor
        // does not take for a replica (down, or a primary it lost sight of) may have
        // committed the write all the same.
        let replica = self.topo.as_ref().is_some_and(|t| t.nodes.get(node).is_some_and(|n| n.role == crate::backend::topology::Role::Replica));
        if self.primary.as_deref() != Some(node) && replica && !self.nodes.get(node).is_some_and(|n| n.tracking) {
            return;
        }
        let tracked = self.nodes.get(node).is_some_and(|n| n.tracking);
        let may_write = kind.is_some_and(|k| !matches!(k, Kind::Read | Kind::SessionSet | Kind::Use | Kind::Diagnostics | Kind::SluiceSet | Kind::SluiceShow | Kind::Begin { .. }));
        if !tracked && may_write && (summary.error.is_none() || statements > 1) {
            let current = self.shared.primary();
            self.state.written.record_unknown(node, current.as_deref());
            self.shared.positions.written_unknown(node, current.as_deref());
        }
    }

    /// Closes the session's connection to `node` and forgets what lived on it.
    async fn drop_node(&mut self, node: &str) {
        if let Some(nc) = self.nodes.remove(node) {
            self.shared.registry.remove_backend(self.id, node);
            nc.conn.quit().await;
        }
        if self.last_conn.as_ref().is_some_and(|(n, _)| n == node) {
            self.last_conn = None;
        }
        self.state.forget_node(node);
        self.stmts.forget_node(node);
    }

    fn set_current(&self, node: &str) {
        if let Some(nc) = self.nodes.get(node) {
            let mut cur = self.current.locked();
            if cur.as_ref().is_none_or(|(a, t)| a != node || *t != nc.conn.thread_id) {
                *cur = Some((node.to_string(), nc.conn.thread_id));
            }
        }
    }

    /// Relays `payload` to `node` (which must be ready) and records the statement in
    /// the node's counters.
    async fn relay_on(&mut self, node: &str, payload: &[u8], expect: Expect, read: bool, wait: Option<&GtidSet>, patch: &mut (dyn FnMut(&mut [u8], &Summary) + Send)) -> Result<Summary, RelayError> {
        // A statement on the primary stops waiting if another node replaces it (the
        // watch is built once per primary and cloned without allocating).
        let cut = if self.topo.as_ref().and_then(|t| t.primary.as_deref()) == Some(node) {
            if self.primary_cut.as_ref().is_none_or(|c| &*c.addr != node) {
                self.primary_cut = Some(backends::CutWhenDeposed { topology: self.shared.topology.clone(), addr: node.into() });
            }
            self.primary_cut.clone()
        } else {
            None
        };
        // Transaction replay (`failover::replay`): every statement's answer is digested
        // as relayed, wherever it runs (a transaction's statements go to its node even
        // while the monitor publishes no primary); the log's own state says whether a
        // transaction is open.
        let keep = self.shared.cfg.failover.transaction_replay;
        let query = payload.first() == Some(&com::QUERY);
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        let nc = self.nodes.get_mut(node).expect("ready");
        nc.cut = cut;
        nc.digest = (keep && query).then(crate::failover::replay::Digester::default);
        nc.cap = match &self.rule_cap {
            Some(r) if query || payload.first() == Some(&com::STMT_EXECUTE) => {
                let (shared, conn, addr, thread) = (
                    self.shared.clone(),
                    self.id,
                    node.to_string(),
                    nc.conn.thread_id,
                );
                Some(backends::ResultCap {
                    max_rows: r.max_rows,
                    max_bytes: r.max_bytes,
                    error: r.error.clone(),
                    kill: Box::pin(async move {
                        kill_backend_query(&shared, conn, &addr, thread).await
                    }),
                    counters: r.counters.clone(),
                })
            }
            _ => None,
        };
        let (t0, w0) = (Instant::now(), self.client.bytes_written);
        let r = self.relay_on_node(node, payload, expect, read, wait, patch).await;
        self.node_done(node, t0, payload.len(), w0, r.as_ref().ok());
        let digester = self.nodes.get_mut(node).and_then(|nc| {
            nc.cut = None;
            nc.cap = None;
            nc.digest.take()
        });
        if keep {
            if let Ok(summary) = &r {
                // An ERR carries no status: the transaction goes on, unless the server
                // rolled it back (deadlock).
                let open_after = match (summary.status, summary.error) {
                    (Some(st), _) => Some(st & status::IN_TRANS != 0),
                    (None, Some(1213)) => Some(false),
                    (None, _) => None,
                };
                let digest = digester.map(|d| d.finish(summary.error, summary.affected_rows, summary.insert_id, summary.result_sets, summary.rows));
                self.txn_log.observe(open_after, query.then_some(payload), digest);
            }
        }
        r
    }

    async fn relay_on_node(&mut self, node: &str, payload: &[u8], expect: Expect, read: bool, wait: Option<&GtidSet>, patch: &mut (dyn FnMut(&mut [u8], &Summary) + Send)) -> Result<Summary, RelayError> {
        self.set_current(node);
        let rewrite = self.ok_rewrite(&self.nodes[node]);
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        self.nodes.get_mut(node).expect("ready").rewrite = rewrite;
        if let Some(g) = wait {
            return self.relay_after_wait(node, payload, expect, read, g, patch).await;
        }
        // Reads only: a statement pipelined after a write could meet a LOCAL INFILE
        // request, and a write's GTID would go unreported.
        // The flag set for this execute is used once, whatever happens.
        let execute_flag = payload.first() == Some(&com::STMT_EXECUTE) && std::mem::take(&mut self.execute_shows_tracking);
        // The text scan runs only where it can matter (a replica read never does).
        let untrack = read && self.nodes[node].tracking && !self.state.client_tracks_gtids;
        let shows_tracking = untrack
            && match payload.first() {
                Some(&com::QUERY) => consistency::may_show_tracking(&payload[1..]),
                Some(&com::STMT_EXECUTE) => execute_flag,
                _ => false,
            };
        if shows_tracking {
            return self.relay_untracked(node, payload, expect, read, patch).await;
        }
        let stats = self.node_stats.get(node).cloned();
        if let Some(s) = &stats {
            s.start(read);
        }
        let started = Instant::now();
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        let nc = self.nodes.get_mut(node).expect("ready");
        let mut r = backends::relay(nc, &mut self.client, payload, expect, self.read_timeout, patch).await;
        if let Err(RelayError { forwarded: false, backend_lost: true, error: Error::BackendIo { .. } }) = &r {
            if self.shared.faults.resend_after_lost_backend() {
                // Injected bug (simulation only): resend a command that may already
                // have been applied, on a new connection.
                self.drop_node(node).await;
                if self.ready(node).await.is_ok() {
                    // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
                    let nc = self.nodes.get_mut(node).expect("ready");
                    r = backends::relay(nc, &mut self.client, payload, expect, self.read_timeout, patch).await;
                }
            }
        }
        if let Some(s) = &stats {
            s.finish(started.elapsed().as_nanos() as u64);
        }
        if let Err(RelayError { error: Error::ClientIo(_), .. }) = &r {
            // The client left while its statement still runs: closing the connection
            // does not stop a statement that is not writing (a long SLEEP, a lock
            // wait), so end it the way the server would for a killed client.
            if let Some(thread) = self.nodes.get(node).map(|n| n.conn.thread_id) {
                kill_backend_query(&self.shared, self.id, node, thread).await;
            }
        }
        r.map(|x| x.summary)
    }

    /// Runs a statement that may read the variable Sluice's GTID tracking changed with
    /// the client's own value of it: tracking off just before it and back on just
    /// after, in one round trip. Whatever GTID the statement itself made is not
    /// reported, so the session's position becomes unknown if it may have written.
    async fn relay_untracked(&mut self, node: &str, payload: &[u8], expect: Expect, read: bool, patch: &mut (dyn FnMut(&mut [u8], &Summary) + Send)) -> Result<Summary, RelayError> {
        let stats = self.node_stats.get(node).cloned();
        if let Some(s) = &stats {
            s.start(read);
        }
        let started = Instant::now();
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        let nc = self.nodes.get_mut(node).expect("ready");
        let (before, after) = (consistency::untracking_sql(nc.mysql), consistency::tracking_sql(nc.mysql));
        let r = backends::relay_between(nc, &mut self.client, before, payload, after, expect, self.read_timeout, patch).await;
        if let Some(s) = &stats {
            s.finish(started.elapsed().as_nanos() as u64);
        }
        match r {
            Ok((relayed, tracking)) => {
                // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
                let nc = self.nodes.get_mut(node).expect("ready");
                nc.tracking = tracking;
                if !read {
                    let current = self.shared.primary();
                    self.state.written.record_unknown(node, current.as_deref());
                    self.shared.positions.written_unknown(node, current.as_deref());
                }
                Ok(relayed.summary)
            }
            Err(e) => {
                if let Error::ClientIo(_) = &e.error {
                    if let Some(thread) = self.nodes.get(node).map(|n| n.conn.thread_id) {
                        kill_backend_query(&self.shared, self.id, node, thread).await;
                    }
                }
                Err(e)
            }
        }
    }

    /// Runs Sluice's GTID wait for `g` and then the read on replica `node`, in one round
    /// trip; the read's answer reaches the client only if the replica got there in time.
    async fn relay_after_wait(&mut self, node: &str, payload: &[u8], expect: Expect, read: bool, g: &GtidSet, patch: &mut (dyn FnMut(&mut [u8], &Summary) + Send)) -> Result<Summary, RelayError> {
        let stats = self.node_stats.get(node).cloned();
        if let Some(s) = &stats {
            s.start(read);
        }
        let started = Instant::now();
        let timeout_ms = self.state.consistency_timeout_ms;
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        let nc = self.nodes.get_mut(node).expect("ready");
        let sql = consistency::wait_sql(nc.mysql, g, timeout_ms);
        // The wait's answer is due within its timeout; a margin of a monitor timeout (at
        // least 1 s) covers the network, and more means a broken connection.
        let margin = Duration::from_millis(self.shared.cfg.backend.monitor_timeout_ms.max(1000));
        let wait_timeout = Some(Duration::from_millis(timeout_ms) + margin).map(|w| self.read_timeout.map_or(w, |r| w.min(r)));
        let r = backends::relay_after_wait(nc, &mut self.client, &sql, payload, expect, self.read_timeout, wait_timeout, patch).await;
        if let Some(s) = &stats {
            s.finish(started.elapsed().as_nanos() as u64);
        }
        match r {
            Ok(Waited::Reached(x)) => {
                self.shared.positions.reached(node, g);
                Ok(x.summary)
            }
            Ok(Waited::NotReached(detail)) => {
                tracing::debug!(conn = self.id, node, %detail, gtids = %g, "replica did not reach the session's position in time");
                Err(RelayError { error: Error::ConsistencyNotReached { node: node.to_string(), detail }, forwarded: false, backend_lost: false })
            }
            Err(e) => {
                if let Error::ClientIo(_) = &e.error {
                    if let Some(thread) = self.nodes.get(node).map(|n| n.conn.thread_id) {
                        kill_backend_query(&self.shared, self.id, node, thread).await;
                    }
                }
                Err(e)
            }
        }
    }

    /// A read's replica did not reach its position in time: the primary serves it, or
    /// (`consistency_fallback = error`) the client gets error 1969. `None`: answered.
    async fn consistency_fallback(&mut self, failed: &Routed, error: &Error) -> Result<Option<Routed>, Error> {
        if self.state.consistency_fallback == Fallback::Error {
            let msg = format!("Sluice: consistency timeout: {error} within {} ms (sluice_consistency_timeout_ms)", self.state.consistency_timeout_ms);
            self.send_err(1, consistency::ER_SLUICE_CONSISTENCY_TIMEOUT, consistency::CONSISTENCY_TIMEOUT_STATE, &msg).await;
            return Ok(None);
        }
        tracing::debug!(conn = self.id, node = %failed.node, %error, "read goes to the primary");
        // A read: the session's state on an old primary does not matter to it.
        let node = self.primary.clone().ok_or(Error::NoBackend("primary"))?;
        Ok(Some(Routed { node, reason: Reason::ConsistencyFallback, primary: true, wait: None }))
    }

}

/// The login OK of a pooled connection, as the client's own login would have got it:
/// the schema its session-state data reports is the client's database (the connection
/// may have logged in with another).
fn login_ok_for(login_ok: &[u8], caps: u32, database: Option<&[u8]>) -> Vec<u8> {
    use crate::protocol::packets::{track, Ok as OkPacket, StateChanges};
    let Some(ok) = OkPacket::parse(login_ok, caps) else { return login_ok.to_vec() };
    if caps & cap::SESSION_TRACK == 0 {
        return login_ok.to_vec();
    }
    let mut block = Vec::new();
    for (t, data) in StateChanges::new(ok.session_state) {
        if t == track::SCHEMA {
            continue;
        }
        block.push(t);
        crate::protocol::packet::put_lenenc_bytes(&mut block, data);
    }
    if let Some(db) = database {
        let mut data = Vec::new();
        crate::protocol::packet::put_lenenc_bytes(&mut data, db);
        block.push(track::SCHEMA);
        crate::protocol::packet::put_lenenc_bytes(&mut block, &data);
    }
    let status = if block.is_empty() { ok.status & !status::SESSION_STATE_CHANGED } else { ok.status | status::SESSION_STATE_CHANGED };
    let mut out = bytes::BytesMut::new();
    OkPacket { session_state: &block, status, ..ok }.write(&mut out, 0x00, caps);
    out.to_vec()
}

/// Whether a statement may read `LAST_INSERT_ID()` (so its connection must hold the
/// session's value): one classified so, or a write or session-bound statement whose
/// text names it.
fn wants_last_insert_id(c: &Classified, sql: &[u8]) -> bool {
    match c.kind {
        Kind::SessionBound(crate::route::class::Bound::LastInsertId) => true,
        Kind::Read | Kind::SessionSet | Kind::Use | Kind::Begin { .. } | Kind::TransactionControl | Kind::SluiceSet | Kind::SluiceShow => false,
        _ => contains_ci(sql, b"insert_id") || contains_ci(sql, b"identity"),
    }
}

/// What `ROW_COUNT()` returns after a statement answered with `summary`: the affected
/// rows of an OK, -1 after a result set or an error.
fn row_count_after(summary: &Summary) -> i64 {
    match (summary.error, summary.affected_rows) {
        (None, Some(n)) => n as i64,
        _ => -1,
    }
}

/// The statement may read `ROW_COUNT()` (a read that does is classified
/// [`Kind::Diagnostics`]; writes are scanned).
fn reads_row_count(c: &Classified, sql: &[u8]) -> bool {
    match c.kind {
        Kind::Read | Kind::Use | Kind::Begin { .. } | Kind::TransactionControl | Kind::SluiceSet | Kind::SluiceShow => false,
        _ => contains_ci(sql, b"row_count"),
    }
}

/// `sql` calls `LAST_INSERT_ID(expr)` (with an argument: it sets the value).
fn sets_last_insert_id(sql: &[u8]) -> bool {
    let needle = b"last_insert_id";
    let mut i = 0;
    while i + needle.len() <= sql.len() {
        if sql[i..i + needle.len()].eq_ignore_ascii_case(needle) {
            let rest = sql[i + needle.len()..].iter().skip_while(|c| c.is_ascii_whitespace());
            let mut rest = rest.copied();
            if rest.next() == Some(b'(') && rest.find(|c| !c.is_ascii_whitespace()).is_some_and(|c| c != b')') {
                return true;
            }
            i += needle.len();
        } else {
            i += 1;
        }
    }
    false
}

/// `haystack` contains `needle` (lower case ASCII), ignoring ASCII case.
fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len() && haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Runs `sql` (a `KILL`) on `node` as Sluice's own account, over a connection of its
/// own; the whole exchange is bounded by `backend.connect_timeout_ms`.
pub(crate) async fn run_as_service<N: Net>(shared: &Shared<N>, node: &str, sql: &str) -> Result<(), Error> {
    let login = shared.service_login();
    let limit = login.timeout;
    let exchange = async {
        let mut c = connect(&shared.net, node, &login, &shared.rng).await?;
        let r = c.query(sql).await;
        c.quit().await;
        r.map(|_| ())
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Error::BackendTimeout { addr: node.to_string(), what: "running a KILL" }),
    }
}

/// `KILL QUERY` on `node` for backend thread `thread` (a client left mid-statement).
async fn kill_backend_query<N: Net>(shared: &Shared<N>, conn: u32, node: &str, thread: u32) {
    match run_as_service(shared, node, &format!("KILL QUERY {thread}")).await {
        Ok(()) => tracing::debug!(conn, node, thread, "client left mid-statement: backend statement killed"),
        Err(Error::BackendErr { code, .. }) if code == err::ER_NO_SUCH_THREAD => {}
        Err(e) => tracing::info!(conn, node, thread, error = %e, "client left mid-statement; could not kill the backend statement"),
    }
}

impl<N: Net> Session<N> {

    /// Runs a routed statement: connects/syncs the node, relays, and — for reads that
    /// failed before any byte reached the client — tries another node.
    async fn run_routed(&mut self, mut routed: Routed, payload: &[u8], expect: Expect, read: bool, patch: &mut (dyn FnMut(&mut [u8], &Summary) + Send)) -> Result<Option<(Routed, Summary)>, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let retry_ok = read && !routed.primary && attempts < 3 && self.state.txn_node().is_none();
            if self.primary_bound(&routed) && self.held_connection_gone(&routed.node) {
                let e = Error::BackendIo { addr: routed.node.clone(), sent: false, source: std::io::ErrorKind::ConnectionReset.into() };
                match self.on_lost(&routed, payload, read, Sent::Nothing, e).await? {
                    Some(r) => {
                        routed = r;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            match self.ready(&routed.node).await {
                Ok(()) => self.leave_buffer(),
                Err(e) if retry_ok => {
                    tracing::info!(conn = self.id, node = %routed.node, error = %e, "replica unusable for this session; read goes elsewhere");
                    self.avoid_node(&routed.node);
                    routed = self.resolve(Target::Readers, routed.reason, false)?;
                    continue;
                }
                Err(e @ Error::PoolExhausted { .. }) => {
                    tracing::info!(conn = self.id, node = %routed.node, error = %e, "no pooled connection for a statement");
                    self.send_err(1, err::ER_CON_COUNT_ERROR, "08004", &e.to_string()).await;
                    return Ok(None);
                }
                Err(e) if self.primary_bound(&routed) && lost::is_unreachable(&e) => match self.on_lost(&routed, payload, read, Sent::Nothing, e).await? {
                    Some(r) => {
                        routed = r;
                        continue;
                    }
                    None => return Ok(None),
                },
                Err(e) => {
                    tracing::warn!(conn = self.id, node = %routed.node, error = %e, "cannot reach the node for a statement");
                    let msg = format!("Unable to connect to foreign data source: Sluice cannot reach {}: {e}", routed.node);
                    self.send_err(1, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", &msg).await;
                    return Ok(None);
                }
            }
            if self.primary_bound(&routed) && self.deposed(&routed.node) {
                // Waiting for the connection took long enough for the primary to be
                // replaced: nothing was sent; the statement follows the new primary
                // (or, in a transaction, the transaction is reported lost).
                let source = std::io::Error::other("another node became the primary before the statement was sent");
                let e = Error::BackendIo { addr: routed.node.clone(), sent: false, source };
                match self.on_lost(&routed, payload, read, Sent::Nothing, e).await? {
                    Some(r) => {
                        routed = r;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            self.reason = routed.reason;
            match self.relay_on(&routed.node, payload, expect, read, routed.wait.as_ref(), patch).await {
                Ok(summary) => return Ok(Some((routed, summary))),
                Err(RelayError { error: error @ Error::ConsistencyNotReached { .. }, .. }) => match self.consistency_fallback(&routed, &error).await? {
                    Some(r) => routed = r,
                    None => return Ok(None),
                },
                Err(RelayError { error, forwarded: false, .. }) if retry_ok && !matches!(error, Error::ClientIo(_)) => {
                    routed = self.read_elsewhere(routed, &error).await?;
                }
                Err(RelayError { error, forwarded: false, .. }) if self.primary_bound(&routed) && lost::is_unreachable(&error) => {
                    let sent = if matches!(error, Error::BackendIo { sent: false, .. }) { Sent::Nothing } else { Sent::Statement };
                    match self.on_lost(&routed, payload, read, sent, error).await? {
                        Some(r) => routed = r,
                        None => return Ok(None),
                    }
                }
                Err(e) => return Err(e.error),
            }
        }
    }

    /// Whether `node`, which a primary-bound statement is about to use, is no longer the
    /// primary by the monitor's latest topology (another node is, and `node` is not a
    /// replica serving a read-only transaction). An atomic load unless the topology
    /// changed since the session last looked.
    fn deposed(&self, node: &str) -> bool {
        if self.shared.topology.version() == self.topo_version {
            return false;
        }
        self.shared.topology.with(|t| {
            t.as_ref().is_some_and(|t| {
                t.primary.as_deref().is_some_and(|p| p != node) && t.nodes.get(node).is_none_or(|n| n.role != crate::backend::topology::Role::Replica)
            })
        })
    }

    /// A read on `failed` failed before any of its answer reached the client: close
    /// that connection, skip the node for a while, and choose another reader.
    async fn read_elsewhere(&mut self, failed: Routed, error: &Error) -> Result<Routed, Error> {
        tracing::info!(conn = self.id, node = %failed.node, %error, "read failed before any reply; sent elsewhere");
        self.drop_node(&failed.node).await;
        self.avoid_node(&failed.node);
        self.resolve(Target::Readers, failed.reason, false)
    }

    fn avoid_node(&mut self, node: &str) {
        let for_ms = self.shared.cfg.backend.monitor_interval_ms.max(100);
        self.avoid.insert(node.to_string(), Instant::now() + Duration::from_millis(for_ms));
    }

    /// Sends a command to the primary and relays the response.
    async fn on_primary(&mut self, payload: &[u8], expect: Expect) -> Result<Option<Summary>, Error> {
        let routed = loop {
            self.refresh_topology();
            match self.resolve(Target::Primary, Reason::Unknown, false) {
                Ok(r) => break r,
                Err(e) => {
                    if !self.no_primary_yet(e, payload.len()).await? {
                        return Ok(None);
                    }
                }
            }
        };
        let r = self.run_routed(routed, payload, expect, false, &mut |_, _| {}).await?;
        Ok(r.map(|(routed, summary)| {
            self.after(&routed.node, None, None, &[], 1, &summary);
            summary
        }))
    }

    /// A statement found no primary to run on: the client gets ER 1429 and the session
    /// goes on; or the primary moved away from the session's state, which ends it.
    async fn no_primary(&mut self, e: Error) -> Result<(), Error> {
        if let Error::PrimaryMoved { .. } = e {
            return Err(e);
        }
        let msg = format!("Unable to connect to foreign data source: Sluice has no primary to send this to ({e})");
        self.send_err(1, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", &msg).await;
        Ok(())
    }

    fn after(&mut self, node: &str, kind: Option<Kind>, payload: Option<&[u8]>, effects: &[Effect], statements: u32, summary: &Summary) {
        self.state.after_statement_of(node, kind, payload, effects, statements, summary.error.is_none(), summary.status, &summary.session_state);
        // The diagnostics area (what `SHOW WARNINGS` reads) is changed by statements
        // other than diagnostics reads; the connection is kept while it holds anything,
        // so a connection goes back to its pool with an empty one.
        let left = summary.warnings > 0 || summary.error.is_some();
        match kind {
            Some(Kind::Diagnostics) if summary.error.is_none() => {}
            Some(_) => self.state.diagnostics_pending = left,
            None => self.state.diagnostics_pending |= left,
        }
        if kind.is_some() {
            // `ROW_COUNT()` is now this statement's, on its connection only.
            for (n, nc) in self.nodes.iter_mut() {
                nc.row_count_own = n == node;
            }
        }
        // The connection keeps its own diagnostics after the session's move elsewhere
        // (the next statement on another node): it goes back to its pool marked so.
        if let Some(nc) = self.nodes.get_mut(node) {
            match kind {
                Some(Kind::Diagnostics) if summary.error.is_none() => {}
                Some(_) => nc.diagnostics = left,
                None => nc.diagnostics |= left,
            }
        }
        if kind.is_some() {
            // Commands that are not statements (prepare, reset, ping) leave it.
            self.state.row_count = row_count_after(summary);
        }
        if summary.error.is_none() && summary.affected_rows.is_none() && summary.result_sets > 0 {
            self.state.found_rows = summary.rows;
            // With `LIMIT offset, n` the server's FOUND_ROWS() counts the skipped rows
            // too (how many, the rows sent do not tell): the connection is kept for the
            // next statement, as after SQL_CALC_FOUND_ROWS.
            if payload.is_some_and(|p| p.first() == Some(&crate::protocol::constants::com::QUERY) && limit_has_offset(&p[1..])) {
                self.state.found_rows_pending = true;
            }
        }
        if summary.insert_id != 0 {
            self.state.last_insert_id = summary.insert_id;
            if let Some(nc) = self.nodes.get_mut(node) {
                nc.last_insert_id = Some(summary.insert_id);
            }
        }
        self.record_gtids(node, kind, statements, summary);
        if let (Some(Kind::SessionSet), Some(p), true) = (kind, payload, summary.error.is_none()) {
            if let Some(wants) = state::client_gtid_tracking(&p[1..]) {
                // The client changed what its connections track: Sluice re-adds its own
                // GTID tracking before the next statement, and leaves GTIDs in OK packets
                // if the client asked for them.
                self.state.client_tracks_gtids = wants;
                for nc in self.nodes.values_mut() {
                    nc.tracking = false;
                }
            }
        }
        if let Some(nc) = self.nodes.get_mut(node) {
            // The connection was in step before the statement, and ran it: it is in
            // step with whatever the statement changed.
            nc.mark_synced(&self.state);
        }
    }

    /// COM_QUERY.
    async fn query(&mut self, payload: &[u8]) -> Result<(), Error> {
        let started = self.cmd_started;
        let sql = &payload[1..];
        let mut c = self.shared.classifier.classify(sql);
        self.statement_started(&c, started);
        match c.kind {
            Kind::SluiceSet => return self.sluice_set(sql).await,
            Kind::SluiceShow => return self.sluice_show(sql).await,
            _ => {}
        }
        let Some(guard) = self.apply_rules(&mut c, sql, started).await? else { return Ok(()) };
        let r = self.query_run(payload, c, started).await;
        // On every path: a kill the rule's timer started is waited for before the
        // session's connections can go back to the pool (after the command).
        if !guard.idle() {
            guard.finish().await;
        }
        self.rule_cap = None;
        r
    }

    /// COM_QUERY after classification and query rules.
    async fn query_run(&mut self, payload: &[u8], c: Arc<Classified>, started: Instant) -> Result<(), Error> {
        let sql = &payload[1..];
        if c.kind == Kind::Diagnostics {
            if let Some(name) = local::row_count_query(sql) {
                // The connection that ran the previous statement is gone back to the
                // pool: the session's own ROW_COUNT() answers.
                // (Kept while its diagnostics wait there: that connection answers.)
                let held = self.state.previous.as_ref().and_then(|n| self.nodes.get(n)).is_some_and(|nc| nc.row_count_own || self.state.diagnostics_pending);
                if !held {
                    return self.answer_row_count(&name).await;
                }
            }
        }
        let routed = loop {
            match self.route_to_run(&c).await {
                Ok(r) => break r,
                Err(e) => {
                    if !self.no_primary_yet(e, payload.len()).await? {
                        return Ok(());
                    }
                }
            }
        };
        let read = c.is_read();
        self.want_lid = wants_last_insert_id(&c, sql);
        self.want_found_rows = self.found_rows_to_carry(&c, sql);
        self.want_row_count = reads_row_count(&c, sql);
        let r = self.run_routed(routed, payload, Expect::Query, read, &mut |_, _| {}).await;
        self.want_lid = false;
        self.want_found_rows = None;
        self.want_row_count = false;
        let r = r?;
        self.statement_done(&c, started, r.as_ref().map(|(routed, summary)| (routed.node.as_str(), summary)));
        if let Some((routed, summary)) = r {
            self.after(&routed.node, Some(c.kind), Some(payload), &c.effects, c.statements, &summary);
            self.pins_from_text(&c, sql, &summary);
        }
        Ok(())
    }

    /// State a statement's text shows it left on its connection where no OK packet
    /// tells Sluice its value: `GET DIAGNOSTICS @v = …` sets user variables;
    /// `SELECT LAST_INSERT_ID(expr)` sets the connection's last insert id. The session
    /// keeps the connection.
    fn pins_from_text(&mut self, c: &Classified, sql: &[u8], summary: &Summary) {
        if summary.error.is_some() {
            return;
        }
        if c.kind == Kind::Diagnostics && contains_ci(sql, b"diagnostics") && sql.contains(&b'@') {
            self.state.pins.insert(Pin::UserVariable);
        }
        if c.kind == Kind::SessionBound(crate::route::class::Bound::LastInsertId) && summary.affected_rows.is_none() && sets_last_insert_id(sql) {
            self.state.pins.insert(Pin::LastInsertId);
        }
    }

    /// A statement reads `FOUND_ROWS()` of the session's previous `SELECT`, whose
    /// connection went back to the pool: the value the connection it runs on must get.
    fn found_rows_to_carry(&self, c: &Classified, sql: &[u8]) -> Option<u64> {
        if c.kind != Kind::Diagnostics || self.state.found_rows_pending || !contains_ci(sql, b"found_rows") {
            return None;
        }
        let held = self.state.previous.as_ref().is_some_and(|n| self.nodes.contains_key(n));
        (!held).then_some(self.state.found_rows)
    }

    /// `SELECT ROW_COUNT()` answered from the session's last statement.
    async fn answer_row_count(&mut self, name: &[u8]) -> Result<(), Error> {
        let status = self.state.status_for_local_answer(self.primary.as_deref());
        let out = local::int_result(name, self.state.row_count, self.login.caps, self.login.ext_caps, status);
        self.client.write_raw(&out).await.map_err(Error::ClientIo)?;
        self.client.flush_raw().await.map_err(Error::ClientIo)?;
        self.state.row_count = -1;
        self.state.diagnostics_pending = false;
        Ok(())
    }

    /// COM_STMT_PREPARE: prepared on the primary (always a possible target), known to
    /// the client by an id of Sluice's; executes prepare it lazily on the connection
    /// they run on.
    async fn prepare(&mut self, payload: &[u8]) -> Result<(), Error> {
        let c = self.shared.classifier.classify(&payload[1..]);
        let routed = loop {
            self.refresh_topology();
            match self.resolve(Target::Primary, Reason::Unknown, false) {
                Ok(r) => break r,
                Err(e) => {
                    if !self.no_primary_yet(e, payload.len()).await? {
                        return Ok(());
                    }
                }
            }
        };
        let id = self.stmts.next_id();
        let mut patch = |first: &mut [u8], summary: &Summary| {
            // PREPARE_OK: header (4), status 0x00, statement id (4).
            if summary.prepared.is_some() && first.len() >= 9 {
                first[5..9].copy_from_slice(&id.to_le_bytes());
            }
        };
        let Some((routed, summary)) = self.run_routed(routed, payload, Expect::Prepare, false, &mut patch).await? else { return Ok(()) };
        let diagnostics = c.kind == Kind::Diagnostics;
        if let Some((server_id, _, params)) = summary.prepared {
            let key = self.stmt_key(payload);
            self.stmts.insert_keyed(id, &routed.node, payload, c, params, self.state.schema.clone(), key.clone());
            self.cache_statement(&routed.node, &key, server_id);
        }
        // Preparing `SHOW WARNINGS` (and the like) leaves the diagnostics it will read
        // where they are: on the node of the statement before, which the execute goes to.
        let previous = self.state.previous.clone();
        self.after(&routed.node, None, None, &[], 1, &summary);
        if diagnostics && summary.error.is_none() {
            self.state.previous = previous;
        }
        Ok(())
    }

    /// The key of a prepared statement in a connection's cache: its SQL and the state
    /// it is prepared under (the schema resolves its table names, the replayed `SET`s
    /// — `sql_mode`, character set — how it is parsed).
    fn stmt_key(&self, prepare: &[u8]) -> Vec<u8> {
        let schema = self.state.schema.as_deref().unwrap_or_default();
        let mut k = Vec::with_capacity(prepare.len() + schema.len() + 12);
        k.extend_from_slice(&(schema.len() as u32).to_le_bytes());
        k.extend_from_slice(schema);
        k.extend_from_slice(&self.state.replay_fingerprint(self.state.replay.len()).to_le_bytes());
        k.extend_from_slice(prepare);
        k
    }

    /// Records server statement `server_id` in `node`'s connection cache; statements it
    /// evicts are closed on the server (queued: they go with the next command).
    fn cache_statement(&mut self, node: &str, key: &[u8], server_id: u32) {
        let limit = self.shared.pools.stmt_cache_size(node);
        if let Some(nc) = self.nodes.get_mut(node) {
            for old in nc.stmts.insert(key, server_id, limit) {
                let mut close = vec![com::STMT_CLOSE];
                close.extend_from_slice(&old.to_le_bytes());
                nc.conn.conn.queue(0, &close);
            }
        }
    }

    /// Makes sure statement `id` is prepared on the session's connection to `node`
    /// (taking one from the pool if needed); returns the server's id there.
    async fn prepared_on(&mut self, id: u32, node: &str) -> Result<u32, Error> {
        // cannot fail: callers pass an id resolved in `self.stmts`.
        let stmt = self.stmts.get(id).expect("known statement");
        let (prepare, key, schema) = (stmt.prepare.clone(), stmt.key.clone(), stmt.schema.clone());
        self.ready(node).await?;
        let timeout = self.read_timeout;
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        let nc = self.nodes.get_mut(node).expect("ready");
        if let Some(c) = nc.stmts.get(&key) {
            return Ok(c.id);
        }
        // Prepared in the schema of the client's prepare (names resolve there), then
        // back to the session's.
        let switch = schema.as_ref().filter(|s| nc.schema.as_ref() != Some(*s)).cloned();
        let exchange = async {
            if let Some(db) = &switch {
                let mut p = vec![com::INIT_DB];
                p.extend_from_slice(db);
                backends::exchange(nc, &p, Expect::OnePacket, timeout).await?;
            }
            let summary = backends::exchange(nc, &prepare, Expect::Prepare, timeout).await?;
            if switch.is_some() {
                if let Some(back) = nc.schema.clone() {
                    let mut p = vec![com::INIT_DB];
                    p.extend_from_slice(&back);
                    let s = backends::exchange(nc, &p, Expect::OnePacket, timeout).await?;
                    if s.error.is_some() {
                        return Err(Error::backend_protocol(node, "could not return to the session's schema after a prepare"));
                    }
                }
            }
            Ok(summary)
        };
        let summary = match exchange.await {
            Ok(s) => s,
            Err(e) => {
                self.drop_node(node).await;
                return Err(e);
            }
        };
        match summary.prepared {
            Some((nid, _, _)) => {
                self.cache_statement(node, &key, nid);
                Ok(nid)
            }
            None => {
                let (state, message) = summary.error_detail.unwrap_or_else(|| ("HY000".into(), "preparing the statement failed".into()));
                Err(Error::BackendErr { addr: node.to_string(), code: summary.error.unwrap_or(0), state, message })
            }
        }
    }

    /// COM_STMT_EXECUTE: routed by the statement's SQL (classified at prepare time).
    async fn execute(&mut self, payload: &[u8]) -> Result<(), Error> {
        let started = self.cmd_started;
        let Some(id) = u32_after_command(payload).and_then(|i| self.stmts.resolve(i)) else {
            return self.unknown_statement(payload, "mysqld_stmt_execute").await;
        };
        // cannot fail: the id was resolved in `self.stmts` just before.
        let stmt = self.stmts.get(id).expect("resolved");
        let mut class = stmt.class.clone();
        self.statement_started(&class, started);
        // The text is only matched when there are rules: no copy per execute otherwise.
        let sql = if self.policy.rules.is_empty() { Vec::new() } else { stmt.prepare.clone() };
        let Some(guard) = self.apply_rules(&mut class, sql.get(1..).unwrap_or_default(), started).await? else { return Ok(()) };
        let r = self.execute_run(payload, id, class, started).await;
        self.want_row_count = false;
        // On every path: a kill the rule's timer started is waited for before the
        // session's connections can go back to the pool (after the command).
        if !guard.idle() {
            guard.finish().await;
        }
        self.rule_cap = None;
        r
    }

    /// COM_STMT_EXECUTE of a known statement, after query rules.
    async fn execute_run(&mut self, payload: &[u8], id: u32, class: Arc<Classified>, started: Instant) -> Result<(), Error> {
        // cannot fail: the id was resolved in `self.stmts` by the caller.
        let stmt = self.stmts.get(id).expect("resolved");
        let long_data = stmt.long_data_on.clone();
        self.want_lid = wants_last_insert_id(&class, &stmt.prepare[1..]);
        self.want_row_count = reads_row_count(&class, &stmt.prepare[1..]);
        let found_rows = self.found_rows_to_carry(&class, &stmt.prepare[1..]);
        let limit_offset = limit_has_offset(&stmt.prepare[1..]);
        let mut routed = match long_data {
            Some(node) => Routed { primary: self.primary.as_deref() == Some(&node), node, reason: Reason::SessionBound(crate::route::class::Bound::Other), wait: None },
            None => loop {
                match self.route_to_run(&class).await {
                    Ok(r) => break r,
                    Err(e) => {
                        if !self.no_primary_yet(e, payload.len()).await? {
                            self.want_lid = false;
                            return Ok(());
                        }
                    }
                }
            },
        };
        let expect = Expect::for_execute(payload);
        let mut attempts = 0;
        let summary = loop {
            attempts += 1;
            // A read on a replica that cannot be used goes elsewhere (a read is safe to
            // send again as long as nothing of its answer reached the client).
            let retry_ok = !routed.primary && class.is_read() && attempts < 3 && self.state.txn_node().is_none();
            if self.primary_bound(&routed) && self.held_connection_gone(&routed.node) {
                let e = Error::BackendIo { addr: routed.node.clone(), sent: false, source: std::io::ErrorKind::ConnectionReset.into() };
                match self.on_lost(&routed, payload, class.is_read(), Sent::Nothing, e).await? {
                    Some(r) => {
                        routed = r;
                        continue;
                    }
                    None => {
                        self.want_lid = false;
                        return Ok(());
                    }
                }
            }
            let nid = match self.prepared_on(id, &routed.node).await {
                Ok(n) => {
                    self.leave_buffer();
                    n
                }
                Err(e) if retry_ok => {
                    tracing::info!(conn = self.id, node = %routed.node, error = %e, "cannot prepare on the replica; execute goes elsewhere");
                    self.avoid_node(&routed.node);
                    routed = self.resolve(Target::Readers, routed.reason, false)?;
                    continue;
                }
                Err(Error::BackendErr { code, state, message, .. }) => {
                    // The server refused to prepare it here (a table dropped since): its
                    // answer is the execute's.
                    self.want_lid = false;
                    self.send_err(1, code, &state, &message).await;
                    return Ok(());
                }
                Err(e @ Error::PoolExhausted { .. }) => {
                    self.want_lid = false;
                    self.send_err(1, err::ER_CON_COUNT_ERROR, "08004", &e.to_string()).await;
                    return Ok(());
                }
                Err(e) if self.primary_bound(&routed) && lost::is_unreachable(&e) => match self.on_lost(&routed, payload, class.is_read(), Sent::Nothing, e).await? {
                    Some(r) => {
                        routed = r;
                        continue;
                    }
                    None => {
                        self.want_lid = false;
                        return Ok(());
                    }
                },
                Err(e) if routed.primary => {
                    self.want_lid = false;
                    let msg = format!("Unable to connect to foreign data source: Sluice cannot reach {}: {e}", routed.node);
                    self.send_err(1, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", &msg).await;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if found_rows.is_some() {
                // Set on the connection that runs it (ready() again, with the value).
                self.want_found_rows = found_rows;
                if let Err(e) = self.ready(&routed.node).await {
                    self.want_lid = false;
                    return Err(e);
                }
            }
            // cannot fail: the id was resolved in `self.stmts` just before.
            let key = self.stmts.get(id).expect("resolved").key.clone();
            // cannot fail: the id was resolved in `self.stmts` just before.
            let stmt = self.stmts.get_mut(id).expect("resolved");
            self.execute_shows_tracking = consistency::may_show_tracking(&stmt.prepare[1..]);
            // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
            let nc = self.nodes.get_mut(&routed.node).expect("ready");
            let out = match nc.stmts.get(&key) {
                Some(server) => prepared::execute_for_conn(stmt, server, payload).into_owned(),
                None => prepared::with_id(payload, nid).into_owned(),
            };
            self.reason = routed.reason;
            match self.relay_on(&routed.node, &out, expect, class.is_read(), routed.wait.as_ref(), &mut |_, _| {}).await {
                Ok(s) => break s,
                Err(RelayError { error: error @ Error::ConsistencyNotReached { .. }, .. }) => match self.consistency_fallback(&routed, &error).await? {
                    Some(r) => routed = r,
                    None => {
                        self.want_lid = false;
                        return Ok(());
                    }
                },
                Err(RelayError { error, forwarded: false, .. }) if retry_ok && !matches!(error, Error::ClientIo(_)) => {
                    routed = self.read_elsewhere(routed, &error).await?;
                }
                Err(RelayError { error, forwarded: false, .. }) if self.primary_bound(&routed) && lost::is_unreachable(&error) => {
                    let sent = if matches!(error, Error::BackendIo { sent: false, .. }) { Sent::Nothing } else { Sent::Statement };
                    match self.on_lost(&routed, payload, class.is_read(), sent, error).await? {
                        Some(r) => routed = r,
                        None => {
                            self.want_lid = false;
                            return Ok(());
                        }
                    }
                }
                Err(e) => return Err(e.error),
            }
        };
        self.want_lid = false;
        self.statement_done(&class, started, Some((&routed.node, &summary)));
        if let Some(stmt) = self.stmts.get_mut(id) {
            stmt.last_node = Some(routed.node.clone());
            stmt.long_data_on = None;
            stmt.cursor = expect == Expect::ExecuteCursor && summary.error.is_none() && summary.status.is_some_and(|st| st & status::CURSOR_EXISTS != 0 && st & status::LAST_ROW_SENT == 0);
        }
        self.after(&routed.node, Some(class.kind), None, &class.effects, class.statements, &summary);
        if limit_offset && summary.error.is_none() && summary.affected_rows.is_none() && summary.result_sets > 0 {
            // As for a text SELECT with LIMIT offset (see `after`).
            self.state.found_rows_pending = true;
        }
        if matches!(class.kind, Kind::Diagnostics | Kind::SessionBound(crate::route::class::Bound::LastInsertId)) {
            let sql = self.stmts.get(id).map(|s| s.prepare[1..].to_vec()).unwrap_or_default();
            self.pins_from_text(&class, &sql, &summary);
        }
        Ok(())
    }

    /// A statement command naming an id the client never prepared (or closed): the
    /// server's answer, ER_UNKNOWN_STMT_HANDLER (server statement ids are the pool's,
    /// not the client's, so the server cannot be asked with the client's id). Raised on
    /// the primary, so the session's diagnostics area holds the error as it would
    /// directly (`@@warning_count` 1, `SHOW ERRORS`).
    async fn unknown_statement(&mut self, payload: &[u8], command: &str) -> Result<(), Error> {
        let id = u32_after_command(payload).unwrap_or(0);
        let msg = format!("Unknown prepared statement handler ({id}) given to {command}");
        self.answer_via_backend(Some((err::ER_UNKNOWN_STMT_HANDLER, "HY000", &msg))).await
    }

    /// COM_STMT_FETCH / COM_STMT_RESET: where the statement last ran (a cursor keeps
    /// that connection with the session).
    async fn on_statement_node(&mut self, payload: &[u8], expect: Expect) -> Result<(), Error> {
        let target = u32_after_command(payload).and_then(|i| self.stmts.resolve(i)).map(|id| {
            // cannot fail: the id was resolved in `self.stmts` just before.
            let s = self.stmts.get(id).expect("resolved");
            (id, s.last_node.clone().or_else(|| self.primary.clone()))
        });
        let Some((id, node)) = target else {
            let name = if payload[0] == com::STMT_RESET { "mysqld_stmt_reset" } else { "mysqld_stmt_fetch" };
            return self.unknown_statement(payload, name).await;
        };
        let Some(node) = node else {
            return self.no_primary(Error::NoBackend("primary")).await;
        };
        if payload[0] == com::STMT_FETCH && !self.stmts.get(id).is_some_and(|s| s.cursor) {
            // The server would name its own statement id; Sluice knows no cursor is open.
            let msg = format!("The statement ({id}) has no open cursor");
            return self.answer_via_backend(Some((err::ER_STMT_HAS_NO_OPEN_CURSOR, "HY000", &msg))).await;
        }
        let nid = match self.prepared_on(id, &node).await {
            Ok(n) => n,
            Err(Error::BackendErr { code, state, message, .. }) => {
                self.send_err(1, code, &state, &message).await;
                return Ok(());
            }
            Err(e) => {
                let msg = format!("Unable to connect to foreign data source: Sluice cannot reach {node}: {e}");
                self.send_err(1, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", &msg).await;
                return Ok(());
            }
        };
        let out = prepared::with_id(payload, nid).into_owned();
        self.reason = Reason::SessionBound(crate::route::class::Bound::Other);
        let summary = self.relay_on(&node, &out, expect, false, None, &mut |_, _| {}).await.map_err(|e| e.error)?;
        if let Some(s) = self.stmts.get_mut(id) {
            if payload[0] == com::STMT_RESET {
                s.long_data_on = None;
                s.cursor = false;
            } else if summary.error.is_some() || summary.status.is_some_and(|st| st & status::LAST_ROW_SENT != 0 || st & status::CURSOR_EXISTS == 0) {
                s.cursor = false;
            }
        }
        if payload[0] == com::STMT_RESET {
            self.after(&node, None, None, &[], 1, &summary);
        }
        Ok(())
    }

    /// COM_STMT_SEND_LONG_DATA (no response): to the primary; the statement's next
    /// execute then runs there too, on the same connection.
    async fn send_long_data(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.refresh_topology();
        let Some(primary) = self.primary.clone() else { return Ok(()) };
        let id = u32_after_command(payload).and_then(|i| self.stmts.resolve(i));
        let node = id.and_then(|i| self.stmts.get(i)).and_then(|s| s.long_data_on.clone()).unwrap_or(primary);
        let out = match id {
            Some(i) => {
                let Ok(nid) = self.prepared_on(i, &node).await else { return Ok(()) };
                // cannot fail: the id was resolved in `self.stmts` just before.
                self.stmts.get_mut(i).expect("known").long_data_on = Some(node.clone());
                prepared::with_id(payload, nid).into_owned()
            }
            None => {
                if self.ready(&node).await.is_err() {
                    return Ok(());
                }
                payload.to_vec()
            }
        };
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        let nc = self.nodes.get_mut(&node).expect("ready");
        nc.conn.conn.send(0, &out).await.map(|_| ()).map_err(|source| Error::BackendIo { addr: node, sent: true, source })
    }

    /// COM_STMT_CLOSE (no response): the client's statement is forgotten; the server
    /// statement stays in its connection's cache for the next prepare of the same SQL.
    /// One left with long data or an open cursor is reset first (COM_STMT_RESET, whose
    /// answer is read here).
    async fn close_statement(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Some(stmt) = u32_after_command(payload).and_then(|i| self.stmts.resolve(i)).and_then(|i| self.stmts.remove(i)) else {
            return Ok(());
        };
        let dirty_on = stmt.long_data_on.clone().or_else(|| stmt.cursor.then(|| stmt.last_node.clone()).flatten());
        if let Some(node) = dirty_on {
            let key = stmt.key.clone();
            let timeout = self.read_timeout;
            if let Some(nc) = self.nodes.get_mut(&node) {
                if let Some(nid) = nc.stmts.get(&key).map(|c| c.id) {
                    let mut reset = vec![com::STMT_RESET];
                    reset.extend_from_slice(&nid.to_le_bytes());
                    if backends::exchange(nc, &reset, Expect::OnePacket, timeout).await.is_err() {
                        self.drop_node(&node).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// COM_INIT_DB: on the primary; other nodes follow before their next statement.
    async fn init_db(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Some(summary) = self.on_primary(payload, Expect::OnePacket).await? else { return Ok(()) };
        if summary.error.is_none() {
            self.state.schema = Some(payload[1..].to_vec());
            if let Some(p) = self.primary.clone() {
                if let Some(nc) = self.nodes.get_mut(&p) {
                    nc.schema = self.state.schema.clone();
                }
            }
        }
        Ok(())
    }

    /// COM_SET_OPTION (multi-statements on/off): on the primary; other nodes follow.
    async fn set_option(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Some(summary) = self.on_primary(payload, Expect::OnePacket).await? else { return Ok(()) };
        if summary.error.is_none() {
            if let Some(v) = payload.get(1..3) {
                self.state.set_option = Some(u16::from_le_bytes([v[0], v[1]]));
                if let Some(p) = self.primary.clone() {
                    if let Some(nc) = self.nodes.get_mut(&p) {
                        nc.set_option = self.state.set_option;
                    }
                }
            }
        }
        Ok(())
    }

    /// Closes every node connection but `keep` (after the session was reset there).
    async fn drop_other_nodes(&mut self, keep: &str) {
        let others: Vec<String> = self.nodes.keys().filter(|n| n.as_str() != keep).cloned().collect();
        for n in others {
            self.drop_node(&n).await;
        }
    }

    /// COM_RESET_CONNECTION: on the primary; other connections are closed (new ones
    /// start clean), the tracked state is reset.
    async fn reset_connection(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Some(summary) = self.on_primary(payload, Expect::OnePacket).await? else { return Ok(()) };
        if summary.error.is_none() {
            let keep = self.primary.clone().unwrap_or_default();
            self.drop_other_nodes(&keep).await;
            self.stmts.clear();
            let schema = self.state.schema.clone();
            self.state.reset(schema);
            if let Some(nc) = self.nodes.get_mut(&keep) {
                nc.after_server_reset(&self.state);
            }
        }
        Ok(())
    }

    /// `KILL [QUERY|CONNECTION] <id>` / COM_PROCESS_KILL. `id` is a Sluice connection id
    /// (from the handshake) or the backend thread id of one of Sluice's sessions (from
    /// `CONNECTION_ID()` or `SHOW PROCESSLIST`); either is mapped to the backend thread
    /// serving that session. Any other id is left to the server (a connection that is not
    /// Sluice's, or no connection at all).
    async fn kill(&mut self, kill: Kill) -> Result<(), Error> {
        let (id, query) = match kill {
            Kill::Query(id) => (id, true),
            Kill::Connection(id) => (id, false),
            Kill::User => {
                // config mode: every session shares Sluice's backend account.
                let msg = "KILL USER is not supported through Sluice (it would reach other clients' sessions)";
                return self.answer_via_backend(Some((1235, "42000", msg))).await;
            }
        };
        let statement = |thread: u64| format!("KILL {}{thread}", if query { "QUERY " } else { "" });
        let passthrough = self.shared.cfg.proxy.auth_mode == AuthMode::Passthrough;
        let by_sluice_id = u32::try_from(id).ok().and_then(|i| self.shared.registry.get(i).map(|e| (i, e)));
        self.refresh_topology();
        // Thread ids reach clients through CONNECTION_ID() and the process list, which
        // the primary answers.
        let home = self.primary.clone().unwrap_or_default();
        let Some((target, entry)) = by_sluice_id.or_else(|| self.shared.registry.by_backend_thread(&home, id)) else {
            if !passthrough {
                // The backend account is Sluice's own: its other connections (monitor,
                // other proxies' sessions) are not the client's to kill.
                return self.answer_via_backend(Some((err::ER_NO_SUCH_THREAD, "HY000", &format!("Unknown thread id: {id}")))).await;
            }
            // Not one of Sluice's sessions: the server answers, with the client's account.
            let mut payload = vec![com::QUERY];
            payload.extend_from_slice(statement(id).as_bytes());
            return self.on_primary(&payload, Expect::Query).await.map(|_| ());
        };
        if target == self.id && !query {
            // Killing oneself: the server answers nothing and closes; do the same.
            self.killed.notify_one();
            return Ok(());
        }
        if !passthrough && entry.user != self.login.user {
            // Every session shares Sluice's backend account: the server cannot tell
            // owners apart, so Sluice checks ownership itself.
            return self.answer_via_backend(Some((err::ER_KILL_DENIED_ERROR, "HY000", &format!("You are not owner of thread {id}")))).await;
        }
        let running = entry.current.locked().clone();
        if running.is_none() && passthrough && entry.user != self.login.user && !self.may_kill_others().await? {
            // A multiplexed session between statements holds no backend thread the server
            // could judge the kill on: Sluice applies the server's rule (another account's
            // threads need CONNECTION ADMIN or SUPER).
            return self.answer_via_backend(Some((err::ER_KILL_DENIED_ERROR, "HY000", &format!("You are not owner of thread {id}")))).await;
        }
        if let Some((addr, thread)) = &running {
            let sql = statement(u64::from(*thread));
            let own = passthrough && self.nodes.contains_key(addr);
            let result = if own {
                // On the session's own backend connection, as the client's own account:
                // the server applies its privilege rules (CONNECTION ADMIN, owner).
                // cannot fail: checked present (`contains_key` / `ready`) just before.
                self.nodes.get_mut(addr).expect("present").conn.query(&sql).await.map(|_| ())
            } else {
                run_as_service(&self.shared, addr, &sql).await
            };
            match result {
                Ok(()) => {}
                // The backend thread already ended: the session is going away anyway.
                Err(Error::BackendErr { code, .. }) if code == err::ER_NO_SUCH_THREAD => {}
                Err(Error::BackendErr { code, state, message, .. }) => {
                    // Named with the id the client used.
                    let message = message.replace(&thread.to_string(), &id.to_string());
                    return self.answer_via_backend(Some((code, &state, &message))).await;
                }
                Err(e) if own => return Err(e),
                Err(e) => {
                    tracing::warn!(conn = self.id, target, error = %e, "kill on backend failed");
                    self.send_err(1, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", &format!("Unable to connect to foreign data source: Sluice could not reach backend {addr} to kill: {e}")).await;
                    return Ok(());
                }
            }
        }
        if !query {
            entry.killed.notify_one();
        }
        tracing::info!(conn = self.id, target, query, "kill");
        self.answer_via_backend(None).await
    }

    /// Whether the client's account may kill other accounts' threads (pass-through
    /// mode): it has CONNECTION ADMIN or SUPER, as the primary says.
    async fn may_kill_others(&mut self) -> Result<bool, Error> {
        self.refresh_topology();
        let primary = self.primary.clone().ok_or(Error::NoBackend("primary"))?;
        self.ready(&primary).await?;
        let sql = "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE IN ('SUPER', 'CONNECTION ADMIN') \
                   AND GRANTEE = CONCAT(QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', 1)), '@', QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', -1)))";
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        let r = self.nodes.get_mut(&primary).expect("ready").conn.query(sql).await?;
        Ok(r.rows.first().and_then(|row| row.first().cloned().flatten()).is_some_and(|v| v != b"0"))
    }

    /// Answers a statement Sluice handled itself by running an equivalent one on the
    /// session's backend connection (`SIGNAL` for an error, `DO 0` for success), so the
    /// client gets the server's own packet and the session's diagnostics area
    /// (`SHOW ERRORS`, `@@error_count`, `@@warning_count`) changes as it would directly.
    async fn answer_via_backend(&mut self, error: Option<(u16, &str, &str)>) -> Result<(), Error> {
        let sql = match error {
            Some((code, state, msg)) => {
                format!("SIGNAL SQLSTATE '{state}' SET MYSQL_ERRNO = {code}, MESSAGE_TEXT = '{}'", msg.replace('\\', "\\\\").replace('\'', "\\'"))
            }
            None => "DO 0".to_string(),
        };
        let mut payload = Vec::with_capacity(1 + sql.len());
        payload.push(com::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        if let Some(summary) = self.on_primary(&payload, Expect::Query).await? {
            // A statement ran there: the connection's ROW_COUNT() is the session's now.
            self.state.row_count = row_count_after(&summary);
            if let Some(node) = self.state.previous.clone() {
                for (n, nc) in self.nodes.iter_mut() {
                    nc.row_count_own = *n == node;
                }
            }
        }
        Ok(())
    }

    /// COM_CHANGE_USER: re-authenticate the client against the config, then reset the
    /// backend session with COM_CHANGE_USER as Sluice's backend account.
    async fn change_user(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Some(cu) = ChangeUser::parse(&payload[1..], self.login.caps) else {
            self.send_err(1, err::ER_MALFORMED_PACKET, "HY000", "Malformed communication packet.").await;
            return Ok(());
        };
        self.refresh_topology();
        let Some(home) = self.primary.clone() else {
            return self.no_primary(Error::NoBackend("primary")).await;
        };
        if let Err(e) = self.ready(&home).await {
            let msg = format!("Unable to connect to foreign data source: Sluice cannot reach the primary: {e}");
            self.send_err(1, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", &msg).await;
            return Ok(());
        }
        let (bcaps, bext) = {
            let c = &self.nodes[&home].conn;
            (c.caps, c.ext_caps)
        };
        let name = String::from_utf8_lossy(&cu.user).into_owned();
        let host = self.peer.rsplit_once(':').map(|(h, _)| h).unwrap_or(&self.peer).trim_matches(['[', ']']).to_string();
        // The client answers for the account's plugin, with the handshake's nonce (as
        // with the server, which keeps one nonce per connection).
        let mut seq = 1;
        let (verdict, _) = login::authenticate(&self.shared, &mut self.client, &name, &host, "", true, self.login.nonce.clone(), Vec::new(), &mut seq).await?;
        let (backend_user, secret) = match verdict {
            login::Verdict::Accepted { backend_user, secret } => (backend_user, secret),
            login::Verdict::Refused { code, message } => {
                // The server keeps the connection after a refused COM_CHANGE_USER but
                // resets parts of the session (e.g. the character set). Sluice makes the
                // backend do exactly that by sending it a COM_CHANGE_USER that it refuses.
                tracing::info!(conn = self.id, user = %name, %message, "COM_CHANGE_USER refused");
                let refused = self.shared.backend_login(
                    &self.login.backend_user,
                    &Secret::Password(format!("\u{1}refused by sluice {}", self.id)),
                    None,
                    self.login.charset,
                    bcaps,
                    bext,
                    None,
                );
                // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
                match self.nodes.get_mut(&home).expect("ready").conn.change_user(&refused, cu.charset.unwrap_or(self.login.charset as u16), &self.shared.rng).await {
                    // The server refuses the command itself after too many failed
                    // attempts on one connection (ER_UNKNOWN_COM_ERROR): its answer wins.
                    Err(Error::BackendErr { code: backend_code, state, message, .. }) if backend_code != err::ER_ACCESS_DENIED_ERROR => {
                        self.send_err(seq, backend_code, &state, &message).await;
                        return Ok(());
                    }
                    Err(Error::BackendErr { .. }) => {}
                    Ok(_) => tracing::warn!(conn = self.id, "backend accepted a COM_CHANGE_USER meant to be refused"),
                    Err(e) => {
                        return Err(e);
                    }
                }
                // The primary's session was partly reset in ways Sluice does not track:
                // keep the session on it.
                self.drop_other_nodes(&home).await;
                self.state.unreplayable = true;
                self.send_err(seq, code, if code == err::ER_ACCESS_DENIED_ERROR { "28000" } else { "08004" }, &message).await;
                return Ok(());
            }
        };
        let database = (!cu.database.is_empty()).then(|| cu.database.clone());
        let charset = cu.charset.unwrap_or(self.login.charset as u16);
        let blogin = self.shared.backend_login(&backend_user, &secret, database.clone(), charset as u8, bcaps, bext, cu.attrs.clone());
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        match self.nodes.get_mut(&home).expect("ready").conn.change_user(&blogin, charset, &self.shared.rng).await {
            Ok(ok_payload) => {
                let ok_payload = ok_for_client(&ok_payload, bcaps, self.login.caps, Strip::default()).unwrap_or(ok_payload);
                self.client.send(seq, &ok_payload).await.map_err(Error::ClientIo)?;
                self.login.user = name.clone();
                self.login.backend_user = backend_user;
                self.login.backend_secret = secret;
                self.login.database = database.clone();
                // The server reset the session: other nodes' connections belong to the
                // old user and state.
                self.drop_other_nodes(&home).await;
                self.stmts.clear();
                self.state.reset(database);
                if let Some(nc) = self.nodes.get_mut(&home) {
                    nc.after_server_reset(&self.state);
                    nc.schema = self.state.schema.clone();
                }
                if self.multiplex {
                    // The connection now belongs to another account (or character set)
                    // than its pool's: it is not lent again.
                    self.drop_node(&home).await;
                }
                self.shared.registry.set_user(self.id, &name);
                Ok(())
            }
            Err(Error::BackendErr { code, state, message, .. }) => {
                // Refused by the server (e.g. an unknown database): it keeps the
                // connection but reset parts of its session that Sluice does not track;
                // as above, the session stays on the primary.
                self.drop_other_nodes(&home).await;
                self.state.unreplayable = true;
                self.send_err(seq, code, &state, &message).await;
                Ok(())
            }
            Err(e) => {
                Err(e)
            }
        }
    }
}

/// Whether the last `LIMIT` clause of `sql` has an offset (`LIMIT m, n` or
/// `LIMIT n OFFSET m`). A `limit` inside a string literal may give a false yes (the
/// only cost: the connection is kept one statement longer).
fn limit_has_offset(sql: &[u8]) -> bool {
    let text = String::from_utf8_lossy(sql).to_ascii_lowercase();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '@' || c == '$';
    let Some(at) = text.match_indices("limit").map(|(i, _)| i).filter(|&i| !text[..i].ends_with(word) && !text[i + 5..].starts_with(word)).last() else {
        return false;
    };
    let rest = text[at + 5..].trim_start();
    let first = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '?' || word(c));
    if first.len() == rest.len() {
        return false;
    }
    let after = first.trim_start();
    after.starts_with(',') || (after.starts_with("offset") && !after[6..].starts_with(word))
}

#[cfg(test)]
mod limit_tests {
    use super::limit_has_offset;

    #[test]
    fn a_limit_with_an_offset_is_recognised() {
        assert!(limit_has_offset(b"select * from t1 order by c1 limit 2,1"));
        assert!(limit_has_offset(b"SELECT * FROM t LIMIT 1 OFFSET 2"));
        assert!(limit_has_offset(b"SELECT * FROM t LIMIT ?, ?"));
        assert!(!limit_has_offset(b"SELECT * FROM t LIMIT 5"));
        assert!(!limit_has_offset(b"SELECT * FROM t"));
        assert!(!limit_has_offset(b"SELECT limits, a FROM t LIMIT 3"));
    }
}
