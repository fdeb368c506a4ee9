# RingCore: one ring's shared state (mapping, control header, notifiers) and
# the operations both ends build on: free space, copies, wakeups, close.

cdef dict _NOTIFIER_CODES = {
    "eventfd": ARING_NOTIFIER_EVENTFD,
    "pipe": ARING_NOTIFIER_PIPE,
    "none": ARING_NOTIFIER_NONE,
}
cdef dict _NOTIFIER_NAMES = {v: k for k, v in _NOTIFIER_CODES.items()}
cdef object _auto_notifier = None      # what notifier="auto" picks, probed once


cdef tuple _probe_notifier():
    """The best notifier here: eventfd where it works, else a pipe; and why."""
    cdef int rfd = -1, wfd = -1
    cdef aring_error e
    if aring_notifier_open(ARING_NOTIFIER_EVENTFD, &rfd, &wfd, &e) == 0:
        aring_close_fd(rfd)
        return "eventfd", []
    return "pipe", [f"eventfd: {_mapping_error(&e)}"]


cdef str _default_notifier():
    global _auto_notifier
    if _auto_notifier is None:
        _auto_notifier = _probe_notifier()[0]
    return _auto_notifier


def _probe_platform():
    """Which strategy and notifier work here, and why not others (for capabilities())."""
    strategy, mapping_reasons = _probe_mapping()
    notifier, notifier_reasons = _probe_notifier()
    return strategy, notifier, "; ".join(mapping_reasons + notifier_reasons)


# A distance of 2**63 or more between two cursors means the second is ahead.
cdef uint64_t _AHEAD = (<uint64_t> 1) << 63


cdef inline bint _scan_readers(aring_header *h, uint32_t max_readers, int skip, uint64_t w,
                               uint64_t *lag) noexcept nogil:
    """The largest ``w - position`` over the active reader slots but ``skip``.

    Stored in ``lag``; returns whether any slot was active.  The writer's free
    space is ``capacity - lag``, and a joining reader starts at ``w - lag``.
    """
    cdef uint64_t distance
    cdef uint32_t i
    cdef bint any_active = False
    lag[0] = 0
    for i in range(max_readers):
        if <int> i != skip and aring_load_acquire_u32(&h.slots[i].state) == ARING_SLOT_ACTIVE:
            any_active = True
            # Modular: a reader seen ahead of ``w`` (moved on since ``w`` was
            # read) shows as a huge distance and holds nothing back.
            distance = w - aring_load_acquire_u64(&h.slots[i].position)
            if distance > lag[0] and distance < _AHEAD:
                lag[0] = distance
    return any_active


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
            notifier = _default_notifier()
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
            if self._notifier != ARING_NOTIFIER_NONE:
                if aring_notifier_open(self._notifier, &self._writer_rfd, &self._writer_wfd, &e) < 0:
                    raise _mapping_error(&e)
                for i in range(nreaders):
                    if aring_notifier_open(
                        self._notifier, &self._reader_rfd[i], &self._reader_wfd[i], &e
                    ) < 0:
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
        cdef uint64_t lag
        if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
            # No reader yet: hold the writer back as if one sat at position 0,
            # so the first reader sees everything.
            return <Py_ssize_t> (self._cap - w)
        if not _scan_readers(h, self._max_readers, -1, w, &lag):
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

    cdef void _signal_all(self) noexcept:
        """Wake every waiter of this process; they look again and see why."""
        cdef Py_ssize_t i
        for i in range(self._max_readers):
            aring_notifier_signal(self._notifier, self._reader_wfd[i])
        aring_notifier_signal(self._notifier, self._writer_wfd)

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

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
