# RecordRing's native part: claims that commit or abort, publishing finished
# records to the readers, and splitting what a reader sees into records.
#
# The layout and the protocol are in includes/header.h.  Every field of a
# record header is read and written at its offset modulo the capacity (first
# half of the mapping), so with the copy strategy, whose halves are separate
# memory, all parties agree on where a header lives; payloads are mirrored
# before the state says "finished".  Everything read from a header is
# untrusted: a record that cannot be right is reported as corruption.

# The largest payload a record may have: the length field is 32 bits.
cdef uint64_t _MAX_RECORD_FIELD = 0xFFFFFFF8

# The longest a writer thread sleeps before it looks again (_wait_for_space).
cdef double _RECORD_WAIT_SLICE = 0.05

RECORD_HEADER = ARING_RECORD_HEADER
RECORD_LENGTH_LIMIT = _MAX_RECORD_FIELD
RECORD_WAIT_SLICE = _RECORD_WAIT_SLICE


cdef inline uint64_t *_record_position(RingCore core, uint64_t position) noexcept nogil:
    return <uint64_t *> (core._data + <Py_ssize_t> (position % core._cap))


cdef inline uint32_t *_record_length(RingCore core, uint64_t position) noexcept nogil:
    return <uint32_t *> (core._data + <Py_ssize_t> ((position + 8) % core._cap))


cdef inline uint32_t *_record_state(RingCore core, uint64_t position) noexcept nogil:
    return <uint32_t *> (core._data + <Py_ssize_t> ((position + 12) % core._cap))


cdef inline uint32_t _claimed_by(int producer) noexcept nogil:
    """A claimed record's state: CLAIMED, and which producer slot holds it (+1; 0: unknown)."""
    return ARING_RECORD_CLAIMED | ((<uint32_t> (producer + 1)) << 8)


cdef inline bint _is_claimed(uint32_t state) noexcept nogil:
    return (state & 0xFF) == ARING_RECORD_CLAIMED


cdef inline uint64_t _largest_record(RingCore core) noexcept:
    cdef uint64_t limit = core._cap - ARING_RECORD_HEADER
    return limit if limit < _MAX_RECORD_FIELD else _MAX_RECORD_FIELD


cdef int _join_producers(RingCore core, uint32_t *claims) except -1:
    """Take a free producer slot for this process (as a reader takes a reader slot)."""
    cdef aring_header *h = core._hdr
    cdef uint64_t word
    cdef int i
    for i in range(ARING_MAX_PRODUCERS):
        word = aring_load_acquire_u64(&h.producers[i].word)
        claims[0] = aring_slot_claims(word) + 1
        if aring_slot_state(word) == ARING_SLOT_FREE and aring_cas_u64(
            &h.producers[i].word, word, aring_slot_word(ARING_SLOT_CLAIMED, claims[0])
        ):
            _record_owner(&h.producers[i].owner)
            aring_store_seqcst_u64(
                &h.producers[i].word, aring_slot_word(ARING_SLOT_ACTIVE, claims[0])
            )
            return i
    raise RuntimeError(
        f"all {ARING_MAX_PRODUCERS} producer slots of the ring are taken (processes holding "
        "its writer)"
    )


cdef int _active_producers(RingCore core) noexcept:
    cdef int i, active = 0
    for i in range(ARING_MAX_PRODUCERS):
        if aring_slot_state(aring_load_acquire_u64(&core._hdr.producers[i].word)) != ARING_SLOT_FREE:
            active += 1
    return active


cdef bint _foreign_producers(RingCore core) noexcept:
    cdef aring_slot *slot
    cdef int i
    for i in range(ARING_MAX_PRODUCERS):
        slot = &core._hdr.producers[i]
        if (aring_slot_state(aring_load_acquire_u64(&slot.word)) == ARING_SLOT_ACTIVE
                and aring_load_acquire_u32(&slot.owner.pid) != _my_pid()):
            return True
    return False


cdef int _close_producers_if_none(RingCore core, uint32_t why) except -1:
    """When no process holds the writer any more: end of stream once every claim is published."""
    if _active_producers(core) == 0:
        aring_fetch_or_u32(&core._hdr.geometry.flags, ARING_FLAG_RECORDS_CLOSING | why)
        _publish_records(core)
    return 0


cdef int _reap_dead_producers(RingCore core) except -1:
    """Free the producer slots of processes that died holding the writer; how many.

    The readers' end of stream then says the writer died (records of the
    dead may be missing); when no producer is left, the stream ends once the
    claims the dead left open are dropped by claim_timeout.
    """
    cdef aring_slot *slot
    cdef uint64_t word
    cdef int i, reaped = 0
    for i in range(ARING_MAX_PRODUCERS):
        slot = &core._hdr.producers[i]
        word = aring_load_acquire_u64(&slot.word)
        if aring_slot_state(word) != ARING_SLOT_ACTIVE or not _owner_dead(&slot.owner):
            continue
        # Only the claim looked at: a slot freed and taken again changed its word.
        if aring_cas_u64(&slot.word, word, aring_slot_word(ARING_SLOT_FREE, aring_slot_claims(word))):
            reaped += 1
    if reaped:
        # Sticky: the records of the dead may be missing, whoever closes last.
        aring_fetch_or_u32(&core._hdr.geometry.flags, ARING_FLAG_WRITER_DIED)
        _close_producers_if_none(core, 0)
    return reaped


cdef class RecordWriterEnd(_End):
    """The writer end of a RecordRing, native part: claims, commits, aborts.

    Unlike a byte writer it may be used by many threads and tasks at once:
    a claim moves the shared claim cursor with a CAS, and whoever finishes a
    record publishes every finished record at the head.
    """

    def __cinit__(self, RingCore core not None, *args, **kwargs):
        if not core._records:
            raise TypeError("a RecordWriterEnd needs a RecordRing")
        if core._has_writer:
            raise RuntimeError("the ring already has its writer end")
        self._open = {}
        self._kind = "writer"
        core._check_open()   # that allocation may have run a collection that closed it
        _lock_registry(core)   # no producer joins while the stream is reopened
        try:
            if not aring_load_acquire_u32(&core._hdr.geometry.flags) & ARING_FLAG_MULTI_PRODUCER:
                self._writer_claims = _claim_writer(core)   # one writer across processes
            if core._path is not None and _active_producers(core) == 0:
                # The first producer of a ring file: what dead ones left is
                # finished, and the stream goes on.
                try:
                    _repair_records(core)
                except BaseException:
                    _release_writer(core, self._writer_claims)
                    raise
                aring_fetch_and_u32(&core._hdr.geometry.flags, ~(
                    ARING_FLAG_WRITER_CLOSED | ARING_FLAG_WRITER_DIED | ARING_FLAG_RECORDS_CLOSING
                ))
            try:
                self._producer = _join_producers(core, &self._producer_claims)
            except BaseException:
                _release_writer(core, self._writer_claims)
                raise
        finally:
            _unlock_registry(core)
        core._has_writer = True
        core._ends.append(self)
        _record_owner(&core._hdr.writer)

    cdef _take_over(self):
        _record_owner(&self._core._hdr.writer)

    cdef int _notifier_rfd(self) noexcept:
        return self._core._writer_rfd

    cdef int _notifier_wfd(self) noexcept:
        return self._core._writer_wfd

    cdef bint _foreign_peer(self) noexcept:
        return self._core._foreign_readers()

    cdef int _check_peers(self) except -1:
        if self._core._reap_dead_readers():
            aring_notifier_signal(self._core._notifier, self._core._writer_wfd)
        return 0

    cdef int _check_claimable(self) except -1:
        """As _check_usable, without the one-user rule: many threads may claim."""
        if self._core._closed:
            raise ClosedResourceError("the ring is closed")
        if self._closed:
            raise ClosedResourceError("this writer is closed")
        if self._generation != aring_fork_generation():
            raise ForkedError(
                "this RecordRing writer was inherited through fork(); call reattach() in this "
                "process to produce from it too (the other processes keep producing)"
            )
        return 0

    def reattach(self):
        """Produce from this process too, with the writer inherited through fork().

        Unlike a byte end, the writer stays usable in the other processes:
        each holds a producer slot, and the readers see the end of the stream
        once every process closed it (or died).  ClosedResourceError if every
        other process had closed it already (the stream may have ended).
        """
        cdef RingCore core = self._core
        if self._closed:
            raise ClosedResourceError("this writer is closed")
        core._check_open()
        if self._generation == aring_fork_generation():
            return   # this process's own writer already
        self._generation = aring_fork_generation()
        self._in_native_loop = False
        self._native_stop = _NATIVE_GO_ON
        self._owner = 0
        self._task_busy = False
        self._open = {}      # the parent's claims are the parent's
        self._views = []
        core._check_open()   # those allocations may have run a collection that closed it
        core._adopt_generation()
        self._producer = _join_producers(core, &self._producer_claims)
        if aring_load_acquire_u32(&core._hdr.geometry.flags) & ARING_FLAG_RECORDS_CLOSING:
            self._free_producer_slot()
            self._closed = True
            raise ClosedResourceError(
                "the writer was closed in every other process before this one took it over; "
                "keep it open in one of them until the others have called reattach()"
            )

    cdef int _free_producer_slot(self) except -1:
        cdef aring_slot *slot = &self._core._hdr.producers[self._producer]
        aring_cas_u64(
            &slot.word,
            aring_slot_word(ARING_SLOT_ACTIVE, self._producer_claims),
            aring_slot_word(ARING_SLOT_FREE, self._producer_claims),
        )
        return 0

    cdef Py_ssize_t _claim_space(self, uint64_t c) except -2:
        """Free bytes past the claim cursor ``c`` (as RingCore._space from the write cursor)."""
        cdef RingCore core = self._core
        cdef aring_header *h = core._hdr
        cdef uint64_t lag
        cdef int active
        if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
            if c > core._cap:
                raise core._corrupt(
                    f"the claim position is {c} before any reader joined, past the capacity "
                    f"({core._cap})"
                )
            return <Py_ssize_t> (core._cap - c)
        # ``c`` may be stale: another producer claimed, published, and a reader
        # read past it meanwhile.  Such a reader holds nothing back, and the
        # claim's CAS from this ``c`` fails: it is passed over, not corruption.
        active = _scan_readers(h, core._max_readers, -1, c, core._cap, False, &lag)
        if active < 0:
            raise core._corrupt_slot(-1 - active, c)
        if active == 0:
            raise BrokenResourceError("every reader of the ring has closed")
        return <Py_ssize_t> (core._cap - lag)

    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil:
        cdef aring_header *h = self._core._hdr
        cdef uint64_t cap = self._core._cap
        cdef uint64_t c, lag
        cdef int active
        if self._closed or self._core._closed:
            return True
        c = aring_load_acquire_u64(&h.claim_position.value)
        if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
            return c > cap or cap - c >= <uint64_t> need
        active = _scan_readers(h, self._core._max_readers, -1, c, cap, False, &lag)
        if active <= 0:
            return True
        return cap - lag >= <uint64_t> need

    @property
    def max_record(self):
        """The largest payload a record may have in this ring."""
        return _largest_record(self._core)

    def _size_of(self, n):
        """Bytes a record of ``n`` payload bytes takes (ValueError if it can never fit)."""
        cdef Py_ssize_t length
        if type(n) is int and 0 <= n < (1 << 62):
            length = n
        else:
            length = _as_size(n, "n")
            if length < 0:
                raise ValueError(f"a record's length must be >= 0, got {n}")
        if <uint64_t> length > _largest_record(self._core):
            raise ValueError(
                f"a record of {length} bytes does not fit: the largest this ring holds is "
                f"{_largest_record(self._core)} bytes (capacity {self._core._cap} minus a "
                f"{ARING_RECORD_HEADER}-byte header)"
            )
        return aring_record_size(length)

    cdef bint _claim_at(self, Py_ssize_t length, uint64_t *position) except -1:
        """Move the claim cursor over a record of ``length`` bytes and write its header.

        False when it does not fit now.  ``length`` was checked (``_size_of``).
        """
        cdef RingCore core = self._core
        cdef aring_header *h
        cdef uint64_t size = aring_record_size(length)
        cdef uint64_t c
        self._check_claimable()
        h = core._hdr
        while True:
            c = aring_load_acquire_u64(&h.claim_position.value)
            if <uint64_t> self._claim_space(c) < size:
                return False
            if aring_cas_u64(&h.claim_position.value, c, c + size):
                break
        _record_length(core, c)[0] = <uint32_t> length
        _record_state(core, c)[0] = _claimed_by(self._producer)
        aring_store_release_u64(_record_position(core, c), c)   # the header is this lap's now
        position[0] = c
        return True

    cdef bint _settle(self, uint64_t position, uint64_t size, uint32_t state) except -1:
        """Finish the claimed record at ``position``: mirror it (copy strategy), set its state, publish.

        False if a reader had abandoned the claim (open past its claim_timeout).
        """
        cdef RingCore core = self._core
        cdef uint32_t *field = _record_state(core, position)
        cdef uint32_t claimed = _claimed_by(self._producer)
        if aring_load_acquire_u32(field) != claimed:
            return False
        if core._mirrored:
            self._mirror_record(position, size)
        if not aring_cas_u32(field, claimed, state):
            return False
        _publish_records(core)
        core._committed()
        return True

    cdef void _mirror_record(self, uint64_t position, uint64_t size) noexcept:
        """The copy strategy: make both halves hold the record's payload (before its state says finished).

        Only the payload: header fields are only ever read at their offset
        modulo the capacity, and copying over them could undo a reader's
        concurrent CAS on the state.
        """
        cdef RingCore core = self._core
        core._buffer._mirror(<Py_ssize_t> (position % core._cap + ARING_RECORD_HEADER),
                             <Py_ssize_t> (size - ARING_RECORD_HEADER))

    def _try_claim(self, Py_ssize_t length):
        """Claim a record of ``length`` payload bytes: its position, or None when it does not fit now.

        ``length`` was checked by ``_size_of``.
        """
        cdef uint64_t c
        if not self._claim_at(length, &c):
            return None
        self._open[c] = length
        return c

    def _try_send(self, data):
        """Copy ``data`` in as one record (claim, copy, commit in one call); False if it does not fit now."""
        cdef Py_buffer view
        cdef RingCore core = self._core
        cdef uint64_t c
        cdef char *dst
        _get_buffer(data, &view, False, "a record")
        try:
            self._size_of(view.len)
            if not self._claim_at(view.len, &c):
                return False
            dst = core._data + <Py_ssize_t> (c % core._cap) + ARING_RECORD_HEADER
            if view.len >= NOGIL_COPY:
                core._inflight += 1
                self._copying += 1   # close() waits: the slot (and so the claim) stays ours
                with nogil:
                    memcpy(dst, view.buf, view.len)
                    self._copying -= 1
                core._inflight -= 1
            else:
                memcpy(dst, view.buf, view.len)
            if core._closed:
                raise ClosedResourceError("the ring was closed during the copy")
            if self._closed:   # closed by another thread during the copy: dropped
                self._settle(c, aring_record_size(view.len), ARING_RECORD_SKIPPED)
                raise ClosedResourceError("the writer was closed during the copy; the record was dropped")
            if not self._settle(c, aring_record_size(view.len), ARING_RECORD_COMMITTED):
                raise _abandoned()
            return True
        finally:
            PyBuffer_Release(&view)

    def _try_send_batch(self, list records not None, Py_ssize_t start):
        """Copy ``records[start:]`` in, as many as fit now, with one claim; how many were sent.

        The records are claimed together (one CAS), copied, and published
        together.  ValueError (nothing of this call sent) if one of them can
        never fit; TypeError if one is not bytes-like.
        """
        cdef RingCore core = self._core
        cdef aring_header *h
        cdef Py_buffer view
        cdef Py_ssize_t count = len(records), k, end
        cdef uint64_t c, p, space, total, size, largest = _largest_record(core)
        cdef Py_ssize_t length
        if not 0 <= start <= count:
            raise ValueError(f"start must be between 0 and {count}, got {start}")
        # How many fit, and their bytes: the lengths are read once, before the claim.
        lengths = []
        self._check_claimable()
        h = core._hdr
        while True:
            c = aring_load_acquire_u64(&h.claim_position.value)
            space = <uint64_t> self._claim_space(c)
            total = 0
            end = start
            while end < count:
                if end - start < len(lengths):
                    length = lengths[end - start]
                else:
                    _get_buffer(records[end], &view, False, "a record")
                    length = view.len
                    PyBuffer_Release(&view)
                    if <uint64_t> length > largest:
                        raise ValueError(
                            f"record {end} ({length} bytes) does not fit: the largest this ring "
                            f"holds is {largest} bytes"
                        )
                    lengths.append(length)
                    # Python code may have run (a collection, __buffer__): the ring
                    # may be closed, its memory gone.
                    self._check_claimable()
                size = aring_record_size(length)
                if total + size > space:
                    break
                total += size
                end += 1
            if end == start:
                return 0
            if aring_cas_u64(&h.claim_position.value, c, c + total):
                break
        # Ours now, from c to c + total.  Every header first (a reader measures a
        # stalled claim by its header), then the payloads, then the states.
        p = c
        for k in range(start, end):
            _record_length(core, p)[0] = <uint32_t> lengths[k - start]
            _record_state(core, p)[0] = _claimed_by(self._producer)
            aring_store_release_u64(_record_position(core, p), p)
            p += aring_record_size(lengths[k - start])
        p = c
        try:
            for k in range(start, end):
                _get_buffer(records[k], &view, False, "a record")
                if core._closed:   # by Python code _get_buffer ran: the memory is gone
                    PyBuffer_Release(&view)
                    raise ClosedResourceError("the ring was closed during the send")
                try:
                    length = lengths[k - start]
                    if view.len != length:   # resized under us (Python code ran): refuse
                        raise ValueError(
                            f"record {k} changed size during send_batch ({length} -> {view.len})"
                        )
                    memcpy(core._data + <Py_ssize_t> (p % core._cap) + ARING_RECORD_HEADER,
                           view.buf, length)
                finally:
                    PyBuffer_Release(&view)
                p += aring_record_size(lengths[k - start])
        except BaseException:
            # The list changed under us (an item replaced by another thread):
            # every record of this claim is dropped, none left unmeasurable.
            if core._hdr != NULL:
                p = c
                for k in range(start, end):
                    aring_cas_u32(_record_state(core, p), _claimed_by(self._producer),
                                  ARING_RECORD_SKIPPED)
                    p += aring_record_size(lengths[k - start])
                _publish_records(core)
            raise
        if core._closed:
            raise ClosedResourceError("the ring was closed during the copy")
        p = c
        abandoned = False
        for k in range(start, end):
            size = aring_record_size(lengths[k - start])
            if aring_load_acquire_u32(_record_state(core, p)) != _claimed_by(self._producer):
                abandoned = True
            else:
                if core._mirrored:
                    self._mirror_record(p, size)
                if not aring_cas_u32(
                    _record_state(core, p),
                    _claimed_by(self._producer),
                    ARING_RECORD_SKIPPED if self._closed else ARING_RECORD_COMMITTED,
                ):
                    abandoned = True
            p += size
        _publish_records(core)
        if self._closed:
            raise ClosedResourceError("the writer was closed during the send; the records were dropped")
        if abandoned:
            raise _abandoned()
        return end - start

    def _claim_view(self, uint64_t position):
        """The writable view of an open claim's payload (released when it is finished)."""
        cdef RingCore core = self._core
        length = self._open.get(position)
        if length is None:
            raise ValueError("not an open claim")
        # Right after the header in the window (maybe past the end: the
        # double mapping, or the copy strategy's mirror at commit, makes it so).
        view = core._view(<Py_ssize_t> (position % core._cap + ARING_RECORD_HEADER), length, True)
        self._views.append(view)
        return view

    def _finish(self, uint64_t position, bint commit, view=None):
        """Commit or abort the open claim at ``position``; True if it was committed.

        False when the claim had been aborted already (the writer or the
        ring was closed under it).  ``view``, if given, is released first:
        the payload must not change once readers may see it.  ForkedError in a
        child of fork() for a claim the parent made: it is the parent's.
        """
        cdef RingCore core = self._core
        if self._generation != aring_fork_generation():
            raise ForkedError(
                "this claim was made in the parent process before fork(): only the parent "
                "may commit or abort it"
            )
        if view is not None:
            try:
                view.release()
            except BufferError:
                pass   # exported further by its user: tracked until close() can release it
            else:
                for i in range(len(self._views)):   # by identity: list.remove() compares contents
                    if self._views[i] is view:
                        del self._views[i]
                        break
        length = self._open.pop(position, None)
        if length is None or core._hdr == NULL:   # (ring.close() closes its ends while mapped)
            return False
        if aring_load_acquire_u64(_record_position(core, position)) != position:
            raise core._corrupt(f"the header of the open claim at position {position} changed")
        if not self._settle(position, aring_record_size(length),
                            ARING_RECORD_COMMITTED if commit else ARING_RECORD_SKIPPED):
            if commit:
                raise _abandoned()
            return False
        return commit

    cdef _leave(self):
        # Claims still open are aborted (their views were released: nothing
        # more can be written into them); readers see the end of stream once
        # every record claimed before is published.
        cdef RingCore core = self._core
        cdef uint64_t position
        for position, length in list(self._open.items()):
            try:
                self._finish(position, False)
            except BrokenResourceError:
                pass   # a corrupt header: the readers will say so
        if core._hdr == NULL:
            return   # a collection run meanwhile closed the ring: its memory is gone
        with nogil:   # a GIL-free copy into a claim of ours finishes first
            while self._copying:
                usleep(20)
        self._free_producer_slot()
        if core._hdr.writer.pid == _my_pid():
            _release_writer(core, self._writer_claims)
        _flush_on_close(core)
        try:
            _close_producers_if_none(core, 0)   # the last process to close ends the stream
        except BrokenResourceError:
            pass
        aring_notifier_signal(core._notifier, core._writer_wfd)

    def writable(self):
        """Bytes free for claims right now."""
        self._check_claimable()
        return self._claim_space(aring_load_acquire_u64(&self._core._hdr.claim_position.value))

    def arm(self, n=1):
        """Ask for a wakeup once ``n`` bytes are free for claims; False if they already are."""
        cdef Py_ssize_t need = self._need_arg(n)
        cdef RingCore core = self._core
        cdef aring_header *h
        self._check_claimable()
        self._check_notifier()
        if self._peers_due():   # a dead reader sends no wake-up: whoever arms looks for one
            self._check_peers()
        h = core._hdr
        if self._claim_space(aring_load_acquire_u64(&h.claim_position.value)) >= need:
            return False
        aring_store_release_u64(
            &h.writer_waiting.wake_at,
            aring_load_acquire_u64(&h.claim_position.value) + need - core._cap,
        )
        aring_exchange_u32(&h.writer_waiting.flag, 1)
        return self._claim_space(aring_load_acquire_u64(&h.claim_position.value)) < need

    def _ready(self, Py_ssize_t n):
        self._check_claimable()
        return self._ready_nogil(n)

    def _wait_for_space(self, Py_ssize_t need, timeout):
        """Block (GIL released) until ``need`` bytes are free or news is; False on timeout.

        Several threads may wait at once: each sleep is cut short so that a
        wakeup another waiter drained from the shared notifier costs at most
        a slice, never a hang.
        """
        cdef double limit = _as_timeout(timeout)
        cdef double deadline = _time.monotonic() + limit if limit >= 0 else 0.0
        cdef double left
        cdef int fd
        self._check_notifier()
        while self.arm(need):
            if self._peers_due():
                self._check_peers()
                continue
            left = _RECORD_WAIT_SLICE
            if limit >= 0:
                left = min(left, deadline - _time.monotonic())
                if left <= 0:
                    return False
            fd = self._core._writer_rfd
            if _poll(self._core, fd, left):
                aring_notifier_drain(self._core._notifier, fd)
        return True

    @property
    def open_claims(self):
        """Claims of this end not committed or aborted yet."""
        return len(self._open)

    def close(self):
        """No new claims; open ones are aborted; readers see EOF after the last record."""
        _End.close(self)


cdef object _abandoned():
    return BrokenResourceError(
        "the claim was open longer than a reader's claim_timeout and was dropped; "
        "the record was not published"
    )


cdef int _publish_records(RingCore core) except -1:
    """Move the write cursor over every finished record at the head; wake readers.

    Any party may run this at any time (a producer that finished a record, a
    reader that abandoned one): the CAS on the write cursor publishes each
    record once.  A record not finished yet (or whose header its claimer has
    not written yet) stops it; that record's finisher publishes it and what
    follows (its seq_cst state change and the fence here see each other).
    Once the writer closed and every claim is published: end of stream.
    """
    cdef aring_header *h = core._hdr
    cdef uint64_t cap = core._cap
    cdef uint64_t w, c, size
    cdef uint32_t state
    cdef bint moved = False
    while True:
        aring_fence_seqcst()
        w = aring_load_acquire_u64(&h.write_position.value)
        c = aring_load_acquire_u64(&h.claim_position.value)
        if w == c:
            break
        if c - w > cap:
            raise core._corrupt(
                f"the claim position ({c}) is more than the capacity ({cap}) past the write "
                f"position ({w})"
            )
        if aring_load_acquire_u64(_record_position(core, w)) != w:
            break   # claimed, its header not written yet
        state = aring_load_acquire_u32(_record_state(core, w))
        if state != ARING_RECORD_COMMITTED and state != ARING_RECORD_SKIPPED:
            break   # claimed (or its header being written: a fresh ring's zeros match w)
        size = aring_record_size(_record_length(core, w)[0])
        if size > c - w:
            raise core._corrupt(
                f"the record at position {w} has state {state} and length "
                f"{_record_length(core, w)[0]}, with claims up to {c}"
            )
        if aring_cas_u64(&h.write_position.value, w, w + size):
            moved = True
            # Counted by the one publisher that moved the cursor over it.
            aring_fetch_add_u64(
                &h.write_position.records if state == ARING_RECORD_COMMITTED
                else &h.write_position.dropped, 1
            )
    if moved:
        core._wake_readers(False)
    if w == c and aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_RECORDS_CLOSING:
        if not aring_fetch_or_u32(&h.geometry.flags, ARING_FLAG_WRITER_CLOSED) & ARING_FLAG_WRITER_CLOSED:
            core._wake_readers(True)
    return 0


def _record_stalled(ReaderEnd reader not None):
    """The position of a claim holding every reader back (claimed, not finished), or -1.

    Meaningful when nothing is readable: the head record past the write
    cursor is still open.  A claim whose producer process is gone (its slot
    freed or its process dead) is dropped here at once, without waiting for
    claim_timeout.
    """
    cdef RingCore core = reader._core
    cdef aring_header *h
    cdef aring_slot *slot
    cdef uint64_t w, c
    cdef uint32_t state
    cdef int producer
    _check_record_reader(reader)
    h = core._hdr
    w = aring_load_acquire_u64(&h.write_position.value)
    c = aring_load_acquire_u64(&h.claim_position.value)
    if w == c or c - w > core._cap:
        return -1
    if aring_load_acquire_u64(_record_position(core, w)) != w:
        return w   # claimed, the header not written yet
    state = aring_load_acquire_u32(_record_state(core, w))
    if state == ARING_RECORD_COMMITTED or state == ARING_RECORD_SKIPPED:
        _publish_records(core)   # finished meanwhile: publish it (its finisher may be slow)
        return -1
    if not _is_claimed(state):
        return w   # its header is being written (a fresh ring's zeros match position 0)
    producer = <int> (state >> 8) - 1
    if 0 <= producer < ARING_MAX_PRODUCERS:
        slot = &h.producers[producer]
        if (aring_slot_state(aring_load_acquire_u64(&slot.word)) == ARING_SLOT_FREE
                or _owner_dead(&slot.owner)):
            if aring_cas_u32(_record_state(core, w), state, ARING_RECORD_SKIPPED):
                _publish_records(core)
                return -1
    return w


def _record_abandon(ReaderEnd reader not None, uint64_t position):
    """Drop the open claim at ``position`` (it outlived claim_timeout); True if this call did.

    Its producer's commit then fails.  A claim whose header was never
    written (its producer died right after claiming) cannot be measured and
    is left alone.
    """
    cdef RingCore core = reader._core
    _check_record_reader(reader)
    cdef uint32_t state
    if aring_load_acquire_u64(_record_position(core, position)) != position:
        return False
    state = aring_load_acquire_u32(_record_state(core, position))
    if not _is_claimed(state) or not aring_cas_u32(
        _record_state(core, position), state, ARING_RECORD_SKIPPED
    ):
        return False
    _publish_records(core)
    return True


cdef int _check_record_reader(ReaderEnd reader) except -1:
    if not reader._core._records:
        raise TypeError("this reader does not belong to a RecordRing")
    reader._check_usable()
    return 0


cdef uint64_t _record_at(RingCore core, uint64_t p, Py_ssize_t avail, uint32_t *state,
                         uint32_t *checked) except 0:
    """The size of the finished record at position ``p`` within ``avail`` readable bytes.

    Its length, as checked, in ``checked``: the header is shared memory, and
    reading it again could give another value.
    """
    cdef uint64_t size
    cdef uint32_t length
    if aring_load_acquire_u64(_record_position(core, p)) != p:
        raise core._corrupt(f"no record header at position {p}, where the next record must be")
    state[0] = aring_load_acquire_u32(_record_state(core, p))
    length = _record_length(core, p)[0]
    size = aring_record_size(length)
    if (state[0] != ARING_RECORD_COMMITTED and state[0] != ARING_RECORD_SKIPPED) or size > <uint64_t> avail:
        raise core._corrupt(
            f"the record at position {p} has state {state[0]} and length {length}, with "
            f"{avail} bytes published from there"
        )
    checked[0] = length
    return size


def _record_batch(ReaderEnd reader not None, Py_ssize_t max_records):
    """The committed records readable now: ``([views], bytes they span, at EOF)``.

    The views are lent as ``try_peek``'s are: released by the reader's next
    ``consume``, which the caller makes with the bytes spanned (aborted
    records in between are skipped).  At most ``max_records`` views.
    """
    cdef RingCore core = reader._core
    cdef bint eof
    cdef Py_ssize_t avail, spanned = 0, start, count = 0
    cdef uint64_t r, p, size
    cdef uint32_t state, length
    cdef list out = []
    cdef list lent
    cdef object window
    _check_record_reader(reader)
    avail = reader._readable(&eof)
    if avail == 0:
        return out, 0, eof
    r = aring_load_relaxed_u64(&core._hdr.slots[reader._slot].position)
    core._view(0, 0, False).release()   # makes the shared read-only window if needed
    reader._check_usable()   # that allocation may have run a collection that closed it
    window = core._rwindow
    lent = reader._views
    while spanned < avail and count < max_records:
        if core._closed or reader._closed:   # by a collection the last allocation ran
            break
        p = r + <uint64_t> spanned
        size = _record_at(core, p, avail - spanned, &state, &length)
        if state == ARING_RECORD_COMMITTED:
            start = <Py_ssize_t> ((p + ARING_RECORD_HEADER) % core._cap)
            view = window[start:start + <Py_ssize_t> length]
            lent.append(view)   # released by the reader's next consume (or close)
            out.append(view)
            count += 1
        spanned += <Py_ssize_t> size
    if core._closed or reader._closed:   # by Python code an allocation ran (a collection)
        reader._release_views()
        reader._check_usable()
    reader._lent_records = count   # counted as read once the caller consumes them
    return out, spanned, eof and spanned == avail


def _record_read(ReaderEnd reader not None):
    """The next committed record as bytes (consumed), None if there is none yet.

    Aborted records on the way are consumed too.  EndOfStream (or the
    writer's death) once the writer closed and everything was read.
    """
    cdef RingCore core = reader._core
    cdef bint eof
    cdef Py_ssize_t avail, spanned = 0
    cdef uint64_t r, p, size
    cdef uint32_t state, length
    _check_record_reader(reader)
    avail = reader._readable(&eof)
    r = aring_load_relaxed_u64(&core._hdr.slots[reader._slot].position)
    while spanned < avail:
        p = r + <uint64_t> spanned
        size = _record_at(core, p, avail - spanned, &state, &length)
        spanned += <Py_ssize_t> size
        if state == ARING_RECORD_COMMITTED:
            data = PyBytes_FromStringAndSize(NULL, length)
            reader._check_usable()   # the allocation may have run a collection that closed it
            core._copy_out(p + ARING_RECORD_HEADER, PyBytes_AS_STRING(data), length)
            if reader._closed or core._closed:
                raise ClosedResourceError("the reader was closed during the copy")
            reader._take_back_views()
            reader._lent_records = 1
            reader._advance(spanned)
            return data
    if spanned:
        reader._take_back_views()
        reader._advance(spanned)
    if eof:
        raise reader._end_of_stream()
    return None
