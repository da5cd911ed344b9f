//! The configuration file (TOML): structure, defaults and validation.
//!
//! Every key is documented in `docs/config.md`. Unknown keys are errors, so a typo never
//! silently falls back to a default.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::consistency::level::{Fallback, Level};
use crate::error::{Error, Result};
use crate::protocol::auth;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    pub backend: BackendConfig,
    /// Read/write splitting and load balancing (`docs/routing.md`).
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Backend connection pools and multiplexing (`docs/pooling.md`).
    #[serde(default)]
    pub pool: PoolConfig,
    /// What sessions do while the primary is unavailable (`docs/failover.md`).
    #[serde(default)]
    pub failover: FailoverConfig,
    /// The `sluice` binary's log (`docs/config.md`, `[log]`).
    #[serde(default)]
    pub log: LogConfig,
    /// The admin interface (`docs/operations.md`); off when absent.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Statement digests and the slow log (`docs/operations.md`).
    #[serde(default)]
    pub stats: StatsConfig,
    /// Query rules, in order; the first that matches a statement applies
    /// (`docs/operations.md`, `crate::rules`).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Per-user limits (`[[limits]]`).
    #[serde(default)]
    pub limits: Vec<UserLimit>,
    /// The file this config was loaded from (`SLUICE RELOAD` and SIGHUP re-read it).
    #[serde(skip)]
    pub source: Option<std::path::PathBuf>,
}

/// `[admin]`: the admin interface's listeners and accounts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// MySQL-protocol admin listener (`SHOW SLUICE NODES`, `SLUICE KILL`, …).
    pub listen: Option<String>,
    /// HTTP listener: `/metrics`, `/health`, `/ready`.
    pub http_listen: Option<String>,
    /// Accounts of the MySQL-protocol admin listener.
    #[serde(default)]
    pub users: Vec<AdminUser>,
    /// An admin session idle this long is closed (as the server's `wait_timeout`);
    /// `0`: never.
    #[serde(default = "defaults::admin_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

/// `[[admin.users]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUser {
    pub name: String,
    #[serde(default)]
    pub password: String,
}

/// `[[rules]]`: one query rule. Every match key given must match; at least one action.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name in `SHOW SLUICE RULES`, metrics and errors (default `rule<N>`, 1-based).
    pub name: Option<String>,
    /// Client user name (exact).
    pub user: Option<String>,
    /// The session's current schema (exact).
    pub schema: Option<String>,
    /// Statement digest hash, 16 hex digits as `SHOW SLUICE QUERY DIGESTS` shows them.
    pub digest: Option<String>,
    /// Regular expression searched in the statement text (`(?i)` for any case).
    #[serde(rename = "match")]
    pub pattern: Option<String>,
    /// `read`, `write`, `transaction`, `session` or `other`.
    pub kind: Option<RuleKind>,
    /// Refuse the statement with `error_code` / `error_message`.
    #[serde(default)]
    pub block: bool,
    pub error_code: Option<u16>,
    pub error_message: Option<String>,
    /// `primary`, `replica`, or a node's `host:port` (reads only; as the routing hints).
    pub route: Option<String>,
    /// Kill the statement on its backend after this many milliseconds.
    pub timeout_ms: Option<u64>,
    /// Statements matching this rule running at once, at most; more wait.
    pub max_concurrency: Option<u32>,
    /// How long a statement waits for its turn under `max_concurrency` (ms).
    #[serde(default = "defaults::rule_queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// How many statements may wait under `max_concurrency` at once.
    #[serde(default = "defaults::rule_max_queue")]
    pub max_queue: u32,
    /// A read's answer may carry this many rows (of all its result sets), at most;
    /// instead of the next row the client gets `error_code` (default 1104).
    pub max_rows: Option<u64>,
    /// A read's answer may carry this many bytes (packet headers included), at most;
    /// rows are never split.
    pub max_bytes: Option<u64>,
}

/// The statement kinds a rule can match.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Plain reads (what may run on a replica).
    Read,
    /// Data and schema changes, locking reads.
    Write,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, savepoints.
    Transaction,
    /// Session state: `SET`, `USE`, session-bound statements.
    Session,
    /// Anything else (diagnostics, unparsed).
    Other,
}

/// `[[limits]]`: limits for one client user.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserLimit {
    pub user: String,
    /// Sessions of the user open at once, at most (ER_TOO_MANY_USER_CONNECTIONS past it).
    pub max_connections: Option<u32>,
    /// Statements per second, at most (a token bucket with one second of burst;
    /// ER_USER_LIMIT_REACHED past it).
    pub statements_per_second: Option<u32>,
}

/// `[stats]`: statement digests and the slow log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Most digests kept (the rest fold into one "other" row); 0 turns digests off.
    #[serde(default = "defaults::max_digests")]
    pub max_digests: usize,
    /// Statements slower than this many milliseconds are logged (0: none).
    #[serde(default = "defaults::slow_query_ms")]
    pub slow_query_ms: u64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig { max_digests: defaults::max_digests(), slow_query_ms: defaults::slow_query_ms() }
    }
}

/// `[log]`: how the `sluice` binary logs (to standard error).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human-readable; colour only on a terminal) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `sluice=debug,sluice::pool=trace`, …); the
    /// `SLUICE_LOG` environment variable, when set, wins.
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: defaults::log_level() }
    }
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[failover]`: buffering of primary-bound statements while no primary can be reached.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// Longest a primary-bound statement waits for a reachable primary (then the client
    /// gets an error); `0` = no buffering.
    #[serde(default = "defaults::buffer_window_ms")]
    pub buffer_window_ms: u64,
    /// Most statements waiting at once, over every session.
    #[serde(default = "defaults::buffer_max_statements")]
    pub buffer_max_statements: usize,
    /// Most bytes of statements waiting at once.
    #[serde(default = "defaults::buffer_max_bytes")]
    pub buffer_max_bytes: usize,
    /// Who promotes a replica when the primary dies: `external` (another tool; Sluice
    /// follows what it observes) or `builtin` (Sluice promotes; `docs/failover.md`).
    #[serde(default)]
    pub manager: FailoverManager,
    /// No second automatic promotion within this long of one.
    #[serde(default = "defaults::cooldown_ms")]
    pub cooldown_ms: u64,
    /// Longest wait for a candidate to apply its relay log (failover) or for the target
    /// to catch up with the old primary (switchover).
    #[serde(default = "defaults::catch_up_timeout_ms")]
    pub catch_up_timeout_ms: u64,
    /// Switchover: longest wait for open transactions on the old primary to end.
    #[serde(default = "defaults::drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Account that promotes, fences and re-points (needs `SUPER` or, on MariaDB 10.5+,
    /// `READ_ONLY ADMIN`, `REPLICATION SLAVE ADMIN`, `CONNECTION ADMIN`, `PROCESS`);
    /// default: `backend.user`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Replication account a former primary is re-pointed with (replicas keep theirs);
    /// without it a former primary stays fenced (read-only) for an operator.
    #[serde(default)]
    pub replication_user: Option<String>,
    #[serde(default)]
    pub replication_password: Option<String>,
    /// Name of the `GET_LOCK` lock that keeps two Sluices from acting at once.
    #[serde(default = "defaults::lock_name")]
    pub lock_name: String,
    /// Replay a transaction cut by the loss of the primary on the new primary (when its
    /// COMMIT was not sent and every replayed statement answers as it did before).
    #[serde(default)]
    pub transaction_replay: bool,
    /// Longest transaction (statements) kept for replay; a longer one is not replayed.
    #[serde(default = "defaults::transaction_replay_max_statements")]
    pub transaction_replay_max_statements: usize,
    /// Most bytes of statements kept for replay per session.
    #[serde(default = "defaults::transaction_replay_max_bytes")]
    pub transaction_replay_max_bytes: usize,
}

/// `[failover] manager`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverManager {
    #[default]
    External,
    Builtin,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            buffer_window_ms: defaults::buffer_window_ms(),
            buffer_max_statements: defaults::buffer_max_statements(),
            buffer_max_bytes: defaults::buffer_max_bytes(),
            manager: FailoverManager::External,
            cooldown_ms: defaults::cooldown_ms(),
            catch_up_timeout_ms: defaults::catch_up_timeout_ms(),
            drain_timeout_ms: defaults::drain_timeout_ms(),
            user: None,
            password: None,
            replication_user: None,
            replication_password: None,
            lock_name: defaults::lock_name(),
            transaction_replay: false,
            transaction_replay_max_statements: defaults::transaction_replay_max_statements(),
            transaction_replay_max_bytes: defaults::transaction_replay_max_bytes(),
        }
    }
}

impl FailoverConfig {
    pub fn limits(&self) -> crate::failover::BufferLimits {
        crate::failover::BufferLimits {
            window: std::time::Duration::from_millis(self.buffer_window_ms),
            max_statements: if self.buffer_window_ms == 0 { 0 } else { self.buffer_max_statements },
            max_bytes: self.buffer_max_bytes,
        }
    }
}

/// `[pool]`: one pool of backend connections per node (and backend account); with
/// `multiplex`, client sessions borrow a connection per statement.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Sessions hold no backend connection between statements unless pinned (an open
    /// transaction, locks, temporary tables, …). Off: one dedicated connection per
    /// session and node.
    #[serde(default = "defaults::yes")]
    pub multiplex: bool,
    /// Most connections to one node, over all its pools; `0` = the node's
    /// `max_connections` less `reserve_connections`.
    #[serde(default)]
    pub max_per_node: usize,
    /// With `max_per_node = 0`: connections of the node's `max_connections` left to
    /// others (administrators, other Sluice instances, the monitor).
    #[serde(default = "defaults::reserve_connections")]
    pub reserve_connections: usize,
    /// Idle connections kept open per node (opened at start and after idle ones close).
    #[serde(default = "defaults::min_idle")]
    pub min_idle: usize,
    /// Longest wait for a connection when the node's pool is at its size; past it the
    /// client gets ER_CON_COUNT_ERROR (1040).
    #[serde(default = "defaults::acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Most statements waiting for a connection of one node; more get 1040 at once.
    #[serde(default = "defaults::max_queue")]
    pub max_queue: usize,
    /// A connection older than this is closed when it comes back (`0` = no limit).
    #[serde(default = "defaults::max_lifetime_ms")]
    pub max_lifetime_ms: u64,
    /// An idle connection unused for this long is closed (down to `min_idle`).
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// A client session idle this long while pinned to a pooled backend connection (an
    /// open transaction, locks, temporary tables, …) is closed, and the connection with
    /// it (its transaction rolled back), as the server would after `wait_timeout`: a
    /// client that vanished without closing must not hold a pool's connection for good.
    /// `0`: never.
    #[serde(default = "defaults::pinned_idle_timeout_ms")]
    pub pinned_idle_timeout_ms: u64,
    /// An idle connection unused for this long is pinged before it is lent.
    #[serde(default = "defaults::check_idle_after_ms")]
    pub check_idle_after_ms: u64,
    /// Prepared statements each backend connection keeps (least recently used ones are
    /// closed beyond it; also kept under the server's `max_prepared_stmt_count`).
    #[serde(default = "defaults::statement_cache")]
    pub statement_cache: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            multiplex: true,
            max_per_node: 0,
            reserve_connections: defaults::reserve_connections(),
            min_idle: defaults::min_idle(),
            acquire_timeout_ms: defaults::acquire_timeout_ms(),
            max_queue: defaults::max_queue(),
            max_lifetime_ms: defaults::max_lifetime_ms(),
            idle_timeout_ms: defaults::idle_timeout_ms(),
            pinned_idle_timeout_ms: defaults::pinned_idle_timeout_ms(),
            check_idle_after_ms: defaults::check_idle_after_ms(),
            statement_cache: defaults::statement_cache(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address to listen on, `host:port`.
    pub listen: String,
    /// Runtime worker threads of the `sluice` binary; `0` = one per CPU.
    #[serde(default)]
    pub worker_threads: usize,
    /// How the `sluice` binary spreads client sessions over its worker threads.
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Client connections beyond this get ER_CON_COUNT_ERROR (1040).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Largest packet accepted from a client, in bytes (ER_NET_PACKET_TOO_LARGE beyond).
    #[serde(default = "defaults::max_allowed_packet")]
    pub max_allowed_packet: usize,
    /// On SIGTERM: how long running commands may take to finish before connections close.
    #[serde(default = "defaults::shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// A client must complete its login within this time.
    #[serde(default = "defaults::handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// A write to a client that makes no progress this long (the client stopped
    /// reading, or is gone without a FIN or RST reaching Sluice) ends the session, as
    /// the server's `net_write_timeout` does; `0`: never.
    #[serde(default = "defaults::client_write_timeout_ms")]
    pub client_write_timeout_ms: u64,
    /// Server version announced to clients; default: the primary's own version string.
    #[serde(default)]
    pub server_version: Option<String>,
    /// Plugin announced in the initial handshake and used for users without their own.
    #[serde(default = "defaults::auth_plugin")]
    pub default_auth_plugin: String,
    /// caching_sha2_password: after a user's first full authentication, later logins may
    /// use the fast path (like the server's cache). When false, every login does full
    /// authentication.
    #[serde(default = "defaults::yes")]
    pub caching_sha2_cache: bool,
    /// PEM file with the RSA private key for caching_sha2_password full authentication
    /// without TLS. When absent a key pair is generated at startup.
    #[serde(default)]
    pub rsa_private_key: Option<PathBuf>,
    /// Client-side TLS.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// Where client accounts come from: `config` (the `[[users]]` entries; Sluice logs in
    /// to backends with `[backend]`'s account) or `passthrough` (the backend's own
    /// accounts; Sluice logs in to backends as the client's user).
    #[serde(default)]
    pub auth_mode: AuthMode,
    /// `passthrough`: how often the account table is re-read from the primary (it is
    /// also re-read on demand when an unknown user logs in).
    #[serde(default = "defaults::accounts_refresh_ms")]
    pub accounts_refresh_ms: u64,
    /// Unix socket on which the running `sluice` hands its listening sockets to a new
    /// process started with `--takeover` (docs/upgrade.md). Absent: no hand-over.
    #[serde(default)]
    pub upgrade_socket: Option<PathBuf>,
    /// While draining after a hand-over: a session outside a transaction is closed once
    /// it has waited this long for its next command (a busy client goes on until it
    /// leaves or `shutdown_timeout_ms` passes).
    #[serde(default = "defaults::drain_idle_ms")]
    pub drain_idle_ms: u64,
}

/// Threading of the `sluice` binary (the library itself runs on whatever runtime it is
/// started on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheduler {
    /// Each worker thread runs its own single-threaded runtime; a new session goes to the
    /// worker with the fewest open sessions and stays there, with its backend
    /// connection, for its whole life.
    #[default]
    Pinned,
    /// One multi-threaded work-stealing runtime: any worker may run any session.
    WorkStealing,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Config,
    Passthrough,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain presented to clients.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// Refuse clients that do not switch to TLS (like `require_secure_transport=ON`).
    #[serde(default)]
    pub require_secure_transport: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub password: String,
    /// `mysql_native_password` or `caching_sha2_password`; default: `proxy.default_auth_plugin`.
    #[serde(default)]
    pub auth_plugin: Option<String>,
    /// May run Sluice's administrative commands on the client port (`SLUICE SWITCHOVER`).
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Account Sluice logs in to the backends with.
    pub user: String,
    #[serde(default)]
    pub password: String,
    /// Backend servers, `host:port`. Roles (primary/replica) are discovered.
    pub nodes: Vec<String>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How often each node's role is checked.
    #[serde(default = "defaults::monitor_interval_ms")]
    pub monitor_interval_ms: u64,
    /// A role check slower than this counts as a failed check.
    #[serde(default = "defaults::monitor_timeout_ms")]
    pub monitor_timeout_ms: u64,
    /// A node that answered before is declared down only after this many consecutive
    /// failed checks.
    #[serde(default = "defaults::monitor_failures")]
    pub monitor_failures: u32,
    /// A node's role or read eligibility changes only after this many consecutive
    /// checks agree (one odd answer does not flip it).
    #[serde(default = "defaults::monitor_debounce")]
    pub monitor_debounce: u32,
    /// Longest wait for a backend's next bytes while a statement runs; `0` = no limit.
    /// Past it the session ends with an error (the statement's outcome is unknown).
    #[serde(default = "defaults::read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// TLS to the backends.
    #[serde(default)]
    pub tls: Option<BackendTlsConfig>,
}

/// Where a session sends statements: `auto` splits (when splitting is on), `primary`
/// sends everything to the primary, `replica` sends every statement that can run on a
/// replica to one (even inside a transaction, for reads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    #[default]
    Auto,
    Primary,
    Replica,
}

impl RouteMode {
    pub fn name(self) -> &'static str {
        match self {
            RouteMode::Auto => "auto",
            RouteMode::Primary => "primary",
            RouteMode::Replica => "replica",
        }
    }
}

/// How reads are spread over the eligible replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// In turn, in proportion to the weights.
    #[default]
    RoundRobin,
    /// At random (the proxy's seeded RNG), in proportion to the weights.
    Random,
    /// The node with the fewest statements in flight (relative to its weight).
    LeastConnections,
    /// The node with the lowest moving average of response times.
    LeastLatency,
    /// The replica with the smallest replication lag.
    LeastLag,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::Random => "random",
            Policy::LeastConnections => "least_connections",
            Policy::LeastLatency => "least_latency",
            Policy::LeastLag => "least_lag",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Send reads to replicas (off: everything goes to the primary). On by default,
    /// with `consistency = "session"`: a session reads its own writes.
    #[serde(default = "defaults::yes")]
    pub read_write_split: bool,
    /// Default route mode of every session.
    #[serde(default)]
    pub route: RouteMode,
    /// Load-balancing policy across eligible replicas.
    #[serde(default)]
    pub policy: Policy,
    /// A replica further behind than this gets no reads.
    #[serde(default = "defaults::max_replica_lag_ms")]
    pub max_replica_lag_ms: u64,
    /// Weight of each node (`"host:port" = n`); unlisted nodes weigh 1; 0 = no reads.
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, u32>,
    /// The primary's weight among the read targets (0: it serves reads only when no
    /// replica is eligible).
    #[serde(default)]
    pub primary_read_weight: u32,
    /// Classifier cache entries (normalised statement texts); 0 disables the cache.
    #[serde(default = "defaults::classifier_cache")]
    pub classifier_cache: usize,
    /// Read-after-write consistency of reads sent to replicas (docs/consistency.md).
    #[serde(default)]
    pub consistency: Level,
    /// Longest wait for a replica to reach a read's position; past it the read goes to
    /// the primary (or fails, with `consistency_fallback = "error"`).
    #[serde(default = "defaults::consistency_timeout_ms")]
    pub consistency_timeout_ms: u64,
    /// What a read gets when no replica reached its position in time.
    #[serde(default)]
    pub consistency_fallback: Fallback,
    /// Per-user defaults, overriding the global ones.
    #[serde(default)]
    pub users: Vec<UserRouting>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            read_write_split: true,
            route: RouteMode::Auto,
            policy: Policy::RoundRobin,
            max_replica_lag_ms: defaults::max_replica_lag_ms(),
            weights: Default::default(),
            primary_read_weight: 0,
            classifier_cache: defaults::classifier_cache(),
            consistency: Level::default(),
            consistency_timeout_ms: defaults::consistency_timeout_ms(),
            consistency_fallback: Fallback::default(),
            users: Vec::new(),
        }
    }
}

impl RoutingConfig {
    /// `(read_write_split, route)` for sessions of `user`.
    pub fn for_user(&self, user: &str) -> (bool, RouteMode) {
        match self.users.iter().find(|u| u.name == user) {
            Some(u) => (u.read_write_split.unwrap_or(self.read_write_split), u.route.unwrap_or(self.route)),
            None => (self.read_write_split, self.route),
        }
    }

    /// A consistency wait's longest duration: `ms`, kept below the backend read deadline
    /// (`read_timeout_ms`, 0 = none) so that a wait always ends first.
    pub fn wait_limit_ms(ms: u64, read_timeout_ms: u64) -> u64 {
        if read_timeout_ms > 0 {
            ms.min(read_timeout_ms.saturating_mul(9) / 10).max(1)
        } else {
            ms.max(1)
        }
    }

    /// The consistency level of sessions of `user`.
    pub fn consistency_for(&self, user: &str) -> Level {
        self.users.iter().find(|u| u.name == user).and_then(|u| u.consistency).unwrap_or(self.consistency)
    }

    /// Whether sessions of `user` are multiplexed (`[pool] multiplex`, per-user override).
    pub fn multiplex_for(&self, user: &str, global: bool) -> bool {
        self.users.iter().find(|u| u.name == user).and_then(|u| u.multiplex).unwrap_or(global)
    }

    /// The read weight of `node`.
    pub fn weight(&self, node: &str) -> u32 {
        self.weights.get(node).copied().unwrap_or(1)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserRouting {
    pub name: String,
    #[serde(default)]
    pub read_write_split: Option<bool>,
    #[serde(default)]
    pub route: Option<RouteMode>,
    #[serde(default)]
    pub consistency: Option<Level>,
    /// `[pool] multiplex` for this user's sessions.
    #[serde(default)]
    pub multiplex: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTlsConfig {
    /// PEM file of the CA(s) that signed the backends' certificates.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Name to verify in the backend certificate; default: the host part of the node address.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Verify the backend certificate (default true). `false` encrypts without
    /// authenticating the server: only for testing.
    #[serde(default = "defaults::yes")]
    pub verify: bool,
}

mod defaults {
    pub fn admin_idle_timeout_ms() -> u64 {
        8 * 3600 * 1000
    }
    pub fn rule_queue_timeout_ms() -> u64 {
        1000
    }
    pub fn rule_max_queue() -> u32 {
        100
    }
    pub fn max_digests() -> usize {
        1000
    }
    pub fn slow_query_ms() -> u64 {
        1000
    }
    pub fn max_connections() -> usize {
        4096
    }
    pub fn max_allowed_packet() -> usize {
        64 << 20
    }
    pub fn shutdown_timeout_ms() -> u64 {
        30_000
    }
    pub fn handshake_timeout_ms() -> u64 {
        10_000
    }
    pub fn drain_idle_ms() -> u64 {
        100
    }
    pub fn client_write_timeout_ms() -> u64 {
        60_000
    }
    pub fn auth_plugin() -> String {
        crate::protocol::auth::NATIVE.to_string()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn accounts_refresh_ms() -> u64 {
        30_000
    }
    pub fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub fn monitor_interval_ms() -> u64 {
        1_000
    }
    pub fn monitor_failures() -> u32 {
        3
    }
    pub fn monitor_timeout_ms() -> u64 {
        800
    }
    pub fn monitor_debounce() -> u32 {
        2
    }
    pub fn read_timeout_ms() -> u64 {
        36_000_000
    }
    pub fn consistency_timeout_ms() -> u64 {
        2000
    }
    pub fn max_replica_lag_ms() -> u64 {
        5_000
    }
    pub fn reserve_connections() -> usize {
        10
    }
    pub fn min_idle() -> usize {
        2
    }
    pub fn acquire_timeout_ms() -> u64 {
        10_000
    }
    pub fn max_queue() -> usize {
        100_000
    }
    pub fn max_lifetime_ms() -> u64 {
        3_600_000
    }
    pub fn idle_timeout_ms() -> u64 {
        300_000
    }
    pub fn pinned_idle_timeout_ms() -> u64 {
        3_600_000
    }
    pub fn check_idle_after_ms() -> u64 {
        5_000
    }
    pub fn statement_cache() -> usize {
        256
    }
    pub fn buffer_window_ms() -> u64 {
        10_000
    }
    pub fn buffer_max_statements() -> usize {
        10_000
    }
    pub fn buffer_max_bytes() -> usize {
        64 << 20
    }
    pub fn cooldown_ms() -> u64 {
        60_000
    }
    pub fn log_level() -> String {
        "info".to_string()
    }
    pub fn transaction_replay_max_statements() -> usize {
        256
    }
    pub fn transaction_replay_max_bytes() -> usize {
        1 << 20
    }
    pub fn catch_up_timeout_ms() -> u64 {
        10_000
    }
    pub fn drain_timeout_ms() -> u64 {
        5_000
    }
    pub fn lock_name() -> String {
        "sluice_failover".into()
    }
    pub fn classifier_cache() -> usize {
        10_000
    }
}

impl Config {
    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Config(one_line(&e.to_string())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut cfg = Self::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        crate::rules::Rules::compile(&self.rules).map_err(Error::Config)?;
        let mut limited = std::collections::BTreeSet::new();
        for l in &self.limits {
            if !limited.insert(&l.user) {
                return bad(format!("[[limits]]: user {:?} listed twice", l.user));
            }
            if l.max_connections == Some(0) || l.statements_per_second == Some(0) {
                return bad(format!("[[limits]] user {:?}: limits must be at least 1 (remove the key for no limit)", l.user));
            }
        }
        if let Some(a) = &self.admin {
            for (key, v) in [("admin.listen", &a.listen), ("admin.http_listen", &a.http_listen)] {
                if let Some(v) = v {
                    if v.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()) {
                        return bad(format!("{key}: expected host:port, got {v:?}"));
                    }
                }
            }
            if a.listen.is_none() && a.http_listen.is_none() {
                return bad("[admin]: set listen, http_listen or both (or remove the section)".into());
            }
            if a.listen.is_some() && a.users.is_empty() {
                return bad("admin.listen needs at least one [[admin.users]] account".into());
            }
            if let Some(u) = a.users.iter().find(|u| u.name.is_empty()) {
                return bad(format!("[[admin.users]]: empty name (password {:?} given)", if u.password.is_empty() { "" } else { "…" }));
            }
        }
        if self.stats.max_digests > 1_000_000 {
            return bad(format!("stats.max_digests: at most 1000000, got {}", self.stats.max_digests));
        }
        if self.proxy.listen.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()) {
            return bad(format!("proxy.listen: expected host:port, got {:?}", self.proxy.listen));
        }
        if self.backend.nodes.is_empty() {
            return bad("backend.nodes: at least one node is required".into());
        }
        for n in &self.backend.nodes {
            if n.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()) {
                return bad(format!("backend.nodes: expected host:port, got {n:?}"));
            }
        }
        let mut seen = BTreeSet::new();
        for n in &self.backend.nodes {
            if !seen.insert(n) {
                return bad(format!("backend.nodes: {n} is listed twice"));
            }
        }
        if self.users.is_empty() && self.proxy.auth_mode == AuthMode::Config {
            return bad("users: at least one [[users]] entry is required (or set proxy.auth_mode = \"passthrough\")".into());
        }
        if self.proxy.auth_mode == AuthMode::Passthrough && !self.users.is_empty() {
            return bad("users: [[users]] entries are not used with proxy.auth_mode = \"passthrough\"; remove them".into());
        }
        if self.proxy.accounts_refresh_ms == 0 {
            return bad("proxy.accounts_refresh_ms must be positive".into());
        }
        if let Some(p) = &self.proxy.upgrade_socket {
            // sun_path holds 108 bytes with the terminating NUL.
            let len = p.as_os_str().len();
            if len == 0 || len > 107 {
                return bad(format!("proxy.upgrade_socket: a unix socket path of 1 to 107 bytes is needed, got {} bytes", len));
            }
        }
        let mut names = BTreeSet::new();
        for u in &self.users {
            if u.name.is_empty() {
                return bad("users: a user has an empty name".into());
            }
            if !names.insert(&u.name) {
                return bad(format!("users: {} is listed twice", u.name));
            }
            check_plugin(u.auth_plugin.as_deref().unwrap_or(&self.proxy.default_auth_plugin), &format!("users.{}.auth_plugin", u.name))?;
        }
        check_plugin(&self.proxy.default_auth_plugin, "proxy.default_auth_plugin")?;
        if self.proxy.max_allowed_packet < 1024 || self.proxy.max_allowed_packet > 1 << 30 {
            return bad("proxy.max_allowed_packet: must be between 1024 and 1073741824".into());
        }
        if self.proxy.max_connections == 0 {
            return bad("proxy.max_connections: must be at least 1".into());
        }
        if self.backend.monitor_interval_ms == 0 || self.backend.monitor_timeout_ms == 0 || self.backend.monitor_failures == 0 {
            return bad("backend.monitor_interval_ms and monitor_timeout_ms must be positive".into());
        }
        if self.backend.monitor_debounce == 0 {
            return bad("backend.monitor_debounce: must be at least 1".into());
        }
        if self.backend.monitor_timeout_ms >= self.backend.monitor_interval_ms {
            return bad(format!(
                "backend.monitor_timeout_ms ({}) must be shorter than monitor_interval_ms ({})",
                self.backend.monitor_timeout_ms, self.backend.monitor_interval_ms
            ));
        }
        if self.routing.consistency_timeout_ms == 0 || self.routing.consistency_timeout_ms > 3_600_000 {
            return bad(format!("routing.consistency_timeout_ms ({}) must be between 1 and 3600000", self.routing.consistency_timeout_ms));
        }
        for node in self.routing.weights.keys() {
            if !self.backend.nodes.contains(node) {
                return bad(format!("routing.weights: {node} is not one of backend.nodes"));
            }
        }
        let mut routed_users = BTreeSet::new();
        for u in &self.routing.users {
            if !routed_users.insert(&u.name) {
                return bad(format!("routing.users: {} is listed twice", u.name));
            }
        }
        if self.failover.replication_user.is_some() != self.failover.replication_password.is_some() {
            return bad("failover.replication_user and failover.replication_password go together".into());
        }
        if self.failover.lock_name.is_empty() || self.failover.lock_name.len() > 64 {
            return bad("failover.lock_name: 1 to 64 characters".into());
        }
        if self.failover.transaction_replay && (self.failover.transaction_replay_max_statements == 0 || self.failover.transaction_replay_max_bytes == 0) {
            return bad("failover.transaction_replay_max_statements and transaction_replay_max_bytes must be above 0 when transaction_replay is on".into());
        }
        if self.failover.buffer_window_ms > 0 && self.failover.buffer_max_bytes < 1024 {
            return bad("failover.buffer_max_bytes: at least 1024 when buffering is on".into());
        }
        if self.pool.acquire_timeout_ms == 0 {
            return bad("pool.acquire_timeout_ms: must be positive".into());
        }
        if self.pool.max_per_node > 0 && self.pool.min_idle > self.pool.max_per_node {
            return bad(format!("pool.min_idle ({}) exceeds pool.max_per_node ({})", self.pool.min_idle, self.pool.max_per_node));
        }
        if let Some(t) = &self.backend.tls {
            if t.verify && t.ca.is_none() {
                return bad("backend.tls: `ca` is required when `verify` is true".into());
            }
        }
        Ok(())
    }

    pub fn user(&self, name: &[u8]) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name.as_bytes() == name)
    }

    pub fn user_plugin<'a>(&'a self, u: &'a UserConfig) -> &'a str {
        u.auth_plugin.as_deref().unwrap_or(&self.proxy.default_auth_plugin)
    }
}

fn check_plugin(p: &str, key: &str) -> Result<()> {
    if p == auth::NATIVE || p == auth::CACHING_SHA2 {
        Ok(())
    } else {
        Err(Error::Config(format!("{key}: unsupported auth plugin {p:?} (use {} or {})", auth::NATIVE, auth::CACHING_SHA2)))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[proxy]
listen = "127.0.0.1:15306"
[[users]]
name = "app"
password = "app"
[backend]
user = "app"
password = "app"
nodes = ["127.0.0.1:3310", "127.0.0.1:3311"]
"#;

    #[test]
    fn minimal_config_from_the_issue_parses_with_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.proxy.max_allowed_packet, 64 << 20);
        assert_eq!(c.backend.nodes.len(), 2);
        assert_eq!(c.user_plugin(c.user(b"app").unwrap()), auth::NATIVE);
    }

    #[test]
    fn unknown_key_is_a_one_line_error_naming_it() {
        let e = Config::parse(&MINIMAL.replace("[backend]", "[backend]\nnodez = 1")).unwrap_err().to_string();
        assert!(e.contains("nodez"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn scheduler_defaults_to_pinned_and_rejects_unknown_values() {
        assert_eq!(Config::parse(MINIMAL).unwrap().proxy.scheduler, Scheduler::Pinned);
        let ws = MINIMAL.replace("[proxy]\n", "[proxy]\nscheduler = \"work-stealing\"\n");
        assert_eq!(Config::parse(&ws).unwrap().proxy.scheduler, Scheduler::WorkStealing);
        let e = Config::parse(&MINIMAL.replace("[proxy]\n", "[proxy]\nscheduler = \"fast\"\n")).unwrap_err().to_string();
        assert!(e.contains("scheduler") && e.contains("pinned"), "{e}");
    }

    #[test]
    fn upgrade_socket_is_optional_and_a_path_too_long_for_a_unix_socket_is_refused() {
        let c = Config::parse(MINIMAL).unwrap();
        assert!(c.proxy.upgrade_socket.is_none());
        assert_eq!(c.proxy.drain_idle_ms, 100);
        let with = MINIMAL.replace("[proxy]\n", "[proxy]\nupgrade_socket = \"/run/sluice/upgrade.sock\"\n");
        assert_eq!(Config::parse(&with).unwrap().proxy.upgrade_socket.as_deref(), Some(Path::new("/run/sluice/upgrade.sock")));
        let long = MINIMAL.replace("[proxy]\n", &format!("[proxy]\nupgrade_socket = \"/{}\"\n", "x".repeat(120)));
        let e = Config::parse(&long).unwrap_err().to_string();
        assert!(e.contains("upgrade_socket"), "{e}");
    }

    #[test]
    fn bad_toml_is_an_error() {
        assert!(Config::parse("[proxy\nlisten=").is_err());
    }

    #[test]
    fn unsupported_plugin_is_rejected() {
        let e = Config::parse(&MINIMAL.replace("password = \"app\"\n[backend]", "password = \"app\"\nauth_plugin = \"ed25519\"\n[backend]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ed25519"), "{e}");
    }

    #[test]
    fn bad_node_address_is_rejected() {
        assert!(Config::parse(&MINIMAL.replace("127.0.0.1:3311", "nohostport")).is_err());
    }
}
