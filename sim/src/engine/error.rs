//! Errors.
//!
//! Owns [`SqlError`] — an error as the server would put it in an ERR packet
//! (error code, SQLSTATE, message text exactly as MariaDB / MySQL word it) —
//! the constructors for every error the engine raises (flavour-aware where the
//! servers differ), and [`SimError`], the API-misuse error of the
//! [`Server`](super::Server) façade (unknown session, session busy, …).

use super::config::Flavour;
use super::SessionId;

/// An SQL-level error: what goes into the protocol's ERR packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ERROR {code} ({state}): {message}")]
pub struct SqlError {
    /// Server error number (e.g. 1062).
    pub code: u16,
    /// Five-character SQLSTATE (e.g. `23000`).
    pub state: String,
    /// Human-readable message, byte-for-byte as the real server words it.
    pub message: String,
}

/// Errors of the engine API itself (not SQL errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("unknown session {0} (closed, killed or lost in a crash)")]
    UnknownSession(SessionId),
    #[error("session {0} has a blocked statement pending; call resume() instead")]
    SessionBusy(SessionId),
    #[error("session {0} has no blocked statement to resume")]
    NothingPending(SessionId),
}

/// Error numbers used by the engine.
pub mod codes {
    pub const ER_DB_CREATE_EXISTS: u16 = 1007;
    pub const ER_DB_DROP_EXISTS: u16 = 1008;
    pub const ER_NO_DB_ERROR: u16 = 1046;
    pub const ER_BAD_NULL_ERROR: u16 = 1048;
    pub const ER_BAD_DB_ERROR: u16 = 1049;
    pub const ER_TABLE_EXISTS_ERROR: u16 = 1050;
    pub const ER_BAD_TABLE_ERROR: u16 = 1051;
    pub const ER_BAD_FIELD_ERROR: u16 = 1054;
    pub const ER_DUP_FIELDNAME: u16 = 1060;
    pub const ER_DUP_ENTRY: u16 = 1062;
    pub const ER_PARSE_ERROR: u16 = 1064;
    pub const ER_EMPTY_QUERY: u16 = 1065;
    pub const ER_MULTIPLE_PRI_KEY: u16 = 1068;
    pub const ER_WRONG_AUTO_KEY: u16 = 1075;
    pub const ER_NO_SUCH_THREAD: u16 = 1094;
    pub const ER_TABLE_MUST_HAVE_COLUMNS: u16 = 1113;
    pub const ER_WRONG_VALUE_COUNT_ON_ROW: u16 = 1136;
    pub const ER_NO_SUCH_TABLE: u16 = 1146;
    pub const ER_KEY_NOT_FOUND: u16 = 1032;
    pub const ER_LOCK_OR_ACTIVE_TRANSACTION: u16 = 1192;
    pub const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
    pub const ER_SLAVE_MUST_STOP: u16 = 1198;
    pub const ER_BAD_SLAVE: u16 = 1200;
    pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const ER_LOCK_DEADLOCK: u16 = 1213;
    pub const ER_LOCAL_VARIABLE: u16 = 1228;
    pub const ER_GLOBAL_VARIABLE: u16 = 1229;
    pub const ER_WRONG_VALUE_FOR_VAR: u16 = 1231;
    pub const ER_WRONG_TYPE_FOR_VAR: u16 = 1232;
    pub const ER_NOT_SUPPORTED_YET: u16 = 1235;
    pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;
    pub const ER_INCORRECT_GLOBAL_LOCAL_VAR: u16 = 1238;
    pub const ER_WARN_DATA_OUT_OF_RANGE: u16 = 1264;
    pub const ER_OPTION_PREVENTS_STATEMENT: u16 = 1290;
    pub const ER_SP_DOES_NOT_EXIST: u16 = 1305;
    pub const ER_QUERY_INTERRUPTED: u16 = 1317;
    pub const ER_NO_DEFAULT_FOR_FIELD: u16 = 1364;
    pub const ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: u16 = 1366;
    pub const ER_DATA_TOO_LONG: u16 = 1406;
    pub const ER_CANT_CHANGE_TX_CHARACTERISTICS: u16 = 1568;
    pub const ER_DATA_OUT_OF_RANGE: u16 = 1690;
    pub const ER_MALFORMED_GTID_SET_SPECIFICATION: u16 = 1772;
    pub const ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION: u16 = 1792;
    pub const ER_CONNECTION_KILLED: u16 = 1927;
    pub const ER_INCORRECT_GTID_STATE: u16 = 1941;
    pub const ER_LOCK_NOWAIT: u16 = 3572;
    pub const ER_WRONG_ARGUMENTS: u16 = 1210;
    pub const ER_SLAVE_WAS_RUNNING: u16 = 1254;
    pub const ER_SLAVE_WAS_NOT_RUNNING: u16 = 1255;
    pub const ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG: u16 = 13114;
}

use codes::*;

/// Truncate like the server's `%-.Ns` format (by characters).
fn trunc(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl SqlError {
    pub fn new(code: u16, state: &str, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            state: state.to_string(),
            message: message.into(),
        }
    }

    /// 1290: writes refused because of `--read-only`.
    pub fn read_only(f: Flavour) -> SqlError {
        Self::option_prevents(f, "--read-only")
    }

    /// 1290: writes refused because of `--super-read-only` (MySQL only).
    pub fn super_read_only(f: Flavour) -> SqlError {
        Self::option_prevents(f, "--super-read-only")
    }

    pub fn option_prevents(f: Flavour, option: &str) -> SqlError {
        Self::new(
            ER_OPTION_PREVENTS_STATEMENT,
            "HY000",
            format!(
                "The {} server is running with the {} option so it cannot execute this statement",
                f.product(),
                option
            ),
        )
    }

    /// Error 1062. MySQL 8 qualifies the key name with the table name,
    /// `'t.PRIMARY'`; MariaDB does not, `'PRIMARY'`.
    pub fn dup_entry(f: Flavour, entry: &str, table: &str, key: &str) -> SqlError {
        let key = match f {
            Flavour::MariaDb => key.to_string(),
            Flavour::MySql8 => format!("{table}.{key}"),
        };
        Self::new(
            ER_DUP_ENTRY,
            "23000",
            format!("Duplicate entry '{}' for key '{}'", trunc(entry, 192), key),
        )
    }

    /// 1146.
    pub fn no_such_table(db: &str, table: &str) -> SqlError {
        Self::new(
            ER_NO_SUCH_TABLE,
            "42S02",
            format!("Table '{db}.{table}' doesn't exist"),
        )
    }

    /// 1064. `near` is the rest of the query text from the offending token.
    pub fn parse_error(f: Flavour, near: &str, line: usize) -> SqlError {
        Self::new(
            ER_PARSE_ERROR,
            "42000",
            format!(
                "You have an error in your SQL syntax; check the manual that corresponds to your {} server version for the right syntax to use near '{}' at line {}",
                f.product(),
                trunc(near, 80),
                line
            ),
        )
    }

    /// 1065.
    pub fn empty_query() -> SqlError {
        Self::new(ER_EMPTY_QUERY, "42000", "Query was empty")
    }

    /// 1050.
    pub fn table_exists(table: &str) -> SqlError {
        Self::new(
            ER_TABLE_EXISTS_ERROR,
            "42S01",
            format!("Table '{table}' already exists"),
        )
    }

    /// 1051.
    pub fn bad_table(db: &str, table: &str) -> SqlError {
        Self::new(
            ER_BAD_TABLE_ERROR,
            "42S02",
            format!("Unknown table '{db}.{table}'"),
        )
    }

    /// 1054. `context` is e.g. `field list`, `where clause`, `order clause`.
    pub fn unknown_column(col: &str, context: &str) -> SqlError {
        Self::new(
            ER_BAD_FIELD_ERROR,
            "42S22",
            format!("Unknown column '{col}' in '{context}'"),
        )
    }

    /// 1213.
    pub fn deadlock() -> SqlError {
        Self::new(
            ER_LOCK_DEADLOCK,
            "40001",
            "Deadlock found when trying to get lock; try restarting transaction",
        )
    }

    /// 1205.
    pub fn lock_wait_timeout() -> SqlError {
        Self::new(
            ER_LOCK_WAIT_TIMEOUT,
            "HY000",
            "Lock wait timeout exceeded; try restarting transaction",
        )
    }

    /// NOWAIT failure: MySQL 3572; MariaDB reports a lock wait timeout.
    pub fn lock_nowait(f: Flavour) -> SqlError {
        match f {
            Flavour::MySql8 => Self::new(
                ER_LOCK_NOWAIT,
                "HY000",
                "Statement aborted because lock(s) could not be acquired immediately and NOWAIT is set.",
            ),
            Flavour::MariaDb => Self::lock_wait_timeout(),
        }
    }

    /// 1049.
    pub fn bad_db(db: &str) -> SqlError {
        Self::new(ER_BAD_DB_ERROR, "42000", format!("Unknown database '{db}'"))
    }

    /// 1007.
    pub fn db_create_exists(db: &str) -> SqlError {
        Self::new(
            ER_DB_CREATE_EXISTS,
            "HY000",
            format!("Can't create database '{db}'; database exists"),
        )
    }

    /// 1008.
    pub fn db_drop_exists(db: &str) -> SqlError {
        Self::new(
            ER_DB_DROP_EXISTS,
            "HY000",
            format!("Can't drop database '{db}'; database doesn't exist"),
        )
    }

    /// 1046.
    pub fn no_db() -> SqlError {
        Self::new(ER_NO_DB_ERROR, "3D000", "No database selected")
    }

    /// 1048.
    pub fn bad_null(col: &str) -> SqlError {
        Self::new(
            ER_BAD_NULL_ERROR,
            "23000",
            format!("Column '{col}' cannot be null"),
        )
    }

    /// 1364.
    pub fn no_default(col: &str) -> SqlError {
        Self::new(
            ER_NO_DEFAULT_FOR_FIELD,
            "HY000",
            format!("Field '{col}' doesn't have a default value"),
        )
    }

    /// 1136.
    pub fn value_count(row: usize) -> SqlError {
        Self::new(
            ER_WRONG_VALUE_COUNT_ON_ROW,
            "21S01",
            format!("Column count doesn't match value count at row {row}"),
        )
    }

    /// 1264.
    pub fn out_of_range(col: &str, row: usize) -> SqlError {
        Self::new(
            ER_WARN_DATA_OUT_OF_RANGE,
            "22003",
            format!("Out of range value for column '{col}' at row {row}"),
        )
    }

    /// 1406.
    pub fn data_too_long(col: &str, row: usize) -> SqlError {
        Self::new(
            ER_DATA_TOO_LONG,
            "22001",
            format!("Data too long for column '{col}' at row {row}"),
        )
    }

    /// 1366.
    pub fn incorrect_value(kind: &str, value: &str, col: &str, row: usize) -> SqlError {
        Self::new(
            ER_TRUNCATED_WRONG_VALUE_FOR_FIELD,
            "HY000",
            format!(
                "Incorrect {kind} value: '{}' for column '{col}' at row {row}",
                trunc(value, 128)
            ),
        )
    }

    /// 1690.
    pub fn bigint_out_of_range(expr: &str) -> SqlError {
        Self::new(
            ER_DATA_OUT_OF_RANGE,
            "22003",
            format!("BIGINT value is out of range in '{expr}'"),
        )
    }

    /// 1792.
    pub fn read_only_transaction() -> SqlError {
        Self::new(
            ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION,
            "25006",
            "Cannot execute statement in a READ ONLY transaction.",
        )
    }

    /// 1568.
    pub fn cant_change_tx_characteristics() -> SqlError {
        Self::new(
            ER_CANT_CHANGE_TX_CHARACTERISTICS,
            "25001",
            "Transaction characteristics can't be changed while a transaction is in progress",
        )
    }

    /// 1192.
    pub fn lock_or_active_transaction() -> SqlError {
        Self::new(
            ER_LOCK_OR_ACTIVE_TRANSACTION,
            "HY000",
            "Can't execute the given command because you have active locked tables or an active transaction",
        )
    }

    /// 1193.
    pub fn unknown_system_variable(name: &str) -> SqlError {
        Self::new(
            ER_UNKNOWN_SYSTEM_VARIABLE,
            "HY000",
            format!("Unknown system variable '{name}'"),
        )
    }

    /// 1229: a GLOBAL-only variable set without GLOBAL.
    pub fn global_variable(name: &str) -> SqlError {
        Self::new(
            ER_GLOBAL_VARIABLE,
            "HY000",
            format!("Variable '{name}' is a GLOBAL variable and should be set with SET GLOBAL"),
        )
    }

    /// 1228: a SESSION-only variable set with GLOBAL.
    pub fn local_variable(name: &str) -> SqlError {
        Self::new(
            ER_LOCAL_VARIABLE,
            "HY000",
            format!("Variable '{name}' is a SESSION variable and can't be used with SET GLOBAL"),
        )
    }

    /// 1238: `Variable 'x' is a read only variable` / `... is a GLOBAL variable`.
    pub fn incorrect_global_local_var(name: &str, what: &str) -> SqlError {
        Self::new(
            ER_INCORRECT_GLOBAL_LOCAL_VAR,
            "HY000",
            format!("Variable '{name}' is a {what} variable"),
        )
    }

    /// 1231.
    pub fn wrong_value_for_var(name: &str, value: &str) -> SqlError {
        Self::new(
            ER_WRONG_VALUE_FOR_VAR,
            "42000",
            format!(
                "Variable '{name}' can't be set to the value of '{}'",
                trunc(value, 200)
            ),
        )
    }

    /// 1232.
    pub fn wrong_type_for_var(name: &str) -> SqlError {
        Self::new(
            ER_WRONG_TYPE_FOR_VAR,
            "42000",
            format!("Incorrect argument type to variable '{name}'"),
        )
    }

    /// 1235.
    pub fn not_supported(f: Flavour, what: &str) -> SqlError {
        Self::new(
            ER_NOT_SUPPORTED_YET,
            "42000",
            format!(
                "This version of {} doesn't yet support '{what}'",
                f.product()
            ),
        )
    }

    /// 1305.
    pub fn function_does_not_exist(db: &str, name: &str) -> SqlError {
        Self::new(
            ER_SP_DOES_NOT_EXIST,
            "42000",
            format!("FUNCTION {db}.{name} does not exist"),
        )
    }

    /// 1305 for savepoints.
    pub fn savepoint_does_not_exist(name: &str) -> SqlError {
        Self::new(
            ER_SP_DOES_NOT_EXIST,
            "42000",
            format!("SAVEPOINT {name} does not exist"),
        )
    }

    /// 1094.
    pub fn no_such_thread(id: u64) -> SqlError {
        Self::new(
            ER_NO_SUCH_THREAD,
            "HY000",
            format!("Unknown thread id: {id}"),
        )
    }

    /// 1317.
    pub fn query_interrupted() -> SqlError {
        Self::new(
            ER_QUERY_INTERRUPTED,
            "70100",
            "Query execution was interrupted",
        )
    }

    /// 1927 (MariaDB sends this before closing a killed connection).
    pub fn connection_killed() -> SqlError {
        Self::new(ER_CONNECTION_KILLED, "70100", "Connection was killed")
    }

    /// 1198.
    pub fn slave_must_stop(f: Flavour) -> SqlError {
        let msg = match f {
            Flavour::MariaDb => "This operation cannot be performed as you have a running slave ''; run STOP SLAVE '' first",
            Flavour::MySql8 => "This operation cannot be performed with a running slave; run STOP SLAVE first",
        };
        Self::new(ER_SLAVE_MUST_STOP, "HY000", msg)
    }

    /// 1200: START SLAVE without CHANGE MASTER.
    pub fn bad_slave(f: Flavour) -> SqlError {
        let msg = match f {
            Flavour::MariaDb => "Misconfigured slave: MASTER_HOST was not set; Fix in config file or with CHANGE MASTER TO",
            Flavour::MySql8 => "The server is not configured as slave; fix in config file or with CHANGE MASTER TO",
        };
        Self::new(ER_BAD_SLAVE, "HY000", msg)
    }

    /// 1772.
    pub fn malformed_gtid_set(spec: &str) -> SqlError {
        Self::new(
            ER_MALFORMED_GTID_SET_SPECIFICATION,
            "HY000",
            format!("Malformed GTID set specification '{}'.", trunc(spec, 200)),
        )
    }

    /// 1941 (MariaDB).
    pub fn incorrect_gtid_state() -> SqlError {
        Self::new(
            ER_INCORRECT_GTID_STATE,
            "HY000",
            "Could not parse GTID list",
        )
    }

    /// 1210.
    pub fn wrong_arguments(func: &str) -> SqlError {
        Self::new(
            ER_WRONG_ARGUMENTS,
            "HY000",
            format!("Incorrect arguments to {func}"),
        )
    }

    /// 1032 (replica applier).
    pub fn key_not_found(table: &str) -> SqlError {
        Self::new(
            ER_KEY_NOT_FOUND,
            "HY000",
            format!("Can't find record in '{table}'"),
        )
    }

    /// 1236 as sent by a MariaDB primary when the replica's GTID is unknown.
    /// `diverged` selects the "master has higher sequence numbers" variant.
    pub fn mariadb_gtid_not_in_binlog(gtid: &str, diverged: bool) -> SqlError {
        let mut msg = format!("Error: connecting slave requested to start from GTID {gtid}, which is not in the master's binlog");
        if diverged {
            msg.push_str(". Since the master's binlog contains GTIDs with higher sequence numbers, it probably means that the slave has diverged due to executing extra erroneous transactions");
        }
        Self::new(ER_MASTER_FATAL_ERROR_READING_BINLOG, "HY000", msg)
    }

    /// 1236 as sent by a MySQL source when the replica has GTIDs of the
    /// source's own UUID that the source does not have.
    pub fn mysql_replica_has_more_gtids() -> SqlError {
        Self::new(
            ER_MASTER_FATAL_ERROR_READING_BINLOG,
            "HY000",
            "Replica has more GTIDs than the source has, using the source's SERVER_UUID. This may indicate that the end of the binary log was truncated or that the last binary log file was lost, e.g., after a power or disk failure when sync_binlog != 1. The source may or may not have rolled back transactions that were already replicated to the replica. Suggest to replicate any transactions that source has rolled back from replica to source, and/or commit empty transactions on source to account for transactions that have been committed on source but are not included in GTID_EXECUTED.",
        )
    }

    /// Whether this error rolls back the whole transaction (deadlock) rather
    /// than only the statement.
    pub fn rolls_back_transaction(&self) -> bool {
        self.code == ER_LOCK_DEADLOCK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_text_names_the_product() {
        assert_eq!(
            SqlError::read_only(Flavour::MariaDb).message,
            "The MariaDB server is running with the --read-only option so it cannot execute this statement"
        );
        let e = SqlError::read_only(Flavour::MySql8);
        assert_eq!(e.code, 1290);
        assert_eq!(e.state, "HY000");
        assert_eq!(
            e.message,
            "The MySQL server is running with the --read-only option so it cannot execute this statement"
        );
    }

    #[test]
    fn dup_entry_key_name_differs_by_flavour() {
        assert_eq!(
            SqlError::dup_entry(Flavour::MariaDb, "1", "t", "PRIMARY").message,
            "Duplicate entry '1' for key 'PRIMARY'"
        );
        assert_eq!(
            SqlError::dup_entry(Flavour::MySql8, "1", "t", "PRIMARY").message,
            "Duplicate entry '1' for key 't.PRIMARY'"
        );
    }

    #[test]
    fn parse_error_truncates_near_text_to_80_chars() {
        let near: String = "x".repeat(100);
        let e = SqlError::parse_error(Flavour::MariaDb, &near, 1);
        assert!(e
            .message
            .contains(&format!("near '{}' at line 1", "x".repeat(80))));
        assert!(e.message.contains("your MariaDB server version"));
    }

    #[test]
    fn display_looks_like_the_mysql_client() {
        assert_eq!(
            SqlError::no_such_table("db", "t").to_string(),
            "ERROR 1146 (42S02): Table 'db.t' doesn't exist"
        );
    }
}
