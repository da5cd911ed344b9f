//! A session's backend connections: at most one per node, opened lazily with the
//! client's own login, brought to the session's state before each statement (schema,
//! replayed session `SET`s, COM_SET_OPTION), and the relay of one command's response
//! with a read deadline that also notices the client leaving.
//!
//! Relays responses per
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html>
//! through the [`ResponseTracker`], byte for byte.

use std::time::Duration;

use crate::backend::conn::BackendConn;
use crate::error::Error;
use crate::net::Stream;
use crate::protocol::conn::PacketConn;
use crate::protocol::constants::com;
use crate::protocol::packet::HEADER_LEN;
use crate::protocol::response::{Event, Expect, ResponseTracker, Summary};
use crate::protocol::rewrite::{ok_for_client, Strip};

use crate::pool::{ConnState, Lease, Lent, StmtCache};

use super::state::SessionState;

/// How many bytes of a client's next commands Sluice reads ahead while it waits for a
/// backend (to notice the client closing); beyond this it stops watching the client.
pub const CLIENT_READ_AHEAD: usize = 64 * 1024;

/// One node's connection of a session, and how far it follows the session's state.
pub struct NodeConn<S> {
    pub conn: BackendConn<S>,
    /// Entries of the session's replay log applied here (of generation `generation`).
    pub applied: usize,
    pub generation: u64,
    pub schema: Option<Vec<u8>>,
    pub set_option: Option<u16>,
    /// Sluice's GTID tracking statement ran here (and no later client statement may
    /// have changed what the connection tracks).
    pub tracking: bool,
    /// The node is MySQL (GTID sets, `session_track_gtids`), not MariaDB.
    pub mysql: bool,
    /// How OK packets from this connection are rewritten for the client (capabilities
    /// that differ, tracked entries the client did not ask for); `None`: byte for byte.
    pub rewrite: Option<OkRewrite>,
    /// What `LAST_INSERT_ID()` returns on this connection, if known.
    pub last_insert_id: Option<u64>,
    /// The prepared statements this connection holds (whichever session prepared them).
    pub stmts: StmtCache,
    /// The connection's place in its node's pool (returned with it).
    pub lease: Option<Lease>,
    /// It holds session state of someone else that Sluice cannot match: send
    /// COM_RESET_CONNECTION before anything else.
    pub reset_first: bool,
    /// Set while a statement sent to the node as the primary waits for its answer: the
    /// wait ends when another node becomes the primary (see [`CutWhenDeposed`]).
    pub cut: Option<CutWhenDeposed>,
    /// Set while a statement of a transaction kept for replay runs: digests the answer
    /// as the client sees it (`failover::replay`).
    pub digest: Option<crate::failover::replay::Digester>,
    /// The connection's diagnostics area may hold warnings or an error of this
    /// session (its last statement here left some): reset before another session
    /// uses it, or that session's `SHOW WARNINGS` would show them.
    pub diagnostics: bool,
    /// Set while a statement a query rule caps (`max_rows`, `max_bytes`) runs.
    pub cap: Option<ResultCap>,
    /// The connection's `ROW_COUNT()` is the session's: it ran the session's last
    /// statement and nothing since (or Sluice set it there, [`row_count_sql`]).
    pub row_count_own: bool,
}

/// A query rule's bound on what one statement's answer may carry
/// (`[[rules]] max_rows`, `max_bytes`; `crate::rules`). Rows within it pass through;
/// instead of the first row past it the client gets `error` (an ERR packet may replace
/// a row, as the server's own for a statement killed mid-result). The rest of the
/// answer is read and dropped, so the connection stays usable; when it does not end
/// within [`KILL_CAPPED_AFTER`], `kill` (a `KILL QUERY` for the statement) runs.
pub struct ResultCap {
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
    /// `(code, SQL state, message)` for the client.
    pub error: (u16, &'static str, String),
    pub kill: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    pub counters: std::sync::Arc<crate::rules::RuleCounters>,
}

/// How long the rest of a capped answer may take to arrive before its statement is
/// killed (most capped answers are already in flight whole, and need no kill).
pub const KILL_CAPPED_AFTER: Duration = Duration::from_millis(50);

/// Ends a wait for a primary's answer once the monitor has published another node as
/// the primary (the old one was declared dead or hung and replaced, so its answer, if it
/// ever comes, is not one to pass on: an OK from a deposed primary would acknowledge a
/// write the new primary never got), or has found the node dead. The statement ends as a lost
/// connection whose outcome is unknown (error 1317; 1927 in a transaction; a read that
/// sent nothing to the client yet is run again on the new topology).
#[derive(Clone)]
pub struct CutWhenDeposed {
    pub topology: crate::signal::Signal<Option<crate::backend::topology::Topology>>,
    /// Shared, so the session's cached copy is cloned per statement without allocating.
    pub addr: std::sync::Arc<str>,
}

impl CutWhenDeposed {
    /// Returns once a node other than this one is the published primary, or this node
    /// is published down as *dead* (its connections refused or reset: the server that
    /// got the statement is gone, and a crashed host's connections may never be reset —
    /// a wait on one would hold its pooled connection until `backend.read_timeout_ms`,
    /// starving the pool when the node comes back). A node down because its probes
    /// *timed out* may only be slow or hung: that alone does not end the wait.
    pub async fn deposed(&self) {
        self.topology
            .wait_for(|t| {
                t.as_ref().is_some_and(|t| {
                    let replaced = t.primary.as_deref().is_some_and(|p| p != &*self.addr);
                    let dead = t.nodes.get(&*self.addr).is_some_and(|n| matches!(&n.observation, crate::health::Observation::Down { error } if probe_error_means_dead(error)));
                    replaced || dead
                })
            })
            .await
    }
}

/// A statement that leaves `ROW_COUNT()` at `n` on a connection and changes nothing
/// else the session can see, where one exists: `DO 0` for 0 (any statement that is
/// neither DML nor a result set), a `SELECT` keeping `FOUND_ROWS()` at `found_rows`
/// for -1. An affected-row count cannot be made without changing data (`None`).
pub fn row_count_sql(n: i64, found_rows: u64) -> Option<String> {
    match n {
        0 => Some("DO 0".into()),
        -1 => Some(found_rows_sql(found_rows)),
        _ => None,
    }
}

/// A statement that leaves `FOUND_ROWS()` at `n` on a connection and sends no rows:
/// `SQL_CALC_FOUND_ROWS` over exactly `n` rows of a product of digit tables, `LIMIT 0`.
pub fn found_rows_sql(n: u64) -> String {
    if n == 0 {
        return "SELECT SQL_CALC_FOUND_ROWS 1 FROM DUAL WHERE 0 LIMIT 0".into();
    }
    let digits = n.to_string().len();
    let table = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let from: Vec<String> = (0..digits).map(|i| format!("{table} t{i}")).collect();
    let sum: Vec<String> = (0..digits).map(|i| format!("t{i}.d * {}", 10u64.pow(i as u32))).collect();
    format!("SELECT SQL_CALC_FOUND_ROWS 1 FROM {} WHERE {} < {n} LIMIT 0", from.join(", "), sum.join(" + "))
}

/// COM_SET_OPTION's value for what the handshake's capabilities set: multi-statements
/// on (0) or off (1).
fn default_option(caps: u32) -> u16 {
    if caps & crate::protocol::constants::cap::MULTI_STATEMENTS != 0 { 0 } else { 1 }
}

/// The COM_SET_OPTION value that never matches a real one (the option's state is not
/// known after a reset): the next sync sends the session's.
const UNKNOWN_OPTION: u16 = 0xFFFF;

/// What the relay does to OK packets on their way to the client
/// ([`crate::protocol::rewrite::ok_for_client`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkRewrite {
    pub client_caps: u32,
    pub strip: Strip,
}

impl<S: Stream> NodeConn<S> {
    pub fn new(conn: BackendConn<S>, schema: Option<Vec<u8>>, state: &SessionState) -> Self {
        let mysql = crate::health::Flavour::of(&String::from_utf8_lossy(&conn.server_version))
            == crate::health::Flavour::MySql;
        NodeConn {
            conn,
            applied: 0,
            generation: state.replay_generation,
            schema,
            set_option: None,
            tracking: false,
            mysql,
            rewrite: None,
            last_insert_id: Some(0),
            stmts: StmtCache::default(),
            lease: None,
            reset_first: false,
            cut: None,
            digest: None,
            diagnostics: false,
            cap: None,
            row_count_own: false,
        }
    }

    /// A connection lent by a pool, matched against the session's state: if what it
    /// applied is a prefix of the session's replay log only the rest is replayed;
    /// otherwise it is reset first (COM_RESET_CONNECTION) and gets everything.
    pub fn leased(lent: Lent<S>, state: &SessionState, ignore_state: bool) -> Self {
        let Lent { conn, lease, state: cs, .. } = lent;
        let mut nc = NodeConn::new(conn, cs.schema.clone(), state);
        let prefix = ignore_state || (!cs.dirty && cs.replay_len <= state.replay.len() && state.replay_fingerprint(cs.replay_len) == cs.replay_hash);
        nc.lease = Some(lease);
        if prefix {
            nc.applied = cs.replay_len;
            nc.set_option = cs.set_option;
            nc.tracking = cs.tracking;
            nc.last_insert_id = cs.last_insert_id;
            nc.stmts = cs.stmts;
        } else {
            // The server keeps the current schema through a reset and drops the rest.
            nc.reset_first = true;
            nc.applied = 0;
            nc.set_option = cs.set_option.map(|_| UNKNOWN_OPTION);
            nc.tracking = false;
            nc.last_insert_id = Some(0);
        }
        nc
    }

    /// What the pool keeps of this connection when it goes back: relative to the
    /// session's state `state`, which it followed up to `applied`.
    pub fn into_pooled(self, state: &SessionState) -> (BackendConn<S>, Option<Lease>, ConnState) {
        let in_step = !self.reset_first && self.generation == state.replay_generation && self.applied <= state.replay.len();
        let cs = ConnState {
            replay_len: if in_step { self.applied } else { 0 },
            replay_hash: if in_step { state.replay_fingerprint(self.applied) } else { 0 },
            schema: self.schema,
            set_option: self.set_option,
            tracking: self.tracking,
            last_insert_id: self.last_insert_id,
            dirty: !in_step || self.diagnostics,
            stmts: self.stmts,
        };
        (self.conn, self.lease, cs)
    }

    /// Whether this connection lags behind the session state (or should track GTIDs
    /// and does not yet).
    pub fn needs_sync(&self, state: &SessionState, track: bool, lid: Option<u64>) -> bool {
        self.reset_first
            || (lid.is_some() && self.last_insert_id != lid)
            || (track && !self.tracking)
            || self.generation != state.replay_generation
            || self.applied < state.replay.len()
            || (state.schema.is_some() && self.schema != state.schema)
            || self.option_differs(state)
    }

    /// The multi-statement option the session wants differs from the connection's
    /// (each defaults to what the handshake's capabilities say).
    fn option_differs(&self, state: &SessionState) -> bool {
        let default = default_option(self.conn.caps);
        state.set_option.unwrap_or(default) != self.set_option.unwrap_or(default)
    }

    /// The server reset this connection's session (COM_RESET_CONNECTION or
    /// COM_CHANGE_USER relayed for the client) and the session's state was reset too.
    pub fn after_server_reset(&mut self, state: &SessionState) {
        self.stmts.clear();
        self.last_insert_id = Some(0);
        self.tracking = false;
        self.set_option = self.set_option.map(|_| UNKNOWN_OPTION);
        self.mark_synced(state);
    }

    /// Marks this connection as fully in step (it just ran the statement that made
    /// the state what it is).
    pub fn mark_synced(&mut self, state: &SessionState) {
        self.generation = state.replay_generation;
        self.applied = state.replay.len();
        self.schema = state.schema.clone();
        if state.set_option.is_some() {
            self.set_option = state.set_option;
        }
    }
}

/// How a relay failed.
#[derive(Debug)]
pub struct RelayError {
    pub error: Error,
    /// Some of the response reached the client (the session cannot continue).
    pub forwarded: bool,
    /// The backend connection is unusable (lost, timed out, out of step).
    pub backend_lost: bool,
}

impl RelayError {
    fn client(e: std::io::Error) -> Self {
        RelayError { error: Error::ClientIo(e), forwarded: true, backend_lost: true }
    }
}

/// What woke a wait for backend bytes.
enum Filled {
    Bytes(usize),
    BackendErr(std::io::Error),
    ClientLeft(std::io::Error),
    TimedOut,
    /// Another node became the primary (see [`CutWhenDeposed`]).
    Deposed,
}

/// How long a wait for backend bytes goes before Sluice also watches the client's
/// socket. Most responses come sooner; not polling the client for them saves a read
/// system call per statement.
const WATCH_CLIENT_AFTER: Duration = Duration::from_millis(20);

/// Waits for more bytes from `backend`, up to `timeout`. After [`WATCH_CLIENT_AFTER`] it
/// also watches the client's socket: bytes it sends are kept (up to
/// [`CLIENT_READ_AHEAD`]) for the next command; its end of stream ends the wait.
async fn fill<S: Stream, C: Stream>(backend: &mut PacketConn<S>, client: &mut PacketConn<C>, timeout: Option<Duration>, cut: Option<&CutWhenDeposed>) -> Filled {
    let started = tokio::time::Instant::now();
    let first = timeout.map_or(WATCH_CLIENT_AFTER, |t| t.min(WATCH_CLIENT_AFTER));
    tokio::select! {
        biased;
        r = backend.fill() => return match r {
            Ok(n) => Filled::Bytes(n),
            Err(e) => Filled::BackendErr(e),
        },
        _ = tokio::time::sleep(first) => {}
    }
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep_until(started + t).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(deadline);
    let deposed = async {
        match cut {
            Some(c) => c.deposed().await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(deposed);
    loop {
        let watch = client.buffered().len() < CLIENT_READ_AHEAD;
        tokio::select! {
            biased;
            r = backend.fill() => return match r {
                Ok(n) => Filled::Bytes(n),
                Err(e) => Filled::BackendErr(e),
            },
            r = client.fill(), if watch => match r {
                Ok(0) => return Filled::ClientLeft(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => continue,
                Err(e) => return Filled::ClientLeft(e),
            },
            _ = &mut deadline => return Filled::TimedOut,
            _ = &mut deposed => return Filled::Deposed,
        }
    }
}

/// The response to one command, as far as Sluice reads it.
pub struct Relayed {
    pub summary: Summary,
}

/// Sends `payload` to `node` and passes the response to `client` byte for byte.
/// `patch` may rewrite the first packet of the response in place (statement ids of
/// COM_STMT_PREPARE_OK) before it is passed on.
pub async fn relay<S: Stream, C: Stream>(
    node: &mut NodeConn<S>,
    client: &mut PacketConn<C>,
    payload: &[u8],
    expect: Expect,
    timeout: Option<Duration>,
    patch: &mut (dyn FnMut(&mut [u8], &Summary) + Send),
) -> Result<Relayed, RelayError> {
    if let Err(source) = node.conn.conn.send(0, payload).await {
        let addr = node.conn.addr.clone();
        return Err(RelayError { error: Error::BackendIo { addr, sent: true, source }, forwarded: false, backend_lost: true });
    }
    relay_response(node, client, expect, timeout, patch).await
}

/// Passes the response to a command already sent to `node` on to `client` (see [`relay`]).
pub async fn relay_response<S: Stream, C: Stream>(
    node: &mut NodeConn<S>,
    client: &mut PacketConn<C>,
    expect: Expect,
    timeout: Option<Duration>,
    patch: &mut (dyn FnMut(&mut [u8], &Summary) + Send),
) -> Result<Relayed, RelayError> {
    let addr = node.conn.addr.clone();
    let lost = |sent: bool, source: std::io::Error, forwarded: bool| RelayError { error: Error::BackendIo { addr: addr.clone(), sent, source }, forwarded, backend_lost: true };
    let mut t = ResponseTracker::new(expect, node.conn.caps).with_ext_caps(node.conn.ext_caps);
    let rewrite = node.rewrite;
    if rewrite.is_some() || node.digest.is_some() {
        t = t.mark_oks();
    }
    let mut cap = node.cap.take();
    if let Some(c) = &cap {
        t = t.with_cap(c.max_rows, c.max_bytes);
    }
    let mut forwarded = false;
    let mut patched = false;
    loop {
        let (n, ev) = match t.advance(node.conn.conn.buffered()) {
            Ok(x) => x,
            Err(m) => return Err(RelayError { error: Error::backend_protocol(&addr, m.0), forwarded, backend_lost: true }),
        };
        if n > 0 {
            if !patched {
                patched = true;
                patch(&mut node.conn.conn.buffered_mut()[..n], t.summary());
            }
            if let Some(d) = node.digest.as_mut() {
                digest_outside_oks(d, &node.conn.conn.buffered()[..n], t.oks());
            }
            let res = match rewrite {
                Some(rw) if !t.oks().is_empty() => write_rewritten(client, &node.conn.conn.buffered()[..n], t.oks(), node.conn.caps, rw).await,
                _ => client.write_raw(&node.conn.conn.buffered()[..n]).await,
            };
            node.conn.conn.consume(n);
            forwarded = true;
            if let Err(e) = res {
                // The client is gone mid-response; the backend connection is closed
                // with the session, which makes the server abort the statement.
                return Err(RelayError::client(e));
            }
        }
        match ev {
            Event::Done => {
                client.flush_raw().await.map_err(RelayError::client)?;
                return Ok(Relayed { summary: t.into_summary() });
            }
            Event::LocalInfile => {
                client.flush_raw().await.map_err(RelayError::client)?;
                relay_infile(node, client, &mut t).await?;
            }
            Event::Capped => {
                let Some(c) = cap.take() else {
                    return Err(RelayError {
                        error: Error::backend_protocol(&addr, "capped answer without a cap"),
                        forwarded,
                        backend_lost: true,
                    });
                };
                return finish_capped(node, client, t, c, timeout).await;
            }
            Event::More => {
                client.flush_raw().await.map_err(RelayError::client)?;
                match fill(&mut node.conn.conn, client, timeout, node.cut.as_ref()).await {
                    Filled::Bytes(0) => return Err(lost(true, std::io::ErrorKind::UnexpectedEof.into(), forwarded)),
                    Filled::Bytes(_) => {}
                    Filled::BackendErr(source) => return Err(lost(true, source, forwarded)),
                    Filled::ClientLeft(e) => return Err(RelayError { error: Error::ClientIo(e), forwarded, backend_lost: true }),
                    Filled::TimedOut => {
                        return Err(RelayError { error: Error::BackendTimeout { addr: addr.clone(), what: "waiting for a response (backend.read_timeout_ms)" }, forwarded, backend_lost: true })
                    }
                    Filled::Deposed => {
                        let source = std::io::Error::other("the node was replaced as the primary, or found dead, while the statement waited for its answer");
                        return Err(lost(true, source, forwarded));
                    }
                }
            }
        }
    }
}

/// A capped answer ([`ResultCap`]): the client gets the cap's error in place of the next
/// row, then the rest of the answer is read and dropped — with the statement killed if
/// it does not end within [`KILL_CAPPED_AFTER`] — so that the backend connection ends
/// in step. The summary is the backend's, with the cap's error.
async fn finish_capped<S: Stream, C: Stream>(
    node: &mut NodeConn<S>,
    client: &mut PacketConn<C>,
    mut t: ResponseTracker,
    cap: ResultCap,
    timeout: Option<Duration>,
) -> Result<Relayed, RelayError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let addr = node.conn.addr.clone();
    let (code, state, message) = cap.error;
    cap.counters.capped.fetch_add(1, Ordering::Relaxed);
    let seq = t.last_seq().map_or(1, |s| s.wrapping_add(1));
    client
        .send(
            seq,
            &crate::protocol::packets::err_payload(code, state, &message),
        )
        .await
        .map_err(RelayError::client)?;
    t.lift_cap();
    // The kill starts after the grace period; once started it is seen through, so the
    // connection is not given back while a KILL for it is on its way.
    let started = AtomicBool::new(false);
    let kill = cap.kill;
    let kill_stage = async {
        tokio::time::sleep(KILL_CAPPED_AFTER).await;
        started.store(true, Ordering::Release);
        kill.await;
    };
    tokio::pin!(kill_stage);
    let mut killed = false;
    let deadline = async {
        match timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(deadline);
    let lost = |source: std::io::Error| RelayError {
        error: Error::BackendIo {
            addr: addr.clone(),
            sent: true,
            source,
        },
        forwarded: true,
        backend_lost: true,
    };
    let result = loop {
        let (n, ev) = match t.advance(node.conn.conn.buffered()) {
            Ok(x) => x,
            Err(m) => {
                break Err(RelayError {
                    error: Error::backend_protocol(&addr, m.0),
                    forwarded: true,
                    backend_lost: true,
                })
            }
        };
        node.conn.conn.consume(n);
        match ev {
            Event::Done => break Ok(()),
            Event::LocalInfile | Event::Capped => {
                break Err(RelayError {
                    error: Error::backend_protocol(
                        &addr,
                        "unexpected packet after a capped answer",
                    ),
                    forwarded: true,
                    backend_lost: true,
                })
            }
            Event::More => {}
        }
        let filled = loop {
            tokio::select! {
                biased;
                r = node.conn.conn.fill() => break Some(r),
                _ = &mut kill_stage, if !killed => killed = true,
                _ = &mut deadline => break None,
            }
        };
        match filled {
            Some(Ok(0)) => break Err(lost(std::io::ErrorKind::UnexpectedEof.into())),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(lost(e)),
            None => {
                break Err(RelayError {
                    error: Error::BackendTimeout {
                        addr: addr.clone(),
                        what: "reading the rest of a capped answer (backend.read_timeout_ms)",
                    },
                    forwarded: true,
                    backend_lost: true,
                })
            }
        }
    };
    if started.load(Ordering::Acquire) && !killed {
        kill_stage.await;
    }
    result?;
    let mut summary = t.into_summary();
    summary.error = Some(code);
    summary.error_detail = Some((state.to_string(), message));
    Ok(Relayed { summary })
}

/// Whether a node's probe error (as the monitor published it) says its server is gone:
/// a connection-level failure (refused, reset) — not a timeout (maybe only slow or hung)
/// and not an error the server itself answered (`backend … error 1040 (08004): Too many
/// connections`: alive, only busy).
pub fn probe_error_means_dead(error: &str) -> bool {
    if error.contains("timed out") {
        return false;
    }
    // A server's own error: "error <code> (<SQLSTATE>)".
    let server_error = error.match_indices(" error ").any(|(i, m)| {
        let rest = &error[i + m.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(" (")
    });
    !server_error
}

/// Feeds `bytes` to the digest, skipping the OK packets at `oks` (they carry GTIDs and
/// other server-specific data; their meaning is digested from the summary).
fn digest_outside_oks(d: &mut crate::failover::replay::Digester, bytes: &[u8], oks: &[(usize, usize)]) {
    let mut from = 0;
    for &(start, end) in oks {
        d.bytes(&bytes[from..start]);
        from = end;
    }
    d.bytes(&bytes[from..]);
}

/// Runs `payload` (a command the client already saw answered) on `node` and digests the
/// answer as [`relay_response`] would have for the client, forwarding nothing; also
/// the answer's final status flags.
pub async fn digest_silently<S: Stream>(node: &mut NodeConn<S>, payload: &[u8], expect: Expect, timeout: Option<Duration>) -> Result<(crate::failover::replay::ResultDigest, Option<u16>), Error> {
    let addr = node.conn.addr.clone();
    node.conn.conn.send(0, payload).await.map_err(|source| Error::BackendIo { addr, sent: true, source })?;
    let mut d = crate::failover::replay::Digester::default();
    let s = read_response_up_to(node, expect, timeout, usize::MAX, Some(&mut d)).await?;
    Ok((d.finish(s.error, s.affected_rows, s.insert_id, s.result_sets, s.rows), s.status))
}

/// Writes `bytes` (whole packets and pieces of packets) to the client with the OK
/// packets at `oks` rewritten per `rw`.
async fn write_rewritten<C: Stream>(client: &mut PacketConn<C>, bytes: &[u8], oks: &[(usize, usize)], backend_caps: u32, rw: OkRewrite) -> std::io::Result<()> {
    let mut from = 0;
    for &(start, end) in oks {
        let payload = &bytes[start + HEADER_LEN..end];
        if let Some(new) = ok_for_client(payload, backend_caps, rw.client_caps, rw.strip) {
            client.write_raw(&bytes[from..start]).await?;
            let len = new.len() as u32;
            let header = [len as u8, (len >> 8) as u8, (len >> 16) as u8, bytes[start + 3]];
            client.write_raw(&header).await?;
            client.write_raw(&new).await?;
            from = end;
        }
    }
    client.write_raw(&bytes[from..]).await
}

/// Sends `before`, `payload` and `after` (statements of Sluice's own, `before` and
/// `after` answering OK) in one write and relays only `payload`'s response. Returns
/// whether `after` succeeded as well.
pub async fn relay_between<S: Stream, C: Stream>(
    node: &mut NodeConn<S>,
    client: &mut PacketConn<C>,
    before: &str,
    payload: &[u8],
    after: &str,
    expect: Expect,
    timeout: Option<Duration>,
    patch: &mut (dyn FnMut(&mut [u8], &Summary) + Send),
) -> Result<(Relayed, bool), RelayError> {
    let addr = node.conn.addr.clone();
    let lost = |source: std::io::Error| RelayError { error: Error::BackendIo { addr: addr.clone(), sent: true, source }, forwarded: false, backend_lost: true };
    let query = |sql: &str| {
        let mut q = Vec::with_capacity(1 + sql.len());
        q.push(com::QUERY);
        q.extend_from_slice(sql.as_bytes());
        q
    };
    node.conn.conn.queue(0, &query(before));
    node.conn.conn.queue(0, payload);
    node.conn.conn.queue(0, &query(after));
    node.conn.conn.flush().await.map_err(lost)?;
    discard_response(node, Expect::Query, timeout).await.map_err(|e| RelayError { error: e, forwarded: false, backend_lost: true })?;
    let relayed = relay_response(node, client, expect, timeout, patch).await?;
    let done = discard_response(node, Expect::Query, timeout).await.map_err(|e| RelayError { error: e, forwarded: true, backend_lost: true })?;
    Ok((relayed, done.error.is_none()))
}

/// What a read found after Sluice's GTID wait ran ahead of it on a replica.
pub enum Waited {
    /// The replica reached the position; the statement's response was relayed.
    Reached(Relayed),
    /// The wait timed out (or failed): the statement's response was read and dropped,
    /// nothing reached the client.
    NotReached(String),
}

/// Sends `wait` (a GTID wait of Sluice's own, answering one value) and `payload` in
/// one write; relays the statement's response only if the wait answered "reached".
#[allow(clippy::too_many_arguments)]
pub async fn relay_after_wait<S: Stream, C: Stream>(
    node: &mut NodeConn<S>,
    client: &mut PacketConn<C>,
    wait: &str,
    payload: &[u8],
    expect: Expect,
    timeout: Option<Duration>,
    wait_timeout: Option<Duration>,
    patch: &mut (dyn FnMut(&mut [u8], &Summary) + Send),
) -> Result<Waited, RelayError> {
    let addr = node.conn.addr.clone();
    let lost = |source: std::io::Error| RelayError { error: Error::BackendIo { addr: addr.clone(), sent: true, source }, forwarded: false, backend_lost: true };
    let mut q = Vec::with_capacity(1 + wait.len());
    q.push(com::QUERY);
    q.extend_from_slice(wait.as_bytes());
    node.conn.conn.queue(0, &q);
    node.conn.conn.queue(0, payload);
    node.conn.conn.flush().await.map_err(lost)?;
    // The server answers the wait within its own timeout: no answer well after it means
    // the connection is broken (a partition ate it), not a slow replica.
    let answer = read_scalar(node, wait_timeout.or(timeout)).await;
    let reached = match &answer {
        Ok(v) => crate::consistency::level::wait_reached(v.as_deref()),
        Err(_) => false,
    };
    if reached {
        return relay_response(node, client, expect, timeout, patch).await.map(Waited::Reached);
    }
    // The statement ran (a read: harmless) but may be stale; its answer is dropped.
    let why = match answer {
        Ok(v) => format!("wait answered {}", v.map_or("NULL".into(), |v| String::from_utf8_lossy(&v).into_owned())),
        Err(Error::BackendErr { code, message, .. }) => format!("wait failed: {code} {message}"),
        Err(e) => return Err(RelayError { error: e, forwarded: false, backend_lost: true }),
    };
    discard_response(node, expect, timeout).await.map_err(|e| RelayError { error: e, forwarded: false, backend_lost: true })?;
    Ok(Waited::NotReached(why))
}

/// Reads a one-value text result (of a statement of Sluice's own already sent): the
/// first column of the first row; `None` for NULL or no row. An ERR answer is
/// `Error::BackendErr`.
pub async fn read_scalar<S: Stream>(node: &mut NodeConn<S>, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, Error> {
    let read = async {
        let conn = &mut node.conn;
        let first = conn.read().await?;
        match first.payload.first() {
            Some(0xFF) => return Err(crate::backend::conn::err_packet(&conn.addr, &first.payload)),
            Some(0x00) => return Ok(None),
            _ => {}
        }
        let mut r = crate::protocol::packet::Reader::new(&first.payload);
        let n = r.lenenc().ok_or_else(|| Error::backend_protocol(&conn.addr, "bad column count"))?;
        let defs = if conn.ext_caps & crate::protocol::constants::cap::ext::CACHE_METADATA != 0 && r.u8() == Some(0) { 0 } else { n };
        for _ in 0..defs {
            conn.read().await?;
        }
        if conn.caps & crate::protocol::constants::cap::DEPRECATE_EOF == 0 {
            conn.read().await?;
        }
        let mut value = None;
        let mut first_row = true;
        loop {
            let p = conn.read().await?;
            match p.payload.first() {
                Some(0xFF) => return Err(crate::backend::conn::err_packet(&conn.addr, &p.payload)),
                Some(0xFE) if p.payload.len() < 0xFF_FFFF => return Ok(value),
                _ if first_row => {
                    first_row = false;
                    let mut r = crate::protocol::packet::Reader::new(&p.payload);
                    if r.peek() != Some(0xFB) {
                        value = r.lenenc_bytes().map(|v| v.to_vec());
                    }
                }
                _ => {}
            }
        }
    };
    match timeout {
        Some(d) => tokio::time::timeout(d, read).await.map_err(|_| Error::BackendTimeout { addr: node.conn.addr.clone(), what: "waiting for a replica to reach a GTID position" })?,
        None => read.await,
    }
}

/// Relays the client's LOCAL INFILE data packets (ending with an empty packet).
async fn relay_infile<S: Stream, C: Stream>(node: &mut NodeConn<S>, client: &mut PacketConn<C>, t: &mut ResponseTracker) -> Result<(), RelayError> {
    use crate::protocol::conn::ReadError;
    use crate::protocol::constants::err;
    loop {
        let p = client.read_packet().await.map_err(|e| {
            let error = match e {
                ReadError::Io(e) => Error::ClientIo(e),
                ReadError::Closed => Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into()),
                other => Error::client_protocol(err::ER_NET_PACKETS_OUT_OF_ORDER, other.to_string()),
            };
            RelayError { error, forwarded: true, backend_lost: true }
        })?;
        node.conn.conn.send(p.seq, &p.payload).await.map_err(|source| RelayError {
            error: Error::BackendIo { addr: node.conn.addr.clone(), sent: true, source },
            forwarded: true,
            backend_lost: true,
        })?;
        if p.payload.is_empty() {
            t.resume_after_infile(p.last_seq);
            return Ok(());
        }
    }
}

/// Runs a command of Sluice's own on `node` and reads its whole response without
/// passing anything to the client (lazy prepares).
pub async fn exchange<S: Stream>(node: &mut NodeConn<S>, payload: &[u8], expect: Expect, timeout: Option<Duration>) -> Result<Summary, Error> {
    let addr = node.conn.addr.clone();
    node.conn.conn.send(0, payload).await.map_err(|source| Error::BackendIo { addr, sent: true, source })?;
    read_response(node, expect, timeout).await
}

/// Brings `node` to the session's state: schema, COM_SET_OPTION, then the `SET`s it
/// has not applied. Statements are pipelined (sent together, answered in order).
/// An error answer means the node cannot take the session's state.
/// With `track`, the connection is also made to report the GTID of each of its
/// transactions in OK packets ([`crate::consistency::level::tracking_sql`]), after the
/// replayed `SET`s (which may change what it tracks).
/// `row_count`: the statement about to run reads `ROW_COUNT()`; the session's value,
/// set on the connection when it does not hold it or the sync's own commands change it.
#[allow(clippy::too_many_arguments)]
pub async fn sync<S: Stream>(node: &mut NodeConn<S>, state: &SessionState, track: bool, lid: Option<u64>, found_rows: Option<u64>, row_count: Option<i64>, timeout: Option<Duration>) -> Result<(), Error> {
    if node.generation != state.replay_generation {
        // The log was rewritten: start over. Re-applying a prefix is harmless (each
        // entry assigns a value; the last assignment wins).
        node.applied = 0;
        node.generation = state.replay_generation;
    }
    let addr = node.conn.addr.clone();
    let mut cmds: Vec<Vec<u8>> = Vec::new();
    let reset = node.reset_first;
    if reset {
        cmds.push(vec![com::RESET_CONNECTION]);
    }
    if let Some(db) = &state.schema {
        if node.schema.as_ref() != Some(db) {
            let mut p = vec![com::INIT_DB];
            p.extend_from_slice(db);
            cmds.push(p);
        }
    }
    let set_option = node.option_differs(state).then(|| state.set_option.unwrap_or(default_option(node.conn.caps)));
    if let Some(opt) = set_option {
        let mut p = vec![com::SET_OPTION];
        p.extend_from_slice(&opt.to_le_bytes());
        cmds.push(p);
    }
    let pending = &state.replay[node.applied.min(state.replay.len())..];
    if pending.iter().any(|p| super::state::client_gtid_tracking(&p[1..]).is_some()) {
        // A replayed `SET` changes what the connection tracks: Sluice's tracking goes
        // after it again.
        node.tracking = false;
    }
    cmds.extend(pending.iter().cloned());
    let tracking = track && !node.tracking;
    if let Some(n) = found_rows {
        let mut p = vec![com::QUERY];
        p.extend_from_slice(found_rows_sql(n).as_bytes());
        cmds.push(p);
    }
    if let Some(id) = lid.filter(|id| node.last_insert_id != Some(*id)) {
        let mut p = vec![com::QUERY];
        p.extend_from_slice(format!("SET LAST_INSERT_ID = {id}").as_bytes());
        cmds.push(p);
    }
    if tracking {
        let sql = crate::consistency::level::tracking_sql(node.mysql);
        let mut p = Vec::with_capacity(1 + sql.len());
        p.push(com::QUERY);
        p.extend_from_slice(sql.as_bytes());
        cmds.push(p);
    }
    // Any statement clears the diagnostics area: while the session's warnings or error
    // wait on this connection (its last statement ran here), nothing is added.
    let row_count = row_count.filter(|_| !state.diagnostics_pending);
    if let Some(n) = row_count.filter(|_| !node.row_count_own || !cmds.is_empty()) {
        // Last, after every `SET` above (each leaves 0). A held connection whose
        // `FOUND_ROWS()` Sluice does not know (after SQL_CALC_FOUND_ROWS) keeps it.
        let keep_found_rows = found_rows.is_none() && node.row_count_own && state.found_rows_pending;
        match row_count_sql(n, found_rows.unwrap_or(state.found_rows)) {
            Some(sql) if !keep_found_rows => {
                let mut p = vec![com::QUERY];
                p.extend_from_slice(sql.as_bytes());
                cmds.push(p);
                node.row_count_own = true;
            }
            _ => node.row_count_own = false,
        }
    } else if !cmds.is_empty() {
        node.row_count_own = false;
    }
    if cmds.is_empty() {
        return Ok(());
    }
    for c in &cmds {
        node.conn.conn.queue(0, c);
    }
    node.conn.conn.flush().await.map_err(|source| Error::BackendIo { addr: addr.clone(), sent: true, source })?;
    for c in &cmds {
        let expect = if c[0] == com::QUERY { Expect::Query } else { Expect::OnePacket };
        let summary = read_response(node, expect, timeout).await?;
        if let Some(code) = summary.error {
            if c[0] == com::INIT_DB {
                // The server's own answer (unknown database, access denied): the client
                // gets it as it would directly.
                if let Some((state, message)) = summary.error_detail {
                    return Err(Error::BackendErr { addr: addr.clone(), code, state, message });
                }
            }
            return Err(Error::BackendErr {
                addr: addr.clone(),
                code,
                state: "HY000".into(),
                message: format!("replaying the session state ({}) failed", String::from_utf8_lossy(&c[1..]).chars().take(80).collect::<String>()),
            });
        }
    }
    if reset {
        node.reset_first = false;
        node.stmts.clear();
        node.last_insert_id = Some(0);
    }
    if let Some(id) = lid {
        node.last_insert_id = Some(id);
    }
    node.schema = state.schema.clone().or(node.schema.take());
    if set_option.is_some() {
        node.set_option = set_option;
    }
    node.applied = state.replay.len();
    node.tracking |= tracking;
    Ok(())
}

/// Reads one response (already sent) and discards it; at most 1 MiB of it.
async fn read_response<S: Stream>(node: &mut NodeConn<S>, expect: Expect, timeout: Option<Duration>) -> Result<Summary, Error> {
    read_response_up_to(node, expect, timeout, 1 << 20, None).await
}

/// Reads the response to a client's statement that must not reach the client, and
/// drops it, however large.
async fn discard_response<S: Stream>(node: &mut NodeConn<S>, expect: Expect, timeout: Option<Duration>) -> Result<Summary, Error> {
    read_response_up_to(node, expect, timeout, usize::MAX, None).await
}

/// Reads (and drops) a response of at most `limit` bytes; with `digest`, feeds it what
/// [`relay_response`] would have for a client (every byte outside OK packets).
async fn read_response_up_to<S: Stream>(node: &mut NodeConn<S>, expect: Expect, timeout: Option<Duration>, limit: usize, mut digest: Option<&mut crate::failover::replay::Digester>) -> Result<Summary, Error> {
    let addr = node.conn.addr.clone();
    let mut t = ResponseTracker::new(expect, node.conn.caps).with_ext_caps(node.conn.ext_caps);
    if digest.is_some() {
        t = t.mark_oks();
    }
    let mut seen = 0usize;
    loop {
        let (n, ev) = t.advance(node.conn.conn.buffered()).map_err(|m| Error::backend_protocol(&addr, m.0))?;
        if let Some(d) = digest.as_deref_mut() {
            digest_outside_oks(d, &node.conn.conn.buffered()[..n], t.oks());
        }
        node.conn.conn.consume(n);
        seen += n;
        if seen > limit {
            return Err(Error::backend_protocol(&addr, "unexpectedly large response to a command of Sluice's own"));
        }
        match ev {
            Event::Done => return Ok(t.into_summary()),
            Event::LocalInfile => {
                return Err(Error::backend_protocol(
                    &addr,
                    "LOCAL INFILE request to a command of Sluice's own",
                ))
            }
            Event::Capped => {
                return Err(Error::backend_protocol(
                    &addr,
                    "capped answer without a cap",
                ))
            }
            Event::More => {
                let read = node.conn.conn.fill();
                let n = match timeout {
                    Some(d) => tokio::time::timeout(d, read).await.map_err(|_| Error::BackendTimeout { addr: addr.clone(), what: "replaying session state" })?,
                    None => read.await,
                };
                match n {
                    Ok(0) => return Err(Error::BackendIo { addr: addr.clone(), sent: true, source: std::io::ErrorKind::UnexpectedEof.into() }),
                    Ok(_) => {}
                    Err(source) => return Err(Error::BackendIo { addr: addr.clone(), sent: true, source }),
                }
            }
        }
    }
}

#[cfg(test)]
mod probe_error_tests {
    use super::probe_error_means_dead;

    #[test]
    fn a_refused_or_reset_probe_means_dead_a_timeout_or_a_server_error_does_not() {
        assert!(probe_error_means_dead("down: backend 127.0.0.1:1: Connection refused (os error 111)"));
        assert!(probe_error_means_dead("down: backend db0:3306: 192.168.0.1:3306"));
        assert!(probe_error_means_dead("down: backend db0:3306: Connection reset by peer (os error 104)"));
        assert!(!probe_error_means_dead("down: probe timed out after 400ms"));
        assert!(!probe_error_means_dead("down: backend db0:3306 error 1040 (08004): Too many connections"));
        assert!(!probe_error_means_dead("down: backend db0:3306 error 1045 (28000): Access denied"));
    }
}
