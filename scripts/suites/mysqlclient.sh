#!/usr/bin/env bash
# mysqlclient's own test suite (the `tests/` directory of its source
# distribution) against one endpoint. mysqlclient (MySQLdb) is a C extension
# over MariaDB Connector/C (libmariadb), so this exercises the C client
# library's side of the protocol: text protocol (MySQLdb uses no server-side
# prepared statements), multi-results, unbuffered results (SSCursor),
# character sets, errors.
#
# Usage: scripts/suites/mysqlclient.sh --host H --port P [--user U] [--password PW]
#                                      --out DIR [--quick]
#        scripts/suites/mysqlclient.sh --prepare          download and build only
#        scripts/suites/mysqlclient.sh --server-options   mariadbd options it expects
#
# Building the extension needs libmariadb-dev, pkg-config and a C compiler
# (installed with apt-get when missing). The suite gets the database
# `mysqldb_test` (dropped and created again) and an option file naming the
# endpoint (tests/configdb.py reads it through $TESTDB). SQLAlchemy is
# installed too, so tests/test_sqlalchemy.py runs instead of being skipped.
# Writes DIR/results.tsv (see results.py), DIR/junit.xml and DIR/pytest.log.
# --quick changes nothing: the whole suite takes well under a minute.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
parse_suite_args "$@"

case "$SUITE_ACTION" in
    server-options) exit 0 ;;
esac

ensure_venv
if ! "$(venv_dir)/bin/python" -c 'import MySQLdb' 2>/dev/null; then
    command -v cc >/dev/null || apt_ensure gcc libc6-dev
    pkg-config --exists libmariadb 2>/dev/null || apt_ensure libmariadb-dev pkg-config
    "$SUITES_PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
        apt_ensure python3-dev
fi
venv_require "mysqlclient==$MYSQLCLIENT_VERSION" "SQLAlchemy==$SQLALCHEMY_VERSION"
src=$(fetch_sdist mysqlclient "$MYSQLCLIENT_VERSION")
[ "$SUITE_ACTION" = prepare ] && exit 0

work=$(private_work_dir mysqlclient)
trap 'rm -rf "$work"' EXIT
trap 'exit 143' TERM INT
cp -a "$src/tests" "$work/tests"

sql -e "DROP DATABASE IF EXISTS mysqldb_test;
        CREATE DATABASE mysqldb_test DEFAULT CHARACTER SET utf8mb4;" ||
    die "cannot create the test database on $EP_HOST:$EP_PORT as $EP_USER"

# The option group tests/configdb.py reads (as in mysqlclient's own CI).
cat > "$work/endpoint.cnf" <<EOF
[MySQLdb-tests]
host = $EP_HOST
port = $EP_PORT
user = $EP_USER
password = $EP_PASSWORD
database = mysqldb_test
default-character-set = utf8mb4
EOF

log "mysqlclient: running mysqlclient $MYSQLCLIENT_VERSION's tests against $EP_HOST:$EP_PORT"
# Run from outside the source tree, so `import MySQLdb` is the built module.
run_pytest mysqlclient "$work" TESTDB="$work/endpoint.cnf" -- tests
