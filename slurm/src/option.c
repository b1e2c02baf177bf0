/*
 * The --shm-session=<id>[,<id>...] job option of sbatch/salloc/srun: sessions the job uses
 * that the epilog must clean even when their management record does not name the job (for
 * example sessions of C++ FairMQ devices). The value is checked when the user gives it, so a
 * bad id fails at submission, not silently at job end.
 */
#include "contexts.h"

#include <stdio.h>
#include <string.h>

static char option_value[SHMT_SESSIONS_MAX * (SHMT_SESSION_MAX + 1)];

static int option_callback(int val, const char *optarg, int remote)
{
	struct shmt_sessions parsed;
	char err[512];

	(void)val;
	if (!optarg || shmt_sessions_parse(optarg, &parsed, err, sizeof(err)) != 0) {
		if (remote)
			slurm_error(SHMT_PREFIX "%s", optarg ? err : "--shm-session needs a value");
		else
			slurm_spank_log(SHMT_PREFIX "%s", optarg ? err : "--shm-session needs a value, for example --shm-session=run42");
		return -1;
	}
	snprintf(option_value, sizeof(option_value), "%s", optarg);
	return 0;
}

static struct spank_option shm_session_option = {
	"shm-session", "id[,id...]",
	"Shared memory sessions this job uses; they are removed when the job ends (ShmTransport/FairMQ).",
	1, 0, option_callback,
};

int shmt_option_register(spank_t sp)
{
	spank_err_t rc = spank_option_register(sp, &shm_session_option);

	if (rc != ESPANK_SUCCESS) {
		slurm_error(SHMT_PREFIX "cannot register --shm-session: %s", spank_strerror(rc));
		return -1;
	}
	return 0;
}

const char *shmt_option_value(void)
{
	return option_value[0] ? option_value : NULL;
}

int shmt_option_sessions(spank_t sp, struct shmt_sessions *out)
{
	char *value = NULL;
	char err[512];
	spank_err_t rc = spank_option_getopt(sp, &shm_session_option, &value);

	memset(out, 0, sizeof(*out));
	if (rc != ESPANK_SUCCESS || !value)
		return 0;
	if (shmt_sessions_parse(value, out, err, sizeof(err)) != 0) {
		slurm_error(SHMT_PREFIX "%s", err);
		memset(out, 0, sizeof(*out));
		return -1;
	}
	return 0;
}
