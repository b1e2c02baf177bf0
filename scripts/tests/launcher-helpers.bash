# shellcheck shell=bash
# The variables set here (SID, LRC, ...) are read by the .bats files.
# shellcheck disable=SC2034
# Helpers for the launcher's bats tests (scripts/tests/launcher*.bats). Real processes only:
# shm-keepalive holds a session's memory, the launcher is started in the background and signalled.
# Needs SHMMONITOR and SHM_KEEPALIVE (scripts/test-launcher sets them; defaults: the debug build).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAUNCH=$REPO/scripts/shm-launch
: "${SHMMONITOR:=$REPO/.build/debug/shmmonitor}"
: "${SHM_KEEPALIVE:=$REPO/.build/debug/shm-keepalive}"
export SHMMONITOR SHM_KEEPALIVE
KEEP=$SHM_KEEPALIVE

# Per test: a private shm directory, a unique session prefix, files for the launcher's output.
launcher_setup() {
    [[ -x $SHMMONITOR && -x $KEEP ]] || {
        echo "build the tools first: swift build --product shmmonitor && swift build --product shm-keepalive" >&2
        return 1
    }
    unset SHMTRANSPORT_SESSION SHMTRANSPORT_SHM_DIR
    SHMDIR=$(mktemp -d "${TMPDIR:-/tmp}/launcher-test.XXXXXX")
    SID=lt$$-$BATS_TEST_NUMBER-$SRANDOM
    OUT=$BATS_TEST_TMPDIR/out
    ERR=$BATS_TEST_TMPDIR/err
    STARTED=()            # pids this test started, stopped in teardown if still there
    SESSIONS=()           # sessions this test used on the real /dev/shm
}

# Stops what the test left running, then requires the private directory to be empty (that is
# the check that the test left it as it found it) and removes it; cleans real-/dev/shm sessions.
launcher_teardown() {
    local p s
    for p in "${STARTED[@]}"; do
        if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    for s in "${SESSIONS[@]}"; do
        "$SHMMONITOR" -c --force -s "$s" --shm-dir /dev/shm >/dev/null 2>&1 || true
    done
    if [[ -n ${SHMDIR-} && -d $SHMDIR ]]; then
        local left
        left=$(ls -A "$SHMDIR")
        if [[ -n $left ]]; then
            rm -f -- "$SHMDIR"/fmq_* "$SHMDIR"/sem.fmq_*
            rmdir "$SHMDIR" 2>/dev/null || true
            echo "test left objects in its shm directory: $left" >&2
            return 1
        fi
        rmdir "$SHMDIR"
    fi
}

# True while pid $1 exists and is not a zombie.
alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != [ZX] ]]
}

# Starts the launcher in the background with INT/QUIT at their defaults (a background job of a
# non-interactive shell would ignore them) and without bats' fd 3. Sets LPID.
start_launcher() {
    env --default-signal=INT,QUIT "$LAUNCH" "$@" >"$OUT" 2>"$ERR" 3>&- &
    LPID=$!
    STARTED+=("$LPID")
}

# Waits up to 10 s until file $1 has $2 (default 1) lines starting with "ready".
wait_ready() {
    local -r file=$1 want=${2:-1}
    local i n
    for ((i = 0; i < 200; i++)); do
        n=$(grep -c '^ready ' "$file" 2>/dev/null || true)
        ((n >= want)) && return 0
        sleep 0.05
    done
    echo "no '$want' ready line(s) in $file after 10 s; stdout: $(cat "$file" 2>/dev/null); stderr: $(cat "$ERR" 2>/dev/null)" >&2
    return 1
}

# Waits up to $2 seconds (default 5) until pid $1 is gone; fails otherwise.
wait_gone() {
    local -r pid=$1 secs=${2:-5}
    local i
    for ((i = 0; i < secs * 20; i++)); do
        alive "$pid" || return 0
        sleep 0.05
    done
    echo "pid $pid still running after ${secs}s" >&2
    return 1
}

# Waits up to $3 seconds (default 5) until directory $1 holds no object of shm id $2.
wait_no_objects() {
    local -r dir=$1 id=$2 secs=${3:-5}
    local i
    for ((i = 0; i < secs * 20; i++)); do
        [[ -z $(objects "$dir" "$id") ]] && return 0
        sleep 0.05
    done
    echo "objects of $id still in $dir after ${secs}s: $(objects "$dir" "$id")" >&2
    return 1
}

# Lists the objects of shm id $2 in directory $1.
objects() {
    find "$1" -maxdepth 1 \( -name "fmq_$2_*" -o -name "sem.fmq_$2_*" \) -printf '%f\n' | sort
}

# Prints the shm id of session $1.
shmid_of() {
    local line
    line=$("$SHMMONITOR" --get-shmid -s "$1")
    printf '%s\n' "${line##* }"
}

# Prints the pid the launcher logged (with -v) for "started pid N: <$1...>" or "guardian pid N".
logged_pid() {
    local -r what=$1
    local i line
    for ((i = 0; i < 100; i++)); do
        line=$(grep -m1 -- "$what" "$ERR" 2>/dev/null || true)
        if [[ -n $line ]]; then
            line=${line#*pid }
            printf '%s\n' "${line%%[!0-9]*}"
            return 0
        fi
        sleep 0.05
    done
    echo "no '$what' in the launcher's log: $(cat "$ERR")" >&2
    return 1
}

# Leaves a stale session $1 in directory $2 (a holder that exits without cleaning up).
stale_session() {
    "$KEEP" -s "$1" --shm-dir "$2" --no-cleanup --lifetime 0.05 >/dev/null
}

# Waits for the launcher started with start_launcher; sets LRC to its exit status.
launcher_wait() {
    LRC=0
    wait "$LPID" || LRC=$?
}
