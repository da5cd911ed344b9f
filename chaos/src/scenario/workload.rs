//! The recorded client workload of a chaos scenario: concurrent sessions through Sluice
//! writing unique values to a small set of registers, reading them back (often right
//! after their own write), and running short transactions, each operation recorded in
//! a [`sim::history::History`] for `sim`'s checkers.
//!
//! Statements (table `test.kv(k PRIMARY KEY, v)`, see [`SCHEMA`]):
//!
//! * write: `INSERT INTO kv VALUES ('k7', 123) ON DUPLICATE KEY UPDATE v = VALUES(v)`;
//!   every value is unique across the run;
//! * read: `SELECT (SELECT v FROM kv WHERE k = 'k7'), @@server_id`: an ordinary read
//!   Sluice may route to a replica; `@@server_id` names the node that answered (node
//!   index + 1), and the run's topology timeline tells whether it was the primary then;
//! * transaction: `BEGIN`, 2–3 reads and writes on distinct keys, `COMMIT` (one in ten
//!   `ROLLBACK`).
//!
//! How an error is recorded (Sluice's codes, `docs/failover.md`, "Safe retry"): 1429
//! (no primary within the buffer window: never sent) and the server's own statement
//! errors (1290 read-only, 1213 deadlock, 1205 lock wait) are definite failures; 1317
//! (outcome unknown), any error of a `COMMIT`, a lost connection or a client-side
//! timeout leave the outcome unknown; a transaction that fails before its `COMMIT` was
//! sent was certainly not applied. After any error other than a definite statement
//! error the session reconnects (a new [`SessionRef`] connection number).
//!
//! The table has a trigger that appends every applied `(k, v)` to `kv_log` in apply
//! order (an `AUTO_INCREMENT` sequence, taken under the row lock of `k`): read back
//! from each node at the end, it is the applied log the checkers use to tell lost and
//! duplicated writes apart from overwritten ones.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::history::{Backend, Consistency, History, Op, OpId, OpMeta, OpResult, Outcome, SessionRef, TxnOp, TxnOpResult, Val};

/// Creates the workload's tables on the primary (run as root: the trigger needs it).
pub const SCHEMA: &str = "\
DROP TABLE IF EXISTS test.kv, test.kv_log;
CREATE TABLE test.kv (k VARCHAR(16) PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB;
CREATE TABLE test.kv_log (seq BIGINT AUTO_INCREMENT PRIMARY KEY, k VARCHAR(16) NOT NULL, v BIGINT NOT NULL) ENGINE=InnoDB;
CREATE TRIGGER test.kv_ins AFTER INSERT ON test.kv FOR EACH ROW INSERT INTO test.kv_log (k, v) VALUES (NEW.k, NEW.v);
CREATE TRIGGER test.kv_upd AFTER UPDATE ON test.kv FOR EACH ROW INSERT INTO test.kv_log (k, v) VALUES (NEW.k, NEW.v);
";

/// Which node was the primary over the run: `(microseconds since start, node)` samples,
/// `None` when no single node was (during a failover, or with a node paused).
#[derive(Clone, Default)]
pub struct Timeline(Arc<Mutex<Vec<Sample>>>);

/// When (microseconds since the start) and which node was the primary.
type Sample = (u64, Option<usize>);

impl Timeline {
    pub fn push(&self, at: u64, primary: Option<usize>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((at, primary));
    }

    /// Whether `node` was the primary at every sample from the last one at or before
    /// `from` up to and including the first one after `to` (so a role change between
    /// two samples is never missed).
    pub fn primary_throughout(&self, node: usize, from: u64, to: u64) -> bool {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let start = match s.iter().rposition(|(at, _)| *at <= from) {
            Some(i) => i,
            None => return false,
        };
        let mut last = false;
        for (at, p) in &s[start..] {
            if *p != Some(node) {
                return false;
            }
            if *at > to {
                last = true;
                break;
            }
        }
        last
    }
}

/// What the workload shares between its sessions.
pub struct Shared {
    pub history: Mutex<History>,
    pub start: Instant,
    pub stop: AtomicBool,
    next_value: AtomicU64,
    pub timeline: Timeline,
    /// Errors by code (`io`, `timeout`, `driver` for client-side ones).
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Failed connection attempts (Sluice down or restarting), not operations.
    pub connect_failures: AtomicU64,
}

impl Shared {
    pub fn new(timeline: Timeline) -> Arc<Shared> {
        Arc::new(Shared {
            history: Mutex::new(History::new()),
            start: Instant::now(),
            stop: AtomicBool::new(false),
            next_value: AtomicU64::new(1),
            timeline,
            errors: Mutex::new(BTreeMap::new()),
            connect_failures: AtomicU64::new(0),
        })
    }

    /// Microseconds since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_error(&self, code: String) {
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(code).or_default() += 1;
    }
}

/// Workload shape.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub clients: u32,
    pub keys: u32,
    pub seed: u64,
    /// Longest wait for one statement before the client gives up (outcome unknown).
    pub statement_timeout: Duration,
    /// Pause between a session's operations.
    pub think: Duration,
}

/// How one failed statement is recorded and what the session does next.
struct Fail {
    code: String,
    /// The statement certainly had no effect.
    definite: bool,
    /// The session must reconnect.
    reconnect: bool,
    message: String,
}

fn fail_of(e: mysql_async::Error) -> Fail {
    match e {
        mysql_async::Error::Server(s) => {
            let code = s.code;
            // 1429: never sent (buffer bound or window). 1290/1213/1205/1062…: the
            // server refused or rolled back the statement. 1317 (outcome unknown) and
            // 1927 (connection killed, transaction cut) leave the outcome open and end
            // what the session can rely on.
            let unknown = matches!(code, 1317 | 1927 | 2013 | 1053);
            Fail { code: code.to_string(), definite: !unknown, reconnect: unknown || code == 1429, message: s.message }
        }
        mysql_async::Error::Io(e) => Fail { code: "io".into(), definite: false, reconnect: true, message: e.to_string() },
        other => Fail { code: "driver".into(), definite: false, reconnect: true, message: other.to_string() },
    }
}

fn timeout_fail() -> Fail {
    Fail { code: "timeout".into(), definite: false, reconnect: true, message: "no answer within the client's statement timeout".into() }
}

fn outcome_of(f: &Fail, definite: bool) -> Outcome {
    match f.code.parse::<u16>() {
        Ok(code) => Outcome::Err { code, message: f.message.clone(), definite },
        Err(_) if definite => Outcome::Err { code: 0, message: format!("{}: {}", f.code, f.message), definite: true },
        Err(_) => Outcome::Unknown,
    }
}

/// Runs one client session until `shared.stop`: `client` is its number, `port` Sluice's.
pub async fn client(shared: Arc<Shared>, spec: WorkloadSpec, client: u32, port: u16) {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ (u64::from(client) << 32));
    let mut conn_no = 0u64;
    'session: while !shared.stop.load(Ordering::Relaxed) {
        let mut c = match connect(port, spec.statement_timeout).await {
            Ok(c) => c,
            Err(_) => {
                shared.connect_failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        conn_no += 1;
        let session = SessionRef::new(client, conn_no);
        // A key this session wrote last, read back next half of the time.
        let mut read_back: Option<String> = None;
        while !shared.stop.load(Ordering::Relaxed) {
            let roll = rng.gen_range(0..100);
            let keep = if let (Some(key), true) = (read_back.take(), roll < 30) {
                read(&shared, &spec, &mut c, session, key).await
            } else if roll < 45 {
                let key = format!("k{}", rng.gen_range(0..spec.keys));
                read(&shared, &spec, &mut c, session, key).await
            } else if roll < 85 {
                let key = format!("k{}", rng.gen_range(0..spec.keys));
                let (keep, acked) = write(&shared, &spec, &mut c, session, key.clone()).await;
                if acked && rng.gen_bool(0.5) {
                    read_back = Some(key);
                }
                keep
            } else {
                txn(&shared, &spec, &mut c, session, &mut rng).await
            };
            if !keep {
                let _ = tokio::time::timeout(Duration::from_secs(1), c.disconnect()).await;
                continue 'session;
            }
            if !spec.think.is_zero() {
                tokio::time::sleep(spec.think).await;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), c.disconnect()).await;
    }
}

async fn connect(port: u16, timeout: Duration) -> Result<mysql_async::Conn, ()> {
    let o = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app"))
        .db_name(Some("test"))
        .prefer_socket(false);
    match tokio::time::timeout(timeout, mysql_async::Conn::new(o)).await {
        Ok(Ok(c)) => Ok(c),
        _ => Err(()),
    }
}

async fn timed<T>(t: Duration, f: impl std::future::Future<Output = Result<T, mysql_async::Error>>) -> Result<T, Fail> {
    match tokio::time::timeout(t, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(fail_of(e)),
        Err(_) => Err(timeout_fail()),
    }
}

fn invoke(shared: &Shared, session: SessionRef, op: Op, meta: OpMeta) -> OpId {
    let at = shared.now();
    shared.history().invoke(session, op, meta, at)
}

/// Records a failure; returns whether the session keeps its connection.
fn failed(shared: &Shared, id: OpId, f: Fail, definite: bool) -> bool {
    shared.count_error(f.code.clone());
    let at = shared.now();
    shared.history().complete(id, outcome_of(&f, definite), at);
    !f.reconnect
}

fn value(shared: &Shared) -> Val {
    shared.next_value.fetch_add(1, Ordering::Relaxed)
}

/// One write: whether the session keeps its connection, and whether it was acknowledged.
async fn write(shared: &Shared, spec: &WorkloadSpec, c: &mut mysql_async::Conn, session: SessionRef, key: String) -> (bool, bool) {
    let v = value(shared);
    let id = invoke(shared, session, Op::write(key.clone(), v), OpMeta::primary());
    let sql = format!("INSERT INTO kv VALUES ('{key}', {v}) ON DUPLICATE KEY UPDATE v = VALUES(v)");
    match timed(spec.statement_timeout, c.query_drop(sql)).await {
        Ok(()) => {
            let at = shared.now();
            shared.history().complete(id, Outcome::Ok(OpResult::Written), at);
            (true, true)
        }
        Err(f) => {
            let definite = f.definite;
            (failed(shared, id, f, definite), false)
        }
    }
}

/// One read outside a transaction, with the node that served it.
async fn read(shared: &Shared, spec: &WorkloadSpec, c: &mut mysql_async::Conn, session: SessionRef, key: String) -> bool {
    let id = invoke(shared, session, Op::read(key.clone()), OpMeta::any().at_level(Consistency::Session));
    let invoked = shared.now();
    let sql = format!("SELECT (SELECT v FROM kv WHERE k = '{key}'), @@server_id");
    match timed(spec.statement_timeout, c.query_first::<(Option<u64>, u32), _>(sql)).await {
        Ok(Some((v, server_id))) => {
            let at = shared.now();
            let node = server_id.saturating_sub(1) as usize;
            let primary = shared.timeline.primary_throughout(node, invoked, at);
            let name = format!("db{node}");
            let mut h = shared.history();
            if primary {
                h.note_backend(id, Backend::primary(name));
            } else {
                // Served by a replica (or by a node whose role was changing): held to
                // what the session level promises, not to the primary's guarantees.
                h.note_backend(id, Backend::replica(name));
                h.mark_eventual(id);
            }
            h.complete(id, Outcome::Ok(OpResult::Read(v)), at);
            true
        }
        Ok(None) => {
            let f = Fail { code: "driver".into(), definite: false, reconnect: true, message: "a read returned no row".into() };
            failed(shared, id, f, true)
        }
        Err(f) => failed(shared, id, f, true),
    }
}

/// A transaction of 2–3 statements on distinct keys; one in ten ends in ROLLBACK.
async fn txn(shared: &Shared, spec: &WorkloadSpec, c: &mut mysql_async::Conn, session: SessionRef, rng: &mut ChaCha8Rng) -> bool {
    let n = rng.gen_range(2..=3usize);
    let mut keys: Vec<u32> = Vec::new();
    while keys.len() < n.min(spec.keys as usize) {
        let k = rng.gen_range(0..spec.keys);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let ops: Vec<TxnOp> = keys
        .iter()
        .map(|k| if rng.gen_bool(0.5) { TxnOp::write(format!("k{k}"), value(shared)) } else { TxnOp::read(format!("k{k}")) })
        .collect();
    let rollback = rng.gen_ratio(1, 10);
    let id = invoke(shared, session, Op::txn(ops.clone()), OpMeta::primary());
    let t = spec.statement_timeout;
    // Anything failing before COMMIT is sent: the transaction cannot have committed.
    let body = async {
        timed(t, c.query_drop("BEGIN")).await?;
        let mut results = Vec::with_capacity(ops.len());
        for op in &ops {
            match op {
                TxnOp::Write { key, value } => {
                    let sql = format!("INSERT INTO kv VALUES ('{key}', {value}) ON DUPLICATE KEY UPDATE v = VALUES(v)");
                    timed(t, c.query_drop(sql)).await?;
                    results.push(TxnOpResult::Written);
                }
                TxnOp::Read { key } => {
                    let sql = format!("SELECT v FROM kv WHERE k = '{key}'");
                    let v: Option<u64> = timed(t, c.query_first(sql)).await?;
                    results.push(TxnOpResult::Read(v));
                }
            }
        }
        Ok::<_, Fail>(results)
    };
    let results = match body.await {
        Ok(r) => r,
        Err(f) => {
            // The session may still be inside the transaction: end it (or reconnect).
            let keep = !f.reconnect && timed(t, c.query_drop("ROLLBACK")).await.is_ok();
            failed(shared, id, f, true);
            return keep;
        }
    };
    let end = if rollback { "ROLLBACK" } else { "COMMIT" };
    match timed(t, c.query_drop(end)).await {
        Ok(()) => {
            let at = shared.now();
            shared.history().complete(id, Outcome::Ok(OpResult::Txn { committed: !rollback, results }), at);
            true
        }
        Err(f) => {
            // A COMMIT that got no answer may have committed; 1429 was never sent.
            let definite = rollback || f.code == "1429";
            failed(shared, id, f, definite);
            false
        }
    }
}
