# pump() to and fill() from a regular file, in C: the worker thread moves
# each region with one write(2)/read(2), moves the cursor and sleeps on the
# notifier without ever taking the GIL, so it never waits for the other
# side's thread to hand the GIL over (that hand-over, not the copies, bounded
# the Python worker loops).
#
# Safety: a loop holds the ring's in-flight count (close() of the ring waits
# it out, the memory stays mapped) and its end's _in_native_loop flag
# (close() of the end, from any thread, stops it and waits before the slot
# is freed or end of stream published, so the loop never moves a cursor that
# is no longer ours).  It reads the header as untrusted, as _readable and
# _space do.

# Why a _pump_to_fd or _fill_from_fd call returned (its last result).
cdef enum:
    _PUMP_END = 1        # pump: the writer closed and every byte was written; fill: EOF
    _PUMP_LIMIT = 2      # moved at least ``limit`` bytes
    _PUMP_TIMEOUT = 3    # ``timeout`` seconds passed
    _PUMP_STOPPED = 4    # _interrupt_native(True)
    _PUMP_FAILED = 5     # the system call failed: returned as -errno
    _PUMP_CORRUPT = 6    # the header's cursors are more than the capacity apart
    _PUMP_IDLE = 7       # wrote, then found nothing more (asked for with ``until_idle``)
    _PUMP_BROKEN = 8     # fill: every reader has closed
    _PUMP_MID_ITEM = 9   # fill: the file ended inside an item
    _PUMP_PEER = 10      # the other side now lives in another process: finish in Python,
                         # whose wait() watches for it dying without closing

PUMP_END = _PUMP_END
PUMP_LIMIT = _PUMP_LIMIT
PUMP_TIMEOUT = _PUMP_TIMEOUT
PUMP_STOPPED = _PUMP_STOPPED
PUMP_IDLE = _PUMP_IDLE
PUMP_MID_ITEM = _PUMP_MID_ITEM
PUMP_PEER = _PUMP_PEER

# A sleeping loop looks this often whether the other side moved to another
# process (a forked child that reattached, or joined): only then can it die
# without closing, and only wait() checks on that.
cdef int _PEER_CHECK_MS = <int> (PEER_CHECK_INTERVAL * 1000)


cdef inline bint _foreign_reader(aring_header *h, uint32_t max_readers, uint32_t me) noexcept nogil:
    cdef uint32_t i
    for i in range(max_readers):
        if (aring_slot_state(aring_load_acquire_u64(&h.slots[i].word)) == ARING_SLOT_ACTIVE
                and aring_load_acquire_u32(&h.slots[i].owner.pid) != me):
            return True
    return False


cdef int _pump_loop(ReaderEnd reader, RingCore core, int fd, int rfd, Py_ssize_t limit,
                    uint64_t deadline, bint until_idle, uint32_t me, Py_ssize_t *counts,
                    int *failure) noexcept nogil:
    """The loop of _pump_to_fd, without the GIL; ``counts``: bytes, regions, write calls."""
    cdef aring_header *h = core._hdr
    cdef aring_slot *slot = &h.slots[reader._slot]
    cdef uint64_t bit = (<uint64_t> 1) << reader._slot
    cdef uint64_t cap = <uint64_t> core._cap
    cdef uint64_t item = <uint64_t> core._item
    cdef uint64_t w, r, avail
    cdef Py_ssize_t done, more
    cdef bint closed
    cdef int rc, ms
    cdef uint64_t now
    cdef pollfd p
    while True:
        if reader._native_stop or reader._closed or core._closed:
            return _PUMP_STOPPED
        # Flags before the cursor, as _readable: a closed writer's cursor is final.
        closed = (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_WRITER_CLOSED) != 0
        w = aring_load_acquire_u64(&h.write_position.value)
        r = aring_load_relaxed_u64(&slot.position)
        avail = w - r
        if avail > cap:
            return _PUMP_CORRUPT
        avail -= avail % item
        if avail == 0:
            if closed:
                return _PUMP_END
            if until_idle and counts[0]:
                return _PUMP_IDLE
            # Arm (as ReaderEnd.arm), look again, then sleep on the notifier.
            aring_store_release_u64(&slot.wake_at, r + item)
            aring_fetch_or_u64(&h.readers_waiting.value, bit)
            if (aring_load_acquire_u64(&h.write_position.value) - r >= item
                    or aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_WRITER_CLOSED
                    or reader._native_stop or reader._closed or core._closed):
                continue
            ms = _PEER_CHECK_MS
            if deadline:
                now = aring_now_ns()
                if now >= deadline:
                    return _PUMP_TIMEOUT
                if deadline - now < <uint64_t> ms * 1_000_000:
                    ms = <int> ((deadline - now + 999_999) // 1_000_000)
            p.fd = rfd
            p.events = POLLIN
            p.revents = 0
            rc = poll(&p, 1, ms)
            if rc == 0:
                if aring_load_acquire_u32(&h.writer.pid) != me:
                    return _PUMP_PEER
                continue   # the deadline, if any, is looked at above
            if rc < 0:
                if errno == EINTR:
                    continue
                failure[0] = errno
                return _PUMP_FAILED
            aring_notifier_drain(core._notifier, rfd)
            continue
        done = write(fd, core._data + <Py_ssize_t> (r % cap), <size_t> avail)
        counts[2] += 1
        if done < 0:
            if errno == EINTR:
                continue
            failure[0] = errno
            return _PUMP_FAILED
        while <uint64_t> done % item:  # a partial item: finish it before it leaves the ring
            more = write(fd, core._data + <Py_ssize_t> ((r + <uint64_t> done) % cap),
                         <size_t> (item - <uint64_t> done % item))
            counts[2] += 1
            if more < 0:
                if errno == EINTR:
                    continue
                failure[0] = errno
                done -= <Py_ssize_t> (<uint64_t> done % item)
                aring_store_release_u64(&slot.position, r + <uint64_t> done)
                core._wake_writer(r + <uint64_t> done)
                counts[0] += done
                return _PUMP_FAILED
            done += more
        aring_store_release_u64(&slot.position, r + <uint64_t> done)
        core._wake_writer(r + <uint64_t> done)
        counts[0] += done
        counts[1] += 1
        if counts[0] >= limit:
            return _PUMP_LIMIT
        if deadline and aring_now_ns() >= deadline:
            return _PUMP_TIMEOUT  # also while bytes keep coming: a timed sync is due


def _pump_to_fd(ReaderEnd reader not None, int fd, Py_ssize_t limit, double timeout,
                bint until_idle=False):
    """Write each readable region to ``fd`` (one write(2) each) until a reason to stop.

    Runs in the calling thread, which it makes the reader's user, without the
    GIL.  Stops at end of stream (PUMP_END), once ``limit`` bytes were written
    (PUMP_LIMIT), once ``timeout`` seconds passed (< 0: never), writing or
    waiting (PUMP_TIMEOUT), with ``until_idle`` once it wrote and the ring is
    empty (PUMP_IDLE: a timed sync's clock starts), when
    ``reader._interrupt_native(True)`` is called (PUMP_STOPPED), or when the
    writer turns out to live in another process (PUMP_PEER: the caller goes
    on with ``wait()``, which notices a writer that died without closing;
    also at once if it already does).  ClosedResourceError if the
    reader or the ring was closed meanwhile.  Returns ``(bytes, regions,
    write calls, why)``, ``why`` the negative errno of a failed write(2) (the
    bytes before it were consumed and are counted).
    """
    cdef RingCore core = reader._core
    cdef Py_ssize_t counts[3]
    cdef int failure = 0, why = 0, rfd
    cdef uint32_t me
    cdef uint64_t deadline = 0
    cdef bint eof
    cdef unsigned long token
    if fd < 0:
        raise ValueError(f"fd must be >= 0, got {fd}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if timeout >= 0:
        deadline = aring_now_ns() + <uint64_t> (min(timeout, 86400.0) * 1e9) + 1
    token = reader._acquire()
    try:
        reader._check_notifier()
        if reader._foreign_peer():   # it moved since the caller looked: its loop takes over
            return 0, 0, 0, _PUMP_PEER
        reader._take_back_views()   # no view of ours may see bytes the loop releases
        rfd = reader._notifier_rfd()
        me = _my_pid()
        counts[0] = counts[1] = counts[2] = 0
        core._inflight += 1
        reader._in_native_loop = True
        with nogil:
            why = _pump_loop(reader, core, fd, rfd, limit, deadline, until_idle, me, counts,
                             &failure)
            reader._in_native_loop = False
        core._inflight -= 1
    finally:
        reader._release(token)
    if why == _PUMP_FAILED:
        why = -failure
    elif why == _PUMP_CORRUPT:
        reader._readable(&eof)   # raises the corruption error with its figures
        raise core._corrupt(f"reader slot {reader._slot}: cursors more than the capacity apart")
    elif why == _PUMP_STOPPED and (
        reader._native_stop == _NATIVE_CLOSING or reader._closed or core._closed
    ):
        core._check_open()
        raise ClosedResourceError("the reader was closed during the pump")
    return counts[0], counts[1], counts[2], why


cdef inline int _fill_space(RingCore core, aring_header *h, uint64_t w,
                            uint64_t *space) noexcept nogil:
    """The writer's free space (as RingCore._space); 0, or why there is none to have."""
    cdef uint64_t cap = <uint64_t> core._cap
    cdef uint64_t lag
    cdef int active
    if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
        if w > cap:
            return _PUMP_CORRUPT
        space[0] = cap - w   # no reader yet: as if one sat at 0
        return 0
    active = _scan_readers(h, core._max_readers, -1, w, cap, True, &lag)
    if active < 0:
        return _PUMP_CORRUPT
    if active == 0:
        return _PUMP_BROKEN
    space[0] = cap - lag
    return 0


cdef int _fill_loop(WriterEnd writer, RingCore core, DoubleMappedBuffer buffer, int fd, int rfd,
                    Py_ssize_t limit, uint32_t me, Py_ssize_t *held, Py_ssize_t *counts,
                    int *failure) noexcept nogil:
    """The loop of _fill_from_fd, without the GIL; ``counts``: bytes committed, regions, reads."""
    cdef aring_header *h = core._hdr
    cdef uint64_t cap = <uint64_t> core._cap
    cdef uint64_t item = <uint64_t> core._item
    cdef uint64_t w, space, total, whole
    cdef Py_ssize_t got
    cdef int rc
    cdef pollfd p
    while True:
        if writer._native_stop or writer._closed or core._closed:
            return _PUMP_STOPPED
        w = aring_load_relaxed_u64(&h.write_position.value)
        rc = _fill_space(core, h, w, &space)
        if rc:
            return rc
        if space <= <uint64_t> held[0]:
            # Arm (as WriterEnd.arm) for one byte past what is held, look again, sleep.
            aring_store_release_u64(&h.writer_waiting.wake_at, w + <uint64_t> held[0] + 1 - cap)
            aring_exchange_u32(&h.writer_waiting.flag, 1)
            rc = _fill_space(core, h, w, &space)
            if rc:
                return rc
            if (space > <uint64_t> held[0] or writer._native_stop or writer._closed
                    or core._closed):
                continue
            p.fd = rfd
            p.events = POLLIN
            p.revents = 0
            rc = poll(&p, 1, _PEER_CHECK_MS)
            if rc < 0 and errno != EINTR:
                failure[0] = errno
                return _PUMP_FAILED
            if rc > 0:
                aring_notifier_drain(core._notifier, rfd)
            elif rc == 0 and _foreign_reader(h, core._max_readers, me):
                return _PUMP_PEER
            continue
        got = read(fd, core._data + <Py_ssize_t> ((w + <uint64_t> held[0]) % cap),
                   <size_t> (space - <uint64_t> held[0]))
        counts[1] += 1   # a region handed to read(2), as TransferStats counts them
        counts[2] += 1
        if got < 0:
            if errno == EINTR:
                continue
            failure[0] = errno
            return _PUMP_FAILED
        if got == 0:
            return _PUMP_MID_ITEM if held[0] else _PUMP_END
        total = <uint64_t> held[0] + <uint64_t> got
        whole = total - total % item
        held[0] = <Py_ssize_t> (total - whole)
        if whole:
            # The copy strategy's mirror: the held bytes too, which may sit past
            # the end and must reappear at the start where the next region begins.
            buffer._mirror(<Py_ssize_t> (w % cap), <Py_ssize_t> total)
            aring_store_release_u64(&h.write_position.value, w + whole)
            core._wake_readers(False)
            counts[0] += <Py_ssize_t> whole
            if counts[0] >= limit:
                return _PUMP_LIMIT


def _fill_from_fd(WriterEnd writer not None, int fd, Py_ssize_t limit, Py_ssize_t held=0):
    """Read ``fd`` into the ring's free space (one read(2) per region) until a reason to stop.

    The mirror of _pump_to_fd, for ``fill`` from a regular file: in the
    calling thread, without the GIL.  ``held`` bytes of an unfinished item
    wait uncommitted at the start of the free space (from the last call);
    only whole items are committed.  Stops at the end of the file
    (PUMP_END), once ``limit`` bytes were committed (PUMP_LIMIT), or on
    ``writer._interrupt_native(True)`` (PUMP_STOPPED); BrokenResourceError
    when every reader closed, IncompleteRead-worthy PUMP_MID_ITEM when the
    file ends inside an item, PUMP_PEER when a reader in another process
    joined (the caller goes on with ``wait()``, which notices one that died
    without closing), ClosedResourceError if the writer or ring was closed
    meanwhile.  Returns ``(bytes committed, regions, read calls, held,
    why)``, ``why`` the negative errno of a failed read(2).
    """
    cdef RingCore core = writer._core
    cdef DoubleMappedBuffer buffer = core._buffer
    cdef Py_ssize_t counts[3]
    cdef int failure = 0, why = 0, rfd
    cdef uint32_t me
    cdef unsigned long token
    if fd < 0:
        raise ValueError(f"fd must be >= 0, got {fd}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    token = writer._acquire()
    try:
        writer._check_notifier()
        if held < 0 or held >= core._item:
            raise ValueError(f"held must be between 0 and the item size - 1, got {held}")
        if writer._foreign_peer():   # one joined since the caller looked: its loop takes over
            return 0, 0, 0, held, _PUMP_PEER
        writer._take_back_views()   # no view of ours may see bytes we overwrite
        writer._reserved = 0
        rfd = writer._notifier_rfd()
        me = _my_pid()
        counts[0] = counts[1] = counts[2] = 0
        core._inflight += 1
        writer._in_native_loop = True
        with nogil:
            why = _fill_loop(writer, core, buffer, fd, rfd, limit, me, &held, counts, &failure)
            writer._in_native_loop = False
        core._inflight -= 1
    finally:
        writer._release(token)
    if why == _PUMP_FAILED:
        why = -failure
    elif why == _PUMP_CORRUPT:
        core._space()   # raises the corruption error with its figures
        raise core._corrupt("the write position or a reader slot is out of range")
    elif why == _PUMP_BROKEN:
        raise BrokenResourceError("every reader of the ring has closed")
    elif why == _PUMP_STOPPED and (
        writer._native_stop == _NATIVE_CLOSING or writer._closed or core._closed
    ):
        core._check_open()
        raise ClosedResourceError("the writer was closed during the fill")
    return counts[0], counts[1], counts[2], held, why
