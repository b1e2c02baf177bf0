#!/usr/bin/env bats
# Run by scripts/test-multiuser (as root, with two users it created and a shared directory
# MU_SHMDIR with mode 1777). Every command of a user runs through setpriv with that user's ids.

setup() {
    SESSION=mu-$BATS_TEST_NUMBER-$SRANDOM
    UID_A=$(id -u "$MU_USER_A")
    UID_B=$(id -u "$MU_USER_B")
}

teardown() {
    "$SHMMONITOR" -c --all-sessions --user-id "$UID_A" --force --shm-dir "$MU_SHMDIR" >/dev/null || true
    "$SHMMONITOR" -c --all-sessions --user-id "$UID_B" --force --shm-dir "$MU_SHMDIR" >/dev/null || true
    "$SHMMONITOR" -c --all-sessions --force --shm-dir "$MU_SHMDIR" >/dev/null || true
    find "$MU_SHMDIR" -mindepth 1 -delete
}

# as USER COMMAND...: runs COMMAND with USER's uid and gid and no supplementary groups.
as() {
    local user=$1
    shift
    setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --clear-groups -- "$@"
}

# left SESSION USER: a session of USER left behind (segment, region); prints its shm id.
left() {
    as "$2" "$SHM_KEEPALIVE" -s "$1" --shm-dir "$MU_SHMDIR" --region 100,65536 --no-cleanup --lifetime 0.1 |
        awk '$1 == "ready" { print $2 }'
}

# shmid_of SESSION UID: the shm id of SESSION for user UID.
shmid_of() { "$SHMMONITOR" --get-shmid -s "$1" --user-id "$2" --json | sed -n 's/.*"shmid" *: *"\([0-9a-f]*\)".*/\1/p'; }

objects() { find "$MU_SHMDIR" -maxdepth 1 -name "fmq_$1_*" -printf '%f\n' | sort; }

@test "every object is created 0600 and owned by its creator" {
    id=$(left "$SESSION" "$MU_USER_A")
    [ -n "$id" ]
    run objects "$id"
    [ "${#lines[@]}" -eq 5 ]  # mng, m_0, rg_100, rgq_100, rrc_100
    for name in "${lines[@]}"; do
        [ "$(stat -c '%a %u' "$MU_SHMDIR/$name")" = "600 $UID_A" ]
    done
}

@test "the same session name gives each user a session of their own, and neither cleans the other's" {
    a=$(left "$SESSION" "$MU_USER_A")
    b=$(left "$SESSION" "$MU_USER_B")
    [ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ]
    [ "$a" = "$(shmid_of "$SESSION" "$UID_A")" ]
    before_a=$(objects "$a")
    run as "$MU_USER_B" "$SHMMONITOR" -c -s "$SESSION" --shm-dir "$MU_SHMDIR"
    [ "$status" -eq 0 ]
    [ -z "$(objects "$b")" ]
    [ "$(objects "$a")" = "$before_a" ]
}

@test "another user can neither clean, reset, nor read a session's memory" {
    a=$(left "$SESSION" "$MU_USER_A")
    before=$(objects "$a")
    run as "$MU_USER_B" "$SHMMONITOR" -c --shmid "$a" --shm-dir "$MU_SHMDIR"
    [ "$status" -eq 2 ]
    [[ $output == *"has objects of uid $UID_A"*"only that user or root may remove them"* ]]
    run as "$MU_USER_B" "$SHMMONITOR" -c --shmid "$a" --force --shm-dir "$MU_SHMDIR"
    [ "$status" -eq 2 ]
    [ "$(objects "$a")" = "$before" ]
    run as "$MU_USER_B" "$SHMMONITOR" -r --shmid "$a" --shm-dir "$MU_SHMDIR"
    [ "$status" -eq 2 ]
    [[ $output == *"belongs to user $UID_A, not to you ($UID_B)"* ]]
    run as "$MU_USER_B" "$SHMMONITOR" -b --shmid "$a" --shm-dir "$MU_SHMDIR"
    [ "$status" -eq 0 ]
    [[ $output == *"Permission denied"* ]]
    [ "$(objects "$a")" = "$before" ]
    # A reset writes every object: only the owner may, root included.
    run "$SHMMONITOR" -r --shmid "$a" --shm-dir "$MU_SHMDIR"
    [ "$status" -eq 2 ]
    [[ $output == *"only its owner can reset shm id $a"* ]]
    run as "$MU_USER_A" "$SHMMONITOR" -r --shmid "$a" --shm-dir "$MU_SHMDIR"
    [ "$status" -eq 0 ]
    [[ $output == *"Reset the content of shm id $a"* ]]
    [ "$(objects "$a")" = "$before" ]
}

@test "objects another user planted under a session's names are refused, not used" {
    a=$(shmid_of "$SESSION" "$UID_A")
    # B squats A's management name with a world-writable file before A starts.
    as "$MU_USER_B" sh -c "head -c 49152 /dev/zero > '$MU_SHMDIR/fmq_${a}_mng' && chmod 666 '$MU_SHMDIR/fmq_${a}_mng'"
    run as "$MU_USER_A" "$SHM_KEEPALIVE" -s "$SESSION" --shm-dir "$MU_SHMDIR" --lifetime 0.1
    [ "$status" -ne 0 ]
    [[ $output == *"fmq_${a}_mng"*"belongs to user $UID_B"* ]]
    [ "$(stat -c '%u %s' "$MU_SHMDIR/fmq_${a}_mng")" = "$UID_B 49152" ]
    [ "$(objects "$a")" = "fmq_${a}_mng" ]
}

@test "root cleans another user's session only when asked by shm id or --user-id" {
    a=$(left "$SESSION" "$MU_USER_A")
    before=$(objects "$a")
    "$SHMMONITOR" -c -s "$SESSION" --shm-dir "$MU_SHMDIR"
    "$SHMMONITOR" -c --all-sessions --shm-dir "$MU_SHMDIR"
    [ "$(objects "$a")" = "$before" ]
    run "$SHMMONITOR" -c -s "$SESSION" --user-id "$UID_A" --shm-dir "$MU_SHMDIR"
    [ "$status" -eq 0 ]
    [ -z "$(objects "$a")" ]
    a=$(left "$SESSION" "$MU_USER_A")
    run "$SHMMONITOR" -c --shmid "$a" --shm-dir "$MU_SHMDIR"
    [ "$status" -eq 0 ]
    [ -z "$(objects "$a")" ]
}
