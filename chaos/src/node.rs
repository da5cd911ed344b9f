//! One MariaDB server of a cluster: its files, its process, and the signals
//! used to inject faults into it.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cgroup::CpuCgroup;
use crate::process::{append_file, signal, wait_until, Spawner};
use crate::sql::{client_command, log_tail, run_sql, Credentials};
use crate::template::copy_tree;
use crate::tls::TlsFiles;

/// Lines of `error.log` quoted in error messages.
pub(crate) const LOG_TAIL_LINES: usize = 30;

/// InnoDB sizing shared by the bootstrap and the server, so the server never
/// has to resize the redo log on its first start.
pub(crate) const INNODB_SIZING: [&str; 2] = [
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=48M",
];

/// How long a stopped node may take to shut down before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What a node's process is doing, as far as the launcher knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// The server process is alive and not paused.
    Running,
    /// The server process is alive but stopped with SIGSTOP.
    Paused,
    /// No server process: never started, stopped, killed, or crashed.
    Stopped,
}

/// How a node's server is configured; the parts that depend on the cluster.
pub(crate) struct ServerConfig<'a> {
    pub read_only: bool,
    pub semi_sync: bool,
    pub tls: Option<&'a TlsFiles>,
    pub extra: &'a [String],
    /// The node's CPU-quota group, joined before `exec`.
    pub cgroup: Option<&'a CpuCgroup>,
}

/// Why a server did not come up.
pub(crate) enum LaunchError {
    /// Its TCP port was taken by someone else; another port may work.
    AddressInUse,
    /// Anything else.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for LaunchError {
    fn from(err: anyhow::Error) -> LaunchError {
        LaunchError::Failed(err)
    }
}

#[derive(Default)]
struct Process {
    child: Option<Child>,
    paused: bool,
}

/// One MariaDB server of a [`Cluster`](crate::Cluster).
///
/// A node's directory holds `data/` (the data directory, with the binary and
/// relay logs), `tmp/` (the server's `tmpdir`), `mysql.sock`, `mysqld.pid`,
/// and `error.log` (server log, also receiving the server's stderr).
pub struct Node {
    index: usize,
    port: u16,
    dir: PathBuf,
    datadir: PathBuf,
    tmpdir: PathBuf,
    socket: PathBuf,
    pid_file: PathBuf,
    error_log: PathBuf,
    primary: AtomicBool,
    process: Mutex<Process>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("index", &self.index)
            .field("addr", &self.addr())
            .field("primary", &self.is_primary())
            .field("state", &self.state())
            .field("dir", &self.dir)
            .finish()
    }
}

impl Node {
    pub(crate) fn new(index: usize, dir: PathBuf, port: u16, primary: bool) -> Node {
        Node {
            index,
            port,
            datadir: dir.join("data"),
            tmpdir: dir.join("tmp"),
            socket: dir.join("mysql.sock"),
            pid_file: dir.join("mysqld.pid"),
            error_log: dir.join("error.log"),
            dir,
            primary: AtomicBool::new(primary),
            process: Mutex::default(),
        }
    }

    /// Position of the node in the cluster (node 0 starts as the primary).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The node's `server_id`: its index plus one.
    pub fn server_id(&self) -> u32 {
        self.index as u32 + 1
    }

    /// TCP port on 127.0.0.1. It stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The node's directory (parent of the data directory and logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The Unix socket the server listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The server's error log.
    pub fn error_log(&self) -> &Path {
        &self.error_log
    }

    /// Whether the launcher considers this node the primary (changes with
    /// [`Cluster::promote`](crate::Cluster::promote)).
    pub fn is_primary(&self) -> bool {
        self.primary.load(Ordering::SeqCst)
    }

    /// Whether the server process is running, paused or gone. A server that
    /// exited on its own is reaped here and reported as
    /// [`NodeState::Stopped`].
    pub fn state(&self) -> NodeState {
        let mut process = self.process();
        self.reap(&mut process);
        match (&process.child, process.paused) {
            (None, _) => NodeState::Stopped,
            (Some(_), true) => NodeState::Paused,
            (Some(_), false) => NodeState::Running,
        }
    }

    /// Process id of the server, if it is running or paused.
    pub fn pid(&self) -> Option<u32> {
        let mut process = self.process();
        self.reap(&mut process);
        process.child.as_ref().map(Child::id)
    }

    pub(crate) fn set_primary(&self, primary: bool) {
        self.primary.store(primary, Ordering::SeqCst);
    }

    pub(crate) fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    fn process(&self) -> MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reap(&self, process: &mut Process) {
        if let Some(child) = process.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                tracing::warn!(node = self.index, %status, "mariadbd exited on its own");
                *process = Process::default();
            }
        }
    }

    /// Creates the node directory with a copy of a freshly bootstrapped
    /// data directory (see [`crate::template`]). Nothing in a MariaDB data
    /// directory identifies the server (the `server_id` is an option), so
    /// the copies are independent servers.
    pub(crate) fn copy_datadir_from(&self, template: &Path) -> Result<()> {
        fs::create_dir_all(&self.tmpdir)
            .with_context(|| format!("creating {}", self.tmpdir.display()))?;
        copy_tree(template, &self.datadir)
            .with_context(|| format!("node {}: copying {}", self.index, template.display()))
    }

    /// A private `tmpdir`: a starting server deletes every `#sql*` file in
    /// its `tmpdir`, which in a shared `/tmp` would include the temporary
    /// tables of every other server running on the machine.
    fn tmpdir_option(&self) -> String {
        format!("--tmpdir={}", self.tmpdir.display())
    }

    /// The `mariadbd` command line for this node.
    fn server_command(&self, config: &ServerConfig<'_>) -> Command {
        let mut cmd = Command::new(server_binary());
        // --no-defaults must come first.
        cmd.arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", self.datadir.display()))
            .arg(self.tmpdir_option())
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--pid-file={}", self.pid_file.display()))
            .arg(format!("--log-error={}", self.error_log.display()))
            .arg(format!("--server-id={}", self.server_id()))
            .args([
                "--log-bin=mysql-bin",
                "--relay-log=relay-bin",
                "--binlog-format=ROW",
                "--gtid-strict-mode=1",
                "--log-slave-updates=1",
                "--skip-name-resolve",
                // Durability is traded for speed: a killed server loses
                // nothing, only an OS crash could.
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                "--innodb-buffer-pool-dump-at-shutdown=0",
                "--innodb-buffer-pool-load-at-startup=0",
                "--max-connections=500",
                "--max-allowed-packet=64M",
                // Replicas notice a silent (e.g. paused) primary in seconds.
                "--slave-net-timeout=10",
            ])
            .args(INNODB_SIZING)
            .arg(format!("--read-only={}", u8::from(config.read_only)));
        if let Some(tls) = config.tls {
            cmd.arg(format!("--ssl-ca={}", tls.ca_cert.display()))
                .arg(format!("--ssl-cert={}", tls.server_cert.display()))
                .arg(format!("--ssl-key={}", tls.server_key.display()));
        }
        if config.semi_sync {
            cmd.arg("--rpl-semi-sync-slave-enabled=1");
        }
        cmd.args(config.extra);
        cmd
    }

    /// Starts the server and waits until it accepts connections as `root`.
    pub(crate) fn launch(
        &self,
        spawner: &Spawner,
        config: &ServerConfig<'_>,
        root: &Credentials,
        timeout: Duration,
    ) -> Result<(), LaunchError> {
        let mut process = self.process();
        self.reap(&mut process);
        if process.child.is_some() {
            return Err(anyhow!("node {} is already running", self.index).into());
        }
        // Only the part of the log written by this start tells why it failed.
        let log_start = fs::metadata(&self.error_log).map_or(0, |m| m.len());
        let mut cmd = self.server_command(config);
        let stderr = append_file(&self.error_log)
            .with_context(|| format!("opening {}", self.error_log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(group) = config.cgroup {
            group.join_on_exec(&mut cmd);
        }
        tracing::debug!(node = self.index, port = self.port, "starting mariadbd");
        let mut child = spawner.spawn(cmd).with_context(|| match config.cgroup {
            Some(group) => format!(
                "node {}: spawning mariadbd in cgroup {}",
                self.index,
                group.path().display()
            ),
            None => format!("node {}: spawning mariadbd", self.index),
        })?;
        match self.wait_ready(&mut child, log_start, root, Instant::now() + timeout) {
            Ok(()) => {
                *process = Process {
                    child: Some(child),
                    paused: false,
                };
                Ok(())
            }
            Err(err) => {
                drop(child.kill());
                drop(child.wait());
                Err(err)
            }
        }
    }

    fn wait_ready(
        &self,
        child: &mut Child,
        log_start: u64,
        root: &Credentials,
        deadline: Instant,
    ) -> Result<(), LaunchError> {
        loop {
            if let Some(status) = child.try_wait().context("waiting for mariadbd")? {
                let log = new_log_text(&self.error_log, log_start);
                if log.contains("Address already in use") {
                    return Err(LaunchError::AddressInUse);
                }
                return Err(anyhow!(
                    "node {}: mariadbd exited during startup ({status}); end of {}:\n{}",
                    self.index,
                    self.error_log.display(),
                    log_tail(&self.error_log, LOG_TAIL_LINES)
                )
                .into());
            }
            // A greeting on the port may come from a server that grabbed the
            // port first; ours then fails to bind and exits. Only a server
            // reporting our socket path is ours.
            if greets(self.port) && self.reports_own_socket(root) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(anyhow!(
                    "node {}: mariadbd did not accept connections on {} in time; end of {}:\n{}",
                    self.index,
                    self.addr(),
                    self.error_log.display(),
                    log_tail(&self.error_log, LOG_TAIL_LINES)
                )
                .into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn reports_own_socket(&self, root: &Credentials) -> bool {
        run_sql(
            self.index,
            client_command(self.port, root),
            "SELECT @@socket",
            false,
            Duration::from_secs(10),
        )
        .is_ok_and(|socket| Path::new(&socket) == self.socket)
    }

    /// Shuts the server down with SIGTERM (resuming it first if paused) and
    /// waits for it to exit; it is killed if that takes over a minute.
    pub(crate) fn stop(&self) -> Result<()> {
        let mut process = self.process();
        self.reap(&mut process);
        let paused = process.paused;
        let Some(child) = process.child.as_mut() else {
            bail!("node {} is not running", self.index);
        };
        signal(child.id(), libc::SIGTERM)
            .with_context(|| format!("node {}: sending SIGTERM", self.index))?;
        if paused {
            signal(child.id(), libc::SIGCONT)
                .with_context(|| format!("node {}: sending SIGCONT", self.index))?;
        }
        if wait_until(child, Instant::now() + STOP_TIMEOUT)?.is_none() {
            tracing::warn!(
                node = self.index,
                "mariadbd ignored SIGTERM for {STOP_TIMEOUT:?}; killing it"
            );
            drop(child.kill());
            child.wait()?;
        }
        *process = Process::default();
        Ok(())
    }

    /// Kills the server with SIGKILL (also when paused) and reaps it.
    pub(crate) fn kill(&self) -> Result<()> {
        let mut process = self.process();
        self.reap(&mut process);
        let Some(child) = process.child.as_mut() else {
            bail!("node {} is not running", self.index);
        };
        child
            .kill()
            .with_context(|| format!("node {}: sending SIGKILL", self.index))?;
        child.wait()?;
        *process = Process::default();
        Ok(())
    }

    /// Freezes the server with SIGSTOP and waits until the kernel reports it
    /// stopped.
    pub(crate) fn pause(&self) -> Result<()> {
        let mut process = self.process();
        self.reap(&mut process);
        let pid = match (&process.child, process.paused) {
            (Some(child), false) => child.id(),
            (Some(_), true) => bail!("node {} is already paused", self.index),
            (None, _) => bail!("node {} is not running", self.index),
        };
        signal(pid, libc::SIGSTOP)
            .with_context(|| format!("node {}: sending SIGSTOP", self.index))?;
        process.paused = true;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_stopped(pid) {
            if Instant::now() >= deadline {
                bail!(
                    "node {}: process {pid} did not stop after SIGSTOP",
                    self.index
                );
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Lets a paused server continue with SIGCONT.
    pub(crate) fn resume(&self) -> Result<()> {
        let mut process = self.process();
        self.reap(&mut process);
        let pid = match (&process.child, process.paused) {
            (Some(child), true) => child.id(),
            (Some(_), false) => bail!("node {} is not paused", self.index),
            (None, _) => bail!("node {} is not running", self.index),
        };
        signal(pid, libc::SIGCONT)
            .with_context(|| format!("node {}: sending SIGCONT", self.index))?;
        process.paused = false;
        Ok(())
    }

    /// SIGKILLs the server, if any, ignoring errors (for teardown).
    pub(crate) fn kill_quietly(&self) {
        let mut process = self.process();
        if let Some(child) = process.child.as_mut() {
            drop(child.kill());
            drop(child.wait());
        }
        *process = Process::default();
    }
}

/// Whether something on `127.0.0.1:port` sends a MySQL protocol-10 greeting.
fn greets(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
    {
        return false;
    }
    // 3-byte length, sequence id, then the protocol version.
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && head[4] == 10
}

/// Whether `/proc/PID/stat` shows the process as stopped (`T`).
fn is_stopped(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

/// What was appended to `path` after byte `from`.
fn new_log_text(path: &Path, from: u64) -> String {
    fs::read(path)
        .map(|bytes| {
            String::from_utf8_lossy(bytes.get(from as usize..).unwrap_or_default()).into_owned()
        })
        .unwrap_or_default()
}

/// Finds `mariadbd` on `PATH`, falling back to the usual `sbin` directories
/// (which non-login shells often leave out of `PATH`).
pub(crate) fn server_binary() -> PathBuf {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("mariadbd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("mariadbd"))
}

/// Picks a free TCP port on 127.0.0.1 by binding port 0.
///
/// Ports handed out are remembered for the life of the process, so clusters
/// started concurrently by one test binary never get the same port even if
/// the kernel offers it again after the probe socket is closed. Another
/// process may still take the port before the server binds it; the launcher
/// then retries with a new port.
pub(crate) fn pick_port() -> Result<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("binding 127.0.0.1:0 to find a free port")?
            .port();
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: BTreeSet<u16> = (0..50).map(|_| pick_port().unwrap()).collect();
        assert_eq!(ports.len(), 50);
        assert!(!ports.contains(&3306));
    }

    #[test]
    fn a_taken_port_is_reported_as_address_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let node = Node::new(0, dir.path().join("node0"), port, true);
        let template = crate::template::datadir(Duration::from_secs(60)).unwrap();
        node.copy_datadir_from(&template).unwrap();
        let spawner = Spawner::new().unwrap();
        let config = ServerConfig {
            read_only: false,
            semi_sync: false,
            tls: None,
            extra: &[],
            cgroup: None,
        };
        let root = Credentials::new("root", "");
        let result = node.launch(&spawner, &config, &root, Duration::from_secs(60));
        assert!(matches!(result, Err(LaunchError::AddressInUse)));
        assert_eq!(node.state(), NodeState::Stopped);
    }
}
