/*
 * Processes: which fork() generation this is, and whether the process that
 * holds an end is still alive.
 *
 * An end remembers the generation it was made in and refuses to touch shared
 * state from another one until it is explicitly re-attached.  A process that
 * held an end and died is told from a live one, and from a later process that
 * reuses its pid, by its start time (Linux: field 22 of /proc/PID/stat); a
 * zombie counts as dead, since the parent that should reap it may be the very
 * writer waiting for it.  Limits: a holder in another pid namespace than the
 * checker's /proc is taken for dead, and so is a process whose main thread
 * exited while others run on (its leader shows as a zombie).
 */
#ifndef ARING_PROCESS_H
#define ARING_PROCESS_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile unsigned long aring_fork_generation_value = 0;
static void aring_after_fork_child(void) { aring_fork_generation_value++; }
static int aring_install_fork_hook(void) { return pthread_atfork(NULL, NULL, aring_after_fork_child); }
static inline unsigned long aring_fork_generation(void) { return aring_fork_generation_value; }

#define ARING_PROCESS_ALIVE 1
#define ARING_PROCESS_DEAD 0

/* A /proc/.../stat file: the process's state and start time.  0 when read,
 * -1 when there is no such process (or no /proc). */
static int aring_read_stat(const char *path, char *state, uint64_t *start) {
#if defined(__linux__)
    char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    /* The command name is in parentheses and may hold spaces or ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ') return -1;
    p += 2;
    *state = *p;
    /* After ')' come fields 3 (state) .. 22 (starttime): skip 19 spaces. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL) return -1;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return 0;
#else
    (void)path; (void)state; (void)start;
    return -1;
#endif
}

/* The identity this process stores in the header when it takes an end: read
 * through /proc/self, which is right even where /proc shows another pid
 * namespace than ours. */
static uint64_t aring_self_start(void) {
    char state;
    uint64_t start = 0;
    if (aring_read_stat("/proc/self/stat", &state, &start) < 0) return 0;
    return start;
}

/* Whether the process that stored (pid, start) still runs; `mask` says which
 * bits of its start time `start` holds (a word that packs both keeps 32). */
static int aring_process_alive_masked(uint32_t pid, uint64_t start, uint64_t mask) {
    char state, path[64];
    uint64_t now_start;
    if (pid == 0) return ARING_PROCESS_DEAD;
    snprintf(path, sizeof path, "/proc/%u/stat", (unsigned)pid);
    if (aring_read_stat(path, &state, &now_start) == 0) {
        if (state == 'Z' || state == 'X') return ARING_PROCESS_DEAD;
        if (start != 0 && (now_start & mask) != start) return ARING_PROCESS_DEAD;  /* pid reused */
        return ARING_PROCESS_ALIVE;
    }
    /* No /proc: the pid alone says it (EPERM: alive, another user's). */
    if (kill((pid_t)pid, 0) == 0 || errno == EPERM) return ARING_PROCESS_ALIVE;
    return ARING_PROCESS_DEAD;
}

static int aring_process_alive(uint32_t pid, uint64_t start) {
    return aring_process_alive_masked(pid, start, ~(uint64_t)0);
}

#endif /* ARING_PROCESS_H */
