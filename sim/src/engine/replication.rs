//! Replication data model.
//!
//! Owns [`BinlogEvent`] (one committed transaction as logical row / DDL
//! changes plus its GTID), the replica-side state ([`ReplicaState`]: the
//! configured source from `CHANGE MASTER TO`, IO/SQL thread flags, the relay
//! log of received-but-unapplied events, errors) and the column layouts of
//! `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS` / `SHOW ALL SLAVES STATUS`
//! for both flavours.
//!
//! Replication is *driven by the harness*: nothing here talks to another
//! server. The harness moves events with
//! [`Server::binlog_events_after`](super::Server::binlog_events_after) on the
//! primary and [`Server::receive_events`](super::Server::receive_events) /
//! [`Server::apply_relay_log`](super::Server::apply_relay_log) (or the
//! one-shot [`Server::pull_from`](super::Server::pull_from)) on the replica,
//! deciding itself about latency, partitions and ordering.

use std::collections::VecDeque;
use std::sync::Arc;

use super::error::SqlError;
use super::gtid::{Gtid, GtidPosition, Uuid};
use super::storage::Change;

/// One transaction in a binlog.
#[derive(Clone, Debug, PartialEq)]
pub struct BinlogEvent {
    pub gtid: Gtid,
    /// server_id of the server that originally committed it.
    pub origin_server_id: u32,
    /// Simulated commit time on the origin (ms), for Seconds_Behind_Master.
    pub commit_time_ms: u64,
    /// Row-based changes (binlog_format=ROW, full row images) and DDL.
    pub changes: Arc<Vec<Change>>,
    /// Binlog file of the server holding this copy (`mysql-bin.000001`).
    pub log_file: String,
    /// Fake end position in that file.
    pub end_log_pos: u64,
}

/// `MASTER_USE_GTID` (MariaDB); MySQL's `MASTER_AUTO_POSITION=1` is
/// modelled as [`UseGtid::CurrentPos`] over `gtid_executed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UseGtid {
    SlavePos,
    CurrentPos,
    No,
}

impl UseGtid {
    pub fn as_str(self) -> &'static str {
        match self {
            UseGtid::SlavePos => "Slave_Pos",
            UseGtid::CurrentPos => "Current_Pos",
            UseGtid::No => "No",
        }
    }
}

/// Connection parameters recorded by `CHANGE MASTER TO`. The harness reads
/// them to decide which server to replicate from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSource {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub use_gtid: UseGtid,
    pub auto_position: bool,
    pub connect_retry: u64,
}

impl Default for ReplicaSource {
    fn default() -> Self {
        ReplicaSource {
            host: String::new(),
            port: 3306,
            user: String::new(),
            use_gtid: UseGtid::SlavePos,
            auto_position: true,
            connect_retry: 60,
        }
    }
}

/// Replica-side replication state.
#[derive(Clone, Debug, Default)]
pub struct ReplicaState {
    pub source: Option<ReplicaSource>,
    pub io_running: bool,
    pub sql_running: bool,
    /// Harness-controlled: the IO thread reached the source
    /// (`Slave_IO_Running: Yes` vs `Connecting`).
    pub io_connected: bool,
    pub last_io_error: Option<SqlError>,
    pub last_sql_error: Option<SqlError>,
    /// Received, not yet applied events.
    pub relay: VecDeque<BinlogEvent>,
    /// Position the IO thread has received up to (`Gtid_IO_Pos` /
    /// `Retrieved_Gtid_Set`); `None` until it first connects.
    pub received: Option<GtidPosition>,
    pub master_server_id: u32,
    pub master_uuid: Option<Uuid>,
    pub master_log_file: String,
    pub read_master_log_pos: u64,
    pub relay_master_log_file: String,
    pub exec_master_log_pos: u64,
    pub applied_events: u64,
}

impl ReplicaState {
    pub fn is_configured(&self) -> bool {
        self.source.is_some()
    }
}

/// SHOW SLAVE STATUS columns, MariaDB.
pub const MARIADB_SLAVE_STATUS_COLUMNS: &[&str] = &[
    "Slave_IO_State",
    "Master_Host",
    "Master_User",
    "Master_Port",
    "Connect_Retry",
    "Master_Log_File",
    "Read_Master_Log_Pos",
    "Relay_Log_File",
    "Relay_Log_Pos",
    "Relay_Master_Log_File",
    "Slave_IO_Running",
    "Slave_SQL_Running",
    "Replicate_Rewrite_DB",
    "Replicate_Do_DB",
    "Replicate_Ignore_DB",
    "Replicate_Do_Table",
    "Replicate_Ignore_Table",
    "Replicate_Wild_Do_Table",
    "Replicate_Wild_Ignore_Table",
    "Last_Errno",
    "Last_Error",
    "Skip_Counter",
    "Exec_Master_Log_Pos",
    "Relay_Log_Space",
    "Until_Condition",
    "Until_Log_File",
    "Until_Log_Pos",
    "Master_SSL_Allowed",
    "Master_SSL_CA_File",
    "Master_SSL_CA_Path",
    "Master_SSL_Cert",
    "Master_SSL_Cipher",
    "Master_SSL_Key",
    "Seconds_Behind_Master",
    "Master_SSL_Verify_Server_Cert",
    "Last_IO_Errno",
    "Last_IO_Error",
    "Last_SQL_Errno",
    "Last_SQL_Error",
    "Replicate_Ignore_Server_Ids",
    "Master_Server_Id",
    "Master_SSL_Crl",
    "Master_SSL_Crlpath",
    "Using_Gtid",
    "Gtid_IO_Pos",
    "Replicate_Do_Domain_Ids",
    "Replicate_Ignore_Domain_Ids",
    "Parallel_Mode",
    "SQL_Delay",
    "SQL_Remaining_Delay",
    "Slave_SQL_Running_State",
    "Slave_DDL_Groups",
    "Slave_Non_Transactional_Groups",
    "Slave_Transactional_Groups",
];

/// Extra leading columns of SHOW ALL SLAVES STATUS (MariaDB).
pub const MARIADB_ALL_SLAVES_PREFIX: &[&str] = &["Connection_name", "Slave_SQL_State"];

/// Extra trailing columns of SHOW ALL SLAVES STATUS (MariaDB).
pub const MARIADB_ALL_SLAVES_SUFFIX: &[&str] = &[
    "Retried_transactions",
    "Max_relay_log_size",
    "Executed_log_entries",
    "Slave_received_heartbeats",
    "Slave_heartbeat_period",
    "Gtid_Slave_Pos",
];

/// SHOW SLAVE STATUS columns, MySQL 8.0. SHOW REPLICA STATUS uses the same
/// list with `Slave`→`Replica`, `Master`/`master`→`Source`.
pub const MYSQL_SLAVE_STATUS_COLUMNS: &[&str] = &[
    "Slave_IO_State",
    "Master_Host",
    "Master_User",
    "Master_Port",
    "Connect_Retry",
    "Master_Log_File",
    "Read_Master_Log_Pos",
    "Relay_Log_File",
    "Relay_Log_Pos",
    "Relay_Master_Log_File",
    "Slave_IO_Running",
    "Slave_SQL_Running",
    "Replicate_Do_DB",
    "Replicate_Ignore_DB",
    "Replicate_Do_Table",
    "Replicate_Ignore_Table",
    "Replicate_Wild_Do_Table",
    "Replicate_Wild_Ignore_Table",
    "Last_Errno",
    "Last_Error",
    "Skip_Counter",
    "Exec_Master_Log_Pos",
    "Relay_Log_Space",
    "Until_Condition",
    "Until_Log_File",
    "Until_Log_Pos",
    "Master_SSL_Allowed",
    "Master_SSL_CA_File",
    "Master_SSL_CA_Path",
    "Master_SSL_Cert",
    "Master_SSL_Cipher",
    "Master_SSL_Key",
    "Seconds_Behind_Master",
    "Master_SSL_Verify_Server_Cert",
    "Last_IO_Errno",
    "Last_IO_Error",
    "Last_SQL_Errno",
    "Last_SQL_Error",
    "Replicate_Ignore_Server_Ids",
    "Master_Server_Id",
    "Master_UUID",
    "Master_Info_File",
    "SQL_Delay",
    "SQL_Remaining_Delay",
    "Slave_SQL_Running_State",
    "Master_Retry_Count",
    "Master_Bind",
    "Last_IO_Error_Timestamp",
    "Last_SQL_Error_Timestamp",
    "Master_SSL_Crl",
    "Master_SSL_Crlpath",
    "Retrieved_Gtid_Set",
    "Executed_Gtid_Set",
    "Auto_Position",
    "Replicate_Rewrite_DB",
    "Channel_Name",
    "Master_TLS_Version",
    "Master_public_key_path",
    "Get_master_public_key",
    "Network_Namespace",
];

/// MySQL's SHOW REPLICA STATUS name for a SHOW SLAVE STATUS column.
pub fn mysql_replica_column_name(slave_name: &str) -> String {
    slave_name
        .replace("Slave", "Replica")
        .replace("Master", "Source")
        .replace("master", "Source")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_status_column_renaming_matches_mysql() {
        assert_eq!(
            mysql_replica_column_name("Slave_IO_Running"),
            "Replica_IO_Running"
        );
        assert_eq!(
            mysql_replica_column_name("Seconds_Behind_Master"),
            "Seconds_Behind_Source"
        );
        assert_eq!(
            mysql_replica_column_name("Read_Master_Log_Pos"),
            "Read_Source_Log_Pos"
        );
        assert_eq!(
            mysql_replica_column_name("Get_master_public_key"),
            "Get_Source_public_key"
        );
        assert_eq!(
            mysql_replica_column_name("Executed_Gtid_Set"),
            "Executed_Gtid_Set"
        );
    }
}
