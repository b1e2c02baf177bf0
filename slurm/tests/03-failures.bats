#!/usr/bin/env bats
# A cleanup that fails is logged and leaves the node in service, unless the site asked for
# strict=yes; then the epilog fails and Slurm drains the node.

load lib/helpers

setup() { JOBS=(); }

teardown() {
    t::forget "${JOBS[@]}"
    for job in "${JOBS[@]}"; do t::remove_job_sessions "$job"; done
}

teardown_file() {
    scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    t::default_plugstack
}

@test "a cleanup failure is logged and does not drain the node" {
    t::use_plugstack shmmonitor=/nonexistent/shmmonitor
    t::leaky_job
    [ "$(t::job_state "$job")" = COMPLETED ]
    [ "$(t::node_state)" = idle ]
    # nothing could clean: the objects are still there (the engine is what removes them)
    for id in $(t::shmids "$job"); do [ -n "$(t::objects_of "$id")" ]; done
    grep -F "shmtransport: job $job: cannot run /nonexistent/shmmonitor: No such file or directory; check the shmmonitor= argument" "$SHMT_TEST_ROOT/log/slurmd.log"
    grep -F "shmtransport: job $job: cleanup incomplete" "$SHMT_TEST_ROOT/log/slurmd.log"
    t::assert_sentinels
}

@test "strict=yes: a cleanup failure fails the epilog and drains the node" {
    t::use_plugstack shmmonitor=/nonexistent/shmmonitor strict=yes
    t::leaky_job
    state=$(t::node_state)
    echo "node state: $state"
    [[ $state == drain* ]]
    grep -F "shmtransport: job $job: cleanup incomplete (see the messages above); failing the epilog because strict=yes" \
        "$SHMT_TEST_ROOT/log/slurmd.log"
    t::assert_sentinels
}
