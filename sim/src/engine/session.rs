//! Per-connection state.
//!
//! Owns [`Session`] (current schema, user variables, session system
//! variables, `LAST_INSERT_ID`, temporary tables, warnings, the open
//! transaction) and [`Txn`], the transaction-private write overlay.
//!
//! Isolation model (documented choice): **READ COMMITTED-like**. Every read
//! sees the latest committed data plus the session's own uncommitted writes
//! (the overlay); there are no snapshots and no gap locks. Writes and
//! locking reads take exclusive row locks that are held until the
//! transaction ends, so two transactions never have overlay entries for the
//! same row and commit never conflicts. `@@transaction_isolation` still
//! reports the servers' default `REPEATABLE-READ`.
//!
//! Statement atomicity: every overlay mutation is recorded in an undo log;
//! a failing statement is rolled back to its start mark, savepoints are
//! marks in the same log.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ast::Statement;
use super::gtid::Gtid;
use super::result::QueryResult;
use super::storage::{Key, Row, Table};
use super::value::Value;
use super::{SessionId, WaitReason};

/// Which table a transaction touched: a base table or a session temporary
/// table (which shadows a base table of the same name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRef {
    pub temp: bool,
    pub db: String,
    pub name: String,
}

/// One undo record: the previous overlay entry of `(table, key)`
/// (`None` = there was no overlay entry).
#[derive(Clone, Debug)]
pub struct OverlayUndo {
    pub table: TableRef,
    pub key: Key,
    pub prev: Option<Option<Row>>,
}

/// An open transaction.
#[derive(Clone, Debug, Default)]
pub struct Txn {
    pub read_only: bool,
    /// Started by BEGIN / START TRANSACTION.
    pub explicit: bool,
    /// Statement transaction of an autocommit statement.
    pub single_stmt: bool,
    /// Uncommitted row images per table: `Some(row)` = inserted/updated,
    /// `None` = deleted.
    pub overlay: BTreeMap<TableRef, BTreeMap<Key, Option<Row>>>,
    pub undo: Vec<OverlayUndo>,
    pub savepoints: Vec<(String, usize)>,
    pub has_reads: bool,
    pub has_writes: bool,
}

impl Txn {
    /// The transaction's own version of a row, if it has one.
    pub fn get(&self, t: &TableRef, key: &Key) -> Option<&Option<Row>> {
        self.overlay.get(t)?.get(key)
    }

    /// Record a write (with undo).
    pub fn put(&mut self, t: &TableRef, key: Key, row: Option<Row>) {
        let m = self.overlay.entry(t.clone()).or_default();
        let prev = m.insert(key.clone(), row);
        self.undo.push(OverlayUndo {
            table: t.clone(),
            key,
            prev,
        });
        self.has_writes = true;
    }

    /// Undo everything recorded after `mark`.
    pub fn rollback_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let u = self.undo.pop().unwrap();
            let m = self.overlay.entry(u.table.clone()).or_default();
            match u.prev {
                Some(p) => {
                    m.insert(u.key, p);
                }
                None => {
                    m.remove(&u.key);
                }
            }
            if m.is_empty() {
                self.overlay.remove(&u.table);
            }
        }
    }

    /// Drop every overlay entry of a table (temporary table dropped).
    pub fn forget_table(&mut self, t: &TableRef) {
        self.overlay.remove(t);
        self.undo.retain(|u| &u.table != t);
        let len = self.undo.len();
        for sp in &mut self.savepoints {
            sp.1 = sp.1.min(len);
        }
    }
}

/// A server-side warning (SHOW WARNINGS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub level: &'static str,
    pub code: u16,
    pub message: String,
}

/// Internal identity of what a blocked statement waits for (used to decide
/// whether it can make progress and for deadlock detection).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum WaitResource {
    Row(super::locks::RowLockId),
    Table {
        db: String,
        table: String,
    },
    UserLock(String),
    /// `MASTER_GTID_WAIT` (slave pos) / `WAIT_FOR_EXECUTED_GTID_SET`.
    Gtid(super::gtid::GtidPosition),
    /// Pure timer (SLEEP, fault delay).
    Timer,
}

#[derive(Clone, Debug)]
pub(crate) struct WaitState {
    pub reason: WaitReason,
    pub resource: WaitResource,
    pub deadline: Option<u64>,
}

/// The statement currently being executed (possibly blocked).
#[derive(Clone, Debug)]
pub(crate) struct CurrentStmt {
    pub stmt: Arc<Statement>,
    pub start: usize,
    pub end: usize,
    /// Simulated time the statement first started.
    pub started_at: u64,
    pub fault_checked: bool,
    pub delay_until: Option<u64>,
    /// When the statement first blocked on a row / metadata lock.
    pub lock_wait_started: Option<u64>,
    pub wait: Option<WaitState>,
    /// Memoised results of side-effecting function calls, so that a
    /// re-executed statement does not repeat them.
    pub memo: Vec<Value>,
    pub memo_pos: usize,
    /// Set by KILL QUERY.
    pub killed: bool,
    /// GTID produced by a commit during this statement.
    pub commit_gtid: Option<Gtid>,
    /// Finished result waiting for a semi-sync ack: (result, gtid, deadline).
    pub ack_wait: Option<(QueryResult, Gtid, u64)>,
    /// Session-state changes collected while executing.
    pub tracked: Vec<super::result::StateChange>,
    pub state_changed: bool,
}

/// A statement batch in progress.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub sql: Arc<str>,
    pub next_offset: usize,
    pub results: Vec<QueryResult>,
    pub current: Option<CurrentStmt>,
}

/// One client connection.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    pub user: String,
    pub host: String,
    pub db: Option<String>,
    /// Session values of session-scoped system variables (canonical names).
    pub vars: BTreeMap<&'static str, Value>,
    /// User variables (`@x`), keyed by lower-cased name.
    pub user_vars: BTreeMap<String, Value>,
    pub txn: Option<Txn>,
    /// `SET TRANSACTION ...` without scope: applies to the next transaction only.
    pub next_txn_read_only: Option<bool>,
    pub next_txn_isolation: Option<String>,
    pub last_insert_id: u64,
    pub row_count: i64,
    pub temp_tables: BTreeMap<(String, String), Table>,
    /// MariaDB `@@last_gtid`.
    pub last_gtid: String,
    pub warnings: Vec<Warning>,
    pub client_found_rows: bool,
    /// `CLIENT_MULTI_STATEMENTS` (see `SessionOptions::multi_statements`).
    pub multi_statements: bool,
    pub(crate) pending: Option<Pending>,
    pub(crate) killed: bool,
    pub(crate) last_trx_state: String,
    pub(crate) last_active: u64,
    /// The current statement used connection-bound state (user variables,
    /// `LAST_INSERT_ID()`, user locks, …); reset before each statement.
    pub(crate) session_bound_used: std::cell::Cell<bool>,
}

impl Session {
    pub fn autocommit(&self) -> bool {
        self.vars
            .get("autocommit")
            .and_then(|v| v.truthy())
            .unwrap_or(true)
    }

    pub fn var_str(&self, name: &str) -> String {
        self.vars
            .get(name)
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    }

    pub fn var_i64(&self, name: &str) -> i64 {
        self.vars.get(name).and_then(|v| v.to_i64()).unwrap_or(0)
    }

    pub fn in_transaction(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| !t.single_stmt)
    }

    /// Whether a statement of this session is blocked / in progress.
    pub fn is_busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether `name` is listed in `session_track_system_variables`.
    pub fn tracks_variable(&self, name: &str) -> bool {
        let list = self.var_str("session_track_system_variables");
        list.split(',')
            .map(|s| s.trim())
            .any(|s| s == "*" || s.eq_ignore_ascii_case(name))
    }
}
