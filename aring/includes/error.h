/* How a C helper reports a failure: the step that failed and its errno. */
#ifndef ARING_ERROR_H
#define ARING_ERROR_H

#include <errno.h>

typedef struct { const char *step; int err; } aring_error;

static inline int aring_fail(aring_error *e, const char *step) {
    e->step = step; e->err = errno; return -1;
}

#endif /* ARING_ERROR_H */
