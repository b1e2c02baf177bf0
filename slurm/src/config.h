/* Plugstack arguments (the words after the .so in plugstack.conf). */
#ifndef SHMT_CONFIG_H
#define SHMT_CONFIG_H

#include "common.h"

#include <limits.h>

struct shmt_config {
	/* shmmonitor=PATH: the cleanup engine's CLI (required, absolute). */
	char shmmonitor[PATH_MAX];
	/* state_dir=DIR: where job_prolog records which jobs run on the node and the remote
	 * context records each step's session, for the epilog (root-only, default /run/shmtransport-spank). */
	char state_dir[PATH_MAX];
	/* shm_dir=DIR: passed to shmmonitor as --shm-dir (default: shmmonitor's own, /dev/shm). */
	char shm_dir[PATH_MAX];
	/* job_namespace=PATTERN: the mount namespace file of a job's private /dev/shm under
	 * job_container/tmpfs (%j job id, %n node name, %% a '%'), e.g.
	 * /var/spool/slurm/jc/%n/%j/.ns; cleanups enter it when it exists (default: none). */
	char job_namespace[PATH_MAX];
	/* step_session=yes|no: give each step a unique SHMTRANSPORT_SESSION (default yes). */
	bool step_session;
	/* user_sweep=yes|no: at job end, also remove every unused session of the job's user when
	 * that user has no other job on the node (default no). */
	bool user_sweep;
	/* strict=yes|no: a failed cleanup fails the epilog, which drains the node (default no). */
	bool strict;
	/* timeout=SECONDS: how long one shmmonitor run may take before it is killed (default 30). */
	unsigned timeout;
};

/*
 * Parses the plugstack arguments into `config` (defaults first). Unknown keys, bad values
 * and a missing shmmonitor= are errors, logged with slurm_error. Returns 0 or -1.
 */
int shmt_config_parse(int ac, char **av, struct shmt_config *config);

#endif
