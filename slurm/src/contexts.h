/* One function per SPANK callback and context; dispatch.c is the only caller. */
#ifndef SHMT_CONTEXTS_H
#define SHMT_CONTEXTS_H

#include "config.h"

/* option.c: the --shm-session job option. */
int shmt_option_register(spank_t sp);
/* The sessions named with --shm-session, as seen in the current context; 0 when none. */
int shmt_option_sessions(spank_t sp, struct shmt_sessions *out);
/* The raw --shm-session value given on the command line of sbatch/srun (NULL if none). */
const char *shmt_option_value(void);

/* submit.c: local (srun) and allocator (sbatch, salloc) contexts. */
int shmt_submit_init(spank_t sp, const struct shmt_config *config);
int shmt_submit_post_opt(spank_t sp, const struct shmt_config *config);

/* slurmstepd.c: remote context (one slurmstepd per step and node). */
int shmt_slurmstepd_init(spank_t sp, const struct shmt_config *config);
int shmt_slurmstepd_exit(spank_t sp, const struct shmt_config *config);

/* job_script.c: prolog and epilog (root, one process per call; Slurm calls no init there). */
int shmt_job_prolog(spank_t sp, const struct shmt_config *config);
int shmt_job_epilog(spank_t sp, const struct shmt_config *config);

/* slurmd.c: the daemon itself. */
int shmt_slurmd_init(spank_t sp, const struct shmt_config *config);

#endif
