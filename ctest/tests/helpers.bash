# shellcheck shell=bash
# Helpers for fixtures.bats: build directories, unique session prefixes, the shm objects of a
# session, and removal of exactly the sessions a test made (never anything else in /dev/shm).

# shellcheck source=scripts/lib/common.sh
. "$BATS_TEST_DIRNAME/../../scripts/lib/common.sh"
# shellcheck source=scripts/lib/launch.sh
. "$BATS_TEST_DIRNAME/../../scripts/lib/launch.sh"

# The tools under test; scripts/test-ctest sets SHMTRANSPORT_BIN_DIR.
helpers::tools() {
    bin=${SHMTRANSPORT_BIN_DIR:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)/.build/debug}
    monitor=$bin/shmmonitor
    keepalive=$bin/shm-keepalive
    [ -x "$monitor" ] || {
        echo "no shmmonitor in $bin; build it (swift build --product shmmonitor) or set SHMTRANSPORT_BIN_DIR" >&2
        return 1
    }
    [ -x "$keepalive" ] || {
        echo "no shm-keepalive in $bin; build it (swift build --product shm-keepalive) or set SHMTRANSPORT_BIN_DIR" >&2
        return 1
    }
    module_dir=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
    example_dir=$module_dir/example
}

# A work directory, a private shm directory and a session prefix no other run shares.
helpers::setup() {
    helpers::tools
    work=$(mktemp -d "${BATS_RUN_TMPDIR:-/tmp}/ctest-fixtures.XXXXXX")
    shm=$work/shm
    mkdir "$shm"
    prefix="ctfx-$$-${RANDOM}${RANDOM}-"
    sessions=()
    ctest_pid=
    background_pids=()
}

# Stops a ctest this test started (its whole process group) and removes what the test's sessions
# left, in the private shm directory and in /dev/shm, then the work directory.
helpers::teardown() {
    if [ -n "${ctest_pid:-}" ] && kill -0 "$ctest_pid" 2>/dev/null; then
        kill -KILL -- "-$ctest_pid" 2>/dev/null || true
        wait "$ctest_pid" 2>/dev/null || true
    fi
    local pid dir session
    for pid in "${background_pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for dir in "$shm" /dev/shm; do
        [ -d "$dir" ] || continue
        "$monitor" --cleanup --force "--session-prefix=$prefix" "--shm-dir=$dir" >/dev/null 2>&1 || true
        for session in "${sessions[@]}"; do
            common::shm_objects_of "$(helpers::shmid "$session")" "$dir" | sed "s#^#$dir/#" | xargs -r rm -f --
        done
    done
    rm -rf "$work"
}

# The shm id of a session, as the launcher computes it.
helpers::shmid() { launch::shmid "$monitor" "$1"; }

# The objects of session $1 in directory $2, one name per line, sorted.
helpers::objects() {
    local id
    id=$(helpers::shmid "$1")
    common::shm_objects_of "$id" "$2"
}

# Configures the example into $work/build: helpers::configure_example [cmake args...]
helpers::configure_example() {
    cmake -S "$example_dir" -B "$work/build" \
        "-DSHMTRANSPORT_SHMMONITOR=$monitor" "-DSHMTRANSPORT_KEEPALIVE=$keepalive" \
        "-DSHMTRANSPORT_FIXTURES_SESSION_PREFIX=$prefix" "$@" >"$work/configure.log" 2>&1 || {
        cat "$work/configure.log" >&2
        return 1
    }
}

# The example's tests that make a session (and so the session ids the teardown removes).
helpers::example_tests() {
    printf '%s\n' device_passes device_fails device_aborts device_hangs cxx_fairmq_device
}

# The test names ctest reports as failed, "name (reason)" one a line, sorted.
helpers::failed_tests() {
    sed -n 's/^[[:space:]]*[0-9]* - \(.*\)$/\1/p' "$1" | sort
}

# The number ctest gives test $2 in build directory $1.
helpers::test_number() {
    ctest --test-dir "$1" -N | sed -n "s/^ *Test *#\([0-9]*\): $2\$/\1/p"
}

# Succeeds when `ctest -V` log $1 shows test $2 of build directory $3 removing object $4.
helpers::removed_by() {
    local number
    number=$(helpers::test_number "$3" "$2")
    [ -n "$number" ] || {
        echo "no test $2 in $3" >&2
        return 1
    }
    grep -q "^$number: Successfully removed '.*/$4'" "$1"
}

# Waits up to $2 seconds for file $1 to exist.
helpers::wait_for_file() {
    local deadline=$((SECONDS + $2))
    until [ -e "$1" ]; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
