/* Runs the cleanup engine (`shmmonitor -c ...`) and logs what it did through Slurm. */
#ifndef SHMT_MONITOR_H
#define SHMT_MONITOR_H

#include "config.h"

enum shmt_result {
	SHMT_CLEANED = 0, /* done (also when there was nothing to remove) */
	SHMT_IN_USE,      /* a named session is still used by live processes: kept */
	SHMT_FAILED,      /* shmmonitor could not run, timed out, or reported an error */
};

/* Who the cleanup runs for. */
struct shmt_owner {
	uint32_t job_id;
	uid_t uid;
	gid_t gid;
};

/*
 * Runs `shmmonitor -c ARGS... --user-id UID [--shm-dir DIR]` as the job's user (privileges
 * are dropped in the child when running as root, so the engine's own ownership check also
 * guards other users' objects), with an empty environment, /dev/null as input, and
 * `config->timeout` seconds to finish. Every output line is logged with slurm_info, every
 * error line with slurm_error, prefixed by `label` ("job 42 step 0").
 */
enum shmt_result shmt_monitor_cleanup(const struct shmt_config *config, const struct shmt_owner *owner,
				      const char *label, const char *const *args, size_t nargs);

#endif
