#!/usr/bin/env bash
# Test job: three srun steps, each holding a device in its own step session, plus an optional
# fourth step that crashes (its device is SIGKILLed, then the task dies of SIGSEGV) while the
# job goes on. Ends normally when the test says so.
set -Eeuo pipefail
# shellcheck source=slurm/tests/jobs/device.sh
. "$SHMT_JOBS/device.sh"
for i in 1 2 3; do
    srun --overlap -n1 -o "$SHMT_GO_DIR/step-$SLURM_JOB_ID-$i.out" "$SHMT_BIN/shm-keepalive" --no-cleanup &
done
for i in 1 2 3; do
    for _ in $(seq 300); do
        grep -q '^ready ' "$SHMT_GO_DIR/step-$SLURM_JOB_ID-$i.out" 2>/dev/null && break
        sleep 0.1
    done
    cat "$SHMT_GO_DIR/step-$SLURM_JOB_ID-$i.out"
done
echo READY
if [ "${1:-}" = crash ]; then
    # shellcheck disable=SC2016  # expanded by the step's shell
    srun --overlap -n1 bash -c '. "$SHMT_JOBS/device.sh"; job::device "" --no-cleanup; echo "crash-step $SHMTRANSPORT_SESSION"; kill -KILL $JOB_DEVICE_PID; kill -SEGV $$' || true
    echo CRASHED
fi
job::wait_go end
