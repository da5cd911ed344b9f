//! Load generator for the pooling figures (`scripts/bench-pool.sh` runs it; figures in
//! `docs/benchmarks.md`): many concurrent clients through Sluice, with Sluice's own
//! client code.
//!
//! ```text
//! cargo bench -p sluice-proxy --bench pool_scale -- --bench clients ADDR N SECONDS
//! cargo bench -p sluice-proxy --bench pool_scale -- --bench idle ADDR N SECONDS
//! cargo bench -p sluice-proxy --bench pool_scale -- --bench storm ADDR PER_SECOND SECONDS
//! ```
//!
//! * `clients`: N clients log in (at most 2,000 per second), each sets session
//!   variables of its own (`sort_buffer_size`, `time_zone`), then runs point selects and
//!   updates on `test.pool_t` (ids 1..=1000) until SECONDS have passed; every tenth
//!   statement reads its `@@sort_buffer_size` back (clients connect from 127.0.0.1, .2, …).
//!   Prints one `RESULT` line: statements,
//!   errors, state mismatches, statements per second, latency p50/p99.
//! * `idle`: N clients log in and stay idle for SECONDS (from 127.0.0.5, .6, …: more
//!   than one address's ephemeral ports); prints
//!   `READY` once all are in (the script reads Sluice's memory then), then `RESULT`.
//! * `storm`: PER_SECOND new clients per second for SECONDS, each logs in, runs
//!   `SELECT 1` and quits (from 127.0.0.20 onwards, 2,000 per address: the closed
//!   connections' ports stay in TIME_WAIT); prints login latency p50/p99 and errors.
//!
//! Under `cargo test` (no `--bench`) it only checks that it builds.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use sluice::backend::conn::{connect, Login, Secret};
use sluice::net::{Net, TokioListener};
use sluice::protocol::constants::cap;

/// Connects from 127.0.0.`first`, the next address, … in turn (`per_address`
/// connections per address), reusing local ports in TIME_WAIT.
#[derive(Clone)]
struct SpreadNet {
    next: Arc<AtomicUsize>,
    first: usize,
    per_address: usize,
}

impl SpreadNet {
    fn new(first: usize, per_address: usize) -> Self {
        SpreadNet { next: Arc::default(), first, per_address }
    }
}

impl Net for SpreadNet {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

    async fn bind(&self, _addr: &str) -> io::Result<TokioListener> {
        Err(io::Error::other("a load generator does not listen"))
    }

    async fn connect(&self, addr: &str) -> io::Result<tokio::net::TcpStream> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let src: std::net::IpAddr = format!("127.0.0.{}", self.first + (n / self.per_address) % 200).parse().expect("address");
        let target: std::net::SocketAddr = addr.parse().map_err(|e| io::Error::other(format!("{addr}: {e}")))?;
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(std::net::SocketAddr::new(src, 0))?;
        let s = sock.connect(target).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

fn login() -> Login {
    Login {
        user: "app".into(),
        secret: Secret::Password("app".into()),
        database: Some(b"test".to_vec()),
        charset: 45,
        caps: cap::SUPPORTED & !cap::SSL,
        ext_caps: 0,
        attrs: None,
        tls: None,
        timeout: Duration::from_secs(60),
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    mismatches: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    first_errors: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_errors.lock().unwrap();
        if f.len() < 5 {
            f.push(e.to_string());
        }
    }

    fn percentiles(&self) -> (f64, f64) {
        let mut l = self.latencies.lock().unwrap().clone();
        if l.is_empty() {
            return (0.0, 0.0);
        }
        l.sort_unstable();
        let at = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)] as f64 / 1000.0;
        (at(0.5), at(0.99))
    }
}

async fn clients(addr: String, n: usize, secs: u64) {
    let tally = Arc::new(Tally::default());
    let net = SpreadNet::new(1, 10_000);
    let rng = Arc::new(Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(1)));
    // Every client logs in and sets its variables first (at most 2,000 logins per
    // second); then all of them run statements for `secs`.
    let (go_tx, go_rx) = tokio::sync::watch::channel(None::<Instant>);
    let ready = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        if i % 2000 == 1999 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (addr, tally, net, rng, ready) = (addr.clone(), tally.clone(), net.clone(), rng.clone(), ready.clone());
        let mut go = go_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = match connect(&net, &addr, &login(), &rng).await {
                Ok(c) => c,
                Err(e) => return tally.error(format!("login: {e}")),
            };
            let sort = 262_144 + (i % 1000) * 8;
            let tz = format!("+{:02}:00", i % 12);
            if let Err(e) = c.query(&format!("SET SESSION sort_buffer_size = {sort}, time_zone = '{tz}'")).await {
                ready.fetch_add(1, Ordering::Relaxed);
                return tally.error(format!("set: {e}"));
            }
            ready.fetch_add(1, Ordering::Relaxed);
            let deadline = match go.wait_for(|s| s.is_some()).await {
                Ok(s) => s.expect("set") + Duration::from_secs(secs),
                Err(_) => return,
            };
            let mut k = i;
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let id = 1 + k % 1000;
                let sql = match k % 10 {
                    0 => "SELECT @@sort_buffer_size, @@time_zone".to_string(),
                    1..=5 => format!("SELECT v FROM pool_t WHERE id = {id}"),
                    _ => format!("UPDATE pool_t SET v = v + 1 WHERE id = {id}"),
                };
                let t = Instant::now();
                match c.query(&sql).await {
                    Ok(r) => {
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        if k % 10 == 0 && (r.get(0, "@@sort_buffer_size") != Some(sort.to_string()) || r.get(0, "@@time_zone").as_deref() != Some(tz.as_str())) {
                            tally.mismatches.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        tally.error(format!("{sql}: {e}"));
                        break;
                    }
                }
            }
            tally.latencies.lock().unwrap().extend(lat);
            c.quit().await;
        }));
    }
    let login_started = Instant::now();
    while ready.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login_s = login_started.elapsed().as_secs_f64();
    let start = Instant::now();
    go_tx.send_replace(Some(start));
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok = tally.ok.load(Ordering::Relaxed);
    println!("LOGGED_IN clients={n} in {login_s:.1}s (after the first)");
    let (p50, p99) = tally.percentiles();
    println!(
        "RESULT clients={n} statements={ok} errors={} state_mismatches={} statements_per_s={:.0} p50_ms={p50:.2} p99_ms={p99:.2} first_errors={:?}",
        tally.errors.load(Ordering::Relaxed),
        tally.mismatches.load(Ordering::Relaxed),
        ok as f64 / elapsed,
        tally.first_errors.lock().unwrap()
    );
}

async fn idle(addr: String, n: usize, secs: u64) {
    let tally = Arc::new(Tally::default());
    let net = SpreadNet::new(5, 10_000);
    let rng = Arc::new(Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(2)));
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut batch = Vec::new();
    for i in 0..n {
        let (addr, net, rng) = (addr.clone(), net.clone(), rng.clone());
        batch.push(tokio::spawn(async move { connect(&net, &addr, &login(), &rng).await }));
        if batch.len() == 500 || i + 1 == n {
            for t in batch.drain(..) {
                match t.await {
                    Ok(Ok(c)) => conns.push(c),
                    Ok(Err(e)) => tally.error(format!("login: {e}")),
                    Err(e) => tally.error(e),
                }
            }
        }
    }
    println!("READY clients={} errors={} login_s={:.1}", conns.len(), tally.errors.load(Ordering::Relaxed), start.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    // Still alive after the wait?
    let mut alive = 0;
    for c in conns.iter_mut().step_by(97) {
        if c.query("SELECT 1").await.is_ok() {
            alive += 1;
        }
    }
    println!("RESULT idle_clients={} sampled_alive={alive}/{} errors={} first_errors={:?}", conns.len(), conns.len().div_ceil(97), tally.errors.load(Ordering::Relaxed), tally.first_errors.lock().unwrap());
}

async fn storm(addr: String, per_second: usize, secs: u64) {
    let tally = Arc::new(Tally::default());
    let net = SpreadNet::new(20, 2_000);
    let rng = Arc::new(Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(3)));
    let start = Instant::now();
    let every = Duration::from_secs_f64(1.0 / per_second as f64);
    let total = per_second * secs as usize;
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + every * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (addr, tally, net, rng) = (addr.clone(), tally.clone(), net.clone(), rng.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            match connect(&net, &addr, &login(), &rng).await {
                Ok(mut c) => {
                    tally.latencies.lock().unwrap().push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    match c.query("SELECT 1").await {
                        Ok(_) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => tally.error(format!("select: {e}")),
                    }
                    c.quit().await;
                }
                Err(e) => tally.error(format!("login: {e}")),
            }
        }));
    }
    let offered = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let (p50, p99) = tally.percentiles();
    println!(
        "RESULT storm_logins={total} offered_per_s={:.0} ok={} errors={} login_p50_ms={p50:.2} login_p99_ms={p99:.2} first_errors={:?}",
        total as f64 / offered,
        tally.ok.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        tally.first_errors.lock().unwrap()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if !std::env::args().any(|a| a == "--bench") {
        println!("pool_scale: a load generator for scripts/bench-pool.sh; run it with `cargo bench -p sluice-proxy --bench pool_scale -- MODE ADDR N SECONDS`");
        return;
    }
    let (mode, addr, n, secs) = match &args[1..] {
        [m, a, n, s] => (m.clone(), a.clone(), n.parse::<usize>().expect("N"), s.parse::<u64>().expect("SECONDS")),
        _ => {
            eprintln!("usage: pool_scale clients|idle|storm ADDR N SECONDS");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        match mode.as_str() {
            "clients" => clients(addr, n, secs).await,
            "idle" => idle(addr, n, secs).await,
            "storm" => storm(addr, n, secs).await,
            other => {
                eprintln!("unknown mode {other}");
                std::process::exit(2);
            }
        }
    });
}
