/* The per-node job records; see state.h. Only root writes them. */
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

/* Opens (creating it root-only if needed) the state directory; refuses one others can write. */
static int open_state_dir(const struct shmt_config *config)
{
	struct stat st;
	int fd;

	if (mkdir(config->state_dir, 0700) != 0 && errno != EEXIST) {
		slurm_error(SHMT_PREFIX "cannot create state_dir %s: %s; create it (root, mode 0700) or set "
			    "state_dir= in plugstack.conf", config->state_dir, strerror(errno));
		return -1;
	}
	fd = open(config->state_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		slurm_error(SHMT_PREFIX "cannot open state_dir %s: %s", config->state_dir, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
		slurm_error(SHMT_PREFIX "state_dir %s must be owned by uid %u and not writable by others; fix it with "
			    "chown root %s && chmod 700 %s", config->state_dir, (unsigned)geteuid(), config->state_dir,
			    config->state_dir);
		close(fd);
		return -1;
	}
	return fd;
}

static void job_file_name(uint32_t job_id, char *buf, size_t len)
{
	snprintf(buf, len, "job-%u", job_id);
}

/* Appends `line` to the job's record, writing the uid line first when the record is new. */
static int append(const struct shmt_config *config, uint32_t job_id, uid_t uid, const char *line)
{
	char name[32], text[SHMT_SESSION_MAX + 64];
	struct stat st;
	int dir, fd, rc = -1;
	size_t len = 0;

	dir = open_state_dir(config);
	if (dir < 0)
		return -1;
	job_file_name(job_id, name, sizeof(name));
	fd = openat(dir, name, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		slurm_error(SHMT_PREFIX "cannot write %s/%s: %s", config->state_dir, name, strerror(errno));
		close(dir);
		return -1;
	}
	if (flock(fd, LOCK_EX) != 0 || fstat(fd, &st) != 0) {
		slurm_error(SHMT_PREFIX "cannot lock %s/%s: %s", config->state_dir, name, strerror(errno));
		goto out;
	}
	if (st.st_size == 0)
		len += (size_t)snprintf(text, sizeof(text), "uid %u\n", (unsigned)uid);
	if (line)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%s\n", line);
	if (len > 0 && write(fd, text, len) != (ssize_t)len) {
		slurm_error(SHMT_PREFIX "cannot write %s/%s: %s", config->state_dir, name, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	close(dir);
	return rc;
}

int shmt_state_record_job(const struct shmt_config *config, uint32_t job_id, uid_t uid)
{
	return append(config, job_id, uid, NULL);
}

int shmt_state_record_session(const struct shmt_config *config, uint32_t job_id, uid_t uid, const char *session)
{
	char line[SHMT_SESSION_MAX + 16];

	snprintf(line, sizeof(line), "session %s", session);
	return append(config, job_id, uid, line);
}

/* Opens the job's record for reading; NULL when there is none. */
static FILE *open_record(int dir, const char *name)
{
	int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *f;

	if (fd < 0)
		return NULL;
	f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

/* Reads the "uid" line of a record; -1 when it has none. */
static long long record_uid(FILE *f)
{
	char line[SHMT_SESSION_MAX + 16];
	unsigned uid;

	if (!fgets(line, sizeof(line), f) || sscanf(line, "uid %u", &uid) != 1)
		return -1;
	return uid;
}

int shmt_state_read_sessions(const struct shmt_config *config, uint32_t job_id, uid_t uid,
			     struct shmt_sessions *out)
{
	char name[32], line[SHMT_SESSION_MAX + 16];
	int dir = open_state_dir(config);
	FILE *f;

	if (dir < 0)
		return -1;
	job_file_name(job_id, name, sizeof(name));
	f = open_record(dir, name);
	if (!f) {
		int err = errno;

		close(dir);
		return err == ENOENT ? 0 : -1;
	}
	close(dir);
	if (record_uid(f) != (long long)uid) {
		slurm_error(SHMT_PREFIX "job %u: record %s/%s names another user; ignoring its sessions", job_id,
			    config->state_dir, name);
		fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);

		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (strncmp(line, "session ", 8) != 0 || shmt_session_problem(line + 8) != NULL)
			continue;
		if (shmt_sessions_add(out, line + 8) != 0)
			slurm_error(SHMT_PREFIX "job %u: more than %d sessions recorded; the rest are left to the "
				    "--job sweep", job_id, SHMT_SESSIONS_MAX);
	}
	fclose(f);
	return 0;
}

void shmt_state_forget_job(const struct shmt_config *config, uint32_t job_id)
{
	char name[32];
	int dir = open_state_dir(config);

	if (dir < 0)
		return;
	job_file_name(job_id, name, sizeof(name));
	if (unlinkat(dir, name, 0) != 0 && errno != ENOENT)
		slurm_error(SHMT_PREFIX "cannot remove %s/%s: %s", config->state_dir, name, strerror(errno));
	close(dir);
}

int shmt_state_user_has_other_jobs(const struct shmt_config *config, uid_t uid, uint32_t job_id)
{
	char own[32];
	int dir = open_state_dir(config), found = 0;
	DIR *d;
	struct dirent *e;

	if (dir < 0)
		return -1;
	d = fdopendir(dir);
	if (!d) {
		close(dir);
		return -1;
	}
	job_file_name(job_id, own, sizeof(own));
	while ((e = readdir(d)) != NULL) {
		FILE *f;

		if (strncmp(e->d_name, "job-", 4) != 0 || strcmp(e->d_name, own) == 0)
			continue;
		f = open_record(dirfd(d), e->d_name);
		if (!f)
			continue;
		if (record_uid(f) == (long long)uid)
			found = 1;
		fclose(f);
		if (found)
			break;
	}
	closedir(d);
	return found;
}
