/* Session id lists and validation, shared by every context. */
#include "common.h"

#include <stdio.h>
#include <string.h>

#include <slurm/slurm.h>

int shmt_sessions_add(struct shmt_sessions *list, const char *name)
{
	for (size_t i = 0; i < list->count; i++)
		if (strcmp(list->names[i], name) == 0)
			return 0;
	if (list->count >= SHMT_SESSIONS_MAX)
		return -1;
	snprintf(list->names[list->count], sizeof(list->names[0]), "%s", name);
	list->count++;
	return 0;
}

const char *shmt_session_problem(const char *name)
{
	size_t len = strlen(name);

	if (len == 0)
		return "a session id is empty; give names such as run42 or run42,calib";
	if (len > SHMT_SESSION_MAX)
		return "a session id is longer than 255 bytes; use a shorter name";
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p == '/')
			return "a session id contains '/', which cannot appear in shared memory names; use '_' or '-'";
		if (*p == ',')
			return "a session id contains ','; ',' separates session ids, so use '_' or '-' inside one";
		if (*p < 0x20 || *p == 0x7f)
			return "a session id contains a control character; use letters, digits, '.', '_' or '-'";
	}
	return NULL;
}

int shmt_sessions_parse(const char *text, struct shmt_sessions *out, char *err, size_t errlen)
{
	const char *start = text;

	memset(out, 0, sizeof(*out));
	for (;;) {
		const char *end = strchr(start, ',');
		size_t len = end ? (size_t)(end - start) : strlen(start);
		char name[SHMT_SESSION_MAX + 2];
		const char *problem;

		if (len > SHMT_SESSION_MAX) {
			snprintf(err, errlen, "--shm-session: a session id is longer than %d bytes; use a shorter name",
				 SHMT_SESSION_MAX);
			return -1;
		}
		memcpy(name, start, len);
		name[len] = '\0';
		problem = shmt_session_problem(name);
		if (problem) {
			snprintf(err, errlen, "--shm-session=%s: %s", text, problem);
			return -1;
		}
		if (shmt_sessions_add(out, name) != 0) {
			snprintf(err, errlen, "--shm-session: more than %d session ids; name at most %d",
				 SHMT_SESSIONS_MAX, SHMT_SESSIONS_MAX);
			return -1;
		}
		if (!end)
			return 0;
		start = end + 1;
	}
}

void shmt_step_name(uint32_t step_id, char *buf, size_t len)
{
	switch (step_id) {
	case SLURM_BATCH_SCRIPT:
		snprintf(buf, len, "batch");
		break;
	case SLURM_EXTERN_CONT:
		snprintf(buf, len, "extern");
		break;
	case SLURM_INTERACTIVE_STEP:
		snprintf(buf, len, "interactive");
		break;
	default:
		snprintf(buf, len, "%u", step_id);
		break;
	}
}
