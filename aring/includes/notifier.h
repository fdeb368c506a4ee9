/*
 * Notifiers: what a sleeping side waits on.  A notifier is a pair (read end,
 * write end); an eventfd is one fd for both, a pipe two.  Both are
 * non-blocking, so a signal never blocks the publisher and a drain never
 * blocks the woken side.
 */
#ifndef ARING_NOTIFIER_H
#define ARING_NOTIFIER_H

#include "error.h"
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#endif

#define ARING_NOTIFIER_NONE 0     /* a ring only polled with try_*: no fds, no waits */
#define ARING_NOTIFIER_EVENTFD 1
#define ARING_NOTIFIER_PIPE 2
/* A named FIFO beside a ring file, opened O_RDWR by every process that waits
 * or wakes through it (never blocks, never sees EOF): one fd for both ends,
 * signalled and drained as a pipe.  Opened by the persistence layer. */
#define ARING_NOTIFIER_FIFO 3

static int aring_notifier_open(int kind, int *rfd, int *wfd, aring_error *e) {
#if defined(__linux__)
    if (kind == ARING_NOTIFIER_EVENTFD) {
        int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) return aring_fail(e, "eventfd");
        *rfd = *wfd = fd;
        return 0;
    }
#endif
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
    errno = ENOSYS;
    return aring_fail(e, "notifier");
}

/* Signal: a full pipe or an eventfd at its maximum already means "wake up". */
static int aring_notifier_signal(int kind, int wfd) {
    ssize_t r;
    if (wfd < 0) return 0;  /* no notifier */
    if (kind == ARING_NOTIFIER_EVENTFD) { uint64_t one = 1; r = write(wfd, &one, 8); }
    else { char one = 1; r = write(wfd, &one, 1); }
    if (r < 0 && errno != EAGAIN && errno != EINTR) return -1;
    return 0;
}

/* Drain: an eventfd resets in one read; a pipe is read until empty. */
static void aring_notifier_drain(int kind, int rfd) {
    if (rfd < 0) return;
    if (kind == ARING_NOTIFIER_EVENTFD) { uint64_t v; ssize_t r = read(rfd, &v, 8); (void)r; return; }
    char buf[256];
    while (read(rfd, buf, sizeof buf) == (ssize_t)sizeof buf) {}
}

#endif /* ARING_NOTIFIER_H */
