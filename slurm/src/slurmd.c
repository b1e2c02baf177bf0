/* slurmd context: checks once, at daemon start, that the cleanup engine can be run. */
#include "contexts.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int shmt_slurmd_init(spank_t sp, const struct shmt_config *config)
{
	(void)sp;
	if (access(config->shmmonitor, X_OK) != 0)
		slurm_error(SHMT_PREFIX "shmmonitor=%s cannot be run (%s): jobs on this node will not be cleaned; "
			    "install it or fix the path in plugstack.conf", config->shmmonitor, strerror(errno));
	else
		slurm_info(SHMT_PREFIX "loaded; cleanup engine %s%s%s", config->shmmonitor,
			   config->user_sweep ? ", user_sweep=yes" : "", config->strict ? ", strict=yes" : "");
	return 0;
}
