#!/usr/bin/env bash
# The chaos suite against real MariaDB: builds `sluice` and `chaos`, then runs
# `chaos scenario` (a primary + 2 replicas started from a temp dir, the sluice binary in
# front, a recorded client workload, one fault per scenario; a report per run checked
# by sim's history checkers). Exit status 1 if any run failed its expectations.
#
#   scripts/chaos.sh                         # every scenario once, default phases
#   scripts/chaos.sh primary-kill switchover # some scenarios
#   CHAOS_RUNS=5 scripts/chaos.sh            # five seeds each
#   CHAOS_ARGS="--async --clients 16 --tail-ms 10000" scripts/chaos.sh all
#   CHAOS_JSON=/tmp/chaos.json scripts/chaos.sh   # reports as JSON too
#
# Sluice's log of a failed run is kept in $TMPDIR/sluice-chaos-logs/ (all runs with
# SLUICE_CHAOS_KEEP_LOGS=1); SLUICE_CHAOS_LOG sets its log filter (default sluice=info).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
profile=${CHAOS_PROFILE:-release}
flag=$([ "$profile" = release ] && echo --release || true)
# shellcheck disable=SC2086
cargo build $flag -p sluice-proxy --bin sluice -p chaos --bin chaos
dir=target/$([ "$profile" = release ] && echo release || echo debug)
[ $# -gt 0 ] || set -- all
json=()
[ -z "${CHAOS_JSON:-}" ] || json=(--json "$CHAOS_JSON")
# shellcheck disable=SC2086
exec "$dir/chaos" scenario "$@" --sluice "$dir/sluice" --runs "${CHAOS_RUNS:-1}" "${json[@]}" ${CHAOS_ARGS:-}
