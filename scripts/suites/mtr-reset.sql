-- Per-test isolation for mariadb-test-run --extern (scripts/suites/mtr.sh).
--
-- Against its own servers MTR checks after every test that the server is as
-- before (check-testcase) and restarts it when not; against an external
-- server it cannot, so a test that fails half-way (leaving a table t1, a
-- user, a changed global variable) would make the following tests fail too.
-- mtr.sh runs the first part once, after setting up the `test` and `mtr`
-- databases: it records the server's databases, accounts and global
-- variables. The second part (from DROP PROCEDURE on) defines
-- mtr.sluice_reset(), which puts them back; mtr.sh calls it before every
-- test (and loads the procedures again if a test deleted them).
--
-- Not covered: rows a test changes in existing tables (mysql.*), plugins,
-- privileges of the existing accounts. Tests that tamper with the mysql
-- schema are not in mtr-tests.txt.
--
-- Loaded with the mariadb client (delimiter command).

DROP TABLE IF EXISTS mtr.sluice_baseline_schemas, mtr.sluice_baseline_accounts,
    mtr.sluice_baseline_globals;
CREATE TABLE mtr.sluice_baseline_schemas ENGINE=MyISAM
    SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA;
CREATE TABLE mtr.sluice_baseline_accounts ENGINE=MyISAM
    SELECT User AS user, Host AS host FROM mysql.global_priv;
CREATE TABLE mtr.sluice_baseline_globals ENGINE=MyISAM
    SELECT VARIABLE_NAME AS name, VARIABLE_VALUE AS value
    FROM information_schema.GLOBAL_VARIABLES
    -- Replication positions move by themselves.
    WHERE VARIABLE_NAME NOT LIKE 'GTID\_%';

DROP PROCEDURE IF EXISTS mtr.sluice_reset;
delimiter //
CREATE PROCEDURE mtr.sluice_reset()
    SQL SECURITY INVOKER
BEGIN
    DECLARE done INT DEFAULT 0;
    -- utf8mb4: the mtr database is latin1, account names need not be.
    DECLARE stmt TEXT CHARACTER SET utf8mb4;
    DECLARE statements CURSOR FOR SELECT s FROM sluice_reset_statements ORDER BY n;
    DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
    -- A statement that fails (e.g. a read-only variable) is skipped.
    DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN END;

    SET SESSION sql_log_bin = 0;
    -- A lock a test left behind makes a step fail, not hang.
    SET SESSION lock_wait_timeout = 20, innodb_lock_wait_timeout = 20;
    DROP TEMPORARY TABLE IF EXISTS sluice_reset_statements;
    -- The engine is explicit: tests change default_storage_engine.
    CREATE TEMPORARY TABLE sluice_reset_statements
        (n INT AUTO_INCREMENT PRIMARY KEY, s TEXT CHARACTER SET utf8mb4)
        ENGINE=MyISAM;
    INSERT INTO sluice_reset_statements (s)
        SELECT CONCAT('DROP DATABASE IF EXISTS `', REPLACE(SCHEMA_NAME, '`', '``'), '`')
        FROM information_schema.SCHEMATA
        WHERE SCHEMA_NAME NOT IN (SELECT name FROM mtr.sluice_baseline_schemas);
    INSERT INTO sluice_reset_statements (s)
        SELECT IF(JSON_VALUE(Priv, '$.is_role') IN ('1', 'true'),
                  CONCAT('DROP ROLE IF EXISTS ', QUOTE(User)),
                  CONCAT('DROP USER IF EXISTS ', QUOTE(User), '@', QUOTE(Host)))
        FROM mysql.global_priv g
        WHERE NOT EXISTS (SELECT 1 FROM mtr.sluice_baseline_accounts b
                          WHERE b.user = g.User AND b.host = g.Host);
    INSERT INTO sluice_reset_statements (s)
        SELECT CONCAT('SET GLOBAL ', b.name, ' = ',
                      IF(b.value REGEXP '^-?[0-9]+(\\.[0-9]+)?$', b.value, QUOTE(b.value)))
        FROM mtr.sluice_baseline_globals b
        JOIN information_schema.GLOBAL_VARIABLES g ON g.VARIABLE_NAME = b.name
        WHERE NOT (g.VARIABLE_VALUE <=> b.value) AND b.value IS NOT NULL;
    INSERT INTO sluice_reset_statements (s) VALUES
        ('DROP DATABASE IF EXISTS test'), ('CREATE DATABASE test'),
        ('TRUNCATE TABLE mtr.test_suppressions');

    OPEN statements;
    run: LOOP
        FETCH statements INTO stmt;
        IF done THEN LEAVE run; END IF;
        SET @sluice_reset_stmt = stmt;
        PREPARE s FROM @sluice_reset_stmt;
        EXECUTE s;
        DEALLOCATE PREPARE s;
    END LOOP;
    CLOSE statements;
    DROP TEMPORARY TABLE sluice_reset_statements;
    SET SESSION sql_log_bin = 1;

    -- What could not be put back (mtr.sh logs it to reset.log).
    SELECT CONCAT('database ', SCHEMA_NAME) AS not_reset FROM information_schema.SCHEMATA
        WHERE SCHEMA_NAME NOT IN (SELECT name FROM mtr.sluice_baseline_schemas)
    UNION ALL
    SELECT CONCAT('account ', User, '@', Host) FROM mysql.global_priv g
        WHERE NOT EXISTS (SELECT 1 FROM mtr.sluice_baseline_accounts b
                          WHERE b.user = g.User AND b.host = g.Host)
    UNION ALL
    SELECT CONCAT('global ', b.name, ' = ', g.VARIABLE_VALUE, ' (was ', b.value, ')')
        FROM mtr.sluice_baseline_globals b
        JOIN information_schema.GLOBAL_VARIABLES g ON g.VARIABLE_NAME = b.name
        WHERE NOT (g.VARIABLE_VALUE <=> b.value);
END//
delimiter ;
