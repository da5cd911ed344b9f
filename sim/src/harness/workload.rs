//! The generated workload: simulated clients running single-key writes, single-key
//! reads and multi-key transactions through the proxy — as text queries, prepared
//! statements (binary protocol) and multi-statements — plus session-state read-backs,
//! `KILL` of each other's queries and connections, and COM_CHANGE_USER; "causal readers"
//! that write through the proxy and read from a replica after a GTID wait; and, after
//! the heal, a probe phase in which every client checks that a write and a read through
//! the proxy succeed again. Every operation is recorded in a [`History`] with simulated
//! timestamps (µs since the start).
//!
//! Generic over [`Net`], so the same clients run on turmoil and on madsim.
//!
//! ## Data model
//!
//! One table, `test.kv (k VARCHAR(32) PRIMARY KEY, v BIGINT, n BIGINT)`. A write of `v`
//! to key `k` is `INSERT … ON DUPLICATE KEY UPDATE v = v', n = n + 1`: every value is
//! unique in the run, and every *application* of a write changes the row (through `n`),
//! so a write applied twice shows up twice in the binlog — the per-key applied log the
//! checkers read. A read is `SELECT MAX(v), @@server_id, @@read_only FROM kv WHERE k = …`:
//! one row even for an absent key, naming the node that served it and whether it was
//! read-only. A read a read-only node served through the proxy is recorded as a replica
//! read ([`crate::history::OpMeta::eventual`]: not held to the primary's guarantees);
//! every read through the proxy records the consistency level in effect for its session
//! ([`crate::history::OpMeta::consistency`]: the run's `[routing] consistency`, or what
//! the session last set with `SET @@sluice_consistency`) and every operation through
//! the proxy the instance it went through ([`crate::history::OpMeta::instance`]; with
//! two Sluice instances, client `i` uses instance `i % 2`).
//!
//! ## Outcomes
//!
//! * a server error (code < 2000, except "connection killed / server shutdown") is a
//!   **definite** failure: the statement did not apply;
//! * a client error (≥ 2000, e.g. 2013 "Lost connection"), a lost
//!   connection after sending, or the client's own timeout is **unknown**;
//! * a transaction that fails before its `COMMIT` was sent is definitely not applied
//!   (the server rolls back a transaction whose connection ends); a failed `COMMIT` is
//!   definite only for a server error;
//! * any failure of a session another client has sent a `KILL` for is **unknown**.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sluice::backend::conn::{connect, BackendConn, Login, Secret, TextResult};
use sluice::net::Net;
use sluice::protocol::constants::cap;
use sluice::Error;
use tokio::time::Instant;

use super::client::{self, Param, Prepared, Res};
use super::config::{rng_for, RunConfig};
use crate::cluster::SimCluster;
use crate::engine::{Flavour, GtidPosition};
use crate::history::{instance_name, Backend, Consistency, History, Op, OpId, OpMeta, OpResult, Outcome, ReadIsolation, Role, SessionRef, TxnOp, TxnOpResult, Val};
use crate::wire::Life;

/// The (first) proxy's address inside the simulation.
pub const PROXY_ADDR: &str = "proxy:3306";

/// The address of proxy instance `i` (`proxy:3306`, `proxy2:3306`).
pub fn proxy_addr(i: u32) -> String {
    format!("{}:3306", instance_name(i))
}

/// How soon after its own acknowledged write a session's read counts as "right after
/// the write" for the coverage counters (µs).
pub const RECENT_WRITE_US: u64 = 1_000_000;

/// Coverage counters of one run (summed over a suite with `+=`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Failovers completed (old primary fenced, a replica promoted).
    pub failovers: u64,
    /// Reads that completed OK and were served by a node that was a replica at the time
    /// (causal readers' reads, plus proxy reads that landed on a read-only node).
    pub replica_reads: u64,
    /// GTID waits (`MASTER_GTID_WAIT` / `WAIT_FOR_EXECUTED_GTID_SET`) issued while the
    /// replica had not yet applied the target position, that then succeeded.
    pub lag_waits: u64,
    /// Open transactions on a link (client↔proxy or proxy↔primary) when it was cut
    /// (stalled or dropped), summed over partitions.
    pub partitions_during_txn: u64,
    /// Writes (single writes or transactions with writes) in flight when the primary
    /// crashed or was fenced, summed over crashes.
    pub crashes_during_write: u64,
    /// Prepared-statement executions (COM_STMT_EXECUTE) that succeeded.
    pub prepared: u64,
    /// Multi-statement queries that succeeded.
    pub multi_statements: u64,
    /// `KILL [QUERY]` statements the proxy accepted.
    pub kills: u64,
    /// COM_CHANGE_USER re-logins that succeeded.
    pub change_users: u64,
    /// Session-state read-backs (`SELECT @v`, `SELECT LAST_INSERT_ID()`) that succeeded.
    pub session_reads: u64,
    /// Proxy reads (single, prepared or in a multi-statement) that a read-only node
    /// served: the proxy's read/write splitting at work.
    pub proxy_replica_reads: u64,
    /// Proxy reads at `session`, `instance` or `global` a read-only node served within
    /// [`RECENT_WRITE_US`] after the same session's own acknowledged write: reads that
    /// carried a requirement and were still not sent to the primary.
    pub replica_reads_after_own_write: u64,
    /// Reads at `eventual` that returned a value older than a write their own session
    /// had acknowledged before (`check::stale_eventual_reads`): the staleness
    /// `reads_see_acknowledged_writes` would report at a stronger level.
    pub stale_eventual_reads: u64,
    /// Proxy reads at `global` a read-only node served within [`RECENT_WRITE_US`] after a
    /// write acknowledged through *another* Sluice instance: `global` across instances.
    pub cross_instance_global_reads: u64,
    // Must stay zero.
    /// Proxy reads a replica served in a run with `read_write_split = false`, outside
    /// the detection window of a role change.
    pub split_off_replica_reads: u64,
    /// Session-state read-backs that did not return what the same session had just set.
    pub session_state_lost: u64,
    // Informative.
    pub crashes: u64,
    pub partitions: u64,
    pub lag_wait_timeouts: u64,
    /// Runs with `read_write_split = true`.
    pub split_runs: u64,
    /// Failed operations of sessions another client had sent a `KILL` for (recorded as
    /// unknown).
    pub killed_ops: u64,
    /// Primary-only statements a node ran while replicating, within the detection window
    /// after it became a replica (allowed).
    pub primary_only_in_window: u64,
    /// Proxy reads at `session`, `instance` or `global` the primary served within
    /// [`RECENT_WRITE_US`] after the session's own acknowledged write, in a run with
    /// splitting on while a replica was running: mostly consistency fallbacks (a wait
    /// that timed out, a requirement from a previous primary), also reads while every
    /// replica lagged beyond `max_replica_lag_ms` or was unhealthy.
    pub primary_reads_after_own_write: u64,
    /// Reads that failed with Sluice's consistency timeout (error 1969, "Sluice:
    /// consistency timeout…", `consistency_fallback = error`): definite failures.
    pub consistency_errors: u64,
    /// `SET @@sluice_consistency = …` statements the proxy accepted.
    pub level_switches: u64,
    /// Runs with two Sluice instances.
    pub two_proxy_runs: u64,
    /// Transactions cut by the loss of the primary that Sluice replayed on the new one
    /// (`[failover] transaction_replay`), and replays it refused.
    pub transactions_replayed: u64,
    pub replays_refused: u64,
    /// Planned switchovers the proxy carried out (`SLUICE SWITCHOVER` answered OK).
    pub switchovers: u64,
}

impl std::ops::AddAssign<&Coverage> for Coverage {
    fn add_assign(&mut self, o: &Coverage) {
        self.failovers += o.failovers;
        self.replica_reads += o.replica_reads;
        self.lag_waits += o.lag_waits;
        self.partitions_during_txn += o.partitions_during_txn;
        self.crashes_during_write += o.crashes_during_write;
        self.prepared += o.prepared;
        self.multi_statements += o.multi_statements;
        self.kills += o.kills;
        self.change_users += o.change_users;
        self.session_reads += o.session_reads;
        self.proxy_replica_reads += o.proxy_replica_reads;
        self.split_off_replica_reads += o.split_off_replica_reads;
        self.session_state_lost += o.session_state_lost;
        self.crashes += o.crashes;
        self.partitions += o.partitions;
        self.lag_wait_timeouts += o.lag_wait_timeouts;
        self.split_runs += o.split_runs;
        self.killed_ops += o.killed_ops;
        self.primary_only_in_window += o.primary_only_in_window;
        self.replica_reads_after_own_write += o.replica_reads_after_own_write;
        self.stale_eventual_reads += o.stale_eventual_reads;
        self.cross_instance_global_reads += o.cross_instance_global_reads;
        self.primary_reads_after_own_write += o.primary_reads_after_own_write;
        self.consistency_errors += o.consistency_errors;
        self.level_switches += o.level_switches;
        self.two_proxy_runs += o.two_proxy_runs;
        self.transactions_replayed += o.transactions_replayed;
        self.replays_refused += o.replays_refused;
        self.switchovers += o.switchovers;
    }
}

impl Coverage {
    /// The counters that must not stay zero across a suite, by name.
    pub fn required(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("failovers", self.failovers),
            ("replica_reads", self.replica_reads),
            ("lag_waits", self.lag_waits),
            ("partitions_during_txn", self.partitions_during_txn),
            ("crashes_during_write", self.crashes_during_write),
            ("prepared", self.prepared),
            ("multi_statements", self.multi_statements),
            ("kills", self.kills),
            ("change_users", self.change_users),
            ("session_reads", self.session_reads),
            ("proxy_replica_reads", self.proxy_replica_reads),
            ("replica_reads_after_own_write", self.replica_reads_after_own_write),
            ("stale_eventual_reads", self.stale_eventual_reads),
        ]
    }

    /// Names of required counters that are zero.
    pub fn missing(&self) -> Vec<&'static str> {
        self.required().iter().filter(|(_, v)| *v == 0).map(|(n, _)| *n).collect()
    }

    /// The counters that must stay zero, by name.
    pub fn must_be_zero(&self) -> [(&'static str, u64); 2] {
        [("split_off_replica_reads", self.split_off_replica_reads), ("session_state_lost", self.session_state_lost)]
    }

    /// Must-be-zero counters that are not, with their values.
    pub fn forbidden(&self) -> Vec<(&'static str, u64)> {
        self.must_be_zero().into_iter().filter(|(_, v)| *v != 0).collect()
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "failovers={} replica_reads={} lag_waits={} partitions_during_txn={} crashes_during_write={} prepared={} \
             multi_statements={} kills={} change_users={} session_reads={} proxy_replica_reads={} \
             replica_reads_after_own_write={} stale_eventual_reads={} cross_instance_global_reads={} \
             [must be 0: split_off_replica_reads={} session_state_lost={}] \
             (crashes={} partitions={} lag_wait_timeouts={} split_runs={} killed_ops={} primary_only_in_window={} \
             primary_reads_after_own_write={} consistency_errors={} level_switches={} two_proxy_runs={} \
             transactions_replayed={} replays_refused={} switchovers={})",
            self.failovers,
            self.replica_reads,
            self.lag_waits,
            self.partitions_during_txn,
            self.crashes_during_write,
            self.prepared,
            self.multi_statements,
            self.kills,
            self.change_users,
            self.session_reads,
            self.proxy_replica_reads,
            self.replica_reads_after_own_write,
            self.stale_eventual_reads,
            self.cross_instance_global_reads,
            self.split_off_replica_reads,
            self.session_state_lost,
            self.crashes,
            self.partitions,
            self.lag_wait_timeouts,
            self.split_runs,
            self.killed_ops,
            self.primary_only_in_window,
            self.primary_reads_after_own_write,
            self.consistency_errors,
            self.level_switches,
            self.two_proxy_runs,
            self.transactions_replayed,
            self.replays_refused,
            self.switchovers,
        )
    }
}

/// Everything the clients share: the history and what is in flight right now.
#[derive(Default)]
pub struct Recorder {
    pub history: History,
    /// Clients with a transaction open (BEGIN sent, not finished).
    pub open_txns: BTreeSet<u32>,
    /// Clients with a write in flight (single write, or a transaction with writes).
    pub writes_in_flight: BTreeSet<u32>,
    /// Clients with an operation in flight (candidates for a `KILL QUERY`).
    pub busy: BTreeSet<u32>,
    /// Each client's current proxy connection: `(connection number, CONNECTION_ID())`.
    pub conn_ids: BTreeMap<u32, (u64, u64)>,
    /// Sessions another client sent a `KILL` for, with when (µs) the first was sent.
    pub kill_targets: BTreeMap<SessionRef, u64>,
    /// When each session's latest write (or committed transaction) was acknowledged (µs).
    pub last_ack: BTreeMap<SessionRef, u64>,
    /// When the latest write through each proxy instance was acknowledged (µs).
    pub last_ack_via: BTreeMap<u32, u64>,
    pub cov: Coverage,
    /// What the operator did (planned switchover), for the run's fault log.
    pub operator_log: Vec<String>,
}

/// State shared by the clients and the nemesis of one run.
pub struct RunShared {
    pub cfg: RunConfig,
    pub cluster: SimCluster,
    pub rec: Mutex<Recorder>,
    /// Each proxy instance's counters (read at the end of the run).
    pub proxy_stats: Mutex<Vec<ProxyStatsSource>>,
}

/// Reads a proxy instance's counters.
pub type ProxyStatsSource = std::sync::Arc<dyn Fn() -> sluice::ProxyStats + Send + Sync>;

impl RunShared {
    pub fn new(cfg: RunConfig, cluster: SimCluster) -> RunShared {
        let mut rec = Recorder::default();
        // The simulated engine reads READ COMMITTED-like (no snapshots; see
        // `crate::engine`), so transactions' reads are checked as such.
        rec.history.set_read_isolation(ReadIsolation::ReadCommitted);
        if cfg.read_write_split {
            rec.cov.split_runs = 1;
        }
        if cfg.proxies > 1 {
            rec.cov.two_proxy_runs = 1;
        }
        RunShared { cfg, cluster, rec: Mutex::new(rec), proxy_stats: Mutex::new(Vec::new()) }
    }

    fn rec(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.rec.lock().expect("recorder")
    }

    /// Whether node `node` started replicating less than the detection window before
    /// `now_us` (the proxy may not have noticed yet).
    fn in_detection_window(&self, node: usize, now_us: u64) -> bool {
        if node >= self.cluster.len() {
            return false;
        }
        let now_ms = now_us / 1_000;
        let e = self.cluster.server(node).engine();
        let since = e.role_changes().iter().filter(|(at, r)| *r && *at <= now_ms).map(|(at, _)| *at).next_back();
        since.is_some_and(|s| now_ms - s < self.cfg.detection_window_ms())
    }
}

fn app_login(timeout: Duration) -> Login {
    Login {
        user: "app".into(),
        secret: Secret::Password("app".into()),
        database: Some(b"test".to_vec()),
        charset: 45,
        caps: cap::SUPPORTED & !cap::SSL & !cap::LOCAL_FILES,
        ext_caps: 0,
        attrs: None,
        tls: None,
        timeout,
    }
}

/// Why a statement failed.
#[derive(Debug)]
enum Fail {
    /// Certainly not applied.
    Definite(u16, String),
    /// May have been applied.
    Unknown(u16, String),
}

impl Fail {
    fn outcome(&self) -> Outcome {
        match self {
            Fail::Definite(code, m) => Outcome::Err { code: *code, message: m.clone(), definite: true },
            Fail::Unknown(0, _) => Outcome::Unknown,
            Fail::Unknown(code, m) => Outcome::Err { code: *code, message: m.clone(), definite: false },
        }
    }
    /// The statement certainly did not apply (e.g. it was never executed), whatever
    /// happened to the connection.
    fn definite_outcome(&self, what: &str) -> Outcome {
        let (code, m) = match self {
            Fail::Definite(c, m) | Fail::Unknown(c, m) => (if *c == 0 { 2013 } else { *c }, m.clone()),
        };
        Outcome::Err { code, message: format!("{what}: {m}"), definite: true }
    }
    fn keeps_connection(&self) -> bool {
        matches!(self, Fail::Definite(c, _) if *c < 2000)
    }
}

fn classify(e: Error) -> Fail {
    match e {
        Error::BackendErr { code, message, .. } => {
            if code >= 2000 || matches!(code, 1053 | 1317 | 1927 | 1158..=1161) {
                Fail::Unknown(code, message)
            } else {
                Fail::Definite(code, message)
            }
        }
        Error::BackendIo { sent: false, .. } => Fail::Definite(2006, "not sent: connection gone".into()),
        other => Fail::Unknown(0, other.to_string()),
    }
}

async fn timed<T>(t: Duration, f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Fail> {
    match tokio::time::timeout(t, f).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(Fail::Unknown(0, "client timeout".into())),
    }
}

async fn query<S: sluice::net::Stream>(c: &mut BackendConn<S>, sql: &str, t: Duration) -> Result<TextResult, Fail> {
    timed(t, c.query(sql)).await
}

/// Runs a multi-statement; on failure also says how many statements answered first.
async fn query_all<S: sluice::net::Stream>(c: &mut BackendConn<S>, sql: &str, t: Duration) -> Result<Vec<Res>, (usize, Fail)> {
    match tokio::time::timeout(t, client::query_all(c, sql)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err((n, e))) => Err((n, classify(e))),
        Err(_) => Err((0, Fail::Unknown(0, "client timeout".into()))),
    }
}

fn cell(r: &TextResult, row: usize, col: usize) -> Option<String> {
    r.rows.get(row)?.get(col)?.as_ref().map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Who served a statement, from its `@@server_id, @@read_only` columns.
fn backend_of(server_id: Option<&str>, read_only: Option<&str>) -> Option<Backend> {
    let id = server_id?.parse::<u32>().ok().filter(|&i| i >= 1)?;
    let role = if read_only? == "0" { Role::Primary } else { Role::Replica };
    Some(Backend::new(format!("db{}", id - 1), Some(role)))
}

/// Parses `SELECT MAX(v), @@server_id, @@read_only …`: the value and who served it.
fn parse_read(r: &Res) -> Result<(Option<Val>, Backend), Fail> {
    let bad = || Fail::Unknown(0, "unparsable read result".into());
    if r.rows() != 1 {
        return Err(bad());
    }
    let v = match r.cell(0) {
        None => None,
        Some(s) => Some(s.parse::<Val>().map_err(|_| bad())?),
    };
    Ok((v, backend_of(r.cell(1), r.cell(2)).ok_or_else(bad)?))
}

fn text_res(r: &TextResult) -> Res {
    Res::Rows(r.rows.iter().map(|row| row.iter().map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())).collect()).collect())
}

fn write_sql(key: &str, v: Val) -> String {
    format!("INSERT INTO kv (k, v, n) VALUES ('{key}', {v}, 1) ON DUPLICATE KEY UPDATE v = {v}, n = n + 1")
}

fn read_sql(key: &str) -> String {
    format!("SELECT MAX(v), @@server_id, @@read_only FROM kv WHERE k = '{key}'")
}

const WRITE_PS: &str = "INSERT INTO kv (k, v, n) VALUES (?, ?, 1) ON DUPLICATE KEY UPDATE v = VALUES(v), n = n + 1";
const READ_PS: &str = "SELECT MAX(v), @@server_id, @@read_only FROM kv WHERE k = ?";

/// One connection to the proxy and what the client keeps on it.
struct Conn<S> {
    c: BackendConn<S>,
    no: u64,
    write_ps: Option<Prepared>,
    read_ps: Option<Prepared>,
}

/// One client's identity, clock and random choices.
struct Client {
    shared: Arc<RunShared>,
    id: u32,
    rng: ChaCha8Rng,
    auth_rng: Arc<Mutex<ChaCha8Rng>>,
    origin: Instant,
    next_value: u64,
    timeout: Duration,
    /// The proxy instance this client uses.
    instance: u32,
    /// The consistency level in effect on the current proxy connection.
    level: Consistency,
}

/// What an operation leaves of its connection.
enum After {
    Keep,
    Drop,
}

impl Client {
    fn new(shared: Arc<RunShared>, id: u32) -> Client {
        let seed = shared.cfg.seed;
        let timeout = Duration::from_millis(shared.cfg.op_timeout_ms);
        let instance = id % shared.cfg.proxies.max(1) as u32;
        let level = shared.cfg.consistency;
        Client {
            shared,
            id,
            rng: rng_for(seed, "client", id as u64),
            auth_rng: Arc::new(Mutex::new(rng_for(seed, "client-auth", id as u64))),
            origin: Instant::now(),
            next_value: 0,
            timeout,
            instance,
            level,
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn running(&self) -> bool {
        self.origin.elapsed() < Duration::from_millis(self.shared.cfg.duration_ms)
    }

    fn value(&mut self) -> Val {
        self.next_value += 1;
        ((self.id as u64 + 1) << 32) | self.next_value
    }

    fn key(&mut self) -> String {
        format!("k{}", self.rng.gen_range(0..self.shared.cfg.keys))
    }

    async fn think(&mut self) {
        let (lo, hi) = self.shared.cfg.think_ms;
        let ms = self.rng.gen_range(lo..=hi);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// A logged-in connection with the workload's session settings.
    async fn connect<N: Net>(&mut self, net: &N, addr: &str) -> Option<BackendConn<N::Stream>> {
        let login = app_login(self.timeout);
        let mut c = match connect(net, addr, &login, &self.auth_rng).await {
            Ok(c) => c,
            Err(_) => return None,
        };
        // Row-lock waits end quickly (a definite error), so a wedged session holding
        // locks does not stall the rest of the run for 50 s per statement.
        match query(&mut c, "SET SESSION innodb_lock_wait_timeout = 1", self.timeout).await {
            Ok(_) => Some(c),
            Err(_) => None,
        }
    }

    /// A new connection to this client's proxy instance (at the run's consistency level).
    async fn connect_to_proxy<N: Net>(&mut self, net: &N) -> Option<BackendConn<N::Stream>> {
        self.level = self.shared.cfg.consistency;
        self.connect(net, &proxy_addr(self.instance)).await
    }

    /// A connection to the proxy whose `CONNECTION_ID()` other clients may `KILL`.
    async fn connect_proxy<N: Net>(&mut self, net: &N, no: u64) -> Option<Conn<N::Stream>> {
        let mut c = self.connect_to_proxy(net).await?;
        let id = query(&mut c, "SELECT CONNECTION_ID()", self.timeout).await.ok().and_then(|r| cell(&r, 0, 0)).and_then(|s| s.parse::<u64>().ok())?;
        self.shared.rec().conn_ids.insert(self.id, (no, id));
        Some(Conn { c, no, write_ps: None, read_ps: None })
    }

    /// Records an invocation; an operation through the proxy notes the instance, and a
    /// read through it the consistency level in effect.
    fn invoke(&self, session: SessionRef, op: Op, mut meta: OpMeta) -> OpId {
        let at = self.now();
        if !meta.direct {
            meta.instance = Some(self.instance);
            if op.is_read() {
                meta.consistency = Some(self.level);
            }
        }
        self.shared.rec().history.invoke(session, op, meta, at)
    }

    /// Completes `id`; a failure of a session someone sent a `KILL` for is unknown.
    fn complete(&self, id: OpId, session: SessionRef, outcome: Outcome) {
        let at = self.now();
        let mut rec = self.shared.rec();
        let outcome = match outcome {
            Outcome::Ok(r) => Outcome::Ok(r),
            other if rec.kill_targets.get(&session).is_some_and(|&k| k <= at) => {
                rec.cov.killed_ops += 1;
                match other {
                    Outcome::Err { code, message, .. } => Outcome::Err { code, message: format!("{message} (session was a KILL target)"), definite: false },
                    _ => Outcome::Unknown,
                }
            }
            other => other,
        };
        if let Outcome::Err { code: sluice::consistency::level::ER_SLUICE_CONSISTENCY_TIMEOUT, message, .. } = &outcome {
            if message.starts_with("Sluice: consistency timeout") {
                rec.cov.consistency_errors += 1;
            }
        }
        rec.history.complete(id, outcome, at);
        let op = rec.history.op(id);
        if op.op.has_writes() && op.write_effect() == crate::history::WriteEffect::Acked {
            let via = op.meta.instance;
            rec.last_ack.insert(session, at);
            if let Some(i) = via {
                rec.last_ack_via.insert(i, at);
            }
        }
    }

    fn killed(&self, session: SessionRef) -> bool {
        self.shared.rec().kill_targets.contains_key(&session)
    }

    /// Whether the connection stays after a failure.
    fn after(&self, session: SessionRef, f: &Fail) -> After {
        if f.keeps_connection() && !self.killed(session) {
            After::Keep
        } else {
            After::Drop
        }
    }

    /// Records a successful read of `id`: the value and who served it (a read-only
    /// node serving a proxy read makes it a replica read).
    fn complete_read(&self, id: OpId, v: Option<Val>, b: Backend) {
        let at = self.now();
        let replica = b.role == Some(Role::Replica);
        let node = b.name.strip_prefix("db").and_then(|n| n.parse::<usize>().ok());
        let in_window = node.is_some_and(|n| self.shared.in_detection_window(n, at));
        let cluster = &self.shared.cluster;
        let replica_running = !replica && self.shared.cfg.read_write_split && {
            let p = cluster.primary();
            (0..cluster.len()).any(|i| Some(i) != p && cluster.server(i).life() == Life::Running)
        };
        let mut rec = self.shared.rec();
        // A read with a requirement: at a level above `eventual`, right after the
        // session's own acknowledged write.
        let recent = |t: u64, inv: u64| t <= inv && inv - t <= RECENT_WRITE_US;
        let (required, cross_instance) = {
            let op = rec.history.op(id);
            let (inv, session) = (op.invoked_at, op.session);
            let required = op.meta.consistency.is_some_and(|l| l != Consistency::Eventual)
                && rec.last_ack.get(&session).is_some_and(|&t| recent(t, inv));
            let cross = op.meta.consistency == Some(Consistency::Global)
                && rec.last_ack_via.iter().any(|(&i, &t)| Some(i) != op.meta.instance && recent(t, inv));
            (required, cross)
        };
        if replica {
            rec.history.mark_eventual(id);
            rec.cov.replica_reads += 1;
            rec.cov.proxy_replica_reads += 1;
            if required {
                rec.cov.replica_reads_after_own_write += 1;
            }
            if cross_instance {
                rec.cov.cross_instance_global_reads += 1;
            }
            if !self.shared.cfg.read_write_split && !in_window {
                rec.cov.split_off_replica_reads += 1;
            }
        } else if required && replica_running {
            rec.cov.primary_reads_after_own_write += 1;
        }
        rec.history.note_backend(id, b);
        rec.history.complete(id, Outcome::Ok(OpResult::Read(v)), at);
    }

    fn busy(&self, yes: bool) {
        let mut rec = self.shared.rec();
        if yes {
            rec.busy.insert(self.id);
        } else {
            rec.busy.remove(&self.id);
        }
    }

    /// A single write (text protocol).
    async fn write<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>, session: SessionRef, key: String) -> Result<(), Fail> {
        let v = self.value();
        let id = self.invoke(session, Op::write(key.clone(), v), OpMeta::primary());
        self.shared.rec().writes_in_flight.insert(self.id);
        let r = query(c, &write_sql(&key, v), self.timeout).await;
        self.shared.rec().writes_in_flight.remove(&self.id);
        match r {
            Ok(_) => {
                self.complete(id, session, Outcome::Ok(OpResult::Written));
                Ok(())
            }
            Err(f) => {
                self.complete(id, session, f.outcome());
                Err(f)
            }
        }
    }

    /// A single read of `key` through the proxy (text protocol).
    async fn read<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>, session: SessionRef, key: String) -> Result<(), Fail> {
        let id = self.invoke(session, Op::read(key.clone()), OpMeta::primary());
        let r = query(c, &read_sql(&key), self.timeout).await.and_then(|r| parse_read(&text_res(&r)));
        match r {
            Ok((v, b)) => {
                self.complete_read(id, v, b);
                Ok(())
            }
            Err(f) => {
                self.complete(id, session, f.outcome());
                Err(f)
            }
        }
    }

    /// Prepares `sql` on the connection unless `slot` holds it already.
    async fn prepared<S: sluice::net::Stream>(&self, c: &mut BackendConn<S>, slot: &mut Option<Prepared>, sql: &str) -> Result<Prepared, Fail> {
        if let Some(p) = *slot {
            return Ok(p);
        }
        let p = timed(self.timeout, client::prepare(c, sql)).await?;
        *slot = Some(p);
        Ok(p)
    }

    /// Closes a prepared statement one time in three (otherwise the connection keeps it
    /// for the next execution).
    async fn maybe_close<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>, slot: &mut Option<Prepared>) {
        if self.rng.gen_ratio(1, 3) {
            if let Some(p) = slot.take() {
                let _ = tokio::time::timeout(self.timeout, client::close(c, p)).await;
            }
        }
    }

    /// A single write as a prepared statement (COM_STMT_PREPARE / EXECUTE / CLOSE).
    async fn write_prepared<S: sluice::net::Stream>(&mut self, conn: &mut Conn<S>, session: SessionRef, key: String) -> Result<(), Fail> {
        let v = self.value();
        let id = self.invoke(session, Op::write(key.clone(), v), OpMeta::primary());
        let mut slot = conn.write_ps.take();
        let stmt = match self.prepared(&mut conn.c, &mut slot, WRITE_PS).await {
            Ok(p) => p,
            Err(f) => {
                // Nothing was executed.
                self.complete(id, session, f.definite_outcome("prepare"));
                return Err(f);
            }
        };
        self.shared.rec().writes_in_flight.insert(self.id);
        let r = timed(self.timeout, client::execute(&mut conn.c, stmt, &[Param::Text(key), Param::Int(v as i64)])).await;
        self.shared.rec().writes_in_flight.remove(&self.id);
        match r {
            Ok(_) => {
                self.shared.rec().cov.prepared += 1;
                self.complete(id, session, Outcome::Ok(OpResult::Written));
                self.maybe_close(&mut conn.c, &mut slot).await;
                conn.write_ps = slot;
                Ok(())
            }
            Err(f) => {
                self.complete(id, session, f.outcome());
                conn.write_ps = slot;
                Err(f)
            }
        }
    }

    /// A single read as a prepared statement.
    async fn read_prepared<S: sluice::net::Stream>(&mut self, conn: &mut Conn<S>, session: SessionRef, key: String) -> Result<(), Fail> {
        let id = self.invoke(session, Op::read(key.clone()), OpMeta::primary());
        let mut slot = conn.read_ps.take();
        let stmt = match self.prepared(&mut conn.c, &mut slot, READ_PS).await {
            Ok(p) => p,
            Err(f) => {
                self.complete(id, session, f.outcome());
                return Err(f);
            }
        };
        let r = timed(self.timeout, client::execute(&mut conn.c, stmt, &[Param::Text(key)])).await.and_then(|r| parse_read(&r));
        match r {
            Ok((v, b)) => {
                self.shared.rec().cov.prepared += 1;
                self.complete_read(id, v, b);
                self.maybe_close(&mut conn.c, &mut slot).await;
                conn.read_ps = slot;
                Ok(())
            }
            Err(f) => {
                self.complete(id, session, f.outcome());
                conn.read_ps = slot;
                Err(f)
            }
        }
    }

    /// A write and a read of the same key in one multi-statement query. Recorded as two
    /// operations with the same interval (they are not atomic; the read runs after the
    /// write, on the same connection).
    async fn write_then_read_multi<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>, session: SessionRef, key: String) -> Result<(), Fail> {
        let v = self.value();
        let w = self.invoke(session, Op::write(key.clone(), v), OpMeta::primary());
        let r = self.invoke(session, Op::read(key.clone()), OpMeta::primary());
        self.shared.rec().writes_in_flight.insert(self.id);
        let res = query_all(c, &format!("{}; {}", write_sql(&key, v), read_sql(&key)), self.timeout).await;
        self.shared.rec().writes_in_flight.remove(&self.id);
        match res {
            Ok(results) if results.len() == 2 => {
                self.complete(w, session, Outcome::Ok(OpResult::Written));
                match parse_read(&results[1]) {
                    Ok((val, b)) => {
                        self.shared.rec().cov.multi_statements += 1;
                        self.complete_read(r, val, b);
                        Ok(())
                    }
                    Err(f) => {
                        self.complete(r, session, f.outcome());
                        Err(f)
                    }
                }
            }
            Ok(results) => {
                // Not what a server answers to two statements: nothing can be known.
                let f = Fail::Unknown(0, format!("{} results for 2 statements", results.len()));
                self.complete(w, session, f.outcome());
                self.complete(r, session, f.outcome());
                Err(f)
            }
            Err((answered, f)) => {
                if answered == 0 {
                    self.complete(w, session, f.outcome());
                    // A failed statement ends the batch: the read never ran.
                    self.complete(r, session, f.definite_outcome("not run"));
                } else {
                    self.complete(w, session, Outcome::Ok(OpResult::Written));
                    self.complete(r, session, f.outcome());
                }
                Err(f)
            }
        }
    }

    /// Two reads in one multi-statement query (a pure read: a splitting proxy may send
    /// it to a replica).
    async fn reads_multi<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>, session: SessionRef) -> Result<(), Fail> {
        let keys = [self.key(), self.key()];
        let ids: Vec<OpId> = keys.iter().map(|k| self.invoke(session, Op::read(k.clone()), OpMeta::primary())).collect();
        let res = query_all(c, &format!("{}; {}", read_sql(&keys[0]), read_sql(&keys[1])), self.timeout).await;
        let parsed: Result<Vec<_>, (usize, Fail)> = match res {
            Ok(results) if results.len() == 2 => results.iter().enumerate().map(|(i, r)| parse_read(r).map_err(|f| (i, f))).collect(),
            Ok(results) => Err((0, Fail::Unknown(0, format!("{} results for 2 statements", results.len())))),
            Err(e) => Err(e),
        };
        match parsed {
            Ok(vals) => {
                self.shared.rec().cov.multi_statements += 1;
                for (id, (v, b)) in ids.into_iter().zip(vals) {
                    self.complete_read(id, v, b);
                }
                Ok(())
            }
            Err((_, f)) => {
                for id in ids {
                    self.complete(id, session, f.outcome());
                }
                Err(f)
            }
        }
    }

    /// Sets connection-bound state and reads it back with the node that served the
    /// read: `LAST_INSERT_ID(x)` then `SELECT LAST_INSERT_ID(), …`, `SET @v = x` then
    /// `SELECT @v, …`, both of the latter in one multi-statement, or a session variable
    /// (`SET SESSION group_concat_max_len = x`, replayed by Sluice) then its read-back.
    async fn session_read<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>, session: SessionRef) -> Result<(), Fail> {
        let x = self.value();
        let variant = self.rng.gen_range(0..4);
        let var = match variant {
            0 => "LAST_INSERT_ID()",
            3 => "@@group_concat_max_len",
            _ => "@sim_v",
        };
        let id = self.invoke(session, Op::session_read(var, x), OpMeta::primary());
        let read = format!("SELECT {var}, @@server_id, @@read_only");
        let r: Result<Res, Fail> = match variant {
            0 | 1 | 3 => {
                // Variant 3 is a session `SET` Sluice replays on whichever pooled
                // connection (and node) the read-back runs: the differential oracle for
                // multiplexing (the value must be the session's own, as on a dedicated
                // connection).
                let set = match variant {
                    0 => format!("SELECT LAST_INSERT_ID({x})"),
                    3 => format!("SET SESSION group_concat_max_len = {x}"),
                    _ => format!("SET @sim_v = {x}"),
                };
                // The read-back of a session variable comes a while later, after other
                // sessions used the pooled connections.
                let pause = if variant == 3 { self.rng.gen_range(0..60) } else { 0 };
                match query(c, &set, self.timeout).await {
                    Ok(_) => {
                        if pause > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                        }
                        query(c, &read, self.timeout).await.map(|r| text_res(&r))
                    }
                    Err(f) => Err(f),
                }
            }
            _ => match query_all(c, &format!("SET @sim_v = {x}; {read}"), self.timeout).await {
                Ok(mut results) if results.len() == 2 => {
                    self.shared.rec().cov.multi_statements += 1;
                    Ok(results.remove(1))
                }
                Ok(results) => Err(Fail::Unknown(0, format!("{} results for 2 statements", results.len()))),
                Err((_, f)) => Err(f),
            },
        };
        let parsed = r.and_then(|res| {
            let v = match res.cell(0) {
                None => None,
                Some(s) => Some(s.parse::<Val>().map_err(|_| Fail::Unknown(0, "unparsable session value".into()))?),
            };
            let b = backend_of(res.cell(1), res.cell(2)).ok_or_else(|| Fail::Unknown(0, "no server in the answer".into()))?;
            Ok((v, b))
        });
        match parsed {
            Ok((v, b)) => {
                let at = self.now();
                let mut rec = self.shared.rec();
                rec.cov.session_reads += 1;
                if v != Some(x) {
                    rec.cov.session_state_lost += 1;
                }
                rec.history.note_backend(id, b);
                rec.history.complete(id, Outcome::Ok(OpResult::SessionValue(v)), at);
                Ok(())
            }
            Err(f) => {
                self.complete(id, session, f.outcome());
                Err(f)
            }
        }
    }

    /// A transaction of 2–4 statements on distinct keys; one in ten ends in ROLLBACK.
    async fn txn<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>, session: SessionRef) -> Result<(), Fail> {
        let mut keys: Vec<usize> = (0..self.shared.cfg.keys).collect();
        keys.shuffle(&mut self.rng);
        let n = self.rng.gen_range(2..=4).min(keys.len());
        let mut ops = Vec::with_capacity(n);
        for &k in &keys[..n] {
            if self.rng.gen_bool(0.5) {
                let v = self.value();
                ops.push(TxnOp::write(format!("k{k}"), v));
            } else {
                ops.push(TxnOp::read(format!("k{k}")));
            }
        }
        let rollback = self.rng.gen_ratio(1, 10);
        let has_writes = ops.iter().any(|o| matches!(o, TxnOp::Write { .. }));
        let id = self.invoke(session, Op::txn(ops.clone()), OpMeta::primary());
        {
            let mut rec = self.shared.rec();
            rec.open_txns.insert(self.id);
            if has_writes {
                rec.writes_in_flight.insert(self.id);
            }
        }
        let r = self.txn_body(c, &ops, rollback).await;
        {
            let mut rec = self.shared.rec();
            rec.open_txns.remove(&self.id);
            rec.writes_in_flight.remove(&self.id);
        }
        match r {
            Ok((committed, results)) => {
                self.complete(id, session, Outcome::Ok(OpResult::Txn { committed, results }));
                Ok(())
            }
            Err((outcome, f)) => {
                self.complete(id, session, outcome);
                Err(f)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn txn_body<S: sluice::net::Stream>(
        &mut self,
        c: &mut BackendConn<S>,
        ops: &[TxnOp],
        rollback: bool,
    ) -> Result<(bool, Vec<TxnOpResult>), (Outcome, Fail)> {
        // Any failure before COMMIT is sent: the transaction cannot commit.
        let before_commit = |f: Fail| (f.definite_outcome("before COMMIT"), f);
        let t = self.timeout;
        query(c, "BEGIN", t).await.map_err(before_commit)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let r = match op {
                TxnOp::Write { key, value } => query(c, &write_sql(key, *value), t).await.map(|_| TxnOpResult::Written),
                TxnOp::Read { key } => query(c, &format!("SELECT v FROM kv WHERE k = '{key}'"), t).await.and_then(|r| {
                    if r.rows.is_empty() {
                        Ok(TxnOpResult::Read(None))
                    } else {
                        cell(&r, 0, 0)
                            .and_then(|s| s.parse::<Val>().ok())
                            .map(|v| TxnOpResult::Read(Some(v)))
                            .ok_or_else(|| Fail::Unknown(0, "unparsable row".into()))
                    }
                }),
            };
            match r {
                Ok(x) => results.push(x),
                Err(f) => {
                    if f.keeps_connection() {
                        // Roll back what the server still holds; if that fails, the
                        // connection is dropped (and the server rolls back).
                        if let Err(f2) = query(c, "ROLLBACK", t).await {
                            return Err(before_commit(f2));
                        }
                    }
                    return Err(before_commit(f));
                }
            }
        }
        if rollback {
            return match query(c, "ROLLBACK", t).await {
                Ok(_) => Ok((false, results)),
                // Never committed either way, but the connection is suspect.
                Err(f) => Err((Outcome::Ok(OpResult::Txn { committed: false, results }), f)),
            };
        }
        match query(c, "COMMIT", t).await {
            Ok(_) => Ok((true, results)),
            Err(f) => Err((f.outcome(), f)),
        }
    }

    /// `KILL QUERY <id>` (three times in four) or `KILL <id>` through the proxy, for
    /// another client's connection (one with an operation in flight if there is one),
    /// `id` from that connection's `CONNECTION_ID()`. The target session's failures are
    /// then recorded as unknown. Not an operation of the history.
    async fn kill<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>) -> After {
        let (victim, busy) = {
            let rec = self.shared.rec();
            let cands: Vec<(u32, (u64, u64))> = rec.conn_ids.iter().filter(|(&k, _)| k != self.id).map(|(&k, &v)| (k, v)).collect();
            let busy: Vec<(u32, (u64, u64))> = cands.iter().copied().filter(|(k, _)| rec.busy.contains(k)).collect();
            if !busy.is_empty() {
                (busy.choose(&mut self.rng).copied(), true)
            } else {
                (cands.choose(&mut self.rng).copied(), false)
            }
        };
        let Some((client, (no, conn_id))) = victim else { return After::Keep };
        // An idle connection is killed one time in four (KILL QUERY would do nothing).
        let query_only = if busy { self.rng.gen_ratio(3, 4) } else { false };
        if !busy && !self.rng.gen_ratio(1, 4) {
            return After::Keep;
        }
        let at = self.now();
        self.shared.rec().kill_targets.entry(SessionRef::new(client, no)).or_insert(at);
        let sql = format!("KILL {}{conn_id}", if query_only { "QUERY " } else { "" });
        match query(c, &sql, self.timeout).await {
            Ok(_) => {
                self.shared.rec().cov.kills += 1;
                After::Keep
            }
            Err(f) if f.keeps_connection() => After::Keep,
            Err(_) => After::Drop,
        }
    }

    /// COM_CHANGE_USER to the same account, then the session settings again. Prepared
    /// statements do not survive it.
    async fn change_user<S: sluice::net::Stream>(&mut self, conn: &mut Conn<S>) -> After {
        let login = app_login(self.timeout);
        match tokio::time::timeout(self.timeout, conn.c.change_user(&login, 45, &self.auth_rng)).await {
            Ok(Ok(_)) => {}
            _ => return After::Drop,
        }
        conn.write_ps = None;
        conn.read_ps = None;
        match query(&mut conn.c, "SET SESSION innodb_lock_wait_timeout = 1", self.timeout).await {
            Ok(_) => {
                self.shared.rec().cov.change_users += 1;
                After::Keep
            }
            Err(_) => After::Drop,
        }
    }

    /// `SET @@sluice_consistency = <level>` (or `DEFAULT`: the run's level) on the
    /// session: the level of its next reads. Not an operation of the history.
    async fn switch_level<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>) -> After {
        let pick = self.rng.gen_range(0..=Consistency::ALL.len());
        let (value, level) = match Consistency::ALL.get(pick) {
            Some(&l) => (format!("'{}'", l.name()), l),
            None => ("DEFAULT".to_string(), self.shared.cfg.consistency),
        };
        match query(c, &format!("SET @@sluice_consistency = {value}"), self.timeout).await {
            Ok(_) => {
                self.level = level;
                self.shared.rec().cov.level_switches += 1;
                After::Keep
            }
            Err(f) if f.keeps_connection() => After::Keep,
            Err(_) => After::Drop,
        }
    }

    /// One operation of the main phase on `conn`.
    async fn operation<S: sluice::net::Stream>(&mut self, conn: &mut Conn<S>) -> After {
        let session = SessionRef::new(self.id, conn.no);
        let special = self.rng.gen_range(0..100);
        if special < 2 {
            return self.kill(&mut conn.c).await;
        }
        if special < 4 {
            return self.change_user(conn).await;
        }
        let switch_pct = self.shared.cfg.level_switch_pct;
        if switch_pct > 0 && self.rng.gen_range(0..100) < switch_pct {
            if let After::Drop = self.switch_level(&mut conn.c).await {
                return After::Drop;
            }
        }
        let cfg = &self.shared.cfg;
        let (write_pct, read_pct) = (cfg.write_pct, cfg.read_pct);
        let roll = self.rng.gen_range(0..100);
        let variant = self.rng.gen_range(0..100);
        self.busy(true);
        let r = if roll < write_pct {
            let key = self.key();
            match variant {
                0..=14 => self.write_prepared(conn, session, key).await,
                15..=29 => self.write_then_read_multi(&mut conn.c, session, key).await,
                _ => self.write(&mut conn.c, session, key).await,
            }
        } else if roll < write_pct + read_pct {
            match variant {
                0..=14 => {
                    let key = self.key();
                    self.read_prepared(conn, session, key).await
                }
                15..=24 => self.reads_multi(&mut conn.c, session).await,
                25..=39 => self.session_read(&mut conn.c, session).await,
                _ => {
                    let key = self.key();
                    self.read(&mut conn.c, session, key).await
                }
            }
        } else {
            self.txn(&mut conn.c, session).await
        };
        self.busy(false);
        match r {
            Ok(()) => After::Keep,
            Err(f) => self.after(session, &f),
        }
    }

    /// After the heal: with a fresh connection per attempt, writes this client's own
    /// probe key and reads it back through the proxy until both succeeded once, or the
    /// liveness bound (plus a little) has passed. The liveness checker reads the result
    /// from the history.
    async fn probe_after_heal<N: Net>(&mut self, net: &N, conn_no: &mut u64) {
        let cfg = &self.shared.cfg;
        let give_up = Duration::from_millis(cfg.duration_ms + cfg.liveness_bound_ms() + 500);
        let key = format!("p{}", self.id);
        let (mut wrote, mut read) = (false, false);
        while !(wrote && read) && self.origin.elapsed() < give_up {
            *conn_no += 1;
            let session = SessionRef::new(self.id, *conn_no);
            if let Some(mut c) = self.connect_to_proxy(net).await {
                if !wrote {
                    wrote = self.write(&mut c, session, key.clone()).await.is_ok();
                }
                if wrote && !read {
                    read = self.read(&mut c, session, key.clone()).await.is_ok();
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), c.quit()).await;
            }
            if !(wrote && read) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The operator of a run with a planned switchover ([`RunConfig::switchover`]): at its
/// time, logs in to proxy instance 0 as the admin user `ops` and runs `SLUICE
/// SWITCHOVER TO` the target; the outcome goes to the run's fault log (and
/// [`Coverage::switchovers`]).
pub async fn run_operator<N: Net>(net: N, shared: Arc<RunShared>) {
    let Some((at_ms, target)) = shared.cfg.switchover else { return };
    tokio::time::sleep(Duration::from_millis(at_ms)).await;
    let login = Login { user: "ops".into(), secret: Secret::Password("ops".into()), database: None, ..app_login(Duration::from_secs(5)) };
    let rng = Arc::new(Mutex::new(rng_for(shared.cfg.seed, "operator", 0)));
    let started = Instant::now();
    let sql = format!("SLUICE SWITCHOVER TO 'db{target}:3306'");
    let result = match connect(&net, &proxy_addr(0), &login, &rng).await {
        Ok(mut c) => {
            let r = query(&mut c, &sql, Duration::from_secs(30)).await.map(|_| ()).map_err(|f| format!("{f:?}"));
            let _ = tokio::time::timeout(Duration::from_secs(1), c.quit()).await;
            r
        }
        Err(e) => Err(format!("cannot log in as the operator: {e}")),
    };
    let took = started.elapsed().as_millis();
    let mut rec = shared.rec();
    match result {
        Ok(()) => {
            rec.cov.switchovers += 1;
            rec.operator_log.push(format!("t={at_ms}ms {sql}: done in {took}ms"));
        }
        Err(e) => rec.operator_log.push(format!("t={at_ms}ms {sql}: FAILED after {took}ms: {e}")),
    }
}

/// A workload client: runs operations through the proxy until the workload's end, then
/// probes the proxy after the heal.
pub async fn run_client<N: Net>(net: N, shared: Arc<RunShared>, id: u32) {
    let mut cl = Client::new(shared.clone(), id);
    let mut conn: Option<Conn<N::Stream>> = None;
    let mut conn_no = 0u64;
    let start = cl.rng.gen_range(0..200);
    tokio::time::sleep(Duration::from_millis(start)).await;
    while cl.running() {
        let mut c = match conn.take() {
            Some(c) => c,
            None => {
                conn_no += 1;
                match cl.connect_proxy(&net, conn_no).await {
                    Some(c) => c,
                    None => {
                        let ms = cl.rng.gen_range(50..300);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        continue;
                    }
                }
            }
        };
        match cl.operation(&mut c).await {
            After::Keep => conn = Some(c),
            After::Drop => {
                shared.rec().conn_ids.remove(&id);
                drop(c);
            }
        }
        cl.think().await;
    }
    shared.rec().conn_ids.remove(&id);
    if let Some(c) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(1), c.c.quit()).await;
    }
    cl.probe_after_heal(&net, &mut conn_no).await;
}

/// A causal reader: writes a key through the proxy, reads the primary's GTID position on
/// the same connection, waits for it on a replica it is connected to directly
/// (sticky for the session), then reads the key there. Its reads are recorded in the
/// same session as its writes, so read-your-writes and monotonic reads are checked for
/// replica reads.
pub async fn run_replica_reader<N: Net>(net: N, shared: Arc<RunShared>, id: u32) {
    let mut cl = Client::new(shared.clone(), id);
    let flavour = shared.cfg.flavour;
    // (connection through the proxy, direct connection to the replica, replica index)
    type Conns<S> = (BackendConn<S>, BackendConn<S>, usize);
    let mut conns: Option<Conns<N::Stream>> = None;
    let mut conn_no = 0u64;
    let start = cl.rng.gen_range(0..300);
    tokio::time::sleep(Duration::from_millis(start)).await;
    while cl.running() {
        let (mut pc, mut rc, r) = match conns.take() {
            Some(x) => x,
            None => {
                conn_no += 1;
                let cluster = &shared.cluster;
                let primary = cluster.primary();
                let candidates: Vec<usize> =
                    (0..cluster.len()).filter(|&i| Some(i) != primary && cluster.server(i).life() == Life::Running).collect();
                let Some(&r) = candidates.choose(&mut cl.rng) else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let addr = cluster.addr(r);
                let (Some(pc), Some(rc)) = (cl.connect_to_proxy(&net).await, cl.connect(&net, &addr).await) else {
                    let ms = cl.rng.gen_range(100..400);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    continue;
                };
                (pc, rc, r)
            }
        };
        let session = SessionRef::new(id, conn_no);
        let ok = reader_round(&mut cl, &mut pc, &mut rc, r, session, flavour).await;
        if ok {
            conns = Some((pc, rc, r));
        }
        cl.think().await;
    }
    if let Some((pc, rc, _)) = conns {
        let _ = tokio::time::timeout(Duration::from_secs(1), pc.quit()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), rc.quit()).await;
    }
}

/// One write + wait + replica read; returns whether both connections are still good.
async fn reader_round<S: sluice::net::Stream>(
    cl: &mut Client,
    pc: &mut BackendConn<S>,
    rc: &mut BackendConn<S>,
    r: usize,
    session: SessionRef,
    flavour: Flavour,
) -> bool {
    let key = cl.key();
    if let Err(f) = cl.write(pc, session, key.clone()).await {
        return f.keeps_connection();
    }
    // The primary's position, on the proxy connection; a routing hint keeps it off the
    // replicas of a splitting proxy, and a position a read-only node answered is not
    // used (it would not include the write).
    let pos_sql = match flavour {
        Flavour::MariaDb => "/* sluice: route=primary */ SELECT @@gtid_binlog_pos, @@server_id, @@read_only",
        Flavour::MySql8 => "/* sluice: route=primary */ SELECT @@gtid_executed, @@server_id, @@read_only",
    };
    let Ok(pos) = query(pc, pos_sql, cl.timeout).await else { return false };
    if cell(&pos, 0, 2).as_deref() != Some("0") {
        return true;
    }
    let Some(pos) = cell(&pos, 0, 0) else { return false };
    let pos = pos.replace(['\n', ' '], "");
    let lagging = match GtidPosition::parse(flavour, &pos) {
        Ok(target) => !cl.shared.cluster.server(r).engine().gtid_wait_reached(&target),
        Err(_) => return false,
    };
    let wait_sql = match flavour {
        Flavour::MariaDb => format!("SELECT MASTER_GTID_WAIT('{pos}', 2)"),
        Flavour::MySql8 => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{pos}', 2)"),
    };
    let waited = match query(rc, &wait_sql, cl.timeout).await {
        Ok(res) => cell(&res, 0, 0),
        Err(_) => return false,
    };
    if waited.as_deref() != Some("0") {
        cl.shared.rec().cov.lag_wait_timeouts += 1;
        // Lagging too far behind (or stalled): pick another replica next time.
        return false;
    }
    if lagging {
        cl.shared.rec().cov.lag_waits += 1;
    }
    let id = cl.invoke(session, Op::read(key.clone()), OpMeta::direct());
    match query(rc, &read_sql(&key), cl.timeout).await.and_then(|res| parse_read(&text_res(&res))) {
        Ok((v, b)) => {
            let at = cl.now();
            let mut rec = cl.shared.rec();
            if b.role == Some(Role::Replica) {
                rec.cov.replica_reads += 1;
            }
            rec.history.note_backend(id, b);
            rec.history.complete(id, Outcome::Ok(OpResult::Read(v)), at);
            true
        }
        Err(f) => {
            cl.complete(id, session, f.outcome());
            f.keeps_connection()
        }
    }
}
