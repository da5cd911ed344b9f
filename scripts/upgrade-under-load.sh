#!/usr/bin/env bash
# Upgrades under load: hands Sluice's listening socket from one process to a new one
# (`sluice --takeover`, docs/upgrade.md) several times while sysbench logs in and runs
# short read-write sessions through it, and reports failed logins and failed sessions
# (target: zero of both) and how long each old process took to drain.
#
# Starts a real MariaDB cluster (`chaos cluster --replicas 1`) from a temporary
# directory, fills sysbench tables, starts Sluice with `[proxy] upgrade_socket`, runs
# scripts/sysbench/short_sessions.lua (every event: log in, BEGIN, point selects, an
# UPDATE, COMMIT, log out) and starts a new Sluice with --takeover every
# UPGRADE_EVERY seconds. Exits non-zero when a login or a session failed, or an old
# process did not exit cleanly.
#
# Usage: scripts/upgrade-under-load.sh [--no-build] [-h]
#
# Environment knobs (defaults in brackets):
#   UPGRADE_SECONDS   sysbench run time [40]
#   UPGRADE_EVERY     seconds between hand-overs [10] (the first after that long)
#   UPGRADE_THREADS   sysbench threads [16]
#   UPGRADE_DRAIN_MS  [proxy] shutdown_timeout_ms: the longest a drain may take [10000]
#   UPGRADE_TABLES    sysbench tables [4];  UPGRADE_TABLE_SIZE  rows per table [10000]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DO_BUILD=1
DO_INSTALL=0
for a in "$@"; do
    case "$a" in
        --no-build) DO_BUILD=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $a" >&2; exit 2 ;;
    esac
done
SECONDS_RUN=${UPGRADE_SECONDS:-40}
EVERY=${UPGRADE_EVERY:-10}
THREADS=${UPGRADE_THREADS:-16}
DRAIN_MS=${UPGRADE_DRAIN_MS:-10000}
TABLES=${UPGRADE_TABLES:-4}
TABLE_SIZE=${UPGRADE_TABLE_SIZE:-10000}

BENCH_TAG=upgrade
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
PIN_LOAD=()
command -v sysbench >/dev/null || die "sysbench is missing (scripts/install-deps.sh --bench installs it)"
MYSQL_CLIENT=$(command -v mariadb || command -v mysql) || die "no mariadb/mysql client"
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$DO_BUILD" = 1 ]; then
    log "building release binaries (sluice, chaos)"
    (cd "$ROOT" && cargo build --release -p sluice-proxy --bin sluice -p chaos --bin chaos)
fi
SLUICE_BIN="$target_dir/release/sluice"
CHAOS_BIN="$target_dir/release/chaos"
[ -x "$SLUICE_BIN" ] && [ -x "$CHAOS_BIN" ] || die "release binaries missing in $target_dir/release (run without --no-build)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-upgrade.XXXXXX")
CHAOS_PID=""
SYSBENCH_PID=""
CURRENT_PID=""
teardown() {
    stop_pid "$SYSBENCH_PID" sysbench 5
    stop_pid "$CURRENT_PID" sluice 15
    stop_pid "$CHAOS_PID" chaos 60
    log "logs kept in $WORK"
}
on_exit teardown

log "starting the MariaDB cluster (chaos cluster --replicas 1)"
start_cluster --replicas 1
"$MYSQL_CLIENT" -h127.0.0.1 -P"$PRIMARY_PORT" -uroot -e 'CREATE DATABASE IF NOT EXISTS sbtest'
log "preparing sysbench tables ($TABLES x $TABLE_SIZE rows)"
sysbench oltp_read_write --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" --mysql-user=app --mysql-password=app \
    --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE" prepare >"$WORK/sysbench-prepare.log" 2>&1 ||
    { cat "$WORK/sysbench-prepare.log" >&2; die "sysbench prepare failed"; }

PORT=$(free_port)
write_sluice_config "$WORK/sluice.toml" "listen = \"127.0.0.1:$PORT\"
upgrade_socket = \"$WORK/upgrade.sock\"
shutdown_timeout_ms = $DRAIN_MS"

# launch N [--takeover]: starts Sluice number N (log sluice-N.log), waits for its
# "sluice listening on" line; sets CURRENT_PID.
launch() {
    local n=$1 i
    shift
    : >"$WORK/sluice-$n.out"
    NO_COLOR=1 "$SLUICE_BIN" --config "$WORK/sluice.toml" "$@" >"$WORK/sluice-$n.out" 2>"$WORK/sluice-$n.log" &
    CURRENT_PID=$!
    for ((i = 0; i < 300; i++)); do
        grep -q '^sluice listening on ' "$WORK/sluice-$n.out" && return 0
        kill -0 "$CURRENT_PID" 2>/dev/null || { cat "$WORK/sluice-$n.log" >&2; die "sluice $n exited at start"; }
        sleep 0.1
    done
    die "sluice $n did not start within 30 s"
}

launch 1
log "sluice 1 (pid $CURRENT_PID) on 127.0.0.1:$PORT, upgrade socket $WORK/upgrade.sock"
wait_sql "$PORT" app app 15 || die "no MySQL answer through sluice"

log "sysbench: short sessions, $THREADS threads, ${SECONDS_RUN}s; a hand-over every ${EVERY}s"
sysbench "$ROOT/scripts/sysbench/short_sessions.lua" --mysql-host=127.0.0.1 --mysql-port="$PORT" \
    --mysql-user=app --mysql-password=app --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE" \
    --threads="$THREADS" --time="$SECONDS_RUN" --report-interval=1 run >"$WORK/sysbench.log" 2>&1 &
SYSBENCH_PID=$!

: >"$WORK/handovers.tsv"
n=1
started=$(date +%s)
while :; do
    next=$((started + n * EVERY))
    [ "$next" -lt $((started + SECONDS_RUN - 2)) ] || break
    while [ "$(date +%s)" -lt "$next" ]; do sleep 0.2; done
    old=$CURRENT_PID
    t0=$(date +%s%N)
    launch $((n + 1)) --takeover
    t1=$(date +%s%N)
    # The old process drains: wait for it to exit.
    while kill -0 "$old" 2>/dev/null; do sleep 0.01; done
    t2=$(date +%s%N)
    rc=0
    wait "$old" || rc=$?
    printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$old" "$(((t1 - t0) / 1000000))" "$(((t2 - t1) / 1000000))" "$rc" >>"$WORK/handovers.tsv"
    log "hand-over $n: sluice $((n + 1)) (pid $CURRENT_PID) serving after $(((t1 - t0) / 1000000)) ms; the old one (pid $old) drained in $(((t2 - t1) / 1000000)) ms, exit $rc"
    n=$((n + 1))
done
sb_rc=0
wait "$SYSBENCH_PID" || sb_rc=$?
SYSBENCH_PID=""

sum() { grep -o "$1=[0-9]*" "$WORK/sysbench.log" | awk -F= '{ s += $2 } END { print s + 0 }'; }
sessions=$(sum sessions)
failed_logins=$(sum failed_logins)
failed_sessions=$(sum failed_sessions)
handovers=$(wc -l <"$WORK/handovers.tsv")
bad_exits=$(awk -F'\t' '$5 != 0' "$WORK/handovers.tsv" | wc -l)
# Per-second rates (sysbench --report-interval): transactions/s is sessions/s here.
tps=$(sed -n 's/.* tps: \([0-9.]*\).*/\1/p' "$WORK/sysbench.log" | median_range)

echo
echo "## Upgrade under load ($(date -u +%Y-%m-%d), $(nproc) CPUs)"
echo
echo "- sysbench $(sysbench --version | cut -d' ' -f2), scripts/sysbench/short_sessions.lua: $THREADS threads for ${SECONDS_RUN}s, each session = login, BEGIN, 8 point selects, UPDATE, COMMIT, logout"
echo "- hand-overs: $handovers (one every ${EVERY}s); shutdown_timeout_ms = $DRAIN_MS"
echo "- sessions completed: $sessions; failed logins: $failed_logins; failed sessions: $failed_sessions"
echo "- sessions/s per second of the run (median, lowest, highest, seconds): $tps"
echo
echo "| hand-over | old pid | new process serving after (ms) | old process drained in (ms) | old exit |"
echo "|---|---|---|---|---|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$WORK/handovers.tsv"
if grep -q '^UPGRADE_ERROR' "$WORK/sysbench.log"; then
    echo
    echo "First errors:"
    grep '^UPGRADE_ERROR' "$WORK/sysbench.log" | head -5 | sed 's/^/    /'
fi
[ "$sb_rc" = 0 ] || die "sysbench exited with $sb_rc (see $WORK/sysbench.log)"
[ "$handovers" -gt 0 ] || die "no hand-over happened (UPGRADE_SECONDS too short for UPGRADE_EVERY?)"
[ "$failed_logins" = 0 ] && [ "$failed_sessions" = 0 ] && [ "$bad_exits" = 0 ] || die "target missed: failed logins, failed sessions or unclean exits"
log "ok: zero failed logins and zero failed sessions over $handovers hand-overs"
