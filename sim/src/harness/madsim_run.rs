//! The harness on madsim (`RUSTFLAGS="--cfg madsim"`): the same proxy, servers, clients,
//! nemesis and checkers, on madsim's simulated network. The proxy and the servers use
//! Sluice's own [`TokioNet`] — under `--cfg madsim`, `tokio` is madsim's, so that is
//! madsim's TCP. Every server, the proxy and every client is a madsim node with a
//! virtual IP address and a DNS name (`db0`, `proxy`, `proxy2` when there are two
//! Sluice instances, `client3`); no real socket is
//! opened.
//!
//! Differences from turmoil: madsim's TCP is reliable — a clogged link delays traffic
//! until it is unclogged — so every partition (stall, drop, one-way drop) is a stall
//! here, and latency is configured for the whole network, so a latency spike slows
//! every link.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use sluice::net::TokioNet;

use super::nemesis::{NetControl, Nemesis};
use super::schedule::{Endpoint, LinkCut};
use super::workload::{run_client, run_replica_reader, RunShared};
use super::*;

struct MadsimCtl {
    net: Arc<NetSim>,
    clients: Vec<NodeId>,
    proxies: Vec<NodeId>,
    dbs: Vec<NodeId>,
    base_latency: std::ops::Range<Duration>,
    spikes: usize,
}

impl MadsimCtl {
    fn nodes(&self, e: Endpoint) -> Vec<NodeId> {
        match e {
            Endpoint::Clients => self.clients.clone(),
            Endpoint::Proxy => self.proxies.clone(),
            Endpoint::Db(i) => vec![self.dbs[i]],
        }
    }
}

impl NetControl for MadsimCtl {
    fn set_latency(&mut self, _a: Endpoint, _b: Endpoint, max_ms: Option<u64>) {
        // madsim's latency is global: a spike slows the whole network while it lasts.
        match max_ms {
            Some(_) => self.spikes += 1,
            None => self.spikes = self.spikes.saturating_sub(1),
        }
        let range = match max_ms {
            Some(ms) => Duration::from_micros(100)..Duration::from_millis(ms.max(1)),
            None if self.spikes > 0 => return,
            None => self.base_latency.clone(),
        };
        self.net.update_config(|c| c.send_latency = range);
    }

    fn cut(&mut self, a: Endpoint, b: Endpoint, cut: LinkCut) {
        for x in self.nodes(a) {
            for y in self.nodes(b) {
                self.net.clog_link(x, y);
                if cut != LinkCut::DropOneWay {
                    self.net.clog_link(y, x);
                }
            }
        }
    }

    fn repair(&mut self, a: Endpoint, b: Endpoint, cut: LinkCut) {
        for x in self.nodes(a) {
            for y in self.nodes(b) {
                self.net.unclog_link(x, y);
                if cut != LinkCut::DropOneWay {
                    self.net.unclog_link(y, x);
                }
            }
        }
    }
}

/// Runs one seed inside the current madsim runtime (call from `#[madsim::test]` or
/// `Runtime::block_on`; the runtime's own seed should be `seed` too). `wall` in the
/// result is zero (madsim virtualises the clock; measure outside the runtime).
pub async fn run(seed: u64, opts: &Options) -> RunResult {
    let cfg = RunConfig::derive(seed, opts);
    let schedule = opts.schedule.clone().unwrap_or_else(|| schedule::generate(&cfg, &mut config::rng_for(seed, "schedule", 0)));
    eprintln!("sim run (madsim) {cfg}");
    if opts.verbose {
        eprintln!("fault schedule:\n{}", schedule::render(&schedule));
    }
    let (cluster, engine_ctl) = build_cluster(&cfg);
    let shared = Arc::new(RunShared::new(cfg.clone(), cluster.clone()));
    let handle = Handle::current();
    let net = NetSim::current();
    let base_latency = Duration::from_micros(100)..Duration::from_millis(cfg.max_latency_ms.max(1));
    net.update_config(|c| c.send_latency = base_latency.clone());

    let mut dbs = Vec::new();
    for i in 0..cluster.len() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1));
        net.add_dns_record(&cluster.host(i), ip);
        let c = cluster.clone();
        let node = handle
            .create_node()
            .name(cluster.host(i))
            .ip(ip)
            .init(move || {
                let c = c.clone();
                async move { c.run_node(i, TokioNet).await }
            })
            .build();
        dbs.push(node.id());
    }
    let mut proxies = Vec::new();
    for i in 0..cfg.proxies as u32 {
        let proxy_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1));
        let name = crate::history::instance_name(i);
        net.add_dns_record(&name, proxy_ip);
        let pcfg = proxy_config(&cluster, &cfg, i);
        let proxy_seed = derive_seed(seed, "proxy", i as u64);
        let faults = proxy_faults(&cfg);
        let stats_to = shared.clone();
        let proxy = handle
            .create_node()
            .name(name)
            .ip(proxy_ip)
            .init(move || {
                let (pcfg, faults, stats_to) = (pcfg.clone(), faults.clone(), stats_to.clone());
                async move {
                    match sluice::start_with_faults(TokioNet, pcfg, proxy_seed, faults).await {
                        Ok(h) => {
                            stats_to.proxy_stats.lock().expect("proxy stats").push(h.stats_source());
                            std::future::pending::<()>().await;
                            drop(h);
                        }
                        Err(e) => panic!("proxy failed to start: {e}"),
                    }
                }
            })
            .build();
        proxies.push(proxy.id());
    }

    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    let total = cfg.clients + cfg.replica_readers;
    for c in 0..total {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 2 + (c / 200) as u8, (c % 200) as u8 + 1));
        let name = if c < cfg.clients { format!("client{c}") } else { format!("reader{}", c - cfg.clients) };
        net.add_dns_record(&name, ip);
        let node = handle.create_node().name(name).ip(ip).build();
        clients.push(node.id());
        let shared = shared.clone();
        let is_reader = c >= cfg.clients;
        if c == 0 && cfg.switchover.is_some() {
            let shared = shared.clone();
            tasks.push(node.spawn(async move { crate::harness::workload::run_operator(TokioNet, shared).await }));
        }
        tasks.push(node.spawn(async move {
            if is_reader {
                run_replica_reader(TokioNet, shared, c as u32).await
            } else {
                run_client(TokioNet, shared, c as u32).await
            }
        }));
    }

    let mut ctl = MadsimCtl { net: net.clone(), clients, proxies, dbs, base_latency, spikes: 0 };
    let mut nemesis = Nemesis::new(cluster.clone(), shared.clone(), engine_ctl, &schedule);
    let start = tokio::time::Instant::now();
    loop {
        let now_ms = start.elapsed().as_millis() as u64;
        if now_ms >= cfg.duration_ms {
            nemesis.heal(now_ms, &mut ctl);
            break;
        }
        nemesis.step(now_ms, &mut ctl);
        let next = nemesis.next_due().unwrap_or(cfg.duration_ms).clamp(now_ms + 1, cfg.duration_ms);
        tokio::time::sleep_until(start + Duration::from_millis(next)).await;
    }
    // The clients probe the proxy after the heal, then replication gets up to
    // `settle_ms`.
    for t in tasks {
        let _ = t.await;
    }
    let settled_by = (start + Duration::from_millis(cfg.duration_ms + cfg.settle_ms)).max(tokio::time::Instant::now() + Duration::from_millis(cfg.settle_ms));
    super::settle(&cluster, settled_by).await;
    let sim_elapsed = start.elapsed();
    let fault_log = std::mem::take(&mut nemesis.log);
    let res = finish("madsim", cfg, schedule, fault_log, &shared, sim_elapsed, Duration::ZERO);
    if opts.verbose {
        eprintln!("{res}");
    }
    res
}
