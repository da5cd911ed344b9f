//! Statement results as the protocol layer needs them.
//!
//! Owns [`QueryResult`] (OK / result set / error), [`OkPacket`],
//! [`ResultSet`] with [`Column`] metadata (MySQL type codes, column flags,
//! collation ids), [`StateChange`] (session-state tracking payloads) and the
//! protocol constant tables [`status`], [`col_type`] and [`col_flags`].

use super::error::SqlError;
use super::value::Value;

/// `SERVER_STATUS_*` flags for OK / EOF packets.
pub mod status {
    pub const SERVER_STATUS_IN_TRANS: u16 = 0x0001;
    pub const SERVER_STATUS_AUTOCOMMIT: u16 = 0x0002;
    pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const SERVER_QUERY_NO_GOOD_INDEX_USED: u16 = 0x0010;
    pub const SERVER_QUERY_NO_INDEX_USED: u16 = 0x0020;
    pub const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
    pub const SERVER_STATUS_LAST_ROW_SENT: u16 = 0x0080;
    pub const SERVER_STATUS_DB_DROPPED: u16 = 0x0100;
    pub const SERVER_STATUS_NO_BACKSLASH_ESCAPES: u16 = 0x0200;
    pub const SERVER_STATUS_METADATA_CHANGED: u16 = 0x0400;
    pub const SERVER_QUERY_WAS_SLOW: u16 = 0x0800;
    pub const SERVER_PS_OUT_PARAMS: u16 = 0x1000;
    pub const SERVER_STATUS_IN_TRANS_READONLY: u16 = 0x2000;
    pub const SERVER_SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// `MYSQL_TYPE_*` column type codes.
pub mod col_type {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// Column definition flags.
pub mod col_flags {
    pub const NOT_NULL: u16 = 1;
    pub const PRI_KEY: u16 = 2;
    pub const UNIQUE_KEY: u16 = 4;
    pub const MULTIPLE_KEY: u16 = 8;
    pub const BLOB: u16 = 16;
    pub const UNSIGNED: u16 = 32;
    pub const ZEROFILL: u16 = 64;
    pub const BINARY: u16 = 128;
    pub const ENUM: u16 = 256;
    pub const AUTO_INCREMENT: u16 = 512;
    pub const TIMESTAMP: u16 = 1024;
    pub const SET: u16 = 2048;
    pub const NO_DEFAULT_VALUE: u16 = 4096;
    pub const ON_UPDATE_NOW: u16 = 8192;
    pub const NUM: u16 = 32768;
}

/// Collation id of `binary` (numbers, binary strings).
pub const BINARY_COLLATION: u16 = 63;

/// Result-set column metadata (a ColumnDefinition41 packet's fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Schema of the underlying table, empty for expressions.
    pub schema: String,
    /// Table alias as used in the query, empty for expressions.
    pub table: String,
    /// Real table name.
    pub org_table: String,
    /// Column name or alias as the client sees it.
    pub name: String,
    /// Real column name.
    pub org_name: String,
    /// Collation id.
    pub charset: u16,
    /// Maximum display length.
    pub length: u32,
    /// `MYSQL_TYPE_*` code, see [`col_type`].
    pub col_type: u8,
    /// Flags, see [`col_flags`].
    pub flags: u16,
    pub decimals: u8,
}

impl Column {
    /// An expression / SHOW column with no underlying table.
    pub fn expr(name: &str, col_type: u8, flags: u16, charset: u16, length: u32) -> Column {
        Column {
            schema: String::new(),
            table: String::new(),
            org_table: String::new(),
            name: name.to_string(),
            org_name: String::new(),
            charset,
            length,
            col_type,
            flags,
            decimals: 0,
        }
    }

    /// A text column as used by SHOW output.
    pub fn text(name: &str, collation: u16) -> Column {
        Column::expr(name, col_type::VAR_STRING, 0, collation, 256)
    }

    /// A BIGINT column as used by SHOW output.
    pub fn int(name: &str) -> Column {
        Column::expr(
            name,
            col_type::LONGLONG,
            col_flags::BINARY | col_flags::NUM,
            BINARY_COLLATION,
            21,
        )
    }
}

/// A piece of session state reported in an OK packet
/// (`CLIENT_SESSION_TRACK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// SESSION_TRACK_SYSTEM_VARIABLES (0): a tracked variable changed. For
    /// MariaDB, `last_gtid` after a commit arrives this way.
    SystemVariable { name: String, value: String },
    /// SESSION_TRACK_SCHEMA (1): the default database changed (USE).
    Schema(String),
    /// SESSION_TRACK_STATE_CHANGE (2): "1" — some session state changed.
    StateChanged,
    /// SESSION_TRACK_GTIDS (3): MySQL `session_track_gtids` payload (the GTID
    /// set text, e.g. `uuid:7` for OWN_GTID).
    Gtids(String),
    /// SESSION_TRACK_TRANSACTION_CHARACTERISTICS (4).
    TransactionCharacteristics(String),
    /// SESSION_TRACK_TRANSACTION_STATE (5): the 8-character MySQL trx state
    /// string (`T_______` …) when `session_track_transaction_info` is on.
    TransactionState(String),
}

/// The content of an OK packet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    /// Server status flags after the statement (without
    /// `SERVER_MORE_RESULTS_EXISTS`; the protocol layer adds that for all but
    /// the last result of a multi-statement).
    pub status_flags: u16,
    pub warnings: u16,
    /// Human readable info (`Rows matched: 1  Changed: 1  Warnings: 0`).
    pub info: String,
    pub session_state_changes: Vec<StateChange>,
}

/// A result set (text protocol).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    /// Status flags for the terminating EOF/OK packet.
    pub status_flags: u16,
    pub warnings: u16,
}

impl ResultSet {
    /// Index of a column by (case-insensitive) name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Convenience: cell `(row, column name)`.
    pub fn get(&self, row: usize, name: &str) -> Option<&Value> {
        let c = self.column_index(name)?;
        self.rows.get(row)?.get(c)
    }
}

/// The result of one statement.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryResult {
    Ok(OkPacket),
    ResultSet(ResultSet),
    Err(SqlError),
}

impl QueryResult {
    pub fn is_err(&self) -> bool {
        matches!(self, QueryResult::Err(_))
    }

    pub fn err(&self) -> Option<&SqlError> {
        match self {
            QueryResult::Err(e) => Some(e),
            _ => None,
        }
    }

    pub fn ok(&self) -> Option<&OkPacket> {
        match self {
            QueryResult::Ok(o) => Some(o),
            _ => None,
        }
    }

    pub fn result_set(&self) -> Option<&ResultSet> {
        match self {
            QueryResult::ResultSet(r) => Some(r),
            _ => None,
        }
    }
}
