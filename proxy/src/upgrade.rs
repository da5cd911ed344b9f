//! Upgrades without dropped connections: the running `sluice` hands its listening
//! sockets to a new process over a unix socket (`[proxy] upgrade_socket`).
//!
//! The exchange, lock-step, one line each way (docs/upgrade.md):
//!
//! 1. the new process (`sluice --takeover`) connects and sends `SLUICE-TAKEOVER 1`;
//! 2. the running one answers `LISTENERS <name>…` with the listening sockets attached
//!    (`SCM_RIGHTS`, one descriptor per name, in order: `client` first);
//! 3. the new process starts serving on them (both processes accept from the same
//!    queue for that moment, so no connection is refused) and sends `ACCEPTING`;
//! 4. the running one removes its unix socket (the new process binds the path next),
//!    answers `DRAINING`, stops accepting and drains its sessions.
//!
//! A new process that fails before step 3 (bad config, no backend) just closes the
//! connection: the running one keeps serving and waits for the next takeover. Only a
//! peer with this process's user id (or root) is served. Real sockets only: the module
//! is left out under `--cfg madsim`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};

use crate::error::{Error, Result};

const HELLO: &str = "SLUICE-TAKEOVER 1";
const LISTENERS: &str = "LISTENERS";
const ACCEPTING: &str = "ACCEPTING";
const DRAINING: &str = "DRAINING";

/// Most descriptors one hand-over carries.
pub const MAX_FDS: usize = 8;
/// Longest line of the exchange, in bytes.
const MAX_LINE: usize = 1024;
/// How long one exchange may take, including the new process's backend discovery
/// between receiving the sockets and `ACCEPTING`.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// The name of the client listener in the exchange.
pub const CLIENT: &str = "client";

fn fault(what: impl Into<String>) -> Error {
    Error::Upgrade(what.into())
}

/// The running process's side: serves takeovers on the upgrade socket.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// `(name, duplicate of the listening socket)`, `client` first.
    sockets: Vec<(String, OwnedFd)>,
    /// The socket file is ours to remove (not yet handed to a new process).
    owns_path: bool,
}

impl Server {
    /// Binds the upgrade socket at `path` (replacing a stale file no process listens
    /// on; refusing when a process does), readable and writable by this user only.
    pub fn bind(path: &Path, sockets: Vec<(String, OwnedFd)>) -> Result<Server> {
        if sockets.is_empty() || sockets.len() > MAX_FDS {
            return Err(fault(format!("{} listening sockets to hand over (1 to {MAX_FDS})", sockets.len())));
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => {
                return Err(fault(format!("{} exists and is not a socket; remove it or choose another [proxy] upgrade_socket", path.display())));
            }
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(fault(format!(
                        "another process serves upgrades on {}: take over from it with --takeover, or choose another [proxy] upgrade_socket",
                        path.display()
                    )))
                }
                // Left by a process that ended without removing it.
                Err(_) => std::fs::remove_file(path).map_err(|e| fault(format!("cannot remove the stale socket {}: {e}", path.display())))?,
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fault(format!("{}: {e}", path.display()))),
        }
        let listener = UnixListener::bind(path).map_err(|e| fault(format!("cannot listen on {}: {e}", path.display())))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| fault(format!("{}: {e}", path.display())))?;
        Ok(Server { listener, path: path.to_path_buf(), sockets, owns_path: true })
    }

    /// Serves takeover requests until one completes: the new process accepts on the
    /// sockets. The socket file is then removed (for the new process to bind) and the
    /// caller must stop accepting and drain. A failed exchange is logged and the next
    /// request awaited. Cancel-safe: dropping the future mid-exchange leaves the other
    /// process without `DRAINING`, and it gives up.
    pub async fn wait_for_takeover(&mut self) -> Result<()> {
        loop {
            let (mut stream, _) = self.listener.accept().await.map_err(|e| fault(format!("accept on {}: {e}", self.path.display())))?;
            match tokio::time::timeout(EXCHANGE_TIMEOUT, self.exchange(&mut stream)).await {
                Ok(Ok(())) => {
                    // The new process accepts now: the path is its to bind.
                    let _ = std::fs::remove_file(&self.path);
                    self.owns_path = false;
                    if let Err(e) = write_line(&mut stream, DRAINING).await {
                        tracing::warn!(error = %e, "the new process left before the hand-over was confirmed; it already accepts");
                    }
                    return Ok(());
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "takeover abandoned; still serving"),
                Err(_) => tracing::warn!(seconds = EXCHANGE_TIMEOUT.as_secs(), "takeover did not complete in time; still serving"),
            }
        }
    }

    async fn exchange(&self, stream: &mut UnixStream) -> Result<()> {
        let peer = stream.peer_cred().map_err(|e| fault(format!("peer credentials: {e}")))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if peer.uid() != me && peer.uid() != 0 {
            return Err(fault(format!("refused a takeover from user id {} (this process runs as {me})", peer.uid())));
        }
        expect_line(stream, HELLO).await?;
        let names: Vec<&str> = self.sockets.iter().map(|(n, _)| n.as_str()).collect();
        let fds: Vec<RawFd> = self.sockets.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        send_with_fds(stream, format!("{LISTENERS} {}\n", names.join(" ")).as_bytes(), &fds).await?;
        tracing::info!(listeners = ?names, "listening sockets handed to a new process; waiting for it to accept");
        expect_line(stream, ACCEPTING).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.owns_path {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The new process's side: the sockets received, and the connection to confirm on.
pub struct Takeover {
    stream: UnixStream,
    /// `(name, listening socket)` as the running process listed them.
    pub sockets: Vec<(String, OwnedFd)>,
}

impl Takeover {
    /// Asks the process serving `path` for its listening sockets.
    pub async fn connect(path: &Path) -> Result<Takeover> {
        let mut stream = UnixStream::connect(path).await.map_err(|e| fault(format!("no running sluice to take over from: cannot connect to {}: {e}", path.display())))?;
        let received = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
            write_line(&mut stream, HELLO).await?;
            recv_listeners(&mut stream).await
        })
        .await
        .map_err(|_| fault(format!("the process on {} did not hand its sockets over in time", path.display())))??;
        Ok(Takeover { stream, sockets: received })
    }

    /// Takes the listening socket named `name` out of the hand-over.
    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        let i = self.sockets.iter().position(|(n, _)| n == name)?;
        Some(self.sockets.remove(i).1)
    }

    /// Tells the old process this one accepts now; returns when it has released the
    /// upgrade socket and drains.
    pub async fn accepting(mut self) -> Result<()> {
        write_line(&mut self.stream, ACCEPTING).await?;
        tokio::time::timeout(EXCHANGE_TIMEOUT, expect_line(&mut self.stream, DRAINING)).await.map_err(|_| fault("the old process did not confirm the hand-over in time"))?
    }
}

/// A listening TCP socket received in a hand-over, checked to be one.
pub fn tcp_listener(fd: OwnedFd) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::from(fd);
    l.local_addr().map_err(|e| fault(format!("the socket handed over is not a TCP listener: {e}")))?;
    Ok(l)
}

async fn write_line(stream: &mut UnixStream, line: &str) -> Result<()> {
    stream.write_all(format!("{line}\n").as_bytes()).await.map_err(|e| fault(format!("upgrade socket: {e}")))
}

/// Reads one line (at most [`MAX_LINE`] bytes). The exchange is lock-step, so nothing
/// follows the line before this side answers.
async fn read_line(stream: &mut UnixStream) -> Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match stream.read(&mut b).await {
            Ok(0) => return Err(fault("the other process closed the upgrade connection")),
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) if line.len() >= MAX_LINE => return Err(fault(format!("a line longer than {MAX_LINE} bytes on the upgrade socket"))),
            Ok(_) => line.push(b[0]),
            Err(e) => return Err(fault(format!("upgrade socket: {e}"))),
        }
    }
    String::from_utf8(line).map_err(|_| fault("a line that is not UTF-8 on the upgrade socket"))
}

async fn expect_line(stream: &mut UnixStream, want: &str) -> Result<()> {
    let got = read_line(stream).await?;
    if got != want {
        return Err(fault(format!("expected {want:?} on the upgrade socket, got {got:?}")));
    }
    Ok(())
}

/// Receives the `LISTENERS` line with its descriptors.
async fn recv_listeners(stream: &mut UnixStream) -> Result<Vec<(String, OwnedFd)>> {
    let mut buf = [0u8; MAX_LINE];
    let (n, fds) = stream.async_io(Interest::READABLE, || recv_with_fds(stream.as_raw_fd(), &mut buf)).await.map_err(|e| fault(format!("receiving the sockets: {e}")))?;
    let text = std::str::from_utf8(&buf[..n]).map_err(|_| fault("the sockets' names are not UTF-8"))?;
    let Some(line) = text.strip_suffix('\n') else {
        return Err(fault(if n == 0 { "the old process closed the upgrade connection".to_string() } else { format!("an incomplete line {text:?} with the sockets") }));
    };
    let names: Vec<&str> = match line.split_once(' ') {
        Some((LISTENERS, rest)) => rest.split(' ').filter(|s| !s.is_empty()).collect(),
        _ => return Err(fault(format!("expected {LISTENERS:?} on the upgrade socket, got {line:?}"))),
    };
    if names.len() != fds.len() || names.is_empty() {
        return Err(fault(format!("{} socket names but {} descriptors received", names.len(), fds.len())));
    }
    Ok(names.into_iter().map(String::from).zip(fds).collect())
}

/// Room for the control message of [`MAX_FDS`] descriptors, aligned for `cmsghdr`.
type ControlBuf = [u64; 16];

fn control_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((fds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends `data` with `fds` attached (`SCM_RIGHTS`); the rest of `data`, if the kernel
/// took only part of it, follows as plain bytes.
async fn send_with_fds(stream: &mut UnixStream, data: &[u8], fds: &[RawFd]) -> Result<()> {
    let sent = stream.async_io(Interest::WRITABLE, || sendmsg_fds(stream.as_raw_fd(), data, fds)).await.map_err(|e| fault(format!("sending the sockets: {e}")))?;
    stream.write_all(&data[sent..]).await.map_err(|e| fault(format!("sending the sockets: {e}")))
}

/// One `sendmsg` of `data` (not empty) with `fds` (1 to [`MAX_FDS`]) attached.
pub fn sendmsg_fds(socket: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    if data.is_empty() || fds.is_empty() || fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} bytes with {} descriptors (1 to {MAX_FDS})", data.len(), fds.len())));
    }
    let mut control: ControlBuf = [0; 16];
    let space = control_space(fds.len());
    debug_assert!(space <= std::mem::size_of::<ControlBuf>());
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call,
    // and the control message is written within `control` (`space` bytes fit in it).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cmsg), std::mem::size_of_val(fds));
        let n = libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// One `recvmsg` into `buf`; returns the bytes read and the descriptors that came with
/// them (close-on-exec). More than [`MAX_FDS`] descriptors is an error (those that
/// arrived are closed).
pub fn recv_with_fds(socket: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control: ControlBuf = [0; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let mut fds = Vec::new();
    // SAFETY: as in `sendmsg_fds`; the kernel writes at most `msg_controllen` bytes of
    // control data, and each descriptor read from it is new to this process and owned
    // once (wrapped in an OwnedFd at once).
    let (n, flags) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of::<ControlBuf>() as _;
        let n = libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        (n as usize, msg.msg_flags)
    };
    if flags & libc::MSG_CTRUNC != 0 || fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("more than {MAX_FDS} descriptors sent")));
    }
    Ok((n, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn tcp_listener_fd() -> (std::net::TcpListener, String) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        (l, addr)
    }

    #[test]
    fn a_listening_socket_sent_over_a_unix_socket_accepts_connections_in_the_receiver() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (l1, addr1) = tcp_listener_fd();
        let (l2, addr2) = tcp_listener_fd();
        let sent = sendmsg_fds(a.as_raw_fd(), b"two\n", &[l1.as_raw_fd(), l2.as_raw_fd()]).unwrap();
        assert_eq!(sent, 4);
        drop((l1, l2)); // only the receiver's copies are left
        let mut buf = [0u8; 64];
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"two\n");
        assert_eq!(fds.len(), 2);
        let got: Vec<std::net::TcpListener> = fds.into_iter().map(|fd| tcp_listener(fd).unwrap()).collect();
        assert_eq!(got[0].local_addr().unwrap().to_string(), addr1);
        assert_eq!(got[1].local_addr().unwrap().to_string(), addr2);
        let _client = std::net::TcpStream::connect(&addr1).unwrap();
        let (_conn, _) = got[0].accept().unwrap();
        // SAFETY: F_GETFD on a descriptor this test owns.
        let flags = unsafe { libc::fcntl(got[1].as_fd().as_raw_fd(), libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "received descriptors must not leak into children");
    }

    #[test]
    fn more_descriptors_than_the_limit_are_refused_by_the_sender() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (l, _) = tcp_listener_fd();
        let many = vec![l.as_raw_fd(); MAX_FDS + 1];
        assert_eq!(sendmsg_fds(a.as_raw_fd(), b"x\n", &many).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(sendmsg_fds(a.as_raw_fd(), b"x\n", &[]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_socket_that_is_not_a_tcp_listener_is_refused() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = tcp_listener(OwnedFd::from(a)).unwrap_err().to_string();
        assert!(e.contains("not a TCP listener"), "{e}");
    }

    fn sock_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("upgrade.sock")
    }

    type Served = tokio::task::JoinHandle<Result<Server>>;

    /// A server in `dir` handing over a fresh client listener (at the returned address),
    /// waiting for a takeover in a task that returns it afterwards.
    fn serving(dir: &tempfile::TempDir) -> (PathBuf, String, Served) {
        let path = sock_path(dir);
        let (l, addr) = tcp_listener_fd();
        let mut server = Server::bind(&path, vec![(CLIENT.into(), l.as_fd().try_clone_to_owned().unwrap())]).unwrap();
        (path, addr, tokio::spawn(async move { server.wait_for_takeover().await.map(|()| server) }))
    }

    #[tokio::test]
    async fn takeover_receives_the_client_listener_and_the_server_releases_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (path, addr, served) = serving(&dir);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only this user may take the sockets");
        let mut t = Takeover::connect(&path).await.unwrap();
        let fd = t.take(CLIENT).expect("client listener");
        assert!(t.take(CLIENT).is_none());
        let got = tcp_listener(fd).unwrap();
        assert_eq!(got.local_addr().unwrap().to_string(), addr);
        t.accepting().await.unwrap();
        let server = served.await.unwrap().unwrap();
        assert!(!path.exists(), "the path is free for the new process");
        // The new process binds it; the old server's end must not remove it.
        let next = Server::bind(&path, vec![(CLIENT.into(), got.as_fd().try_clone_to_owned().unwrap())]).unwrap();
        drop(server);
        assert!(path.exists());
        drop(next);
        assert!(!path.exists(), "a server removes its own socket file when it ends");
    }

    #[tokio::test]
    async fn a_new_process_that_leaves_before_accepting_leaves_the_old_one_serving() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, served) = serving(&dir);
        let failed = Takeover::connect(&path).await.unwrap();
        drop(failed); // as a new process whose startup failed
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!served.is_finished(), "an abandoned takeover does not make the old process drain");
        assert!(path.exists());
        let t = Takeover::connect(&path).await.unwrap();
        t.accepting().await.unwrap();
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn takeover_without_a_running_process_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Takeover::connect(&sock_path(&dir)).await.err().expect("nothing to take over").to_string();
        assert!(e.contains("no running sluice to take over from") && e.contains("upgrade.sock"), "{e}");
    }

    #[tokio::test]
    async fn binding_refuses_a_live_upgrade_socket_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock_path(&dir);
        let (l, _) = tcp_listener_fd();
        let fd = || vec![(CLIENT.to_string(), l.as_fd().try_clone_to_owned().unwrap())];
        let live = Server::bind(&path, fd()).unwrap();
        let e = Server::bind(&path, fd()).err().unwrap().to_string();
        assert!(e.contains("another process serves upgrades"), "{e}");
        drop(live);
        // A socket file nobody listens on (its process died without cleaning up).
        let stale = std::os::unix::net::UnixListener::bind(dir.path().join("stale.sock")).unwrap();
        drop(stale);
        Server::bind(&dir.path().join("stale.sock"), fd()).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let e = Server::bind(&dir.path().join("file"), fd()).err().unwrap().to_string();
        assert!(e.contains("not a socket"), "{e}");
    }
}
