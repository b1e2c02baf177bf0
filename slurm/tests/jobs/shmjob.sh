#!/usr/bin/env bash
# Test job: an sbatch script that sources scripts/shm-job.sh and runs two steps through
# shmjob::run, each a device that leaves its memory behind (--no-cleanup). After each step,
# still inside the job (so before the plugin's job-end cleanup could help), it reports whether
# the step's session is gone: "after step N: clean" or the objects left.
set -Eeuo pipefail
# shellcheck source=scripts/shm-job.sh
. "$SHMT_BIN/shm-job.sh"
for n in 1 2; do
    out=$SHMT_GO_DIR/step-$SLURM_JOB_ID-shmjob-$n.out
    shmjob::run --overlap -n1 -o "$out" -- "$SHMT_BIN/shm-keepalive" --no-cleanup --lifetime 1
    cat "$out"
    id=$(awk '$1 == "ready" { print $2 }' "$out")
    [ -n "$id" ] || { echo "step $n: the device did not start"; exit 1; }
    left=$(find /dev/shm -maxdepth 1 -name "*fmq_${id}_*" -printf '%f ')
    echo "after step $n: ${left:-clean}"
done
echo DONE
