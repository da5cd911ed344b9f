//! Differential conformance testing for Sluice.
//!
//! A corpus of small case files (`testdata/conformance/**/*.test`, format in
//! [`case`] and `testdata/conformance/README.md`) is run against a *reference* endpoint
//! (MariaDB directly) and a *candidate* (Sluice in front of it). Every response is
//! recorded raw — packets with their sequence ids — and compared packet by packet after
//! the normalisation rules the case itself declares ([`normalize`]); differences are
//! described field by field ([`compare`]).
//!
//! The client side is Sluice's own protocol code: `sluice::backend::conn::connect` to log
//! in, `ResponseTracker` to find where a response ends, the framing functions to split
//! packets ([`client`]).

pub mod case;
pub mod client;
pub mod compare;
pub mod decode;
pub mod gen;
pub mod normalize;
pub mod runner;
pub mod value;

pub use case::Case;
pub use client::Endpoint;
pub use runner::{run_all, Options, Outcome};

/// The summary line printed at the end of a run: `N passed, N failed`. Cases whose
/// differences are declared with `@known-difference` count in neither (they are listed
/// on a line of their own before it).
pub fn summary_line(outcomes: &[Outcome]) -> String {
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    format!("{passed} passed, {failed} failed")
}
