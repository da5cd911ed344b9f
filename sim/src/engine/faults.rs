//! BUGGIFY-style fault injection hooks.
//!
//! Owns the [`FaultHooks`] trait the engine consults at its fault points,
//! the do-nothing default [`NoFaults`], and [`RandomFaults`], a seeded
//! implementation driven by an injected [`ChaCha8Rng`] so that a harness seed
//! reproduces the exact same faults.
//!
//! Fault points:
//! * before every statement — [`FaultHooks::statement_delay`]: make the
//!   statement "slow" by N simulated ms (surfaces as a `Blocked` outcome with
//!   [`WaitReason::FaultDelay`](super::WaitReason::FaultDelay));
//! * at every commit that has changes — [`FaultHooks::on_commit`]: fail the
//!   commit with an error (e.g. 1213 / 1205; the transaction is rolled back),
//!   or crash the server before / after the commit became durable.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::ast::StatementKind;
use super::error::SqlError;
use super::SessionId;

/// What the engine tells a hook about the fault point.
#[derive(Clone, Debug)]
pub struct FaultContext<'a> {
    pub server_id: u32,
    pub session: SessionId,
    pub now_ms: u64,
    /// Text of the current statement.
    pub sql: &'a str,
    pub kind: StatementKind,
}

/// A fault to inject at commit time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitFault {
    /// Roll the transaction back and return this error to the client.
    Fail(SqlError),
    /// Crash the server before anything of the commit is durable: the
    /// transaction is lost, every session is dropped.
    CrashBeforeDurable,
    /// Crash right after the commit became durable (binlog + data) but
    /// before the client got its OK: the transaction survives.
    CrashAfterDurable,
}

/// Fault hooks consulted by a [`Server`](super::Server). All methods have
/// "no fault" defaults.
pub trait FaultHooks: Send {
    /// Delay (simulated ms) to add before executing a statement.
    fn statement_delay(&mut self, _ctx: &FaultContext<'_>) -> Option<u64> {
        None
    }

    /// Fault to inject when a transaction with changes commits.
    fn on_commit(&mut self, _ctx: &FaultContext<'_>) -> Option<CommitFault> {
        None
    }
}

/// The default: never inject anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFaults;

impl FaultHooks for NoFaults {}

/// Probabilities for [`RandomFaults`] (each in `0.0..=1.0`).
#[derive(Clone, Debug, Default)]
pub struct RandomFaultConfig {
    /// Probability that a statement is delayed.
    pub slow_statement: f64,
    /// Maximum delay in ms (uniform in `1..=max`).
    pub slow_statement_max_ms: u64,
    /// Probability that a commit fails with a deadlock (1213).
    pub commit_deadlock: f64,
    /// Probability that a commit fails with a lock wait timeout (1205).
    pub commit_lock_wait_timeout: f64,
    /// Probability of crashing before the commit is durable.
    pub crash_before_commit: f64,
    /// Probability of crashing right after the commit is durable.
    pub crash_after_commit: f64,
}

/// Seeded random faults.
pub struct RandomFaults {
    rng: ChaCha8Rng,
    cfg: RandomFaultConfig,
}

impl RandomFaults {
    pub fn new(rng: ChaCha8Rng, cfg: RandomFaultConfig) -> RandomFaults {
        RandomFaults { rng, cfg }
    }

    fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }
}

impl FaultHooks for RandomFaults {
    fn statement_delay(&mut self, _ctx: &FaultContext<'_>) -> Option<u64> {
        if self.cfg.slow_statement_max_ms > 0 && self.roll(self.cfg.slow_statement) {
            Some(self.rng.gen_range(1..=self.cfg.slow_statement_max_ms))
        } else {
            None
        }
    }

    fn on_commit(&mut self, _ctx: &FaultContext<'_>) -> Option<CommitFault> {
        if self.roll(self.cfg.crash_before_commit) {
            return Some(CommitFault::CrashBeforeDurable);
        }
        if self.roll(self.cfg.crash_after_commit) {
            return Some(CommitFault::CrashAfterDurable);
        }
        if self.roll(self.cfg.commit_deadlock) {
            return Some(CommitFault::Fail(SqlError::deadlock()));
        }
        if self.roll(self.cfg.commit_lock_wait_timeout) {
            return Some(CommitFault::Fail(SqlError::lock_wait_timeout()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ctx() -> FaultContext<'static> {
        FaultContext {
            server_id: 1,
            session: 1,
            now_ms: 0,
            sql: "COMMIT",
            kind: StatementKind::Transaction,
        }
    }

    #[test]
    fn random_faults_are_reproducible_from_the_seed() {
        let cfg = RandomFaultConfig {
            slow_statement: 0.5,
            slow_statement_max_ms: 100,
            commit_deadlock: 0.3,
            ..Default::default()
        };
        let run = |seed| {
            let mut f = RandomFaults::new(ChaCha8Rng::seed_from_u64(seed), cfg.clone());
            (0..50)
                .map(|_| (f.statement_delay(&ctx()), f.on_commit(&ctx())))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn no_faults_never_fires() {
        let mut f = NoFaults;
        assert!(f.statement_delay(&ctx()).is_none());
        assert!(f.on_commit(&ctx()).is_none());
    }
}
