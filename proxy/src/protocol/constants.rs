//! Protocol constants: capability flags, server status flags, command bytes, error codes.
//!
//! See <https://dev.mysql.com/doc/dev/mysql-server/latest/group__group__cs__capabilities__flags.html>,
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/mysql__com_8h.html> and
//! <https://mariadb.com/kb/en/mariadb-error-codes/>.

/// Capability flags (`CLIENT_*`).
pub mod cap {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
    /// Client-side only ("remember options after a failed connect"); servers announce it.
    pub const REMEMBER_OPTIONS: u32 = 1 << 31;

    /// MariaDB's extended capabilities (4 more bytes in the handshakes, used when the
    /// server leaves out LONG_PASSWORD, which MariaDB calls CLIENT_MYSQL).
    pub mod ext {
        /// Column definitions carry the extended type info (e.g. `format=json`).
        pub const EXTENDED_METADATA: u32 = 1 << 3;
        /// MARIADB_CLIENT_CACHE_METADATA: the client keeps a prepared statement's
        /// column definitions, and COM_STMT_EXECUTE result sets send them only when
        /// they changed (a flag byte after the column count says which).
        pub const CACHE_METADATA: u32 = 1 << 4;
        /// What Sluice relays: extended metadata only changes column definitions,
        /// which pass through undecoded; with cached metadata the response tracker
        /// reads the flag byte.
        pub const SUPPORTED: u32 = EXTENDED_METADATA | CACHE_METADATA;
    }

    /// Everything Sluice can relay faithfully. Deliberately absent: COMPRESS (not
    /// implemented), OPTIONAL_RESULTSET_METADATA and QUERY_ATTRIBUTES (MySQL-8-only
    /// extensions MariaDB does not speak), and MariaDB's extended capabilities other
    /// than those in [`ext::SUPPORTED`].
    pub const SUPPORTED: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | SSL
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | RESERVED
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CAN_HANDLE_EXPIRED_PASSWORDS
        | SESSION_TRACK
        | DEPRECATE_EOF
        | REMEMBER_OPTIONS;

    /// What Sluice's own connections (monitor, KILL, account reads) ask for: plain
    /// semantics, none of the flags that change how the server parses statements
    /// (NO_SCHEMA, IGNORE_SPACE, ODBC) or reports rows (FOUND_ROWS).
    pub const SERVICE: u32 = LONG_PASSWORD
        | LONG_FLAG
        | PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_RESULTS
        | PLUGIN_AUTH
        | PLUGIN_AUTH_LENENC_CLIENT_DATA
        | SESSION_TRACK
        | DEPRECATE_EOF;
}

/// Server status flags (`SERVER_*`) carried in OK and EOF packets.
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const NO_GOOD_INDEX_USED: u16 = 0x0010;
    pub const NO_INDEX_USED: u16 = 0x0020;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const LAST_ROW_SENT: u16 = 0x0080;
    pub const DB_DROPPED: u16 = 0x0100;
    pub const NO_BACKSLASH_ESCAPES: u16 = 0x0200;
    pub const METADATA_CHANGED: u16 = 0x0400;
    pub const QUERY_WAS_SLOW: u16 = 0x0800;
    pub const PS_OUT_PARAMS: u16 = 0x1000;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// Command bytes (`COM_*`), the first byte of every client command packet.
pub mod com {
    pub const SLEEP: u8 = 0x00;
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const CREATE_DB: u8 = 0x05;
    pub const DROP_DB: u8 = 0x06;
    pub const REFRESH: u8 = 0x07;
    pub const SHUTDOWN: u8 = 0x08;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const CONNECT: u8 = 0x0b;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const DEBUG: u8 = 0x0d;
    pub const PING: u8 = 0x0e;
    pub const TIME: u8 = 0x0f;
    pub const DELAYED_INSERT: u8 = 0x10;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const TABLE_DUMP: u8 = 0x13;
    pub const CONNECT_OUT: u8 = 0x14;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const DAEMON: u8 = 0x1d;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;

    /// The command's name as the server's process list shows it.
    pub fn name(cmd: u8) -> &'static str {
        match cmd {
            QUIT => "Quit",
            INIT_DB => "Init DB",
            QUERY => "Query",
            FIELD_LIST => "Field List",
            STATISTICS => "Statistics",
            PROCESS_KILL => "Kill",
            PING => "Ping",
            CHANGE_USER => "Change user",
            STMT_PREPARE => "Prepare",
            STMT_EXECUTE => "Execute",
            STMT_SEND_LONG_DATA => "Long Data",
            STMT_CLOSE => "Close stmt",
            STMT_RESET => "Reset stmt",
            SET_OPTION => "Set option",
            STMT_FETCH => "Fetch",
            RESET_CONNECTION => "Reset connection",
            _ => "Other",
        }
    }
}

/// Server error codes and their SQLSTATEs, as MySQL/MariaDB use them.
pub mod err {
    pub const ER_UNKNOWN_STMT_HANDLER: u16 = 1243;
    pub const ER_STMT_HAS_NO_OPEN_CURSOR: u16 = 1421;
    pub const ER_CON_COUNT_ERROR: u16 = 1040;
    pub const ER_PARSE_ERROR: u16 = 1064;
    /// "Unknown error" (SQLSTATE HY000).
    pub const ER_UNKNOWN_ERROR: u16 = 1105;
    pub const ER_HANDSHAKE_ERROR: u16 = 1043;
    pub const ER_DBACCESS_DENIED_ERROR: u16 = 1044;
    pub const ER_ACCESS_DENIED_ERROR: u16 = 1045;
    pub const ER_UNKNOWN_COM_ERROR: u16 = 1047;
    pub const ER_SERVER_SHUTDOWN: u16 = 1053;
    pub const ER_NO_SUCH_THREAD: u16 = 1094;
    pub const ER_KILL_DENIED_ERROR: u16 = 1095;
    pub const ER_NET_PACKET_TOO_LARGE: u16 = 1153;
    pub const ER_NET_READ_ERROR: u16 = 1158;
    pub const ER_NET_PACKETS_OUT_OF_ORDER: u16 = 1156;
    pub const ER_NET_UNCOMPRESS_ERROR: u16 = 1157;
    pub const ER_QUERY_INTERRUPTED: u16 = 1317;
    pub const ER_SECURE_TRANSPORT_REQUIRED: u16 = 3159;
    pub const ER_MALFORMED_PACKET: u16 = 1835;
    pub const ER_CONNECTION_KILLED: u16 = 1927;
    /// "Unable to connect to foreign data source" (SQLSTATE HY000): what Sluice answers
    /// when it cannot reach the backend a command needs. A server-side code: MariaDB
    /// Connector/C rejects ERR packets carrying client-side codes (2000–2999) as
    /// malformed.
    pub const ER_CONNECT_TO_FOREIGN_DATA_SOURCE: u16 = 1429;
    pub const ER_BAD_HOST_ERROR: u16 = 1042;
    pub const ER_NOT_SUPPORTED_AUTH_MODE: u16 = 1251;
    pub const ER_PLUGIN_IS_NOT_LOADED: u16 = 1524;
}
