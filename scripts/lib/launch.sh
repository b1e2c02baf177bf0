# shellcheck shell=bash
# Helpers shared by the launcher (scripts/shm-launch) and the sbatch wrapper (scripts/shm-job.sh):
# session ids (validation, unique ids, precedence), finding shmmonitor, calling the cleanup engine
# through it, and stopping process groups. Source it after scripts/lib/common.sh; every function
# is namespaced `launch::`. Sourcing changes no shell option and sets no trap.

[[ -v _LAUNCH_SH_ ]] && return 0
readonly _LAUNCH_SH_=1

# Characters a session id may contain here. The engine accepts more (anything but '/' and NUL),
# but a launcher hands the id to command lines, environment variables and file names, where
# whitespace, quotes or globs would be split or expanded differently by each consumer.
readonly LAUNCH_SESSION_CHARS='A-Za-z0-9._:@+=,-'
readonly LAUNCH_SESSION_MAX=255

# Checks a session id; on a bad one prints a one-line error naming the problem and the fix and
# exits 2. $1 = the id, $2 = where it came from (for the message, e.g. "--session").
launch::check_session() {
    local -r id=$1 origin=$2
    local bad
    if [[ -z $id ]]; then
        common::die "the session id from $origin is empty; give a name such as 'run42'"
    fi
    if [[ $id =~ [[:space:]] ]]; then
        common::die "session id '$id' (from $origin) contains whitespace, which commands and scripts would split into several words; use '_' or '-' instead, e.g. '${id//[[:space:]]/_}'"
    fi
    if [[ $id == -* ]]; then
        common::die "session id '$id' (from $origin) starts with '-', so devices would read it as an option; start it with a letter or digit"
    fi
    if ((${#id} > LAUNCH_SESSION_MAX)); then
        common::die "session id from $origin is ${#id} characters long; use at most $LAUNCH_SESSION_MAX"
    fi
    bad=${id//[$LAUNCH_SESSION_CHARS]/}
    if [[ -n $bad ]]; then
        common::die "session id '$id' (from $origin) contains '${bad:0:1}'; use only letters, digits and . _ : @ + = , -"
    fi
}

# Prints a new session id that no other launch on this node uses: the prefix, the host, the pid
# and 32 random bits, e.g. launch-node7-12345-9f3a01c2.
launch::unique_session() {
    local -r prefix=${1:-launch}
    local host=${HOSTNAME:-host}
    host=${host%%.*}
    host=${host//[^A-Za-z0-9-]/}
    printf '%s-%s-%s-%08x\n' "$prefix" "${host:-host}" "$BASHPID" "$SRANDOM"
}

# Picks the session: --session (given as $1, may be empty) wins, then $SHMTRANSPORT_SESSION unless
# it is empty or 'default' (the FairMQ default that unrelated runs would share by accident), then a
# generated unique id. Prints the id; exits 2 if the chosen one is invalid.
launch::choose_session() {
    local -r given=${1-}
    local env=${SHMTRANSPORT_SESSION-}
    if [[ -n $given ]]; then
        launch::check_session "$given" "--session"
        printf '%s\n' "$given"
    elif [[ -n $env && $env != default ]]; then
        launch::check_session "$env" "\$SHMTRANSPORT_SESSION"
        printf '%s\n' "$env"
    else
        launch::unique_session launch
    fi
}

# Prints the path of shmmonitor: $1 (--shmmonitor), else $SHMMONITOR, else next to the calling
# script ($2 = that script's directory), else in the bin/ of the prefix the script is installed
# in (<prefix>/share/shmtransport -> <prefix>/bin), else on PATH. Exits 2 with the fix when none
# is found.
launch::find_shmmonitor() {
    local -r given=${1-} beside=${2-}
    local path installed=""
    if [[ -n $given ]]; then
        [[ -x $given && ! -d $given ]] || common::die "--shmmonitor '$given' is not an executable file; give the path of a built shmmonitor"
        printf '%s\n' "$given"
        return 0
    fi
    if [[ -n ${SHMMONITOR-} ]]; then
        [[ -x $SHMMONITOR && ! -d $SHMMONITOR ]] || common::die "\$SHMMONITOR '$SHMMONITOR' is not an executable file; point it at a built shmmonitor or unset it"
        printf '%s\n' "$SHMMONITOR"
        return 0
    fi
    if [[ -n $beside && -x $beside/shmmonitor && ! -d $beside/shmmonitor ]]; then
        printf '%s\n' "$beside/shmmonitor"
        return 0
    fi
    if [[ $beside == */share/shmtransport ]]; then installed=${beside%/share/shmtransport}/bin/shmmonitor; fi
    if [[ -n $installed && -x $installed && ! -d $installed ]]; then
        printf '%s\n' "$installed"
        return 0
    fi
    if path=$(type -P shmmonitor); then
        printf '%s\n' "$path"
        return 0
    fi
    common::die "cannot find shmmonitor; pass --shmmonitor PATH, set SHMMONITOR, install it next to ${0##*/} or on PATH (build it with: swift build --product shmmonitor)"
}

# Prints the package version: from lib/version beside the installed scripts ($1 = their
# directory), or in the repository from Sources/ShmCleanup/Version.swift (the one source of it).
launch::version() {
    local -r here=$1
    if [[ -f $here/lib/version ]]; then
        cat "$here/lib/version"
    else
        sed -n 's/.*static let current = "\(.*\)".*/\1/p' "$here/../Sources/ShmCleanup/Version.swift"
    fi
}

# Prints the shm id (8 hex digits) of session $2, using shmmonitor $1.
launch::shmid() {
    local line
    line=$("$1" --get-shmid -s "$2") || return 2
    printf '%s\n' "${line##* }"
}

# Runs `shmmonitor -c` for one session and prints what it did to stderr when something was
# removed (or always with $LAUNCH_VERBOSE=1). $1 = shmmonitor, $2 = session; the shm directory is
# $SHMTRANSPORT_SHM_DIR (or /dev/shm), which shmmonitor reads itself. Returns shmmonitor's exit
# status: 0 done, 3 refused because live processes use the session, 2 error. On 2 and 3 the
# reason is on stderr.
launch::clean_session() {
    local -r monitor=$1 session=$2
    local out rc=0
    out=$("$monitor" -c -s "$session" 2>&1) || rc=$?
    if ((rc != 0)) || [[ ${LAUNCH_VERBOSE:-0} == 1 || $out == *"Successfully removed"* ]]; then
        [[ -z $out ]] || printf '%s\n' "$out" | sed 's/^/  shmmonitor: /' >&2
    fi
    return "$rc"
}

# Prints those of the given process groups that still have a live (not zombie) member.
launch::live_groups() {
    local -A want=() found=()
    local g stat line rest state pgrp
    for g in "$@"; do want[$g]=1; done
    for stat in /proc/[0-9]*/stat; do
        { read -r line <"$stat"; } 2>/dev/null || continue
        # Fields after the command name "(...)": state ppid pgrp ...
        rest=${line##*) }
        state=${rest%% *}
        rest=${rest#* }
        rest=${rest#* }
        pgrp=${rest%% *}
        if [[ -n ${want[$pgrp]-} && $state != [ZX] ]]; then found[$pgrp]=1; fi
    done
    if ((${#found[@]})); then printf '%s\n' "${!found[@]}"; fi
}

# Stops process groups: sends signal $1 to each group, waits up to $2 seconds for them to end,
# then sends SIGKILL to what is left and waits up to 2 s more. $3... = process group ids.
launch::stop_groups() {
    local -r sig=$1 grace=$2
    shift 2
    local -a alive=()
    local g deadline
    (($#)) || return 0
    # Only groups with a live member: the id of a group long gone may belong to a new one.
    mapfile -t alive < <(launch::live_groups "$@")
    for g in "${alive[@]}"; do kill -s "$sig" -- "-$g" 2>/dev/null || true; done
    deadline=$(launch::deadline "$grace")
    while ((${#alive[@]})) && launch::before "$deadline"; do
        sleep 0.05
        mapfile -t alive < <(launch::live_groups "${alive[@]}")
    done
    ((${#alive[@]})) || return 0
    common::log "process group(s) ${alive[*]} still running ${grace}s after SIG$sig; sending SIGKILL"
    for g in "${alive[@]}"; do kill -s KILL -- "-$g" 2>/dev/null || true; done
    deadline=$(launch::deadline 2)
    while ((${#alive[@]})) && launch::before "$deadline"; do
        sleep 0.05
        mapfile -t alive < <(launch::live_groups "${alive[@]}")
    done
}

# Prints the time $1 seconds from now, in microseconds since the epoch.
launch::deadline() {
    local -r now=${EPOCHREALTIME/[.,]/}
    local secs=${1%%.*} frac=${1#*.}
    [[ $1 == *.* ]] || frac=0
    frac=${frac}000000
    printf '%d\n' $((now + 10#${secs:-0} * 1000000 + 10#${frac:0:6}))
}

# True while the clock has not reached deadline $1 (from launch::deadline).
launch::before() {
    ((${EPOCHREALTIME/[.,]/} < $1))
}
