//! One client connection of a simulated server: the connection phase (Handshake v10,
//! mysql_native_password / caching_sha2_password with auth switch, fast path and RSA full
//! authentication), then the command phase over the engine session.
//!
//! Follows <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html>
//! and <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html>.
//! Framing, handshake packets, OK/ERR builders and the authentication primitives are
//! Sluice's own ([`sluice::protocol`]).

use std::collections::BTreeMap;
use std::time::Duration;

use sluice::net::Stream;
use sluice::protocol::auth;
use sluice::protocol::authflow::{ServerStep, Sha2Server};
use sluice::protocol::conn::{Packet, PacketConn, ReadError};
use sluice::protocol::constants::{cap, com, err, status};
use sluice::protocol::handshake::{auth_switch_request, ChangeUser, HandshakeResponse, ServerHandshake};
use sluice::protocol::packet::Reader;
use sluice::protocol::packets::err_payload;

use super::encode;
use super::node::{Clock, Gone, Plugin, SimServer, Watcher, MAX_BATCH, PRE_AUTH_USER};
use super::stmt::{self, Prepared};
use crate::engine::{ExecOutcome, Flavour, GtidPosition, QueryResult, SessionId, SessionOptions, SimError, SqlError};

/// Capabilities a simulated server offers.
pub const SERVER_CAPS: u32 = cap::LONG_PASSWORD
    | cap::FOUND_ROWS
    | cap::LONG_FLAG
    | cap::CONNECT_WITH_DB
    | cap::NO_SCHEMA
    | cap::ODBC
    | cap::IGNORE_SPACE
    | cap::PROTOCOL_41
    | cap::INTERACTIVE
    | cap::IGNORE_SIGPIPE
    | cap::TRANSACTIONS
    | cap::RESERVED
    | cap::SECURE_CONNECTION
    | cap::MULTI_STATEMENTS
    | cap::MULTI_RESULTS
    | cap::PS_MULTI_RESULTS
    | cap::PLUGIN_AUTH
    | cap::CONNECT_ATTRS
    | cap::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | cap::CAN_HANDLE_EXPIRED_PASSWORDS
    | cap::SESSION_TRACK
    | cap::DEPRECATE_EOF;

/// The binlog dump command of the simulation's replication protocol: COM_BINLOG_DUMP_GTID
/// followed by this marker, the heartbeat period in ms, `:` and the GTID position text.
pub const DUMP_MARKER: &[u8] = b"sim-dump:";

/// Login must finish within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Flush queued packets once this many bytes are waiting.
const FLUSH_AT: usize = 64 * 1024;

/// Why a connection ends.
#[derive(Debug)]
pub(crate) enum End {
    /// The server crashed or restarted under the connection.
    Gone,
    /// The client left or broke the protocol.
    Client,
    /// The engine dropped the session (killed, or killed itself); send this error first.
    Disconnect(Option<SqlError>),
    /// Login failed (the error was sent).
    Denied,
}

impl From<Gone> for End {
    fn from(_: Gone) -> Self {
        End::Gone
    }
}

pub(crate) struct Conn<S> {
    srv: SimServer,
    conn: PacketConn<S>,
    /// Every engine change: for statements waiting to resume.
    rx: Watcher,
    /// Lifecycle changes and sessions killed or gone: for idle waits (next command,
    /// reads, writes), which would otherwise wake on every commit.
    life_rx: Watcher,
    inc: u64,
    clock: Clock,
    sid: SessionId,
    caps: u32,
    nonce: Vec<u8>,
    user: String,
    peer_host: String,
    stmts: BTreeMap<u32, Prepared>,
    next_stmt: u32,
}

/// Serves one accepted connection of incarnation `inc` until it ends.
pub(crate) async fn run<S: Stream>(srv: SimServer, stream: S, peer: String, inc: u64, clock: Clock) {
    let mut conn = PacketConn::new(stream, srv.opts().max_allowed_packet);
    if !srv.try_open_connection() {
        let _ = conn.send(0, &err_payload(err::ER_CON_COUNT_ERROR, "08004", "Too many connections")).await;
        conn.shutdown().await;
        return;
    }
    let peer_host = peer.rsplit_once(':').map(|(h, _)| h).unwrap_or(&peer).to_string();
    let rx = srv.subscribe();
    let life_rx = srv.subscribe_life();
    let mut c = Conn {
        srv: srv.clone(),
        conn,
        rx,
        life_rx,
        inc,
        clock,
        sid: 0,
        caps: 0,
        nonce: Vec::new(),
        user: String::new(),
        peer_host,
        stmts: BTreeMap::new(),
        next_stmt: 1,
    };
    let end = c.serve().await.err();
    tracing::trace!(server = srv.name(), conn = c.sid, ?end, "connection ends");
    if let Some(End::Disconnect(Some(e))) = &end {
        let _ = c.conn.send(1, &encode::err(e)).await;
    }
    let gone = matches!(end, Some(End::Gone));
    if c.sid != 0 && !gone {
        let sid = c.sid;
        srv.with(|e| e.close_session(sid));
    }
    if !gone {
        c.conn.shutdown().await;
    }
    srv.close_connection();
}

impl<S: Stream> Conn<S> {
    async fn serve(&mut self) -> Result<(), End> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.login()).await {
            Ok(r) => r?,
            Err(_) => {
                self.send(2, err_payload(err::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake")).await?;
                return Err(End::Client);
            }
        }
        loop {
            let pkt = self.next_command().await?;
            self.srv.gate(self.inc, &mut self.life_rx).await?;
            if !self.command(pkt).await? {
                return Ok(());
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // I/O with crash and pause awareness

    /// Races `read_packet` against the server going away.
    async fn read(&mut self) -> Result<Packet, End> {
        let fut = self.conn.read_packet();
        tokio::pin!(fut);
        loop {
            self.life_rx.mark_seen();
            self.srv.state_for(self.inc)?;
            tokio::select! {
                biased;
                r = self.life_rx.changed() => {
                    if r.is_err() {
                        return Err(End::Gone);
                    }
                }
                p = &mut fut => return p.map_err(read_end),
            }
        }
    }

    /// Waits for the next command; also notices the session being killed while idle.
    async fn next_command(&mut self) -> Result<Packet, End> {
        let fut = self.conn.read_packet();
        tokio::pin!(fut);
        loop {
            self.life_rx.mark_seen();
            self.srv.state_for(self.inc)?;
            {
                // An idle session is killed iff `can_resume` says it could go on.
                let e = self.srv.engine();
                match e.session(self.sid) {
                    None => return Err(End::Disconnect(None)),
                    Some(s) if !s.is_busy() && e.can_resume(self.sid, 0) => return Err(End::Disconnect(None)),
                    Some(_) => {}
                }
            }
            tokio::select! {
                biased;
                r = self.life_rx.changed() => {
                    if r.is_err() {
                        return Err(End::Gone);
                    }
                }
                p = &mut fut => return p.map_err(read_end),
            }
        }
    }

    /// Sends packets starting at `seq` (waiting while the server is paused); returns the
    /// next sequence id.
    async fn send_all(&mut self, mut seq: u8, payloads: &[Vec<u8>]) -> Result<u8, End> {
        self.srv.gate(self.inc, &mut self.life_rx).await?;
        let mut queued = 0;
        for p in payloads {
            seq = self.conn.queue(seq, p);
            queued += p.len() + 4;
            if queued >= FLUSH_AT {
                self.flush().await?;
                queued = 0;
            }
        }
        self.flush().await?;
        Ok(seq)
    }

    async fn send(&mut self, seq: u8, payload: Vec<u8>) -> Result<u8, End> {
        self.send_all(seq, &[payload]).await
    }

    async fn flush(&mut self) -> Result<(), End> {
        let fut = self.conn.flush();
        tokio::pin!(fut);
        loop {
            self.life_rx.mark_seen();
            self.srv.state_for(self.inc)?;
            tokio::select! {
                biased;
                r = self.life_rx.changed() => {
                    if r.is_err() {
                        return Err(End::Gone);
                    }
                }
                r = &mut fut => return r.map_err(|_| End::Client),
            }
        }
    }

    fn now(&self) -> u64 {
        self.srv.now(&self.clock)
    }

    // ---------------------------------------------------------------------------------
    // Connection phase

    async fn login(&mut self) -> Result<(), End> {
        self.srv.gate(self.inc, &mut self.rx).await?;
        let host = self.peer_host.clone();
        let opened = self.srv.with(|e| {
            let mut o = SessionOptions::new(PRE_AUTH_USER);
            o.host = host;
            e.open_session_with(o)
        });
        self.sid = match opened {
            Ok(s) => s,
            Err(e) => {
                let _ = self.send(0, encode::err(&e)).await;
                return Err(End::Denied);
            }
        };
        self.nonce = self.srv.nonce();
        let mut caps = SERVER_CAPS;
        if self.srv.flavour() == Flavour::MariaDb {
            // MariaDB servers clear CLIENT_MYSQL (bit 0) to announce themselves.
            caps &= !cap::LONG_PASSWORD;
        }
        let hs = ServerHandshake {
            ext_caps: 0,
            server_version: self.srv.handshake_version().as_bytes().to_vec(),
            connection_id: self.sid,
            nonce: self.nonce.clone(),
            caps,
            charset: match self.srv.flavour() {
                Flavour::MariaDb => 45,
                Flavour::MySql8 => 255,
            },
            status: status::AUTOCOMMIT,
            auth_plugin: self.srv.default_plugin().name().as_bytes().to_vec(),
        };
        self.send(0, hs.write()).await?;
        let p = self.read().await?;
        if HandshakeResponse::is_ssl_request(&p.payload) {
            self.send(p.next_seq(), err_payload(err::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake")).await?;
            return Err(End::Denied);
        }
        let Some(resp) = HandshakeResponse::parse(&p.payload) else {
            self.send(p.next_seq(), err_payload(err::ER_HANDSHAKE_ERROR, "08S01", "Bad handshake")).await?;
            return Err(End::Denied);
        };
        self.caps = resp.caps & caps;
        let (sid, multi) = (self.sid, self.caps & cap::MULTI_STATEMENTS != 0);
        let _ = self.srv.with(|e| e.set_multi_statements(sid, multi));
        let user = String::from_utf8_lossy(&resp.user).into_owned();
        let client_plugin = match (&resp.auth_plugin, resp.caps & cap::PLUGIN_AUTH != 0) {
            (Some(p), true) if !p.is_empty() => String::from_utf8_lossy(p).into_owned(),
            _ => auth::NATIVE.to_string(),
        };
        let seq = self.authenticate(&user, &client_plugin, resp.auth_response.clone(), p.next_seq()).await?;
        let sid = self.sid;
        let _ = self.srv.with(|e| e.set_session_user(sid, &user));
        self.user = user;
        if let Some(db) = resp.database.as_ref().filter(|d| !d.is_empty() && self.caps & cap::CONNECT_WITH_DB != 0) {
            let db = String::from_utf8_lossy(db).into_owned();
            let (sid, now) = (self.sid, self.now());
            match self.srv.with(|e| e.init_db(sid, &db, now)) {
                Ok(ExecOutcome::Done(r)) if r.iter().any(QueryResult::is_err) => {
                    let e = r.into_iter().find_map(|x| x.err().cloned()).expect("an error");
                    self.send(seq, encode::err(&e)).await?;
                    return Err(End::Denied);
                }
                Ok(ExecOutcome::Done(_)) => {}
                _ => return Err(End::Gone),
            }
        }
        let st = self.status();
        self.send(seq, encode::ok_status(st, self.caps)).await?;
        Ok(())
    }

    fn status(&self) -> u16 {
        self.srv.engine().status_flags(self.sid).unwrap_or(status::AUTOCOMMIT)
    }

    /// Verifies `user`'s proof (following an auth switch when the account's plugin is not
    /// the one the client used); sends the intermediate packets and, on failure, the ERR.
    /// Returns the sequence id for the final OK.
    async fn authenticate(&mut self, user: &str, client_plugin: &str, response: Vec<u8>, mut seq: u8) -> Result<u8, End> {
        let account = self.srv.account(user).cloned();
        let plugin = account.as_ref().map(|a| self.srv.plugin_of(a)).unwrap_or(self.srv.default_plugin());
        let used_password = !response.is_empty();
        let mut data = response;
        if client_plugin != plugin.name() {
            let p = self.send(seq, auth_switch_request(plugin.name(), &self.nonce)).await?;
            let _ = p;
            let reply = self.read().await?;
            data = reply.payload.to_vec();
            seq = reply.next_seq();
        }
        let nonce = self.nonce.clone();
        let ok = match (&account, plugin) {
            (None, _) => false,
            (Some(a), Plugin::Native) => {
                let stage2 = (!a.password.is_empty()).then(|| auth::native_stage2(a.password.as_bytes()));
                auth::native_verify(stage2.as_ref(), &nonce, &data)
            }
            (Some(a), Plugin::CachingSha2) => {
                let password = a.password.clone();
                let rsa = self.srv.rsa();
                let mut flow = Sha2Server::new(password.as_bytes(), &nonce, false, &rsa);
                let mut step = flow.start(&data, self.srv.sha2_cached(user));
                loop {
                    match step {
                        ServerStep::Send(p) => {
                            self.send(seq, p).await?;
                            let reply = self.read().await?;
                            seq = reply.next_seq();
                            step = flow.on_packet(&reply.payload);
                        }
                        ServerStep::Accept(last) => {
                            if !last.is_empty() {
                                seq = self.send(seq, last).await?;
                            }
                            if flow.proved_by_full_auth() {
                                self.srv.sha2_remember(user);
                            }
                            break true;
                        }
                        ServerStep::Reject => break false,
                    }
                }
            }
        };
        if ok {
            return Ok(seq);
        }
        let msg = format!(
            "Access denied for user '{user}'@'{}' (using password: {})",
            self.peer_host,
            if used_password { "YES" } else { "NO" }
        );
        let _ = self.send(seq, err_payload(err::ER_ACCESS_DENIED_ERROR, "28000", &msg)).await;
        Err(End::Denied)
    }

    // ---------------------------------------------------------------------------------
    // Command phase

    /// Handles one command; `Ok(false)` ends the connection normally.
    async fn command(&mut self, p: Packet) -> Result<bool, End> {
        let seq = p.next_seq();
        let Some(&cmd) = p.payload.first() else {
            self.send(seq, err_payload(err::ER_MALFORMED_PACKET, "HY000", "Malformed communication packet")).await?;
            return Ok(true);
        };
        let body = &p.payload[1..];
        match cmd {
            com::QUIT => return Ok(false),
            com::PING => {
                let st = self.status();
                self.send(seq, encode::ok_status(st, self.caps)).await?;
            }
            com::QUERY => {
                let sql = String::from_utf8_lossy(body).into_owned();
                self.query(seq, &sql, false).await?;
            }
            com::INIT_DB => {
                let db = String::from_utf8_lossy(body).into_owned();
                let sql = format!("USE `{}`", db.replace('`', "``"));
                self.query(seq, &sql, false).await?;
            }
            com::STMT_PREPARE => self.prepare(seq, body).await?,
            com::STMT_EXECUTE => self.execute(seq, body).await?,
            com::STMT_SEND_LONG_DATA => self.long_data(body),
            com::STMT_CLOSE => {
                if let Some(id) = Reader::new(body).u32() {
                    self.stmts.remove(&id);
                }
            }
            com::STMT_RESET => {
                let id = Reader::new(body).u32().unwrap_or(0);
                match self.stmts.get_mut(&id) {
                    Some(s) => {
                        s.long_data.clear();
                        let st = self.status();
                        self.send(seq, encode::ok_status(st, self.caps)).await?;
                    }
                    None => {
                        self.send(seq, unknown_stmt(id, "mysqld_stmt_reset")).await?;
                    }
                }
            }
            com::STMT_FETCH => {
                let id = Reader::new(body).u32().unwrap_or(0);
                let msg = format!("The statement ({id}) has no open cursor");
                self.send(seq, err_payload(1421, "HY000", &msg)).await?;
            }
            com::SET_OPTION => {
                match Reader::new(body).u16() {
                    Some(0) => self.caps |= cap::MULTI_STATEMENTS,
                    Some(1) => self.caps &= !cap::MULTI_STATEMENTS,
                    _ => {
                        self.send(seq, err_payload(err::ER_UNKNOWN_COM_ERROR, "08S01", "Unknown command")).await?;
                        return Ok(true);
                    }
                }
                let (sid, multi) = (self.sid, self.caps & cap::MULTI_STATEMENTS != 0);
                let _ = self.srv.with(|e| e.set_multi_statements(sid, multi));
                let st = self.status();
                let reply = if self.caps & cap::DEPRECATE_EOF != 0 { encode::ok_status(st, self.caps) } else { encode::eof(0, st) };
                self.send(seq, reply).await?;
            }
            com::RESET_CONNECTION => {
                let sid = self.sid;
                if self.srv.with(|e| e.reset_session(sid)).is_err() {
                    return Err(End::Disconnect(None));
                }
                self.stmts.clear();
                let st = self.status();
                self.send(seq, encode::ok_status(st, self.caps)).await?;
            }
            com::CHANGE_USER => self.change_user(seq, body).await?,
            com::PROCESS_KILL => {
                let id = Reader::new(body).u32().unwrap_or(0);
                let sql = format!("KILL {id}");
                self.query(seq, &sql, false).await?;
            }
            com::STATISTICS => {
                let (threads, up) = (self.srv.connections(), self.now() / 1000);
                let text = format!("Uptime: {up}  Threads: {threads}  Questions: 0  Slow queries: 0  Opens: 0  Open tables: 0  Queries per second avg: 0.000");
                self.send(seq, text.into_bytes()).await?;
            }
            com::BINLOG_DUMP_GTID if body.starts_with(DUMP_MARKER) => {
                self.dump(seq, &body[DUMP_MARKER.len()..]).await?;
                return Ok(false);
            }
            _ => {
                self.send(seq, err_payload(err::ER_UNKNOWN_COM_ERROR, "08S01", "Unknown command")).await?;
            }
        }
        Ok(true)
    }

    /// Runs a statement batch, waiting through blocked states, and returns its results.
    async fn run_sql(&mut self, sql: &str) -> Result<Vec<QueryResult>, End> {
        let (sid, now) = (self.sid, self.now());
        let mut out = self.srv.with(|e| e.execute(sid, sql, now));
        if touches_replication(sql) {
            self.srv.bump_repl_epoch();
        }
        loop {
            match out {
                Ok(ExecOutcome::Done(r)) => return Ok(r),
                Ok(ExecOutcome::Disconnect { error }) => return Err(End::Disconnect(error)),
                Ok(ExecOutcome::Blocked(_)) | Ok(ExecOutcome::CommitPendingAck { .. }) => {
                    self.wait_resumable().await?;
                    let now = self.now();
                    out = self.srv.with(|e| e.resume(sid, now));
                }
                Err(SimError::UnknownSession(_)) => return Err(End::Disconnect(None)),
                Err(e) => {
                    tracing::warn!(server = self.srv.name(), error = %e, "engine refused a statement");
                    return Err(End::Disconnect(None));
                }
            }
        }
    }

    /// Waits until the blocked statement can make progress (its condition holds, its
    /// deadline passed, or it was killed).
    async fn wait_resumable(&mut self) -> Result<(), End> {
        loop {
            self.srv.gate(self.inc, &mut self.rx).await?;
            let now = self.now();
            let (ready, deadline) = {
                let e = self.srv.engine();
                (e.can_resume(self.sid, now), e.next_deadline())
            };
            if ready {
                return Ok(());
            }
            let wait = deadline.map(|d| d.saturating_sub(now).max(1)).unwrap_or(3_600_000);
            tokio::select! {
                biased;
                r = self.rx.changed() => {
                    if r.is_err() {
                        return Err(End::Gone);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
        }
    }

    /// COM_QUERY (and commands answered like it): every result, chained with
    /// SERVER_MORE_RESULTS_EXISTS, ending at the first error.
    async fn query(&mut self, seq: u8, sql: &str, binary: bool) -> Result<(), End> {
        let results = self.run_sql(sql).await?;
        let packets = self.result_packets(&results, binary);
        self.send_all(seq, &packets).await?;
        Ok(())
    }

    fn result_packets(&self, results: &[QueryResult], binary: bool) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        if results.is_empty() {
            packets.push(encode::ok_status(self.status(), self.caps));
        }
        for (i, r) in results.iter().enumerate() {
            let more = i + 1 < results.len() && self.caps & cap::MULTI_RESULTS != 0;
            encode::result_packets(r, more, self.caps, binary, &mut packets);
            if !more {
                break;
            }
        }
        packets
    }

    async fn prepare(&mut self, seq: u8, body: &[u8]) -> Result<(), End> {
        let sql = String::from_utf8_lossy(body).trim().to_string();
        if sql.is_empty() {
            let e = SqlError::new(1065, "42000", "Query was empty");
            self.send(seq, encode::err(&e)).await?;
            return Ok(());
        }
        if self.stmts.len() >= self.srv.opts().max_prepared {
            let msg = format!(
                "Can't create more than max_prepared_stmt_count statements (current value: {})",
                self.srv.opts().max_prepared
            );
            self.send(seq, err_payload(1461, "42000", &msg)).await?;
            return Ok(());
        }
        let params = stmt::placeholders(&sql).len();
        let id = self.next_stmt;
        self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
        self.stmts.insert(id, Prepared { sql, params, types: Vec::new(), long_data: BTreeMap::new() });
        let mut ok = vec![0x00];
        ok.extend_from_slice(&id.to_le_bytes());
        ok.extend_from_slice(&0u16.to_le_bytes()); // columns: reported by EXECUTE
        ok.extend_from_slice(&(params.min(u16::MAX as usize) as u16).to_le_bytes());
        ok.push(0);
        ok.extend_from_slice(&0u16.to_le_bytes()); // warnings
        let mut packets = vec![ok];
        for _ in 0..params {
            packets.push(encode::param_def());
        }
        if params > 0 && self.caps & cap::DEPRECATE_EOF == 0 {
            packets.push(encode::eof(0, self.status()));
        }
        self.send_all(seq, &packets).await?;
        Ok(())
    }

    async fn execute(&mut self, seq: u8, body: &[u8]) -> Result<(), End> {
        let mut r = Reader::new(body);
        let id = r.u32().unwrap_or(0);
        let (_flags, _iterations) = (r.u8(), r.u32());
        let Some(st) = self.stmts.get_mut(&id) else {
            self.send(seq, unknown_stmt(id, "mysqld_stmt_execute")).await?;
            return Ok(());
        };
        let params = match stmt::decode_params(st, &mut r) {
            Ok(p) => p,
            Err(_) => {
                self.send(seq, err_payload(err::ER_MALFORMED_PACKET, "HY000", "Malformed communication packet")).await?;
                return Ok(());
            }
        };
        st.long_data.clear();
        let sql = stmt::substitute(&st.sql, &params);
        self.query(seq, &sql, true).await
    }

    fn long_data(&mut self, body: &[u8]) {
        let mut r = Reader::new(body);
        let (Some(id), Some(param)) = (r.u32(), r.u16()) else { return };
        let limit = self.srv.opts().max_allowed_packet;
        if let Some(st) = self.stmts.get_mut(&id) {
            let buf = st.long_data.entry(param).or_default();
            let chunk = r.rest();
            if buf.len() + chunk.len() <= limit {
                buf.extend_from_slice(chunk);
            }
        }
    }

    async fn change_user(&mut self, seq: u8, body: &[u8]) -> Result<(), End> {
        let Some(cu) = ChangeUser::parse(body, self.caps) else {
            self.send(seq, err_payload(err::ER_MALFORMED_PACKET, "HY000", "Malformed communication packet")).await?;
            return Err(End::Denied);
        };
        let user = String::from_utf8_lossy(&cu.user).into_owned();
        let plugin = match &cu.auth_plugin {
            Some(p) if !p.is_empty() => String::from_utf8_lossy(p).into_owned(),
            _ => auth::NATIVE.to_string(),
        };
        let seq = self.authenticate(&user, &plugin, cu.auth_response.clone(), seq).await?;
        let sid = self.sid;
        if self.srv.with(|e| e.reset_session(sid)).is_err() {
            return Err(End::Disconnect(None));
        }
        self.stmts.clear();
        let _ = self.srv.with(|e| e.set_session_user(sid, &user));
        self.user = user;
        if !cu.database.is_empty() {
            let db = String::from_utf8_lossy(&cu.database).into_owned();
            let sql = format!("USE `{}`", db.replace('`', "``"));
            let r = self.run_sql(&sql).await?;
            if let Some(e) = r.iter().find_map(QueryResult::err) {
                self.send(seq, encode::err(e)).await?;
                return Ok(());
            }
        }
        let st = self.status();
        self.send(seq, encode::ok_status(st, self.caps)).await?;
        Ok(())
    }

    // ---------------------------------------------------------------------------------
    // Replication: the primary's side of a binlog dump

    /// Streams binlog events to a replica's IO thread: each batch is handed over through
    /// the server's outbox and announced over the connection (`B` + token); the replica
    /// answers every batch with its received position (`A` + text), which also acks
    /// semi-sync commits. Idle periods carry heartbeats (`H`).
    async fn dump(&mut self, mut seq: u8, args: &[u8]) -> Result<(), End> {
        let allowed = self.srv.account(&self.user).is_some_and(|a| a.replication);
        if !allowed {
            let msg = "Access denied; you need (at least one of) the REPLICATION SLAVE privilege(s) for this operation";
            self.send(seq, err_payload(1227, "42000", msg)).await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(args).into_owned();
        let (hb, pos_text) = text.split_once(':').unwrap_or(("1000", ""));
        let heartbeat = Duration::from_millis(hb.parse::<u64>().unwrap_or(1000).max(1));
        let Ok(mut pos) = GtidPosition::parse(self.srv.flavour(), pos_text) else {
            let e = SqlError::new(1236, "HY000", format!("Got fatal error 1236 from master when reading data from binary log: 'bad GTID position {pos_text:?}'"));
            self.send(seq, encode::err(&e)).await?;
            return Ok(());
        };
        let mut outstanding: Option<u64> = None;
        let mut next_hb = tokio::time::Instant::now() + heartbeat;
        let result = loop {
            if let Err(g) = self.srv.gate(self.inc, &mut self.rx).await {
                break Err(End::from(g));
            }
            if outstanding.is_none() {
                let evs = self.srv.engine().binlog_events_after(&pos);
                match evs {
                    Err(e) => {
                        let _ = self.send(seq, encode::err(&e)).await;
                        break Ok(());
                    }
                    Ok(mut evs) if !evs.is_empty() => {
                        evs.truncate(MAX_BATCH);
                        for e in &evs {
                            pos.add(&e.gtid);
                        }
                        let token = self.srv.put_batch(evs);
                        outstanding = Some(token);
                        let mut msg = vec![0x00, b'B'];
                        msg.extend_from_slice(&token.to_le_bytes());
                        match self.send(seq, msg).await {
                            Ok(s) => seq = s,
                            Err(e) => break Err(e),
                        }
                        next_hb = tokio::time::Instant::now() + heartbeat;
                        continue;
                    }
                    Ok(_) => {}
                }
            }
            let fut = self.conn.read_packet();
            let got = tokio::select! {
                biased;
                r = self.rx.changed() => {
                    if r.is_err() {
                        break Err(End::Gone);
                    }
                    None
                }
                p = fut => Some(p),
                _ = tokio::time::sleep_until(next_hb) => {
                    match self.send(seq, vec![0x00, b'H']).await {
                        Ok(s) => seq = s,
                        Err(e) => break Err(e),
                    }
                    next_hb = tokio::time::Instant::now() + heartbeat;
                    None
                }
            };
            match got {
                None => {}
                Some(Err(_)) => break Err(End::Client),
                Some(Ok(p)) => {
                    if p.payload.first() == Some(&b'A') {
                        let text = String::from_utf8_lossy(&p.payload[1..]).into_owned();
                        if let Ok(ack) = GtidPosition::parse(self.srv.flavour(), &text) {
                            self.srv.with(|e| e.ack_semi_sync(&ack));
                        }
                        if let Some(t) = outstanding.take() {
                            self.srv.drop_batch(t);
                        }
                    }
                }
            }
        };
        if let Some(t) = outstanding {
            self.srv.drop_batch(t);
        }
        result
    }
}

fn read_end(_e: ReadError) -> End {
    End::Client
}

fn unknown_stmt(id: u32, what: &str) -> Vec<u8> {
    err_payload(1243, "HY000", &format!("Unknown prepared statement handler ({id}) given to {what}"))
}

/// Whether a statement batch may reconfigure replication (the IO thread then reconnects).
fn touches_replication(sql: &str) -> bool {
    // Two adjacent words, compared without allocating (this runs for every query).
    let mut words = sql.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').filter(|w| !w.is_empty());
    let Some(mut prev) = words.next() else { return false };
    for w in words {
        let verb = ["START", "STOP", "CHANGE", "RESET"].iter().any(|k| prev.eq_ignore_ascii_case(k));
        if verb && ["SLAVE", "REPLICA", "MASTER", "REPLICATION", "ALL"].iter().any(|k| w.eq_ignore_ascii_case(k)) {
            return true;
        }
        prev = w;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::touches_replication;

    #[test]
    fn replication_statements_are_recognised_in_any_case() {
        for sql in ["STOP SLAVE", "stop  replica", "CHANGE MASTER TO MASTER_HOST='x'", "reset slave all", "START REPLICATION", "SET @x=1; Reset Master"] {
            assert!(touches_replication(sql), "{sql}");
        }
        for sql in ["", "SELECT 1", "INSERT INTO kv VALUES ('stop', 1)", "START TRANSACTION", "RESET QUERY CACHE"] {
            assert!(!touches_replication(sql), "{sql}");
        }
    }
}
