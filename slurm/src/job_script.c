/*
 * Job script context (prolog and epilog, root, a new process for every call): records which
 * jobs run on the node and, at job end, removes every session of the job.
 */
#include "contexts.h"
#include "monitor.h"
#include "state.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The job's ids; the gid from the item, the epilog environment, or the user database. */
static int read_owner(spank_t sp, struct shmt_owner *owner)
{
	const char *gid_text = getenv("SLURM_JOB_GID");
	struct passwd *pw;

	memset(owner, 0, sizeof(*owner));
	if (spank_get_item(sp, S_JOB_ID, &owner->job_id) != ESPANK_SUCCESS ||
	    spank_get_item(sp, S_JOB_UID, &owner->uid) != ESPANK_SUCCESS) {
		slurm_error(SHMT_PREFIX "cannot read the job id and user id in the job script context");
		return -1;
	}
	if (spank_get_item(sp, S_JOB_GID, &owner->gid) == ESPANK_SUCCESS)
		return 0;
	if (gid_text && *gid_text) {
		char *end = NULL;
		unsigned long gid = strtoul(gid_text, &end, 10);

		if (end && *end == '\0') {
			owner->gid = (gid_t)gid;
			return 0;
		}
	}
	pw = getpwuid(owner->uid);
	if (!pw) {
		slurm_error(SHMT_PREFIX "job %u: uid %u has no group id; cannot clean as that user", owner->job_id,
			    (unsigned)owner->uid);
		return -1;
	}
	owner->gid = pw->pw_gid;
	return 0;
}

int shmt_job_prolog(spank_t sp, const struct shmt_config *config)
{
	struct shmt_owner owner;

	if (read_owner(sp, &owner) != 0)
		return 0;
	/* Without the record the epilog still cleans by job id; it only cannot tell whether the
	 * user has other jobs here, so user_sweep= is skipped for safety. */
	shmt_state_record_job(config, owner.job_id, owner.uid);
	return 0;
}

/* The sessions the job named: --shm-session (option or job control environment). Here the
 * option was never registered; spank_option_getopt finds it in the environment slurmd gives
 * the epilog (SPANK__SLURM_SPANK_OPTION_shmtransport_shm_session). */
static void named_sessions(spank_t sp, uint32_t job_id, struct shmt_sessions *out)
{
	const char *env = getenv("SPANK_" SHMT_JOB_CONTROL_NAME);
	struct shmt_sessions from_env;
	char err[512];

	shmt_option_sessions(sp, out);
	if (!env || !*env)
		return;
	if (shmt_sessions_parse(env, &from_env, err, sizeof(err)) != 0) {
		slurm_error(SHMT_PREFIX "job %u: %s", job_id, err);
		return;
	}
	for (size_t i = 0; i < from_env.count; i++)
		shmt_sessions_add(out, from_env.names[i]);
}

static void worst(enum shmt_result *acc, enum shmt_result r)
{
	if (r == SHMT_FAILED)
		*acc = SHMT_FAILED;
}

int shmt_job_epilog(spank_t sp, const struct shmt_config *config)
{
	struct shmt_owner owner;
	struct shmt_sessions sessions, recorded;
	enum shmt_result result = SHMT_CLEANED;
	char label[48], job_text[16];
	const char *args[2 * SHMT_SESSIONS_MAX];
	size_t nargs = 0;

	if (read_owner(sp, &owner) != 0)
		return config->strict ? -1 : 0;
	snprintf(label, sizeof(label), "job %u", owner.job_id);
	snprintf(job_text, sizeof(job_text), "%u", owner.job_id);

	/* 1. Every session whose management record names this job (creator or attached process). */
	{
		const char *sweep[] = { "--job", job_text };

		worst(&result, shmt_monitor_cleanup(config, &owner, label, sweep, SHMT_ARRAY_SIZE(sweep)));
	}

	/* 2. Sessions the job named, and the step sessions recorded on this node. */
	named_sessions(sp, owner.job_id, &sessions);
	memset(&recorded, 0, sizeof(recorded));
	if (shmt_state_read_sessions(config, owner.job_id, owner.uid, &recorded) != 0)
		result = SHMT_FAILED;
	for (size_t i = 0; i < recorded.count; i++)
		if (shmt_sessions_add(&sessions, recorded.names[i]) != 0)
			break;
	for (size_t i = 0; i < sessions.count; i++) {
		args[nargs++] = "-s";
		args[nargs++] = sessions.names[i];
	}
	if (nargs > 0)
		worst(&result, shmt_monitor_cleanup(config, &owner, label, args, nargs));
	shmt_state_forget_job(config, owner.job_id);

	/* 3. Optionally, everything of the user that nothing uses, once the user's last job here ends. */
	if (config->user_sweep) {
		int others = shmt_state_user_has_other_jobs(config, owner.uid, owner.job_id);

		if (others == 0) {
			const char *sweep[] = { "--all-sessions" };

			slurm_info(SHMT_PREFIX "%s: last job of uid %u on this node; removing the user's unused sessions",
				   label, (unsigned)owner.uid);
			worst(&result, shmt_monitor_cleanup(config, &owner, label, sweep, SHMT_ARRAY_SIZE(sweep)));
		} else {
			slurm_info(SHMT_PREFIX "%s: uid %u has %s job on this node; user sweep skipped", label,
				   (unsigned)owner.uid, others > 0 ? "another" : "possibly another");
		}
	}

	if (result == SHMT_FAILED) {
		slurm_error(SHMT_PREFIX "%s: cleanup incomplete (see the messages above)%s", label,
			    config->strict ? "; failing the epilog because strict=yes" : "");
		return config->strict ? -1 : 0;
	}
	return 0;
}
