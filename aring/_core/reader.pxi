# ReaderEnd: joining (a slot and a start position), readable bytes, views and
# copies out, and leaving.

cdef inline uint64_t _join_position(RingCore core, int own) noexcept:
    """Where a joining reader starts: the oldest position the other readers hold, or w.

    A slot that cannot be right is passed over here; the writer reports it.
    """
    cdef uint64_t w = aring_load_acquire_u64(&core._hdr.write_position.value)
    cdef uint64_t lag
    if _scan_readers(core._hdr, core._max_readers, own, w, core._cap, False, &lag) < 0:
        return w
    return w - lag


cdef class ReaderEnd(_End):
    """A reader end's native part: ``aring.Reader`` adds the rest."""

    def __cinit__(self, RingCore core not None, *args, name=None, **kwargs):
        cdef bytes bname = None
        self._kind = "reader"
        if name is not None:
            bname = _reader_name(name)
            if core._path is None:
                raise ValueError(
                    "named readers keep their position in a ring file: make the ring with path="
                )
            core._check_open()   # those allocations may have run a collection that closed it
            _join_named(self, core, bname)
        else:
            _join_free_slot(self, core, None)

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

    cdef int _notifier_wfd(self) noexcept:
        return self._core._reader_wfd[self._slot]

    cdef bint _foreign_peer(self) noexcept:
        if self._core._records:   # a RecordRing's writer may be held by several processes
            return _foreign_producers(self._core)
        return aring_load_acquire_u32(&self._core._hdr.writer.pid) != _my_pid()

    cdef int _check_peers(self) except -1:
        cdef RingCore core = self._core
        cdef aring_header *h = core._hdr
        if aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_WRITER_CLOSED:
            return 0
        if core._records:
            _reap_dead_producers(core)
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
        # A named reader is parked: its position stays and holds the writer
        # back until it is opened again (or removed: ring.remove_reader()).
        cdef RingCore core = self._core
        cdef aring_slot *slot = &core._hdr.slots[self._slot]
        cdef Py_ssize_t i
        if aring_cas_u64(
            &slot.word,
            aring_slot_word(ARING_SLOT_ACTIVE, self._claims),
            aring_slot_word(ARING_SLOT_PARKED if self._named else ARING_SLOT_FREE, self._claims),
        ):
            aring_fetch_and_u64(&core._hdr.readers_waiting.value, ~((<uint64_t> 1) << self._slot))
            core._wake_writer(<uint64_t> -1)
        aring_notifier_signal(core._notifier, core._reader_wfd[self._slot])
        for i in range(len(core._ends)):   # by identity: list.remove() would call __eq__
            if core._ends[i] is self:
                del core._ends[i]
                break

    @property
    def slot(self):
        """This reader's slot in the control header."""
        return self._slot

    @property
    def name(self):
        """The reader's name (its position lives in the ring file), or None."""
        return self._name

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
        view = self._hand_out(off, avail, False)
        return view

    def consume(self, n):
        """Release the first n readable bytes (0 <= n <= readable)."""
        cdef Py_ssize_t count = self._amount_arg(n)
        cdef bint eof
        self._check_usable()
        cdef Py_ssize_t avail = self._readable(&eof)
        if count > avail:
            raise ValueError(f"consume({count}) is more than the {avail} bytes readable")
        self._take_back_views()
        if count == 0:
            return
        self._advance(count)

    cdef void _advance(self, Py_ssize_t count) noexcept:
        cdef RingCore core = self._core
        cdef aring_slot *slot = &core._hdr.slots[self._slot]
        cdef uint64_t *pos = &slot.position
        cdef uint64_t moved = aring_load_relaxed_u64(pos) + count
        if self._lent_records:   # a RecordRing batch is consumed: count its records
            aring_store_release_u64(
                &slot.records, aring_load_relaxed_u64(&slot.records) + <uint64_t> self._lent_records
            )
            self._lent_records = 0
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
        self._take_back_views()
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
        self._take_back_views()
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
        if self._peers_due():   # a dead peer sends no wake-up: whoever arms looks for one
            self._check_peers()
        cdef aring_slot *slot = &core._hdr.slots[self._slot]
        if self._readable(&eof) >= need or eof:
            return False
        aring_store_release_u64(&slot.wake_at, aring_load_relaxed_u64(&slot.position) + need)
        aring_fetch_or_u64(&core._hdr.readers_waiting.value, (<uint64_t> 1) << self._slot)
        return not (self._readable(&eof) >= need or eof)

    def close(self):
        """Leave the ring: the slot is freed and the writer no longer waits for us."""
        _End.close(self)
