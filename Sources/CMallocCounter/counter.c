#define _GNU_SOURCE
#include "CMallocCounter.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A sanitizer (AddressSanitizer, ThreadSanitizer) brings its own allocator and intercepts these
 * names itself; forwarding them to glibc's would bypass it (and crash). Under one, nothing is
 * counted and cmc_is_active() says so. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CMC_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CMC_SANITIZED 1
#endif
#endif

/* glibc's own entry points: stable exported names of its allocator. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *pointer);

static uint64_t process_count;
static __thread uint64_t thread_count;
static uint64_t process_libzmq_count;
static __thread uint64_t thread_libzmq_count;

/* Executable code ranges of libzmq and of the C++ runtime, written once by cmc_separate_libzmq
 * before range_count is published (release), read by every allocation (acquire). */
struct code_range {
    uintptr_t start, end;
};
enum { max_ranges = 16 };
static struct code_range ranges[max_ranges];
static int range_count;

#ifndef CMC_SANITIZED
static inline int from_libzmq(uintptr_t caller) {
    int n = __atomic_load_n(&range_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++) {
        if (caller >= ranges[i].start && caller < ranges[i].end) return 1;
    }
    return 0;
}

#define COUNT()                                                               \
    do {                                                                      \
        __atomic_fetch_add(&process_count, 1, __ATOMIC_RELAXED);              \
        thread_count += 1;                                                    \
        if (from_libzmq((uintptr_t)__builtin_return_address(0))) {            \
            __atomic_fetch_add(&process_libzmq_count, 1, __ATOMIC_RELAXED);   \
            thread_libzmq_count += 1;                                         \
        }                                                                     \
    } while (0)
#endif

uint64_t cmc_process_allocations(void) { return __atomic_load_n(&process_count, __ATOMIC_RELAXED); }
uint64_t cmc_thread_allocations(void) { return thread_count; }
uint64_t cmc_process_libzmq_allocations(void) { return __atomic_load_n(&process_libzmq_count, __ATOMIC_RELAXED); }
uint64_t cmc_thread_libzmq_allocations(void) { return thread_libzmq_count; }

struct library_search {
    const char *path;
    int found;
};

static int add_ranges(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct library_search *search = data;
    if (info->dlpi_name == NULL || strcmp(info->dlpi_name, search->path) != 0) return 0;
    int n = __atomic_load_n(&range_count, __ATOMIC_RELAXED);
    for (int i = 0; i < info->dlpi_phnum && n < max_ranges; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        if (header->p_type != PT_LOAD || (header->p_flags & PF_X) == 0) continue;
        ranges[n].start = info->dlpi_addr + header->p_vaddr;
        ranges[n].end = ranges[n].start + header->p_memsz;
        n++;
        search->found++;
    }
    __atomic_store_n(&range_count, n, __ATOMIC_RELEASE);
    return 1;
}

static void add_library_of(const char *symbol) {
    void *address = dlsym(RTLD_DEFAULT, symbol);
    Dl_info info;
    if (address == NULL || dladdr(address, &info) == 0 || info.dli_fname == NULL) return;
    struct library_search search = {info.dli_fname, 0};
    dl_iterate_phdr(add_ranges, &search);
}

int cmc_separate_libzmq(void) {
    if (__atomic_load_n(&range_count, __ATOMIC_ACQUIRE) == 0) {
        add_library_of("zmq_msg_send");
        add_library_of("_Znwm"); /* operator new(size_t), libstdc++ */
    }
    return __atomic_load_n(&range_count, __ATOMIC_ACQUIRE);
}

int cmc_is_active(void) {
    uint64_t before = thread_count;
    void *volatile probe = malloc(1);
    free(probe);
    return thread_count != before;
}

#ifndef CMC_SANITIZED
__attribute__((visibility("default"))) void *malloc(size_t size) {
    COUNT();
    return __libc_malloc(size);
}

__attribute__((visibility("default"))) void free(void *pointer) { __libc_free(pointer); }

__attribute__((visibility("default"))) void *calloc(size_t count_, size_t size) {
    COUNT();
    return __libc_calloc(count_, size);
}

__attribute__((visibility("default"))) void *realloc(void *pointer, size_t size) {
    COUNT();
    return __libc_realloc(pointer, size);
}

__attribute__((visibility("default"))) void *memalign(size_t alignment, size_t size) {
    COUNT();
    return __libc_memalign(alignment, size);
}

__attribute__((visibility("default"))) void *aligned_alloc(size_t alignment, size_t size) {
    COUNT();
    return __libc_memalign(alignment, size);
}

__attribute__((visibility("default"))) int posix_memalign(void **result, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    COUNT();
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *result = pointer;
    return 0;
}

__attribute__((visibility("default"))) void *valloc(size_t size) {
    COUNT();
    return __libc_memalign(4096, size);
}
#endif /* CMC_SANITIZED */
