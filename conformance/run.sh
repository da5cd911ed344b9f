#!/usr/bin/env bash
# Runs the conformance corpus against a real MariaDB directly (reference) and through
# Sluice (candidate): builds, starts a one-node cluster with the `chaos` launcher and a
# Sluice in front of it, runs `conformance diff`, and tears everything down.
#
#   conformance/run.sh [--corpus DIR] [--jobs N] [--filter SUBSTRING] [--text-only|--binary-only]
#                      [--auth-mode passthrough|config] [--topology single|split]
#                      [--replica-delay SECS] [-v]
#
# --auth-mode: how Sluice authenticates the corpus's account `app`: `passthrough` (the
# default; MariaDB's own accounts, Sluice logs in as the client) or `config` (a
# [[users]] entry, Sluice logs in with its backend account).
# --topology split: a primary and 2 replicas behind Sluice with its routing defaults
# (read/write splitting, consistency = session); the reference is the primary.
# --replica-delay SECS: split, with the second replica SECS seconds behind (MASTER_DELAY).
# Exits with conformance's status: 0 when no case differs.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

args=()
corpus="$root/testdata/conformance"
jobs=4
auth_mode=passthrough
topology=single
replica_delay=0
while [ $# -gt 0 ]; do
    case "$1" in
        --corpus) corpus="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --auth-mode)
            auth_mode="$2"; shift 2
            case "$auth_mode" in passthrough|config) ;; *) echo "run.sh: --auth-mode is passthrough or config" >&2; exit 2 ;; esac ;;
        --filter) args+=(--filter "$2"); shift 2 ;;
        --text-only|--binary-only|-v|--verbose) args+=("$1"); shift ;;
        --topology)
            topology="$2"; shift 2
            case "$topology" in single|split) ;; *) echo "run.sh: --topology is single or split" >&2; exit 2 ;; esac ;;
        --replica-delay) replica_delay="$2"; topology=split; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

cargo build -q -p chaos --bin chaos
cargo build -q -p sluice-proxy --bin sluice
cargo build -q -p conformance --bin conformance
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

work="$(mktemp -d)"
chaos_pid=""
sluice_pid=""
cleanup() {
    [ -n "$sluice_pid" ] && kill "$sluice_pid" 2>/dev/null || true
    [ -n "$chaos_pid" ] && kill "$chaos_pid" 2>/dev/null || true
    [ -n "$chaos_pid" ] && wait "$chaos_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cluster_args=(--replicas 0)
if [ "$topology" = split ]; then
    cluster_args=(--replicas 2)
    [ "$replica_delay" -gt 0 ] && cluster_args+=("--delay-replica=2=$replica_delay")
fi
"$bin/chaos" cluster "${cluster_args[@]}" --state-file "$work/cluster.json" \
    --server-option=--local-infile=1 \
    --server-option=--max-allowed-packet=256M \
    --server-option=--log-bin-trust-function-creators=1 \
    >"$work/chaos.log" 2>&1 &
chaos_pid=$!
for _ in $(seq 1 120); do
    [ -s "$work/cluster.json" ] && break
    kill -0 "$chaos_pid" 2>/dev/null || { cat "$work/chaos.log" >&2; exit 1; }
    sleep 0.5
done
[ -s "$work/cluster.json" ] || { echo "run.sh: the cluster did not start" >&2; cat "$work/chaos.log" >&2; exit 1; }
primary="$(sed -n 's/.*"primary": *"\([^"]*\)".*/\1/p' "$work/cluster.json" | head -1)"
nodes="$(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(", ".join(chr(34) + a + chr(34) for a in [s["primary"]] + s["replicas"]))' "$work/cluster.json")"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
if [ "$auth_mode" = passthrough ]; then
    accounts='auth_mode = "passthrough"'
else
    accounts=$'\n[[users]]\nname = "app"\npassword = "app"'
fi
cat >"$work/sluice.toml" <<EOF
[proxy]
listen = "127.0.0.1:$port"
max_allowed_packet = 268435456
$accounts

[backend]
user = "app"
password = "app"
nodes = [$nodes]
connect_timeout_ms = 30000
monitor_timeout_ms = 30000
monitor_interval_ms = 31000
EOF
"$bin/sluice" --config "$work/sluice.toml" >"$work/sluice.out" 2>"$work/sluice.log" &
sluice_pid=$!
for _ in $(seq 1 60); do
    grep -q "sluice listening on" "$work/sluice.out" 2>/dev/null && break
    kill -0 "$sluice_pid" 2>/dev/null || { cat "$work/sluice.log" >&2; exit 1; }
    sleep 0.5
done
candidate="$(sed -n 's/^sluice listening on //p' "$work/sluice.out" | head -1)"
[ -n "$candidate" ] || { echo "run.sh: Sluice did not start" >&2; cat "$work/sluice.log" >&2; exit 1; }

shape="one node"
[ "$topology" = split ] && shape="primary + 2 replicas"
[ "$replica_delay" -gt 0 ] && shape+=", the second ${replica_delay}s behind"
echo "conformance: MariaDB $primary vs Sluice $candidate ($auth_mode accounts, $shape)"
status=0
[ "$topology" = split ] && args+=(--split)
"$bin/conformance" diff --reference "$primary" --candidate "$candidate" --corpus "$corpus" --jobs "$jobs" "${args[@]}" || status=$?
exit "$status"
