#!/usr/bin/env bash
# CloneNSEpilog= script for job_container/tmpfs (Slurm 23.02 or newer), in job_container.conf:
#
#   CloneNSEpilog=/usr/local/libexec/shmtransport-clonens-epilog.sh
#
# With job_container/tmpfs each job has a private /dev/shm in its own mount namespace. The job
# epilog, SPANK's slurm_spank_job_epilog included, runs in the host namespace and cannot see
# it; slurmd runs CloneNSEpilog just before it tears the namespace down, with SLURM_NS naming
# the namespace (a bind mount of /proc/<pid>/ns/mnt) and SLURM_JOB_ID set. This script enters
# the namespace and runs the same cleanup as the plugin's epilog there, so what a job leaked is
# logged (and removed before the tmpfs goes away with the namespace).
#
# Everything in that /dev/shm belongs to this job, so every owner of transport objects found
# there is cleaned: the sessions recorded with the job id first, then the user's remaining
# sessions that no live process uses.
#
# Settings (environment): SHMMONITOR (default /usr/local/bin/shmmonitor).
# It always exits 0: a non-zero exit would only delay the namespace's removal.
set -Eeuo pipefail

shmmonitor=${SHMMONITOR:-/usr/local/bin/shmmonitor}

clonens::log() { logger -t shmtransport-clonens -- "job ${SLURM_JOB_ID:-?}: $*" 2>/dev/null || true; printf 'shmtransport-clonens: job %s: %s\n' "${SLURM_JOB_ID:-?}" "$*" >&2; }

if [ -z "${SLURM_NS:-}" ] || [ ! -e "$SLURM_NS" ]; then
    clonens::log "SLURM_NS is not set or missing; run this only as job_container.conf's CloneNSEpilog="
    exit 0
fi
if [ ! -x "$shmmonitor" ]; then
    clonens::log "$shmmonitor cannot be run; install shmmonitor or set SHMMONITOR"
    exit 0
fi

# Owners of transport objects in the job's private /dev/shm (numeric uids).
owners=$(nsenter --mount="$SLURM_NS" -- find /dev/shm -maxdepth 1 -type f \
    \( -name 'fmq_*' -o -name 'sem.fmq_*' \) -printf '%U\n' 2>/dev/null | sort -u) || true
if [ -z "$owners" ]; then
    exit 0
fi
for uid in $owners; do
    for args in "--job ${SLURM_JOB_ID:-0}" "--all-sessions"; do
        # shellcheck disable=SC2086  # two words on purpose
        out=$(nsenter --mount="$SLURM_NS" -- setpriv --reuid="$uid" --regid="$(id -g "$uid" 2>/dev/null || echo "$uid")" \
            --clear-groups --reset-env -- "$shmmonitor" -c $args --user-id "$uid" 2>&1) || clonens::log "shmmonitor $args exited with status $?"
        [ -z "$out" ] || while IFS= read -r line; do clonens::log "$line"; done <<<"$out"
    done
done
exit 0
