//! Fuzz targets on the stable toolchain: proptest drives random and mutated inputs into
//! every place Sluice reads bytes or text it does not control, and nothing may panic.
//!
//! * the packet codec: framing over arbitrary bytes, packets split and merged at random
//!   points, length headers far beyond the limit;
//! * the handshakes: the server greeting and the client's HandshakeResponse (random and
//!   mutated valid ones), COM_CHANGE_USER, auth switch requests;
//! * the backend side: OK / ERR / EOF / column definitions / result sets as a server
//!   sends them, mutated, read by the response tracker and by `BackendConn` (its own
//!   queries and its login) from an in-process fake socket;
//! * a running Sluice (in-process, real sockets, one real MariaDB behind it): random bytes
//!   and mutated HandshakeResponses at login, random commands and mutated
//!   COM_STMT_EXECUTEs after login. Every answer is a MySQL packet or a close, no session
//!   task panics, another client is served after each case, and no session is left open;
//! * the statement classifier (token soup), GTID and monitor-row parsing, and the config
//!   loader (mutated TOML).
//!
//! Cases per target: `SLUICE_FUZZ_CASES` (default 1024; the targets against a running
//! proxy run an eighth of that). `scripts/fuzz.sh` runs them longer.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sluice::backend::conn::{BackendConn, Login, Secret, TextResult};
use sluice::net::{Listener, Net, TokioNet};
use sluice::protocol::conn::PacketConn;
use sluice::protocol::constants::{cap, com};
use sluice::protocol::handshake::{ChangeUser, HandshakeResponse, ServerHandshake};
use sluice::protocol::packet::{frame_packet, join_payload, write_packet, Framed, Reader, MAX_FRAME};
use sluice::protocol::packets;
use sluice::protocol::response::{Event, Expect, ResponseTracker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cases(divisor: u32) -> u32 {
    let n: u32 = std::env::var("SLUICE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    (n / divisor).max(8)
}

fn runner(divisor: u32) -> TestRunner {
    TestRunner::new(Config { cases: cases(divisor), failure_persistence: None, ..Config::default() })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

// ------------------------------------------------------------------------------------
// Mutation of valid inputs.

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Overwrites with a byte that means something special in the protocol (length-encoded
    /// markers, OK/EOF/ERR headers, NUL).
    Special(usize, u8),
    /// Overwrites three bytes with a large little-endian length.
    BigLength(usize, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, 1 << b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Edit::Insert(i, v)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), prop::sample::select(vec![0x00, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF, 0x01, 0x7F, 0x80])).prop_map(|(i, b)| Edit::Special(i, b)),
        (any::<usize>(), prop::sample::select(vec![0xFF_FFFF, 0xFF_FFFE, 0x10_0000, 0x1_0000, 0xFFFF])).prop_map(|(i, n)| Edit::BigLength(i, n)),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..6)
}

fn mutate(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = b.len();
        let at = |i: usize| if len == 0 { 0 } else { i % len };
        match e {
            Edit::Set(i, v) if len > 0 => b[at(*i)] = *v,
            Edit::Flip(i, m) if len > 0 => b[at(*i)] ^= *m,
            Edit::Special(i, v) if len > 0 => b[at(*i)] = *v,
            Edit::Insert(i, v) => {
                let p = if len == 0 { 0 } else { i % (len + 1) };
                b.splice(p..p, v.iter().copied());
            }
            Edit::Delete(i, n) if len > 0 => {
                let p = at(*i);
                b.drain(p..(p + n).min(len));
            }
            Edit::Truncate(i) => b.truncate(if len == 0 { 0 } else { i % len }),
            Edit::BigLength(i, n) if len >= 3 => {
                let p = i % (len - 2);
                b[p..p + 3].copy_from_slice(&n.to_le_bytes()[..3]);
            }
            _ => {}
        }
    }
    b
}

/// Random bytes, or a mutation of one of `valid`.
fn bytes_like(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..300),
        3 => (prop::sample::select(valid), edits()).prop_map(|(v, e)| mutate(v, &e)),
    ]
}

fn frames(packets: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for (seq, p) in packets {
        write_packet(&mut out, *seq, p);
    }
    out.to_vec()
}

// ------------------------------------------------------------------------------------
// Valid samples.

fn greeting(caps: u32) -> ServerHandshake {
    ServerHandshake {
        server_version: b"10.11.6-MariaDB-log".to_vec(),
        connection_id: 77,
        nonce: b"abcdefghijklmnopqrst".to_vec(),
        caps,
        ext_caps: cap::ext::SUPPORTED,
        charset: 45,
        status: 2,
        auth_plugin: b"mysql_native_password".to_vec(),
    }
}

fn handshake_response(caps: u32, nonce: &[u8]) -> HandshakeResponse {
    HandshakeResponse {
        caps,
        ext_caps: 0,
        max_packet: 1 << 24,
        charset: 45,
        user: b"app".to_vec(),
        auth_response: sluice::protocol::auth::native_scramble(b"app", nonce),
        database: Some(b"test".to_vec()),
        auth_plugin: Some(b"mysql_native_password".to_vec()),
        attrs: Some(sluice::protocol::handshake::encode_attrs([("_client_name", "fuzz"), ("_pid", "1")])),
    }
}

const CLIENT_CAPS: u32 = cap::SUPPORTED & !cap::SSL;

fn ok(status: u16, info: &[u8]) -> Vec<u8> {
    let mut p = vec![0x00, 1, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(info);
    p
}

fn column_def(name: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    for s in ["def", "test", "t", "t", name, name] {
        sluice::protocol::packet::put_lenenc_bytes(&mut out, s.as_bytes());
    }
    out.extend_from_slice(&[0x0c, 45, 0, 255, 0, 0, 0, 253, 0, 0, 0, 0, 0]);
    out.to_vec()
}

fn text_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for v in values {
        match v {
            Some(s) => sluice::protocol::packet::put_lenenc_bytes(&mut out, s.as_bytes()),
            None => out.extend_from_slice(&[0xFB]),
        }
    }
    out.to_vec()
}

/// Whole server responses to a COM_QUERY, with the EOFs of a client without
/// DEPRECATE_EOF (`eof`) or without them.
fn query_responses(eof: bool) -> Vec<Vec<u8>> {
    let term = |status: u16| if eof { vec![0xFE, 0, 0, status as u8, (status >> 8) as u8] } else { let mut p = ok(status, b""); p[0] = 0xFE; p };
    let mut result = vec![(1u8, vec![2u8]), (2, column_def("a")), (3, column_def("b"))];
    let mut seq = 4;
    if eof {
        result.push((seq, vec![0xFE, 0, 0, 2, 0]));
        seq += 1;
    }
    for r in [text_row(&[Some("1"), None]), text_row(&[Some("hello"), Some("world")]), text_row(&[None, Some("")])] {
        result.push((seq, r));
        seq += 1;
    }
    result.push((seq, term(2)));
    let as_frames = |v: &[(u8, Vec<u8>)]| frames(&v.iter().map(|(s, p)| (*s, p.as_slice())).collect::<Vec<_>>());
    // Two result sets chained (MORE_RESULTS_EXISTS), the second a plain OK.
    let mut chained = result.clone();
    let last = chained.len() - 1;
    chained[last].1 = term(2 | 8);
    let next = chained[last].0 + 1;
    chained.push((next, ok(2, b"")));
    vec![
        frames(&[(1, &ok(2, b""))]),
        frames(&[(1, &ok(0x4002, b"\x00\x05\x03\x04\x03db1"))]),
        frames(&[(1, &packets::err_payload(1064, "42000", "You have an error in your SQL syntax"))]),
        as_frames(&result),
        as_frames(&chained),
        frames(&[(1, &[0xFB, b'/', b't', b'm', b'p'])]),
    ]
}

// ------------------------------------------------------------------------------------
// The packet codec.

#[test]
fn packet_framing_never_panics_on_arbitrary_bytes() {
    let mut valid = vec![frames(&[(0, b"\x03SELECT 1")]), frames(&[(3, b""), (4, b"abc")])];
    valid.extend(query_responses(false));
    runner(1)
        .run(&(bytes_like(valid), 0usize..1 << 26), |(buf, limit)| {
            match frame_packet(&buf, limit) {
                Ok(Framed::Packet { wire_len, payload_len, .. }) => {
                    prop_assert!(wire_len <= buf.len());
                    prop_assert!(payload_len <= limit);
                    prop_assert_eq!(join_payload(&buf[..wire_len], payload_len).len(), payload_len);
                }
                Ok(Framed::Incomplete) | Err(_) => {}
            }
            // Every reader over the same bytes stops at the end.
            let mut r = Reader::new(&buf);
            while !r.is_empty() {
                let before = r.remaining();
                let _ = r.lenenc_bytes();
                let _ = r.null_terminated();
                let _ = r.u24();
                if r.remaining() == before {
                    r.u8();
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn packets_split_and_merged_at_random_points_reassemble_exactly() {
    let rt = rt();
    let packet = prop::collection::vec(any::<u8>(), 0..2000);
    let strategy = (prop::collection::vec((any::<u8>(), packet), 1..8), prop::collection::vec(1usize..700, 1..20), prop::bool::weighted(0.03));
    runner(1)
        .run(&strategy, |(packets, cuts, with_big)| {
            let mut packets = packets;
            if with_big {
                // A payload of exactly one full frame: continued by an empty frame.
                packets.push((9, vec![7u8; MAX_FRAME]));
            }
            let wire = frames(&packets.iter().map(|(s, p)| (*s, p.as_slice())).collect::<Vec<_>>());
            let got = rt.block_on(async {
                let (mut a, b) = tokio::io::duplex(1 << 16);
                let mut conn = PacketConn::new(b, 1 << 25);
                let writer = async {
                    let mut pos = 0;
                    let mut i = 0;
                    while pos < wire.len() {
                        let n = cuts[i % cuts.len()].min(wire.len() - pos);
                        a.write_all(&wire[pos..pos + n]).await.unwrap();
                        pos += n;
                        i += 1;
                    }
                    a.shutdown().await.unwrap();
                    a
                };
                let reader = async {
                    let mut got = Vec::new();
                    for _ in 0..packets.len() {
                        let p = conn.read_packet().await.expect("a whole packet");
                        got.push((p.seq, p.payload.to_vec()));
                    }
                    got
                };
                let (_, got) = tokio::join!(writer, reader);
                got
            });
            prop_assert_eq!(got.len(), packets.len());
            for ((seq, p), (gseq, gp)) in packets.iter().zip(&got) {
                prop_assert_eq!(seq, gseq);
                prop_assert!(p == gp, "payload of {} bytes came back as {} bytes", p.len(), gp.len());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn oversized_length_headers_are_refused_without_allocating_them() {
    let rt = rt();
    runner(1)
        .run(&(0x1000usize..0xFF_FFFF, prop::collection::vec(any::<u8>(), 0..64), 1usize..0x1000), |(len, tail, limit)| {
            let mut wire = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, 0];
            wire.extend_from_slice(&tail);
            let r = rt.block_on(async {
                let (mut a, b) = tokio::io::duplex(1 << 12);
                a.write_all(&wire).await.unwrap();
                drop(a);
                PacketConn::new(b, limit).read_packet().await
            });
            prop_assert!(matches!(r, Err(sluice::protocol::conn::ReadError::TooLarge { .. })), "{len} bytes over a {limit} limit: {r:?}");
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------------------------------------------
// Handshakes.

#[test]
fn server_handshake_parsing_never_panics() {
    let valid = vec![greeting(cap::SUPPORTED | cap::PLUGIN_AUTH | cap::SECURE_CONNECTION).write(), greeting((cap::SUPPORTED | cap::PLUGIN_AUTH) & !cap::LONG_PASSWORD).write()];
    runner(1)
        .run(&bytes_like(valid), |b| {
            if let Some(h) = ServerHandshake::parse(&b) {
                prop_assert!(h.server_version.len() <= b.len());
            }
            let _ = sluice::protocol::handshake::parse_auth_switch(&b);
            Ok(())
        })
        .unwrap();
}

#[test]
fn handshake_response_and_change_user_parsing_never_panic() {
    let nonce = b"abcdefghijklmnopqrst";
    let mut lenenc = handshake_response(CLIENT_CAPS | cap::PLUGIN_AUTH_LENENC_CLIENT_DATA, nonce);
    lenenc.attrs = None;
    let cu = ChangeUser { user: b"app".to_vec(), auth_response: vec![1; 20], database: b"test".to_vec(), charset: Some(45), auth_plugin: Some(b"mysql_native_password".to_vec()), attrs: None };
    let valid = vec![handshake_response(CLIENT_CAPS, nonce).write(), lenenc.write(), handshake_response(CLIENT_CAPS, nonce).write_ssl_request(), cu.write(CLIENT_CAPS)];
    runner(1)
        .run(&(bytes_like(valid), any::<u32>()), |(b, caps)| {
            if let Some(r) = HandshakeResponse::parse(&b) {
                prop_assert!(r.user.len() <= b.len() && r.auth_response.len() <= b.len());
            }
            let _ = HandshakeResponse::is_ssl_request(&b);
            let _ = ChangeUser::parse(&b, caps);
            let _ = ChangeUser::parse(&b, CLIENT_CAPS);
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------------------------------------------
// The backend side: what a server answers.

#[test]
fn ok_err_eof_and_session_state_parsing_never_panics() {
    let valid = vec![
        ok(2, b""),
        ok(0x4002, b"\x00\x05\x03\x04\x03db1\x03\x10\x00\x0e0-1-42"),
        packets::err_payload(1213, "40001", "Deadlock found"),
        vec![0xFE, 0, 0, 2, 0],
        { let mut p = ok(2, b""); p[0] = 0xFE; p },
    ];
    let caps = prop::sample::select(vec![CLIENT_CAPS, CLIENT_CAPS & !cap::SESSION_TRACK, CLIENT_CAPS & !cap::PROTOCOL_41, CLIENT_CAPS & !cap::DEPRECATE_EOF]);
    runner(1)
        .run(&(bytes_like(valid), caps.clone(), caps), |(b, backend_caps, client_caps)| {
            if let Some(o) = packets::Ok::parse(&b, backend_caps) {
                for _ in o.state_changes() {}
            }
            if let Some(e) = packets::Err::parse(&b) {
                let _ = e.message_lossy();
            }
            let _ = packets::Eof::parse(&b);
            let _ = packets::terminator_status(&b, backend_caps);
            let _ = sluice::protocol::rewrite::ok_for_client(&b, backend_caps, client_caps, Default::default());
            let _ = sluice::consistency::gtid::GtidSet::from_session_state(&b);
            Ok(())
        })
        .unwrap();
}

#[test]
fn response_tracker_survives_mutated_server_responses() {
    let mut valid = query_responses(false);
    valid.extend(query_responses(true));
    // PREPARE_OK with one parameter and one column, and a binary row.
    valid.push(frames(&[(1, &[0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]), (2, &column_def("?")), (3, &column_def("a")), (4, &[0xFE, 0, 0, 2, 0])]));
    valid.push(frames(&[(1, &[1]), (2, &column_def("a")), (3, &[0x00, 0x00, 1, b'x']), (4, &[0xFE, 0, 0, 2, 0])]));
    let expects = prop::sample::select(vec![Expect::Query, Expect::Execute, Expect::ExecuteCursor, Expect::Prepare, Expect::Fetch, Expect::FieldList, Expect::OnePacket]);
    let caps = prop::sample::select(vec![CLIENT_CAPS, CLIENT_CAPS & !cap::DEPRECATE_EOF]);
    runner(1)
        .run(&(bytes_like(valid), expects, caps, any::<bool>(), 1usize..64, prop::option::of(0u64..4), prop::option::of(4u64..200)), |(b, expect, caps, cached, step, max_rows, max_bytes)| {
            let ext = if cached { cap::ext::CACHE_METADATA } else { 0 };
            let mut t = ResponseTracker::new(expect, caps).with_ext_caps(ext).mark_oks().with_cap(max_rows, max_bytes);
            // Bytes arrive `step` at a time; what the tracker consumed is gone.
            let mut buf: Vec<u8> = Vec::new();
            let mut fed = 0;
            for _ in 0..b.len() * 2 + 8 {
                let (n, ev) = match t.advance(&buf) {
                    Ok(x) => x,
                    Err(_) => return Ok(()),
                };
                prop_assert!(n <= buf.len(), "consumed {n} of {} bytes", buf.len());
                for &(s, e) in t.oks() {
                    prop_assert!(s <= e && e <= n, "OK at {s}..{e} outside the {n} bytes passed on");
                }
                buf.drain(..n);
                match ev {
                    Event::Done => return Ok(()),
                    Event::LocalInfile => t.resume_after_infile(1),
                    Event::Capped => {
                        prop_assert!(t.at_packet_boundary(), "capped inside a packet");
                        t.lift_cap();
                    }
                    Event::More => {
                        if fed >= b.len() {
                            return Ok(()); // wants more than the server sent
                        }
                        let end = (fed + step).min(b.len());
                        buf.extend_from_slice(&b[fed..end]);
                        fed = end;
                    }
                }
            }
            Err(TestCaseError::fail("the tracker neither ended nor asked for more bytes"))
        })
        .unwrap();
}

/// A backend connection over an in-process socket; the server's side is returned.
fn fake_backend(caps: u32, ext_caps: u32) -> (BackendConn<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let conn = BackendConn {
        conn: PacketConn::new(a, 1 << 30),
        addr: "fake:3306".into(),
        thread_id: 1,
        caps,
        ext_caps,
        server_version: b"10.11.6-MariaDB".to_vec(),
        server_caps: caps,
        server_ext_caps: ext_caps,
        server_charset: 45,
        server_status: 2,
        nonce: vec![1; 20],
        login_ok: ok(2, b""),
    };
    (conn, b)
}

#[test]
fn backend_queries_survive_mutated_server_responses() {
    let rt = rt();
    let mut valid = query_responses(false);
    // Account rows of pass-through mode, short ones among them, and a huge column count.
    valid.push(frames(&[(1, &[2]), (2, &column_def("User")), (3, &column_def("Host")), (4, &text_row(&[Some("app"), Some("%")])), (5, &{ let mut p = ok(2, b""); p[0] = 0xFE; p })]));
    valid.push(frames(&[(1, &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])]));
    valid.push(frames(&[(1, &[0xFD, 0xFF, 0xFF, 0xFF]), (2, &column_def("a"))]));
    // With cached metadata (flag 0: no definitions follow) the rows come at once.
    let eof = { let mut p = ok(2, b""); p[0] = 0xFE; p };
    valid.push(frames(&[(1, &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00]), (2, &text_row(&[Some("1")])), (3, &eof)]));
    runner(1)
        .run(&(bytes_like(valid), any::<bool>()), |(response, cached)| {
            let r = rt.block_on(async {
                let (mut conn, mut server) = fake_backend(CLIENT_CAPS, if cached { cap::ext::CACHE_METADATA } else { 0 });
                server.write_all(&response).await.unwrap();
                // The server closes after its answer: whatever the query still waits for
                // ends as an error, never as a hang.
                let serve = async move {
                    let mut sink = vec![0u8; 4096];
                    let _ = tokio::time::timeout(Duration::from_millis(5), server.read(&mut sink)).await;
                    drop(server);
                };
                let query = async {
                    let r = tokio::time::timeout(Duration::from_secs(10), conn.query("SELECT 1")).await;
                    let accounts = tokio::time::timeout(Duration::from_secs(10), sluice::backend::accounts::load(&mut conn)).await;
                    (r, accounts)
                };
                let (_, r) = tokio::join!(serve, query);
                r
            });
            prop_assert!(r.0.is_ok() && r.1.is_ok(), "a read did not end once the server closed");
            Ok(())
        })
        .unwrap();
}

/// A network whose every connection reaches an in-process fake server that sends
/// `script` and reads whatever comes.
#[derive(Clone)]
struct ScriptedNet {
    script: Arc<Vec<u8>>,
}

struct NoListener;

impl Listener for NoListener {
    type Stream = tokio::io::DuplexStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Stream, String)> {
        std::future::pending().await
    }
    fn local_addr(&self) -> std::io::Result<String> {
        Ok("fake:0".into())
    }
}

impl Net for ScriptedNet {
    type Stream = tokio::io::DuplexStream;
    type Listener = NoListener;
    async fn bind(&self, _addr: &str) -> std::io::Result<NoListener> {
        Ok(NoListener)
    }
    async fn connect(&self, _addr: &str) -> std::io::Result<tokio::io::DuplexStream> {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let script = self.script.clone();
        tokio::spawn(async move {
            let _ = b.write_all(&script).await;
            let mut sink = vec![0u8; 4096];
            while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(5), b.read(&mut sink)).await {
                if n == 0 {
                    break;
                }
            }
        });
        Ok(a)
    }
}

#[test]
fn backend_login_survives_mutated_server_handshakes() {
    let rt = rt();
    let hs = |caps: u32| greeting(caps).write();
    let native = cap::SUPPORTED | cap::PLUGIN_AUTH | cap::SECURE_CONNECTION;
    let switch = sluice::protocol::handshake::auth_switch_request("caching_sha2_password", b"abcdefghijklmnopqrst");
    let valid = vec![
        frames(&[(0, &hs(native)), (2, &ok(2, b""))]),
        frames(&[(0, &hs(native)), (2, &switch), (4, &[0x01, 3]), (5, &ok(2, b""))]),
        frames(&[(0, &hs(native)), (2, &switch), (4, &[0x01, 4]), (6, &[0x01, b'-', b'-'])]),
        frames(&[(0, &hs(native)), (2, &packets::err_payload(1045, "28000", "Access denied"))]),
        frames(&[(0, &packets::err_payload(1040, "08004", "Too many connections"))]),
    ];
    runner(1)
        .run(&bytes_like(valid), |script| {
            let net = ScriptedNet { script: Arc::new(script) };
            let login = Login {
                user: "app".into(),
                secret: Secret::Password("app".into()),
                database: Some(b"test".to_vec()),
                charset: 45,
                caps: CLIENT_CAPS,
                ext_caps: cap::ext::SUPPORTED,
                attrs: None,
                tls: None,
                timeout: Duration::from_secs(5),
            };
            let rng = Arc::new(Mutex::new(<rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1)));
            let r = rt.block_on(sluice::backend::conn::connect(&net, "fake:3306", &login, &rng));
            // The scripted server never proves anything: a login it "accepts" is fine, a
            // timeout means Sluice waited for bytes after the server had closed.
            prop_assert!(!matches!(r, Err(sluice::Error::BackendTimeout { .. })), "login hung on a closed server");
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------------------------------------------
// The classifier, GTID and monitor parsing, the config loader.

#[test]
fn classifier_never_panics_on_sql_like_token_soup() {
    let tokens = prop::sample::select(vec![
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "SET", "FOR", "UPDATE", "LOCK", "IN", "SHARE", "MODE", "FROM", "WHERE", "INTO", "@x", "@@session.",
        "autocommit", "=", ":=", "(", ")", ",", ";", "'", "\"", "`", "/*", "*/", "/*!", "/*!50700", "/*+", "--", "-- ", "#", "\n", " ", "\\", "0x", "X'",
        "b'", "1", "1e9", "N'", "_utf8mb4'", "BEGIN", "START", "TRANSACTION", "READ", "ONLY", "COMMIT", "ROLLBACK", "XA", "CALL", "PREPARE", "EXECUTE",
        "DEALLOCATE", "LAST_INSERT_ID()", "GET_LOCK(", "NEXTVAL(", "CREATE", "TEMPORARY", "TABLE", "DO", "SHOW", "SLUICE", "ROUTE", "KILL", "QUERY",
        "USE", "HANDLER", "LOAD", "DATA", "LOCAL", "INFILE", "UNION", "ALL", "€", "\u{0}", "é", "\u{FEFF}",
    ]);
    let soup = prop::collection::vec(tokens, 0..40).prop_map(|t| t.concat().into_bytes());
    let strategy = prop_oneof![3 => soup, 1 => prop::collection::vec(any::<u8>(), 0..200)];
    let classifier = sluice::route::classify::Classifier::new(64);
    runner(1)
        .run(&strategy, |sql| {
            let _ = classifier.classify(&sql);
            let _ = sluice::route::classify::classify_uncached(&sql);
            let _ = sluice::route::classify::sluice_set(&sql);
            let _ = sluice::route::classify::show_sluice_route_for(&sql);
            let _ = sluice::server::registry::parse_kill(&sql);
            let _ = sluice::consistency::level::may_show_tracking(&sql);
            Ok(())
        })
        .unwrap();
}

#[test]
fn gtid_and_monitor_row_parsing_never_panics() {
    use sluice::consistency::gtid::GtidSet;
    use sluice::health::Flavour;
    let gtid_text = prop_oneof![
        "[0-9,\\-: a-f]{0,60}",
        "([0-9]{1,12}-[0-9]{1,12}-[0-9]{1,22},?){0,4}",
        "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(:[0-9]{1,21}(-[0-9]{1,21})?){1,3},?\n?){0,3}",
    ];
    let cell = prop::option::of(prop::collection::vec(any::<u8>(), 0..24));
    let rows = prop::collection::vec(prop::collection::vec(cell, 0..8), 0..4);
    let columns = prop::collection::vec(prop::sample::select(vec!["Master_Host", "Master_Port", "Seconds_Behind_Master", "Slave_IO_Running", "Last_IO_Errno", "Gtid_IO_Pos", "Retrieved_Gtid_Set", "Master_Server_Id", "x"]), 0..8);
    runner(1)
        .run(&(gtid_text.clone(), gtid_text, rows, columns), |(a, b, rows, columns)| {
            for f in [Flavour::MariaDb, Flavour::MySql] {
                if let (Ok(mut x), Ok(y)) = (GtidSet::parse(f, &a), GtidSet::parse(f, &b)) {
                    let _ = x.contains(&y);
                    x.merge(&y);
                    let _ = x.mariadb_text();
                }
                let r = TextResult { columns: columns.iter().map(|c| c.to_string()).collect(), rows: rows.clone() };
                let _ = sluice::health::probe::parse_variables(f, &r);
                let _ = sluice::health::probe::parse_server_id(f, &r);
                let _ = sluice::health::probe::parse_channels(&r);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn config_loader_never_panics_on_mutated_toml() {
    let valid = [
        "[proxy]\nlisten = \"127.0.0.1:15306\"\nmax_connections = 100\n[[users]]\nname = \"app\"\npassword = \"app\"\n[backend]\nuser = \"app\"\npassword = \"app\"\nnodes = [\"127.0.0.1:3306\", \"127.0.0.1:3307\"]\n",
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[[users]]\nname = \"a\"\npassword = \"b\"\nauth_plugin = \"caching_sha2_password\"\n[backend]\nuser = \"u\"\npassword = \"p\"\nnodes = [\"h:1\"]\nread_timeout_ms = 0\n[routing]\nread_write_split = true\nconsistency = \"session\"\nload_balance = \"least_lag\"\n[pool]\nmin_idle = 0\nmax_size = 8\n[failover]\nmanager = \"builtin\"\n",
    ];
    let valid: Vec<Vec<u8>> = valid.iter().map(|s| s.as_bytes().to_vec()).collect();
    runner(1)
        .run(&bytes_like(valid), |b| {
            let _ = sluice::Config::parse(&String::from_utf8_lossy(&b));
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------------------------------------------
// A running proxy.

/// One MariaDB (no replicas) for the proxy targets of this binary.
fn cluster() -> &'static chaos::Cluster {
    static CLUSTER: OnceLock<chaos::Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| chaos::Cluster::start(chaos::ClusterSpec { replicas: 0, ..Default::default() }).expect("start MariaDB"))
}

/// Runs sessions as tasks whose ends are kept, so a panic in one is seen.
#[derive(Clone, Default)]
struct Watched {
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl<N: Net> sluice::Dispatch<N> for Watched {
    fn dispatch(&self, stream: N::Stream, session: sluice::Session<N>) {
        let h = tokio::spawn(session(stream));
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(h);
    }
}

impl Watched {
    /// The number of session tasks that panicked so far (finished ones are reaped).
    async fn panics(&self) -> usize {
        let done: Vec<_> = {
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            let (done, running) = std::mem::take(&mut *tasks).into_iter().partition(|h| h.is_finished());
            *tasks = running;
            done
        };
        let mut panics = 0;
        for h in done {
            if let Err(e) = h.await {
                if e.is_panic() {
                    panics += 1;
                }
            }
        }
        panics
    }
}

async fn fuzz_proxy() -> (sluice::ProxyHandle, Watched) {
    let cfg = common::split_config(cluster(), "").replace("[proxy]\n", "[proxy]\nhandshake_timeout_ms = 3000\nshutdown_timeout_ms = 3000\n");
    let watched = Watched::default();
    let proxy = sluice::start_with_dispatch(TokioNet, sluice::Config::parse(&cfg).expect("config"), 5, Arc::new(watched.clone())).await.expect("proxy starts");
    (proxy, watched)
}

/// Reads what the proxy sends until it closes, sends nothing for `first` (some
/// commands have no answer), or goes quiet for a moment after it began to answer.
async fn answer(conn: &mut PacketConn<tokio::net::TcpStream>, first: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut wait = first;
    while let Ok(Ok(n)) = tokio::time::timeout(wait, conn.fill()).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(conn.buffered());
        let len = conn.buffered().len();
        conn.consume(len);
        wait = Duration::from_millis(30);
    }
    out
}

/// The bytes are whole MySQL packets (the last may be cut by a close).
fn whole_packets_prefix(b: &[u8]) -> bool {
    let mut pos = 0;
    while pos + 4 <= b.len() {
        let len = b[pos] as usize | (b[pos + 1] as usize) << 8 | (b[pos + 2] as usize) << 16;
        pos += 4 + len;
    }
    pos >= b.len() || b.len() - pos < 4
}

/// After each case: no session task panicked and a new client logs in and is served.
async fn still_serving(proxy: &sluice::ProxyHandle, watched: &Watched) -> Result<(), TestCaseError> {
    let mut c = common::raw(proxy.local_addr(), common::CAPS).await;
    let r = common::roundtrip(&mut c, &common::query("SELECT 1"), Expect::Query).await;
    prop_assert!(common::trailing_err(&r).is_none(), "another client was not served");
    drop(c);
    let panics = watched.panics().await;
    prop_assert_eq!(panics, 0, "a session task panicked");
    Ok(())
}

/// After a target: every session ended (none left for shutdown), none panicked.
async fn all_sessions_end(proxy: &sluice::ProxyHandle, watched: &Watched) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while proxy.stats().sessions > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.stats().sessions, 0, "sessions left open after their clients left");
    assert_eq!(proxy.shutdown().await, 0);
    assert_eq!(watched.panics().await, 0, "a session task panicked");
}

/// Runs `case` for every input of `strategy` against one proxy: after each case no
/// session task panicked and another client is served; at the end every session has
/// ended (none left for shutdown).
fn fuzz_against_proxy<S: Strategy>(strategy: S, case: impl AsyncFn(&str, S::Value) -> Result<(), TestCaseError>) {
    let rt = rt();
    let (proxy, watched) = rt.block_on(fuzz_proxy());
    let addr = proxy.local_addr().to_string();
    runner(8)
        .run(&strategy, |input| {
            rt.block_on(async {
                case(&addr, input).await?;
                still_serving(&proxy, &watched).await
            })
        })
        .unwrap();
    rt.block_on(all_sessions_end(&proxy, &watched));
}

#[test]
fn proxy_answers_random_and_mutated_logins_with_an_error_or_a_close() {
    // What the client sends after the greeting: raw bytes, or a HandshakeResponse (built
    // for the greeting's nonce, so an unmutated one logs in) mutated before framing.
    let strategy = (prop_oneof![1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| (b, None)), 3 => (any::<u8>(), edits(), any::<bool>()).prop_map(|(f, e, lenenc)| (vec![f], Some((e, lenenc))))], any::<bool>());
    fuzz_against_proxy(strategy, async |addr: &str, ((raw, mutation), framed): ((Vec<u8>, Option<(Vec<Edit>, bool)>), bool)| {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut conn = PacketConn::new(s, 1 << 24);
        let hello = conn.read_packet().await.expect("greeting");
        let nonce = ServerHandshake::parse(&hello.payload).expect("a valid greeting").nonce;
        let wire = match mutation {
            None if framed => frames(&[(1, &raw)]),
            None => raw,
            Some((e, lenenc)) => {
                let caps = if lenenc { CLIENT_CAPS | cap::PLUGIN_AUTH_LENENC_CLIENT_DATA } else { CLIENT_CAPS };
                frames(&[(1, &mutate(handshake_response(caps, &nonce).write(), &e))])
            }
        };
        let _ = conn.write_raw(&wire).await;
        let _ = conn.flush_raw().await;
        // Half-close: a proxy waiting for the rest of a packet sees the end.
        conn.shutdown().await;
        let answer = answer(&mut conn, Duration::from_secs(5)).await;
        prop_assert!(whole_packets_prefix(&answer), "the answer is not MySQL packets: {answer:?}");
        Ok(())
    });
}

#[test]
fn proxy_survives_random_commands_after_login() {
    // Commands that act on the server or other sessions (shutdown, drop database, kill)
    // are left out; every other byte is fair.
    let cmd = any::<u8>().prop_filter("harmless", |c| ![com::SHUTDOWN, com::DROP_DB, com::PROCESS_KILL, com::CREATE_DB].contains(c));
    let strategy = prop::collection::vec((cmd, prop::collection::vec(any::<u8>(), 0..64), any::<u8>()), 1..4);
    fuzz_against_proxy(strategy, async |addr: &str, commands: Vec<(u8, Vec<u8>, u8)>| {
        let mut c = common::raw(addr, common::CAPS).await;
        for (cmd, body, seq) in commands {
            let mut p = vec![cmd];
            p.extend_from_slice(&body);
            // Mostly sequence id 0, sometimes a wrong one.
            let seq = if seq < 200 { 0 } else { seq };
            if c.conn.send(seq, &p).await.is_err() {
                break;
            }
            let answer = answer(&mut c.conn, Duration::from_millis(250)).await;
            prop_assert!(whole_packets_prefix(&answer), "the answer is not MySQL packets");
        }
        Ok(())
    });
}

#[test]
fn proxy_survives_mutated_stmt_execute() {
    fuzz_against_proxy((edits(), any::<bool>()), async |addr: &str, (e, cursor): (Vec<Edit>, bool)| {
        let mut c = common::raw(addr, common::CAPS).await;
        let mut prep = vec![com::STMT_PREPARE];
        prep.extend_from_slice(b"SELECT ?, CONCAT(?, 'x')");
        let r = common::roundtrip(&mut c, &prep, Expect::Prepare).await;
        // PREPARE_OK: header, 0x00, statement id.
        let id = u32::from_le_bytes(r[5..9].try_into().unwrap());
        // id, flags, iterations, NULL bitmap, new-params-bound, types, values.
        let mut exec = vec![com::STMT_EXECUTE];
        exec.extend_from_slice(&id.to_le_bytes());
        exec.push(u8::from(cursor));
        exec.extend_from_slice(&1u32.to_le_bytes());
        exec.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 0xFD, 0x00]);
        exec.extend_from_slice(&42u64.to_le_bytes());
        exec.extend_from_slice(b"\x05hello");
        if c.conn.send(0, &mutate(exec, &e)).await.is_ok() {
            let answer = answer(&mut c.conn, Duration::from_millis(250)).await;
            prop_assert!(whole_packets_prefix(&answer), "the answer is not MySQL packets");
        }
        Ok(())
    });
}

#[test]
fn mutation_changes_what_it_is_given() {
    // The mutator itself: a fuzz target whose mutations did nothing would test only
    // valid inputs.
    let b = b"0123456789".to_vec();
    assert_ne!(mutate(b.clone(), &[Edit::Set(3, b'x')]), b);
    assert_eq!(mutate(b.clone(), &[Edit::Truncate(4)]).len(), 4);
    assert_eq!(mutate(b.clone(), &[Edit::BigLength(0, 0xFF_FFFF)])[..3], [0xFF, 0xFF, 0xFF]);
    assert_eq!(mutate(Vec::new(), &[Edit::Set(3, 1), Edit::Delete(0, 4)]), Vec::<u8>::new());
}
