#ifndef CSHMTRANSPORT_H
#define CSHMTRANSPORT_H

/* Only what Swift cannot call directly lives here: the variadic syscall(2) for futexes and
 * _GNU_SOURCE macros and functions. Everything else (shm_open, posix_fallocate, atomics) is called from Swift. */

#include <stdint.h>
#include <time.h>

/// Waits while *addr == expected, on a futex shared between processes (no FUTEX_PRIVATE_FLAG).
/// Returns 0 on wake-up, or -1 with errno (EAGAIN: value changed, ETIMEDOUT, EINTR).
/// timeout may be NULL (wait forever); it is relative.
int cshm_futex_wait(uint32_t *addr, uint32_t expected, const struct timespec *timeout);

/// Wakes up to count waiters on a futex shared between processes. Returns the number woken or -1.
int cshm_futex_wake(uint32_t *addr, int count);

/// Tells the CPU that this thread spins on a lock word (x86 `pause`, arm64 `yield`).
static inline void cshm_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// The `POSIX_SPAWN_SETSID` flag for posix_spawnattr_setflags (a _GNU_SOURCE macro Swift does not see).
short cshm_posix_spawn_setsid_flag(void);

/// Makes a posix_spawn child close every descriptor from `lowfd` up (a _GNU_SOURCE function Swift
/// does not see), so a daemon keeps no pipe of its parent open. Returns 0 or an errno value.
/// The corresponding C function is `posix_spawn_file_actions_addclosefrom_np`.
int cshm_posix_spawn_file_actions_addclosefrom(void *actions, int lowfd);

/// The `O_TMPFILE` open flag (a _GNU_SOURCE macro Swift does not see): an unnamed file in a
/// directory that vanishes with its last descriptor unless it is linked to a name.
int cshm_o_tmpfile_flag(void);

#endif
