#!/usr/bin/env bats
# Tests of the CTest fixtures module with real cmake and ctest runs: the example project in a
# private shm directory and in /dev/shm, an interrupted run (SIGINT), a C++ FairMQ name set,
# the sweep, a shared session, and the configure-time errors.

# work, shm, prefix, monitor, ... come from helpers::setup; each test runs in its own subshell
# on purpose, so what it adds to `sessions` is only for its own teardown.
# shellcheck disable=SC2154,SC2030,SC2031

bats_require_minimum_version 1.5.0

load helpers

setup() {
    helpers::setup
}

teardown() {
    helpers::teardown
}

# Runs the example's own ctest (the closing lines go to a log, not to this suite's output, so
# whoever reads the suite's output does not mistake the intended failures for its own).
example::ctest() {
    local log=$1
    shift
    set +e
    ctest --test-dir "$work/build" "$@" >"$log" 2>&1
    status=$?
    set -e
}

@test "the example under ctest -j2: three tests fail as expected and every session is gone" {
    local name
    for name in $(helpers::example_tests); do sessions+=("$prefix$name"); done
    helpers::configure_example

    SHMTRANSPORT_SHM_DIR=$shm example::ctest "$work/run.log" -j2 -V
    cat "$work/run.log" >"$BATS_TEST_TMPDIR/run.log"

    # ctest exits 8 when tests fail; exactly the three that fail on purpose failed.
    [ "$status" -eq 8 ]
    run helpers::failed_tests "$work/run.log"
    [ "$output" = "device_aborts (Subprocess aborted)
device_fails (Failed)
device_hangs (Timeout)" ]
    grep -q "81% tests passed, 3 tests failed out of 16" "$work/run.log"
    # Each session's memory was made by its test and removed by its cleanup fixture.
    for name in $(helpers::example_tests); do
        id=$(helpers::shmid "$prefix$name")
        if [ "$name" = cxx_fairmq_device ]; then
            helpers::removed_by "$work/run.log" "$name:shm-cleanup" "$work/build" "sem.fmq_${id}_ms"
        else
            helpers::removed_by "$work/run.log" "$name:shm-cleanup" "$work/build" "fmq_${id}_m_0"
        fi
        helpers::removed_by "$work/run.log" "$name:shm-cleanup" "$work/build" "fmq_${id}_mng"
        [ -z "$(helpers::objects "$prefix$name" "$shm")" ]
    done
    # The shm directory is as before: empty.
    [ -z "$(ls -A "$shm")" ]
}

@test "every example test leaves memory, and the setup fixtures of the next run remove it" {
    local name
    for name in $(helpers::example_tests); do sessions+=("$prefix$name"); done
    helpers::configure_example

    # Without the cleanup fixtures and the sweep, all five sessions stay behind.
    SHMTRANSPORT_SHM_DIR=$shm example::ctest "$work/leak.log" -j2 -E ':shm-cleanup$|^shm-sweep$'
    [ "$status" -eq 8 ]
    for name in device_passes device_fails device_aborts device_hangs; do
        run helpers::objects "$prefix$name" "$shm"
        id=$(helpers::shmid "$prefix$name")
        [ "$output" = "fmq_${id}_m_0
fmq_${id}_mng" ]
    done
    run helpers::objects "${prefix}cxx_fairmq_device" "$shm"
    id=$(helpers::shmid "${prefix}cxx_fairmq_device")
    [ "$output" = "fmq_${id}_m_0
fmq_${id}_mng
sem.fmq_${id}_ms" ]

    # The next full run: each setup fixture removes its session's leftovers before the test.
    SHMTRANSPORT_SHM_DIR=$shm example::ctest "$work/run.log" -j2 -V
    [ "$status" -eq 8 ]
    for name in $(helpers::example_tests); do
        id=$(helpers::shmid "$prefix$name")
        helpers::removed_by "$work/run.log" "$name:shm-setup" "$work/build" "fmq_${id}_mng"
    done
    [ -z "$(ls -A "$shm")" ]
}

@test "the example on the real /dev/shm under ctest -j2: its sessions are removed there" {
    local name status=0
    for name in $(helpers::example_tests); do sessions+=("$prefix$name"); done
    helpers::configure_example

    for name in $(helpers::example_tests); do
        [ -z "$(helpers::objects "$prefix$name" /dev/shm)" ]
    done
    env -u SHMTRANSPORT_SHM_DIR ctest --test-dir "$work/build" -j2 -V >"$work/run.log" 2>&1 || status=$?
    [ "$status" -eq 8 ]
    run helpers::failed_tests "$work/run.log"
    [ "${#lines[@]}" -eq 3 ]
    for name in $(helpers::example_tests); do
        id=$(helpers::shmid "$prefix$name")
        helpers::removed_by "$work/run.log" "$name:shm-cleanup" "$work/build" "fmq_${id}_mng"
        grep -q "^[0-9]*: Successfully removed '/dev/shm/fmq_${id}_mng'" "$work/run.log"
        [ -z "$(helpers::objects "$prefix$name" /dev/shm)" ]
    done
}

@test "a run interrupted by SIGINT leaves memory; the next run's setup removes it before the test" {
    local session="${prefix}device_sleeps" id
    sessions+=("$session")
    helpers::configure_example -DEXAMPLE_WITH_SLEEPER=ON
    id=$(helpers::shmid "$session")

    # Like Ctrl-C in a terminal: SIGINT to ctest's whole process group while device_sleeps runs.
    set -m
    env -u SHMTRANSPORT_SHM_DIR EXAMPLE_SLEEP_SECONDS=120 \
        ctest --test-dir "$work/build" -R device_sleeps -V >"$work/interrupted.log" 2>&1 3>&- &
    ctest_pid=$!
    set +m
    helpers::wait_for_file "/dev/shm/fmq_${id}_mng" 30
    helpers::wait_for_file "/dev/shm/fmq_${id}_m_0" 30
    sleep 0.5
    kill -INT -- "-$ctest_pid"
    local interrupted_status=0
    wait "$ctest_pid" || interrupted_status=$?
    ctest_pid=
    [ "$interrupted_status" -ne 0 ]
    # The cleanup fixture never ran: the memory is still there, and no process uses it.
    run ! grep -q "device_sleeps:shm-cleanup" "$work/interrupted.log"
    run helpers::objects "$session" /dev/shm
    [ "$output" = "fmq_${id}_m_0
fmq_${id}_mng" ]

    # Run again: the setup removes the leftovers, then the test (which fails if it finds any)
    # passes, then the cleanup removes its memory again.
    env -u SHMTRANSPORT_SHM_DIR EXAMPLE_SLEEP_SECONDS=0.3 \
        ctest --test-dir "$work/build" -R device_sleeps -V >"$work/again.log" 2>&1
    helpers::removed_by "$work/again.log" "device_sleeps:shm-setup" "$work/build" "fmq_${id}_m_0"
    helpers::removed_by "$work/again.log" "device_sleeps:shm-setup" "$work/build" "fmq_${id}_mng"
    grep -q "device.sh: no leftovers of session $session" "$work/again.log"
    helpers::removed_by "$work/again.log" "device_sleeps:shm-cleanup" "$work/build" "fmq_${id}_mng"
    [ -z "$(helpers::objects "$session" /dev/shm)" ]
}

@test "a C++ FairMQ device's names in the test's default session are removed" {
    local session="${prefix}cxx_fairmq_device" id
    sessions+=("$session")
    helpers::configure_example
    id=$(helpers::shmid "$session")

    SHMTRANSPORT_SHM_DIR=$shm ctest --test-dir "$work/build" -R cxx_fairmq_device -V >"$work/run.log" 2>&1
    grep -q "device.sh: left fmq_${id}_mng fmq_${id}_m_0 sem.fmq_${id}_ms" "$work/run.log"
    for name in "fmq_${id}_mng" "fmq_${id}_m_0" "sem.fmq_${id}_ms"; do
        helpers::removed_by "$work/run.log" "cxx_fairmq_device:shm-cleanup" "$work/build" "$name"
    done
    [ -z "$(ls -A "$shm")" ]
}

@test "the module's properties: session in argument and environment, fixtures, sweep last" {
    helpers::configure_example
    run ctest --test-dir "$work/build" --show-only=json-v1
    [ "$status" -eq 0 ]
    local json=$output session="${prefix}device_passes"

    # Argument and SHMTRANSPORT_SESSION carry the same per-test session.
    [ "$(jq -r '.tests[] | select(.name=="device_passes") | .command[2]' <<<"$json")" = "$session" ]
    jq -e --arg s "SHMTRANSPORT_SESSION=$session" \
        '.tests[] | select(.name=="device_passes") | .properties[] | select(.name=="ENVIRONMENT") | .value | index($s)' <<<"$json"
    # The test requires its own fixture and the sweep; setup and cleanup call shmmonitor.
    [ "$(jq -c '.tests[] | select(.name=="device_passes") | .properties[] | select(.name=="FIXTURES_REQUIRED") | .value' <<<"$json")" = '["device_passes.shm","shm-sweep.sweep"]' ]
    [ "$(jq -c '.tests[] | select(.name=="device_passes:shm-setup") | .command' <<<"$json")" = "[\"$monitor\",\"--cleanup\",\"--session=$session\"]" ]
    [ "$(jq -r '.tests[] | select(.name=="device_passes:shm-cleanup") | .properties[] | select(.name=="FIXTURES_CLEANUP") | .value[0]' <<<"$json")" = "device_passes.shm" ]
    [ "$(jq -c '.tests[] | select(.name=="shm-sweep") | .command' <<<"$json")" = "[\"$monitor\",\"--cleanup\",\"--session-prefix=$prefix\"]" ]
    # The cleanups run before the sweep.
    [ "$(jq -r '.tests[] | select(.name=="device_hangs:shm-cleanup") | .properties[] | select(.name=="FIXTURES_REQUIRED") | .value[0]' <<<"$json")" = "shm-sweep.sweep" ]
    # Sessions are unique per test.
    [ "$(jq -r '.tests[] | .properties[]? | select(.name=="ENVIRONMENT") | .value[] | select(startswith("SHMTRANSPORT_SESSION="))' <<<"$json" | sort | uniq -d)" = "" ]
    # Without a prefix given, the default names the project and the build directory.
    cmake -S "$example_dir" -B "$work/default" "-DSHMTRANSPORT_SHMMONITOR=$monitor" \
        "-DSHMTRANSPORT_KEEPALIVE=$keepalive" >/dev/null
    run ctest --test-dir "$work/default" --show-only=json-v1
    jq -r '.tests[] | select(.name=="device_passes") | .command[2]' <<<"$output" |
        grep -Eq '^ctest-ShmFixturesExample-[0-9a-f]{8}-device_passes$'
}

@test "include(), a shared session, the shm directory cache variable and the sweep" {
    local live="${prefix}live" shared="${prefix}shared"
    sessions+=("$live" "$shared" "${prefix}derived" "${prefix}derived-extra" "${prefix}forced")
    cmake -S "$BATS_TEST_DIRNAME/projects/usage" -B "$work/build" \
        "-DSHMTRANSPORT_SHMMONITOR=$monitor" "-DSHMTRANSPORT_KEEPALIVE=$keepalive" \
        "-DSHMTRANSPORT_FIXTURES_SESSION_PREFIX=$prefix" "-DSHMTRANSPORT_FIXTURES_SHM_DIR=$shm" \
        >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; false; }
    [ "$(jq -c '.tests[] | select(.name=="forced:shm-cleanup") | .command[-1]' \
        < <(ctest --test-dir "$work/build" --show-only=json-v1))" = '"--force"' ]

    # A live session with the prefix, held by a process outside the run: the sweep keeps it.
    coproc LIVE { exec "$keepalive" "--session=$live" "--shm-dir=$shm" 3>&-; }
    background_pids+=("$LIVE_PID")
    read -r ready <&"${LIVE[0]}"
    [[ $ready == ready* ]]

    env -u SHMTRANSPORT_SHM_DIR ctest --test-dir "$work/build" -j2 -V >"$work/run.log" 2>&1 ||
        { cat "$work/run.log"; false; }
    # The two tests shared one session; the reader saw the writer's memory.
    grep -q "session: $shared" "$work/run.log"
    helpers::removed_by "$work/run.log" "shared_memory:shm-cleanup" "$work/build" "fmq_$(helpers::shmid "$shared")_mng"
    # The session only the test knew was removed by the sweep; the live one was kept.
    helpers::removed_by "$work/run.log" "shm-sweep" "$work/build" "fmq_$(helpers::shmid "${prefix}derived-extra")_mng"
    grep -q "session '$live' (shmid $(helpers::shmid "$live")) is in use by pid $LIVE_PID" "$work/run.log"
    [ -n "$(helpers::objects "$live" "$shm")" ]

    kill -TERM "$LIVE_PID"
    wait "$LIVE_PID"
    background_pids=()
    [ -z "$(ls -A "$shm")" ]
}

# Configures the errors project with CASE=$1 (more cmake arguments after it) in a new build
# directory, $errors_dir; $message is cmake's output with its line wrapping undone.
errors::configure() {
    local case=$1
    shift
    errors_dir=$(mktemp -d "$work/errors-$case.XXXXXX")
    run cmake -S "$BATS_TEST_DIRNAME/projects/errors" -B "$errors_dir" "-DCASE=$case" "$@"
    message=$(tr -s ' \n' ' ' <<<"$output")
}

@test "unknown arguments, missing values and bad sessions stop the configuration with the fix" {
    errors::configure test_typo "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"shm_add_test(t): unknown arguments: TIMOUT;3; the arguments are NAME, COMMAND"* ]]
    errors::configure fixture_typo "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"shm_session_fixture(f): unknown arguments: CLEANUP_FORCE"* ]]
    errors::configure sweep_typo "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"shm_add_sweep: unknown arguments: PREFX;x"* ]]
    errors::configure missing_value "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"shm_add_test(t): TIMEOUT needs a value; add one after it"* ]]
    errors::configure bad_timeout "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"TIMEOUT 'soon' is not a number of seconds"* ]]
    errors::configure no_command "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"shm_add_test(t): COMMAND <command> [<arg>...] is missing"* ]]
    errors::configure duplicate "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"shm_add_test(second): session 'same' is already used by test first; give each test its own session"* ]]
    errors::configure slash "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"session id 'a/b' contains '/' or ';'"* ]]
    errors::configure late_sweep "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"call shm_add_sweep() before the first shm_add_test()"* ]]
    # a fixture's cleanup could no longer be ordered before the sweep either
    errors::configure late_sweep_fixture "-DSHMTRANSPORT_SHMMONITOR=$monitor"
    [ "$status" -ne 0 ]
    [[ $message == *"fixtures were added before it (shared)"* ]]
}

@test "shmmonitor is found on PATH, or named by a cache variable, or the error says how" {
    # On PATH.
    PATH="$bin:$PATH" errors::configure monitor
    [ "$status" -eq 0 ]
    grep -q "^SHMTRANSPORT_SHMMONITOR:FILEPATH=$monitor$" "$errors_dir/CMakeCache.txt"
    # Not on PATH and not given.
    PATH=/usr/bin:/bin errors::configure monitor
    [ "$status" -ne 0 ]
    [[ $message == *"shm_add_test(t): shmmonitor was not found; put it on PATH or pass -DSHMTRANSPORT_SHMMONITOR=/path/to/shmmonitor"* ]]
    # Given, but not there.
    errors::configure monitor "-DSHMTRANSPORT_SHMMONITOR=$work/nowhere/shmmonitor"
    [ "$status" -ne 0 ]
    [[ $message == *"SHMTRANSPORT_SHMMONITOR is '$work/nowhere/shmmonitor', which does not exist"* ]]
    # A project that loads the module without using it needs no shmmonitor.
    PATH=/usr/bin:/bin errors::configure unused
    [ "$status" -eq 0 ]
}
