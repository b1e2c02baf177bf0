#!/usr/bin/env bats
# Without the plugin a job's leftovers stay in /dev/shm (so the other tests would notice a
# missing cleanup); the Epilog= script alternative removes them.

load lib/helpers

setup_file() {
    # slurmd runs Epilog= with a fixed environment, so a wrapper names our shmmonitor
    printf '#!/bin/sh\nSHMMONITOR=%s/shmmonitor exec %s/shmtransport-epilog.sh "$@"\n' "$SHMT_BIN" "$SHMT_BIN" \
        >"$SHMT_BIN/test-epilog.sh"
    printf '#!/bin/sh\nSHMT_USER_SWEEP=yes SHMMONITOR=%s/shmmonitor exec %s/shmtransport-epilog.sh "$@"\n' "$SHMT_BIN" "$SHMT_BIN" \
        >"$SHMT_BIN/test-epilog-sweep.sh"
    chmod 755 "$SHMT_BIN/test-epilog.sh" "$SHMT_BIN/test-epilog-sweep.sh"
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
own_session_job() { t::leaky_job --export=ALL,SHMTRANSPORT_SESSION="own-$SHMT_RUN-$1"; }

@test "without the plugin, a job's leftovers stay (control)" {
    t::use_plugstack none
    own_session_job control
    [ "$(t::shmids "$job" | wc -l)" -eq 2 ]
    for id in $(t::shmids "$job"); do [ -n "$(t::objects_of "$id")" ]; done
}

@test "the Epilog= script removes the job's sessions, nothing else" {
    t::use_plugstack none
    cluster::write_slurm_conf "Epilog=$SHMT_BIN/test-epilog.sh"
    scontrol reconfigure
    own_session_job epilog
    [ "$(t::job_state "$job")" = COMPLETED ]
    [ "$(t::node_state)" = idle ]
    t::assert_job_clean "$job"
    t::assert_sentinels
}

@test "the Epilog= script with SHMT_USER_SWEEP=yes sweeps after the user's last job only" {
    read -r _ _ other_dead <<<"$(tr '\n' ' ' <"$SHMT_TEST_ROOT/sentinels.ids")"
    [ -n "$(t::objects_of "$other_dead")" ]
    t::use_plugstack none
    cluster::write_slurm_conf "Epilog=$SHMT_BIN/test-epilog-sweep.sh"
    scontrol reconfigure
    t::hold_job "$SHMT_USER2" wait --export=ALL,SHMTRANSPORT_SESSION="own-$SHMT_RUN-a"
    a=$job
    t::hold_job "$SHMT_USER2" wait --export=ALL,SHMTRANSPORT_SESSION="own-$SHMT_RUN-b"
    b=$job
    snap_b=$(t::snapshot "$b")
    scancel "$a"
    t::wait_gone "$a"
    t::assert_job_clean "$a"
    t::assert_intact "$b" "$snap_b"
    # the user still has job b here: the user's leftover outside Slurm stays
    t::assert_sentinels
    scancel "$b"
    t::wait_gone "$b"
    t::assert_job_clean "$b"
    # the user's last job ended: the leftover goes; the first user's sessions stay
    expected=$(grep -v -e "fmq_${other_dead}_" "$SHMT_TEST_ROOT/sentinels.expected")
    [ -z "$(t::objects_of "$other_dead")" ]
    [ "$(t::sentinel_objects)" = "$expected" ]
    echo "$expected" >"$SHMT_TEST_ROOT/sentinels.expected"
}
