/*
 * Shared declarations of the ShmTransport SPANK plugin.
 *
 * The plugin never touches shared memory itself: every cleanup goes through the project's
 * cleanup engine by running `shmmonitor` (its path is a plugstack argument), so Slurm's
 * daemons never load the Swift runtime and there is one set of cleanup rules.
 */
#ifndef SHMT_COMMON_H
#define SHMT_COMMON_H

#include <stdint.h> /* spank.h uses uint32_t without including it */
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <slurm/spank.h>

#define SHMT_PREFIX "shmtransport: "

/* The environment variable that carries the session id to devices (DESIGN.md). */
#define SHMT_SESSION_ENV "SHMTRANSPORT_SESSION"
/* Marks a SHMTRANSPORT_SESSION value as given by this plugin, so that `srun` steps inside a
 * batch script, which inherit the batch step's environment, still get a session of their own. */
#define SHMT_ASSIGNED_ENV "SHMTRANSPORT_SPANK_SESSION"
/* Name given to spank_job_control_setenv; the epilog sees it as SPANK_SHMTRANSPORT_SESSIONS. */
#define SHMT_JOB_CONTROL_NAME "SHMTRANSPORT_SESSIONS"

/* Longest session id the engine accepts, in bytes. */
#define SHMT_SESSION_MAX 255
/* Most sessions one job may name with --shm-session. */
#define SHMT_SESSIONS_MAX 64

#define SHMT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A list of session ids (the step's session, the sessions named by --shm-session, ...). */
struct shmt_sessions {
	size_t count;
	char names[SHMT_SESSIONS_MAX][SHMT_SESSION_MAX + 1];
};

/* Adds `name` unless it is already there. Returns 0, or -1 when the list is full. */
int shmt_sessions_add(struct shmt_sessions *list, const char *name);

/*
 * Checks a session id against the engine's grammar (non-empty, at most 255 bytes, no '/')
 * plus what this plugin needs to carry it safely (no ',' since it separates ids in the
 * option, no control characters since ids are written to line-based records and logs).
 * Returns NULL when valid, otherwise a message saying what is wrong and how to fix it.
 */
const char *shmt_session_problem(const char *name);

/*
 * Splits a comma-separated list of session ids into `out`. On error returns -1 and writes a
 * one-line message naming the problem and the fix into `err`.
 */
int shmt_sessions_parse(const char *text, struct shmt_sessions *out, char *err, size_t errlen);

/* The step name used in default session ids: the step number, or batch/extern/interactive. */
void shmt_step_name(uint32_t step_id, char *buf, size_t len);

#endif
