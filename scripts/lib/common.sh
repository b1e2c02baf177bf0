# shellcheck shell=bash
# Shared helpers for the project's scripts. Source it; every function is namespaced `common::`.

# Prints a message to stderr, prefixed with the calling script's name.
common::log() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# Prints an error to stderr and exits 2.
common::die() {
    common::log "error: $*"
    exit 2
}

# Installs the Debian packages that are missing (apt-get update once per run, only if needed).
common::ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        common::die "missing packages: ${missing[*]}; install them (sudo apt-get install -y ${missing[*]}) and run again"
    fi
    common::log "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Installs from PyPI the Python modules that python3 cannot import, given as module=package
# pairs (e.g. prometheus_client=prometheus-client).
common::ensure_python_modules() {
    local pair module package
    for pair in "$@"; do
        module=${pair%%=*}
        package=${pair#*=}
        python3 -c "import $module" 2>/dev/null && continue
        common::log "installing the Python package $package"
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$package" >/dev/null ||
            common::die "cannot install the Python package $package; install it (python3 -m pip install $package) and run again"
    done
}

# The repository root.
common::root() {
    cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd
}

# Lists transport objects in a shm directory (default /dev/shm), one name per line, sorted; with
# a user id as $2, only that user's (others' come and go on a shared machine).
common::shm_objects() {
    local dir=${1:-${SHMTRANSPORT_SHM_DIR:-/dev/shm}} owner=()
    [ -z "${2:-}" ] || owner=(-user "$2")
    find "$dir" -maxdepth 1 "${owner[@]}" \( -name 'fmq_*' -o -name 'sem.fmq_*' \) -printf '%f\n' 2>/dev/null | sort
}

# Lists the transport objects in /dev/shm that are not in $1, an earlier `common::shm_objects
# /dev/shm [uid]`, one per line (nothing when no object is new); $2: the same user id filter.
common::new_shm_objects() {
    comm -13 <(printf '%s\n' "$1") <(common::shm_objects /dev/shm "${2:-}") | sed '/^$/d'
}

# Lists the objects of one shm id (fmq_<id>_* and sem.fmq_<id>_*) in a shm directory (default
# as above), one name per line, sorted; nothing when the session is gone. Fails without an id.
common::shm_objects_of() {
    local id=${1:-} dir=${2:-${SHMTRANSPORT_SHM_DIR:-/dev/shm}}
    [ -n "$id" ] || {
        echo "common::shm_objects_of: no shm id given" >&2
        return 2
    }
    find "$dir" -maxdepth 1 \( -name "fmq_${id}_*" -o -name "sem.fmq_${id}_*" \) -printf '%f\n' | sort
}

# Prints the directory of the tools the tests use ($@; default shmmonitor and shm-keepalive):
# $SHMTRANSPORT_BIN_DIR when set (scripts/test sets it after its build), otherwise the debug
# build, brought up to date first (swift build --product). Exits 2 when a tool is missing there.
common::tools_bin_dir() {
    local dir=${SHMTRANSPORT_BIN_DIR:-} tool tools=("$@")
    [ "${#tools[@]}" -gt 0 ] || tools=(shmmonitor shm-keepalive)
    if [ -z "$dir" ]; then
        for tool in "${tools[@]}"; do
            (cd "$(common::root)" && swift build --product "$tool" >&2) || common::die "swift build --product $tool failed"
        done
        dir=$(cd "$(common::root)" && swift build --show-bin-path)
    fi
    for tool in "${tools[@]}"; do
        [ -x "$dir/$tool" ] ||
            common::die "no $tool in $dir; build it (swift build --product $tool) or fix SHMTRANSPORT_BIN_DIR"
    done
    printf '%s\n' "$dir"
}

# Counts the results in a `bats --tap` log $1 and prints "<passed> <failed>". Tests that never
# ran (no plan, or fewer results than planned: bats stopped early) count as failed, and so does
# a non-zero bats exit status $2 with no failed test.
common::tap_counts() {
    local log=$1 rc=${2:-0} planned ok failed ran
    planned=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$log" | head -n 1)
    ok=$(grep -c '^ok ' "$log" || true)
    failed=$(grep -c '^not ok ' "$log" || true)
    ran=$((ok + failed))
    if [ -z "$planned" ]; then
        common::log "bats printed no plan (exit $rc); counting one failure"
        failed=$((failed + 1))
    elif [ "$ran" -ne "$planned" ]; then
        common::log "$ran of $planned planned tests ran (bats exit $rc); counting the difference as failed"
        failed=$((failed + (planned > ran ? planned - ran : ran - planned)))
    fi
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        common::log "bats exited $rc without a failed test; counting one failure"
        failed=1
    fi
    echo "$ok $failed"
}
