//! The nemesis: applies a fault schedule to a running simulation, on any simulator.
//!
//! Cluster faults go through [`SimCluster`]'s fault API; network faults through a
//! [`NetControl`] the simulator driver provides. The nemesis is driven by the caller
//! (`step(now)`), so under turmoil it runs between simulation steps and under madsim in
//! a task of its own; either way the same schedule applies at the same simulated times.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::schedule::{EndSel, Endpoint, Fault, FaultKind, LinkCut, NodeSel};
use super::workload::RunShared;
use crate::cluster::SimCluster;
use crate::engine::faults::{CommitFault, FaultContext, FaultHooks};
use crate::engine::{ApplyOutcome, SqlError};
use crate::wire::Life;

/// Network faults, implemented per simulator.
pub trait NetControl {
    /// Sets the maximum one-way latency between `a` and `b` (`None`: back to normal).
    fn set_latency(&mut self, a: Endpoint, b: Endpoint, max_ms: Option<u64>);
    fn cut(&mut self, a: Endpoint, b: Endpoint, cut: LinkCut);
    fn repair(&mut self, a: Endpoint, b: Endpoint, cut: LinkCut);
}

/// Engine fault hooks switched on and off by the nemesis.
#[derive(Default)]
pub struct EngineFaultCtl {
    /// `(slow_pct, max_ms, deadlock_pct)` while active.
    active: Mutex<Option<(u32, u64, u32)>>,
}

impl EngineFaultCtl {
    fn set(&self, v: Option<(u32, u64, u32)>) {
        *self.active.lock().expect("engine fault ctl") = v;
    }
    fn get(&self) -> Option<(u32, u64, u32)> {
        *self.active.lock().expect("engine fault ctl")
    }
}

/// The engine's [`FaultHooks`] driven by an [`EngineFaultCtl`], with a seeded RNG.
pub struct HarnessHooks {
    pub ctl: Arc<EngineFaultCtl>,
    pub rng: ChaCha8Rng,
}

impl FaultHooks for HarnessHooks {
    fn statement_delay(&mut self, _ctx: &FaultContext<'_>) -> Option<u64> {
        let (slow, max_ms, _) = self.ctl.get()?;
        (self.rng.gen_range(0..100) < slow).then(|| self.rng.gen_range(1..=max_ms.max(1)))
    }

    fn on_commit(&mut self, _ctx: &FaultContext<'_>) -> Option<CommitFault> {
        let (_, _, deadlock) = self.ctl.get()?;
        (self.rng.gen_range(0..100) < deadlock).then(|| CommitFault::Fail(SqlError::deadlock()))
    }
}

enum Pending {
    Start(Fault),
    EndLatency(Endpoint, Endpoint),
    Repair(Endpoint, Endpoint, LinkCut),
    Restart(usize),
    Resume(usize),
    Fence { old: usize, candidate: usize, old_down_ms: u64 },
    EndEngine(usize),
}

/// Applies a schedule; records what it did.
pub struct Nemesis {
    cluster: SimCluster,
    shared: Arc<RunShared>,
    engine_ctl: Vec<Arc<EngineFaultCtl>>,
    queue: BTreeMap<(u64, u64), Pending>,
    seq: u64,
    /// What was applied, with simulated times.
    pub log: Vec<String>,
}

impl Nemesis {
    pub fn new(cluster: SimCluster, shared: Arc<RunShared>, engine_ctl: Vec<Arc<EngineFaultCtl>>, schedule: &[Fault]) -> Nemesis {
        let mut n = Nemesis { cluster, shared, engine_ctl, queue: BTreeMap::new(), seq: 0, log: Vec::new() };
        for f in schedule {
            n.push(f.at_ms, Pending::Start(f.clone()));
        }
        n
    }

    fn push(&mut self, at: u64, p: Pending) {
        self.seq += 1;
        self.queue.insert((at, self.seq), p);
    }

    /// When the next action is due.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.keys().next().map(|k| k.0)
    }

    /// Applies every action due at or before `now_ms`.
    pub fn step(&mut self, now_ms: u64, net: &mut dyn NetControl) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let p = entry.remove();
            self.apply(now_ms, p, net);
        }
    }

    /// Ends every fault now (drops faults not started yet), then makes sure every node
    /// is up: the end of the workload.
    pub fn heal(&mut self, now_ms: u64, net: &mut dyn NetControl) {
        self.queue.retain(|_, p| !matches!(p, Pending::Start(_)));
        while let Some((_, p)) = self.queue.pop_first() {
            self.apply(now_ms, p, net);
            self.queue.retain(|_, p| !matches!(p, Pending::Start(_)));
        }
        for i in 0..self.cluster.len() {
            match self.cluster.server(i).life() {
                Life::Crashed => self.cluster.restart(i),
                Life::Paused => self.cluster.resume(i),
                _ => {}
            }
            self.engine_ctl[i].set(None);
        }
        self.log.push(format!("t={now_ms}ms healed: every link repaired, every node up"));
    }

    fn note(&mut self, now: u64, what: String) {
        self.log.push(format!("t={now}ms {what}"));
    }

    fn resolve(&self, sel: NodeSel) -> Option<usize> {
        let primary = self.cluster.primary();
        match sel {
            NodeSel::Primary => primary,
            NodeSel::Replica(k) => {
                let live: Vec<usize> =
                    (0..self.cluster.len()).filter(|&i| Some(i) != primary && self.cluster.server(i).life() == Life::Running).collect();
                (!live.is_empty()).then(|| live[k % live.len()])
            }
        }
    }

    fn resolve_end(&self, e: EndSel) -> Option<Endpoint> {
        match e {
            EndSel::Clients => Some(Endpoint::Clients),
            EndSel::Proxy => Some(Endpoint::Proxy),
            EndSel::Node(n) => self.resolve(n).map(Endpoint::Db),
        }
    }

    fn apply(&mut self, now: u64, p: Pending, net: &mut dyn NetControl) {
        match p {
            Pending::Start(f) => self.start(now, f, net),
            Pending::EndLatency(a, b) => {
                net.set_latency(a, b, None);
                self.note(now, format!("latency {a}<->{b} back to normal"));
            }
            Pending::Repair(a, b, cut) => {
                net.repair(a, b, cut);
                self.note(now, format!("repaired {a}<->{b} ({cut:?})"));
            }
            Pending::Restart(i) => {
                self.cluster.restart(i);
                self.note(now, format!("db{i} restarted"));
            }
            Pending::Resume(i) => {
                self.cluster.resume(i);
                self.note(now, format!("db{i} resumed"));
            }
            Pending::Fence { old, candidate, old_down_ms } => self.fence(now, old, candidate, old_down_ms),
            Pending::EndEngine(i) => {
                self.engine_ctl[i].set(None);
                self.note(now, format!("engine faults on db{i} off"));
            }
        }
    }

    fn start(&mut self, now: u64, f: Fault, net: &mut dyn NetControl) {
        match f.kind {
            FaultKind::LatencySpike { a, b, max_ms, dur_ms } => {
                let (Some(a), Some(b)) = (self.resolve_end(a), self.resolve_end(b)) else {
                    return self.note(now, format!("skipped ({f}): endpoint not available"));
                };
                if a == b {
                    return self.note(now, format!("skipped ({f}): both ends are {a}"));
                }
                net.set_latency(a, b, Some(max_ms));
                self.note(now, format!("latency {a}<->{b} up to {max_ms}ms"));
                self.push(now + dur_ms, Pending::EndLatency(a, b));
            }
            FaultKind::Partition { a, b, cut, dur_ms } => {
                let (Some(a), Some(b)) = (self.resolve_end(a), self.resolve_end(b)) else {
                    return self.note(now, format!("skipped ({f}): endpoint not available"));
                };
                if a == b {
                    return self.note(now, format!("skipped ({f}): both ends are {a}"));
                }
                let primary = self.cluster.primary().map(Endpoint::Db);
                let on_txn_path = matches!((a, b), (Endpoint::Clients, Endpoint::Proxy) | (Endpoint::Proxy, Endpoint::Clients))
                    || (a == Endpoint::Proxy && Some(b) == primary)
                    || (b == Endpoint::Proxy && Some(a) == primary);
                let open = if on_txn_path { self.shared.rec.lock().expect("recorder").open_txns.len() as u64 } else { 0 };
                net.cut(a, b, cut);
                {
                    let mut r = self.shared.rec.lock().expect("recorder");
                    r.cov.partitions += 1;
                    r.cov.partitions_during_txn += open;
                }
                let what = match cut {
                    LinkCut::Stall => format!("stall {a}<->{b}"),
                    LinkCut::Drop => format!("partition {a}<->{b}"),
                    LinkCut::DropOneWay => format!("one-way partition {a}->{b}"),
                };
                self.note(now, format!("{what} ({open} transactions open on that path)"));
                self.push(now + dur_ms, Pending::Repair(a, b, cut));
            }
            FaultKind::Crash { node, down_ms } => {
                let Some(i) = self.resolve(node) else {
                    return self.note(now, format!("skipped ({f}): no such node"));
                };
                if Some(i) == self.cluster.primary() {
                    let writes = self.writes_in_flight();
                    self.cluster.crash_clean(i);
                    self.note(now, format!("crashed primary db{i} ({writes} writes in flight)"));
                } else {
                    self.cluster.crash(i);
                    self.note(now, format!("crashed replica db{i}"));
                }
                self.shared.rec.lock().expect("recorder").cov.crashes += 1;
                self.push(now + down_ms, Pending::Restart(i));
            }
            FaultKind::Pause { node, dur_ms } => {
                let Some(i) = self.resolve(node) else {
                    return self.note(now, format!("skipped ({f}): no such node"));
                };
                self.cluster.pause(i);
                self.note(now, format!("paused db{i}"));
                self.push(now + dur_ms, Pending::Resume(i));
            }
            FaultKind::Failover { hang_ms, candidate, old_down_ms } => {
                let Some(p) = self.cluster.primary() else {
                    return self.note(now, format!("skipped ({f}): no primary"));
                };
                if hang_ms > 0 {
                    self.cluster.pause(p);
                    self.note(now, format!("primary db{p} hangs (paused) before failover"));
                    self.push(now + hang_ms, Pending::Fence { old: p, candidate, old_down_ms });
                } else {
                    self.fence(now, p, candidate, old_down_ms);
                }
            }
            FaultKind::StallReplication { replica, dur_ms } => {
                let Some(i) = self.resolve(NodeSel::Replica(replica)) else {
                    return self.note(now, format!("skipped ({f}): no running replica"));
                };
                self.cluster.stall_replication(i, std::time::Duration::from_millis(dur_ms));
                self.note(now, format!("replication IO of db{i} stalled for {dur_ms}ms"));
            }
            FaultKind::LagSpike { replica, dur_ms } => {
                let Some(i) = self.resolve(NodeSel::Replica(replica)) else {
                    return self.note(now, format!("skipped ({f}): no running replica"));
                };
                self.cluster.lag_spike(i, std::time::Duration::from_millis(dur_ms));
                self.note(now, format!("SQL thread of db{i} holds for {dur_ms}ms"));
            }
            FaultKind::EngineFaults { node, slow_pct, max_ms, deadlock_pct, dur_ms } => {
                let Some(i) = self.resolve(node) else {
                    return self.note(now, format!("skipped ({f}): no such node"));
                };
                self.engine_ctl[i].set(Some((slow_pct, max_ms, deadlock_pct)));
                self.note(now, format!("engine faults on db{i}: {slow_pct}% slow up to {max_ms}ms, {deadlock_pct}% commit deadlocks"));
                self.push(now + dur_ms, Pending::EndEngine(i));
            }
        }
    }

    fn writes_in_flight(&self) -> u64 {
        let mut r = self.shared.rec.lock().expect("recorder");
        let n = r.writes_in_flight.len() as u64;
        r.cov.crashes_during_write += n;
        n
    }

    /// Fences the old primary (crash: every session and in-flight statement dies,
    /// nothing committed is lost), gives the candidate every event of the old primary's
    /// binlog it lacks, promotes it, and brings the old primary back later as a replica.
    fn fence(&mut self, now: u64, old: usize, candidate: usize, old_down_ms: u64) {
        let writes = self.writes_in_flight();
        self.cluster.crash_clean(old);
        self.shared.rec.lock().expect("recorder").cov.crashes += 1;
        let live: Vec<usize> = (0..self.cluster.len()).filter(|&i| i != old && self.cluster.server(i).life() == Life::Running).collect();
        if live.is_empty() {
            self.note(now, format!("crashed primary db{old} ({writes} writes in flight); no replica to promote"));
            self.push(now + old_down_ms, Pending::Restart(old));
            return;
        }
        let r = live[candidate % live.len()];
        let events = self.cluster.server(old).engine().binlog().to_vec();
        let at = self.cluster.server(r).last_now();
        let mut salvaged = 0;
        let mut trouble = Vec::new();
        self.cluster.server(r).with(|e| {
            for ev in &events {
                match e.apply_event(ev, at) {
                    Ok(ApplyOutcome::Applied) => salvaged += 1,
                    Ok(ApplyOutcome::Skipped) => {}
                    other => trouble.push(format!("{}: {other:?}", ev.gtid)),
                }
            }
        });
        self.cluster.server(r).notify();
        // The promotion is recorded by each server as a role change at its clock; a
        // server that is down (the fenced old primary) saw no time pass since it went
        // down, so bring every clock to now first.
        for j in 0..self.cluster.len() {
            self.cluster.server(j).with(|e| e.advance_clock(now));
        }
        // Engine fault hooks would make the promotion's statements "slow" (blocked).
        let saved: Vec<_> = self.engine_ctl.iter().map(|c| c.get()).collect();
        for c in &self.engine_ctl {
            c.set(None);
        }
        let promoted = self.cluster.promote(r);
        for (c, s) in self.engine_ctl.iter().zip(saved) {
            c.set(s);
        }
        self.shared.rec.lock().expect("recorder").cov.failovers += 1;
        self.note(
            now,
            format!(
                "failover: crashed primary db{old} ({writes} writes in flight), db{r} got {salvaged} salvaged events{}, promoted: {}",
                if trouble.is_empty() { String::new() } else { format!(" (NOT applied: {})", trouble.join("; ")) },
                match promoted {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("ERROR {e}"),
                }
            ),
        );
        self.push(now + old_down_ms, Pending::Restart(old));
    }
}
