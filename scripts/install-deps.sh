#!/usr/bin/env bash
# Installs the machine-level dependencies of Sluice's tests, demos and
# benchmarks on Debian 12. Idempotent and non-interactive; run as root (or a
# user with sudo). Nothing is installed that is already there, and
# `apt-get update` runs only when a package has to be installed.
#
# Usage: scripts/install-deps.sh [--bench] [--conformance] [--all]
#
#   always         mariadb-server and mariadb-client (only when `mariadbd` or
#                  `mariadb` is missing), openssl, python3 with pip, and
#                  PyMySQL 1.1.1 for the Python client tests
#   --bench        sysbench and haproxy, for the benchmark scripts
#   --conformance  mariadb-test (mysqltest and MariaDB's test suite)
#   --all          both of the above
#
# The system MariaDB service is never started, stopped or restarted. When
# mariadb-server has to be installed, a temporary /usr/sbin/policy-rc.d keeps
# its package scripts from starting the service: the tests run their own
# servers (see chaos/), and the machine's port 3306 is left alone.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

bench=false
conformance=false
for arg in "$@"; do
    case "$arg" in
        --bench) bench=true ;;
        --conformance) conformance=true ;;
        --all) bench=true; conformance=true ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install-deps.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    esac
done

export DEBIAN_FRONTEND=noninteractive
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps.sh: run as root (or install sudo)" >&2; exit 1; }
    sudo=(sudo --preserve-env=DEBIAN_FRONTEND)
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
has_command() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

packages=()
want() {
    local pkg
    for pkg in "$@"; do
        installed "$pkg" || packages+=("$pkg")
    done
}

server_needed=false
if ! has_command mariadbd; then
    want mariadb-server
    server_needed=true
fi
has_command mariadb || want mariadb-client
has_command mariadb-install-db || want mariadb-server
has_command openssl || want openssl
if ! command -v python3 >/dev/null; then
    want python3 python3-pip
elif ! python3 -m pip --version >/dev/null 2>&1; then
    want python3-pip
fi
if $bench; then
    has_command sysbench || want sysbench
    has_command haproxy || want haproxy
fi
if $conformance; then
    want mariadb-test
fi

if [ ${#packages[@]} -gt 0 ]; then
    # Deduplicate (mariadb-server may have been asked for twice).
    mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
    policy=/usr/sbin/policy-rc.d
    if $server_needed && [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# Temporary, from Sluice scripts/install-deps.sh: start no service.\nexit 101\n' |
            "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        trap '"${sudo[@]}" rm -f "$policy"' EXIT
    fi
    echo "install-deps.sh: installing ${packages[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
else
    echo "install-deps.sh: system packages already present"
fi

pymysql_version() {
    python3 -c 'import importlib.metadata as m; print(m.version("PyMySQL"))' 2>/dev/null || true
}
if [ "$(pymysql_version)" != "1.1.1" ]; then
    echo "install-deps.sh: installing PyMySQL 1.1.1 for $(command -v python3)"
    # Debian's own python3 is "externally managed" (PEP 668); these are test
    # tools, so install into it anyway. Other interpreters ignore the setting.
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        python3 -m pip install --quiet pymysql==1.1.1
    [ "$(pymysql_version)" = "1.1.1" ] || { echo "install-deps.sh: PyMySQL 1.1.1 did not install" >&2; exit 1; }
else
    echo "install-deps.sh: PyMySQL 1.1.1 already present"
fi
