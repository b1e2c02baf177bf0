#!/usr/bin/env bash
# Sourced by the test jobs: starts devices (shm-keepalive) that hold a session's memory and
# reports each one as "ready <shmid> <session>" on the job's output, which the tests parse.
# SHMT_BIN and SHMT_GO_DIR come from the submitting test's environment.

JOB_DEVICE_PIDS=()

# With proctrack/linuxproc, Slurm loses track of a script's orphaned children, so they would
# outlive the job and keep their sessions in use; there the job kills its devices itself (as
# a crash would) before it ends. With proctrack/cgroup (production) Slurm kills them.
job::before_end() {
    [ "${SHMT_PROCTRACK:-cgroup}" = cgroup ] || kill -KILL "${JOB_DEVICE_PIDS[@]}" 2>/dev/null || true
}

# Starts a device in the background in session $1 (default: $SHMTRANSPORT_SESSION, as a device
# would) and waits until its memory exists. Extra arguments go to shm-keepalive.
job::device() {
    local session=${1:-$SHMTRANSPORT_SESSION}
    shift || true
    job::start_device "$session" env "$SHMT_BIN/shm-keepalive" -s "$session" "$@"
}

# Like job::device, but the device does not know it runs in a Slurm job (its management
# record carries no job id, as with C++ FairMQ devices): only --shm-session can name it.
job::foreign_device() {
    local session=$1
    shift
    job::start_device "$session" env -u SLURM_JOB_ID -u SLURM_STEP_ID "$SHMT_BIN/shm-keepalive" -s "$session" "$@"
}

# Runs the command after $1 in the background, waits for its "ready" line and prints it.
job::start_device() {
    local session=$1 fifo line=""
    shift
    fifo=$(mktemp -u "${TMPDIR:-/tmp}/shmt-dev.XXXXXX")
    mkfifo -m 600 "$fifo"
    "$@" >"$fifo" &
    JOB_DEVICE_PID=$!
    JOB_DEVICE_PIDS+=("$JOB_DEVICE_PID")
    read -r -t 30 line <"$fifo" || true
    rm -f "$fifo"
    case $line in
    ready\ *) echo "$line" ;;
    *) echo "device in session $session did not start" >&2; exit 1 ;;
    esac
}

# Blocks until the test creates $SHMT_GO_DIR/go-<job>-<name> (at most $2 seconds, default 120).
job::wait_go() {
    local file=$SHMT_GO_DIR/go-$SLURM_JOB_ID-$1 i
    for ((i = 0; i < ${2:-120} * 10; i++)); do
        [ -e "$file" ] && return 0
        sleep 0.1
    done
    echo "no $file after ${2:-120} s" >&2
    return 1
}
