//! The network abstraction every socket in Sluice goes through.
//!
//! Proxy code never names a concrete socket type: it is generic over [`Net`], which can
//! bind a listener, accept connections and connect out. [`TokioNet`] is the production
//! implementation (on `tokio`, which is `madsim-tokio` renamed, so the very same type runs
//! on madsim's simulated network under `--cfg madsim`); `sim/` provides a turmoil one.
//! Addresses are strings (`"host:port"`) so simulated hosts can have names.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a peer.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Binds listeners and opens outgoing connections.
pub trait Net: Clone + Send + Sync + 'static {
    type Stream: Stream;
    type Listener: Listener<Stream = Self::Stream>;

    /// Binds a listening socket on `addr` (`"host:port"`).
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// Opens a connection to `addr` (`"host:port"`), with Nagle's algorithm off.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// A bound listening socket.
pub trait Listener: Send + 'static {
    type Stream: Stream;

    /// Waits for the next connection; returns it with the peer's address as text.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;

    /// The address actually bound (useful after binding port 0).
    fn local_addr(&self) -> io::Result<String>;
}

/// The production network: TCP through `tokio` (or madsim's simulated TCP under `--cfg madsim`).
/// Pending connections the client listener queues before Sluice accepts them.
pub const LISTEN_BACKLOG: u32 = 8192;

#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

/// A listener of [`TokioNet`].
pub struct TokioListener(tokio::net::TcpListener);

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = TokioListener;

    #[cfg(madsim)]
    async fn bind(&self, addr: &str) -> io::Result<TokioListener> {
        Ok(TokioListener(tokio::net::TcpListener::bind(addr).await?))
    }

    #[cfg(not(madsim))]
    async fn bind(&self, addr: &str) -> io::Result<TokioListener> {
        // A long accept queue (the kernel caps it at net.core.somaxconn): a burst of
        // client connections waits there instead of having its SYNs dropped (and
        // retried seconds later).
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: no address"));
        for a in tokio::net::lookup_host(addr).await? {
            let sock = if a.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            sock.set_reuseaddr(true)?;
            match sock.bind(a).and_then(|()| sock.listen(LISTEN_BACKLOG)) {
                Ok(l) => return Ok(TokioListener(l)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn connect(&self, addr: &str) -> io::Result<tokio::net::TcpStream> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

/// Socket hand-over (`upgrade`): a listener made from a socket another process passed
/// on, and a duplicate of this one's descriptor to pass on. Real sockets only: madsim's
/// simulated network has no file descriptors.
#[cfg(not(madsim))]
impl TokioListener {
    /// Takes over a listening socket (switched to non-blocking mode here).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TokioListener> {
        listener.set_nonblocking(true)?;
        Ok(TokioListener(tokio::net::TcpListener::from_std(listener)?))
    }

    /// A duplicate of the listening socket's descriptor (same socket, same accept queue).
    pub fn try_clone_fd(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.0.as_fd().try_clone_to_owned()
    }
}

impl Listener for TokioListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(tokio::net::TcpStream, String)> {
        let (s, peer) = self.0.accept().await?;
        s.set_nodelay(true)?;
        Ok((s, peer.to_string()))
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.0.local_addr()?.to_string())
    }
}
