#!/usr/bin/env bash
# Runs real client projects' test suites against MariaDB directly and through
# Sluice, and compares the outcome of every test. See docs/client-suites.md.
#
# Usage: scripts/suites/run.sh [--suite pymysql|mysqlclient|mtr|all] [--quick]
#                              [--endpoint-only HOST:PORT [--user U] [--password PW]]
#                              [--topology single|split] [--replica-delay SECS]
#                              [--out DIR] [--no-build]
#
#   --suite S        one suite, a comma-separated list, or all (default)
#   --quick          a bounded subset for CI (a few minutes in all)
#   --endpoint-only HOST:PORT
#                    run the suites once against an existing server or proxy
#                    (account --user, default root, --password, default empty)
#                    instead of starting MariaDB and Sluice; compare two such
#                    runs with `scripts/suites/results.py compare`
#   --topology T     single (default): Sluice in front of one MariaDB;
#                    split: Sluice in front of a primary and 2 replicas with its
#                    defaults (read/write splitting, consistency = session)
#   --replica-delay SECS
#                    split, with the second replica applying every transaction
#                    SECS seconds late (MASTER_DELAY)
#                    With split, differences listed in scripts/suites/split-known.txt
#                    (what a replica cannot show: SET GLOBAL on the primary, tables
#                    replication recreated differently) are reported, not failed.
#   --mtr-tests FILE another list of MariaDB tests for the mtr suite (format of
#                    scripts/suites/mtr-tests.txt)
#   --out DIR        where results and logs go (default: a new directory
#                    /tmp/sluice-suites-<date>-<time>, kept)
#   --no-build       use the existing target/<profile>/{sluice,chaos}
#   --profile P      release (default) or debug: which build of sluice and chaos
#                    to use; --quick defaults to debug, which `cargo test
#                    --workspace` (scripts/test.sh, CI) has already built
#
# Without --endpoint-only, for every suite: a fresh MariaDB (`chaos cluster
# --replicas 0`, with the server options the suite expects) runs the suite
# directly; then another fresh one (with --topology split: a primary and 2
# replicas), with Sluice in front of it in `auth_mode = "passthrough"`, runs
# it through Sluice. Per suite it prints
#   direct: P passed, F failed, S skipped
#   sluice: P passed, F failed, S skipped
# and every test whose outcome differs. Exit status: 0 when the outcomes are
# the same, 1 when any differ, 2 when a suite could not run.
#
# Everything started is stopped on exit (also on Ctrl-C). Downloads (the
# suites' source distributions, a Python virtual environment) are cached in
# ${SLUICE_SUITES_CACHE:-~/.cache/sluice-suites}.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
# shellcheck source=common.sh
. scripts/suites/common.sh

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

all_suites=(pymysql mysqlclient mtr)
selected=all
quick=false
endpoint=
out=
build=true
profile=
mtr_tests=
user=root
password=
topology=single
replica_delay=0
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) selected=${2:?--suite needs a value}; shift 2 ;;
        --suite=*) selected=${1#*=}; shift ;;
        --quick) quick=true; shift ;;
        --endpoint-only) endpoint=${2:?--endpoint-only needs HOST:PORT}; shift 2 ;;
        --endpoint-only=*) endpoint=${1#*=}; shift ;;
        --user) user=$2; shift 2 ;;
        --password) password=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --mtr-tests) mtr_tests=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
        --topology) topology=${2:?--topology needs single or split}; shift 2 ;;
        --topology=*) topology=${1#*=}; shift ;;
        --replica-delay) replica_delay=${2:?--replica-delay needs seconds}; topology=split; shift 2 ;;
        --replica-delay=*) replica_delay=${1#*=}; topology=split; shift ;;
        --no-build) build=false; shift ;;
        --profile) profile=${2:?--profile needs release or debug}; shift 2 ;;
        --profile=*) profile=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [ "$selected" = all ]; then
    suites=("${all_suites[@]}")
else
    IFS=, read -r -a suites <<< "$selected"
    for s in "${suites[@]}"; do
        printf '%s\n' "${all_suites[@]}" | grep -qx "$s" || { echo "run.sh: unknown suite $s" >&2; exit 2; }
    done
fi
case "$topology" in
    single|split) ;;
    *) echo "run.sh: --topology is single or split" >&2; exit 2 ;;
esac
[[ "$replica_delay" =~ ^[0-9]+$ ]] || { echo "run.sh: --replica-delay wants whole seconds" >&2; exit 2; }
if [ -n "$endpoint" ]; then
    [[ "$endpoint" == *:* ]] || { echo "run.sh: --endpoint-only wants HOST:PORT" >&2; exit 2; }
    ep_host=${endpoint%:*}
    ep_port=${endpoint##*:}
fi
out=${out:-${TMPDIR:-/tmp}/sluice-suites-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
suite_args=()
$quick && suite_args+=(--quick)
mtr_args=()
[ -n "$mtr_tests" ] && mtr_args=(--tests "$mtr_tests")
started=$(date +%s)

# --- the suites' own dependencies, fetched before anything is timed ---------
for s in "${suites[@]}"; do
    log "preparing $s"
    "scripts/suites/$s.sh" --prepare
done

# --- endpoints --------------------------------------------------------------
if [ -z "$profile" ]; then
    if $quick; then profile=debug; else profile=release; fi
fi
case "$profile" in
    release) cargo_profile=(--release) ;;
    debug) cargo_profile=() ;;
    *) echo "run.sh: --profile is release or debug" >&2; exit 2 ;;
esac
target=${CARGO_TARGET_DIR:-$repo/target}
chaos="$target/$profile/chaos"
sluice="$target/$profile/sluice"
if [ -z "$endpoint" ] && $build; then
    log "building sluice and chaos ($profile)"
    for attempt in 1 2 3 4; do
        if cargo build "${cargo_profile[@]}" --quiet -p sluice-proxy -p chaos; then break; fi
        [ "$attempt" -lt 4 ] || die "cargo build failed $attempt times"
        log "build failed (someone may be mid-edit); retrying in 60s"
        sleep 60
    done
fi
if [ -z "$endpoint" ]; then
    [ -x "$chaos" ] && [ -x "$sluice" ] || die "missing $chaos or $sluice (build them or drop --no-build)"
fi

CLUSTER_PID=
CLUSTER_NODE_PIDS=
PRIMARY=
REPLICAS=
SLUICE_PID=
SLUICE_ADDR=

# start_cluster DIR REPLICAS DELAY OPTION...: a fresh MariaDB (a primary and
# REPLICAS replicas, the last one delayed by DELAY seconds unless 0); sets
# PRIMARY and REPLICAS (comma-separated).
start_cluster() {
    local dir=$1 replicas=$2 delay=$3; shift 3
    local state="$dir/cluster.json" opts=() o i
    for o in "$@"; do opts+=("--server-option=$o"); done
    [ "$delay" -gt 0 ] && [ "$replicas" -gt 0 ] && opts+=("--delay-replica=$replicas=$delay")
    rm -f "$state"
    "$chaos" cluster --replicas "$replicas" --state-file "$state" "${opts[@]}" > "$dir/chaos.log" 2>&1 &
    CLUSTER_PID=$!
    for ((i = 0; i < 1800; i++)); do
        [ -s "$state" ] && break
        kill -0 "$CLUSTER_PID" 2>/dev/null || { CLUSTER_PID=; tail -20 "$dir/chaos.log" >&2; die "chaos cluster exited"; }
        sleep 0.1
    done
    [ -s "$state" ] || die "chaos cluster not ready after 180s; see $dir/chaos.log"
    sleep 0.2 # the file may be mid-write
    PRIMARY=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["primary"])' "$state")
    REPLICAS=$(python3 -c 'import json, sys; print(",".join(json.load(open(sys.argv[1]))["replicas"]))' "$state")
    CLUSTER_NODE_PIDS=$(python3 -c 'import json, sys; print(" ".join(str(n["pid"]) for n in json.load(open(sys.argv[1]))["nodes"] if n.get("pid")))' "$state")
    cp "$state" "$dir/cluster-state.json"
    if [ -n "$REPLICAS" ]; then
        local note=
        [ "$delay" -gt 0 ] && note=" (the last delayed by ${delay}s)"
        log "MariaDB primary at $PRIMARY, replicas at $REPLICAS$note"
    else
        log "MariaDB at $PRIMARY"
    fi
}

stop_cluster() {
    [ -n "$CLUSTER_PID" ] || return 0
    local i
    kill -TERM "$CLUSTER_PID" 2>/dev/null || true
    for ((i = 0; i < 1200; i++)); do
        kill -0 "$CLUSTER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$CLUSTER_PID" 2>/dev/null; then
        log "chaos did not stop in 120s; killing it and its servers"
        kill -KILL "$CLUSTER_PID" $CLUSTER_NODE_PIDS 2>/dev/null || true
    fi
    wait "$CLUSTER_PID" 2>/dev/null || true
    CLUSTER_PID=
}

# start_sluice DIR NODE...: Sluice in passthrough mode with its routing
# defaults in front of NODE... (the primary first); sets SLUICE_ADDR.
start_sluice() {
    local dir=$1 i; shift
    local nodes
    nodes=$(printf '"%s", ' "$@")
    nodes=${nodes%, }
    cat > "$dir/sluice.toml" <<EOF
[proxy]
listen = "127.0.0.1:0"
auth_mode = "passthrough"
max_allowed_packet = 1073741824
shutdown_timeout_ms = 2000

[backend]
user = "root"
password = ""
nodes = [$nodes]
EOF
    # Created before the start: the background child opens it only when it runs, and
    # the loop below may look first (a race seen on a loaded machine).
    : > "$dir/sluice.out"
    "$sluice" --config "$dir/sluice.toml" > "$dir/sluice.out" 2> "$dir/sluice.log" &
    SLUICE_PID=$!
    for ((i = 0; i < 600; i++)); do
        SLUICE_ADDR=$(sed -n 's/^sluice listening on //p' "$dir/sluice.out" | head -1)
        [ -n "$SLUICE_ADDR" ] && break
        kill -0 "$SLUICE_PID" 2>/dev/null || { SLUICE_PID=; tail -20 "$dir/sluice.log" >&2; die "sluice exited"; }
        sleep 0.1
    done
    [ -n "$SLUICE_ADDR" ] || die "sluice not listening after 60s; see $dir/sluice.log"
    log "Sluice at $SLUICE_ADDR in front of $*"
}

stop_sluice() {
    [ -n "$SLUICE_PID" ] || return 0
    kill -TERM "$SLUICE_PID" 2>/dev/null || true
    wait "$SLUICE_PID" 2>/dev/null || true
    SLUICE_PID=
}

SUITE_PID=
cleanup() {
    if [ -n "$SUITE_PID" ]; then
        kill -TERM -- "-$SUITE_PID" 2>/dev/null || true
        wait "$SUITE_PID" 2>/dev/null || true
    fi
    stop_sluice
    stop_cluster
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_suite SUITE DIR HOST PORT USER PASSWORD [OPTION...]: one run; records
# its duration.
run_suite() {
    local suite=$1 dir=$2 host=$3 port=$4 u=$5 pw=$6 t0 status=0
    shift 6
    t0=$(date +%s)
    # In a process group of its own, so that an interrupted run can stop the
    # suite with everything it started (MTR, pytest, mysqltest...).
    local more=()
    [ "$suite" = mtr ] && more=("${mtr_args[@]}")
    setsid "scripts/suites/$suite.sh" --host "$host" --port "$port" --user "$u" --password "$pw" \
        --out "$dir" "${suite_args[@]}" "${more[@]}" "$@" &
    SUITE_PID=$!
    wait "$SUITE_PID" || status=$?
    SUITE_PID=
    echo $(( $(date +%s) - t0 )) > "$dir/seconds"
    return "$status"
}

summary=()
exit_status=0
note_status() { [ "$1" -gt "$exit_status" ] && exit_status=$1; return 0; }

for suite in "${suites[@]}"; do
    mapfile -t server_options < <("scripts/suites/$suite.sh" --server-options)
    if [ -n "$endpoint" ]; then
        dir="$out/$suite/endpoint"
        mkdir -p "$dir"
        if run_suite "$suite" "$dir" "$ep_host" "$ep_port" "$user" "$password"; then
            line="$suite: $endpoint: $(python3 scripts/suites/results.py counts "$dir/results.tsv") ($(cat "$dir/seconds")s)"
        else
            line="$suite: $endpoint: did not run (see $dir)"
            note_status 2
        fi
        echo "$line"
        summary+=("$line")
        continue
    fi

    direct="$out/$suite/direct"
    through="$out/$suite/sluice"
    mkdir -p "$direct" "$through"
    ok=true
    start_cluster "$direct" 0 0 "${server_options[@]}"
    run_suite "$suite" "$direct" "${PRIMARY%:*}" "${PRIMARY##*:}" root "" || ok=false
    stop_cluster
    if $ok; then
        if [ "$topology" = split ]; then
            start_cluster "$through" 2 "$replica_delay" "${server_options[@]}"
            IFS=, read -r -a replica_list <<< "$REPLICAS"
            start_sluice "$through" "$PRIMARY" "${replica_list[@]}"
        else
            start_cluster "$through" 0 0 "${server_options[@]}"
            start_sluice "$through" "$PRIMARY"
        fi
        extra=()
        # MTR's set-up and the resets between tests are the harness's, not
        # under test: they go to MariaDB directly (a test that leaves the
        # server read-only must not lock the harness out through Sluice).
        [ "$suite" = mtr ] && extra=(--admin "$PRIMARY")
        run_suite "$suite" "$through" "${SLUICE_ADDR%:*}" "${SLUICE_ADDR##*:}" root "" "${extra[@]}" || ok=false
        stop_sluice
        stop_cluster
    fi
    if ! $ok; then
        line="$suite: did not run (see $out/$suite)"
        echo "$line"
        summary+=("$line")
        note_status 2
        continue
    fi
    block="$suite:
  direct: $(python3 scripts/suites/results.py counts "$direct/results.tsv") ($(cat "$direct/seconds")s)
  sluice: $(python3 scripts/suites/results.py counts "$through/results.tsv") ($(cat "$through/seconds")s)"
    # Sluice runs with its defaults, multiplexing on: what pooling shows is known.
    known_args=(--known scripts/suites/multiplex-known.txt)
    [ "$topology" = split ] && known_args+=(--known scripts/suites/split-known.txt)
    if python3 scripts/suites/results.py compare "$direct/results.tsv" "$through/results.tsv" direct sluice \
        "${known_args[@]}" > "$out/$suite/differences.txt"; then
        if [ -s "$out/$suite/differences.txt" ]; then
            block+="
  same outcome for every test but the known differences (pooling, split topology):
$(sed 's/^/  /' "$out/$suite/differences.txt")"
        else
            block+="
  same outcome for every test"
        fi
    else
        block+="
  differences ($(grep -c '^  [^ ]' "$out/$suite/differences.txt")):
$(sed 's/^/  /' "$out/$suite/differences.txt")"
        note_status 1
    fi
    echo "$block"
    summary+=("$block")
done

echo
topology_note=
if [ -z "$endpoint" ] && [ "$topology" = split ]; then
    topology_note=", Sluice in front of a primary + 2 replicas"
    [ "$replica_delay" -gt 0 ] && topology_note+=" (one delayed by ${replica_delay}s)"
fi
echo "=== client suites: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(( $(date +%s) - started ))s$topology_note, results in $out"
printf '%s\n' "${summary[@]}"
exit "$exit_status"
