# shellcheck shell=bash
# A private single-node Slurm for the plugin's integration tests: munge, slurmctld and slurmd
# with their own slurm.conf under $SHMT_TEST_ROOT (never /etc/slurm), non-default ports, and
# the plugin loaded from plugstack.conf. Every daemon is stopped by the pid it wrote.
#
# Variables (set by scripts/test-slurm, read by the bats files):
#   SHMT_TEST_ROOT  fixed root of the test cluster (outside /tmp: job_container/tmpfs forbids it)
#   SLURM_CONF      $SHMT_TEST_ROOT/etc/slurm.conf, so every client command uses this cluster
#   SHMT_BIN        world-readable copies of shmmonitor, shm-keepalive and the plugin
#   SHMT_PLUGIN, SHMT_MONITOR  the plugin and the shmmonitor the plugstack line names
#   SHMT_PROCTRACK  cgroup or linuxproc (see cluster::proctrack)
#   SHMT_PLUGSTACK_ARGS  more plugstack arguments on the plugin's default line (optional)

cluster::conf_dir() { printf '%s/etc\n' "$SHMT_TEST_ROOT"; }

# Process tracking: $SHMT_PROCTRACK when set, else proctrack/cgroup (cgroup v1 freezer), which
# kills every process of a job when it ends, as on production clusters; without a freezer
# hierarchy, proctrack/linuxproc, whose orphaned processes outlive the job (then the test jobs
# stop their own devices first).
cluster::proctrack() {
    case ${SHMT_PROCTRACK:-} in
    cgroup | linuxproc) echo "$SHMT_PROCTRACK" ;;
    '')
        if [ -w /sys/fs/cgroup/freezer/tasks ]; then echo cgroup; else echo linuxproc; fi
        ;;
    *)
        common::log "SHMT_PROCTRACK=$SHMT_PROCTRACK: give cgroup or linuxproc"
        return 2
        ;;
    esac
}

# Writes plugstack.conf: one line loading the plugin with the given plugstack arguments, or
# nothing when the first argument is "none".
cluster::write_plugstack() {
    local conf
    conf="$(cluster::conf_dir)/plugstack.conf"
    if [ "${1:-}" = none ]; then
        : >"$conf"
        return
    fi
    printf 'required %s shmmonitor=%s state_dir=%s/spank-state %s\n' \
        "$SHMT_PLUGIN" "$SHMT_MONITOR" "$SHMT_TEST_ROOT" "$*" >"$conf"
}

# Writes slurm.conf; extra lines (for example Epilog=...) come from the arguments.
# shellcheck disable=SC2120 # the bats files pass them
cluster::write_slurm_conf() {
    local root=$SHMT_TEST_ROOT host mem first_job
    first_job=$((($(date +%s) % 100000) * 100 + 1000))
    host=$(hostname -s)
    mem=$(($(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 / 2))
    cat >"$root/etc/slurm.conf" <<CONF
# Written by slurm/tests/lib/cluster.bash for the plugin's integration tests.
ClusterName=shmtransport-test
# job ids (and so the default session names slurm-<job>-<step>) differ from run to run
FirstJobId=$first_job
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/$(cluster::proctrack)
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
StateSaveLocation=$root/state
SlurmdSpoolDir=$root/spool
SlurmctldPidFile=$root/run/slurmctld.pid
SlurmdPidFile=$root/run/slurmd.pid
SlurmctldLogFile=$root/log/slurmctld.log
SlurmdLogFile=$root/log/slurmd.log
SlurmdDebug=verbose
SlurmctldDebug=info
PlugStackConfig=$root/etc/plugstack.conf
ReturnToService=2
KillWait=2
MinJobAge=2
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
    printf 'CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nCgroupMountpoint=/sys/fs/cgroup\n' >"$root/etc/cgroup.conf"
    local line
    for line in "$@"; do printf '%s\n' "$line" >>"$root/etc/slurm.conf"; done
}

# Starts munged unless one already answers; remembers whether we started it.
cluster::start_munge() {
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge
    chown munge:munge /run/munge
    chmod 755 /run/munge
    if munge -n >/dev/null 2>&1; then
        return 0
    fi
    # munged runs as munge and writes its pid file itself
    install -d -o munge -g munge -m 0755 "$SHMT_TEST_ROOT/munge"
    runuser -u munge -- /usr/sbin/munged --pid-file="$SHMT_TEST_ROOT/munge/munged.pid"
    local i
    for i in $(seq 50); do
        munge -n >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    common::log "munged did not start; see /var/log/munge/munged.log"
    return 1
}

cluster::wait_idle() {
    local i state
    for i in $(seq 150); do
        state=$(sinfo -h -o %T 2>/dev/null || true)
        [ "$state" = idle ] && return 0
        if [ "$state" = drained ] || [ "$state" = down ] || [ "$state" = 'idle*' ] && [ "$i" -gt 50 ]; then
            scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.2
    done
    common::log "the node is not idle after 30 s (state '$state'); see $SHMT_TEST_ROOT/log/"
    return 1
}

# Stops one daemon by its pid file and waits until it is gone.
cluster::stop_pidfile() {
    local file=$1 pid i
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill "$pid" 2>/dev/null; then
        for i in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            # a zombie (PID 1 may reap late) counts as stopped
            [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ] && break
            sleep 0.1
        done
    fi
    rm -f "$file"
}

cluster::start_slurmd() {
    slurmd -f "$SLURM_CONF"
}

cluster::stop_slurmd() {
    cluster::stop_pidfile "$SHMT_TEST_ROOT/run/slurmd.pid"
}

# Plugstack changes need a slurmd restart before job_prolog/job_epilog hooks see them.
cluster::restart_slurmd() {
    cluster::stop_slurmd
    cluster::start_slurmd
    cluster::wait_idle
}

# Starts slurmctld and slurmd and waits until the node is idle.
cluster::start_daemons() {
    slurmctld -f "$SLURM_CONF"
    cluster::start_slurmd
    cluster::wait_idle
}

# Stops slurmd and slurmctld, each by pid.
cluster::stop_daemons() {
    cluster::stop_slurmd
    cluster::stop_pidfile "$SHMT_TEST_ROOT/run/slurmctld.pid"
}

# Restarts slurmctld and slurmd, for changes (job_container.conf, JobContainerType=, PrologFlags=)
# that `scontrol reconfigure` does not apply: write the configuration first.
cluster::restart_daemons() {
    cluster::stop_daemons
    cluster::start_daemons
}

# Starts the cluster with the default slurm.conf (tests that need other lines restart it).
cluster::start() {
    local root=$SHMT_TEST_ROOT
    mkdir -p "$root"/{etc,state,spool,log,run}
    cluster::start_munge
    cluster::write_slurm_conf
    [ -f "$root/etc/plugstack.conf" ] || cluster::write_plugstack "${SHMT_PLUGSTACK_ARGS:-}"
    cluster::start_daemons
}

# Stops slurmd, slurmctld and (if we started it) munged, each by pid.
cluster::stop() {
    cluster::stop_daemons
    cluster::stop_pidfile "$SHMT_TEST_ROOT/munge/munged.pid"
}
