# The ends: _End holds what both share (state checks, ownership, views,
# argument checks, wait/drain/close); WriterEnd and ReaderEnd move the cursors.
#
# Everything read from the header is untrusted: a cursor more than the
# capacity away from the other is reported as corruption, never used to size a
# copy or a view.

cdef inline uint64_t _join_position(RingCore core, int own) noexcept:
    """Where a joining reader starts: the oldest position the other readers hold, or w.

    A slot that cannot be right is passed over here; the writer reports it.
    """
    cdef uint64_t w = aring_load_acquire_u64(&core._hdr.write_position.value)
    cdef uint64_t lag
    if _scan_readers(core._hdr, core._max_readers, own, w, core._cap, False, &lag) < 0:
        return w
    return w - lag


cdef object _busy(str message):
    # anyio's BusyResourceError builds "Another task is already {action} this
    # resource" from its argument; ours says which end, and thread or task.
    exc = BusyResourceError("using")
    exc.args = (message,)
    return exc


cdef class _End:
    """What both ends share: state checks, ownership, views, waiting, closing."""

    def __cinit__(self, RingCore core not None, *args, **kwargs):
        core._check_open()
        core._adopt_generation()
        self._core = core
        self._kind = "end"
        self._generation = aring_fork_generation()
        self._views = []
        self._spin_ns = _SPIN_START_NS

    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil:
        return True

    cdef int _notifier_rfd(self) noexcept:
        return -1

    cdef _leave(self):
        pass

    cdef _take_over(self):
        pass

    cdef bint _foreign_peer(self) noexcept:
        return False

    cdef int _check_peers(self) except -1:
        return 0

    cdef bint _peers_due(self) noexcept:
        """Whether a peer lives in another process and was last checked an interval ago.

        At most one check per PEER_CHECK_INTERVAL, however the waits are cut
        (short timeouts, an outer deadline), so a dead peer is always found.
        """
        cdef uint64_t now
        if not self._foreign_peer():
            return False
        now = aring_now_ns()
        if now - self._peers_checked_ns < <uint64_t> (PEER_CHECK_INTERVAL * 1e9):
            return False
        self._peers_checked_ns = now
        return True

    cdef int _check_usable(self) except -1:
        """ClosedResourceError, ForkedError or BusyResourceError if this thread may not use the end."""
        if self._closed:
            raise ClosedResourceError(f"this {self._kind} is closed")
        if self._core._closed:
            raise ClosedResourceError("the ring is closed")
        if self._generation != aring_fork_generation():
            raise ForkedError(
                f"this {self._kind} was inherited through fork(); call reattach() in this "
                "process to take it over (and stop using it in the parent)"
            )
        if self._owner and self._owner != <unsigned long> PyThread_get_thread_ident():
            raise _busy(f"another thread is using this {self._kind}")
        return 0

    cpdef unsigned long _acquire(self, bint task=False) except? 1:
        """Make this thread (and, with ``task``, the calling task) the end's user.

        Held across a call that may wait; returns the token ``_release`` takes.
        """
        cdef unsigned long previous = self._owner
        if task and self._task_busy:
            raise _busy(f"another task is already using this {self._kind}")
        self._check_usable()
        self._owner = <unsigned long> PyThread_get_thread_ident()
        if task:
            self._task_busy = True
        return previous

    cpdef _release(self, unsigned long token, bint task=False):
        if task:
            self._task_busy = False
        self._owner = token

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

    cdef Py_ssize_t _count_arg(self, object n, str what, Py_ssize_t low) except -1:
        cdef Py_ssize_t v
        if type(n) is int and -(1 << 62) < n < (1 << 62):
            v = n
        elif isinstance(n, int) and not isinstance(n, bool) and n < low:
            v = low - 1   # a huge negative int: reported below
        else:
            v = _as_size(n, what)
        if v < low:
            raise ValueError(f"{what} must be >= {low}, got {n}")
        if v > <Py_ssize_t> self._core._cap:
            raise ValueError(f"{what} must be <= the capacity ({self._core._cap}), got {v}")
        return v

    cdef Py_ssize_t _need_arg(self, object n) except -1:
        """A wait threshold: 1..capacity bytes, rounded up to whole items ("at least n")."""
        cdef Py_ssize_t v = self._count_arg(n, "n", 1)
        cdef Py_ssize_t item = self._core._item
        if v % item:
            v += item - v % item
        return v

    cdef Py_ssize_t _amount_arg(self, object n) except -1:
        """An amount to commit or consume: 0..capacity bytes, whole items."""
        cdef Py_ssize_t v = self._count_arg(n, "n", 0)
        if v % self._core._item:
            raise ValueError(
                f"n must be a multiple of the item size ({self._core._item}), got {v}"
            )
        return v

    cdef int _check_notifier(self) except -1:
        if self._core._notifier == ARING_NOTIFIER_NONE:
            raise RuntimeError(
                f"this ring was made with notifier='none': it cannot wait; use the "
                f"nonblocking calls (try_*), or make the ring with a notifier"
            )
        return 0

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
        self._check_usable()
        return self._notifier_rfd()

    def _check_size(self, n):
        """``n`` checked as the waits check it (async methods check up front)."""
        return self._need_arg(n)

    def _ready(self, Py_ssize_t n):
        """Whether ``n`` bytes are there (free or readable), or news is (closed, EOF, no readers)."""
        self._check_usable()
        return self._ready_nogil(n)

    def _watch_peers(self):
        """For a task about to sleep: None while every peer is in this process, else
        the seconds to sleep at most before calling this again.

        A peer in another process cannot wake us when it dies, so the sleep is
        cut into slices, and each call looks for a dead peer when one is due.
        """
        self._check_usable()
        if not self._foreign_peer():
            return None
        if self._peers_due():
            self._check_peers()
        return PEER_CHECK_INTERVAL

    def drain(self):
        """Reset the notifier after a wakeup."""
        self._check_usable()
        aring_notifier_drain(self._core._notifier, self._notifier_rfd())

    def wait(self, n=1, timeout=None):
        """Block (GIL released) until ``n`` bytes are there or news is; False on timeout."""
        cdef Py_ssize_t need = self._need_arg(n)
        self._check_notifier()
        return _wait(self, need, _as_timeout(timeout))

    def close(self):
        """Close this end (idempotent); see the subclasses for what the other side sees."""
        if self._closed:
            return
        self._release_views()
        self._closed = True
        if self._core._hdr == NULL or self._generation != aring_fork_generation():
            return  # unmapped, or inherited through fork(): shared state is not ours
        self._leave()

    def reattach(self):
        """Take over an end inherited through fork() in this process.

        Until then every call on it raises ForkedError.  The parent must stop
        using it: one process at a time per end.  The end is recorded as this
        process's, so that if it dies without closing, the other side notices.
        """
        if self._closed:
            raise ClosedResourceError(f"this {self._kind} is closed")
        self._core._check_open()
        self._generation = aring_fork_generation()
        self._owner = 0
        self._task_busy = False
        self._core._adopt_generation()
        self._take_over()


cdef class WriterEnd(_End):
    """The writer end's native part: ``aring.Writer`` adds the rest."""

    def __cinit__(self, RingCore core not None, *args, **kwargs):
        if core._has_writer:
            raise RuntimeError("the ring already has its writer end")
        core._has_writer = True
        core._ends.append(self)
        self._kind = "writer"
        _record_owner(&core._hdr.writer)

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
            core._wake_readers(True)
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
        view = core._windows()[off:off + space]
        self._views.append(view)
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
        # A large copy ran without the GIL: the ring or this end may have been
        # closed meanwhile, and readers may have seen the end of stream.
        # Nothing is published after that.
        if core._closed:
            raise ClosedResourceError("the ring was closed during the copy")
        if self._closed:
            raise ClosedResourceError("the writer was closed during the copy")
        aring_store_release_u64(&core._hdr.write_position.value, w + n)
        core._wake_readers(False)
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


cdef class ReaderEnd(_End):
    """A reader end's native part: ``aring.Reader`` adds the rest."""

    def __cinit__(self, RingCore core not None, *args, **kwargs):
        cdef aring_header *h = core._hdr
        cdef uint32_t i, claims
        cdef int slot = -1
        cdef uint64_t pos, again, word, active
        self._kind = "reader"
        for i in range(core._max_readers):
            word = aring_load_acquire_u64(&h.slots[i].word)
            claims = aring_slot_claims(word)
            if aring_slot_state(word) == ARING_SLOT_FREE and aring_cas_u64(
                &h.slots[i].word, word, aring_slot_word(ARING_SLOT_CLAIMED, claims + 1)
            ):
                slot = i
                break
        if slot < 0:
            raise RuntimeError(f"all {core._max_readers} reader slots of the ring are taken")
        self._slot = slot
        self._claims = claims + 1
        active = aring_slot_word(ARING_SLOT_ACTIVE, self._claims)
        core._ends.append(self)
        _record_owner(&h.slots[slot].owner)
        if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
            # The writer is held back by a virtual reader at 0: start there.
            aring_store_release_u64(&h.slots[slot].position, 0)
            aring_store_seqcst_u64(&h.slots[slot].word, active)
            aring_fetch_or_u32(&h.geometry.flags, ARING_FLAG_READER_ATTACHED)
            return
        # Join at the oldest byte still kept for the others (or at the write
        # cursor if there are none); once we are active the writer respects us,
        # and a reservation it made before never reaches past the others.
        pos = _join_position(core, slot)
        while True:
            aring_store_release_u64(&h.slots[slot].position, pos)
            aring_store_seqcst_u64(&h.slots[slot].word, active)
            # The writer may have freed bytes behind a reader that moved on
            # before it saw us: if the oldest moved, follow it.
            again = _join_position(core, slot)
            if again <= pos:
                return
            pos = again

    cdef _take_over(self):
        # The new holder first, then a new claim: a writer that looked at the
        # old holder (dead, say) and would free the slot finds the claim changed.
        cdef aring_slot *slot = &self._core._hdr.slots[self._slot]
        _record_owner(&slot.owner)
        if not aring_cas_u64(
            &slot.word,
            aring_slot_word(ARING_SLOT_ACTIVE, self._claims),
            aring_slot_word(ARING_SLOT_ACTIVE, self._claims + 1),
        ):
            self._closed = True
            raise BrokenResourceError(
                f"reader slot {self._slot} was freed or taken by another reader before "
                "reattach() (its holder's process died, or another copy of this end closed it)"
            )
        self._claims += 1

    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil:
        cdef aring_header *h = self._core._hdr
        cdef uint64_t readable
        if self._closed or self._core._closed:
            return True
        if aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_WRITER_CLOSED:
            return True
        readable = (aring_load_acquire_u64(&h.write_position.value)
                    - aring_load_relaxed_u64(&h.slots[self._slot].position))
        # A distance past the capacity is corruption: look, and report it.
        return readable >= <uint64_t> need

    cdef int _notifier_rfd(self) noexcept:
        return self._core._reader_rfd[self._slot]

    cdef bint _foreign_peer(self) noexcept:
        return aring_load_acquire_u32(&self._core._hdr.writer.pid) != _my_pid()

    cdef int _check_peers(self) except -1:
        cdef RingCore core = self._core
        cdef aring_header *h = core._hdr
        if aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_WRITER_CLOSED:
            return 0
        if _owner_dead(&h.writer):
            # Every reader now sees the end of the stream, and that it was cut.
            aring_fetch_or_u32(&h.geometry.flags, ARING_FLAG_WRITER_DIED | ARING_FLAG_WRITER_CLOSED)
            core._wake_readers(True)
        return 0

    cdef _leave(self):
        # The slot is freed; wake the writer (more space, or nobody left) and
        # a thread of ours blocked in wait() on this end.  Only our own claim is
        # freed: a slot that a child took over (reattach()), or that was freed
        # and claimed by another reader since, is not ours to free.
        cdef RingCore core = self._core
        cdef aring_slot *slot = &core._hdr.slots[self._slot]
        core._ends.remove(self)
        if aring_cas_u64(
            &slot.word,
            aring_slot_word(ARING_SLOT_ACTIVE, self._claims),
            aring_slot_word(ARING_SLOT_FREE, self._claims),
        ):
            core._wake_writer(<uint64_t> -1)
        aring_notifier_signal(core._notifier, core._reader_wfd[self._slot])

    @property
    def slot(self):
        """This reader's slot in the control header."""
        return self._slot

    cdef Py_ssize_t _readable(self, bint *eof) except -1:
        cdef RingCore core = self._core
        cdef aring_header *h = core._hdr
        # Flags before the cursor: once the writer-closed flag is seen, the
        # cursor read after it holds everything the writer ever committed.
        cdef bint closed = (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_WRITER_CLOSED) != 0
        cdef uint64_t w = aring_load_acquire_u64(&h.write_position.value)
        cdef uint64_t r = aring_load_relaxed_u64(&h.slots[self._slot].position)
        if w - r > core._cap:
            raise core._corrupt(
                f"reader slot {self._slot} is at position {r}, the write position at {w}, "
                f"more than the capacity ({core._cap}) apart"
            )
        eof[0] = closed
        return <Py_ssize_t> (w - r)

    cdef object _end_of_stream(self):
        if aring_load_acquire_u32(&self._core._hdr.geometry.flags) & ARING_FLAG_WRITER_DIED:
            return BrokenResourceError(
                "the writer's process died without closing the ring: the stream may be "
                "incomplete (everything it committed was read)"
            )
        return EndOfStream()

    def readable(self):
        """Bytes readable right now."""
        cdef bint eof
        self._check_usable()
        return self._readable(&eof)

    def at_eof(self):
        """True once the writer closed and this reader consumed everything."""
        cdef bint eof
        self._check_usable()
        return self._readable(&eof) == 0 and eof

    def try_peek(self, n=1, *, limit=None):
        """A read-only view of all readable bytes (len >= n, or the rest at EOF), or None.

        ``limit`` caps the view's length (a parser that wants exactly n bytes).
        EndOfStream when the writer closed and nothing is left.
        """
        cdef Py_ssize_t need = self._need_arg(n)
        cdef Py_ssize_t cap = -1
        cdef bint eof
        if limit is not None:
            cap = _as_size(limit, "limit")
            cap -= cap % self._core._item
        self._check_usable()
        cdef Py_ssize_t avail = self._readable(&eof)
        if 0 <= cap < avail:
            avail = cap
        if avail < need:
            if not eof:
                return None
            if avail == 0:
                raise self._end_of_stream()
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
        cdef Py_ssize_t count = self._amount_arg(n)
        cdef bint eof
        self._check_usable()
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
        cdef Py_ssize_t limit = _as_positive_size(max_bytes, "max_bytes")
        cdef bint eof
        cdef unsigned long token
        self._check_usable()
        cdef Py_ssize_t avail = self._readable(&eof)
        if avail == 0:
            if eof:
                raise self._end_of_stream()
            return None
        if avail > limit:
            avail = limit - limit % self._core._item
            if avail == 0:
                raise ValueError(
                    f"max_bytes ({limit}) is smaller than the item size ({self._core._item})"
                )
        cdef RingCore core = self._core
        data = PyBytes_FromStringAndSize(NULL, avail)
        token = self._acquire()
        try:
            core._copy_out(core._hdr.slots[self._slot].position, PyBytes_AS_STRING(data), avail)
        finally:
            self._release(token)
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
        cdef unsigned long token
        cdef RingCore core = self._core
        self._check_usable()
        _get_buffer(buffer, &view, True, "buffer")
        try:
            self._check_usable()  # getting the buffer may have run Python code (__buffer__)
            if view.len == 0:
                raise ValueError("buffer must not be empty")
            avail = self._readable(&eof)
            if avail == 0:
                if eof:
                    raise self._end_of_stream()
                return None
            if avail > view.len:
                avail = view.len - view.len % core._item
                if avail == 0:
                    raise ValueError(
                        f"buffer ({view.len} bytes) is smaller than the item size ({core._item})"
                    )
            token = self._acquire()
            try:
                core._copy_out(core._hdr.slots[self._slot].position, <char *> view.buf, avail)
            finally:
                self._release(token)
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
        cdef Py_ssize_t need = self._need_arg(n)
        cdef bint eof
        self._check_usable()
        self._check_notifier()
        cdef RingCore core = self._core
        cdef aring_slot *slot = &core._hdr.slots[self._slot]
        if self._readable(&eof) >= need or eof:
            return False
        aring_store_release_u64(&slot.wake_at, aring_load_relaxed_u64(&slot.position) + need)
        aring_fetch_or_u64(&core._hdr.readers_waiting.value, (<uint64_t> 1) << self._slot)
        return not (self._readable(&eof) >= need or eof)

    def close(self):
        """Leave the ring: the slot is freed and the writer no longer waits for us."""
        _End.close(self)
