#!/usr/bin/env bash
# What read-after-write consistency costs (issue 12), on a real MariaDB primary and two
# replicas kept 0-50 ms behind: each replica's SQL thread is held back by a table lock in
# random bursts of SLUICE_RW_BURST_MS (so it keeps falling a little behind and catching
# up); SLUICE_RW_DELAY > 0 also delays replica 2 by that many seconds (MASTER_DELAY). Writer sessions update their own key,
# read it back at once, sleep longer than the lag, read it back again, and read another
# key; read-only sessions read random keys; a direct writer updates keys of its own on
# the primary. Each level (eventual, session, instance, global) runs through a fresh
# Sluice (release build) for SLUICE_RW_SECONDS.
#
# Reported per level: the share of reads served by replicas (read-only sessions, own
# reads at once, own reads after the lag), read latency p50/p99 by kind, violations
# (reads older than the level promises; must be 0 except at eventual) and stale reads
# (returned less than the session's own or this Sluice's acknowledged value: the
# control at eventual). The benchmark is proxy/benches/consistency_cost.rs, on the
# runner in proxy/tests/rw/mod.rs, whose default run (proxy/tests/rw_consistency.rs) is
# part of the test suite.
#
# Usage: scripts/bench-consistency.sh [--out FILE] [--rounds N]
#
# Environment knobs (defaults in brackets):
#   SLUICE_RW_SECONDS   seconds per level [20]
#   SLUICE_RW_WRITERS   writer sessions [8];  SLUICE_RW_READERS  read-only sessions [8]
#   SLUICE_RW_PAUSE_MS  writers' pause between the two own reads [200]: longer
#                       than the replicas' lag
#   SLUICE_RW_BURST_MS  MIN-MAX length of the lock bursts in ms [0-50]
#   SLUICE_RW_BURST_REPLICAS  replicas that get them [1,2]
#   SLUICE_RW_DELAY     replica 2's MASTER_DELAY in seconds [0]
#   SLUICE_RW_LEVELS    comma-separated levels [eventual,session,instance,global]
set -euo pipefail
cd "$(dirname "$0")/.."

out=
rounds=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=${2:?--out needs a file}; shift 2 ;;
        --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-consistency.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
out=${out:-${TMPDIR:-/tmp}/sluice-bench-consistency-$(date +%Y%m%d-%H%M%S).txt}

scripts/install-deps.sh >/dev/null
export SLUICE_RW_SECONDS=${SLUICE_RW_SECONDS:-20}
export SLUICE_RW_WRITERS=${SLUICE_RW_WRITERS:-8}
export SLUICE_RW_READERS=${SLUICE_RW_READERS:-8}
export SLUICE_RW_PAUSE_MS=${SLUICE_RW_PAUSE_MS:-200}
export SLUICE_RW_BURST_MS=${SLUICE_RW_BURST_MS:-0-50}
export SLUICE_RW_BURST_REPLICAS=${SLUICE_RW_BURST_REPLICAS:-1,2}
export SLUICE_RW_DELAY=${SLUICE_RW_DELAY:-0}
echo "building (release)" >&2
cargo bench -q -p sluice-proxy --bench consistency_cost --no-run >&2
: > "$out"
for ((round = 1; round <= rounds; round++)); do
    echo "== round $round of $rounds ($(date -u +%Y-%m-%dT%H:%M:%SZ))" | tee -a "$out"
    SLUICE_RW_SEED=$round cargo bench -q -p sluice-proxy --bench consistency_cost 2>&1 | tee -a "$out"
done
echo "results in $out" >&2
