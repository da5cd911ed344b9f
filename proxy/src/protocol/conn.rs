//! A packet connection: a byte stream (plain or TLS) with a bounded read buffer, read as
//! whole logical packets or as raw bytes for pass-through.
//!
//! Framing follows <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html>;
//! the TLS switch follows <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_ssl_request.html>.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::packet::{frame_packet, join_payload, write_packet, FrameError, Framed, HEADER_LEN};
use crate::net::Stream;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// First read of an idle connection's next packet (most commands fit).
const IDLE_CHUNK: usize = 1024;
/// Packets up to this size are copied out of the read buffer rather than shared.
const SMALL_PACKET: usize = 16 * 1024;

/// A stream that first replays bytes already read from it: a client may send its TLS
/// ClientHello right behind the SSLRequest, in the same segment.
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: Stream> AsyncRead for Rewind<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.prefix.is_empty() {
            let n = me.prefix.len().min(buf.remaining());
            buf.put_slice(&me.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<S: Stream> AsyncWrite for Rewind<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The byte stream under a packet connection.
pub enum Transport<S> {
    Plain(S),
    ServerTls(Box<tokio_rustls::server::TlsStream<Rewind<S>>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<S>>),
    /// Only while switching to TLS.
    Switching,
}

impl<S: Stream> AsyncRead for Transport<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Switching => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl<S: Stream> AsyncWrite for Transport<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Switching => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Switching => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Switching => Poll::Ready(Ok(())),
        }
    }
}

/// Runs one poll of an I/O operation with a waker that does nothing: most writes and
/// flushes complete at once, and those need no timer (the caller arms one and polls
/// again with the task's waker when this returns `None`).
fn try_now<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Option<T> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match f(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

/// One whole logical packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of its first frame.
    pub seq: u8,
    /// Sequence id of its last frame (differs for packets of 16 MiB and more).
    pub last_seq: u8,
    pub payload: Bytes,
}

impl Packet {
    /// The sequence id a reply to this packet must carry.
    pub fn next_seq(&self) -> u8 {
        self.last_seq.wrapping_add(1)
    }
}

/// Why reading a packet failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("packet larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("packets out of order (expected sequence id {expected}, got {got})")]
    OutOfOrder { expected: u8, got: u8 },
}

impl From<FrameError> for ReadError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { limit } => ReadError::TooLarge { limit },
            FrameError::OutOfOrder { expected, got } => ReadError::OutOfOrder { expected, got },
        }
    }
}

/// A packet connection over a [`Transport`].
pub struct PacketConn<S> {
    io: Transport<S>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Largest logical packet [`Self::read_packet`] accepts.
    pub max_packet: usize,
    /// Bytes read from and written to the socket so far (for metrics).
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// A write that makes no progress this long fails with `TimedOut` (see
    /// [`Self::set_write_stall`]); `None`: writes wait as long as the peer does.
    write_stall: Option<std::time::Duration>,
}

impl<S: Stream> PacketConn<S> {
    pub fn new(stream: S, max_packet: usize) -> Self {
        PacketConn { io: Transport::Plain(stream), rbuf: BytesMut::with_capacity(READ_CHUNK), wbuf: BytesMut::new(), max_packet, write_stall: None, bytes_read: 0, bytes_written: 0 }
    }

    /// Bounds how long a write may make no progress: a peer that stopped reading (or
    /// whose host is gone without a FIN or RST) fails the write with `TimedOut` after
    /// `stall` instead of holding it for good. A slow reader that takes some bytes
    /// within every `stall` is waited for.
    pub fn set_write_stall(&mut self, stall: Option<std::time::Duration>) {
        self.write_stall = stall;
    }

    /// `write_all` on the transport, within the write stall bound.
    async fn write_all_bounded(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(stall) = self.write_stall else { return self.io.write_all(bytes).await };
        let mut rest = bytes;
        while !rest.is_empty() {
            // Most writes complete at once: only a write that has to wait arms a timer.
            let written = match try_now(|cx| Pin::new(&mut self.io).poll_write(cx, rest)) {
                Some(r) => r,
                None => tokio::time::timeout(stall, self.io.write(rest)).await.map_err(|_| stalled(stall))?,
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `flush` (or, with `shutdown`, `shutdown`) on the transport, within the write
    /// stall bound (TLS may have bytes of its own to write).
    async fn flush_bounded(&mut self, shutdown: bool) -> io::Result<()> {
        if let Some(stall) = self.write_stall {
            // A flush with nothing left to write (plain TCP: always) needs no timer.
            let io = &mut self.io;
            if let Some(r) = try_now(|cx| if shutdown { Pin::new(io).poll_shutdown(cx) } else { Pin::new(io).poll_flush(cx) }) {
                return r;
            }
            let op = async {
                if shutdown {
                    self.io.shutdown().await
                } else {
                    self.io.flush().await
                }
            };
            return tokio::time::timeout(stall, op).await.map_err(|_| stalled(stall))?;
        }
        if shutdown {
            self.io.shutdown().await
        } else {
            self.io.flush().await
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Transport::ServerTls(_) | Transport::ClientTls(_))
    }

    /// Reads one whole logical packet (joining frames of 16 MiB and more).
    pub async fn read_packet(&mut self) -> Result<Packet, ReadError> {
        loop {
            match frame_packet(&self.rbuf, self.max_packet)? {
                Framed::Packet { seq, last_seq, wire_len, payload_len } => {
                    let payload = if wire_len != payload_len + HEADER_LEN {
                        let p = Bytes::from(join_payload(&self.rbuf[..wire_len], payload_len));
                        self.rbuf.advance(wire_len);
                        p
                    } else if payload_len <= SMALL_PACKET {
                        // Copied, so the read buffer stays unshared and is reused.
                        let p = Bytes::copy_from_slice(&self.rbuf[HEADER_LEN..wire_len]);
                        self.rbuf.advance(wire_len);
                        p
                    } else {
                        self.rbuf.split_to(wire_len).freeze().slice(HEADER_LEN..)
                    };
                    return Ok(Packet { seq, last_seq, payload });
                }
                Framed::Incomplete => {
                    if self.fill().await? == 0 {
                        return Err(ReadError::Closed);
                    }
                }
            }
        }
    }

    /// Whether an idle connection's peer is gone (end of stream or an error is waiting)
    /// or sent something unasked (a server's ERR before it closes an idle connection):
    /// either way it cannot serve a statement. Only looks at what already arrived; never
    /// waits (a pending read means "still there").
    pub fn peer_gone(&mut self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let fill = std::pin::pin!(self.fill());
        match fill.poll(&mut cx) {
            std::task::Poll::Pending => false,
            std::task::Poll::Ready(_) => true,
        }
    }

    /// Reads more bytes from the socket into the buffer; `0` means end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.rbuf.reserve(READ_CHUNK);
        let n = self.io.read_buf(&mut self.rbuf).await?;
        self.bytes_read += n as u64;
        Ok(n)
    }

    /// Frees the buffers of a connection that waits, idle, for its peer's next packet
    /// (a client between commands), and reads that packet into a small buffer first:
    /// an idle connection costs little memory. Larger packets grow the buffer as usual.
    pub async fn read_packet_idle(&mut self) -> Result<Packet, ReadError> {
        if self.rbuf.is_empty() {
            if self.rbuf.capacity() > IDLE_CHUNK {
                self.rbuf = BytesMut::new();
            }
            if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
                self.wbuf = BytesMut::new();
            }
            self.rbuf.reserve(IDLE_CHUNK);
            let n = self.io.read_buf(&mut self.rbuf).await?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            self.bytes_read += n as u64;
        }
        self.read_packet().await
    }

    /// Bytes read from the socket and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Bytes read and not yet consumed, to patch before passing them on.
    pub fn buffered_mut(&mut self) -> &mut [u8] {
        &mut self.rbuf
    }

    /// Drops `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        self.rbuf.advance(n);
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * READ_CHUNK {
            // Give back memory after a huge packet went through.
            self.rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
    }

    /// Queues one logical packet for writing; returns the next sequence id.
    pub fn queue(&mut self, seq: u8, payload: &[u8]) -> u8 {
        write_packet(&mut self.wbuf, seq, payload)
    }

    /// Writes queued packets and flushes.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            let out = self.wbuf.split();
            self.write_all_bounded(&out).await?;
            self.bytes_written += out.len() as u64;
            if self.wbuf.capacity() < out.capacity() && out.capacity() <= 4 * READ_CHUNK {
                // Reuse the allocation for the next write.
                let mut out = out;
                out.clear();
                self.wbuf = out;
            }
        }
        self.flush_bounded(false).await
    }

    /// Queues a packet and flushes.
    pub async fn send(&mut self, seq: u8, payload: &[u8]) -> io::Result<u8> {
        let next = self.queue(seq, payload);
        self.flush().await?;
        Ok(next)
    }

    /// Writes raw, already framed bytes (pass-through), after anything queued.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            let out = self.wbuf.split();
            self.write_all_bounded(&out).await?;
            self.bytes_written += out.len() as u64;
        }
        self.write_all_bounded(bytes).await?;
        self.bytes_written += bytes.len() as u64;
        Ok(())
    }

    pub async fn flush_raw(&mut self) -> io::Result<()> {
        self.flush_bounded(false).await
    }

    /// Switches to TLS as the server side (after the client's SSLRequest).
    pub async fn accept_tls(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> io::Result<()> {
        let prefix = self.rbuf.split().freeze();
        match std::mem::replace(&mut self.io, Transport::Switching) {
            Transport::Plain(s) => {
                self.io = Transport::ServerTls(Box::new(acceptor.accept(Rewind { prefix, inner: s }).await?));
                Ok(())
            }
            other => {
                self.io = other;
                Err(io::Error::other("TLS already active"))
            }
        }
    }

    /// Switches to TLS as the client side (after sending our SSLRequest).
    pub async fn connect_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        match std::mem::replace(&mut self.io, Transport::Switching) {
            Transport::Plain(s) => {
                let connector = tokio_rustls::TlsConnector::from(config);
                self.io = Transport::ClientTls(Box::new(connector.connect(server_name, s).await?));
                Ok(())
            }
            other => {
                self.io = other;
                Err(io::Error::other("TLS already active"))
            }
        }
    }

    /// Lingering close: flushes, closes the write side, then reads and
    /// discards what the peer still sends (up to `limit` bytes) until it
    /// closes too. Used after a fatal error reply while the client may still
    /// be writing a large packet: closing at once would reset the connection
    /// and the client would see a broken pipe instead of our ERR packet.
    /// Callers bound it in time.
    pub async fn drain_and_close(&mut self, limit: usize) {
        self.shutdown().await;
        let mut seen = 0usize;
        let mut buf = vec![0u8; READ_CHUNK];
        while seen < limit {
            match self.io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
        }
    }

    /// Closes the write side.
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.flush_bounded(true).await;
    }
}

/// The error of a write that made no progress for `stall`.
fn stalled(stall: std::time::Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("the peer read nothing for {} ms (a write stalled)", stall.as_millis()))
}
