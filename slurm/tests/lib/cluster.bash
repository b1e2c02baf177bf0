# shellcheck shell=bash
# A private Slurm (one node, or two: see cluster::two_nodes) for the plugin's integration tests: munge, slurmctld and slurmd
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

# --- Two nodes on one machine (SHMT_NODES=2, set by scripts/test-slurm --two-nodes) ---
# Node n0 is slurmd -N n0 in the root namespaces. Node n1 is slurmd -N n1 in a network
# namespace of its own (a veth pair to n0, addresses $SHMT_CLUSTER_SUBNET.1 and .2, default
# 198.51.100, a documentation range) and a mount namespace of its own, in which /dev/shm and the
# plugin's state_dir are private tmpfs mounts: each node has its own shared memory, as real
# nodes do. Both are made, and removed, by name.
#   SHMT_NODES           1 (default) or 2
#   SHMT_CLUSTER_SUBNET  the first three octets of the nodes' /24

cluster::two_nodes() { [ "${SHMT_NODES:-1}" = 2 ]; }
cluster::netns() { printf 'shmtransport-n1\n'; }
cluster::subnet() { printf '%s\n' "${SHMT_CLUSTER_SUBNET:-198.51.100}"; }

# The address of node $1 (n0 or n1).
cluster::node_addr() {
    case $1 in
    n0) printf '%s.1\n' "$(cluster::subnet)" ;;
    n1) printf '%s.2\n' "$(cluster::subnet)" ;;
    *) return 2 ;;
    esac
}

cluster::node_names() { if cluster::two_nodes; then echo n0 n1; else hostname -s; fi; }

# The file that holds n1's mount namespace.
cluster::mount_ns() { printf '%s/ns/n1.mnt\n' "$SHMT_TEST_ROOT"; }

# Runs "$@" on node $1: as is on n0, inside n1's network and mount namespaces on n1.
cluster::on_node() {
    local node=$1
    shift
    if [ "$node" = n1 ]; then
        nsenter --mount="$(cluster::mount_ns)" --net="/run/netns/$(cluster::netns)" -- "$@"
    else
        "$@"
    fi
}

# Makes n1's namespaces: refuses a subnet the machine already uses.
cluster::start_node_namespaces() {
    local ns nsdir subnet
    ns=$(cluster::netns) nsdir=$SHMT_TEST_ROOT/ns subnet=$(cluster::subnet)
    if ip -o -4 addr show | grep -q -F " $subnet."; then
        common::log "the subnet $subnet.0/24 is in use on this machine; give another with SHMT_CLUSTER_SUBNET=a.b.c"
        return 1
    fi
    ip netns add "$ns"
    ip link add shmt-veth0 type veth peer name shmt-veth1 netns "$ns"
    ip addr add "$(cluster::node_addr n0)/24" dev shmt-veth0
    ip link set shmt-veth0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(cluster::node_addr n1)/24" dev shmt-veth1
    ip -n "$ns" link set shmt-veth1 up
    ip -n "$ns" route add default via "$(cluster::node_addr n0)"
    # a mount namespace kept by a file: its directory must be a private mount
    install -d -m 0700 "$nsdir" "$SHMT_TEST_ROOT/spank-state"
    mount --bind "$nsdir" "$nsdir"
    mount --make-private "$nsdir"
    : >"$(cluster::mount_ns)"
    unshare --mount="$(cluster::mount_ns)" --propagation private true
    nsenter --mount="$(cluster::mount_ns)" -- mount -t tmpfs -o size=1g,mode=1777 shmt-n1-shm /dev/shm
    nsenter --mount="$(cluster::mount_ns)" -- mount -t tmpfs -o mode=0700 shmt-n1-state "$SHMT_TEST_ROOT/spank-state"
}

# Removes n1's namespaces and the veth pair by name, after killing what still runs in them
# (slurmd n1 is stopped before); does nothing for what is not there.
cluster::stop_node_namespaces() {
    local ns pid nsdir=$SHMT_TEST_ROOT/ns
    ns=$(cluster::netns)
    if [ -e "/run/netns/$ns" ]; then
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" || common::log "could not remove the network namespace $ns"
    fi
    ! ip link show shmt-veth0 >/dev/null 2>&1 || ip link del shmt-veth0
    if mountpoint -q "$nsdir" 2>/dev/null; then
        umount "$(cluster::mount_ns)" 2>/dev/null || true
        umount "$nsdir" || common::log "could not unmount $nsdir"
    fi
}

# Writes slurm.conf; extra lines (for example Epilog=...) come from the arguments.
# shellcheck disable=SC2120 # the bats files pass them
cluster::write_slurm_conf() {
    local root=$SHMT_TEST_ROOT host mem first_job ctld_addr=127.0.0.1 nodes
    local pidfile=$root/run/slurmd.pid spool=$root/spool log=$root/log/slurmd.log
    first_job=$((($(date +%s) % 100000) * 100 + 1000))
    host=$(hostname -s)
    mem=$(($(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 / 2))
    nodes="NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN"
    if cluster::two_nodes; then
        ctld_addr=$(cluster::node_addr n0)
        pidfile=$root/run/slurmd.%n.pid spool=$root/spool/%n log=$root/log/slurmd.%n.log
        nodes="NodeName=n0 NodeAddr=$(cluster::node_addr n0) NodeHostname=$host CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
NodeName=n1 NodeAddr=$(cluster::node_addr n1) NodeHostname=$host CPUs=$(nproc) RealMemory=$mem State=UNKNOWN"
    fi
    cat >"$root/etc/slurm.conf" <<CONF
# Written by slurm/tests/lib/cluster.bash for the plugin's integration tests.
ClusterName=shmtransport-test
# job ids (and so the default session names slurm-<job>-<step>) differ from run to run
FirstJobId=$first_job
SlurmctldHost=$host($ctld_addr)
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
SlurmdSpoolDir=$spool
SlurmctldPidFile=$root/run/slurmctld.pid
SlurmdPidFile=$pidfile
SlurmctldLogFile=$root/log/slurmctld.log
SlurmdLogFile=$log
SlurmdDebug=verbose
SlurmctldDebug=info
PlugStackConfig=$root/etc/plugstack.conf
ReturnToService=2
KillWait=2
MinJobAge=2
InactiveLimit=0
$nodes
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
    local i state node
    for i in $(seq 150); do
        state=$(sinfo -h -N -o %T 2>/dev/null | sort -u | paste -s -d ' ' || true)
        [ "$state" = idle ] && return 0
        if [ "$state" != idle ] && [ "$i" -gt 50 ]; then
            for node in $(cluster::node_names); do
                scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
            done
        fi
        sleep 0.2
    done
    common::log "the nodes are not idle after 30 s (state '$state'); see $SHMT_TEST_ROOT/log/"
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
    if cluster::two_nodes; then
        mkdir -p "$SHMT_TEST_ROOT"/spool/{n0,n1}
        slurmd -f "$SLURM_CONF" -N n0
        # nsenter, not ip netns exec: that remounts /sys, and slurmd then finds no cgroup mount
        cluster::on_node n1 slurmd -f "$SLURM_CONF" -N n1
    else
        slurmd -f "$SLURM_CONF"
    fi
}

cluster::stop_slurmd() {
    local file
    for file in "$SHMT_TEST_ROOT"/run/slurmd.pid "$SHMT_TEST_ROOT"/run/slurmd.n[01].pid; do
        cluster::stop_pidfile "$file"
    done
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
    if cluster::two_nodes; then cluster::start_node_namespaces; fi
    cluster::write_slurm_conf
    [ -f "$root/etc/plugstack.conf" ] || cluster::write_plugstack "${SHMT_PLUGSTACK_ARGS:-}"
    cluster::start_daemons
}

# Stops slurmd, slurmctld and (if we started it) munged, each by pid, and removes the second
# node's namespaces (whatever SHMT_NODES says: an interrupted two-node run may have left them).
cluster::stop() {
    cluster::stop_daemons
    cluster::stop_pidfile "$SHMT_TEST_ROOT/munge/munged.pid"
    cluster::stop_node_namespaces
}
