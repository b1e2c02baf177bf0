#!/usr/bin/env bash
# Test job: a step that runs its device through the launcher (scripts/shm-launch), which
# takes the step's session from SHMTRANSPORT_SESSION as given by the plugin. Waits to be
# cancelled.
set -Eeuo pipefail
out=$SHMT_GO_DIR/step-$SLURM_JOB_ID-launch.out
srun --overlap -n1 -o "$out" "$SHMT_BIN/shm-launch" --shmmonitor "$SHMT_BIN/shmmonitor" -- \
    "$SHMT_BIN/shm-keepalive" --no-cleanup &
for _ in $(seq 300); do
    grep -qs '^ready ' "$out" && break
    sleep 0.1
done
cat "$out"
echo READY
sleep 600
