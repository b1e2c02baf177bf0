# shellcheck shell=bash
# shm-job.sh: source it from an sbatch (or any bash) script so that every step gets its own
# transport session and its own cleanup:
#
#     #!/usr/bin/env bash
#     #SBATCH ...
#     . /path/to/scripts/shm-job.sh
#     shmjob::run -n 2 -- ./sampler --session {session}     # srun options, '--', the command
#     shmjob::run -- ./analysis                              # next step, another session
#
# Each shmjob::run picks a fresh session (job<SLURM_JOB_ID>-step<N>-<random>), runs
# `srun [OPTIONS] -- shm-launch --shared --session S -- COMMAND` (outside a Slurm job: the launcher
# directly, here), then cleans the session on this node once the step has ended. The launcher in
# every task cleans on its node, even when killed with SIGKILL (its guardian does). Sourcing also
# sets traps on EXIT, INT, TERM and HUP: a cancelled or failing job script stops the running step
# and cleans every session it started that is not clean yet. If the script sets its own traps
# afterwards, call shmjob::cleanup from them. Documentation: docs/launcher.md.
#
# Settings (environment, read when sourced): SHMJOB_SRUN (default srun), SHMJOB_LAUNCH (default
# shm-launch next to this file), SHMMONITOR (as for shm-launch), SHMTRANSPORT_SHM_DIR.
# Sourcing changes no shell option; functions are namespaced shmjob::.

if ((BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1))); then
    printf 'shm-job.sh: error: needs bash 5.1 or newer (this is %s)\n' "$BASH_VERSION" >&2
    return 2
fi
[[ -v _SHMJOB_SH_ ]] && return 0
readonly _SHMJOB_SH_=1

shmjob_here=$(cd "$(dirname "$(readlink -f -- "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=scripts/lib/common.sh
. "$shmjob_here/lib/common.sh"
# shellcheck source=scripts/lib/launch.sh
. "$shmjob_here/lib/launch.sh"

shmjob_launch=${SHMJOB_LAUNCH:-$shmjob_here/shm-launch}
[[ -x $shmjob_launch ]] || common::die "SHMJOB_LAUNCH '$shmjob_launch' is not executable; point it at scripts/shm-launch"
shmjob_srun=${SHMJOB_SRUN:-srun}
shmjob_monitor=$(launch::find_shmmonitor "" "$shmjob_here") || exit "$?"
shmjob_sessions=()        # every session started, in order
declare -A shmjob_pending=()  # sessions not known to be clean yet
shmjob_count=0
shmjob_running=""         # pid of the step running now (srun or the launcher)

# Prints a fresh session id for the next step.
shmjob::new_session() {
    local -r job=${SLURM_JOB_ID:+job$SLURM_JOB_ID}
    printf '%s-step%d-%08x\n' "${job:-local$$}" "$shmjob_count" "$SRANDOM"
}

# Runs one step in a fresh session: shmjob::run [SRUN-OPTION...] -- COMMAND [ARG...]
# (without srun options the '--' may be left out). Returns the step's exit status.
shmjob::run() {
    local -a opts=() cmd=()
    if [[ ${1-} == -* ]]; then
        while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
        (($#)) || { common::log "error: shmjob::run: put '--' between the srun options and the command"; return 2; }
        shift
    fi
    cmd=("$@")
    ((${#cmd[@]})) || { common::log "error: shmjob::run: no command given; usage: shmjob::run [SRUN-OPTION...] -- COMMAND [ARG...]"; return 2; }

    local session rc=0
    shmjob_count=$((shmjob_count + 1))
    session=$(shmjob::new_session)
    shmjob_sessions+=("$session")
    shmjob_pending[$session]=1
    common::log "step $shmjob_count: session $session: ${cmd[*]}"
    local -a launch=("$shmjob_launch" --shared --session "$session" -- "${cmd[@]}")
    # In the background, so that a signal to this script is handled at once (bash runs traps only
    # between commands), with SIGINT at its default (background jobs would ignore it).
    if [[ -n ${SLURM_JOB_ID-} ]]; then
        SHMTRANSPORT_SESSION=$session env --default-signal=INT,QUIT -- "$shmjob_srun" "${opts[@]}" -- "${launch[@]}" &
    else
        ((${#opts[@]} == 0)) || common::log "not in a Slurm job: running the step here, without srun options: ${opts[*]}"
        SHMTRANSPORT_SESSION=$session env --default-signal=INT,QUIT -- "${launch[@]}" &
    fi
    shmjob_running=$!
    wait "$shmjob_running" || rc=$?
    shmjob_running=""
    shmjob::clean "$session" || true
    return "$rc"
}

# Cleans one session on this node; forgets it when clean. Returns shmmonitor's status.
shmjob::clean() {
    local rc=0
    launch::clean_session "$shmjob_monitor" "$1" || rc=$?
    case $rc in
        0) unset "shmjob_pending[$1]" ;;
        3) common::log "warning: session $1 is still in use on $(hostname); it is removed when its last process ends, by the job's cleanup or the next cleanup" ;;
        *) common::log "warning: cleanup of session $1 failed (shmmonitor exit $rc)" ;;
    esac
    return "$rc"
}

# Stops the running step (if any) and cleans every session not known to be clean.
shmjob::cleanup() {
    local s
    if [[ -n $shmjob_running ]]; then
        kill -s TERM "$shmjob_running" 2>/dev/null || true
        wait "$shmjob_running" 2>/dev/null || true
        shmjob_running=""
    fi
    for s in "${!shmjob_pending[@]}"; do shmjob::clean "$s" || true; done
}

# shellcheck disable=SC2317 # reached through `trap`
shmjob::on_signal() {
    local -r sig=$1
    trap - ERR
    common::log "got SIG$sig; stopping the running step and cleaning this job's sessions"
    shmjob::cleanup
    trap - "$sig" EXIT
    kill -s "$sig" "$$"
    exit $((128 + $(kill -l "$sig")))
}

# shellcheck disable=SC2317 # reached through `trap`
shmjob::on_exit() {
    local rc=$?
    trap - ERR
    shmjob::cleanup
    exit "$rc"
}

trap shmjob::on_exit EXIT
trap 'shmjob::on_signal INT' INT
trap 'shmjob::on_signal TERM' TERM
trap 'shmjob::on_signal HUP' HUP
