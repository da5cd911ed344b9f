//! A TCP fault relay: put one between Sluice and each node (Sluice is configured with
//! the relay's address) and change the link's behaviour while traffic flows.
//!
//! Faults ([`LinkFault`]), applied to both directions of every connection through the
//! relay, existing and new:
//!
//! * `Latency(d)`: each chunk waits `d` before it is forwarded;
//! * `Throttle(bytes_per_second)`: forwarding is paced to that rate;
//! * `BlackHole`: nothing is forwarded and new connections are accepted but never
//!   answered; the relay stops reading, so senders block on TCP backpressure as on a
//!   real black hole, and what they sent arrives after the link heals (if they have not
//!   given up);
//! * `Refuse`: new connections are reset at once; existing ones flow.
//!
//! [`Relay::reset_all`] resets every open connection (RST, as a firewall or a crashed
//! middlebox would); [`Relay::drop_all`] closes them with FIN.
//!
//! Threads, blocking sockets and a 20 ms poll: this is test tooling, never in Sluice.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// What a link does to the traffic through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkFault {
    #[default]
    Healthy,
    Latency(Duration),
    Throttle(u64),
    BlackHole,
    Refuse,
}

struct State {
    fault: Mutex<LinkFault>,
    stop: AtomicBool,
    conns: Mutex<Vec<(u64, TcpStream, TcpStream)>>,
    next_id: AtomicU64,
    forwarded: AtomicU64,
}

impl State {
    fn fault(&self) -> LinkFault {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running relay to one target.
pub struct Relay {
    addr: SocketAddr,
    target: SocketAddr,
    state: Arc<State>,
}

const POLL: Duration = Duration::from_millis(20);

impl Relay {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            fault: Mutex::new(LinkFault::Healthy),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let st = state.clone();
        thread::Builder::new().name(format!("relay-{addr}")).spawn(move || accept_loop(listener, target, st))?;
        Ok(Relay { addr, target, state })
    }

    /// `host:port` to give Sluice instead of the node's.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn set(&self, fault: LinkFault) {
        *self.state.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
        tracing::info!(relay = %self.addr, target = %self.target, ?fault, "link fault");
    }

    pub fn fault(&self) -> LinkFault {
        self.state.fault()
    }

    /// Bytes forwarded so far (both directions).
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::Relaxed)
    }

    /// Open connections through the relay.
    pub fn connections(&self) -> usize {
        self.state.conns.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Resets every open connection (RST both ways).
    pub fn reset_all(&self) {
        let conns = std::mem::take(&mut *self.state.conns.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, a, b) in conns {
            rst(&a);
            rst(&b);
        }
    }

    /// Closes every open connection (FIN both ways).
    pub fn drop_all(&self) {
        let conns = std::mem::take(&mut *self.state.conns.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, a, b) in conns {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        self.drop_all();
    }
}

/// Closes `s` with a reset: SO_LINGER on with a zero timeout, then shutdown.
fn rst(s: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket descriptor and a properly sized `linger` value.
    unsafe {
        libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, (&linger as *const libc::linger).cast(), std::mem::size_of::<libc::linger>() as libc::socklen_t);
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<State>) {
    while !state.stop.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(POLL);
                continue;
            }
            Err(_) => {
                thread::sleep(POLL);
                continue;
            }
        };
        let _ = client.set_nonblocking(false);
        match state.fault() {
            LinkFault::Refuse => {
                rst(&client);
                continue;
            }
            LinkFault::BlackHole => {
                // Accepted, never answered: hold it until the link heals.
                let st = state.clone();
                let _ = thread::Builder::new().name("relay-held".into()).spawn(move || {
                    while st.fault() == LinkFault::BlackHole && !st.stop.load(Ordering::Relaxed) {
                        thread::sleep(POLL);
                    }
                    connect_and_pump(client, target, st);
                });
                continue;
            }
            _ => {}
        }
        let st = state.clone();
        let _ = thread::Builder::new().name("relay-conn".into()).spawn(move || connect_and_pump(client, target, st));
    }
}

fn connect_and_pump(client: TcpStream, target: SocketAddr, state: Arc<State>) {
    let server = match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(_) => {
            rst(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone()) else { return };
    state.conns.lock().unwrap_or_else(PoisonError::into_inner).push((id, c3, s3));
    let st = state.clone();
    let up = thread::Builder::new().name("relay-up".into()).spawn(move || pump(client, server, st));
    pump(s2, c2, state.clone());
    if let Ok(h) = up {
        let _ = h.join();
    }
    state.conns.lock().unwrap_or_else(PoisonError::into_inner).retain(|(i, _, _)| *i != id);
}

/// Copies `from` to `to` under the link's fault until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, state: Arc<State>) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 16 << 10];
    let mut window_start = Instant::now();
    let mut window_bytes = 0u64;
    loop {
        if state.stop.load(Ordering::Relaxed) {
            break;
        }
        if state.fault() == LinkFault::BlackHole {
            thread::sleep(POLL);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
            Err(_) => break,
        };
        // The fault may have changed while the read waited.
        loop {
            match state.fault() {
                LinkFault::BlackHole if !state.stop.load(Ordering::Relaxed) => thread::sleep(POLL),
                LinkFault::Latency(d) => {
                    thread::sleep(d);
                    break;
                }
                LinkFault::Throttle(rate) if rate > 0 => {
                    window_bytes += n as u64;
                    let due = Duration::from_secs_f64(window_bytes as f64 / rate as f64);
                    let spent = window_start.elapsed();
                    if due > spent {
                        thread::sleep(due - spent);
                    }
                    if window_start.elapsed() > Duration::from_secs(1) {
                        window_start = Instant::now();
                        window_bytes = 0;
                    }
                    break;
                }
                _ => break,
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        state.forwarded.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port.
    fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let mut w = s;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        addr
    }

    fn round_trip(c: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        c.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn a_healthy_link_forwards_and_latency_delays_each_way() {
        let relay = Relay::start(echo()).unwrap();
        let mut c = TcpStream::connect(relay.addr()).unwrap();
        assert_eq!(round_trip(&mut c, b"ping").unwrap(), b"ping");
        relay.set(LinkFault::Latency(Duration::from_millis(100)));
        let t = Instant::now();
        assert_eq!(round_trip(&mut c, b"slow").unwrap(), b"slow");
        assert!(t.elapsed() >= Duration::from_millis(200), "{:?}", t.elapsed());
    }

    #[test]
    fn a_black_hole_holds_traffic_until_it_heals_and_reset_ends_connections() {
        let relay = Relay::start(echo()).unwrap();
        let mut c = TcpStream::connect(relay.addr()).unwrap();
        assert_eq!(round_trip(&mut c, b"a").unwrap(), b"a");
        relay.set(LinkFault::BlackHole);
        c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        c.write_all(b"held").unwrap();
        let mut got = [0u8; 4];
        assert!(c.read_exact(&mut got).is_err(), "nothing comes back through a black hole");
        relay.set(LinkFault::Healthy);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"held", "held data arrives after the heal");
        relay.reset_all();
        let mut one = [0u8; 1];
        let r = c.read(&mut one);
        assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
        // Refused: new connections are reset.
        relay.set(LinkFault::Refuse);
        let mut d = TcpStream::connect(relay.addr()).unwrap();
        d.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let r = round_trip(&mut d, b"x");
        assert!(r.is_err(), "{r:?}");
    }
}
