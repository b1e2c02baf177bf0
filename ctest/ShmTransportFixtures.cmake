#[===[
ShmTransportFixtures
--------------------

CTest fixtures that keep the shared memory of transport sessions (ShmTransport, or C++ FairMQ
devices) from outliving the tests that made it: after a test passes, fails, crashes or times
out, and also after a test run that was interrupted (Ctrl-C, a killed CI job), because every
test's setup first removes what an earlier run of the same test left behind.

Load it with ``find_package(ShmTransportFixtures CONFIG)`` (point ``ShmTransportFixtures_DIR``
at this directory) or put this directory on ``CMAKE_MODULE_PATH`` and ``include()`` it, after
``project()`` and ``enable_testing()``.

  shm_add_test(NAME <name> COMMAND <command> [<arg>...]
               [SESSION <id>] [TIMEOUT <seconds>] [WORKING_DIRECTORY <dir>]
               [ENVIRONMENT <VAR=value>...] [LABELS <label>...] [SHM_DIR <dir>]
               [WILL_FAIL] [FORCE_CLEANUP])

    Adds test <name> running in its own session: <id>, or by default
    ``${SHMTRANSPORT_FIXTURES_SESSION_PREFIX}<name>`` (stable from run to run, so the next run
    finds what an interrupted one left). The session id reaches the test in the environment
    variable ``SHMTRANSPORT_SESSION`` and wherever ``@SHM_SESSION@`` appears in <command>,
    its arguments or the ENVIRONMENT values, for example ``--session @SHM_SESSION@`` for a
    FairMQ device. Two more tests come with it:

      <name>:shm-setup    removes leftovers of the session from an earlier run (FIXTURES_SETUP)
      <name>:shm-cleanup  removes the session after the test, whatever its outcome
                          (FIXTURES_CLEANUP)

    Both run ``shmmonitor --cleanup --session=<id>``, which refuses a session that a live
    process still uses (the fixture test fails and names the pids); FORCE_CLEANUP adds
    ``--force`` to the cleanup after the test. The fixture is named ``<name>.shm``. To add
    fixtures of your own, APPEND to FIXTURES_REQUIRED (``set_property(TEST <name> APPEND
    PROPERTY FIXTURES_REQUIRED ...)``): ``set_tests_properties`` would replace these.

  shm_session_fixture(<fixture> SESSION <id> [SHM_DIR <dir>] [FORCE_CLEANUP])

    The setup/cleanup pair alone, as tests ``<fixture>:shm-setup`` and
    ``<fixture>:shm-cleanup``, for tests you add yourself that share one session: give them
    ``FIXTURES_REQUIRED <fixture>`` and the session id (and ``RESOURCE_LOCK <id>`` if they
    must not run at the same time).

  shm_add_sweep([NAME <test>] [PREFIX <prefix>] [SHM_DIR <dir>])

    A final test (default name ``shm-sweep``) that runs after every test added with
    shm_add_test() and every cleanup (theirs and shm_session_fixture()'s), and removes every session of the current user whose
    session id starts with <prefix> (default: ``SHMTRANSPORT_FIXTURES_SESSION_PREFIX``) and
    that no live process uses: sessions of tests since renamed or removed, or extra sessions
    a test derived from its own id. Sessions whose management segment does not record their
    id (C++ FairMQ ones) cannot be matched by prefix; the per-test cleanup covers those. Call
    it before the first shm_add_test() or shm_session_fixture().

Cache variables:

  SHMTRANSPORT_SHMMONITOR               path of ``shmmonitor`` (default: found on PATH)
  SHMTRANSPORT_FIXTURES_SESSION_PREFIX  start of every default session id (default:
                                        ``ctest-<project>-<8 hex digits of the build dir>-``,
                                        so two build trees never share a session)
  SHMTRANSPORT_FIXTURES_SHM_DIR         shm directory for all fixtures (default: empty, that is
                                        ``$SHMTRANSPORT_SHM_DIR`` when ctest runs, or /dev/shm)

Unknown arguments, a session id used twice, or one that cannot be a session id are errors.
Every test has its own session and its own fixture, so ``ctest -j`` is safe, and ``ctest -R``
pulls in the setup, cleanup and sweep tests of what it selects. The fixture tests carry the
label ``shm-fixture``: ``ctest -L shm-fixture`` removes every session of the build tree without
running a test.
#]===]

include_guard(GLOBAL)

if(CMAKE_VERSION VERSION_LESS 3.16)
    message(FATAL_ERROR "ShmTransportFixtures needs CMake 3.16 or newer (this is ${CMAKE_VERSION}); upgrade CMake")
endif()

# Installed, this file is <prefix>/lib/cmake/ShmTransportFixtures/: the tools are in <prefix>/bin.
find_program(SHMTRANSPORT_SHMMONITOR
    NAMES shmmonitor
    HINTS "${CMAKE_CURRENT_LIST_DIR}/../../../bin"
    DOC "shmmonitor, the ShmTransport cleanup tool the CTest fixtures call")

set(SHMTRANSPORT_FIXTURES_SHM_DIR "" CACHE PATH
    "Shm directory the CTest fixtures clean (empty: \$SHMTRANSPORT_SHM_DIR at test time, or /dev/shm)")

if(NOT DEFINED SHMTRANSPORT_FIXTURES_SESSION_PREFIX)
    if(PROJECT_NAME)
        string(REGEX REPLACE "[^A-Za-z0-9._-]" "_" _shm_fixtures_project "${PROJECT_NAME}")
    else()
        set(_shm_fixtures_project "project")
    endif()
    string(MD5 _shm_fixtures_hash "${CMAKE_BINARY_DIR}")
    string(SUBSTRING "${_shm_fixtures_hash}" 0 8 _shm_fixtures_hash)
    set(SHMTRANSPORT_FIXTURES_SESSION_PREFIX "ctest-${_shm_fixtures_project}-${_shm_fixtures_hash}-"
        CACHE STRING "Start of the session id of every test added with shm_add_test()")
    unset(_shm_fixtures_project)
    unset(_shm_fixtures_hash)
endif()

# Fails configuration unless shmmonitor can be run; called by every public function, so a
# project that includes the module without using it does not need the tool.
function(_shm_fixtures_require_monitor caller)
    if(NOT SHMTRANSPORT_SHMMONITOR)
        message(FATAL_ERROR
            "${caller}: shmmonitor was not found; put it on PATH or pass "
            "-DSHMTRANSPORT_SHMMONITOR=/path/to/shmmonitor")
    endif()
    # A generator expression (a target built by the project) is checked at build time.
    if(NOT SHMTRANSPORT_SHMMONITOR MATCHES "\\$<" AND NOT EXISTS "${SHMTRANSPORT_SHMMONITOR}")
        message(FATAL_ERROR
            "${caller}: SHMTRANSPORT_SHMMONITOR is '${SHMTRANSPORT_SHMMONITOR}', which does not "
            "exist; pass -DSHMTRANSPORT_SHMMONITOR=/path/to/shmmonitor")
    endif()
endfunction()

# Checks that <session> can be a session id and is not taken by another test (tests sharing
# a session would remove each other's memory under `ctest -j`).
function(_shm_fixtures_claim_session caller session owner)
    string(LENGTH "${session}" length)
    if(length EQUAL 0)
        message(FATAL_ERROR "${caller}: the session id is empty; pass SESSION <id>")
    endif()
    if(length GREATER 255)
        message(FATAL_ERROR
            "${caller}: session id '${session}' is longer than 255 bytes; use a shorter id or "
            "a shorter SHMTRANSPORT_FIXTURES_SESSION_PREFIX")
    endif()
    if(session MATCHES "[/;]")
        message(FATAL_ERROR
            "${caller}: session id '${session}' contains '/' or ';'; use letters, digits, "
            "'.', '_' or '-'")
    endif()
    get_property(taken GLOBAL PROPERTY "_SHMTRANSPORT_FIXTURES_SESSION:${session}")
    if(taken)
        message(FATAL_ERROR
            "${caller}: session '${session}' is already used by ${taken}; give "
            "each test its own session, or share one with shm_session_fixture()")
    endif()
    set_property(GLOBAL PROPERTY "_SHMTRANSPORT_FIXTURES_SESSION:${session}" "${owner}")
endfunction()

# The shm directory of a test or fixture: its SHM_DIR, else SHMTRANSPORT_FIXTURES_SHM_DIR
# (empty: none chosen, so $SHMTRANSPORT_SHM_DIR when ctest runs, or /dev/shm).
function(_shm_fixtures_shm_dir out shm_dir)
    if(shm_dir STREQUAL "")
        set(shm_dir "${SHMTRANSPORT_FIXTURES_SHM_DIR}")
    endif()
    set(${out} "${shm_dir}" PARENT_SCOPE)
endfunction()

# The shmmonitor arguments that select the shm directory, if one was chosen.
function(_shm_fixtures_dir_args out shm_dir)
    _shm_fixtures_shm_dir(shm_dir "${shm_dir}")
    if(shm_dir STREQUAL "")
        set(${out} "" PARENT_SCOPE)
    else()
        set(${out} "--shm-dir=${shm_dir}" PARENT_SCOPE)
    endif()
endfunction()

# Fails on a keyword given without its value (`SESSION` at the end of the call, for example).
function(_shm_fixtures_check_values caller missing)
    if(missing)
        message(FATAL_ERROR "${caller}: ${missing} needs a value; add one after it")
    endif()
endfunction()

# Adds the setup/cleanup pair of one session as tests <base>:shm-setup and <base>:shm-cleanup
# (the session is claimed by the caller), and records <base> so that a later shm_add_sweep(),
# which could no longer order this cleanup before itself, fails.
function(_shm_fixtures_add_pair base fixture session shm_dir force_cleanup)
    _shm_fixtures_dir_args(dir_args "${shm_dir}")
    set(cleanup_args "")
    if(force_cleanup)
        set(cleanup_args "--force")
    endif()
    add_test(NAME "${base}:shm-setup"
        COMMAND "${SHMTRANSPORT_SHMMONITOR}" --cleanup "--session=${session}" ${dir_args})
    add_test(NAME "${base}:shm-cleanup"
        COMMAND "${SHMTRANSPORT_SHMMONITOR}" --cleanup "--session=${session}" ${dir_args}
                ${cleanup_args})
    set_tests_properties("${base}:shm-setup" PROPERTIES
        FIXTURES_SETUP "${fixture}" TIMEOUT 60 LABELS "shm-fixture")
    set_tests_properties("${base}:shm-cleanup" PROPERTIES
        FIXTURES_CLEANUP "${fixture}" TIMEOUT 60 LABELS "shm-fixture")
    # With a sweep, the cleanups run before it, so it only finds what they could not know.
    get_property(sweep GLOBAL PROPERTY _SHMTRANSPORT_FIXTURES_SWEEP)
    if(sweep)
        set_property(TEST "${base}:shm-cleanup" APPEND PROPERTY FIXTURES_REQUIRED "${sweep}")
    endif()
    set_property(GLOBAL APPEND PROPERTY _SHMTRANSPORT_FIXTURES_TESTS "${base}")
endfunction()

function(shm_session_fixture fixture)
    cmake_parse_arguments(PARSE_ARGV 1 ARG "FORCE_CLEANUP" "SESSION;SHM_DIR" "")
    set(caller "shm_session_fixture(${fixture})")
    _shm_fixtures_check_values("${caller}" "${ARG_KEYWORDS_MISSING_VALUES}")
    if(ARG_UNPARSED_ARGUMENTS)
        message(FATAL_ERROR
            "${caller}: unknown arguments: ${ARG_UNPARSED_ARGUMENTS}; the arguments are "
            "SESSION <id> [SHM_DIR <dir>] [FORCE_CLEANUP]")
    endif()
    if(NOT DEFINED ARG_SESSION)
        message(FATAL_ERROR "${caller}: SESSION <id> is missing; add it")
    endif()
    _shm_fixtures_require_monitor("${caller}")
    _shm_fixtures_claim_session("${caller}" "${ARG_SESSION}" "fixture ${fixture}")
    _shm_fixtures_add_pair("${fixture}" "${fixture}" "${ARG_SESSION}" "${ARG_SHM_DIR}" "${ARG_FORCE_CLEANUP}")
endfunction()

function(shm_add_test)
    cmake_parse_arguments(PARSE_ARGV 0 ARG "WILL_FAIL;FORCE_CLEANUP"
        "NAME;SESSION;TIMEOUT;WORKING_DIRECTORY;SHM_DIR" "COMMAND;ENVIRONMENT;LABELS")
    if(NOT DEFINED ARG_NAME)
        message(FATAL_ERROR "shm_add_test: NAME <name> is missing; add it")
    endif()
    set(caller "shm_add_test(${ARG_NAME})")
    _shm_fixtures_check_values("${caller}" "${ARG_KEYWORDS_MISSING_VALUES}")
    if(ARG_UNPARSED_ARGUMENTS)
        message(FATAL_ERROR
            "${caller}: unknown arguments: ${ARG_UNPARSED_ARGUMENTS}; the arguments are NAME, "
            "COMMAND, SESSION, TIMEOUT, WORKING_DIRECTORY, ENVIRONMENT, LABELS, SHM_DIR, "
            "WILL_FAIL and FORCE_CLEANUP")
    endif()
    if(NOT ARG_COMMAND)
        message(FATAL_ERROR "${caller}: COMMAND <command> [<arg>...] is missing; add it")
    endif()
    if(DEFINED ARG_TIMEOUT AND NOT ARG_TIMEOUT MATCHES "^[0-9]+(\\.[0-9]+)?$")
        message(FATAL_ERROR "${caller}: TIMEOUT '${ARG_TIMEOUT}' is not a number of seconds")
    endif()
    _shm_fixtures_require_monitor("${caller}")

    if(DEFINED ARG_SESSION)
        set(session "${ARG_SESSION}")
    else()
        string(REGEX REPLACE "[^A-Za-z0-9._-]" "_" tail "${ARG_NAME}")
        set(session "${SHMTRANSPORT_FIXTURES_SESSION_PREFIX}${tail}")
        string(LENGTH "${session}" length)
        if(length GREATER 200)
            # Keep long names unique but short enough for a session id.
            string(MD5 hash "${ARG_NAME}")
            string(SUBSTRING "${session}" 0 180 session)
            string(SUBSTRING "${hash}" 0 12 hash)
            string(APPEND session "-${hash}")
        endif()
    endif()
    _shm_fixtures_claim_session("${caller}" "${session}" "test ${ARG_NAME}")

    string(REPLACE "@SHM_SESSION@" "${session}" command "${ARG_COMMAND}")
    set(environment "SHMTRANSPORT_SESSION=${session}")
    _shm_fixtures_shm_dir(shm_dir "${ARG_SHM_DIR}")
    if(NOT shm_dir STREQUAL "")
        list(APPEND environment "SHMTRANSPORT_SHM_DIR=${shm_dir}")
    endif()
    foreach(entry IN LISTS ARG_ENVIRONMENT)
        string(REPLACE "@SHM_SESSION@" "${session}" entry "${entry}")
        list(APPEND environment "${entry}")
    endforeach()

    set(working_directory "")
    if(DEFINED ARG_WORKING_DIRECTORY)
        set(working_directory WORKING_DIRECTORY "${ARG_WORKING_DIRECTORY}")
    endif()
    add_test(NAME "${ARG_NAME}" COMMAND ${command} ${working_directory})

    set(fixture "${ARG_NAME}.shm")
    _shm_fixtures_add_pair("${ARG_NAME}" "${fixture}" "${session}" "${shm_dir}" "${ARG_FORCE_CLEANUP}")

    set_property(TEST "${ARG_NAME}" PROPERTY ENVIRONMENT "${environment}")
    set_property(TEST "${ARG_NAME}" APPEND PROPERTY FIXTURES_REQUIRED "${fixture}")
    get_property(sweep GLOBAL PROPERTY _SHMTRANSPORT_FIXTURES_SWEEP)
    if(sweep)
        set_property(TEST "${ARG_NAME}" APPEND PROPERTY FIXTURES_REQUIRED "${sweep}")
    endif()
    if(DEFINED ARG_TIMEOUT)
        set_property(TEST "${ARG_NAME}" PROPERTY TIMEOUT "${ARG_TIMEOUT}")
    endif()
    if(ARG_LABELS)
        set_property(TEST "${ARG_NAME}" PROPERTY LABELS "${ARG_LABELS}")
    endif()
    if(ARG_WILL_FAIL)
        set_property(TEST "${ARG_NAME}" PROPERTY WILL_FAIL TRUE)
    endif()
endfunction()

function(shm_add_sweep)
    cmake_parse_arguments(PARSE_ARGV 0 ARG "" "NAME;PREFIX;SHM_DIR" "")
    _shm_fixtures_check_values("shm_add_sweep" "${ARG_KEYWORDS_MISSING_VALUES}")
    if(ARG_UNPARSED_ARGUMENTS)
        message(FATAL_ERROR
            "shm_add_sweep: unknown arguments: ${ARG_UNPARSED_ARGUMENTS}; the arguments are "
            "[NAME <test>] [PREFIX <prefix>] [SHM_DIR <dir>]")
    endif()
    _shm_fixtures_require_monitor("shm_add_sweep")
    get_property(sweep GLOBAL PROPERTY _SHMTRANSPORT_FIXTURES_SWEEP)
    if(sweep)
        message(FATAL_ERROR "shm_add_sweep: a sweep was added already; call it once")
    endif()
    get_property(tests GLOBAL PROPERTY _SHMTRANSPORT_FIXTURES_TESTS)
    if(tests)
        message(FATAL_ERROR
            "shm_add_sweep: tests or fixtures were added before it (${tests}); call "
            "shm_add_sweep() before the first shm_add_test() or shm_session_fixture() so that "
            "it runs after all of them")
    endif()
    if(NOT DEFINED ARG_NAME)
        set(ARG_NAME "shm-sweep")
    endif()
    if(NOT DEFINED ARG_PREFIX)
        set(ARG_PREFIX "${SHMTRANSPORT_FIXTURES_SESSION_PREFIX}")
    endif()
    if(ARG_PREFIX STREQUAL "")
        message(FATAL_ERROR
            "shm_add_sweep: the prefix is empty, which would sweep every session of the user; "
            "pass PREFIX <prefix>")
    endif()
    _shm_fixtures_dir_args(dir_args "${ARG_SHM_DIR}")

    add_test(NAME "${ARG_NAME}"
        COMMAND "${SHMTRANSPORT_SHMMONITOR}" --cleanup "--session-prefix=${ARG_PREFIX}" ${dir_args})
    set(fixture "${ARG_NAME}.sweep")
    set_tests_properties("${ARG_NAME}" PROPERTIES
        FIXTURES_CLEANUP "${fixture}" TIMEOUT 120 LABELS "shm-fixture")
    set_property(GLOBAL PROPERTY _SHMTRANSPORT_FIXTURES_SWEEP "${fixture}")
endfunction()
