#!/usr/bin/env bash
# Sluice throughput / CPU benchmark against HAProxy and a direct connection.
#
# Starts a real MariaDB cluster (`chaos cluster --replicas 1`), fills sysbench tables,
# puts HAProxy (TCP mode) and Sluice in front of the primary, and runs sysbench
# against all three for each workload x thread count x prepared-statement mode, in one
# run. For each sysbench run it records transactions/s, queries/s, average and 95th
# percentile latency, and the CPU time (utime+stime from /proc/PID/stat) that the proxy
# process and the primary mariadbd used during the run, per query. At the end it prints
# a markdown table, the Sluice/HAProxy and Sluice/direct ratios with pass/fail against
# the targets, and Sluice's peak RSS, and writes the same to --out FILE.
#
# Usage: scripts/bench.sh [--out FILE] [--no-install] [--no-build] [-h]
#
# Environment knobs (defaults in brackets):
#   BENCH_SECONDS    duration of each sysbench run [15]
#   BENCH_ROUNDS     rounds [3]: every round runs every combination against all three
#                    targets, rotating their order; ratios are computed per round (the
#                    Sluice and HAProxy runs of one round are minutes apart at most) and
#                    the targets are judged on the median ratio over the rounds
#   BENCH_THREADS    sysbench thread counts [8 64]
#   BENCH_WORKLOADS  sysbench workloads [oltp_point_select oltp_read_only]
#   BENCH_PS_MODES   --db-ps-mode values [auto disable]; auto = server-side prepared
#                    statements (COM_STMT_PREPARE/EXECUTE, binary rows), disable =
#                    COM_QUERY (text protocol)
#   BENCH_TABLES     sysbench tables [4];  BENCH_TABLE_SIZE  rows per table [10000]
#   BENCH_PIN        1 = pin the proxies to the last CPU and sysbench + MariaDB to the
#                    others with taskset [0]
#   BENCH_PAUSE      seconds of idle between runs [1]
#   BENCH_SPLIT      Sluice's [routing] read_write_split [false]: the pass-through
#                    figures are with splitting off (one primary: with it on, reads
#                    still go to the primary, and writes' GTIDs are tracked)
#   BENCH_SLUICE_WORKERS    Sluice's proxy.worker_threads [0 = one per CPU]
#   BENCH_SLUICE_SCHEDULER  Sluice's proxy.scheduler [pinned]: pinned or work-stealing
#   BENCH_ALT_SCHEDULER     when set (pinned or work-stealing), a second Sluice with this
#                    scheduler runs as a fourth target ("sluice-alt") in the same rounds,
#                    and the report gets a second ratio table for it [unset]
#   BENCH_ALT_WORKERS       proxy.worker_threads of that second Sluice
#                    [BENCH_SLUICE_WORKERS]
#   BENCH_ALT_BIN    when set, the second Sluice ("sluice-alt") runs this binary (e.g.
#                    an older build, to measure what a change costs: docs/benchmarks.md
#                    "Metrics cost"), with BENCH_ALT_SCHEDULER defaulting to Sluice's
#
# The default run (3 rounds x 2 workloads x 2 thread counts x 2 ps modes x 3 targets x
# 15 s) takes about 20 minutes plus the build. See docs/benchmarks.md.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

BENCH_SECONDS=${BENCH_SECONDS:-15}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_THREADS=${BENCH_THREADS:-"8 64"}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-"oltp_point_select oltp_read_only"}
BENCH_PS_MODES=${BENCH_PS_MODES:-"auto disable"}
BENCH_TABLES=${BENCH_TABLES:-4}
BENCH_TABLE_SIZE=${BENCH_TABLE_SIZE:-10000}
BENCH_PIN=${BENCH_PIN:-0}
BENCH_PAUSE=${BENCH_PAUSE:-1}
BENCH_SPLIT=${BENCH_SPLIT:-false}

# Targets: Sluice CPU per query <= CPU_TARGET x HAProxy's; Sluice QPS >= QPS_TARGET x HAProxy's.
CPU_TARGET=1.2
QPS_TARGET=0.95

DATE=$(date +%Y-%m-%d)
OUT="$ROOT/.bench-out/results-$DATE.md"
DO_INSTALL=1
DO_BUILD=1

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

BENCH_TAG=bench
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
bench_args "$@"
bench_setup

# ---------------------------------------------------------------------------------------
# Pinning.

NCPU=$(nproc)
PIN_PROXY=()
PIN_LOAD=()
PIN_DESC="none (all processes free to use all $NCPU CPUs)"
if [ "$BENCH_PIN" = 1 ]; then
    if [ "$NCPU" -ge 2 ]; then
        last=$((NCPU - 1))
        PIN_PROXY=(taskset -c "$last")
        others=0
        [ "$last" -gt 1 ] && others="0-$((last - 1))"
        PIN_LOAD=(taskset -c "$others")
        PIN_DESC="taskset: proxies (HAProxy, Sluice) on CPU $last; sysbench and MariaDB on CPU $others"
    else
        log "BENCH_PIN=1 ignored: only $NCPU CPU"
    fi
fi

# ---------------------------------------------------------------------------------------
# Work directory and teardown.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
RAW="$ROOT/.bench-out/raw-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RAW" "$(dirname "$OUT")"
CHAOS_PID=""
HAPROXY_PID=""
SLUICE_PID=""
ALT_PID=""
SYSBENCH_PID=""

TORN_DOWN=0
teardown() {
    [ "$TORN_DOWN" = 1 ] && return 0
    TORN_DOWN=1
    set +e
    stop_pid "$SYSBENCH_PID" sysbench 5
    stop_pid "$SLUICE_PID" sluice 10
    stop_pid "$ALT_PID" sluice-alt 10
    stop_pid "$HAPROXY_PID" haproxy 5
    # chaos stops its mariadbd processes and removes its directory on SIGTERM.
    stop_pid "$CHAOS_PID" chaos 60
    [ -d "$WORK" ] && cp -f "$WORK"/*.log "$WORK"/*.cfg "$WORK"/*.toml "$WORK"/*.tsv "$RAW"/ 2>/dev/null
    rm -rf "$WORK"
}
trap teardown EXIT
trap 'log "interrupted"; teardown; exit 130' INT
trap 'log "terminated"; teardown; exit 143' TERM

# ---------------------------------------------------------------------------------------
# Helpers.

# Context switches (voluntary + involuntary) of all threads of a process.
ctx_switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# CPU time of the waited-for children of this script (cutime + cstime): sysbench's own
# CPU once it has been reaped.
children_ticks() {
    local s
    s=$(cat "/proc/$$/stat")
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $(( ${14} + ${15} ))
}

# Machine-wide "busy steal" clock ticks from /proc/stat (busy = user + nice + system + irq
# + softirq, summed over all CPUs).
machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9; exit }' /proc/stat
}

# Sum of the CPU ticks of the benchmark's long-running processes.
ours_ticks() {
    local pid sum=0
    for pid in $OUR_PIDS; do
        sum=$((sum + $(cpu_ticks "$pid")))
    done
    echo "$sum"
}

now_ticks() { awk -v t="$CLK_TCK" '{ printf "%d\n", $1 * t }' /proc/uptime; }

status_kb() { # pid field -> value in kB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------
# Cluster.

log "starting the MariaDB cluster (chaos cluster --replicas 1)"
start_cluster --replicas 1
# The primary's mariadbd pid: the "pid" that follows "role": "primary" in the state file.
MARIADB_PID=$(awk '/"role": *"primary"/ { p = 1 } p && /"pid":/ { gsub(/[^0-9]/, ""); print; exit }' "$WORK/cluster.json")
# Every mariadbd of the cluster (for the background-load figure).
NODE_PIDS=$(awk '/"pid":/ { gsub(/[^0-9]/, ""); print }' "$WORK/cluster.json" | tr '\n' ' ')
log "primary $PRIMARY (mariadbd pid ${MARIADB_PID:-?}), replicas $REPLICAS"

"$MYSQL_CLIENT" -h127.0.0.1 -P"$PRIMARY_PORT" -uroot -e 'CREATE DATABASE IF NOT EXISTS sbtest'

SB_COMMON=(--mysql-user=app --mysql-password=app --mysql-db=sbtest
    --tables="$BENCH_TABLES" --table-size="$BENCH_TABLE_SIZE")
log "preparing sysbench tables ($BENCH_TABLES x $BENCH_TABLE_SIZE rows)"
"${PIN_LOAD[@]}" sysbench oltp_read_only --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" \
    "${SB_COMMON[@]}" prepare >"$WORK/sysbench-prepare.log" 2>&1 \
    || { cat "$WORK/sysbench-prepare.log" >&2; die "sysbench prepare failed"; }
# Warm the buffer pool so the first measured run does not pay for it.
"${PIN_LOAD[@]}" sysbench oltp_read_only --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" \
    "${SB_COMMON[@]}" prewarm >>"$WORK/sysbench-prepare.log" 2>&1 || true

# ---------------------------------------------------------------------------------------
# HAProxy (our own foreground instance; the Debian service is not used).

start_haproxy "$PRIMARY"

# ---------------------------------------------------------------------------------------
# Sluice.

SLUICE_SCHEDULER=${BENCH_SLUICE_SCHEDULER:-pinned}
SLUICE_WORKERS=${BENCH_SLUICE_WORKERS:-0}
start_sluice sluice "$SLUICE_SCHEDULER" "$SLUICE_WORKERS" "[routing]
read_write_split = $BENCH_SPLIT"
SLUICE_PID=$STARTED_PID; SLUICE_PORT=$STARTED_PORT
TARGETS="direct haproxy sluice"
ALT_PORT=""
if [ -n "${BENCH_ALT_SCHEDULER:-}" ] || [ -n "${BENCH_ALT_BIN:-}" ]; then
    BENCH_ALT_SCHEDULER=${BENCH_ALT_SCHEDULER:-$SLUICE_SCHEDULER}
    ALT_WORKERS=${BENCH_ALT_WORKERS:-$SLUICE_WORKERS}
    [ -z "${BENCH_ALT_BIN:-}" ] || [ -x "$BENCH_ALT_BIN" ] || die "BENCH_ALT_BIN=$BENCH_ALT_BIN is not an executable"
    SLUICE_BIN_FOR_START=${BENCH_ALT_BIN:-} start_sluice sluice-alt "$BENCH_ALT_SCHEDULER" "$ALT_WORKERS" "[routing]
read_write_split = $BENCH_SPLIT"
    ALT_PID=$STARTED_PID; ALT_PORT=$STARTED_PORT
    TARGETS="$TARGETS sluice-alt"
fi
NTARGETS=$(wc -w <<<"$TARGETS")

# ---------------------------------------------------------------------------------------
# Runs.

OUR_PIDS="$NODE_PIDS $HAPROXY_PID $SLUICE_PID $ALT_PID"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
ncombo=0
for _w in $BENCH_WORKLOADS; do for _m in $BENCH_PS_MODES; do for _t in $BENCH_THREADS; do
    ncombo=$((ncombo + 1))
done; done; done
log "running $((ncombo * NTARGETS * BENCH_ROUNDS)) sysbench runs of ${BENCH_SECONDS}s in $BENCH_ROUNDS round(s) (about $((ncombo * NTARGETS * BENCH_ROUNDS * (BENCH_SECONDS + BENCH_PAUSE + 1) / 60 + 1)) min)"

run=0
nruns=$((ncombo * NTARGETS * BENCH_ROUNDS))
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
combo=0
for workload in $BENCH_WORKLOADS; do
    for mode in $BENCH_PS_MODES; do
        for threads in $BENCH_THREADS; do
            # Rotate the order of the targets (by combination and round) so that a slow
            # drift of the machine's background load does not always favour the same one.
            combo=$((combo + 1))
            read -r -a tl <<<"$TARGETS"
            shift_by=$(( (combo + round) % NTARGETS ))
            order="${tl[*]:shift_by} ${tl[*]:0:shift_by}"
            for target in $order; do
                run=$((run + 1))
                case $target in
                    direct) port=$PRIMARY_PORT; ppid="" ;;
                    haproxy) port=$HAPROXY_PORT; ppid=$HAPROXY_PID ;;
                    sluice) port=$SLUICE_PORT; ppid=$SLUICE_PID ;;
                    sluice-alt) port=$ALT_PORT; ppid=$ALT_PID ;;
                esac
                logf="$RAW/$workload-$mode-t$threads-$target-r$round.log"
                log "[$run/$nruns] round $round: $workload ps-mode=$mode threads=$threads -> $target"
                p0=0; [ -n "$ppid" ] && p0=$(cpu_ticks "$ppid")
                x0=0; [ -n "$ppid" ] && x0=$(ctx_switches "$ppid")
                m0=0; [ -n "$MARIADB_PID" ] && m0=$(cpu_ticks "$MARIADB_PID")
                read -r busy0 steal0 < <(machine_ticks)
                o0=$(ours_ticks); c0=$(children_ticks); w0=$(now_ticks)
                set +e
                "${PIN_LOAD[@]}" sysbench "$workload" --mysql-host=127.0.0.1 --mysql-port="$port" \
                    "${SB_COMMON[@]}" --threads="$threads" --time="$BENCH_SECONDS" \
                    --db-ps-mode="$mode" --report-interval=0 run >"$logf" 2>&1 &
                SYSBENCH_PID=$!
                wait "$SYSBENCH_PID"
                rc=$?
                SYSBENCH_PID=""
                set -e
                p1=0; [ -n "$ppid" ] && p1=$(cpu_ticks "$ppid")
                x1=0; [ -n "$ppid" ] && x1=$(ctx_switches "$ppid")
                m1=0; [ -n "$MARIADB_PID" ] && m1=$(cpu_ticks "$MARIADB_PID")
                read -r busy1 steal1 < <(machine_ticks)
                o1=$(ours_ticks); c1=$(children_ticks); w1=$(now_ticks)
                # Busy CPU of everything that is not the benchmark, plus hypervisor steal.
                other=$(( (busy1 - busy0) - (o1 - o0) - (c1 - c0) + (steal1 - steal0) ))
                [ "$other" -lt 0 ] && other=0
                if [ "$rc" -ne 0 ] || ! stats=$(parse_sysbench "$logf"); then
                    log "sysbench failed (exit $rc); last lines of $logf:"
                    tail -n 5 "$logf" >&2
                    stats="- - 0 - - failed"
                fi
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$mode" "$threads" "$target" \
                    "$stats" "$((p1 - p0))" "$((m1 - m0))" "$other" "$(( (w1 - w0) * NCPU ))" "$((x1 - x0))" "$round" >>"$RESULTS"
                sleep "$BENCH_PAUSE"
            done
        done
    done
done
done

SLUICE_HWM=$(status_kb "$SLUICE_PID" VmHWM)
SLUICE_RSS=$(status_kb "$SLUICE_PID" VmRSS)
SLUICE_THREADS=$(status_kb "$SLUICE_PID" Threads)
HAPROXY_HWM=$(status_kb "$HAPROXY_PID" VmHWM)
ALT_HWM=""; [ -n "$ALT_PID" ] && ALT_HWM=$(status_kb "$ALT_PID" VmHWM)
SLUICE_ALIVE=yes
kill -0 "$SLUICE_PID" 2>/dev/null || SLUICE_ALIVE="no (exited during the run)"

# ---------------------------------------------------------------------------------------
# Report.

# ratio_table TARGET: the ratio table of one Sluice target against HAProxy and direct.
# alt_table: Sluice against sluice-alt (BENCH_ALT_BIN) per case: QPS and CPU per query,
# each a median of the per-round ratios [lowest–highest], and over all cases and rounds
# the geometric mean of the QPS ratio with a 95 % interval (t on the log ratios).
alt_table() {
    echo "| workload | ps mode | threads | QPS sluice/alt | CPU per query sluice/alt |"
    echo "|---|---|---:|---:|---:|"
    awk -F'\t' '
        {
            split($5, s, " "); key = $1 "\t" $2 "\t" $3
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            r = $11; if (!((key, r) in rs)) { rs[key, r] = 1; rounds[key] = rounds[key] " " r }
            qps[key, r, $4] = s[2]; q[key, r, $4] = s[3]; ticks[key, r, $4] = $6
        }
        function sort(v, k,   i, j, t) { for (i = 2; i <= k; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t } }
        function cell(v, k) { if (k == 0) return "-"; sort(v, k); return sprintf("%.3f [%.3f–%.3f]", (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2, v[1], v[k]) }
        END {
            all = 0; sl = 0; ss = 0
            for (i = 1; i <= n; i++) {
                key = order[i]; split(key, f, "\t"); m = split(substr(rounds[key], 2), rl, " ")
                delete a; delete c; ka = 0; kc = 0
                for (j = 1; j <= m; j++) {
                    r = rl[j]
                    if (qps[key, r, "sluice-alt"] > 0 && qps[key, r, "sluice"] > 0) {
                        a[++ka] = qps[key, r, "sluice"] / qps[key, r, "sluice-alt"]
                        all++; sl += log(a[ka]); ss += log(a[ka]) ^ 2
                    }
                    if (q[key, r, "sluice"] > 0 && q[key, r, "sluice-alt"] > 0 && ticks[key, r, "sluice-alt"] > 0)
                        c[++kc] = (ticks[key, r, "sluice"] / q[key, r, "sluice"]) / (ticks[key, r, "sluice-alt"] / q[key, r, "sluice-alt"])
                }
                printf "| %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], cell(a, ka), cell(c, kc)
            }
            if (all >= 2) {
                mu = sl / all; sd = sqrt((ss - all * mu * mu) / (all - 1)); if (sd != sd) sd = 0
                h = 1.96 * sd / sqrt(all); if (all <= 30) h = 2.1 * sd / sqrt(all)
                printf "\nQPS sluice/alt over all %d case-rounds: geometric mean %.3f, 95 %% interval [%.3f–%.3f].\n", all, exp(mu), exp(mu - h), exp(mu + h)
            }
        }' "$RESULTS"
}

ratio_table() {
    echo "| workload | ps mode | threads | Sluice/HAProxy QPS | geometric mean, 95 % CI | Sluice/direct QPS | HAProxy/direct QPS | Sluice/HAProxy CPU per query | throughput target | CPU target |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|---|"
    awk -F'\t' -v cpu_t="$CPU_TARGET" -v qps_t="$QPS_TARGET" -v sl="$1" '
        {
            split($5, s, " ")
            key = $1 "\t" $2 "\t" $3
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
            r = $11; if (!((key, r) in rseen)) { rseen[key, r] = 1; rounds[key] = rounds[key] " " r }
            qps[key, r, $4] = s[2]; q[key, r, $4] = s[3]; ticks[key, r, $4] = $6
        }
        function num(x) { return x != "" && x != "-" }
        function ratio(a, b) { return (num(a) && num(b) && b > 0) ? a / b : -1 }
        # Median of the non-negative values in v[1..m] (sorted in place), -1 if none.
        function median(v, m,    i, j, t, k, w) {
            k = 0
            for (i = 1; i <= m; i++) if (v[i] >= 0) w[++k] = v[i]
            if (k == 0) return -1
            for (i = 2; i <= k; i++) { t = w[i]; for (j = i - 1; j >= 1 && w[j] > t; j--) w[j + 1] = w[j]; w[j + 1] = t }
            lo = w[1]; hi = w[k]
            return (k % 2) ? w[(k + 1) / 2] : (w[k / 2] + w[k / 2 + 1]) / 2
        }
        function cell(v, m,    med) {
            med = median(v, m)
            if (med < 0) return "-"
            return (m > 1 && lo != hi) ? sprintf("%.2f (%.2f–%.2f)", med, lo, hi) : sprintf("%.2f", med)
        }
        function fmt(x) { return x < 0 ? "-" : sprintf("%.2f", x) }
        # Two-sided 95 % Student t quantile for df degrees of freedom.
        function tq95(df) {
            if (df < 1) return -1
            if (df <= 10) { split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228", tt, " "); return tt[df] + 0 }
            if (df <= 20) return 2.228 - (df - 10) * (2.228 - 2.086) / 10
            if (df <= 30) return 2.086 - (df - 20) * (2.086 - 2.042) / 10
            return 1.96
        }
        # Geometric mean of the positive values in v[1..m] with a 95 % confidence interval
        # (t interval on the log ratios); sets gm, glo, ghi; returns the count used.
        function geo(v, m,    i, k, s, ss, mu, sd, t, h) {
            k = 0; s = 0; ss = 0
            for (i = 1; i <= m; i++) if (v[i] > 0) { k++; s += log(v[i]); ss += log(v[i]) ^ 2 }
            gm = -1; glo = -1; ghi = -1
            if (k == 0) return 0
            mu = s / k; gm = exp(mu)
            if (k < 2) return k
            sd = sqrt((ss - k * mu * mu) / (k - 1)); if (sd != sd) sd = 0
            h = tq95(k - 1) * sd / sqrt(k)
            glo = exp(mu - h); ghi = exp(mu + h)
            return k
        }
        END {
            pass_q = 0; pass_c = 0
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, f, "\t")
                m = split(substr(rounds[k], 2), rl, " ")
                delete a; delete b; delete c; delete d
                for (j = 1; j <= m; j++) {
                    r = rl[j]
                    a[j] = ratio(qps[k, r, sl], qps[k, r, "haproxy"])
                    b[j] = ratio(qps[k, r, sl], qps[k, r, "direct"])
                    c[j] = ratio(qps[k, r, "haproxy"], qps[k, r, "direct"])
                    ch = (q[k, r, "haproxy"] > 0) ? ticks[k, r, "haproxy"] / q[k, r, "haproxy"] : -1
                    cs = (q[k, r, sl] > 0) ? ticks[k, r, sl] / q[k, r, sl] : -1
                    d[j] = (ch > 0 && cs >= 0) ? cs / ch : -1
                }
                ca = cell(a, m); rsh = median(a, m)
                ng = geo(a, m)
                cg = (ng == 0) ? "-" : (ng < 2 ? sprintf("%.2f", gm) : sprintf("%.2f [%.2f–%.2f]", gm, glo, ghi))
                cb = cell(b, m); cc = cell(c, m)
                cd = cell(d, m); rc = median(d, m)
                tq = (rsh < 0) ? "n/a" : (rsh >= qps_t ? "PASS" : sprintf("FAIL (%.3f, short by %.3f)", rsh, qps_t - rsh))
                # Whether the rounds are enough to tell the case from the threshold.
                if (ng >= 2 && rsh >= 0) {
                    if (rsh >= qps_t && glo < qps_t) tq = tq " (CI reaches below " qps_t ")"
                    if (rsh < qps_t && ghi >= qps_t) tq = tq " (within noise: CI reaches " qps_t ")"
                }
                tc = (rc < 0) ? "n/a" : (rc <= cpu_t ? "PASS" : sprintf("FAIL (%.3f, over by %.3f)", rc, rc - cpu_t))
                if (tq ~ /^PASS/) pass_q++
                if (tc == "PASS") pass_c++
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], ca, cg, cb, cc, cd, tq, tc
            }
            printf "\nThroughput target met in %d of %d cases; CPU target met in %d of %d cases (on the median over the rounds).\n", pass_q, n, pass_c, n
        }' "$RESULTS"
}

report() {
    local cpu_model kernel rev dirty
    cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    kernel=$(uname -r)
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=""
    if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then dirty=" (with uncommitted changes)"; fi
    echo "# Sluice benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    echo "- Machine: $NCPU CPU ($cpu_model), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $kernel, load average before the runs: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- Versions: $(sysbench --version), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(mariadbd --version 2>/dev/null | sed 's/.*Ver \([^ ]*\).*/MariaDB \1/'), Sluice at $rev$dirty"
    echo "- Settings: $BENCH_ROUNDS round(s), ${BENCH_SECONDS}s per run, threads: $BENCH_THREADS, tables: $BENCH_TABLES x $BENCH_TABLE_SIZE rows, ps modes: $BENCH_PS_MODES"
    echo "- Sluice: scheduler = $SLUICE_SCHEDULER, worker_threads = $SLUICE_WORKERS${BENCH_ALT_SCHEDULER:+; target sluice-alt: a second Sluice with scheduler = $BENCH_ALT_SCHEDULER, worker_threads = ${ALT_WORKERS:-}}${BENCH_ALT_BIN:+, binary $BENCH_ALT_BIN}"
    echo "- Pinning: $PIN_DESC"
    echo "- CPU per query: (utime+stime of the process over the run, from /proc/PID/stat, CLK_TCK=$CLK_TCK) / queries sysbench completed"
    echo "- Other load: CPU used during the run by processes outside the benchmark (busy time from /proc/stat minus MariaDB, proxies and sysbench) plus hypervisor steal, in % of all $NCPU CPUs; high values mean the run was disturbed"
    echo
    echo "## Results"
    echo
    echo "| round | workload | ps mode | threads | target | TPS | QPS | avg ms | p95 ms | proxy CPU µs/query | proxy context switches/query | mariadbd CPU µs/query | other load % | errors |"
    echo "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' -v tck="$CLK_TCK" '
        function per_q(ticks, q) { return (q > 0) ? sprintf("%.1f", ticks * 1e6 / tck / q) : "-" }
        {
            split($5, s, " ")
            pc = ($4 == "direct") ? "-" : per_q($6, s[3])
            ol = ($9 > 0) ? sprintf("%.0f", 100 * $8 / $9) : "-"
            cs = ($4 == "direct" || s[3] <= 0) ? "-" : sprintf("%.2f", $10 / s[3])
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                $11, $1, $2, $3, $4, s[1], s[2], s[4], s[5], pc, cs, per_q($7, s[3]), ol, s[6]
        }' "$RESULTS"
    awk -F'\t' '$9 > 0 { n++; if (100 * $8 / $9 > 10) d++ }
        END { if (d > 0) printf "\nWarning: %d of %d runs had more than 10%% other load on the machine; their figures are disturbed.\n", d, n }' "$RESULTS"
    echo
    echo "## Ratios and targets"
    echo
    echo "Targets: Sluice CPU/query <= $CPU_TARGET x HAProxy's; Sluice QPS >= $QPS_TARGET x HAProxy's."
    echo "Each ratio is computed within a round (runs minutes apart at most); the table shows the"
    echo "median over the $BENCH_ROUNDS round(s) with the lowest and highest in brackets, and the"
    echo "targets are judged on the median."
    echo
    ratio_table sluice
    if [ -n "${BENCH_ALT_BIN:-}" ]; then
        echo
        echo "### sluice / sluice-alt ($BENCH_ALT_BIN), same rounds"
        echo
        alt_table
    fi
    if [ -n "$ALT_PORT" ]; then
        echo
        echo "### sluice-alt (scheduler = $BENCH_ALT_SCHEDULER, worker_threads = $ALT_WORKERS${BENCH_ALT_BIN:+, binary $BENCH_ALT_BIN}), same rounds"
        echo
        ratio_table sluice-alt
    fi
    echo
    echo "## Memory and logs"
    echo
    echo "- Sluice peak RSS (VmHWM): ${SLUICE_HWM:-?} kB; RSS at the end: ${SLUICE_RSS:-?} kB; threads: ${SLUICE_THREADS:-?}; still running at the end: $SLUICE_ALIVE"
    echo "- HAProxy peak RSS (VmHWM): ${HAPROXY_HWM:-?} kB"
    if [ -n "$ALT_PID" ]; then echo "- sluice-alt peak RSS (VmHWM): ${ALT_HWM:-?} kB"; fi
    local nwarn
    nwarn=$(grep -c -E 'WARN|ERROR' "$WORK/sluice.log" || true)
    echo "- Sluice log: $nwarn WARN/ERROR lines"
    if [ "${nwarn:-0}" -gt 0 ]; then
        echo
        echo '```'
        grep -E 'WARN|ERROR' "$WORK/sluice.log" | sed 's/\x1b\[[0-9;]*m//g' | head -n 20
        echo '```'
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
