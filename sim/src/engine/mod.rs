//! The simulated MySQL / MariaDB server engine.
//!
//! Module map (each module's own docs say what it owns):
//!
//! | module | owns |
//! |---|---|
//! | [`server`] | [`Server`]: sessions, statement batches, blocking/resume, transactions, commit → binlog, crash & binlog-loss simulation, replication & semi-sync APIs |
//! | `exec` | statement execution (DML, DDL, SET, SHOW, replication admin) |
//! | `eval` | expression evaluation and built-in functions |
//! | [`parser`], [`lexer`], [`ast`] | hand-written tokenizer and parser |
//! | [`storage`] | schemas, committed rows (BTreeMap by primary key), [`Change`] records |
//! | [`session`] | per-connection state and the transaction overlay |
//! | [`locks`] | row locks and `GET_LOCK` user locks |
//! | [`gtid`] | MariaDB / MySQL GTIDs and GTID-set arithmetic |
//! | [`replication`] | [`BinlogEvent`], replica state, SHOW SLAVE STATUS layouts |
//! | [`vars`] | system variable registry |
//! | [`faults`] | BUGGIFY fault hooks |
//! | [`result`], [`value`], [`error`], [`config`] | results, values, errors, configuration |
//!
//! ## Driving a server
//!
//! ```
//! use sim::engine::{Server, ServerConfig, ExecOutcome};
//! let mut s = Server::new(ServerConfig::mariadb(1).with_database("app"));
//! let c = s.open_session("app", Some("app")).unwrap();
//! let ExecOutcome::Done(results) = s.execute(c, "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)", 0).unwrap() else { panic!() };
//! assert_eq!(results.len(), 2);
//! ```
//!
//! A statement that would have to wait (row lock held by another session,
//! `GET_LOCK`, `MASTER_GTID_WAIT`, `SLEEP`, a semi-sync ack, an injected
//! delay) returns [`ExecOutcome::Blocked`] / [`ExecOutcome::CommitPendingAck`]
//! instead of blocking; the caller waits until [`Server::generation`]
//! changes or the reported deadline passes (see [`Server::can_resume`],
//! [`Server::next_deadline`]) and then calls [`Server::resume`].
//!
//! ## Model choices and simplifications
//!
//! * **Isolation**: READ COMMITTED-like. Reads see committed data plus the
//!   session's own uncommitted writes; writes and `SELECT … FOR UPDATE /
//!   FOR SHARE / LOCK IN SHARE MODE` take *exclusive* row locks (shared
//!   locks are modelled as exclusive) held to the end of the transaction;
//!   no gap locks, no snapshots. `@@transaction_isolation` still reports
//!   `REPEATABLE-READ`. Lock grants are not queued: whichever waiter resumes
//!   first after a release wins. Deadlocks (cycles over row locks, DDL
//!   metadata waits and user locks) are detected when the closing request
//!   is made; the requester gets 1213 and its transaction is rolled back.
//!   A 1205 lock-wait timeout rolls back only the statement.
//! * **DDL** commits implicitly, is binlogged as its own transaction, and
//!   waits (metadata lock) while other sessions hold row locks in the table.
//!   Plain reads in open transactions do not hold metadata locks.
//! * **Types / collation**: strict SQL mode; string comparison and text
//!   primary keys are ASCII-case-insensitive; `/` yields a double (servers
//!   yield DECIMAL); DECIMAL / DATE / DATETIME values are stored as text;
//!   UNIQUE / secondary keys are parsed and ignored (only the primary key is
//!   enforced); no joins, subqueries, GROUP BY, UNION, prepared statements.
//! * **Replication**: row-based logical events with full before-images;
//!   `log_slave_updates` always on; the applier ignores `read_only` but
//!   waits for local row locks ([`ApplyOutcome::Blocked`]); already-executed
//!   GTIDs are skipped. Temporary tables are never binlogged.
//! * **Semi-sync**: `AFTER_COMMIT`-like — the transaction is durable and
//!   visible before the ack; only the client's OK waits
//!   ([`ExecOutcome::CommitPendingAck`]). A timeout switches the primary to
//!   async until acks catch up again, like the real plugin.
//! * **GTID waits**: `MASTER_GTID_WAIT` waits on `@@gtid_slave_pos` (as the
//!   MariaDB docs specify); `WAIT_FOR_EXECUTED_GTID_SET` on
//!   `@@gtid_executed`, timeout 0 or omitted = wait forever.
//! * **Privileges**: only [`ServerConfig::super_users`] matter (bypass
//!   `read_only`, may KILL other users' threads); everything else is
//!   permitted.

pub mod ast;
pub mod config;
pub mod error;
mod eval;
mod exec;
pub mod faults;
pub mod gtid;
pub mod lexer;
pub mod locks;
pub mod parser;
pub mod replication;
pub mod result;
pub mod server;
pub mod session;
pub mod storage;
pub mod value;
pub mod vars;

#[cfg(test)]
mod tests;

pub use config::{Flavour, ServerConfig};
pub use error::{SimError, SqlError};
pub use faults::{
    CommitFault, FaultContext, FaultHooks, NoFaults, RandomFaultConfig, RandomFaults,
};
pub use gtid::{Gtid, GtidPosition, GtidSet, MariaGtid, MariaGtidPos, MySqlGtid, Uuid};
pub use replication::{BinlogEvent, ReplicaSource, ReplicaState, UseGtid};
pub use result::{
    col_flags, col_type, status, Column, OkPacket, QueryResult, ResultSet, StateChange,
};
pub use server::{ApplyOutcome, PrimaryOnly, ReplicaExec, Server, SessionOptions};
pub use session::Session;
pub use storage::{Change, Row};
pub use value::Value;

/// Connection / thread id (what `CONNECTION_ID()` returns).
pub type SessionId = u32;

/// Result of [`Server::execute`] / [`Server::resume`].
#[derive(Clone, Debug, PartialEq)]
pub enum ExecOutcome {
    /// All statements ran; one result per statement, stopping after the
    /// first error (like the servers).
    Done(Vec<QueryResult>),
    /// The current statement must wait. Results of earlier statements of the
    /// batch are kept and returned by the `resume` call that finishes.
    Blocked(Blocked),
    /// A commit is durable and visible, but the server runs semi-sync and
    /// the client's OK is held until a replica acknowledges `gtid`
    /// ([`Server::ack_semi_sync`]) or `deadline_ms` passes (then the server
    /// falls back to async replication and the OK is released).
    CommitPendingAck { gtid: Gtid, deadline_ms: u64 },
    /// The connection is gone (killed, or the server crashed under it):
    /// send `error` if given, then close the client connection.
    Disconnect { error: Option<SqlError> },
}

/// Why and until when a statement waits.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocked {
    pub reason: WaitReason,
    /// Simulated time at which `resume` will make progress regardless
    /// (timeout), if any.
    pub deadline_ms: Option<u64>,
}

/// What a blocked statement waits for.
#[derive(Clone, Debug, PartialEq)]
pub enum WaitReason {
    /// An InnoDB row lock held by another session's transaction.
    RowLock { holder: SessionId },
    /// A table metadata lock (DDL waiting for open transactions on the table).
    MetadataLock { holder: SessionId },
    /// `GET_LOCK(name)` held by another session.
    UserLock { name: String, holder: SessionId },
    /// `MASTER_GTID_WAIT` / `WAIT_FOR_EXECUTED_GTID_SET` target not reached yet.
    GtidWait { target: String },
    /// `SLEEP(n)`.
    Sleep,
    /// Injected by [`FaultHooks::statement_delay`].
    FaultDelay,
}
