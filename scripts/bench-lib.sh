# Shell functions shared by the benchmark scripts (scripts/bench.sh,
# scripts/bench-routing.sh). Sourced, not run.
#
# The sourcing script sets, before calling these:
#   ROOT         the repository root
#   BENCH_TAG    prefix of log lines ("bench", "bench-routing")
#   DO_INSTALL   1 = install missing packages, 0 = refuse
#   DO_BUILD     1 = build the release binaries
#   WORK         its scratch directory (for start_cluster and start_sluice)
#   PIN_LOAD     array: command prefix for load generators and MariaDB (may be empty)
#   PIN_PROXY    array: command prefix for the proxies (may be empty)
# and calls bench_setup once, which sets MYSQL_CLIENT, SLUICE_BIN, CHAOS_BIN and CLK_TCK.
# Optional: SLUICE_WRAP (array: a command Sluice runs under, e.g. valgrind) and
# SLUICE_START_WAIT (seconds to wait for a started Sluice to answer, 30).

log() { printf '%s: %s\n' "${BENCH_TAG:-bench}" "$*" >&2; }
die() { printf '%s: error: %s\n' "${BENCH_TAG:-bench}" "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# Dependencies and build.

missing_packages() {
    local need=()
    command -v sysbench >/dev/null || need+=(sysbench)
    command -v haproxy >/dev/null || need+=(haproxy)
    command -v mariadb >/dev/null || command -v mysql >/dev/null || need+=(mariadb-client)
    command -v mariadbd >/dev/null || command -v mysqld >/dev/null || need+=(mariadb-server)
    echo "${need[@]:-}"
}

install_deps() {
    local need
    need=$(missing_packages)
    [ -z "$need" ] && return 0
    if [ "$DO_INSTALL" = 0 ]; then
        die "missing: $need (run without --no-install, or install them)"
    fi
    if [ -x "$ROOT/scripts/install-deps.sh" ] && grep -q -- '--bench' "$ROOT/scripts/install-deps.sh"; then
        log "missing: $need; running scripts/install-deps.sh --bench"
        "$ROOT/scripts/install-deps.sh" --bench
    else
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo=sudo
        log "missing: $need; installing with apt-get"
        # shellcheck disable=SC2086
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
        # shellcheck disable=SC2086
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
    fi
    need=$(missing_packages)
    [ -z "$need" ] || die "still missing after install: $need"
}

# bench_args "$@": the options every benchmark script takes: --out FILE (sets OUT),
# --no-install, --no-build, -h (runs the caller's `usage`).
bench_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --out) OUT=${2:?--out needs a file}; shift 2 ;;
            --out=*) OUT=${1#--out=}; shift ;;
            --no-install) DO_INSTALL=0; shift ;;
            --no-build) DO_BUILD=0; shift ;;
            -h|--help) usage; exit 0 ;;
            *) echo "$BENCH_TAG: unknown argument: $1" >&2; usage >&2; exit 2 ;;
        esac
    done
}

# Installs what is missing, builds the release binaries (unless DO_BUILD=0) and finds
# the programs.
bench_setup() {
    install_deps
    command -v cargo >/dev/null || [ "$DO_BUILD" = 0 ] || die "cargo not found: install Rust (rustup) first"
    MYSQL_CLIENT=$(command -v mariadb || command -v mysql)
    local target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
    if [ "$DO_BUILD" = 1 ]; then
        log "building release binaries (sluice, chaos)"
        (cd "$ROOT" && cargo build --release -p sluice-proxy -p chaos)
    fi
    SLUICE_BIN="$target_dir/release/sluice"
    CHAOS_BIN="$target_dir/release/chaos"
    [ -x "$SLUICE_BIN" ] || die "$SLUICE_BIN not found (build failed?)"
    [ -x "$CHAOS_BIN" ] || die "$CHAOS_BIN not found (build failed?)"
    CLK_TCK=$(getconf CLK_TCK)
}

# ---------------------------------------------------------------------------------------
# Processes.

stop_pid() { # pid name seconds
    local pid=$1 name=$2 secs=$3 i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "$name (pid $pid) did not stop within ${secs}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# CPU time (utime + stime, clock ticks) of a process and all its threads.
cpu_ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $(( ${12} + ${13} ))
}

# on_exit FUNC: runs FUNC once (with errexit off) when the script exits, is interrupted
# (exit 130) or terminated (exit 143).
on_exit() {
    BENCH_TEARDOWN=$1
    BENCH_TORN_DOWN=0
    trap bench_teardown_once EXIT
    trap 'log "interrupted"; bench_teardown_once; exit 130' INT
    trap 'log "terminated"; bench_teardown_once; exit 143' TERM
}
bench_teardown_once() {
    [ "$BENCH_TORN_DOWN" = 1 ] && return 0
    BENCH_TORN_DOWN=1
    set +e
    "$BENCH_TEARDOWN"
}

free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

wait_sql() { # port user password seconds
    local i
    for ((i = 0; i < $4 * 10; i++)); do
        if "$MYSQL_CLIENT" -h127.0.0.1 -P"$1" -u"$2" -p"$3" -N -e 'SELECT 1' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------
# The cluster and the proxies.

# start_cluster [chaos cluster options...]: starts `chaos cluster` in the background and
# waits for it; sets CHAOS_PID, CLUSTER_LINE, PRIMARY, REPLICAS (comma-separated),
# PRIMARY_PORT and NODES (the node addresses quoted for a TOML array, primary first).
# The state file is $WORK/cluster.json.
start_cluster() {
    local i r
    "${PIN_LOAD[@]}" "$CHAOS_BIN" cluster --state-file "$WORK/cluster.json" "$@" \
        >"$WORK/chaos.log" 2>"$WORK/chaos-stderr.log" &
    CHAOS_PID=$!
    for ((i = 0; i < 1200; i++)); do
        [ -f "$WORK/cluster.json" ] && break
        kill -0 "$CHAOS_PID" 2>/dev/null || { cat "$WORK/chaos-stderr.log" >&2; die "chaos exited before the cluster was ready"; }
        sleep 0.1
    done
    [ -f "$WORK/cluster.json" ] || die "cluster not ready after 120s"
    CLUSTER_LINE=$(grep '^SLUICE_CLUSTER ' "$WORK/chaos.log" || true)
    [ -n "$CLUSTER_LINE" ] || die "no SLUICE_CLUSTER line in chaos output"
    PRIMARY=$(sed -n 's/.* primary=\([^ ]*\).*/\1/p' <<<"$CLUSTER_LINE")
    REPLICAS=$(sed -n 's/.* replicas=\([^ ]*\).*/\1/p' <<<"$CLUSTER_LINE")
    PRIMARY_PORT=${PRIMARY##*:}
    NODES="\"$PRIMARY\""
    local replica_list
    IFS=, read -r -a replica_list <<<"$REPLICAS"
    for r in "${replica_list[@]}"; do
        [ -n "$r" ] && NODES="$NODES, \"$r\""
    done
    return 0
}

# write_sluice_config FILE PROXY_LINES [EXTRA_TOML]: a config for a Sluice in front of
# $NODES with user app/app; PROXY_LINES go into [proxy], EXTRA_TOML at the end.
write_sluice_config() {
    cat >"$1" <<EOF
[proxy]
$2
${SLUICE_PROXY_EXTRA:-}

[[users]]
name = "app"
password = "app"

[backend]
user = "app"
password = "app"
nodes = [$NODES]
${3:-}
EOF
}

# start_sluice NAME SCHEDULER WORKERS [EXTRA_TOML]: starts a Sluice in front of $NODES
# (EXTRA_TOML is appended to its config), sets STARTED_PID and STARTED_PORT. The binary
# is $SLUICE_BIN_FOR_START when set, else $SLUICE_BIN.
start_sluice() {
    local name=$1 scheduler=$2 workers=$3 extra=${4:-} addr="" i
    write_sluice_config "$WORK/$name.toml" "worker_threads = $workers
scheduler = \"$scheduler\"
listen = \"127.0.0.1:0\"
shutdown_timeout_ms = 2000" "$extra"
    local bin=${SLUICE_BIN_FOR_START:-$SLUICE_BIN}
    "$bin" --config "$WORK/$name.toml" --check >"$WORK/$name-check.log" 2>&1 ||
        { cat "$WORK/$name-check.log" >&2; die "sluice rejected $WORK/$name.toml"; }
    # Created before the start: the background child opens it only when it runs, and
    # the loop below may look first.
    : >"$WORK/$name-stdout.log"
    "${PIN_PROXY[@]}" ${SLUICE_WRAP[@]+"${SLUICE_WRAP[@]}"} "$bin" --config "$WORK/$name.toml" >"$WORK/$name-stdout.log" 2>"$WORK/$name.log" &
    STARTED_PID=$!
    local wait_s=${SLUICE_START_WAIT:-30}
    for ((i = 0; i < wait_s * 10; i++)); do
        addr=$(sed -n 's/^sluice listening on //p' "$WORK/$name-stdout.log")
        [ -n "$addr" ] && break
        kill -0 "$STARTED_PID" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited at startup"; }
        sleep 0.1
    done
    [ -n "$addr" ] || die "$name did not report its address"
    STARTED_PORT=${addr##*:}
    wait_sql "$STARTED_PORT" app app "$wait_s" || { cat "$WORK/$name.log" >&2; die "no MySQL answer through $name"; }
    log "$name (scheduler = $scheduler, worker_threads = $workers) on $addr (pid $STARTED_PID)"
}

# start_haproxy BACKEND_ADDR: starts our own HAProxy (TCP mode, one server, no health
# checks; the Debian service is not used); sets HAPROXY_PID and HAPROXY_PORT.
start_haproxy() {
    HAPROXY_PORT=$(free_port)
    cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend mysql
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend primary

backend primary
    server primary $1
EOF
    haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy rejected $WORK/haproxy.cfg"
    "${PIN_PROXY[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    wait_sql "$HAPROXY_PORT" app app 15 || { cat "$WORK/haproxy.log" >&2; die "no MySQL answer through HAProxy"; }
    log "haproxy on 127.0.0.1:$HAPROXY_PORT (pid $HAPROXY_PID)"
}

# ---------------------------------------------------------------------------------------
# Results.

# Extracts "tps qps queries avg_ms p95_ms errors" from a sysbench log.
parse_sysbench() {
    awk '
        /^ *transactions:/   { gsub(/[()]/, ""); tps = $3 }
        /^ *queries:/        { gsub(/[()]/, ""); q = $2; qps = $3 }
        /^ *ignored errors:/ { err = $3 }
        /^ *avg:/            { avg = $2 }
        /95th percentile:/   { p95 = $3 }
        END { if (qps == "") exit 1; printf "%s %s %s %s %s %s\n", tps, qps, q, avg, p95, err }
    ' "$1"
}

# Reads numbers (one per line; "-" and empty lines are skipped) and prints
# "median lowest highest count", or "- - - 0" when there are none.
median_range() {
    sort -g | awk '
        $1 != "" && $1 != "-" { v[++n] = $1 }
        END {
            if (n == 0) { print "- - - 0"; exit }
            m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            print m, v[1], v[n], n
        }'
}
