/*
 * Per-node records the job epilog needs but cannot learn from Slurm: which jobs of a user run
 * on this node (for user_sweep=), and which sessions each step of a job used (so the epilog
 * can clean them even when a step's own end-of-step hook never ran, and for C++ FairMQ
 * sessions that carry no job id). One root-only file per job: <state_dir>/job-<id>, holding
 * "uid <uid>" and one "session <id>" line per step session.
 */
#ifndef SHMT_STATE_H
#define SHMT_STATE_H

#include "config.h"

/* Records that the job runs on this node (job_prolog). Returns 0 or -1 (logged). */
int shmt_state_record_job(const struct shmt_config *config, uint32_t job_id, uid_t uid);

/* Records a session used by a step of the job (remote context). Returns 0 or -1 (logged). */
int shmt_state_record_session(const struct shmt_config *config, uint32_t job_id, uid_t uid, const char *session);

/* Adds the sessions recorded for the job to `out`. A missing record is not an error. */
int shmt_state_read_sessions(const struct shmt_config *config, uint32_t job_id, uid_t uid,
			     struct shmt_sessions *out);

/* Removes the job's record (job_epilog). */
void shmt_state_forget_job(const struct shmt_config *config, uint32_t job_id);

/* 1 when another job of `uid` is recorded on this node, 0 when none, -1 when unknown. */
int shmt_state_user_has_other_jobs(const struct shmt_config *config, uid_t uid, uint32_t job_id);

#endif
