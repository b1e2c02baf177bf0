#!/usr/bin/env bats
# The installed tree, run as a node without a Swift toolchain runs it. scripts/test-install runs
# this file in a mount namespace of its own where the toolchain's directory is an empty
# directory and /dev/shm a private tmpfs, with the tree installed under $INSTALL_PREFIX (a
# DESTDIR install) and PATH holding only the system's directories.
#
# Environment: INSTALL_PREFIX, TOOLCHAIN_DIR (hidden), SHMT_VERSION, REPO (the checkout: the
# example project and the plugin's symbol check).

setup_file() {
    [[ -d ${INSTALL_PREFIX:?} && -n ${TOOLCHAIN_DIR:?} && -n ${SHMT_VERSION:?} && -d ${REPO:?} ]]
}

setup() {
    bin=$INSTALL_PREFIX/bin
    tools=(shmmonitor shm-keepalive shm-bsampler shm-sink shm-processor shmbench)
    [ -z "$(ls -A /dev/shm)" ] # every test starts with an empty shm directory
}

teardown() {
    local pid
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    # leaves the private /dev/shm as it found it, also after a failure
    find /dev/shm -mindepth 1 -delete
}

# Waits up to 5 s for "ready" in file $1.
wait_ready() {
    local _
    for _ in $(seq 100); do
        grep -qs '^ready ' "$1" && return 0
        sleep 0.05
    done
    echo "no 'ready' in $1: $(cat "$1")" >&2
    return 1
}

# Waits up to $1 s for /dev/shm to be empty.
wait_shm_empty() {
    local _
    for _ in $(seq $(($1 * 20))); do
        [ -z "$(ls -A /dev/shm)" ] && return 0
        sleep 0.05
    done
    echo "left in /dev/shm: $(ls -A /dev/shm)" >&2
    return 1
}

@test "the toolchain is hidden, and no installed program or library loads anything from it" {
    [ -d "$TOOLCHAIN_DIR" ] && [ -z "$(ls -A "$TOOLCHAIN_DIR")" ]
    run command -v swift
    [ "$status" -ne 0 ]
    local file out elves=0
    for file in "$bin"/* "$INSTALL_PREFIX"/lib/slurm/*.so; do
        [ -L "$file" ] && continue
        [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = 177ELF ] || continue
        elves=$((elves + 1))
        out=$(ldd "$file")
        echo "$file: $out"
        [[ $out != *"not found"* && $out != *"$TOOLCHAIN_DIR"* ]]
        [[ $out != *libswift* && $out != *libFoundation* && $out != *libdispatch* && $out != *libBlocksRuntime* ]]
    done
    [ "$elves" -eq 7 ] # six tools and the plugin
}

@test "every installed tool prints the package version and its help" {
    local tool
    for tool in "${tools[@]}"; do
        run "$bin/$tool" --version
        [ "$status" -eq 0 ] && [ "$output" = "$SHMT_VERSION" ]
        run "$bin/$tool" --help
        [ "$status" -eq 0 ] && [[ $output == *"USAGE: $tool"* ]]
    done
    run "$bin/shm-launch" --version
    [ "$status" -eq 0 ] && [ "$output" = "$SHMT_VERSION" ]
}

@test "shmmonitor --list-all shows a live session, and the session is gone after its holder stops" {
    "$bin/shm-keepalive" -s "install-list-$$" >"$BATS_TEST_TMPDIR/out" &
    pids=($!)
    wait_ready "$BATS_TEST_TMPDIR/out"
    id=$(awk '{ print $2 }' "$BATS_TEST_TMPDIR/out")
    run "$bin/shmmonitor" --list-all
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"$id"* ]]
    kill -INT "${pids[0]}"
    wait "${pids[0]}"
    wait_shm_empty 5
    run "$bin/shmmonitor" --list-all
    [ "$status" -eq 0 ]
}

@test "the installed launcher (found on its own, no PATH): a SIGKILLed device's session is removed" {
    local out=$BATS_TEST_TMPDIR/out err=$BATS_TEST_TMPDIR/err child
    "$bin/shm-launch" -v -s "install-launch-$$" -- "$bin/shm-keepalive" >"$out" 2>"$err" &
    pids=($!)
    wait_ready "$out"
    [ -n "$(ls -A /dev/shm)" ]
    child=$(sed -n 's/.*started pid \([0-9]*\).*/\1/p' "$err" | head -n 1)
    [ -n "$child" ]
    kill -KILL "$child"
    local rc=0
    wait "${pids[0]}" || rc=$?
    cat "$err"
    # the launcher returns its device's status, and has removed the session by then
    [ "$rc" -eq 137 ]
    [ -z "$(ls -A /dev/shm)" ]
}

@test "the installed launcher SIGKILLed itself: its guardian removes the session" {
    local out=$BATS_TEST_TMPDIR/out err=$BATS_TEST_TMPDIR/err
    "$bin/shm-launch" -v -s "install-guardian-$$" -- "$bin/shm-keepalive" --no-cleanup >"$out" 2>"$err" &
    pids=($!)
    wait_ready "$out"
    kill -KILL "${pids[0]}"
    wait_shm_empty 3
    grep -q "guardian: the launcher (pid ${pids[0]}) died" "$err"
}

@test "the installed shm-job.sh finds the installed launcher and shmmonitor" {
    run bash -c ". '$INSTALL_PREFIX/share/shmtransport/shm-job.sh' && \
        shmjob::run -- '$bin/shm-keepalive' --no-cleanup --lifetime 0.2"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"ready "* ]]
    [ -z "$(ls -A /dev/shm)" ]
}

@test "the CTest example finds the installed package with CMAKE_PREFIX_PATH only, and every session is gone" {
    local work=$BATS_TEST_TMPDIR
    # a copy: the example's HINTS point at the repository's own module one directory up
    mkdir -p "$work/src"
    cp -r "$REPO/ctest/example" "$work/src/example"
    cmake -S "$work/src/example" -B "$work/build" "-DCMAKE_PREFIX_PATH=$INSTALL_PREFIX" >"$work/configure.log" 2>&1 ||
        { cat "$work/configure.log"; false; }
    # the CMake package carries the package's one version
    grep -q "set(PACKAGE_VERSION \"$SHMT_VERSION\")" "$INSTALL_PREFIX/lib/cmake/ShmTransportFixtures/ShmTransportFixturesConfigVersion.cmake"
    grep -qx "ShmTransportFixtures_DIR:PATH=$INSTALL_PREFIX/lib/cmake/ShmTransportFixtures" "$work/build/CMakeCache.txt"
    grep -qx "SHMTRANSPORT_SHMMONITOR:FILEPATH=$bin/shmmonitor" "$work/build/CMakeCache.txt"
    grep -qx "SHMTRANSPORT_KEEPALIVE:FILEPATH=$bin/shm-keepalive" "$work/build/CMakeCache.txt"
    run ctest --test-dir "$work/build" -j2
    echo "$output"
    # ctest exits 8 when tests fail; the three that fail on purpose failed, nothing else
    [ "$status" -eq 8 ]
    [[ $output == *"3 tests failed out of 16"* ]]
    [ -z "$(ls -A /dev/shm)" ]
}

@test "the installed plugin exports only the SPANK symbols and links only libc" {
    run make -s -C "$REPO/slurm" check-symbols "PLUGIN_FILE=$INSTALL_PREFIX/lib/slurm/shmtransport_spank.so"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *slurm_spank_init* ]]
    run ldd "$INSTALL_PREFIX/lib/slurm/shmtransport_spank.so"
    [ "$(grep -c '=>' <<<"$output")" -eq 1 ] && [[ $output == *libc.so.6* ]]
}

@test "man pages and bash, zsh and fish completions for every tool" {
    local tool page
    for tool in "${tools[@]}"; do
        page=$INSTALL_PREFIX/share/man/man1/$tool.1
        grep -q "^\.Dt ${tool^^} 1" "$page"
        grep -q -- "version" "$page"
        bash -c ". '$INSTALL_PREFIX/share/bash-completion/completions/$tool' && complete -p $tool" | grep -q "$tool"
        grep -q "#compdef $tool" "$INSTALL_PREFIX/share/zsh/vendor-completions/_$tool"
        grep -q "complete -c '$tool'" "$INSTALL_PREFIX/share/fish/vendor_completions.d/$tool.fish"
    done
    grep -q -- "--get-shmid" "$INSTALL_PREFIX/share/man/man1/shmmonitor.1"
}
