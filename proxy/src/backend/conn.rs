//! Sluice as a client of a backend server: connecting, the optional switch to TLS,
//! logging in (mysql_native_password or caching_sha2_password, following auth switches),
//! and simple text-protocol queries for the proxy's own use (monitoring, KILL).
//!
//! Implements the client side of
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html>
//! and decodes text result sets per
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_query_response_text_resultset.html>
//! (only for the proxy's own small queries; client traffic is never decoded).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use crate::sync::Locked;

use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::net::Net;
use crate::protocol::auth;
use crate::protocol::conn::{Packet, PacketConn, ReadError};
use crate::protocol::constants::{cap, com, status};
use crate::protocol::authflow::{AuthFailure, ClientAuth, ClientStep};
use crate::protocol::handshake::{ChangeUser, HandshakeResponse, ServerHandshake};
use crate::protocol::packet::Reader;
use crate::protocol::packets;
use crate::tls::BackendTls;

/// Largest packet accepted from a backend when read whole (results stream through
/// without this limit).
const BACKEND_MAX_PACKET: usize = 1 << 30;

/// Most columns a result of the proxy's own queries may announce (servers allow 4096 a
/// table; a join or a function list may exceed that a little, never this).
const MAX_COLUMNS: u64 = 1 << 16;

pub use crate::protocol::authflow::Secret;

/// What a backend login needs.
#[derive(Clone, Debug)]
pub struct Login {
    pub user: String,
    pub secret: Secret,
    pub database: Option<Vec<u8>>,
    pub charset: u8,
    /// Capabilities wanted (intersected with the server's and Sluice's).
    pub caps: u32,
    /// MariaDB extended capabilities wanted (likewise).
    pub ext_caps: u32,
    pub attrs: Option<Vec<u8>>,
    pub tls: Option<BackendTls>,
    pub timeout: Duration,
}

/// A logged-in backend connection.
pub struct BackendConn<S> {
    pub conn: PacketConn<S>,
    pub addr: String,
    /// The backend's id for this connection (what KILL takes there).
    pub thread_id: u32,
    /// Capabilities in force on this connection.
    pub caps: u32,
    /// MariaDB extended capabilities in force on this connection.
    pub ext_caps: u32,
    pub server_version: Vec<u8>,
    pub server_caps: u32,
    pub server_ext_caps: u32,
    pub server_charset: u8,
    pub server_status: u16,
    /// Nonce of the initial handshake (COM_CHANGE_USER proofs use it).
    pub nonce: Vec<u8>,
    /// Payload of the OK packet that ended the login.
    pub login_ok: Vec<u8>,
}

/// Text result of a proxy-internal query: column names and rows of nullable byte strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
}

impl TextResult {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.eq_ignore_ascii_case(name))
    }
    /// The value of `name` in row `row` as text.
    pub fn get(&self, row: usize, name: &str) -> Option<String> {
        let i = self.column(name)?;
        self.rows.get(row)?.get(i)?.as_ref().map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

fn io_err(addr: &str, sent: bool) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::BackendIo { addr: addr.to_string(), sent, source }
}

fn read_err(addr: &str, sent: bool, e: ReadError) -> Error {
    match e {
        ReadError::Io(source) => Error::BackendIo { addr: addr.to_string(), sent, source },
        ReadError::Closed => Error::BackendIo { addr: addr.to_string(), sent, source: std::io::ErrorKind::UnexpectedEof.into() },
        other => Error::backend_protocol(addr, other.to_string()),
    }
}

pub(crate) fn err_packet(addr: &str, payload: &[u8]) -> Error {
    match packets::Err::parse(payload) {
        Some(e) => Error::BackendErr {
            addr: addr.to_string(),
            code: e.code,
            state: String::from_utf8_lossy(e.state).into_owned(),
            message: e.message_lossy(),
        },
        None => Error::backend_protocol(addr, "malformed ERR packet"),
    }
}

/// Connects to `addr` and logs in, all within `login.timeout`.
pub async fn connect<N: Net>(net: &N, addr: &str, login: &Login, rng: &Arc<Mutex<ChaCha8Rng>>) -> Result<BackendConn<N::Stream>> {
    match tokio::time::timeout(login.timeout, connect_inner(net, addr, login, rng)).await {
        Ok(r) => r,
        Err(_) => Err(Error::BackendTimeout { addr: addr.to_string(), what: "connecting and logging in" }),
    }
}

async fn connect_inner<N: Net>(net: &N, addr: &str, login: &Login, rng: &Arc<Mutex<ChaCha8Rng>>) -> Result<BackendConn<N::Stream>> {
    let stream = net.connect(addr).await.map_err(io_err(addr, false))?;
    let mut conn = PacketConn::new(stream, BACKEND_MAX_PACKET);
    let first = conn.read_packet().await.map_err(|e| read_err(addr, false, e))?;
    if first.payload.first() == Some(&0xFF) {
        return Err(err_packet(addr, &first.payload));
    }
    let hs = ServerHandshake::parse(&first.payload).ok_or_else(|| Error::backend_protocol(addr, "malformed initial handshake"))?;
    let needed = cap::PROTOCOL_41 | cap::SECURE_CONNECTION;
    if hs.caps & needed != needed {
        return Err(Error::backend_protocol(addr, "server lacks PROTOCOL_41/SECURE_CONNECTION"));
    }
    let mut caps = login.caps & hs.caps & cap::SUPPORTED & !cap::SSL;
    caps |= needed | (hs.caps & (cap::PLUGIN_AUTH | cap::LONG_PASSWORD | cap::TRANSACTIONS));
    caps &= !cap::CONNECT_WITH_DB;
    if login.database.as_ref().is_some_and(|d| !d.is_empty()) {
        caps |= cap::CONNECT_WITH_DB;
    }
    if login.attrs.is_none() {
        caps &= !cap::CONNECT_ATTRS;
    }
    let mut seq = first.next_seq();
    let plugin = if hs.caps & cap::PLUGIN_AUTH != 0 && !hs.auth_plugin.is_empty() {
        String::from_utf8_lossy(&hs.auth_plugin).into_owned()
    } else {
        auth::NATIVE.to_string()
    };
    let mut resp = HandshakeResponse {
        caps,
        ext_caps: if hs.caps & cap::LONG_PASSWORD == 0 { login.ext_caps & hs.ext_caps & cap::ext::SUPPORTED } else { 0 },
        max_packet: 1 << 30,
        charset: login.charset,
        user: login.user.as_bytes().to_vec(),
        auth_response: Vec::new(),
        database: login.database.clone(),
        auth_plugin: Some(plugin.as_bytes().to_vec()),
        attrs: login.attrs.clone(),
    };
    if let Some(tls) = &login.tls {
        if hs.caps & cap::SSL == 0 {
            return Err(Error::Tls(format!("backend {addr} does not offer TLS")));
        }
        resp.caps |= cap::SSL;
        seq = conn.send(seq, &resp.write_ssl_request()).await.map_err(io_err(addr, false))?;
        conn.connect_tls(tls.config.clone(), tls.name_for(addr)?)
            .await
            .map_err(|e| Error::Tls(format!("backend {addr}: {e}")))?;
    }
    let auth = ClientAuth::new(&plugin, &hs.nonce, login.secret.clone(), conn.is_tls());
    resp.auth_response = auth.response().map_err(|f| auth_failure(addr, f))?;
    let login_ok = run_auth(&mut conn, addr, auth, (seq, resp.write()), rng).await?;
    let server_status = packets::Ok::parse(&login_ok, resp.caps).map(|o| o.status).unwrap_or(hs.status);
    Ok(BackendConn {
        conn,
        addr: addr.to_string(),
        thread_id: hs.connection_id,
        caps: resp.caps,
        ext_caps: resp.ext_caps,
        server_version: hs.server_version,
        server_caps: hs.caps,
        server_ext_caps: hs.ext_caps,
        server_charset: hs.charset,
        server_status,
        nonce: hs.nonce,
        login_ok,
    })
}

fn auth_failure(addr: &str, f: AuthFailure) -> Error {
    match f {
        AuthFailure::Refused { code, state, message } => Error::BackendErr { addr: addr.to_string(), code, state, message },
        AuthFailure::Unsupported(what) => Error::BackendErr {
            addr: addr.to_string(),
            code: crate::protocol::constants::err::ER_PLUGIN_IS_NOT_LOADED,
            state: "HY000".into(),
            message: format!("Sluice cannot log in with authentication plugin '{what}'"),
        },
        AuthFailure::Protocol(m) => Error::backend_protocol(addr, m),
    }
}

/// Sends `first` (the auth response) and follows the server's answers until OK
/// (returned) or failure, driving [`ClientAuth`].
async fn run_auth<S: crate::net::Stream>(
    conn: &mut PacketConn<S>,
    addr: &str,
    mut auth: ClientAuth,
    first: (u8, Vec<u8>),
    rng: &Arc<Mutex<ChaCha8Rng>>,
) -> Result<Vec<u8>> {
    conn.send(first.0, &first.1).await.map_err(io_err(addr, false))?;
    loop {
        let p: Packet = conn.read_packet().await.map_err(|e| read_err(addr, true, e))?;
        let step = {
            let mut rng = rng.locked();
            auth.on_packet(&p.payload, &mut *rng)
        };
        match step {
            ClientStep::Send(answer) => {
                conn.send(p.next_seq(), &answer).await.map_err(io_err(addr, true))?;
            }
            ClientStep::Wait => {}
            ClientStep::Done(ok) => return Ok(ok),
            ClientStep::Failed(f) => return Err(auth_failure(addr, f)),
        }
    }
}

impl<S: crate::net::Stream> BackendConn<S> {
    /// Runs a statement and returns its first result set (empty for OK). Used for the
    /// proxy's own small queries only.
    pub async fn query(&mut self, sql: &str) -> Result<TextResult> {
        let mut payload = Vec::with_capacity(1 + sql.len());
        payload.push(com::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        self.conn.send(0, &payload).await.map_err(io_err(&self.addr, false))?;
        let mut result: Option<TextResult> = None;
        loop {
            let p = self.read().await?;
            let more = match p.payload.first() {
                Some(0x00) => self.ok_status(&p.payload)? & status::MORE_RESULTS_EXISTS != 0,
                Some(0xFF) => return Err(err_packet(&self.addr, &p.payload)),
                _ => {
                    let mut r = Reader::new(&p.payload);
                    let n = r.lenenc().ok_or_else(|| Error::backend_protocol(&self.addr, "bad column count"))?;
                    // The count comes from the wire: a server never sends more than a
                    // table can have (4096 in MySQL), so a larger one is a protocol error
                    // rather than an allocation or a loop of that size.
                    if n > MAX_COLUMNS {
                        return Err(Error::backend_protocol(&self.addr, "column count out of range"));
                    }
                    // With cached metadata a flag byte says whether definitions follow
                    // (as in the response tracker, a missing flag is a protocol error).
                    let defs = if self.ext_caps & cap::ext::CACHE_METADATA == 0 {
                        n
                    } else {
                        match r.u8() {
                            Some(0) => 0,
                            Some(_) => n,
                            None => return Err(Error::backend_protocol(&self.addr, "column count without metadata flag")),
                        }
                    };
                    let mut cur = TextResult::default();
                    for _ in 0..defs {
                        let c = self.read().await?;
                        let mut r = Reader::new(&c.payload);
                        for _ in 0..4 {
                            r.lenenc_bytes();
                        }
                        cur.columns.push(String::from_utf8_lossy(r.lenenc_bytes().unwrap_or_default()).into_owned());
                    }
                    if self.caps & cap::DEPRECATE_EOF == 0 {
                        self.read().await?;
                    }
                    let more = loop {
                        let row = self.read().await?;
                        match row.payload.first() {
                            Some(0xFF) => return Err(err_packet(&self.addr, &row.payload)),
                            Some(0xFE) if row.payload.len() < 0xFF_FFFF => {
                                let st = packets::terminator_status(&row.payload, self.caps).unwrap_or(0);
                                break st & status::MORE_RESULTS_EXISTS != 0;
                            }
                            _ => {
                                let mut r = Reader::new(&row.payload);
                                // cannot truncate: n <= MAX_COLUMNS; a row holds at least one byte a value.
                                let mut vals = Vec::with_capacity((n as usize).min(row.payload.len()));
                                for _ in 0..n {
                                    if r.peek() == Some(0xFB) {
                                        r.u8();
                                        vals.push(None);
                                    } else {
                                        let v = r.lenenc_bytes().ok_or_else(|| Error::backend_protocol(&self.addr, "bad row"))?;
                                        vals.push(Some(v.to_vec()));
                                    }
                                }
                                cur.rows.push(vals);
                            }
                        }
                    };
                    result.get_or_insert(cur);
                    more
                }
            };
            if !more {
                return Ok(result.unwrap_or_default());
            }
        }
    }

    fn ok_status(&self, payload: &[u8]) -> Result<u16> {
        packets::Ok::parse(payload, self.caps).map(|o| o.status).ok_or_else(|| Error::backend_protocol(&self.addr, "bad OK packet"))
    }

    pub(crate) async fn read(&mut self) -> Result<Packet> {
        self.conn.read_packet().await.map_err(|e| read_err(&self.addr, true, e))
    }

    /// COM_CHANGE_USER to `login.user`, resetting the backend session; returns the final
    /// OK payload.
    pub async fn change_user(&mut self, login: &Login, charset: u16, rng: &Arc<Mutex<ChaCha8Rng>>) -> Result<Vec<u8>> {
        let plugin = auth::NATIVE;
        let flow = ClientAuth::new(plugin, &self.nonce, login.secret.clone(), self.conn.is_tls());
        let cu = ChangeUser {
            user: login.user.as_bytes().to_vec(),
            auth_response: flow.response().map_err(|f| auth_failure(&self.addr, f))?,
            database: login.database.clone().unwrap_or_default(),
            charset: Some(charset),
            auth_plugin: Some(plugin.as_bytes().to_vec()),
            attrs: login.attrs.clone(),
        };
        run_auth(&mut self.conn, &self.addr, flow, (0, cu.write(self.caps)), rng).await
    }

    /// Sends COM_QUIT and closes.
    pub async fn quit(mut self) {
        let _ = self.conn.send(0, &[com::QUIT]).await;
        self.conn.shutdown().await;
    }
}
