//! System variable registry.
//!
//! Owns the static table of system variables the simulated servers know
//! ([`VarDef`]: scope, type, read-only-ness, which flavour has it), their
//! flavour/config dependent defaults, alias resolution
//! (`tx_read_only` → `transaction_read_only`, MySQL's `*_source_*` /
//! `*_replica_*` names) and value validation for `SET`. The *values* live
//! in the server (globals) and in each session; variables marked `dynamic`
//! are computed by the server on read (GTID positions, `last_gtid`,
//! `in_transaction`, …).

use super::config::{Flavour, ServerConfig};
use super::error::SqlError;
use super::value::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    Session,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Str,
    Enum(&'static [&'static str]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Avail {
    All,
    MariaDb,
    MySql,
}

/// Definition of one system variable.
#[derive(Clone, Copy, Debug)]
pub struct VarDef {
    pub name: &'static str,
    pub scope: Scope,
    pub kind: Kind,
    pub read_only: bool,
    pub avail: Avail,
    /// Value computed by the server on read rather than stored.
    pub dynamic: bool,
}

impl VarDef {
    pub fn available(&self, f: Flavour) -> bool {
        match self.avail {
            Avail::All => true,
            Avail::MariaDb => f == Flavour::MariaDb,
            Avail::MySql => f == Flavour::MySql8,
        }
    }
}

const ISOLATION: &[&str] = &[
    "READ-UNCOMMITTED",
    "READ-COMMITTED",
    "REPEATABLE-READ",
    "SERIALIZABLE",
];
const ON_OFF: &[&str] = &["OFF", "ON"];

macro_rules! v {
    ($name:expr, $scope:ident, $kind:expr, $ro:expr, $avail:ident, $dyn:expr) => {
        VarDef {
            name: $name,
            scope: Scope::$scope,
            kind: $kind,
            read_only: $ro,
            avail: Avail::$avail,
            dynamic: $dyn,
        }
    };
}

/// All known variables, sorted by name (SHOW VARIABLES order).
pub const VARS: &[VarDef] = &[
    v!(
        "auto_increment_increment",
        Both,
        Kind::Int,
        false,
        All,
        false
    ),
    v!("auto_increment_offset", Both, Kind::Int, false, All, false),
    v!("autocommit", Both, Kind::Bool, false, All, false),
    v!(
        "binlog_format",
        Both,
        Kind::Enum(&["MIXED", "STATEMENT", "ROW"]),
        false,
        All,
        false
    ),
    v!(
        "binlog_row_image",
        Both,
        Kind::Enum(&["MINIMAL", "NOBLOB", "FULL"]),
        false,
        All,
        false
    ),
    v!("character_set_client", Both, Kind::Str, false, All, false),
    v!(
        "character_set_connection",
        Both,
        Kind::Str,
        false,
        All,
        false
    ),
    v!("character_set_database", Both, Kind::Str, false, All, false),
    v!("character_set_results", Both, Kind::Str, false, All, false),
    v!("character_set_server", Both, Kind::Str, false, All, false),
    v!("collation_connection", Both, Kind::Str, false, All, false),
    v!("collation_database", Both, Kind::Str, false, All, false),
    v!("collation_server", Both, Kind::Str, false, All, false),
    v!("connect_timeout", Global, Kind::Int, false, All, false),
    v!("default_storage_engine", Both, Kind::Str, false, All, false),
    v!(
        "enforce_gtid_consistency",
        Global,
        Kind::Enum(&["OFF", "ON", "WARN"]),
        false,
        MySql,
        false
    ),
    v!("error_count", Session, Kind::Int, true, All, true),
    v!(
        "explicit_defaults_for_timestamp",
        Both,
        Kind::Bool,
        false,
        All,
        false
    ),
    v!("foreign_key_checks", Both, Kind::Bool, false, All, false),
    v!("group_concat_max_len", Both, Kind::Int, false, All, false),
    v!("gtid_binlog_pos", Global, Kind::Str, true, MariaDb, true),
    v!("gtid_binlog_state", Global, Kind::Str, true, MariaDb, true),
    v!("gtid_current_pos", Global, Kind::Str, true, MariaDb, true),
    v!("gtid_domain_id", Both, Kind::Int, false, MariaDb, false),
    v!("gtid_executed", Global, Kind::Str, true, MySql, true),
    v!(
        "gtid_mode",
        Global,
        Kind::Enum(&["OFF", "OFF_PERMISSIVE", "ON_PERMISSIVE", "ON"]),
        false,
        MySql,
        false
    ),
    v!("gtid_next", Session, Kind::Str, false, MySql, false),
    v!("gtid_purged", Global, Kind::Str, true, MySql, true),
    v!("gtid_slave_pos", Global, Kind::Str, false, MariaDb, true),
    v!(
        "gtid_strict_mode",
        Global,
        Kind::Bool,
        false,
        MariaDb,
        false
    ),
    v!("hostname", Global, Kind::Str, true, All, true),
    v!("identity", Session, Kind::Int, false, All, true),
    v!("in_transaction", Session, Kind::Int, true, MariaDb, true),
    v!("init_connect", Global, Kind::Str, false, All, false),
    v!(
        "innodb_flush_log_at_trx_commit",
        Global,
        Kind::Int,
        false,
        All,
        false
    ),
    v!(
        "innodb_lock_wait_timeout",
        Both,
        Kind::Int,
        false,
        All,
        false
    ),
    v!("interactive_timeout", Both, Kind::Int, false, All, false),
    v!("last_gtid", Session, Kind::Str, true, MariaDb, true),
    v!("last_insert_id", Session, Kind::Int, false, All, true),
    v!("license", Global, Kind::Str, true, All, false),
    v!("lock_wait_timeout", Both, Kind::Int, false, All, false),
    v!("log_bin", Global, Kind::Bool, true, All, false),
    v!("log_slave_updates", Global, Kind::Bool, true, All, false),
    v!(
        "lower_case_table_names",
        Global,
        Kind::Int,
        true,
        All,
        false
    ),
    v!("max_allowed_packet", Both, Kind::Int, false, All, false),
    v!("max_connections", Global, Kind::Int, false, All, false),
    v!("max_execution_time", Both, Kind::Int, false, MySql, false),
    v!("net_buffer_length", Both, Kind::Int, false, All, false),
    v!("net_read_timeout", Both, Kind::Int, false, All, false),
    v!("net_write_timeout", Both, Kind::Int, false, All, false),
    v!("performance_schema", Global, Kind::Bool, true, All, false),
    v!("port", Global, Kind::Int, true, All, true),
    v!("pseudo_thread_id", Session, Kind::Int, false, All, true),
    v!("query_cache_size", Global, Kind::Int, false, MariaDb, false),
    v!(
        "query_cache_type",
        Both,
        Kind::Enum(&["OFF", "ON", "DEMAND"]),
        false,
        MariaDb,
        false
    ),
    v!("read_only", Global, Kind::Bool, false, All, false),
    v!(
        "rpl_semi_sync_master_enabled",
        Global,
        Kind::Bool,
        false,
        All,
        false
    ),
    v!(
        "rpl_semi_sync_master_timeout",
        Global,
        Kind::Int,
        false,
        All,
        false
    ),
    v!(
        "rpl_semi_sync_master_wait_point",
        Global,
        Kind::Enum(&["AFTER_SYNC", "AFTER_COMMIT"]),
        false,
        All,
        false
    ),
    v!(
        "rpl_semi_sync_slave_enabled",
        Global,
        Kind::Bool,
        false,
        All,
        false
    ),
    v!("server_id", Global, Kind::Int, false, All, false),
    v!("server_uuid", Global, Kind::Str, true, MySql, true),
    v!(
        "session_track_gtids",
        Both,
        Kind::Enum(&["OFF", "OWN_GTID", "ALL_GTIDS"]),
        false,
        MySql,
        false
    ),
    v!("session_track_schema", Both, Kind::Bool, false, All, false),
    v!(
        "session_track_state_change",
        Both,
        Kind::Bool,
        false,
        All,
        false
    ),
    v!(
        "session_track_system_variables",
        Both,
        Kind::Str,
        false,
        All,
        false
    ),
    v!(
        "session_track_transaction_info",
        Both,
        Kind::Enum(&["OFF", "STATE", "CHARACTERISTICS"]),
        false,
        All,
        false
    ),
    v!("sql_auto_is_null", Both, Kind::Bool, false, All, false),
    v!("sql_log_bin", Session, Kind::Bool, false, All, false),
    v!("sql_mode", Both, Kind::Str, false, All, false),
    v!("sql_notes", Both, Kind::Bool, false, All, false),
    v!("sql_safe_updates", Both, Kind::Bool, false, All, false),
    v!("sql_select_limit", Both, Kind::Int, false, All, false),
    v!("super_read_only", Global, Kind::Bool, false, MySql, false),
    v!("sync_binlog", Global, Kind::Int, false, All, false),
    v!("system_time_zone", Global, Kind::Str, true, All, false),
    v!("time_zone", Both, Kind::Str, false, All, false),
    v!("timestamp", Session, Kind::Int, false, All, true),
    v!(
        "transaction_isolation",
        Both,
        Kind::Enum(ISOLATION),
        false,
        All,
        false
    ),
    v!("transaction_read_only", Both, Kind::Bool, false, All, false),
    v!("unique_checks", Both, Kind::Bool, false, All, false),
    v!("version", Global, Kind::Str, true, All, true),
    v!("version_comment", Global, Kind::Str, true, All, true),
    v!(
        "version_compile_machine",
        Global,
        Kind::Str,
        true,
        All,
        false
    ),
    v!("version_compile_os", Global, Kind::Str, true, All, false),
    v!("wait_timeout", Both, Kind::Int, false, All, false),
    v!("warning_count", Session, Kind::Int, true, All, true),
    v!("wsrep_on", Global, Kind::Bool, true, MariaDb, false),
];

/// Aliases: (alias, canonical, flavour availability of the alias).
const ALIASES: &[(&str, &str, Avail)] = &[
    ("tx_isolation", "transaction_isolation", Avail::MariaDb),
    ("tx_read_only", "transaction_read_only", Avail::MariaDb),
    ("log_replica_updates", "log_slave_updates", Avail::MySql),
    (
        "rpl_semi_sync_source_enabled",
        "rpl_semi_sync_master_enabled",
        Avail::MySql,
    ),
    (
        "rpl_semi_sync_source_timeout",
        "rpl_semi_sync_master_timeout",
        Avail::MySql,
    ),
    (
        "rpl_semi_sync_source_wait_point",
        "rpl_semi_sync_master_wait_point",
        Avail::MySql,
    ),
    (
        "rpl_semi_sync_replica_enabled",
        "rpl_semi_sync_slave_enabled",
        Avail::MySql,
    ),
];

fn avail_in(a: Avail, f: Flavour) -> bool {
    match a {
        Avail::All => true,
        Avail::MariaDb => f == Flavour::MariaDb,
        Avail::MySql => f == Flavour::MySql8,
    }
}

/// Look up a variable by (lower-case) name, resolving aliases.
pub fn lookup(f: Flavour, name: &str) -> Option<&'static VarDef> {
    let name = name.to_ascii_lowercase();
    let canonical = ALIASES
        .iter()
        .find(|(a, _, av)| *a == name && avail_in(*av, f))
        .map(|(_, c, _)| *c)
        .unwrap_or(name.as_str());
    VARS.iter().find(|d| d.name == canonical && d.available(f))
}

/// Every variable name visible in a flavour (canonical names and aliases),
/// sorted, paired with the canonical definition.
pub fn all_names(f: Flavour) -> Vec<(&'static str, &'static VarDef)> {
    let mut v: Vec<(&'static str, &'static VarDef)> = VARS
        .iter()
        .filter(|d| d.available(f))
        .map(|d| (d.name, d))
        .collect();
    for (a, c, av) in ALIASES {
        if avail_in(*av, f) {
            if let Some(d) = VARS.iter().find(|d| d.name == *c && d.available(f)) {
                v.push((a, d));
            }
        }
    }
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// Boot-time value of a stored (non-dynamic) variable.
pub fn default_value(cfg: &ServerConfig, d: &VarDef) -> Value {
    let maria = cfg.flavour == Flavour::MariaDb;
    let s = Value::str;
    let i = |x: i64| Value::Int(x);
    match d.name {
        "auto_increment_increment" | "auto_increment_offset" => i(1),
        "autocommit" => i(1),
        "binlog_format" => s("ROW"),
        "binlog_row_image" => s("FULL"),
        "explicit_defaults_for_timestamp"
        | "foreign_key_checks"
        | "unique_checks"
        | "sql_notes" => i(1),
        "sql_auto_is_null" | "sql_safe_updates" => i(0),
        "group_concat_max_len" => i(if maria { 1_048_576 } else { 1024 }),
        "innodb_flush_log_at_trx_commit" => i(1),
        "sql_select_limit" => Value::UInt(u64::MAX),
        "character_set_client"
        | "character_set_connection"
        | "character_set_database"
        | "character_set_results"
        | "character_set_server" => s("utf8mb4"),
        "collation_connection" | "collation_database" | "collation_server" => s(if maria {
            "utf8mb4_general_ci"
        } else {
            "utf8mb4_0900_ai_ci"
        }),
        "connect_timeout" => i(10),
        "default_storage_engine" => s("InnoDB"),
        "enforce_gtid_consistency" => s("ON"),
        "gtid_domain_id" => i(cfg.gtid_domain_id as i64),
        "gtid_mode" => s("ON"),
        "gtid_next" => s("AUTOMATIC"),
        "gtid_strict_mode" => i(0),
        "init_connect" => s(""),
        "innodb_lock_wait_timeout" => i(cfg.innodb_lock_wait_timeout_s as i64),
        "interactive_timeout" | "wait_timeout" => i(28_800),
        "license" => s("GPL"),
        "lock_wait_timeout" => i(if maria { 86_400 } else { 31_536_000 }),
        "log_bin" | "log_slave_updates" => i(1),
        "lower_case_table_names" => i(0),
        "max_allowed_packet" => i(if maria { 16_777_216 } else { 67_108_864 }),
        "max_connections" => i(151),
        "max_execution_time" => i(0),
        "net_buffer_length" => i(16_384),
        "net_read_timeout" => i(30),
        "net_write_timeout" => i(60),
        "performance_schema" => i(if maria { 0 } else { 1 }),
        "query_cache_size" => i(1_048_576),
        "query_cache_type" => s("OFF"),
        "read_only" => i(cfg.read_only as i64),
        "rpl_semi_sync_master_enabled" => i(cfg.semi_sync_enabled as i64),
        "rpl_semi_sync_master_timeout" => i(cfg.semi_sync_timeout_ms as i64),
        "rpl_semi_sync_master_wait_point" => s("AFTER_COMMIT"),
        "rpl_semi_sync_slave_enabled" => i(0),
        "server_id" => i(cfg.server_id as i64),
        "session_track_gtids" => s("OFF"),
        "session_track_schema" => i(1),
        "session_track_state_change" => i(0),
        "session_track_system_variables" => s(if maria {
            "autocommit,character_set_client,character_set_connection,character_set_results,time_zone"
        } else {
            "time_zone,autocommit,character_set_client,character_set_results,character_set_connection"
        }),
        "session_track_transaction_info" => s("OFF"),
        "sql_log_bin" => i(1),
        "sql_mode" => s(if maria {
            "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
        } else {
            "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
        }),
        "super_read_only" => i(0),
        "sync_binlog" => i(if maria { 0 } else { 1 }),
        "system_time_zone" => s("UTC"),
        "time_zone" => s("SYSTEM"),
        "transaction_isolation" => s("REPEATABLE-READ"),
        "transaction_read_only" => i(0),
        "version_compile_machine" => s("x86_64"),
        "version_compile_os" => s("Linux"),
        "wsrep_on" => i(0),
        _ => Value::Null,
    }
}

/// Validate and normalise a value assigned with SET.
pub fn normalize(d: &VarDef, name: &str, v: Value) -> Result<Value, SqlError> {
    let shown = || v.as_string().unwrap_or_else(|| "NULL".into());
    match d.kind {
        Kind::Bool => match &v {
            Value::Int(0) | Value::UInt(0) => Ok(Value::Int(0)),
            Value::Int(1) | Value::UInt(1) => Ok(Value::Int(1)),
            Value::Bytes(b) => {
                let s = String::from_utf8_lossy(b).to_ascii_uppercase();
                match s.as_str() {
                    "ON" | "TRUE" | "1" => Ok(Value::Int(1)),
                    "OFF" | "FALSE" | "0" => Ok(Value::Int(0)),
                    _ => Err(SqlError::wrong_value_for_var(name, &shown())),
                }
            }
            Value::Double(_) => Err(SqlError::wrong_type_for_var(name)),
            _ => Err(SqlError::wrong_value_for_var(name, &shown())),
        },
        Kind::Int => match &v {
            Value::Int(i) => Ok(Value::Int((*i).max(0))),
            Value::UInt(u) if *u > i64::MAX as u64 => Ok(Value::UInt(*u)),
            Value::UInt(u) => Ok(Value::Int(*u as i64)),
            Value::Double(dd) => Ok(Value::Int(dd.round().max(0.0) as i64)),
            _ => Err(SqlError::wrong_type_for_var(name)),
        },
        Kind::Enum(opts) => match &v {
            Value::Bytes(b) => {
                let s = String::from_utf8_lossy(b);
                opts.iter()
                    .find(|o| o.eq_ignore_ascii_case(&s))
                    .map(Value::str)
                    .ok_or_else(|| SqlError::wrong_value_for_var(name, &s))
            }
            Value::Int(i) if *i >= 0 && (*i as usize) < opts.len() => {
                Ok(Value::str(opts[*i as usize]))
            }
            Value::UInt(u) if (*u as usize) < opts.len() => Ok(Value::str(opts[*u as usize])),
            _ => Err(SqlError::wrong_value_for_var(name, &shown())),
        },
        Kind::Str => match v {
            // e.g. Connector/J's `SET character_set_results = NULL`
            Value::Null if d.name == "character_set_results" => Ok(Value::Null),
            Value::Null => Err(SqlError::wrong_value_for_var(name, "NULL")),
            other => Ok(Value::Bytes(other.to_text().unwrap())),
        },
    }
}

/// The text form used by SHOW VARIABLES and the session tracker
/// (booleans as `ON`/`OFF`).
pub fn show_text(d: &VarDef, v: &Value) -> String {
    match (d.kind, v) {
        (Kind::Bool, v) => ON_OFF[v.truthy().unwrap_or(false) as usize].to_string(),
        (_, Value::Null) => String::new(),
        (_, v) => v.as_string().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_table_is_sorted_and_unique() {
        for w in VARS.windows(2) {
            assert!(w[0].name < w[1].name, "{} !< {}", w[0].name, w[1].name);
        }
    }

    #[test]
    fn flavour_specific_variables_and_aliases() {
        assert!(lookup(Flavour::MariaDb, "last_gtid").is_some());
        assert!(lookup(Flavour::MySql8, "last_gtid").is_none());
        assert!(lookup(Flavour::MySql8, "gtid_executed").is_some());
        assert_eq!(
            lookup(Flavour::MariaDb, "TX_READ_ONLY").unwrap().name,
            "transaction_read_only"
        );
        assert!(lookup(Flavour::MySql8, "tx_read_only").is_none());
        assert_eq!(
            lookup(Flavour::MySql8, "rpl_semi_sync_source_enabled")
                .unwrap()
                .name,
            "rpl_semi_sync_master_enabled"
        );
    }

    #[test]
    fn set_values_are_validated_like_the_server() {
        let ac = lookup(Flavour::MySql8, "autocommit").unwrap();
        assert_eq!(
            normalize(ac, "autocommit", Value::str("off")).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            normalize(ac, "autocommit", Value::Int(2))
                .unwrap_err()
                .message,
            "Variable 'autocommit' can't be set to the value of '2'"
        );
        let tg = lookup(Flavour::MySql8, "session_track_gtids").unwrap();
        assert_eq!(
            normalize(tg, "session_track_gtids", Value::str("own_gtid")).unwrap(),
            Value::str("OWN_GTID")
        );
        let mp = lookup(Flavour::MySql8, "max_allowed_packet").unwrap();
        assert_eq!(
            normalize(mp, "max_allowed_packet", Value::str("x"))
                .unwrap_err()
                .code,
            1232
        );
    }
}
