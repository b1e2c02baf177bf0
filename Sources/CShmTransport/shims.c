#define _GNU_SOURCE
#include "CShmTransport.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <unistd.h>

int cshm_futex_wait(uint32_t *addr, uint32_t expected, const struct timespec *timeout) {
    return (int)syscall(SYS_futex, addr, FUTEX_WAIT, expected, timeout, NULL, 0);
}

int cshm_futex_wake(uint32_t *addr, int count) {
    return (int)syscall(SYS_futex, addr, FUTEX_WAKE, count, NULL, NULL, 0);
}

short cshm_posix_spawn_setsid_flag(void) {
    return POSIX_SPAWN_SETSID;
}

int cshm_posix_spawn_file_actions_addclosefrom(void *actions, int lowfd) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, lowfd);
}

int cshm_o_tmpfile_flag(void) {
    return O_TMPFILE;
}
