/* Strict parsing of the plugstack arguments: a typo must not silently disable cleanup. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHMT_DEFAULT_STATE_DIR "/run/shmtransport-spank"
#define SHMT_DEFAULT_TIMEOUT 30

static int parse_bool(const char *key, const char *value, bool *out)
{
	if (strcmp(value, "yes") == 0 || strcmp(value, "1") == 0 || strcmp(value, "true") == 0) {
		*out = true;
		return 0;
	}
	if (strcmp(value, "no") == 0 || strcmp(value, "0") == 0 || strcmp(value, "false") == 0) {
		*out = false;
		return 0;
	}
	slurm_error(SHMT_PREFIX "plugstack argument %s=%s: give %s=yes or %s=no", key, value, key, key);
	return -1;
}

static int parse_path(const char *key, const char *value, char *out, size_t len)
{
	if (value[0] != '/') {
		slurm_error(SHMT_PREFIX "plugstack argument %s=%s: give an absolute path", key, value);
		return -1;
	}
	if ((size_t)snprintf(out, len, "%s", value) >= len) {
		slurm_error(SHMT_PREFIX "plugstack argument %s: the path is longer than %zu bytes", key, len - 1);
		return -1;
	}
	return 0;
}

static int parse_timeout(const char *value, unsigned *out)
{
	char *end = NULL;
	unsigned long n;

	errno = 0;
	n = strtoul(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || n == 0 || n > 3600) {
		slurm_error(SHMT_PREFIX "plugstack argument timeout=%s: give whole seconds from 1 to 3600", value);
		return -1;
	}
	*out = (unsigned)n;
	return 0;
}

int shmt_config_parse(int ac, char **av, struct shmt_config *config)
{
	memset(config, 0, sizeof(*config));
	snprintf(config->state_dir, sizeof(config->state_dir), "%s", SHMT_DEFAULT_STATE_DIR);
	config->step_session = true;
	config->timeout = SHMT_DEFAULT_TIMEOUT;

	for (int i = 0; i < ac; i++) {
		const char *arg = av[i];
		const char *eq = strchr(arg, '=');
		size_t klen;
		const char *value;
		int rc;

		if (!eq) {
			slurm_error(SHMT_PREFIX "plugstack argument '%s' is not key=value; see plugstack.conf.example", arg);
			return -1;
		}
		klen = (size_t)(eq - arg);
		value = eq + 1;
#define KEY(k) (klen == sizeof(k) - 1 && strncmp(arg, k, klen) == 0)
		if (KEY("shmmonitor"))
			rc = parse_path("shmmonitor", value, config->shmmonitor, sizeof(config->shmmonitor));
		else if (KEY("state_dir"))
			rc = parse_path("state_dir", value, config->state_dir, sizeof(config->state_dir));
		else if (KEY("shm_dir"))
			rc = parse_path("shm_dir", value, config->shm_dir, sizeof(config->shm_dir));
		else if (KEY("job_namespace"))
			rc = parse_path("job_namespace", value, config->job_namespace, sizeof(config->job_namespace));
		else if (KEY("step_session"))
			rc = parse_bool("step_session", value, &config->step_session);
		else if (KEY("user_sweep"))
			rc = parse_bool("user_sweep", value, &config->user_sweep);
		else if (KEY("strict"))
			rc = parse_bool("strict", value, &config->strict);
		else if (KEY("timeout"))
			rc = parse_timeout(value, &config->timeout);
		else {
			slurm_error(SHMT_PREFIX "unknown plugstack argument '%s'; known: shmmonitor= state_dir= shm_dir= "
				    "job_namespace= step_session= user_sweep= strict= timeout=", arg);
			return -1;
		}
#undef KEY
		if (rc != 0)
			return -1;
	}
	if (config->shmmonitor[0] == '\0') {
		slurm_error(SHMT_PREFIX "plugstack argument shmmonitor=<absolute path of shmmonitor> is missing; "
			    "add it to the plugin's line in plugstack.conf");
		return -1;
	}
	return 0;
}
