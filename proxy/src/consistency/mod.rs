//! Read-after-write consistency: GTID positions and sets ([`gtid`]), consistency levels
//! and what a read requires ([`level`]), the nodes' known positions and the instance's
//! writes ([`positions`]). The session carries the requirements out (waits, fallbacks);
//! see `docs/consistency.md`.

pub mod gtid;
pub mod level;
pub mod positions;
