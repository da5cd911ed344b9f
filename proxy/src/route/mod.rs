//! Routing: which backend node runs each statement.
//!
//! * [`class`]: the vocabulary: what a statement is ([`class::Kind`]), which
//!   session-bound state it touches, its effects on the session, routing hints.
//! * [`classify`]: statement text → [`class::Classified`]: a cheap token scan first, a
//!   full `sqlparser` parse only when the scan cannot decide, results cached by
//!   normalised text.

pub mod class;
pub mod classify;
pub mod balance;
pub mod decide;
