# Blocking waits for threads: spin briefly, then arm the waiter flag and
# sleep in poll() on the end's notifier, always with the GIL released.

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


cdef int _poll(RingCore core, int fd, double timeout) except -1:
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
    core._inflight += 1
    with nogil:
        rc = poll(&p, 1, ms)
        err = errno
    core._inflight -= 1
    if rc < 0:
        if err == EINTR:
            PyErr_CheckSignals()
            return 0
        raise OSError(err, _os.strerror(err))
    return 1 if rc > 0 else 0


cdef object _wait(_End end, Py_ssize_t need, double timeout):
    """The blocking wait of either end: arm, poll without the GIL, drain, again.

    ``timeout`` < 0 waits forever.  While the other side lives in another
    process, each poll is cut to PEER_CHECK_INTERVAL and the end looks for a
    peer that died without closing in between: it cannot wake us any more.
    """
    cdef double deadline = 0.0
    cdef double left = timeout
    cdef double slice_
    cdef RingCore core = end._core
    cdef unsigned long token
    cdef int fd
    if timeout >= 0:
        deadline = _time.monotonic() + timeout
    token = end._acquire()
    try:
        if end._spin_ns and not end._ready_nogil(need):
            _spin(end, need)
        # arm() checks first that the end and the ring are still usable: _poll
        # may have run signal handlers (Python code) that closed them.
        while end.arm(need):
            if end._peers_due():
                end._check_peers()
                continue   # a dead peer freed may be all we waited for
            if timeout >= 0:
                left = deadline - _time.monotonic()
                end._check_usable()   # time.monotonic may be Python code (patched clocks)
                if left <= 0:
                    return False
            slice_ = left
            if end._foreign_peer() and (slice_ < 0 or slice_ > PEER_CHECK_INTERVAL):
                slice_ = PEER_CHECK_INTERVAL
            fd = end._notifier_rfd()
            if _poll(core, fd, slice_):
                aring_notifier_drain(core._notifier, fd)
        return True
    finally:
        end._release(token)


def drain_notifier(int fd, str kind):
    """Reset a notifier ``fd`` of ``kind`` ("eventfd" or "pipe") after it fired.

    The event-loop backends call this on their own duplicates of an end's fd.
    """
    aring_notifier_drain(_NOTIFIER_CODES[kind], fd)
