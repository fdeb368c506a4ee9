# WriterEnd: the writer's cursor, free space, reservations and copies in.

cdef class WriterEnd(_End):
    """The writer end's native part: ``aring.Writer`` adds the rest."""

    def __cinit__(self, RingCore core not None, *args, **kwargs):
        if core._records:
            raise TypeError("a RecordRing's writer is a RecordWriter: use ring.writer()")
        if core._has_writer:
            raise RuntimeError("the ring already has its writer end")
        self._kind = "writer"
        # One writer across processes too (a ring file others opened).
        self._writer_claims = _claim_writer(core)
        core._has_writer = True
        core._ends.append(self)
        if core._path is not None:
            # A new writer of a ring file: the stream goes on (a reader that
            # saw the last writer close already has its end of stream).
            aring_fetch_and_u32(
                &core._hdr.geometry.flags, ~(ARING_FLAG_WRITER_CLOSED | ARING_FLAG_WRITER_DIED)
            )

    cdef _take_over(self):
        _record_owner(&self._core._hdr.writer)

    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil:
        # Enough space, or something to report (closed, no readers, a corrupt
        # header): look again.
        cdef aring_header *h = self._core._hdr
        cdef uint64_t cap = self._core._cap
        cdef uint64_t w, lag
        cdef int active
        if self._closed or self._core._closed:
            return True
        w = aring_load_relaxed_u64(&h.write_position.value)
        if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
            return w > cap or cap - w >= <uint64_t> need   # past cap: corrupt, look and report
        active = _scan_readers(h, self._core._max_readers, -1, w, cap, True, &lag)
        if active <= 0:
            return True
        return cap - lag >= <uint64_t> need

    cdef int _notifier_rfd(self) noexcept:
        return self._core._writer_rfd

    cdef int _notifier_wfd(self) noexcept:
        return self._core._writer_wfd

    cdef bint _foreign_peer(self) noexcept:
        return self._core._foreign_readers()

    cdef int _check_peers(self) except -1:
        if self._core._reap_dead_readers():
            # A dead reader may have been all that held the writer back: look
            # again at once (the caller re-arms), and tell any sleeping
            # thread of ours.
            aring_notifier_signal(self._core._notifier, self._core._writer_wfd)
        return 0

    cdef _leave(self):
        # Sleeping readers see EOF, and a thread of ours blocked in wait() on
        # this end sees the close.  An end inherited by a child that took it
        # over is the child's to close.
        cdef RingCore core = self._core
        if core._hdr.writer.pid == _my_pid():
            aring_fetch_or_u32(&core._hdr.geometry.flags, ARING_FLAG_WRITER_CLOSED)
            _release_writer(core, self._writer_claims)
            core._wake_readers(True)
            _flush_on_close(core)
        aring_notifier_signal(core._notifier, core._writer_wfd)

    def writable(self):
        """Free bytes right now (0 when full).  BrokenResourceError if every reader left."""
        self._check_usable()
        return self._core._space()

    def try_reserve(self, n=1):
        """A writable view of all free space (len >= n), or None if less is free."""
        cdef Py_ssize_t need = self._need_arg(n)
        self._check_usable()
        cdef RingCore core = self._core
        cdef Py_ssize_t space = core._space()
        if space < need:
            return None
        cdef Py_ssize_t off = <Py_ssize_t> (
            aring_load_relaxed_u64(&core._hdr.write_position.value) % core._cap
        )
        view = self._hand_out(off, space, True)
        self._reserved = space
        return view

    def commit(self, n):
        """Publish the first n bytes of the reserved view (0 <= n <= reserved)."""
        cdef Py_ssize_t count = self._amount_arg(n)
        self._check_usable()
        if count > self._reserved:
            raise ValueError(f"commit({count}) is more than the {self._reserved} bytes reserved")
        cdef RingCore core = self._core
        cdef uint64_t w = aring_load_relaxed_u64(&core._hdr.write_position.value)
        self._take_back_views()
        self._reserved = 0
        if count == 0:
            return
        if core._mirrored:
            core._buffer._mirror(<Py_ssize_t> (w % core._cap), count)
        aring_store_release_u64(&core._hdr.write_position.value, w + count)
        core._wake_readers(False)
        core._committed()

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
        self._take_back_views()
        self._reserved = 0
        w = aring_load_relaxed_u64(&core._hdr.write_position.value)
        core._copy_in(w, src, n)
        # A large copy ran without the GIL: the ring or this end may have been
        # closed meanwhile, and readers may have seen the end of stream.
        # Nothing is published after that.
        if core._closed:
            raise ClosedResourceError("the ring was closed during the copy")
        if self._closed:
            raise ClosedResourceError("the writer was closed during the copy")
        aring_store_release_u64(&core._hdr.write_position.value, w + n)
        core._wake_readers(False)
        core._committed()
        return n

    def try_write(self, data, *, bint partial=False):
        """Copy ``data`` in; returns bytes written: all or 0, or as many as fit if ``partial``."""
        cdef Py_buffer view
        cdef unsigned long token
        self._check_usable()
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
            token = self._acquire()
            try:
                return self._try_write(<const char *> view.buf, view.len, partial)
            finally:
                self._release(token)
        finally:
            PyBuffer_Release(&view)

    def arm(self, n=1):
        """Ask for a wakeup once n bytes are free.

        Returns False when they already are (no wait needed), True when the
        caller should wait for ``notifier_fd`` to become readable and then
        call ``drain()`` and look again.
        """
        cdef Py_ssize_t need = self._need_arg(n)
        self._check_usable()
        self._check_notifier()
        cdef RingCore core = self._core
        if self._peers_due():   # a dead peer sends no wake-up: whoever arms looks for one
            self._check_peers()
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

    def close(self):
        """EOF for the readers once they drain what is left.  Idempotent."""
        _End.close(self)
