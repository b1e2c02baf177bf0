#!/usr/bin/env bats
# Jobs of an ordinary user whose devices hold transport sessions: after the job has left
# squeue, none of its objects may be left and no object of anyone else may be gone.
# Run by scripts/test-slurm, which starts the cluster with the plugin loaded.

# Each @test runs in its own subshell: JOBS and job are per test on purpose.
# shellcheck disable=SC2030,SC2031

load lib/helpers

setup() {
    JOBS=()
}

teardown() {
    t::forget "${JOBS[@]}"
}

@test "each step gets its own SHMTRANSPORT_SESSION from the plugin" {
    # shellcheck disable=SC2016 # expanded inside the job, not here
    job=$(t::submit "$SHMT_USER1" --wrap 'echo "batch=$SHMTRANSPORT_SESSION"; srun --overlap -n1 printenv SHMTRANSPORT_SESSION; srun --overlap -n1 printenv SHMTRANSPORT_SESSION; SHMTRANSPORT_SESSION=mine-'"$SHMT_RUN"' srun --overlap -n1 printenv SHMTRANSPORT_SESSION')
    JOBS+=("$job")
    t::wait_gone "$job"
    run t::output "$job"
    echo "$output"
    [ "${lines[0]}" = "batch=slurm-$job-batch" ]
    [ "${lines[1]}" = "slurm-$job-0" ]
    [ "${lines[2]}" = "slurm-$job-1" ]
    # a session the job set itself is kept
    [ "${lines[3]}" = "mine-$SHMT_RUN" ]
}

@test "normal exit: the job's sessions are removed, nothing else" {
    named="named-$SHMT_RUN-exit"
    t::hold_job "$SHMT_USER1" exit --shm-session="$named" --export=ALL,SHMT_NAMED="$named"
    # the batch step's session, a second one of the job, and the named one
    [ "$(t::sessions "$job" | wc -l)" -eq 3 ]
    [ "$(t::shmids "$job" | wc -l)" -eq 3 ]
    [ -n "$(t::snapshot "$job")" ]
    t::go "$job" end
    t::wait_gone "$job"
    [ "$(t::job_state "$job")" = COMPLETED ]
    t::assert_job_clean "$job"
    t::assert_sentinels
}

@test "scancel: the job's sessions are removed, nothing else" {
    named="named-$SHMT_RUN-cancel"
    t::hold_job "$SHMT_USER1" wait --shm-session="$named" --export=ALL,SHMT_NAMED="$named"
    scancel "$job"
    t::wait_gone "$job"
    [ "$(t::job_state "$job")" = CANCELLED ]
    t::assert_job_clean "$job"
    t::assert_sentinels
}

@test "scancel --signal=KILL: the job's sessions are removed, nothing else" {
    t::hold_job "$SHMT_USER1" wait
    scancel --signal=KILL "$job"
    t::wait_gone "$job"
    t::assert_job_clean "$job"
    t::assert_sentinels
}

@test "the job script SIGKILLed: the job's sessions are removed, nothing else" {
    t::hold_job "$SHMT_USER1" selfkill
    t::go "$job" end
    t::wait_gone "$job"
    [ "$(t::job_state "$job")" = FAILED ]
    t::assert_job_clean "$job"
    t::assert_sentinels
}

@test "three srun steps, each with its own session, all removed at job end" {
    job=$(t::submit "$SHMT_USER1" "$SHMT_JOBS/steps.sh")
    JOBS+=("$job")
    t::wait_for "$job" '^READY$'
    # the steps start at once, so which device got which step varies; the set does not
    run t::sessions "$job"
    echo "sessions: ${lines[*]}"
    [ "${lines[*]}" = "slurm-$job-0 slurm-$job-1 slurm-$job-2" ]
    [ "$(t::shmids "$job" | wc -l)" -eq 3 ]
    before=$(t::snapshot "$job")
    [ "$(echo "$before" | wc -l)" -eq 6 ]   # mng + one segment per session
    t::go "$job" end
    t::wait_gone "$job"
    t::assert_job_clean "$job"
    t::assert_sentinels
}

@test "a crashing step: its session is gone at step end, the others live until job end" {
    job=$(t::submit "$SHMT_USER1" "$SHMT_JOBS/steps.sh" crash)
    JOBS+=("$job")
    t::wait_for "$job" '^CRASHED$'
    crashed=$(t::output "$job" | awk '$1 == "crash-step" { print $2 }')
    [ -n "$crashed" ]
    crashed_id=$(t::output "$job" | awk -v s="$crashed" '$1 == "ready" && $3 == s { print $2 }')
    [ -n "$crashed_id" ]
    # the crashed step's session is gone once the step has ended, although the job still runs
    t::wait_step_gone "$job" "${crashed##*-}"
    [ -z "$(t::objects_of "$crashed_id")" ]
    [ "$(squeue -h -j "$job" -o %T)" = RUNNING ]
    # the three other steps' sessions are all still there
    for id in $(t::shmids "$job"); do
        [ "$id" = "$crashed_id" ] && continue
        [ -n "$(t::objects_of "$id")" ]
    done
    [ "$(t::shmids "$job" | wc -l)" -eq 4 ]
    t::go "$job" end
    t::wait_gone "$job"
    t::assert_job_clean "$job"
    t::assert_sentinels
}

@test "two jobs of one user and a job of another: ending one removes its sessions only" {
    t::hold_job "$SHMT_USER1" wait
    a=$job
    t::hold_job "$SHMT_USER1" exit
    b=$job
    t::hold_job "$SHMT_USER2" exit
    c=$job
    snap_b=$(t::snapshot "$b")
    snap_c=$(t::snapshot "$c")
    [ -n "$snap_b" ]
    [ -n "$snap_c" ]

    scancel "$a"
    t::wait_gone "$a"
    t::assert_job_clean "$a"
    t::assert_intact "$b" "$snap_b"
    t::assert_intact "$c" "$snap_c"
    t::assert_sentinels

    t::go "$b" end
    t::wait_gone "$b"
    t::assert_job_clean "$b"
    t::assert_intact "$c" "$snap_c"
    t::assert_sentinels

    t::go "$c" end
    t::wait_gone "$c"
    t::assert_job_clean "$c"
    t::assert_sentinels
}

@test "srun --shm-session: a named session that carries no job id is removed at job end" {
    named="named-$SHMT_RUN-srun"
    run runuser -u "$SHMT_USER1" -- srun --job-name="$named" --shm-session="$named" \
        env -u SLURM_JOB_ID -u SLURM_STEP_ID "$SHMT_BIN/shm-keepalive" -s "$named" --no-cleanup --lifetime 0.2
    echo "$output"
    [ "$status" -eq 0 ]
    id=$(echo "$output" | awk '$1 == "ready" { print $2 }')
    [ -n "$id" ]
    for _ in $(seq 300); do
        [ -z "$(squeue -h -n "$named")" ] && break
        sleep 0.1
    done
    [ -z "$(squeue -h -n "$named")" ]
    [ -z "$(t::objects_of "$id")" ]
    t::assert_sentinels
}

@test "a step run through shm-launch uses the plugin's step session; scancel --signal=KILL leaves nothing" {
    job=$(t::submit "$SHMT_USER1" "$SHMT_JOBS/launch.sh")
    JOBS+=("$job")
    t::wait_for "$job" '^READY$'
    [ "$(t::sessions "$job")" = "slurm-$job-0" ]
    [ -n "$(t::snapshot "$job")" ]
    scancel --signal=KILL "$job"
    t::wait_gone "$job"
    t::assert_job_clean "$job"
    t::assert_sentinels
}

@test "an sbatch script that sources shm-job.sh: each step has its own session, gone when the step ends" {
    job=$(t::submit "$SHMT_USER1" "$SHMT_JOBS/shmjob.sh")
    JOBS+=("$job")
    t::wait_for "$job" '^DONE$' 60
    t::output "$job" | grep -q -x 'after step 1: clean'
    t::output "$job" | grep -q -x 'after step 2: clean'
    # two sessions of shm-job.sh's own naming, not the plugin's step sessions
    [ "$(t::sessions "$job" | grep -c -E "^job$job-step[0-9]+-[0-9a-f]{8}\$")" -eq 2 ]
    t::wait_gone "$job"
    [ "$(t::job_state "$job")" = COMPLETED ]
    t::assert_job_clean "$job"
    t::assert_sentinels
}
