/*
 * Remote context (slurmstepd, root, once per step and node): gives the step its own session
 * and removes that session when the step ends, even when the step crashed or was killed.
 */
#include "contexts.h"
#include "monitor.h"
#include "state.h"

#include <stdio.h>
#include <string.h>

#include <slurm/slurm.h>

/* One slurmstepd serves one step, so the step's state lives from init to exit here. */
static struct {
	bool active;
	struct shmt_owner owner;
	uint32_t step_id;
	char session[SHMT_SESSION_MAX + 1];
} step;

static bool read_env(spank_t sp, const char *name, char *buf, int len)
{
	return spank_getenv(sp, name, buf, len) == ESPANK_SUCCESS && buf[0] != '\0';
}

/* Picks the step's session: the job's SHMTRANSPORT_SESSION when it set one itself, otherwise
 * slurm-<job>-<step>. A value this plugin gave an enclosing step (srun inside a batch script
 * inherits the batch step's environment) does not count as set by the job. */
static void choose_session(spank_t sp, const struct shmt_config *config)
{
	char current[SHMT_SESSION_MAX + 1] = "", inherited[SHMT_SESSION_MAX + 1] = "";
	bool has_current = read_env(sp, SHMT_SESSION_ENV, current, sizeof(current));
	bool has_inherited = read_env(sp, SHMT_ASSIGNED_ENV, inherited, sizeof(inherited));
	char step_name[32];
	const char *problem;

	if (has_current && !(has_inherited && strcmp(current, inherited) == 0)) {
		problem = shmt_session_problem(current);
		if (problem) {
			slurm_error(SHMT_PREFIX "job %u: %s='%s' is not usable: %s; this step's session will not be "
				    "cleaned at step end", step.owner.job_id, SHMT_SESSION_ENV, current, problem);
			return;
		}
		snprintf(step.session, sizeof(step.session), "%s", current);
		return;
	}
	if (!config->step_session)
		return;
	shmt_step_name(step.step_id, step_name, sizeof(step_name));
	snprintf(step.session, sizeof(step.session), "slurm-%u-%s", step.owner.job_id, step_name);
	if (spank_setenv(sp, SHMT_SESSION_ENV, step.session, 1) != ESPANK_SUCCESS ||
	    spank_setenv(sp, SHMT_ASSIGNED_ENV, step.session, 1) != ESPANK_SUCCESS) {
		slurm_error(SHMT_PREFIX "job %u: cannot set %s for the step", step.owner.job_id, SHMT_SESSION_ENV);
		step.session[0] = '\0';
	}
}

int shmt_slurmstepd_init(spank_t sp, const struct shmt_config *config)
{
	char step_name[32];

	if (shmt_option_register(sp) != 0)
		return -1;
	memset(&step, 0, sizeof(step));
	if (spank_get_item(sp, S_JOB_ID, &step.owner.job_id) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_STEPID, &step.step_id) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_UID, &step.owner.uid) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_GID, &step.owner.gid) != ESPANK_SUCCESS) {
		slurm_error(SHMT_PREFIX "cannot read the job's ids; this step's session will not be cleaned");
		return 0;
	}
	/* The extern step runs no user tasks of its own (only adopted ssh sessions). */
	if (step.step_id == SLURM_EXTERN_CONT)
		return 0;
	choose_session(sp, config);
	if (step.session[0] == '\0')
		return 0;
	step.active = true;
	shmt_step_name(step.step_id, step_name, sizeof(step_name));
	slurm_info(SHMT_PREFIX "job %u step %s: session '%s'", step.owner.job_id, step_name, step.session);
	/* Lets the epilog clean the session even if this step's exit hook never runs (slurmstepd
	 * killed) and for sessions whose management record carries no job id. */
	shmt_state_record_session(config, step.owner.job_id, step.owner.uid, step.session);
	return 0;
}

int shmt_slurmstepd_exit(spank_t sp, const struct shmt_config *config)
{
	const char *args[] = { "-s", step.session };
	char label[64], step_name[32];

	(void)sp;
	if (!step.active)
		return 0;
	shmt_step_name(step.step_id, step_name, sizeof(step_name));
	snprintf(label, sizeof(label), "job %u step %s", step.owner.job_id, step_name);
	/* A cleanup failure is logged by shmt_monitor_cleanup; a step end never fails because of it. */
	shmt_monitor_cleanup(config, &step.owner, label, args, SHMT_ARRAY_SIZE(args));
	step.active = false;
	return 0;
}
