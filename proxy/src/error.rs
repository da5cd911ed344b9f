//! The proxy crate's error type.
//!
//! Every error says where the fault came from ([`Origin`]: the client, a backend, or the
//! proxy itself) and whether retrying the command elsewhere is safe. Retry safety is a
//! fact about what was sent: only an error raised before any byte of the command reached
//! a backend is retry-safe.

use std::io;

/// Where a fault came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Backend,
    Proxy,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's socket failed or closed.
    #[error("client connection: {0}")]
    ClientIo(#[source] io::Error),
    /// The client broke the protocol; `code` is the MySQL error to answer with.
    #[error("client protocol error {code}: {message}")]
    ClientProtocol { code: u16, message: String },
    /// The client failed to authenticate.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// A backend socket failed or closed. `sent` says whether any byte of the current
    /// command had been written to it.
    #[error("backend {addr}: {source}")]
    BackendIo {
        addr: String,
        sent: bool,
        #[source]
        source: io::Error,
    },
    /// A backend sent something that is not valid protocol.
    #[error("backend {addr} protocol error: {message}")]
    BackendProtocol { addr: String, message: String },
    /// A backend answered with an ERR packet where the proxy needed success
    /// (login, monitor query).
    #[error("backend {addr} error {code} ({state}): {message}")]
    BackendErr {
        addr: String,
        code: u16,
        state: String,
        message: String,
    },
    /// A timeout while talking to a backend.
    #[error("backend {addr}: timed out {what}")]
    BackendTimeout { addr: String, what: &'static str },
    /// TLS setup or handshake failure.
    #[error("TLS: {0}")]
    Tls(String),
    /// Configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// No backend can serve the request right now.
    #[error("no {0} backend available")]
    NoBackend(&'static str),
    /// The primary changed while the session had state (a write's last insert id, a
    /// transaction, user variables, locks, temporary tables) on the old one: the
    /// session cannot go on without losing it.
    #[error("the primary moved from {from} to {to} while this session had state on {from}")]
    PrimaryMoved { from: String, to: String },
    /// A replica did not reach a read's GTID position within the consistency timeout
    /// (the read ran there, its answer was dropped: only reads get here, and nothing
    /// reached the client, so sending it elsewhere is safe).
    #[error("replica {node} did not reach the read's GTID position in time ({detail})")]
    ConsistencyNotReached { node: String, detail: String },
    /// No connection of a node's pool came free in time, or too many statements wait
    /// for one already (nothing was sent: retry is safe). Answered with 1040.
    #[error("Too many connections: Sluice's pool of connections to {addr} is exhausted: {detail}")]
    PoolExhausted { addr: String, detail: String },
    /// Handing the listening sockets over to a new `sluice` process failed (the upgrade
    /// socket, the exchange with the other process, the sockets passed): a fault of the
    /// proxy's own operation, not of a client or backend, and nothing to retry blindly.
    #[error("upgrade: {0}")]
    Upgrade(String),
}

impl Error {
    pub fn origin(&self) -> Origin {
        match self {
            Error::ClientIo(_) | Error::ClientProtocol { .. } | Error::AccessDenied(_) => Origin::Client,
            Error::BackendIo { .. }
            | Error::BackendProtocol { .. }
            | Error::BackendErr { .. }
            | Error::BackendTimeout { .. } => Origin::Backend,
            Error::Tls(_) | Error::Config(_) | Error::NoBackend(_) | Error::PoolExhausted { .. } | Error::Upgrade(_) => Origin::Proxy,
            Error::PrimaryMoved { .. } | Error::ConsistencyNotReached { .. } => Origin::Backend,
        }
    }

    /// True only when nothing of the failed command reached a backend, so sending it
    /// again (to the same or another backend) cannot apply it twice.
    pub fn retry_safe(&self) -> bool {
        matches!(self, Error::BackendIo { sent: false, .. } | Error::NoBackend(_) | Error::ConsistencyNotReached { .. } | Error::PoolExhausted { .. })
    }

    pub fn client_protocol(code: u16, message: impl Into<String>) -> Self {
        Error::ClientProtocol { code, message: message.into() }
    }

    pub fn backend_protocol(addr: &str, message: impl Into<String>) -> Self {
        Error::BackendProtocol { addr: addr.to_string(), message: message.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unsent_backend_failures_are_retry_safe() {
        let unsent = Error::BackendIo { addr: "a".into(), sent: false, source: io::ErrorKind::BrokenPipe.into() };
        let sent = Error::BackendIo { addr: "a".into(), sent: true, source: io::ErrorKind::BrokenPipe.into() };
        assert!(unsent.retry_safe());
        assert!(!sent.retry_safe());
        assert!(!Error::backend_protocol("a", "x").retry_safe());
        assert_eq!(sent.origin(), Origin::Backend);
        assert_eq!(Error::client_protocol(1156, "x").origin(), Origin::Client);
    }

    #[test]
    fn an_upgrade_failure_is_the_proxys_and_not_retry_safe() {
        let e = Error::Upgrade("x".into());
        assert_eq!(e.origin(), Origin::Proxy);
        assert!(!e.retry_safe());
    }
}
