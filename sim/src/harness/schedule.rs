//! Fault schedules: what goes wrong, and when, derived from the run's seed.
//!
//! A schedule is a list of [`Fault`]s with start times in simulated milliseconds from the
//! start of the workload. Targets that depend on the cluster's state (the primary, "the
//! second live replica") are [`NodeSel`]s resolved when the fault starts, so the same
//! schedule stays meaningful after a failover. Three independent tracks are generated:
//!
//! * **node faults** (one at a time): failover (crash or hang of the primary, then
//!   promotion of a replica), primary crash with restart, replica crash, pause of the
//!   primary or of a replica;
//! * **link faults** (one at a time): latency spikes and partitions — stalls (turmoil
//!   `hold`: traffic is held and delivered on repair, as TCP retransmission would),
//!   two-way drops and one-way drops (turmoil `partition`: segments sent meanwhile are
//!   lost, so the connections that sent them hang until an endpoint times out);
//! * **replication and engine faults** (may overlap anything): IO-thread stalls, SQL
//!   thread lag spikes, slow statements and commit-time deadlocks through the engine's
//!   fault hooks.

use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::config::{FaultProfile, RunConfig};

/// A cluster node chosen when a fault starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeSel {
    /// The current primary.
    Primary,
    /// The `k`-th (modulo their number) running replica.
    Replica(usize),
}

impl fmt::Display for NodeSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeSel::Primary => f.write_str("primary"),
            NodeSel::Replica(k) => write!(f, "replica#{k}"),
        }
    }
}

/// One end of a link, before resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndSel {
    /// Every client host (workload clients and replica readers).
    Clients,
    Proxy,
    Node(NodeSel),
}

impl fmt::Display for EndSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndSel::Clients => f.write_str("clients"),
            EndSel::Proxy => f.write_str("proxy"),
            EndSel::Node(n) => n.fmt(f),
        }
    }
}

/// One end of a link, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Clients,
    Proxy,
    Db(usize),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Clients => f.write_str("clients"),
            Endpoint::Proxy => f.write_str("proxy"),
            Endpoint::Db(i) => write!(f, "db{i}"),
        }
    }
}

/// How a partition cuts a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkCut {
    /// Both directions held; held traffic is delivered on repair.
    Stall,
    /// Both directions dropped.
    Drop,
    /// Only `a → b` dropped.
    DropOneWay,
}

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The link's maximum one-way latency is raised to `max_ms` for `dur_ms`.
    LatencySpike { a: EndSel, b: EndSel, max_ms: u64, dur_ms: u64 },
    Partition { a: EndSel, b: EndSel, cut: LinkCut, dur_ms: u64 },
    /// Crash (nothing committed is lost: synced binlog) and restart after `down_ms`.
    Crash { node: NodeSel, down_ms: u64 },
    /// The node keeps its connections but answers nothing for `dur_ms`.
    Pause { node: NodeSel, dur_ms: u64 },
    /// Failover: the primary hangs for `hang_ms` (0: crashes at once), is then fenced
    /// (crashed), a replica (`candidate`-th running one) receives the old primary's
    /// binlog tail it lacks (MHA-style salvage) and is promoted; the old primary comes
    /// back as a replica after `old_down_ms`.
    Failover { hang_ms: u64, candidate: usize, old_down_ms: u64 },
    /// A replica's IO thread receives nothing for `dur_ms`.
    StallReplication { replica: usize, dur_ms: u64 },
    /// A replica's SQL thread applies nothing for `dur_ms`.
    LagSpike { replica: usize, dur_ms: u64 },
    /// Engine fault hooks on a node: `slow_pct`% of statements delayed up to `max_ms`,
    /// `deadlock_pct`% of commits fail with a deadlock (rolled back), for `dur_ms`.
    EngineFaults { node: NodeSel, slow_pct: u32, max_ms: u64, deadlock_pct: u32, dur_ms: u64 },
}

/// A fault and its start time (simulated ms since the workload started).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub at_ms: u64,
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={}ms ", self.at_ms)?;
        match &self.kind {
            FaultKind::LatencySpike { a, b, max_ms, dur_ms } => write!(f, "latency spike {a}<->{b} up to {max_ms}ms for {dur_ms}ms"),
            FaultKind::Partition { a, b, cut, dur_ms } => {
                let what = match cut {
                    LinkCut::Stall => format!("stall (hold) {a}<->{b}"),
                    LinkCut::Drop => format!("partition {a}<->{b}"),
                    LinkCut::DropOneWay => format!("one-way partition {a}->{b}"),
                };
                write!(f, "{what} for {dur_ms}ms")
            }
            FaultKind::Crash { node, down_ms } => write!(f, "crash {node}, restart after {down_ms}ms"),
            FaultKind::Pause { node, dur_ms } => write!(f, "pause {node} for {dur_ms}ms"),
            FaultKind::Failover { hang_ms, candidate, old_down_ms } => {
                if *hang_ms == 0 {
                    write!(f, "failover: crash primary, promote replica#{candidate}, old primary back after {old_down_ms}ms")
                } else {
                    write!(f, "failover: primary hangs {hang_ms}ms, then fenced; promote replica#{candidate}, old primary back after {old_down_ms}ms")
                }
            }
            FaultKind::StallReplication { replica, dur_ms } => write!(f, "stall replication IO of replica#{replica} for {dur_ms}ms"),
            FaultKind::LagSpike { replica, dur_ms } => write!(f, "lag spike (SQL thread) on replica#{replica} for {dur_ms}ms"),
            FaultKind::EngineFaults { node, slow_pct, max_ms, deadlock_pct, dur_ms } => {
                write!(f, "engine faults on {node}: {slow_pct}% statements slow up to {max_ms}ms, {deadlock_pct}% commits deadlock, for {dur_ms}ms")
            }
        }
    }
}

/// Renders a schedule one fault per line.
pub fn render(schedule: &[Fault]) -> String {
    if schedule.is_empty() {
        return "  (no faults)\n".into();
    }
    schedule.iter().map(|f| format!("  {f}\n")).collect()
}

impl FaultKind {
    fn duration(&self) -> u64 {
        match self {
            FaultKind::LatencySpike { dur_ms, .. }
            | FaultKind::Partition { dur_ms, .. }
            | FaultKind::Pause { dur_ms, .. }
            | FaultKind::StallReplication { dur_ms, .. }
            | FaultKind::LagSpike { dur_ms, .. }
            | FaultKind::EngineFaults { dur_ms, .. } => *dur_ms,
            FaultKind::Crash { down_ms, .. } => *down_ms,
            FaultKind::Failover { hang_ms, old_down_ms, .. } => hang_ms + old_down_ms,
        }
    }
}

/// Derives a schedule from the seed.
pub fn generate(cfg: &RunConfig, rng: &mut ChaCha8Rng) -> Vec<Fault> {
    if cfg.faults == FaultProfile::None {
        return Vec::new();
    }
    let end = cfg.duration_ms.saturating_sub(1_000);
    let mut out = Vec::new();
    let replicas = cfg.nodes.saturating_sub(1).max(1);

    // Node faults, one at a time.
    if cfg.nodes > 1 {
        let mut t = rng.gen_range(300..1_500);
        while t < end {
            let roll = rng.gen_range(0..100);
            let kind = if roll < 30 {
                let hang_ms = if rng.gen_bool(0.5) { 0 } else { rng.gen_range(100..2_000) };
                FaultKind::Failover { hang_ms, candidate: rng.gen_range(0..replicas), old_down_ms: rng.gen_range(1_500..4_000) }
            } else if roll < 50 {
                // A primary crash; one in three comes straight back (a fast restart).
                let down_ms = if rng.gen_ratio(1, 3) { rng.gen_range(0..20) } else { rng.gen_range(200..3_000) };
                FaultKind::Crash { node: NodeSel::Primary, down_ms }
            } else if roll < 65 {
                FaultKind::Crash { node: NodeSel::Replica(rng.gen_range(0..replicas)), down_ms: rng.gen_range(200..4_000) }
            } else if roll < 82 {
                FaultKind::Pause { node: NodeSel::Primary, dur_ms: rng.gen_range(100..2_500) }
            } else {
                FaultKind::Pause { node: NodeSel::Replica(rng.gen_range(0..replicas)), dur_ms: rng.gen_range(100..3_000) }
            };
            let d = kind.duration();
            out.push(Fault { at_ms: t, kind });
            t += d + rng.gen_range(700..4_000);
        }
    }

    // Link faults, one at a time.
    let mut t = rng.gen_range(200..1_500);
    while t < end {
        let (a, b) = match rng.gen_range(0..100) {
            0..=29 => (EndSel::Clients, EndSel::Proxy),
            30..=64 => (EndSel::Proxy, EndSel::Node(NodeSel::Primary)),
            65..=74 => (EndSel::Proxy, EndSel::Node(NodeSel::Replica(rng.gen_range(0..replicas)))),
            75..=89 => (EndSel::Node(NodeSel::Primary), EndSel::Node(NodeSel::Replica(rng.gen_range(0..replicas)))),
            _ => (EndSel::Clients, EndSel::Node(NodeSel::Replica(rng.gen_range(0..replicas)))),
        };
        let (a, b) = if rng.gen_bool(0.5) { (a, b) } else { (b, a) };
        let kind = if rng.gen_ratio(3, 10) {
            FaultKind::LatencySpike { a, b, max_ms: rng.gen_range(30..400), dur_ms: rng.gen_range(200..3_000) }
        } else {
            let cut = match rng.gen_range(0..100) {
                0..=59 => LinkCut::Stall,
                60..=84 => LinkCut::Drop,
                _ => LinkCut::DropOneWay,
            };
            FaultKind::Partition { a, b, cut, dur_ms: rng.gen_range(50..2_000) }
        };
        let d = kind.duration();
        out.push(Fault { at_ms: t, kind });
        t += d + rng.gen_range(500..3_500);
    }

    // Replication and engine faults, independent.
    if cfg.nodes > 1 {
        for _ in 0..rng.gen_range(0..=3) {
            let at_ms = rng.gen_range(200..end.max(201));
            let replica = rng.gen_range(0..replicas);
            let dur_ms = rng.gen_range(200..5_000);
            let kind = if rng.gen_bool(0.5) { FaultKind::StallReplication { replica, dur_ms } } else { FaultKind::LagSpike { replica, dur_ms } };
            out.push(Fault { at_ms, kind });
        }
    }
    for _ in 0..rng.gen_range(0..=2) {
        let at_ms = rng.gen_range(200..end.max(201));
        let node = if rng.gen_bool(0.7) || cfg.nodes < 2 { NodeSel::Primary } else { NodeSel::Replica(rng.gen_range(0..replicas)) };
        out.push(Fault {
            at_ms,
            kind: FaultKind::EngineFaults {
                node,
                slow_pct: rng.gen_range(5..=40),
                max_ms: rng.gen_range(20..500),
                deadlock_pct: rng.gen_range(0..=5),
                dur_ms: rng.gen_range(500..5_000),
            },
        });
    }
    out.sort_by_key(|f| f.at_ms);
    out
}
