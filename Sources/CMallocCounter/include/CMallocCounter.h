#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H

/* Counts heap allocations of the process that links this target, for the benchmarks' and the
 * tests' "0 allocations per message" figures. Linking it into an executable replaces malloc,
 * calloc, realloc, posix_memalign, aligned_alloc, memalign and valloc for the whole process
 * (the executable's definitions win over libc's at dynamic link time); each forwards to glibc's
 * own allocator (__libc_malloc ...) and adds one to two counters: the process's and the calling
 * thread's. Counting costs one relaxed atomic add and a thread-local add per allocation. Link it
 * only into benchmark and test executables, never into a library. */

#include <stdint.h>

/// Allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign, valloc) made by
/// every thread of this process since it started.
uint64_t cmc_process_allocations(void);

/// Allocations made by the calling thread since it started.
uint64_t cmc_thread_allocations(void);

/// 1 when this process's allocator is the counting one (the interposition took effect), else 0
/// (also in a sanitizer build, whose allocator is the sanitizer's).
int cmc_is_active(void);

/// From now on, also count separately the allocations made directly by libzmq or by the C++
/// runtime's `operator new` (which only libzmq uses in these processes), told apart by the
/// allocation's return address. Call once, from one thread, before the counted work, after
/// libzmq is loaded. Returns the number of code ranges found (0: libzmq is not loaded).
int cmc_separate_libzmq(void);

/// Of ``cmc_process_allocations()``: those made by libzmq (after ``cmc_separate_libzmq()``).
uint64_t cmc_process_libzmq_allocations(void);

/// Of ``cmc_thread_allocations()``: those made by libzmq (after ``cmc_separate_libzmq()``).
uint64_t cmc_thread_libzmq_allocations(void);

#endif
