#!/usr/bin/env bats
# Tests of scripts/shm-job.sh, the file an sbatch script sources so that every step gets its own
# session and cleanup. Job scripts here are real bash scripts with real steps (shm-keepalive);
# inside a "job" (SLURM_JOB_ID set) srun is a stand-in that starts -n copies of the command as
# tasks, as srun would on one node, so no Slurm cluster is needed.

# Each @test runs in a subshell of its own: the helpers set test-local variables on purpose.
# shellcheck disable=SC2030,SC2031
# Job script lines are single-quoted on purpose: the job script expands them. $stderr is set by
# `run --separate-stderr`.
# shellcheck disable=SC2016,SC2154

bats_require_minimum_version 1.5.0

setup() {
    load launcher-helpers
    launcher_setup
    export SHMTRANSPORT_SHM_DIR=$SHMDIR
    JOB=$BATS_TEST_TMPDIR/job.sh
    # The stand-in srun: records its options, runs -n N tasks with SLURM_PROCID set, passes
    # SIGTERM on to them and waits for them; then records what the tasks left in the shm
    # directory (in $SRUN_LOG.left), before the job script's own cleanup after the step.
    SRUN=$BATS_TEST_TMPDIR/srun
    cat >"$SRUN" <<'EOF'
#!/usr/bin/env bash
set -Eeuo pipefail
n=1
opts=()
while (($#)) && [[ $1 != -- ]]; do
    opts+=("$1")
    case $1 in -n) n=$2; opts+=("$2"); shift 2 ;; *) shift ;; esac
done
shift
printf 'srun %s\n' "${opts[*]}" >>"${SRUN_LOG:?}"
pids=()
for ((i = 0; i < n; i++)); do SLURM_PROCID=$i "$@" & pids+=("$!"); done
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM
rc=0
for p in "${pids[@]}"; do
    while :; do
        s=0
        wait "$p" || s=$?
        kill -0 "$p" 2>/dev/null || break
    done
    ((s == 0)) || rc=$s
done
printf 'left [%s]\n' "$(ls -A "${SHMTRANSPORT_SHM_DIR:?}")" >>"$SRUN_LOG.left"
exit "$rc"
EOF
    chmod +x "$SRUN"
}

teardown() {
    launcher_teardown
}

# Writes the job script: sources shm-job.sh, then the lines given as arguments.
job_script() {
    {
        echo '#!/usr/bin/env bash'
        echo 'set -Eeuo pipefail'
        echo ". '$REPO/scripts/shm-job.sh'"
        printf '%s\n' "$@"
    } >"$JOB"
    chmod +x "$JOB"
}

@test "outside a job every step runs here in its own fresh session, which is removed afterwards" {
    job_script \
        'shmjob::run -- "$SHM_KEEPALIVE" --no-cleanup --lifetime 0.1' \
        'shmjob::run -- "$SHM_KEEPALIVE" --no-cleanup --lifetime 0.1' \
        'rc=0; shmjob::run -- bash -c "exit 4" || rc=$?' \
        'echo "step3=$rc"' \
        'printf "session %s\n" "${shmjob_sessions[@]}"'
    run --separate-stderr "$JOB"
    [ "$status" -eq 0 ]
    local -a sessions ready
    mapfile -t sessions < <(sed -n 's/^session //p' <<<"$output")
    mapfile -t ready < <(sed -n 's/^ready [0-9a-f]* //p' <<<"$output")
    [ "${#sessions[@]}" -eq 3 ]
    [[ ${sessions[0]} == local*-step1-* && ${sessions[1]} == local*-step2-* && ${sessions[2]} == local*-step3-* ]]
    [ "${ready[0]}" = "${sessions[0]}" ]
    [ "${ready[1]}" = "${sessions[1]}" ]
    [[ $output == *"step3=4"* ]]
    local s
    for s in "${sessions[@]}"; do [ -z "$(objects "$SHMDIR" "$(shmid_of "$s")")" ]; done
}

@test "in a job each step goes through srun with its options; tasks of a step share the session" {
    export SLURM_JOB_ID=4242 SHMJOB_SRUN=$SRUN SRUN_LOG=$BATS_TEST_TMPDIR/srun.log
    # Task 0 holds the memory and leaves it behind; task 1 ends first and must leave the session
    # to task 0 (shared: in use is fine); the last one out removes it.
    job_script \
        'shmjob::run -n 2 -- bash -c '\''if [ "$SLURM_PROCID" = 0 ]; then exec "$SHM_KEEPALIVE" --no-cleanup --lifetime 1; else echo "task1 $SHMTRANSPORT_SESSION"; sleep 0.2; fi'\''' \
        'shmjob::run -- printenv SHMTRANSPORT_SESSION' \
        'printf "session %s\n" "${shmjob_sessions[@]}"'
    run --separate-stderr "$JOB"
    [ "$status" -eq 0 ]
    local -a sessions
    mapfile -t sessions < <(sed -n 's/^session //p' <<<"$output")
    [[ ${sessions[0]} == job4242-step1-* && ${sessions[1]} == job4242-step2-* ]]
    # Both tasks ran in the step's session.
    [[ $output == *"ready $(shmid_of "${sessions[0]}") ${sessions[0]}"* ]]
    grep -qx "task1 ${sessions[0]}" <<<"$output"
    # The tasks' launchers removed it themselves, before the job script's cleanup after the step.
    [ "$(cat "$SRUN_LOG.left")" = "$(printf 'left []\nleft []')" ]
    # The second step saw its own session.
    grep -qx "${sessions[1]}" <<<"$output"
    [ "$(cat "$SRUN_LOG")" = "$(printf 'srun -n 2\nsrun ')" ]
    [[ $stderr != *warning* ]]
    [ -z "$(objects "$SHMDIR" "$(shmid_of "${sessions[0]}")")" ]
}

@test "SIGTERM to the job script (scancel) stops the running step and removes its session" {
    local session id
    job_script 'shmjob::run -- "$SHM_KEEPALIVE" --no-cleanup'
    "$JOB" >"$OUT" 2>"$ERR" 3>&- &
    LPID=$!
    STARTED+=("$LPID")
    wait_ready "$OUT"
    read -r _ id session <"$OUT"
    [[ $session == local*-step1-* ]]
    [ -n "$(objects "$SHMDIR" "$id")" ]
    kill -TERM "$LPID"
    launcher_wait
    [ "$LRC" -eq 143 ]
    [ -z "$(objects "$SHMDIR" "$id")" ]
    grep -q "got SIGTERM; stopping the running step" "$ERR"
}

@test "a step whose launcher and guardian were killed is cleaned by the job script after the step" {
    local id session
    # The step kills its launcher and the launcher's guardian with SIGKILL once the keepalive is
    # ready, and the keepalive too, as an out-of-memory kill of the whole step would: only the job
    # script's after-step cleanup is left to remove the session.
    job_script \
        'rc=0' \
        'shmjob::run -- bash -c '\''"$SHM_KEEPALIVE" --no-cleanup & k=$!; sleep 0.5; kill -KILL $k; kill -KILL $(pgrep -P $PPID | grep -vx $$) $PPID'\'' || rc=$?' \
        'echo "step=$rc"' \
        'echo "after step"'
    run --separate-stderr "$JOB"
    [ "$status" -eq 0 ]
    [[ $output == *"step=137"*"after step"* ]]
    read -r _ id session <<<"$(grep '^ready' <<<"$output")"
    [[ $session == local*-step1-* ]]
    [ -z "$(objects "$SHMDIR" "$id")" ]
    [[ $stderr == *"Successfully removed"* ]]
    [[ $stderr != *"guardian:"* ]]
}
