# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: embedsignature=True, freethreading_compatible=False
"""aring's native core: the double mapping, the shared control header, the
lock-free cursors, the notifiers, and the GIL-free copies and waits.

It also holds what must be fast on every call: argument checks, the anyio
exceptions the ends raise, and which thread or task owns an end; the
streams (``_streams``) add the async waiting on top.  Everything that
touches the mapping checks that it is still mapped, under the GIL, right
before touching it; whatever runs without the GIL holds an in-flight count
that close() waits out.

One extension module built from one file per concern (``_core/*.pxi``), as
uvloop does; the C helpers are in ``includes/*.h`` and declared in
``_native.pxd``.
"""

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident
from libc.errno cimport EALREADY, EINTR, EINVAL, ESHUTDOWN, errno
from libc.stdint cimport uint32_t, uint64_t, uintptr_t
from libc.string cimport memcmp, memcpy, memset
from posix.mman cimport MS_SYNC, msync

import errno as _errno
import logging as _logging
import numbers as _numbers
import operator as _operator
import os as _os
import stat as _stat
import tempfile as _tempfile
import time as _time

from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
)

aring_install_fork_hook()

cdef enum:
    # Copies at least this large run without the GIL: a release costs ~150 ns,
    # and on two cores the other side should keep moving during a long copy.
    NOGIL_COPY = 32768

PAGE_SIZE = aring_page_size()
ALLOCATION_GRANULARITY = aring_allocation_granularity()
MAX_READERS = ARING_MAX_READERS

include "_core/errors.pxi"
include "_core/mapping.pxi"
include "_core/ring.pxi"
include "_core/syscalls.pxi"
include "_core/ends.pxi"
include "_core/writer.pxi"
include "_core/reader.pxi"
include "_core/waiting.pxi"
include "_core/file_loops.pxi"
include "_core/records.pxi"
include "_core/persistence.pxi"
include "_core/relay_engine.pxi"
