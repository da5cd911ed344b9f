//! [`SimCluster`]: a primary and its replicas as simulated servers on a simulated
//! network, with GTID replication between them and the faults a harness injects.
//!
//! Node `i` is served at `"<prefix><i>:<port>"` (`db0:3306`, `db1:3306`, …); node 0
//! starts as the primary, the others as read-only replicas of it. Each node's software
//! ([`SimCluster::run_node`]) is its accept loop plus two replication tasks:
//!
//! * the **IO thread** connects to the source named by the node's `CHANGE MASTER TO`
//!   over the simulated network, logs in as the replication user, and runs the binlog
//!   dump: batches are announced over the connection and picked up from the primary's
//!   outbox, stored in the relay log, and acknowledged with the received position (which
//!   is also the semi-sync ack). Heartbeats keep an idle link alive; silence longer than
//!   `net_timeout_ms` (a partition, a paused or crashed source) makes it reconnect. So
//!   partitions and latency between a replica and its source affect replication exactly
//!   as they affect any other traffic.
//! * the **SQL thread** applies relay-log events once their apply lag (a base plus
//!   seeded jitter per received batch) has passed.
//!
//! All randomness comes from the cluster seed; time only from `tokio::time`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice::backend::conn::{connect, Login, Secret};
use sluice::net::Net;
use sluice::protocol::constants::{cap, com};
use sluice::protocol::packets;

use crate::engine::{
    BinlogEvent, ExecOutcome, Flavour, Gtid, GtidPosition, QueryResult, Server, ServerConfig, SimError, SqlError, Uuid,
};
use crate::wire::{self, Account, Clock, ServerOpts, SimServer, Watcher, DUMP_MARKER};

/// How a cluster is built.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub flavour: Flavour,
    pub nodes: usize,
    /// Host name prefix: node `i` is host `"{prefix}{i}"`.
    pub host_prefix: String,
    pub port: u16,
    /// Databases every server has at boot (not replicated).
    pub databases: Vec<String>,
    pub accounts: Vec<Account>,
    /// The account replicas log in with (must be in `accounts`, with replication).
    pub repl_user: String,
    pub repl_password: String,
    /// `@@version`; default: MariaDB `10.11.9-MariaDB-sim`, MySQL `8.0.36-sim`.
    pub version: Option<String>,
    /// Semi-synchronous replication on every node (matters on the primary).
    pub semi_sync: bool,
    pub semi_sync_timeout_ms: u64,
    /// Apply lag of every received batch: `lag_ms` plus a seeded `0..=lag_jitter_ms`.
    pub lag_ms: u64,
    pub lag_jitter_ms: u64,
    /// The primary sends a heartbeat on an idle dump connection this often.
    pub heartbeat_ms: u64,
    /// A replica drops its dump connection after this long without a packet, and gives a
    /// connection attempt this long.
    pub net_timeout_ms: u64,
    /// Pause between a replica's connection attempts.
    pub connect_retry_ms: u64,
    /// Bits of each server's RSA key (caching_sha2_password full authentication); `0`
    /// uses the fixed key (see `ServerOpts::rsa_bits`).
    pub rsa_bits: usize,
    /// A replica's IO thread stops reading while its relay log holds this many events
    /// (like `relay_log_space_limit`).
    pub relay_limit: usize,
}

impl ClusterConfig {
    pub fn new(flavour: Flavour, nodes: usize) -> ClusterConfig {
        ClusterConfig {
            flavour,
            nodes,
            host_prefix: "db".into(),
            port: 3306,
            databases: vec!["test".into()],
            accounts: wire::default_accounts(),
            repl_user: "repl".into(),
            repl_password: "repl".into(),
            version: None,
            semi_sync: false,
            semi_sync_timeout_ms: 10_000,
            lag_ms: 20,
            lag_jitter_ms: 30,
            heartbeat_ms: 500,
            net_timeout_ms: 2_000,
            connect_retry_ms: 200,
            rsa_bits: 0,
            relay_limit: 10_000,
        }
    }

    pub fn mariadb(nodes: usize) -> ClusterConfig {
        Self::new(Flavour::MariaDb, nodes)
    }

    pub fn mysql(nodes: usize) -> ClusterConfig {
        Self::new(Flavour::MySql8, nodes)
    }

    pub fn host(&self, i: usize) -> String {
        format!("{}{i}", self.host_prefix)
    }

    pub fn addr(&self, i: usize) -> String {
        format!("{}:{}", self.host(i), self.port)
    }
}

/// Harness requests to a node's replication tasks, picked up on the node's own host
/// (durations, not instants: each host has its own clock).
#[derive(Default)]
struct ReplCtl {
    stall_ms: Option<u64>,
    spike_ms: Option<u64>,
    /// When each relay-log event may be applied (node clock, ms).
    ready_at: BTreeMap<Gtid, u64>,
}

struct Node {
    server: SimServer,
    ctl: Mutex<ReplCtl>,
    /// Apply-lag jitter.
    lag_rng: Mutex<ChaCha8Rng>,
    /// The IO thread's login RNG (RSA padding).
    login_rng: Arc<Mutex<ChaCha8Rng>>,
}

struct Inner {
    cfg: ClusterConfig,
    nodes: Vec<Node>,
}

/// A simulated primary/replica cluster; cheap to clone.
#[derive(Clone)]
pub struct SimCluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCluster").field("flavour", &self.inner.cfg.flavour).field("nodes", &self.inner.nodes.len()).finish()
    }
}

impl SimCluster {
    /// Builds the servers (node 0 primary, the others replicating from it). Nothing runs
    /// until each node's [`Self::run_node`] is started on its host.
    pub fn new(cfg: ClusterConfig, seed: u64) -> SimCluster {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let version = cfg.version.clone().unwrap_or_else(|| match cfg.flavour {
            Flavour::MariaDb => "10.11.9-MariaDB-sim".into(),
            Flavour::MySql8 => "8.0.36-sim".into(),
        });
        let mut nodes = Vec::with_capacity(cfg.nodes);
        for i in 0..cfg.nodes {
            let mut sc = ServerConfig::new(cfg.flavour, i as u32 + 1);
            sc.hostname = cfg.host(i);
            sc.port = cfg.port;
            sc.version = Some(version.clone());
            sc.read_only = i > 0;
            sc.semi_sync_enabled = cfg.semi_sync;
            sc.semi_sync_timeout_ms = cfg.semi_sync_timeout_ms;
            if cfg.flavour == Flavour::MySql8 {
                sc.server_uuid = Some(Uuid::from_rng(&mut rng));
            }
            for db in &cfg.databases {
                sc = sc.with_database(db);
            }
            let mut server = Server::new(sc);
            if i > 0 {
                let sql = change_master_sql(&cfg, 0);
                let sid = server.open_session("root", None).expect("root session");
                let out = server.execute(sid, &format!("{sql}; START SLAVE"), 0);
                server.close_session(sid);
                match out {
                    Ok(ExecOutcome::Done(r)) if !r.iter().any(QueryResult::is_err) => {}
                    other => panic!("setting up replication on node {i}: {other:?}"),
                }
            }
            let mut opts = ServerOpts::new(&cfg.host(i));
            opts.accounts = cfg.accounts.clone();
            opts.rsa_bits = cfg.rsa_bits;
            opts.seed = rng.gen();
            nodes.push(Node {
                server: SimServer::new(server, opts),
                ctl: Mutex::new(ReplCtl::default()),
                lag_rng: Mutex::new(ChaCha8Rng::seed_from_u64(rng.gen())),
                login_rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(rng.gen()))),
            });
        }
        SimCluster { inner: Arc::new(Inner { cfg, nodes }) }
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.cfg
    }

    pub fn len(&self) -> usize {
        self.inner.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.nodes.is_empty()
    }

    pub fn server(&self, i: usize) -> &SimServer {
        &self.inner.nodes[i].server
    }

    /// Host name of node `i` (`"db0"`).
    pub fn host(&self, i: usize) -> String {
        self.inner.cfg.host(i)
    }

    /// Address of node `i` (`"db0:3306"`).
    pub fn addr(&self, i: usize) -> String {
        self.inner.cfg.addr(i)
    }

    pub fn addrs(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.addr(i)).collect()
    }

    fn index_of(&self, host: &str, port: u16) -> Option<usize> {
        (0..self.len()).find(|&i| self.host(i).eq_ignore_ascii_case(host) && self.inner.cfg.port == port)
    }

    /// The node that is writable and not replicating (the first one, if several).
    pub fn primary(&self) -> Option<usize> {
        (0..self.len()).find(|&i| {
            let s = self.server(i);
            if s.life() == wire::Life::Crashed {
                return false;
            }
            let e = s.engine();
            !e.read_only() && e.replica_source().is_none()
        })
    }

    /// Node `i`'s software: its server's accept loop and its replication IO and SQL
    /// threads. Runs forever; start it on node `i`'s host.
    pub fn run_node<N: Net>(&self, i: usize, net: N) -> impl Future<Output = ()> + Send + 'static {
        let cluster = self.clone();
        async move {
            let clock = Clock::start();
            tokio::spawn(io_thread(cluster.clone(), i, net.clone(), clock));
            tokio::spawn(sql_thread(cluster.clone(), i, clock));
            let listen = format!("0.0.0.0:{}", cluster.inner.cfg.port);
            wire::serve(net, listen, cluster.server(i).clone(), clock).await;
        }
    }

    /// Registers every node as a turmoil host named after it.
    #[cfg(not(madsim))]
    pub fn register_turmoil(&self, sim: &mut turmoil::Sim<'_>) {
        for i in 0..self.len() {
            let c = self.clone();
            sim.host(self.host(i), move || {
                let c = c.clone();
                async move {
                    c.run_node(i, crate::net::TurmoilNet).await;
                    Ok(())
                }
            });
        }
    }

    // ---------------------------------------------------------------------------------
    // Faults

    /// Crashes node `i`. A primary without active semi-sync loses the binlog events no
    /// replica has received (unsynced binlog); returns them. Restart with
    /// [`Self::restart`].
    pub fn crash(&self, i: usize) -> Vec<BinlogEvent> {
        let lose = self.is_async_primary(i).then(|| self.replicated_position(i));
        self.server(i).crash(lose.as_ref())
    }

    /// Crashes node `i` losing nothing committed (synced binlog).
    pub fn crash_clean(&self, i: usize) {
        self.server(i).crash(None);
    }

    pub fn restart(&self, i: usize) {
        self.server(i).restart();
    }

    /// Node `i` keeps its connections but answers nothing (and replicates nothing).
    pub fn pause(&self, i: usize) {
        self.server(i).pause();
    }

    pub fn resume(&self, i: usize) {
        self.server(i).resume();
    }

    /// Node `i`'s IO thread stops receiving (and acknowledging) for `dur`.
    pub fn stall_replication(&self, i: usize, dur: Duration) {
        self.inner.nodes[i].ctl.lock().expect("ctl").stall_ms = Some(dur.as_millis() as u64);
        self.server(i).notify();
    }

    /// Node `i`'s SQL thread applies nothing for `dur` (events keep arriving).
    pub fn lag_spike(&self, i: usize, dur: Duration) {
        self.inner.nodes[i].ctl.lock().expect("ctl").spike_ms = Some(dur.as_millis() as u64);
        self.server(i).notify();
    }

    /// Makes node `i` the primary: `STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0`
    /// on it, and every other node (the old primary included) read-only and replicating
    /// from it with `MASTER_USE_GTID=slave_pos` (MySQL: `MASTER_AUTO_POSITION=1`).
    pub fn promote(&self, i: usize) -> Result<(), SimError> {
        self.admin_sql(i, "STOP SLAVE")?;
        self.admin_sql(i, "RESET SLAVE ALL")?;
        self.server(i).with(|e| e.set_read_only(false));
        self.server(i).bump_repl_epoch();
        for j in (0..self.len()).filter(|&j| j != i) {
            self.server(j).with(|e| e.set_read_only(true));
            self.admin_sql(j, "STOP SLAVE")?;
            self.admin_sql(j, &change_master_sql(&self.inner.cfg, i))?;
            self.admin_sql(j, "START SLAVE")?;
            self.server(j).bump_repl_epoch();
        }
        Ok(())
    }

    /// Runs statements on node `i` as `root`, outside any client connection. Statements
    /// that would block fail with ER_LOCK_WAIT_TIMEOUT; the first SQL error is returned.
    pub fn admin_sql(&self, i: usize, sql: &str) -> Result<Vec<QueryResult>, SimError> {
        let s = self.server(i);
        let now = s.last_now();
        let out = s.with(|e| {
            let sid = e.open_session("root", None)?;
            let out = e.execute(sid, sql, now);
            e.close_session(sid);
            out
        })?;
        match out {
            ExecOutcome::Done(r) => match r.iter().find_map(QueryResult::err) {
                Some(e) => Err(SimError::Sql(e.clone())),
                None => Ok(r),
            },
            _ => Err(SimError::Sql(SqlError::lock_wait_timeout())),
        }
    }

    /// Everything node `i` has executed.
    pub fn executed_position(&self, i: usize) -> GtidPosition {
        self.server(i).engine().executed_position()
    }

    /// Whether node `j` has executed everything node `i` has.
    pub fn caught_up(&self, j: usize, i: usize) -> bool {
        let target = self.executed_position(i);
        self.executed_position(j).includes(&target)
    }

    fn is_async_primary(&self, i: usize) -> bool {
        let e = self.server(i).engine();
        !e.read_only() && e.replica_source().is_none() && !e.semi_sync_active()
    }

    /// What the replicas of node `i` have received (merged).
    fn replicated_position(&self, i: usize) -> GtidPosition {
        let mut pos = GtidPosition::empty(self.inner.cfg.flavour);
        for j in (0..self.len()).filter(|&j| j != i) {
            let s = self.server(j);
            let up = s.life() != wire::Life::Crashed;
            let e = s.engine();
            let from_i = e.replica_source().is_some_and(|src| self.index_of(&src.host, src.port) == Some(i));
            if from_i {
                // Applied events are durable; a relay log only counts on a running replica.
                pos.merge(&e.executed_position());
                if up {
                    pos.merge(&e.received_position());
                }
            }
        }
        pos
    }
}

fn change_master_sql(cfg: &ClusterConfig, source: usize) -> String {
    let gtid = match cfg.flavour {
        Flavour::MariaDb => "MASTER_USE_GTID=slave_pos",
        Flavour::MySql8 => "MASTER_AUTO_POSITION=1",
    };
    format!(
        "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT={}, MASTER_USER='{}', MASTER_PASSWORD='{}', {gtid}",
        cfg.host(source),
        cfg.port,
        cfg.repl_user,
        cfg.repl_password
    )
}

/// What the IO thread is set up to replicate from, and the settings it connected with.
#[derive(Clone, PartialEq, Eq)]
struct IoTarget {
    host: String,
    port: u16,
    epoch: u64,
    inc: u64,
}

fn io_target(s: &SimServer, inc: u64) -> Option<IoTarget> {
    let epoch = s.repl_epoch();
    let e = s.engine();
    if !e.replica_io_running() {
        return None;
    }
    let src = e.replica_source()?;
    Some(IoTarget { host: src.host.clone(), port: src.port, epoch, inc })
}

/// Why a dump session ended.
enum DumpEnd {
    /// Reconnect after the retry pause.
    Retry,
    /// Reconfigured, crashed, or stopped: re-evaluate at once.
    Changed,
}

async fn io_thread<N: Net>(cluster: SimCluster, i: usize, net: N, clock: Clock) {
    let srv = cluster.server(i).clone();
    let cfg = cluster.inner.cfg.clone();
    let mut rx = srv.subscribe();
    loop {
        let inc = srv.wait_up(&mut rx).await;
        if srv.gate(inc, &mut rx).await.is_err() {
            continue;
        }
        let Some(target) = io_target(&srv, inc) else {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        match dump_session(&cluster, i, &net, clock, &target, &mut rx).await {
            DumpEnd::Changed => {}
            DumpEnd::Retry => {
                if srv.state_for(inc).is_ok() && io_target(&srv, inc).as_ref() == Some(&target) {
                    srv.with(|e| e.set_replica_connected(false));
                }
                // Wait out the retry pause unless the configuration changes first.
                let until = tokio::time::Instant::now() + Duration::from_millis(cfg.connect_retry_ms);
                loop {
                    rx.mark_seen();
                    if io_target(&srv, inc).as_ref() != Some(&target) || srv.state_for(inc).is_err() {
                        break;
                    }
                    tokio::select! {
                        biased;
                        r = rx.changed() => if r.is_err() { return },
                        _ = tokio::time::sleep_until(until) => break,
                    }
                }
            }
        }
    }
}

async fn dump_session<N: Net>(
    cluster: &SimCluster,
    i: usize,
    net: &N,
    clock: Clock,
    target: &IoTarget,
    rx: &mut Watcher,
) -> DumpEnd {
    let node = &cluster.inner.nodes[i];
    let srv = &node.server;
    let cfg = &cluster.inner.cfg;
    let addr = format!("{}:{}", target.host, target.port);
    let Some(source) = cluster.index_of(&target.host, target.port).map(|k| cluster.server(k).clone()) else {
        return DumpEnd::Retry;
    };
    let login = Login {
        user: cfg.repl_user.clone(),
        secret: Secret::Password(cfg.repl_password.clone()),
        database: None,
        charset: 45,
        caps: cap::SERVICE,
        ext_caps: 0,
        attrs: None,
        tls: None,
        timeout: Duration::from_millis(cfg.net_timeout_ms),
    };
    let still = |srv: &SimServer| io_target(srv, target.inc).as_ref() == Some(target) && srv.state_for(target.inc).is_ok();
    // Connect, giving up early when the configuration changes.
    let connected = {
        let fut = connect(net, &addr, &login, &node.login_rng);
        tokio::pin!(fut);
        loop {
            rx.mark_seen();
            if !still(srv) {
                return DumpEnd::Changed;
            }
            tokio::select! {
                biased;
                r = rx.changed() => if r.is_err() { return DumpEnd::Changed },
                c = &mut fut => break c,
            }
        }
    };
    let mut conn = match connected {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(replica = srv.name(), source = %addr, error = %e, "replica cannot connect");
            return DumpEnd::Retry;
        }
    };
    if !still(srv) {
        return DumpEnd::Changed;
    }
    let Some(request) = srv.engine().replica_request_position() else { return DumpEnd::Changed };
    srv.with(|e| e.set_replica_connected(true));
    let mut cmd = vec![com::BINLOG_DUMP_GTID];
    cmd.extend_from_slice(DUMP_MARKER);
    cmd.extend_from_slice(format!("{}:{}", cfg.heartbeat_ms, request).as_bytes());
    let mut seq = match conn.conn.send(0, &cmd).await {
        Ok(s) => s,
        Err(_) => return DumpEnd::Retry,
    };
    let (source_id, source_uuid) = {
        let e = source.engine();
        (e.server_id(), e.server_uuid())
    };
    let timeout = Duration::from_millis(cfg.net_timeout_ms);
    let mut silent_until = tokio::time::Instant::now() + timeout;
    let mut stalled_until: Option<tokio::time::Instant> = None;
    loop {
        if srv.gate(target.inc, rx).await.is_err() || !still(srv) {
            return DumpEnd::Changed;
        }
        if let Some(ms) = node.ctl.lock().expect("ctl").stall_ms.take() {
            let until = tokio::time::Instant::now() + Duration::from_millis(ms);
            stalled_until = Some(stalled_until.map_or(until, |u| u.max(until)));
        }
        if let Some(until) = stalled_until {
            if tokio::time::Instant::now() < until {
                tokio::select! {
                    biased;
                    r = rx.changed() => if r.is_err() { return DumpEnd::Changed },
                    _ = tokio::time::sleep_until(until) => {}
                }
                continue;
            }
            stalled_until = None;
            silent_until = tokio::time::Instant::now() + timeout;
        }
        if srv.engine().replica_state().relay.len() >= cfg.relay_limit {
            // Relay log full: stop reading until the SQL thread makes room.
            if rx.changed().await.is_err() {
                return DumpEnd::Changed;
            }
            silent_until = tokio::time::Instant::now() + timeout;
            continue;
        }
        let got = tokio::select! {
            biased;
            r = rx.changed() => {
                if r.is_err() {
                    return DumpEnd::Changed;
                }
                None
            }
            p = conn.conn.read_packet() => Some(p),
            _ = tokio::time::sleep_until(silent_until) => {
                tracing::debug!(replica = srv.name(), source = %addr, "no heartbeat from the source; reconnecting");
                return DumpEnd::Retry;
            }
        };
        let Some(p) = got else { continue };
        let Ok(p) = p else { return DumpEnd::Retry };
        silent_until = tokio::time::Instant::now() + timeout;
        let payload = &p.payload[..];
        match payload {
            [0x00, b'H', ..] => {}
            [0x00, b'B', rest @ ..] if rest.len() == 8 => {
                let token = u64::from_le_bytes(rest.try_into().expect("8 bytes"));
                let Some(events) = source.take_batch(token) else { return DumpEnd::Retry };
                let gtids: Vec<Gtid> = events.iter().map(|e| e.gtid).collect();
                let now = srv.now(&clock);
                let received = srv.with(|e| {
                    e.receive_events(source_id, Some(source_uuid), events, now);
                    e.received_position()
                });
                let lag = {
                    let mut r = node.lag_rng.lock().expect("lag rng");
                    cfg.lag_ms + if cfg.lag_jitter_ms > 0 { r.gen_range(0..=cfg.lag_jitter_ms) } else { 0 }
                };
                {
                    let mut ctl = node.ctl.lock().expect("ctl");
                    for g in gtids {
                        ctl.ready_at.entry(g).or_insert(now + lag);
                    }
                }
                srv.notify();
                let mut ack = vec![b'A'];
                ack.extend_from_slice(received.to_string().as_bytes());
                seq = match conn.conn.send(seq, &ack).await {
                    Ok(s) => s,
                    Err(_) => return DumpEnd::Retry,
                };
            }
            [0xFF, ..] => {
                let err = match packets::Err::parse(payload) {
                    Some(e) => SqlError::new(e.code, &String::from_utf8_lossy(e.state), e.message_lossy()),
                    None => SqlError::new(2013, "HY000", "Lost connection to server during query"),
                };
                tracing::info!(replica = srv.name(), source = %addr, error = %err, "replication IO error");
                srv.with(|e| e.set_replica_io_error(err));
                return DumpEnd::Changed;
            }
            _ => return DumpEnd::Retry,
        }
    }
}

async fn sql_thread(cluster: SimCluster, i: usize, clock: Clock) {
    let node = &cluster.inner.nodes[i];
    let srv = node.server.clone();
    let mut rx = srv.subscribe();
    let mut hold_until = 0u64;
    loop {
        let inc = srv.wait_up(&mut rx).await;
        if srv.gate(inc, &mut rx).await.is_err() {
            continue;
        }
        let now = srv.now(&clock);
        if let Some(ms) = node.ctl.lock().expect("ctl").spike_ms.take() {
            hold_until = hold_until.max(now + ms);
        }
        // How many relay-log events at the front are due, and when the next one is.
        let (due, next) = {
            let e = srv.engine();
            let mut ctl = node.ctl.lock().expect("ctl");
            let relay = &e.replica_state().relay;
            let in_relay: BTreeSet<Gtid> = relay.iter().map(|ev| ev.gtid).collect();
            ctl.ready_at.retain(|g, _| in_relay.contains(g));
            if !e.replica_sql_running() {
                (0, None)
            } else {
                let mut due = 0;
                let mut next = None;
                for ev in relay.iter() {
                    let at = ctl.ready_at.get(&ev.gtid).copied().unwrap_or(now).max(hold_until);
                    if at <= now {
                        due += 1;
                    } else {
                        next = Some(at);
                        break;
                    }
                }
                (due, next)
            }
        };
        let applied = if due > 0 { srv.with(|e| e.apply_relay_log(now, due)) } else { 0 };
        if applied > 0 && applied == due {
            continue;
        }
        let wait = next.map(|t| t.saturating_sub(now).max(1));
        tokio::select! {
            biased;
            r = rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_millis(wait.unwrap_or(3_600_000))), if wait.is_some() => {}
        }
    }
}
