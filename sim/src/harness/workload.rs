//! The generated workload: simulated clients running single-key writes, single-key
//! reads and multi-key transactions through the proxy, and "causal readers" that write
//! through the proxy and read from a replica after a GTID wait. Every operation is
//! recorded in a [`History`] with simulated timestamps (µs since the start).
//!
//! Generic over [`Net`], so the same clients run on turmoil and on madsim.
//!
//! ## Data model
//!
//! One table, `test.kv (k VARCHAR(32) PRIMARY KEY, v BIGINT, n BIGINT)`. A write of `v`
//! to key `k` is `INSERT … ON DUPLICATE KEY UPDATE v = v', n = n + 1`: every value is
//! unique in the run, and every *application* of a write changes the row (through `n`),
//! so a write applied twice shows up twice in the binlog — the per-key applied log the
//! checkers read.
//!
//! ## Outcomes
//!
//! * a server error (code < 2000, except "connection killed / server shutdown") is a
//!   **definite** failure: the statement did not apply;
//! * a client error (≥ 2000, e.g. 2013 "Lost connection"), a lost
//!   connection after sending, or the client's own timeout is **unknown**;
//! * a transaction that fails before its `COMMIT` was sent is definitely not applied
//!   (the server rolls back a transaction whose connection ends); a failed `COMMIT` is
//!   definite only for a server error.

use std::collections::BTreeSet;
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

use super::config::{rng_for, RunConfig};
use crate::cluster::SimCluster;
use crate::engine::{Flavour, GtidPosition};
use crate::history::{Backend, History, ReadIsolation, Op, OpId, OpMeta, OpResult, Outcome, Role, SessionRef, TxnOp, TxnOpResult, Val};
use crate::wire::Life;

/// The proxy's address inside the simulation.
pub const PROXY_ADDR: &str = "proxy:3306";

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
    // Informative.
    pub crashes: u64,
    pub partitions: u64,
    pub lag_wait_timeouts: u64,
    /// Proxy-routed reads that were served by a read-only node.
    pub proxy_reads_on_non_primary: u64,
}

impl std::ops::AddAssign<&Coverage> for Coverage {
    fn add_assign(&mut self, o: &Coverage) {
        self.failovers += o.failovers;
        self.replica_reads += o.replica_reads;
        self.lag_waits += o.lag_waits;
        self.partitions_during_txn += o.partitions_during_txn;
        self.crashes_during_write += o.crashes_during_write;
        self.crashes += o.crashes;
        self.partitions += o.partitions;
        self.lag_wait_timeouts += o.lag_wait_timeouts;
        self.proxy_reads_on_non_primary += o.proxy_reads_on_non_primary;
    }
}

impl Coverage {
    /// The counters that must not stay zero across a suite, by name.
    pub fn required(&self) -> [(&'static str, u64); 5] {
        [
            ("failovers", self.failovers),
            ("replica_reads", self.replica_reads),
            ("lag_waits", self.lag_waits),
            ("partitions_during_txn", self.partitions_during_txn),
            ("crashes_during_write", self.crashes_during_write),
        ]
    }

    /// Names of required counters that are zero.
    pub fn missing(&self) -> Vec<&'static str> {
        self.required().iter().filter(|(_, v)| *v == 0).map(|(n, _)| *n).collect()
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "failovers={} replica_reads={} lag_waits={} partitions_during_txn={} crashes_during_write={} \
             (crashes={} partitions={} lag_wait_timeouts={} proxy_reads_on_non_primary={})",
            self.failovers,
            self.replica_reads,
            self.lag_waits,
            self.partitions_during_txn,
            self.crashes_during_write,
            self.crashes,
            self.partitions,
            self.lag_wait_timeouts,
            self.proxy_reads_on_non_primary
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
    pub cov: Coverage,
}

/// State shared by the clients and the nemesis of one run.
pub struct RunShared {
    pub cfg: RunConfig,
    pub cluster: SimCluster,
    pub rec: Mutex<Recorder>,
}

impl RunShared {
    pub fn new(cfg: RunConfig, cluster: SimCluster) -> RunShared {
        let mut rec = Recorder::default();
        // The simulated engine reads READ COMMITTED-like (no snapshots; see
        // `crate::engine`), so transactions' reads are checked as such.
        rec.history.set_read_isolation(ReadIsolation::ReadCommitted);
        RunShared { cfg, cluster, rec: Mutex::new(rec) }
    }

    fn rec(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.rec.lock().expect("recorder")
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

async fn query<S: sluice::net::Stream>(c: &mut BackendConn<S>, sql: &str, t: Duration) -> Result<TextResult, Fail> {
    match tokio::time::timeout(t, c.query(sql)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(Fail::Unknown(0, "client timeout".into())),
    }
}

fn cell(r: &TextResult, row: usize, col: usize) -> Option<String> {
    r.rows.get(row)?.get(col)?.as_ref().map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Parses `SELECT v, @@server_id, @@read_only …`: the value and who served it.
fn parse_read(r: &TextResult) -> Result<(Option<Val>, Option<Backend>), Fail> {
    if r.rows.is_empty() {
        return Ok((None, None));
    }
    let v = cell(r, 0, 0).and_then(|s| s.parse::<Val>().ok()).ok_or_else(|| Fail::Unknown(0, "unparsable row".into()))?;
    let backend = match (cell(r, 0, 1).and_then(|s| s.parse::<u32>().ok()), cell(r, 0, 2)) {
        (Some(id), Some(ro)) if id >= 1 => {
            let role = if ro == "0" { Role::Primary } else { Role::Replica };
            Some(Backend::new(format!("db{}", id - 1), Some(role)))
        }
        _ => None,
    };
    Ok((Some(v), backend))
}

fn write_sql(key: &str, v: Val) -> String {
    format!("INSERT INTO kv (k, v, n) VALUES ('{key}', {v}, 1) ON DUPLICATE KEY UPDATE v = {v}, n = n + 1")
}

fn read_sql(key: &str) -> String {
    format!("SELECT v, @@server_id, @@read_only FROM kv WHERE k = '{key}'")
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
}

impl Client {
    fn new(shared: Arc<RunShared>, id: u32) -> Client {
        let seed = shared.cfg.seed;
        let timeout = Duration::from_millis(shared.cfg.op_timeout_ms);
        Client {
            shared,
            id,
            rng: rng_for(seed, "client", id as u64),
            auth_rng: Arc::new(Mutex::new(rng_for(seed, "client-auth", id as u64))),
            origin: Instant::now(),
            next_value: 0,
            timeout,
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

    fn invoke(&self, session: SessionRef, op: Op, meta: OpMeta) -> OpId {
        let at = self.now();
        self.shared.rec().history.invoke(session, op, meta, at)
    }

    fn complete(&self, id: OpId, outcome: Outcome) {
        let at = self.now();
        self.shared.rec().history.complete(id, outcome, at);
    }

    /// A single write; returns whether the connection is still usable.
    async fn write<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>, session: SessionRef, key: String) -> Result<(), Fail> {
        let v = self.value();
        let id = self.invoke(session, Op::write(key.clone(), v), OpMeta::primary());
        self.shared.rec().writes_in_flight.insert(self.id);
        let r = query(c, &write_sql(&key, v), self.timeout).await;
        self.shared.rec().writes_in_flight.remove(&self.id);
        match r {
            Ok(_) => {
                self.complete(id, Outcome::Ok(OpResult::Written));
                Ok(())
            }
            Err(f) => {
                self.complete(id, f.outcome());
                Err(f)
            }
        }
    }

    /// A single read through the proxy.
    async fn read<S: sluice::net::Stream>(&mut self, c: &mut BackendConn<S>, session: SessionRef) -> Result<(), Fail> {
        let key = self.key();
        let id = self.invoke(session, Op::read(key.clone()), OpMeta::primary());
        let r = query(c, &read_sql(&key), self.timeout).await.and_then(|r| parse_read(&r));
        match r {
            Ok((v, backend)) => {
                let mut rec = self.shared.rec();
                if let Some(b) = backend {
                    if b.role == Some(Role::Replica) {
                        rec.cov.proxy_reads_on_non_primary += 1;
                        rec.cov.replica_reads += 1;
                    }
                    rec.history.note_backend(id, b);
                }
                let at = self.now();
                rec.history.complete(id, Outcome::Ok(OpResult::Read(v)), at);
                Ok(())
            }
            Err(f) => {
                self.complete(id, f.outcome());
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
                self.complete(id, Outcome::Ok(OpResult::Txn { committed, results }));
                Ok(())
            }
            Err((outcome, f)) => {
                self.complete(id, outcome);
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
        let before_commit = |f: Fail| {
            let (code, m) = match &f {
                Fail::Definite(c, m) | Fail::Unknown(c, m) => (if *c == 0 { 2013 } else { *c }, m.clone()),
            };
            (Outcome::Err { code, message: format!("before COMMIT: {m}"), definite: true }, f)
        };
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
}

/// A workload client: runs operations through the proxy until the workload's end.
pub async fn run_client<N: Net>(net: N, shared: Arc<RunShared>, id: u32) {
    let mut cl = Client::new(shared.clone(), id);
    let mut conn: Option<BackendConn<N::Stream>> = None;
    let mut conn_no = 0u64;
    let start = cl.rng.gen_range(0..200);
    tokio::time::sleep(Duration::from_millis(start)).await;
    while cl.running() {
        let mut c = match conn.take() {
            Some(c) => c,
            None => {
                conn_no += 1;
                match cl.connect(&net, PROXY_ADDR).await {
                    Some(c) => c,
                    None => {
                        let ms = cl.rng.gen_range(50..300);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        continue;
                    }
                }
            }
        };
        let session = SessionRef::new(id, conn_no);
        let roll = cl.rng.gen_range(0..100);
        let r = if roll < shared.cfg.write_pct {
            let key = cl.key();
            cl.write(&mut c, session, key).await
        } else if roll < shared.cfg.write_pct + shared.cfg.read_pct {
            cl.read(&mut c, session).await
        } else {
            cl.txn(&mut c, session).await
        };
        match r {
            Ok(()) => conn = Some(c),
            Err(f) if f.keeps_connection() => conn = Some(c),
            Err(_) => drop(c),
        }
        cl.think().await;
    }
    if let Some(c) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(1), c.quit()).await;
    }
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
                let (Some(pc), Some(rc)) = (cl.connect(&net, PROXY_ADDR).await, cl.connect(&net, &addr).await) else {
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
    let pos_sql = match flavour {
        Flavour::MariaDb => "SELECT @@gtid_binlog_pos",
        Flavour::MySql8 => "SELECT @@gtid_executed",
    };
    let Ok(pos) = query(pc, pos_sql, cl.timeout).await else { return false };
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
    let id = cl.invoke(session, Op::read(key.clone()), OpMeta::any());
    match query(rc, &read_sql(&key), cl.timeout).await.and_then(|res| parse_read(&res)) {
        Ok((v, backend)) => {
            let mut rec = cl.shared.rec();
            let b = backend.unwrap_or_else(|| Backend::new(format!("db{r}"), None));
            if b.role == Some(Role::Replica) {
                rec.cov.replica_reads += 1;
            }
            rec.history.note_backend(id, b);
            let at = cl.now();
            rec.history.complete(id, Outcome::Ok(OpResult::Read(v)), at);
            true
        }
        Err(f) => {
            cl.complete(id, f.outcome());
            f.keeps_connection()
        }
    }
}
