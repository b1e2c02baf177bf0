#!/usr/bin/env bats
# The CloneNSEpilog= example for job_container/tmpfs (Slurm 23.02+, so not run by this
# cluster): a job's private /dev/shm lives in its own mount namespace, held by a bind mount
# named in SLURM_NS. Here the same layout is built with unshare, and the script must clean
# the job's sessions inside the namespace without touching the host's /dev/shm.

load lib/helpers

setup() {
    NSDIR=$SHMT_TEST_ROOT/ns-$BATS_TEST_NUMBER
    mkdir -p "$NSDIR"
    mount -t tmpfs -o size=4m tmpfs "$NSDIR"
    mount --make-private "$NSDIR"
    touch "$NSDIR/mnt"
    U1=$(id -u "$SHMT_USER1")
    G1=$(id -g "$SHMT_USER1")
}

teardown() {
    umount "$NSDIR/mnt" 2>/dev/null || true
    umount "$NSDIR" 2>/dev/null || true
    rmdir "$NSDIR" 2>/dev/null || true
}

# Runs a command as the first test user inside the namespace.
in_ns() {
    nsenter --mount="$NSDIR/mnt" -- setpriv --reuid="$U1" --regid="$G1" --clear-groups -- "$@"
}

@test "CloneNSEpilog example: cleans the job's private /dev/shm from inside its namespace" {
    job=$((9000000 + RANDOM))
    # the namespace outlives this command through the bind mount on $NSDIR/mnt
    unshare --mount="$NSDIR/mnt" --propagation private sh -c 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm'
    in_ns env SLURM_JOB_ID="$job" "$SHMT_BIN/shm-keepalive" -s "ns-$SHMT_RUN-job" --no-cleanup --lifetime 0.1 >"$NSDIR/a"
    in_ns env -u SLURM_JOB_ID "$SHMT_BIN/shm-keepalive" -s "ns-$SHMT_RUN-plain" --no-cleanup --lifetime 0.1 >"$NSDIR/b"
    a=$(awk '{print $2}' "$NSDIR/a")
    b=$(awk '{print $2}' "$NSDIR/b")
    inside=$(nsenter --mount="$NSDIR/mnt" -- ls /dev/shm)
    echo "inside: $inside"
    [[ $inside == *"fmq_${a}_mng"* ]]
    [[ $inside == *"fmq_${b}_mng"* ]]
    # the host never sees the job's objects
    [ -z "$(t::objects_of "$a")" ]
    [ -z "$(t::objects_of "$b")" ]

    run env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SLURM_NS="$NSDIR/mnt" SLURM_JOB_ID="$job" \
        SHMMONITOR="$SHMT_BIN/shmmonitor" "$SHMT_BIN/clonens-epilog.sh"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"Successfully removed '/dev/shm/fmq_${a}_mng'"* ]]
    [[ $output == *"Successfully removed '/dev/shm/fmq_${b}_mng'"* ]]
    run nsenter --mount="$NSDIR/mnt" -- find /dev/shm -maxdepth 1 -name '*fmq_*'
    [ -z "$output" ]
    t::assert_sentinels
}

@test "CloneNSEpilog example: without SLURM_NS it says how to use it and exits 0" {
    run env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SHMMONITOR="$SHMT_BIN/shmmonitor" "$SHMT_BIN/clonens-epilog.sh"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"run this only as job_container.conf's CloneNSEpilog="* ]]
}
