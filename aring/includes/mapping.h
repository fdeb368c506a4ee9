/*
 * The double mapping: a shared memory object (memfd, POSIX shm or a file)
 * mapped twice back to back over one address-space reservation, or a single
 * plain mapping for the "copy" strategy.
 *
 * Every function returns 0 or -1; on -1 it fills an aring_error with the step
 * that failed and its errno, so the Python error names both.
 */
#ifndef ARING_MAPPING_H
#define ARING_MAPPING_H

#include "error.h"
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
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
#ifdef MAP_POPULATE
#define ARING_MAP_POPULATE MAP_POPULATE
#else
#define ARING_MAP_POPULATE 0
#endif

#define ARING_STRATEGY_MEMFD 1
#define ARING_STRATEGY_SHM 2
#define ARING_STRATEGY_FILE 3
#define ARING_STRATEGY_COPY 4

static long aring_page_size(void) { return sysconf(_SC_PAGESIZE); }
static long aring_allocation_granularity(void) { return sysconf(_SC_PAGESIZE); }
static int aring_close_fd(int fd) { return fd >= 0 ? close(fd) : 0; }

static void aring_set_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

static int aring_size_fd(int fd, size_t size, aring_error *e) {
    if (ftruncate(fd, (off_t)size) < 0) return aring_fail(e, "ftruncate");
    return 0;
}

/* Reserve the blocks of a file or tmpfs object now, so that a full disk or a
 * small /dev/shm fails here with ENOSPC, not as SIGBUS on a page fault inside
 * a copy later.  Where the filesystem cannot reserve, the size is still set. */
static int aring_reserve_fd(int fd, size_t size, const char *step, aring_error *e) {
    int rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc == EOPNOTSUPP || rc == EINVAL || rc == ENOSYS) rc = ftruncate(fd, (off_t)size) < 0 ? errno : 0;
    if (rc != 0) { errno = rc; return aring_fail(e, step); }
    struct stat st;
    if (fstat(fd, &st) < 0) return aring_fail(e, "fstat(size check)");
    if ((size_t)st.st_size != size) { errno = EIO; return aring_fail(e, "fstat(size check)"); }
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
    /* Size before unlink: macOS refuses to size an unlinked object.  The
     * pages are reserved: /dev/shm is often small (64 MiB under Docker). */
    if (aring_reserve_fd(fd, size, "posix_fallocate(/dev/shm)", e) < 0) {
        int s = errno; shm_unlink(name); close(fd); errno = s; return -1;
    }
    if (shm_unlink(name) < 0) { aring_fail(e, "shm_unlink"); close(fd); return -1; }
    aring_set_cloexec(fd);
    *out = fd;
    return 0;
}

/* A new file in directory `dir`, reserved to `size`: unnamed (O_TMPFILE)
 * where the filesystem can, else under a random name returned in `tmpname`
 * (empty when unnamed), which the caller links or unlinks. */
static int aring_create_unnamed(const char *dir, size_t size, int *out, char *tmpname,
                                size_t tmpname_size, aring_error *e) {
    int fd = -1;
    tmpname[0] = '\0';
#if defined(O_TMPFILE)
    /* An unnamed file is named later through /proc/self/fd: without /proc, use
     * a random name instead. */
    if (access("/proc/self/fd", X_OK) == 0) {
        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT)
            return aring_fail(e, "open(O_TMPFILE)");
    }
#endif
    if (fd < 0) {
        if (snprintf(tmpname, tmpname_size, "%s/.aring-XXXXXX", dir) >= (int)tmpname_size) {
            tmpname[0] = '\0';
            errno = ENAMETOOLONG; return aring_fail(e, "mkstemp");
        }
        fd = mkstemp(tmpname);
        if (fd < 0) { tmpname[0] = '\0'; return aring_fail(e, "mkstemp"); }
        aring_set_cloexec(fd);
    }
    if (aring_reserve_fd(fd, size, "posix_fallocate", e) < 0) {
        int s = errno;
        close(fd);
        if (tmpname[0]) unlink(tmpname);
        tmpname[0] = '\0';
        errno = s;
        return -1;
    }
    *out = fd;
    return 0;
}

/* A scratch file in `dir` that no other process can open by name. */
static int aring_create_temp_file(const char *dir, size_t size, int *out, aring_error *e) {
    char tmpname[4096];
    if (aring_create_unnamed(dir, size, out, tmpname, sizeof tmpname, e) < 0) return -1;
    if (tmpname[0]) unlink(tmpname);
    return 0;
}

/* A ring's new file is created so that nobody ever sees it half made: made
 * unnamed in the target's directory and reserved (aring_create_unnamed), and
 * given its name by aring_publish_file only once the caller initialised it.
 * The name is a hard link, which never replaces what is at `path` (a file, or
 * a symbolic link planted there): EEXIST then, and of several processes
 * creating the same path exactly one wins. */
static int aring_publish_file(int fd, const char *tmpname, const char *path, aring_error *e) {
    int rc;
    if (tmpname[0]) {
        rc = link(tmpname, path);
        int s = errno;
        unlink(tmpname);
        errno = s;
    } else {
#if defined(__linux__)
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        rc = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
#else
        (void)fd; errno = ENOSYS; rc = -1;
#endif
    }
    if (rc == 0) return 0;
    if (errno == EEXIST) return aring_fail(e, "link: a file already exists at the path");
    return aring_fail(e, "link");
}

/* Reserve hdr+2n of address space with one PROT_NONE mapping, then put two
 * MAP_FIXED views of the file over it: [hdr][data] from offset 0 and [data]
 * again from offset hdr.  MAP_FIXED only ever replaces our own reservation,
 * so no other thread's mapping can be hit. */
static int aring_map_double_populated(int fd, size_t hdr, size_t n, int populate, char **base,
                                      aring_error *e) {
    size_t total = hdr + 2 * n;
    char *res = (char *)mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED) return aring_fail(e, "mmap(reserve)");
    /* populate: the first view's pages are faulted in now (allocated, for
     * memfd and shm), not on the first pass of the writer; the second view
     * maps the same pages and faults them in cheaply as it goes. */
    void *a = mmap(res, hdr + n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | (populate ? ARING_MAP_POPULATE : 0),
                   fd, 0);
    if (a == MAP_FAILED) { aring_fail(e, "mmap(first view)"); munmap(res, total); return -1; }
    void *b = mmap(res + hdr + n, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)hdr);
    if (b == MAP_FAILED) { aring_fail(e, "mmap(second view)"); munmap(res, total); return -1; }
    *base = res;
    return 0;
}

static int aring_map_double(int fd, size_t hdr, size_t n, char **base, aring_error *e) {
    return aring_map_double_populated(fd, hdr, n, 0, base, e);
}

/* The fallback: one plain shared mapping of hdr+2n; the ring mirrors writes. */
static int aring_map_copy_populated(size_t total, int populate, char **base, aring_error *e) {
    char *p = (char *)mmap(NULL, total, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS | (populate ? ARING_MAP_POPULATE : 0), -1, 0);
    if (p == MAP_FAILED) return aring_fail(e, "mmap(copy)");
    *base = p;
    return 0;
}

static int aring_map_copy(size_t total, char **base, aring_error *e) {
    return aring_map_copy_populated(total, 0, base, e);
}

/* Where MAP_POPULATE is missing (macOS, the BSDs): touch each page, reading
 * (a ring file's bytes stay as they are), so the faults are taken now. */
static void aring_touch_pages(const char *p, size_t n, size_t page) {
#if !defined(MAP_POPULATE)
    volatile const char *v = p;
    for (size_t i = 0; i < n; i += page) (void)v[i];
#else
    (void)p; (void)n; (void)page;
#endif
}

static int aring_unmap(char *base, size_t total) { return munmap(base, total); }

#endif /* ARING_MAPPING_H */
