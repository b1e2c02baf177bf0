/* Local context (srun): offers --shm-session; nothing is cleaned on the submit host. */
#include "contexts.h"

int shmt_srun_init(spank_t sp, const struct shmt_config *config)
{
	(void)config;
	return shmt_option_register(sp);
}

int shmt_srun_post_opt(spank_t sp, const struct shmt_config *config)
{
	const char *value = shmt_option_value();

	(void)config;
	/* The epilog reads the option with spank_option_getopt; the job control environment is a
	 * second path (SPANK_SHMTRANSPORT_SESSIONS) that the Epilog= script can use too. */
	if (value)
		spank_job_control_setenv(sp, SHMT_JOB_CONTROL_NAME, value, 1);
	return 0;
}
