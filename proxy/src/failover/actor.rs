//! The failover actor: one task per Sluice that carries out the built-in manager's
//! decisions ([`super::manager`]) and planned switchovers (`SLUICE SWITCHOVER [TO
//! node]`), with SQL against the nodes as the `[failover]` account.
//!
//! One actor at a time over all Sluices: before it changes anything the actor takes the
//! MariaDB named lock `[failover] lock_name` (`GET_LOCK(name, 0)`) on every node it
//! reaches, and goes on only holding it on a majority of the configured nodes. Two
//! Sluices cannot both hold a majority, so at most one promotes; a Sluice that dies
//! mid-way drops its locks with its connections. Under the locks it reads every node
//! afresh: if one is already a writable non-replica (another Sluice, or an operator,
//! promoted it), it follows that instead.
//!
//! Statements used (MariaDB): [`MASTER_GTID_WAIT`](https://mariadb.com/kb/en/master_gtid_wait/),
//! [`STOP SLAVE`](https://mariadb.com/kb/en/stop-replica/), [`RESET SLAVE ALL`](https://mariadb.com/kb/en/reset-replica/),
//! [`CHANGE MASTER TO … MASTER_USE_GTID`](https://mariadb.com/kb/en/change-master-to/),
//! `SET GLOBAL read_only`, `KILL CONNECTION`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backend::conn::{connect, BackendConn, Login};
use crate::health::probe::{parse_channels, Prober, Probed};
use crate::health::state::{Flavour, Gtid, Topology};
use crate::health::tracker::Directive;
use crate::net::Net;
use crate::signal::Signal;

use super::manager::{self, CandidateFacts, Decision, Manager, Plan};

/// A `SLUICE SWITCHOVER` request: the target (`None`: the most advanced replica) and
/// where to send the outcome (a message for the client, or the error).
pub type SwitchoverRequest = (Option<String>, oneshot::Sender<Result<String, String>>);

/// How the actor works (from `[failover]` and `[backend]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Promote by itself when the primary dies (`manager = "builtin"`).
    pub builtin: bool,
    pub cooldown: Duration,
    /// Longest wait for a candidate to apply its relay log, or a switchover target to
    /// catch up.
    pub catch_up_timeout: Duration,
    /// Longest wait, in a switchover, for open transactions on the old primary to end.
    pub drain_timeout: Duration,
    /// Limit for one statement of the actor (connecting included).
    pub op_timeout: Duration,
    /// How long to wait before trying again after a promotion that could not be made.
    pub retry: Duration,
    pub lock_name: String,
    /// Account a former primary replicates with once re-pointed (`None`: it stays
    /// fenced, read-only, for an operator to re-point).
    pub replication: Option<(String, String)>,
}

/// The actor's inputs and outputs.
pub struct Actor<N: Net> {
    pub net: N,
    /// Every configured node.
    /// The configured nodes (a reload may change them).
    pub nodes: crate::signal::Signal<Vec<String>>,
    pub login: Login,
    pub settings: Settings,
    pub rng: Arc<Mutex<ChaCha8Rng>>,
    pub topology: Signal<Option<Topology>>,
    /// To the monitor's aggregator: hold the primary back, or take a promotion as done.
    pub directives: mpsc::Sender<Directive>,
    pub requests: mpsc::Receiver<SwitchoverRequest>,
    pub shutdown: Signal<bool>,
    /// Counters for stats.
    pub stats: Arc<Counters>,
}

/// What the actor did (for `SHOW SLUICE` and metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub failovers: std::sync::atomic::AtomicU64,
    pub switchovers: std::sync::atomic::AtomicU64,
    pub fenced: std::sync::atomic::AtomicU64,
    pub failed_attempts: std::sync::atomic::AtomicU64,
}

type Conn<N> = BackendConn<<N as Net>::Stream>;

impl<N: Net> Actor<N> {
    /// Runs until shutdown.
    pub async fn run(mut self) {
        let mut manager = Manager::new(manager::Settings { cooldown: self.settings.cooldown });
        let mut last_hold = String::new();
        let mut seen: Option<Topology> = None;
        let mut retry_at: Option<Instant> = None;
        loop {
            let topology = self.topology.clone();
            let changed = topology.wait_for(|t| t.is_some() && *t != seen);
            let shutdown = self.shutdown.clone();
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => return,
                req = self.requests.recv() => match req {
                    Some((target, reply)) => {
                        let outcome = self.switchover(&mut manager, target).await;
                        let _ = reply.send(outcome);
                        continue;
                    }
                    None => return,
                },
                _ = changed => {}
            }
            seen = self.topology.get();
            let Some(topo) = seen.clone() else { continue };
            if !self.settings.builtin {
                continue;
            }
            let now = Instant::now();
            if retry_at.is_some_and(|t| now < t) {
                continue;
            }
            match manager.decide(&topo, now) {
                Decision::Idle => last_hold.clear(),
                Decision::Hold(why) => {
                    if why != last_hold && !why.contains("cool-down") {
                        tracing::warn!(reason = %why, "failover held back");
                    }
                    last_hold = why;
                }
                Decision::Promote(plan) => {
                    last_hold.clear();
                    tracing::warn!(old = %plan.old, candidate = %plan.candidate, reason = %plan.why, "failover: promoting");
                    match self.failover(&mut manager, &plan).await {
                        Ok(msg) => tracing::warn!("failover: {msg}"),
                        Err(e) => {
                            self.stats.failed_attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::error!(error = %e, "failover attempt failed; trying again");
                            retry_at = Some(Instant::now() + self.settings.retry);
                        }
                    }
                }
                Decision::Fence { node, primary } => match self.fence(&node, &primary).await {
                    Ok(rejoined) => {
                        manager.record_fenced(&node, rejoined);
                        self.stats.fenced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(%node, error = %e, "fencing the old primary failed; trying again");
                        retry_at = Some(Instant::now() + self.settings.retry);
                    }
                },
            }
        }
    }

    async fn open(&self, addr: &str) -> Result<Conn<N>, String> {
        match tokio::time::timeout(self.settings.op_timeout, connect(&self.net, addr, &self.login, &self.rng)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("{addr}: {e}")),
            Err(_) => Err(format!("{addr}: connecting timed out")),
        }
    }

    /// Runs `sql` on `c` within the statement limit (or `limit`).
    async fn sql(&self, c: &mut Conn<N>, sql: &str, limit: Option<Duration>) -> Result<crate::backend::conn::TextResult, String> {
        let limit = limit.unwrap_or(self.settings.op_timeout);
        match tokio::time::timeout(limit, c.query(sql)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(format!("{}: {sql}: {e}", c.addr)),
            Err(_) => Err(format!("{}: {sql}: timed out after {limit:?}", c.addr)),
        }
    }

    async fn scalar(&self, c: &mut Conn<N>, sql: &str, limit: Option<Duration>) -> Result<Option<String>, String> {
        let r = self.sql(c, sql, limit).await?;
        Ok(r.rows.first().and_then(|row| row.first().cloned().flatten()).map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Opens a connection to each of `nodes` and takes the coordination lock on each it
    /// reaches; fails unless it holds the lock on a majority of the configured nodes.
    async fn lock(&self, nodes: &[String]) -> Result<Vec<Conn<N>>, String> {
        let mut held = Vec::new();
        let mut busy = Vec::new();
        let lock = format!("SELECT GET_LOCK({}, 0)", quote(&self.settings.lock_name));
        for addr in nodes {
            let Ok(mut c) = self.open(addr).await else { continue };
            match self.scalar(&mut c, &lock, None).await {
                Ok(Some(v)) if v == "1" => held.push(c),
                _ => {
                    busy.push(addr.clone());
                    c.quit().await;
                }
            }
        }
        let all = self.nodes.with(|n| n.len());
        let need = all / 2 + 1;
        if held.len() < need {
            let n = held.len();
            self.release(held).await;
            let busy = if busy.is_empty() { String::new() } else { format!("; held elsewhere on {}", busy.join(", ")) };
            return Err(format!("coordination lock '{}' taken on {n} of {} nodes, a majority is {need}{busy}", self.settings.lock_name, all));
        }
        Ok(held)
    }

    async fn release(&self, conns: Vec<Conn<N>>) {
        for c in conns {
            // Closing the connection releases its named locks.
            let _ = tokio::time::timeout(self.settings.op_timeout, c.quit()).await;
        }
    }

    /// Reads a locked node afresh (the monitor's probe).
    async fn fresh(&self, c: Conn<N>) -> (Conn<N>, Result<Probed, String>) {
        let mut p = Prober::new(c);
        let r = match tokio::time::timeout(self.settings.op_timeout, p.probe()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        (p.conn, r)
    }

    /// Promotes a replica of the dead primary `plan.old`.
    async fn failover(&mut self, manager: &mut Manager, plan: &Plan) -> Result<String, String> {
        let reach: Vec<String> = self.nodes.get().into_iter().filter(|a| *a != plan.old).collect();
        let conns = self.lock(&reach).await?;
        match self.failover_locked(manager, plan, conns).await {
            Ok((msg, conns)) => {
                self.release(conns).await;
                Ok(msg)
            }
            Err((e, conns)) => {
                self.release(conns).await;
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn failover_locked(&mut self, manager: &mut Manager, plan: &Plan, conns: Vec<Conn<N>>) -> Result<(String, Vec<Conn<N>>), (String, Vec<Conn<N>>)> {
        // Fresh reads under the lock.
        let mut nodes: Vec<(Conn<N>, Probed)> = Vec::new();
        let mut kept = Vec::new();
        for c in conns {
            let (c, r) = self.fresh(c).await;
            match r {
                Ok(p) => nodes.push((c, p)),
                Err(_) => kept.push(c),
            }
        }
        let back = |nodes: Vec<(Conn<N>, Probed)>, mut kept: Vec<Conn<N>>| {
            kept.extend(nodes.into_iter().map(|(c, _)| c));
            kept
        };
        if let Some((c, _)) = nodes.iter().find(|(_, p)| !p.read_only && p.channels.is_empty()) {
            let msg = format!("{} is already a writable primary (promoted elsewhere): following it", c.addr);
            return Ok((msg, back(nodes, kept)));
        }
        if let Some((c, _)) = nodes.iter().find(|(_, p)| p.channels.iter().any(|ch| manager::replicates_from(ch, &plan.old, plan.old_server_id) && ch.io_running())) {
            let msg = format!("{} still replicates from {} (IO thread connected): the primary is alive; no promotion", c.addr, plan.old);
            return Err((msg, back(nodes, kept)));
        }
        if nodes.iter().any(|(_, p)| matches!(p.gtid, Gtid::MySql { .. })) {
            return Err(("built-in promotion supports MariaDB only (MySQL-flavour nodes found)".into(), back(nodes, kept)));
        }
        let facts: Vec<CandidateFacts> = nodes
            .iter()
            .filter_map(|(c, p)| {
                let ch = p.channels.iter().find(|ch| manager::replicates_from(ch, &plan.old, plan.old_server_id))?;
                Some(CandidateFacts { addr: c.addr.clone(), position: manager::position_of(Flavour::MariaDb, Some(&p.gtid), &p.channels), usable: manager::usable(ch) })
            })
            .collect();
        let Some(best) = manager::choose(&facts).map(|f| f.addr.clone()) else {
            return Err((format!("no replica of {} can be promoted", plan.old), back(nodes, kept)));
        };
        // cannot fail: `best` is the address of one of `nodes`' facts.
        let i = nodes.iter().position(|(c, _)| c.addr == best).expect("chosen among them");
        // Apply the relay log: stop receiving, wait for what was received.
        let r: Result<(), String> = async {
            let c = &mut nodes[i].0;
            self.sql(c, "STOP SLAVE IO_THREAD", None).await?;
            let status = self.sql(c, "SHOW SLAVE STATUS", None).await?;
            let received = parse_channels(&status).first().map(|ch| ch.received_gtid.clone()).unwrap_or_default();
            self.wait_gtid(c, &received).await?;
            self.promote_sql(c).await
        }
        .await;
        if let Err(e) = r {
            // Leave it replicating as it was.
            let _ = self.sql(&mut nodes[i].0, "START SLAVE", None).await;
            return Err((e, back(nodes, kept)));
        }
        let _ = self.directives.send(Directive::Promoted { new: best.clone(), old: plan.old.clone() }).await;
        manager.record_promotion(&plan.old, &best, Instant::now());
        self.stats.failovers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut repointed = Vec::new();
        let mut failed = Vec::new();
        for (j, (c, p)) in nodes.iter_mut().enumerate() {
            if j == i || p.channels.is_empty() {
                continue;
            }
            match self.repoint(c, &best, None).await {
                Ok(()) => repointed.push(c.addr.clone()),
                Err(e) => failed.push(e),
            }
        }
        let mut msg = format!("promoted {best} in place of {} ({}); re-pointed [{}]", plan.old, plan.why, repointed.join(", "));
        if !failed.is_empty() {
            msg += &format!("; could not re-point: {}", failed.join("; "));
        }
        Ok((msg, back(nodes, kept)))
    }

    /// Waits until the node on `c` has applied `position` (MariaDB GTID text).
    async fn wait_gtid(&self, c: &mut Conn<N>, position: &str) -> Result<(), String> {
        if position.trim().is_empty() {
            return Ok(());
        }
        let secs = self.settings.catch_up_timeout.as_secs_f64();
        let sql = format!("SELECT MASTER_GTID_WAIT({}, {secs:.3})", quote(position));
        match self.scalar(c, &sql, Some(self.settings.catch_up_timeout + self.settings.op_timeout)).await?.as_deref() {
            Some("0") => Ok(()),
            other => Err(format!("{} did not reach {position} within {secs} s ({other:?})", c.addr)),
        }
    }

    /// Prepares a former primary on `c` to replicate: it replicates from its own binary
    /// log's position, and a semi-synchronous primary becomes a semi-synchronous replica
    /// (left a semi-sync primary, its replication thread's every commit would wait for an
    /// acknowledgement no one sends, until `rpl_semi_sync_master_timeout`).
    async fn demote_sql(&self, c: &mut Conn<N>) -> Result<(), String> {
        let semi = self.scalar(c, "SELECT @@rpl_semi_sync_master_enabled", None).await.ok().flatten();
        if semi.as_deref() == Some("1") {
            self.sql(c, "SET GLOBAL rpl_semi_sync_master_enabled = OFF", None).await?;
            self.sql(c, "SET GLOBAL rpl_semi_sync_slave_enabled = ON", None).await?;
        }
        self.sql(c, "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos", None).await?;
        Ok(())
    }

    /// Makes the node on `c` a primary: replication stopped and forgotten, writable,
    /// semi-synchronous as a primary if it was as a replica.
    async fn promote_sql(&self, c: &mut Conn<N>) -> Result<(), String> {
        let semi = self.scalar(c, "SELECT @@rpl_semi_sync_slave_enabled", None).await.ok().flatten();
        self.sql(c, "STOP SLAVE", None).await?;
        self.sql(c, "RESET SLAVE ALL", None).await?;
        self.sql(c, "SET GLOBAL read_only = OFF", None).await?;
        if semi.as_deref() == Some("1") {
            self.sql(c, "SET GLOBAL rpl_semi_sync_master_enabled = ON", None).await?;
        }
        Ok(())
    }

    /// Points the replica on `c` at `primary`, keeping its replication account unless
    /// `account` is given; from its own position (`slave_pos`).
    async fn repoint(&self, c: &mut Conn<N>, primary: &str, account: Option<&(String, String)>) -> Result<(), String> {
        let (host, port) = primary.rsplit_once(':').ok_or_else(|| format!("{primary}: not host:port"))?;
        self.sql(c, "STOP SLAVE", None).await?;
        let mut change = format!("CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {port}, MASTER_USE_GTID = slave_pos", quote(host));
        if let Some((user, password)) = account {
            change += &format!(", MASTER_USER = {}, MASTER_PASSWORD = {}", quote(user), quote(password));
        }
        self.sql(c, &change, None).await?;
        self.sql(c, "START SLAVE", None).await?;
        Ok(())
    }

    /// Fences `node` (an old primary writable again): read-only, its client connections
    /// killed; then, with a replication account and nothing the primary lacks, it
    /// replicates from `primary`. Returns whether it rejoined.
    async fn fence(&self, node: &str, primary: &str) -> Result<bool, String> {
        let mut c = self.open(node).await?;
        let r = self.fence_on(&mut c, node, primary).await;
        self.release(vec![c]).await;
        r
    }

    async fn fence_on(&self, c: &mut Conn<N>, node: &str, primary: &str) -> Result<bool, String> {
        // Clients first: a commit still waiting there (for a semi-synchronous
        // acknowledgement, say) would hold `SET GLOBAL read_only` back until it finished
        // and answered OK for a write the new primary never got. Killed, its client learns
        // the outcome is unknown. Then read-only, then once more for any client that
        // slipped in between.
        let mut killed = self.kill_clients(c).await;
        self.sql(c, "SET GLOBAL read_only = ON", None).await?;
        killed += self.kill_clients(c).await;
        tracing::warn!(%node, %primary, killed, "fenced the old primary: read-only, its client connections killed");
        let Some(account) = self.settings.replication.clone() else {
            tracing::warn!(%node, "the old primary stays fenced: no [failover] replication_user to re-point it with");
            return Ok(false);
        };
        let mine = self.scalar(c, "SELECT @@gtid_binlog_pos", None).await?.unwrap_or_default();
        let mut p = self.open(primary).await?;
        let theirs = self.scalar(&mut p, "SELECT @@gtid_binlog_state", None).await;
        self.release(vec![p]).await;
        let theirs = theirs?.unwrap_or_default();
        if !super::manager::binlog_state_covers(&theirs, &mine) {
            tracing::error!(%node, has = %mine, primary_has = %theirs, "the old primary has transactions the new one lacks: it stays fenced for an operator");
            return Ok(false);
        }
        self.demote_sql(c).await?;
        self.repoint(c, primary, Some(&account)).await?;
        tracing::warn!(%node, %primary, "the old primary rejoined as a replica");
        Ok(true)
    }

    /// Kills every client connection on the node of `c` but `c` (replication and system
    /// threads are left); returns how many.
    async fn kill_clients(&self, c: &mut Conn<N>) -> usize {
        let sql = "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER NOT IN ('system user', 'event_scheduler') AND COMMAND NOT IN ('Binlog Dump', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker')";
        let Ok(r) = self.sql(c, sql, None).await else { return 0 };
        let mut n = 0;
        for row in r.rows {
            let Some(Some(id)) = row.first() else { continue };
            let id = String::from_utf8_lossy(id).into_owned();
            if id.bytes().all(|b| b.is_ascii_digit()) && self.sql(c, &format!("KILL CONNECTION {id}"), None).await.is_ok() {
                n += 1;
            }
        }
        n
    }

    /// A planned switchover to `target` (or the most advanced readable replica).
    async fn switchover(&mut self, manager: &mut Manager, target: Option<String>) -> Result<String, String> {
        let topo = self.topology.get().ok_or("no topology yet")?;
        let old = topo.primary.clone().ok_or("no primary to switch over from")?;
        let target = match target {
            Some(t) => {
                let t = self.nodes.get().into_iter().find(|a| manager::same_node(a, &t)).ok_or_else(|| format!("{t} is not a configured node"))?;
                let n = topo.nodes.get(&t).ok_or_else(|| format!("{t} is unknown"))?;
                if t == old {
                    return Err(format!("{t} is already the primary"));
                }
                if !n.readable {
                    return Err(format!("{t} is not a healthy replica ({})", n.unreadable_because.clone().unwrap_or_default()));
                }
                t
            }
            None => {
                let old_id = topo.nodes.get(&old).and_then(|n| n.server_id);
                let facts: Vec<CandidateFacts> = topo.readable().filter_map(|(a, n)| CandidateFacts::of(a, n, &old, old_id)).collect();
                manager::choose(&facts).map(|f| f.addr.clone()).ok_or("no healthy replica to switch over to")?
            }
        };
        let conns = self.lock(&self.nodes.get()).await?;
        let started = Instant::now();
        let _ = self.directives.send(Directive::Hold(true)).await;
        let r = self.switchover_locked(manager, &old, &target, conns).await;
        let _ = self.directives.send(Directive::Hold(false)).await;
        let (r, conns) = match r {
            Ok((msg, conns)) => (Ok(msg), conns),
            Err((e, conns)) => (Err(e), conns),
        };
        self.release(conns).await;
        match &r {
            Ok(m) => tracing::warn!(took_ms = started.elapsed().as_millis() as u64, "switchover: {m}"),
            Err(e) => tracing::error!(error = %e, "switchover failed; the primary is unchanged"),
        }
        r
    }

    #[allow(clippy::type_complexity)]
    async fn switchover_locked(&mut self, manager: &mut Manager, old: &str, target: &str, mut conns: Vec<Conn<N>>) -> Result<(String, Vec<Conn<N>>), (String, Vec<Conn<N>>)> {
        let Some(o) = conns.iter().position(|c| c.addr == old) else { return Err((format!("{old} (the primary) did not answer"), conns)) };
        let Some(t) = conns.iter().position(|c| c.addr == target) else { return Err((format!("{target} did not answer"), conns)) };
        // Open transactions on the old primary end (new primary-bound statements wait in
        // the failover buffer meanwhile).
        let deadline = Instant::now() + self.settings.drain_timeout;
        let open_sql = "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id <> CONNECTION_ID()";
        // The server refreshes INNODB_TRX only when it was not read for 100 ms: reading
        // it more often would see the same stale rows, and a first read right away
        // could miss a transaction that began just now.
        let every = Duration::from_millis(110);
        loop {
            tokio::time::sleep(every).await;
            match self.scalar(&mut conns[o], open_sql, None).await {
                Ok(Some(n)) if n == "0" => break,
                Ok(_) if Instant::now() < deadline => {}
                Ok(n) => {
                    tracing::warn!(open = ?n, "switchover: transactions still open on the old primary after the drain timeout; their COMMIT will fail (read-only)");
                    break;
                }
                Err(e) => return Err((e, conns)),
            }
        }
        let wait = self.settings.op_timeout.as_secs().max(1);
        let r = async {
            self.sql(&mut conns[o], &format!("SET SESSION lock_wait_timeout = {wait}"), None).await?;
            self.sql(&mut conns[o], "SET GLOBAL read_only = ON", None).await?;
            let pos = self.scalar(&mut conns[o], "SELECT @@gtid_binlog_pos", None).await?.unwrap_or_default();
            self.wait_gtid(&mut conns[t], &pos).await?;
            self.sql(&mut conns[t], "STOP SLAVE IO_THREAD", None).await?;
            self.promote_sql(&mut conns[t]).await
        }
        .await;
        if let Err(e) = r {
            // Back as it was: the old primary writable, the target replicating.
            let _ = self.sql(&mut conns[o], "SET GLOBAL read_only = OFF", None).await;
            let _ = self.sql(&mut conns[t], "START SLAVE", None).await;
            return Err((e, conns));
        }
        let _ = self.directives.send(Directive::Promoted { new: target.to_string(), old: old.to_string() }).await;
        manager.record_promotion(old, target, Instant::now());
        self.stats.switchovers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut notes = Vec::new();
        for (i, conn) in conns.iter_mut().enumerate() {
            if i == t {
                continue;
            }
            let addr = conn.addr.clone();
            let r = if i == o {
                match self.settings.replication.clone() {
                    Some(account) => match self.demote_sql(conn).await {
                        Ok(_) => self.repoint(conn, target, Some(&account)).await.map(|()| manager.record_fenced(old, true)),
                        Err(e) => Err(e),
                    },
                    None => Err("no [failover] replication_user: left read-only".into()),
                }
            } else {
                self.repoint(conn, target, None).await
            };
            match r {
                Ok(()) => notes.push(format!("{addr} follows")),
                Err(e) => notes.push(format!("{addr}: {e}")),
            }
        }
        Ok((format!("{target} is the primary in place of {old}; {}", notes.join("; ")), conns))
    }
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}
