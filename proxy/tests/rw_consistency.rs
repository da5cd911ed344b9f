//! Read-after-write consistency under load, on a real MariaDB primary and two replicas
//! (one lagging by `MASTER_DELAY`, the other held back by a table lock in short random bursts):
//! many concurrent sessions run write-then-read loops through Sluice at each consistency
//! level, and one checker decides which reads were stale.
//!
//! * **Writer sessions** each own one key: `UPDATE` it to the next value, read it back
//!   at once, sleep longer than the lag, read it back again, and read another writer's
//!   key.
//! * **Reader sessions** never write: they read random keys.
//! * A **direct writer** updates keys of its own on the primary, bypassing Sluice.
//!
//! Every key has a single writer, so its values only grow and "stale" is a number
//! comparison. The checker takes, when a read starts, the values acknowledged so far:
//! to the reading session (`session`), through this Sluice (`instance`), or by anyone
//! (`global`, which adds the direct writer's). A read that returns less than its level
//! promises is a violation; at `eventual` the same comparison counts stale reads, which
//! the lagging replicas must produce (the control).
//!
//! The default test runs each level for a few seconds (`SLUICE_RW_SECONDS`, default 6);
//! the `consistency_cost` benchmark (`benches/consistency_cost.rs`, run by
//! `scripts/bench-consistency.sh`) reports what consistency costs: where reads went and
//! their latency, per level (`docs/consistency.md`). The runner is `tests/rw/mod.rs`.


mod common;
// Each crate uses one of the runner's two entry points.
#[allow(dead_code)]
mod rw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_write_then_read_sessions_never_read_stale_data_at_session_instance_or_global() {
    rw::every_level_holds_its_promise().await;
}
