//! What cluster to start: [`ClusterSpec`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

/// Description of a cluster for [`Cluster::start`](crate::Cluster::start).
///
/// `ClusterSpec::default()` is one primary and two replicas, no TLS, no
/// semi-synchronous replication, no CPU quota, temporary directories, and the
/// application account `app`/`app`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    /// Number of replicas besides the primary (node 0).
    pub replicas: usize,
    /// Generate a test CA and server certificate and start every node with
    /// `--ssl-ca/--ssl-cert/--ssl-key` (TLS is offered, not required).
    pub tls: bool,
    /// Use semi-synchronous replication: replicas acknowledge transactions
    /// and the primary waits for one acknowledgement (falling back to
    /// asynchronous replication after `rpl_semi_sync_master_timeout`, 10 s by
    /// default) before a commit returns.
    pub semi_sync: bool,
    /// Directory to put the nodes in. It must not exist or be empty, and it
    /// is kept after the cluster is dropped. `None` (the default) uses a fresh
    /// temporary directory that is removed on drop.
    pub base_dir: Option<PathBuf>,
    /// User name of the application account.
    pub app_user: String,
    /// Password of the application account.
    pub app_password: String,
    /// Extra `mariadbd` options (each starting with `--`), appended after the
    /// launcher's own so they can override them, for example
    /// `"--slave-net-timeout=3"`.
    pub server_options: Vec<String>,
    /// Cap each `mariadbd` at this many CPUs (0.25 = a quarter of one CPU:
    /// 25 ms of CPU time per 100 ms period) with a cgroup of its own, so
    /// that a node saturates as it would on a small host of its own. Needs
    /// the cgroup `cpu` controller (v2, or v1 as a fallback) and the right
    /// to create groups (root); [`Cluster::start`](crate::Cluster::start)
    /// fails rather than running without the cap. `None` (the default):
    /// no cap. See [`Cluster::cpu_cgroup`](crate::Cluster::cpu_cgroup).
    pub cpu_quota: Option<f64>,
    /// Deadline for each step of bringing nodes up: bootstrapping a data
    /// directory, a server accepting connections, replicas catching up.
    pub startup_timeout: Duration,
    /// Delayed replicas: node index → seconds. Such a replica applies each
    /// transaction only that long after the primary committed it
    /// (`CHANGE MASTER TO MASTER_DELAY`), like a replica far behind. The
    /// delay is set once the setup has replicated, so a delayed replica
    /// starts with the accounts and databases; see
    /// [`Cluster::set_replica_delay`](crate::Cluster::set_replica_delay).
    /// Empty by default.
    pub replica_delays: BTreeMap<usize, u32>,
}

impl Default for ClusterSpec {
    fn default() -> ClusterSpec {
        ClusterSpec {
            replicas: 2,
            tls: false,
            semi_sync: false,
            base_dir: None,
            app_user: "app".to_owned(),
            app_password: "app".to_owned(),
            server_options: Vec::new(),
            cpu_quota: None,
            startup_timeout: Duration::from_secs(60),
            replica_delays: BTreeMap::new(),
        }
    }
}

impl ClusterSpec {
    /// Checks the spec for values the launcher cannot honour.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.app_user.is_empty() {
            bail!("the application user name must not be empty");
        }
        if ["root", crate::cluster::REPL_USER, "mariadb.sys"].contains(&self.app_user.as_str()) {
            bail!(
                "the application user may not be called {:?}: the launcher uses that account",
                self.app_user
            );
        }
        if let Some(bad) = self
            .replica_delays
            .keys()
            .find(|&&i| i == 0 || i > self.replicas)
        {
            bail!(
                "cannot delay node {bad}: the replicas are nodes 1 to {}",
                self.replicas
            );
        }
        if let Some(bad) = self.server_options.iter().find(|o| !o.starts_with("--")) {
            bail!("server option {bad:?} must start with \"--\"");
        }
        if let Some(cpus) = self.cpu_quota {
            if !(crate::cgroup::MIN_CPUS..=crate::cgroup::MAX_CPUS).contains(&cpus) {
                bail!(
                    "the CPU quota must be between {} and {} CPUs, not {cpus}",
                    crate::cgroup::MIN_CPUS,
                    crate::cgroup::MAX_CPUS
                );
            }
        }
        if self.startup_timeout.is_zero() {
            bail!("the startup timeout must not be zero");
        }
        Ok(())
    }
}
