# RingCore: one ring's shared state (mapping, control header, notifiers) and
# the operations both ends build on: free space, copies, wakeups, close.

cdef dict _NOTIFIER_CODES = {
    "eventfd": ARING_NOTIFIER_EVENTFD,
    "pipe": ARING_NOTIFIER_PIPE,
    "none": ARING_NOTIFIER_NONE,
    "fifo": ARING_NOTIFIER_FIFO,
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
    """Which strategy and notifier work here, why not others, and which strategies work
    (for capabilities())."""
    strategy, mapping_reasons, works = _probe_mapping()
    notifier, notifier_reasons = _probe_notifier()
    return strategy, notifier, "; ".join(mapping_reasons + notifier_reasons), works


# A distance of 2**63 or more between two cursors means the second is ahead.
cdef uint64_t _AHEAD = (<uint64_t> 1) << 63

# How often a side waiting on another process checks that it still lives.
PEER_CHECK_INTERVAL = 0.25

# This process as the header records the ends it holds: pid and start time,
# read again in a child of fork() (includes/process.h says why both).
cdef unsigned long _identity_generation = <unsigned long> -1
cdef uint32_t _identity_pid = 0
cdef uint64_t _identity_start = 0


cdef inline uint32_t _my_pid() noexcept:
    global _identity_generation, _identity_pid, _identity_start
    if _identity_generation != aring_fork_generation():
        _identity_pid = <uint32_t> getpid()
        _identity_start = aring_self_start()
        _identity_generation = aring_fork_generation()
    return _identity_pid


cdef inline void _record_owner(aring_owner *owner) noexcept:
    """Write who holds an end; a concurrent _read_owner never takes a half-written record."""
    cdef uint32_t odd = aring_load_acquire_u32(&owner.seq) | 1
    aring_store_seqcst_u32(&owner.seq, odd)        # being written
    owner.pid = _my_pid()
    owner.start = _identity_start
    aring_store_release_u32(&owner.seq, odd + 1)   # even again, and changed


cdef inline bint _read_owner(aring_owner *owner, uint32_t *pid, uint64_t *start) noexcept:
    """Who holds an end; False if the record was being rewritten meanwhile (look later)."""
    cdef uint32_t before = aring_load_acquire_u32(&owner.seq)
    if before & 1:
        return False
    pid[0] = aring_load_acquire_u32(&owner.pid)
    start[0] = aring_load_acquire_u64(&owner.start)
    aring_fence_seqcst()
    return aring_load_acquire_u32(&owner.seq) == before


cdef inline bint _owner_dead(aring_owner *owner) noexcept:
    """Whether the process recorded in ``owner`` is gone (never true of this process)."""
    cdef uint32_t pid
    cdef uint64_t start
    if not _read_owner(owner, &pid, &start) or pid == _my_pid():
        return False
    return aring_process_alive(pid, start) == ARING_PROCESS_DEAD


cdef inline int _scan_readers(aring_header *h, uint32_t max_readers, int skip, uint64_t w,
                              uint64_t cap, bint writer_view, uint64_t *lag) noexcept nogil:
    """The largest ``w - position`` over the active (and parked) reader slots but ``skip``.

    Stored in ``lag``; returns how many slots are active or parked (a parked
    named reader holds its bytes until it comes back), or ``-1 - slot`` for
    a slot that cannot be right (the header is shared memory: untrusted).  The
    writer's free space is ``capacity - lag``, and a joining reader starts at
    ``w - lag``.  Cursors are compared modulo 2**64.  With ``writer_view``,
    ``w`` is the writer's own cursor, so no reader may be ahead of it; a
    joining reader's ``w`` may be stale, and a reader ahead of it moved on
    since and holds nothing back.
    """
    cdef uint64_t distance
    cdef uint32_t i, state
    cdef int active = 0
    lag[0] = 0
    for i in range(max_readers):
        if <int> i == skip:
            continue
        state = aring_slot_state(aring_load_acquire_u64(&h.slots[i].word))
        if state != ARING_SLOT_ACTIVE and state != ARING_SLOT_PARKED:
            if state > ARING_SLOT_PARKED:
                return -1 - <int> i
            continue
        active += 1
        distance = w - aring_load_acquire_u64(&h.slots[i].position)
        if distance > cap:
            if distance < _AHEAD or writer_view:
                return -1 - <int> i
            continue
        if distance > lag[0]:
            lag[0] = distance
    return active


cdef Py_ssize_t _rounded_capacity(object capacity, object item_size) except -1:
    """A ring's capacity: the request checked and rounded up to pages and whole items."""
    cdef Py_ssize_t requested = _as_positive_size(capacity, "capacity")
    cdef Py_ssize_t item = _as_positive_size(item_size, "item_size")
    if item > (1 << 30):
        raise ValueError(f"item_size must be <= {1 << 30}, got {item}")
    cdef Py_ssize_t page = aring_page_size()
    cdef Py_ssize_t cap = _round_up(requested, page // _gcd(page, item) * item)
    _check_capacity(cap, requested, "capacity")
    return cap


def _ring_capacity(capacity, item_size=1):
    """What ``Ring(capacity, item_size=...)`` would hold, or the error it would raise."""
    return _rounded_capacity(capacity, item_size)


cdef class RingCore:
    """The shared state of one ring: mapping, header, notifiers.

    ``aring.Ring`` subclasses it and adds the ends; see its documentation.
    """

    def __cinit__(self, capacity, *, readers=1, item_size=1, strategy="auto", path=None,
                  notifier="auto", bint records=False, bint multi_producer=False,
                  flush_every=None, bint populate=False, bint _attach=False):
        cdef Py_ssize_t i
        self._ends = []
        self._writer_rfd = self._writer_wfd = -1
        for i in range(ARING_MAX_READERS):
            self._reader_rfd[i] = self._reader_wfd[i] = -1
        self._closed = True
        self._records = records
        self._populate = populate
        self._flush_ns = -1
        if flush_every is not None:
            if isinstance(flush_every, bool) or not isinstance(flush_every, (int, float)):
                raise TypeError(
                    f"flush_every must be None or a number of seconds, not {type(flush_every).__name__}"
                )
            if not 0 <= flush_every < 1e9:
                raise ValueError(f"flush_every must be >= 0 seconds and finite, got {flush_every}")
            if path is None:
                raise ValueError("flush_every is for ring files (path=): other rings never reach a disk")
            self._flush_ns = <long long> (flush_every * 1e9)
        if not isinstance(notifier, str):
            raise TypeError(f"notifier must be a str, not {type(notifier).__name__}")
        if path is not None:
            # A ring file: opened if it is there (persistence.pxi), else created.
            _open_file(
                self, _ring_path(path), capacity, readers, item_size, strategy, notifier,
                multi_producer, _attach,
            )
            return
        self._create(capacity, readers, item_size, strategy, None, notifier, multi_producer)

    cdef _create(self, capacity, readers, item_size, strategy, bytes path, str notifier,
                 bint multi_producer):
        """Map a new ring (and, with ``path``, give its file that name once it is whole)."""
        cdef Py_ssize_t i
        cdef aring_error e
        cdef aring_geometry *g
        cdef Py_ssize_t nreaders = (
            _as_size(readers, "readers") if not isinstance(readers, int) or readers >= 0 else -1
        )
        if not 1 <= nreaders <= ARING_MAX_READERS:
            raise ValueError(f"readers must be between 1 and {ARING_MAX_READERS}, got {readers}")
        cdef Py_ssize_t cap = _rounded_capacity(capacity, item_size)
        cdef Py_ssize_t item = item_size
        cdef Py_ssize_t page = aring_page_size()
        if notifier == "auto":
            notifier = "fifo" if path is not None else _default_notifier()
        if path is not None:
            if notifier not in ("fifo", "none"):
                raise ValueError(
                    f"a ring file's waiters are woken through FIFOs beside it: notifier must be "
                    f"'auto' or 'none' with path=, not {notifier!r}"
                )
        elif notifier not in _NOTIFIER_CODES or notifier == "fifo":
            raise ValueError(
                f"unknown notifier {notifier!r}; expected 'auto', 'eventfd', 'pipe' or 'none'"
                + (" ('fifo' is for rings with path=)" if notifier == "fifo" else "")
            )
        # The file of a path= ring gets its name only once the header below is
        # written: another process never sees it half made.
        self._buffer = DoubleMappedBuffer(
            cap, strategy=strategy, path=path, header=aring_header_bytes(nreaders), publish=False,
            populate=self._populate,
        )
        self._buffer._owner = "a Ring"
        self._hdr = <aring_header *> self._buffer._base
        self._data = self._buffer._data
        self._cap = cap
        self._item = item
        self._max_readers = nreaders
        self._mirrored = self._buffer._strategy == ARING_STRATEGY_COPY
        self._notifier = _NOTIFIER_CODES[notifier]
        self._generation = aring_fork_generation()
        try:
            if self._notifier == ARING_NOTIFIER_FIFO:
                _open_fifos(self, path)
            elif self._notifier != ARING_NOTIFIER_NONE:
                if aring_notifier_open(self._notifier, &self._writer_rfd, &self._writer_wfd, &e) < 0:
                    raise _mapping_error(&e)
                for i in range(nreaders):
                    if aring_notifier_open(
                        self._notifier, &self._reader_rfd[i], &self._reader_wfd[i], &e
                    ) < 0:
                        raise _mapping_error(&e)
        except BaseException:
            self._close_fds()
            self._buffer._owner = None
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
        g.created = <uint64_t> _time.time_ns()
        g.checksum = aring_geometry_checksum(g)
        flags = 0
        if self._records:   # RecordRing passes no item_size: its records are bytes
            flags |= ARING_FLAG_RECORDS
            if multi_producer:
                flags |= ARING_FLAG_MULTI_PRODUCER
        if path is not None:
            flags |= ARING_FLAG_PERSISTENT
            self._path = path
        g.flags = flags
        _record_owner(&self._hdr.writer)
        try:
            self._buffer.publish()
        except BaseException:
            self._close_fds()
            self._buffer._owner = None
            self._buffer.close()
            raise
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

    cdef object _view(self, Py_ssize_t offset, Py_ssize_t n, bint writable):
        """A view of n bytes of the mapping at offset, or ClosedResourceError.

        One export of the mapping is shared by every view handed out; slices
        of it keep the export (and so the mapping) alive until they are gone.
        Each allocation here can run a collection, and through it Python code
        that closes the ring: the result is only handed out if the ring is
        still open once it exists.
        """
        cdef object window, rwindow, view
        if self._window is None:
            try:
                window = memoryview(self._buffer)
            except ValueError:
                self._check_open()   # closed meanwhile: say so
                raise
            rwindow = window.toreadonly()
            if self._closed:
                rwindow.release()
                window.release()
                self._check_open()
            self._window, self._rwindow = window, rwindow
        view = (self._window if writable else self._rwindow)[offset:offset + n]
        if self._closed:
            view.release()
            self._check_open()
        return view

    cdef Py_ssize_t _space(self) except -2:
        """Free bytes for the writer, or BrokenResourceError."""
        cdef aring_header *h = self._hdr
        cdef uint64_t w = aring_load_relaxed_u64(&h.write_position.value)
        cdef uint64_t lag
        cdef int active
        if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
            # No reader yet: hold the writer back as if one sat at position 0,
            # so the first reader sees everything.
            if w > self._cap:
                raise self._corrupt(
                    f"the write position is {w} before any reader joined, past the "
                    f"capacity ({self._cap})"
                )
            return <Py_ssize_t> (self._cap - w)
        active = _scan_readers(h, self._max_readers, -1, w, self._cap, True, &lag)
        if active < 0:
            raise self._corrupt_slot(-1 - active, w)
        if active == 0:
            raise BrokenResourceError("every reader of the ring has closed")
        return <Py_ssize_t> (self._cap - lag)

    cdef object _corrupt(self, str what):
        return BrokenResourceError(
            f"the ring's control header is corrupt: {what} (another process wrote to the "
            "ring's memory, or its file was changed); the ring cannot be used"
        )

    cdef object _corrupt_slot(self, int slot, uint64_t w):
        cdef aring_slot *s = &self._hdr.slots[slot]
        return self._corrupt(
            f"reader slot {slot} is in state {aring_slot_state(aring_load_acquire_u64(&s.word))} "
            f"at position "
            f"{aring_load_acquire_u64(&s.position)}, with the write position at {w} and a "
            f"capacity of {self._cap}"
        )

    cdef int _committed(self) except -1:
        """After a commit: flush the ring file if ``flush_every`` says it is due."""
        if self._flush_ns < 0:
            return 0
        if self._flush_ns > 0 and aring_now_ns() - self._flushed_at < <uint64_t> self._flush_ns:
            return 0
        _flush(self)
        self._flushed_at = aring_now_ns()
        return 0

    cdef int _reap_dead_readers(self) except -1:
        """Free the slots of readers whose process died without closing; how many."""
        cdef aring_header *h = self._hdr
        cdef aring_slot *s
        cdef uint64_t word
        cdef uint32_t i
        cdef int reaped = 0
        for i in range(self._max_readers):
            s = &h.slots[i]
            word = aring_load_acquire_u64(&s.word)
            if aring_slot_state(word) != ARING_SLOT_ACTIVE or not _owner_dead(&s.owner):
                continue
            # Free only the claim we looked at: if the slot was taken over
            # (reattach) or freed and claimed again meanwhile, its word changed.
            # A named reader is parked instead: its position waits for it.
            if aring_cas_u64(&s.word, word, aring_slot_word(
                ARING_SLOT_PARKED if s.name[0] != 0 else ARING_SLOT_FREE, aring_slot_claims(word)
            )):
                aring_fetch_and_u64(&h.readers_waiting.value, ~((<uint64_t> 1) << i))
                aring_fetch_add_u64(&h.dead_readers.value, 1)
                reaped += 1
        return reaped

    cdef bint _foreign_readers(self) noexcept:
        cdef uint32_t i
        for i in range(self._max_readers):
            if (aring_slot_state(aring_load_acquire_u64(&self._hdr.slots[i].word)) == ARING_SLOT_ACTIVE
                    and aring_load_acquire_u32(&self._hdr.slots[i].owner.pid) != _my_pid()):
                return True
        return False

    cdef void _wake_readers(self, bint everyone) noexcept nogil:
        """After publishing: wake each sleeping reader whose wanted position is reached."""
        cdef aring_header *h = self._hdr
        cdef uint64_t mask, bit, w
        cdef int i
        # Pairs with the seq_cst fetch_or of a reader setting its bit: either
        # it sees our new cursor on its re-check, or we see its bit here.
        aring_fence_seqcst()
        mask = aring_load_relaxed_u64(&h.readers_waiting.value) & aring_slot_mask(self._max_readers)
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

    cdef void _wake_writer(self, uint64_t position) noexcept nogil:
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

    cdef void _adopt_generation(self) noexcept:
        """In a child of fork(): the parent's threads are gone, so are their in-flight counts.

        Called before this process starts using the ring (a new end, reattach()),
        so that close() here waits for this process's own GIL-free operations.
        """
        if self._generation != aring_fork_generation():
            self._generation = aring_fork_generation()
            self._inflight = 0

    cdef void _signal_all(self) noexcept:
        """Wake every waiter of this process; they look again and see why."""
        cdef Py_ssize_t i
        for i in range(self._max_readers):
            aring_notifier_signal(self._notifier, self._reader_wfd[i])
        aring_notifier_signal(self._notifier, self._writer_wfd)

    def _waiters(self):
        """Which ends are armed to sleep right now: ``{"writer": bool, "readers": [slots]}``.

        Read from the header (so it covers every process).  Tests wait on it for
        "the other thread is asleep" instead of sleeping and hoping.
        """
        self._check_open()
        cdef uint64_t mask = (aring_load_acquire_u64(&self._hdr.readers_waiting.value)
                              & aring_slot_mask(self._max_readers))
        cdef bint writer = aring_load_acquire_u32(&self._hdr.writer_waiting.flag) != 0
        return {
            "writer": writer,
            "readers": [i for i in range(self._max_readers) if mask >> i & 1],
        }

    def _layout(self):
        """Byte offsets of the control header's fields in the mapping (tests and tools).

        The header is shared memory another process may write: tests corrupt
        it through these offsets to check that the ring refuses, not crashes.
        """
        self._check_open()
        cdef char *base = <char *> self._hdr
        cdef aring_slot *first = &self._hdr.slots[0]
        return {
            "flags": <char *> &self._hdr.geometry.flags - base,
            "write_position": <char *> &self._hdr.write_position.value - base,
            "writer_waiting": <char *> &self._hdr.writer_waiting.flag - base,
            "readers_waiting": <char *> &self._hdr.readers_waiting.value - base,
            "writer_pid": <char *> &self._hdr.writer.pid - base,
            "claim_position": <char *> &self._hdr.claim_position.value - base,
            "slots": <char *> first - base,
            "slot_size": <char *> &self._hdr.slots[1] - <char *> first,
            "slot_word": <char *> &first.word - <char *> first,
            "slot_position": <char *> &first.position - <char *> first,
            "slot_pid": <char *> &first.owner.pid - <char *> first,
            "slot_start": <char *> &first.owner.start - <char *> first,
            "slot_name": <char *> &first.name - <char *> first,
            "data": self._buffer._header,
        }

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
    def dead_readers(self):
        """Reader slots this ring freed because their process died without closing them."""
        self._check_open()
        return aring_load_relaxed_u64(&self._hdr.dead_readers.value)

    @property
    def path(self):
        """The ring file's path (``path=``, ``aring.attach()``), or None."""
        return None if self._path is None else _os.fsdecode(self._path)

    @property
    def created(self):
        """When the ring was made (seconds since the epoch; a ring file keeps it)."""
        self._check_open()
        return self._hdr.geometry.created / 1e9

    @property
    def _multi_producer(self):
        self._check_open()
        return bool(aring_load_acquire_u32(&self._hdr.geometry.flags) & ARING_FLAG_MULTI_PRODUCER)

    @property
    def flush_every(self):
        """Seconds between the flushes commits make (0: every commit), or None (only flush())."""
        return None if self._flush_ns < 0 else self._flush_ns / 1e9

    def flush(self):
        """Write the ring file to disk: whatever was committed before the call is there when it returns.

        ``msync(MS_SYNC)`` of the whole file (header and data).  ValueError for
        a ring without a file (``path=``): its memory never reaches a disk.
        """
        self._check_open()
        if self._path is None:
            raise ValueError("flush() is for ring files: this ring was made without path=")
        _flush(self)

    def stats(self):
        """What the header says now: totals, the writer, every reader (position, lag, owner).

        ``written`` is every byte ever committed (a reader's ``position`` is
        every byte it consumed); ``lag`` is what a reader has yet to read;
        on a RecordRing, ``records`` and ``dropped`` count the committed records
        published and the aborted or abandoned claims passed over, and each
        reader's ``records`` the records it consumed; ``flushes`` counts this
        process's flushes to disk.
        """
        self._check_open()
        info = _describe(self._hdr, self._max_readers)
        info.update(
            kind="RecordRing" if self._records else "Ring",
            path=self.path,
            capacity=self._cap,
            item_size=self._item,
            max_readers=self._max_readers,
            created=self._hdr.geometry.created / 1e9,
            flushes=self._flushes,
        )
        return info

    def reset(self):
        """Empty the ring: every reader, parked named ones too, skips what is unread.

        Refused (``BusyResourceError``) while another process holds an end or
        while claims are open; views this process holds are released.
        """
        self._check_open()
        _reset(self)

    def remove_reader(self, name):
        """Forget the parked named reader ``name`` (KeyError if there is none).

        Its position no longer holds the writer back; ``BusyResourceError``
        while it is open.
        """
        cdef bytes bname = _reader_name(name)
        self._check_open()
        _remove_reader(self, bname)

    @property
    def buffer(self):
        """The ring's DoubleMappedBuffer (closing it is the ring's job: ``ring.close()``)."""
        return self._buffer

    def close(self):
        """Close the ring and its ends: EOF for readers, wake every waiter, unmap.

        Views from reserve()/peek() are released first; BufferError (and
        nothing closed) if views of the ring are still alive after that (a
        slice of one, or an export such as a NumPy array).  From then on the
        ring refuses new ends and calls (ClosedResourceError), also in other
        threads; threads blocked on the ring wake with ClosedResourceError; a
        copy running without the GIL in another thread is waited out before
        the memory is unmapped.
        """
        cdef _End end
        if self._closed:
            return
        if not self._take_back_memory():
            raise BufferError(
                f"cannot close the ring: {self._buffer._exports} view(s) of its memory are "
                "alive (slices of reserve()/peek() views or exports from them); release them first"
            )
        self._closed = True
        failure = None
        for end in list(self._ends):
            try:
                end.close()  # the ends still tell other processes (EOF, slot freed)
            except BaseException as exc:  # one end's error must not leave the ring mapped
                failure = failure or exc
        self._signal_all()
        if self._generation == aring_fork_generation():
            # In a child of fork() the threads that counted are gone.
            while self._inflight > 0:
                with nogil:
                    usleep(50)
        self._close_fds()
        self._buffer._owner = None
        self._buffer.close()
        self._hdr = NULL
        self._data = NULL
        if failure is not None:
            raise failure

    cdef bint _take_back_memory(self) except -1:
        """Release every view the ends lent and the export they are cut from.

        True if nothing else exports the memory now; False while slices of
        lent views (or exports from them) are alive, which keep it mapped.
        """
        cdef _End end
        for end in self._ends:
            end._release_views()
        if self._window is not None:
            self._window.release()
            self._rwindow.release()
            self._window = self._rwindow = None
        return self._buffer._exports == 0

    def _reusable(self):
        """Whether the ring can serve a new user who must see nothing of the old one.

        Every lent view is released first (using one raises ``ValueError``);
        True only if no slice of one is left and nothing but the ring holds
        its buffer (a view's ``.obj`` is the buffer: whoever kept it could map
        the new user's bytes).  The TCP streams' ring pool (``aring._ring_pool``)
        reuses a ring only then.
        """
        self._check_open()
        return self._take_back_memory() and _borrowed_refcount(<PyObject *> self._buffer) == 1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
