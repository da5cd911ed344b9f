#!/usr/bin/env bash
# PyMySQL's own test suite (pymysql/tests of the PyMySQL 0.10.1 source
# distribution, the last release that ships its tests) against one endpoint.
#
# Usage: scripts/suites/pymysql.sh --host H --port P [--user U] [--password PW]
#                                  --out DIR [--quick]
#        scripts/suites/pymysql.sh --prepare          download and install only
#        scripts/suites/pymysql.sh --server-options   mariadbd options it expects
#
# The account needs to create databases (root by default). The suite gets the
# databases `test1` and `test2` (dropped and created again) and its
# pymysql/tests/databases.json pointing at the endpoint, and runs under pytest.
# Writes DIR/results.tsv (see results.py), DIR/junit.xml and DIR/pytest.log.
# --quick changes nothing: the whole suite takes well under a minute.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
parse_suite_args "$@"

case "$SUITE_ACTION" in
    server-options)
        # LOAD DATA LOCAL INFILE tests.
        echo "--local-infile=1"
        exit 0 ;;
esac

ensure_venv
src=$(fetch_sdist PyMySQL "$PYMYSQL_SUITE_VERSION")
[ "$SUITE_ACTION" = prepare ] && exit 0

# A private copy of the source tree: databases.json and the data file are
# written into it.
work=$(private_work_dir pymysql)
trap 'rm -rf "$work"' EXIT
trap 'exit 143' TERM INT
cp -a "$src" "$work/PyMySQL"
tree="$work/PyMySQL"

# The databases the suite's base class (pymysql/tests/base.py) connects to;
# as in PyMySQL's own CI, with utf8mb4 as their character set.
sql -e "DROP DATABASE IF EXISTS test1; DROP DATABASE IF EXISTS test2;
        CREATE DATABASE test1 DEFAULT CHARACTER SET utf8mb4;
        CREATE DATABASE test2 DEFAULT CHARACTER SET utf8mb4;" ||
    die "cannot create the test databases on $EP_HOST:$EP_PORT as $EP_USER"

"$(venv_dir)/bin/python" - "$tree/pymysql/tests/databases.json" <<EOF
import json, sys
# The keys base.py's defaults use (some tests read "db" and "passwd").
common = {"host": "$EP_HOST", "port": $EP_PORT, "user": "$EP_USER", "passwd": "$EP_PASSWORD"}
dbs = [dict(common, db="test1", use_unicode=True, local_infile=True),
       dict(common, db="test2")]
json.dump(dbs, open(sys.argv[1], "w"), indent=1)
EOF

# test_load_local.py reads pymysql/tests/data/load_local_data.txt, which the
# source distribution does not include; the tests only count its 22749 rows
# of two integers, so an equivalent file is generated.
mkdir -p "$tree/pymysql/tests/data"
awk 'BEGIN { for (i = 1; i <= 22749; i++) printf "%d,%d\n", i, 2 * i }' \
    > "$tree/pymysql/tests/data/load_local_data.txt"

# tests/test_auth.py (outside pymysql/tests) is for MySQL 8 accounts on port
# 3306 only and is not run.
#
# Left out on every endpoint, because they check what a proxy cannot be (see
# docs/compatibility.md):
#   test_issue_36  expects the connection id of the handshake to be the id in
#                  SHOW PROCESSLIST; through Sluice the handshake carries
#                  Sluice's id, the process list the backend's thread id.
deselect=(pymysql/tests/test_issues.py::TestNewIssues::test_issue_36)
log "pymysql: running PyMySQL $PYMYSQL_SUITE_VERSION's tests against $EP_HOST:$EP_PORT"
run_pytest pymysql "$tree" -- pymysql/tests "${deselect[@]/#/--deselect=}"
