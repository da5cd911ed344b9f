//! One client session: login, then a loop that reads each command, relays it to the
//! session's backend connection (the primary) and passes the response back byte for byte.
//!
//! Commands follow <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html>;
//! Sluice answers a few itself: COM_QUIT, `KILL` and COM_PROCESS_KILL (mapped to the right
//! backend thread), COM_CHANGE_USER (re-authenticated against the config or, in
//! pass-through mode, the backend's accounts, then the backend session is changed too),
//! and commands it does not relay (ER_UNKNOWN_COM_ERROR). A backend lost mid-command ends
//! the session: the client sees its connection drop, as with the server itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::login::{self, send_err, ClientLogin};
use super::registry::{parse_kill, Kill};
use crate::backend::conn::{connect, BackendConn, Secret};
use crate::config::AuthMode;
use crate::error::Error;
use crate::net::Net;
use crate::protocol::conn::{PacketConn, ReadError};
use crate::protocol::constants::{com, err};
use crate::protocol::handshake::ChangeUser;
use crate::protocol::response::{Event, Expect, ResponseTracker};
use crate::proxy::Shared;

/// How a command is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Relay(Expect),
    /// Sent to the backend; the protocol defines no response.
    NoResponse,
    Quit,
    ProcessKill,
    ChangeUser,
    Unsupported,
}

fn route(cmd: u8) -> Route {
    match cmd {
        com::QUERY | com::PROCESS_INFO => Route::Relay(Expect::Query),
        com::STMT_EXECUTE => Route::Relay(Expect::Execute),
        com::STMT_PREPARE => Route::Relay(Expect::Prepare),
        com::STMT_FETCH => Route::Relay(Expect::Fetch),
        com::FIELD_LIST => Route::Relay(Expect::FieldList),
        com::INIT_DB | com::PING | com::STATISTICS | com::SET_OPTION | com::RESET_CONNECTION | com::STMT_RESET
        | com::REFRESH | com::DEBUG | com::CREATE_DB | com::DROP_DB | com::SHUTDOWN => Route::Relay(Expect::OnePacket),
        com::STMT_SEND_LONG_DATA | com::STMT_CLOSE => Route::NoResponse,
        com::QUIT => Route::Quit,
        com::PROCESS_KILL => Route::ProcessKill,
        com::CHANGE_USER => Route::ChangeUser,
        _ => Route::Unsupported,
    }
}

/// Why a session ends.
enum End {
    /// Normal end (COM_QUIT, client closed, shutdown, killed).
    Closed(&'static str),
    Failed(Error),
}

struct Session<N: Net> {
    shared: Arc<Shared<N>>,
    id: u32,
    peer: String,
    client: PacketConn<N::Stream>,
    backend: BackendConn<N::Stream>,
    login: ClientLogin,
    killed: Arc<Notify>,
}

/// Serves one accepted client connection until it ends.
pub async fn run<N: Net>(shared: Arc<Shared<N>>, stream: N::Stream, peer: String) {
    let mut client = PacketConn::new(stream, shared.cfg.proxy.max_allowed_packet);
    let (id, killed) = shared.registry.register(String::new());
    let host = peer.rsplit_once(':').map(|(h, _)| h).unwrap_or(&peer).trim_matches(['[', ']']).to_string();
    let handshake = std::time::Duration::from_millis(shared.cfg.proxy.handshake_timeout_ms);
    let login = match tokio::time::timeout(handshake, login::accept(&shared, &mut client, id, &host)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::info!(conn = id, %peer, error = %e, "login failed");
            client.shutdown().await;
            shared.registry.remove(id);
            return;
        }
        Err(_) => {
            tracing::info!(conn = id, %peer, "login timed out");
            send_err(&mut client, 0, err::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake").await;
            shared.registry.remove(id);
            return;
        }
    };
    shared.registry.set_user(id, &login.user);
    let backend = match open_backend(&shared, &login).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(conn = id, %peer, error = %e, "cannot open backend connection");
            let (code, state, msg) = match &e {
                Error::BackendErr { code, state, message, .. } => (*code, state.clone(), message.clone()),
                _ => (err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000".to_string(), format!("Unable to connect to foreign data source: Sluice cannot reach the primary: {e}")),
            };
            send_err(&mut client, login.seq, code, &state, &msg).await;
            client.shutdown().await;
            shared.registry.remove(id);
            return;
        }
    };
    if backend.ext_caps != login.ext_caps {
        // The client and the backend would frame result sets differently (e.g. the
        // primary changed to one without cached metadata between handshake and connect).
        tracing::warn!(conn = id, %peer, client = login.ext_caps, backend = backend.ext_caps, "backend extended capabilities differ from the client's");
        send_err(&mut client, login.seq, err::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake: the primary's capabilities changed during login; reconnect").await;
        client.shutdown().await;
        backend.quit().await;
        shared.registry.remove(id);
        return;
    }
    shared.registry.set_backend(id, Some((backend.addr.clone(), backend.thread_id)));
    if let Err(e) = client.send(login.seq, &backend.login_ok).await {
        tracing::debug!(conn = id, error = %e, "client left after login");
        backend.quit().await;
        shared.registry.remove(id);
        return;
    }
    tracing::debug!(conn = id, %peer, user = %login.user, backend = %backend.addr, thread = backend.thread_id, "session open");
    let mut s = Session { shared: shared.clone(), id, peer, client, backend, login, killed };
    let end = s.serve().await;
    match end {
        End::Closed(why) => tracing::debug!(conn = id, why, "session closed"),
        End::Failed(e) => tracing::info!(conn = id, peer = %s.peer, error = %e, origin = ?e.origin(), "session ended by error"),
    }
    s.client.shutdown().await;
    s.backend.quit().await;
    shared.registry.remove(id);
}

async fn open_backend<N: Net>(shared: &Shared<N>, login: &ClientLogin) -> Result<BackendConn<N::Stream>, Error> {
    let primary = shared.primary().ok_or(Error::NoBackend("primary"))?;
    let blogin = shared.backend_login(&login.backend_user, &login.backend_secret, login.database.clone(), login.charset, login.caps, login.ext_caps, login.attrs.clone());
    connect(&shared.net, &primary, &blogin, &shared.rng).await
}

impl<N: Net> Session<N> {
    async fn serve(&mut self) -> End {
        let shutdown = self.shared.shutdown.clone();
        let killed = self.killed.clone();
        // Both waits are registered once for the whole session rather than once per
        // command: the shutdown signal is shared by every session, and registering a
        // waiter locks it.
        let stopping = shutdown.wait_for(|s| *s);
        tokio::pin!(stopping);
        let kill = killed.notified();
        tokio::pin!(kill);
        loop {
            let read = tokio::select! {
                biased;
                _ = &mut kill => return End::Closed("killed"),
                _ = &mut stopping => return End::Closed("proxy shutting down"),
                r = self.client.read_packet() => r,
            };
            let p = match read {
                Ok(p) => p,
                Err(ReadError::Closed) => return End::Closed("client closed the connection"),
                Err(ReadError::Io(e)) => return End::Failed(Error::ClientIo(e)),
                Err(ReadError::TooLarge { .. }) => {
                    let msg = "Got a packet bigger than 'max_allowed_packet' bytes";
                    send_err(&mut self.client, 1, err::ER_NET_PACKET_TOO_LARGE, "08S01", msg).await;
                    // Let the client finish writing the oversized packet so it
                    // reads the ERR instead of a connection reset.
                    let limit = self.shared.cfg.proxy.max_allowed_packet.saturating_mul(2).max(16 << 20);
                    let _ = tokio::time::timeout(Duration::from_secs(5), self.client.drain_and_close(limit)).await;
                    return End::Failed(Error::client_protocol(err::ER_NET_PACKET_TOO_LARGE, msg));
                }
                Err(ReadError::OutOfOrder { got, .. }) => {
                    send_err(&mut self.client, got.wrapping_add(1), err::ER_NET_PACKETS_OUT_OF_ORDER, "08S01", "Got packets out of order").await;
                    return End::Failed(Error::client_protocol(err::ER_NET_PACKETS_OUT_OF_ORDER, "continuation frame out of order"));
                }
            };
            if p.seq != 0 {
                send_err(&mut self.client, p.next_seq(), err::ER_NET_PACKETS_OUT_OF_ORDER, "08S01", "Got packets out of order").await;
                return End::Failed(Error::client_protocol(err::ER_NET_PACKETS_OUT_OF_ORDER, format!("command with sequence id {}", p.seq)));
            }
            let Some(&cmd) = p.payload.first() else {
                send_err(&mut self.client, 1, err::ER_MALFORMED_PACKET, "HY000", "Malformed communication packet.").await;
                continue;
            };
            let outcome = match route(cmd) {
                Route::Quit => return End::Closed("COM_QUIT"),
                Route::Unsupported => {
                    tracing::info!(conn = self.id, cmd, "unknown or unsupported command");
                    send_err(&mut self.client, 1, err::ER_UNKNOWN_COM_ERROR, "08S01", "Unknown command").await;
                    Ok(())
                }
                Route::ProcessKill => match p.payload.get(1..5) {
                    Some(b) => self.kill(Kill::Connection(u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64)).await,
                    None => {
                        send_err(&mut self.client, 1, err::ER_MALFORMED_PACKET, "HY000", "Malformed communication packet.").await;
                        Ok(())
                    }
                },
                Route::ChangeUser => self.change_user(&p.payload).await,
                Route::Relay(Expect::Query) if cmd == com::QUERY => match parse_kill(&p.payload[1..]) {
                    // passthrough: the client's own account; the server decides.
                    Some(Kill::User) if self.shared.cfg.proxy.auth_mode == AuthMode::Passthrough => self.relay(&p.payload, Expect::Query).await,
                    Some(k) => self.kill(k).await,
                    None => self.relay(&p.payload, Expect::Query).await,
                },
                Route::Relay(Expect::Execute) => self.relay(&p.payload, Expect::for_execute(&p.payload)).await,
                Route::Relay(expect) => self.relay(&p.payload, expect).await,
                Route::NoResponse => self
                    .backend
                    .conn
                    .send(0, &p.payload)
                    .await
                    .map(|_| ())
                    .map_err(|source| Error::BackendIo { addr: self.backend.addr.clone(), sent: true, source }),
            };
            if let Err(e) = outcome {
                return End::Failed(e);
            }
        }
    }

    /// Sends `payload` to the backend and passes the response through.
    async fn relay(&mut self, payload: &[u8], expect: Expect) -> Result<(), Error> {
        if let Err(source) = self.backend.conn.send(0, payload).await {
            return Err(Error::BackendIo { addr: self.backend.addr.clone(), sent: true, source });
        }
        let mut resent = false;
        let mut t = ResponseTracker::new(expect, self.backend.caps).with_ext_caps(self.backend.ext_caps);
        loop {
            let (n, ev) = match t.advance(self.backend.conn.buffered()) {
                Ok(x) => x,
                Err(m) => {
                    return Err(Error::backend_protocol(&self.backend.addr, m.0));
                }
            };
            if n > 0 {
                let res = self.client.write_raw(&self.backend.conn.buffered()[..n]).await;
                self.backend.conn.consume(n);
                if let Err(e) = res {
                    // The client is gone mid-response; the backend connection is closed
                    // with the session, which makes the server abort the statement.
                    return Err(Error::ClientIo(e));
                }
            }
            match ev {
                Event::Done => return self.client.flush_raw().await.map_err(Error::ClientIo),
                Event::LocalInfile => {
                    self.client.flush_raw().await.map_err(Error::ClientIo)?;
                    self.relay_infile(&mut t).await?;
                }
                Event::More => {
                    self.client.flush_raw().await.map_err(Error::ClientIo)?;
                    let filled = self.backend.conn.fill().await;
                    if matches!(filled, Ok(0) | Err(_)) && t.last_seq().is_none() && !resent && self.shared.faults.resend_after_lost_backend() {
                        // Injected bug (simulation only): resend a command that may
                        // already have been applied.
                        if let Ok(b) = open_backend(&self.shared, &self.login).await {
                            self.backend = b;
                            self.shared.registry.set_backend(self.id, Some((self.backend.addr.clone(), self.backend.thread_id)));
                            if self.backend.conn.send(0, payload).await.is_ok() {
                                resent = true;
                                t = ResponseTracker::new(expect, self.backend.caps).with_ext_caps(self.backend.ext_caps);
                                continue;
                            }
                        }
                    }
                    match filled {
                        Ok(0) => {
                            return Err(Error::BackendIo { addr: self.backend.addr.clone(), sent: true, source: std::io::ErrorKind::UnexpectedEof.into() });
                        }
                        Ok(_) => {}
                        Err(source) => {
                            return Err(Error::BackendIo { addr: self.backend.addr.clone(), sent: true, source });
                        }
                    }
                }
            }
        }
    }

    /// Relays the client's LOCAL INFILE data packets (ending with an empty packet).
    async fn relay_infile(&mut self, t: &mut ResponseTracker) -> Result<(), Error> {
        loop {
            let p = self.client.read_packet().await.map_err(|e| match e {
                ReadError::Io(e) => Error::ClientIo(e),
                ReadError::Closed => Error::ClientIo(std::io::ErrorKind::UnexpectedEof.into()),
                other => Error::client_protocol(err::ER_NET_PACKETS_OUT_OF_ORDER, other.to_string()),
            })?;
            self.backend
                .conn
                .send(p.seq, &p.payload)
                .await
                .map_err(|source| Error::BackendIo { addr: self.backend.addr.clone(), sent: true, source })?;
            if p.payload.is_empty() {
                t.resume_after_infile(p.last_seq);
                return Ok(());
            }
        }
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
        let Some((target, entry)) = by_sluice_id.or_else(|| self.shared.registry.by_backend_thread(&self.backend.addr, id)) else {
            if !passthrough {
                // The backend account is Sluice's own: its other connections (monitor,
                // other proxies' sessions) are not the client's to kill.
                return self.answer_via_backend(Some((err::ER_NO_SUCH_THREAD, "HY000", &format!("Unknown thread id: {id}")))).await;
            }
            // Not one of Sluice's sessions: the server answers, with the client's account.
            let mut payload = vec![com::QUERY];
            payload.extend_from_slice(statement(id).as_bytes());
            return self.relay(&payload, Expect::Query).await;
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
        if let Some((addr, thread)) = &entry.backend {
            let sql = statement(u64::from(*thread));
            let result = if passthrough && *addr == self.backend.addr {
                // On the session's own backend connection, as the client's own account:
                // the server applies its privilege rules (CONNECTION ADMIN, owner).
                self.backend.query(&sql).await.map(|_| ())
            } else {
                let login = self.shared.service_login();
                async {
                    let mut c = connect(&self.shared.net, addr, &login, &self.shared.rng).await?;
                    let r = c.query(&sql).await;
                    c.quit().await;
                    r.map(|_| ())
                }
                .await
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
                Err(e) if passthrough && *addr == self.backend.addr => return Err(e),
                Err(e) => {
                    tracing::warn!(conn = self.id, target, error = %e, "kill on backend failed");
                    send_err(&mut self.client, 1, err::ER_CONNECT_TO_FOREIGN_DATA_SOURCE, "HY000", &format!("Unable to connect to foreign data source: Sluice could not reach backend {addr} to kill: {e}")).await;
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
        self.relay(&payload, Expect::Query).await
    }

    /// COM_CHANGE_USER: re-authenticate the client against the config, then reset the
    /// backend session with COM_CHANGE_USER as Sluice's backend account.
    async fn change_user(&mut self, payload: &[u8]) -> Result<(), Error> {
        let Some(cu) = ChangeUser::parse(&payload[1..], self.login.caps) else {
            send_err(&mut self.client, 1, err::ER_MALFORMED_PACKET, "HY000", "Malformed communication packet.").await;
            return Ok(());
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
                    self.backend.caps,
                    self.backend.ext_caps,
                    None,
                );
                match self.backend.change_user(&refused, cu.charset.unwrap_or(self.login.charset as u16), &self.shared.rng).await {
                    // The server refuses the command itself after too many failed
                    // attempts on one connection (ER_UNKNOWN_COM_ERROR): its answer wins.
                    Err(Error::BackendErr { code: backend_code, state, message, .. }) if backend_code != err::ER_ACCESS_DENIED_ERROR => {
                        send_err(&mut self.client, seq, backend_code, &state, &message).await;
                        return Ok(());
                    }
                    Err(Error::BackendErr { .. }) => {}
                    Ok(_) => tracing::warn!(conn = self.id, "backend accepted a COM_CHANGE_USER meant to be refused"),
                    Err(e) => {
                        return Err(e);
                    }
                }
                send_err(&mut self.client, seq, code, if code == err::ER_ACCESS_DENIED_ERROR { "28000" } else { "08004" }, &message).await;
                return Ok(());
            }
        };
        let database = (!cu.database.is_empty()).then(|| cu.database.clone());
        let charset = cu.charset.unwrap_or(self.login.charset as u16);
        let blogin = self.shared.backend_login(&backend_user, &secret, database.clone(), charset as u8, self.backend.caps, self.backend.ext_caps, cu.attrs.clone());
        match self.backend.change_user(&blogin, charset, &self.shared.rng).await {
            Ok(ok_payload) => {
                self.client.send(seq, &ok_payload).await.map_err(Error::ClientIo)?;
                self.login.user = name.clone();
                self.login.backend_user = backend_user;
                self.login.backend_secret = secret;
                self.login.database = database;
                self.shared.registry.set_user(self.id, &name);
                Ok(())
            }
            Err(Error::BackendErr { code, state, message, .. }) => {
                send_err(&mut self.client, seq, code, &state, &message).await;
                Ok(())
            }
            Err(e) => {
                Err(e)
            }
        }
    }
}
