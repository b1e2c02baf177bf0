/*
 * The only file with SPANK entry points: it parses the plugstack arguments and hands each
 * callback to the file of the context it runs in (pyxis's layout).
 */
#include "contexts.h"

/* -fvisibility=hidden hides everything else; the version script lists the same symbols. */
#pragma GCC visibility push(default)
SPANK_PLUGIN(shmtransport, 1);

int slurm_spank_init(spank_t sp, int ac, char **av);
int slurm_spank_init_post_opt(spank_t sp, int ac, char **av);
int slurm_spank_job_prolog(spank_t sp, int ac, char **av);
int slurm_spank_exit(spank_t sp, int ac, char **av);
int slurm_spank_job_epilog(spank_t sp, int ac, char **av);
#pragma GCC visibility pop

static struct shmt_config config;

/* Not called in the job script context: Slurm runs the prolog and epilog hooks on a stack of
 * their own without init, so those parse the plugstack arguments themselves. */
int slurm_spank_init(spank_t sp, int ac, char **av)
{
	if (shmt_config_parse(ac, av, &config) != 0)
		return -1;
	switch (spank_context()) {
	case S_CTX_LOCAL:
	case S_CTX_ALLOCATOR:
		return shmt_submit_init(sp, &config);
	case S_CTX_REMOTE:
		return shmt_slurmstepd_init(sp, &config);
	case S_CTX_SLURMD:
		return shmt_slurmd_init(sp, &config);
	default:
		return 0;
	}
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	switch (spank_context()) {
	case S_CTX_LOCAL:
	case S_CTX_ALLOCATOR:
		return shmt_submit_post_opt(sp, &config);
	default:
		return 0;
	}
}

int slurm_spank_job_prolog(spank_t sp, int ac, char **av)
{
	if (shmt_config_parse(ac, av, &config) != 0)
		return -1;
	return shmt_job_prolog(sp, &config);
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	if (spank_context() == S_CTX_REMOTE)
		return shmt_slurmstepd_exit(sp, &config);
	return 0;
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
	/* A bad plugstack line is an error everywhere (srun and sbatch stop, the prolog fails): the
	 * epilog cannot clean with it, and strict= may not even have been read. */
	if (shmt_config_parse(ac, av, &config) != 0)
		return -1;
	return shmt_job_epilog(sp, &config);
}
