/*
 * aring's C helpers: atomics, the double mapping, notifier descriptors, the
 * shared control header layout.  Everything here is small and free of Python;
 * _native.pyx turns the error codes into exceptions and holds all policy.
 *
 * Every mapping function returns 0 or -1; on -1 it fills an aring_error with
 * the step that failed and its errno, so the Python error names both.
 */
#ifndef ARING_H
#define ARING_H

#include <stdint.h>
#include <stddef.h>
#include <errno.h>
#include <string.h>

#define ARING_LINE 64
#define ARING_MAGIC 0x31474e4952415f41ULL /* "A_ARING1" little-endian */
#define ARING_LAYOUT_VERSION 1u
#define ARING_MAX_READERS 64

/* header flags */
#define ARING_FLAG_WRITER_CLOSED 1u
#define ARING_FLAG_PERSISTENT 2u
#define ARING_FLAG_READER_ATTACHED 4u

/* reader slot states */
#define ARING_SLOT_FREE 0u
#define ARING_SLOT_CLAIMED 1u
#define ARING_SLOT_ACTIVE 2u

/* strategies */
#define ARING_STRATEGY_MEMFD 1
#define ARING_STRATEGY_SHM 2
#define ARING_STRATEGY_FILE 3
#define ARING_STRATEGY_COPY 4

/* ------------------------------------------------------------------ atomics */
#if defined(_MSC_VER) && !defined(__clang__)
#include <windows.h>
#include <intrin.h>
/* x64 and ARM64 MSVC: plain aligned loads/stores are atomic; the barriers
 * order them.  Interlocked* are full barriers. */
static __forceinline uint64_t aring_load_acquire_u64(uint64_t *p) {
    uint64_t v = *(volatile uint64_t *)p; _ReadWriteBarrier(); MemoryBarrier(); return v; }
static __forceinline uint64_t aring_load_relaxed_u64(uint64_t *p) { return *(volatile uint64_t *)p; }
static __forceinline void aring_store_release_u64(uint64_t *p, uint64_t v) {
    MemoryBarrier(); *(volatile uint64_t *)p = v; }
static __forceinline uint32_t aring_load_acquire_u32(uint32_t *p) {
    uint32_t v = *(volatile uint32_t *)p; MemoryBarrier(); return v; }
static __forceinline void aring_store_seqcst_u32(uint32_t *p, uint32_t v) {
    InterlockedExchange((volatile LONG *)p, (LONG)v); }
static __forceinline uint32_t aring_exchange_u32(uint32_t *p, uint32_t v) {
    return (uint32_t)InterlockedExchange((volatile LONG *)p, (LONG)v); }
static __forceinline int aring_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return (uint32_t)InterlockedCompareExchange((volatile LONG *)p, (LONG)desired, (LONG)expected) == expected; }
static __forceinline uint32_t aring_fetch_or_u32(uint32_t *p, uint32_t v) {
    return (uint32_t)InterlockedOr((volatile LONG *)p, (LONG)v); }
static __forceinline uint64_t aring_fetch_or_u64(uint64_t *p, uint64_t v) {
    return (uint64_t)InterlockedOr64((volatile LONG64 *)p, (LONG64)v); }
static __forceinline uint64_t aring_fetch_and_u64(uint64_t *p, uint64_t v) {
    return (uint64_t)InterlockedAnd64((volatile LONG64 *)p, (LONG64)v); }
static __forceinline uint64_t aring_exchange_u64(uint64_t *p, uint64_t v) {
    return (uint64_t)InterlockedExchange64((volatile LONG64 *)p, (LONG64)v); }
static __forceinline uint64_t aring_fetch_add_u64(uint64_t *p, uint64_t v) {
    return (uint64_t)InterlockedExchangeAdd64((volatile LONG64 *)p, (LONG64)v); }
static __forceinline void aring_fence_seqcst(void) { MemoryBarrier(); }
static __forceinline int aring_popcount64(uint64_t v) { return (int)__popcnt64(v); }
static __forceinline int aring_ctz64(uint64_t v) { unsigned long i; _BitScanForward64(&i, v); return (int)i; }
static __forceinline void aring_cpu_relax(void) { YieldProcessor(); }
static __forceinline uint64_t aring_now_ns(void) {
    LARGE_INTEGER f, c; QueryPerformanceFrequency(&f); QueryPerformanceCounter(&c);
    return (uint64_t)((double)c.QuadPart * 1e9 / (double)f.QuadPart); }
#else
#include <time.h>
static inline uint64_t aring_load_acquire_u64(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t aring_load_relaxed_u64(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void aring_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t aring_load_acquire_u32(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void aring_store_seqcst_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t aring_exchange_u32(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
static inline int aring_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }
static inline uint32_t aring_fetch_or_u32(uint32_t *p, uint32_t v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t aring_fetch_or_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t aring_fetch_and_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t aring_exchange_u64(uint64_t *p, uint64_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t aring_fetch_add_u64(uint64_t *p, uint64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline void aring_fence_seqcst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline int aring_popcount64(uint64_t v) { return __builtin_popcountll(v); }
static inline int aring_ctz64(uint64_t v) { return __builtin_ctzll(v); }
/* A spin-wait hint: lets the sibling hyperthread run and saves power. */
static inline void aring_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}
static inline uint64_t aring_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
#endif

/* ------------------------------------------------------- control header */
/* Offsets, never pointers: another process maps the same bytes elsewhere.
 * Each line is touched by a different party, so each gets its own cache line. */
typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t capacity;
    uint32_t page_size;
    uint32_t item_size;
    uint32_t max_readers;
    uint32_t strategy;
    uint32_t flags;        /* ARING_FLAG_*; changed with fetch_or */
    uint32_t writer_pid;
    char _pad[ARING_LINE - 48];
} aring_geometry;

typedef struct { uint64_t value; char _pad[ARING_LINE - 8]; } aring_line_u64;
typedef struct { uint32_t value; char _pad[ARING_LINE - 4]; } aring_line_u32;

/* A sleeper sets its flag and the position that would satisfy it; the other
 * side writes the fd only once its cursor reaches that position. */
typedef struct {
    uint32_t flag;
    uint32_t _pad0;
    uint64_t wake_at;      /* writer: min reader position wanted */
    char _pad[ARING_LINE - 16];
} aring_waiter;

typedef struct {
    uint32_t state;        /* ARING_SLOT_* */
    uint32_t pid;
    uint64_t position;     /* read position; only grows */
    uint64_t wake_at;      /* while sleeping: the write position wanted */
    char _pad[ARING_LINE - 24];
} aring_slot;

typedef struct {
    aring_geometry geometry;          /* line 0: written once at creation */
    aring_line_u64 write_position;    /* line 1: the writer's cursor */
    aring_waiter writer_waiting;      /* line 2: writer sleeps for space */
    aring_line_u64 readers_waiting;   /* line 3: bit i = reader slot i sleeps for data */
    aring_line_u64 notifier_writes;   /* line 4: wakeups actually sent (stats) */
    aring_slot slots[];               /* lines 5..: one per reader slot */
} aring_header;

static inline size_t aring_header_bytes(size_t max_readers) {
    return sizeof(aring_header) + max_readers * sizeof(aring_slot);
}

typedef struct { const char *step; int err; } aring_error;

static inline int aring_fail(aring_error *e, const char *step) {
    e->step = step; e->err = errno; return -1;
}

/* ------------------------------------------------------------- mapping */
#if defined(_WIN32)

static long aring_page_size(void) { SYSTEM_INFO si; GetSystemInfo(&si); return (long)si.dwPageSize; }
static long aring_allocation_granularity(void) { SYSTEM_INFO si; GetSystemInfo(&si); return (long)si.dwAllocationGranularity; }
static int aring_unsupported(aring_error *e, const char *step) { e->step = step; e->err = ENOSYS; return -1; }
static int aring_create_memfd(size_t size, int *fd, aring_error *e) { (void)size; (void)fd; return aring_unsupported(e, "memfd_create"); }
static int aring_create_shm(size_t size, int *fd, aring_error *e) { (void)size; (void)fd; return aring_unsupported(e, "shm_open"); }
static int aring_open_file(const char *path, int tmp, size_t size, int *fd, aring_error *e) {
    (void)path; (void)tmp; (void)size; (void)fd; return aring_unsupported(e, "open"); }
static int aring_map_double(int fd, size_t hdr, size_t n, char **base, aring_error *e) {
    (void)fd; (void)hdr; (void)n; (void)base; return aring_unsupported(e, "VirtualAlloc2"); }
static int aring_map_copy(size_t total, char **base, aring_error *e) { (void)total; (void)base; return aring_unsupported(e, "VirtualAlloc"); }
static int aring_unmap(char *base, size_t total) { (void)base; (void)total; return 0; }
static int aring_close_fd(int fd) { (void)fd; return 0; }

#else /* POSIX */

#include <unistd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdio.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#include <linux/falloc.h>
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

static long aring_page_size(void) { return sysconf(_SC_PAGESIZE); }
static long aring_allocation_granularity(void) { return sysconf(_SC_PAGESIZE); }
static int aring_close_fd(int fd) { return fd >= 0 ? close(fd) : 0; }

static int aring_size_fd(int fd, size_t size, aring_error *e) {
    if (ftruncate(fd, (off_t)size) < 0) return aring_fail(e, "ftruncate");
    return 0;
}

static int aring_create_memfd(size_t size, int *out, aring_error *e) {
#if defined(__linux__)
    /* Kernels before 6.3 reject MFD_NOEXEC_SEAL with EINVAL. */
    int fd = memfd_create("aring", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) fd = memfd_create("aring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return aring_fail(e, "memfd_create");
    if (aring_size_fd(fd, size, e) < 0) { int s = errno; close(fd); errno = s; return -1; }
    /* The mapping's size is part of the layout: nobody may shrink it under us. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
        aring_fail(e, "fcntl(F_ADD_SEALS)"); close(fd); return -1;
    }
    *out = fd;
    return 0;
#else
    (void)size; (void)out; errno = ENOSYS; return aring_fail(e, "memfd_create");
#endif
}

static int aring_create_shm(size_t size, int *out, aring_error *e) {
    static unsigned counter = 0;
    char name[32];             /* macOS limits names to 31 bytes */
    int fd = -1, tries;
    for (tries = 0; tries < 64; tries++) {
        unsigned c = __atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED);
        snprintf(name, sizeof name, "/aring.%x.%x", (unsigned)getpid(), c);
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd >= 0 || errno != EEXIST) break;
    }
    if (fd < 0) return aring_fail(e, "shm_open");
    /* ftruncate before unlink: macOS refuses to size an unlinked object. */
    if (aring_size_fd(fd, size, e) < 0) { int s = errno; shm_unlink(name); close(fd); errno = s; return -1; }
    if (shm_unlink(name) < 0) { aring_fail(e, "shm_unlink"); close(fd); return -1; }
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    *out = fd;
    return 0;
}

/* A regular file: `path` is a directory when tmp != 0 (an unlinked scratch
 * file is made in it), else the ring's file, which must be new or empty. */
static int aring_open_file(const char *path, int tmp, size_t size, int *out, aring_error *e) {
    int fd = -1;
    struct stat st;
    if (tmp) {
#if defined(O_TMPFILE)
        fd = open(path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT)
            return aring_fail(e, "open(O_TMPFILE)");
#endif
        if (fd < 0) {
            char tmpl[4096];
            if (snprintf(tmpl, sizeof tmpl, "%s/aring-XXXXXX", path) >= (int)sizeof tmpl) {
                errno = ENAMETOOLONG; return aring_fail(e, "mkstemp");
            }
            fd = mkstemp(tmpl);
            if (fd < 0) return aring_fail(e, "mkstemp");
            unlink(tmpl);
            int flags = fcntl(fd, F_GETFD);
            if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    } else {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) return aring_fail(e, "open");
    }
    if (fstat(fd, &st) < 0) { aring_fail(e, "fstat"); close(fd); return -1; }
    if (!S_ISREG(st.st_mode)) { close(fd); errno = EINVAL; return aring_fail(e, "fstat(not a regular file)"); }
    if (st.st_size != 0) { close(fd); errno = EEXIST; return aring_fail(e, "fstat(file already holds data)"); }
    /* Reserve the blocks now so a full disk fails here, not as SIGBUS on a
     * page fault inside a copy later. */
    int rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc == EOPNOTSUPP || rc == EINVAL) rc = ftruncate(fd, (off_t)size) < 0 ? errno : 0;
    if (rc != 0) { close(fd); errno = rc; return aring_fail(e, "posix_fallocate"); }
    if (fstat(fd, &st) < 0 || (size_t)st.st_size != size) {
        if (errno == 0) errno = EIO;
        aring_fail(e, "fstat(size check)"); close(fd); return -1;
    }
    *out = fd;
    return 0;
}

/* Reserve hdr+2n of address space with one PROT_NONE mapping, then put two
 * MAP_FIXED views of the file over it: [hdr][data] from offset 0 and [data]
 * again from offset hdr.  MAP_FIXED only ever replaces our own reservation,
 * so no other thread's mapping can be hit. */
static int aring_map_double(int fd, size_t hdr, size_t n, char **base, aring_error *e) {
    size_t total = hdr + 2 * n;
    char *res = (char *)mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED) return aring_fail(e, "mmap(reserve)");
    void *a = mmap(res, hdr + n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    if (a == MAP_FAILED) { aring_fail(e, "mmap(first view)"); munmap(res, total); return -1; }
    void *b = mmap(res + hdr + n, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)hdr);
    if (b == MAP_FAILED) { aring_fail(e, "mmap(second view)"); munmap(res, total); return -1; }
    *base = res;
    return 0;
}

/* The fallback: one plain shared mapping of hdr+2n; the ring mirrors writes. */
static int aring_map_copy(size_t total, char **base, aring_error *e) {
    char *p = (char *)mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return aring_fail(e, "mmap(copy)");
    *base = p;
    return 0;
}

static int aring_unmap(char *base, size_t total) { return munmap(base, total); }

#endif /* POSIX */

/* ----------------------------------------------------------- notifiers */
/* A notifier is a pair (read end, write end); eventfd uses one fd for both. */
#define ARING_NOTIFIER_NONE 0     /* a ring only polled with try_*: no fds, no waits */
#define ARING_NOTIFIER_EVENTFD 1
#define ARING_NOTIFIER_PIPE 2

static int aring_notifier_open(int kind, int *rfd, int *wfd, aring_error *e) {
#if defined(__linux__)
    if (kind == ARING_NOTIFIER_EVENTFD) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) return aring_fail(e, "eventfd");
        *rfd = *wfd = fd;
        return 0;
    }
#endif
#if !defined(_WIN32)
    if (kind == ARING_NOTIFIER_PIPE) {
        int p[2];
#if defined(__linux__)
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return aring_fail(e, "pipe2");
#else
        if (pipe(p) < 0) return aring_fail(e, "pipe");
        for (int i = 0; i < 2; i++) {
            fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
            fcntl(p[i], F_SETFD, fcntl(p[i], F_GETFD) | FD_CLOEXEC);
        }
#endif
        *rfd = p[0]; *wfd = p[1];
        return 0;
    }
#endif
    errno = ENOSYS;
    return aring_fail(e, "notifier");
}

/* Signal: a full pipe or an eventfd at its maximum already means "wake up". */
static int aring_notifier_signal(int kind, int wfd) {
#if !defined(_WIN32)
    ssize_t r;
    if (wfd < 0) return 0;  /* no notifier */
    if (kind == ARING_NOTIFIER_EVENTFD) { uint64_t one = 1; r = write(wfd, &one, 8); }
    else { char one = 1; r = write(wfd, &one, 1); }
    if (r < 0 && errno != EAGAIN && errno != EINTR) return -1;
#endif
    return 0;
}

/* Drain: eventfd resets in one read; a pipe is read until empty. */
static void aring_notifier_drain(int kind, int rfd) {
#if !defined(_WIN32)
    if (rfd < 0) return;
    if (kind == ARING_NOTIFIER_EVENTFD) { uint64_t v; ssize_t r = read(rfd, &v, 8); (void)r; return; }
    char buf[256];
    while (read(rfd, buf, sizeof buf) == (ssize_t)sizeof buf) {}
#endif
}

/* ---------------------------------------------------------------- fork */
/* Bumped in the child after fork(): an end remembers the generation it was
 * made in and refuses to touch shared state from another one. */
static volatile unsigned long aring_fork_generation_value = 0;
#if !defined(_WIN32)
#include <pthread.h>
static void aring_after_fork_child(void) { aring_fork_generation_value++; }
static int aring_install_fork_hook(void) { return pthread_atfork(NULL, NULL, aring_after_fork_child); }
#else
static int aring_install_fork_hook(void) { return 0; }
#endif
static inline unsigned long aring_fork_generation(void) { return aring_fork_generation_value; }

#endif /* ARING_H */
