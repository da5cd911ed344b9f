//! Backends: Sluice's own client connections to MySQL/MariaDB servers and the monitor
//! that discovers their roles.

pub mod accounts;
pub mod conn;
pub mod topology;
