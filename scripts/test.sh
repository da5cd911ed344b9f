#!/usr/bin/env bash
# Runs Sluice's whole default test suite on a fresh machine: installs what the tests
# need (MariaDB server binaries, openssl, PyMySQL), then
#   1. `cargo test` for the workspace: unit tests, real-MariaDB integration tests with
#      the mariadb CLI / PyMySQL / mysql_async, the conformance corpus (MariaDB directly
#      vs through Sluice), and the turmoil simulation suite (fixed CI seeds + fresh ones);
#   2. the madsim simulation suite (its own `--cfg madsim` build in target-madsim/);
#   3. the conformance corpus again with Sluice in front of a primary and 2 replicas,
#      one of them 2 s behind (SLUICE_CORPUS_REPLICA_DELAY=2: read/write splitting and
#      consistency = session, the defaults);
#   4. a bounded part of the real client projects' test suites, directly and through
#      Sluice (scripts/suites/run.sh --quick), in front of one MariaDB and in front of
#      a primary and 2 replicas, one 2 s behind (--replica-delay 2).
#
# Knobs (environment):
#   SLUICE_SIM_SEEDS     extra turmoil seeds per property run (default: the CI set)
#   MADSIM_TEST_NUM      madsim seeds (default 2)
#   SLUICE_SKIP_MADSIM=1 / SLUICE_SKIP_SPLIT=1 / SLUICE_SKIP_SUITES=1
#                        skip step 2 / 3 and the split suites / 4
#   CARGO_TEST_ARGS      extra arguments for `cargo test` (e.g. a test-name filter)
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh || exit 1
start=$(date +%s)
log=$(mktemp /tmp/sluice-test.XXXXXX)
status=0
# Prints how long the suite has run so far, after each step.
step_done() { echo "== step '$1' done at $(( $(date +%s) - start ))s"; }

# shellcheck disable=SC2086
cargo test --workspace --all-targets --no-fail-fast ${CARGO_TEST_ARGS:-} 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
step_done "cargo test --workspace"

if [ "${SLUICE_SKIP_MADSIM:-0}" != 1 ]; then
    echo "== madsim simulation suite (MADSIM_TEST_NUM=${MADSIM_TEST_NUM:-2})"
    MADSIM_TEST_NUM=${MADSIM_TEST_NUM:-2} RUSTFLAGS="${RUSTFLAGS:-} --cfg madsim" \
        cargo test -p sim --test madsim_suite --target-dir target-madsim 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    step_done madsim
fi

if [ "${SLUICE_SKIP_SPLIT:-0}" != 1 ]; then
    echo "== conformance corpus through Sluice in front of a primary and 2 replicas (one 2 s behind)"
    SLUICE_CORPUS_REPLICA_DELAY=2 cargo test -p conformance --test corpus whole_corpus 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    step_done "split corpus"
fi

if [ "${SLUICE_SKIP_SUITES:-0}" != 1 ] && [ -x scripts/suites/run.sh ]; then
    echo "== client test suites, directly and through Sluice (quick)"
    scripts/suites/run.sh --quick 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    step_done "client suites"
    if [ "${SLUICE_SKIP_SPLIT:-0}" != 1 ]; then
        echo "== client test suites through Sluice in front of a primary and 2 replicas, one 2 s behind (quick)"
        scripts/suites/run.sh --quick --no-build --profile debug --replica-delay 2 2>&1 | tee -a "$log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    fi
fi

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s+=$6} END {print s+0}')
echo "test suite finished in $(( $(date +%s) - start ))s"
echo "$passed passed, $failed failed"
rm -f "$log"
exit "$status"
