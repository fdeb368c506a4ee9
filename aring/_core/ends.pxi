# _End: what both ends share (state checks, ownership, views, argument
# checks, waiting, closing).  WriterEnd (writer.pxi) and ReaderEnd
# (reader.pxi) move the cursors.
#
# Everything read from the header is untrusted: a cursor more than the
# capacity away from the other is reported as corruption, never used to size a
# copy or a view.

# What _End._native_stop asks a GIL-free file loop (file_loops.pxi) running on the end.
cdef enum:
    _NATIVE_GO_ON = 0
    _NATIVE_INTERRUPTED = 1   # the transfer's owner asked it to stop (cancellation)
    _NATIVE_CLOSING = 2       # the end is being closed: the loop must let go of it


cdef object _busy(str message):
    # anyio's BusyResourceError builds "Another task is already {action} this
    # resource" from its argument; ours says which end, and thread or task.
    exc = BusyResourceError("using")
    exc.args = (message,)
    return exc


cdef class _End:
    """What both ends share: state checks, ownership, views, waiting, closing."""

    def __cinit__(self, RingCore core not None, *args, **kwargs):
        # Allocate first: an allocation can run a collection, and through it
        # any Python code (another thread, a finalizer) that may close the
        # ring.  Nothing between this check and the subclass's use of the
        # header may allocate.
        self._views = []
        self._core = core
        self._kind = "end"
        self._spin_ns = _SPIN_START_NS
        core._check_open()
        core._adopt_generation()
        self._generation = aring_fork_generation()

    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil:
        return True

    cdef int _notifier_rfd(self) noexcept:
        return -1

    cdef int _notifier_wfd(self) noexcept:
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
        if self._core._closed:   # first: closing the ring closed the ends too
            raise ClosedResourceError("the ring is closed")
        if self._closed:
            raise ClosedResourceError(f"this {self._kind} is closed")
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
        cdef list kept = []
        for view in self._views:
            try:
                view.release()
            except BaseException:
                # Someone exported from it: the mapping stays alive for it, and
                # it stays listed, so a later close() can release it once free.
                kept.append(view)
        self._views = kept

    cdef int _take_back_views(self) except -1:
        """End the borrow of the views lent out, before the cursor moves past them.

        Their release may run Python code (weakref callbacks, another thread
        taking the GIL) that closes the end or the ring: looked at again after.
        """
        self._release_views()
        self._check_usable()
        return 0

    cdef object _hand_out(self, Py_ssize_t offset, Py_ssize_t n, bint writable):
        """A view lent to the caller until the next commit/consume (or close)."""
        view = self._core._view(offset, n, writable)
        if self._closed:   # by Python code run while the view was made
            view.release()
            self._check_usable()
        self._views.append(view)
        return view

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
        if self._in_native_loop and self._generation == aring_fork_generation():
            # A thread is in a GIL-free file loop moving this end's cursor: stop
            # it and wait (microseconds: one read or write) before letting go.
            self._native_stop = _NATIVE_CLOSING
            if self._notifier_wfd() >= 0:
                aring_notifier_signal(self._core._notifier, self._notifier_wfd())
            with nogil:
                while self._in_native_loop:
                    usleep(20)
        self._closed = True
        self._release_views()
        if self._core._hdr == NULL or self._generation != aring_fork_generation():
            return  # unmapped, or inherited through fork(): shared state is not ours
        self._leave()

    def _peers_are_local(self):
        """Whether the other side lives in this process (what the native file loops need)."""
        self._check_usable()
        return not self._foreign_peer()

    def _interrupt_native(self, bint stop):
        """Ask a running native file loop to stop (True), from any thread; or clear that."""
        if not stop:
            if self._native_stop == _NATIVE_INTERRUPTED:
                self._native_stop = _NATIVE_GO_ON
            return
        if self._native_stop == _NATIVE_GO_ON:
            self._native_stop = _NATIVE_INTERRUPTED
        if not self._closed and not self._core._closed and self._notifier_wfd() >= 0:
            aring_notifier_signal(self._core._notifier, self._notifier_wfd())

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
        # A native loop running at fork() runs on in the parent only: nothing
        # here is in one (close() would wait for it for ever).
        self._in_native_loop = False
        self._native_stop = _NATIVE_GO_ON
        self._owner = 0
        self._task_busy = False
        self._core._adopt_generation()
        self._take_over()
