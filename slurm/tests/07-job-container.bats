#!/usr/bin/env bats
# With job_container/tmpfs every job has a private /dev/shm in its own mount namespace, which
# slurmstepd's exit hook and the job epilog (both in the host namespace) cannot see. With
# job_namespace= the plugin's cleanups enter the job's namespace: a crashed step's session is
# removed there while the job goes on; the rest goes with the namespace at job end; the host's
# /dev/shm never sees the job's objects.

load lib/helpers

setup_file() {
    local base=$SHMT_TEST_ROOT/job-container
    printf 'AutoBasePath=true\nBasePath=%s\n' "$base" >"$SHMT_TEST_ROOT/etc/job_container.conf"
    cluster::write_slurm_conf "JobContainerType=job_container/tmpfs" "PrologFlags=Contain"
    # Slurm 22.05 keeps the namespace in <BasePath>/<node>/<job>/.ns
    cluster::write_plugstack "job_namespace=$base/%n/%j/.ns"
    cluster::restart_daemons
}

teardown_file() {
    cluster::write_slurm_conf
    cluster::write_plugstack "${SHMT_PLUGSTACK_ARGS:-}"
    cluster::restart_daemons
}

setup() { JOBS=(); }

teardown() { t::forget "${JOBS[@]}"; }

# Objects of shm id $2 inside the private /dev/shm of job $1.
objects_in_job() {
    # shellcheck disable=SC2016 # expanded by the shell inside the namespace
    nsenter --mount="$SHMT_TEST_ROOT/job-container/$(hostname -s)/$1/.ns" -- \
        bash -c "$(declare -f common::shm_objects_of)"'; common::shm_objects_of "$1" /dev/shm' _ "$2"
}

@test "job_container/tmpfs: a crashed step's session is removed inside the job's namespace" {
    job=$(t::submit "$SHMT_USER1" "$SHMT_JOBS/steps.sh" crash)
    JOBS+=("$job")
    t::wait_for "$job" '^CRASHED$'
    crashed=$(t::output "$job" | awk '$1 == "crash-step" { print $2 }')
    crashed_id=$(t::output "$job" | awk -v s="$crashed" '$1 == "ready" && $3 == s { print $2 }')
    [ -n "$crashed_id" ]
    t::wait_step_gone "$job" "${crashed##*-}"
    [ -z "$(objects_in_job "$job" "$crashed_id")" ]
    for id in $(t::shmids "$job"); do
        # private: never on the host
        [ -z "$(t::objects_of "$id")" ]
        [ "$id" = "$crashed_id" ] && continue
        [ -n "$(objects_in_job "$job" "$id")" ]
    done
    t::go "$job" end
    t::wait_gone "$job"
    # at job end Slurm deletes the namespace and its /dev/shm (22.05: when the extern step
    # ends, before the epilog), and the host never had the job's objects
    [ ! -e "$SHMT_TEST_ROOT/job-container/$(hostname -s)/$job" ]
    for id in $(t::shmids "$job"); do [ -z "$(t::objects_of "$id")" ]; done
    t::assert_sentinels
}
