#!/usr/bin/env bash
# Epilog= script: the job-end half of the ShmTransport SPANK plugin, for sites that do not load
# SPANK plugins. slurmd runs it as root on every node of the job once the job has ended (also
# after scancel, SIGKILL or a crash) with SLURM_JOB_ID, SLURM_JOB_UID and SLURM_JOB_GID set.
#
#   slurm.conf:  Epilog=/usr/local/libexec/shmtransport-epilog.sh     (then: scontrol reconfigure)
#
# It removes, as the job's user, every session whose management record names the job (the
# devices record SLURM_JOB_ID), and the sessions named in SPANK_SHMTRANSPORT_SESSIONS (set by
# the plugin's --shm-session when the plugin is loaded in sbatch only). Unlike the plugin it
# gives steps no sessions of their own and cleans nothing at step end.
#
# Settings (environment, or edit the defaults):
#   SHMMONITOR       the cleanup engine (default /usr/local/bin/shmmonitor)
#   SHMT_USER_SWEEP  yes: also remove every unused session of the user when the user has no
#                    other job on this node (asks slurmctld with squeue)
#   SHMT_STRICT      yes: exit non-zero when the cleanup fails, which drains the node
# A non-zero exit drains the node, so failures only do so when SHMT_STRICT=yes.
set -Eeuo pipefail

shmmonitor=${SHMMONITOR:-/usr/local/bin/shmmonitor}
strict=${SHMT_STRICT:-no}
user_sweep=${SHMT_USER_SWEEP:-no}
failed=0

epilog::log() { logger -t shmtransport-epilog -- "job ${SLURM_JOB_ID:-?}: $*" 2>/dev/null || true; printf 'shmtransport-epilog: job %s: %s\n' "${SLURM_JOB_ID:-?}" "$*" >&2; }

epilog::finish() {
    if [ "$failed" -ne 0 ] && [ "$strict" = yes ]; then
        exit 1
    fi
    exit 0
}

# Runs shmmonitor -c ARGS as the job's user and logs its report.
epilog::clean() {
    local out rc=0
    out=$(setpriv --reuid="$SLURM_JOB_UID" --regid="$SLURM_JOB_GID" --init-groups --reset-env -- \
        "$shmmonitor" -c "$@" --user-id "$SLURM_JOB_UID" 2>&1) || rc=$?
    [ -z "$out" ] || while IFS= read -r line; do epilog::log "$line"; done <<<"$out"
    case $rc in
    0 | 1) ;;
    3) epilog::log "kept sessions that live processes still use" ;;
    *) epilog::log "shmmonitor exited with status $rc"; failed=1 ;;
    esac
}

trap epilog::finish EXIT
if [ -z "${SLURM_JOB_ID:-}" ] || [ -z "${SLURM_JOB_UID:-}" ]; then
    epilog::log "SLURM_JOB_ID or SLURM_JOB_UID is not set; run this only as slurm.conf's Epilog="
    failed=1
    exit
fi
SLURM_JOB_GID=${SLURM_JOB_GID:-$(id -g "$SLURM_JOB_UID")}
if [ ! -x "$shmmonitor" ]; then
    epilog::log "$shmmonitor cannot be run; install shmmonitor or set SHMMONITOR"
    failed=1
    exit
fi

epilog::clean --job "$SLURM_JOB_ID"

if [ -n "${SPANK_SHMTRANSPORT_SESSIONS:-}" ]; then
    args=()
    IFS=, read -r -a named <<<"$SPANK_SHMTRANSPORT_SESSIONS"
    for s in "${named[@]}"; do
        [ -n "$s" ] && args+=(-s "$s")
    done
    [ "${#args[@]}" -eq 0 ] || epilog::clean "${args[@]}"
fi

if [ "$user_sweep" = yes ]; then
    # The ending job may still be listed as completing; any other job of the user counts.
    others=$(squeue -h -u "$SLURM_JOB_UID" -w "$(hostname -s)" -o %i 2>/dev/null | grep -v -x "$SLURM_JOB_ID" || true)
    if [ -z "$others" ]; then
        epilog::clean --all-sessions
    else
        epilog::log "uid $SLURM_JOB_UID has other jobs on this node; user sweep skipped"
    fi
fi
