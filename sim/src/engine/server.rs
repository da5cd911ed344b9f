//! The simulated server.
//!
//! Owns [`Server`]: the session table, statement-batch driving (parse one
//! statement, run it, stop at the first error, park blocked statements and
//! resume them), transaction begin/commit/rollback, turning commits into
//! GTIDs and [`BinlogEvent`]s, semi-sync ack bookkeeping, the replica
//! applier, crash / binlog-loss simulation and read-only accessors for the
//! harness. Statement semantics live in `exec.rs`, expressions in `eval.rs`.
//!
//! ### Durability and crash model
//! * Everything committed (data, binlog, `gtid_slave_pos`) survives
//!   [`Server::crash`]; open transactions, sessions, locks, temporary tables
//!   and the replica's relay log (received but unapplied events) do not.
//!   Replication threads come back in the state they had (servers restart
//!   replication unless `skip-slave-start`).
//! * [`Server::lose_binlog_tail`] / [`Server::lose_unreplicated`] simulate a
//!   primary that loses its not-yet-synced tail (`sync_binlog != 1`,
//!   `innodb_flush_log_at_trx_commit != 1`, no semi-sync): the server
//!   crashes, the binlog is truncated and the data is rebuilt by replaying
//!   the surviving history, so the lost transactions vanish from data,
//!   binlog and GTID state alike.
//! * `log_slave_updates` is always on: applied events are written to the
//!   replica's own binlog with their original GTIDs, so any replica can be
//!   promoted and serve the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ast::{Statement, StatementKind};
use super::config::{Flavour, ServerConfig};
use super::error::{SimError, SqlError};
use super::faults::{CommitFault, FaultContext, FaultHooks, NoFaults};
use super::gtid::{Gtid, GtidPosition, GtidSet, MariaGtid, MariaGtidPos, MySqlGtid, Uuid};
use super::locks::LockManager;
use super::parser::{parse_next, Parsed};
use super::replication::{BinlogEvent, ReplicaSource, ReplicaState, UseGtid};
use super::result::{status, OkPacket, QueryResult, StateChange};
use super::session::{CurrentStmt, Pending, Session, Txn, WaitResource, WaitState};
use super::storage::{Catalog, Change, Database, Row};
use super::value::Value;
use super::vars::{self, Scope, VarDef};
use super::{Blocked, ExecOutcome, SessionId, WaitReason};

/// Options for [`Server::open_session_with`].
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub user: String,
    pub host: String,
    pub db: Option<String>,
    /// `CLIENT_FOUND_ROWS`: UPDATE reports matched instead of changed rows.
    pub client_found_rows: bool,
    /// `CLIENT_MULTI_STATEMENTS`: a query may hold several statements; without it a
    /// second statement is a syntax error and nothing runs (as MariaDB / MySQL do).
    pub multi_statements: bool,
}

impl SessionOptions {
    pub fn new(user: &str) -> SessionOptions {
        SessionOptions {
            user: user.to_string(),
            host: "127.0.0.1".into(),
            db: None,
            client_found_rows: false,
            multi_statements: true,
        }
    }
}

/// Result of applying one replicated event.
#[derive(Clone, Debug, PartialEq)]
pub enum ApplyOutcome {
    Applied,
    /// Already contained in the replica's executed GTID state.
    Skipped,
    /// A local session holds a row lock the event needs; retry later.
    Blocked {
        holder: SessionId,
    },
}

/// Internal control flow of statement execution.
#[derive(Debug)]
pub(crate) enum Interrupt {
    Err(SqlError),
    Block(WaitState),
    /// The server crashed (fault injection); every session is gone.
    Crash,
    /// The session must be disconnected (it killed itself).
    Disconnect(Option<SqlError>),
}

impl From<SqlError> for Interrupt {
    fn from(e: SqlError) -> Self {
        Interrupt::Err(e)
    }
}

pub(crate) type IResult<T> = Result<T, Interrupt>;

enum Step {
    Done(QueryResult),
    Block(WaitState),
    PendingAck { gtid: Gtid, deadline: u64 },
    Crash,
    Disconnect(Option<SqlError>),
}

#[derive(Clone, Debug)]
enum HistoryEntry {
    Commit {
        changes: Arc<Vec<Change>>,
        applied: Option<Gtid>,
    },
    SetSlavePos(MariaGtidPos),
}

/// What makes a statement one only a primary should run (see [`Server::replica_execs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PrimaryOnly {
    /// Changes data or schema (INSERT, UPDATE, DELETE, DDL).
    Write,
    /// Uses or sets state of its connection: user variables, `LAST_INSERT_ID()`,
    /// `ROW_COUNT()`, `FOUND_ROWS()`, `CONNECTION_ID()`, user locks.
    SessionBound,
}

/// A statement only a primary should run that this server executed while it was
/// replicating (a fact for the simulation's routing checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaExec {
    /// The server's clock (ms) when the statement finished.
    pub at_ms: u64,
    pub session: SessionId,
    pub user: String,
    pub what: PrimaryOnly,
    /// The statement's text (at most [`REPLICA_EXEC_SQL_MAX`] bytes).
    pub sql: String,
    /// The error code it ended with (a write on a read-only replica fails with 1290).
    pub error: Option<u16>,
}

/// Most [`ReplicaExec`]s a server keeps per replicating period (between two role
/// changes): the first `REPLICA_EXECS_MAX - 1` and the latest; the others are only
/// counted. Keeping the latest keeps the one furthest from the role change.
pub const REPLICA_EXECS_MAX: usize = 64;
/// Most [`ReplicaExec`]s a server keeps in all; past it only the latest of the current
/// period is replaced.
pub const REPLICA_EXECS_TOTAL_MAX: usize = 1_024;
/// Longest statement text a [`ReplicaExec`] keeps.
pub const REPLICA_EXEC_SQL_MAX: usize = 160;

/// Semi-sync primary state.
#[derive(Clone, Debug)]
struct SemiSync {
    acked: GtidPosition,
    /// Fell back to async after a timeout; back on when acks catch up.
    off: bool,
    yes_tx: u64,
    no_tx: u64,
}

/// One simulated MySQL / MariaDB server.
pub struct Server {
    pub(crate) cfg: ServerConfig,
    pub(crate) flavour: Flavour,
    pub(crate) globals: BTreeMap<&'static str, Value>,
    pub(crate) catalog: Catalog,
    initial_catalog: Catalog,
    pub(crate) sessions: BTreeMap<SessionId, Session>,
    next_session_id: SessionId,
    pub(crate) locks: LockManager,
    pub(crate) binlog: Vec<BinlogEvent>,
    /// history index of each binlog event
    binlog_hist: Vec<usize>,
    /// binlog index of each GTID
    binlog_index: BTreeMap<Gtid, usize>,
    history: Vec<HistoryEntry>,
    binlog_file_no: u32,
    binlog_pos: u64,
    // GTID state
    pub(crate) maria_binlog_pos: MariaGtidPos,
    pub(crate) maria_binlog_state: BTreeMap<(u32, u32), u64>,
    pub(crate) maria_slave_pos: MariaGtidPos,
    pub(crate) mysql_executed: GtidSet,
    pub(crate) mysql_purged: GtidSet,
    pub(crate) repl: ReplicaState,
    semi: SemiSync,
    faults: Box<dyn FaultHooks>,
    generation: u64,
    /// Bumped when a session is killed or removed (see [`Server::session_generation`]).
    session_generation: u64,
    boot_count: u64,
    pub(crate) clock: u64,
    /// Primary-only statements executed while replicating (bounded), and how many
    /// more were not kept.
    replica_execs: Vec<ReplicaExec>,
    replica_execs_dropped: u64,
    /// Index in `replica_execs` where the current replicating period starts.
    replica_execs_period: usize,
    /// `(clock ms, replicating)` each time the server started or stopped replicating
    /// (CHANGE MASTER TO on a server without a source, RESET SLAVE ALL).
    role_changes: Vec<(u64, bool)>,
    /// Parsed first statements by query text (parsing is a pure function of the text;
    /// workloads and monitors repeat the same queries). Row writes carry fresh values
    /// almost every time and are not kept. Bounded: cleared when full.
    parse_cache: std::collections::HashMap<Box<str>, CachedParse>,
}

/// Most queries [`Server::parse_cache`] keeps.
const PARSE_CACHE_MAX: usize = 512;

#[derive(Clone)]
struct CachedParse {
    stmt: Arc<Statement>,
    start: usize,
    end: usize,
    next: usize,
}

/// The next statement of a batch: parsed (possibly from the cache), or what else
/// [`parse_next`] said.
enum NextStmt {
    Stmt(CachedParse),
    Other(Parsed),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("flavour", &self.flavour)
            .field("server_id", &self.server_id())
            .field("sessions", &self.sessions.len())
            .field("binlog", &self.binlog.len())
            .finish()
    }
}

impl Server {
    /// Boot a server.
    pub fn new(cfg: ServerConfig) -> Server {
        let flavour = cfg.flavour;
        let mut globals = BTreeMap::new();
        for d in vars::VARS
            .iter()
            .filter(|d| d.available(flavour) && !d.dynamic)
        {
            globals.insert(d.name, vars::default_value(&cfg, d));
        }
        let mut catalog = Catalog::default();
        for db in ["mysql", "performance_schema", "sys"] {
            catalog.dbs.insert(db.to_string(), Database::default());
        }
        for db in &cfg.databases {
            catalog.dbs.insert(db.clone(), Database::default());
        }
        Server {
            flavour,
            globals,
            initial_catalog: catalog.clone(),
            catalog,
            sessions: BTreeMap::new(),
            next_session_id: 1,
            locks: LockManager::new(),
            binlog: Vec::new(),
            binlog_hist: Vec::new(),
            binlog_index: BTreeMap::new(),
            history: Vec::new(),
            binlog_file_no: 1,
            binlog_pos: 256,
            maria_binlog_pos: MariaGtidPos::new(),
            maria_binlog_state: BTreeMap::new(),
            maria_slave_pos: MariaGtidPos::new(),
            mysql_executed: GtidSet::new(),
            mysql_purged: GtidSet::new(),
            repl: ReplicaState::default(),
            semi: SemiSync {
                acked: GtidPosition::empty(flavour),
                off: false,
                yes_tx: 0,
                no_tx: 0,
            },
            faults: Box::new(NoFaults),
            generation: 0,
            session_generation: 0,
            boot_count: 1,
            clock: 0,
            replica_execs: Vec::new(),
            replica_execs_dropped: 0,
            replica_execs_period: 0,
            role_changes: Vec::new(),
            parse_cache: Default::default(),
            cfg,
        }
    }

    // ------------------------------------------------------------------
    // configuration & accessors
    // ------------------------------------------------------------------

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Current `@@server_id` (can be changed with SET GLOBAL).
    pub fn server_id(&self) -> u32 {
        self.global_i64("server_id") as u32
    }

    /// `@@server_uuid` (MySQL; derived for MariaDB too).
    pub fn server_uuid(&self) -> Uuid {
        self.cfg.uuid()
    }

    /// Install fault hooks (default: [`NoFaults`]).
    pub fn set_fault_hooks(&mut self, hooks: Box<dyn FaultHooks>) {
        self.faults = hooks;
    }

    /// Monotonic counter bumped whenever something that may unblock a
    /// waiting statement happens (commit, rollback, lock release, applied
    /// replication event, semi-sync ack, kill, session close). Async
    /// front-ends re-check blocked sessions when it changes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn bump(&mut self) {
        self.generation += 1;
    }

    /// Changes when a session is killed or goes away (closed, reset, dropped by a
    /// crash) — the only engine changes an *idle* connection has to notice. Front-ends
    /// wake idle connections on this instead of on every [`Self::generation`] change,
    /// which would wake every connection of the server on every commit.
    pub fn session_generation(&self) -> u64 {
        self.session_generation
    }

    fn bump_sessions(&mut self) {
        self.session_generation += 1;
        self.bump();
    }

    /// Number of times the server has (re)started.
    pub fn boot_count(&self) -> u64 {
        self.boot_count
    }

    pub fn read_only(&self) -> bool {
        self.global_i64("read_only") != 0
    }

    /// Harness shortcut for `SET GLOBAL read_only = ...`.
    pub fn set_read_only(&mut self, ro: bool) {
        self.globals.insert("read_only", Value::Int(ro as i64));
        if !ro {
            self.globals.insert("super_read_only", Value::Int(0));
        }
    }

    /// Harness shortcut for `SET GLOBAL rpl_semi_sync_master_enabled = ...`.
    pub fn set_semi_sync(&mut self, enabled: bool) {
        self.globals
            .insert("rpl_semi_sync_master_enabled", Value::Int(enabled as i64));
    }

    pub(crate) fn global(&self, name: &str) -> Value {
        self.globals.get(name).cloned().unwrap_or(Value::Null)
    }

    pub(crate) fn global_i64(&self, name: &str) -> i64 {
        self.globals.get(name).and_then(|v| v.to_i64()).unwrap_or(0)
    }

    pub(crate) fn is_super(&self, user: &str) -> bool {
        self.cfg.super_users.contains(user)
    }

    /// Committed data (for harness assertions).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Committed rows of a table in primary-key order.
    pub fn table_rows(&self, db: &str, table: &str) -> Option<Vec<Row>> {
        Some(
            self.catalog
                .table(db, table)?
                .rows
                .values()
                .cloned()
                .collect(),
        )
    }

    pub fn session(&self, sid: SessionId) -> Option<&Session> {
        self.sessions.get(&sid)
    }

    pub fn session_ids(&self) -> Vec<SessionId> {
        self.sessions.keys().copied().collect()
    }

    /// OK-packet status flags of a session right now.
    pub fn status_flags(&self, sid: SessionId) -> Option<u16> {
        self.sessions.get(&sid).map(status_of)
    }

    // ------------------------------------------------------------------
    // GTID state
    // ------------------------------------------------------------------

    /// MariaDB `@@gtid_binlog_pos`.
    pub fn gtid_binlog_pos(&self) -> MariaGtidPos {
        self.maria_binlog_pos.clone()
    }

    /// MariaDB `@@gtid_slave_pos`.
    pub fn gtid_slave_pos(&self) -> MariaGtidPos {
        self.maria_slave_pos.clone()
    }

    /// MariaDB `@@gtid_current_pos`: per domain the binlog GTID if it was
    /// generated by this server and is ahead of the slave position,
    /// otherwise the slave position.
    pub fn gtid_current_pos(&self) -> MariaGtidPos {
        let me = self.server_id();
        let mut out = self.maria_slave_pos.clone();
        for b in self.maria_binlog_pos.iter() {
            let take = match self.maria_slave_pos.get(b.domain) {
                None => b.server_id == me,
                Some(s) => b.server_id == me && b.seq > s.seq,
            };
            if take {
                out.set(*b);
            }
        }
        out
    }

    /// MySQL `@@gtid_executed`.
    pub fn gtid_executed(&self) -> GtidSet {
        self.mysql_executed.clone()
    }

    /// Everything this server has executed: MariaDB `gtid_current_pos`
    /// merged with the binlog position, MySQL `gtid_executed`.
    pub fn executed_position(&self) -> GtidPosition {
        match self.flavour {
            Flavour::MariaDb => {
                GtidPosition::MariaDb(self.gtid_current_pos().merged_max(&self.maria_binlog_pos))
            }
            Flavour::MySql8 => GtidPosition::MySql(self.mysql_executed.clone()),
        }
    }

    fn next_gtid(&self) -> Gtid {
        match self.flavour {
            Flavour::MariaDb => {
                let domain = self.global_i64("gtid_domain_id") as u32;
                let last = self
                    .maria_binlog_state
                    .iter()
                    .filter(|((d, _), _)| *d == domain)
                    .map(|(_, s)| *s)
                    .max()
                    .unwrap_or(0)
                    .max(self.maria_slave_pos.get(domain).map_or(0, |g| g.seq));
                Gtid::MariaDb(MariaGtid {
                    domain,
                    server_id: self.server_id(),
                    seq: last + 1,
                })
            }
            Flavour::MySql8 => {
                let uuid = self.server_uuid();
                Gtid::MySql(MySqlGtid {
                    uuid,
                    seq: self.mysql_executed.first_free(&uuid),
                })
            }
        }
    }

    /// Whether the executed state already contains `g`.
    fn executed_contains(&self, g: &Gtid) -> bool {
        match g {
            Gtid::MariaDb(m) => {
                self.maria_slave_pos.contains(m)
                    || self
                        .maria_binlog_state
                        .get(&(m.domain, m.server_id))
                        .is_some_and(|s| *s >= m.seq)
            }
            Gtid::MySql(m) => self.mysql_executed.contains(m),
        }
    }

    fn record_binlog_gtid(&mut self, g: &Gtid) {
        match g {
            Gtid::MariaDb(m) => {
                self.maria_binlog_pos.set(*m);
                let e = self
                    .maria_binlog_state
                    .entry((m.domain, m.server_id))
                    .or_insert(0);
                *e = (*e).max(m.seq);
            }
            Gtid::MySql(m) => self.mysql_executed.add(*m),
        }
    }

    // ------------------------------------------------------------------
    // sessions
    // ------------------------------------------------------------------

    /// Open a connection for `user` with optional default database.
    /// Fails with 1049 if the database does not exist.
    pub fn open_session(&mut self, user: &str, db: Option<&str>) -> Result<SessionId, SqlError> {
        let mut o = SessionOptions::new(user);
        o.db = db.map(|s| s.to_string());
        self.open_session_with(o)
    }

    pub fn open_session_with(&mut self, opts: SessionOptions) -> Result<SessionId, SqlError> {
        if let Some(db) = &opts.db {
            if !self.catalog.dbs.contains_key(db) && db != "information_schema" {
                return Err(SqlError::bad_db(db));
            }
        }
        let id = self.next_session_id;
        self.next_session_id += 1;
        let s = self.new_session(id, opts);
        self.sessions.insert(id, s);
        Ok(id)
    }

    fn new_session(&self, id: SessionId, opts: SessionOptions) -> Session {
        let mut vars_map = BTreeMap::new();
        for d in vars::VARS
            .iter()
            .filter(|d| d.available(self.flavour) && !d.dynamic && d.scope != Scope::Global)
        {
            let v = match d.scope {
                Scope::Both => self.global(d.name),
                _ => vars::default_value(&self.cfg, d),
            };
            vars_map.insert(d.name, v);
        }
        Session {
            id,
            user: opts.user,
            host: opts.host,
            db: opts.db,
            vars: vars_map,
            user_vars: BTreeMap::new(),
            txn: None,
            next_txn_read_only: None,
            next_txn_isolation: None,
            last_insert_id: 0,
            row_count: -1,
            temp_tables: BTreeMap::new(),
            last_gtid: String::new(),
            warnings: Vec::new(),
            client_found_rows: opts.client_found_rows,
            multi_statements: opts.multi_statements,
            pending: None,
            killed: false,
            last_trx_state: "________".into(),
            last_active: self.clock,
            session_bound_used: std::cell::Cell::new(false),
        }
    }

    /// Close a connection: rolls back its transaction, releases its row and
    /// user locks, drops its temporary tables. Returns false if unknown.
    pub fn close_session(&mut self, sid: SessionId) -> bool {
        let Some(mut s) = self.sessions.remove(&sid) else {
            return false;
        };
        self.rollback_txn(&mut s);
        self.locks.release_all_user_locks(sid);
        self.bump_sessions();
        true
    }

    /// `COM_RESET_CONNECTION`: roll back, release locks, drop temporary
    /// tables, reset variables to the global values, keep the schema.
    pub fn reset_session(&mut self, sid: SessionId) -> Result<(), SimError> {
        let s = self
            .sessions
            .remove(&sid)
            .ok_or(SimError::UnknownSession(sid))?;
        if s.pending.is_some() {
            self.sessions.insert(sid, s);
            return Err(SimError::SessionBusy(sid));
        }
        let mut s = s;
        self.rollback_txn(&mut s);
        self.locks.release_all_user_locks(sid);
        let mut fresh = self.new_session(
            sid,
            SessionOptions {
                user: s.user.clone(),
                host: s.host.clone(),
                db: s.db.clone(),
                client_found_rows: s.client_found_rows,
                multi_statements: s.multi_statements,
            },
        );
        fresh.killed = s.killed;
        self.sessions.insert(sid, fresh);
        self.bump_sessions();
        Ok(())
    }

    /// The account a connection authenticated as (sessions are opened before
    /// authentication; privileges such as writing on a read-only server, `KILL` of
    /// other users' threads and `CURRENT_USER()` follow it).
    pub fn set_session_user(&mut self, sid: SessionId, user: &str) -> Result<(), SimError> {
        let s = self.sessions.get_mut(&sid).ok_or(SimError::UnknownSession(sid))?;
        s.user = user.to_string();
        Ok(())
    }

    /// The client's `CLIENT_MULTI_STATEMENTS` (negotiated at login, changed by
    /// `COM_SET_OPTION`).
    pub fn set_multi_statements(&mut self, sid: SessionId, on: bool) -> Result<(), SimError> {
        let s = self.sessions.get_mut(&sid).ok_or(SimError::UnknownSession(sid))?;
        s.multi_statements = on;
        Ok(())
    }

    /// `COM_INIT_DB`.
    pub fn init_db(&mut self, sid: SessionId, db: &str, now: u64) -> Result<ExecOutcome, SimError> {
        let sql = format!("USE `{}`", db.replace('`', "``"));
        self.execute(sid, &sql, now)
    }

    /// `KILL [QUERY] target` issued by the harness (no permission checks).
    pub fn kill(&mut self, target: SessionId, query_only: bool) -> Result<(), SqlError> {
        let Some(s) = self.sessions.get_mut(&target) else {
            return Err(SqlError::no_such_thread(target as u64));
        };
        if query_only {
            if let Some(c) = s.pending.as_mut().and_then(|p| p.current.as_mut()) {
                c.killed = true;
            }
        } else {
            let mut s = self.sessions.remove(&target).unwrap();
            self.rollback_txn(&mut s);
            self.locks.release_all_user_locks(target);
            s.temp_tables.clear();
            s.killed = true;
            self.sessions.insert(target, s);
        }
        self.bump_sessions();
        Ok(())
    }

    // ------------------------------------------------------------------
    // execution
    // ------------------------------------------------------------------

    fn observe(&mut self, now: u64) {
        if now > self.clock {
            self.clock = now;
        }
    }

    /// Execute a (multi-)statement query on a session.
    pub fn execute(
        &mut self,
        sid: SessionId,
        sql: &str,
        now: u64,
    ) -> Result<ExecOutcome, SimError> {
        self.observe(now);
        let s = self
            .sessions
            .get_mut(&sid)
            .ok_or(SimError::UnknownSession(sid))?;
        if s.killed {
            return Ok(self.disconnect_killed(sid));
        }
        if s.pending.is_some() {
            return Err(SimError::SessionBusy(sid));
        }
        s.last_active = now;
        s.pending = Some(Pending {
            sql: Arc::from(sql),
            next_offset: 0,
            results: Vec::new(),
            current: None,
        });
        Ok(self.drive(sid, now))
    }

    /// Continue a blocked statement batch.
    pub fn resume(&mut self, sid: SessionId, now: u64) -> Result<ExecOutcome, SimError> {
        self.observe(now);
        let s = self
            .sessions
            .get(&sid)
            .ok_or(SimError::UnknownSession(sid))?;
        if s.killed {
            return Ok(self.disconnect_killed(sid));
        }
        if s.pending.is_none() {
            return Err(SimError::NothingPending(sid));
        }
        Ok(self.drive(sid, now))
    }

    fn disconnect_killed(&mut self, sid: SessionId) -> ExecOutcome {
        self.close_session(sid);
        let error = match self.flavour {
            Flavour::MariaDb => Some(SqlError::connection_killed()),
            Flavour::MySql8 => None,
        };
        ExecOutcome::Disconnect { error }
    }

    /// Whether `resume` would make progress now (the wait condition holds,
    /// the deadline passed, or the statement was killed).
    pub fn can_resume(&self, sid: SessionId, now: u64) -> bool {
        let Some(s) = self.sessions.get(&sid) else {
            return true;
        };
        if s.killed {
            return true;
        }
        let Some(c) = s.pending.as_ref().and_then(|p| p.current.as_ref()) else {
            return s.pending.is_some();
        };
        if c.killed {
            return true;
        }
        if let Some((_, g, deadline)) = &c.ack_wait {
            return now >= *deadline || self.semi.acked.contains(g) || !self.semi_sync_enabled();
        }
        if let Some(until) = c.delay_until {
            if now < until {
                return false;
            }
        }
        let Some(w) = &c.wait else { return true };
        if w.deadline.is_some_and(|d| now >= d) {
            return true;
        }
        match &w.resource {
            WaitResource::Row(id) => self.locks.row_holder(id).is_none_or(|h| h == sid),
            WaitResource::Table { db, table } => {
                self.locks.table_locked_by_other(db, table, sid).is_none()
            }
            WaitResource::UserLock(n) => self.locks.user_lock_holder(n).is_none_or(|h| h == sid),
            WaitResource::Gtid(target) => self.gtid_wait_reached(target),
            WaitResource::Timer => false,
        }
    }

    /// Earliest deadline among blocked sessions.
    pub fn next_deadline(&self) -> Option<u64> {
        self.sessions
            .values()
            .filter_map(|s| s.pending.as_ref()?.current.as_ref())
            .filter_map(|c| {
                let a = c.ack_wait.as_ref().map(|x| x.2);
                let b = c.wait.as_ref().and_then(|w| w.deadline);
                let d = c.delay_until;
                [a, b, d].into_iter().flatten().min()
            })
            .min()
    }

    /// Every blocked session and what it waits for.
    pub fn blocked_sessions(&self) -> Vec<(SessionId, Blocked)> {
        let mut out = Vec::new();
        for (id, s) in &self.sessions {
            let Some(c) = s.pending.as_ref().and_then(|p| p.current.as_ref()) else {
                continue;
            };
            if let Some(w) = &c.wait {
                out.push((
                    *id,
                    Blocked {
                        reason: w.reason.clone(),
                        deadline_ms: w.deadline,
                    },
                ));
            } else if let Some(until) = c.delay_until {
                out.push((
                    *id,
                    Blocked {
                        reason: WaitReason::FaultDelay,
                        deadline_ms: Some(until),
                    },
                ));
            }
        }
        out
    }

    fn drive(&mut self, sid: SessionId, now: u64) -> ExecOutcome {
        let mut sess = self.sessions.remove(&sid).expect("session exists");
        let out = self.drive_session(&mut sess, now);
        match &out {
            ExecOutcome::Disconnect { .. } => {
                // crashed (everything already cleared) or killed itself
                self.rollback_txn(&mut sess);
                self.locks.release_all_user_locks(sid);
                self.bump_sessions();
            }
            _ => {
                self.sessions.insert(sid, sess);
            }
        }
        out
    }

    /// [`parse_next`], with the first statement of a query served from
    /// [`Self::parse_cache`] when the same text was parsed before.
    fn parse_next_cached(&mut self, sql: &str, offset: usize, first: bool) -> NextStmt {
        let cacheable = first && offset == 0;
        if cacheable {
            if let Some(c) = self.parse_cache.get(sql) {
                return NextStmt::Stmt(c.clone());
            }
        }
        match parse_next(sql, offset, first) {
            Parsed::Stmt { stmt, start, end, next } => {
                // Row writes (unique values per statement in practice) would only churn it.
                let keep = cacheable && !matches!(stmt, Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_));
                let c = CachedParse { stmt: Arc::new(stmt), start, end, next };
                if keep {
                    if self.parse_cache.len() >= PARSE_CACHE_MAX {
                        self.parse_cache.clear();
                    }
                    self.parse_cache.insert(sql.into(), c.clone());
                }
                NextStmt::Stmt(c)
            }
            other => NextStmt::Other(other),
        }
    }

    fn drive_session(&mut self, sess: &mut Session, now: u64) -> ExecOutcome {
        loop {
            let p = sess.pending.as_mut().unwrap();
            if p.current.is_none() {
                let first = p.next_offset == 0 && p.results.is_empty();
                let sql = p.sql.clone();
                match self.parse_next_cached(&sql, p.next_offset, first) {
                    NextStmt::Other(Parsed::End) => {
                        let p = sess.pending.take().unwrap();
                        return ExecOutcome::Done(p.results);
                    }
                    NextStmt::Other(Parsed::Empty) => {
                        p.results.push(QueryResult::Err(SqlError::empty_query()));
                        let p = sess.pending.take().unwrap();
                        return ExecOutcome::Done(p.results);
                    }
                    NextStmt::Other(Parsed::Stmt { .. }) => unreachable!("parse_next_cached returns statements as NextStmt::Stmt"),
                    NextStmt::Other(Parsed::Error(f)) => {
                        let err = if let Some(what) = f.unsupported {
                            if what == "__MULTIPLE_PK" {
                                SqlError::new(
                                    super::error::codes::ER_MULTIPLE_PRI_KEY,
                                    "42000",
                                    "Multiple primary key defined",
                                )
                            } else {
                                SqlError::not_supported(self.flavour, &what)
                            }
                        } else {
                            let line =
                                1 + sql[f.stmt_start.min(f.pos)..f.pos].matches('\n').count();
                            SqlError::parse_error(self.flavour, &sql[f.pos..], line)
                        };
                        // a failing statement still ends an autocommit statement txn
                        p.results.push(QueryResult::Err(err));
                        let p = sess.pending.take().unwrap();
                        return ExecOutcome::Done(p.results);
                    }
                    NextStmt::Stmt(CachedParse {
                        stmt,
                        start,
                        end,
                        next,
                    }) => {
                        if first && !sess.multi_statements {
                            // Without CLIENT_MULTI_STATEMENTS the server's parser does not
                            // end a statement at `;`: a second statement is a syntax error
                            // near its first token, and nothing runs.
                            let second = match parse_next(&sql, next, false) {
                                Parsed::Stmt { start, .. } => Some(start),
                                Parsed::Error(f) => Some(f.stmt_start),
                                Parsed::End | Parsed::Empty => None,
                            };
                            if let Some(at) = second {
                                let line = 1 + sql[..at].matches('\n').count();
                                // The server trims trailing blanks and `;` off a query.
                                let near = sql[at..].trim_end_matches(|c: char| c == ';' || c.is_whitespace());
                                p.results.push(QueryResult::Err(SqlError::parse_error(self.flavour, near, line)));
                                let p = sess.pending.take().unwrap();
                                return ExecOutcome::Done(p.results);
                            }
                        }
                        p.next_offset = next;
                        p.current = Some(CurrentStmt {
                            stmt,
                            start,
                            end,
                            started_at: now,
                            fault_checked: false,
                            delay_until: None,
                            lock_wait_started: None,
                            wait: None,
                            memo: Vec::new(),
                            memo_pos: 0,
                            killed: false,
                            commit_gtid: None,
                            ack_wait: None,
                            tracked: Vec::new(),
                            state_changed: false,
                        });
                    }
                }
            }
            let mut cur = sess.pending.as_mut().unwrap().current.take().unwrap();
            let step = self.run_current(sess, &mut cur, now);
            match step {
                Step::Done(r) => {
                    let p = sess.pending.as_mut().unwrap();
                    let is_err = r.is_err();
                    p.results.push(r);
                    if is_err {
                        let p = sess.pending.take().unwrap();
                        return ExecOutcome::Done(p.results);
                    }
                }
                Step::Block(w) => {
                    let b = Blocked {
                        reason: w.reason.clone(),
                        deadline_ms: w.deadline,
                    };
                    cur.wait = Some(w);
                    sess.pending.as_mut().unwrap().current = Some(cur);
                    return ExecOutcome::Blocked(b);
                }
                Step::PendingAck { gtid, deadline } => {
                    sess.pending.as_mut().unwrap().current = Some(cur);
                    return ExecOutcome::CommitPendingAck {
                        gtid,
                        deadline_ms: deadline,
                    };
                }
                Step::Crash => {
                    sess.pending = None;
                    sess.txn = None;
                    return ExecOutcome::Disconnect { error: None };
                }
                Step::Disconnect(e) => {
                    sess.pending = None;
                    return ExecOutcome::Disconnect { error: e };
                }
            }
        }
    }

    fn run_current(&mut self, sess: &mut Session, cur: &mut CurrentStmt, now: u64) -> Step {
        // semi-sync ack wait of an already executed statement
        if let Some((result, gtid, deadline)) = cur.ack_wait.clone() {
            if self.semi.acked.contains(&gtid) || !self.semi_sync_enabled() {
                self.semi.yes_tx += 1;
                return Step::Done(result);
            }
            if now >= deadline {
                self.semi.off = true;
                self.semi.no_tx += 1;
                return Step::Done(result);
            }
            if cur.killed {
                // KILL QUERY ends the wait for the ack: the transaction stays committed,
                // the client gets "interrupted" instead of its OK.
                self.semi.no_tx += 1;
                return Step::Done(QueryResult::Err(SqlError::query_interrupted()));
            }
            return Step::PendingAck { gtid, deadline };
        }
        if cur.killed {
            cur.wait = None;
            self.end_statement_txn_on_error(sess);
            return Step::Done(QueryResult::Err(SqlError::query_interrupted()));
        }
        let sql_text = sess.pending.as_ref().map(|p| p.sql.clone()).unwrap();
        let text = &sql_text[cur.start..cur.end];
        if !cur.fault_checked {
            cur.fault_checked = true;
            let ctx = FaultContext {
                server_id: self.server_id(),
                session: sess.id,
                now_ms: now,
                sql: text,
                kind: cur.stmt.kind(),
            };
            if let Some(d) = self.faults.statement_delay(&ctx) {
                if d > 0 {
                    cur.delay_until = Some(now + d);
                }
            }
        }
        if let Some(until) = cur.delay_until {
            if now < until {
                return Step::Block(WaitState {
                    reason: WaitReason::FaultDelay,
                    resource: WaitResource::Timer,
                    deadline: Some(until),
                });
            }
        }
        let keeps_warnings = matches!(
            &*cur.stmt,
            Statement::Show(super::ast::ShowStmt::Warnings | super::ast::ShowStmt::Errors)
        );
        if !keeps_warnings {
            sess.warnings.clear();
        }
        cur.wait = None;
        cur.memo_pos = 0;
        cur.tracked.clear();
        cur.state_changed = false;
        cur.commit_gtid = None;
        sess.session_bound_used.set(false);
        let replicating = self.repl.source.is_some();
        let res = self.exec_statement(sess, cur, now);
        if self.repl.source.is_some() != replicating {
            self.role_changes.push((self.clock, !replicating));
            self.replica_execs_period = self.replica_execs.len();
        }
        if replicating && !matches!(res, Err(Interrupt::Block(_) | Interrupt::Crash | Interrupt::Disconnect(_))) {
            let what = match cur.stmt.kind() {
                StatementKind::Write | StatementKind::Ddl => Some(PrimaryOnly::Write),
                _ if sess.session_bound_used.get() => Some(PrimaryOnly::SessionBound),
                _ => None,
            };
            if let Some(what) = what {
                let error = match &res {
                    Ok(r) => r.err().map(|e| e.code),
                    Err(Interrupt::Err(e)) => Some(e.code),
                    Err(_) => None,
                };
                self.note_replica_exec(sess, what, text, error);
            }
        }
        match res {
            Ok(r) => {
                let r = self.finish_result(sess, cur, r);
                if let Some(g) = cur.commit_gtid {
                    if self.semi_sync_enabled() && !self.semi.off && !r.is_err() {
                        let deadline =
                            now + self.global_i64("rpl_semi_sync_master_timeout").max(0) as u64;
                        cur.ack_wait = Some((r, g, deadline));
                        return Step::PendingAck { gtid: g, deadline };
                    }
                }
                Step::Done(r)
            }
            Err(Interrupt::Err(e)) => Step::Done(QueryResult::Err(e)),
            Err(Interrupt::Block(w)) => Step::Block(w),
            Err(Interrupt::Crash) => Step::Crash,
            Err(Interrupt::Disconnect(e)) => Step::Disconnect(e),
        }
    }

    /// Decorate a successful result with status flags and tracked state.
    fn finish_result(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        r: QueryResult,
    ) -> QueryResult {
        let flags = status_of(sess);
        let warnings = sess.warnings.len().min(u16::MAX as usize) as u16;
        match r {
            QueryResult::Ok(mut ok) => {
                let mut changes = std::mem::take(&mut cur.tracked);
                // transaction state tracker
                if sess
                    .var_str("session_track_transaction_info")
                    .eq_ignore_ascii_case("STATE")
                {
                    let st = trx_state_string(sess);
                    if st != sess.last_trx_state {
                        sess.last_trx_state = st.clone();
                        changes.push(StateChange::TransactionState(st));
                    }
                }
                if sess.var_i64("session_track_state_change") != 0
                    && (cur.state_changed || !changes.is_empty())
                {
                    changes.insert(0, StateChange::StateChanged);
                }
                ok.status_flags = flags
                    | if changes.is_empty() {
                        0
                    } else {
                        status::SERVER_SESSION_STATE_CHANGED
                    };
                ok.warnings = warnings;
                ok.session_state_changes.extend(changes);
                sess.row_count = ok.affected_rows as i64;
                QueryResult::Ok(ok)
            }
            QueryResult::ResultSet(mut rs) => {
                rs.status_flags = flags;
                rs.warnings = warnings;
                sess.row_count = -1;
                QueryResult::ResultSet(rs)
            }
            e => e,
        }
    }

    pub(crate) fn semi_counters(&self) -> (u64, u64) {
        (self.semi.yes_tx, self.semi.no_tx)
    }

    pub(crate) fn semi_sync_enabled(&self) -> bool {
        self.global_i64("rpl_semi_sync_master_enabled") != 0
    }

    /// Whether semi-sync is currently active (enabled and not fallen back
    /// to async after a timeout).
    pub fn semi_sync_active(&self) -> bool {
        self.semi_sync_enabled() && !self.semi.off
    }

    /// Record that a (semi-sync) replica has received everything in `pos`.
    /// Releases commits waiting for an ack; switches semi-sync back on after
    /// a timeout fallback once the replica has caught up.
    pub fn ack_semi_sync(&mut self, pos: &GtidPosition) {
        self.semi.acked.merge(pos);
        if self.semi.off {
            let caught_up = self
                .binlog
                .last()
                .is_none_or(|e| self.semi.acked.contains(&e.gtid));
            if caught_up {
                self.semi.off = false;
            }
        }
        self.bump();
    }

    // ------------------------------------------------------------------
    // transactions
    // ------------------------------------------------------------------

    /// Make sure a transaction is open (autocommit statements get a
    /// statement transaction).
    pub(crate) fn ensure_txn(&mut self, sess: &mut Session) {
        if sess.txn.is_none() {
            let read_only = sess
                .next_txn_read_only
                .take()
                .unwrap_or_else(|| sess.var_i64("transaction_read_only") != 0);
            sess.next_txn_isolation = None;
            sess.txn = Some(Txn {
                read_only,
                single_stmt: sess.autocommit(),
                ..Default::default()
            });
        }
    }

    /// Roll the transaction back (if any) and release its row locks.
    pub(crate) fn rollback_txn(&mut self, sess: &mut Session) {
        if sess.txn.take().is_some() && self.locks.release_rows(sess.id) {
            self.bump();
        }
    }

    /// After a failed statement: an autocommit statement transaction ends.
    pub(crate) fn end_statement_txn_on_error(&mut self, sess: &mut Session) {
        if sess.txn.as_ref().is_some_and(|t| t.single_stmt) {
            self.rollback_txn(sess);
        }
    }

    /// Commit the session's transaction: temporary-table changes are
    /// applied locally, base-table changes go to storage + binlog.
    pub(crate) fn commit_txn(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        now: u64,
    ) -> IResult<()> {
        let Some(txn) = sess.txn.take() else {
            return Ok(());
        };
        let mut changes = Vec::new();
        for (tref, ov) in &txn.overlay {
            if tref.temp {
                continue;
            }
            let Some(table) = self.catalog.table(&tref.db, &tref.name) else {
                continue;
            };
            for (k, v) in ov {
                let before = table.rows.get(k);
                match (before, v) {
                    (None, Some(r)) => changes.push(Change::Insert {
                        db: tref.db.clone(),
                        table: tref.name.clone(),
                        row: r.clone(),
                    }),
                    (Some(b), None) => changes.push(Change::Delete {
                        db: tref.db.clone(),
                        table: tref.name.clone(),
                        before: b.clone(),
                    }),
                    (Some(b), Some(a)) if b != a => changes.push(Change::Update {
                        db: tref.db.clone(),
                        table: tref.name.clone(),
                        before: b.clone(),
                        after: a.clone(),
                    }),
                    _ => {}
                }
            }
        }
        let result = if changes.is_empty() {
            Ok(())
        } else {
            self.durable_commit(sess, cur, changes, now)
        };
        if result.is_ok() {
            for (tref, ov) in txn.overlay {
                if !tref.temp {
                    continue;
                }
                if let Some(t) = sess
                    .temp_tables
                    .get_mut(&(tref.db.clone(), tref.name.clone()))
                {
                    for (k, v) in ov {
                        match v {
                            Some(r) => {
                                t.rows.insert(k, r);
                            }
                            None => {
                                t.rows.remove(&k);
                            }
                        }
                    }
                }
            }
        }
        if self.locks.release_rows(sess.id) {
            self.bump();
        }
        result
    }

    /// Make `changes` durable as one transaction: fault hooks, storage,
    /// GTID, binlog, history, session tracking.
    pub(crate) fn durable_commit(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        changes: Vec<Change>,
        now: u64,
    ) -> IResult<()> {
        let sql = sess
            .pending
            .as_ref()
            .map(|p| p.sql[cur.start..cur.end].to_string())
            .unwrap_or_default();
        let ctx = FaultContext {
            server_id: self.server_id(),
            session: sess.id,
            now_ms: now,
            sql: &sql,
            kind: cur.stmt.kind(),
        };
        let fault = self.faults.on_commit(&ctx);
        match fault {
            Some(CommitFault::Fail(e)) => return Err(Interrupt::Err(e)),
            Some(CommitFault::CrashBeforeDurable) => {
                self.crash();
                return Err(Interrupt::Crash);
            }
            _ => {}
        }
        self.catalog.apply_all(self.flavour, &changes)?;
        let changes = Arc::new(changes);
        self.history.push(HistoryEntry::Commit {
            changes: changes.clone(),
            applied: None,
        });
        if sess.var_i64("sql_log_bin") != 0 {
            let gtid = self.next_gtid();
            let sid = self.server_id();
            self.append_binlog(gtid, sid, now, changes, self.history.len() - 1);
            cur.commit_gtid = Some(gtid);
            self.track_commit(sess, cur, &gtid);
        }
        self.bump();
        if fault == Some(CommitFault::CrashAfterDurable) {
            self.crash();
            return Err(Interrupt::Crash);
        }
        Ok(())
    }

    fn track_commit(&mut self, sess: &mut Session, cur: &mut CurrentStmt, gtid: &Gtid) {
        match self.flavour {
            Flavour::MariaDb => {
                sess.last_gtid = gtid.to_string();
                if sess.tracks_variable("last_gtid") {
                    cur.tracked.retain(|c| !matches!(c, StateChange::SystemVariable { name, .. } if name == "last_gtid"));
                    cur.tracked.push(StateChange::SystemVariable {
                        name: "last_gtid".into(),
                        value: gtid.to_string(),
                    });
                }
            }
            Flavour::MySql8 => match sess.var_str("session_track_gtids").as_str() {
                "OWN_GTID" => {
                    cur.tracked.retain(|c| !matches!(c, StateChange::Gtids(_)));
                    cur.tracked.push(StateChange::Gtids(gtid.to_string()));
                }
                "ALL_GTIDS" => {
                    cur.tracked.retain(|c| !matches!(c, StateChange::Gtids(_)));
                    cur.tracked
                        .push(StateChange::Gtids(self.mysql_executed.to_string()));
                }
                _ => {}
            },
        }
    }

    fn append_binlog(
        &mut self,
        gtid: Gtid,
        origin: u32,
        commit_time: u64,
        changes: Arc<Vec<Change>>,
        hist: usize,
    ) {
        let size: u64 = 150 + changes.iter().map(|c| c.approx_size()).sum::<u64>();
        self.binlog_pos += size;
        let ev = BinlogEvent {
            gtid,
            origin_server_id: origin,
            commit_time_ms: commit_time,
            changes,
            log_file: self.binlog_file_name(),
            end_log_pos: self.binlog_pos,
        };
        self.record_binlog_gtid(&gtid);
        self.binlog_index.insert(gtid, self.binlog.len());
        self.binlog.push(ev);
        self.binlog_hist.push(hist);
    }

    pub(crate) fn binlog_file_name(&self) -> String {
        let prefix = match self.flavour {
            Flavour::MariaDb => "mysql-bin",
            Flavour::MySql8 => "binlog",
        };
        format!("{prefix}.{:06}", self.binlog_file_no)
    }

    pub(crate) fn binlog_file_pos(&self) -> u64 {
        self.binlog_pos
    }

    /// RESET MASTER.
    pub(crate) fn reset_master(&mut self) {
        self.binlog.clear();
        self.binlog_hist.clear();
        self.binlog_index.clear();
        self.binlog_file_no = 1;
        self.binlog_pos = 256;
        self.maria_binlog_pos = MariaGtidPos::new();
        self.maria_binlog_state.clear();
        self.mysql_executed = GtidSet::new();
        self.mysql_purged = GtidSet::new();
        self.semi.acked = GtidPosition::empty(self.flavour);
        self.bump();
    }

    pub(crate) fn set_slave_pos(&mut self, pos: MariaGtidPos) {
        self.maria_slave_pos = pos.clone();
        self.history.push(HistoryEntry::SetSlavePos(pos));
        self.bump();
    }

    fn note_replica_exec(&mut self, sess: &Session, what: PrimaryOnly, text: &str, error: Option<u16>) {
        let mut end = text.len().min(REPLICA_EXEC_SQL_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let x = ReplicaExec {
            at_ms: self.clock,
            session: sess.id,
            user: sess.user.clone(),
            what,
            sql: text[..end].to_string(),
            error,
        };
        let in_period = self.replica_execs.len() - self.replica_execs_period;
        if in_period < REPLICA_EXECS_MAX && self.replica_execs.len() < REPLICA_EXECS_TOTAL_MAX {
            self.replica_execs.push(x);
        } else if in_period > 0 {
            // Full: the last slot of the period holds the latest statement.
            *self.replica_execs.last_mut().expect("a slot of this period") = x;
            self.replica_execs_dropped += 1;
        } else {
            self.replica_execs_dropped += 1;
        }
    }

    /// Statements only a primary should run (writes, statements using connection-bound
    /// state) that this server executed while it was replicating, in order (per
    /// replicating period the first [`REPLICA_EXECS_MAX`]` - 1` and the latest), and how
    /// many more there were. Survives crashes.
    pub fn replica_execs(&self) -> (&[ReplicaExec], u64) {
        (&self.replica_execs, self.replica_execs_dropped)
    }

    /// `(clock ms, replicating)` for each time this server started or stopped
    /// replicating, in order. Survives crashes.
    pub fn role_changes(&self) -> &[(u64, bool)] {
        &self.role_changes
    }

    /// Forgets the role changes so far (a harness calls it once a cluster is set up:
    /// the roles it starts with are not changes).
    pub fn clear_role_changes(&mut self) {
        self.role_changes.clear();
    }

    /// Moves the server's clock forward to `now_ms` (never back). For a harness that
    /// changes a server's configuration while it is down (its tasks see no time
    /// pass), so that the change is recorded at the right time.
    pub fn advance_clock(&mut self, now_ms: u64) {
        self.observe(now_ms);
    }

    // ------------------------------------------------------------------
    // crash simulation
    // ------------------------------------------------------------------

    /// Crash and restart: every session is dropped (open transactions roll
    /// back, locks and temporary tables vanish), the relay log is lost;
    /// everything committed survives. The binlog rotates to a new file.
    pub fn crash(&mut self) {
        self.sessions.clear();
        self.locks.clear();
        self.repl.relay.clear();
        self.repl.received = None;
        self.binlog_file_no += 1;
        self.binlog_pos = 256;
        self.boot_count += 1;
        self.semi.off = false;
        self.bump_sessions();
    }

    /// Crash losing every binlog event from index `keep` on, together with
    /// its effects on data and GTID state (and anything committed after
    /// it). Returns the lost events.
    pub fn lose_binlog_tail(&mut self, keep: usize) -> Vec<BinlogEvent> {
        self.crash();
        if keep >= self.binlog.len() {
            return Vec::new();
        }
        let cut = self.binlog_hist[keep];
        let lost = self.binlog.split_off(keep);
        self.binlog_hist.truncate(keep);
        for e in &lost {
            self.binlog_index.remove(&e.gtid);
        }
        self.history.truncate(cut);
        self.rebuild_from_history();
        lost
    }

    /// Crash losing every binlog event after the last one contained in
    /// `replicated` (e.g. the most advanced replica's received position):
    /// the non-semi-sync "primary died with unreplicated transactions"
    /// scenario. Returns the lost events.
    pub fn lose_unreplicated(&mut self, replicated: &GtidPosition) -> Vec<BinlogEvent> {
        let keep = self
            .binlog
            .iter()
            .rposition(|e| replicated.contains(&e.gtid))
            .map_or(0, |i| i + 1);
        self.lose_binlog_tail(keep)
    }

    fn rebuild_from_history(&mut self) {
        self.catalog = self.initial_catalog.clone();
        self.maria_slave_pos = MariaGtidPos::new();
        for h in &self.history {
            match h {
                HistoryEntry::Commit { changes, applied } => {
                    // These all applied cleanly before; ignore individual failures.
                    let _ = self.catalog.apply_all(self.flavour, changes);
                    if let Some(Gtid::MariaDb(g)) = applied {
                        self.maria_slave_pos.advance(*g);
                    }
                }
                HistoryEntry::SetSlavePos(p) => self.maria_slave_pos = p.clone(),
            }
        }
        self.maria_binlog_pos = MariaGtidPos::new();
        self.maria_binlog_state.clear();
        self.mysql_executed = self.mysql_purged.clone();
        let gtids: Vec<Gtid> = self.binlog.iter().map(|e| e.gtid).collect();
        for g in &gtids {
            self.record_binlog_gtid(g);
        }
        self.semi.acked = GtidPosition::empty(self.flavour);
        self.bump();
    }

    /// Restore a fresh server from a "backup" of `src`: copies the
    /// committed data and sets the replication position to `src`'s
    /// executed position (MariaDB `gtid_slave_pos` = source's
    /// `gtid_current_pos`; MySQL `gtid_executed` = `gtid_purged` = source's
    /// `gtid_executed`). Sessions are dropped.
    pub fn provision_from(&mut self, src: &Server) {
        self.crash();
        self.catalog = src.catalog.clone();
        self.initial_catalog = src.catalog.clone();
        self.history.clear();
        self.binlog.clear();
        self.binlog_hist.clear();
        self.binlog_index.clear();
        self.maria_binlog_pos = MariaGtidPos::new();
        self.maria_binlog_state.clear();
        match self.flavour {
            Flavour::MariaDb => {
                let pos = src.gtid_current_pos().merged_max(&src.maria_binlog_pos);
                self.set_slave_pos(pos);
            }
            Flavour::MySql8 => {
                self.mysql_purged = src.mysql_executed.clone();
                self.mysql_executed = src.mysql_executed.clone();
            }
        }
        self.bump();
    }

    // ------------------------------------------------------------------
    // replication: primary side
    // ------------------------------------------------------------------

    /// The whole binlog.
    pub fn binlog(&self) -> &[BinlogEvent] {
        &self.binlog
    }

    pub fn binlog_len(&self) -> usize {
        self.binlog.len()
    }

    /// Binlog events from index `pos` on.
    pub fn binlog_since(&self, pos: usize) -> &[BinlogEvent] {
        &self.binlog[pos.min(self.binlog.len())..]
    }

    /// What a replica connecting with GTID position `pos` would be sent:
    /// every binlog event not contained in `pos`, or the 1236 error the
    /// real primary would answer with (MariaDB: the replica's GTID is not
    /// in this binlog; MySQL: the replica has transactions of this server's
    /// UUID that this server does not have).
    pub fn binlog_events_after(&self, pos: &GtidPosition) -> Result<Vec<BinlogEvent>, SqlError> {
        match pos {
            GtidPosition::MariaDb(p) => {
                for g in p.iter() {
                    if self.binlog_index.contains_key(&Gtid::MariaDb(*g)) {
                        continue;
                    }
                    // slow path: work out which error the real primary gives
                    let seqs: Vec<u64> = self
                        .binlog
                        .iter()
                        .filter_map(|e| match e.gtid {
                            Gtid::MariaDb(m) if m.domain == g.domain => Some(m.seq),
                            _ => None,
                        })
                        .collect();
                    let base = self.maria_slave_pos.get(g.domain).map_or(0, |x| x.seq);
                    match (seqs.iter().min(), seqs.iter().max()) {
                        // nothing of the domain here: fine if we were provisioned at/after it
                        (None, _) => {
                            if g.seq > base {
                                return Err(SqlError::mariadb_gtid_not_in_binlog(
                                    &g.to_string(),
                                    false,
                                ));
                            }
                        }
                        (Some(&min), Some(&max)) if max > g.seq => {
                            // older than our whole binlog (provisioned from a backup) is fine
                            if !(g.seq < min && g.seq <= base) {
                                return Err(SqlError::mariadb_gtid_not_in_binlog(
                                    &g.to_string(),
                                    true,
                                ));
                            }
                        }
                        _ => {
                            return Err(SqlError::mariadb_gtid_not_in_binlog(&g.to_string(), false))
                        }
                    }
                }
            }
            GtidPosition::MySql(set) => {
                let me = self.server_uuid();
                for &(a, b) in set.intervals(&me) {
                    let mut one = GtidSet::new();
                    one.add_interval(me, a, b);
                    if !one.is_subset(&self.mysql_executed) {
                        return Err(SqlError::mysql_replica_has_more_gtids());
                    }
                }
            }
        }
        // Walk back from the tail to the newest event the replica has; the
        // replica is assumed to hold everything before that (true unless it
        // skipped transactions, which the model never does).
        let mut out: Vec<BinlogEvent> = self
            .binlog
            .iter()
            .rev()
            .take_while(|e| !pos.contains(&e.gtid))
            .cloned()
            .collect();
        out.reverse();
        Ok(out)
    }

    // ------------------------------------------------------------------
    // replication: replica side
    // ------------------------------------------------------------------

    pub fn replica_state(&self) -> &ReplicaState {
        &self.repl
    }

    /// The source configured by CHANGE MASTER TO (the harness uses
    /// host/port to find the server to pull from).
    pub fn replica_source(&self) -> Option<&ReplicaSource> {
        self.repl.source.as_ref()
    }

    pub fn replica_io_running(&self) -> bool {
        self.repl.source.is_some() && self.repl.io_running
    }

    pub fn replica_sql_running(&self) -> bool {
        self.repl.source.is_some() && self.repl.sql_running
    }

    /// Harness: the IO thread can / cannot reach its source
    /// (`Slave_IO_Running: Yes` / `Connecting`).
    pub fn set_replica_connected(&mut self, connected: bool) {
        self.repl.io_connected = connected;
    }

    /// Harness: the source refused the replica (e.g. 1236 from
    /// [`binlog_events_after`](Self::binlog_events_after)); the IO thread
    /// stops with this error.
    pub fn set_replica_io_error(&mut self, err: SqlError) {
        self.repl.io_running = false;
        self.repl.last_io_error = Some(err);
        self.bump();
    }

    /// Where the replica's IO thread starts / continues reading: its
    /// received position if streaming, else its start position
    /// (MariaDB `MASTER_USE_GTID=slave_pos|current_pos`, MySQL
    /// `gtid_executed`). `None` if not configured or IO thread stopped.
    pub fn replica_request_position(&self) -> Option<GtidPosition> {
        if !self.replica_io_running() {
            return None;
        }
        Some(
            self.repl
                .received
                .clone()
                .unwrap_or_else(|| self.replica_start_position()),
        )
    }

    /// The received position (`Gtid_IO_Pos` / `Retrieved_Gtid_Set` ∪ executed).
    pub fn received_position(&self) -> GtidPosition {
        self.repl
            .received
            .clone()
            .unwrap_or_else(|| self.replica_start_position())
    }

    pub(crate) fn replica_start_position(&self) -> GtidPosition {
        let mut pos = match self.flavour {
            Flavour::MariaDb => {
                let use_gtid = self
                    .repl
                    .source
                    .as_ref()
                    .map_or(UseGtid::SlavePos, |s| s.use_gtid);
                GtidPosition::MariaDb(match use_gtid {
                    UseGtid::CurrentPos => self.gtid_current_pos(),
                    _ => self.maria_slave_pos.clone(),
                })
            }
            Flavour::MySql8 => GtidPosition::MySql(self.mysql_executed.clone()),
        };
        for e in &self.repl.relay {
            pos.add(&e.gtid);
        }
        pos
    }

    /// IO thread: store events received from the source in the relay log
    /// (duplicates and already-executed transactions are dropped). Returns
    /// how many were queued. No-op unless the IO thread is running.
    pub fn receive_events(
        &mut self,
        source_server_id: u32,
        source_uuid: Option<Uuid>,
        events: Vec<BinlogEvent>,
        _now: u64,
    ) -> usize {
        if !self.replica_io_running() {
            return 0;
        }
        let mut received = self.received_position();
        let mut n = 0;
        for ev in events {
            if received.contains(&ev.gtid) || self.executed_contains(&ev.gtid) {
                continue;
            }
            received.add(&ev.gtid);
            self.repl.master_log_file = ev.log_file.clone();
            self.repl.read_master_log_pos = ev.end_log_pos;
            self.repl.relay.push_back(ev);
            n += 1;
        }
        self.repl.master_server_id = source_server_id;
        self.repl.master_uuid = source_uuid;
        self.repl.received = Some(received);
        if n > 0 {
            self.bump();
        }
        n
    }

    /// SQL thread: apply up to `max` relay-log events. Stops early when an
    /// event is blocked by a local row lock or fails (the SQL thread then
    /// stops with `Last_SQL_Error`). Returns the number applied.
    pub fn apply_relay_log(&mut self, now: u64, max: usize) -> usize {
        let mut n = 0;
        while n < max && self.replica_sql_running() {
            let Some(ev) = self.repl.relay.front().cloned() else {
                break;
            };
            match self.apply_event(&ev, now) {
                Ok(ApplyOutcome::Applied) | Ok(ApplyOutcome::Skipped) => {
                    self.repl.relay.pop_front();
                    self.repl.relay_master_log_file = ev.log_file.clone();
                    self.repl.exec_master_log_pos = ev.end_log_pos;
                    n += 1;
                }
                Ok(ApplyOutcome::Blocked { .. }) => break,
                Err(e) => {
                    self.repl.sql_running = false;
                    let msg = format!(
                        "Error '{}' on query. Default database: ''. Query: '{}', Gtid {}, Internal MariaDB error code: {}",
                        e.message,
                        ev.changes.first().map(|c| c.to_string()).unwrap_or_default(),
                        ev.gtid,
                        e.code
                    );
                    let msg = match self.flavour {
                        Flavour::MariaDb => msg,
                        Flavour::MySql8 => format!(
                            "Coordinator stopped because there were error(s) in the worker(s). The most recent failure being: Worker 1 failed executing transaction '{}' at source log {}, end_log_pos {}. {}",
                            ev.gtid, ev.log_file, ev.end_log_pos, e.message
                        ),
                    };
                    self.repl.last_sql_error = Some(SqlError::new(e.code, &e.state, msg));
                    self.bump();
                    break;
                }
            }
        }
        n
    }

    /// Apply one replicated transaction directly (bypasses `read_only`).
    /// Already-executed GTIDs are skipped; on error nothing is applied.
    pub fn apply_event(&mut self, ev: &BinlogEvent, now: u64) -> Result<ApplyOutcome, SqlError> {
        self.observe(now);
        if self.executed_contains(&ev.gtid) {
            return Ok(ApplyOutcome::Skipped);
        }
        // Respect row locks held by local transactions.
        for ch in ev.changes.iter() {
            if let Some((db, table)) = ch.row_table() {
                if let Some(t) = self.catalog.table(db, table) {
                    let image = match ch {
                        Change::Insert { row, .. } => row,
                        Change::Update { before, .. } | Change::Delete { before, .. } => before,
                        _ => unreachable!(),
                    };
                    let key = if t.def.has_pk() {
                        Some(t.def.key_of(image))
                    } else {
                        t.find_key(image)
                    };
                    if let Some(key) = key {
                        let id = super::locks::RowLockId {
                            db: db.to_string(),
                            table: table.to_string(),
                            key,
                        };
                        if let Some(h) = self.locks.row_holder(&id) {
                            return Ok(ApplyOutcome::Blocked { holder: h });
                        }
                    }
                }
            } else {
                let target = match ch {
                    Change::DropTable { db, name, .. } | Change::Truncate { db, name } => {
                        Some((db.clone(), name.clone()))
                    }
                    _ => None,
                };
                if let Some((db, name)) = target {
                    if let Some(h) = self.locks.table_locked_by_other(&db, &name, 0) {
                        return Ok(ApplyOutcome::Blocked { holder: h });
                    }
                }
            }
        }
        self.catalog.apply_all(self.flavour, &ev.changes)?;
        self.history.push(HistoryEntry::Commit {
            changes: ev.changes.clone(),
            applied: Some(ev.gtid),
        });
        if let Gtid::MariaDb(g) = ev.gtid {
            self.maria_slave_pos.advance(g);
        }
        self.append_binlog(
            ev.gtid,
            ev.origin_server_id,
            ev.commit_time_ms,
            ev.changes.clone(),
            self.history.len() - 1,
        );
        self.repl.applied_events += 1;
        self.bump();
        Ok(ApplyOutcome::Applied)
    }

    /// One replication round from `primary`: if the IO thread runs, fetch
    /// everything after the request position (or record the 1236 error),
    /// then, if the SQL thread runs, apply the relay log. Returns the number
    /// of events applied.
    pub fn pull_from(&mut self, primary: &Server, now: u64) -> Result<usize, SqlError> {
        self.observe(now);
        if let Some(pos) = self.replica_request_position() {
            if self.repl.io_connected {
                match primary.binlog_events_after(&pos) {
                    Ok(evs) => {
                        self.receive_events(
                            primary.server_id(),
                            Some(primary.server_uuid()),
                            evs,
                            now,
                        );
                    }
                    Err(e) => {
                        self.set_replica_io_error(e.clone());
                        return Err(e);
                    }
                }
            }
        }
        Ok(self.apply_relay_log(now, usize::MAX))
    }

    /// Whether a GTID wait target is reached (MariaDB: `gtid_slave_pos`;
    /// MySQL: `gtid_executed`).
    pub(crate) fn gtid_wait_reached(&self, target: &GtidPosition) -> bool {
        match target {
            GtidPosition::MariaDb(t) => self.maria_slave_pos.reached(t),
            GtidPosition::MySql(t) => t.is_subset(&self.mysql_executed),
        }
    }

    // ------------------------------------------------------------------
    // helpers for exec / eval
    // ------------------------------------------------------------------

    /// Value of a system variable as `SELECT @@...` / SHOW VARIABLES see it.
    pub(crate) fn read_var(&self, sess: &Session, d: &VarDef, global: bool) -> Value {
        if d.dynamic {
            return match d.name {
                "error_count" => {
                    Value::Int(sess.warnings.iter().filter(|w| w.level == "Error").count() as i64)
                }
                "warning_count" => Value::Int(sess.warnings.len() as i64),
                "gtid_binlog_pos" => Value::str(self.maria_binlog_pos.to_string()),
                "gtid_binlog_state" => Value::str(
                    self.maria_binlog_state
                        .iter()
                        .map(|((d, s), q)| format!("{d}-{s}-{q}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                "gtid_current_pos" => Value::str(self.gtid_current_pos().to_string()),
                "gtid_slave_pos" => Value::str(self.maria_slave_pos.to_string()),
                "gtid_executed" => Value::str(self.mysql_executed.to_string()),
                "gtid_purged" => Value::str(self.mysql_purged.to_string()),
                "hostname" => Value::str(&self.cfg.hostname),
                "port" => Value::Int(self.cfg.port as i64),
                "identity" | "last_insert_id" => Value::UInt(sess.last_insert_id),
                "in_transaction" => Value::Int(sess.in_transaction() as i64),
                "last_gtid" => Value::str(&sess.last_gtid),
                "pseudo_thread_id" => Value::Int(sess.id as i64),
                "server_uuid" => Value::str(self.server_uuid().to_string()),
                "timestamp" => Value::Double((self.cfg.epoch_unix_ms + self.clock) as f64 / 1000.0),
                "version" => Value::str(self.cfg.version()),
                "version_comment" => Value::str(self.cfg.version_comment()),
                _ => Value::Null,
            };
        }
        if global || d.scope == Scope::Global {
            self.global(d.name)
        } else {
            sess.vars
                .get(d.name)
                .cloned()
                .unwrap_or_else(|| self.global(d.name))
        }
    }
}

pub(crate) fn status_of(sess: &Session) -> u16 {
    let mut f = 0;
    if sess.autocommit() {
        f |= status::SERVER_STATUS_AUTOCOMMIT;
    }
    if let Some(t) = &sess.txn {
        if !t.single_stmt {
            f |= status::SERVER_STATUS_IN_TRANS;
            if t.read_only {
                f |= status::SERVER_STATUS_IN_TRANS_READONLY;
            }
        }
    }
    f
}

/// MySQL's 8-character transaction state string.
fn trx_state_string(sess: &Session) -> String {
    let mut s = *b"________";
    if let Some(t) = &sess.txn {
        if !t.single_stmt {
            s[0] = if t.explicit { b'T' } else { b'I' };
            if t.has_reads {
                s[1] = b'r';
            }
            if t.has_writes {
                s[3] = b'w';
            }
        }
    }
    String::from_utf8(s.to_vec()).unwrap()
}

/// Helper used by exec: an OK packet with just affected rows.
pub(crate) fn ok(affected: u64) -> QueryResult {
    QueryResult::Ok(OkPacket {
        affected_rows: affected,
        ..Default::default()
    })
}
