//! The session's side of failover: a primary-bound statement that finds no reachable
//! primary waits in the failover buffer; one whose connection is lost is re-sent, or
//! answered with a clear error, by the rule of [`crate::failover`] (decided by what was
//! sent, never guessed). ERR packets: <https://mariadb.com/kb/en/err_packet/>.

use std::time::Duration;

use tokio::time::Instant;

use super::Session;
use crate::error::Error;
use crate::failover::{self, Lost, LostContext, Sent};
use crate::net::Net;
use crate::protocol::constants::{com, err};
use crate::route::decide::Target;

use super::state::Pin;
use super::Routed;

/// Client bytes read ahead while a statement waits in the buffer (kept for the next
/// command); past this Sluice stops reading the client.
const READ_AHEAD: usize = 64 << 10;

/// Whether a failure to get or use a backend connection means the node is gone or
/// unreachable (rather than, say, the server refusing a statement).
pub(super) fn is_unreachable(e: &Error) -> bool {
    // 1053 ER_SERVER_SHUTDOWN, 1927 ER_CONNECTION_KILLED: a server going down.
    matches!(e, Error::BackendIo { .. } | Error::BackendTimeout { .. } | Error::BackendProtocol { .. } | Error::BackendErr { code: 1053 | 1927, .. })
}

impl<N: Net> Session<N> {
    /// Whether the session holds state on `node`'s connection that exists nowhere else
    /// (an open transaction, temporary tables, locks, server-set user variables, an open
    /// cursor, …): it is lost with that connection. What Sluice carries itself (session
    /// variables, schema, `LAST_INSERT_ID`, `ROW_COUNT`, `FOUND_ROWS`) is not.
    pub(super) fn holds_state_on(&self, node: &str) -> bool {
        let server_state = !matches!(self.state.pin_reason(), None | Some(Pin::Diagnostics) | Some(Pin::FoundRows))
            || self.stmts.cursor_open()
            || self.stmts.long_data_pending();
        server_state && (self.state.bound_to.as_deref() == Some(node) || self.state.txn_node() == Some(node))
    }

    /// The statement waits in the failover buffer until the topology names a primary
    /// other than `failed` (or, every `monitor_interval_ms / 4`, to try `failed` again:
    /// a restarted server). `Ok(true)`: route it again; `Ok(false)`: it was answered
    /// with an error (buffer full, window over); `Err`: the client left.
    pub(super) async fn wait_for_primary(&mut self, failed: Option<&str>, bytes: usize) -> Result<bool, Error> {
        let buffer = self.shared.failover_buffer.clone();
        let window = buffer.limits().window;
        let again = self.buffered.is_some();
        if !again {
            match buffer.admit(bytes) {
                Ok(t) => {
                    tracing::info!(conn = self.id, node = ?failed, "no reachable primary: statement buffered");
                    self.buffered = Some((t, Instant::now() + window));
                }
                Err(why) => {
                    let msg = format!("Unable to connect to foreign data source: Sluice has no reachable primary and does not buffer the statement: {why}");
                    self.send_err(1, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", &msg).await;
                    return Ok(false);
                }
            }
        }
        // cannot fail: the buffer admitted the statement above (`self.buffered` set) or returned.
        let deadline = self.buffered.as_ref().expect("admitted").1;
        let now = Instant::now();
        if now >= deadline {
            if let Some((t, _)) = self.buffered.take() {
                t.timed_out();
            }
            tracing::warn!(conn = self.id, node = ?failed, "no reachable primary within the failover buffer's window");
            let msg = format!("Unable to connect to foreign data source: Sluice found no reachable primary within {} ms ([failover] buffer_window_ms)", window.as_millis());
            self.send_err(1, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", &msg).await;
            return Ok(false);
        }
        let pause = Duration::from_millis((self.shared.cfg.backend.monitor_interval_ms / 4).clamp(10, 250)).min(deadline - now);
        if again {
            // Not a busy loop when the named primary refuses at once.
            tokio::time::sleep(Duration::from_millis(10).min(pause)).await;
        }
        let failed = failed.map(str::to_string);
        let topology = self.shared.topology.clone();
        let moved = topology.wait_for(|t| {
            let p = t.as_ref().and_then(|t| t.primary.as_deref());
            p.is_some() && p != failed.as_deref()
        });
        self.pause_watching_client(moved, pause).await?;
        self.refresh_topology();
        Ok(true)
    }

    /// Waits until `event` happens or `pause` passes, reading ahead what the client sends
    /// meanwhile (kept for its next command); the client leaving ends the wait with an
    /// error.
    async fn pause_watching_client(&mut self, event: impl std::future::Future<Output = ()>, pause: Duration) -> Result<(), Error> {
        let watch = self.client.buffered().len() < READ_AHEAD;
        tokio::select! {
            biased;
            r = self.client.fill(), if watch => match r {
                Ok(0) => return Err(Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into())),
                Err(e) => return Err(Error::ClientIo(e)),
                Ok(_) => {}
            },
            _ = event => {}
            _ = tokio::time::sleep(pause) => {}
        }
        Ok(())
    }

    /// A statement found no primary to route to (`NoBackend`): it waits in the buffer
    /// and is routed again. `Ok(false)`: answered with an error.
    pub(super) async fn no_primary_yet(&mut self, e: Error, bytes: usize) -> Result<bool, Error> {
        match e {
            Error::NoBackend(_) => self.wait_for_primary(None, bytes).await,
            e => self.no_primary(e).await.map(|()| false),
        }
    }

    /// The buffered statement got a connection: it leaves the buffer.
    pub(super) fn leave_buffer(&mut self) {
        if let Some((t, _)) = self.buffered.take() {
            t.resumed();
        }
    }

    /// The primary-bound statement `payload`'s connection to `routed.node` was lost or
    /// could not be had; `sent` says whether the statement was written to it. Decided by
    /// [`failover::after_lost_connection`]. `Ok(Some)`: send it again there; `Ok(None)`:
    /// answered with an error, the session goes on; `Err`: answered, the session ends.
    pub(super) async fn on_lost(&mut self, routed: &Routed, payload: &[u8], read: bool, sent: Sent, error: Error) -> Result<Option<Routed>, Error> {
        let node = routed.node.clone();
        let in_transaction = self.state.txn_node() == Some(node.as_str()) || (sent == Sent::Statement && !self.state.autocommit(Some(&node)));
        let may_commit = match payload.first() {
            Some(&com::QUERY) => failover::may_commit(&payload[1..]),
            _ => !read,
        };
        let ctx = LostContext { sent, read, in_transaction, may_commit, state_lost: self.holds_state_on(&node) };
        let verdict = failover::after_lost_connection(ctx);
        tracing::warn!(conn = self.id, node = %node, %error, ?sent, ?verdict, "primary connection lost");
        self.drop_node(&node).await;
        match verdict {
            Lost::Resend => loop {
                if !self.wait_for_primary(Some(&node), payload.len()).await? {
                    return Ok(None);
                }
                match self.resolve(Target::Primary, routed.reason, false) {
                    Ok(r) => return Ok(Some(r)),
                    Err(Error::NoBackend(_)) => continue,
                    Err(e) => {
                        self.no_primary(e).await?;
                        return Ok(None);
                    }
                }
            },
            Lost::OutcomeUnknown | Lost::OutcomeUnknownEnd => {
                let msg = format!(
                    "Query execution was interrupted: Sluice lost its connection to the primary {node} after sending the statement; whether it was applied is unknown ({error})"
                );
                self.send_err(1, failover::OUTCOME_UNKNOWN, "70100", &msg).await;
                if verdict == Lost::OutcomeUnknownEnd {
                    return Err(error);
                }
                Ok(None)
            }
            Lost::TransactionLost => {
                let mut not_replayed = String::new();
                if self.shared.cfg.failover.transaction_replay {
                    let r = self.replay_transaction(&node, routed).await?;
                    self.shared.failover_buffer.note_replay(r.is_ok());
                    match r {
                        Ok(r) => return Ok(Some(r)),
                        Err(why) => not_replayed = format!("; not replayed: {why}"),
                    }
                }
                let msg = format!("Connection was killed: Sluice lost its connection to the primary {node} in an open transaction, which the server rolled back{not_replayed}; reconnect ({error})");
                self.send_err(1, failover::ER_CONNECTION_KILLED, "70100", &msg).await;
                Err(error)
            }
            Lost::StateLost => {
                let msg = format!(
                    "Connection was killed: Sluice lost its connection to the primary {node}, and with it this session's state there (temporary tables, locks, user variables, cursors); reconnect ({error})"
                );
                self.send_err(1, failover::ER_CONNECTION_KILLED, "70100", &msg).await;
                Err(error)
            }
        }
    }

    /// `[failover] transaction_replay`: the open transaction (kept by `txn_log`) was cut
    /// with its connection to `failed` before its COMMIT was sent, so the server rolled it
    /// back. Waits (up to `buffer_window_ms`) for a reachable primary, runs every kept
    /// statement there again without forwarding anything, and compares each answer's
    /// digest with the one the client got. `Some`: the transaction is open again there in
    /// the same state, and the interrupted statement goes there; `None`: not replayable,
    /// no primary in time, or an answer differed (the new connection is closed, which
    /// rolls the partial replay back) — the caller reports the transaction lost.
    async fn replay_transaction(&mut self, failed: &str, routed: &Routed) -> Result<Result<Routed, String>, Error> {
        let Some(entries) = self.txn_log.replayable().map(<[_]>::to_vec) else {
            let why = match self.txn_log.state() {
                failover::replay::LogState::Unreplayable(w) => w.to_string(),
                _ => "nothing of it was kept".to_string(),
            };
            tracing::info!(conn = self.id, node = %failed, %why, "transaction not replayed");
            return Ok(Err(why));
        };
        let server_state = self.state.pin_reason_besides_transaction().filter(|p| !matches!(p, Pin::Diagnostics | Pin::FoundRows));
        if server_state.is_some() || self.stmts.cursor_open() || self.stmts.long_data_pending() {
            tracing::info!(conn = self.id, node = %failed, ?server_state, "transaction not replayed: the connection held server-side state besides it");
            self.txn_log.clear();
            return Ok(Err("the connection held server-side state besides the transaction (temporary tables, locks, cursors, …)".into()));
        }
        let window = self.shared.failover_buffer.limits().window;
        let deadline = Instant::now() + window;
        let pause = Duration::from_millis((self.shared.cfg.backend.monitor_interval_ms / 4).clamp(10, 250));
        loop {
            self.refresh_topology();
            if let Some(p) = self.primary.clone() {
                if self.ready(&p).await.is_ok() {
                    match self.replay_on(&p, &entries).await {
                        Ok(true) => {
                            tracing::warn!(conn = self.id, from = %failed, to = %p, statements = entries.len(), "transaction replayed on the primary");
                            return Ok(Ok(Routed { node: p, reason: routed.reason, primary: true, wait: None }));
                        }
                        Ok(false) => {
                            self.drop_node(&p).await;
                            self.txn_log.clear();
                            return Ok(Err(format!("a replayed statement answered {p} differently than before")));
                        }
                        Err(e) => {
                            tracing::info!(conn = self.id, node = %p, error = %e, "transaction replay lost its connection; trying again");
                            self.drop_node(&p).await;
                        }
                    }
                }
            }
            if Instant::now() + pause >= deadline {
                tracing::warn!(conn = self.id, node = %failed, "transaction not replayed: no reachable primary within [failover] buffer_window_ms");
                self.txn_log.clear();
                return Ok(Err("no reachable primary within [failover] buffer_window_ms".into()));
            }
            let topology = self.shared.topology.clone();
            let version = topology.version();
            let moved = topology.wait_for(|_| topology.version() != version);
            self.pause_watching_client(moved, pause).await?;
        }
    }

    /// Runs the kept statements on `node` (ready); `Ok(false)` when an answer differed.
    async fn replay_on(&mut self, node: &str, entries: &[failover::replay::Entry]) -> Result<bool, Error> {
        let timeout = self.read_timeout;
        // cannot fail: `ready(node)` succeeded just before and put the node's connection in `self.nodes`; nothing since removed it.
        let nc = self.nodes.get_mut(node).expect("ready");
        let mut last_status = None;
        for (i, e) in entries.iter().enumerate() {
            let (digest, status) = super::backends::digest_silently(nc, &e.payload, crate::protocol::response::Expect::Query, timeout).await?;
            if digest != e.digest {
                tracing::warn!(conn = self.id, %node, statement = i, sql = %String::from_utf8_lossy(&e.payload[1..e.payload.len().min(120)]), "transaction not replayed: a statement answered differently than before");
                return Ok(false);
            }
            last_status = status.or(last_status);
        }
        match last_status {
            Some(st) if st & crate::protocol::constants::status::IN_TRANS != 0 => {
                self.state.set_status(node, st);
                Ok(true)
            }
            _ => {
                tracing::warn!(conn = self.id, %node, "transaction not replayed: no transaction open after the replay");
                Ok(false)
            }
        }
    }

    /// Whether a statement routed so is the failover rule's business: it goes to the
    /// primary, or to the connection holding the session's transaction or state.
    pub(super) fn primary_bound(&self, routed: &Routed) -> bool {
        routed.primary || self.state.txn_node() == Some(routed.node.as_str()) || self.state.bound_to.as_deref() == Some(routed.node.as_str())
    }

    /// Before a statement goes to the primary on a connection the session holds: whether
    /// that connection's server already went away (then nothing is sent on it).
    pub(super) fn held_connection_gone(&mut self, node: &str) -> bool {
        self.nodes.get_mut(node).is_some_and(|nc| nc.conn.conn.peer_gone())
    }
}
