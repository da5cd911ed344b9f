//! Sluice: a MySQL-protocol proxy.
//!
//! Layers, bottom up: bytes and packets ([`protocol`]), the command/response state
//! machines ([`protocol::response`]), sessions ([`server`]), and backends
//! ([`backend`]). All I/O goes through the [`net::Net`] abstraction and `tokio` (which is
//! `madsim-tokio`), so the same code runs for real and in deterministic simulation.

pub mod admin;
pub mod backend;
pub mod config;
pub mod consistency;
pub mod error;
pub mod failover;
pub mod faults;
pub mod health;
pub mod metrics;
pub mod net;
pub mod pool;
pub mod protocol;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod rules;
pub mod server;
pub mod session;
pub mod signal;
pub mod sync;
pub mod tls;
#[cfg(not(madsim))]
pub mod upgrade;

pub use config::Config;
pub use error::{Error, Result};
pub use proxy::{start, start_on_listener, start_with_dispatch, start_with_faults, Dispatch, ProxyHandle, ProxyStats, Session, SpawnHere};
