//! Backends: Sluice's own client connections to MySQL/MariaDB servers (the monitor
//! that discovers their roles lives in [`crate::health`]).

pub mod accounts;
pub mod conn;
pub mod topology;
