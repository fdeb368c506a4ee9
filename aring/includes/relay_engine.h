/* The relay engine: one thread that forwards many TCP connections, each
 * direction through a private double-mapped ring, waiting in epoll with no
 * interpreter in the way.  A message is read and sent on in the same wake-up,
 * as socat does, and the event loop that accepted the connection only hears
 * when it ends.
 *
 * Ownership, so that nothing is freed or closed under the thread:
 *  - Python prepares a connection (maps its rings), hands it over with
 *    aring_engine_start() and from then on neither closes its sockets nor
 *    frees it until the engine has *published* it (ended it and promised
 *    never to touch it again).  aring_engine_abort() asks for that and waits.
 *  - The engine thread alone touches a started connection's cursors and the
 *    epoll set; the counters other threads read are atomics; every list both
 *    sides use is under the engine's mutex.
 *  - Published connections are only reported after the whole batch of epoll
 *    events that may still name them has been handled. */
#ifndef ARING_RELAY_ENGINE_H
#define ARING_RELAY_ENGINE_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "mapping.h"

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#define ARING_HAVE_RELAY_ENGINE 1
#else
#define ARING_HAVE_RELAY_ENGINE 0
#endif

#define ARING_ENGINE_EVENTS 64
#define ARING_ENGINE_CONTROL_TAG 0  /* epoll data of the control eventfd */

typedef struct {
    char *data;            /* the ring: cap bytes, mapped twice unless !mirrored */
    uint64_t write, read;  /* free-running cursors (engine thread only) */
    int source_end;        /* the source's read returned 0 */
    int shut;              /* the target's write half is shut down */
    uint64_t bytes;        /* sent to the target (atomic: others read it) */
    uint64_t waits;        /* sends the target refused for now (atomic) */
    uint64_t regions;      /* sends that moved bytes (atomic) */
} aring_engine_direction;

typedef struct aring_engine_conn {
    int fd[2];                       /* dir[d] moves fd[d] -> ring -> fd[1 - d] */
    size_t cap;
    int mirrored;                    /* both rings double-mapped */
    char *base[2];
    size_t mapped[2];
    aring_engine_direction dir[2];
    uint64_t wakeups;                /* epoll events that named it (atomic) */
    uint64_t steps;                  /* passes over both directions (atomic) */
    int error;                       /* what ended it: 0 a clean end of both directions */
    /* engine thread only */
    int registered, dead, queued;
    /* Edge-triggered readiness of each socket as last seen: set by an event,
     * cleared by EAGAIN or a short read/send (which means the socket was
     * drained/filled then; more data or space brings a new edge), so a
     * request costs one recv and one send, no probing call that fails. */
    int can_recv[2], can_send[2];
    int hung_up[2];  /* the peer's end (RDHUP/HUP) was seen: read on until recv says 0 */
    struct aring_engine_conn *live_prev, *live_next, *ready_next, *ended_next, *work_next;
    /* under the engine's mutex */
    int started, want_abort, pending, published, on_done;
    struct aring_engine_conn *pending_next, *done_prev, *done_next;
} aring_engine_conn;

typedef struct {
    int epfd, control_fd, done_fd;
    uint64_t budget_factor;          /* a connection yields after this many ring-fulls */
    pthread_mutex_t lock;
    pthread_cond_t published;
    /* under lock */
    int accepting;                   /* false once the thread has left aring_engine_run */
    int stopping;
    int exit_error;                  /* why the thread left, when not asked to */
    aring_engine_conn *pending, *done_head, *done_tail;
    /* engine thread only */
    aring_engine_conn *live, *ready, *ended;
} aring_engine;

static inline uint64_t aring_engine_load(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void aring_engine_add(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static void aring_engine_signal(int fd) {
    uint64_t one = 1;
    ssize_t r;
    do { r = write(fd, &one, sizeof one); } while (r < 0 && errno == EINTR);
    /* EAGAIN: the counter is already non-zero, the reader will wake anyway */
}

static void aring_engine_drain(int fd) {
    uint64_t value;
    ssize_t r;
    do { r = read(fd, &value, sizeof value); } while (r < 0 && errno == EINTR);
}

#if ARING_HAVE_RELAY_ENGINE

static int aring_engine_init(aring_engine *e, uint64_t budget_factor, aring_error *err) {
    memset(e, 0, sizeof *e);
    e->epfd = e->control_fd = e->done_fd = -1;
    e->budget_factor = budget_factor ? budget_factor : 1;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0) return aring_fail(err, "epoll_create1");
    e->control_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->control_fd < 0) { aring_fail(err, "eventfd(control)"); goto fail; }
    e->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->done_fd < 0) { aring_fail(err, "eventfd(done)"); goto fail; }
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.u64 = ARING_ENGINE_CONTROL_TAG;
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->control_fd, &ev) < 0) {
        aring_fail(err, "epoll_ctl(control)");
        goto fail;
    }
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->published, NULL);
    e->accepting = 1;
    return 0;
fail:
    if (e->done_fd >= 0) close(e->done_fd);
    if (e->control_fd >= 0) close(e->control_fd);
    close(e->epfd);
    e->epfd = e->control_fd = e->done_fd = -1;
    return -1;
}

/* Only once no thread runs the engine and every connection is freed. */
static void aring_engine_destroy(aring_engine *e) {
    if (e->epfd < 0) return;
    close(e->done_fd);
    close(e->control_fd);
    close(e->epfd);
    e->epfd = e->control_fd = e->done_fd = -1;
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->published);
}

/* Failures that mean "this platform cannot double-map", not "out of something". */
static int aring_engine_unsupported(int error) {
    return error == ENOSYS || error == EINVAL || error == EPERM || error == EACCES ||
           error == EOPNOTSUPP;
}

/* One direction's ring: a memfd mapped twice back to back, or, where this
 * platform cannot do that, one plain mapping whose reads and sends stop at
 * the wrap.  Running out of fds or memory is an error, not a fallback. */
static int aring_engine_map(aring_engine_conn *c, int d, aring_error *err) {
    char *base = NULL;
    if (c->mirrored) {
        int fd = -1;
        if (aring_create_memfd(c->cap, &fd, err) == 0) {
            int mapped = aring_map_double(fd, 0, c->cap, &base, err);
            close(fd);
            if (mapped == 0) {
                c->base[d] = base;
                c->mapped[d] = 2 * c->cap;
                return 0;
            }
        }
        if (d == 1 || !aring_engine_unsupported(err->err)) return -1;
        c->mirrored = 0;
    }
    if (aring_map_copy(c->cap, &base, err) < 0) return -1;
    c->base[d] = base;
    c->mapped[d] = c->cap;
    return 0;
}

static aring_engine_conn *aring_engine_conn_new(size_t cap, int double_map, aring_error *err) {
    aring_engine_conn *c = (aring_engine_conn *)calloc(1, sizeof *c);
    if (c == NULL) { aring_fail(err, "calloc"); return NULL; }
    c->fd[0] = c->fd[1] = -1;
    c->cap = cap;
    c->mirrored = double_map;
    for (int d = 0; d < 2; d++) {
        if (aring_engine_map(c, d, err) < 0) {
            if (d == 1 && c->base[0]) aring_unmap(c->base[0], c->mapped[0]);
            free(c);
            return NULL;
        }
        c->dir[d].data = c->base[d];
    }
    return c;
}

/* Only for a connection never started, or published and off the done list. */
static void aring_engine_conn_free(aring_engine_conn *c) {
    for (int d = 0; d < 2; d++)
        if (c->base[d]) aring_unmap(c->base[d], c->mapped[d]);
    free(c);
}

/* --- the engine thread ---------------------------------------------------- */

static void aring_engine_end(aring_engine *e, aring_engine_conn *c, int error) {
    c->dead = 1;
    c->error = error;
    if (c->registered) {
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, c->fd[0], NULL);
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, c->fd[1], NULL);
        if (c->live_prev) c->live_prev->live_next = c->live_next;
        else e->live = c->live_next;
        if (c->live_next) c->live_next->live_prev = c->live_prev;
        c->registered = 0;
    }
    if (c->queued) {
        aring_engine_conn **at = &e->ready;
        while (*at != c) at = &(*at)->ready_next;
        *at = c->ready_next;
        c->queued = 0;
    }
    c->ended_next = e->ended;
    e->ended = c;
}

/* Move both directions until neither can (or the budget is spent): each
 * turn reads into all free space and sends all readable bytes, one call
 * each, so a request is sent on in the wake-up that received it. */
static void aring_engine_pump(aring_engine *e, aring_engine_conn *c) {
    uint64_t moved = 0, budget = e->budget_factor * c->cap;
    int progress;
    aring_engine_add(&c->steps, 1);
    do {
        progress = 0;
        for (int d = 0; d < 2; d++) {
            aring_engine_direction *x = &c->dir[d];
            int src = c->fd[d], dst = c->fd[1 - d];
            uint64_t fill = x->write - x->read;
            if (!x->source_end && c->can_recv[d] && fill < c->cap) {
                size_t at = (size_t)(x->write % c->cap), space = c->cap - (size_t)fill;
                if (!c->mirrored && at + space > c->cap) space = c->cap - at;
                ssize_t got = recv(src, x->data + at, space, 0);
                if (got > 0) {
                    x->write += (uint64_t)got;
                    progress = 1;
                    if ((size_t)got < space && !c->hung_up[d]) c->can_recv[d] = 0;
                } else if (got == 0) {
                    x->source_end = 1;
                    progress = 1;
                } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    c->can_recv[d] = 0;
                } else if (errno == EINTR) {
                    progress = 1;
                } else {
                    aring_engine_end(e, c, errno);
                    return;
                }
            }
            fill = x->write - x->read;
            if (fill && c->can_send[1 - d]) {
                size_t at = (size_t)(x->read % c->cap), n = (size_t)fill;
                if (!c->mirrored && at + n > c->cap) n = c->cap - at;
                ssize_t put = send(dst, x->data + at, n, MSG_NOSIGNAL);
                if (put > 0) {
                    x->read += (uint64_t)put;
                    aring_engine_add(&x->bytes, (uint64_t)put);
                    aring_engine_add(&x->regions, 1);
                    moved += (uint64_t)put;
                    progress = 1;
                    if ((size_t)put < n) c->can_send[1 - d] = 0;
                } else if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    c->can_send[1 - d] = 0;
                    aring_engine_add(&x->waits, 1);
                } else if (put < 0 && errno == EINTR) {
                    progress = 1;
                } else {
                    aring_engine_end(e, c, put < 0 ? errno : EPIPE);
                    return;
                }
            } else if (!fill && x->source_end && !x->shut) {
                /* the source ended and all it sent is delivered: pass the end on */
                if (shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) {
                    aring_engine_end(e, c, errno);
                    return;
                }
                x->shut = 1;
            }
        }
        if (c->dir[0].shut && c->dir[1].shut) { aring_engine_end(e, c, 0); return; }
        if (moved >= budget) {
            /* fairness: the other connections' events first, then this one again */
            if (!c->queued) { c->queued = 1; c->ready_next = e->ready; e->ready = c; }
            return;
        }
    } while (progress);
}

static void aring_engine_register(aring_engine *e, aring_engine_conn *c) {
    struct epoll_event ev;
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    for (int side = 0; side < 2; side++) {
        ev.data.u64 = (uint64_t)(uintptr_t)c | (uint64_t)side | 2u;
        if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, c->fd[side], &ev) < 0) {
            int error = errno;
            if (side == 1) epoll_ctl(e->epfd, EPOLL_CTL_DEL, c->fd[0], NULL);
            aring_engine_end(e, c, error);
            return;
        }
    }
    c->registered = 1;
    c->can_recv[0] = c->can_recv[1] = c->can_send[0] = c->can_send[1] = 1;
    c->live_prev = NULL;
    c->live_next = e->live;
    if (e->live) e->live->live_prev = c;
    e->live = c;
    aring_engine_pump(e, c);  /* bytes may have arrived before it was watched */
}

/* Hand the ended connections back: from here on the engine never touches them. */
static void aring_engine_publish(aring_engine *e) {
    if (e->ended == NULL) return;
    pthread_mutex_lock(&e->lock);
    while (e->ended) {
        aring_engine_conn *c = e->ended;
        e->ended = c->ended_next;
        c->published = 1;
        c->on_done = 1;
        c->done_next = NULL;
        c->done_prev = e->done_tail;
        if (e->done_tail) e->done_tail->done_next = c;
        else e->done_head = c;
        e->done_tail = c;
    }
    pthread_cond_broadcast(&e->published);
    pthread_mutex_unlock(&e->lock);
    aring_engine_signal(e->done_fd);
}

/* Starts and aborts asked for since the last look; returns whether to stop. */
static int aring_engine_commands(aring_engine *e) {
    aring_engine_drain(e->control_fd);
    pthread_mutex_lock(&e->lock);
    /* Our own chain (work_next): pending_next is the callers' again once
     * unlocked.  A connection published already may be freed at any moment
     * after the unlock, so it is left out. */
    aring_engine_conn *list = NULL;
    for (aring_engine_conn *c = e->pending; c; c = c->pending_next) {
        c->pending = 0;
        if (!c->published) { c->work_next = list; list = c; }
    }
    e->pending = NULL;
    int stopping = e->stopping;
    pthread_mutex_unlock(&e->lock);
    /* Outside the lock: an abort asked for meanwhile queues the connection
     * again, and want_abort is only ever set, so reading it late is safe. */
    while (list) {
        aring_engine_conn *c = list;
        list = c->work_next;
        if (c->dead) continue;
        if (__atomic_load_n(&c->want_abort, __ATOMIC_ACQUIRE)) aring_engine_end(e, c, ECANCELED);
        else if (!c->registered) aring_engine_register(e, c);
    }
    return stopping;
}

/* The thread's body: returns 0 once stopped, or the errno of epoll_wait. */
static int aring_engine_run(aring_engine *e) {
    struct epoll_event events[ARING_ENGINE_EVENTS];
    int error = 0;
    for (;;) {
        int n = epoll_wait(e->epfd, events, ARING_ENGINE_EVENTS, e->ready ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            error = errno;
            break;
        }
        int control = 0;
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == ARING_ENGINE_CONTROL_TAG) { control = 1; continue; }
            aring_engine_conn *c = (aring_engine_conn *)(uintptr_t)(tag & ~(uint64_t)3);
            if (c->dead) continue;  /* ended earlier in this batch */
            aring_engine_add(&c->wakeups, 1);
            int side = (int)(tag & 1);
            uint32_t what = events[i].events;
            if (what & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->can_recv[side] = 1;
            if (what & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->hung_up[side] = 1;
            if (what & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->can_send[side] = 1;
            aring_engine_pump(e, c);  /* bytes that came before a reset go first */
            if (!c->dead && (what & EPOLLERR) && c->dir[side].source_end) {
                /* A reset on a socket nobody reads any more, and perhaps
                 * nobody sends to: only its error tells of it. */
                int soerr = 0;
                socklen_t len = sizeof soerr;
                if (getsockopt(c->fd[side], SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr)
                    aring_engine_end(e, c, soerr);
            }
        }
        aring_engine_conn *again = e->ready;
        e->ready = NULL;
        while (again) {
            aring_engine_conn *c = again;
            again = c->ready_next;
            c->queued = 0;
            aring_engine_pump(e, c);
        }
        int stop = control && aring_engine_commands(e);
        aring_engine_publish(e);
        if (stop) break;
    }
    /* Leaving: end everything still running or waiting to start. */
    pthread_mutex_lock(&e->lock);
    e->accepting = 0;
    if (!e->stopping) e->exit_error = error;
    aring_engine_conn *todo = NULL;
    for (aring_engine_conn *c = e->pending; c; c = c->pending_next) {
        c->pending = 0;
        if (!c->published) { c->work_next = todo; todo = c; }
    }
    e->pending = NULL;
    pthread_mutex_unlock(&e->lock);
    int why = error ? error : ESHUTDOWN;
    for (aring_engine_conn *c = todo; c; c = c->work_next)
        if (!c->dead) aring_engine_end(e, c, why);
    while (e->live) aring_engine_end(e, e->live, why);
    e->ready = NULL;
    aring_engine_publish(e);
    return error;
}

#else /* no epoll: the relay runs its connections on the event loop instead */

static int aring_engine_init(aring_engine *e, uint64_t budget_factor, aring_error *err) {
    (void)budget_factor;
    memset(e, 0, sizeof *e);
    e->epfd = e->control_fd = e->done_fd = -1;
    errno = ENOSYS;
    return aring_fail(err, "relay engine (needs epoll)");
}
static void aring_engine_destroy(aring_engine *e) { (void)e; }
static aring_engine_conn *aring_engine_conn_new(size_t cap, int double_map, aring_error *err) {
    (void)cap;
    (void)double_map;
    errno = ENOSYS;
    aring_fail(err, "relay engine (needs epoll)");
    return NULL;
}
static void aring_engine_conn_free(aring_engine_conn *c) { free(c); }
static int aring_engine_run(aring_engine *e) { (void)e; return ENOSYS; }

#endif /* ARING_HAVE_RELAY_ENGINE */

/* --- the caller's side (any thread but the engine's) ---------------------- */

/* Hand a prepared connection to the engine.  -1 with errno ESHUTDOWN once the
 * engine thread has left. */
static int aring_engine_start(aring_engine *e, aring_engine_conn *c, int fd0, int fd1) {
    /* a blocking socket would stall every connection behind one recv() */
    int flags0 = fcntl(fd0, F_GETFL), flags1 = fcntl(fd1, F_GETFL);
    if (flags0 < 0 || flags1 < 0) return -1;  /* EBADF */
    if (!(flags0 & O_NONBLOCK) || !(flags1 & O_NONBLOCK)) { errno = EINVAL; return -1; }
    pthread_mutex_lock(&e->lock);
    if (!e->accepting) { pthread_mutex_unlock(&e->lock); errno = ESHUTDOWN; return -1; }
    if (c->started) { pthread_mutex_unlock(&e->lock); errno = EALREADY; return -1; }
    c->fd[0] = fd0;
    c->fd[1] = fd1;
    c->started = 1;
    if (!c->pending) { c->pending = 1; c->pending_next = e->pending; e->pending = c; }
    pthread_mutex_unlock(&e->lock);
    aring_engine_signal(e->control_fd);
    return 0;
}

/* End a started connection and wait (without the GIL) until the engine has
 * published it; returns at once if it already was, or was never started. */
static void aring_engine_abort(aring_engine *e, aring_engine_conn *c) {
    pthread_mutex_lock(&e->lock);
    if (c->started && !c->published) {
        __atomic_store_n(&c->want_abort, 1, __ATOMIC_RELEASE);
        if (!c->pending) { c->pending = 1; c->pending_next = e->pending; e->pending = c; }
        aring_engine_signal(e->control_fd);
        while (!c->published) pthread_cond_wait(&e->published, &e->lock);
    }
    pthread_mutex_unlock(&e->lock);
}

/* Whether the connection may be freed: never started, or published. */
static int aring_engine_releasable(aring_engine *e, aring_engine_conn *c) {
    pthread_mutex_lock(&e->lock);
    int ok = !c->started || c->published;
    if (ok && c->pending) {  /* an abort that came after the end queued it again */
        aring_engine_conn **at = &e->pending;
        while (*at != c) at = &(*at)->pending_next;
        *at = c->pending_next;
        c->pending = 0;
    }
    if (ok && c->on_done) {
        if (c->done_prev) c->done_prev->done_next = c->done_next;
        else e->done_head = c->done_next;
        if (c->done_next) c->done_next->done_prev = c->done_prev;
        else e->done_tail = c->done_prev;
        c->on_done = 0;
    }
    pthread_mutex_unlock(&e->lock);
    return ok;
}

static int aring_engine_accepting(aring_engine *e) {
    pthread_mutex_lock(&e->lock);
    int accepting = e->accepting;
    pthread_mutex_unlock(&e->lock);
    return accepting;
}

/* Whether the engine let go of it: published, or never started. */
static int aring_engine_let_go(aring_engine *e, aring_engine_conn *c) {
    pthread_mutex_lock(&e->lock);
    int done = !c->started || c->published;
    pthread_mutex_unlock(&e->lock);
    return done;
}

/* Take up to ``max`` published connections off the done list. */
static size_t aring_engine_take_done(aring_engine *e, aring_engine_conn **out, size_t max) {
    size_t n = 0;
    aring_engine_drain(e->done_fd);
    pthread_mutex_lock(&e->lock);
    while (n < max && e->done_head) {
        aring_engine_conn *c = e->done_head;
        e->done_head = c->done_next;
        if (e->done_head) e->done_head->done_prev = NULL;
        else e->done_tail = NULL;
        c->on_done = 0;
        out[n++] = c;
    }
    if (e->done_head) aring_engine_signal(e->done_fd);  /* more than max: come back */
    pthread_mutex_unlock(&e->lock);
    return n;
}

/* Ask the thread to leave; it ends every connection (ESHUTDOWN) first. */
static void aring_engine_stop(aring_engine *e) {
    pthread_mutex_lock(&e->lock);
    e->stopping = 1;
    pthread_mutex_unlock(&e->lock);
    aring_engine_signal(e->control_fd);
}

#endif /* ARING_RELAY_ENGINE_H */
