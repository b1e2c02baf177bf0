/* Allocator context (sbatch, salloc): offers --shm-session and hands it to the epilog. */
#include "contexts.h"

int shmt_alloc_init(spank_t sp, const struct shmt_config *config)
{
	(void)config;
	/* Options are not registered from spank_options[] in this context (spank.h). */
	return shmt_option_register(sp);
}

int shmt_alloc_post_opt(spank_t sp, const struct shmt_config *config)
{
	const char *value = shmt_option_value();
	spank_err_t rc;

	(void)config;
	if (!value)
		return 0;
	/* Also visible to a plain Epilog= script as SPANK_SHMTRANSPORT_SESSIONS. */
	rc = spank_job_control_setenv(sp, SHMT_JOB_CONTROL_NAME, value, 1);
	if (rc != ESPANK_SUCCESS)
		slurm_verbose(SHMT_PREFIX "spank_job_control_setenv: %s", spank_strerror(rc));
	return 0;
}
