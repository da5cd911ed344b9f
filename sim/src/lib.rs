//! # `sim` — deterministic building blocks for Sluice's simulation tests
//!
//! This crate owns the *pure, synchronous, deterministic* core of the
//! simulated MySQL / MariaDB servers that Sluice's turmoil / madsim tests run
//! against. It performs no I/O, spawns nothing, never reads the wall clock and
//! never draws randomness except from an injected [`rand_chacha::ChaCha8Rng`].
//! Time is always passed in by the caller as `u64` milliseconds of simulated
//! time.
//!
//! The wire-protocol front-end (handshake, COM_QUERY framing, OK/EOF/ERR
//! packets) is layered on top by someone else; everything it needs is exposed
//! from [`engine`]:
//!
//! * [`engine::Server`] — one simulated server instance (MariaDB or MySQL 8
//!   flavour), with sessions, a small SQL engine, row locks, GTIDs, a binlog
//!   and a replica applier.
//! * [`engine::ExecOutcome`] — what a statement batch produced; *blocking*
//!   operations (row-lock waits, `GET_LOCK`, `MASTER_GTID_WAIT`, `SLEEP`,
//!   semi-sync acks) never block the engine, they return a `Blocked` outcome
//!   and the async layer calls [`engine::Server::resume`] later.
//! * [`engine::QueryResult`], [`engine::OkPacket`], [`engine::ResultSet`],
//!   [`engine::SqlError`], [`engine::StateChange`] and the
//!   [`engine::status`] flags needed to encode protocol packets.
//! * [`engine::gtid`] — MariaDB `domain-server-seq` positions and MySQL GTID
//!   set arithmetic.
//! * [`engine::faults`] — BUGGIFY-style fault hooks.
//!
//! Everything iterates `BTreeMap`s, so runs with the same inputs produce the
//! same outputs bit for bit.

pub mod engine;

// Async layer: the engine served over a simulated network.
pub mod cluster;
pub mod net;
pub mod wire;
pub mod history;
pub mod check;
pub mod harness;

pub use engine::{
    Blocked, ExecOutcome, Flavour, OkPacket, QueryResult, ResultSet, Server, ServerConfig,
    SessionId, SimError, SqlError, StateChange, Value, WaitReason,
};
