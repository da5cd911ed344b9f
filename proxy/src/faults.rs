//! Fault hooks: deliberate misbehaviour that tests and simulations switch on to prove
//! their checkers catch it. Production passes [`NoFaults`]; nothing here is reachable
//! from the config file.

/// Deliberate bugs a simulation can inject into the proxy.
pub trait Faults: Send + Sync + 'static {
    /// When a backend connection fails after a command was sent and before any of its
    /// response reached the client, open a new backend connection and send the command
    /// again. This is exactly the unsafe retry Sluice must never do (the first attempt may
    /// have been applied); the simulation suite turns it on to show its checkers report
    /// the resulting duplicate writes.
    fn resend_after_lost_backend(&self) -> bool {
        false
    }

    /// Route writes (and every other primary-only statement that is not a read of
    /// session-bound state) to a replica whenever one is eligible for reads.
    fn route_writes_to_replica(&self) -> bool {
        false
    }

    /// Route reads of session-bound state (`SELECT LAST_INSERT_ID()`, `SELECT @v`,
    /// `FOUND_ROWS()`, …) to a replica whenever one is eligible for reads.
    fn route_session_bound_reads_to_replica(&self) -> bool {
        false
    }

    /// Ignore promotions: keep sending primary-bound statements to the first primary
    /// the monitor found, whatever it reports later.
    fn ignore_promotion(&self) -> bool {
        false
    }

    /// Ignore read-after-write requirements: send reads to any eligible replica without
    /// checking or waiting for the session's GTID position.
    fn ignore_consistency(&self) -> bool {
        false
    }

    /// Lend pooled connections as they are: never reset one that holds another
    /// session's state, assume it follows the borrower's (multiplexing's bug).
    fn ignore_pooled_state(&self) -> bool {
        false
    }
}

/// No injected faults (production).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFaults;

impl Faults for NoFaults {}
