#!/usr/bin/env bash
# Read-scaling benchmark for Sluice's read/write splitting (issue 11).
#
# Starts a real MariaDB primary and replicas (`chaos cluster`), each mariadbd capped at a
# fraction of a CPU by a cgroup of its own (`--cpu-quota`), so that each node is a
# bottleneck as a small host of its own would be. Fills sysbench tables, then in every
# round runs `sysbench oltp_read_only` against each target, in rotated order:
#
#   direct    the primary, directly                                        (a)
#   split     a Sluice with [routing] read_write_split = true over all nodes  (b)
#   passthru  a Sluice with read_write_split = false (everything to the primary)  (c)
#   haproxy   HAProxy (TCP mode) to the primary, for reference             (d)
#   eventual  a splitting Sluice with consistency = "eventual" (not run by default:
#             with BENCH_WORKLOAD=oltp_read_write, split vs eventual is the cost of
#             read-after-write consistency)
#
# For each run it records queries/s and latency, the proxy's CPU time (utime+stime from
# /proc/PID/stat), and per node the SELECTs and questions it executed (deltas of
# SHOW GLOBAL STATUS Com_select / Questions) and the CPU time its cgroup used. The
# report gives, as median (lowest–highest) over the rounds of per-round ratios:
#   split/direct QPS (target >= 2.4; three equal nodes cannot give more than 3),
#   Sluice CPU per query, split over passthru (target <= 1.1),
#   and each node's share of the SELECTs in the split runs.
#
# sysbench runs with --skip_trx=on by default (every target, for a fair comparison):
# oltp_read_only otherwise wraps its reads in BEGIN/COMMIT, and a transaction goes to
# the primary as a whole.
#
# Usage: scripts/bench-routing.sh [--out FILE] [--no-install] [--no-build] [-h]
#
# Environment knobs (defaults in brackets):
#   BENCH_CPU_QUOTA     CPUs per mariadbd [0.25]; 0 = no cap
#   BENCH_REPLICAS      replicas besides the primary [2]
#   BENCH_THREADS       sysbench threads [64]
#   BENCH_SECONDS       duration of each sysbench run [20]
#   BENCH_ROUNDS        rounds [3]; each runs every target once, the order rotating
#   BENCH_TABLES        sysbench tables [4];  BENCH_TABLE_SIZE  rows per table [10000]
#   BENCH_PS_MODE       sysbench --db-ps-mode [disable]: disable = text protocol
#                       (COM_QUERY), auto = server-side prepared statements
#   BENCH_SKIP_TRX      sysbench --skip_trx [on]
#   BENCH_TARGETS       targets to run [direct split passthru haproxy]
#   BENCH_POLICY        routing.policy of the splitting Sluice [round_robin]
#   BENCH_WORKLOAD      sysbench script of the runs [oltp_read_only]
#   BENCH_CONSISTENCY   routing.consistency of the "split" Sluice [session]
#   BENCH_PRIMARY_READ_WEIGHT  routing.primary_read_weight [1]: the primary serves a
#                       share of the reads like a replica (0 would cap the gain at the
#                       replica count)
#   BENCH_SLUICE_WORKERS    proxy.worker_threads of both Sluices [0 = one per CPU]
#   BENCH_SLUICE_SCHEDULER  proxy.scheduler of both Sluices [pinned]
#   BENCH_PAUSE         seconds of idle between runs [1]
#   BENCH_PIN           1 = every mariadbd on the last CPU, the proxies and sysbench on
#                       the others (taskset): the nodes' caches are not shared with the
#                       proxy's and the load's work, as on separate hosts [0]
#
# Needs root (or a delegated cgroup hierarchy) for the CPU quota. The default run takes
# about 5 minutes plus the build. See docs/benchmarks.md.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

BENCH_CPU_QUOTA=${BENCH_CPU_QUOTA:-0.25}
BENCH_PIN=${BENCH_PIN:-0}
BENCH_REPLICAS=${BENCH_REPLICAS:-2}
BENCH_THREADS=${BENCH_THREADS:-64}
BENCH_SECONDS=${BENCH_SECONDS:-20}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_TABLES=${BENCH_TABLES:-4}
BENCH_TABLE_SIZE=${BENCH_TABLE_SIZE:-10000}
BENCH_PS_MODE=${BENCH_PS_MODE:-disable}
BENCH_SKIP_TRX=${BENCH_SKIP_TRX:-on}
BENCH_TARGETS=${BENCH_TARGETS:-"direct split passthru haproxy"}
BENCH_POLICY=${BENCH_POLICY:-round_robin}
BENCH_WORKLOAD=${BENCH_WORKLOAD:-oltp_read_only}
BENCH_CONSISTENCY=${BENCH_CONSISTENCY:-session}
BENCH_PRIMARY_READ_WEIGHT=${BENCH_PRIMARY_READ_WEIGHT:-1}
BENCH_SLUICE_WORKERS=${BENCH_SLUICE_WORKERS:-0}
BENCH_SLUICE_SCHEDULER=${BENCH_SLUICE_SCHEDULER:-pinned}
BENCH_PAUSE=${BENCH_PAUSE:-1}

# Targets: split QPS >= QPS_TARGET x direct; split CPU/query <= CPU_TARGET x passthru's.
QPS_TARGET=2.4
CPU_TARGET=1.1

OUT="$ROOT/.bench-out/routing-$(date +%Y-%m-%d).md"
DO_INSTALL=1
DO_BUILD=1

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

BENCH_TAG=bench-routing
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
bench_args "$@"

for t in $BENCH_TARGETS; do
    case $t in direct|split|passthru|haproxy) ;; *) die "unknown target $t in BENCH_TARGETS" ;; esac
done
case " $BENCH_TARGETS " in *" direct "*) ;; *) die "BENCH_TARGETS must include direct (the ratios are relative to it)" ;; esac
[[ $BENCH_ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer"
[[ $BENCH_REPLICAS =~ ^[0-9]+$ ]] || die "BENCH_REPLICAS must be a number"

bench_setup
PIN_LOAD=()
PIN_PROXY=()
PIN_CLIENT=()
PIN_DESC="none (every process free to use every CPU)"
if [ "$BENCH_PIN" = 1 ]; then
    ncpu=$(nproc)
    [ "$ncpu" -ge 2 ] || die "BENCH_PIN=1 needs at least 2 CPUs"
    last=$((ncpu - 1))
    others="0-$((ncpu - 2))"
    PIN_LOAD=(taskset -c "$last")   # bench-lib starts the cluster with it
    PIN_PROXY=(taskset -c "$others")
    PIN_CLIENT=(taskset -c "$others")
    PIN_DESC="taskset: every mariadbd on CPU $last; proxies and sysbench on CPU $others"
fi

# ---------------------------------------------------------------------------------------
# Work directory and teardown.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-routing.XXXXXX")
RAW="$ROOT/.bench-out/raw-routing-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RAW" "$(dirname "$OUT")"
CHAOS_PID=""
HAPROXY_PID=""
SPLIT_PID=""
PASS_PID=""
SYSBENCH_PID=""

TORN_DOWN=0
teardown() {
    [ "$TORN_DOWN" = 1 ] && return 0
    TORN_DOWN=1
    set +e
    stop_pid "$SYSBENCH_PID" sysbench 5
    stop_pid "$SPLIT_PID" sluice-split 10
    stop_pid "$PASS_PID" sluice-passthru 10
    stop_pid "$HAPROXY_PID" haproxy 5
    # chaos stops its mariadbd processes and removes its directory and cgroups on SIGTERM.
    stop_pid "$CHAOS_PID" chaos 60
    [ -d "$WORK" ] && cp -f "$WORK"/*.log "$WORK"/*.cfg "$WORK"/*.toml "$WORK"/*.tsv "$RAW"/ 2>/dev/null
    rm -rf "$WORK"
}
trap teardown EXIT
trap 'log "interrupted"; teardown; exit 130' INT
trap 'log "terminated"; teardown; exit 143' TERM

# ---------------------------------------------------------------------------------------
# Cluster.

CHAOS_ARGS=(--replicas "$BENCH_REPLICAS")
QUOTA_DESC="none (BENCH_CPU_QUOTA=0)"
QUOTA_ON=0
if awk -v q="$BENCH_CPU_QUOTA" 'BEGIN { exit !(q + 0 > 0) }'; then
    CHAOS_ARGS+=(--cpu-quota "$BENCH_CPU_QUOTA")
    QUOTA_ON=1
fi
log "starting the MariaDB cluster (chaos cluster ${CHAOS_ARGS[*]})"
start_cluster "${CHAOS_ARGS[@]}"
cp -f "$WORK/cluster.json" "$RAW/"

# Per node (primary first): port, mariadbd pid, and the file its CPU usage is read from
# (cgroup v2 cpu.stat, cgroup v1 cpuacct.usage, or /proc/PID/stat without a quota).
mapfile -t NODE_INFO < <(python3 - "$WORK/cluster.json" <<'PY'
import json, os, sys
state = json.load(open(sys.argv[1]))
for node in state["nodes"]:
    usage = "proc"
    for group in node.get("cgroups", []):
        if os.path.exists(os.path.join(group, "cpuacct.usage")):
            usage = os.path.join(group, "cpuacct.usage")
            break
        stat = os.path.join(group, "cpu.stat")
        if os.path.exists(stat) and "usage_usec" in open(stat).read():
            usage = stat
            break
    print(node["port"], node["pid"], usage, node["role"], (node.get("cgroups") or ["-"])[0])
PY
)
NNODES=${#NODE_INFO[@]}
NODE_PORTS=(); NODE_PIDS=(); NODE_USAGE=()
for line in "${NODE_INFO[@]}"; do
    read -r port pid usage role group <<<"$line"
    NODE_PORTS+=("$port"); NODE_PIDS+=("$pid"); NODE_USAGE+=("$usage")
    log "node$(( ${#NODE_PORTS[@]} - 1 )): $role 127.0.0.1:$port, mariadbd pid $pid, cgroup $group"
done
if [ "$QUOTA_ON" = 1 ]; then
    QUOTA_DESC="$BENCH_CPU_QUOTA CPU per mariadbd ($(sed -n 's/^  CPU quota: [^(]*(\([^,]*\),.*/\1/p' "$WORK/chaos.log") cpu controller)"
    [ "${NODE_USAGE[0]}" != proc ] || die "no cgroup CPU accounting found for the nodes"
fi

# CPU time a node has used, in microseconds.
node_cpu_us() {
    local file=${NODE_USAGE[$1]}
    case $file in
        proc) echo $(( $(cpu_ticks "${NODE_PIDS[$1]}") * 1000000 / CLK_TCK )) ;;
        */cpuacct.usage) echo $(( $(cat "$file") / 1000 )) ;;
        *) awk '$1 == "usage_usec" { print $2 }' "$file" ;;
    esac
}

# "com_select questions" of a node.
node_counters() {
    "$MYSQL_CLIENT" --no-defaults -h127.0.0.1 -P"${NODE_PORTS[$1]}" -uroot -N -B -e \
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_select', 'Questions')" |
        awk '$1 == "Com_select" { s = $2 } $1 == "Questions" { q = $2 } END { print s + 0, q + 0 }'
}

# Every node's counters and CPU: "sel,sel,... q,q,... us,us,...".
snapshot() {
    local i sel=() q=() us=() c
    for ((i = 0; i < NNODES; i++)); do
        read -r -a c < <(node_counters "$i")
        sel+=("${c[0]}"); q+=("${c[1]}"); us+=("$(node_cpu_us "$i")")
    done
    local IFS=,
    echo "${sel[*]} ${q[*]} ${us[*]}"
}

# Element-wise difference of two comma-separated lists.
list_delta() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, ","); split(b, y, ",")
        for (i = 1; i <= n; i++) printf "%s%d", (i > 1 ? "," : ""), y[i] - x[i]
        print ""
    }'
}

SB_COMMON=(--mysql-user=app --mysql-password=app --mysql-db=sbtest
    --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE")
log "preparing sysbench tables ($BENCH_TABLES x $BENCH_TABLE_SIZE rows)"
sysbench oltp_read_only --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" \
    "${SB_COMMON[@]}" --threads="$BENCH_TABLES" prepare >"$WORK/sysbench-prepare.log" 2>&1 \
    || { cat "$WORK/sysbench-prepare.log" >&2; die "sysbench prepare failed"; }
position=$("$MYSQL_CLIENT" --no-defaults -h127.0.0.1 -P"$PRIMARY_PORT" -uroot -N -B -e 'SELECT @@gtid_binlog_pos')
for ((i = 1; i < NNODES; i++)); do
    reached=$("$MYSQL_CLIENT" --no-defaults -h127.0.0.1 -P"${NODE_PORTS[$i]}" -uroot -N -B \
        -e "SELECT MASTER_GTID_WAIT('$position', 300)")
    [ "$reached" = 0 ] || die "node$i did not replicate the sysbench tables within 300 s"
done
# Warm every node's buffer pool so the first measured run does not pay for it.
for ((i = 0; i < NNODES; i++)); do
    sysbench oltp_read_only --mysql-host=127.0.0.1 --mysql-port="${NODE_PORTS[$i]}" \
        "${SB_COMMON[@]}" prewarm >>"$WORK/sysbench-prepare.log" 2>&1 || true
done

# ---------------------------------------------------------------------------------------
# Proxies.

declare -A PORT_OF PID_OF
PORT_OF[direct]=$PRIMARY_PORT
PID_OF[direct]=""
case " $BENCH_TARGETS " in *" haproxy "*)
    start_haproxy "$PRIMARY"
    PORT_OF[haproxy]=$HAPROXY_PORT; PID_OF[haproxy]=$HAPROXY_PID ;;
esac
case " $BENCH_TARGETS " in *" split "*)
    start_sluice sluice-split "$BENCH_SLUICE_SCHEDULER" "$BENCH_SLUICE_WORKERS" "
[routing]
read_write_split = true
consistency = \"$BENCH_CONSISTENCY\"
policy = \"$BENCH_POLICY\"
primary_read_weight = $BENCH_PRIMARY_READ_WEIGHT"
    SPLIT_PID=$STARTED_PID; PORT_OF[split]=$STARTED_PORT; PID_OF[split]=$STARTED_PID ;;
esac
case " $BENCH_TARGETS " in *" eventual "*)
    start_sluice sluice-eventual "$BENCH_SLUICE_SCHEDULER" "$BENCH_SLUICE_WORKERS" "
[routing]
read_write_split = true
consistency = \"eventual\"
policy = \"$BENCH_POLICY\"
primary_read_weight = $BENCH_PRIMARY_READ_WEIGHT"
    PORT_OF[eventual]=$STARTED_PORT; PID_OF[eventual]=$STARTED_PID ;;
esac
case " $BENCH_TARGETS " in *" passthru "*)
    start_sluice sluice-passthru "$BENCH_SLUICE_SCHEDULER" "$BENCH_SLUICE_WORKERS" "
[routing]
read_write_split = false"
    PASS_PID=$STARTED_PID; PORT_OF[passthru]=$STARTED_PORT; PID_OF[passthru]=$STARTED_PID ;;
esac

# ---------------------------------------------------------------------------------------
# Runs.

read -r -a TARGET_LIST <<<"$BENCH_TARGETS"
NTARGETS=${#TARGET_LIST[@]}
NRUNS=$((NTARGETS * BENCH_ROUNDS))
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
log "running $NRUNS sysbench runs of ${BENCH_SECONDS}s in $BENCH_ROUNDS round(s) (about $((NRUNS * (BENCH_SECONDS + BENCH_PAUSE + 2) / 60 + 1)) min)"

run=0
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    # Rotate the order so that a drift of the machine's load does not favour one target.
    shift_by=$(( (round - 1) % NTARGETS ))
    order="${TARGET_LIST[*]:shift_by} ${TARGET_LIST[*]:0:shift_by}"
    for target in $order; do
        run=$((run + 1))
        port=${PORT_OF[$target]}; ppid=${PID_OF[$target]}
        logf="$RAW/$target-r$round.log"
        log "[$run/$NRUNS] round $round -> $target"
        p0=0; [ -n "$ppid" ] && p0=$(cpu_ticks "$ppid")
        read -r sel0 q0 us0 < <(snapshot)
        t0=$(date +%s%N)
        set +e
        "${PIN_CLIENT[@]}" sysbench "$BENCH_WORKLOAD" --mysql-host=127.0.0.1 --mysql-port="$port" \
            "${SB_COMMON[@]}" --threads="$BENCH_THREADS" --time="$BENCH_SECONDS" \
            --db-ps-mode="$BENCH_PS_MODE" --skip_trx="$BENCH_SKIP_TRX" --report-interval=0 \
            run >"$logf" 2>&1 &
        SYSBENCH_PID=$!
        wait "$SYSBENCH_PID"
        rc=$?
        SYSBENCH_PID=""
        set -e
        t1=$(date +%s%N)
        read -r sel1 q1 us1 < <(snapshot)
        p1=0; [ -n "$ppid" ] && p1=$(cpu_ticks "$ppid")
        if [ "$rc" -ne 0 ] || ! stats=$(parse_sysbench "$logf"); then
            log "sysbench failed (exit $rc); last lines of $logf:"
            tail -n 5 "$logf" >&2
            stats="- - 0 - - failed"
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$stats" "$((p1 - p0))" \
            "$(( (t1 - t0) / 1000 ))" "$(list_delta "$sel0" "$sel1")" \
            "$(list_delta "$q0" "$q1")" "$(list_delta "$us0" "$us1")" >>"$RESULTS"
        sleep "$BENCH_PAUSE"
    done
done

SPLIT_HWM=""; [ -n "$SPLIT_PID" ] && SPLIT_HWM=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$SPLIT_PID/status" 2>/dev/null || true)

# ---------------------------------------------------------------------------------------
# Report.

# Per-round values of one figure, fed to median_range: "median (lowest–highest)".
summarize() {
    local m lo hi n
    read -r m lo hi n < <(median_range)
    [ "$n" = 0 ] && { echo "-"; return; }
    m=$(printf '%.2f' "$m"); lo=$(printf '%.2f' "$lo"); hi=$(printf '%.2f' "$hi")
    if [ "$lo" = "$hi" ]; then echo "$m"; else echo "$m ($lo–$hi)"; fi
}
median_of() { median_range | cut -d' ' -f1; }

# ratio_per_round NUM DEN FIELD: per-round ratio of FIELD (qps or cpu = proxy µs per query)
# between two targets.
ratio_per_round() {
    awk -F'\t' -v a="$1" -v b="$2" -v f="$3" -v tck="$CLK_TCK" '
        {
            split($3, s, " ")
            v = (f == "qps") ? s[2] : ((s[3] > 0) ? $4 * 1e6 / tck / s[3] : "")
            if (s[2] == "-") v = ""
            val[$1, $2] = v; rounds[$1] = 1
        }
        END {
            for (r in rounds)
                if (val[r, a] != "" && val[r, b] != "" && val[r, b] > 0) print val[r, a] / val[r, b]
        }' "$RESULTS"
}

# per_target TARGET FIELD: the per-round values of qps or proxy µs/query of one target.
per_target() {
    awk -F'\t' -v t="$1" -v f="$2" -v tck="$CLK_TCK" '
        $2 == t { split($3, s, " ")
            if (s[2] == "-") next
            if (f == "qps") print s[2]; else if (s[3] > 0) print $4 * 1e6 / tck / s[3] }' "$RESULTS"
}

# node_shares TARGET: per node, the median over the rounds of its share of the SELECTs (%).
node_shares() {
    local i out=""
    for ((i = 0; i < NNODES; i++)); do
        local m
        m=$(awk -F'\t' -v t="$1" -v i="$((i + 1))" '
            $2 == t { n = split($6, v, ","); tot = 0; for (k = 1; k <= n; k++) tot += v[k]
                if (tot > 0) print 100 * v[i] / tot }' "$RESULTS" | median_of)
        [ "$m" = "-" ] || m=$(printf '%.0f %%' "$m")
        out="$out | $m"
    done
    echo "$out"
}

verdict() { # value target "ge"|"le"
    awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
        if (v == "-" || v == "") { print "n/a"; exit }
        ok = (op == "ge") ? v >= t : v <= t
        print ok ? "PASS" : "FAIL"
    }'
}

report() {
    local cpu_model rev dirty i t
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=""
    if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then dirty=" (with uncommitted changes)"; fi
    echo "# Sluice read-scaling benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    echo "- Machine: $(nproc) CPU ($cpu_model), Linux $(uname -r), load average before the runs: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- Versions: $(sysbench --version), $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3), $(mariadbd --version 2>/dev/null | sed 's/.*Ver \([^ ]*\).*/MariaDB \1/'), Sluice at $rev$dirty"
    echo "- Cluster: 1 primary + $BENCH_REPLICAS replicas; CPU quota: $QUOTA_DESC; CPU pinning: $PIN_DESC"
    echo "- Workload: sysbench $BENCH_WORKLOAD, $BENCH_THREADS threads, ${BENCH_SECONDS}s per run, $BENCH_ROUNDS round(s), $BENCH_TABLES x $BENCH_TABLE_SIZE rows, --db-ps-mode=$BENCH_PS_MODE, --skip_trx=$BENCH_SKIP_TRX (on: no BEGIN/COMMIT around the reads, for every target; a transaction would go to the primary as a whole)"
    echo "- Sluice: scheduler = $BENCH_SLUICE_SCHEDULER, worker_threads = $BENCH_SLUICE_WORKERS; split: read_write_split = true, consistency = $BENCH_CONSISTENCY, policy = $BENCH_POLICY, primary_read_weight = $BENCH_PRIMARY_READ_WEIGHT; passthru: read_write_split = false"
    echo "- Proxy CPU per query: utime+stime of the proxy process over the run (/proc/PID/stat) / queries sysbench completed. Node CPU: CPU time of each node's cgroup over the run / wall time, in CPUs."
    echo
    echo "## Runs"
    echo
    local head="| round | target | QPS | avg ms | p95 ms | proxy CPU µs/query |" sep="|---:|---|---:|---:|---:|---:|"
    for ((i = 0; i < NNODES; i++)); do head="$head node$i SELECTs |"; sep="$sep---:|"; done
    for ((i = 0; i < NNODES; i++)); do head="$head node$i CPUs |"; sep="$sep---:|"; done
    echo "$head errors |"
    echo "$sep---:|"
    awk -F'\t' -v tck="$CLK_TCK" '{
        split($3, s, " ")
        pc = ($2 == "direct" || s[3] <= 0) ? "-" : sprintf("%.1f", $4 * 1e6 / tck / s[3])
        n = split($6, sel, ","); split($8, us, ",")
        line = sprintf("| %s | %s | %s | %s | %s | %s |", $1, $2, s[2], s[4], s[5], pc)
        for (k = 1; k <= n; k++) line = line sprintf(" %d |", sel[k])
        for (k = 1; k <= n; k++) line = line sprintf(" %.2f |", ($5 > 0) ? us[k] / $5 : 0)
        print line " " s[6] " |"
    }' "$RESULTS"
    echo
    echo "## Summary (median over the rounds, lowest–highest in brackets)"
    echo
    echo "| target | QPS | QPS / direct | proxy CPU µs/query |$(for ((i = 0; i < NNODES; i++)); do printf ' node%d share of SELECTs |' "$i"; done)"
    echo "|---|---:|---:|---:|$(for ((i = 0; i < NNODES; i++)); do printf -- '---:|'; done)"
    for t in "${TARGET_LIST[@]}"; do
        local qps ratio cpu
        qps=$(per_target "$t" qps | median_range | awk '{ print ($1 == "-") ? "-" : sprintf("%.0f", $1) }')
        ratio=$(ratio_per_round "$t" direct qps | summarize)
        cpu="-"; [ "$t" = direct ] || cpu=$(per_target "$t" cpu | summarize)
        echo "| $t | $qps | $ratio | $cpu$(node_shares "$t") |"
    done
    echo
    echo "## Targets"
    echo
    local b_a c_b warning=""
    if [ -n "${PORT_OF[split]:-}" ]; then
        b_a=$(ratio_per_round split direct qps | median_of)
        echo "- Read scaling, split / direct QPS: $(ratio_per_round split direct qps | summarize) — target ≥ $QPS_TARGET (at most 3 with three equal nodes): **$(verdict "$b_a" "$QPS_TARGET" ge)**"
    fi
    if [ -n "${PORT_OF[split]:-}" ] && [ -n "${PORT_OF[passthru]:-}" ]; then
        c_b=$(ratio_per_round split passthru cpu | median_of)
        echo "- Sluice CPU per query, split / passthru: $(ratio_per_round split passthru cpu | summarize) — target ≤ $CPU_TARGET: **$(verdict "$c_b" "$CPU_TARGET" le)**"
    fi
    if [ -n "${PORT_OF[split]:-}" ] && [ -n "${PORT_OF[eventual]:-}" ]; then
        echo "- Consistency ($BENCH_CONSISTENCY) against none: split / eventual QPS $(ratio_per_round split eventual qps | summarize), Sluice CPU per query $(ratio_per_round split eventual cpu | summarize)"
    fi
    if [ -n "${PORT_OF[split]:-}" ] && [ "$NNODES" -gt 1 ]; then
        local replica_share
        replica_share=$(awk -F'\t' '$2 == "split" { n = split($6, v, ","); for (k = 1; k <= n; k++) { tot += v[k]; if (k > 1) rep += v[k] } }
            END { print (tot > 0) ? 100 * rep / tot : 0 }' "$RESULTS")
        if awk -v s="$replica_share" 'BEGIN { exit !(s < 5) }'; then
            warning="**Warning:** in the split runs the replicas executed $(printf '%.1f' "$replica_share") % of the SELECTs: this Sluice build does not route reads to replicas (read/write splitting not implemented or not active), so the split figures are pass-through figures."
        fi
    fi
    if [ -n "$SPLIT_HWM" ]; then
        echo "- Sluice (split) peak RSS: $SPLIT_HWM kB"
    fi
    local nwarn
    for t in split passthru eventual; do
        [ -f "$WORK/sluice-$t.log" ] || continue
        nwarn=$(grep -c -E 'WARN|ERROR' "$WORK/sluice-$t.log" || true)
        echo "- Sluice ($t) log: $nwarn WARN/ERROR lines"
    done
    if [ -n "$warning" ]; then
        echo
        echo "$warning"
    fi
    echo
    echo "Raw sysbench output: \`${RAW#"$ROOT"/}/\`"
}

report >"$OUT"
cp -f "$RESULTS" "$RAW/results.tsv"
echo
cat "$OUT"
echo
log "results written to $OUT"
