//! A raw protocol client for the runner, on Sluice's own code: `sluice::backend::conn::connect`
//! logs in, [`ResponseTracker`] finds where each response ends, and the response is kept
//! as its logical packets (sequence ids included) without interpretation. LOCAL INFILE
//! requests are answered with the case's file contents.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rand::SeedableRng;
use sluice::backend::conn::{connect, BackendConn, Login};
use sluice::net::TokioNet;
use sluice::protocol::auth;
use sluice::protocol::constants::cap;
use sluice::protocol::handshake::{parse_auth_switch, ChangeUser};
use sluice::protocol::packet::{frame_packet, join_payload, Framed};
use sluice::protocol::response::{Event, Expect, ResponseTracker};

use crate::decode::RawPacket;

/// Capabilities the runner asks for by default: what a typical modern client library
/// sends (no TLS; none of the flags that change SQL semantics such as IGNORE_SPACE,
/// INTERACTIVE, FOUND_ROWS, NO_SCHEMA or ODBC: cases add those with `@caps`).
pub const DEFAULT_CAPS: u32 = cap::LONG_PASSWORD
    | cap::LONG_FLAG
    | cap::CONNECT_WITH_DB
    | cap::LOCAL_FILES
    | cap::PROTOCOL_41
    | cap::TRANSACTIONS
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

/// Largest LOCAL INFILE data packet the runner sends.
const INFILE_CHUNK: usize = 1 << 20;

pub struct Conn {
    pub bc: BackendConn<tokio::net::TcpStream>,
    pub timeout: Duration,
    /// The nonce a COM_CHANGE_USER proof is computed with.
    nonce: Vec<u8>,
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: String,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Conn {
    pub async fn open(ep: &Endpoint, caps: u32, charset: u8, database: Option<&str>, timeout: Duration) -> Result<Conn> {
        let db = database.unwrap_or(&ep.database);
        let login = Login {
            user: ep.user.clone(),
            secret: sluice::protocol::authflow::Secret::Password(ep.password.clone()),
            database: (!db.is_empty()).then(|| db.as_bytes().to_vec()),
            charset,
            caps,
            ext_caps: 0,
            attrs: None,
            tls: None,
            timeout: Duration::from_secs(15),
        };
        let rng = Arc::new(Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(7)));
        let bc = connect(&TokioNet, &ep.addr, &login, &rng).await.map_err(|e| anyhow!("connecting to {}: {e}", ep.addr))?;
        let nonce = bc.nonce.clone();
        Ok(Conn { bc, timeout, nonce })
    }

    pub fn caps(&self) -> u32 {
        self.bc.caps
    }

    /// Sends one command packet (sequence id 0) without reading anything.
    pub async fn send(&mut self, payload: &[u8]) -> Result<()> {
        self.bc.conn.send(0, payload).await.context("sending a command")?;
        Ok(())
    }

    /// Sends a command and reads its whole response.
    pub async fn command(&mut self, payload: &[u8], expect: Expect, infiles: &BTreeMap<String, Vec<u8>>) -> Result<Vec<RawPacket>> {
        self.send(payload).await?;
        let expect = if matches!(expect, Expect::Execute | Expect::ExecuteCursor) { Expect::for_execute(payload) } else { expect };
        self.read_response(expect, infiles).await
    }

    /// Reads one response to a command already sent.
    pub async fn read_response(&mut self, mut expect: Expect, infiles: &BTreeMap<String, Vec<u8>>) -> Result<Vec<RawPacket>> {
        if expect == Expect::Execute {
            // A prepared LOAD DATA LOCAL INFILE answers COM_STMT_EXECUTE with a LOCAL INFILE
            // request, which `ResponseTracker` follows only for COM_QUERY: look first.
            while self.bc.conn.buffered().len() < 5 {
                self.fill().await?;
            }
            if self.bc.conn.buffered()[4] == 0xFB {
                expect = Expect::Query;
            }
        }
        let mut t = ResponseTracker::new(expect, self.bc.caps).with_ext_caps(self.bc.ext_caps);
        let mut wire = Vec::new();
        loop {
            let (n, ev) = t.advance(self.bc.conn.buffered()).map_err(|m| anyhow!("malformed response: {}", m.0))?;
            wire.extend_from_slice(&self.bc.conn.buffered()[..n]);
            self.bc.conn.consume(n);
            match ev {
                Event::Done => return split(&wire),
                Event::LocalInfile => {
                    let packets = split(&wire)?;
                    let req = packets.last().ok_or_else(|| anyhow!("LOCAL INFILE request missing"))?;
                    let name = String::from_utf8_lossy(&req.payload[1..]).into_owned();
                    let data = infiles.get(&name).or_else(|| infiles.get(name.rsplit('/').next().unwrap_or(&name)));
                    let mut seq = req.last_seq.wrapping_add(1);
                    if let Some(data) = data {
                        for chunk in data.chunks(INFILE_CHUNK) {
                            seq = self.bc.conn.queue(seq, chunk);
                        }
                    }
                    let last = seq;
                    self.bc.conn.queue(seq, &[]);
                    self.bc.conn.flush().await.context("sending LOCAL INFILE data")?;
                    t.resume_after_infile(last);
                }
                Event::More => self.fill().await?,
                Event::Capped => return Err(anyhow!("response capped without a cap")),
            }
        }
    }

    async fn fill(&mut self) -> Result<()> {
        let got = tokio::time::timeout(self.timeout, self.bc.conn.fill())
            .await
            .map_err(|_| anyhow!("no complete response within {:?}", self.timeout))?
            .context("reading a response")?;
        if got == 0 {
            bail!("connection closed by the server mid-response");
        }
        Ok(())
    }

    /// COM_CHANGE_USER, following auth switch requests; returns every packet received.
    pub async fn change_user(&mut self, user: &str, password: &str, database: &str, charset: u16) -> Result<Vec<RawPacket>> {
        let caps = self.bc.caps;
        let cu = ChangeUser {
            user: user.as_bytes().to_vec(),
            auth_response: auth::native_scramble(password.as_bytes(), &self.nonce),
            database: database.as_bytes().to_vec(),
            charset: Some(charset),
            auth_plugin: Some(auth::NATIVE.as_bytes().to_vec()),
            attrs: None,
        };
        self.send(&cu.write(caps)).await?;
        let mut out = Vec::new();
        loop {
            let p = tokio::time::timeout(self.timeout, self.bc.conn.read_packet())
                .await
                .map_err(|_| anyhow!("no answer to COM_CHANGE_USER within {:?}", self.timeout))?
                .map_err(|e| anyhow!("reading the answer to COM_CHANGE_USER: {e}"))?;
            let next = p.next_seq();
            let payload = p.payload.to_vec();
            out.push(RawPacket { seq: p.seq, last_seq: p.last_seq, payload: payload.clone() });
            match payload.first() {
                Some(0x00) | Some(0xFF) => return Ok(out),
                Some(0xFE) => {
                    let (plugin, data) = parse_auth_switch(&payload).ok_or_else(|| anyhow!("malformed auth switch request"))?;
                    let answer = match plugin {
                        b"mysql_native_password" => auth::native_scramble(password.as_bytes(), data),
                        b"caching_sha2_password" => auth::sha2_scramble(password.as_bytes(), data),
                        other => bail!("cannot answer an auth switch to {}", String::from_utf8_lossy(other)),
                    };
                    self.nonce = data.to_vec();
                    self.bc.conn.send(next, &answer).await?;
                }
                Some(0x01) if payload.get(1) == Some(&auth::SHA2_FAST_OK) => {}
                _ => bail!("unexpected packet during COM_CHANGE_USER"),
            }
        }
    }

    pub async fn quit(self) {
        self.bc.quit().await;
    }
}

/// Splits raw framed bytes into logical packets (joining frames of 16 MiB and more).
pub fn split(wire: &[u8]) -> Result<Vec<RawPacket>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        match frame_packet(&wire[pos..], usize::MAX).map_err(|e| anyhow!("bad framing: {e:?}"))? {
            Framed::Packet { seq, last_seq, wire_len, payload_len } => {
                out.push(RawPacket { seq, last_seq, payload: join_payload(&wire[pos..pos + wire_len], payload_len) });
                pos += wire_len;
            }
            Framed::Incomplete => bail!("response ends inside a packet"),
        }
    }
    Ok(out)
}
