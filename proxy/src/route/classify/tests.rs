//! One test per classification rule (docs/routing.md, "Classification").

use super::*;
use crate::route::class::Hint;

fn c(sql: &str) -> Classified {
    classify_uncached(sql.as_bytes())
}

fn k(sql: &str) -> Kind {
    c(sql).kind
}

fn sb(b: Bound) -> Kind {
    Kind::SessionBound(b)
}

#[track_caller]
fn all(kind: Kind, sqls: &[&str]) {
    for sql in sqls {
        assert_eq!(k(sql), kind, "{sql}");
    }
}

// --- token scan -------------------------------------------------------------------------

#[test]
fn keyword_inside_string_literal_is_not_a_write() {
    all(
        Kind::Read,
        &[
            "SELECT 'UPDATE t SET a = 1'",
            "SELECT \"DELETE FROM t\" AS x",
            "SELECT 'it''s; DROP TABLE t'",
            r"SELECT 'a\\'",
            "SELECT * FROM t WHERE note = 'FOR UPDATE'",
            "SELECT '@v', 'GET_LOCK(1)'",
        ],
    );
}

#[test]
fn keyword_as_quoted_identifier_is_not_a_keyword() {
    all(
        Kind::Read,
        &["SELECT `update` FROM t", "SELECT `for`, `lock` FROM `delete` WHERE `into` = 1", "SELECT t.`update` FROM t"],
    );
}

#[test]
fn keyword_after_a_qualifier_dot_is_an_identifier() {
    all(Kind::Read, &["SELECT t.update, t.for FROM t", "SELECT t.delete FROM t"]);
}

#[test]
fn leading_comments_and_parens_are_skipped() {
    all(
        Kind::Read,
        &[
            "/* hello */ SELECT 1",
            "-- comment\nSELECT 1",
            "# comment\n  SELECT 1",
            "  \n\t((SELECT 1))",
            "/* a */ -- b\n # c\n ( /* d */ SELECT a FROM t ) UNION ( SELECT b FROM u )",
        ],
    );
    all(Kind::Write, &["/* SELECT */ UPDATE t SET a = 1", "-- SELECT\nDELETE FROM t"]);
}

#[test]
fn trailing_semicolon_and_whitespace_make_one_statement() {
    let r = c("SELECT 1 ;  \n ");
    assert_eq!((r.kind, r.statements), (Kind::Read, 1));
    assert_eq!(c("BEGIN;").kind, Kind::Begin { read_only: false });
}

#[test]
fn double_dash_without_space_is_not_a_comment() {
    // `1--1` is 1 - (-1); what follows is code.
    assert_eq!(k("SELECT 1--1\n"), Kind::Read);
    assert_eq!(k("SELECT 1 --1, @v"), sb(Bound::UserVariable));
    assert_eq!(k("SELECT 1 -- , @v"), Kind::Read);
}

#[test]
fn version_comment_content_is_code() {
    assert_eq!(k("SELECT /*!40001 SQL_NO_CACHE */ * FROM t"), Kind::Read);
    assert_eq!(k("SELECT /*! @v */ 1"), sb(Bound::UserVariable));
    assert_eq!(k("/*!50000 UPDATE */ t SET a = 1"), Kind::Write);
    assert_eq!(k("SELECT 1 /*!40001 , GET_LOCK('x', 1) */"), sb(Bound::UserLock));
    assert_eq!(k("/*!40103 SET TIME_ZONE='+00:00' */"), Kind::SessionSet);
}

#[test]
fn conditional_version_comment_is_not_a_read_if_either_reading_is_not() {
    // Run (MariaDB): a lock. Skipped (MySQL): a read. Not a read.
    assert_eq!(k("SELECT 1 /*M!100100 , GET_LOCK('x', 1) */"), sb(Bound::UserLock));
    assert_eq!(k("SELECT 1 /*!80000 FOR UPDATE */"), Kind::LockingRead);
    // Run: a string hides `@v`. Skipped: `@v` is code. Not a read.
    assert_eq!(k("SELECT /*!99999 ' */ @v /* ' */ 1"), sb(Bound::UserVariable));
    // Skipped, nothing is left: the server refuses the empty text, the other reading counts.
    let r = c("/*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */");
    assert_eq!((r.kind, r.effects), (sb(Bound::UserVariable), vec![Effect::ReplaySet]));
    assert_eq!(k("SELECT /*M!100100 SQL_NO_CACHE */ a FROM t"), Kind::Read);
    // `AS` only when run: with it the parenthesis is a column list, without it a call.
    assert_eq!(k("SELECT * FROM (SELECT 1) /*!80000 AS */ f (a)"), sb(Bound::StoredRoutine));
}

#[test]
fn version_comment_for_update_is_locking() {
    all(
        Kind::LockingRead,
        &[
            "SELECT * FROM t WHERE id = 1 /*! FOR UPDATE */",
            "SELECT * FROM t /*!50000 FOR UPDATE*/",
            "SELECT * FROM t /*M! FOR SHARE */",
        ],
    );
}

#[test]
fn plain_comment_content_is_not_code() {
    all(Kind::Read, &["SELECT * FROM t /* FOR UPDATE */", "SELECT 1 -- FOR UPDATE", "SELECT 1 # @v"]);
}

#[test]
fn comments_inside_version_comments_are_not_classified() {
    assert_eq!(k("SELECT /*!40001 -- */ 1"), Kind::Unknown);
    assert_eq!(k("SELECT /*!40001 /* x */ 1"), Kind::Unknown);
}

#[test]
fn unterminated_text_is_unknown() {
    all(Kind::Unknown, &["SELECT 'abc", "SELECT `abc", "SELECT 1 /* abc", "SELECT /*! 1"]);
}

#[test]
fn empty_or_comment_only_text_is_unknown() {
    all(Kind::Unknown, &["", "   ", "/* nothing */", "-- nothing", ";", " ; ; "]);
}

#[test]
fn backslash_quote_is_classified_under_every_sql_mode() {
    // Default mode: one string. NO_BACKSLASH_ESCAPES: a string, then a DELETE.
    let r = c(r"SELECT 'a\'; DELETE FROM t; -- '");
    assert_ne!(r.kind, Kind::Read);
    // Only one mode scans (the other leaves an open quote): classified as usual.
    assert_eq!(k(r"SELECT * FROM t WHERE name = 'O\'Brien'"), Kind::Read);
    assert_eq!(k(r"SELECT 'O\'Brien', 'D\'Arcy' FROM t"), Kind::Read);
    assert_eq!(k(r"UPDATE t SET a = 'x\'y'"), Kind::Write);
}

#[test]
fn double_quoted_name_called_like_a_function_is_a_stored_routine() {
    // Under ANSI_QUOTES "f" is an identifier.
    assert_eq!(k("SELECT \"f\"(1)"), sb(Bound::StoredRoutine));
    assert_eq!(k("SELECT `f`(1)"), sb(Bound::StoredRoutine));
}

// --- reads ------------------------------------------------------------------------------

#[test]
fn plain_queries_are_reads() {
    all(
        Kind::Read,
        &[
            "SELECT 1",
            "select c from sbtest1 where id=10",
            "SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 100 ORDER BY c",
            "SELECT DISTINCT c FROM t WHERE id IN (1, 2, 3)",
            "SELECT a, COUNT(*), SUM(b) FROM t GROUP BY a HAVING COUNT(*) > 1 WITH ROLLUP",
            "SELECT * FROM a JOIN b USING (id) LEFT JOIN c ON (a.x = c.x) WHERE EXISTS (SELECT 1 FROM d)",
            "(SELECT 1) UNION ALL (SELECT 2) ORDER BY 1",
            "SELECT 1 UNION SELECT 2 EXCEPT SELECT 3 INTERSECT SELECT 4",
            "VALUES ROW(1, 2), ROW(3, 4)",
            "TABLE t ORDER BY a LIMIT 1",
            "SELECT * FROM t FORCE INDEX (PRIMARY) PARTITION (p0) WHERE a > ANY (SELECT b FROM u)",
            "SELECT x.* FROM (SELECT 1 AS a) AS x (a)",
            "SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b), LAG(a, 1) OVER w FROM t WINDOW w AS (ORDER BY a)",
            "SELECT CAST(a AS DECIMAL(10, 2)), CONVERT(b, CHAR(10)), CAST(c AS DATETIME(6)), CONVERT(d USING utf8mb4)",
            "SELECT * FROM t WHERE MATCH (a, b) AGAINST ('x' IN BOOLEAN MODE)",
            "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (id FOR ORDINALITY, a INT PATH '$')) AS jt",
            "SELECT 1 FROM t WHERE 3 MEMBER OF (j)",
            "SELECT IF (a, b, c), LEFT (s, 2), INSERT(s, 1, 2, 'x'), REPLACE(s, 'a', 'b'), TRUNCATE(1.5, 0) FROM t",
            "SELECT NOW(), CURRENT_TIMESTAMP(6), DATE_ADD(d, INTERVAL 1 DAY), EXTRACT(YEAR FROM d) FROM t",
            "SELECT SUBSTRING(a FROM 1 FOR 2), TRIM(LEADING 'x' FROM a), POSITION('a' IN b) FROM t",
            "SELECT JSON_EXTRACT(j, '$.a'), j->>'$.b', GROUP_CONCAT(a ORDER BY b SEPARATOR ',') FROM t",
            "SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01 00:00:00'",
            "SELECT SQL_NO_CACHE HIGH_PRIORITY STRAIGHT_JOIN a FROM t",
            "SELECT /*!40001 SQL_NO_CACHE */ (SELECT 1) FROM t",
            "SELECT ?, ? FROM t WHERE id = ?",
            "SELECT `sluice_x` FROM t",
        ],
    );
}

#[test]
fn with_select_is_a_read_and_with_dml_is_a_write() {
    assert_eq!(k("WITH c AS (SELECT 1) SELECT * FROM c"), Kind::Read);
    assert_eq!(
        k("WITH RECURSIVE c (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT n FROM c"),
        Kind::Read
    );
    assert_eq!(k("WITH a AS (SELECT 1), b (x, y) AS (SELECT 1, 2) (SELECT * FROM a, b)"), Kind::Read);
    assert_eq!(k("WITH c AS (SELECT id FROM t) UPDATE u SET a = 1 WHERE id IN (SELECT id FROM c)"), Kind::Write);
    assert_eq!(k("WITH c AS (SELECT 1) DELETE FROM t"), Kind::Write);
    assert_eq!(k("WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c"), Kind::Write);
    assert_eq!(k("WITH c AS (SELECT GET_LOCK('a', 1)) SELECT * FROM c"), sb(Bound::UserLock));
    assert_eq!(k("WITH c AS (SELECT 1 FROM t FOR UPDATE) SELECT * FROM c"), Kind::LockingRead);
}

#[test]
fn with_whose_main_statement_is_not_found_is_parsed() {
    let r = c("WITH c AS SELECT 1");
    assert_eq!(r.kind, Kind::Unknown);
    assert!(r.parsed);
}

#[test]
fn statement_keyword_inside_a_query_falls_back_to_the_parser() {
    let r = c("SELECT 1 FROM t WHERE a = DELETE FROM t");
    assert_eq!(r.kind, Kind::Unknown);
    assert!(r.parsed);
    // A valid query with such a word is a read after the parse.
    let r = c("SELECT a FROM t WHERE b IN (SELECT c FROM u) AND show = 1");
    assert!(r.parsed);
}

#[test]
fn show_describe_explain_and_help_are_reads() {
    all(
        Kind::Read,
        &[
            "SHOW DATABASES",
            "SHOW FULL TABLES FROM db LIKE 'a%'",
            "SHOW COLUMNS FROM t",
            "SHOW INDEX FROM t",
            "SHOW CREATE TABLE t",
            "SHOW TABLE STATUS",
            "SHOW VARIABLES LIKE 'sql_mode'",
            "SHOW SESSION VARIABLES",
            "SHOW CHARACTER SET",
            "SHOW COLLATION",
            "DESCRIBE t",
            "DESC db.t col",
            "EXPLAIN t",
            "EXPLAIN SELECT * FROM t WHERE a = 1",
            "EXPLAIN FORMAT=JSON SELECT 1",
            "DESCRIBE SELECT 1",
            "HELP 'contents'",
        ],
    );
}

#[test]
fn explain_of_a_non_read_is_not_a_read() {
    assert_eq!(k("EXPLAIN UPDATE t SET a = 1"), Kind::Write);
    assert_eq!(k("EXPLAIN SELECT f(1)"), sb(Bound::StoredRoutine));
    assert_eq!(k("EXPLAIN FOR CONNECTION 12"), sb(Bound::Other));
    assert_eq!(k("EXPLAIN FORMAT=JSON INTO @v SELECT 1"), sb(Bound::UserVariable));
}

#[test]
fn explain_analyze_is_a_read_only_if_the_statement_is() {
    assert_eq!(k("EXPLAIN ANALYZE SELECT * FROM t"), Kind::Read);
    assert_eq!(k("ANALYZE SELECT * FROM t"), Kind::Read);
    assert_eq!(k("ANALYZE FORMAT=JSON SELECT * FROM t"), Kind::Read);
    assert_eq!(k("ANALYZE UPDATE t SET a = 1"), Kind::Write);
    assert_eq!(k("EXPLAIN ANALYZE DELETE FROM t"), Kind::Write);
    assert_eq!(k("ANALYZE SELECT GET_LOCK('a', 1)"), sb(Bound::UserLock));
}

#[test]
fn select_of_ordinary_system_variables_is_a_read() {
    all(
        Kind::Read,
        &[
            "SELECT @@session.sql_mode",
            "SELECT @@autocommit, @@tx_isolation",
            "SELECT @@global.max_connections",
            "SELECT @@`version`",
        ],
    );
}

#[test]
fn select_of_node_identity_is_a_read_of_the_node_that_answers() {
    all(
        Kind::Read,
        &[
            "SELECT @@server_id",
            "SELECT @@hostname",
            "SELECT @@read_only",
            "SELECT v, @@server_id, @@read_only FROM kv WHERE k = 'a'",
        ],
    );
}

#[test]
fn select_of_replication_positions_goes_to_the_primary() {
    all(sb(Bound::Other), &["SELECT @@global.gtid_binlog_pos", "SELECT @@gtid_current_pos", "SELECT @@gtid_executed"]);
}

// --- writes -----------------------------------------------------------------------------

#[test]
fn data_and_schema_changes_are_writes() {
    all(
        Kind::Write,
        &[
            "INSERT INTO t VALUES (1)",
            "insert into t (a) select a from u",
            "UPDATE t SET a = 1 WHERE id = 2",
            "DELETE FROM t WHERE id = 1",
            "REPLACE INTO t VALUES (1)",
            "LOAD DATA LOCAL INFILE 'x' INTO TABLE t",
            "LOAD XML INFILE 'x' INTO TABLE t",
            "CREATE TABLE t (a INT)",
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "ALTER TABLE t ADD COLUMN b INT",
            "DROP TABLE t",
            "RENAME TABLE a TO b",
            "TRUNCATE TABLE t",
            "GRANT SELECT ON *.* TO 'u'@'h'",
            "REVOKE ALL ON *.* FROM u",
            "FLUSH PRIVILEGES",
            "FLUSH TABLES",
            "KILL 12",
            "OPTIMIZE TABLE t",
            "ANALYZE TABLE t",
            "ANALYZE NO_WRITE_TO_BINLOG TABLE t",
            "REPAIR TABLE t",
            "CHECK TABLE t",
            "INSTALL PLUGIN x SONAME 'x.so'",
            "UNINSTALL PLUGIN x",
            "CHANGE MASTER TO MASTER_HOST='h'",
            "START SLAVE",
            "STOP REPLICA",
            "RESET MASTER",
            "PURGE BINARY LOGS TO 'x'",
            "SHUTDOWN",
            "BINLOG 'abc'",
            "DO 1",
            "INSERT INTO t VALUES (LAST_INSERT_ID())",
        ],
    );
}

#[test]
fn set_global_is_a_write() {
    all(
        Kind::Write,
        &[
            "SET GLOBAL max_connections = 10",
            "SET @@global.max_connections = 10",
            "SET PERSIST x = 1",
            "SET sql_mode = '', GLOBAL max_connections = 10",
            "SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET PASSWORD = 'x'",
            "SET PASSWORD FOR 'u'@'h' = 'x'",
            "SET ROLE ALL",
            "SET DEFAULT ROLE r TO u",
        ],
    );
}

// --- locking reads ----------------------------------------------------------------------

#[test]
fn select_for_update_goes_to_primary() {
    all(
        Kind::LockingRead,
        &[
            "SELECT * FROM t WHERE id = 1 FOR UPDATE",
            "SELECT * FROM t FOR UPDATE NOWAIT",
            "SELECT * FROM t FOR UPDATE SKIP LOCKED",
            "SELECT * FROM t FOR UPDATE WAIT 5",
            "SELECT * FROM t FOR UPDATE OF t",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "SELECT * FROM t FOR SHARE",
            "SELECT * FROM t WHERE a IN (SELECT b FROM u FOR UPDATE)",
            "(SELECT 1 FROM a) UNION (SELECT 1 FROM b FOR SHARE)",
        ],
    );
}

// --- session-bound ----------------------------------------------------------------------

#[test]
fn last_insert_id_and_row_count_are_session_bound() {
    all(
        sb(Bound::LastInsertId),
        &[
            "SELECT LAST_INSERT_ID()",
            "select last_insert_id ( )",
            "SELECT @@last_insert_id",
            "SELECT @@identity",
            "SELECT @@session.insert_id",
            "SELECT @@last_gtid",
        ],
    );
}

#[test]
fn user_locks_are_session_bound() {
    all(
        sb(Bound::UserLock),
        &[
            "SELECT GET_LOCK('a', 10)",
            "SELECT RELEASE_LOCK('a')",
            "SELECT RELEASE_ALL_LOCKS()",
            "SELECT IS_FREE_LOCK('a')",
            "SELECT IS_USED_LOCK('a')",
        ],
    );
}

#[test]
fn user_variables_are_session_bound() {
    all(
        sb(Bound::UserVariable),
        &[
            "SELECT @v",
            "SELECT @v := 1",
            "SELECT a FROM t WHERE b = @x",
            "SELECT @'quoted var'",
            "SELECT @`quoted`",
            "SELECT @\"quoted\"",
            "SET @v = 1",
            "SET @v := (SELECT MAX(a) FROM t)",
            "SELECT @ v",
        ],
    );
}

#[test]
fn select_into_is_session_bound() {
    all(
        sb(Bound::SelectInto),
        &[
            "SELECT a INTO @v FROM t",
            "SELECT a FROM t INTO @v",
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            "SELECT a FROM t INTO DUMPFILE '/tmp/x'",
            "SELECT a INTO v FROM t",
        ],
    );
}

#[test]
fn found_rows_is_session_bound() {
    all(
        sb(Bound::FoundRows),
        &[
            "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10",
            "SELECT SQL_CALC_FOUND_ROWS (SELECT 1) FROM t",
        ],
    );
}

#[test]
fn temporary_tables_are_session_bound() {
    let r = c("CREATE TEMPORARY TABLE tmp (a INT)");
    assert_eq!(r.kind, sb(Bound::TemporaryTable));
    assert_eq!(r.effects, vec![Effect::CreatesTemporaryTable]);
    let r = c("CREATE OR REPLACE TEMPORARY TABLE tmp AS SELECT 1");
    assert_eq!(r.effects, vec![Effect::CreatesTemporaryTable]);
    let r = c("DROP TEMPORARY TABLE IF EXISTS tmp");
    assert_eq!((r.kind, r.effects), (sb(Bound::TemporaryTable), vec![]));
}

#[test]
fn lock_tables_and_unlock_tables_are_session_bound() {
    for (sql, e) in [
        ("LOCK TABLES t READ", Effect::LocksTables),
        ("LOCK TABLE t WRITE, u READ", Effect::LocksTables),
        ("UNLOCK TABLES", Effect::UnlocksTables),
        ("FLUSH TABLES WITH READ LOCK", Effect::LocksTables),
        ("FLUSH TABLES t1, t2 WITH READ LOCK", Effect::LocksTables),
        ("FLUSH TABLES t FOR EXPORT", Effect::LocksTables),
    ] {
        let r = c(sql);
        assert_eq!((r.kind, r.effects), (sb(Bound::LockTables), vec![e]), "{sql}");
    }
}

#[test]
fn sql_log_bin_is_session_bound() {
    all(
        sb(Bound::SqlLogBin),
        &[
            "SET sql_log_bin = 0",
            "SET @@session.sql_log_bin = 1",
            "SET SESSION sql_log_bin=OFF",
            "SET `sql_log_bin` = 0",
        ],
    );
    assert!(c("SET sql_log_bin = 0").effects.is_empty());
}

#[test]
fn sequences_are_session_bound() {
    all(
        sb(Bound::Sequence),
        &[
            "SELECT NEXTVAL(s)",
            "SELECT LASTVAL(s)",
            "SELECT SETVAL(s, 10)",
            "SELECT NEXT VALUE FOR s",
            "SELECT PREVIOUS VALUE FOR s",
            "SELECT s.nextval",
            "SELECT s.currval",
        ],
    );
}

#[test]
fn stored_function_call_is_session_bound() {
    all(
        sb(Bound::StoredRoutine),
        &[
            "SELECT my_func(1)",
            "SELECT a FROM t WHERE b = f(a)",
            "SELECT db.f(1)",
            "SELECT `db`.`concat`('a')",
            "SELECT COUNT (*) FROM t", // with a space a built-in name can be a stored function
            "SELECT nvl(a, 0) FROM t", // not a built-in on both servers
        ],
    );
    assert_eq!(k("CALL p(1)"), sb(Bound::StoredRoutine));
}

#[test]
fn connection_id_is_session_bound() {
    all(sb(Bound::Connection), &["SELECT CONNECTION_ID()", "SELECT @@pseudo_thread_id"]);
}

#[test]
fn sql_prepared_statements_are_session_bound() {
    all(
        sb(Bound::SqlPrepare),
        &[
            "PREPARE s FROM 'SELECT 1'",
            "EXECUTE s USING @a",
            "EXECUTE IMMEDIATE 'SELECT 1'",
            "DEALLOCATE PREPARE s",
            "DROP PREPARE s",
        ],
    );
}

#[test]
fn handler_xa_and_node_specific_shows_go_to_primary() {
    all(
        sb(Bound::Other),
        &[
            "HANDLER t OPEN",
            "XA START 'x'",
            "SHOW STATUS",
            "SHOW SESSION STATUS LIKE 'x'",
            "SHOW GLOBAL STATUS",
            "SHOW PROCESSLIST",
            "SHOW FULL PROCESSLIST",
            "SHOW MASTER STATUS",
            "SHOW SLAVE STATUS",
            "SHOW REPLICA STATUS",
            "SHOW ALL SLAVES STATUS",
            "SHOW BINLOG STATUS",
            "SHOW BINARY LOGS",
            "SHOW PROFILE",
            "SHOW PROFILES",
            "SHOW ENGINE INNODB STATUS",
            "SHOW OPEN TABLES",
            "SHOW EXPLAIN FOR 5",
            "SHOW GRANTS",
            "LOCK INSTANCE FOR BACKUP",
            "SELECT MASTER_POS_WAIT('f', 4)",
            "SELECT LOAD_FILE('/etc/passwd')",
        ],
    );
}

#[test]
fn node_specific_tables_go_to_primary() {
    all(
        sb(Bound::Other),
        &[
            "SELECT * FROM information_schema.PROCESSLIST",
            "SELECT * FROM `information_schema`.`innodb_trx`",
            "SELECT * FROM performance_schema.threads",
            "SELECT * FROM sys.session",
            "SELECT * FROM mysql.gtid_slave_pos",
        ],
    );
    all(Kind::Read, &["SELECT * FROM information_schema.TABLES", "SELECT * FROM mysql.user", "SELECT t.a FROM t"]);
}

#[test]
fn do_is_a_write_unless_it_uses_session_bound_state() {
    assert_eq!(k("DO 1 + 1"), Kind::Write);
    assert_eq!(k("DO SLEEP(0)"), Kind::Write);
    assert_eq!(k("DO RELEASE_LOCK('a')"), sb(Bound::UserLock));
    assert_eq!(k("DO @v := 1"), sb(Bound::UserVariable));
}

#[test]
fn update_and_delete_using_session_bound_state_say_so() {
    assert_eq!(k("UPDATE t SET a = a + 1 WHERE id IN (1, 2)"), Kind::Write);
    assert_eq!(k("UPDATE t SET a = @v := a + 1"), sb(Bound::UserVariable));
    assert_eq!(k("UPDATE seq SET id = LAST_INSERT_ID(id + 1)"), sb(Bound::LastInsertId));
    assert_eq!(k("DELETE FROM t WHERE id = @last"), sb(Bound::UserVariable));
    assert_eq!(k("DELETE t FROM t JOIN u ON (t.id = u.id) WHERE u.x > 0"), Kind::Write);
}

// --- transactions -----------------------------------------------------------------------

#[test]
fn begin_is_read_only_only_with_read_only() {
    let rw = Kind::Begin { read_only: false };
    let ro = Kind::Begin { read_only: true };
    all(
        rw,
        &[
            "BEGIN",
            "begin work",
            "START TRANSACTION",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            "START TRANSACTION READ WRITE",
        ],
    );
    all(
        ro,
        &[
            "START TRANSACTION READ ONLY",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            "start transaction read only;",
        ],
    );
    all(Kind::Unknown, &["START TRANSACTION READ ONLY, READ WRITE", "START TRANSACTION NONSENSE", "BEGIN foo"]);
}

#[test]
fn commit_rollback_and_savepoints_are_transaction_control() {
    all(
        Kind::TransactionControl,
        &[
            "COMMIT",
            "COMMIT WORK",
            "COMMIT AND CHAIN",
            "COMMIT AND NO CHAIN NO RELEASE",
            "COMMIT RELEASE",
            "ROLLBACK",
            "ROLLBACK WORK AND CHAIN",
            "ROLLBACK TO SAVEPOINT s1",
            "ROLLBACK TO s1",
            "ROLLBACK WORK TO SAVEPOINT `s 1`",
            "SAVEPOINT s1",
            "RELEASE SAVEPOINT s1",
        ],
    );
    all(Kind::Unknown, &["COMMIT NOW", "SAVEPOINT", "ROLLBACK TO"]);
}

// --- SET --------------------------------------------------------------------------------

#[test]
fn session_set_is_replayed() {
    for sql in [
        "SET NAMES utf8mb4",
        "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'",
        "SET CHARACTER SET utf8",
        "SET CHARSET latin1",
        "SET sql_mode = 'STRICT_ALL_TABLES'",
        "SET SESSION sql_mode = ''",
        "SET LOCAL time_zone = '+00:00'",
        "SET @@time_zone = '+00:00'",
        "SET @@session.wait_timeout = 10",
        "SET @@local.wait_timeout = 10",
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET SESSION TRANSACTION READ ONLY",
        "SET autocommit = 0",
        "SET autocommit=1, sql_mode = 'ANSI', NAMES utf8",
        "SET max_statement_time = 1.5",
        "SET sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
    ] {
        let r = c(sql);
        assert_eq!((r.kind, r.effects), (Kind::SessionSet, vec![Effect::ReplaySet]), "{sql}");
    }
}

#[test]
fn set_mixing_session_and_user_variables_is_user_variable_and_replayed() {
    let r = c("SET @old = @@sql_mode, sql_mode = 'NO_AUTO_VALUE_ON_ZERO'");
    assert_eq!((r.kind, r.effects), (sb(Bound::UserVariable), vec![Effect::ReplaySet]));
    let r = c("SET sql_mode = @old");
    assert_eq!((r.kind, r.effects), (sb(Bound::UserVariable), vec![Effect::ReplaySet]));
}

#[test]
fn set_of_a_value_with_effects_cannot_be_replayed() {
    let r = c("SET sql_mode = my_mode()");
    assert_eq!((r.kind, r.effects), (sb(Bound::StoredRoutine), vec![Effect::Unreplayable]));
    let r = c("SET @v = GET_LOCK('a', 1)");
    assert_eq!((r.kind, r.effects), (sb(Bound::UserVariable), vec![]));
    let r = c("SET @id = LAST_INSERT_ID()");
    assert_eq!(r.kind, sb(Bound::UserVariable));
}

#[test]
fn set_statement_for_classifies_the_inner_statement() {
    let r = c("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t");
    assert_eq!((r.kind, r.effects), (Kind::Read, vec![]));
    assert_eq!(k("SET STATEMENT sql_mode = '' FOR UPDATE t SET a = 1"), Kind::Write);
    assert_eq!(k("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t FOR UPDATE"), Kind::LockingRead);
    assert_eq!(k("SET STATEMENT x = 1 FOR SET sql_mode = ''"), Kind::Unknown);
    assert_eq!(k("SET STATEMENT x = 1"), Kind::Unknown);
}

#[test]
fn sluice_variables_are_sluice_set_and_never_mixed() {
    all(
        Kind::SluiceSet,
        &[
            "SET @@sluice_route = 'primary'",
            "SET sluice_route = replica",
            "SET SESSION sluice_x = 1, sluice_y = 2",
            "SET @@session.SLUICE_X = 1",
        ],
    );
    all(Kind::Unknown, &["SET sluice_x = 1, sql_mode = ''", "SET @v = 1, sluice_x = 1", "SET sluice_x = 1; SELECT 1"]);
    // A user variable named like one is just a user variable.
    assert_eq!(k("SET @sluice_x = 1"), sb(Bound::UserVariable));
}

#[test]
fn sluice_set_returns_the_assignments() {
    assert_eq!(
        sluice_set(b"SET @@sluice_Route = 'PRIMARY', SESSION sluice_lag := 5, @@session.sluice_y = OFF;").unwrap(),
        vec![
            ("sluice_route".to_string(), "primary".to_string()),
            ("sluice_lag".to_string(), "5".to_string()),
            ("sluice_y".to_string(), "off".to_string())
        ]
    );
    assert_eq!(sluice_set(b"set sluice_x = -1").unwrap(), vec![("sluice_x".into(), "-1".into())]);
    assert_eq!(sluice_set(br#"SET sluice_x = "it\'s""#).unwrap(), vec![("sluice_x".into(), "it's".into())]);
    for bad in [
        &b"SET sluice_x = 1, sql_mode = ''"[..],
        b"SET GLOBAL sluice_x = 1",
        b"SET @@global.sluice_x = 1",
        b"SET sluice_x",
        b"SET sluice_x = ",
        b"SET sluice_x = 1 2",
        b"SET sluice_x = 1; SET sluice_y = 2",
        b"SELECT 1",
    ] {
        assert!(sluice_set(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

// --- USE, diagnostics, Sluice's own -----------------------------------------------------

#[test]
fn use_carries_the_unquoted_schema() {
    for (sql, db) in [("USE db1", &b"db1"[..]), ("use `my db`", b"my db"), ("USE `a``b`;", b"a`b"), ("USE Foo", b"Foo")]
    {
        let r = c(sql);
        assert_eq!((r.kind, r.effects), (Kind::Use, vec![Effect::Use(db.to_vec())]), "{sql}");
    }
    assert_eq!(k("USE"), Kind::Unknown);
    assert_eq!(k("USE a b"), Kind::Unknown);
}

#[test]
fn diagnostics_are_classified_as_such() {
    all(
        Kind::Diagnostics,
        &[
            "SHOW WARNINGS",
            "SHOW WARNINGS LIMIT 10",
            "SHOW ERRORS",
            "SHOW COUNT(*) WARNINGS",
            "SHOW COUNT(*) ERRORS",
            "GET DIAGNOSTICS @n = NUMBER",
            "GET CURRENT DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT",
            "GET STACKED DIAGNOSTICS @n = NUMBER",
            "SELECT @@warning_count",
            "SELECT @@session.error_count",
            "SELECT ROW_COUNT()",
            "SELECT FOUND_ROWS()",
            "select found_rows ( )",
            "SELECT DATABASE(), ROW_COUNT(), FOUND_ROWS()",
        ],
    );
}

#[test]
fn row_count_and_found_rows_with_connection_state_stay_session_bound() {
    // The previous statement's counts, read with state that lives on the primary's
    // connection: the primary (where a write, and SQL_CALC_FOUND_ROWS, ran anyway).
    assert_eq!(k("SELECT LAST_INSERT_ID(), ROW_COUNT()"), sb(Bound::LastInsertId));
    assert_eq!(k("SELECT FOUND_ROWS() INTO @n"), sb(Bound::SelectInto));
    assert_eq!(k("SELECT @n := FOUND_ROWS()"), sb(Bound::UserVariable));
}

#[test]
fn show_sluice_is_sluice_show() {
    all(Kind::SluiceShow, &["SHOW SLUICE STATUS", "show sluice route for select 1"]);
    assert_eq!(show_sluice_route_for(b"SHOW SLUICE ROUTE FOR SELECT 1"), Some(22));
    assert_eq!(
        show_sluice_route_for(b"/* x */ show sluice route for\n /* sluice: route=primary */ SELECT 1"),
        Some(31)
    );
    assert_eq!(show_sluice_route_for(b"SHOW SLUICE ROUTE FOR"), None);
    assert_eq!(show_sluice_route_for(b"SHOW SLUICE STATUS"), None);
    assert_eq!(show_sluice_route_for(b"SELECT 1"), None);
}

// --- hints ------------------------------------------------------------------------------

#[test]
fn hint_comment_sets_hint_without_changing_kind() {
    let r = c("SELECT /* sluice: route=primary */ 1");
    assert_eq!((r.kind, r.hint), (Kind::Read, Some(Hint::Primary)));
    let r = c("/*Sluice : Route = REPLICA*/ UPDATE t SET a = 1");
    assert_eq!((r.kind, r.hint), (Kind::Write, Some(Hint::Replica)));
    let r = c("SELECT 1 /* route=primary */");
    assert_eq!(r.hint, None);
    let r = c("SELECT '/* sluice: route=primary */'");
    assert_eq!(r.hint, None);
}

#[test]
fn first_hint_wins() {
    let r = c("/* sluice: route=replica */ SELECT 1; /* sluice: route=primary */ SELECT 2");
    assert_eq!(r.hint, Some(Hint::Replica));
}

// --- multi-statements -------------------------------------------------------------------

#[test]
fn multi_statement_of_reads_is_a_read() {
    let r = c("SELECT 1; SELECT 2;SELECT 3");
    assert_eq!((r.kind, r.statements), (Kind::Read, 3));
}

#[test]
fn multi_statement_with_a_write_is_a_write() {
    let r = c("SELECT 1; UPDATE t SET a = 1; SELECT GET_LOCK('a', 1)");
    assert_eq!((r.kind, r.statements), (Kind::Write, 3));
    assert_eq!(k("SELECT 1; SELECT @v"), sb(Bound::UserVariable));
    assert_eq!(k("SELECT ';'; DELETE FROM t"), Kind::Write);
}

#[test]
fn set_or_use_among_several_statements_is_unreplayable() {
    let r = c("SET NAMES utf8; SELECT 1");
    assert_eq!((r.kind, r.effects.clone()), (Kind::SessionSet, vec![Effect::Unreplayable]));
    let r = c("SELECT 1; USE db; SET sql_mode = ''");
    assert_eq!((r.kind, r.effects.clone()), (Kind::Use, vec![Effect::Unreplayable]));
}

#[test]
fn multi_statement_keeps_temporary_table_and_lock_effects_in_order() {
    let r = c("CREATE TEMPORARY TABLE x (a INT); LOCK TABLES t READ; SET NAMES utf8; UNLOCK TABLES");
    assert_eq!(r.kind, sb(Bound::TemporaryTable));
    assert_eq!(
        r.effects,
        vec![Effect::CreatesTemporaryTable, Effect::LocksTables, Effect::Unreplayable, Effect::UnlocksTables]
    );
}

#[test]
fn stored_program_bodies_are_not_split() {
    let r = c("CREATE PROCEDURE p() BEGIN SET @x = 1; SELECT 1; END");
    assert_eq!((r.kind, r.statements, r.effects.clone()), (Kind::Write, 1, vec![]));
    let r = c("BEGIN NOT ATOMIC SET sql_mode = ''; SELECT 1; END");
    assert_eq!((r.kind, r.statements, r.effects.clone()), (Kind::Unknown, 1, vec![Effect::Unreplayable]));
    assert_eq!(k("IF 1 THEN SELECT 1; END IF"), Kind::Unknown);
}

// --- fallback, limits -------------------------------------------------------------------

#[test]
fn unknown_leading_keyword_is_parsed_and_unknown() {
    let r = c("FROBNICATE the widgets");
    assert_eq!(r.kind, Kind::Unknown);
    assert!(r.parsed);
    assert_eq!(k("CREATE"), Kind::Write); // still a schema statement (the server refuses it)
}

#[test]
fn huge_texts_are_bounded() {
    let mut big = String::from("INSERT INTO t VALUES ");
    for i in 0..(MAX_STATEMENT_TOKENS / 2) {
        big.push_str(&format!("({i}),"));
    }
    big.push_str("(0)");
    assert_eq!(k(&big), Kind::Write);
    let select = format!("SELECT * FROM t WHERE id IN ({}0)", "1,".repeat(MAX_STATEMENT_TOKENS));
    assert_eq!(k(&select), Kind::Unknown);
    let deep = format!("SELECT {}1{} FROM t WHERE a = DELETE", "(".repeat(100_000), ")".repeat(100_000));
    assert_eq!(k(&deep), Kind::Unknown);
    let many = "SELECT 1;".repeat(MAX_STATEMENTS as usize + 5);
    let r = c(&many);
    assert_eq!((r.kind, r.effects), (Kind::Unknown, vec![Effect::Unreplayable]));
}

#[test]
fn invalid_utf8_is_fine() {
    assert_eq!(classify_uncached(b"SELECT '\xff\xfe' FROM t").kind, Kind::Read);
    assert_eq!(classify_uncached(b"SELECT a\xff FROM t").kind, Kind::Read);
    assert_eq!(classify_uncached(b"SELECT \xff\xfe(1)").kind, sb(Bound::StoredRoutine));
}

// --- cache ------------------------------------------------------------------------------

#[test]
fn cache_hit_returns_the_same_result_as_uncached() {
    let cl = Classifier::new(1000);
    let a = cl.classify(b"SELECT c FROM t WHERE id = 1");
    let b = cl.classify(b"select c  from t where id=99 /* other */");
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(*a, classify_uncached(b"select c  from t where id=99"));
    assert_eq!(cl.stats(), ClassifierStats { hits: 1, misses: 1, parses: 0 });
}

#[test]
fn hints_and_function_spacing_are_part_of_the_key() {
    let cl = Classifier::new(1000);
    assert_eq!(cl.classify(b"SELECT 1").hint, None);
    assert_eq!(cl.classify(b"SELECT 1 /* sluice: route=primary */").hint, Some(Hint::Primary));
    assert_eq!(cl.classify(b"SELECT COUNT(*) FROM t").kind, Kind::Read);
    assert_eq!(cl.classify(b"SELECT COUNT (*) FROM t").kind, sb(Bound::StoredRoutine));
    assert_eq!(cl.stats().hits, 0);
}

#[test]
fn use_and_mode_dependent_texts_bypass_the_cache() {
    let cl = Classifier::new(1000);
    assert_eq!(cl.classify(b"USE a").effects, vec![Effect::Use(b"a".to_vec())]);
    assert_eq!(cl.classify(b"USE A").effects, vec![Effect::Use(b"A".to_vec())]);
    cl.classify(br"SELECT 'a\'b'");
    cl.classify(br"SELECT 'a\'b'");
    cl.classify(b"SELECT /*M! ' */ 1");
    cl.classify(b"SELECT /*M! ' */ 1");
    assert_eq!(cl.stats().hits, 0);
    assert_eq!(cl.cached(), 0);
}

#[test]
fn long_texts_bypass_the_cache_and_capacity_zero_disables_it() {
    let cl = Classifier::new(10);
    let long = format!("SELECT {} 1", " ".repeat(MAX_CACHED_LEN));
    cl.classify(long.as_bytes());
    cl.classify(long.as_bytes());
    assert_eq!(cl.stats().hits, 0);
    let none = Classifier::new(0);
    none.classify(b"SELECT 1");
    none.classify(b"SELECT 1");
    assert_eq!(none.stats(), ClassifierStats { hits: 0, misses: 2, parses: 0 });
}

#[test]
fn parses_are_counted() {
    let cl = Classifier::new(10);
    cl.classify(b"FROBNICATE");
    cl.classify(b"FROBNICATE");
    assert_eq!(cl.stats(), ClassifierStats { hits: 1, misses: 1, parses: 1 });
}

#[test]
fn classifier_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Classifier>();
}

// --- adversarial properties -------------------------------------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Fragments that make texts collide on a key (literals, case, whitespace, comments)
    /// and that break the scanner's assumptions (open comments, quotes, escapes, version
    /// markers).
    const SOUP: &[&str] = &[
        "SELECT",
        "select",
        "Select",
        " ",
        "  ",
        "\n",
        "/* c */",
        "/**/",
        "-- c\n",
        "#c\n",
        "'a'",
        "'b'",
        "\"x\"",
        "_utf8mb4'y'",
        "1",
        "22",
        ".5",
        "0x1F",
        "@v",
        "@V",
        "@@x",
        "@@session.sql_log_bin",
        "`t`",
        "`T`",
        "(",
        ")",
        ",",
        ";",
        "FOR",
        "UPDATE",
        "f",
        "COUNT",
        "count",
        "INTO",
        "SET",
        "=",
        "USE",
        "use",
        "db",
        "/*!",
        "/*!40001",
        "/*!80000",
        "/*M!100100",
        "*/",
        "'a\\'b'",
        "\\",
        "'",
        "\"",
        "`",
        "x",
        "AS",
        "WITH",
        "c",
        "SHOW",
        "STATUS",
        "sluice_x",
        "GET_LOCK",
        ".",
        "LOCK",
        "IN",
        "TABLES",
        "CREATE",
        "TEMPORARY",
        "/* sluice: route=primary */",
        "/*sluice:route=replica*/",
        "--",
        "-",
        "BEGIN",
        "NOT",
        "ATOMIC",
        "END",
        "EXPLAIN",
        "NEXT",
        "VALUE",
    ];

    /// Statement starts, so that many soups are statements rather than noise.
    const LEADERS: &[&str] = &[
        "SELECT ",
        "select ",
        "SET ",
        "set @@session.",
        "SHOW ",
        "WITH c AS (SELECT 1) SELECT ",
        "EXPLAIN SELECT ",
        "/* x */ SELECT ",
        "(SELECT ",
        "",
        "USE ",
    ];
    /// Fragments a statement is usually made of.
    const BENIGN: &[&str] =
        &["a", "A", "t.b", ",", " ", "1", "'z'", "= 1", "FROM t", "from T", "WHERE", "x = 2", "@@sql_mode"];

    fn soup() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop_oneof![
            3 => (0..BENIGN.len()).prop_map(|i| BENIGN[i]),
            2 => (0..SOUP.len()).prop_map(|i| SOUP[i]),
        ];
        (0..LEADERS.len(), prop::collection::vec((fragment, any::<bool>()), 0..7)).prop_map(|(l, parts)| {
            let mut out = LEADERS[l].as_bytes().to_vec();
            for (f, space) in parts {
                out.extend_from_slice(f.as_bytes());
                if space {
                    out.push(b' ');
                }
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn texts_with_one_key_classify_identically(texts in prop::collection::vec(soup(), 64)) {
            let mut by_key: HashMap<Vec<u8>, (Vec<u8>, Classified)> = HashMap::new();
            for t in texts {
                let mut key = Vec::new();
                if scan::normalise(&t, &mut key).is_err() {
                    continue;
                }
                let c = classify_uncached(&t);
                if let Some((first, fc)) = by_key.get(&key) {
                    prop_assert_eq!(
                        fc, &c, "{:?} and {:?} share a key", String::from_utf8_lossy(first), String::from_utf8_lossy(&t)
                    );
                } else {
                    by_key.insert(key, (t, c));
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), words in soup()) {
            for t in [&bytes[..], &words[..]] {
                let c = classify_uncached(t);
                prop_assert!(c.statements >= 1);
                let _ = sluice_set(t);
                if let Some(off) = show_sluice_route_for(t) {
                    prop_assert!(off <= t.len());
                }
            }
        }
    }
}
