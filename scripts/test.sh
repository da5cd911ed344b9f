#!/usr/bin/env bash
# Runs Sluice's whole default test suite on a fresh machine: installs what the tests
# need (MariaDB server binaries, openssl, PyMySQL), then unit tests, real-MariaDB
# integration tests and the simulation suite.
#
# Knobs (environment):
#   SLUICE_SIM_SEEDS   seeds per simulation property (default: the CI set)
#   CARGO_TEST_ARGS    extra arguments for `cargo test` (e.g. a test-name filter)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
start=$(date +%s)
# shellcheck disable=SC2086
cargo test --workspace --all-targets ${CARGO_TEST_ARGS:-} 2>&1 | tee /tmp/sluice-test.log
status=${PIPESTATUS[0]}
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' /tmp/sluice-test.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' /tmp/sluice-test.log | awk '{s+=$1} END {print s+0}')
echo "test suite finished in $(( $(date +%s) - start ))s"
echo "$passed passed, $failed failed"
exit "$status"
