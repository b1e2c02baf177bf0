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

# The repository root.
common::root() {
    cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd
}

# Lists transport objects in a shm directory (default /dev/shm), one name per line, sorted.
common::shm_objects() {
    local dir=${1:-${SHMTRANSPORT_SHM_DIR:-/dev/shm}}
    find "$dir" -maxdepth 1 \( -name 'fmq_*' -o -name 'sem.fmq_*' \) -printf '%f\n' 2>/dev/null | sort
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
