#!/usr/bin/env bash
# MariaDB's own regression tests (mariadb-test-run from the Debian package
# mariadb-test) in --extern mode against one endpoint: mysqltest (Connector/C)
# connects over TCP and replays the tests listed in mtr-tests.txt, comparing
# every result with MariaDB's recorded .result file. Tests tagged `ps` in the
# list run a second time with --ps-protocol (every statement that can be is
# prepared and executed: COM_STMT_PREPARE/EXECUTE, binary result sets); they
# are reported as `main.NAME [ps-protocol]`.
#
# Usage: scripts/suites/mtr.sh --host H --port P [--user U] [--password PW]
#                              --out DIR [--quick] [--tests FILE] [--mode M]
#                              [--admin HOST:PORT]
#        scripts/suites/mtr.sh --prepare          install mariadb-test only
#        scripts/suites/mtr.sh --server-options   mariadbd options the list expects
#
# The account must be an administrator (root by default): the tests create
# users, set global variables, and so on. Before running, the databases `test`
# (created when missing) and `mtr` (MTR's helper procedures such as
# mtr.add_suppression, from include/mtr_warnings.sql; dropped and recreated)
# are set up on the endpoint, and mtr-reset.sql records the server's state:
# before every test, databases, accounts and global variables are put back
# as they were (MTR's own check-testcase and restarts do not exist with
# --extern), so a failing test does not make the following ones fail.
# --admin HOST:PORT sends these set-up and reset statements to another
# address of the same server (run.sh: MariaDB itself when testing Sluice).
#
# --quick runs the tests tagged `quick`. --tests FILE runs another list (same
# format: `suite.test [tag...]` a line, `#` comments). --mode text runs the
# list without the --ps-protocol pass, --mode ps only that pass, with every
# test of the list (for choosing tests); default: both, as tagged.
#
# MTR insists on running from its own directory and writes `.reject` files
# next to the recorded results; to leave /usr/share/mysql/mysql-test alone it
# runs from a private tree of symbolic links to it.
#
# --extern has limits: the server is never restarted, so tests that need
# their own server options (.opt files), restarts, a debug build or the
# server's Unix socket do not belong in the list (mtr-tests.txt holds tests
# that passed against MariaDB 10.11 started with the --server-options).
#
# Writes DIR/results.tsv (see results.py) and per pass (text, ps):
# DIR/mtr-PASS.log (MTR's output), DIR/var-PASS (MTR's var directory, with
# per-test logs) and DIR/rejects-PASS (the output of failing tests,
# *.reject); DIR/reset.log has the output of failed resets, if any.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
tests_file="$SUITES_DIR/mtr-tests.txt"
mode=both
admin=
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --tests) tests_file=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --admin) admin=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
parse_suite_args "${args[@]}"
# Where the harness's own statements go (set-up, resets between tests):
# --admin HOST:PORT (same account), by default the endpoint itself.
ADMIN_HOST=$EP_HOST ADMIN_PORT=$EP_PORT
if [ -n "$admin" ]; then ADMIN_HOST=${admin%:*} ADMIN_PORT=${admin##*:}; fi
admin_sql() { EP_HOST=$ADMIN_HOST EP_PORT=$ADMIN_PORT sql "$@"; }

case "$SUITE_ACTION" in
    server-options)
        # What MTR's own include/default_mysqld.cnf gives the servers it
        # starts and the recorded results assume (latin1 is also the
        # server's compiled-in default), plus:
        #   name resolution, so 127.0.0.1 is `localhost` as for MTR's socket
        #     connections (root@localhost in SHOW CREATE ... DEFINER=...);
        #   no secure_file_priv restriction (tests write into their vardir).
        cat <<'EOF'
--skip-name-resolve=0
--local-infile=1
--character-set-server=latin1
--log-bin-trust-function-creators=1
--default-storage-engine=myisam
--max-heap-table-size=1M
--sort-buffer-size=256K
--key-buffer-size=1M
--use-stat-tables=preferably
--histogram-type=json_hb
--binlog-direct-non-transactional-updates=1
--secure-file-priv=
EOF
        exit 0 ;;
esac

mtr_home=
for dir in /usr/share/mariadb/mariadb-test /usr/share/mysql/mysql-test /usr/share/mariadb-test; do
    if [ -f "$dir/mariadb-test-run.pl" ]; then mtr_home=$dir; break; fi
done
if [ -z "$mtr_home" ]; then
    apt_ensure mariadb-test
    mtr_home=/usr/share/mysql/mysql-test
    [ -f "$mtr_home/mariadb-test-run.pl" ] || die "mariadb-test installed, but no $mtr_home/mariadb-test-run.pl"
fi
[ "$SUITE_ACTION" = prepare ] && exit 0

[ -f "$tests_file" ] || die "no test list $tests_file"
# select_tests TAG: the tests of the list carrying TAG (`-`: all), limited to
# the `quick` ones with --quick.
select_tests() {
    awk -v tag="$1" -v quick="$SUITE_QUICK" '
        /^[[:space:]]*(#|$)/ { next }
        { q = 0; t = (tag == "-"); for (i = 2; i <= NF; i++) { if ($i == "quick") q = 1; if ($i == tag) t = 1 } }
        t && (quick != "true" || q) { print $1 }' "$tests_file"
}
tests=() ps_tests=()
case "$mode" in
    both) mapfile -t tests < <(select_tests -); mapfile -t ps_tests < <(select_tests ps) ;;
    text) mapfile -t tests < <(select_tests -) ;;
    ps) mapfile -t ps_tests < <(select_tests -) ;;
    *) die "--mode is text, ps or both" ;;
esac
[ $(( ${#tests[@]} + ${#ps_tests[@]} )) -gt 0 ] || die "no tests selected from $tests_file"

# A private tree shaped like the installed one (MTR finds the binaries and
# character sets relative to its own directory): <root>/usr/{bin,sbin,lib}
# and <root>/usr/share/mysql/* are links to the real ones, mysql-test is a
# real directory of links whose suite directories are real too, so .reject
# files land in the private tree.
work=$(private_work_dir mtr)
trap 'rm -rf "$work"' EXIT
trap 'exit 143' TERM INT
share=$(dirname "$mtr_home")             # /usr/share/mysql
prefix=$(dirname "$(dirname "$share")")  # /usr
root="$work/root"
# link_dir SRC DST: DST becomes a real directory of links to SRC's entries.
link_dir() {
    mkdir "$2"
    ln -s "$1"/* "$2/"
}
mkdir -p "$root/usr/share"
for d in bin sbin lib libexec; do
    if [ -e "$prefix/$d" ]; then ln -s "$prefix/$d" "$root/usr/$d"; fi
done
link_dir "$share" "$root/usr/share/$(basename "$share")"
farm="$root/usr/share/$(basename "$share")/$(basename "$mtr_home")"
rm "$farm"
link_dir "$mtr_home" "$farm"
# MTR locates itself through its own path: a copy, not a link.
rm "$farm/mariadb-test-run.pl"
cp "$mtr_home/mariadb-test-run.pl" "$farm/mariadb-test-run.pl"
# The directories of the suites in the list (main is mysql-test/main, the
# others are mysql-test/suite/NAME or plugin/*/NAME) hold the .result files.
mapfile -t suites < <(printf '%s\n' "${tests[@]}" "${ps_tests[@]}" | sed 's/\..*//' | sort -u | grep .)
for suite in "${suites[@]}"; do
    if [ "$suite" = main ]; then
        rm "$farm/main"
        link_dir "$mtr_home/main" "$farm/main"
    elif [ -d "$mtr_home/suite/$suite" ]; then
        if [ -L "$farm/suite" ]; then rm "$farm/suite"; link_dir "$mtr_home/suite" "$farm/suite"; fi
        rm "$farm/suite/$suite"
        link_dir "$mtr_home/suite/$suite" "$farm/suite/$suite"
    else
        log "mtr: the directory of suite $suite stays shared (its .reject files go to $mtr_home)"
    fi
done

# The databases MTR would have created in its bootstrap.
admin_sql -e "CREATE DATABASE IF NOT EXISTS test; DROP DATABASE IF EXISTS mtr;
        CREATE DATABASE mtr CHARACTER SET latin1;" ||
    die "cannot set up the test and mtr databases on $EP_HOST:$EP_PORT as $EP_USER"
# MTR's helper procedures, as MTR's sql_to_bootstrap loads them: without
# comment lines (some are `--x`, which the server reads as SQL), with
# `delimiter ||;` meaning `||`; then the reset procedure (mtr-reset.sql).
{
    sed -e '/^[[:space:]]*--/d' -e 's/^delimiter ||;$/delimiter ||/' \
        "$mtr_home/include/mtr_warnings.sql"
    echo "delimiter ;"
    sed -n '/^DROP PROCEDURE IF EXISTS mtr.sluice_reset/,$p' "$SUITES_DIR/mtr-reset.sql"
} > "$work/mtr-procedures.sql"
admin_sql mtr < "$work/mtr-procedures.sql" || die "loading MTR's procedures into the mtr database failed"
# Isolation between tests (see mtr-reset.sql): records the state to return
# to, and mysqltest is wrapped to call mtr.sluice_reset() before each test.
sed '/^DROP PROCEDURE IF EXISTS mtr.sluice_reset/,$d' "$SUITES_DIR/mtr-reset.sql" | admin_sql mtr ||
    die "recording the server's state (mtr-reset.sql) failed"
real_mysqltest=$(command -v mariadb-test || command -v mysqltest) || die "no mariadb-test binary"
cat > "$work/admin.cnf" <<EOF
[client]
host = $ADMIN_HOST
port = $ADMIN_PORT
user = $EP_USER
password = $EP_PASSWORD
protocol = tcp
default-character-set = utf8mb4
EOF
printf '#!/bin/sh\nexec mariadb --defaults-file="%s" "$@"\n' "$work/admin.cnf" > "$work/admin-client"
chmod +x "$work/admin-client"
cat > "$work/mysqltest" <<EOF
#!/bin/sh
# mysqltest, after resetting the server (scripts/suites/mtr-reset.sql); not
# for the mysqltest runs that tests start themselves.
admin="$work/admin-client"
if [ -z "\$SLUICE_MTR_INSIDE" ]; then
    SLUICE_MTR_INSIDE=1; export SLUICE_MTR_INSIDE
    test=
    for arg in "\$@"; do
        case "\$arg" in --test-file=*) test=\${arg#--test-file=} ;; esac
    done
    reset() {
        "\$admin" --batch --skip-column-names mtr -e 'CALL mtr.sluice_reset()' 2>&1
    }
    # XA transactions a failed test left prepared hold their locks
    # across disconnects (and would block the reset): roll them back.
    "\$admin" --batch --skip-column-names -e "XA RECOVER FORMAT='SQL'" 2>/dev/null | cut -f4 |
        while read -r xid; do
            [ -n "\$xid" ] || continue
            echo "before \$(basename "\$test"): XA ROLLBACK \$xid"
            "\$admin" -e "XA ROLLBACK \$xid" 2>&1
        done >> "$SUITE_OUT/reset.log"
    if ! out=\$(reset); then
        # A test deleted the procedures (e.g. from mysql.proc): reload.
        "\$admin" --force mtr < "$work/mtr-procedures.sql" > /dev/null 2>&1
        out=\$(reset) || out="reset failed: \$out"
    fi
    [ -z "\$out" ] || printf 'before %s:\n%s\n' "\$(basename "\$test")" "\$out" >> "$SUITE_OUT/reset.log"
    # The endpoint may need a moment to accept logins again (a proxy that
    # saw the server read-only): wait up to 10s for it.
    cnf=
    for arg in "\$@"; do
        case "\$arg" in --defaults-file=*) cnf=\${arg#--defaults-file=} ;; esac
    done
    i=0
    while [ -n "\$cnf" ] && [ \$i -lt 100 ] &&
        ! mariadb --defaults-file="\$cnf" -e 'SELECT 1' > /dev/null 2>&1; do
        i=\$((i + 1)); sleep 0.1
    done
    [ \$i -eq 0 ] || echo "before \$(basename "\$test"): waited \$i x 0.1s for the endpoint" >> "$SUITE_OUT/reset.log"
fi
exec "$real_mysqltest" "\$@"
EOF
chmod +x "$work/mysqltest"

extern=(--extern "host=$EP_HOST" --extern "port=$EP_PORT" --extern "user=$EP_USER"
        --extern protocol=tcp)
[ -n "$EP_PASSWORD" ] && extern+=(--extern "password=$EP_PASSWORD")
rm -rf "$SUITE_OUT"/var* "$SUITE_OUT"/rejects* "$SUITE_OUT"/mtr*.log "$SUITE_OUT/reset.log"

# run_mtr NAME [MTR OPTION...] -- TEST...: one MTR run; its outcomes go to
# results-NAME.tsv.
run_mtr() {
    local name=$1 opts=() status
    shift
    while [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    log "mtr: running $# MariaDB tests ($name) against $EP_HOST:$EP_PORT"
    set +e
    # --max-test-fail=0: never give up; --testcase-timeout in minutes.
    (cd "$farm" && MYSQL_TEST="$work/mysqltest" timeout --foreground 3600 perl ./mariadb-test-run.pl "${extern[@]}" \
        --vardir="$SUITE_OUT/var-$name" --force --max-test-fail=0 --testcase-timeout=10 \
        "${opts[@]}" "$@" > "$SUITE_OUT/mtr-$name.log" 2>&1)
    status=$?
    set -e
    mkdir -p "$SUITE_OUT/rejects-$name"
    find "$farm" -name '*.reject' -exec mv {} "$SUITE_OUT/rejects-$name/" \;
    python3 "$SUITES_DIR/results.py" mtr "$SUITE_OUT/mtr-$name.log" "$SUITE_OUT/results-$name.tsv"
    [ -s "$SUITE_OUT/results-$name.tsv" ] || die "MTR ran no test (exit $status); see $SUITE_OUT/mtr-$name.log"
}

: > "$SUITE_OUT/results.tsv"
if [ ${#tests[@]} -gt 0 ]; then
    run_mtr text -- "${tests[@]}"
    cat "$SUITE_OUT/results-text.tsv" >> "$SUITE_OUT/results.tsv"
fi
if [ ${#ps_tests[@]} -gt 0 ]; then
    # The same tests with every statement prepared and executed
    # (COM_STMT_PREPARE / COM_STMT_EXECUTE, binary result sets).
    run_mtr ps --ps-protocol -- "${ps_tests[@]}"
    sed 's/\t/ [ps-protocol]\t/' "$SUITE_OUT/results-ps.tsv" >> "$SUITE_OUT/results.tsv"
fi
log "mtr: $(python3 "$SUITES_DIR/results.py" counts "$SUITE_OUT/results.tsv")"
