#!/usr/bin/env bash
# Pooling and multiplexing at scale (issue 13), on a real MariaDB primary
# (`chaos cluster --replicas 0`, max_connections 600) and a release Sluice with
# `[pool] max_per_node = 32`:
#
#   1. clients:  SLUICE_POOL_CLIENTS [10000] concurrent clients, each with session
#                variables of its own, running point selects and updates (and reading
#                their variables back) for SLUICE_POOL_SECONDS [30]: statements, errors,
#                state mismatches, backend connections used;
#   2. idle:     SLUICE_POOL_IDLE [50000, or the fd limit less 2000] idle clients:
#                Sluice's RSS growth per client;
#   3. storm:    SLUICE_POOL_STORM [5000] new clients per second for 10 s: backend
#                connections created (MariaDB's Connections counter) and login p99;
#   4. sysbench: oltp_read_write at SLUICE_POOL_THREADS [256] threads for
#                SLUICE_POOL_SB_SECONDS [30]: directly (256 connections), through Sluice
#                (32 backend connections) and through HAProxy, in one run, with
#                MariaDB's CPU per transaction; SLUICE_POOL_SB_ROUNDS [1] rounds, the
#                order rotating, with the median and range of the tps ratios. SLUICE_POOL_CPU_QUOTA [0 = none]: CPUs
#                for mariadbd (cgroup `cpu` controller, as in bench-routing.sh), so
#                MariaDB is the bottleneck as on a host of its own.
#
# The load generator is proxy/benches/pool_scale.rs. The fd limit is raised to 200000
# (needs root or a hard limit that high).
#
# Usage: scripts/bench-pool.sh [--out FILE] [--no-install] [--only clients,idle,storm,sysbench]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BENCH_TAG=bench-pool
DO_INSTALL=1
DO_BUILD=1
out=
only=clients,idle,storm,sysbench
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=${2:?--out needs a file}; shift 2 ;;
        --no-install) DO_INSTALL=0; shift ;;
        --only) only=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-pool.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
out=${out:-${TMPDIR:-/tmp}/sluice-bench-pool-$(date +%Y%m%d-%H%M%S).txt}
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
PIN_LOAD=()
PIN_PROXY=()
CLIENTS=${SLUICE_POOL_CLIENTS:-10000}
SECONDS_RUN=${SLUICE_POOL_SECONDS:-30}
IDLE=${SLUICE_POOL_IDLE:-50000}
STORM=${SLUICE_POOL_STORM:-5000}
THREADS=${SLUICE_POOL_THREADS:-256}
SB_SECONDS=${SLUICE_POOL_SB_SECONDS:-30}
SB_ROUNDS=${SLUICE_POOL_SB_ROUNDS:-1}
POOL=32
CPU_QUOTA=${SLUICE_POOL_CPU_QUOTA:-0}

ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "fd limit $(ulimit -n)"
# Sluice and the load generator each hold one descriptor per client.
if [ "$IDLE" -gt $(( $(ulimit -n) - 2000 )) ]; then
    log "idle clients capped at $(( $(ulimit -n) - 2000 )) by the fd limit ($(ulimit -n); the hard limit cannot be raised here)"
    IDLE=$(( $(ulimit -n) - 2000 ))
fi
bench_setup
log "building the load generator (release)"
cargo bench -q -p sluice-proxy --bench pool_scale --no-run >&2
load() { cargo bench -q -p sluice-proxy --bench pool_scale -- --bench "$@"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-pool.XXXXXX")
SLUICE_PID=
HAPROXY_PID=
CHAOS_PID=
cleanup() {
    stop_pid "$SLUICE_PID" sluice 10
    stop_pid "$HAPROXY_PID" haproxy 5
    stop_pid "$CHAOS_PID" chaos 60
}
trap cleanup EXIT

log "starting MariaDB (chaos cluster --replicas 0, max_connections 600, CPU quota $CPU_QUOTA)"
QUOTA_ARGS=()
[ "$CPU_QUOTA" != 0 ] && QUOTA_ARGS=(--cpu-quota "$CPU_QUOTA")
start_cluster --replicas 0 "${QUOTA_ARGS[@]}" --server-option=--max-connections=600 --server-option=--max-prepared-stmt-count=100000
# The primary's mariadbd pid: the "pid" that follows "role": "primary" in the state file.
MARIADB_PID=$(awk '/"role": *"primary"/ { p = 1 } p && /"pid":/ { gsub(/[^0-9]/, ""); print; exit }' "$WORK/cluster.json")
[ -n "$MARIADB_PID" ] && [ -d "/proc/$MARIADB_PID" ] || die "cannot find the primary's mariadbd pid in $WORK/cluster.json"
sql() { "$MYSQL_CLIENT" -h127.0.0.1 -P"$PRIMARY_PORT" -uroot -N -B -e "$1"; }
sql "CREATE TABLE IF NOT EXISTS test.pool_t (id INT PRIMARY KEY, v BIGINT NOT NULL DEFAULT 0)"
sql "INSERT IGNORE INTO test.pool_t (id) SELECT seq FROM test.seq_1_to_1000"
sql "CREATE DATABASE IF NOT EXISTS sbtest"
status() { sql "SHOW GLOBAL STATUS LIKE '$1'" | awk '{ print $2 }'; }
app_conns() { sql "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

cat >"$WORK/sluice.toml" <<EOF
[proxy]
worker_threads = 2
listen = "127.0.0.1:0"
shutdown_timeout_ms = 2000
max_connections = 120000

[[users]]
name = "app"
password = "app"

[backend]
user = "app"
password = "app"
nodes = [$NODES]

[pool]
max_per_node = $POOL
min_idle = 4
EOF
: >"$WORK/sluice-stdout.log"
"$SLUICE_BIN" --config "$WORK/sluice.toml" >"$WORK/sluice-stdout.log" 2>"$WORK/sluice.log" &
SLUICE_PID=$!
addr=
for ((i = 0; i < 100; i++)); do
    addr=$(sed -n 's/^sluice listening on //p' "$WORK/sluice-stdout.log")
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { cat "$WORK/sluice.log" >&2; die "sluice did not report its address"; }
SLUICE_ADDR=$addr
SLUICE_PORT=${addr##*:}
wait_sql "$SLUICE_PORT" app app 15 || die "no answer through sluice"
log "sluice on $SLUICE_ADDR (pid $SLUICE_PID), [pool] max_per_node = $POOL"

{
echo "# bench-pool $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs; Sluice $(git rev-parse --short HEAD), pool max_per_node = $POOL"

if [[ ,$only, == *,clients,* ]]; then
    c0=$(status Connections)
    log "clients: $CLIENTS clients for ${SECONDS_RUN}s"
    (sleep $((SECONDS_RUN / 2 + CLIENTS / 4000)); echo "backend connections of app mid-run: $(app_conns)" >"$WORK/mid.txt") &
    res=$(load clients "$SLUICE_ADDR" "$CLIENTS" "$SECONDS_RUN" | grep '^RESULT')
    wait
    echo "clients: $res"
    echo "clients: $(cat "$WORK/mid.txt"); backend connections opened during the run: $(( $(status Connections) - c0 ))"
fi

if [[ ,$only, == *,idle,* ]]; then
    before=$(rss_kb "$SLUICE_PID")
    log "idle: $IDLE idle clients"
    load idle "$SLUICE_ADDR" "$IDLE" 20 >"$WORK/idle.txt" &
    lp=$!
    for ((i = 0; i < 600; i++)); do grep -q '^READY' "$WORK/idle.txt" 2>/dev/null && break; sleep 1; done
    sleep 5
    during=$(rss_kb "$SLUICE_PID")
    wait "$lp" || true
    n=$(sed -n 's/^READY clients=\([0-9]*\).*/\1/p' "$WORK/idle.txt")
    echo "idle: $(grep '^READY' "$WORK/idle.txt"); $(grep '^RESULT' "$WORK/idle.txt")"
    echo "idle: sluice RSS ${before} kB before, ${during} kB with ${n:-0} idle clients: $(awk -v a="$before" -v b="$during" -v n="${n:-1}" 'BEGIN { printf "%.2f KiB per idle client", (b - a) / n }')"
fi

if [[ ,$only, == *,sysbench,* ]]; then
    SB=(--mysql-user=app --mysql-password=app --mysql-db=sbtest --tables=4 --table-size=10000)
    log "sysbench prepare"
    sysbench oltp_read_write --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" "${SB[@]}" prepare >"$WORK/sb-prepare.log" 2>&1 || die "sysbench prepare failed"
    start_haproxy "$PRIMARY"
    targets=(direct sluice haproxy)
    : >"$WORK/sb-ratios.tsv"
    for ((round = 1; round <= SB_ROUNDS; round++)); do
        declare -A TPS=()
        for ((k = 0; k < 3; k++)); do
            # The order rotates from round to round (each target runs first once in three).
            target=${targets[$(( (k + round - 1) % 3 ))]}
            case $target in direct) port=$PRIMARY_PORT ;; sluice) port=$SLUICE_PORT ;; haproxy) port=$HAPROXY_PORT ;; esac
            t0=$(cpu_ticks "$MARIADB_PID")
            sysbench oltp_read_write --mysql-host=127.0.0.1 --mysql-port="$port" "${SB[@]}" --threads="$THREADS" --time="$SB_SECONDS" \
                --report-interval=0 --mysql-ignore-errors=1213,1205 run >"$WORK/sb-$target-$round.log" 2>&1 || true
            t1=$(cpu_ticks "$MARIADB_PID")
            if stats=$(parse_sysbench "$WORK/sb-$target-$round.log"); then
                read -r tps qps q avg p95 errs <<<"$stats"
                TPS[$target]=$tps
                txns=$(awk -v t="$tps" -v s="$SB_SECONDS" 'BEGIN { printf "%d", t * s }')
                echo "sysbench oltp_read_write threads=$THREADS round=$round $target: tps=$tps qps=$qps avg_ms=$avg p95_ms=$p95 errors=$errs mariadb_cpu_ms_per_txn=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$txns" 'BEGIN { printf "%.3f", n ? d * 1000 / hz / n : 0 }')"
            else
                echo "sysbench round=$round $target: failed: $(tail -3 "$WORK/sb-$target-$round.log" | tr '\n' ' ')"
            fi
            sleep 3
        done
        if [ -n "${TPS[direct]:-}" ] && [ -n "${TPS[sluice]:-}" ] && [ -n "${TPS[haproxy]:-}" ]; then
            awk -v d="${TPS[direct]}" -v s="${TPS[sluice]}" -v h="${TPS[haproxy]}" 'BEGIN { printf "%.3f\t%.3f\n", s / d, h / d }' >>"$WORK/sb-ratios.tsv"
        fi
        unset TPS
    done
    if [ -s "$WORK/sb-ratios.tsv" ]; then
        read -r m lo hi n <<<"$(cut -f1 "$WORK/sb-ratios.tsv" | median_range)"
        echo "sysbench: sluice / direct tps over $n round(s): median $m (lowest $lo, highest $hi)"
        read -r m lo hi n <<<"$(cut -f2 "$WORK/sb-ratios.tsv" | median_range)"
        echo "sysbench: haproxy / direct tps over $n round(s): median $m (lowest $lo, highest $hi)"
    fi
fi
if [[ ,$only, == *,storm,* ]]; then
    sleep 3
    c0=$(status Connections)
    log "storm: $STORM new clients per second for 10 s"
    res=$(load storm "$SLUICE_ADDR" "$STORM" 10 | grep '^RESULT')
    echo "storm: $res"
    echo "storm: backend connections opened during the storm: $(( $(status Connections) - c0 )) (pool max $POOL)"
fi

} | tee "$out"
log "results in $out"
