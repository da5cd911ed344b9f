# Shared by the client-suite scripts (sourced, not run). See docs/client-suites.md.
#
# Environment:
#   SLUICE_SUITES_CACHE   where downloaded test suites and the Python virtual
#                         environment live (default ~/.cache/sluice-suites)
#   SLUICE_SUITES_PYTHON  the Python that runs the Python suites (default python3)

SUITES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITES_CACHE=${SLUICE_SUITES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-suites}
SUITES_PYTHON=${SLUICE_SUITES_PYTHON:-python3}

# Pinned versions: a run is only comparable with another run of the same suite.
PYTEST_VERSION=9.2.0
PYMYSQL_SUITE_VERSION=0.10.1
MYSQLCLIENT_VERSION=2.3.2
SQLALCHEMY_VERSION=2.0.58

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1
export PYTHONDONTWRITEBYTECODE=1

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# The virtual environment the Python suites run in, one per interpreter
# version, so the machine's own packages (e.g. PyMySQL 1.1.1 installed by
# scripts/install-deps.sh) never mix with the suites' pinned ones.
venv_dir() {
    local tag
    tag=$("$SUITES_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') ||
        die "cannot run $SUITES_PYTHON"
    echo "$SUITES_CACHE/venv-py$tag"
}

# ensure_venv: creates the environment (with pytest) when missing.
ensure_venv() {
    local venv
    venv=$(venv_dir)
    if [ ! -x "$venv/bin/python" ]; then
        log "creating the Python environment $venv"
        mkdir -p "$SUITES_CACHE"
        "$SUITES_PYTHON" -m venv "$venv" ||
            die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    fi
    venv_require "pytest==$PYTEST_VERSION"
}

# venv_require REQ...: pip-installs requirements `name==version` not yet present.
venv_require() {
    local venv req missing=()
    venv=$(venv_dir)
    for req in "$@"; do
        local name=${req%%==*} version=${req##*==}
        if [ "$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null)" != "$version" ]; then
            missing+=("$req")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} into $venv"
    "$venv/bin/python" -m pip install --quiet "${missing[@]}" ||
        die "pip install ${missing[*]} failed"
}

# fetch_sdist NAME VERSION: downloads the source distribution from PyPI once
# and unpacks it; prints the unpacked directory.
fetch_sdist() {
    local name=$1 version=$2 venv dl dir archive
    venv=$(venv_dir)
    dl="$SUITES_CACHE/sdist"
    mkdir -p "$dl"
    archive=$(find "$dl" -maxdepth 1 -iname "${name}-${version}.tar.gz" -print -quit)
    if [ -z "$archive" ]; then
        log "downloading the $name $version source distribution"
        "$venv/bin/python" -m pip download --quiet --no-deps --no-binary :all: \
            -d "$dl" "$name==$version" >&2 || die "pip download $name==$version failed"
        archive=$(find "$dl" -maxdepth 1 -iname "${name}-${version}.tar.gz" -print -quit)
        [ -n "$archive" ] || die "no ${name}-${version}.tar.gz in $dl after pip download"
    fi
    dir="$SUITES_CACHE/src/$(basename "$archive" .tar.gz)"
    if [ ! -d "$dir" ]; then
        mkdir -p "$SUITES_CACHE/src"
        tar -xzf "$archive" -C "$SUITES_CACHE/src" || die "unpacking $archive failed"
    fi
    echo "$dir"
}

# apt_ensure PACKAGE...: installs missing Debian packages (as root or via sudo).
apt_ensure() {
    local pkg missing=() sudo=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "needs Debian packages ${missing[*]}; install them or run as root"
        sudo=(sudo --preserve-env=DEBIAN_FRONTEND)
    fi
    log "installing Debian packages ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
}

# Connection to the endpoint under test, from the suite scripts' options.
EP_HOST=127.0.0.1
EP_PORT=3306
EP_USER=root
EP_PASSWORD=

# sql STATEMENTS: runs statements on the endpoint with the mariadb client.
sql() {
    MYSQL_PWD=$EP_PASSWORD mariadb --no-defaults --default-character-set=utf8mb4 --protocol=tcp -h"$EP_HOST" -P"$EP_PORT" \
        -u"$EP_USER" --batch --skip-column-names "$@"
}

# Common option parsing of the suite scripts:
#   --host H --port P --user U --password PW --out DIR [--quick]
# plus --prepare (download and build only) and --server-options (print the
# mariadbd options the suite expects, one a line).
SUITE_OUT=
SUITE_QUICK=false
SUITE_ACTION=run
parse_suite_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --host) EP_HOST=$2; shift 2 ;;
            --port) EP_PORT=$2; shift 2 ;;
            --user) EP_USER=$2; shift 2 ;;
            --password) EP_PASSWORD=$2; shift 2 ;;
            --out) SUITE_OUT=$2; shift 2 ;;
            --quick) SUITE_QUICK=true; shift ;;
            --prepare) SUITE_ACTION=prepare; shift ;;
            --server-options) SUITE_ACTION=server-options; shift ;;
            *) die "unknown option $1" ;;
        esac
    done
    if [ "$SUITE_ACTION" = run ]; then
        [ -n "$SUITE_OUT" ] || die "--out DIR is required"
        mkdir -p "$SUITE_OUT"
        SUITE_OUT=$(cd "$SUITE_OUT" && pwd)
    fi
}

# private_work_dir NAME: a new temporary directory, removed when the script
# exits; prints it. (Call as work=$(...); the trap is set in the caller.)
private_work_dir() {
    mktemp -d "${TMPDIR:-/tmp}/sluice-suites-$1.XXXXXX"
}

# run_pytest SUITE DIR [VAR=VALUE...] -- PYTEST-ARG...: runs pytest from DIR in
# the suites' environment (at most 15 minutes), with the variables set; writes
# SUITE_OUT/{pytest.log,junit.xml,results.tsv}.
run_pytest() {
    local suite=$1 dir=$2 status env=()
    shift 2
    while [ "$1" != -- ]; do env+=("$1"); shift; done
    shift
    set +e
    (cd "$dir" && env "${env[@]}" timeout --foreground 900 "$(venv_dir)/bin/python" -m pytest "$@" \
        -p no:cacheprovider -q -rfEs --junitxml="$SUITE_OUT/junit.xml" > "$SUITE_OUT/pytest.log" 2>&1)
    status=$?
    set -e
    [ -s "$SUITE_OUT/junit.xml" ] || die "pytest produced no report (exit $status); see $SUITE_OUT/pytest.log"
    python3 "$SUITES_DIR/results.py" junit "$SUITE_OUT/junit.xml" "$SUITE_OUT/results.tsv"
    log "$suite: $(python3 "$SUITES_DIR/results.py" counts "$SUITE_OUT/results.tsv")"
}
