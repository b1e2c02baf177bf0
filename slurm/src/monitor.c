/*
 * Runs shmmonitor in a child process. Slurm's daemons call this from the remote and
 * job_script contexts, so it must never hang (timeout + SIGKILL), never leak descriptors
 * into the child, and never let the child act with more rights than the job's user.
 */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#define SHMT_MAX_ARGS 160
#define SHMT_LINE_MAX 1024

struct line_buffer {
	char data[SHMT_LINE_MAX];
	size_t used;
	bool is_error;
};

/* What was removed or kept is logged at info level; shmmonitor's progress lines ("Cleaning up
 * for ...", "No objects ... found") only with SlurmdDebug=verbose or more. */
static bool is_progress(const char *text)
{
	static const char *const progress[] = { "Cleanup called with", "Cleaning up for", "No objects of",
						"No matching sessions" };

	for (size_t i = 0; i < SHMT_ARRAY_SIZE(progress); i++)
		if (strncmp(text, progress[i], strlen(progress[i])) == 0)
			return true;
	return false;
}

static void emit(const char *label, bool is_error, const char *text)
{
	if (is_error)
		slurm_error(SHMT_PREFIX "%s: %s", label, text);
	else if (is_progress(text))
		slurm_verbose(SHMT_PREFIX "%s: %s", label, text);
	else
		slurm_info(SHMT_PREFIX "%s: %s", label, text);
}

/* Logs complete lines from `buf`; a line longer than the buffer is logged in pieces. */
static void feed(struct line_buffer *buf, const char *label, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = data[i];

		if (c == '\n' || buf->used == sizeof(buf->data) - 1) {
			buf->data[buf->used] = '\0';
			if (buf->used > 0)
				emit(label, buf->is_error, buf->data);
			buf->used = 0;
			if (c == '\n')
				continue;
		}
		buf->data[buf->used++] = c;
	}
}

static void flush(struct line_buffer *buf, const char *label)
{
	if (buf->used == 0)
		return;
	buf->data[buf->used] = '\0';
	emit(label, buf->is_error, buf->data);
	buf->used = 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* In the child: becomes the job's user for good, or exits. */
static void drop_privileges(const struct shmt_owner *owner)
{
	if (geteuid() != 0 || owner->uid == 0)
		return;
	if (setgroups(1, &owner->gid) != 0 || setgid(owner->gid) != 0 || setuid(owner->uid) != 0) {
		dprintf(STDERR_FILENO, "cannot switch to uid %u gid %u: %s\n", (unsigned)owner->uid,
			(unsigned)owner->gid, strerror(errno));
		_exit(126);
	}
	if (setuid(0) == 0 || getuid() != owner->uid || geteuid() != owner->uid) {
		dprintf(STDERR_FILENO, "privileges could not be dropped to uid %u\n", (unsigned)owner->uid);
		_exit(126);
	}
}

static void close_inherited(void)
{
	long max = sysconf(_SC_OPEN_MAX);

	if (close_range(3, ~0U, 0) == 0)
		return;
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = 3; fd < max; fd++)
		close(fd);
}

static void reset_signals(void)
{
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL); /* fails harmlessly for SIGKILL, SIGSTOP and reserved ones */
	/* A step's teardown signals every process of the step, and proctrack/linuxproc counts this
	 * child among them: a cleanup must not die half-way through (timeout= still ends it with
	 * SIGKILL). An ignored disposition survives execve. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Expands job_namespace= (%j, %n, %%) for the job; false when there is none or it is too long. */
static bool namespace_path(const struct shmt_config *config, uint32_t job_id, char *buf, size_t len)
{
	const char *node = getenv("SLURMD_NODENAME");
	char host[256];
	size_t used = 0;

	if (config->job_namespace[0] == '\0')
		return false;
	if (!node || !*node) {
		if (gethostname(host, sizeof(host)) != 0)
			return false;
		host[sizeof(host) - 1] = '\0';
		host[strcspn(host, ".")] = '\0';
		node = host;
	}
	for (const char *p = config->job_namespace; *p; p++) {
		int n;

		if (*p == '%' && p[1] == 'j')
			n = snprintf(buf + used, len - used, "%u", job_id);
		else if (*p == '%' && p[1] == 'n')
			n = snprintf(buf + used, len - used, "%s", node);
		else if (*p == '%' && p[1] == '%')
			n = snprintf(buf + used, len - used, "%%");
		else
			n = snprintf(buf + used, len - used, "%c", *p);
		if (n < 0 || (size_t)n >= len - used)
			return false;
		used += (size_t)n;
		if (*p == '%' && (p[1] == 'j' || p[1] == 'n' || p[1] == '%'))
			p++;
	}
	return true;
}

/* In the child: enters the job's private mount namespace (job_container/tmpfs), if any. */
static void enter_job_namespace(const char *path)
{
	int fd;

	if (!path)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* No namespace (yet or any more): the job's objects are in the host's shm directory. */
		if (errno != ENOENT)
			dprintf(STDERR_FILENO, "cannot open the job's namespace %s: %s\n", path, strerror(errno));
		return;
	}
	if (setns(fd, CLONE_NEWNS) != 0) {
		dprintf(STDERR_FILENO, "cannot enter the job's namespace %s: %s\n", path, strerror(errno));
		_exit(126);
	}
	close(fd);
}

static __attribute__((noreturn)) void run_child(const struct shmt_owner *owner, const char *ns_path,
						char *const argv[], int out_fd, int err_fd)
{
	static char *const envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C.UTF-8", NULL };
	int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
	    dup2(err_fd, STDERR_FILENO) < 0)
		_exit(126);
	close_inherited();
	reset_signals();
	enter_job_namespace(ns_path);
	if (chdir("/") != 0)
		_exit(126);
	drop_privileges(owner);
	execve(argv[0], argv, envp);
	dprintf(STDERR_FILENO, "cannot run %s: %s; check the shmmonitor= argument in plugstack.conf\n", argv[0],
		strerror(errno));
	_exit(127);
}

/* Reads both pipes until they close or the deadline passes. Returns false on timeout. */
static bool drain(int out_fd, int err_fd, const char *label, long long deadline)
{
	struct line_buffer out = { .is_error = false }, err = { .is_error = true };
	struct pollfd fds[2] = { { .fd = out_fd, .events = POLLIN }, { .fd = err_fd, .events = POLLIN } };
	char chunk[4096];
	bool ok = true;

	while (fds[0].fd >= 0 || fds[1].fd >= 0) {
		long long left = deadline - now_ms();
		int n;

		if (left <= 0) {
			ok = false;
			break;
		}
		n = poll(fds, 2, (int)(left > 1000 ? 1000 : left));
		if (n < 0 && errno != EINTR) {
			ok = false;
			break;
		}
		for (int i = 0; i < 2 && n > 0; i++) {
			ssize_t got;

			if (fds[i].fd < 0 || fds[i].revents == 0)
				continue;
			got = read(fds[i].fd, chunk, sizeof(chunk));
			if (got > 0) {
				feed(i == 0 ? &out : &err, label, chunk, (size_t)got);
			} else if (got == 0 || errno != EINTR) {
				fds[i].fd = -1;
			}
		}
	}
	flush(&out, label);
	flush(&err, label);
	return ok;
}

enum shmt_result shmt_monitor_cleanup(const struct shmt_config *config, const struct shmt_owner *owner,
				      const char *label, const char *const *args, size_t nargs)
{
	char *argv[SHMT_MAX_ARGS];
	char uid_text[16], ns_path[PATH_MAX];
	bool has_ns;
	size_t argc = 0;
	int out_pipe[2], err_pipe[2];
	pid_t pid;
	int status = 0;
	bool finished;

	if (nargs + 10 > SHMT_MAX_ARGS) {
		slurm_error(SHMT_PREFIX "%s: too many cleanup arguments (%zu)", label, nargs);
		return SHMT_FAILED;
	}
	snprintf(uid_text, sizeof(uid_text), "%u", (unsigned)owner->uid);
	argv[argc++] = (char *)config->shmmonitor;
	argv[argc++] = "--cleanup";
	for (size_t i = 0; i < nargs; i++)
		argv[argc++] = (char *)args[i];
	argv[argc++] = "--user-id";
	argv[argc++] = uid_text;
	/* its stdout says what was removed or kept; its log (stderr, logged as errors) only problems */
	argv[argc++] = "--severity";
	argv[argc++] = "warn";
	if (config->shm_dir[0] != '\0') {
		argv[argc++] = "--shm-dir";
		argv[argc++] = (char *)config->shm_dir;
	}
	argv[argc] = NULL;
	has_ns = namespace_path(config, owner->job_id, ns_path, sizeof(ns_path));

	if (pipe2(out_pipe, O_CLOEXEC) != 0) {
		slurm_error(SHMT_PREFIX "%s: pipe: %s", label, strerror(errno));
		return SHMT_FAILED;
	}
	if (pipe2(err_pipe, O_CLOEXEC) != 0) {
		slurm_error(SHMT_PREFIX "%s: pipe: %s", label, strerror(errno));
		close(out_pipe[0]);
		close(out_pipe[1]);
		return SHMT_FAILED;
	}
	pid = fork();
	if (pid < 0) {
		slurm_error(SHMT_PREFIX "%s: fork: %s", label, strerror(errno));
		close(out_pipe[0]);
		close(out_pipe[1]);
		close(err_pipe[0]);
		close(err_pipe[1]);
		return SHMT_FAILED;
	}
	if (pid == 0)
		run_child(owner, has_ns ? ns_path : NULL, argv, out_pipe[1], err_pipe[1]);

	close(out_pipe[1]);
	close(err_pipe[1]);
	finished = drain(out_pipe[0], err_pipe[0], label, now_ms() + (long long)config->timeout * 1000);
	close(out_pipe[0]);
	close(err_pipe[0]);
	if (!finished) {
		kill(pid, SIGKILL);
		slurm_error(SHMT_PREFIX "%s: %s did not finish within %u s and was killed; raise timeout= in "
			    "plugstack.conf or check the shm directory", label, config->shmmonitor, config->timeout);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			slurm_error(SHMT_PREFIX "%s: waitpid: %s", label, strerror(errno));
			return SHMT_FAILED;
		}
	}
	if (!finished)
		return SHMT_FAILED;
	if (WIFEXITED(status)) {
		switch (WEXITSTATUS(status)) {
		case 0:
		case 1:
			return SHMT_CLEANED;
		case 3:
			slurm_info(SHMT_PREFIX "%s: kept sessions that live processes still use", label);
			return SHMT_IN_USE;
		default:
			slurm_error(SHMT_PREFIX "%s: %s exited with status %d", label, config->shmmonitor,
				    WEXITSTATUS(status));
			return SHMT_FAILED;
		}
	}
	slurm_error(SHMT_PREFIX "%s: %s was killed by signal %d", label, config->shmmonitor,
		    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	return SHMT_FAILED;
}
