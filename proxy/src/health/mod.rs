//! Node health, roles and replication lag: the backend monitor.
//!
//! Sluice polls every backend node on a kept connection ([`probe`]): liveness,
//! `@@read_only`, the replication channels' threads, errors and lag, and the GTID
//! positions. [`tracker`] turns those probes into the published [`Topology`] (plain
//! synchronous code: debouncing, down detection, the primary, read eligibility), and
//! [`monitor`] runs the tasks that feed it and stop on shutdown. Sessions and the router
//! read the topology; they never probe.
//!
//! The rules (debounce, what makes a replica readable, split brain) are described in
//! [`tracker`] and in docs/health.md.

pub mod monitor;
pub mod probe;
pub mod state;
pub mod tracker;

pub use monitor::{Monitor, Settings};
pub use probe::Probed;
pub use state::{Channel, Flavour, Gtid, NodeState, Observation, Role, Topology};
pub use tracker::{Change, Sample, Tracker};
