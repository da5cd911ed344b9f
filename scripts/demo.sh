#!/usr/bin/env bash
# Runs Sluice in front of a local demo cluster: a MariaDB primary and two replicas with
# GTID replication (started from temporary directories on free loopback ports by the
# `chaos` launcher), and Sluice on 127.0.0.1:15306 (user app / password app).
# Stop with Ctrl-C: everything is torn down.
#
# Usage: scripts/demo.sh [--port PORT] [--replicas N]
set -euo pipefail
cd "$(dirname "$0")/.."

port=15306
replicas=2
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port=$2; shift 2 ;;
        --replicas) replicas=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

scripts/install-deps.sh
echo "demo: building sluice and chaos (release)..."
cargo build --release -q -p sluice-proxy -p chaos

work=$(mktemp -d /tmp/sluice-demo.XXXXXX)
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

target/release/chaos cluster --replicas "$replicas" --state-file "$work/cluster.json" >"$work/chaos.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
    [ -s "$work/cluster.json" ] && break
    if ! kill -0 "${pids[0]}" 2>/dev/null; then cat "$work/chaos.log" >&2; echo "demo: cluster failed to start" >&2; exit 1; fi
    sleep 0.1
done
[ -s "$work/cluster.json" ] || { cat "$work/chaos.log" >&2; echo "demo: cluster did not come up" >&2; exit 1; }
nodes=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(", ".join("\"%s\"" % a for a in [s["primary"]] + s["replicas"]))' "$work/cluster.json")

cat >"$work/sluice.toml" <<TOML
[proxy]
listen = "127.0.0.1:$port"

[[users]]
name = "app"
password = "app"

[backend]
user = "app"
password = "app"
nodes = [$nodes]
TOML

target/release/sluice --config "$work/sluice.toml" >"$work/sluice.out" 2>"$work/sluice.log" &
pids+=($!)
for _ in $(seq 1 100); do
    grep -q "listening" "$work/sluice.out" 2>/dev/null && break
    if ! kill -0 "${pids[1]}" 2>/dev/null; then cat "$work/sluice.log" >&2; exit 1; fi
    sleep 0.1
done

sed -n '1,/SLUICE_CLUSTER/p' "$work/chaos.log" | grep -v '^SLUICE_CLUSTER'
cat <<MSG

Sluice is listening on 127.0.0.1:$port in front of this cluster.
Connect with:

    mariadb -h127.0.0.1 -P$port -uapp -papp test

Config: $work/sluice.toml   Log: $work/sluice.log
Press Ctrl-C to stop Sluice and the cluster.
MSG
wait "${pids[1]}"
