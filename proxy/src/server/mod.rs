//! The client-facing side: login, sessions and the connection registry.

pub mod login;
pub mod registry;

