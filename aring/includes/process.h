/*
 * Processes: which fork() generation this is.  An end remembers the
 * generation it was made in and refuses to touch shared state from another
 * one until it is explicitly re-attached.
 */
#ifndef ARING_PROCESS_H
#define ARING_PROCESS_H

#include <pthread.h>
#include <unistd.h>

static volatile unsigned long aring_fork_generation_value = 0;
static void aring_after_fork_child(void) { aring_fork_generation_value++; }
static int aring_install_fork_hook(void) { return pthread_atfork(NULL, NULL, aring_after_fork_child); }
static inline unsigned long aring_fork_generation(void) { return aring_fork_generation_value; }

#endif /* ARING_PROCESS_H */
