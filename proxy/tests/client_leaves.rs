//! A client that closes its socket while a large result streams to it ends its
//! session: Sluice notices, drops (or kills) the backend statement, removes the session
//! from its registry and closes both sockets — whatever point of the result the client
//! left at, and whether it read a little, nothing, or sent COM_QUIT first. Nothing
//! stays open for shutdown to report, and the file descriptors of the test process
//! (which hosts the proxy) come back to where they were.

mod common;

use std::time::{Duration, Instant};

use sluice::net::TokioNet;

/// The tests of this file run one at a time: the first counts the process's open
/// descriptors, which another test's cluster and proxy would change meanwhile.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// How a client leaves mid-result.
#[derive(Debug, Clone, Copy)]
enum Leave {
    /// Reads `n` bytes of the result, then closes the socket.
    AfterReading(usize),
    /// Reads `n` bytes, sends COM_QUIT (as PyMySQL's `close()` does), then closes.
    QuitAfterReading(usize),
    /// Reads `n` bytes, half-closes (FIN) and keeps the socket a moment before closing.
    HalfCloseAfterReading(usize),
    /// Reads slowly (16 KiB every 5 ms) for `ms` milliseconds, then closes.
    SlowlyFor(u64),
}

async fn open_sessions(proxy: &sluice::ProxyHandle, within: Duration) -> usize {
    let until = Instant::now() + within;
    loop {
        let n = proxy.stats().sessions;
        if n == 0 || Instant::now() >= until {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A primary and a replica, and a proxy in the soak's setting: splitting on,
/// consistency `session`, pooled connections, no read timeout (nothing else ends a
/// stuck relay); `extra_proxy` lines go into `[proxy]`.
async fn cluster_and_proxy(extra_proxy: &str) -> (chaos::Cluster, sluice::ProxyHandle) {
    let cluster = chaos::Cluster::start(chaos::ClusterSpec { replicas: 1, ..Default::default() }).expect("start MariaDB");
    let cfg = common::split_config(&cluster, "consistency = \"session\"")
        .replace("[backend]\n", "[backend]\nread_timeout_ms = 0\n")
        .replace("[proxy]\n", &format!("[proxy]\nshutdown_timeout_ms = 2000\n{extra_proxy}"));
    let proxy = sluice::start(TokioNet, sluice::Config::parse(&cfg).unwrap(), 7).await.unwrap();
    (cluster, proxy)
}

/// Logs in, runs (with `write`, after a write: the read then waits for its GTID on the
/// replica) a SELECT of about 32 MiB in 256 KiB rows — far more than the sockets'
/// buffers hold — and reads at least `read` bytes of its answer.
async fn large_result_read_up_to(addr: &str, read: usize, write: bool) -> sluice::backend::conn::BackendConn<tokio::net::TcpStream> {
    let mut c = common::raw(addr, common::CAPS).await;
    if write {
        common::roundtrip(&mut c, &common::query("INSERT INTO test.leaves VALUES (1)"), sluice::protocol::response::Expect::Query).await;
    }
    c.conn.send(0, &common::query("SELECT seq, REPEAT('x', 262144) FROM seq_1_to_128")).await.unwrap();
    let mut got = 0;
    while got < read {
        let n = tokio::time::timeout(Duration::from_secs(10), c.conn.fill()).await.expect("result streams").unwrap();
        assert!(n > 0, "result ended early");
        let len = c.conn.buffered().len();
        got += len;
        c.conn.consume(len);
    }
    c
}

/// One client: a large result (after a write, with `write`) it leaves as `leave` says.
async fn leave_mid_result(addr: &str, leave: Leave, write: bool) {
    let want = match leave {
        Leave::AfterReading(n) | Leave::QuitAfterReading(n) | Leave::HalfCloseAfterReading(n) => n,
        Leave::SlowlyFor(_) => 0,
    };
    let mut c = large_result_read_up_to(addr, want, write).await;
    match leave {
        Leave::AfterReading(_) => {}
        Leave::QuitAfterReading(_) => {
            let _ = c.conn.write_raw(&[1, 0, 0, 0, sluice::protocol::constants::com::QUIT]).await;
        }
        Leave::HalfCloseAfterReading(_) => {
            c.conn.shutdown().await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        Leave::SlowlyFor(ms) => {
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until {
                let _ = tokio::time::timeout(Duration::from_millis(5), c.conn.fill()).await;
                let len = c.conn.buffered().len().min(16 * 1024);
                c.conn.consume(len);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_closing_mid_result_ends_its_session_every_time() {
    let _one = ONE_AT_A_TIME.lock().await;
    let rounds: usize = std::env::var("SLUICE_LEAVE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(36);
    let (_cluster, proxy) = cluster_and_proxy("").await;
    let addr = proxy.local_addr().to_string();
    // Warm up: one session, so pools and the monitor's connections exist before the
    // descriptors are counted.
    {
        let mut c = common::raw(&addr, common::CAPS).await;
        common::roundtrip(&mut c, &common::query("CREATE TABLE IF NOT EXISTS test.leaves (a INT)"), sluice::protocol::response::Expect::Query).await;
    }
    assert_eq!(open_sessions(&proxy, Duration::from_secs(5)).await, 0);
    let fds_before = open_fds();
    let mut stuck = Vec::new();
    // Rounds run in batches of `batch` clients at once (sessions share the pools).
    let batch: usize = std::env::var("SLUICE_LEAVE_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    for first in (0..rounds).step_by(batch) {
        let mut tasks = Vec::new();
        for round in first..(first + batch).min(rounds) {
            let leave = match round % 4 {
                0 => Leave::AfterReading([0, 4096, 300_000, 3 << 20][round / 4 % 4]),
                1 => Leave::QuitAfterReading([0, 65536, 1 << 20][round / 4 % 3]),
                2 => Leave::HalfCloseAfterReading([0, 200_000][round / 4 % 2]),
                _ => Leave::SlowlyFor([10, 60, 250][round / 4 % 3]),
            };
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                leave_mid_result(&addr, leave, round % 3 == 0).await;
                (round, leave)
            }));
        }
        let mut batch_rounds = Vec::new();
        for t in tasks {
            batch_rounds.push(t.await.expect("client task"));
        }
        let left = open_sessions(&proxy, Duration::from_secs(5)).await;
        if left != 0 {
            eprintln!("rounds {batch_rounds:?}: {left} session(s) still open 5 s after their clients left");
            stuck.push((batch_rounds, left));
        }
    }
    let fds_after = open_fds();
    let open_at_shutdown = proxy.shutdown().await;
    println!("{rounds} rounds: {} left sessions open; fds {fds_before} -> {fds_after}; shutdown found {open_at_shutdown} open", stuck.len());
    assert!(stuck.is_empty(), "sessions that never ended: {stuck:?}");
    assert_eq!(open_at_shutdown, 0, "shutdown found sessions still open");
    assert!(fds_after <= fds_before + 4, "descriptors grew from {fds_before} to {fds_after}");
}

/// A client whose "close" never reached Sluice: it read part of a large result and
/// stopped, its socket still open (PyMySQL's `conn._sock.close()` does this — the
/// connection's buffered reader keeps the descriptor open —, and so does a hung client
/// process or a host gone without a FIN or RST). Sluice's write to it stalls; past
/// `proxy.client_write_timeout_ms` the session ends, its backend statement is killed and
/// its backend connection closed, as MariaDB does after `net_write_timeout`. Before
/// the bound, such sessions stayed in the registry for good, each holding a backend
/// connection, and shutdown reported them still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_of_a_client_that_stopped_reading_mid_result_ends_after_the_write_timeout() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_cluster, proxy) = cluster_and_proxy("client_write_timeout_ms = 1000\n").await;
    let addr = proxy.local_addr().to_string();
    let mut stalled = Vec::new();
    for read in [0usize, 100_000, 2 << 20] {
        // Stops reading; the socket stays open.
        stalled.push(large_result_read_up_to(&addr, read, false).await);
    }
    let left = open_sessions(&proxy, Duration::from_secs(15)).await;
    let open_at_shutdown = proxy.shutdown().await;
    drop(stalled);
    assert_eq!(left, 0, "sessions of clients that stopped reading still open 15 s later (write timeout 1 s)");
    assert_eq!(open_at_shutdown, 0, "shutdown found sessions still open");
}
