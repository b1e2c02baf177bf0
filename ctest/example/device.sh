#!/usr/bin/env bash
# Stands in for a device under test: creates the shared memory of session SESSION and then
# passes, fails, aborts, hangs or sleeps, always leaving its memory behind for the fixtures to
# remove. `fairmq` creates the object names a C++ FairMQ device would leave instead.
#
#   device.sh pass|fail|abort|hang|sleep|fairmq SESSION
#
# Needs SHM_KEEPALIVE and SHMMONITOR (paths of shm-keepalive and shmmonitor); the shm directory
# is $SHMTRANSPORT_SHM_DIR or /dev/shm. `sleep` holds the memory for $EXAMPLE_SLEEP_SECONDS
# (default 600) and first checks that no earlier run left objects of its session.
set -Eeuo pipefail

device::die() {
    printf 'device.sh: %s\n' "$*" >&2
    exit 2
}

[ "$#" -eq 2 ] || device::die "usage: device.sh pass|fail|abort|hang|sleep|fairmq SESSION"
mode=$1
session=$2
keepalive=${SHM_KEEPALIVE:?set SHM_KEEPALIVE to the path of shm-keepalive}
monitor=${SHMMONITOR:?set SHMMONITOR to the path of shmmonitor}
shm_dir=${SHMTRANSPORT_SHM_DIR:-/dev/shm}

# The session's shm id: the last word of `shmmonitor --get-shmid`.
device::shmid() {
    local line
    line=$("$monitor" --get-shmid "--session=$session")
    printf '%s\n' "${line##* }"
}

# Creates the session's memory and leaves it behind, as a device that exits without cleaning.
device::leave_memory() {
    "$keepalive" "--session=$session" --no-cleanup --lifetime 0.2 >/dev/null
}

case $mode in
pass)
    device::leave_memory
    echo "device.sh: done"
    ;;
fail)
    device::leave_memory
    echo "device.sh: the output was wrong (this test fails on purpose)" >&2
    exit 1
    ;;
abort)
    # The device crashes while holding its memory: SIGKILL, so nothing of it cleans up.
    coproc KEEPALIVE { exec "$keepalive" "--session=$session" --no-cleanup; }
    read -r ready <&"${KEEPALIVE[0]}" || device::die "shm-keepalive did not start"
    echo "device.sh: $ready"
    kill -KILL "$KEEPALIVE_PID"
    wait "$KEEPALIVE_PID" || true
    echo "device.sh: aborting (this test aborts on purpose)" >&2
    ulimit -c 0
    kill -ABRT $$
    ;;
hang)
    # Holds the memory until the test's TIMEOUT kills it.
    exec "$keepalive" "--session=$session" --no-cleanup
    ;;
sleep)
    shmid=$(device::shmid)
    leftovers=$(find "$shm_dir" -maxdepth 1 -name "*fmq_${shmid}_*" -printf '%f ')
    [ -z "$leftovers" ] || device::die "an earlier run left $leftovers; the setup fixture should have removed them"
    echo "device.sh: no leftovers of session $session; holding its memory"
    exec "$keepalive" "--session=$session" --no-cleanup --lifetime "${EXAMPLE_SLEEP_SECONDS:-600}"
    ;;
fairmq)
    # What a C++ FairMQ device leaves after a crash: the management segment, a managed segment
    # and the monitor's semaphore, named after the session's shm id.
    shmid=$(device::shmid)
    for name in "fmq_${shmid}_mng" "fmq_${shmid}_m_0" "sem.fmq_${shmid}_ms"; do
        head -c 4096 /dev/zero >"$shm_dir/$name"
    done
    echo "device.sh: left fmq_${shmid}_mng fmq_${shmid}_m_0 sem.fmq_${shmid}_ms"
    ;;
*)
    device::die "unknown mode '$mode'; use pass, fail, abort, hang, sleep or fairmq"
    ;;
esac
