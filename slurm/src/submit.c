/*
 * Submit side, local (srun) and allocator (sbatch, salloc) contexts alike: offers --shm-session
 * and hands its value to the epilog. Nothing is cleaned on the submit host.
 */
#include "contexts.h"

int shmt_submit_init(spank_t sp, const struct shmt_config *config)
{
	(void)config;
	/* Options are not registered from spank_options[] in the allocator context (spank.h). */
	return shmt_option_register(sp);
}

int shmt_submit_post_opt(spank_t sp, const struct shmt_config *config)
{
	const char *value = shmt_option_value();
	spank_err_t rc;

	(void)config;
	if (!value)
		return 0;
	/* The epilog reads the option with spank_option_getopt; the job control environment is a
	 * second path, SPANK_SHMTRANSPORT_SESSIONS, that a plain Epilog= script can use too. */
	rc = spank_job_control_setenv(sp, SHMT_JOB_CONTROL_NAME, value, 1);
	if (rc != ESPANK_SUCCESS)
		slurm_verbose(SHMT_PREFIX "spank_job_control_setenv: %s", spank_strerror(rc));
	return 0;
}
