//! Real MariaDB primary/replica clusters for Sluice's integration, chaos and
//! benchmark tests.
//!
//! [`Cluster::start`] gives each node a freshly bootstrapped data directory
//! in a temporary directory, starts a `mariadbd` for each on a free port of
//! 127.0.0.1, creates the accounts and databases on the primary and attaches
//! the replicas with GTID replication. The
//! [`Cluster`] then offers SQL access through the `mariadb` command-line
//! client and fault injection: clean stops, crashes, freezes, restarts and
//! promotions. This is a test tool: it shells out to the MariaDB and OpenSSL
//! command-line programs and never touches a server it did not start (the
//! system server on port 3306 included: every program runs with
//! `--no-defaults` and explicit ports, sockets and directories).
//!
//! ```no_run
//! use std::time::Duration;
//! use chaos::{Cluster, ClusterSpec};
//!
//! # fn main() -> anyhow::Result<()> {
//! let cluster = Cluster::start(ClusterSpec { replicas: 2, tls: true, ..ClusterSpec::default() })?;
//! cluster.app_sql(0, "CREATE TABLE test.t (id INT PRIMARY KEY); INSERT INTO test.t VALUES (1)")?;
//! cluster.wait_replicas_caught_up(Duration::from_secs(10))?;
//! assert_eq!(cluster.app_sql(1, "SELECT COUNT(*) FROM test.t")?, "1");
//! // A replica refuses the application user's writes (read_only=1).
//! let err = cluster.app_sql(1, "INSERT INTO test.t VALUES (2)").unwrap_err();
//! assert_eq!(err.code(), Some(1290));
//! cluster.kill_node(0)?;
//! cluster.promote(1)?;
//! println!("new primary at {}, CA at {:?}", cluster.primary().addr(), cluster.ca_cert_path());
//! # Ok(())
//! # }
//! ```
//!
//! # The cluster
//!
//! * Node 0 starts as the primary, nodes 1..=N as replicas with
//!   `read_only=1`. [`Node::server_id`] is the index plus one.
//! * Every server has the binary log on (`mysql-bin`, row format,
//!   `log_slave_updates`, `gtid_strict_mode`), so any replica can be
//!   promoted. Replicas use `MASTER_USE_GTID=slave_pos` and retry a lost
//!   primary every second; `slave_net_timeout` is 10 s.
//! * Each node has its own directory (`node<i>/`: data directory, private
//!   `tmpdir`, socket, pid file, `error.log`); nothing is shared with other
//!   servers on the machine.
//! * Speed over durability: `innodb_flush_log_at_trx_commit=2`,
//!   `sync_binlog=0`, a 64 MiB buffer pool. Killing a server loses nothing
//!   (the data is in the OS page cache); only a machine crash would.
//! * Accounts (created on the primary and replicated):
//!   - root with an empty password, from 127.0.0.1 ([`Cluster::root_user`]);
//!   - the application account ([`Cluster::app_user`], `app`/`app` by
//!     default) on `%` and `localhost`, with ordinary DML/DDL privileges plus
//!     `PROCESS`, `RELOAD`, `FILE`, `BINLOG MONITOR` and `SLAVE MONITOR`, but
//!     not `SUPER` or `READ_ONLY ADMIN`: writes on a replica fail with error
//!     1290. It may `KILL QUERY` its own connections;
//!   - `repl`, used by the replicas.
//! * Databases `test` and `sbtest` (for sysbench).
//! * With [`ClusterSpec::tls`], a CA and a server certificate for
//!   `IP:127.0.0.1` and `DNS:localhost` are generated with `openssl` and
//!   every server offers TLS; [`Cluster::ca_cert_path`] is the CA to verify
//!   against.
//! * With [`ClusterSpec::semi_sync`], replicas acknowledge transactions and
//!   the primary waits for an acknowledgement before a commit returns.
//! * With [`ClusterSpec::cpu_quota`], each `mariadbd` runs in a cgroup of its
//!   own capped at that many CPUs (CFS bandwidth control), so a node is the
//!   bottleneck as on a separate small host ([`Cluster::cpu_cgroup`]; see
//!   `cgroup.rs` for the hierarchies supported and the cleanup).
//!
//! # Startup time
//!
//! Bootstrapping a data directory with `mariadb-install-db` is the slow part,
//! so it is done once per machine (and server version) into
//! `$TMPDIR/sluice-chaos-template-<key>/` and every node gets a sparse copy
//! of that template. The servers start in parallel. On a two-core machine a
//! 1+2 cluster is ready in about a second when the template exists (about
//! two the first time); a busy machine can make that several times longer.
//!
//! # Ports
//!
//! Each node gets a port by binding 127.0.0.1:0 and closing the socket.
//! Ports are never handed out twice in one process, and a server that finds
//! its port taken by another process before it could bind it is started on a
//! new one, so tests may start clusters concurrently.
//!
//! # Teardown
//!
//! Dropping a [`Cluster`] (including while unwinding from a panic) SIGKILLs
//! its servers, reaps them and removes the temporary directory and its CPU
//! quota cgroups, if any. In case the
//! process dies without unwinding (abort, SIGKILL), every server is started
//! with `prctl(PR_SET_PDEATHSIG, SIGKILL)` in a `pre_exec` hook, so the
//! kernel kills it when its parent goes away. Because the kernel ties that
//! signal to the forking *thread*, servers are forked by a dedicated thread
//! owned by the cluster (see `process.rs`), not by the caller's thread.
//!
//! A cluster that is never dropped (kept in a `static`, or its process
//! killed) still leaves its temporary directory, `sluice-chaos-<pid>-…`, and
//! its cgroups (named the same way) behind. [`Cluster::start`] removes such
//! directories and groups once the process named in them no longer exists.
//!
//! # Command line
//!
//! The `chaos` binary starts a cluster and keeps it up until SIGINT or
//! SIGTERM: `chaos cluster --replicas 2 --tls --cpu-quota 0.25 --state-file cluster.json`.
//! See `chaos cluster --help`.
//!
//! `chaos scenario NAME... | all` runs the chaos scenarios of [`scenario`]: a cluster,
//! the `sluice` binary in front (through a [`Relay`] where a link fault needs one), a
//! recorded client workload, one fault, and a report per run checked by `sim`'s history
//! checkers (`scripts/chaos.sh` builds and runs them).

mod cgroup;
mod cluster;
mod node;
mod process;
mod spec;
mod sql;
mod template;
mod tls;

pub mod relay;
pub mod scenario;

pub use cgroup::{CgroupVersion, CpuCgroup, CpuStat};
pub use cluster::{Cluster, DEFAULT_SQL_TIMEOUT, REPL_PASSWORD, REPL_USER};
pub use node::{Node, NodeState};
pub use relay::{LinkFault, Relay};
pub use spec::ClusterSpec;
pub use sql::{Credentials, SqlError};
pub use tls::TlsFiles;

#[cfg(test)]
mod tests {
    #[test]
    fn clusters_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<crate::Cluster>();
    }
}
