# shellcheck shell=bash
# Helpers for the plugin's bats files. The cluster is started by scripts/test-slurm, which
# exports SHMT_TEST_ROOT, SLURM_CONF, SHMT_BIN, SHMT_JOBS, SHMT_GO_DIR, SHMT_USER1/2, SHMT_RUN.

# shellcheck source=scripts/lib/common.sh
. "$BATS_TEST_DIRNAME/../../scripts/lib/common.sh"
# shellcheck source=slurm/tests/lib/cluster.bash
. "$BATS_TEST_DIRNAME/lib/cluster.bash"

SHM_DIR=/dev/shm

# Submits a batch job as user $1 (remaining arguments go to sbatch) and prints its id.
t::submit() {
    local user=$1 id
    shift
    id=$(runuser -u "$user" -- sbatch --parsable --chdir="$SHMT_GO_DIR" \
        -o "$SHMT_GO_DIR/job-%j.out" -e "$SHMT_GO_DIR/job-%j.out" "$@")
    echo "${id%%;*}"
}

t::output() { cat "$SHMT_GO_DIR/job-$1.out" 2>/dev/null || true; }

# Submits the test job hold.sh as user $1 with end mode $2 (exit, wait or selfkill; further
# arguments go to sbatch), waits until its devices are ready and leaves the job id in $job.
# The job is added to JOBS, the list the bats files' teardown hands to t::forget.
t::hold_job() {
    local user=$1 mode=$2
    shift 2
    job=$(t::submit "$user" "$@" "$SHMT_JOBS/hold.sh" "$mode")
    JOBS+=("$job")
    t::wait_for "$job" '^READY$'
}

# Runs hold.sh as the first test user to a normal end (arguments go to sbatch) and waits until
# it has left squeue: for tests in which nothing, or something else, cleans up.
t::leaky_job() {
    t::hold_job "$SHMT_USER1" exit "$@"
    t::go "$job" end
    t::wait_gone "$job"
}

# Waits until the job's output has a line matching $2 (at most $3 seconds, default 30; fails
# at once when the job has ended without printing it).
t::wait_for() {
    local job=$1 pattern=$2 i
    for ((i = 0; i < ${3:-30} * 10; i++)); do
        t::output "$job" | grep -q -E "$pattern" && return 0
        if ((i % 10 == 9)) && [ -z "$(squeue -h -j "$job" 2>/dev/null)" ]; then
            t::output "$job" | grep -q -E "$pattern" && return 0
            echo "job $job ended ($(t::job_state "$job")) without a line matching '$pattern'; output:" >&2
            t::output "$job" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "job $job: no line matching '$pattern' after ${3:-30} s; output:" >&2
    t::output "$job" >&2
    return 1
}

# Lets a waiting job go on (job::wait_go in the job).
t::go() { touch "$SHMT_GO_DIR/go-$1-$2"; }

# Waits until the job has left squeue (its epilog has then finished).
t::wait_gone() {
    local job=$1 i
    for ((i = 0; i < ${2:-60} * 10; i++)); do
        [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && return 0
        sleep 0.1
    done
    echo "job $job is still in squeue after ${2:-60} s: $(squeue -h -j "$job")" >&2
    return 1
}

# Waits until step $2 of job $1 has left `squeue --steps` (its slurmstepd has then ended).
t::wait_step_gone() {
    local job=$1 step=$2 i
    for ((i = 0; i < ${3:-30} * 10; i++)); do
        squeue -h -s -j "$job" -o %i 2>/dev/null | grep -q -x "$job\.$step" || return 0
        sleep 0.1
    done
    echo "step $job.$step is still in squeue after ${3:-30} s" >&2
    return 1
}

t::job_state() { scontrol show job "$1" 2>/dev/null | grep -o -E 'JobState=[A-Z_]+' | cut -d= -f2; }

# The shm ids the job's devices reported ("ready <shmid> <session>"), one per line.
t::shmids() {
    t::output "$1" | awk '$1 == "ready" { print $2 }' | sort -u
}

# The job's devices' sessions.
t::sessions() {
    t::output "$1" | awk '$1 == "ready" { print $3 }' | sort -u
}

# Objects of a shm id in /dev/shm, sorted (empty when the session is gone).
t::objects_of() { common::shm_objects_of "$1" "$SHM_DIR"; }

# Fails unless none of the job's sessions has an object left.
t::assert_job_clean() {
    local job=$1 id left=""
    [ -n "$(t::shmids "$job")" ] || { echo "job $job reported no sessions" >&2; return 1; }
    for id in $(t::shmids "$job"); do
        left+=$(t::objects_of "$id")
    done
    if [ -n "$left" ]; then
        echo "job $job left objects behind:" >&2
        echo "$left" >&2
        grep -F "job $job" "$SHMT_TEST_ROOT/log/slurmd.log" | grep shmtransport >&2 || true
        return 1
    fi
}

# The objects of all the job's sessions now, sorted per session (for t::assert_intact).
t::snapshot() {
    local job=$1 id
    for id in $(t::shmids "$job"); do t::objects_of "$id"; done
}

# Fails unless every one of the job's sessions still has all the objects it had at $2 (a
# snapshot from t::snapshot).
t::assert_intact() {
    local job=$1 before=$2 now
    now=$(t::snapshot "$job")
    if [ -z "$before" ] || [ "$now" != "$before" ]; then
        echo "objects of job $job changed (or were never there):" >&2
        diff <(echo "$before") <(echo "$now") >&2 || true
        return 1
    fi
}

# Sessions outside Slurm that no job may touch (created by scripts/test-slurm): their objects
# now, and as they were when created.
t::sentinel_objects() {
    local id
    while read -r id; do t::objects_of "$id"; done <"$SHMT_TEST_ROOT/sentinels.ids"
}

t::assert_sentinels() {
    local now expected
    expected=$(cat "$SHMT_TEST_ROOT/sentinels.expected")
    now=$(t::sentinel_objects)
    if [ "$now" != "$expected" ]; then
        echo "objects of sessions outside Slurm were removed:" >&2
        diff <(echo "$expected") <(echo "$now") >&2 || true
        return 1
    fi
}

# Cancels the jobs that still run (teardown after a failed assertion) and waits until they have
# left squeue. Their sessions are left to the plugin (or to t::remove_job_sessions).
t::forget() {
    local job
    for job in "$@"; do
        [ -n "$job" ] || continue
        scancel "$job" 2>/dev/null || true
        t::wait_gone "$job" 30 || true
    done
}

# Reloads the plugin with other plugstack arguments ("none": not loaded); slurmd must restart
# for its job_prolog/job_epilog hooks to see the change.
t::use_plugstack() {
    cluster::write_plugstack "$@"
    cluster::restart_slurmd
}

t::default_plugstack() { t::use_plugstack "${SHMT_PLUGSTACK_ARGS:-}"; }

# Removes what a job left behind on purpose (tests without a working cleanup), as root.
t::remove_job_sessions() {
    local job=$1 id
    for id in $(t::shmids "$job"); do
        "$SHMT_BIN/shmmonitor" -c --force --shmid "$id" >/dev/null 2>&1 || true
    done
}

t::node_state() { sinfo -h -n "$(hostname -s)" -o %T; }
