//! [`Cluster`]: starting, inspecting, disturbing and tearing down a
//! primary/replica MariaDB cluster.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::cgroup::{CpuCgroup, CpuCgroups};
use crate::node::{pick_port, LaunchError, Node, NodeState, ServerConfig, LOG_TAIL_LINES};
use crate::process::{signal, Spawner};
use crate::spec::ClusterSpec;
use crate::sql::{client_command, log_tail, quote, rows_by_column, run_sql, Credentials, SqlError};
use crate::template;
use crate::tls::TlsFiles;

/// The replication account created on the primary.
pub const REPL_USER: &str = "repl";
/// Its password.
pub const REPL_PASSWORD: &str = "repl";

/// Privileges of the application account on `*.*`. Deliberately without
/// `SUPER`, `READ_ONLY ADMIN` or `ALL PRIVILEGES`, so `read_only=1` on a
/// replica refuses its writes (error 1290). `BINLOG MONITOR` (which
/// `REPLICATION CLIENT` is an alias of) allows `SHOW MASTER STATUS` and
/// `SLAVE MONITOR` allows `SHOW [ALL] SLAVE[S] STATUS`.
const APP_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, \
     CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, \
     ALTER ROUTINE, EVENT, TRIGGER, PROCESS, RELOAD, FILE, REFERENCES, BINLOG MONITOR, SLAVE MONITOR";

/// Databases created on the primary (and so on every replica).
const DATABASES: [&str; 2] = ["test", "sbtest"];

/// Default deadline of [`Cluster::root_sql`] and [`Cluster::app_sql`].
pub const DEFAULT_SQL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a node is started on a new port when its port was taken.
const PORT_ATTEMPTS: usize = 8;

/// Longest Unix socket path (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A running primary/replica MariaDB cluster on 127.0.0.1.
///
/// Node 0 starts as the primary; every other node replicates from it with
/// GTIDs (`MASTER_USE_GTID=slave_pos`) and runs with `read_only=1`. All
/// methods take `&self`, so a cluster can be shared (for example in an
/// `Arc`) between a workload and a fault injector; node operations are
/// serialized per node, topology changes cluster-wide.
///
/// Dropping the cluster SIGKILLs its servers and, unless
/// [`ClusterSpec::base_dir`] was given, removes its directory. Servers also
/// die if the process ends without dropping it, and the directory is then
/// removed by a later `Cluster::start` (see the
/// [crate documentation](crate#teardown)).
pub struct Cluster {
    nodes: Vec<Node>,
    spec: ClusterSpec,
    tls: Option<TlsFiles>,
    root: Credentials,
    app: Credentials,
    /// Index of the current primary; also serializes topology changes.
    primary: Mutex<usize>,
    /// Replicas applying transactions late on purpose: index → seconds.
    delays: Mutex<BTreeMap<usize, u32>>,
    spawner: Spawner,
    /// One group per node when the spec asks for a CPU quota; removed on
    /// drop, after [`Drop for Cluster`](Cluster) has killed the servers.
    cgroups: Option<CpuCgroups>,
    dir: PathBuf,
    /// Declared last so the directory is removed after everything else.
    _temp_dir: Option<TempDir>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl Cluster {
    /// Starts a cluster as described by `spec` and returns once every replica
    /// has replayed the primary's setup (accounts and the `test` and `sbtest`
    /// databases).
    ///
    /// Each node gets a copy of a shared bootstrapped data directory (made
    /// while the certificates are, the first time; see the crate
    /// documentation) and the servers start in parallel. A server whose port
    /// was taken in the meantime is started again on another port.
    pub fn start(spec: ClusterSpec) -> Result<Cluster> {
        spec.validate()?;
        let started = Instant::now();
        // First, so a machine without CPU quotas fails before any work.
        let cgroups = spec
            .cpu_quota
            .map(|cpus| CpuCgroups::create(spec.replicas + 1, cpus))
            .transpose()
            .context("setting up CPU quotas")?;
        let (temp_dir, dir) = cluster_dir(&spec)?;
        let nodes = (0..=spec.replicas)
            .map(|i| {
                Ok(Node::new(
                    i,
                    dir.join(format!("node{i}")),
                    pick_port()?,
                    i == 0,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(node) = nodes
            .iter()
            .find(|n| n.socket().as_os_str().len() > MAX_SOCKET_PATH)
        {
            bail!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter base directory",
                node.socket().display()
            );
        }

        let tls = thread::scope(|scope| {
            let tls = spec
                .tls
                .then(|| scope.spawn(|| TlsFiles::generate(&dir.join("tls"))));
            let template = template::datadir(spec.startup_timeout)?;
            for node in &nodes {
                node.copy_datadir_from(&template)?;
            }
            tls.map(|t| {
                t.join()
                    .map_err(|_| anyhow!("certificate thread panicked"))?
            })
            .transpose()
        })?;
        tracing::debug!(elapsed = ?started.elapsed(), "data directories ready");

        let mut cluster = Cluster {
            nodes,
            app: Credentials::new(&spec.app_user, &spec.app_password),
            root: Credentials::new("root", ""),
            spec,
            tls,
            primary: Mutex::new(0),
            delays: Mutex::new(BTreeMap::new()),
            spawner: Spawner::new().context("starting the spawner thread")?,
            cgroups,
            dir,
            _temp_dir: temp_dir,
        };
        // From here on, dropping `cluster` cleans up after a failure.
        cluster.launch_all()?;
        tracing::debug!(elapsed = ?started.elapsed(), "servers accept connections");
        cluster.configure()?;
        tracing::info!(elapsed = ?started.elapsed(), dir = %cluster.dir.display(), "cluster ready");
        Ok(cluster)
    }

    /// Starts every server concurrently, moving to a fresh port when one was
    /// taken before the server could bind it.
    fn launch_all(&mut self) -> Result<()> {
        let Cluster {
            nodes,
            spawner,
            spec,
            tls,
            root,
            cgroups,
            ..
        } = self;
        let (spawner, spec, tls, root): (&Spawner, &ClusterSpec, Option<&TlsFiles>, &Credentials) =
            (spawner, spec, tls.as_ref(), root);
        let cgroups = cgroups.as_ref();
        thread::scope(|scope| {
            let launches: Vec<_> = nodes
                .iter_mut()
                .map(|node| {
                    let config = ServerConfig {
                        read_only: node.index() != 0,
                        semi_sync: spec.semi_sync,
                        tls,
                        extra: &spec.server_options,
                        cgroup: cgroups.and_then(|c| c.node(node.index())),
                    };
                    let timeout = spec.startup_timeout;
                    scope.spawn(move || {
                        for _ in 0..PORT_ATTEMPTS {
                            match node.launch(spawner, &config, root, timeout) {
                                Ok(()) => return Ok(()),
                                Err(LaunchError::Failed(err)) => return Err(err),
                                Err(LaunchError::AddressInUse) => {
                                    let port = pick_port()?;
                                    tracing::info!(
                                        node = node.index(),
                                        old = node.port(),
                                        new = port,
                                        "port taken; retrying"
                                    );
                                    node.set_port(port);
                                }
                            }
                        }
                        bail!("node {}: every port tried was taken", node.index())
                    })
                })
                .collect();
            launches.into_iter().try_for_each(|launch| {
                launch
                    .join()
                    .map_err(|_| anyhow!("server start thread panicked"))?
            })
        })
    }

    /// Creates the accounts and databases on the primary, attaches the
    /// replicas and waits for them to catch up.
    fn configure(&self) -> Result<()> {
        let app = quote(&self.app.user);
        let password = quote(&self.app.password);
        let mut setup = format!(
            "CREATE USER {repl}@'%' IDENTIFIED BY {repl_password};\n\
             GRANT REPLICATION SLAVE ON *.* TO {repl}@'%';\n",
            repl = quote(REPL_USER),
            repl_password = quote(REPL_PASSWORD),
        );
        for host in ["%", "localhost"] {
            let account = format!("{app}@{}", quote(host));
            setup += &format!(
                "CREATE USER {account} IDENTIFIED BY {password};\nGRANT {APP_PRIVILEGES} ON *.* TO {account};\n"
            );
        }
        for db in DATABASES {
            setup += &format!("CREATE DATABASE `{db}`;\n");
        }
        self.root_sql(0, &setup)?;
        let primary_port = self.nodes[0].port();
        for replica in &self.nodes[1..] {
            self.root_sql(replica.index(), &change_master_sql(primary_port))?;
        }
        self.wait_replicas_caught_up(self.spec.startup_timeout)?;
        for (&replica, &seconds) in &self.spec.replica_delays {
            self.set_replica_delay(replica, seconds)?;
        }
        if self.spec.semi_sync {
            self.enable_semi_sync_primary(0)?;
            // Replicas register as semi-synchronous when their I/O thread
            // connects; reconnect them now that the primary takes part.
            for replica in &self.nodes[1..] {
                self.root_sql(
                    replica.index(),
                    "STOP SLAVE IO_THREAD; START SLAVE IO_THREAD",
                )?;
            }
            self.wait_semi_sync_clients(0, self.spec.replicas, self.spec.startup_timeout)?;
        }
        Ok(())
    }

    fn enable_semi_sync_primary(&self, node: usize) -> Result<()> {
        self.root_sql(node, "SET GLOBAL rpl_semi_sync_master_enabled=1")?;
        Ok(())
    }

    fn wait_semi_sync_clients(&self, node: usize, clients: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.root_sql(
                node,
                "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'",
            )?;
            let connected = status
                .split('\t')
                .nth(1)
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            if connected >= clients {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("node {node}: only {connected} of {clients} semi-synchronous replicas connected in time");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The spec the cluster was started with.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Directory holding the nodes (`node0/`, `node1/`, …) and `tls/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All nodes, indexed by [`Node::index`].
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `index`. Panics if there is no such node.
    pub fn node(&self, index: usize) -> &Node {
        self.nodes.get(index).unwrap_or_else(|| {
            panic!(
                "node {index} does not exist (the cluster has {} nodes)",
                self.nodes.len()
            )
        })
    }

    /// Index of the current primary.
    pub fn primary_index(&self) -> usize {
        *self.topology()
    }

    /// The current primary.
    pub fn primary(&self) -> &Node {
        self.node(self.primary_index())
    }

    /// Every node but the current primary, by index.
    pub fn replicas(&self) -> Vec<&Node> {
        let primary = self.primary_index();
        self.nodes.iter().filter(|n| n.index() != primary).collect()
    }

    /// The application account (from [`ClusterSpec::app_user`] and
    /// [`ClusterSpec::app_password`]), defined as `'USER'@'%'` and
    /// `'USER'@'localhost'` on every node.
    pub fn app_user(&self) -> &Credentials {
        &self.app
    }

    /// The administrator account: `root` with an empty password, reachable
    /// over TCP from 127.0.0.1 (`'root'@'127.0.0.1'`, all privileges).
    pub fn root_user(&self) -> &Credentials {
        &self.root
    }

    /// CA certificate (PEM) that signed the servers' certificate, when the
    /// cluster was started with [`ClusterSpec::tls`].
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_cert.as_path())
    }

    /// All certificate files, when the cluster was started with TLS.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The CPU-quota cgroup of node `index`, when the cluster was started
    /// with [`ClusterSpec::cpu_quota`]: its quota can be read and changed
    /// while the node runs ([`CpuCgroup::set_quota`], for example to make
    /// one replica slow), and its [`CpuCgroup::stat`] tells how much CPU
    /// the node used and how often it was throttled. The group outlives
    /// restarts of the node.
    pub fn cpu_cgroup(&self, index: usize) -> Option<&CpuCgroup> {
        self.cgroups.as_ref().and_then(|c| c.node(index))
    }

    /// A `mariadb` client command (`--no-defaults`, TCP to the node, user
    /// and password set) to which the caller adds its own options.
    pub fn client_command(&self, node: usize, creds: &Credentials) -> Command {
        client_command(self.node(node).port(), creds)
    }

    /// Runs `sql` (one or more `;`-separated statements) on `node` as
    /// `creds` and returns the rows printed in batch mode, without column
    /// names: one line per row, tab-separated columns, `NULL` for nulls.
    /// The client is killed after `timeout`, which matters for paused nodes.
    pub fn sql(
        &self,
        node: usize,
        creds: &Credentials,
        sql: &str,
        timeout: Duration,
    ) -> Result<String, SqlError> {
        run_sql(node, self.client_command(node, creds), sql, false, timeout)
    }

    /// [`sql`](Self::sql) as root with [`DEFAULT_SQL_TIMEOUT`].
    pub fn root_sql(&self, node: usize, sql: &str) -> Result<String, SqlError> {
        self.sql(node, &self.root, sql, DEFAULT_SQL_TIMEOUT)
    }

    /// [`sql`](Self::sql) as the application user with
    /// [`DEFAULT_SQL_TIMEOUT`].
    pub fn app_sql(&self, node: usize, sql: &str) -> Result<String, SqlError> {
        self.sql(node, &self.app, sql, DEFAULT_SQL_TIMEOUT)
    }

    /// Makes replica `index` apply each transaction `seconds` after the
    /// primary committed it (`MASTER_DELAY`; 0 removes the delay). Its
    /// replication threads restart; what it already received is kept.
    /// [`Cluster::wait_replicas_caught_up`] skips a delayed replica.
    pub fn set_replica_delay(&self, index: usize, seconds: u32) -> Result<()> {
        if index == self.primary_index() {
            bail!("node {index} is the primary; only a replica can be delayed");
        }
        if self.slave_status(index)?.is_none() {
            bail!("node {index} is not a replica");
        }
        self.root_sql(
            index,
            &format!("STOP SLAVE;\nCHANGE MASTER TO MASTER_DELAY={seconds};\nSTART SLAVE;\n"),
        )?;
        let mut delays = self.delays.lock().unwrap_or_else(|e| e.into_inner());
        if seconds == 0 {
            delays.remove(&index);
        } else {
            delays.insert(index, seconds);
        }
        Ok(())
    }

    /// The delay set on replica `index` with [`Cluster::set_replica_delay`]
    /// or [`ClusterSpec::replica_delays`], in seconds (0: none).
    pub fn replica_delay(&self, index: usize) -> u32 {
        let delays = self.delays.lock().unwrap_or_else(|e| e.into_inner());
        delays.get(&index).copied().unwrap_or(0)
    }

    /// `SHOW SLAVE STATUS` of `node` as a column → value map, or `None` if
    /// the node has no replication configured.
    pub fn slave_status(&self, node: usize) -> Result<Option<BTreeMap<String, String>>, SqlError> {
        let out = run_sql(
            node,
            self.client_command(node, &self.root),
            "SHOW SLAVE STATUS",
            true,
            DEFAULT_SQL_TIMEOUT,
        )?;
        Ok(rows_by_column(&out).into_iter().next())
    }

    /// Shuts node `index` down cleanly (SIGTERM, resuming it first if it is
    /// paused) and waits for it to exit.
    pub fn stop_node(&self, index: usize) -> Result<()> {
        self.node(index).stop()
    }

    /// Kills node `index` with SIGKILL, as a crash would.
    pub fn kill_node(&self, index: usize) -> Result<()> {
        self.node(index).kill()
    }

    /// Freezes node `index` with SIGSTOP: connections stay open but nothing
    /// answers, as with a hung server or a network partition.
    pub fn pause_node(&self, index: usize) -> Result<()> {
        self.node(index).pause()
    }

    /// Lets a paused node continue (SIGCONT). The node's replication is left
    /// as it was; see [`follow_primary`](Self::follow_primary).
    pub fn resume_node(&self, index: usize) -> Result<()> {
        self.node(index).resume()
    }

    /// Starts a stopped or killed node again with the same data directory,
    /// port and options, and waits until it accepts connections.
    ///
    /// The current primary comes back writable (and, with semi-sync, as a
    /// semi-synchronous primary). Any other node comes back with
    /// `read_only=1` and is pointed at the current primary with
    /// [`follow_primary`](Self::follow_primary), so a former primary that
    /// was replaced while it was down rejoins as a replica.
    pub fn start_node(&self, index: usize) -> Result<()> {
        let topology = self.topology();
        let primary = *topology;
        let node = self.node(index);
        let config = ServerConfig {
            read_only: index != primary,
            semi_sync: self.spec.semi_sync,
            tls: self.tls.as_ref(),
            extra: &self.spec.server_options,
            cgroup: self.cpu_cgroup(index),
        };
        // The port cannot change (replicas and clients know it), so a port
        // still held (say, by a lingering connection) is waited out.
        let deadline = Instant::now() + self.spec.startup_timeout;
        loop {
            match node.launch(
                &self.spawner,
                &config,
                &self.root,
                self.spec.startup_timeout,
            ) {
                Ok(()) => break,
                Err(LaunchError::Failed(err)) => return Err(err),
                Err(LaunchError::AddressInUse) if Instant::now() < deadline => {
                    tracing::info!(
                        node = index,
                        port = node.port(),
                        "port still in use; retrying"
                    );
                    thread::sleep(Duration::from_millis(250));
                }
                Err(LaunchError::AddressInUse) => {
                    bail!("node {index}: port {} stayed in use", node.port())
                }
            }
        }
        if index == primary {
            if self.spec.semi_sync {
                self.enable_semi_sync_primary(index)?;
            }
            Ok(())
        } else {
            self.repoint(index, primary)
        }
    }

    /// Makes running node `index` (not the primary) a read-only replica of
    /// the current primary. A node without replication settings (a former
    /// primary) first takes its own binary log position as its replication
    /// position, so it asks the new primary only for transactions it lacks;
    /// if it has transactions the new primary never saw, replication stops
    /// with an error (`gtid_strict_mode`), as in a real split brain.
    pub fn follow_primary(&self, index: usize) -> Result<()> {
        let topology = self.topology();
        if index == *topology {
            bail!("node {index} is the primary");
        }
        self.repoint(index, *topology)
    }

    fn repoint(&self, index: usize, primary: usize) -> Result<()> {
        let mut sql = String::from("SET GLOBAL read_only=1;\n");
        if self.slave_status(index)?.is_some() {
            sql += "STOP SLAVE;\n";
        } else {
            sql += "SET GLOBAL gtid_slave_pos=@@gtid_binlog_pos;\n";
        }
        sql += &change_master_sql(self.node(primary).port());
        self.root_sql(index, &sql)?;
        Ok(())
    }

    /// Waits until every running replica has applied everything in the
    /// primary's binary log at the time of the call. Stopped and paused
    /// nodes are skipped, and so are delayed replicas
    /// ([`Cluster::set_replica_delay`]). Fails early if a replica's SQL thread stopped with
    /// an error, and on timeout; the error shows the replica's replication
    /// status and the end of its error log.
    pub fn wait_replicas_caught_up(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let primary = self.primary_index();
        let position = self
            .root_sql(primary, "SELECT @@gtid_binlog_pos")
            .context("reading the primary's binary log position")?;
        for replica in &self.nodes {
            if replica.index() != primary
                && replica.state() == NodeState::Running
                && self.replica_delay(replica.index()) == 0
            {
                self.wait_for_gtid(replica.index(), &position, deadline)?;
            }
        }
        Ok(())
    }

    /// Waits until `node` has applied the GTID position `position`, in
    /// one-second slices so a broken replica is noticed early.
    fn wait_for_gtid(&self, node: usize, position: &str, deadline: Instant) -> Result<()> {
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            let reply = self.root_sql(
                node,
                &format!(
                    "SELECT MASTER_GTID_WAIT({}, {:.3})",
                    quote(position),
                    slice.as_secs_f64()
                ),
            )?;
            if reply == "0" {
                return Ok(());
            }
            let status = self.slave_status(node)?;
            let sql_error = status
                .as_ref()
                .and_then(|s| s.get("Last_SQL_Errno"))
                .is_some_and(|e| e != "0");
            if sql_error || status.is_none() || Instant::now() >= deadline {
                let why = if sql_error {
                    "replication stopped with an error"
                } else if status.is_none() {
                    "the node is not a replica"
                } else {
                    "timed out"
                };
                bail!(
                    "node {node} did not reach GTID position {position:?}: {why}\n{}",
                    self.replication_report(node)
                );
            }
        }
    }

    /// Replication state and the end of the error log of `node`, for errors.
    fn replication_report(&self, node: usize) -> String {
        const FIELDS: [&str; 8] = [
            "Master_Port",
            "Slave_IO_Running",
            "Slave_SQL_Running",
            "Gtid_IO_Pos",
            "Last_IO_Errno",
            "Last_IO_Error",
            "Last_SQL_Errno",
            "Last_SQL_Error",
        ];
        let mut report = match self.root_sql(node, "SELECT @@gtid_slave_pos") {
            Ok(pos) => format!("gtid_slave_pos: {pos}\n"),
            Err(err) => format!("gtid_slave_pos: ({err})\n"),
        };
        match self.slave_status(node) {
            Ok(Some(status)) => {
                for field in FIELDS {
                    report += &format!(
                        "{field}: {}\n",
                        status.get(field).map_or("?", String::as_str)
                    );
                }
            }
            Ok(None) => report += "no replication configured\n",
            Err(err) => report += &format!("SHOW SLAVE STATUS failed: {err}\n"),
        }
        let log = self.node(node).error_log();
        report += &format!(
            "end of {}:\n{}",
            log.display(),
            log_tail(log, LOG_TAIL_LINES)
        );
        report
    }

    /// Makes running replica `index` the primary.
    ///
    /// 1. If the old primary is running, it is made read-only and `index`
    ///    waits until it has applied all of the old primary's transactions
    ///    (a switchover loses nothing). A stopped or paused old primary is
    ///    left as it is: a paused one still accepts writes once resumed (a
    ///    split brain) until [`follow_primary`](Self::follow_primary) is
    ///    called for it.
    /// 2. `index` applies what it has already received (`Gtid_IO_Pos`), then
    ///    `STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0` (and enables
    ///    semi-sync if the cluster uses it).
    /// 3. Every other running node, the old primary included, is pointed at
    ///    `index` ([`follow_primary`](Self::follow_primary)). Stopped nodes
    ///    follow when [`start_node`](Self::start_node)ed; paused ones are left
    ///    alone until the caller calls `follow_primary` after resuming them.
    ///
    /// The candidate is not chosen for being the most advanced replica: a
    /// replica that received more than it before a crash cannot follow it.
    /// Promoting the current primary does nothing.
    pub fn promote(&self, index: usize) -> Result<()> {
        let mut topology = self.topology();
        let old = *topology;
        if index == old {
            return Ok(());
        }
        let candidate = self.node(index);
        if candidate.state() != NodeState::Running {
            bail!("cannot promote node {index}: it is {:?}", candidate.state());
        }
        let deadline = Instant::now() + self.spec.startup_timeout;
        if self.node(old).state() == NodeState::Running {
            self.root_sql(old, "SET GLOBAL read_only=1")?;
            let position = self.root_sql(old, "SELECT @@gtid_binlog_pos")?;
            self.wait_for_gtid(index, &position, deadline)
                .with_context(|| format!("node {index} catching up with old primary {old}"))?;
        }
        self.root_sql(index, "STOP SLAVE IO_THREAD")?;
        let received = self
            .slave_status(index)?
            .and_then(|status| status.get("Gtid_IO_Pos").cloned())
            .ok_or_else(|| anyhow!("node {index} is not a replica"))?;
        self.wait_for_gtid(index, &received, deadline)
            .with_context(|| format!("node {index} applying its relay log"))?;
        let mut sql = String::from("STOP SLAVE;\nRESET SLAVE ALL;\nSET GLOBAL read_only=0;\n");
        if self.spec.semi_sync {
            sql += "SET GLOBAL rpl_semi_sync_master_enabled=1;\n";
        }
        self.root_sql(index, &sql)?;
        // RESET SLAVE ALL dropped its MASTER_DELAY with the rest.
        self.delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&index);

        self.node(old).set_primary(false);
        candidate.set_primary(true);
        *topology = index;
        tracing::info!(old, new = index, "promoted");

        for node in &self.nodes {
            match node.state() {
                _ if node.index() == index => {}
                NodeState::Running => self.repoint(node.index(), index)?,
                state => tracing::info!(node = node.index(), ?state, "not re-pointed"),
            }
        }
        Ok(())
    }

    /// Takes `index` as the primary without changing any server: for a node that
    /// something else (Sluice's built-in failover manager, an operator) promoted. Later
    /// [`start_node`](Self::start_node) calls start the others as its replicas.
    pub fn adopt_primary(&self, index: usize) {
        let mut topology = self.topology();
        let old = *topology;
        if old != index {
            self.node(old).set_primary(false);
            self.node(index).set_primary(true);
            *topology = index;
            self.delays.lock().unwrap_or_else(|e| e.into_inner()).remove(&index);
            tracing::info!(old, new = index, "adopted a primary promoted elsewhere");
        }
    }

    /// The running node that is writable and replicates from nobody, if exactly one is.
    pub fn find_primary(&self) -> Option<usize> {
        let mut found = Vec::new();
        for node in &self.nodes {
            if node.state() != NodeState::Running {
                continue;
            }
            let ro = self.root_sql(node.index(), "SELECT @@read_only").ok()?;
            if ro.trim() == "0" && matches!(self.slave_status(node.index()), Ok(None)) {
                found.push(node.index());
            }
        }
        (found.len() == 1).then(|| found[0])
    }

    fn topology(&self) -> MutexGuard<'_, usize> {
        self.primary.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.kill_quietly();
        }
    }
}

/// `CHANGE MASTER` to the primary on `port`, then `START SLAVE`.
fn change_master_sql(port: u16) -> String {
    format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, MASTER_USER={}, \
         MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;\nSTART SLAVE;\n",
        quote(REPL_USER),
        quote(REPL_PASSWORD)
    )
}

/// Start of the names of temporary cluster directories, followed by the id
/// of the process that owns the cluster and a random part.
pub(crate) const TEMP_PREFIX: &str = "sluice-chaos-";

/// Removes the temporary directories of clusters whose process is gone.
///
/// A cluster that is never dropped (kept in a `static`, or its process
/// killed) leaves its directory behind; its servers died with the process
/// (see the crate documentation), so nothing uses the directory any more.
fn remove_abandoned_dirs(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(owner) = owner else {
            continue;
        };
        if owner != std::process::id() && !process_exists(owner) {
            tracing::info!(dir = %entry.path().display(), "removing an abandoned cluster directory");
            if let Err(err) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), %err, "cannot remove");
            }
        }
    }
}

/// Whether a process with id `pid` exists (signal 0 probes without sending).
pub(crate) fn process_exists(pid: u32) -> bool {
    match signal(pid, 0) {
        Ok(()) => true,
        Err(err) => err.raw_os_error() == Some(libc::EPERM),
    }
}

/// Creates the cluster directory: a temporary one, or the spec's
/// `base_dir`, which must be missing or empty.
fn cluster_dir(spec: &ClusterSpec) -> Result<(Option<TempDir>, PathBuf)> {
    match &spec.base_dir {
        None => {
            let temp = tempfile::Builder::new()
                .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
                .tempdir()
                .context("creating a temporary directory")?;
            if let Some(parent) = temp.path().parent() {
                remove_abandoned_dirs(parent);
            }
            let path = temp.path().to_path_buf();
            Ok((Some(temp), path))
        }
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let dir = dir
                .canonicalize()
                .with_context(|| format!("resolving {}", dir.display()))?;
            if fs::read_dir(&dir)?.next().is_some() {
                bail!("{} is not empty", dir.display());
            }
            Ok((None, dir))
        }
    }
}
