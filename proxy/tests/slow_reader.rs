//! A client that reads a large result slowly holds its backend connection with TCP
//! backpressure, never Sluice's memory: the result streams through Sluice's bounded
//! buffers at the client's pace, and the process's RSS stays flat.
//!
//! Default: a 64 MiB result read at 16 MiB/s (4 s). The full run — 1 GiB at
//! 1 MiB/s, about 17 minutes — is `SLUICE_SLOW_READER_MB=1024 SLUICE_SLOW_READER_RATE_MB=1
//! cargo test -p sluice-proxy --test slow_reader -- --nocapture`.

mod common;

use std::time::{Duration, Instant};

use sluice::net::TokioNet;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap()
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_of_a_large_result_holds_backpressure_not_memory() {
    let mb = env("SLUICE_SLOW_READER_MB", 64);
    let rate = env("SLUICE_SLOW_READER_RATE_MB", 16).max(1);
    let spec = chaos::ClusterSpec { replicas: 0, ..Default::default() };
    let cluster = chaos::Cluster::start(spec).expect("start MariaDB");
    let node = cluster.primary().addr();
    let cfg = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[[users]]\nname = \"app\"\npassword = \"app\"\n[backend]\nuser = \"app\"\npassword = \"app\"\nnodes = [\"{node}\"]\nread_timeout_ms = 0\n[pool]\nmin_idle = 0\n"
    );
    let proxy = sluice::start(TokioNet, sluice::Config::parse(&cfg).unwrap(), 3).await.unwrap();
    // Log in with Sluice's own client code, then take the socket over to read slowly.
    let mut c = common::raw(proxy.local_addr(), common::CAPS).await;
    let sql = format!("SELECT REPEAT('x', 1048576) FROM seq_1_to_{mb}");
    let mut q = vec![sluice::protocol::constants::com::QUERY];
    q.extend_from_slice(sql.as_bytes());
    let before = rss_kib();
    c.conn.send(0, &q).await.unwrap();
    let started = Instant::now();
    let mut got: u64 = 0;
    let mut peak = before;
    let want = mb * 1024 * 1024;
    // Every row is 1 MiB plus its length prefix and packet header.
    let rows_end = want + mb * 8;
    let mut last_sample = Instant::now();
    while got < rows_end {
        // At most one 64 KiB read at a time, paced to `rate` MiB/s.
        let n = c.conn.fill().await.unwrap();
        assert!(n > 0, "connection closed after {got} bytes");
        let len = c.conn.buffered().len();
        got += len as u64;
        c.conn.consume(len);
        if last_sample.elapsed() > Duration::from_millis(250) {
            peak = peak.max(rss_kib());
            last_sample = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs_f64(len as f64 / (rate as f64 * 1024.0 * 1024.0))).await;
    }
    let elapsed = started.elapsed();
    let growth = peak.saturating_sub(before);
    println!("slow reader: {got} bytes in {:.1}s ({:.1} MiB/s); RSS {before} KiB before, peak {peak} KiB (+{growth} KiB)", elapsed.as_secs_f64(), got as f64 / 1048576.0 / elapsed.as_secs_f64());
    assert!(got >= want, "the whole result arrived");
    assert!(elapsed >= Duration::from_secs_f64(mb as f64 / rate as f64 * 0.8), "read at the client's pace");
    // Bounded: Sluice holds at most its buffers for this client (64 KiB read chunks
    // and the packet in flight), whatever the result's size.
    assert!(growth < 24 * 1024, "RSS grew by {growth} KiB while {mb} MiB passed through");
}
