//! Bad input never hurts others: malformed and truncated packets, wrong sequence ids,
//! oversized packets, unknown commands, wrong passwords, a client leaving mid-result and a
//! backend dying mid-result each get a proper MySQL error (or a clean close) for that
//! client only, while another session keeps working.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::prelude::*;
use sluice::protocol::conn::PacketConn;
use sluice::protocol::constants::com;
use sluice::protocol::packets;
use sluice::protocol::response::Expect;
use tokio::io::AsyncWriteExt;

/// A session that must stay unaffected.
async fn bystander(addr: &str) -> mysql_async::Conn {
    let mut c = mysql_async::Conn::new(opts(addr, "app", "app", false)).await.unwrap();
    c.query_drop("SET @bystander = 1").await.unwrap();
    c
}

async fn still_fine(c: &mut mysql_async::Conn) {
    let v: Option<i64> = c.query_first("SELECT @bystander").await.unwrap().unwrap();
    assert_eq!(v, Some(1), "the other session kept its state");
}

/// Reads one packet from a raw stream that is expected to be an ERR; returns its code.
async fn read_err(conn: &mut PacketConn<tokio::net::TcpStream>) -> u16 {
    let p = tokio::time::timeout(Duration::from_secs(10), conn.read_packet()).await.expect("answer in time").expect("a packet");
    packets::Err::parse(&p.payload).unwrap_or_else(|| panic!("expected ERR, got {:?}", p.payload)).code
}

async fn tcp(addr: &str) -> PacketConn<tokio::net::TcpStream> {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = PacketConn::new(s, 1 << 20);
    c.read_packet().await.expect("server handshake");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_handshake_response_gets_bad_handshake_1043() {
    let proxy = proxy().await;
    let mut other = bystander(proxy.local_addr()).await;
    let mut c = tcp(proxy.local_addr()).await;
    c.send(1, b"\x00\x01garbage").await.unwrap();
    assert_eq!(read_err(&mut c).await, 1043);
    still_fine(&mut other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_packet_and_disconnect_leave_others_served() {
    let proxy = proxy().await;
    let mut other = bystander(proxy.local_addr()).await;
    let mut s = tokio::net::TcpStream::connect(proxy.local_addr()).await.unwrap();
    // Header announces 100 bytes; only 10 arrive before the client goes away.
    s.write_all(&[100, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).await.unwrap();
    drop(s);
    let mut c = raw(proxy.local_addr(), CAPS).await;
    let mut frame = vec![50, 0, 0, 0];
    frame.extend_from_slice(&query("SELECT 1")[..]);
    c.conn.write_raw(&frame).await.unwrap();
    c.conn.flush_raw().await.unwrap();
    drop(c);
    still_fine(&mut other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_with_wrong_sequence_id_gets_1156_packets_out_of_order() {
    let proxy = proxy().await;
    let mut other = bystander(proxy.local_addr()).await;
    let mut c = raw(proxy.local_addr(), CAPS).await;
    c.conn.send(3, &query("SELECT 1")).await.unwrap();
    let p = c.conn.read_packet().await.unwrap();
    assert_eq!(packets::Err::parse(&p.payload).unwrap().code, 1156);
    assert_eq!(p.seq, 4, "the error continues the client's sequence");
    still_fine(&mut other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_over_max_allowed_packet_gets_1153_and_others_continue() {
    let proxy = proxy_with("max_allowed_packet = 1048576").await;
    let mut other = bystander(proxy.local_addr()).await;
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let big = "x".repeat(2 << 20);
    let e = c.query_drop(format!("SELECT '{big}'")).await.unwrap_err();
    assert!(e.to_string().contains("1153") || e.to_string().contains("max_allowed_packet"), "{e}");
    still_fine(&mut other).await;
    // Just under the limit still works.
    let mut c = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap();
    let n: i64 = c.query_first(format!("SELECT LENGTH('{}')", "y".repeat(1_000_000))).await.unwrap().unwrap();
    assert_eq!(n, 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_command_byte_gets_1047_and_the_session_goes_on() {
    let proxy = proxy().await;
    let mut c = raw(proxy.local_addr(), CAPS).await;
    for cmd in [0xEEu8, com::BINLOG_DUMP, com::SLEEP] {
        let resp = roundtrip(&mut c, &[cmd, 1, 2, 3], Expect::OnePacket).await;
        assert_eq!(trailing_err(&resp).map(|e| e.0), Some(1047), "command 0x{cmd:02x}");
    }
    let resp = roundtrip(&mut c, &[], Expect::OnePacket).await;
    assert_eq!(trailing_err(&resp).map(|e| e.0), Some(1835), "empty packet is malformed");
    let resp = roundtrip(&mut c, &[com::PROCESS_KILL, 1], Expect::OnePacket).await;
    assert_eq!(trailing_err(&resp).map(|e| e.0), Some(1835), "truncated COM_PROCESS_KILL is malformed");
    let resp = roundtrip(&mut c, &query("SELECT 'alive'"), Expect::Query).await;
    assert!(String::from_utf8_lossy(&resp).contains("alive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gets_1045_for_both_plugins() {
    let proxy = proxy().await;
    let mut other = bystander(proxy.local_addr()).await;
    for user in ["app", "sha", "nobody"] {
        let e = mysql_async::Conn::new(opts(proxy.local_addr(), user, "wrong", false)).await.err().expect("login must fail");
        let s = e.to_string();
        assert!(s.contains("1045") && s.contains(&format!("Access denied for user '{user}'")), "{s}");
    }
    still_fine(&mut other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_mid_result_closes_its_backend_and_disturbs_no_one() {
    let proxy = proxy().await;
    let mut other = bystander(proxy.local_addr()).await;
    let r = shared().cluster.root_user();
    let mut root = mysql_async::Conn::new(opts(&primary_addr(), &r.user, &r.password, false)).await.expect("root login");
    let mut c = raw(proxy.local_addr(), CAPS).await;
    let thread: i64 = c.query("SELECT CONNECTION_ID() AS id").await.unwrap().get(0, "id").unwrap().parse().unwrap();
    c.conn.send(0, &query("SELECT REPEAT('x', 1000) FROM seq_1_to_200000")).await.unwrap();
    c.conn.fill().await.unwrap();
    drop(c);
    still_fine(&mut other).await;
    // The backend thread goes away instead of streaming the rest to nobody.
    let mut gone = false;
    for _ in 0..100 {
        let n: Option<i64> = root.query_first(format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {thread}")).await.unwrap();
        if n == Some(0) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "backend thread {thread} still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_dying_mid_result_drops_the_client_connection_like_the_server_and_the_proxy_keeps_serving() {
    // A cluster of its own: its primary gets killed.
    let cluster = tokio::task::spawn_blocking(|| chaos::Cluster::start(chaos::ClusterSpec { replicas: 0, ..Default::default() }).unwrap())
        .await
        .unwrap();
    let mut text = config_text("", "");
    let nodes_line = text.lines().find(|l| l.starts_with("nodes = ")).unwrap().to_string();
    text = text.replace(&nodes_line, &format!("nodes = [\"{}\"]", cluster.primary().addr()));
    let proxy = sluice::start(sluice::net::TokioNet, sluice::Config::parse(&text).unwrap(), 1).await.unwrap();
    let mut c = raw(proxy.local_addr(), CAPS).await;
    c.conn.send(0, &query("SELECT REPEAT('x', 100), SLEEP(0.002) FROM seq_1_to_100000")).await.unwrap();
    let mut t = sluice::protocol::response::ResponseTracker::new(Expect::Query, c.caps);
    let mut got = Vec::new();
    let mut killed = false;
    loop {
        let (n, ev) = t.advance(c.conn.buffered()).unwrap();
        got.extend_from_slice(&c.conn.buffered()[..n]);
        c.conn.consume(n);
        if ev == sluice::protocol::response::Event::Done {
            break;
        }
        if !killed && got.len() > 20_000 {
            cluster.kill_node(0).unwrap();
            killed = true;
        }
        let r = tokio::time::timeout(Duration::from_secs(20), c.conn.fill()).await.expect("answer in time");
        if r.map(|n| n == 0).unwrap_or(true) {
            break;
        }
    }
    assert!(killed);
    // As a direct client sees a server that went away: the connection ends, and the
    // client library reports 2013 itself. (An ERR packet carrying 2013 would be refused
    // by MariaDB Connector/C as malformed, 2027: client-side codes are not the server's.)
    assert_eq!(trailing_err(&got), None, "no ERR packet with a client-side code");
    assert_eq!(c.conn.fill().await.unwrap_or(0), 0, "the client connection is closed");
    // A login while the primary is down gets a server-side error code that client
    // libraries accept (not a client-side 2013, which Connector/C calls malformed).
    let e = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await.unwrap_err();
    assert!(matches!(&e, mysql_async::Error::Server(s) if s.code == 1429 && s.message.contains("cannot reach the primary")), "{e:?}");
    // The proxy itself is fine: once the node is back, new sessions work.
    tokio::task::block_in_place(|| cluster.start_node(0).unwrap());
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(mut c) = mysql_async::Conn::new(opts(proxy.local_addr(), "app", "app", false)).await {
            let v: i64 = c.query_first("SELECT 3").await.unwrap().unwrap();
            ok = v == 3;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "proxy serves again after the backend restarted");
}
