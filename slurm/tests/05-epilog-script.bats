#!/usr/bin/env bats
# Without the plugin a job's leftovers stay in /dev/shm (so the other tests would notice a
# missing cleanup); the Epilog= script alternative removes them.

load lib/helpers

setup_file() {
    # slurmd runs Epilog= with a fixed environment, so a wrapper names our shmmonitor
    printf '#!/bin/sh\nSHMMONITOR=%s/shmmonitor exec %s/shmtransport-epilog.sh "$@"\n' "$SHMT_BIN" "$SHMT_BIN" \
        >"$SHMT_BIN/test-epilog.sh"
    chmod 755 "$SHMT_BIN/test-epilog.sh"
}

teardown_file() {
    cluster::write_slurm_conf
    scontrol reconfigure
    t::default_plugstack
}

setup() { JOBS=(); }

teardown() {
    t::forget "${JOBS[@]}"
    for job in "${JOBS[@]}"; do t::remove_job_sessions "$job"; done
}

# hold.sh without the plugin: no step session is given, so the job names its own.
leaky_job() {
    job=$(t::submit "$SHMT_USER1" --export=ALL,SHMTRANSPORT_SESSION="own-$SHMT_RUN-$1" "$SHMT_JOBS/hold.sh" exit)
    JOBS+=("$job")
    t::wait_for "$job" '^READY$'
    t::go "$job" end
    t::wait_gone "$job"
}

@test "without the plugin, a job's leftovers stay (control)" {
    t::use_plugstack none
    leaky_job control
    [ "$(t::shmids "$job" | wc -l)" -eq 2 ]
    for id in $(t::shmids "$job"); do [ -n "$(t::objects_of "$id")" ]; done
}

@test "the Epilog= script removes the job's sessions, nothing else" {
    t::use_plugstack none
    cluster::write_slurm_conf "Epilog=$SHMT_BIN/test-epilog.sh"
    scontrol reconfigure
    leaky_job epilog
    [ "$(t::job_state "$job")" = COMPLETED ]
    [ "$(t::node_state)" = idle ]
    t::assert_job_clean "$job"
    t::assert_sentinels
}
