#!/usr/bin/env bats
# user_sweep=yes: when a user's last job on the node ends, every session of that user that no
# live process uses goes too (here: a leftover created outside Slurm), but never while another
# job of the user runs, never a session in use, never another user's.

# t::hold_job leaves the job id in $job.
# shellcheck disable=SC2154

load lib/helpers

setup_file() { t::use_plugstack user_sweep=yes; }

teardown_file() { t::default_plugstack; }

setup() { JOBS=(); }

teardown() { t::forget "${JOBS[@]}"; }

@test "user_sweep: the user's unused sessions go with the user's last job on the node" {
    read -r live dead other <<<"$(tr '\n' ' ' <"$SHMT_TEST_ROOT/sentinels.ids")"
    [ -n "$(t::objects_of "$dead")" ]
    t::hold_job "$SHMT_USER1" wait
    a=$job
    t::hold_job "$SHMT_USER1" wait
    b=$job
    snap_b=$(t::snapshot "$b")

    scancel "$a"
    t::wait_gone "$a"
    t::assert_job_clean "$a"
    t::assert_intact "$b" "$snap_b"
    # another job of the user still runs: nothing outside the job was touched
    t::assert_sentinels
    grep -F "shmtransport: job $a: uid $(id -u "$SHMT_USER1") has another job on this node; user sweep skipped" \
        "$SHMT_TEST_ROOT/log/slurmd.log"

    scancel "$b"
    t::wait_gone "$b"
    t::assert_job_clean "$b"
    # the user's dead leftover is gone; the user's live session and the other user's stay
    [ -z "$(t::objects_of "$dead")" ]
    [ -n "$(t::objects_of "$live")" ]
    [ -n "$(t::objects_of "$other")" ]
    grep -F "shmtransport: job $b: last job of uid $(id -u "$SHMT_USER1") on this node" "$SHMT_TEST_ROOT/log/slurmd.log"
    # from now on the removed leftover is no longer expected
    t::sentinel_objects >"$SHMT_TEST_ROOT/sentinels.expected"
    t::assert_sentinels
}
