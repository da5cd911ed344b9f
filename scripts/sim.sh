#!/usr/bin/env bash
# Deterministic simulation sweeps (release build).
#
#   scripts/sim.sh [turmoil|madsim] [--seeds N | --minutes M] [--start S] [--jobs J]
#   (turmoil: J independent simulations at once, default one per CPU)
#
# Runs the standard scenario (30 simulated seconds, 3 servers, 16 clients + 2 replica
# readers, a fault schedule per seed) for N seeds (default 20) or for M minutes, and
# prints every failing seed with its replay command, the throughput (seeds per minute,
# simulated seconds per wall second) and the coverage counters. Exit status 1 if any
# seed failed.
#
#   scripts/sim.sh replay SEED          replay one seed verbosely (turmoil, debug build)
#
# Knobs (environment): SLUICE_SIM_DURATION_MS, SLUICE_SIM_CLIENTS, SLUICE_SIM_KEYS,
# SLUICE_SIM_FLAVOUR=mariadb|mysql, SLUICE_SIM_VERBOSE=1 (see docs/simulation.md).
# madsim builds go to target-madsim/ with RUSTFLAGS="--cfg madsim".
set -euo pipefail
cd "$(dirname "$0")/.."

sim=turmoil
case "${1:-}" in
  turmoil|madsim) sim=$1; shift ;;
  replay)
    [ $# -ge 2 ] || { echo "usage: scripts/sim.sh replay SEED" >&2; exit 2; }
    SLUICE_SIM_SEED=$2 SLUICE_SIM_DURATION_MS=${SLUICE_SIM_DURATION_MS:-10000} \
      exec cargo test -p sim --test properties replay -- --nocapture ;;
esac
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) export SLUICE_SIM_SWEEP_SEEDS=$2; shift 2 ;;
    --minutes) export SLUICE_SIM_SWEEP_MINUTES=$2; shift 2 ;;
    --start) export SLUICE_SIM_SWEEP_START=$2; shift 2 ;;
    --jobs) export SLUICE_SIM_JOBS=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ "$sim" = madsim ]; then
  RUSTFLAGS="${RUSTFLAGS:-} --cfg madsim" exec cargo test --release -p sim --test madsim_suite \
    --target-dir target-madsim sweep -- --ignored --nocapture --test-threads=1
else
  exec cargo test --release -p sim --test properties sweep -- --ignored --nocapture --test-threads=1
fi
