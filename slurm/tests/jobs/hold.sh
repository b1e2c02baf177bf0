#!/usr/bin/env bash
# Test job: a device in the batch step's session (it cleans up on SIGTERM), a device in a
# second session that never cleans up (like a crashed device; only its management record ties
# it to the job), plus, when $SHMT_NAMED is set, a device that does not record
# the job id in a session named with --shm-session; then waits for
# the test. How it ends is chosen by $1:
#   exit     end normally while the devices still run (Slurm kills them)
#   wait     wait until cancelled (scancel, scancel --signal=KILL)
#   selfkill the batch script SIGKILLs itself
set -Eeuo pipefail
# shellcheck source=slurm/tests/jobs/device.sh
. "$SHMT_JOBS/device.sh"
echo "env SHMTRANSPORT_SESSION=$SHMTRANSPORT_SESSION"
job::device ""
job::device "$SHMTRANSPORT_SESSION-extra" --no-cleanup --segment 1,65536
[ -z "${SHMT_NAMED:-}" ] || job::foreign_device "$SHMT_NAMED" --no-cleanup
echo READY
case ${1:-exit} in
exit)
    job::wait_go end
    job::before_end
    exit 0
    ;;
wait) sleep 600 ;;
selfkill)
    job::wait_go end
    job::before_end
    kill -KILL $$
    ;;
esac
