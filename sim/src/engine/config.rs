//! Server flavour and static configuration.
//!
//! Owns [`Flavour`] (MariaDB vs MySQL 8 behaviour switches: version strings,
//! GTID model, error wording, which variables / functions exist) and
//! [`ServerConfig`], the per-instance settings a harness chooses when it
//! builds a [`Server`](super::Server).

use std::collections::BTreeSet;

use super::gtid::Uuid;

/// Which real server the instance imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flavour {
    /// MariaDB (11.4-like): `domain-server-seq` GTIDs, `@@last_gtid`,
    /// `MASTER_GTID_WAIT`, `MASTER_USE_GTID`.
    MariaDb,
    /// MySQL 8.0: UUID GTID sets, `@@gtid_executed`, `session_track_gtids`,
    /// `WAIT_FOR_EXECUTED_GTID_SET`, `MASTER_AUTO_POSITION`.
    MySql8,
}

impl Flavour {
    /// Product name as used in error texts (`The MariaDB server is ...`).
    pub fn product(self) -> &'static str {
        match self {
            Flavour::MariaDb => "MariaDB",
            Flavour::MySql8 => "MySQL",
        }
    }

    pub fn default_version(self) -> &'static str {
        match self {
            Flavour::MariaDb => "11.4.2-MariaDB-log",
            Flavour::MySql8 => "8.0.36",
        }
    }

    pub fn default_version_comment(self) -> &'static str {
        match self {
            Flavour::MariaDb => "mariadb.org binary distribution",
            Flavour::MySql8 => "MySQL Community Server - GPL",
        }
    }

    /// Default collation id for text columns in result metadata
    /// (utf8mb4_general_ci = 45 for MariaDB, utf8mb4_0900_ai_ci = 255 for MySQL 8).
    pub fn default_collation_id(self) -> u16 {
        match self {
            Flavour::MariaDb => 45,
            Flavour::MySql8 => 255,
        }
    }

    pub fn is_mariadb(self) -> bool {
        self == Flavour::MariaDb
    }
}

/// Static configuration of one simulated server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub flavour: Flavour,
    /// `@@server_id`; MariaDB GTIDs carry it.
    pub server_id: u32,
    /// `@@server_uuid` (MySQL). `None` = derived deterministically from
    /// `server_id` (see [`Uuid::for_server_id`]); use
    /// [`Uuid::from_rng`] with the harness RNG for random-looking ones.
    pub server_uuid: Option<Uuid>,
    /// `@@hostname`.
    pub hostname: String,
    /// `@@port`.
    pub port: u16,
    /// `@@version`; `None` = flavour default.
    pub version: Option<String>,
    /// `@@version_comment`; `None` = flavour default.
    pub version_comment: Option<String>,
    /// Initial `@@read_only`.
    pub read_only: bool,
    /// Users that hold SUPER / READ_ONLY ADMIN and therefore bypass
    /// `read_only` (but not MySQL's `super_read_only`). Default: `root`.
    pub super_users: BTreeSet<String>,
    /// Unix time (ms) that simulated time 0 corresponds to; used by `NOW()`.
    pub epoch_unix_ms: u64,
    /// Databases that exist at boot (not replicated: every server built
    /// with the same config has them). System schemas are always added.
    pub databases: Vec<String>,
    /// `@@gtid_domain_id` (MariaDB).
    pub gtid_domain_id: u32,
    /// Initial `@@rpl_semi_sync_master_enabled`.
    pub semi_sync_enabled: bool,
    /// Initial `@@rpl_semi_sync_master_timeout` in ms (servers default 10000).
    pub semi_sync_timeout_ms: u64,
    /// Initial `@@innodb_lock_wait_timeout` in seconds (servers default 50).
    pub innodb_lock_wait_timeout_s: u64,
}

impl ServerConfig {
    pub fn new(flavour: Flavour, server_id: u32) -> ServerConfig {
        ServerConfig {
            flavour,
            server_id,
            server_uuid: None,
            hostname: format!("db{server_id}"),
            port: 3306,
            version: None,
            version_comment: None,
            read_only: false,
            super_users: ["root".to_string()].into_iter().collect(),
            epoch_unix_ms: 1_700_000_000_000,
            databases: Vec::new(),
            gtid_domain_id: 0,
            semi_sync_enabled: false,
            semi_sync_timeout_ms: 10_000,
            innodb_lock_wait_timeout_s: 50,
        }
    }

    pub fn mariadb(server_id: u32) -> ServerConfig {
        Self::new(Flavour::MariaDb, server_id)
    }

    pub fn mysql(server_id: u32) -> ServerConfig {
        Self::new(Flavour::MySql8, server_id)
    }

    /// Builder-style: add a boot-time database.
    pub fn with_database(mut self, db: &str) -> ServerConfig {
        self.databases.push(db.to_string());
        self
    }

    /// Builder-style: boot read-only (typical for replicas).
    pub fn with_read_only(mut self, ro: bool) -> ServerConfig {
        self.read_only = ro;
        self
    }

    pub fn version(&self) -> String {
        self.version
            .clone()
            .unwrap_or_else(|| self.flavour.default_version().to_string())
    }

    pub fn version_comment(&self) -> String {
        self.version_comment
            .clone()
            .unwrap_or_else(|| self.flavour.default_version_comment().to_string())
    }

    pub fn uuid(&self) -> Uuid {
        self.server_uuid
            .unwrap_or_else(|| Uuid::for_server_id(self.server_id))
    }
}
