#!/usr/bin/env bash
# Runs the fuzz targets (proxy/tests/fuzz.rs: proptest on the stable toolchain) longer
# than CI does. CI runs SLUICE_FUZZ_CASES=1024 cases per target (a few seconds in
# debug); this script defaults to 20000 (the targets against a running proxy run an
# eighth of that). A failure prints the smallest input proptest shrank it to.
#
# Usage: scripts/fuzz.sh [TARGET-NAME-FILTER]
#   SLUICE_FUZZ_CASES  cases per target [20000]
#   FUZZ_RELEASE=1     build the tests with optimisations (more cases per second)
set -euo pipefail
cd "$(dirname "$0")/.."
export SLUICE_FUZZ_CASES=${SLUICE_FUZZ_CASES:-20000}
profile=()
[ "${FUZZ_RELEASE:-0}" = 1 ] && profile=(--release)
echo "fuzz.sh: $SLUICE_FUZZ_CASES cases per target${1:+, targets matching $1}" >&2
start=$(date +%s)
cargo test "${profile[@]}" -p sluice-proxy --test fuzz -- "${1:-}" --test-threads 2
echo "fuzz.sh: done in $(( $(date +%s) - start )) s" >&2
