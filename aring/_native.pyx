# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: embedsignature=True, freethreading_compatible=False
"""aring's native core: the double mapping, the shared control header, the
lock-free cursors, the notifiers, and the GIL-free copies and waits.

Everything that touches the mapping checks that it is still mapped, under the
GIL, right before touching it; whatever runs without the GIL holds an in-flight
count that close() waits out.  Policy (streams, async) lives in Python.
"""

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident
from libc.errno cimport EINTR, errno
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

import errno as _errno
import operator as _operator
import os as _os
import tempfile as _tempfile
import time as _time

from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
)

cdef extern from "_aring.h" nogil:
    int ARING_LINE
    uint64_t ARING_MAGIC
    uint32_t ARING_LAYOUT_VERSION
    int ARING_MAX_READERS
    uint32_t ARING_FLAG_WRITER_CLOSED
    uint32_t ARING_FLAG_READER_ATTACHED
    uint32_t ARING_SLOT_FREE
    uint32_t ARING_SLOT_CLAIMED
    uint32_t ARING_SLOT_ACTIVE
    int ARING_STRATEGY_MEMFD
    int ARING_STRATEGY_SHM
    int ARING_STRATEGY_FILE
    int ARING_STRATEGY_COPY
    int ARING_NOTIFIER_NONE
    int ARING_NOTIFIER_EVENTFD
    int ARING_NOTIFIER_PIPE

    uint64_t aring_load_acquire_u64(uint64_t *p)
    uint64_t aring_load_relaxed_u64(uint64_t *p)
    void aring_store_release_u64(uint64_t *p, uint64_t v)
    uint32_t aring_load_acquire_u32(uint32_t *p)
    void aring_store_seqcst_u32(uint32_t *p, uint32_t v)
    uint32_t aring_exchange_u32(uint32_t *p, uint32_t v)
    int aring_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired)
    uint32_t aring_fetch_or_u32(uint32_t *p, uint32_t v)
    uint64_t aring_fetch_or_u64(uint64_t *p, uint64_t v)
    uint64_t aring_exchange_u64(uint64_t *p, uint64_t v)
    uint64_t aring_fetch_and_u64(uint64_t *p, uint64_t v)
    uint64_t aring_fetch_add_u64(uint64_t *p, uint64_t v)
    void aring_fence_seqcst()
    int aring_popcount64(uint64_t v)
    int aring_ctz64(uint64_t v)

    size_t aring_header_bytes(size_t max_readers)
    long aring_page_size()
    long aring_allocation_granularity()
    int aring_create_memfd(size_t size, int *fd, aring_error *e)
    int aring_create_shm(size_t size, int *fd, aring_error *e)
    int aring_open_file(const char *path, int tmp, size_t size, int *fd, aring_error *e)
    int aring_map_double(int fd, size_t hdr, size_t n, char **base, aring_error *e)
    int aring_map_copy(size_t total, char **base, aring_error *e)
    int aring_unmap(char *base, size_t total)
    int aring_close_fd(int fd)
    int aring_notifier_open(int kind, int *rfd, int *wfd, aring_error *e)
    int aring_notifier_signal(int kind, int wfd)
    void aring_notifier_drain(int kind, int rfd)
    int aring_install_fork_hook()
    unsigned long aring_fork_generation()
    void aring_cpu_relax()
    uint64_t aring_now_ns()

cdef extern from "<poll.h>" nogil:
    cdef struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN

cdef extern from "<unistd.h>" nogil:
    int usleep(unsigned int usec)
    int getpid()

aring_install_fork_hook()

cdef enum:
    # Copies at least this large run without the GIL: a release costs ~150 ns,
    # and on two cores the other side should keep moving during a long copy.
    NOGIL_COPY = 32768

PAGE_SIZE = aring_page_size()
ALLOCATION_GRANULARITY = aring_allocation_granularity()
MAX_READERS = ARING_MAX_READERS

cdef dict _STRATEGY_CODES = {
    "memfd": ARING_STRATEGY_MEMFD,
    "shm": ARING_STRATEGY_SHM,
    "file": ARING_STRATEGY_FILE,
    "copy": ARING_STRATEGY_COPY,
}
cdef dict _STRATEGY_NAMES = {v: k for k, v in _STRATEGY_CODES.items()}
cdef dict _NOTIFIER_CODES = {
    "eventfd": ARING_NOTIFIER_EVENTFD,
    "pipe": ARING_NOTIFIER_PIPE,
    "none": ARING_NOTIFIER_NONE,
}
cdef dict _NOTIFIER_NAMES = {v: k for k, v in _NOTIFIER_CODES.items()}

# Failures that mean "this platform cannot do that": auto moves on to the next
# strategy.  Anything else (ENOMEM, EMFILE, ENOSPC...) is the caller's problem
# to see, not to be papered over by a slower fallback.
cdef frozenset _UNSUPPORTED = frozenset(
    {_errno.ENOSYS, _errno.EINVAL, _errno.EPERM, _errno.EACCES, _errno.EOPNOTSUPP}
)

_HINTS = {
    _errno.ENOMEM: "the process may have reached vm.max_map_count or its memory limit",
    _errno.EMFILE: "the process has too many open files (raise `ulimit -n` or close rings)",
    _errno.ENFILE: "the system has too many open files",
    _errno.ENOSPC: "no space left on the device that holds the ring's file",
    _errno.EEXIST: "pass a new or empty file; attaching to an existing ring is not supported yet",
}


class MappingError(OSError):
    """A step of creating a mapping or notifier failed.

    ``errno`` is the OS error code; ``step`` names the call that failed
    (``"memfd_create"``, ``"mmap(second view)"``, ``"posix_fallocate"``...).
    """

    step: str

    def __init__(self, err: int, step: str) -> None:
        name = _errno.errorcode.get(err, str(err))
        message = f"{step} failed: {_os.strerror(err)} ({name})"
        hint = _HINTS.get(err)
        if hint:
            message += f"; {hint}"
        super().__init__(err, message)
        self.step = step


class ForkedError(RuntimeError):
    """An end inherited through fork() was used before ``reattach()``."""


cdef inline object _mapping_error(aring_error *e):
    return MappingError(e.err, e.step.decode())


cdef Py_ssize_t _round_up(Py_ssize_t n, Py_ssize_t unit) noexcept nogil:
    return ((n + unit - 1) // unit) * unit


cdef Py_ssize_t _gcd(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    while b:
        a, b = b, a % b
    return a


cdef Py_ssize_t _as_size(object value, str what) except -1:
    """An int >= 0, or TypeError/ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        if hasattr(type(value), "__index__") and not isinstance(value, bool):
            value = _operator.index(value)
        else:
            raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    if value > (1 << 62):
        raise ValueError(f"{what} is too large: {value}")
    return value


cdef int _get_buffer(object obj, Py_buffer *view, bint writable, str what) except -1:
    """A contiguous buffer of ``obj``, or TypeError naming ``what`` and the type."""
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE | (PyBUF_WRITABLE if writable else 0))
    except (TypeError, BufferError):
        kind = "writable bytes-like object" if writable else "bytes-like object"
        if isinstance(obj, memoryview) and not obj.contiguous:
            kind = "contiguous " + kind
        raise TypeError(f"{what} must be a {kind}, not {type(obj).__name__}") from None
    return 0


def _probe_platform():
    """Which strategies and notifiers work here, and why not (for capabilities())."""
    reasons = []
    strategy = "copy"
    for name in ("memfd", "shm"):
        try:
            buf = DoubleMappedBuffer(1, strategy=name)
        except MappingError as exc:
            reasons.append(f"{name}: {exc}")
            continue
        view = memoryview(buf)
        view[0] = 0x5A
        ok = view[buf.size] == 0x5A
        view.release()
        buf.close()
        if ok:
            strategy = name
            break
        reasons.append(f"{name}: the second view does not alias the first")
    notifier = "pipe"
    cdef int rfd = -1, wfd = -1
    cdef aring_error e
    if aring_notifier_open(ARING_NOTIFIER_EVENTFD, &rfd, &wfd, &e) == 0:
        aring_close_fd(rfd)
        notifier = "eventfd"
    else:
        reasons.append(f"eventfd: {_mapping_error(&e)}")
    return strategy, notifier, "; ".join(reasons)


cdef class DoubleMappedBuffer:
    """``size`` bytes of memory mapped twice, back to back.

    The buffer protocol exposes the 2*size window: byte ``i`` and byte
    ``i + size`` are the same memory, so any region of up to ``size`` bytes
    starting in the first half is one contiguous view.  With the ``"copy"``
    strategy the two halves are separate memory that ``mirror()`` keeps equal.

    ``header`` bytes (page-rounded) are mapped once before the window; the ring
    keeps its control header there so other processes see it.
    """

    def __cinit__(self, size, *, strategy="auto", path=None, header=0):
        self._fd = -1
        self._base = NULL
        self._closed = True
        self._fallback_reason = ""
        cdef Py_ssize_t page = aring_page_size()
        cdef Py_ssize_t n = _as_size(size, "size")
        cdef Py_ssize_t hdr = _as_size(header, "header")
        if n < 1:
            raise ValueError(f"size must be >= 1, got {n}")
        if not isinstance(strategy, str):
            raise TypeError(f"strategy must be a str, not {type(strategy).__name__}")
        if strategy != "auto" and strategy not in _STRATEGY_CODES:
            raise ValueError(
                f"unknown strategy {strategy!r}; expected 'auto', 'memfd', 'shm', 'file' or 'copy'"
            )
        if path is not None:
            if strategy == "auto":
                strategy = "file"
            elif strategy != "file":
                raise ValueError(f"path= needs strategy='file' (or 'auto'), not {strategy!r}")
            path = _os.fsencode(path)
        self._size = _round_up(n, page)
        self._header = _round_up(hdr, page)
        self._total = self._header + 2 * self._size
        if strategy == "auto":
            reasons = []
            for name in ("memfd", "shm", "copy"):
                try:
                    self._map(_STRATEGY_CODES[name], None)
                except MappingError as exc:
                    if exc.errno not in _UNSUPPORTED:
                        raise
                    reasons.append(f"{name}: {exc}")
                    continue
                break
            self._fallback_reason = "; ".join(reasons)
        else:
            self._map(_STRATEGY_CODES[strategy], path)
        self._closed = False

    cdef _map(self, int code, bytes path):
        cdef aring_error e
        cdef int fd = -1
        cdef int rc
        cdef char *base = NULL
        cdef size_t file_size = self._header + self._size
        cdef bytes where
        if code == ARING_STRATEGY_COPY:
            if aring_map_copy(self._total, &base, &e) < 0:
                raise _mapping_error(&e)
        else:
            if code == ARING_STRATEGY_MEMFD:
                rc = aring_create_memfd(file_size, &fd, &e)
            elif code == ARING_STRATEGY_SHM:
                rc = aring_create_shm(file_size, &fd, &e)
            else:
                where = path if path is not None else _os.fsencode(_tempfile.gettempdir())
                rc = aring_open_file(where, path is None, file_size, &fd, &e)
            if rc < 0:
                raise _mapping_error(&e)
            if aring_map_double(fd, self._header, self._size, &base, &e) < 0:
                aring_close_fd(fd)
                raise _mapping_error(&e)
        self._fd = fd
        self._base = base
        self._data = base + self._header
        self._strategy = code

    def __dealloc__(self):
        # Reached only when no view holds us (a view keeps its exporter alive).
        if self._base != NULL:
            aring_unmap(self._base, self._total)
            self._base = NULL
        if self._fd >= 0:
            aring_close_fd(self._fd)
            self._fd = -1

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self._closed:
            raise ValueError("the DoubleMappedBuffer is closed")
        PyBuffer_FillInfo(buffer, self, self._data, 2 * self._size, 0, flags)
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self._exports -= 1

    def __len__(self):
        return 2 * self._size

    @property
    def size(self):
        """N: the ring's size; the window is 2*N bytes."""
        return self._size

    @property
    def strategy(self):
        """The strategy in use: ``"memfd"``, ``"shm"``, ``"file"`` or ``"copy"``."""
        return _STRATEGY_NAMES[self._strategy]

    @property
    def double_mapped(self):
        """True when the second half aliases the first (every strategy but copy)."""
        return self._strategy != ARING_STRATEGY_COPY

    @property
    def fallback_reason(self):
        """With strategy="auto": why faster strategies were passed over ("" if none)."""
        return self._fallback_reason

    @property
    def closed(self):
        return self._closed

    @property
    def exports(self):
        """How many buffer exports (memoryviews and the like) are alive."""
        return self._exports

    def fileno(self):
        """The descriptor backing the mapping, or None (the copy strategy)."""
        if self._closed:
            raise ValueError("the DoubleMappedBuffer is closed")
        return self._fd if self._fd >= 0 else None

    cdef int _mirror(self, Py_ssize_t offset, Py_ssize_t n) except -1 nogil:
        # Bytes in the first half are copied to the second and vice versa;
        # with a real double mapping both are the same memory already.
        cdef Py_ssize_t size = self._size
        cdef Py_ssize_t low_end
        if self._strategy != ARING_STRATEGY_COPY or n == 0:
            return 0
        if offset < size:
            low_end = offset + n if offset + n < size else size
            memcpy(self._data + offset + size, self._data + offset, low_end - offset)
            if offset + n > size:
                memcpy(self._data, self._data + size, offset + n - size)
        else:
            memcpy(self._data + offset - size, self._data + offset, n)
        return 0

    def mirror(self, offset, n):
        """Make ``[offset, offset+n)`` of the window and its twin hold the same bytes.

        Call after writing through a view with the copy strategy; a no-op for
        the double-mapped strategies.  ``n`` may be at most ``size``.
        """
        cdef Py_ssize_t off = _as_size(offset, "offset")
        cdef Py_ssize_t count = _as_size(n, "n")
        if self._closed:
            raise ValueError("the DoubleMappedBuffer is closed")
        if count > self._size:
            raise ValueError(f"n must be <= size ({self._size}), got {count}")
        if off + count > 2 * self._size:
            raise ValueError(f"offset + n ({off + count}) is past the window ({2 * self._size})")
        self._mirror(off, count)

    def close(self):
        """Unmap.  BufferError while views are alive (as ``mmap`` does)."""
        if self._closed:
            return
        if self._exports:
            raise BufferError(
                f"cannot close: {self._exports} exported view(s) of the buffer are alive; "
                "release them first"
            )
        self._closed = True
        aring_unmap(self._base, self._total)
        self._base = NULL
        self._data = NULL
        if self._fd >= 0:
            aring_close_fd(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else f"size={self._size}"
        return f"<DoubleMappedBuffer {state} strategy={self.strategy}>"


cdef class RingCore:
    """The shared state of one ring: mapping, header, notifiers.

    ``aring.Ring`` subclasses it and adds the ends; see its documentation.
    """

    def __cinit__(self, capacity, *, readers=1, item_size=1, strategy="auto", path=None,
                  notifier="auto"):
        cdef Py_ssize_t i
        cdef aring_error e
        cdef aring_geometry *g
        self._ends = []
        self._writer_rfd = self._writer_wfd = -1
        for i in range(ARING_MAX_READERS):
            self._reader_rfd[i] = self._reader_wfd[i] = -1
        self._closed = True
        cdef Py_ssize_t cap = _as_size(capacity, "capacity")
        cdef Py_ssize_t nreaders = _as_size(readers, "readers")
        cdef Py_ssize_t item = _as_size(item_size, "item_size")
        if cap < 1:
            raise ValueError(f"capacity must be >= 1, got {cap}")
        if not 1 <= nreaders <= ARING_MAX_READERS:
            raise ValueError(f"readers must be between 1 and {ARING_MAX_READERS}, got {nreaders}")
        if item < 1:
            raise ValueError(f"item_size must be >= 1, got {item}")
        if item > (1 << 30):
            raise ValueError(f"item_size is too large: {item}")
        if not isinstance(notifier, str):
            raise TypeError(f"notifier must be a str, not {type(notifier).__name__}")
        if notifier == "auto":
            notifier = "eventfd" if _os.uname().sysname == "Linux" else "pipe"
        if notifier not in _NOTIFIER_CODES:
            raise ValueError(
                f"unknown notifier {notifier!r}; expected 'auto', 'eventfd', 'pipe' or 'none'"
            )
        cdef Py_ssize_t page = aring_page_size()
        cdef Py_ssize_t unit = page // _gcd(page, item) * item
        cap = _round_up(cap, unit)
        self._buffer = DoubleMappedBuffer(
            cap, strategy=strategy, path=path, header=aring_header_bytes(nreaders)
        )
        self._hdr = <aring_header *> self._buffer._base
        self._data = self._buffer._data
        self._cap = cap
        self._item = item
        self._max_readers = nreaders
        self._mirrored = self._buffer._strategy == ARING_STRATEGY_COPY
        self._notifier = _NOTIFIER_CODES[notifier]
        self._generation = aring_fork_generation()
        try:
            if self._notifier == ARING_NOTIFIER_NONE:
                pass  # polled only: no fds, and arm()/wait() refuse
            elif aring_notifier_open(self._notifier, &self._writer_rfd, &self._writer_wfd, &e) < 0:
                raise _mapping_error(&e)
            for i in range(nreaders if self._notifier != ARING_NOTIFIER_NONE else 0):
                if aring_notifier_open(self._notifier, &self._reader_rfd[i], &self._reader_wfd[i], &e) < 0:
                    raise _mapping_error(&e)
        except BaseException:
            self._close_fds()
            self._buffer.close()
            raise
        g = &self._hdr.geometry
        g.magic = ARING_MAGIC
        g.version = ARING_LAYOUT_VERSION
        g.header_size = self._buffer._header
        g.capacity = cap
        g.page_size = page
        g.item_size = item
        g.max_readers = nreaders
        g.strategy = self._buffer._strategy
        g.writer_pid = getpid()
        self._closed = False

    def __dealloc__(self):
        self._close_fds()

    cdef _close_fds(self):
        cdef Py_ssize_t i
        if self._writer_wfd != self._writer_rfd:
            aring_close_fd(self._writer_wfd)
        aring_close_fd(self._writer_rfd)
        self._writer_rfd = self._writer_wfd = -1
        for i in range(ARING_MAX_READERS):
            if self._reader_wfd[i] != self._reader_rfd[i]:
                aring_close_fd(self._reader_wfd[i])
            aring_close_fd(self._reader_rfd[i])
            self._reader_rfd[i] = self._reader_wfd[i] = -1

    cdef int _check_open(self) except -1:
        if self._closed:
            raise ClosedResourceError("the ring is closed")
        return 0

    cdef object _windows(self):
        # One export of the mapping shared by every view handed out; slices of
        # it keep the export (and so the mapping) alive until they are gone.
        if self._window is None:
            self._window = memoryview(self._buffer)
            self._rwindow = self._window.toreadonly()
        return self._window

    cdef Py_ssize_t _space(self) except -2:
        """Free bytes for the writer, or BrokenResourceError."""
        cdef aring_header *h = self._hdr
        cdef uint64_t w = aring_load_relaxed_u64(&h.write_position.value)
        cdef uint64_t lag = 0, r
        cdef uint32_t i
        cdef bint any_active = False
        if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
            # No reader yet: hold the writer back as if one sat at position 0,
            # so the first reader sees everything.
            return <Py_ssize_t> (self._cap - w)
        for i in range(self._max_readers):
            if aring_load_acquire_u32(&h.slots[i].state) == ARING_SLOT_ACTIVE:
                r = aring_load_acquire_u64(&h.slots[i].position)
                any_active = True
                if w - r > lag:
                    lag = w - r
        if not any_active:
            raise BrokenResourceError("every reader of the ring has closed")
        return <Py_ssize_t> (self._cap - lag)

    cdef void _wake_readers(self, bint everyone) noexcept:
        """After publishing: wake each sleeping reader whose wanted position is reached."""
        cdef aring_header *h = self._hdr
        cdef uint64_t mask, bit, w
        cdef int i
        # Pairs with the seq_cst fetch_or of a reader setting its bit: either
        # it sees our new cursor on its re-check, or we see its bit here.
        aring_fence_seqcst()
        mask = aring_load_relaxed_u64(&h.readers_waiting.value)
        if mask == 0:
            return
        w = aring_load_relaxed_u64(&h.write_position.value)
        while mask:
            i = aring_ctz64(mask)
            bit = (<uint64_t> 1) << i
            mask &= mask - 1
            if everyone or w >= aring_load_relaxed_u64(&h.slots[i].wake_at):
                if aring_fetch_and_u64(&h.readers_waiting.value, ~bit) & bit:
                    aring_fetch_add_u64(&h.notifier_writes.value, 1)
                    aring_notifier_signal(self._notifier, self._reader_wfd[i])

    cdef void _wake_writer(self, uint64_t position) noexcept:
        """After a reader moved to ``position`` (or left): wake the writer if it waits for that."""
        cdef aring_header *h = self._hdr
        aring_fence_seqcst()
        if aring_load_acquire_u32(&h.writer_waiting.flag) == 0:
            return
        if position < aring_load_relaxed_u64(&h.writer_waiting.wake_at):
            return
        if aring_exchange_u32(&h.writer_waiting.flag, 0):
            aring_fetch_add_u64(&h.notifier_writes.value, 1)
            aring_notifier_signal(self._notifier, self._writer_wfd)

    cdef int _poll(self, int fd, double timeout) except -1:
        """Wait for ``fd`` without the GIL; 1 = readable, 0 = timed out or interrupted."""
        cdef pollfd p
        cdef int rc, err, ms
        p.fd = fd
        p.events = POLLIN
        p.revents = 0
        if timeout < 0:
            ms = -1
        else:
            ms = <int> (timeout * 1000.0 + 0.999)
        self._inflight += 1
        with nogil:
            rc = poll(&p, 1, ms)
            err = errno
        self._inflight -= 1
        if rc < 0:
            if err == EINTR:
                PyErr_CheckSignals()
                return 0
            raise OSError(err, _os.strerror(err))
        return 1 if rc > 0 else 0

    cdef int _copy_in(self, uint64_t position, const char *src, Py_ssize_t n) except -1:
        cdef Py_ssize_t off = <Py_ssize_t> (position % self._cap)
        cdef char *dst = self._data + off
        if n >= NOGIL_COPY:
            self._inflight += 1
            with nogil:
                memcpy(dst, src, n)
                self._buffer._mirror(off, n)
            self._inflight -= 1
        else:
            memcpy(dst, src, n)
            self._buffer._mirror(off, n)
        return 0

    cdef int _copy_out(self, uint64_t position, char *dst, Py_ssize_t n) except -1:
        cdef const char *src = self._data + <Py_ssize_t> (position % self._cap)
        if n >= NOGIL_COPY:
            self._inflight += 1
            with nogil:
                memcpy(dst, src, n)
            self._inflight -= 1
        else:
            memcpy(dst, src, n)
        return 0

    # ------------------------------------------------------------ public
    @property
    def capacity(self):
        """Bytes the ring holds: the request rounded up to page and item size."""
        return self._cap

    @property
    def item_size(self):
        return self._item

    @property
    def max_readers(self):
        return self._max_readers

    @property
    def strategy(self):
        return self._buffer.strategy

    @property
    def notifier(self):
        return _NOTIFIER_NAMES[self._notifier]

    @property
    def closed(self):
        return self._closed

    @property
    def notifier_writes(self):
        """How many times a notifier fd was written (wakeups actually sent)."""
        self._check_open()
        return aring_load_relaxed_u64(&self._hdr.notifier_writes.value)

    @property
    def buffer(self):
        """The ring's DoubleMappedBuffer."""
        return self._buffer

    def close(self):
        """Close the ring and its ends: EOF for readers, wake every waiter, unmap.

        Views from reserve()/peek() are released first; BufferError (and
        nothing closed) if views of the ring are still alive after that (a
        slice of one, or an export such as a NumPy array).  Threads blocked on
        the ring wake with ClosedResourceError; a copy running without the GIL
        in another thread is waited out before the memory is unmapped.
        """
        cdef _End end
        if self._closed:
            return
        for end in self._ends:
            end._release_views()
        if self._window is not None:
            self._window.release()
            self._rwindow.release()
            self._window = self._rwindow = None
        if self._buffer._exports:
            raise BufferError(
                f"cannot close the ring: {self._buffer._exports} view(s) of its memory are "
                "alive (slices of reserve()/peek() views or exports from them); release them first"
            )
        for end in list(self._ends):
            end.close()
        self._closed = True
        self._signal_all()
        if self._generation == aring_fork_generation():
            # In a child of fork() the threads that counted are gone.
            while self._inflight > 0:
                with nogil:
                    usleep(50)
        self._close_fds()
        self._buffer.close()

    cdef void _signal_all(self) noexcept:
        """Wake every waiter of this process; they look again and see why."""
        cdef Py_ssize_t i
        for i in range(self._max_readers):
            aring_notifier_signal(self._notifier, self._reader_wfd[i])
        aring_notifier_signal(self._notifier, self._writer_wfd)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


cdef class _End:
    """What both ends share: state checks, view bookkeeping, argument checks."""

    def __cinit__(self, RingCore core not None, *args, **kwargs):
        core._check_open()
        self._core = core
        self._generation = aring_fork_generation()
        self._views = []
        self._spin_ns = _SPIN_START_NS

    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil:
        return True

    cdef int _enter(self) except -1:
        if self._closed:
            raise ClosedResourceError(f"this {self._kind()} is closed")
        if self._core._closed:
            raise ClosedResourceError("the ring is closed")
        if self._generation != aring_fork_generation():
            raise ForkedError(
                f"this {self._kind()} was inherited through fork(); call reattach() in this "
                "process to take it over (and stop using it in the parent)"
            )
        if self._owner and self._owner != <unsigned long> PyThread_get_thread_ident():
            raise BusyResourceError(f"another thread is using this {self._kind()}")
        return 0

    cdef unsigned long _claim(self) except? 1:
        """Make this thread the end's user for a blocking call; returns the previous one."""
        cdef unsigned long previous = self._owner
        self._enter()
        self._owner = <unsigned long> PyThread_get_thread_ident()
        return previous

    def _kind(self):
        return "end"

    cdef void _release_views(self) noexcept:
        # The borrow ends: a view used after commit()/consume() raises
        # ValueError instead of showing bytes that may be overwritten.
        cdef object view
        for view in self._views:
            try:
                view.release()
            except BaseException:
                pass   # someone exported from it; the mapping stays alive anyway
        self._views.clear()

    cdef Py_ssize_t _size_arg(self, object n, str what, bint allow_zero) except -1:
        cdef Py_ssize_t v
        if type(n) is int and -(1 << 62) < n < (1 << 62):
            v = n
            if v < 0:
                raise ValueError(f"{what} must be >= {0 if allow_zero else 1}, got {v}")
        else:
            v = _as_size(n, what)
        if v == 0 and not allow_zero:
            raise ValueError(f"{what} must be >= 1, got 0")
        if v > <Py_ssize_t> self._core._cap:
            raise ValueError(f"{what} must be <= the capacity ({self._core._cap}), got {v}")
        if v % self._core._item:
            raise ValueError(f"{what} must be a multiple of the item size ({self._core._item}), got {v}")
        return v

    @property
    def closed(self):
        return self._closed

    @property
    def capacity(self):
        return self._core._cap

    @property
    def item_size(self):
        return self._core._item

    @property
    def notifier_fd(self):
        """The fd that becomes readable when this end should look again."""
        self._check_notifier()
        return self._notifier_fd()

    def _notifier_fd(self):
        raise NotImplementedError

    cdef int _check_notifier(self) except -1:
        if self._core._notifier == ARING_NOTIFIER_NONE:
            raise RuntimeError(
                f"this ring was made with notifier='none': it cannot wait; use the "
                f"nonblocking calls (try_*), or make the ring with a notifier"
            )
        return 0

    def _check_size(self, n, bint allow_zero=False):
        """``n`` checked as the nonblocking calls check it (async methods check up front)."""
        return self._size_arg(n, "n", allow_zero)

    def _enter_task(self):
        """An async call begins: one task at a time per end; returns a token for _leave_task."""
        if self._task_busy:
            raise BusyResourceError(f"another task is already using this {self._kind()}")
        cdef unsigned long token = self._claim()   # closed / forked / another thread: raises
        self._task_busy = True
        return token

    def _leave_task(self, unsigned long token):
        self._task_busy = False
        self._owner = token

    def _acquire(self):
        """Claim the end for this thread across several calls; returns a token for _release."""
        return self._claim()

    def _release(self, unsigned long token):
        self._owner = token

    def reattach(self):
        """Take over an end inherited through fork() in this process.

        Until then every call on it raises ForkedError.  The parent must stop
        using it: one process at a time per end.
        """
        if self._closed:
            raise ClosedResourceError(f"this {self._kind()} is closed")
        self._core._check_open()
        self._generation = aring_fork_generation()
        self._owner = 0
        if self._core._generation != self._generation:
            # Threads do not survive fork(): their in-flight counts are void.
            self._core._generation = self._generation
            self._core._inflight = 0


cdef class WriterEnd(_End):
    """The writer end's native part: ``aring.Writer`` adds the rest."""

    def __cinit__(self, RingCore core not None, *args, **kwargs):
        if core._has_writer:
            raise RuntimeError("the ring already has its writer end")
        core._has_writer = True
        core._ends.append(self)

    def _kind(self):
        return "writer"

    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil:
        # Enough space, or something to report (closed, no readers): look again.
        cdef aring_header *h = self._core._hdr
        cdef uint64_t cap = self._core._cap
        cdef uint64_t w = aring_load_relaxed_u64(&h.write_position.value)
        cdef uint64_t lag = 0, r
        cdef uint32_t i
        cdef bint any_active = False
        if self._closed or self._core._closed:
            return True
        if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
            return cap - w >= <uint64_t> need
        for i in range(self._core._max_readers):
            if aring_load_acquire_u32(&h.slots[i].state) == ARING_SLOT_ACTIVE:
                any_active = True
                r = aring_load_acquire_u64(&h.slots[i].position)
                if w - r > lag:
                    lag = w - r
        return not any_active or cap - lag >= <uint64_t> need

    def _notifier_fd(self):
        self._enter()
        return self._core._writer_rfd

    def writable(self):
        """Free bytes right now (0 when full).  BrokenResourceError if every reader left."""
        self._enter()
        return self._core._space()

    def try_reserve(self, n=1):
        """A writable view of all free space (len >= n), or None if less is free."""
        cdef Py_ssize_t need = self._size_arg(n, "n", False)
        self._enter()
        cdef RingCore core = self._core
        cdef Py_ssize_t space = core._space()
        if space < need:
            return None
        cdef Py_ssize_t off = <Py_ssize_t> (
            aring_load_relaxed_u64(&core._hdr.write_position.value) % core._cap
        )
        view = core._windows()[off:off + space]
        self._views.append(view)
        self._reserved = space
        return view

    def commit(self, n):
        """Publish the first n bytes of the reserved view (0 <= n <= reserved)."""
        cdef Py_ssize_t count = self._size_arg(n, "n", True)
        self._enter()
        if count > self._reserved:
            raise ValueError(f"commit({count}) is more than the {self._reserved} bytes reserved")
        cdef RingCore core = self._core
        cdef uint64_t w = aring_load_relaxed_u64(&core._hdr.write_position.value)
        self._release_views()
        self._reserved = 0
        if count == 0:
            return
        if core._mirrored:
            core._buffer._mirror(<Py_ssize_t> (w % core._cap), count)
        aring_store_release_u64(&core._hdr.write_position.value, w + count)
        core._wake_readers(False)

    cdef Py_ssize_t _try_write(self, const char *src, Py_ssize_t n, bint partial) except -1:
        """Copy in all n bytes (or, if partial, as many as fit); bytes written."""
        cdef RingCore core = self._core
        cdef Py_ssize_t space = core._space()
        cdef uint64_t w
        if space < n:
            if not partial or space == 0:
                return 0
            n = space
        if n == 0:
            return 0
        # The view handed out by try_reserve covered this space; it is gone now.
        self._release_views()
        self._reserved = 0
        w = aring_load_relaxed_u64(&core._hdr.write_position.value)
        core._copy_in(w, src, n)
        if core._closed:
            raise ClosedResourceError("the ring was closed during the copy")
        aring_store_release_u64(&core._hdr.write_position.value, w + n)
        core._wake_readers(False)
        return n

    def try_write(self, data, *, bint partial=False):
        """Copy ``data`` in; returns bytes written: all or 0, or as many as fit if ``partial``."""
        cdef Py_buffer view
        cdef Py_ssize_t done
        self._enter()
        _get_buffer(data, &view, False, "data")
        try:
            if not partial and view.len > <Py_ssize_t> self._core._cap:
                raise ValueError(
                    f"data ({view.len} bytes) is larger than the capacity ({self._core._cap}); "
                    "send it in parts"
                )
            if view.len % self._core._item:
                raise ValueError(
                    f"data length ({view.len}) must be a multiple of the item size ({self._core._item})"
                )
            previous = self._claim()
            try:
                return self._try_write(<const char *> view.buf, view.len, partial)
            finally:
                self._owner = previous
        finally:
            PyBuffer_Release(&view)

    def arm(self, n=1):
        """Ask for a wakeup once n bytes are free.

        Returns False when they already are (no wait needed), True when the
        caller should wait for ``notifier_fd`` to become readable and then
        call ``drain()`` and look again.
        """
        cdef Py_ssize_t need = self._size_arg(n, "n", False)
        self._enter()
        self._check_notifier()
        cdef RingCore core = self._core
        cdef aring_header *h = core._hdr
        if core._space() >= need:
            return False
        # Every reader must reach w + need - capacity for `need` bytes to be free.
        aring_store_release_u64(
            &h.writer_waiting.wake_at,
            aring_load_relaxed_u64(&h.write_position.value) + need - core._cap,
        )
        aring_exchange_u32(&h.writer_waiting.flag, 1)
        return core._space() < need

    def drain(self):
        """Reset the notifier after a wakeup."""
        self._enter()
        aring_notifier_drain(self._core._notifier, self._core._writer_rfd)

    def wait(self, n=1, timeout=None):
        """Block (GIL released) until n bytes are free; False on timeout."""
        cdef Py_ssize_t need = self._size_arg(n, "n", False)
        self._check_notifier()
        return _wait(self, need, timeout)

    def close(self):
        """EOF for the readers once they drain what is left.  Idempotent."""
        if self._closed:
            return
        self._release_views()
        self._closed = True
        core = self._core
        if core._closed or self._generation != aring_fork_generation():
            return
        aring_fetch_or_u32(&core._hdr.geometry.flags, ARING_FLAG_WRITER_CLOSED)
        # Sleeping readers see EOF, and a thread of ours blocked in wait() on
        # this end sees the close.
        core._wake_readers(True)
        aring_notifier_signal(core._notifier, core._writer_wfd)


cdef class ReaderEnd(_End):
    """A reader end's native part: ``aring.Reader`` adds the rest."""

    def __cinit__(self, RingCore core not None, *args, **kwargs):
        cdef aring_header *h = core._hdr
        cdef uint32_t i
        cdef int slot = -1
        cdef uint64_t pos, again
        for i in range(core._max_readers):
            if aring_cas_u32(&h.slots[i].state, ARING_SLOT_FREE, ARING_SLOT_CLAIMED):
                slot = i
                break
        if slot < 0:
            raise RuntimeError(f"all {core._max_readers} reader slots of the ring are taken")
        self._slot = slot
        core._ends.append(self)
        h.slots[slot].pid = getpid()
        if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
            # The writer is held back by a virtual reader at 0: start there.
            aring_store_release_u64(&h.slots[slot].position, 0)
            aring_store_seqcst_u32(&h.slots[slot].state, ARING_SLOT_ACTIVE)
            aring_fetch_or_u32(&h.geometry.flags, ARING_FLAG_READER_ATTACHED)
            return
        # Join at the oldest byte still kept for the others (or at the write
        # cursor if there are none); once we are active the writer respects us,
        # and a reservation it made before never reaches past the others.
        pos = self._join_position(h, slot)
        while True:
            aring_store_release_u64(&h.slots[slot].position, pos)
            aring_store_seqcst_u32(&h.slots[slot].state, ARING_SLOT_ACTIVE)
            again = self._join_position(h, slot)
            if again <= pos:
                return
            pos = again

    cdef uint64_t _join_position(self, aring_header *h, int own):
        cdef uint64_t w = aring_load_acquire_u64(&h.write_position.value)
        cdef uint64_t low = w, r
        cdef uint32_t i
        for i in range(self._core._max_readers):
            if <int> i != own and aring_load_acquire_u32(&h.slots[i].state) == ARING_SLOT_ACTIVE:
                r = aring_load_acquire_u64(&h.slots[i].position)
                if r < low:
                    low = r
        return low

    def _kind(self):
        return "reader"

    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil:
        cdef aring_header *h = self._core._hdr
        if self._closed or self._core._closed:
            return True
        if aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_WRITER_CLOSED:
            return True
        return (aring_load_acquire_u64(&h.write_position.value)
                - aring_load_relaxed_u64(&h.slots[self._slot].position)) >= <uint64_t> need

    def _notifier_fd(self):
        self._enter()
        return self._core._reader_rfd[self._slot]

    @property
    def slot(self):
        """This reader's slot in the control header."""
        return self._slot

    cdef Py_ssize_t _readable(self, bint *eof) except -1:
        cdef aring_header *h = self._core._hdr
        # Flags before the cursor: once the writer-closed flag is seen, the
        # cursor read after it holds everything the writer ever committed.
        cdef bint closed = (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_WRITER_CLOSED) != 0
        cdef uint64_t w = aring_load_acquire_u64(&h.write_position.value)
        cdef uint64_t r = aring_load_relaxed_u64(&h.slots[self._slot].position)
        eof[0] = closed
        return <Py_ssize_t> (w - r)

    def readable(self):
        """Bytes readable right now."""
        cdef bint eof
        self._enter()
        return self._readable(&eof)

    def at_eof(self):
        """True once the writer closed and this reader consumed everything."""
        cdef bint eof
        self._enter()
        return self._readable(&eof) == 0 and eof

    def try_peek(self, n=1, *, limit=None):
        """A read-only view of all readable bytes (len >= n, or the rest at EOF), or None.

        ``limit`` caps the view's length (a parser that wants exactly n bytes).
        EndOfStream when the writer closed and nothing is left.
        """
        cdef Py_ssize_t need = self._size_arg(n, "n", False)
        cdef Py_ssize_t cap = -1
        cdef bint eof
        if limit is not None:
            cap = _as_size(limit, "limit")
        self._enter()
        cdef Py_ssize_t avail = self._readable(&eof)
        if 0 <= cap < avail:
            avail = cap
        if avail < need:
            if not eof:
                return None
            if avail == 0:
                raise EndOfStream
        cdef RingCore core = self._core
        cdef Py_ssize_t off = <Py_ssize_t> (
            aring_load_relaxed_u64(&core._hdr.slots[self._slot].position) % core._cap
        )
        core._windows()
        view = core._rwindow[off:off + avail]
        self._views.append(view)
        return view

    def consume(self, n):
        """Release the first n readable bytes (0 <= n <= readable)."""
        cdef Py_ssize_t count = self._size_arg(n, "n", True)
        cdef bint eof
        self._enter()
        cdef Py_ssize_t avail = self._readable(&eof)
        if count > avail:
            raise ValueError(f"consume({count}) is more than the {avail} bytes readable")
        self._release_views()
        if count == 0:
            return
        self._advance(count)

    cdef void _advance(self, Py_ssize_t count) noexcept:
        cdef RingCore core = self._core
        cdef uint64_t *pos = &core._hdr.slots[self._slot].position
        cdef uint64_t moved = aring_load_relaxed_u64(pos) + count
        aring_store_release_u64(pos, moved)
        core._wake_writer(moved)

    def try_read(self, max_bytes=65536):
        """Up to max_bytes as bytes; None when empty; EndOfStream at EOF."""
        cdef Py_ssize_t limit = _as_size(max_bytes, "max_bytes")
        cdef bint eof
        if limit < 1:
            raise ValueError(f"max_bytes must be >= 1, got {limit}")
        self._enter()
        cdef Py_ssize_t avail = self._readable(&eof)
        if avail == 0:
            if eof:
                raise EndOfStream
            return None
        if avail > limit:
            avail = limit - limit % self._core._item
            if avail == 0:
                raise ValueError(
                    f"max_bytes ({limit}) is smaller than the item size ({self._core._item})"
                )
        cdef RingCore core = self._core
        data = PyBytes_FromStringAndSize(NULL, avail)
        previous = self._claim()
        try:
            core._copy_out(core._hdr.slots[self._slot].position, PyBytes_AS_STRING(data), avail)
        finally:
            self._owner = previous
        if self._closed or core._closed:
            raise ClosedResourceError("the reader was closed during the copy")
        self._release_views()
        self._advance(avail)
        return data

    def try_read_into(self, buffer):
        """Copy readable bytes into ``buffer``; bytes copied, None when empty, EndOfStream at EOF."""
        cdef Py_buffer view
        cdef bint eof
        cdef Py_ssize_t avail
        cdef RingCore core = self._core
        self._enter()
        _get_buffer(buffer, &view, True, "buffer")
        try:
            if view.len == 0:
                raise ValueError("buffer must not be empty")
            avail = self._readable(&eof)
            if avail == 0:
                if eof:
                    raise EndOfStream
                return None
            if avail > view.len:
                avail = view.len - view.len % core._item
                if avail == 0:
                    raise ValueError(
                        f"buffer ({view.len} bytes) is smaller than the item size ({core._item})"
                    )
            previous = self._claim()
            try:
                core._copy_out(core._hdr.slots[self._slot].position, <char *> view.buf, avail)
            finally:
                self._owner = previous
        finally:
            PyBuffer_Release(&view)
        if self._closed or core._closed:
            raise ClosedResourceError("the reader was closed during the copy")
        self._release_views()
        self._advance(avail)
        return avail

    def arm(self, n=1):
        """Ask for a wakeup once n bytes are readable (or at EOF).

        False: no need to wait.  True: wait for ``notifier_fd``, then
        ``drain()`` and look again.
        """
        cdef Py_ssize_t need = self._size_arg(n, "n", False)
        cdef bint eof
        self._enter()
        self._check_notifier()
        cdef RingCore core = self._core
        cdef aring_slot *slot = &core._hdr.slots[self._slot]
        if self._readable(&eof) >= need or eof:
            return False
        aring_store_release_u64(&slot.wake_at, aring_load_relaxed_u64(&slot.position) + need)
        aring_fetch_or_u64(&core._hdr.readers_waiting.value, (<uint64_t> 1) << self._slot)
        return not (self._readable(&eof) >= need or eof)

    def drain(self):
        """Reset the notifier after a wakeup."""
        self._enter()
        aring_notifier_drain(self._core._notifier, self._core._reader_rfd[self._slot])

    def wait(self, n=1, timeout=None):
        """Block (GIL released) until n bytes are readable or EOF; False on timeout."""
        cdef Py_ssize_t need = self._size_arg(n, "n", False)
        self._check_notifier()
        return _wait(self, need, timeout)

    def close(self):
        """Leave the ring: the slot is freed and the writer no longer waits for us."""
        if self._closed:
            return
        self._release_views()
        self._closed = True
        core = self._core
        if core._closed or self._generation != aring_fork_generation():
            return
        aring_store_seqcst_u32(&core._hdr.slots[self._slot].state, ARING_SLOT_FREE)
        core._ends.remove(self)
        # Wake the writer (more space, or nobody left) and a thread of ours
        # blocked in wait() on this end.
        core._wake_writer(<uint64_t> -1)
        aring_notifier_signal(core._notifier, core._reader_wfd[self._slot])


# A thread about to sleep first spins (GIL released) for a few microseconds:
# when the other side is busy, the data or space usually arrives by then and
# neither side pays a notifier write and a wakeup.  The spin adapts: it grows
# while it succeeds and shrinks while it fails, so an idle peer costs little.
# With one CPU there is no one to spin for.
cdef uint64_t _SPIN_MAX_NS = 50_000 if (_os.cpu_count() or 1) > 1 else 0
cdef uint64_t _SPIN_MIN_NS = 1_000 if _SPIN_MAX_NS else 0
cdef uint64_t _SPIN_START_NS = 10_000 if _SPIN_MAX_NS else 0


cdef void _spin(_End end, Py_ssize_t need):
    cdef RingCore core = end._core
    cdef uint64_t deadline
    cdef bint ready = False
    cdef int i
    core._inflight += 1   # close() from another thread waits: the header stays mapped
    with nogil:
        deadline = aring_now_ns() + end._spin_ns
        while not ready:
            for i in range(32):
                aring_cpu_relax()
            ready = end._ready_nogil(need)
            if aring_now_ns() >= deadline:
                break
    core._inflight -= 1
    if ready:
        end._spin_ns = min(end._spin_ns * 2, _SPIN_MAX_NS)
    else:
        end._spin_ns = max(end._spin_ns // 2, _SPIN_MIN_NS)


cdef object _wait(_End end, Py_ssize_t need, object timeout):
    """The blocking wait of either end: arm, poll without the GIL, drain, again."""
    cdef double limit = -1.0
    cdef double deadline = 0.0
    cdef double left = -1.0
    cdef RingCore core = end._core
    cdef unsigned long previous
    cdef int fd
    if timeout is not None:
        limit = float(timeout)
        if limit != limit or limit < 0:
            raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
        deadline = _time.monotonic() + limit
    previous = end._claim()
    try:
        if end._spin_ns and not end._ready_nogil(need):
            _spin(end, need)
        while end.arm(need):
            if timeout is not None:
                left = deadline - _time.monotonic()
                if left <= 0:
                    return False
            fd = end._notifier_fd()
            if core._poll(fd, left):
                aring_notifier_drain(core._notifier, fd)
        return True
    finally:
        end._owner = previous
