#!/usr/bin/env bats
# A topology across the two nodes of the cluster that `scripts/test-slurm --two-nodes` starts:
# sampler and processor on n0 over shmem, zeromq over tcp from n0 to n1, relay and sink on n1
# over shmem — slurm/examples/two-node-topology.sbatch and .json as users run them. Each node
# has its own /dev/shm. After every way the job ends, the step's sessions are gone from both
# nodes, and the sessions of other jobs on both nodes and of no job are untouched.

# Each @test runs in its own subshell: JOBS and job are per test on purpose.
# shellcheck disable=SC2030,SC2031

load lib/helpers

# The objects of shm id $2 in node $1's /dev/shm, sorted.
t2::objects_on() {
    cluster::on_node "$1" find /dev/shm -maxdepth 1 \( -name "fmq_$2_*" -o -name "sem.fmq_$2_*" \) -printf '%f\n' | sort
}

# The objects of every session job $2 reported ("ready" lines), on node $1.
t2::snapshot_on() {
    local id
    for id in $(t::shmids "$2"); do t2::objects_on "$1" "$id"; done
}

# The shm id of the first step's session of job $1 (slurm-<job>-0, the same name on both nodes).
t2::step_shmid() {
    "$SHMT_MONITOR" --get-shmid -s "slurm-$1-0" --user-id "$(id -u "$SHMT_USER1")" | awk '{ print $NF }'
}

# Submits the example topology job as the first test user with MESSAGES=$1 and MSG_RATE=$2 in
# a directory of its own ($dir, with the topology file and a TMPDIR for the ipc sockets).
t2::topology_job() {
    dir=$SHMT_GO_DIR/topology-$BATS_TEST_NUMBER-$SHMT_RUN
    install -d -o "$SHMT_USER1" -m 0755 "$dir" "$dir/tmp"
    install -m 0644 "$SHMT_BIN/two-node-topology.json" "$dir/"
    job=$(runuser -u "$SHMT_USER1" -- sbatch --parsable --chdir="$dir" \
        -o "$SHMT_GO_DIR/job-%j.out" -e "$SHMT_GO_DIR/job-%j.out" \
        --export="ALL,PATH=$SHMT_BIN:/usr/bin:/bin,MESSAGES=$1,MSG_RATE=$2,TMPDIR=$dir/tmp" \
        "$SHMT_BIN/two-node-topology.sbatch")
    job=${job%%;*}
    JOBS+=("$job")
}

# The pid of the topology job's device $1 (sink or relay), checked to run on n1: in n1's network
# namespace.
t2::task_pid() {
    local pid
    pid=$(pgrep -u "$SHMT_USER1" -f -- "--id $1 " | head -n 1)
    [ -n "$pid" ] || { echo "no device --id $1 of job $job runs" >&2; return 1; }
    [ "$(ip netns identify "$pid")" = "$(cluster::netns)" ] || { echo "device $1 ($pid) does not run on n1" >&2; return 1; }
    echo "$pid"
}

# Waits until the topology job runs on both nodes: its step's session exists in each node's
# /dev/shm and the sink has its first messages.
t2::wait_running() {
    local id i
    id=$(t2::step_shmid "$job")
    for ((i = 0; i < 300; i++)); do
        if [ -n "$(t2::objects_on n0 "$id")" ] && [ -n "$(t2::objects_on n1 "$id")" ] &&
            t::output "$job" | grep -q -E '^3: .*results\[0\]: in: [1-9]'; then
            return 0
        fi
        sleep 0.1
    done
    echo "job $job does not run on both nodes after 30 s; output:" >&2
    t::output "$job" >&2
    return 1
}

# Fails unless the topology job's step session has no object left on either node, and the
# plugin on n1 logged its cleanup (when $2 is "logged").
t2::assert_both_nodes_clean() {
    local id left node
    id=$(t2::step_shmid "$1")
    for node in n0 n1; do
        left=$(t2::objects_on "$node" "$id")
        if [ -n "$left" ]; then
            echo "job $1 left objects of slurm-$1-0 ($id) on $node:" >&2
            echo "$left" >&2
            grep -F "[$1.0]" "$SHMT_TEST_ROOT/log/slurmd.$node.log" | grep shmtransport >&2 || true
            return 1
        fi
    done
    if [ "${2:-}" = logged ]; then
        grep -F "[$1.0] shmtransport: job $1 step 0: Successfully removed '/dev/shm/fmq_${id}_mng'" \
            "$SHMT_TEST_ROOT/log/slurmd.n1.log"
    fi
}

# Fails unless the other jobs' sessions (one job on each node) and the sessions of no job (on
# n0 from scripts/test-slurm, on n1 from setup_file) have every object they had at the start.
t2::assert_others_intact() {
    local now
    now=$(t2::snapshot_on n0 "$OTHER_N0")
    [ "$now" = "$OTHER_N0_OBJECTS" ] || { echo "objects of job $OTHER_N0 on n0 changed: $now" >&2; return 1; }
    now=$(t2::snapshot_on n1 "$OTHER_N1")
    [ "$now" = "$OTHER_N1_OBJECTS" ] || { echo "objects of job $OTHER_N1 on n1 changed: $now" >&2; return 1; }
    now=$(t2::objects_on n1 "$OUTSIDE_N1")
    [ "$now" = "$OUTSIDE_N1_OBJECTS" ] || { echo "objects of the session outside Slurm on n1 changed: $now" >&2; return 1; }
    t::assert_sentinels
}

setup_file() {
    local line u2
    # another user's job on each node, holding sessions the topology jobs must not touch
    JOBS=()
    t::hold_job "$SHMT_USER2" wait -N1 -w n0
    export OTHER_N0=$job
    t::hold_job "$SHMT_USER2" wait -N1 -w n1
    export OTHER_N1=$job
    OTHER_N0_OBJECTS=$(t2::snapshot_on n0 "$OTHER_N0")
    OTHER_N1_OBJECTS=$(t2::snapshot_on n1 "$OTHER_N1")
    export OTHER_N0_OBJECTS OTHER_N1_OBJECTS
    # the other job on n1 really holds its memory in n1's /dev/shm, and not in n0's
    [ -n "$OTHER_N1_OBJECTS" ] && [ -z "$(t2::snapshot_on n0 "$OTHER_N1")" ]
    # a leftover of no job on n1 (the second test user's, dead)
    u2=$(id -u "$SHMT_USER2")
    line=$(cluster::on_node n1 setpriv --reuid="$u2" --regid="$(id -g "$SHMT_USER2")" --clear-groups -- \
        "$SHMT_BIN/shm-keepalive" -s "outside-$SHMT_RUN-n1" --no-cleanup --lifetime 0.1)
    OUTSIDE_N1=$(echo "$line" | awk '$1 == "ready" { print $2 }')
    OUTSIDE_N1_OBJECTS=$(t2::objects_on n1 "$OUTSIDE_N1")
    export OUTSIDE_N1 OUTSIDE_N1_OBJECTS
    [ -n "$OUTSIDE_N1_OBJECTS" ]
}

teardown_file() {
    t::forget "${OTHER_N0:-}" "${OTHER_N1:-}"
    [ -z "${OUTSIDE_N1:-}" ] || cluster::on_node n1 "$SHMT_MONITOR" -c --force --shmid "$OUTSIDE_N1" >/dev/null 2>&1 || true
}

setup() {
    JOBS=()
}

teardown() {
    t::forget "${JOBS[@]}"
}

@test "two nodes: each runs its slurmd in its own network namespace with its own /dev/shm" {
    run sinfo -h -N -o '%N %T'
    echo "$output"
    [ "${lines[0]}" = "n0 idle" ] || [ "${lines[0]}" = "n0 mixed" ]
    [ "${lines[1]}" = "n1 idle" ] || [ "${lines[1]}" = "n1 mixed" ]
    # shellcheck disable=SC2016 # expanded on each node, not here
    run srun -N2 -n2 --overlap -l bash -c 'echo "$SLURMD_NODENAME $(ip -4 -o addr show scope global | awk "{ print \$4 }" | sort | paste -s -d " ")"'
    echo "$output"
    [[ $output == *"n0 "*"$(cluster::node_addr n0)/24"* ]]
    [[ $output == *"n1 $(cluster::node_addr n1)/24"* ]]
    # n1's /dev/shm is not n0's
    [ "$(stat -c %d /dev/shm)" != "$(cluster::on_node n1 stat -c %d /dev/shm)" ]
}

@test "normal end: 100,000 messages reach the sink on n1 in order, every byte checked; nothing left on either node" {
    t2::topology_job 100000 0
    t::wait_gone "$job" 120
    run t::output "$job"
    echo "$output"
    [ "$(t::job_state "$job")" = COMPLETED ]
    # the sink (task 3, on n1) checked every message's bytes and order
    [[ $output == *"3: "*"Received 100000 messages in"* ]]
    [[ $output == *"0: "*"Done 100000 iterations in"* ]]
    [[ $output == *"1: "*"Forwarded 100000 messages from samples[0] to cross[0]"* ]]
    [[ $output == *"2: "*"Forwarded 100000 messages from cross[0] to results[0]"* ]]
    # the processor on n0 found the relay at n1's address through the job's address directory
    [[ $output == *"1: "*"cross[0]: connecting to tcp://$(cluster::node_addr n1):"*"addresses-$job/cross.0"* ]]
    [[ $output == *"2: "*"cross[0]: bound tcp://0.0.0.0:"*"published as tcp://$(cluster::node_addr n1):"* ]]
    [[ $output != *"error"* ]]
    t2::assert_both_nodes_clean "$job"
    # every device removed its address file, libzmq its ipc sockets; the script the directory
    [ ! -e "$dir/addresses-$job" ]
    [ -z "$(ls -A "$dir/tmp")" ]
    t2::assert_others_intact
}

@test "scancel: the step's sessions are gone from both nodes, nothing else" {
    t2::topology_job 0 2000
    t2::wait_running
    scancel "$job"
    t::wait_gone "$job" 60
    [ "$(t::job_state "$job")" = CANCELLED ]
    t2::assert_both_nodes_clean "$job"
    t2::assert_others_intact
}

@test "scancel --signal=KILL: the step's sessions are gone from both nodes, nothing else" {
    t2::topology_job 0 2000
    t2::wait_running
    scancel --signal=KILL "$job"
    t::wait_gone "$job" 60
    t2::assert_both_nodes_clean "$job"
    t2::assert_others_intact
}

@test "the sink on n1 SIGKILLed: n1 is clean, the step ends on n0 clean too, nothing else touched" {
    t2::topology_job 0 2000
    t2::wait_running
    pid=$(t2::task_pid sink)
    id=$(t2::step_shmid "$job")
    [ -n "$(t2::objects_on n1 "$id")" ]
    kill -KILL "$pid"
    t::wait_gone "$job" 60
    run t::output "$job"
    echo "$output"
    [[ $output == *"n1: task 3: Killed"* ]]
    [ "$(t::job_state "$job")" = FAILED ]
    t2::assert_both_nodes_clean "$job"
    t2::assert_others_intact
}

@test "both tasks on n1 SIGKILLed at once: the plugin on n1 removes their session, nothing else touched" {
    t2::topology_job 0 2000
    t2::wait_running
    sink=$(t2::task_pid sink)
    relay=$(t2::task_pid relay)
    kill -KILL "$sink" "$relay"
    t::wait_gone "$job" 60
    [ "$(t::job_state "$job")" = FAILED ]
    # nobody on n1 was left to remove it: the step-end hook on n1 did
    t2::assert_both_nodes_clean "$job" logged
    t2::assert_others_intact
}

@test "the other jobs on both nodes end clean as well" {
    scancel "$OTHER_N0" "$OTHER_N1"
    t::wait_gone "$OTHER_N0"
    t::wait_gone "$OTHER_N1"
    [ -z "$(t2::snapshot_on n0 "$OTHER_N0")" ]
    [ -z "$(t2::snapshot_on n1 "$OTHER_N1")" ]
    # the session of no job on n1 is still there
    [ "$(t2::objects_on n1 "$OUTSIDE_N1")" = "$OUTSIDE_N1_OBJECTS" ]
}
