#!/usr/bin/env bash
# Builds the chaos launcher and runs `chaos cluster` in the foreground: a real
# MariaDB primary/replica cluster on 127.0.0.1 in a temporary directory,
# removed again on Ctrl-C or SIGTERM. Arguments go to `chaos cluster`.
#
# Usage: scripts/cluster.sh [--replicas N] [--tls] [--semi-sync] [--dir DIR]
#                           [--cpu-quota CPUS] [--print-env] [--state-file FILE] ...
#        scripts/cluster.sh --help
#
# --cpu-quota 0.25 caps each mariadbd at a quarter of a CPU with a cgroup of its own
# (needs root and the cgroup cpu controller; see chaos/src/cgroup.rs).
#
# Scripts read the `SLUICE_CLUSTER primary=... replicas=... ca=...` line on
# stdout, or wait for the --state-file JSON to appear.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p chaos --bin chaos
exec "${CARGO_TARGET_DIR:-target}/debug/chaos" cluster "$@"
