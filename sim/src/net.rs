//! [`TurmoilNet`]: Sluice's [`Net`] abstraction over turmoil's simulated TCP.
//!
//! Addresses are `"host:port"` where `host` is a turmoil host name (or an IP address).
//! Turmoil only binds the unspecified address or loopback on the *current* host, so
//! [`Net::bind`] with `"db0:3306"` binds `0.0.0.0:3306` on whatever host runs the call
//! and reports `"db0:3306"` as its local address. Peer addresses come back as
//! `"hostname:port"` (turmoil's reverse DNS), falling back to the IP.
//!
//! Only compiled for ordinary builds: under `--cfg madsim`, `tokio` is madsim's and
//! Sluice's own [`sluice::net::TokioNet`] already runs on madsim's network.

#[cfg(not(madsim))]
pub use turmoil_net::{TurmoilListener, TurmoilNet};

#[cfg(not(madsim))]
mod turmoil_net {
    use std::io;
    use std::net::{IpAddr, SocketAddr};

    use sluice::net::{Listener, Net};

    /// Turmoil's simulated network. Must be used from inside a turmoil host or client.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct TurmoilNet;

    /// A listener of [`TurmoilNet`].
    pub struct TurmoilListener {
        inner: turmoil::net::TcpListener,
        /// The address as the caller named it, with the port actually bound.
        name: String,
    }

    fn split(addr: &str) -> io::Result<(&str, u16)> {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("expected host:port, got {addr:?}")))?;
        let port = port.parse::<u16>().map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port in {addr:?}")))?;
        Ok((host.trim_matches(['[', ']']), port))
    }

    fn peer_name(peer: SocketAddr) -> String {
        match turmoil::reverse_lookup(peer.ip()) {
            Some(name) => format!("{name}:{}", peer.port()),
            None => peer.to_string(),
        }
    }

    impl Net for TurmoilNet {
        type Stream = turmoil::net::TcpStream;
        type Listener = TurmoilListener;

        async fn bind(&self, addr: &str) -> io::Result<TurmoilListener> {
            let (host, port) = split(addr)?;
            let local: SocketAddr = match host.parse::<IpAddr>() {
                Ok(ip) if ip.is_loopback() || ip.is_unspecified() => SocketAddr::new(ip, port),
                // A host name (normally the current host's own): listen on all addresses.
                _ => SocketAddr::from(([0, 0, 0, 0], port)),
            };
            let inner = turmoil::net::TcpListener::bind(local).await?;
            let bound = inner.local_addr()?.port();
            Ok(TurmoilListener { inner, name: format!("{host}:{bound}") })
        }

        async fn connect(&self, addr: &str) -> io::Result<turmoil::net::TcpStream> {
            let (host, port) = split(addr)?;
            let s = turmoil::net::TcpStream::connect((host, port)).await?;
            s.set_nodelay(true)?;
            Ok(s)
        }
    }

    impl Listener for TurmoilListener {
        type Stream = turmoil::net::TcpStream;

        async fn accept(&mut self) -> io::Result<(turmoil::net::TcpStream, String)> {
            let (s, peer) = self.inner.accept().await?;
            s.set_nodelay(true)?;
            Ok((s, peer_name(peer)))
        }

        fn local_addr(&self) -> io::Result<String> {
            Ok(self.name.clone())
        }
    }
}
