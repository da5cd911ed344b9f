#!/usr/bin/env bash
# Sluice's CPU cost per statement as instructions, counted by valgrind's callgrind.
#
# Instruction counts do not depend on what else the machine is doing, so two builds can
# be compared to a fraction of a per cent where wall-clock runs (scripts/bench.sh) on
# this small shared machine vary by several per cent. Used for the metrics-cost target
# (docs/benchmarks.md, "Metrics cost"): the current build against an older one.
#
# For each binary x workload x prepared-statement mode it starts Sluice under
# `valgrind --tool=callgrind` in front of one MariaDB (`chaos cluster --replicas 0`),
# runs a fixed number of sysbench events through it and reads the instructions it
# executed meanwhile (`callgrind_control -e Ir` before and after). Two event counts are
# run; the difference of the counts divided by the difference of the queries sysbench
# completed is the cost of one statement, with sysbench's logins and prepares left out.
#
# Usage: scripts/bench-instructions.sh [--out FILE] [--no-install] [--no-build] [-h]
#
# Environment knobs (defaults in brackets):
#   INSTR_ALT_BIN     a second sluice binary to count the same way (e.g. an older build
#                     in target-base/) [unset]
#   INSTR_EVENTS      the two sysbench event counts ["1000 4000"] (oltp_point_select:
#                     one statement per event; other workloads run a tenth as many
#                     events, oltp_read_only having 14 statements per event)
#   INSTR_THREADS     sysbench threads [4]
#   INSTR_WORKLOADS   [oltp_point_select oltp_read_only]
#   INSTR_PS_MODES    --db-ps-mode values [auto disable]
#   INSTR_WORKERS     Sluice's proxy.worker_threads [2]
#   INSTR_EXTRA_TOML  appended to both Sluices' config (e.g. "[admin] …") [unset]
#
# Takes about 2 minutes per binary x workload x mode (valgrind runs Sluice ~50x slower).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

INSTR_EVENTS=${INSTR_EVENTS:-"1000 4000"}
INSTR_THREADS=${INSTR_THREADS:-4}
INSTR_WORKLOADS=${INSTR_WORKLOADS:-"oltp_point_select oltp_read_only"}
INSTR_PS_MODES=${INSTR_PS_MODES:-"auto disable"}
INSTR_WORKERS=${INSTR_WORKERS:-2}
OUT="$ROOT/.bench-out/instructions-$(date +%Y-%m-%d).md"
DO_INSTALL=1
DO_BUILD=1

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

BENCH_TAG=bench-instructions
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
bench_args "$@"

read -r -a EVENTS <<<"$INSTR_EVENTS"
[ "${#EVENTS[@]}" = 2 ] && [ "${EVENTS[1]}" -gt "${EVENTS[0]}" ] || {
    echo "bench-instructions: INSTR_EVENTS must be two counts, the second larger" >&2
    exit 2
}
[ -z "${INSTR_ALT_BIN:-}" ] || [ -x "$INSTR_ALT_BIN" ] || {
    echo "bench-instructions: INSTR_ALT_BIN=$INSTR_ALT_BIN is not an executable" >&2
    exit 2
}

bench_setup
command -v valgrind >/dev/null || die "valgrind not found (apt-get install valgrind)"
PIN_LOAD=()
PIN_PROXY=()

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-instr.XXXXXX")
RAW="$ROOT/.bench-out/raw-instructions-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RAW" "$(dirname "$OUT")"
CHAOS_PID=""
VG_PID=""
teardown() {
    stop_pid "$VG_PID" sluice 120
    stop_pid "$CHAOS_PID" chaos 60
    [ -d "$WORK" ] && cp -f "$WORK"/*.log "$WORK"/*.toml "$WORK"/*.tsv "$RAW"/ 2>/dev/null
    rm -rf "$WORK"
}
on_exit teardown

log "starting MariaDB (chaos cluster --replicas 0)"
start_cluster --replicas 0
"$MYSQL_CLIENT" -h127.0.0.1 -P"$PRIMARY_PORT" -uroot -e 'CREATE DATABASE IF NOT EXISTS sbtest'
SB_COMMON=(--mysql-user=app --mysql-password=app --mysql-db=sbtest --tables=4 --table-size=10000)
sysbench oltp_read_only --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" "${SB_COMMON[@]}" prepare \
    >"$WORK/sysbench-prepare.log" 2>&1 || { cat "$WORK/sysbench-prepare.log" >&2; die "sysbench prepare failed"; }
sysbench oltp_read_only --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" "${SB_COMMON[@]}" prewarm \
    >>"$WORK/sysbench-prepare.log" 2>&1 || true

# ir_total PID: instructions the callgrind run PID has executed so far (all threads).
ir_total() {
    callgrind_control -e Ir "$1" 2>/dev/null | awk '/^ *Th +[0-9]+/ { gsub(/,/, "", $3); s += $3 } END { printf "%d\n", s }'
}

# count BIN LABEL WORKLOAD MODE EVENTS: writes "instructions queries" to $WORK/count:
# the instructions Sluice executed while sysbench ran (read from the live process
# before and after, so startup and shutdown are left out).
count() {
    local bin=$1 label=$2 workload=$3 mode=$4 events=$5 name total queries before after
    name="$label-$workload-$mode-$events"
    SLUICE_WRAP=(valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.callgrind" --dump-instr=no --collect-jumps=no)
    SLUICE_START_WAIT=120
    SLUICE_BIN_FOR_START=$bin start_sluice "$name" pinned "$INSTR_WORKERS" "${INSTR_EXTRA_TOML:-}"
    VG_PID=$STARTED_PID
    sleep 2
    before=$(ir_total "$VG_PID")
    sysbench "$workload" --mysql-host=127.0.0.1 --mysql-port="$STARTED_PORT" "${SB_COMMON[@]}" \
        --db-ps-mode="$mode" --skip_trx=on --threads="$INSTR_THREADS" --events="$events" --time=0 \
        --report-interval=0 run >"$WORK/$name-sysbench.log" 2>&1 ||
        { cat "$WORK/$name-sysbench.log" >&2; die "sysbench failed through $name"; }
    after=$(ir_total "$VG_PID")
    stop_pid "$VG_PID" "$name" 120
    VG_PID=""
    total=$((after - before))
    [ "$before" -gt 0 ] && [ "$total" -gt 0 ] || die "no instruction count from callgrind_control for $name"
    queries=$(parse_sysbench "$WORK/$name-sysbench.log" | awk '{ print $3 }')
    [ -n "$total" ] && [ -n "$queries" ] || die "no count for $name"
    rm -f "$WORK/$name.callgrind"
    echo "$total $queries" >"$WORK/count"
}

BINS=("$SLUICE_BIN")
LABELS=(sluice)
if [ -n "${INSTR_ALT_BIN:-}" ]; then
    BINS+=("$INSTR_ALT_BIN")
    LABELS+=(alt)
fi

printf 'binary\tworkload\tps_mode\tevents\tinstructions\tqueries\n' >"$WORK/results.tsv"
declare -A PER
for workload in $INSTR_WORKLOADS; do
    for mode in $INSTR_PS_MODES; do
        for b in "${!BINS[@]}"; do
            label=${LABELS[$b]}
            e1=${EVENTS[0]} e2=${EVENTS[1]}
            if [ "$workload" != oltp_point_select ]; then
                e1=$((e1 / 10)) e2=$((e2 / 10))
            fi
            count "${BINS[$b]}" "$label" "$workload" "$mode" "$e1"
            read -r i1 q1 <"$WORK/count"
            count "${BINS[$b]}" "$label" "$workload" "$mode" "$e2"
            read -r i2 q2 <"$WORK/count"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$workload" "$mode" "$e1" "$i1" "$q1" >>"$WORK/results.tsv"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$workload" "$mode" "$e2" "$i2" "$q2" >>"$WORK/results.tsv"
            per=$(awk -v a="$i1" -v b="$i2" -v qa="$q1" -v qb="$q2" 'BEGIN { printf "%.0f", (b - a) / (qb - qa) }')
            PER["$label/$workload/$mode"]=$per
            log "$label $workload ps=$mode: $per instructions per statement ($q1 and $q2 queries)"
        done
    done
done

{
    echo "# Sluice instructions per statement (callgrind), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "sluice: \`$SLUICE_BIN\` ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    [ -n "${INSTR_ALT_BIN:-}" ] && echo "alt: \`$INSTR_ALT_BIN\`"
    echo "events: ${EVENTS[0]} and ${EVENTS[1]}, $INSTR_THREADS sysbench threads, $INSTR_WORKERS workers, --skip_trx=on"
    echo
    if [ -n "${INSTR_ALT_BIN:-}" ]; then
        echo "| workload | ps mode | sluice | alt | sluice / alt |"
        echo "|---|---|---:|---:|---:|"
    else
        echo "| workload | ps mode | sluice |"
        echo "|---|---|---:|"
    fi
    for workload in $INSTR_WORKLOADS; do
        for mode in $INSTR_PS_MODES; do
            s=${PER["sluice/$workload/$mode"]}
            if [ -n "${INSTR_ALT_BIN:-}" ]; then
                a=${PER["alt/$workload/$mode"]}
                r=$(awk -v s="$s" -v a="$a" 'BEGIN { printf "%.3f", s / a }')
                echo "| $workload | $mode | $s | $a | $r |"
            else
                echo "| $workload | $mode | $s |"
            fi
        done
    done
} | tee "$OUT"
cp -f "$WORK/results.tsv" "$RAW/"
log "report: $OUT; raw: $RAW"
