//! Statement execution.
//!
//! Owns the semantics of every supported statement: SELECT (point lookups
//! by primary key, merged committed+overlay scans, WHERE / ORDER BY / LIMIT
//! / aggregates / locking reads with NOWAIT and SKIP LOCKED), INSERT
//! (multi-row, AUTO_INCREMENT, IGNORE, REPLACE, ON DUPLICATE KEY UPDATE),
//! UPDATE, DELETE, DDL with implicit commits and metadata-lock waits,
//! transaction control, SET, SHOW, and replication administration
//! (CHANGE MASTER, START/STOP/RESET SLAVE, RESET MASTER, KILL).
//!
//! Write statements lock every row they touch *before* mutating anything;
//! when a lock is held by another session the statement is rolled back to
//! its start and reported as blocked, to be re-executed from scratch by
//! `resume` (deterministic, so re-execution is equivalent to waiting).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::ast::*;
use super::error::SqlError;
use super::eval::{eval, substitute_values, ConstEnv, RowEnv};
use super::gtid::MariaGtidPos;
use super::locks::RowLockId;
use super::replication::{
    mysql_replica_column_name, ReplicaSource, UseGtid, MARIADB_ALL_SLAVES_PREFIX,
    MARIADB_ALL_SLAVES_SUFFIX, MARIADB_SLAVE_STATUS_COLUMNS, MYSQL_SLAVE_STATUS_COLUMNS,
};
use super::result::{
    col_flags, col_type, Column, OkPacket, QueryResult, ResultSet, StateChange, BINARY_COLLATION,
};
use super::server::{ok, IResult, Interrupt, Server};
use super::session::{CurrentStmt, Session, TableRef, WaitResource, WaitState, Warning};
use super::storage::{
    coerce_to_column, Change, ColType, ColumnDef, DefaultValue, Key, KeyPart, Row, Table, TableDef,
};
use super::value::{format_datetime, like_match, order_cmp, Value};
use super::vars::{self, Kind, Scope};
use super::{Flavour, SessionId, WaitReason};

/// How to find candidate rows.
enum Plan {
    Full,
    Points(Vec<Key>),
}

fn flatten_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    if let Expr::Bin {
        op: BinOp::And,
        l,
        r,
    } = e
    {
        flatten_and(l, out);
        flatten_and(r, out);
    } else {
        out.push(e);
    }
}

fn column_index_of(e: &Expr, def: &TableDef, names: (&str, &str)) -> Option<usize> {
    match e {
        Expr::Column { table, name } => {
            if let Some(t) = table {
                if !(t.eq_ignore_ascii_case(names.0) || t.eq_ignore_ascii_case(names.1)) {
                    return None;
                }
            }
            def.col_index(name)
        }
        _ => None,
    }
}

/// A key part for a literal compared with `=` against a key column, when
/// the comparison is exact (same type class).
fn exact_key_part(c: &ColumnDef, v: &Value) -> Option<KeyPart> {
    let ok_class = match (&c.ty, v) {
        (t, Value::Int(_) | Value::UInt(_)) if t.is_integer() => true,
        (
            ColType::Char(_) | ColType::VarChar(_) | ColType::Text(_) | ColType::Enum(_),
            Value::Bytes(_),
        ) => true,
        (t, Value::Bytes(_)) if t.is_binary_string() => true,
        _ => false,
    };
    if !ok_class {
        return None;
    }
    let stored = coerce_to_column(c, v.clone(), 1).ok()?;
    Some(KeyPart::from_value(&stored, &c.ty))
}

fn plan_for(def: &TableDef, where_: Option<&Expr>, names: (&str, &str)) -> Plan {
    let Some(w) = where_ else { return Plan::Full };
    if !def.has_pk() {
        return Plan::Full;
    }
    let mut conj = Vec::new();
    flatten_and(w, &mut conj);
    if def.primary_key.len() == 1 {
        let pk = def.primary_key[0];
        let col = &def.columns[pk];
        for c in &conj {
            let lits: Option<Vec<&Value>> = match c {
                Expr::Bin {
                    op: BinOp::Eq,
                    l,
                    r,
                } => match (&**l, &**r) {
                    (x, Expr::Lit(v)) if column_index_of(x, def, names) == Some(pk) => {
                        Some(vec![v])
                    }
                    (Expr::Lit(v), x) if column_index_of(x, def, names) == Some(pk) => {
                        Some(vec![v])
                    }
                    _ => None,
                },
                Expr::InList {
                    e,
                    list,
                    negated: false,
                } if column_index_of(e, def, names) == Some(pk) => list
                    .iter()
                    .map(|x| if let Expr::Lit(v) = x { Some(v) } else { None })
                    .collect(),
                _ => None,
            };
            if let Some(lits) = lits {
                let mut keys = BTreeSet::new();
                for v in lits {
                    if v.is_null() {
                        continue;
                    }
                    match exact_key_part(col, v) {
                        Some(k) => {
                            keys.insert(Key(vec![k]));
                        }
                        None => return Plan::Full,
                    }
                }
                return Plan::Points(keys.into_iter().collect());
            }
        }
        Plan::Full
    } else {
        let mut parts = Vec::new();
        for &pk in &def.primary_key {
            let col = &def.columns[pk];
            let found = conj.iter().find_map(|c| match c {
                Expr::Bin {
                    op: BinOp::Eq,
                    l,
                    r,
                } => match (&**l, &**r) {
                    (x, Expr::Lit(v)) | (Expr::Lit(v), x)
                        if column_index_of(x, def, names) == Some(pk) =>
                    {
                        exact_key_part(col, v)
                    }
                    _ => None,
                },
                _ => None,
            });
            match found {
                Some(p) => parts.push(p),
                None => return Plan::Full,
            }
        }
        Plan::Points(vec![Key(parts)])
    }
}

fn text_col(name: &str, f: Flavour) -> Column {
    Column::text(name, f.default_collation_id())
}

fn info_value(v: &Value) -> (u8, u16, u16, u32) {
    match v {
        Value::Int(_) => (
            col_type::LONGLONG,
            col_flags::BINARY | col_flags::NUM,
            BINARY_COLLATION,
            21,
        ),
        Value::UInt(_) => (
            col_type::LONGLONG,
            col_flags::BINARY | col_flags::NUM | col_flags::UNSIGNED,
            BINARY_COLLATION,
            21,
        ),
        Value::Double(_) => (
            col_type::DOUBLE,
            col_flags::BINARY | col_flags::NUM,
            BINARY_COLLATION,
            23,
        ),
        Value::Bytes(_) | Value::Null => (col_type::VAR_STRING, 0, 0, 256),
    }
}

impl Server {
    // ------------------------------------------------------------------
    // dispatch
    // ------------------------------------------------------------------

    pub(crate) fn exec_statement(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        now: u64,
    ) -> IResult<QueryResult> {
        let stmt = cur.stmt.clone();
        match &*stmt {
            Statement::Select(s) if s.from.is_some() => {
                self.in_stmt_txn(sess, cur, now, |srv, sess, cur| {
                    srv.select_from(sess, cur, s, now)
                })
            }
            Statement::Select(s) => self.select_const(sess, cur, s, now),
            Statement::Insert(i) => {
                let (tref, _) = self.resolve_table(sess, &i.table)?;
                self.in_stmt_txn(sess, cur, now, |srv, sess, cur| {
                    srv.check_writable(sess, &tref)?;
                    srv.insert(sess, cur, i, now)
                })
            }
            Statement::Update(u) => {
                let (tref, _) = self.resolve_table(sess, &u.table)?;
                self.in_stmt_txn(sess, cur, now, |srv, sess, cur| {
                    srv.check_writable(sess, &tref)?;
                    srv.update(sess, cur, u, now)
                })
            }
            Statement::Delete(d) => {
                let (tref, _) = self.resolve_table(sess, &d.table)?;
                self.in_stmt_txn(sess, cur, now, |srv, sess, cur| {
                    srv.check_writable(sess, &tref)?;
                    srv.delete(sess, cur, d, now)
                })
            }
            Statement::CreateTable(c) => self.create_table(sess, cur, c, now),
            Statement::DropTable {
                tables,
                if_exists,
                temporary,
            } => self.drop_tables(sess, cur, tables, *if_exists, *temporary, now),
            Statement::Truncate(t) => self.truncate(sess, cur, t, now),
            Statement::CreateDatabase {
                name,
                if_not_exists,
            } => {
                self.check_ddl_allowed(sess)?;
                self.implicit_commit(sess, cur, now)?;
                if self.catalog.dbs.contains_key(name)
                    || name.eq_ignore_ascii_case("information_schema")
                {
                    if !*if_not_exists {
                        return Err(SqlError::db_create_exists(name).into());
                    }
                    sess.warnings.push(Warning {
                        level: "Note",
                        code: 1007,
                        message: SqlError::db_create_exists(name).message,
                    });
                }
                self.durable_commit(
                    sess,
                    cur,
                    vec![Change::CreateDatabase {
                        name: name.clone(),
                        if_not_exists: *if_not_exists,
                    }],
                    now,
                )?;
                Ok(ok(1))
            }
            Statement::DropDatabase { name, if_exists } => {
                self.drop_database(sess, cur, name, *if_exists, now)
            }
            Statement::Use(db) => {
                if !self.catalog.dbs.contains_key(db) && db != "information_schema" {
                    return Err(SqlError::bad_db(db).into());
                }
                sess.db = Some(db.clone());
                if sess.var_i64("session_track_schema") != 0 {
                    cur.tracked.push(StateChange::Schema(db.clone()));
                }
                cur.state_changed = true;
                Ok(ok(0))
            }
            Statement::Begin { read_only } => {
                self.implicit_commit(sess, cur, now)?;
                let ro = read_only
                    .or(sess.next_txn_read_only.take())
                    .unwrap_or_else(|| sess.var_i64("transaction_read_only") != 0);
                sess.next_txn_isolation = None;
                sess.txn = Some(super::session::Txn {
                    read_only: ro,
                    explicit: true,
                    ..Default::default()
                });
                Ok(ok(0))
            }
            Statement::Commit => {
                self.commit_txn(sess, cur, now)?;
                Ok(ok(0))
            }
            Statement::Rollback { to_savepoint: None } => {
                self.rollback_txn(sess);
                Ok(ok(0))
            }
            Statement::Rollback {
                to_savepoint: Some(name),
            } => {
                let Some(t) = sess.txn.as_mut() else {
                    return Err(SqlError::savepoint_does_not_exist(name).into());
                };
                let Some(i) = t
                    .savepoints
                    .iter()
                    .rposition(|(n, _)| n.eq_ignore_ascii_case(name))
                else {
                    return Err(SqlError::savepoint_does_not_exist(name).into());
                };
                let mark = t.savepoints[i].1;
                t.rollback_to(mark);
                t.savepoints.truncate(i + 1);
                Ok(ok(0))
            }
            Statement::Savepoint(name) => {
                if let Some(t) = sess.txn.as_mut() {
                    t.savepoints.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    let mark = t.undo.len();
                    t.savepoints.push((name.clone(), mark));
                }
                Ok(ok(0))
            }
            Statement::ReleaseSavepoint(name) => {
                let Some(t) = sess.txn.as_mut() else {
                    return Err(SqlError::savepoint_does_not_exist(name).into());
                };
                let Some(i) = t
                    .savepoints
                    .iter()
                    .rposition(|(n, _)| n.eq_ignore_ascii_case(name))
                else {
                    return Err(SqlError::savepoint_does_not_exist(name).into());
                };
                t.savepoints.truncate(i);
                Ok(ok(0))
            }
            Statement::Set(items) => self.exec_set(sess, cur, items, now),
            Statement::Show(s) => self.exec_show(sess, cur, s, now),
            Statement::ChangeMaster(opts) => self.change_master(sess, cur, opts, now),
            Statement::StartSlave(t) => self.start_slave(sess, cur, *t, now),
            Statement::StopSlave(t) => {
                self.implicit_commit(sess, cur, now)?;
                let was = (self.repl.io_running && t.io) || (self.repl.sql_running && t.sql);
                if t.io {
                    self.repl.io_running = false;
                    self.repl.received = None;
                }
                if t.sql {
                    self.repl.sql_running = false;
                }
                if !was {
                    sess.warnings.push(Warning {
                        level: "Note",
                        code: 1255,
                        message: "Slave already has been stopped".into(),
                    });
                }
                self.bump();
                Ok(ok(0))
            }
            Statement::ResetSlave { all } => {
                self.implicit_commit(sess, cur, now)?;
                if self.repl.io_running || self.repl.sql_running {
                    return Err(SqlError::slave_must_stop(self.flavour).into());
                }
                self.repl.relay.clear();
                self.repl.received = None;
                self.repl.last_io_error = None;
                self.repl.last_sql_error = None;
                self.repl.master_log_file.clear();
                self.repl.read_master_log_pos = 0;
                self.repl.relay_master_log_file.clear();
                self.repl.exec_master_log_pos = 0;
                if *all {
                    self.repl = Default::default();
                }
                self.bump();
                Ok(ok(0))
            }
            Statement::ResetMaster => {
                self.implicit_commit(sess, cur, now)?;
                self.reset_master();
                Ok(ok(0))
            }
            Statement::Kill { query_only, id } => self.exec_kill(sess, cur, *query_only, id, now),
            Statement::Do(exprs) => {
                for e in exprs {
                    self.eval_const(sess, cur, e, now)?;
                }
                Ok(ok(0))
            }
            Statement::NoOp => Ok(ok(0)),
        }
    }

    /// Run a table-accessing statement inside the session's transaction (a
    /// statement transaction under autocommit), with statement-level
    /// rollback on error.
    fn in_stmt_txn<F>(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        now: u64,
        f: F,
    ) -> IResult<QueryResult>
    where
        F: FnOnce(&mut Server, &mut Session, &mut CurrentStmt) -> IResult<QueryResult>,
    {
        self.ensure_txn(sess);
        let mark = sess.txn.as_ref().unwrap().undo.len();
        match f(self, sess, cur) {
            Ok(r) => {
                if sess.txn.as_ref().is_some_and(|t| t.single_stmt) {
                    self.commit_txn(sess, cur, now)?;
                }
                Ok(r)
            }
            Err(Interrupt::Err(e)) => {
                if e.rolls_back_transaction() {
                    self.rollback_txn(sess);
                } else {
                    if let Some(t) = sess.txn.as_mut() {
                        t.rollback_to(mark);
                    }
                    self.end_statement_txn_on_error(sess);
                }
                Err(Interrupt::Err(e))
            }
            Err(Interrupt::Block(w)) => {
                if let Some(t) = sess.txn.as_mut() {
                    t.rollback_to(mark);
                }
                Err(Interrupt::Block(w))
            }
            Err(other) => Err(other),
        }
    }

    fn implicit_commit(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        now: u64,
    ) -> IResult<()> {
        if sess.txn.is_some() {
            self.commit_txn(sess, cur, now)?;
        }
        Ok(())
    }

    fn eval_const(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        e: &Expr,
        now: u64,
    ) -> IResult<Value> {
        let mut env = ConstEnv {
            srv: self,
            sess,
            cur,
            now,
        };
        eval(&mut env, e)
    }

    // ------------------------------------------------------------------
    // tables, visibility, locks
    // ------------------------------------------------------------------

    /// `information_schema.PROCESSLIST` (every session, this one included) and
    /// `information_schema.INNODB_TRX` (sessions with an open transaction), as columns and
    /// rows, when `t` names one of them (what Sluice's failover actor reads: clients to
    /// kill when fencing, transactions to drain before a switchover).
    fn information_schema_table(&self, sess: &Session, t: &TableName, now: u64) -> Option<(TableDef, Vec<Row>)> {
        let db = t.db.as_deref().or(sess.db.as_deref())?;
        if !db.eq_ignore_ascii_case("information_schema") {
            return None;
        }
        let col = |name: &str, ty: ColType| ColumnDef {
            name: name.to_string(),
            ty,
            unsigned: false,
            nullable: true,
            default: DefaultValue::Value(Value::Null),
            auto_increment: false,
        };
        let mut all: Vec<&Session> = self.sessions.values().collect();
        all.push(sess);
        all.sort_by_key(|s| s.id);
        let name = t.name.to_ascii_uppercase();
        match name.as_str() {
            "PROCESSLIST" => {
                let columns = vec![
                    col("ID", ColType::BigInt),
                    col("USER", ColType::VarChar(128)),
                    col("HOST", ColType::VarChar(64)),
                    col("DB", ColType::VarChar(64)),
                    col("COMMAND", ColType::VarChar(16)),
                    col("TIME", ColType::Int),
                    col("STATE", ColType::VarChar(64)),
                    col("INFO", ColType::Text(65535)),
                ];
                let rows = all
                    .iter()
                    .map(|s| {
                        let running = s.id == sess.id || s.pending.is_some();
                        vec![
                            Value::UInt(s.id as u64),
                            Value::str(&s.user),
                            Value::str(&s.host),
                            s.db.as_ref().map(Value::str).unwrap_or(Value::Null),
                            Value::str(if running { "Query" } else { "Sleep" }),
                            Value::Int((now.saturating_sub(s.last_active) / 1000) as i64),
                            Value::str(""),
                            Value::Null,
                        ]
                    })
                    .collect();
                Some((TableDef { name, columns, primary_key: Vec::new() }, rows))
            }
            "INNODB_TRX" => {
                let columns = vec![
                    col("trx_id", ColType::VarChar(20)),
                    col("trx_state", ColType::VarChar(13)),
                    col("trx_mysql_thread_id", ColType::BigInt),
                ];
                let rows = all
                    .iter()
                    .filter(|s| s.txn.as_ref().is_some_and(|t| !t.single_stmt || s.id != sess.id))
                    .map(|s| vec![Value::str(s.id.to_string()), Value::str("RUNNING"), Value::UInt(s.id as u64)])
                    .collect();
                Some((TableDef { name, columns, primary_key: Vec::new() }, rows))
            }
            _ => None,
        }
    }

    pub(crate) fn resolve_table(
        &self,
        sess: &Session,
        t: &TableName,
    ) -> Result<(TableRef, Arc<TableDef>), SqlError> {
        let db = match &t.db {
            Some(d) => d.clone(),
            None => sess.db.clone().ok_or_else(SqlError::no_db)?,
        };
        if let Some(tt) = sess.temp_tables.get(&(db.clone(), t.name.clone())) {
            return Ok((
                TableRef {
                    temp: true,
                    db,
                    name: t.name.clone(),
                },
                tt.def.clone(),
            ));
        }
        match self.catalog.table(&db, &t.name) {
            Some(tt) => Ok((
                TableRef {
                    temp: false,
                    db,
                    name: t.name.clone(),
                },
                tt.def.clone(),
            )),
            None => Err(SqlError::no_such_table(&db, &t.name)),
        }
    }

    fn table<'a>(&'a self, sess: &'a Session, tref: &TableRef) -> Option<&'a Table> {
        if tref.temp {
            sess.temp_tables.get(&(tref.db.clone(), tref.name.clone()))
        } else {
            self.catalog.table(&tref.db, &tref.name)
        }
    }

    fn table_mut<'a>(&'a mut self, sess: &'a mut Session, tref: &TableRef) -> &'a mut Table {
        if tref.temp {
            sess.temp_tables
                .get_mut(&(tref.db.clone(), tref.name.clone()))
                .expect("temp table")
        } else {
            self.catalog
                .table_mut(&tref.db, &tref.name)
                .expect("base table")
        }
    }

    /// The session's view of one row.
    fn visible_get(&self, sess: &Session, tref: &TableRef, key: &Key) -> Option<Row> {
        if let Some(t) = &sess.txn {
            if let Some(v) = t.get(tref, key) {
                return v.clone();
            }
        }
        self.table(sess, tref)?.rows.get(key).cloned()
    }

    /// Candidate rows (committed merged with the session's overlay), in key order.
    fn scan_visible<'a>(
        &'a self,
        sess: &'a Session,
        tref: &TableRef,
        plan: &Plan,
    ) -> Vec<(&'a Key, &'a Row)> {
        let Some(table) = self.table(sess, tref) else {
            return Vec::new();
        };
        let ov = sess.txn.as_ref().and_then(|t| t.overlay.get(tref));
        let mut out = Vec::new();
        match plan {
            Plan::Points(keys) => {
                for k in keys {
                    if let Some((kk, v)) = ov.and_then(|o| o.get_key_value(k)) {
                        if let Some(r) = v {
                            out.push((kk, r));
                        }
                    } else if let Some((kk, r)) = table.rows.get_key_value(k) {
                        out.push((kk, r));
                    }
                }
            }
            Plan::Full => {
                let mut a = table.rows.iter().peekable();
                let mut b = ov.into_iter().flat_map(|o| o.iter()).peekable();
                loop {
                    match (a.peek(), b.peek()) {
                        (None, None) => break,
                        (Some(_), None) => {
                            let (k, r) = a.next().unwrap();
                            out.push((k, r));
                        }
                        (None, Some(_)) => {
                            let (k, v) = b.next().unwrap();
                            if let Some(r) = v {
                                out.push((k, r));
                            }
                        }
                        (Some((ka, _)), Some((kb, _))) => match ka.cmp(kb) {
                            Ordering::Less => {
                                let (k, r) = a.next().unwrap();
                                out.push((k, r));
                            }
                            Ordering::Greater => {
                                let (k, v) = b.next().unwrap();
                                if let Some(r) = v {
                                    out.push((k, r));
                                }
                            }
                            Ordering::Equal => {
                                a.next();
                                let (k, v) = b.next().unwrap();
                                if let Some(r) = v {
                                    out.push((k, r));
                                }
                            }
                        },
                    }
                }
            }
        }
        out
    }

    fn lock_wait_timeout_ms(&self, sess: &Session) -> u64 {
        sess.var_i64("innodb_lock_wait_timeout").max(0) as u64 * 1000
    }

    /// Take an exclusive row lock (no-op for temporary tables). `Ok(false)`
    /// means SKIP LOCKED skipped the row.
    fn lock_row(
        &mut self,
        sess: &Session,
        cur: &mut CurrentStmt,
        tref: &TableRef,
        key: &Key,
        wait: LockWait,
        now: u64,
    ) -> IResult<bool> {
        if tref.temp {
            return Ok(true);
        }
        let id = RowLockId {
            db: tref.db.clone(),
            table: tref.name.clone(),
            key: key.clone(),
        };
        match self.locks.try_lock_row(sess.id, &id) {
            Ok(()) => Ok(true),
            Err(holder) => match wait {
                LockWait::SkipLocked => Ok(false),
                LockWait::NoWait => Err(SqlError::lock_nowait(self.flavour).into()),
                LockWait::Wait => {
                    if self.would_deadlock(sess.id, holder) {
                        return Err(SqlError::deadlock().into());
                    }
                    let started = *cur.lock_wait_started.get_or_insert(now);
                    let deadline = started + self.lock_wait_timeout_ms(sess);
                    if now >= deadline {
                        return Err(SqlError::lock_wait_timeout().into());
                    }
                    Err(Interrupt::Block(WaitState {
                        reason: WaitReason::RowLock { holder },
                        resource: WaitResource::Row(id),
                        deadline: Some(deadline),
                    }))
                }
            },
        }
    }

    /// Whether `me` waiting for `holder` closes a cycle in the wait-for graph.
    pub(crate) fn would_deadlock(&self, me: SessionId, holder: SessionId) -> bool {
        let mut cur = holder;
        for _ in 0..=self.sessions.len() {
            if cur == me {
                return true;
            }
            let Some(s) = self.sessions.get(&cur) else {
                return false;
            };
            let Some(w) = s
                .pending
                .as_ref()
                .and_then(|p| p.current.as_ref())
                .and_then(|c| c.wait.as_ref())
            else {
                return false;
            };
            let next = match &w.resource {
                WaitResource::Row(id) => self.locks.row_holder(id),
                WaitResource::Table { db, table } => {
                    self.locks.table_locked_by_other(db, table, cur)
                }
                WaitResource::UserLock(n) => self.locks.user_lock_holder(n),
                _ => None,
            };
            match next {
                Some(n) if n != cur => cur = n,
                _ => return false,
            }
        }
        false
    }

    /// DDL waits while another session holds row locks in the table.
    fn wait_table_mdl(
        &mut self,
        sess: &Session,
        cur: &mut CurrentStmt,
        db: &str,
        table: &str,
        now: u64,
    ) -> IResult<()> {
        if let Some(holder) = self.locks.table_locked_by_other(db, table, sess.id) {
            if self.would_deadlock(sess.id, holder) {
                return Err(SqlError::deadlock().into());
            }
            let started = *cur.lock_wait_started.get_or_insert(now);
            let deadline = started + sess.var_i64("lock_wait_timeout").max(0) as u64 * 1000;
            if now >= deadline {
                return Err(SqlError::lock_wait_timeout().into());
            }
            return Err(Interrupt::Block(WaitState {
                reason: WaitReason::MetadataLock { holder },
                resource: WaitResource::Table {
                    db: db.to_string(),
                    table: table.to_string(),
                },
                deadline: Some(deadline),
            }));
        }
        Ok(())
    }

    fn check_read_only_server(&self, sess: &Session) -> Result<(), SqlError> {
        if self.flavour == Flavour::MySql8 && self.global_i64("super_read_only") != 0 {
            return Err(SqlError::super_read_only(self.flavour));
        }
        if self.read_only() && !self.is_super(&sess.user) {
            return Err(SqlError::read_only(self.flavour));
        }
        Ok(())
    }

    /// Writes to base tables: refused by read-only transactions and by
    /// `read_only` for ordinary users. Temporary tables are always writable.
    fn check_writable(&self, sess: &Session, tref: &TableRef) -> Result<(), SqlError> {
        if tref.temp {
            return Ok(());
        }
        let ro_txn = match &sess.txn {
            Some(t) => t.read_only,
            None => sess
                .next_txn_read_only
                .unwrap_or_else(|| sess.var_i64("transaction_read_only") != 0),
        };
        if ro_txn {
            return Err(SqlError::read_only_transaction());
        }
        self.check_read_only_server(sess)
    }

    fn check_ddl_allowed(&self, sess: &Session) -> Result<(), SqlError> {
        self.check_read_only_server(sess)
    }

    // ------------------------------------------------------------------
    // SELECT
    // ------------------------------------------------------------------

    fn select_const(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        sel: &Select,
        now: u64,
    ) -> IResult<QueryResult> {
        if let Some(w) = &sel.where_ {
            // SELECT 1 WHERE 0
            let v = self.eval_const(sess, cur, w, now)?;
            if v.truthy() != Some(true) {
                let cols = self.const_columns(sel, &[]);
                return Ok(QueryResult::ResultSet(ResultSet {
                    columns: cols,
                    rows: vec![],
                    ..Default::default()
                }));
            }
        }
        let mut row = Vec::new();
        for it in &sel.items {
            match &it.expr {
                SelectExpr::Star(_) => {
                    return Err(SqlError::new(1096, "HY000", "No tables used").into())
                }
                SelectExpr::Expr(e) => row.push(self.eval_const(sess, cur, e, now)?),
            }
        }
        let (off, cnt) = sel.limit.unwrap_or((0, u64::MAX));
        let rows = if off == 0 && cnt > 0 {
            vec![row]
        } else {
            vec![]
        };
        let cols = self.const_columns(sel, rows.first().map(|r| r.as_slice()).unwrap_or(&[]));
        Ok(QueryResult::ResultSet(ResultSet {
            columns: cols,
            rows,
            ..Default::default()
        }))
    }

    fn const_columns(&self, sel: &Select, row: &[Value]) -> Vec<Column> {
        sel.items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let name = it.alias.clone().unwrap_or_else(|| it.text.clone());
                let e = match &it.expr {
                    SelectExpr::Expr(e) => Some(e),
                    _ => None,
                };
                self.expr_column(&name, e, row.get(i))
            })
            .collect()
    }

    /// Result metadata for an expression column.
    fn expr_column(&self, name: &str, e: Option<&Expr>, sample: Option<&Value>) -> Column {
        let f = self.flavour;
        let coll = f.default_collation_id();
        let fixed =
            |t: u8, flags: u16, len: u32| Column::expr(name, t, flags, BINARY_COLLATION, len);
        if let Some(e) = e {
            match e {
                Expr::Lit(Value::Null) => return fixed(col_type::NULL, col_flags::BINARY, 0),
                Expr::SysVar { name: vn, .. } => {
                    if let Some(d) = vars::lookup(f, vn) {
                        return match d.kind {
                            Kind::Bool | Kind::Int => {
                                fixed(col_type::LONGLONG, col_flags::BINARY | col_flags::NUM, 21)
                            }
                            _ => Column::expr(name, col_type::VAR_STRING, 0, coll, 256),
                        };
                    }
                }
                Expr::CountStar
                | Expr::Agg {
                    func: AggFunc::Count,
                    ..
                } => {
                    return fixed(
                        col_type::LONGLONG,
                        col_flags::NOT_NULL | col_flags::BINARY | col_flags::NUM,
                        21,
                    )
                }
                Expr::Func { name: fname, .. } => {
                    let u = fname.to_ascii_uppercase();
                    match u.as_str() {
                        "NOW" | "CURRENT_TIMESTAMP" | "SYSDATE" | "LOCALTIME"
                        | "LOCALTIMESTAMP" | "UTC_TIMESTAMP" => {
                            return fixed(col_type::DATETIME, col_flags::BINARY, 19)
                        }
                        "LAST_INSERT_ID" | "CONNECTION_ID" => {
                            return fixed(
                                col_type::LONGLONG,
                                col_flags::NOT_NULL
                                    | col_flags::UNSIGNED
                                    | col_flags::BINARY
                                    | col_flags::NUM,
                                21,
                            )
                        }
                        "GET_LOCK"
                        | "RELEASE_LOCK"
                        | "IS_FREE_LOCK"
                        | "IS_USED_LOCK"
                        | "MASTER_GTID_WAIT"
                        | "WAIT_FOR_EXECUTED_GTID_SET"
                        | "SLEEP"
                        | "RELEASE_ALL_LOCKS"
                        | "GTID_SUBSET" => {
                            return fixed(
                                col_type::LONGLONG,
                                col_flags::BINARY | col_flags::NUM,
                                21,
                            )
                        }
                        "DATABASE" | "SCHEMA" | "VERSION" | "USER" | "CURRENT_USER"
                        | "GTID_SUBTRACT" => {
                            return Column::expr(name, col_type::VAR_STRING, 0, coll, 256)
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        match sample {
            Some(v) if !v.is_null() => {
                let (t, mut flags, cs, len) = info_value(v);
                if matches!(e, Some(Expr::Lit(_))) {
                    flags |= col_flags::NOT_NULL;
                }
                Column::expr(name, t, flags, if cs == 0 { coll } else { cs }, len)
            }
            _ => Column::expr(name, col_type::VAR_STRING, 0, coll, 256),
        }
    }

    fn select_from(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        sel: &Select,
        now: u64,
    ) -> IResult<QueryResult> {
        let tname = sel.from.as_ref().unwrap();
        // information_schema's PROCESSLIST and INNODB_TRX are built on the fly.
        let virt = self.information_schema_table(sess, tname, now);
        let (tref, def) = match &virt {
            Some((d, _)) => (
                TableRef {
                    temp: false,
                    db: "information_schema".into(),
                    name: d.name.clone(),
                },
                Arc::new(d.clone()),
            ),
            None => self.resolve_table(sess, tname)?,
        };
        let virt_rows: Vec<(Key, Row)> = virt
            .map(|(_, rows)| rows.into_iter().enumerate().map(|(i, r)| (Key::hidden(i as u64), r)).collect())
            .unwrap_or_default();
        let is_virtual = tref.db == "information_schema";
        let alias = sel.alias.clone().unwrap_or_else(|| def.name.clone());
        let names = (alias.as_str(), def.name.as_str());
        if let Some(t) = sess.txn.as_mut() {
            t.has_reads = true;
        }
        let plan = plan_for(&def, sel.where_.as_ref(), names);
        // 1. filter
        let mut rows: Vec<(Key, Row)> = Vec::new();
        {
            let srv: &Server = self;
            let s: &Session = sess;
            let candidates: Vec<(&Key, &Row)> = if is_virtual {
                virt_rows.iter().map(|(k, r)| (k, r)).collect()
            } else {
                srv.scan_visible(s, &tref, &plan)
            };
            if let Some(w) = &sel.where_ {
                if candidates.is_empty() {
                    let mut env = RowEnv {
                        srv,
                        sess: s,
                        def: &def,
                        names,
                        row: None,
                        context: "where clause",
                        aggs: None,
                        now,
                    };
                    eval(&mut env, w)?;
                }
            }
            for (k, r) in candidates {
                if let Some(w) = &sel.where_ {
                    let mut env = RowEnv {
                        srv,
                        sess: s,
                        def: &def,
                        names,
                        row: Some(r),
                        context: "where clause",
                        aggs: None,
                        now,
                    };
                    if eval(&mut env, w)?.truthy() != Some(true) {
                        continue;
                    }
                }
                rows.push((k.clone(), r.clone()));
            }
        }
        let has_agg = sel
            .items
            .iter()
            .any(|i| matches!(&i.expr, SelectExpr::Expr(e) if e.has_aggregate()));
        let (offset, count) = sel.limit.unwrap_or((0, u64::MAX));
        let wait = sel.lock.map(|(_, w)| w).unwrap_or(LockWait::Wait);

        if has_agg {
            if sel.lock.is_some() {
                for (k, _) in &rows {
                    self.lock_row(sess, cur, &tref, k, wait, now)?;
                }
            }
            return self.aggregate_select(sess, sel, &tref, &def, names, &rows, now);
        }

        // 2. order
        if !sel.order_by.is_empty() {
            let mut keyed = Vec::with_capacity(rows.len());
            for (k, r) in rows {
                let mut ks = Vec::with_capacity(sel.order_by.len());
                for o in &sel.order_by {
                    ks.push(self.order_value(sess, sel, &def, names, &r, o, now)?);
                }
                keyed.push((ks, (k, r)));
            }
            keyed.sort_by(|a, b| {
                for (i, o) in sel.order_by.iter().enumerate() {
                    let c = order_cmp(&a.0[i], &b.0[i]);
                    let c = if o.desc { c.reverse() } else { c };
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                Ordering::Equal
            });
            rows = keyed.into_iter().map(|x| x.1).collect();
        }

        // 3. limit + locking
        let mut selected: Vec<Row> = Vec::new();
        let mut skipped = 0u64;
        for (k, r) in rows {
            if selected.len() as u64 >= count {
                break;
            }
            if sel.lock.is_some() && !self.lock_row(sess, cur, &tref, &k, wait, now)? {
                continue;
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            selected.push(r);
        }

        // 4. project
        let srv: &Server = self;
        let s: &Session = sess;
        let mut out_rows = Vec::with_capacity(selected.len());
        if selected.is_empty() {
            // surface unknown-column errors even without rows
            let mut env = RowEnv {
                srv,
                sess: s,
                def: &def,
                names,
                row: None,
                context: "field list",
                aggs: None,
                now,
            };
            srv.project(&mut env, sel)?;
        }
        for r in &selected {
            let mut env = RowEnv {
                srv,
                sess: s,
                def: &def,
                names,
                row: Some(r),
                context: "field list",
                aggs: None,
                now,
            };
            out_rows.push(srv.project(&mut env, sel)?);
        }
        let columns = self.table_columns(
            sel,
            &tref,
            &def,
            &alias,
            out_rows.first().map(|r| r.as_slice()),
        );
        Ok(QueryResult::ResultSet(ResultSet {
            columns,
            rows: out_rows,
            ..Default::default()
        }))
    }

    fn project(&self, env: &mut RowEnv<'_>, sel: &Select) -> IResult<Vec<Value>> {
        let mut out = Vec::new();
        for it in &sel.items {
            match &it.expr {
                SelectExpr::Star(q) => {
                    if let Some(q) = q {
                        if !(q.eq_ignore_ascii_case(env.names.0)
                            || q.eq_ignore_ascii_case(env.names.1))
                        {
                            return Err(SqlError::new(
                                1051,
                                "42S02",
                                format!("Unknown table '{q}'"),
                            )
                            .into());
                        }
                    }
                    match env.row {
                        Some(r) => out.extend(r.iter().cloned()),
                        None => out.extend(std::iter::repeat_n(Value::Null, env.def.columns.len())),
                    }
                }
                SelectExpr::Expr(e) => out.push(eval(env, e)?),
            }
        }
        Ok(out)
    }

    fn table_columns(
        &self,
        sel: &Select,
        tref: &TableRef,
        def: &TableDef,
        alias: &str,
        sample: Option<&[Value]>,
    ) -> Vec<Column> {
        let f = self.flavour;
        let mut cols = Vec::new();
        let mut pos = 0;
        let table_col = |idx: usize, name: &str| Column {
            schema: tref.db.clone(),
            table: alias.to_string(),
            org_table: def.name.clone(),
            name: name.to_string(),
            org_name: def.columns[idx].name.clone(),
            charset: def.column_charset(idx, f),
            length: def.columns[idx]
                .ty
                .display_length(def.columns[idx].unsigned),
            col_type: def.columns[idx].ty.wire_type(),
            flags: def.column_flags(idx),
            decimals: match def.columns[idx].ty {
                ColType::Decimal { scale, .. } => scale,
                ColType::Float | ColType::Double => 31,
                _ => 0,
            },
        };
        for it in &sel.items {
            match &it.expr {
                SelectExpr::Star(_) => {
                    for (i, c) in def.columns.iter().enumerate() {
                        cols.push(table_col(i, &c.name));
                    }
                    pos += def.columns.len();
                }
                SelectExpr::Expr(e) => {
                    let name = it.alias.clone().unwrap_or_else(|| it.text.clone());
                    if let Expr::Column { name: cn, .. } = e {
                        if let Some(i) = def.col_index(cn) {
                            cols.push(table_col(i, &name));
                            pos += 1;
                            continue;
                        }
                    }
                    cols.push(self.expr_column(&name, Some(e), sample.and_then(|s| s.get(pos))));
                    pos += 1;
                }
            }
        }
        cols
    }

    #[allow(clippy::too_many_arguments)]
    fn order_value(
        &self,
        sess: &Session,
        sel: &Select,
        def: &TableDef,
        names: (&str, &str),
        row: &[Value],
        o: &OrderBy,
        now: u64,
    ) -> IResult<Value> {
        let mut env = RowEnv {
            srv: self,
            sess,
            def,
            names,
            row: Some(row),
            context: "order clause",
            aggs: None,
            now,
        };
        match &o.expr {
            Expr::Lit(Value::Int(n)) => {
                let n = *n;
                let item = if n >= 1 {
                    sel.items.get(n as usize - 1)
                } else {
                    None
                };
                match item {
                    Some(SelectItem {
                        expr: SelectExpr::Expr(e),
                        ..
                    }) => eval(&mut env, e),
                    _ => Err(SqlError::unknown_column(&n.to_string(), "order clause").into()),
                }
            }
            Expr::Column { table: None, name } => {
                if let Some(it) = sel.items.iter().find(|it| {
                    it.alias
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(name))
                }) {
                    if let SelectExpr::Expr(e) = &it.expr {
                        return eval(&mut env, e);
                    }
                }
                eval(&mut env, &o.expr)
            }
            e => eval(&mut env, e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn aggregate_select(
        &self,
        sess: &Session,
        sel: &Select,
        tref: &TableRef,
        def: &TableDef,
        names: (&str, &str),
        rows: &[(Key, Row)],
        now: u64,
    ) -> IResult<QueryResult> {
        let mut nodes: Vec<&Expr> = Vec::new();
        for it in &sel.items {
            if let SelectExpr::Expr(e) = &it.expr {
                collect_aggs(e, &mut nodes);
            }
        }
        let mut aggs = BTreeMap::new();
        for n in nodes {
            let v = match n {
                Expr::CountStar => Value::Int(rows.len() as i64),
                Expr::Agg {
                    func,
                    arg,
                    distinct,
                } => {
                    let mut vals = Vec::new();
                    for (_, r) in rows {
                        let mut env = RowEnv {
                            srv: self,
                            sess,
                            def,
                            names,
                            row: Some(r),
                            context: "field list",
                            aggs: None,
                            now,
                        };
                        let v = eval(&mut env, arg)?;
                        if !v.is_null() {
                            vals.push(v);
                        }
                    }
                    if *distinct {
                        vals.sort_by(order_cmp);
                        vals.dedup_by(|a, b| order_cmp(a, b) == Ordering::Equal);
                    }
                    aggregate_values(*func, vals)
                }
                _ => continue,
            };
            aggs.insert(n as *const Expr as usize, v);
        }
        let first = rows.first().map(|(_, r)| r.as_slice());
        let mut env = RowEnv {
            srv: self,
            sess,
            def,
            names,
            row: first,
            context: "field list",
            aggs: Some(&aggs),
            now,
        };
        let row = self.project(&mut env, sel)?;
        let (off, cnt) = sel.limit.unwrap_or((0, u64::MAX));
        let alias = names.0.to_string();
        let columns = self.table_columns(sel, tref, def, &alias, Some(&row));
        let rows_out = if off == 0 && cnt > 0 {
            vec![row]
        } else {
            vec![]
        };
        Ok(QueryResult::ResultSet(ResultSet {
            columns,
            rows: rows_out,
            ..Default::default()
        }))
    }

    // ------------------------------------------------------------------
    // INSERT / UPDATE / DELETE
    // ------------------------------------------------------------------

    fn column_default(&self, c: &ColumnDef, now: u64) -> Result<Value, SqlError> {
        match &c.default {
            DefaultValue::Value(v) => Ok(v.clone()),
            DefaultValue::CurrentTimestamp => {
                Ok(Value::str(format_datetime(self.cfg.epoch_unix_ms + now)))
            }
            DefaultValue::None => {
                if c.auto_increment {
                    Ok(Value::Null)
                } else {
                    Err(SqlError::no_default(&c.name))
                }
            }
        }
    }

    fn insert(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        ins: &Insert,
        now: u64,
    ) -> IResult<QueryResult> {
        let (tref, def) = self.resolve_table(sess, &ins.table)?;
        let ncols = def.columns.len();
        let cols: Vec<usize> = match &ins.columns {
            Some(names) => {
                let mut v = Vec::new();
                for n in names {
                    let i = def
                        .col_index(n)
                        .ok_or_else(|| SqlError::unknown_column(n, "field list"))?;
                    if v.contains(&i) {
                        return Err(SqlError::new(
                            1110,
                            "42000",
                            format!("Column '{n}' specified twice"),
                        )
                        .into());
                    }
                    v.push(i);
                }
                v
            }
            None => (0..ncols).collect(),
        };
        let ai = def.auto_inc_col();
        // build rows
        let mut new_rows: Vec<(Row, bool)> = Vec::with_capacity(ins.rows.len());
        for (ri, exprs) in ins.rows.iter().enumerate() {
            let rowno = ri + 1;
            if exprs.len() != cols.len() && !(exprs.is_empty() && ins.columns.is_none()) {
                return Err(SqlError::value_count(rowno).into());
            }
            let mut row: Vec<Option<Value>> = vec![None; ncols];
            for (j, e) in exprs.iter().enumerate() {
                let ci = cols[j];
                let v = match e {
                    Expr::Default => self.column_default(&def.columns[ci], now)?,
                    e => self.eval_const(sess, cur, e, now)?,
                };
                row[ci] = Some(v);
            }
            let mut needs_ai = false;
            let mut full = Vec::with_capacity(ncols);
            for (ci, v) in row.into_iter().enumerate() {
                let c = &def.columns[ci];
                let v = match v {
                    Some(v) => v,
                    None => self.column_default(c, now)?,
                };
                if Some(ci) == ai && (v.is_null() || v.to_i128() == Some(0)) {
                    needs_ai = true;
                    full.push(Value::Null);
                    continue;
                }
                full.push(coerce_to_column(c, v, rowno)?);
            }
            new_rows.push((full, needs_ai));
        }
        // lock phase
        if def.has_pk() {
            for (row, needs_ai) in &new_rows {
                if !needs_ai {
                    let key = def.key_of(row);
                    self.lock_row(sess, cur, &tref, &key, LockWait::Wait, now)?;
                }
            }
        }
        // mutation phase
        let mut affected = 0u64;
        let mut dups = 0u64;
        let mut first_auto: Option<u64> = None;
        let mut last_ai_value: Option<u64> = None;
        for (ri, (mut row, needs_ai)) in new_rows.into_iter().enumerate() {
            let rowno = ri + 1;
            if needs_ai {
                let ai = ai.unwrap();
                let t = self.table_mut(sess, &tref);
                let id = t.auto_inc;
                t.auto_inc = t.auto_inc.saturating_add(1);
                row[ai] = coerce_to_column(&def.columns[ai], Value::UInt(id), rowno)?;
                first_auto.get_or_insert(id);
                if def.has_pk() {
                    let key = def.key_of(&row);
                    self.lock_row(sess, cur, &tref, &key, LockWait::Wait, now)?;
                }
            } else if let Some(ai) = ai {
                let t = self.table_mut(sess, &tref);
                t.observe_auto_inc(&row);
                last_ai_value = row[ai].to_i128().map(|v| v.max(0) as u64);
            }
            let key = if def.has_pk() {
                def.key_of(&row)
            } else {
                let t = self.table_mut(sess, &tref);
                let k = Key::hidden(t.hidden_next);
                t.hidden_next += 1;
                k
            };
            let existing = if def.has_pk() {
                self.visible_get(sess, &tref, &key)
            } else {
                None
            };
            match existing {
                None => {
                    sess.txn.as_mut().unwrap().put(&tref, key, Some(row));
                    affected += 1;
                }
                Some(old) => {
                    let dup = SqlError::dup_entry(
                        self.flavour,
                        &def.key_text(&row),
                        &def.name,
                        "PRIMARY",
                    );
                    if ins.replace {
                        sess.txn.as_mut().unwrap().put(&tref, key, Some(row));
                        affected += 2;
                        dups += 1;
                    } else if !ins.on_dup.is_empty() {
                        let mut updated = old.clone();
                        for (cname, e) in &ins.on_dup {
                            let ci = def
                                .col_index(cname)
                                .ok_or_else(|| SqlError::unknown_column(cname, "field list"))?;
                            let e = substitute_values(e, &def, &row);
                            let v = match &e {
                                Expr::Default => self.column_default(&def.columns[ci], now)?,
                                e => {
                                    let mut env = RowEnv {
                                        srv: self,
                                        sess,
                                        def: &def,
                                        names: (&def.name, &def.name),
                                        row: Some(&updated),
                                        context: "field list",
                                        aggs: None,
                                        now,
                                    };
                                    eval(&mut env, e)?
                                }
                            };
                            updated[ci] = coerce_to_column(&def.columns[ci], v, rowno)?;
                        }
                        if updated != old {
                            let new_key = def.key_of(&updated);
                            if new_key != key {
                                if self.visible_get(sess, &tref, &new_key).is_some() {
                                    return Err(SqlError::dup_entry(
                                        self.flavour,
                                        &def.key_text(&updated),
                                        &def.name,
                                        "PRIMARY",
                                    )
                                    .into());
                                }
                                self.lock_row(sess, cur, &tref, &new_key, LockWait::Wait, now)?;
                                let txn = sess.txn.as_mut().unwrap();
                                txn.put(&tref, key, None);
                                txn.put(&tref, new_key, Some(updated.clone()));
                            } else {
                                sess.txn
                                    .as_mut()
                                    .unwrap()
                                    .put(&tref, key, Some(updated.clone()));
                            }
                            self.table_mut(sess, &tref).observe_auto_inc(&updated);
                            affected += 2;
                        }
                        dups += 1;
                    } else if ins.ignore {
                        sess.warnings.push(Warning {
                            level: "Warning",
                            code: dup.code,
                            message: dup.message,
                        });
                        dups += 1;
                    } else {
                        return Err(dup.into());
                    }
                }
            }
        }
        if let Some(id) = first_auto {
            sess.last_insert_id = id;
        }
        let info = if ins.rows.len() > 1 {
            format!(
                "Records: {}  Duplicates: {}  Warnings: {}",
                ins.rows.len(),
                dups,
                sess.warnings.len()
            )
        } else {
            String::new()
        };
        Ok(QueryResult::Ok(OkPacket {
            affected_rows: affected,
            last_insert_id: first_auto.or(last_ai_value).unwrap_or(0),
            info,
            ..Default::default()
        }))
    }

    /// Rows matching a WHERE clause, ordered / limited as requested.
    #[allow(clippy::too_many_arguments)]
    fn matching_rows(
        &self,
        sess: &Session,
        tref: &TableRef,
        def: &TableDef,
        names: (&str, &str),
        where_: Option<&Expr>,
        order_by: &[OrderBy],
        limit: Option<u64>,
        now: u64,
    ) -> IResult<Vec<(Key, Row)>> {
        let plan = plan_for(def, where_, names);
        let candidates = self.scan_visible(sess, tref, &plan);
        if candidates.is_empty() {
            if let Some(w) = where_ {
                let mut env = RowEnv {
                    srv: self,
                    sess,
                    def,
                    names,
                    row: None,
                    context: "where clause",
                    aggs: None,
                    now,
                };
                eval(&mut env, w)?;
            }
        }
        let mut rows = Vec::new();
        for (k, r) in candidates {
            if let Some(w) = where_ {
                let mut env = RowEnv {
                    srv: self,
                    sess,
                    def,
                    names,
                    row: Some(r),
                    context: "where clause",
                    aggs: None,
                    now,
                };
                if eval(&mut env, w)?.truthy() != Some(true) {
                    continue;
                }
            }
            rows.push((k.clone(), r.clone()));
        }
        if !order_by.is_empty() {
            let mut keyed = Vec::with_capacity(rows.len());
            for (k, r) in rows {
                let mut ks = Vec::new();
                for o in order_by {
                    let mut env = RowEnv {
                        srv: self,
                        sess,
                        def,
                        names,
                        row: Some(&r),
                        context: "order clause",
                        aggs: None,
                        now,
                    };
                    ks.push(eval(&mut env, &o.expr)?);
                }
                keyed.push((ks, (k, r)));
            }
            keyed.sort_by(|a, b| {
                for (i, o) in order_by.iter().enumerate() {
                    let c = order_cmp(&a.0[i], &b.0[i]);
                    let c = if o.desc { c.reverse() } else { c };
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                Ordering::Equal
            });
            rows = keyed.into_iter().map(|x| x.1).collect();
        }
        if let Some(l) = limit {
            rows.truncate(l.min(usize::MAX as u64) as usize);
        }
        Ok(rows)
    }

    fn update(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        up: &Update,
        now: u64,
    ) -> IResult<QueryResult> {
        let (tref, def) = self.resolve_table(sess, &up.table)?;
        let alias = up.alias.clone().unwrap_or_else(|| def.name.clone());
        let names = (alias.as_str(), def.name.as_str());
        let mut targets = Vec::with_capacity(up.sets.len());
        for (c, e) in &up.sets {
            let i = def
                .col_index(c)
                .ok_or_else(|| SqlError::unknown_column(c, "field list"))?;
            targets.push((i, e));
        }
        let rows = self.matching_rows(
            sess,
            &tref,
            &def,
            names,
            up.where_.as_ref(),
            &up.order_by,
            up.limit,
            now,
        )?;
        for (k, _) in &rows {
            self.lock_row(sess, cur, &tref, k, LockWait::Wait, now)?;
        }
        let mut matched = 0u64;
        let mut changed = 0u64;
        for (ri, (k, _)) in rows.iter().enumerate() {
            let rowno = ri + 1;
            let Some(current) = self.visible_get(sess, &tref, k) else {
                continue;
            };
            matched += 1;
            let mut new = current.clone();
            for (ci, e) in &targets {
                let v = match e {
                    Expr::Default => self.column_default(&def.columns[*ci], now)?,
                    e => {
                        let mut env = RowEnv {
                            srv: self,
                            sess,
                            def: &def,
                            names,
                            row: Some(&new),
                            context: "field list",
                            aggs: None,
                            now,
                        };
                        eval(&mut env, e)?
                    }
                };
                new[*ci] = coerce_to_column(&def.columns[*ci], v, rowno)?;
            }
            if new == current {
                continue;
            }
            changed += 1;
            let new_key = if def.has_pk() {
                def.key_of(&new)
            } else {
                k.clone()
            };
            if &new_key != k {
                if self.visible_get(sess, &tref, &new_key).is_some() {
                    return Err(SqlError::dup_entry(
                        self.flavour,
                        &def.key_text(&new),
                        &def.name,
                        "PRIMARY",
                    )
                    .into());
                }
                self.lock_row(sess, cur, &tref, &new_key, LockWait::Wait, now)?;
                let txn = sess.txn.as_mut().unwrap();
                txn.put(&tref, k.clone(), None);
                txn.put(&tref, new_key, Some(new.clone()));
            } else {
                sess.txn
                    .as_mut()
                    .unwrap()
                    .put(&tref, k.clone(), Some(new.clone()));
            }
            self.table_mut(sess, &tref).observe_auto_inc(&new);
        }
        let info = format!(
            "Rows matched: {}  Changed: {}  Warnings: {}",
            matched,
            changed,
            sess.warnings.len()
        );
        Ok(QueryResult::Ok(OkPacket {
            affected_rows: if sess.client_found_rows {
                matched
            } else {
                changed
            },
            info,
            ..Default::default()
        }))
    }

    fn delete(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        del: &Delete,
        now: u64,
    ) -> IResult<QueryResult> {
        let (tref, def) = self.resolve_table(sess, &del.table)?;
        let names = (def.name.as_str(), def.name.as_str());
        let rows = self.matching_rows(
            sess,
            &tref,
            &def,
            names,
            del.where_.as_ref(),
            &del.order_by,
            del.limit,
            now,
        )?;
        for (k, _) in &rows {
            self.lock_row(sess, cur, &tref, k, LockWait::Wait, now)?;
        }
        let mut n = 0;
        for (k, _) in rows {
            if self.visible_get(sess, &tref, &k).is_some() {
                sess.txn.as_mut().unwrap().put(&tref, k, None);
                n += 1;
            }
        }
        Ok(ok(n))
    }

    // ------------------------------------------------------------------
    // DDL
    // ------------------------------------------------------------------

    fn build_table_def(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        c: &CreateTable,
        now: u64,
    ) -> IResult<TableDef> {
        if c.columns.is_empty() {
            return Err(SqlError::new(1113, "42000", "A table must have at least 1 column").into());
        }
        for (i, a) in c.columns.iter().enumerate() {
            if c.columns[..i]
                .iter()
                .any(|b| b.name.eq_ignore_ascii_case(&a.name))
            {
                return Err(SqlError::new(
                    1060,
                    "42S21",
                    format!("Duplicate column name '{}'", a.name),
                )
                .into());
            }
        }
        let inline_pk: Vec<usize> = c
            .columns
            .iter()
            .enumerate()
            .filter(|(_, s)| s.primary_key)
            .map(|(i, _)| i)
            .collect();
        if inline_pk.len() + c.primary_key.is_some() as usize > 1 {
            return Err(SqlError::new(1068, "42000", "Multiple primary key defined").into());
        }
        let pk: Vec<usize> = match &c.primary_key {
            Some(cols) => {
                let mut v = Vec::new();
                for n in cols {
                    let i = c
                        .columns
                        .iter()
                        .position(|s| s.name.eq_ignore_ascii_case(n))
                        .ok_or_else(|| {
                            SqlError::new(
                                1072,
                                "42000",
                                format!("Key column '{n}' doesn't exist in table"),
                            )
                        })?;
                    v.push(i);
                }
                v
            }
            None => inline_pk,
        };
        if c.columns.iter().filter(|s| s.auto_increment).count() > 1 {
            return Err(SqlError::new(1075, "42000", "Incorrect table definition; there can be only one auto column and it must be defined as a key").into());
        }
        let mut columns = Vec::new();
        for (i, s) in c.columns.iter().enumerate() {
            let in_pk = pk.contains(&i);
            if in_pk && s.nullable == Some(true) {
                return Err(SqlError::new(1171, "42000", "All parts of a PRIMARY KEY must be NOT NULL; if you need NULL in a key, use UNIQUE instead").into());
            }
            let nullable = !in_pk && s.nullable.unwrap_or(true);
            let mut col = ColumnDef {
                name: s.name.clone(),
                ty: s.ty.clone(),
                unsigned: s.unsigned,
                nullable,
                default: DefaultValue::None,
                auto_increment: s.auto_increment,
            };
            let invalid = || {
                SqlError::new(
                    1067,
                    "42000",
                    format!("Invalid default value for '{}'", s.name),
                )
            };
            col.default = match &s.default {
                None => {
                    if s.auto_increment || !nullable {
                        DefaultValue::None
                    } else {
                        DefaultValue::Value(Value::Null)
                    }
                }
                Some(Expr::Func { name, .. })
                    if ["CURRENT_TIMESTAMP", "NOW", "LOCALTIMESTAMP", "LOCALTIME"]
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(name)) =>
                {
                    DefaultValue::CurrentTimestamp
                }
                Some(e) => {
                    let v = self.eval_const(sess, cur, e, now)?;
                    if v.is_null() {
                        if !nullable {
                            return Err(invalid().into());
                        }
                        DefaultValue::Value(Value::Null)
                    } else {
                        DefaultValue::Value(coerce_to_column(&col, v, 1).map_err(|_| invalid())?)
                    }
                }
            };
            columns.push(col);
        }
        Ok(TableDef {
            name: c.table.name.clone(),
            columns,
            primary_key: pk,
        })
    }

    fn create_table(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        c: &CreateTable,
        now: u64,
    ) -> IResult<QueryResult> {
        let db = match &c.table.db {
            Some(d) => d.clone(),
            None => sess.db.clone().ok_or_else(SqlError::no_db)?,
        };
        if c.temporary {
            if !self.catalog.dbs.contains_key(&db) {
                return Err(SqlError::bad_db(&db).into());
            }
            let def = self.build_table_def(sess, cur, c, now)?;
            let key = (db.clone(), def.name.clone());
            if sess.temp_tables.contains_key(&key) {
                if c.if_not_exists {
                    sess.warnings.push(Warning {
                        level: "Note",
                        code: 1050,
                        message: SqlError::table_exists(&def.name).message,
                    });
                    return Ok(ok(0));
                }
                return Err(SqlError::table_exists(&def.name).into());
            }
            sess.temp_tables.insert(key, Table::new(Arc::new(def)));
            cur.state_changed = true;
            return Ok(ok(0));
        }
        self.check_ddl_allowed(sess)?;
        self.implicit_commit(sess, cur, now)?;
        if !self.catalog.dbs.contains_key(&db) {
            return Err(SqlError::bad_db(&db).into());
        }
        let def = self.build_table_def(sess, cur, c, now)?;
        if self.catalog.table(&db, &def.name).is_some() {
            if !c.if_not_exists {
                return Err(SqlError::table_exists(&def.name).into());
            }
            sess.warnings.push(Warning {
                level: "Note",
                code: 1050,
                message: SqlError::table_exists(&def.name).message,
            });
        }
        self.durable_commit(
            sess,
            cur,
            vec![Change::CreateTable {
                db,
                def: Arc::new(def),
                if_not_exists: c.if_not_exists,
            }],
            now,
        )?;
        Ok(ok(0))
    }

    fn drop_tables(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        tables: &[TableName],
        if_exists: bool,
        temporary: bool,
        now: u64,
    ) -> IResult<QueryResult> {
        let mut resolved = Vec::new();
        for t in tables {
            let db = match &t.db {
                Some(d) => d.clone(),
                None => sess.db.clone().ok_or_else(SqlError::no_db)?,
            };
            resolved.push((db, t.name.clone()));
        }
        if !temporary {
            if resolved.iter().any(|k| !sess.temp_tables.contains_key(k)) {
                self.check_ddl_allowed(sess)?;
            }
            self.implicit_commit(sess, cur, now)?;
        }
        let mut missing = Vec::new();
        let mut base = Vec::new();
        for (db, name) in &resolved {
            if sess.temp_tables.contains_key(&(db.clone(), name.clone())) {
                continue;
            }
            if temporary || self.catalog.table(db, name).is_none() {
                missing.push(format!("{db}.{name}"));
            } else {
                base.push((db.clone(), name.clone()));
            }
        }
        if !missing.is_empty() {
            let e = SqlError::new(
                1051,
                "42S02",
                format!("Unknown table '{}'", missing.join(",")),
            );
            if !if_exists {
                return Err(e.into());
            }
            for m in &missing {
                sess.warnings.push(Warning {
                    level: "Note",
                    code: 1051,
                    message: format!("Unknown table '{m}'"),
                });
            }
        }
        for (db, name) in &base {
            self.wait_table_mdl(sess, cur, db, name, now)?;
        }
        // temporary tables go first, without binlogging
        for k in &resolved {
            if sess.temp_tables.remove(k).is_some() {
                let tref = TableRef {
                    temp: true,
                    db: k.0.clone(),
                    name: k.1.clone(),
                };
                if let Some(t) = sess.txn.as_mut() {
                    t.forget_table(&tref);
                }
            }
        }
        let mut changes: Vec<Change> = base
            .into_iter()
            .map(|(db, name)| Change::DropTable {
                db,
                name,
                if_exists,
            })
            .collect();
        if !temporary && if_exists {
            for m in &missing {
                if let Some((db, name)) = m.split_once('.') {
                    changes.push(Change::DropTable {
                        db: db.into(),
                        name: name.into(),
                        if_exists: true,
                    });
                }
            }
        }
        if !changes.is_empty() {
            self.durable_commit(sess, cur, changes, now)?;
        }
        Ok(ok(0))
    }

    fn truncate(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        t: &TableName,
        now: u64,
    ) -> IResult<QueryResult> {
        let (tref, _) = self.resolve_table(sess, t)?;
        if tref.temp {
            if let Some(txn) = sess.txn.as_mut() {
                txn.forget_table(&tref);
            }
            let table = self.table_mut(sess, &tref);
            table.rows.clear();
            table.auto_inc = 1;
            return Ok(ok(0));
        }
        self.check_ddl_allowed(sess)?;
        self.implicit_commit(sess, cur, now)?;
        self.wait_table_mdl(sess, cur, &tref.db, &tref.name, now)?;
        self.durable_commit(
            sess,
            cur,
            vec![Change::Truncate {
                db: tref.db,
                name: tref.name,
            }],
            now,
        )?;
        Ok(ok(0))
    }

    fn drop_database(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        name: &str,
        if_exists: bool,
        now: u64,
    ) -> IResult<QueryResult> {
        self.check_ddl_allowed(sess)?;
        self.implicit_commit(sess, cur, now)?;
        let Some(db) = self.catalog.dbs.get(name) else {
            if !if_exists {
                return Err(SqlError::db_drop_exists(name).into());
            }
            sess.warnings.push(Warning {
                level: "Note",
                code: 1008,
                message: SqlError::db_drop_exists(name).message,
            });
            self.durable_commit(
                sess,
                cur,
                vec![Change::DropDatabase {
                    name: name.to_string(),
                    if_exists: true,
                }],
                now,
            )?;
            return Ok(ok(0));
        };
        let tables: Vec<String> = db.tables.keys().cloned().collect();
        for t in &tables {
            self.wait_table_mdl(sess, cur, name, t, now)?;
        }
        self.durable_commit(
            sess,
            cur,
            vec![Change::DropDatabase {
                name: name.to_string(),
                if_exists,
            }],
            now,
        )?;
        if sess.db.as_deref() == Some(name) {
            sess.db = None;
        }
        Ok(ok(tables.len() as u64))
    }

    // ------------------------------------------------------------------
    // SET
    // ------------------------------------------------------------------

    fn exec_set(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        items: &[SetItem],
        now: u64,
    ) -> IResult<QueryResult> {
        for item in items {
            match item {
                SetItem::UserVar { name, value } => {
                    sess.session_bound_used.set(true);
                    let v = self.eval_const(sess, cur, value, now)?;
                    sess.user_vars.insert(name.to_lowercase(), v);
                    cur.state_changed = true;
                }
                SetItem::SysVar { scope, name, value } => {
                    self.set_sysvar(sess, cur, *scope, name, value, now)?
                }
                SetItem::Names { charset, collation } => {
                    let cs = charset.to_ascii_lowercase();
                    let coll = collation
                        .clone()
                        .map(|c| c.to_ascii_lowercase())
                        .unwrap_or_else(|| {
                            if cs == "utf8mb4" {
                                vars::default_value(
                                    &self.cfg,
                                    vars::lookup(self.flavour, "collation_connection").unwrap(),
                                )
                                .as_string()
                                .unwrap()
                            } else {
                                format!("{cs}_general_ci")
                            }
                        });
                    for (n, v) in [
                        ("character_set_client", cs.clone()),
                        ("character_set_connection", cs.clone()),
                        ("character_set_results", cs.clone()),
                        ("collation_connection", coll.clone()),
                    ] {
                        sess.vars
                            .insert(vars::lookup(self.flavour, n).unwrap().name, Value::str(&v));
                        if sess.tracks_variable(n) {
                            cur.tracked.push(StateChange::SystemVariable {
                                name: n.into(),
                                value: v,
                            });
                        }
                    }
                    cur.state_changed = true;
                }
                SetItem::Transaction {
                    scope,
                    isolation,
                    read_only,
                } => match scope {
                    None => {
                        if sess.in_transaction() {
                            return Err(SqlError::cant_change_tx_characteristics().into());
                        }
                        if read_only.is_some() {
                            sess.next_txn_read_only = *read_only;
                        }
                        if isolation.is_some() {
                            sess.next_txn_isolation = isolation.clone();
                        }
                    }
                    Some(VarScope::Global) => {
                        if let Some(ro) = read_only {
                            self.globals
                                .insert("transaction_read_only", Value::Int(*ro as i64));
                        }
                        if let Some(iso) = isolation {
                            self.globals
                                .insert("transaction_isolation", Value::str(iso));
                        }
                    }
                    Some(_) => {
                        if let Some(ro) = read_only {
                            sess.vars
                                .insert("transaction_read_only", Value::Int(*ro as i64));
                        }
                        if let Some(iso) = isolation {
                            sess.vars.insert("transaction_isolation", Value::str(iso));
                        }
                        cur.state_changed = true;
                    }
                },
            }
        }
        Ok(ok(0))
    }

    fn set_sysvar(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        scope: VarScope,
        name: &str,
        value: &Expr,
        now: u64,
    ) -> IResult<()> {
        let d = vars::lookup(self.flavour, name)
            .ok_or_else(|| SqlError::unknown_system_variable(name))?;
        if d.read_only {
            return Err(SqlError::incorrect_global_local_var(name, "read only").into());
        }
        let global = match scope {
            VarScope::Global => {
                if d.scope == Scope::Session {
                    return Err(SqlError::local_variable(name).into());
                }
                true
            }
            VarScope::Session | VarScope::Default => {
                if d.scope == Scope::Global {
                    return Err(SqlError::global_variable(name).into());
                }
                false
            }
        };
        let raw = match value {
            Expr::Default => {
                if global {
                    vars::default_value(&self.cfg, d)
                } else {
                    self.global(d.name)
                }
            }
            Expr::Column {
                table: None,
                name: word,
            } => Value::str(word),
            e => self.eval_const(sess, cur, e, now)?,
        };
        let v = vars::normalize(d, name, raw)?;
        match d.name {
            "autocommit" if v.truthy() == Some(true) && sess.txn.is_some() => {
                self.commit_txn(sess, cur, now)?;
            }
            "read_only" => {
                if sess.in_transaction() {
                    return Err(SqlError::lock_or_active_transaction().into());
                }
                if v.truthy() == Some(false) {
                    self.globals.insert("super_read_only", Value::Int(0));
                }
            }
            "super_read_only" if v.truthy() == Some(true) => {
                self.globals.insert("read_only", Value::Int(1));
            }
            "gtid_slave_pos" => {
                if self.repl.io_running || self.repl.sql_running {
                    return Err(SqlError::slave_must_stop(self.flavour).into());
                }
                let text = v.as_string().unwrap_or_default();
                let pos: MariaGtidPos =
                    text.parse().map_err(|_| SqlError::incorrect_gtid_state())?;
                self.set_slave_pos(pos);
                return Ok(());
            }
            "gtid_next"
                if !v
                    .as_string()
                    .unwrap_or_default()
                    .eq_ignore_ascii_case("AUTOMATIC") =>
            {
                return Err(SqlError::not_supported(
                    self.flavour,
                    "gtid_next other than AUTOMATIC",
                )
                .into());
            }
            "rpl_semi_sync_master_enabled" => self.bump(),
            _ => {}
        }
        if global {
            self.globals.insert(d.name, v);
        } else {
            let shown = vars::show_text(d, &v);
            sess.vars.insert(d.name, v);
            if sess.tracks_variable(name) || sess.tracks_variable(d.name) {
                cur.tracked.push(StateChange::SystemVariable {
                    name: name.to_string(),
                    value: shown,
                });
            }
            cur.state_changed = true;
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // SHOW
    // ------------------------------------------------------------------

    fn exec_show(
        &mut self,
        sess: &mut Session,
        _cur: &mut CurrentStmt,
        s: &ShowStmt,
        now: u64,
    ) -> IResult<QueryResult> {
        let f = self.flavour;
        let coll = f.default_collation_id();
        let rs = |columns: Vec<Column>, rows: Vec<Vec<Value>>| {
            Ok(QueryResult::ResultSet(ResultSet {
                columns,
                rows,
                ..Default::default()
            }))
        };
        let like_ok = |like: &Option<String>, name: &str| {
            like.as_ref()
                .is_none_or(|p| like_match(name.as_bytes(), p.as_bytes()))
        };
        match s {
            ShowStmt::Variables { global, like } => {
                let mut rows = Vec::new();
                for (name, d) in vars::all_names(f) {
                    if !like_ok(like, name) {
                        continue;
                    }
                    if *global && d.scope == Scope::Session {
                        continue;
                    }
                    let v = self.read_var(sess, d, *global);
                    rows.push(vec![Value::str(name), Value::str(vars::show_text(d, &v))]);
                }
                rs(
                    vec![text_col("Variable_name", f), text_col("Value", f)],
                    rows,
                )
            }
            ShowStmt::Status { like, .. } => {
                let onoff = |b: bool| if b { "ON" } else { "OFF" };
                let all = vec![
                    ("Rpl_semi_sync_master_clients", "0".to_string()),
                    ("Rpl_semi_sync_master_no_tx", self.semi_no_tx().to_string()),
                    (
                        "Rpl_semi_sync_master_status",
                        onoff(self.semi_sync_active()).to_string(),
                    ),
                    (
                        "Rpl_semi_sync_master_yes_tx",
                        self.semi_yes_tx().to_string(),
                    ),
                    (
                        "Slave_running",
                        onoff(self.replica_io_running() && self.replica_sql_running()).to_string(),
                    ),
                    ("Threads_connected", (self.sessions.len() + 1).to_string()),
                    (
                        "Threads_running",
                        (1 + self
                            .sessions
                            .values()
                            .filter(|s| s.pending.is_some())
                            .count())
                        .to_string(),
                    ),
                    ("Uptime", (now / 1000).to_string()),
                ];
                let rows = all
                    .into_iter()
                    .filter(|(n, _)| like_ok(like, n))
                    .map(|(n, v)| vec![Value::str(n), Value::str(v)])
                    .collect();
                rs(
                    vec![text_col("Variable_name", f), text_col("Value", f)],
                    rows,
                )
            }
            ShowStmt::Databases { like } => {
                let mut names: Vec<String> = vec!["information_schema".into()];
                names.extend(self.catalog.dbs.keys().cloned());
                names.sort();
                let rows = names
                    .into_iter()
                    .filter(|n| like_ok(like, n))
                    .map(|n| vec![Value::str(n)])
                    .collect();
                let title = match like {
                    Some(p) => format!("Database ({p})"),
                    None => "Database".into(),
                };
                rs(vec![text_col(&title, f)], rows)
            }
            ShowStmt::Tables { db, like } => {
                let db = match db {
                    Some(d) => d.clone(),
                    None => sess.db.clone().ok_or_else(SqlError::no_db)?,
                };
                let d = self.catalog.db(&db).ok_or_else(|| SqlError::bad_db(&db))?;
                let rows = d
                    .tables
                    .keys()
                    .filter(|n| like_ok(like, n))
                    .map(|n| vec![Value::str(n)])
                    .collect();
                let title = match like {
                    Some(p) => format!("Tables_in_{db} ({p})"),
                    None => format!("Tables_in_{db}"),
                };
                rs(vec![text_col(&title, f)], rows)
            }
            ShowStmt::ReplicaStatus { all, replica_words } => {
                if *all && f == Flavour::MySql8 {
                    return Err(SqlError::parse_error(f, "ALL SLAVES STATUS", 1).into());
                }
                Ok(QueryResult::ResultSet(self.replica_status(
                    *all,
                    *replica_words,
                    now,
                )))
            }
            ShowStmt::MasterStatus => {
                let mut cols = vec![
                    text_col("File", f),
                    Column::int("Position"),
                    text_col("Binlog_Do_DB", f),
                    text_col("Binlog_Ignore_DB", f),
                ];
                let mut row = vec![
                    Value::str(self.binlog_file_name()),
                    Value::UInt(self.binlog_file_pos()),
                    Value::str(""),
                    Value::str(""),
                ];
                if f == Flavour::MySql8 {
                    cols.push(text_col("Executed_Gtid_Set", f));
                    row.push(Value::str(self.mysql_executed.to_string()));
                }
                rs(cols, vec![row])
            }
            ShowStmt::Warnings | ShowStmt::Errors => {
                let only_errors = matches!(s, ShowStmt::Errors);
                let rows = sess
                    .warnings
                    .iter()
                    .filter(|w| !only_errors || w.level == "Error")
                    .map(|w| {
                        vec![
                            Value::str(w.level),
                            Value::Int(w.code as i64),
                            Value::str(&w.message),
                        ]
                    })
                    .collect();
                rs(
                    vec![
                        text_col("Level", f),
                        Column::int("Code"),
                        text_col("Message", f),
                    ],
                    rows,
                )
            }
            ShowStmt::ProcessList => {
                let mut all: Vec<&Session> = self.sessions.values().collect();
                all.push(sess);
                all.sort_by_key(|s| s.id);
                let mut rows = Vec::new();
                for s in all {
                    let running = s.id == sess.id || s.pending.is_some();
                    let info = if s.id == sess.id {
                        Value::str("SHOW PROCESSLIST")
                    } else {
                        match s.pending.as_ref().and_then(|p| {
                            p.current
                                .as_ref()
                                .map(|c| p.sql[c.start..c.end].to_string())
                        }) {
                            Some(q) => Value::str(q),
                            None => Value::Null,
                        }
                    };
                    let state = match s
                        .pending
                        .as_ref()
                        .and_then(|p| p.current.as_ref())
                        .and_then(|c| c.wait.as_ref())
                    {
                        Some(w) => match &w.reason {
                            WaitReason::RowLock { .. } => "updating",
                            WaitReason::MetadataLock { .. } => "Waiting for table metadata lock",
                            WaitReason::UserLock { .. } => "User lock",
                            WaitReason::GtidWait { .. } => "Waiting for GTID to be committed",
                            WaitReason::Sleep => "User sleep",
                            WaitReason::FaultDelay => "executing",
                        },
                        None if running => "starting",
                        None => "",
                    };
                    let mut row = vec![
                        Value::UInt(s.id as u64),
                        Value::str(&s.user),
                        Value::str(&s.host),
                        s.db.as_ref().map(Value::str).unwrap_or(Value::Null),
                        Value::str(if running { "Query" } else { "Sleep" }),
                        Value::Int((now.saturating_sub(s.last_active) / 1000) as i64),
                        Value::str(state),
                        info,
                    ];
                    if f == Flavour::MariaDb {
                        row.push(Value::str("0.000"));
                    }
                    rows.push(row);
                }
                let mut cols = vec![
                    Column::int("Id"),
                    text_col("User", f),
                    text_col("Host", f),
                    text_col("db", f),
                    text_col("Command", f),
                    Column::int("Time"),
                    text_col("State", f),
                    text_col("Info", f),
                ];
                if f == Flavour::MariaDb {
                    cols.push(text_col("Progress", f));
                }
                rs(cols, rows)
            }
            ShowStmt::CreateTable(t) => {
                let (_, def) = self.resolve_table(sess, t)?;
                let mut lines = Vec::new();
                for c in &def.columns {
                    let mut l = format!("  `{}` {}", c.name, c.ty.sql_name(c.unsigned));
                    if !c.nullable {
                        l.push_str(" NOT NULL");
                    }
                    match &c.default {
                        DefaultValue::Value(Value::Null) if c.nullable => {
                            l.push_str(" DEFAULT NULL")
                        }
                        DefaultValue::Value(v) => l.push_str(&format!(" DEFAULT '{}'", v)),
                        DefaultValue::CurrentTimestamp => l.push_str(" DEFAULT CURRENT_TIMESTAMP"),
                        DefaultValue::None => {}
                    }
                    if c.auto_increment {
                        l.push_str(" AUTO_INCREMENT");
                    }
                    lines.push(l);
                }
                if def.has_pk() {
                    let cols: Vec<String> = def
                        .primary_key
                        .iter()
                        .map(|&i| format!("`{}`", def.columns[i].name))
                        .collect();
                    lines.push(format!("  PRIMARY KEY ({})", cols.join(",")));
                }
                let cs = if f == Flavour::MariaDb {
                    "utf8mb4 COLLATE=utf8mb4_general_ci"
                } else {
                    "utf8mb4 COLLATE=utf8mb4_0900_ai_ci"
                };
                let text = format!(
                    "CREATE TABLE `{}` (\n{}\n) ENGINE=InnoDB DEFAULT CHARSET={}",
                    def.name,
                    lines.join(",\n"),
                    cs
                );
                let _ = coll;
                rs(
                    vec![text_col("Table", f), text_col("Create Table", f)],
                    vec![vec![Value::str(&def.name), Value::str(text)]],
                )
            }
        }
    }

    fn semi_no_tx(&self) -> u64 {
        self.semi_counters().1
    }

    fn semi_yes_tx(&self) -> u64 {
        self.semi_counters().0
    }

    fn replica_status(&self, all: bool, replica_words: bool, now: u64) -> ResultSet {
        let f = self.flavour;
        let maria = f == Flavour::MariaDb;
        let base: &[&str] = if maria {
            MARIADB_SLAVE_STATUS_COLUMNS
        } else {
            MYSQL_SLAVE_STATUS_COLUMNS
        };
        let mut names: Vec<String> = Vec::new();
        if all {
            names.extend(MARIADB_ALL_SLAVES_PREFIX.iter().map(|s| s.to_string()));
        }
        names.extend(base.iter().map(|s| s.to_string()));
        if all {
            names.extend(MARIADB_ALL_SLAVES_SUFFIX.iter().map(|s| s.to_string()));
        }
        let Some(src) = &self.repl.source else {
            let columns = names
                .iter()
                .map(|n| {
                    let n = if replica_words && !maria {
                        mysql_replica_column_name(n)
                    } else {
                        n.clone()
                    };
                    text_col(&n, f)
                })
                .collect();
            return ResultSet {
                columns,
                rows: vec![],
                ..Default::default()
            };
        };
        let r = &self.repl;
        let io = if r.io_running {
            if r.io_connected {
                "Yes"
            } else {
                "Connecting"
            }
        } else {
            "No"
        };
        let sql = if r.sql_running { "Yes" } else { "No" };
        let io_state = match (r.io_running, r.io_connected, maria) {
            (false, _, _) => "",
            (true, true, true) => "Waiting for master to send event",
            (true, false, true) => "Connecting to master",
            (true, true, false) => "Waiting for source to send event",
            (true, false, false) => "Connecting to source",
        };
        let sql_state = if r.sql_running {
            if maria {
                "Slave has read all relay log; waiting for more updates"
            } else {
                "Replica has read all relay log; waiting for more updates"
            }
        } else {
            ""
        };
        let behind = if r.io_running && r.sql_running && r.io_connected {
            match r.relay.front() {
                None => Value::Int(0),
                Some(ev) => Value::Int(
                    (self.clock.max(now).saturating_sub(ev.commit_time_ms) / 1000) as i64,
                ),
            }
        } else {
            Value::Null
        };
        let (io_errno, io_error) = match &r.last_io_error {
            None => (0, String::new()),
            Some(e) if e.code == 1236 => {
                if maria {
                    (1236, format!("Got fatal error 1236 from master when reading data from binary log: '{}'", e.message))
                } else {
                    (13114, format!("Got fatal error 1236 from source when reading data from binary log: '{}'", e.message))
                }
            }
            Some(e) => (e.code as i64, e.message.clone()),
        };
        let (sql_errno, sql_error) = match &r.last_sql_error {
            None => (0, String::new()),
            Some(e) => (e.code as i64, e.message.clone()),
        };
        let relay_file = format!("{}-relay-bin.000002", self.cfg.hostname);
        let relay_pos = 4 + r.applied_events * 100;
        let s = |x: &str| Value::str(x);
        let i = |x: i64| Value::Int(x);
        let mut values: BTreeMap<&str, Value> = BTreeMap::new();
        values.insert("Slave_IO_State", s(io_state));
        values.insert("Master_Host", s(&src.host));
        values.insert("Master_User", s(&src.user));
        values.insert("Master_Port", i(src.port as i64));
        values.insert("Connect_Retry", i(src.connect_retry as i64));
        values.insert("Master_Log_File", s(&r.master_log_file));
        values.insert(
            "Read_Master_Log_Pos",
            Value::UInt(r.read_master_log_pos.max(4)),
        );
        values.insert("Relay_Log_File", s(&relay_file));
        values.insert("Relay_Log_Pos", Value::UInt(relay_pos));
        values.insert("Relay_Master_Log_File", s(&r.relay_master_log_file));
        values.insert("Slave_IO_Running", s(io));
        values.insert("Slave_SQL_Running", s(sql));
        values.insert("Last_Errno", i(sql_errno));
        values.insert("Last_Error", s(&sql_error));
        values.insert("Skip_Counter", i(0));
        values.insert(
            "Exec_Master_Log_Pos",
            Value::UInt(r.exec_master_log_pos.max(4)),
        );
        values.insert("Relay_Log_Space", Value::UInt(relay_pos + 256));
        values.insert("Until_Condition", s("None"));
        values.insert("Until_Log_Pos", i(0));
        values.insert("Master_SSL_Allowed", s("No"));
        values.insert("Seconds_Behind_Master", behind);
        values.insert("Master_SSL_Verify_Server_Cert", s("No"));
        values.insert("Last_IO_Errno", i(io_errno));
        values.insert("Last_IO_Error", s(&io_error));
        values.insert("Last_SQL_Errno", i(sql_errno));
        values.insert("Last_SQL_Error", s(&sql_error));
        values.insert("Master_Server_Id", i(r.master_server_id as i64));
        values.insert("Slave_SQL_Running_State", s(sql_state));
        values.insert("SQL_Delay", i(0));
        values.insert("SQL_Remaining_Delay", Value::Null);
        if maria {
            values.insert("Using_Gtid", s(src.use_gtid.as_str()));
            values.insert("Gtid_IO_Pos", s(&self.received_position().to_string()));
            values.insert("Parallel_Mode", s("optimistic"));
            values.insert("Slave_DDL_Groups", i(0));
            values.insert("Slave_Non_Transactional_Groups", i(0));
            values.insert("Slave_Transactional_Groups", Value::UInt(r.applied_events));
            values.insert("Connection_name", s(""));
            values.insert("Slave_SQL_State", s(sql_state));
            values.insert("Retried_transactions", i(0));
            values.insert("Max_relay_log_size", i(1_073_741_824));
            values.insert("Executed_log_entries", Value::UInt(r.applied_events));
            values.insert("Slave_received_heartbeats", i(0));
            values.insert("Slave_heartbeat_period", s("30.000"));
            values.insert("Gtid_Slave_Pos", s(&self.maria_slave_pos.to_string()));
        } else {
            values.insert(
                "Master_UUID",
                r.master_uuid
                    .map(|u| Value::str(u.to_string()))
                    .unwrap_or_else(|| s("")),
            );
            values.insert("Master_Info_File", s("mysql.slave_master_info"));
            values.insert("Master_Retry_Count", i(86_400));
            values.insert(
                "Retrieved_Gtid_Set",
                s(&self.received_position().to_string()),
            );
            values.insert("Executed_Gtid_Set", s(&self.mysql_executed.to_string()));
            values.insert("Auto_Position", i(src.auto_position as i64));
            values.insert("Get_master_public_key", i(0));
        }
        let mut columns = Vec::new();
        let mut row = Vec::new();
        for n in &names {
            let v = values.get(n.as_str()).cloned().unwrap_or_else(|| s(""));
            let shown = if replica_words && !maria {
                mysql_replica_column_name(n)
            } else {
                n.clone()
            };
            let col = match &v {
                Value::Int(_) | Value::UInt(_) => Column::int(&shown),
                _ => text_col(&shown, f),
            };
            columns.push(col);
            row.push(v);
        }
        ResultSet {
            columns,
            rows: vec![row],
            ..Default::default()
        }
    }

    // ------------------------------------------------------------------
    // replication admin
    // ------------------------------------------------------------------

    fn change_master(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        opts: &[(String, Value)],
        now: u64,
    ) -> IResult<QueryResult> {
        self.implicit_commit(sess, cur, now)?;
        if self.repl.io_running || self.repl.sql_running {
            return Err(SqlError::slave_must_stop(self.flavour).into());
        }
        let mut src = self.repl.source.clone().unwrap_or_default();
        let old = (src.host.clone(), src.port);
        for (k, v) in opts {
            let k = k.replacen("SOURCE_", "MASTER_", 1);
            let text = v.as_string().unwrap_or_default();
            match k.as_str() {
                "MASTER_HOST" => src.host = text,
                "MASTER_PORT" => src.port = v.to_i64().unwrap_or(3306).clamp(0, 65535) as u16,
                "MASTER_USER" => src.user = text,
                "MASTER_CONNECT_RETRY" => {
                    src.connect_retry = v.to_i64().unwrap_or(60).max(0) as u64
                }
                "MASTER_USE_GTID" => {
                    if self.flavour != Flavour::MariaDb {
                        return Err(SqlError::parse_error(
                            self.flavour,
                            &format!("MASTER_USE_GTID={text}"),
                            1,
                        )
                        .into());
                    }
                    src.use_gtid = match text.to_ascii_lowercase().as_str() {
                        "slave_pos" => UseGtid::SlavePos,
                        "current_pos" => UseGtid::CurrentPos,
                        "no" => UseGtid::No,
                        _ => return Err(SqlError::parse_error(self.flavour, &text, 1).into()),
                    }
                }
                "MASTER_AUTO_POSITION" => src.auto_position = v.truthy() == Some(true),
                _ => {} // passwords, SSL, log file/pos, heartbeat, delay …: accepted, ignored
            }
        }
        if (src.host.clone(), src.port) != old {
            self.repl.relay.clear();
            self.repl.master_log_file.clear();
            self.repl.read_master_log_pos = 0;
        }
        self.repl.received = None;
        self.repl.last_io_error = None;
        self.repl.source = Some(src);
        if !self.repl.io_connected {
            self.repl.io_connected = true;
        }
        self.bump();
        Ok(ok(0))
    }

    fn start_slave(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        t: SlaveThreads,
        now: u64,
    ) -> IResult<QueryResult> {
        self.implicit_commit(sess, cur, now)?;
        if self
            .repl
            .source
            .as_ref()
            .is_none_or(|s: &ReplicaSource| s.host.is_empty())
        {
            return Err(SqlError::bad_slave(self.flavour).into());
        }
        let mut started = false;
        if t.io && !self.repl.io_running {
            self.repl.io_running = true;
            self.repl.io_connected = true;
            self.repl.last_io_error = None;
            self.repl.received = None;
            started = true;
        }
        if t.sql && !self.repl.sql_running {
            self.repl.sql_running = true;
            self.repl.last_sql_error = None;
            started = true;
        }
        if !started {
            sess.warnings.push(Warning {
                level: "Note",
                code: 1254,
                message: "Slave is already running".into(),
            });
        }
        self.bump();
        Ok(ok(0))
    }

    fn exec_kill(
        &mut self,
        sess: &mut Session,
        cur: &mut CurrentStmt,
        query_only: bool,
        id: &Expr,
        now: u64,
    ) -> IResult<QueryResult> {
        let v = self.eval_const(sess, cur, id, now)?;
        let target = v.to_i128().unwrap_or(-1);
        if target == sess.id as i128 {
            if query_only {
                return Err(SqlError::query_interrupted().into());
            }
            let error = match self.flavour {
                Flavour::MariaDb => Some(SqlError::connection_killed()),
                Flavour::MySql8 => None,
            };
            return Err(Interrupt::Disconnect(error));
        }
        let Some(t) = (target >= 0 && target <= u32::MAX as i128)
            .then(|| self.sessions.get(&(target as u32)))
            .flatten()
        else {
            return Err(SqlError::no_such_thread(target.max(0) as u64).into());
        };
        if !self.is_super(&sess.user) && t.user != sess.user {
            return Err(SqlError::new(
                1095,
                "HY000",
                format!("You are not owner of thread {target}"),
            )
            .into());
        }
        self.kill(target as u32, query_only)?;
        Ok(ok(0))
    }
}

fn collect_aggs<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::CountStar | Expr::Agg { .. } => out.push(e),
        Expr::Neg(x) | Expr::Not(x) => collect_aggs(x, out),
        Expr::Bin { l, r, .. } => {
            collect_aggs(l, out);
            collect_aggs(r, out);
        }
        Expr::IsNull { e, .. } => collect_aggs(e, out),
        Expr::InList { e, list, .. } => {
            collect_aggs(e, out);
            list.iter().for_each(|x| collect_aggs(x, out));
        }
        Expr::Between { e, lo, hi, .. } => {
            collect_aggs(e, out);
            collect_aggs(lo, out);
            collect_aggs(hi, out);
        }
        Expr::Like { e, pat, .. } => {
            collect_aggs(e, out);
            collect_aggs(pat, out);
        }
        Expr::Func { args, .. } => args.iter().for_each(|x| collect_aggs(x, out)),
        Expr::Case {
            operand,
            whens,
            else_,
        } => {
            if let Some(o) = operand {
                collect_aggs(o, out);
            }
            for (a, b) in whens {
                collect_aggs(a, out);
                collect_aggs(b, out);
            }
            if let Some(x) = else_ {
                collect_aggs(x, out);
            }
        }
        Expr::AssignUserVar { e, .. } => collect_aggs(e, out),
        _ => {}
    }
}

fn aggregate_values(func: AggFunc, vals: Vec<Value>) -> Value {
    match func {
        AggFunc::Count => Value::Int(vals.len() as i64),
        _ if vals.is_empty() => Value::Null,
        AggFunc::Sum => {
            if vals
                .iter()
                .all(|v| matches!(v, Value::Int(_) | Value::UInt(_)))
            {
                let s: Option<i128> = vals
                    .iter()
                    .try_fold(0i128, |acc, v| acc.checked_add(v.to_i128().unwrap()));
                match s.and_then(Value::from_i128) {
                    Some(v) => v,
                    None => Value::Double(vals.iter().map(|v| v.to_f64().unwrap()).sum()),
                }
            } else {
                Value::Double(vals.iter().map(|v| v.to_f64().unwrap()).sum())
            }
        }
        AggFunc::Avg => {
            Value::Double(vals.iter().map(|v| v.to_f64().unwrap()).sum::<f64>() / vals.len() as f64)
        }
        AggFunc::Min => vals.into_iter().min_by(order_cmp).unwrap(),
        AggFunc::Max => vals.into_iter().max_by(order_cmp).unwrap(),
    }
}
