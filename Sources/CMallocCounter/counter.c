#define _GNU_SOURCE
#include "CMallocCounter.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

/* glibc's own entry points: stable exported names of its allocator. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *pointer);

static uint64_t process_count;
static __thread uint64_t thread_count;

static inline void count(void) {
    __atomic_fetch_add(&process_count, 1, __ATOMIC_RELAXED);
    thread_count += 1;
}

uint64_t cmc_process_allocations(void) { return __atomic_load_n(&process_count, __ATOMIC_RELAXED); }
uint64_t cmc_thread_allocations(void) { return thread_count; }

int cmc_is_active(void) {
    uint64_t before = thread_count;
    void *volatile probe = malloc(1);
    free(probe);
    return thread_count != before;
}

__attribute__((visibility("default"))) void *malloc(size_t size) {
    count();
    return __libc_malloc(size);
}

__attribute__((visibility("default"))) void free(void *pointer) { __libc_free(pointer); }

__attribute__((visibility("default"))) void *calloc(size_t count_, size_t size) {
    count();
    return __libc_calloc(count_, size);
}

__attribute__((visibility("default"))) void *realloc(void *pointer, size_t size) {
    count();
    return __libc_realloc(pointer, size);
}

__attribute__((visibility("default"))) void *memalign(size_t alignment, size_t size) {
    count();
    return __libc_memalign(alignment, size);
}

__attribute__((visibility("default"))) void *aligned_alloc(size_t alignment, size_t size) {
    count();
    return __libc_memalign(alignment, size);
}

__attribute__((visibility("default"))) int posix_memalign(void **result, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    count();
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *result = pointer;
    return 0;
}

__attribute__((visibility("default"))) void *valloc(size_t size) {
    count();
    return __libc_memalign(4096, size);
}
