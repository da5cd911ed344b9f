#!/usr/bin/env bash
# Soak test (not CI): a release Sluice in front of a real MariaDB primary and replica
# (`chaos cluster --replicas 1`, read/write splitting on) under mixed load for DURATION:
#
#   - sysbench oltp_read_write through Sluice (SOAK_THREADS threads);
#   - SOAK_LEAVERS PyMySQL clients in a loop: connect, start a large unbuffered SELECT
#     (about 128 MiB), read a random few rows, then leave mid-result: by conn.close()
#     (COM_QUIT, then close), by closing the socket outright (RST), or by stopping to
#     read with the socket left open (PyMySQL's conn._sock.close(): its buffered reader
#     keeps the descriptor; these connections are held until 30 s after the load, so
#     only Sluice's proxy.client_write_timeout_ms — SOAK_WRITE_TIMEOUT_MS, 5000 here —
#     can end their sessions);
#   - SOAK_SLOW slow readers: the same kind of SELECT (16 MiB), read at ~2 MiB/s to the
#     end;
#
# and samples Sluice's RSS (/proc/PID/status VmRSS) and open descriptors (/proc/PID/fd)
# every SOAK_SAMPLE seconds. At the end the load stops, Sluice gets 15 s to settle, is
# sampled once more and stopped with SIGTERM (while the stalled clients still hold
# their sockets). The run passes when
#   - RSS is flat: the last sample under load is within 25 % (+4 MiB) of the sample
#     taken once the load had warmed up (after a tenth of the run);
#   - descriptors come back: after the load, at most 8 more than before it, not
#     counting pooled backend connections (kept idle up to pool.idle_timeout_ms);
#   - shutdown reports no session left open.
#
# Usage: scripts/soak.sh [--no-install] [--no-build]
#   DURATION      seconds of load [1800]
#   SOAK_SAMPLE   seconds between samples [10]
#   SOAK_THREADS  sysbench threads [8]
#   SOAK_LEAVERS  clients leaving mid-result [4]
#   SOAK_SLOW     slow readers [2]
#   SOAK_WRITE_TIMEOUT_MS  Sluice's proxy.client_write_timeout_ms [5000]
#   SOAK_OUT      report file [$TMPDIR/sluice-soak-DATE.txt]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BENCH_TAG=soak
DO_INSTALL=1
DO_BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --no-install) DO_INSTALL=0; shift ;;
        --no-build) DO_BUILD=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
DURATION=${DURATION:-1800}
SAMPLE=${SOAK_SAMPLE:-10}
THREADS=${SOAK_THREADS:-8}
LEAVERS=${SOAK_LEAVERS:-4}
SLOW=${SOAK_SLOW:-2}
WRITE_TIMEOUT_MS=${SOAK_WRITE_TIMEOUT_MS:-5000}
OUT=${SOAK_OUT:-${TMPDIR:-/tmp}/sluice-soak-$(date +%Y%m%d-%H%M%S).txt}
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
# The soak needs no HAProxy (bench-lib's list has it for the benchmarks).
missing_packages() {
    local need=()
    command -v sysbench >/dev/null || need+=(sysbench)
    command -v mariadb >/dev/null || command -v mysql >/dev/null || need+=(mariadb-client)
    command -v mariadbd >/dev/null || command -v mysqld >/dev/null || need+=(mariadb-server)
    echo "${need[@]:-}"
}
PIN_LOAD=()
PIN_PROXY=()
bench_setup
if ! python3 -c 'import pymysql' 2>/dev/null; then
    [ "$DO_INSTALL" = 1 ] || die "PyMySQL missing (run without --no-install)"
    log "installing PyMySQL 1.1.1"
    python3 -m pip install --quiet pymysql==1.1.1 || python3 -m pip install --quiet --break-system-packages pymysql==1.1.1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-soak.XXXXXX")
SLUICE_PID=
CHAOS_PID=
SYSBENCH_PID=
LOAD_PIDS=()
cleanup() {
    local p
    for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_pid "$SYSBENCH_PID" sysbench 5
    stop_pid "$SLUICE_PID" sluice 15
    stop_pid "$CHAOS_PID" chaos 60
}
trap cleanup EXIT

log "starting MariaDB (chaos cluster --replicas 1)"
start_cluster --replicas 1
log "primary $PRIMARY, replica $REPLICAS"
SB=(--mysql-user=app --mysql-password=app --mysql-db=sbtest --tables=4 --table-size=10000)
sysbench oltp_read_write --mysql-host=127.0.0.1 --mysql-port="$PRIMARY_PORT" "${SB[@]}" prepare >"$WORK/sysbench-prepare.log" 2>&1 ||
    { cat "$WORK/sysbench-prepare.log" >&2; die "sysbench prepare failed"; }

SLUICE_PROXY_EXTRA="client_write_timeout_ms = $WRITE_TIMEOUT_MS" start_sluice sluice pinned 0 "[routing]
read_write_split = true"
SLUICE_PID=$STARTED_PID
SLUICE_PORT=$STARTED_PORT

# Backend ports: a descriptor of a connection to one of them is a pooled backend
# connection (kept idle up to pool.idle_timeout_ms after the load, by design).
BACKEND_PORTS=" $PRIMARY_PORT $(tr ',' '\n' <<<"$REPLICAS" | sed 's/.*://' | tr '\n' ' ')"
sample() { # label
    local rss fds backend
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SLUICE_PID/status" 2>/dev/null || echo 0)
    fds=$(find "/proc/$SLUICE_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    backend=$(ss -tnpH state established 2>/dev/null | grep "pid=$SLUICE_PID," |
        awk -v ports="$BACKEND_PORTS" '{ n = split($4, a, ":"); if (index(ports, " " a[n] " ")) c++ } END { print c + 0 }')
    printf '%s %s %s %s %s\n' "$(date +%s)" "$1" "$rss" "$fds" "$backend" >>"$WORK/samples.txt"
    [ "$1" = after ] && ss -tanpH 2>/dev/null | grep "pid=$SLUICE_PID," >"$WORK/sockets-after.txt" || true
}
: >"$WORK/samples.txt"
sample before

log "load for ${DURATION}s: sysbench ($THREADS threads), $LEAVERS leaving mid-result, $SLOW slow readers"
sysbench oltp_read_write --mysql-host=127.0.0.1 --mysql-port="$SLUICE_PORT" "${SB[@]}" \
    --threads="$THREADS" --time="$DURATION" --report-interval=60 --mysql-ignore-errors=1213,1205,1020 \
    run >"$WORK/sysbench.log" 2>&1 &
SYSBENCH_PID=$!

cat >"$WORK/clients.py" <<'EOF'
"""Soak clients: leavers (leave a large result mid-way) and slow readers."""
import random, socket, sys, time
import pymysql, pymysql.cursors

kind, port, seconds, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
end = time.time() + seconds
rounds = errors = 0
held = []  # connections that stopped reading, sockets open
while time.time() < end:
    try:
        conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app", database="test",
                               cursorclass=pymysql.cursors.SSCursor, connect_timeout=10, read_timeout=120)
        cur = conn.cursor()
        if kind == "leave":
            cur.execute("SELECT seq, REPEAT('x', 65536) FROM seq_1_to_2000")
            for _ in range(rng.randrange(0, 200)):
                if cur.fetchone() is None:
                    break
            mode = rng.choice(("quit", "abort", "stall"))
            if mode == "quit":
                conn.close()  # COM_QUIT mid-result, then close
            elif mode == "abort":
                conn._rfile.close()  # gone without a word: the descriptor closes (RST)
                conn._sock.close()
            else:
                # PyMySQL's buffered reader keeps the descriptor open: a client that
                # stopped reading. The cursor is held too (dropping an unbuffered
                # cursor reads the rest of its result), until after the load.
                conn._sock.close()
                held.append((conn, cur))
        else:
            cur.execute("SELECT seq, REPEAT('x', 65536) FROM seq_1_to_256")
            while cur.fetchone() is not None:
                time.sleep(0.03)  # ~2 MiB/s
            conn.close()
        rounds += 1
    except Exception as e:  # a failed round is counted, the loop goes on
        errors += 1
        print(f"{kind}: {type(e).__name__}: {e}", file=sys.stderr)
        time.sleep(0.5)
print(f"{kind} rounds={rounds} errors={errors} stalled={len(held)}", flush=True)
if held:
    time.sleep(30)
# Skip the destructors: dropping a held unbuffered cursor would read the rest of its result.
import os
os._exit(0)
EOF
for ((i = 0; i < LEAVERS; i++)); do
    python3 "$WORK/clients.py" leave "$SLUICE_PORT" "$DURATION" "$i" >"$WORK/leave-$i.out" 2>"$WORK/leave-$i.err" &
    LOAD_PIDS+=($!)
done
for ((i = 0; i < SLOW; i++)); do
    python3 "$WORK/clients.py" slow "$SLUICE_PORT" "$DURATION" "$((100 + i))" >"$WORK/slow-$i.out" 2>"$WORK/slow-$i.err" &
    LOAD_PIDS+=($!)
done

started=$(date +%s)
warm_at=$((started + DURATION / 10))
warm_done=0
while kill -0 "$SYSBENCH_PID" 2>/dev/null; do
    sleep "$SAMPLE"
    now=$(date +%s)
    if [ "$warm_done" = 0 ] && [ "$now" -ge "$warm_at" ]; then
        sample warm
        warm_done=1
    else
        sample load
    fi
done
wait "$SYSBENCH_PID" 2>/dev/null || true
SYSBENCH_PID=
sample last-load
log "load done; letting Sluice settle for 15 s (stalled clients still hold their sockets)"
sleep 15
sample after
stop_pid "$SLUICE_PID" sluice 30
SLUICE_PID=
for p in "${LOAD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
LOAD_PIDS=()

{
    echo "Sluice soak: ${DURATION}s, sysbench $THREADS threads, $LEAVERS leavers, $SLOW slow readers; $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "sysbench: $(parse_sysbench "$WORK/sysbench.log" | awk '{ printf "%s tps, %s qps, %s queries, avg %s ms, p95 %s ms, %s ignored errors", $1, $2, $3, $4, $5, $6 }')"
    cat "$WORK"/leave-*.out "$WORK"/slow-*.out | awk '{ split($2, r, "="); split($3, e, "="); split($4, st, "="); n[$1] += r[2]; err[$1] += e[2]; s[$1] += st[2] } END { for (k in n) printf "%s: %d rounds (%d of them stopped reading, socket open), %d errors\n", k, n[k], s[k], err[k] }'
    echo "sessions ended by client_write_timeout_ms ($WRITE_TIMEOUT_MS ms): $(grep -c 'read nothing for' "$WORK/sluice.log" || true)"
    awk '
        { rss[NR] = $3; fd[NR] = $4; lab[NR] = $2 }
        $2 == "before" { fd0 = $4; rss0 = $3; be0 = $5 }
        $2 == "warm" { rssw = $3 }
        $2 == "last-load" { rssl = $3 }
        $2 == "after" { fda = $4; rssa = $3; bea = $5 }
        $3 > rssmax { rssmax = $3 } $4 > fdmax { fdmax = $4 }
        END {
            if (rssw == "") rssw = rss[2]
            printf "RSS KiB: before %d, warm %d, last under load %d, after %d, max %d\n", rss0, rssw, rssl, rssa, rssmax
            printf "fds: before %d (%d pooled backend connections), after %d (%d pooled backend connections), max %d (samples: %d)\n", fd0, be0, fda, bea, fdmax, NR
            rss_ok = (rssl <= rssw * 1.25 + 4096)
            # Pooled backend connections are kept by design; everything else must be back.
            fd_ok = (fda - bea <= fd0 - be0 + 8)
            printf "RSS flat: %s\nfds back: %s\n", rss_ok ? "yes" : "NO", fd_ok ? "yes" : "NO"
        }' "$WORK/samples.txt"
    if grep -q "sessions still open" "$WORK/sluice.log"; then
        echo "shutdown: $(grep "sessions still open" "$WORK/sluice.log" | tail -1)"
    else
        echo "shutdown: no session left open"
    fi
} | tee "$OUT"
cp "$WORK/samples.txt" "${OUT%.txt}-samples.txt"
log "report: $OUT (samples: ${OUT%.txt}-samples.txt; logs in $WORK)"
grep -q "RSS flat: yes" "$OUT" && grep -q "fds back: yes" "$OUT" && grep -q "no session left open" "$OUT"
