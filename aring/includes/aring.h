/* aring's C helpers, one header per topic; _native.pxd declares what Cython uses. */
#ifndef ARING_H
#define ARING_H
#include "atomics.h"
#include "header.h"
#include "mapping.h"
#include "notifier.h"
#include "process.h"
#include "relay_engine.h"
#endif
