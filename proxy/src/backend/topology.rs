//! Role discovery moved to [`crate::health`]; these re-exports keep the old paths working.

pub use crate::health::{Monitor, NodeState, Observation, Role, Topology};
