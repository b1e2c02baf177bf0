#!/usr/bin/env bats
# The --shm-session job option and the plugstack arguments are checked strictly: a mistake is
# reported when the user submits, or when the plugin is loaded, never silently at job end.

load lib/helpers

# Runs srun as the first test user against a copy of the cluster's slurm.conf whose plugstack
# line carries the given plugstack arguments (the local context reads plugstack.conf itself).
srun_with_plugstack() {
    local dir=$SHMT_TEST_ROOT/alt-conf
    rm -rf "$dir"
    mkdir -p "$dir"
    sed "s#^PlugStackConfig=.*#PlugStackConfig=$dir/plugstack.conf#" "$SLURM_CONF" >"$dir/slurm.conf"
    printf 'required %s %s\n' "$SHMT_PLUGIN" "$*" >"$dir/plugstack.conf"
    chmod -R a+rX "$dir"
    run runuser -u "$SHMT_USER1" -- env SLURM_CONF="$dir/slurm.conf" srun -n1 true
    echo "$output"
}

@test "sbatch and srun offer --shm-session" {
    run runuser -u "$SHMT_USER1" -- sbatch --help
    [[ $output == *"--shm-session=id[,id...]"* ]]
    run runuser -u "$SHMT_USER1" -- srun --help
    [[ $output == *"--shm-session=id[,id...]"* ]]
}

@test "--shm-session with '/' is refused at submission, naming the fix" {
    run runuser -u "$SHMT_USER1" -- sbatch --shm-session=good,bad/name --wrap true
    echo "$output"
    [ "$status" -ne 0 ]
    [[ $output == *"contains '/'"*"use '_' or '-'"* ]]
}

@test "--shm-session with an empty id is refused by srun" {
    run runuser -u "$SHMT_USER1" -- srun --shm-session=a,,b true
    echo "$output"
    [ "$status" -ne 0 ]
    [[ $output == *"a session id is empty"* ]]
}

@test "an unknown plugstack argument stops srun with a message naming the known ones" {
    srun_with_plugstack shmmonitor="$SHMT_BIN/shmmonitor" strickt=yes
    [ "$status" -ne 0 ]
    [[ $output == *"unknown plugstack argument 'strickt=yes'"*"strict="* ]]
}

@test "a missing shmmonitor= plugstack argument is an error" {
    srun_with_plugstack strict=no
    [ "$status" -ne 0 ]
    [[ $output == *"shmmonitor=<absolute path of shmmonitor> is missing"* ]]
}

@test "bad plugstack values are errors" {
    srun_with_plugstack shmmonitor=relative/shmmonitor
    [ "$status" -ne 0 ]
    [[ $output == *"give an absolute path"* ]]
    srun_with_plugstack shmmonitor="$SHMT_BIN/shmmonitor" timeout=0
    [ "$status" -ne 0 ]
    [[ $output == *"timeout=0: give whole seconds from 1 to 3600"* ]]
    srun_with_plugstack shmmonitor="$SHMT_BIN/shmmonitor" user_sweep=maybe
    [ "$status" -ne 0 ]
    [[ $output == *"user_sweep=maybe: give user_sweep=yes or user_sweep=no"* ]]
}

@test "a correct plugstack line with every argument loads" {
    srun_with_plugstack shmmonitor="$SHMT_BIN/shmmonitor" state_dir="$SHMT_TEST_ROOT/spank-state" \
        shm_dir=/dev/shm step_session=yes user_sweep=no strict=no timeout=20 \
        job_namespace="$SHMT_TEST_ROOT/job-container/%n/%j/.ns"
    [ "$status" -eq 0 ]
}

@test "the plugin exports only the SPANK symbols" {
    run nm -D --defined-only "$SHMT_PLUGIN"
    [ "$status" -eq 0 ]
    exported=$(echo "$output" | awk '{print $3}' | sed 's/@.*//' | grep -v -x SHMTRANSPORT_SPANK_1.0 | sort | tr '\n' ' ')
    echo "$exported"
    [ "$exported" = "plugin_name plugin_type plugin_version slurm_spank_exit slurm_spank_init slurm_spank_init_post_opt slurm_spank_job_epilog slurm_spank_job_prolog spank_plugin_version " ]
    run readelf -d "$SHMT_PLUGIN"
    [[ $output == *"BIND_NOW"* ]]
    [[ $output != *"libswift"* ]]
}
