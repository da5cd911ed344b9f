//! Server-level scenario tests (the unit tests of each module cover the
//! pieces; these drive whole [`Server`]s through sessions and replication).

use super::*;
use crate::engine::status::*;

fn maria(id: u32) -> Server {
    Server::new(ServerConfig::mariadb(id).with_database("app"))
}

fn mysql(id: u32) -> Server {
    Server::new(ServerConfig::mysql(id).with_database("app"))
}

fn conn(s: &mut Server) -> SessionId {
    s.open_session("app", Some("app")).unwrap()
}

fn root(s: &mut Server) -> SessionId {
    s.open_session("root", Some("app")).unwrap()
}

#[track_caller]
fn run(s: &mut Server, c: SessionId, sql: &str) -> Vec<QueryResult> {
    match s.execute(c, sql, 0).unwrap() {
        ExecOutcome::Done(r) => r,
        other => panic!("{sql}: expected Done, got {other:?}"),
    }
}

#[track_caller]
fn run_at(s: &mut Server, c: SessionId, sql: &str, now: u64) -> ExecOutcome {
    s.execute(c, sql, now).unwrap()
}

#[track_caller]
fn ok(s: &mut Server, c: SessionId, sql: &str) -> OkPacket {
    let r = run(s, c, sql);
    for x in &r {
        if let QueryResult::Err(e) = x {
            panic!("{sql}: {e}");
        }
    }
    match r.into_iter().last().unwrap() {
        QueryResult::Ok(o) => o,
        other => panic!("{sql}: expected OK, got {other:?}"),
    }
}

#[track_caller]
fn rs(s: &mut Server, c: SessionId, sql: &str) -> ResultSet {
    match run(s, c, sql).into_iter().last().unwrap() {
        QueryResult::ResultSet(r) => r,
        other => panic!("{sql}: expected result set, got {other:?}"),
    }
}

#[track_caller]
fn rows(s: &mut Server, c: SessionId, sql: &str) -> Vec<Vec<Value>> {
    rs(s, c, sql).rows
}

#[track_caller]
fn scalar(s: &mut Server, c: SessionId, sql: &str) -> Value {
    rows(s, c, sql)[0][0].clone()
}

#[track_caller]
fn err(s: &mut Server, c: SessionId, sql: &str) -> SqlError {
    match run(s, c, sql).into_iter().last().unwrap() {
        QueryResult::Err(e) => e,
        other => panic!("{sql}: expected error, got {other:?}"),
    }
}

#[track_caller]
fn blocked(out: ExecOutcome) -> Blocked {
    match out {
        ExecOutcome::Blocked(b) => b,
        other => panic!("expected Blocked, got {other:?}"),
    }
}

#[track_caller]
fn done(out: ExecOutcome) -> Vec<QueryResult> {
    match out {
        ExecOutcome::Done(r) => r,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn s(v: &str) -> Value {
    Value::str(v)
}

fn setup_table(s: &mut Server, c: SessionId) {
    ok(s, c, "CREATE TABLE t (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL DEFAULT 0, name VARCHAR(20))");
}

/// Copy every binlog event the replica lacks and apply it.
fn sync(primary: &Server, replica: &mut Server) {
    let pos = replica.executed_position();
    for ev in primary.binlog_events_after(&pos).unwrap() {
        assert_ne!(
            replica.apply_event(&ev, 0).unwrap(),
            ApplyOutcome::Blocked { holder: 0 }
        );
    }
}

fn make_replica(primary: &Server, r: &mut Server, c: SessionId) {
    let _ = primary;
    ok(
        r,
        c,
        "CHANGE MASTER TO MASTER_HOST='db1', MASTER_PORT=3306, MASTER_USER='repl'",
    );
    ok(r, c, "START SLAVE");
}

// ---------------------------------------------------------------------------
// basics
// ---------------------------------------------------------------------------

#[test]
fn select_without_from_reports_literals_variables_and_source_text_names() {
    let mut srv = maria(7);
    let c = conn(&mut srv);
    let r = rs(&mut srv, c, "SELECT 1, 'a' AS x, @@server_id, @@session.autocommit, @@version, CONNECTION_ID(), DATABASE()");
    let names: Vec<_> = r.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "1",
            "x",
            "@@server_id",
            "@@session.autocommit",
            "@@version",
            "CONNECTION_ID()",
            "DATABASE()"
        ]
    );
    assert_eq!(
        r.rows[0],
        vec![
            Value::Int(1),
            s("a"),
            Value::Int(7),
            Value::Int(1),
            s("11.4.2-MariaDB-log"),
            Value::UInt(c as u64),
            s("app")
        ]
    );
    assert_eq!(r.columns[0].col_type, col_type::LONGLONG);
    assert_eq!(r.columns[1].col_type, col_type::VAR_STRING);
}

#[test]
fn connection_ids_increase_per_server() {
    let mut srv = mysql(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    assert!(b > a);
    assert!(srv.close_session(a));
    let c = conn(&mut srv);
    assert!(c > b);
}

#[test]
fn create_insert_select_with_auto_increment_and_last_insert_id() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    let o = ok(
        &mut srv,
        c,
        "INSERT INTO t (v, name) VALUES (10, 'a'), (20, 'b'), (30, 'c')",
    );
    assert_eq!(o.affected_rows, 3);
    assert_eq!(o.last_insert_id, 1);
    assert_eq!(o.info, "Records: 3  Duplicates: 0  Warnings: 0");
    assert_eq!(
        scalar(&mut srv, c, "SELECT LAST_INSERT_ID()"),
        Value::UInt(1)
    );
    let o = ok(&mut srv, c, "INSERT INTO t (name) VALUES ('d')");
    assert_eq!(o.last_insert_id, 4);
    assert_eq!(
        rows(&mut srv, c, "SELECT id, v FROM t WHERE id = 4"),
        vec![vec![Value::Int(4), Value::Int(0)]]
    );
    assert_eq!(
        rows(
            &mut srv,
            c,
            "SELECT name FROM t WHERE v >= 20 ORDER BY v DESC LIMIT 2"
        ),
        vec![vec![s("c")], vec![s("b")]]
    );
    assert_eq!(scalar(&mut srv, c, "SELECT COUNT(*) FROM t"), Value::Int(4));
    assert_eq!(
        scalar(
            &mut srv,
            c,
            "SELECT MAX(v) + 1 FROM t WHERE name IN ('a', 'b')"
        ),
        Value::Int(21)
    );
    let r = rs(&mut srv, c, "SELECT * FROM t WHERE id = 1");
    assert_eq!(
        r.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["id", "v", "name"]
    );
    assert_eq!(r.columns[0].flags & col_flags::PRI_KEY, col_flags::PRI_KEY);
    assert_eq!(r.columns[0].schema, "app");
}

#[test]
fn update_set_c_plus_one_reports_matched_and_changed() {
    let mut srv = mysql(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    ok(&mut srv, c, "INSERT INTO t (id, v) VALUES (1, 1), (2, 5)");
    let o = ok(&mut srv, c, "UPDATE t SET v = v + 1 WHERE id = 1");
    assert_eq!(
        (o.affected_rows, o.info.as_str()),
        (1, "Rows matched: 1  Changed: 1  Warnings: 0")
    );
    let o = ok(&mut srv, c, "UPDATE t SET v = 5 WHERE id IN (1, 2)");
    assert_eq!(
        (o.affected_rows, o.info.as_str()),
        (1, "Rows matched: 2  Changed: 1  Warnings: 0")
    );
    let o = ok(&mut srv, c, "DELETE FROM t WHERE v = 5");
    assert_eq!(o.affected_rows, 2);
    assert!(rows(&mut srv, c, "SELECT * FROM t").is_empty());
}

#[test]
fn multi_statement_stops_at_first_error_and_reports_earlier_results() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    let r = run(&mut srv, c, "SELECT 1; SELECT nope FROM missing; SELECT 3");
    assert_eq!(r.len(), 2);
    assert!(matches!(r[0], QueryResult::ResultSet(_)));
    assert_eq!(r[1].err().unwrap().code, 1146);
    assert_eq!(
        r[1].err().unwrap().message,
        "Table 'app.missing' doesn't exist"
    );
}

#[test]
fn without_multi_statements_a_second_statement_is_a_syntax_error_and_nothing_runs() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    ok(&mut srv, c, "CREATE TABLE t (id INT PRIMARY KEY)");
    srv.set_multi_statements(c, false).unwrap();
    // Wording, near text and line as MariaDB 10.11 gives them (checked on a real server).
    let e = err(&mut srv, c, "INSERT INTO t VALUES (1); SELECT 2");
    assert_eq!((e.code, e.state.as_str()), (1064, "42000"));
    assert_eq!(e.message, "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'SELECT 2' at line 1");
    assert!(err(&mut srv, c, "SELECT 1;\nSELECT 2").message.ends_with("near 'SELECT 2' at line 2"));
    assert!(err(&mut srv, c, "SELECT 1; /* x */ SELECT 2 ; ").message.ends_with("near 'SELECT 2' at line 1"));
    // Trailing semicolons and comments are not a second statement.
    assert_eq!(run(&mut srv, c, "SELECT 1;;").len(), 1);
    assert_eq!(run(&mut srv, c, "SELECT 1; -- c\n").len(), 1);
    // The INSERT did not run: inserting the same key now succeeds.
    ok(&mut srv, c, "INSERT INTO t VALUES (1)");
    srv.set_multi_statements(c, true).unwrap();
    assert_eq!(run(&mut srv, c, "SELECT 1; SELECT 2").len(), 2);
}

#[test]
fn syntax_error_carries_server_wording_and_near_text() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    let e = err(&mut srv, c, "SELEC 1");
    assert_eq!((e.code, e.state.as_str()), (1064, "42000"));
    assert_eq!(e.message, "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'SELEC 1' at line 1");
    let mut my = mysql(1);
    let c = conn(&mut my);
    let e = err(&mut my, c, "SELECT 1;\nSELECT * FROM t WHERE");
    assert_eq!(e.message, "You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near '' at line 1");
    let e = err(&mut my, c, "SELECT *\nFROM t WHERE id = = 2");
    assert!(e.message.ends_with("near '= 2' at line 2"), "{}", e.message);
    assert_eq!(err(&mut my, c, "   ").code, 1065);
}

#[test]
fn unknown_column_and_table_errors() {
    let mut srv = mysql(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    assert_eq!(
        err(&mut srv, c, "SELECT nope FROM t").message,
        "Unknown column 'nope' in 'field list'"
    );
    assert_eq!(
        err(&mut srv, c, "SELECT id FROM t WHERE nope = 1").message,
        "Unknown column 'nope' in 'where clause'"
    );
    assert_eq!(err(&mut srv, c, "SELECT * FROM nope").code, 1146);
    assert_eq!(
        err(&mut srv, c, "CREATE TABLE t (a INT)").message,
        "Table 't' already exists"
    );
    ok(&mut srv, c, "CREATE TABLE IF NOT EXISTS t (a INT)");
    let u = srv.open_session("app", None).unwrap();
    assert_eq!(
        err(&mut srv, u, "SELECT * FROM t").message,
        "No database selected"
    );
    assert_eq!(
        err(&mut srv, u, "USE nope").message,
        "Unknown database 'nope'"
    );
    assert_eq!(
        err(&mut srv, c, "SELECT NO_SUCH_FN(1)").message,
        "FUNCTION app.NO_SUCH_FN does not exist"
    );
}

#[test]
fn duplicate_key_error_text_differs_by_flavour() {
    for (mut srv, want) in [
        (maria(1), "Duplicate entry '1' for key 'PRIMARY'"),
        (mysql(1), "Duplicate entry '1' for key 't.PRIMARY'"),
    ] {
        let c = conn(&mut srv);
        setup_table(&mut srv, c);
        ok(&mut srv, c, "INSERT INTO t (id) VALUES (1)");
        let e = err(&mut srv, c, "INSERT INTO t (id) VALUES (2), (1)");
        assert_eq!(
            (e.code, e.state.as_str(), e.message.as_str()),
            (1062, "23000", want)
        );
        // the statement was rolled back as a whole
        assert_eq!(scalar(&mut srv, c, "SELECT COUNT(*) FROM t"), Value::Int(1));
    }
}

#[test]
fn insert_ignore_replace_and_on_duplicate_key_update() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    ok(&mut srv, c, "INSERT INTO t (id, v) VALUES (1, 1)");
    let o = ok(
        &mut srv,
        c,
        "INSERT IGNORE INTO t (id, v) VALUES (1, 9), (2, 2)",
    );
    assert_eq!((o.affected_rows, o.warnings), (1, 1));
    let o = ok(
        &mut srv,
        c,
        "INSERT INTO t (id, v) VALUES (1, 5) ON DUPLICATE KEY UPDATE v = v + VALUES(v)",
    );
    assert_eq!(o.affected_rows, 2);
    assert_eq!(
        scalar(&mut srv, c, "SELECT v FROM t WHERE id = 1"),
        Value::Int(6)
    );
    let o = ok(&mut srv, c, "REPLACE INTO t (id, v) VALUES (2, 7)");
    assert_eq!(o.affected_rows, 2);
    assert_eq!(
        rows(&mut srv, c, "SELECT id, v, name FROM t ORDER BY id"),
        vec![
            vec![Value::Int(1), Value::Int(6), Value::Null],
            vec![Value::Int(2), Value::Int(7), Value::Null],
        ]
    );
}

#[test]
fn strict_mode_value_errors() {
    let mut srv = mysql(1);
    let c = conn(&mut srv);
    ok(
        &mut srv,
        c,
        "CREATE TABLE k (id INT PRIMARY KEY, s VARCHAR(3) NOT NULL, n TINYINT)",
    );
    assert_eq!(
        err(&mut srv, c, "INSERT INTO k VALUES (1, 'abcd', 1)").message,
        "Data too long for column 's' at row 1"
    );
    assert_eq!(
        err(&mut srv, c, "INSERT INTO k VALUES (1, NULL, 1)").message,
        "Column 's' cannot be null"
    );
    assert_eq!(
        err(&mut srv, c, "INSERT INTO k VALUES (1, 'a', 300)").message,
        "Out of range value for column 'n' at row 1"
    );
    assert_eq!(
        err(&mut srv, c, "INSERT INTO k (id) VALUES (1)").message,
        "Field 's' doesn't have a default value"
    );
    assert_eq!(
        err(&mut srv, c, "INSERT INTO k VALUES (1, 'a')").message,
        "Column count doesn't match value count at row 1"
    );
}

// ---------------------------------------------------------------------------
// transactions and locking
// ---------------------------------------------------------------------------

#[test]
fn uncommitted_writes_are_invisible_to_other_sessions() {
    let mut srv = maria(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "BEGIN");
    ok(&mut srv, a, "INSERT INTO t (id, v) VALUES (1, 1)");
    assert_eq!(scalar(&mut srv, a, "SELECT COUNT(*) FROM t"), Value::Int(1));
    assert_eq!(scalar(&mut srv, b, "SELECT COUNT(*) FROM t"), Value::Int(0));
    assert_eq!(
        srv.status_flags(a).unwrap() & SERVER_STATUS_IN_TRANS,
        SERVER_STATUS_IN_TRANS
    );
    ok(&mut srv, a, "COMMIT");
    assert_eq!(srv.status_flags(a).unwrap() & SERVER_STATUS_IN_TRANS, 0);
    assert_eq!(scalar(&mut srv, b, "SELECT COUNT(*) FROM t"), Value::Int(1));
}

#[test]
fn rollback_and_savepoints_undo_writes() {
    let mut srv = mysql(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    ok(&mut srv, c, "START TRANSACTION");
    ok(&mut srv, c, "INSERT INTO t (id) VALUES (1)");
    ok(&mut srv, c, "SAVEPOINT sp");
    ok(&mut srv, c, "INSERT INTO t (id) VALUES (2)");
    ok(&mut srv, c, "ROLLBACK TO SAVEPOINT sp");
    assert_eq!(scalar(&mut srv, c, "SELECT COUNT(*) FROM t"), Value::Int(1));
    assert_eq!(
        err(&mut srv, c, "ROLLBACK TO SAVEPOINT nope").message,
        "SAVEPOINT nope does not exist"
    );
    ok(&mut srv, c, "ROLLBACK");
    assert_eq!(scalar(&mut srv, c, "SELECT COUNT(*) FROM t"), Value::Int(0));
    assert_eq!(srv.binlog_len(), 1); // only the CREATE TABLE
}

#[test]
fn autocommit_zero_keeps_a_transaction_open_until_commit() {
    let mut srv = maria(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    let o = ok(&mut srv, a, "SET autocommit = 0");
    assert_eq!(o.status_flags & SERVER_STATUS_AUTOCOMMIT, 0);
    ok(&mut srv, a, "INSERT INTO t (id) VALUES (1)");
    assert_eq!(
        scalar(&mut srv, a, "SELECT @@in_transaction"),
        Value::Int(1)
    );
    assert_eq!(scalar(&mut srv, b, "SELECT COUNT(*) FROM t"), Value::Int(0));
    // SET autocommit=1 commits implicitly
    ok(&mut srv, a, "SET autocommit = 1");
    assert_eq!(scalar(&mut srv, b, "SELECT COUNT(*) FROM t"), Value::Int(1));
    assert_eq!(
        scalar(&mut srv, a, "SELECT @@in_transaction"),
        Value::Int(0)
    );
}

#[test]
fn row_lock_conflict_blocks_and_resumes_after_commit() {
    let mut srv = maria(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "INSERT INTO t (id, v) VALUES (1, 0)");
    ok(&mut srv, a, "BEGIN");
    ok(&mut srv, a, "UPDATE t SET v = v + 1 WHERE id = 1");
    let bl = blocked(run_at(
        &mut srv,
        b,
        "UPDATE t SET v = v + 10 WHERE id = 1",
        100,
    ));
    assert_eq!(bl.reason, WaitReason::RowLock { holder: a });
    assert_eq!(bl.deadline_ms, Some(100 + 50_000));
    assert!(!srv.can_resume(b, 200));
    assert_eq!(srv.blocked_sessions().len(), 1);
    assert!(matches!(
        srv.execute(b, "SELECT 1", 200),
        Err(SimError::SessionBusy(_))
    ));
    let g = srv.generation();
    ok(&mut srv, a, "COMMIT");
    assert!(srv.generation() > g);
    assert!(srv.can_resume(b, 300));
    let r = done(srv.resume(b, 300).unwrap());
    assert_eq!(r[0].ok().unwrap().affected_rows, 1);
    assert_eq!(
        scalar(&mut srv, a, "SELECT v FROM t WHERE id = 1"),
        Value::Int(11)
    );
}

#[test]
fn blocked_insert_on_uncommitted_key_gets_duplicate_or_succeeds_after_rollback() {
    let mut srv = mysql(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "BEGIN");
    ok(&mut srv, a, "INSERT INTO t (id) VALUES (5)");
    blocked(run_at(&mut srv, b, "INSERT INTO t (id) VALUES (5)", 0));
    ok(&mut srv, a, "ROLLBACK");
    let r = done(srv.resume(b, 1).unwrap());
    assert_eq!(r[0].ok().unwrap().affected_rows, 1);
    ok(&mut srv, a, "BEGIN");
    ok(&mut srv, a, "DELETE FROM t WHERE id = 5");
    ok(&mut srv, a, "INSERT INTO t (id, v) VALUES (5, 1)");
    blocked(run_at(&mut srv, b, "INSERT INTO t (id) VALUES (5)", 2));
    ok(&mut srv, a, "COMMIT");
    let r = done(srv.resume(b, 3).unwrap());
    assert_eq!(r[0].err().unwrap().code, 1062);
}

#[test]
fn lock_wait_timeout_returns_1205_and_keeps_the_transaction() {
    let mut srv = maria(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "INSERT INTO t (id) VALUES (1), (2)");
    ok(&mut srv, b, "SET SESSION innodb_lock_wait_timeout = 2");
    ok(&mut srv, a, "BEGIN");
    rows(&mut srv, a, "SELECT * FROM t WHERE id = 1 FOR UPDATE");
    ok(&mut srv, b, "BEGIN");
    ok(&mut srv, b, "UPDATE t SET v = 1 WHERE id = 2");
    let bl = blocked(run_at(&mut srv, b, "UPDATE t SET v = 1 WHERE id = 1", 1000));
    assert_eq!(bl.deadline_ms, Some(3000));
    blocked(srv.resume(b, 2999).unwrap());
    let r = done(srv.resume(b, 3000).unwrap());
    let e = r[0].err().unwrap();
    assert_eq!(
        (e.code, e.state.as_str(), e.message.as_str()),
        (
            1205,
            "HY000",
            "Lock wait timeout exceeded; try restarting transaction"
        )
    );
    // statement rolled back, transaction (and its earlier write) kept
    assert!(srv.session(b).unwrap().in_transaction());
    assert_eq!(
        scalar(&mut srv, b, "SELECT v FROM t WHERE id = 2"),
        Value::Int(1)
    );
}

#[test]
fn deadlock_cycle_returns_1213_to_the_requester_and_rolls_it_back() {
    let mut srv = mysql(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "INSERT INTO t (id) VALUES (1), (2)");
    ok(&mut srv, a, "BEGIN");
    ok(&mut srv, b, "BEGIN");
    ok(&mut srv, a, "UPDATE t SET v = 1 WHERE id = 1");
    ok(&mut srv, b, "UPDATE t SET v = 2 WHERE id = 2");
    blocked(run_at(&mut srv, a, "UPDATE t SET v = 1 WHERE id = 2", 0));
    let e = err(&mut srv, b, "UPDATE t SET v = 2 WHERE id = 1");
    assert_eq!(
        (e.code, e.state.as_str(), e.message.as_str()),
        (
            1213,
            "40001",
            "Deadlock found when trying to get lock; try restarting transaction"
        )
    );
    assert!(!srv.session(b).unwrap().in_transaction());
    assert!(srv.can_resume(a, 1));
    done(srv.resume(a, 1).unwrap());
    ok(&mut srv, a, "COMMIT");
    assert_eq!(
        rows(&mut srv, b, "SELECT v FROM t ORDER BY id"),
        vec![vec![Value::Int(1)], vec![Value::Int(1)]]
    );
}

#[test]
fn select_for_update_skip_locked_and_nowait() {
    let mut srv = mysql(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "INSERT INTO t (id) VALUES (1), (2), (3)");
    ok(&mut srv, a, "BEGIN");
    assert_eq!(
        rows(
            &mut srv,
            a,
            "SELECT id FROM t ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        ),
        vec![vec![Value::Int(1)]]
    );
    ok(&mut srv, b, "BEGIN");
    assert_eq!(
        rows(
            &mut srv,
            b,
            "SELECT id FROM t ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        ),
        vec![vec![Value::Int(2)]]
    );
    assert_eq!(
        err(
            &mut srv,
            b,
            "SELECT id FROM t WHERE id = 1 FOR UPDATE NOWAIT"
        )
        .code,
        3572
    );
}

#[test]
fn ddl_waits_for_metadata_lock_and_commits_implicitly() {
    let mut srv = maria(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "BEGIN");
    ok(&mut srv, a, "INSERT INTO t (id) VALUES (1)");
    let bl = blocked(run_at(&mut srv, b, "DROP TABLE t", 0));
    assert_eq!(bl.reason, WaitReason::MetadataLock { holder: a });
    // DDL in the holder's own session commits its transaction first
    ok(&mut srv, a, "CREATE TABLE u (id INT PRIMARY KEY)");
    assert!(!srv.session(a).unwrap().in_transaction());
    assert_eq!(srv.table_rows("app", "t").unwrap().len(), 1);
    done(srv.resume(b, 1).unwrap());
    assert!(srv.table_rows("app", "t").is_none());
}

#[test]
fn read_only_transaction_rejects_writes_with_1792() {
    let mut srv = mysql(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    ok(&mut srv, c, "START TRANSACTION READ ONLY");
    rows(&mut srv, c, "SELECT 1");
    let e = err(&mut srv, c, "INSERT INTO t (id) VALUES (1)");
    assert_eq!((e.code, e.state.as_str()), (1792, "25006"));
    assert_eq!(
        srv.status_flags(c).unwrap() & SERVER_STATUS_IN_TRANS_READONLY,
        SERVER_STATUS_IN_TRANS_READONLY
    );
    ok(&mut srv, c, "COMMIT");
    ok(&mut srv, c, "SET TRANSACTION READ ONLY");
    assert_eq!(err(&mut srv, c, "DELETE FROM t").code, 1792);
    ok(&mut srv, c, "DELETE FROM t");
}

// ---------------------------------------------------------------------------
// read_only and roles
// ---------------------------------------------------------------------------

#[test]
fn replica_rejects_app_write_with_1290() {
    let mut srv = Server::new(
        ServerConfig::mariadb(2)
            .with_database("app")
            .with_read_only(true),
    );
    let r = root(&mut srv);
    setup_table(&mut srv, r); // root (SUPER) bypasses read_only
    let c = conn(&mut srv);
    let e = err(&mut srv, c, "INSERT INTO t (id) VALUES (1)");
    assert_eq!(
        (e.code, e.state.as_str(), e.message.as_str()),
        (1290, "HY000", "The MariaDB server is running with the --read-only option so it cannot execute this statement")
    );
    assert_eq!(err(&mut srv, c, "CREATE TABLE x (a INT)").code, 1290);
    // temporary tables and reads are fine
    ok(&mut srv, c, "CREATE TEMPORARY TABLE tmp (a INT)");
    ok(&mut srv, c, "INSERT INTO tmp VALUES (1)");
    assert_eq!(scalar(&mut srv, c, "SELECT @@read_only"), Value::Int(1));

    let mut my = Server::new(
        ServerConfig::mysql(2)
            .with_database("app")
            .with_read_only(true),
    );
    let c = conn(&mut my);
    let r = root(&mut my);
    setup_table(&mut my, r);
    assert_eq!(
        err(&mut my, c, "UPDATE t SET v = 1").message,
        "The MySQL server is running with the --read-only option so it cannot execute this statement"
    );
    ok(&mut my, r, "SET GLOBAL super_read_only = 1");
    assert_eq!(
        err(&mut my, r, "INSERT INTO t (id) VALUES (1)").message,
        "The MySQL server is running with the --super-read-only option so it cannot execute this statement"
    );
}

#[test]
fn system_variable_scope_errors() {
    let mut srv = mysql(1);
    let c = root(&mut srv);
    assert_eq!(
        err(&mut srv, c, "SET read_only = 1").message,
        "Variable 'read_only' is a GLOBAL variable and should be set with SET GLOBAL"
    );
    assert_eq!(
        err(&mut srv, c, "SELECT @@session.read_only").message,
        "Variable 'read_only' is a GLOBAL variable"
    );
    assert_eq!(err(&mut srv, c, "SET GLOBAL sql_log_bin = 0").code, 1228);
    assert_eq!(
        err(&mut srv, c, "SET @@global.version = 'x'").message,
        "Variable 'version' is a read only variable"
    );
    assert_eq!(
        err(&mut srv, c, "SELECT @@no_such_var").message,
        "Unknown system variable 'no_such_var'"
    );
    assert_eq!(err(&mut srv, c, "SELECT @@in_transaction").code, 1193);
    assert_eq!(
        err(&mut srv, c, "SET autocommit = 2").message,
        "Variable 'autocommit' can't be set to the value of '2'"
    );
    ok(&mut srv, c, "SET GLOBAL read_only = ON");
    assert!(srv.read_only());
    ok(&mut srv, c, "SET @@global.read_only = 0");
    assert!(!srv.read_only());
    let r = rows(&mut srv, c, "SHOW VARIABLES LIKE 'read_only'");
    assert_eq!(r, vec![vec![s("read_only"), s("OFF")]]);
    let r = rows(&mut srv, c, "SHOW GLOBAL VARIABLES LIKE 'gtid_mode'");
    assert_eq!(r, vec![vec![s("gtid_mode"), s("ON")]]);
}

#[test]
fn session_track_system_variables_reports_changes_in_ok_packets() {
    let mut srv = mysql(1);
    let c = conn(&mut srv);
    let o = ok(&mut srv, c, "SET autocommit = OFF");
    assert_eq!(
        o.session_state_changes,
        vec![StateChange::SystemVariable {
            name: "autocommit".into(),
            value: "OFF".into()
        }]
    );
    assert_ne!(o.status_flags & SERVER_SESSION_STATE_CHANGED, 0);
    let o = ok(&mut srv, c, "SET NAMES utf8mb4");
    assert_eq!(o.session_state_changes.len(), 3);
    let o = ok(&mut srv, c, "USE app");
    assert_eq!(
        o.session_state_changes,
        vec![StateChange::Schema("app".into())]
    );
    let o = ok(&mut srv, c, "SET @x = 5");
    assert!(o.session_state_changes.is_empty());
    assert_eq!(scalar(&mut srv, c, "SELECT @x + 1"), Value::Int(6));
}

// ---------------------------------------------------------------------------
// GTIDs and session tracking
// ---------------------------------------------------------------------------

#[test]
fn mariadb_commits_produce_gtids_and_track_last_gtid() {
    let mut srv = maria(3);
    let c = conn(&mut srv);
    setup_table(&mut srv, c); // 0-3-1
    ok(
        &mut srv,
        c,
        "SET SESSION session_track_system_variables = 'last_gtid'",
    );
    let o = ok(&mut srv, c, "INSERT INTO t (id) VALUES (1)");
    assert_eq!(
        o.session_state_changes,
        vec![StateChange::SystemVariable {
            name: "last_gtid".into(),
            value: "0-3-2".into()
        }]
    );
    assert_eq!(scalar(&mut srv, c, "SELECT @@last_gtid"), s("0-3-2"));
    assert_eq!(scalar(&mut srv, c, "SELECT @@gtid_binlog_pos"), s("0-3-2"));
    assert_eq!(scalar(&mut srv, c, "SELECT @@gtid_current_pos"), s("0-3-2"));
    assert_eq!(scalar(&mut srv, c, "SELECT @@gtid_slave_pos"), s(""));
    // a read-only transaction produces no GTID
    ok(&mut srv, c, "BEGIN");
    rows(&mut srv, c, "SELECT * FROM t");
    let o = ok(&mut srv, c, "COMMIT");
    assert!(o.session_state_changes.is_empty());
    assert_eq!(srv.binlog_len(), 2);
    assert_eq!(err(&mut srv, c, "SELECT @@gtid_executed").code, 1193);
}

#[test]
fn mysql_own_gtid_is_tracked_in_the_ok_packet_of_the_commit() {
    let mut srv = mysql(1);
    let uuid = srv.server_uuid();
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    ok(&mut srv, c, "SET session_track_gtids = OWN_GTID");
    ok(&mut srv, c, "BEGIN");
    let o = ok(&mut srv, c, "INSERT INTO t (id) VALUES (1)");
    assert!(o.session_state_changes.is_empty());
    let o = ok(&mut srv, c, "COMMIT");
    assert_eq!(
        o.session_state_changes,
        vec![StateChange::Gtids(format!("{uuid}:2"))]
    );
    assert_eq!(
        scalar(&mut srv, c, "SELECT @@gtid_executed"),
        Value::str(format!("{uuid}:1-2"))
    );
    assert_eq!(
        scalar(&mut srv, c, "SELECT @@server_uuid"),
        Value::str(uuid.to_string())
    );
    let r = rows(&mut srv, c, "SHOW MASTER STATUS");
    assert_eq!(r[0][4], Value::str(format!("{uuid}:1-2")));
    assert_eq!(err(&mut srv, c, "SELECT @@last_gtid").code, 1193);
    assert_eq!(
        scalar(
            &mut srv,
            c,
            &format!("SELECT GTID_SUBSET('{uuid}:2', @@gtid_executed)")
        ),
        Value::Int(1)
    );
}

// ---------------------------------------------------------------------------
// replication
// ---------------------------------------------------------------------------

#[test]
fn replica_applies_binlog_bypassing_read_only_and_tracks_slave_pos() {
    let mut p = maria(1);
    let mut r = Server::new(
        ServerConfig::mariadb(2)
            .with_database("app")
            .with_read_only(true),
    );
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    ok(
        &mut p,
        pc,
        "INSERT INTO t (id, v, name) VALUES (1, 1, 'x'), (2, 2, 'y')",
    );
    ok(&mut p, pc, "UPDATE t SET v = 5 WHERE id = 2");
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    let n = r.pull_from(&p, 10).unwrap();
    assert_eq!(n, 3);
    assert_eq!(r.table_rows("app", "t"), p.table_rows("app", "t"));
    assert_eq!(r.gtid_slave_pos().to_string(), "0-1-3");
    assert_eq!(r.gtid_binlog_pos().to_string(), "0-1-3");
    let st = rs(&mut r, rc, "SHOW SLAVE STATUS");
    assert_eq!(st.get(0, "Slave_IO_Running"), Some(&s("Yes")));
    assert_eq!(st.get(0, "Slave_SQL_Running"), Some(&s("Yes")));
    assert_eq!(st.get(0, "Master_Host"), Some(&s("db1")));
    assert_eq!(st.get(0, "Master_Port"), Some(&Value::Int(3306)));
    assert_eq!(st.get(0, "Seconds_Behind_Master"), Some(&Value::Int(0)));
    assert_eq!(st.get(0, "Gtid_IO_Pos"), Some(&s("0-1-3")));
    assert_eq!(st.get(0, "Using_Gtid"), Some(&s("Slave_Pos")));
    assert_eq!(st.get(0, "Last_Error"), Some(&s("")));
    let all = rs(&mut r, rc, "SHOW ALL SLAVES STATUS");
    assert_eq!(all.columns[0].name, "Connection_name");
    assert_eq!(all.get(0, "Gtid_Slave_Pos"), Some(&s("0-1-3")));
    // nothing new: idempotent
    assert_eq!(r.pull_from(&p, 11).unwrap(), 0);
}

#[test]
fn show_slave_status_is_empty_on_a_primary() {
    for mut srv in [maria(1), mysql(1)] {
        let c = conn(&mut srv);
        let st = rs(&mut srv, c, "SHOW SLAVE STATUS");
        assert!(st.rows.is_empty());
        assert!(st.column_index("Slave_IO_Running").is_some());
        let st = rs(&mut srv, c, "SHOW REPLICA STATUS");
        assert!(st.rows.is_empty());
    }
    let mut my = mysql(1);
    let c = conn(&mut my);
    assert!(rs(&mut my, c, "SHOW REPLICA STATUS")
        .column_index("Replica_IO_Running")
        .is_some());
    assert_eq!(err(&mut my, c, "SHOW ALL SLAVES STATUS").code, 1064);
}

#[test]
fn mysql_replica_status_uses_replica_words_and_gtid_sets() {
    let mut p = mysql(1);
    let mut r = mysql(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    r.pull_from(&p, 0).unwrap();
    let st = rs(&mut r, rc, "SHOW REPLICA STATUS");
    assert_eq!(st.get(0, "Replica_IO_Running"), Some(&s("Yes")));
    assert_eq!(st.get(0, "Source_Host"), Some(&s("db1")));
    assert_eq!(st.get(0, "Seconds_Behind_Source"), Some(&Value::Int(0)));
    assert_eq!(
        st.get(0, "Executed_Gtid_Set"),
        Some(&Value::str(format!("{}:1", p.server_uuid())))
    );
    assert_eq!(
        st.get(0, "Source_UUID"),
        Some(&Value::str(p.server_uuid().to_string()))
    );
    assert_eq!(r.gtid_executed(), p.gtid_executed());
}

#[test]
fn seconds_behind_master_reflects_the_oldest_unapplied_event() {
    let mut p = maria(1);
    let mut r = maria(2);
    let pc = conn(&mut p);
    run_at(&mut p, pc, "CREATE TABLE t (id INT PRIMARY KEY)", 1_000);
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    let evs = p
        .binlog_events_after(&r.replica_request_position().unwrap())
        .unwrap();
    r.receive_events(1, None, evs, 1_000);
    ok(&mut r, rc, "STOP SLAVE SQL_THREAD");
    ok(&mut r, rc, "START SLAVE SQL_THREAD");
    let st = done(run_at(&mut r, rc, "SHOW SLAVE STATUS", 6_000));
    let st = st[0].result_set().unwrap();
    assert_eq!(st.get(0, "Seconds_Behind_Master"), Some(&Value::Int(5)));
    ok(&mut r, rc, "STOP SLAVE");
    let st = rs(&mut r, rc, "SHOW SLAVE STATUS");
    assert_eq!(st.get(0, "Seconds_Behind_Master"), Some(&Value::Null));
    assert_eq!(st.get(0, "Slave_IO_Running"), Some(&s("No")));
}

#[test]
fn master_gtid_wait_returns_zero_once_replica_applies() {
    let mut p = maria(1);
    let mut r = maria(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    ok(
        &mut p,
        pc,
        "SET SESSION session_track_system_variables = 'last_gtid'",
    );
    let o = ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)");
    let StateChange::SystemVariable { value: gtid, .. } = &o.session_state_changes[0] else {
        panic!()
    };
    let rc = conn(&mut r);
    let bl = blocked(run_at(
        &mut r,
        rc,
        &format!("SELECT MASTER_GTID_WAIT('{gtid}', 5)"),
        1_000,
    ));
    assert_eq!(
        bl.reason,
        WaitReason::GtidWait {
            target: gtid.clone()
        }
    );
    assert_eq!(bl.deadline_ms, Some(6_000));
    assert!(!r.can_resume(rc, 2_000));
    sync(&p, &mut r);
    assert!(r.can_resume(rc, 2_000));
    let out = done(r.resume(rc, 2_000).unwrap());
    let rs = out[0].result_set().unwrap();
    assert_eq!(rs.rows, vec![vec![Value::Int(0)]]);
    assert_eq!(rs.columns[0].name, format!("MASTER_GTID_WAIT('{gtid}', 5)"));
}

#[test]
fn master_gtid_wait_times_out_with_minus_one_and_rejects_garbage() {
    let mut r = maria(2);
    let rc = conn(&mut r);
    blocked(run_at(
        &mut r,
        rc,
        "SELECT MASTER_GTID_WAIT('0-1-100', 0.5)",
        0,
    ));
    assert!(r.can_resume(rc, 500));
    let out = done(r.resume(rc, 500).unwrap());
    assert_eq!(
        out[0].result_set().unwrap().rows,
        vec![vec![Value::Int(-1)]]
    );
    assert_eq!(
        scalar(&mut r, rc, "SELECT MASTER_GTID_WAIT('', 1)"),
        Value::Int(0)
    );
    let e = err(&mut r, rc, "SELECT MASTER_GTID_WAIT('zzz', 1)");
    assert_eq!(
        (e.code, e.message.as_str()),
        (1941, "Could not parse GTID list")
    );
    let mut my = mysql(1);
    let c = conn(&mut my);
    assert_eq!(
        err(&mut my, c, "SELECT MASTER_GTID_WAIT('0-1-1')").code,
        1305
    );
}

#[test]
fn wait_for_executed_gtid_set_returns_zero_or_one_on_timeout() {
    let mut p = mysql(1);
    let mut r = mysql(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    let want = p.gtid_executed().to_string();
    let rc = conn(&mut r);
    blocked(run_at(
        &mut r,
        rc,
        &format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{want}', 2)"),
        0,
    ));
    let out = done(r.resume(rc, 2_000).unwrap());
    assert_eq!(out[0].result_set().unwrap().rows, vec![vec![Value::Int(1)]]);
    blocked(run_at(
        &mut r,
        rc,
        &format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{want}', 2)"),
        3_000,
    ));
    sync(&p, &mut r);
    let out = done(r.resume(rc, 3_001).unwrap());
    assert_eq!(out[0].result_set().unwrap().rows, vec![vec![Value::Int(0)]]);
    let e = err(&mut r, rc, "SELECT WAIT_FOR_EXECUTED_GTID_SET('bogus')");
    assert_eq!(
        (e.code, e.message.as_str()),
        (1772, "Malformed GTID set specification 'bogus'.")
    );
}

#[test]
fn promoted_replica_generates_gtids_with_its_own_server_id() {
    let mut p = maria(1);
    let mut r = Server::new(
        ServerConfig::mariadb(2)
            .with_database("app")
            .with_read_only(true),
    );
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)");
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    r.pull_from(&p, 0).unwrap();
    // failover
    ok(&mut r, rc, "STOP SLAVE");
    ok(&mut r, rc, "RESET SLAVE ALL");
    ok(&mut r, rc, "SET GLOBAL read_only = 0");
    assert!(rs(&mut r, rc, "SHOW SLAVE STATUS").rows.is_empty());
    let app = conn(&mut r);
    ok(&mut r, app, "INSERT INTO t (id) VALUES (2)");
    assert_eq!(scalar(&mut r, app, "SELECT @@last_gtid"), s("0-2-3"));
    assert_eq!(r.gtid_binlog_pos().to_string(), "0-2-3");
    assert_eq!(r.gtid_current_pos().to_string(), "0-2-3");
    assert_eq!(r.gtid_slave_pos().to_string(), "0-1-2");
}

#[test]
fn promoted_mysql_replica_generates_gtids_with_its_own_uuid() {
    let mut p = mysql(1);
    let mut r = mysql(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    r.pull_from(&p, 0).unwrap();
    ok(&mut r, rc, "STOP REPLICA");
    ok(&mut r, rc, "RESET REPLICA ALL");
    ok(&mut r, rc, "INSERT INTO t (id) VALUES (1)");
    let want = format!("{}:1,\n{}:1", p.server_uuid(), r.server_uuid());
    let mut sets = [p.server_uuid(), r.server_uuid()];
    sets.sort();
    let want_sorted = format!("{}:1,\n{}:1", sets[0], sets[1]);
    let _ = want;
    assert_eq!(r.gtid_executed().to_string(), want_sorted);
}

#[test]
fn repointed_replica_continues_from_its_gtid_position_on_the_new_primary() {
    let mut p = maria(1);
    let mut r1 = maria(2);
    let mut r2 = maria(3);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)");
    let c1 = root(&mut r1);
    let c2 = root(&mut r2);
    make_replica(&p, &mut r1, c1);
    make_replica(&p, &mut r2, c2);
    r1.pull_from(&p, 0).unwrap();
    r2.pull_from(&p, 0).unwrap();
    // r1 becomes primary, r2 follows it
    ok(
        &mut r1,
        c1,
        "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
    );
    ok(&mut r1, c1, "INSERT INTO t (id) VALUES (2)");
    ok(&mut r2, c2, "STOP SLAVE");
    ok(
        &mut r2,
        c2,
        "CHANGE MASTER TO MASTER_HOST='db2', MASTER_PORT=3306, MASTER_USE_GTID=slave_pos",
    );
    ok(&mut r2, c2, "START SLAVE");
    assert_eq!(r2.replica_source().unwrap().host, "db2");
    assert_eq!(r2.pull_from(&r1, 0).unwrap(), 1);
    assert_eq!(r2.table_rows("app", "t"), r1.table_rows("app", "t"));
    assert_eq!(r2.gtid_slave_pos().to_string(), "0-2-3");
}

#[test]
fn old_primary_that_lost_its_tail_sees_divergence_error_1236() {
    let mut p = maria(1);
    let mut r = maria(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    r.pull_from(&p, 0).unwrap();
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)"); // 0-1-2 never replicated
    ok(
        &mut r,
        rc,
        "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
    );
    let app = conn(&mut r);
    ok(&mut r, app, "INSERT INTO t (id) VALUES (7)"); // 0-2-2
                                                      // old primary rejoins as replica using its current position
    let pc = root(&mut p);
    ok(
        &mut p,
        pc,
        "CHANGE MASTER TO MASTER_HOST='db2', MASTER_USE_GTID=current_pos",
    );
    ok(&mut p, pc, "START SLAVE");
    let e = p.pull_from(&r, 0).unwrap_err();
    assert_eq!(e.message, "Error: connecting slave requested to start from GTID 0-1-2, which is not in the master's binlog");
    ok(&mut r, app, "INSERT INTO t (id) VALUES (8)"); // 0-2-3
    ok(&mut p, pc, "START SLAVE");
    let e = p.pull_from(&r, 0).unwrap_err();
    assert_eq!(e.code, 1236);
    assert!(e.message.contains("connecting slave requested to start from GTID 0-1-2, which is not in the master's binlog. Since the master's binlog contains GTIDs with higher sequence numbers"), "{}", e.message);
    let st = rs(&mut p, pc, "SHOW SLAVE STATUS");
    assert_eq!(st.get(0, "Slave_IO_Running"), Some(&s("No")));
    assert_eq!(st.get(0, "Last_IO_Errno"), Some(&Value::Int(1236)));
    let Value::Bytes(msg) = st.get(0, "Last_IO_Error").unwrap() else {
        panic!()
    };
    assert!(String::from_utf8_lossy(msg).starts_with("Got fatal error 1236 from master when reading data from binary log: 'Error: connecting slave"));
}

#[test]
fn mysql_source_refuses_replica_with_more_gtids_of_its_uuid() {
    let mut p = mysql(1);
    let mut r = mysql(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)");
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    r.pull_from(&p, 0).unwrap();
    let lost = p.lose_binlog_tail(1);
    assert_eq!(lost.len(), 1);
    let e = r.pull_from(&p, 0).unwrap_err();
    assert!(e
        .message
        .starts_with("Replica has more GTIDs than the source has"));
    let st = rs(&mut r, rc, "SHOW REPLICA STATUS");
    assert_eq!(st.get(0, "Last_IO_Errno"), Some(&Value::Int(13114)));
}

#[test]
fn replica_sql_thread_stops_on_apply_error() {
    let mut p = maria(1);
    let mut r = maria(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    r.pull_from(&p, 0).unwrap();
    // errant local write on the replica, then the primary inserts the same key
    ok(&mut r, rc, "INSERT INTO t (id) VALUES (1)");
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)");
    assert_eq!(r.pull_from(&p, 0).unwrap(), 0);
    let st = rs(&mut r, rc, "SHOW SLAVE STATUS");
    assert_eq!(st.get(0, "Slave_SQL_Running"), Some(&s("No")));
    assert_eq!(st.get(0, "Last_SQL_Errno"), Some(&Value::Int(1062)));
    assert_eq!(st.get(0, "Seconds_Behind_Master"), Some(&Value::Null));
}

#[test]
fn replica_applier_waits_for_local_row_locks() {
    let mut p = mysql(1);
    let mut r = mysql(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)");
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    r.pull_from(&p, 0).unwrap();
    let reader = conn(&mut r);
    ok(&mut r, reader, "BEGIN");
    rows(&mut r, reader, "SELECT * FROM t WHERE id = 1 FOR UPDATE");
    ok(&mut p, pc, "UPDATE t SET v = 9 WHERE id = 1");
    assert_eq!(r.pull_from(&p, 0).unwrap(), 0);
    ok(&mut r, reader, "COMMIT");
    assert_eq!(r.apply_relay_log(0, 10), 1);
    assert_eq!(r.table_rows("app", "t"), p.table_rows("app", "t"));
}

// ---------------------------------------------------------------------------
// crash and loss
// ---------------------------------------------------------------------------

#[test]
fn crash_rolls_back_open_transactions_and_keeps_committed() {
    let mut srv = maria(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "INSERT INTO t (id) VALUES (1)");
    ok(&mut srv, b, "BEGIN");
    ok(&mut srv, b, "INSERT INTO t (id) VALUES (2)");
    ok(&mut srv, b, "CREATE TEMPORARY TABLE tmp (a INT)");
    rows(&mut srv, a, "SELECT GET_LOCK('x', 0)");
    let before = srv.binlog_len();
    srv.crash();
    assert!(matches!(
        srv.execute(a, "SELECT 1", 0),
        Err(SimError::UnknownSession(_))
    ));
    let c = conn(&mut srv);
    assert_eq!(
        rows(&mut srv, c, "SELECT id FROM t"),
        vec![vec![Value::Int(1)]]
    );
    assert_eq!(srv.binlog_len(), before);
    assert_eq!(
        scalar(&mut srv, c, "SELECT IS_FREE_LOCK('x')"),
        Value::Int(1)
    );
    assert_eq!(err(&mut srv, c, "SELECT * FROM tmp").code, 1146);
    // the rolled-back row's key is free
    ok(&mut srv, c, "INSERT INTO t (id) VALUES (2)");
    assert_eq!(srv.boot_count(), 2);
    assert_eq!(
        rows(&mut srv, c, "SHOW MASTER STATUS")[0][0],
        s("mysql-bin.000002")
    );
}

#[test]
fn replica_position_survives_crash_and_relay_log_is_refetched() {
    let mut p = maria(1);
    let mut r = maria(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)");
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    let evs = p
        .binlog_events_after(&r.replica_request_position().unwrap())
        .unwrap();
    r.receive_events(1, None, evs, 0);
    assert_eq!(r.apply_relay_log(0, 1), 1); // only the CREATE TABLE
    r.crash();
    assert_eq!(r.gtid_slave_pos().to_string(), "0-1-1");
    assert!(r.replica_io_running());
    assert_eq!(r.pull_from(&p, 0).unwrap(), 1);
    assert_eq!(r.table_rows("app", "t"), p.table_rows("app", "t"));
}

#[test]
fn lose_unreplicated_drops_the_tail_from_data_binlog_and_gtid_state() {
    let mut p = maria(1);
    let mut r = maria(2);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)");
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    r.pull_from(&p, 0).unwrap();
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (2)");
    ok(&mut p, pc, "UPDATE t SET v = 3 WHERE id = 1");
    let lost = p.lose_unreplicated(&r.received_position());
    assert_eq!(lost.len(), 2);
    assert_eq!(p.gtid_binlog_pos().to_string(), "0-1-2");
    assert_eq!(p.table_rows("app", "t"), r.table_rows("app", "t"));
    let c = conn(&mut p);
    ok(&mut p, c, "INSERT INTO t (id) VALUES (3)");
    assert_eq!(p.gtid_binlog_pos().to_string(), "0-1-3");
    assert_eq!(r.pull_from(&p, 0).unwrap(), 1);
}

#[test]
fn provisioned_replica_starts_from_the_source_position() {
    let mut p = mysql(1);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (1)");
    let mut r = mysql(2);
    r.provision_from(&p);
    assert_eq!(r.gtid_executed(), p.gtid_executed());
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (2)");
    assert_eq!(r.pull_from(&p, 0).unwrap(), 1);
    assert_eq!(r.table_rows("app", "t"), p.table_rows("app", "t"));
}

// ---------------------------------------------------------------------------
// semi-sync
// ---------------------------------------------------------------------------

#[test]
fn semi_sync_commit_waits_for_ack_then_falls_back_on_timeout() {
    let mut p = mysql(1);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    p.set_semi_sync(true);
    let out = run_at(&mut p, pc, "INSERT INTO t (id) VALUES (1); SELECT 2", 100);
    let ExecOutcome::CommitPendingAck { gtid, deadline_ms } = out else {
        panic!("{out:?}")
    };
    assert_eq!(deadline_ms, 10_100);
    // the commit is already durable and visible
    let other = conn(&mut p);
    assert_eq!(
        scalar(&mut p, other, "SELECT COUNT(*) FROM t"),
        Value::Int(1)
    );
    assert!(!p.can_resume(pc, 200));
    let mut r = mysql(2);
    let rc = root(&mut r);
    make_replica(&p, &mut r, rc);
    r.pull_from(&p, 200).unwrap();
    p.ack_semi_sync(&r.received_position());
    assert!(p.can_resume(pc, 200));
    let res = done(p.resume(pc, 200).unwrap());
    assert_eq!(res.len(), 2);
    assert!(r.received_position().contains(&gtid));
    // no ack: after the timeout the OK is released and semi-sync switches off
    let out = run_at(&mut p, pc, "INSERT INTO t (id) VALUES (2)", 1_000);
    assert!(matches!(out, ExecOutcome::CommitPendingAck { .. }));
    let res = done(p.resume(pc, 11_000).unwrap());
    assert!(res[0].ok().is_some());
    assert!(!p.semi_sync_active());
    assert!(matches!(
        run_at(&mut p, pc, "INSERT INTO t (id) VALUES (3)", 12_000),
        ExecOutcome::Done(_)
    ));
    r.pull_from(&p, 13_000).unwrap();
    p.ack_semi_sync(&r.received_position());
    assert!(p.semi_sync_active());
}

// ---------------------------------------------------------------------------
// locks, sleep, kill
// ---------------------------------------------------------------------------

#[test]
fn get_lock_blocks_until_release_or_timeout() {
    let mut srv = maria(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    assert_eq!(
        scalar(&mut srv, a, "SELECT GET_LOCK('job', 10)"),
        Value::Int(1)
    );
    assert_eq!(
        scalar(&mut srv, b, "SELECT IS_USED_LOCK('job')"),
        Value::UInt(a as u64)
    );
    let bl = blocked(run_at(&mut srv, b, "SELECT GET_LOCK('job', 2)", 1_000));
    assert_eq!(
        bl.reason,
        WaitReason::UserLock {
            name: "job".into(),
            holder: a
        }
    );
    assert_eq!(bl.deadline_ms, Some(3_000));
    let out = done(srv.resume(b, 3_000).unwrap());
    assert_eq!(out[0].result_set().unwrap().rows, vec![vec![Value::Int(0)]]);
    blocked(run_at(&mut srv, b, "SELECT GET_LOCK('job', 2)", 4_000));
    assert_eq!(
        scalar(&mut srv, a, "SELECT RELEASE_LOCK('job')"),
        Value::Int(1)
    );
    let out = done(srv.resume(b, 4_001).unwrap());
    assert_eq!(out[0].result_set().unwrap().rows, vec![vec![Value::Int(1)]]);
    assert_eq!(
        scalar(&mut srv, a, "SELECT RELEASE_LOCK('job')"),
        Value::Int(0)
    );
    assert_eq!(
        scalar(&mut srv, a, "SELECT RELEASE_LOCK('nope')"),
        Value::Null
    );
    // closing the session frees its locks
    srv.close_session(b);
    assert_eq!(
        scalar(&mut srv, a, "SELECT GET_LOCK('job', 0)"),
        Value::Int(1)
    );
}

#[test]
fn side_effects_are_not_repeated_when_a_statement_resumes() {
    let mut srv = mysql(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    assert_eq!(
        scalar(&mut srv, b, "SELECT GET_LOCK('two', 0)"),
        Value::Int(1)
    );
    blocked(run_at(
        &mut srv,
        a,
        "SELECT GET_LOCK('one', 0), GET_LOCK('two', 5)",
        0,
    ));
    assert_eq!(
        scalar(&mut srv, b, "SELECT RELEASE_LOCK('two')"),
        Value::Int(1)
    );
    let out = done(srv.resume(a, 1).unwrap());
    assert_eq!(
        out[0].result_set().unwrap().rows,
        vec![vec![Value::Int(1), Value::Int(1)]]
    );
    assert_eq!(
        scalar(&mut srv, a, "SELECT RELEASE_LOCK('one')"),
        Value::Int(1)
    );
    assert_eq!(
        scalar(&mut srv, a, "SELECT RELEASE_LOCK('one')"),
        Value::Null
    );
}

#[test]
fn sleep_blocks_until_its_deadline() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    let bl = blocked(run_at(&mut srv, c, "SELECT SLEEP(1.5)", 100));
    assert_eq!(
        (bl.reason, bl.deadline_ms),
        (WaitReason::Sleep, Some(1_600))
    );
    assert_eq!(srv.next_deadline(), Some(1_600));
    assert!(!srv.can_resume(c, 1_599));
    let out = done(srv.resume(c, 1_600).unwrap());
    assert_eq!(out[0].result_set().unwrap().rows, vec![vec![Value::Int(0)]]);
}

#[test]
fn kill_query_interrupts_a_blocked_statement_and_kill_connection_disconnects() {
    let mut srv = maria(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    let admin = root(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "INSERT INTO t (id) VALUES (1)");
    ok(&mut srv, a, "BEGIN");
    ok(&mut srv, a, "UPDATE t SET v = 1 WHERE id = 1");
    blocked(run_at(&mut srv, b, "UPDATE t SET v = 2 WHERE id = 1", 0));
    ok(&mut srv, admin, &format!("KILL QUERY {b}"));
    let out = done(srv.resume(b, 1).unwrap());
    assert_eq!(out[0].err().unwrap().code, 1317);
    ok(&mut srv, admin, &format!("KILL {a}"));
    // a's transaction was rolled back and its locks released
    assert_eq!(
        scalar(&mut srv, b, "SELECT v FROM t WHERE id = 1"),
        Value::Int(0)
    );
    ok(&mut srv, b, "UPDATE t SET v = 2 WHERE id = 1");
    let out = srv.execute(a, "SELECT 1", 2).unwrap();
    assert_eq!(
        out,
        ExecOutcome::Disconnect {
            error: Some(SqlError::connection_killed())
        }
    );
    assert!(srv.session(a).is_none());
    assert_eq!(
        err(&mut srv, b, "KILL 999").message,
        "Unknown thread id: 999"
    );
}

#[test]
fn processlist_shows_sessions_and_their_state() {
    let mut srv = mysql(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    rows(&mut srv, a, "SELECT GET_LOCK('l', 0)");
    blocked(run_at(&mut srv, b, "SELECT GET_LOCK('l', 100)", 0));
    let r = rows(&mut srv, a, "SHOW PROCESSLIST");
    assert_eq!(r.len(), 2);
    assert_eq!(r[1][0], Value::UInt(b as u64));
    assert_eq!(r[1][4], s("Query"));
    assert_eq!(r[1][6], s("User lock"));
    assert_eq!(r[1][7], s("SELECT GET_LOCK('l', 100)"));
}

// ---------------------------------------------------------------------------
// temporary tables
// ---------------------------------------------------------------------------

#[test]
fn temporary_tables_shadow_base_tables_and_are_not_replicated() {
    let mut srv = maria(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    setup_table(&mut srv, a);
    ok(&mut srv, a, "INSERT INTO t (id) VALUES (1)");
    let before = srv.binlog_len();
    ok(
        &mut srv,
        a,
        "CREATE TEMPORARY TABLE t (id INT PRIMARY KEY, x INT)",
    );
    ok(&mut srv, a, "INSERT INTO t VALUES (10, 1), (11, 2)");
    assert_eq!(scalar(&mut srv, a, "SELECT COUNT(*) FROM t"), Value::Int(2));
    assert_eq!(scalar(&mut srv, b, "SELECT COUNT(*) FROM t"), Value::Int(1));
    ok(&mut srv, a, "BEGIN");
    ok(&mut srv, a, "DELETE FROM t");
    ok(&mut srv, a, "ROLLBACK");
    assert_eq!(scalar(&mut srv, a, "SELECT COUNT(*) FROM t"), Value::Int(2));
    assert_eq!(srv.binlog_len(), before);
    ok(&mut srv, a, "DROP TEMPORARY TABLE t");
    assert_eq!(scalar(&mut srv, a, "SELECT COUNT(*) FROM t"), Value::Int(1));
    ok(&mut srv, a, "CREATE TEMPORARY TABLE tmp (a INT)");
    srv.close_session(a);
    let c = conn(&mut srv);
    assert_eq!(err(&mut srv, c, "SELECT * FROM tmp").code, 1146);
}

#[test]
fn reset_session_drops_state_but_keeps_the_connection() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    ok(
        &mut srv,
        c,
        "SET @x = 1; SET autocommit = 0; CREATE TEMPORARY TABLE tmp (a INT)",
    );
    ok(&mut srv, c, "INSERT INTO t (id) VALUES (1)");
    srv.reset_session(c).unwrap();
    assert_eq!(scalar(&mut srv, c, "SELECT @x"), Value::Null);
    assert_eq!(scalar(&mut srv, c, "SELECT @@autocommit"), Value::Int(1));
    assert_eq!(scalar(&mut srv, c, "SELECT COUNT(*) FROM t"), Value::Int(0));
    assert_eq!(err(&mut srv, c, "SELECT * FROM tmp").code, 1146);
}

// ---------------------------------------------------------------------------
// faults
// ---------------------------------------------------------------------------

struct Scripted {
    delay: Option<u64>,
    commit: Option<CommitFault>,
}

impl FaultHooks for Scripted {
    fn statement_delay(&mut self, _ctx: &FaultContext<'_>) -> Option<u64> {
        self.delay.take()
    }
    fn on_commit(&mut self, _ctx: &FaultContext<'_>) -> Option<CommitFault> {
        self.commit.take()
    }
}

#[test]
fn fault_hooks_can_fail_commits_delay_statements_and_crash() {
    let mut srv = mysql(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    srv.set_fault_hooks(Box::new(Scripted {
        delay: None,
        commit: Some(CommitFault::Fail(SqlError::deadlock())),
    }));
    ok(&mut srv, c, "BEGIN");
    ok(&mut srv, c, "INSERT INTO t (id) VALUES (1)");
    assert_eq!(err(&mut srv, c, "COMMIT").code, 1213);
    assert_eq!(scalar(&mut srv, c, "SELECT COUNT(*) FROM t"), Value::Int(0));
    assert!(!srv.session(c).unwrap().in_transaction());

    srv.set_fault_hooks(Box::new(Scripted {
        delay: Some(250),
        commit: None,
    }));
    let bl = blocked(run_at(&mut srv, c, "SELECT 1", 1_000));
    assert_eq!(
        (bl.reason, bl.deadline_ms),
        (WaitReason::FaultDelay, Some(1_250))
    );
    done(srv.resume(c, 1_250).unwrap());

    srv.set_fault_hooks(Box::new(Scripted {
        delay: None,
        commit: Some(CommitFault::CrashBeforeDurable),
    }));
    let other = conn(&mut srv);
    assert_eq!(
        run_at(&mut srv, c, "INSERT INTO t (id) VALUES (1)", 0),
        ExecOutcome::Disconnect { error: None }
    );
    assert!(srv.session(other).is_none());
    let c = conn(&mut srv);
    assert_eq!(scalar(&mut srv, c, "SELECT COUNT(*) FROM t"), Value::Int(0));

    srv.set_fault_hooks(Box::new(Scripted {
        delay: None,
        commit: Some(CommitFault::CrashAfterDurable),
    }));
    assert_eq!(
        run_at(&mut srv, c, "INSERT INTO t (id) VALUES (1)", 0),
        ExecOutcome::Disconnect { error: None }
    );
    let c = conn(&mut srv);
    assert_eq!(scalar(&mut srv, c, "SELECT COUNT(*) FROM t"), Value::Int(1));
}

#[test]
fn status_flags_follow_autocommit_and_transactions() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    let o = ok(&mut srv, c, "SELECT 1; BEGIN");
    assert_eq!(
        o.status_flags,
        SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_IN_TRANS
    );
    let r = run(&mut srv, c, "SELECT 1; COMMIT");
    assert_eq!(
        r[0].result_set().unwrap().status_flags,
        SERVER_STATUS_AUTOCOMMIT | SERVER_STATUS_IN_TRANS
    );
    assert_eq!(r[1].ok().unwrap().status_flags, SERVER_STATUS_AUTOCOMMIT);
}

#[test]
fn show_databases_and_tables() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    ok(&mut srv, c, "CREATE DATABASE other");
    assert_eq!(
        err(&mut srv, c, "CREATE DATABASE other").message,
        "Can't create database 'other'; database exists"
    );
    let dbs: Vec<Value> = rows(&mut srv, c, "SHOW DATABASES")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        dbs,
        vec![
            s("app"),
            s("information_schema"),
            s("mysql"),
            s("other"),
            s("performance_schema"),
            s("sys")
        ]
    );
    let r = rs(&mut srv, c, "SHOW TABLES");
    assert_eq!(r.columns[0].name, "Tables_in_app");
    assert_eq!(r.rows, vec![vec![s("t")]]);
    ok(&mut srv, c, "DROP DATABASE other");
    ok(&mut srv, c, "DROP TABLE IF EXISTS nope");
    assert_eq!(
        err(&mut srv, c, "DROP TABLE nope").message,
        "Unknown table 'app.nope'"
    );
    ok(&mut srv, c, "TRUNCATE TABLE t");
}

// ---------------------------------------------------------------------------
// property: replaying the binlog reproduces the primary
// ---------------------------------------------------------------------------

mod replay_prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(i64, i64),
        InsertAuto(i64),
        InsertIgnore(i64, i64),
        Replace(i64, i64),
        Upsert(i64, i64),
        Update(i64, i64),
        UpdateWhereV(i64, i64),
        MovePk(i64, i64),
        Delete(i64),
        DeleteWhereV(i64),
        NoPkInsert(i64, String),
        NoPkUpdate(i64, i64),
        NoPkDelete(i64),
        Begin,
        Commit,
        Rollback,
        Savepoint,
        RollbackToSavepoint,
        Truncate,
        AutocommitOff,
        AutocommitOn,
    }

    fn op() -> impl Strategy<Value = Op> {
        let id = 0i64..12;
        let v = -3i64..20;
        prop_oneof![
            4 => (id.clone(), v.clone()).prop_map(|(a, b)| Op::Insert(a, b)),
            2 => v.clone().prop_map(Op::InsertAuto),
            1 => (id.clone(), v.clone()).prop_map(|(a, b)| Op::InsertIgnore(a, b)),
            1 => (id.clone(), v.clone()).prop_map(|(a, b)| Op::Replace(a, b)),
            1 => (id.clone(), v.clone()).prop_map(|(a, b)| Op::Upsert(a, b)),
            3 => (id.clone(), v.clone()).prop_map(|(a, b)| Op::Update(a, b)),
            2 => (v.clone(), v.clone()).prop_map(|(a, b)| Op::UpdateWhereV(a, b)),
            1 => (id.clone(), id.clone()).prop_map(|(a, b)| Op::MovePk(a, b)),
            2 => id.clone().prop_map(Op::Delete),
            1 => v.clone().prop_map(Op::DeleteWhereV),
            2 => (0i64..5, "[a-c]{0,3}").prop_map(|(a, b)| Op::NoPkInsert(a, b)),
            1 => (0i64..5, v.clone()).prop_map(|(a, b)| Op::NoPkUpdate(a, b)),
            1 => (0i64..5).prop_map(Op::NoPkDelete),
            2 => Just(Op::Begin),
            2 => Just(Op::Commit),
            1 => Just(Op::Rollback),
            1 => Just(Op::Savepoint),
            1 => Just(Op::RollbackToSavepoint),
            1 => Just(Op::Truncate),
            1 => Just(Op::AutocommitOff),
            1 => Just(Op::AutocommitOn),
        ]
    }

    fn sql(op: &Op) -> String {
        match op {
            Op::Insert(a, b) => format!("INSERT INTO t (id, v) VALUES ({a}, {b})"),
            Op::InsertAuto(b) => format!("INSERT INTO t (v, name) VALUES ({b}, 'auto')"),
            Op::InsertIgnore(a, b) => format!(
                "INSERT IGNORE INTO t (id, v) VALUES ({a}, {b}), ({}, {b})",
                a + 1
            ),
            Op::Replace(a, b) => format!("REPLACE INTO t (id, v, name) VALUES ({a}, {b}, 'r')"),
            Op::Upsert(a, b) => format!(
                "INSERT INTO t (id, v) VALUES ({a}, {b}) ON DUPLICATE KEY UPDATE v = v + VALUES(v)"
            ),
            Op::Update(a, b) => {
                format!("UPDATE t SET v = v + {b}, name = CONCAT('u', {a}) WHERE id = {a}")
            }
            Op::UpdateWhereV(a, b) => {
                format!("UPDATE t SET v = {b} WHERE v > {a} ORDER BY id LIMIT 3")
            }
            Op::MovePk(a, b) => format!("UPDATE t SET id = {b} WHERE id = {a}"),
            Op::Delete(a) => format!("DELETE FROM t WHERE id = {a}"),
            Op::DeleteWhereV(a) => format!("DELETE FROM t WHERE v < {a}"),
            Op::NoPkInsert(a, s) => format!("INSERT INTO n VALUES ({a}, '{s}')"),
            Op::NoPkUpdate(a, b) => format!("UPDATE n SET a = {b} WHERE a = {a}"),
            Op::NoPkDelete(a) => format!("DELETE FROM n WHERE a = {a}"),
            Op::Begin => "BEGIN".into(),
            Op::Commit => "COMMIT".into(),
            Op::Rollback => "ROLLBACK".into(),
            Op::Savepoint => "SAVEPOINT sp".into(),
            Op::RollbackToSavepoint => "ROLLBACK TO SAVEPOINT sp".into(),
            Op::Truncate => "TRUNCATE TABLE n".into(),
            Op::AutocommitOff => "SET autocommit = 0".into(),
            Op::AutocommitOn => "SET autocommit = 1".into(),
        }
    }

    fn sorted(mut v: Vec<Row>) -> Vec<Row> {
        v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        v
    }

    fn fresh(mysql_flavour: bool, id: u32) -> Server {
        if mysql_flavour {
            mysql(id)
        } else {
            maria(id)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn random_single_session_workload_replays_identically_on_a_replica(
            mysql_flavour in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..60),
            cut in 0usize..100,
        ) {
            let mut p = fresh(mysql_flavour, 1);
            let c = conn(&mut p);
            ok(&mut p, c, "CREATE TABLE t (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL DEFAULT 0, name VARCHAR(20))");
            ok(&mut p, c, "CREATE TABLE n (a INT, b VARCHAR(10))");
            for o in &ops {
                // errors (duplicates, missing savepoints, …) are part of the workload
                let _ = run(&mut p, c, &sql(o));
            }
            let _ = run(&mut p, c, "COMMIT");

            // 1. a replica fed the whole binlog ends in the same state
            let mut r = fresh(mysql_flavour, 2);
            for ev in p.binlog() {
                prop_assert_eq!(r.apply_event(ev, 0).unwrap(), ApplyOutcome::Applied);
            }
            prop_assert_eq!(r.table_rows("app", "t"), p.table_rows("app", "t"));
            prop_assert_eq!(sorted(r.table_rows("app", "n").unwrap()), sorted(p.table_rows("app", "n").unwrap()));
            prop_assert_eq!(r.executed_position(), p.executed_position());
            // AUTO_INCREMENT is not transactional: rolled-back inserts leave gaps on
            // the primary only, so the replica's counter can lag but never lead
            prop_assert!(r.catalog().table("app", "t").unwrap().auto_inc <= p.catalog().table("app", "t").unwrap().auto_inc);

            // 2. the same via the replication threads
            let mut r2 = fresh(mysql_flavour, 3);
            let rc = root(&mut r2);
            ok(&mut r2, rc, "CHANGE MASTER TO MASTER_HOST='db1'; START SLAVE");
            r2.pull_from(&p, 0).unwrap();
            prop_assert_eq!(r2.table_rows("app", "t"), p.table_rows("app", "t"));

            // 3. losing a binlog tail equals replaying only the kept prefix
            let keep = cut % (p.binlog_len() + 1);
            let mut prefix = fresh(mysql_flavour, 4);
            for ev in &p.binlog()[..keep] {
                prefix.apply_event(ev, 0).unwrap();
            }
            p.lose_binlog_tail(keep);
            prop_assert_eq!(p.binlog_len(), keep);
            prop_assert_eq!(p.table_rows("app", "t"), prefix.table_rows("app", "t"));
            prop_assert_eq!(p.table_rows("app", "n").map(sorted), prefix.table_rows("app", "n").map(sorted));
            prop_assert_eq!(p.executed_position(), prefix.executed_position());
        }
    }
}

/// Rough throughput check (`cargo test -p sim --release -- --ignored throughput`).
#[test]
#[ignore]
fn throughput_smoke() {
    let mut srv = maria(1);
    let clients: Vec<SessionId> = (0..16).map(|_| conn(&mut srv)).collect();
    setup_table(&mut srv, clients[0]);
    for i in 1..=2_000 {
        ok(
            &mut srv,
            clients[0],
            &format!("INSERT INTO t (id, v, name) VALUES ({i}, {i}, 'n{i}')"),
        );
    }
    let start = std::time::Instant::now();
    let n = 60_000u64;
    for i in 0..n {
        let c = clients[(i % 16) as usize];
        let id = (i * 7919) % 2_000;
        let q = match i % 4 {
            0 => format!("SELECT v, name FROM t WHERE id = {id}"),
            1 => format!("UPDATE t SET v = v + 1 WHERE id = {id}"),
            2 => format!("INSERT INTO t (v) VALUES ({i})"),
            _ => "SELECT @@read_only, @@last_gtid".to_string(),
        };
        let _ = srv.execute(c, &q, i).unwrap();
    }
    let el = start.elapsed();
    eprintln!(
        "{n} statements in {el:?} ({:.0}/s), binlog {}",
        n as f64 / el.as_secs_f64(),
        srv.binlog_len()
    );
}

#[test]
fn connector_startup_queries_work() {
    let mut my = mysql(1);
    let c = conn(&mut my);
    let r = rs(&mut my, c, "/* mysql-connector-java-8.0.33 */SELECT @@session.auto_increment_increment AS auto_increment_increment, @@character_set_client AS character_set_client, @@character_set_connection AS character_set_connection, @@character_set_results AS character_set_results, @@character_set_server AS character_set_server, @@collation_server AS collation_server, @@collation_connection AS collation_connection, @@init_connect AS init_connect, @@interactive_timeout AS interactive_timeout, @@license AS license, @@lower_case_table_names AS lower_case_table_names, @@max_allowed_packet AS max_allowed_packet, @@net_write_timeout AS net_write_timeout, @@performance_schema AS performance_schema, @@sql_mode AS sql_mode, @@system_time_zone AS system_time_zone, @@time_zone AS time_zone, @@transaction_isolation AS transaction_isolation, @@wait_timeout AS wait_timeout");
    assert_eq!(
        r.get(0, "max_allowed_packet"),
        Some(&Value::Int(67_108_864))
    );
    assert_eq!(
        r.get(0, "transaction_isolation"),
        Some(&s("REPEATABLE-READ"))
    );
    ok(&mut my, c, "SET character_set_results = NULL");
    ok(&mut my, c, "SET SQL_SELECT_LIMIT=DEFAULT");
    ok(
        &mut my,
        c,
        "SET autocommit=1, sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')",
    );
    ok(&mut my, c, "SET FOREIGN_KEY_CHECKS=0, UNIQUE_CHECKS=0");
    assert_eq!(
        rows(&mut my, c, "SELECT @@version_comment LIMIT 1"),
        vec![vec![s("MySQL Community Server - GPL")]]
    );
    assert_eq!(
        scalar(&mut my, c, "SELECT @@session.transaction_read_only"),
        Value::Int(0)
    );
    assert_eq!(err(&mut my, c, "SELECT @@tx_read_only").code, 1193);
    assert_eq!(
        scalar(&mut my, c, "SELECT @@sql_select_limit"),
        Value::UInt(u64::MAX)
    );

    let mut ma = maria(1);
    let c = conn(&mut ma);
    ok(&mut ma, c, "SET autocommit=1, session_track_schema=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES'), session_track_system_variables = concat(@@session_track_system_variables, ',last_gtid')");
    assert_eq!(scalar(&mut ma, c, "SELECT @@tx_read_only"), Value::Int(0));
    assert_eq!(
        scalar(&mut ma, c, "SELECT @@max_allowed_packet"),
        Value::Int(16_777_216)
    );
    ok(&mut ma, c, "SET SESSION TRANSACTION READ ONLY");
    assert_eq!(
        scalar(&mut ma, c, "SELECT @@session.transaction_read_only"),
        Value::Int(1)
    );
    assert_eq!(
        rows(&mut ma, c, "SELECT 1 FROM DUAL"),
        vec![vec![Value::Int(1)]]
    );
    assert_eq!(scalar(&mut ma, c, "SELECT NOW()"), s("2023-11-14 22:13:20"));
}

#[test]
fn blocked_batches_keep_earlier_results_and_finish_on_resume() {
    let mut srv = maria(1);
    let c = conn(&mut srv);
    setup_table(&mut srv, c);
    blocked(run_at(
        &mut srv,
        c,
        "INSERT INTO t (id) VALUES (1); SELECT SLEEP(1); SELECT COUNT(*) FROM t",
        0,
    ));
    // the INSERT autocommitted before the batch blocked
    let other = conn(&mut srv);
    assert_eq!(
        scalar(&mut srv, other, "SELECT COUNT(*) FROM t"),
        Value::Int(1)
    );
    let r = done(srv.resume(c, 1_000).unwrap());
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].ok().unwrap().affected_rows, 1);
    assert_eq!(r[2].result_set().unwrap().rows, vec![vec![Value::Int(1)]]);
    assert!(matches!(
        srv.resume(c, 1_001),
        Err(SimError::NothingPending(_))
    ));
}

#[test]
fn server_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Server>();
    assert_send::<ExecOutcome>();
}

#[test]
fn user_lock_cycles_are_reported_as_deadlocks() {
    let mut srv = mysql(1);
    let a = conn(&mut srv);
    let b = conn(&mut srv);
    rows(&mut srv, a, "SELECT GET_LOCK('x', 0)");
    rows(&mut srv, b, "SELECT GET_LOCK('y', 0)");
    blocked(run_at(&mut srv, a, "SELECT GET_LOCK('y', 10)", 0));
    let e = err(&mut srv, b, "SELECT GET_LOCK('x', 10)");
    assert_eq!((e.code, e.state.as_str()), (3058, "40001"));
}

// ---------------------------------------------------------------------------
// routing facts: primary-only statements on replicas, role changes
// ---------------------------------------------------------------------------

#[test]
fn kill_query_ends_a_wait_for_a_semi_sync_ack_with_interrupted() {
    let mut p = maria(1);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    p.set_semi_sync(true);
    let out = run_at(&mut p, pc, "INSERT INTO t (id) VALUES (1)", 100);
    assert!(matches!(out, ExecOutcome::CommitPendingAck { .. }), "{out:?}");
    p.kill(pc, true).unwrap();
    assert!(p.can_resume(pc, 200));
    // Resuming makes progress (it used to answer "still waiting" forever).
    let res = done(p.resume(pc, 200).unwrap());
    assert_eq!(res[0].err().map(|e| e.code), Some(1317));
    // The transaction stays committed.
    let other = conn(&mut p);
    assert_eq!(scalar(&mut p, other, "SELECT COUNT(*) FROM t"), Value::Int(1));
}

#[test]
fn replica_logs_writes_and_session_bound_statements_it_executes_but_not_plain_reads() {
    let mut p = maria(1);
    let mut r = maria(2);
    let rr = root(&mut r);
    make_replica(&p, &mut r, rr);
    r.set_read_only(true);
    let pc = conn(&mut p);
    setup_table(&mut p, pc);
    sync(&p, &mut r);
    let c = conn(&mut r);
    let at = |out: ExecOutcome| done(out);
    at(run_at(&mut r, c, "SELECT id, @@server_id, @@read_only FROM t", 1_000));
    at(run_at(&mut r, c, "SET SESSION innodb_lock_wait_timeout = 1", 1_001));
    assert_eq!(r.replica_execs().0, &[], "plain reads and session SETs are not primary-only");
    assert_eq!(at(run_at(&mut r, c, "INSERT INTO t (id) VALUES (5)", 1_002))[0].err().map(|e| e.code), Some(1290));
    at(run_at(&mut r, c, "SET @v = 7", 1_003));
    at(run_at(&mut r, c, "SELECT @v, @@server_id", 1_004));
    at(run_at(&mut r, c, "SELECT LAST_INSERT_ID()", 1_005));
    at(run_at(&mut r, c, "SELECT CONNECTION_ID()", 1_006));
    let (execs, dropped) = r.replica_execs();
    assert_eq!(dropped, 0);
    let got: Vec<(u64, PrimaryOnly, &str, Option<u16>)> = execs.iter().map(|x| (x.at_ms, x.what, x.sql.as_str(), x.error)).collect();
    assert_eq!(
        got,
        vec![
            (1_002, PrimaryOnly::Write, "INSERT INTO t (id) VALUES (5)", Some(1290)),
            (1_003, PrimaryOnly::SessionBound, "SET @v = 7", None),
            (1_004, PrimaryOnly::SessionBound, "SELECT @v, @@server_id", None),
            (1_005, PrimaryOnly::SessionBound, "SELECT LAST_INSERT_ID()", None),
            (1_006, PrimaryOnly::SessionBound, "SELECT CONNECTION_ID()", None),
        ]
    );
    // The primary is not replicating: nothing is logged there.
    ok(&mut p, pc, "SET @v = 1");
    ok(&mut p, pc, "INSERT INTO t (id) VALUES (6)");
    assert!(p.replica_execs().0.is_empty());
}

#[test]
fn role_changes_are_recorded_at_the_servers_clock_and_survive_a_crash() {
    let p = maria(1);
    let mut r = maria(2);
    let rr = root(&mut r);
    make_replica(&p, &mut r, rr);
    assert_eq!(r.role_changes(), &[(0, true)]);
    r.clear_role_changes();
    // Promotion at t=5000: no longer replicating.
    run_at(&mut r, rr, "STOP SLAVE", 5_000);
    done(run_at(&mut r, rr, "RESET SLAVE ALL", 5_000));
    assert_eq!(r.role_changes(), &[(5_000, false)]);
    // Down, then re-pointed while its own tasks saw no time pass: the harness moves
    // its clock forward first.
    r.crash();
    r.advance_clock(9_000);
    let rr = root(&mut r);
    done(run_at(&mut r, rr, "CHANGE MASTER TO MASTER_HOST='db1', MASTER_PORT=3306, MASTER_USER='repl'", 10));
    assert_eq!(r.role_changes(), &[(5_000, false), (9_000, true)]);
    // Re-pointing a replica is not a role change.
    done(run_at(&mut r, rr, "CHANGE MASTER TO MASTER_HOST='db3'", 9_500));
    assert_eq!(r.role_changes().len(), 2);
}

#[test]
fn replica_exec_log_is_bounded_and_counts_the_rest() {
    let p = maria(1);
    let mut r = maria(2);
    let rr = root(&mut r);
    make_replica(&p, &mut r, rr);
    let c = conn(&mut r);
    let n = server::REPLICA_EXECS_MAX + 5;
    for i in 0..n {
        done(run_at(&mut r, c, &format!("SET @v = {i}"), i as u64));
    }
    let (kept, dropped) = r.replica_execs();
    assert_eq!((kept.len(), dropped), (server::REPLICA_EXECS_MAX, 5));
    // The first ones and the latest are kept.
    assert_eq!(kept[0].at_ms, 0);
    assert_eq!(kept.last().unwrap().at_ms, n as u64 - 1);
    // A new replicating period gets room of its own.
    done(run_at(&mut r, rr, "STOP SLAVE", 1_000));
    done(run_at(&mut r, rr, "RESET SLAVE ALL", 1_000));
    done(run_at(&mut r, rr, "CHANGE MASTER TO MASTER_HOST='db3'", 2_000));
    done(run_at(&mut r, c, "SET @v = 1", 3_000));
    assert_eq!(r.replica_execs().0.len(), server::REPLICA_EXECS_MAX + 1);
}
