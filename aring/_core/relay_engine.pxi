# The relay engine's Python face (the C side and its ownership rules are in
# includes/relay_engine.h): RelayEngine owns the epoll thread, and
# EngineConnection one relayed connection's two rings.  A connection object
# keeps its engine alive, and its memory is freed only once the engine has
# published it, so no path from Python can free or close anything the thread
# still uses.

import threading as _threading

RELAY_ENGINE_AVAILABLE = bool(ARING_HAVE_RELAY_ENGINE)


cdef class RelayEngine:
    """One thread forwarding many connections in epoll; see aring._relay.

    The thread starts with the engine and runs until ``stop()``; it holds a
    reference to the engine, so the engine's fds stay open while it runs.
    """

    cdef aring_engine _e
    cdef bint _initialized
    cdef unsigned long _generation
    cdef object _thread

    def __cinit__(self, Py_ssize_t budget_regions=8):
        cdef aring_error e
        if budget_regions < 1:
            raise ValueError(f"budget_regions must be >= 1, got {budget_regions}")
        if aring_engine_init(&self._e, <uint64_t> budget_regions, &e) < 0:
            raise _mapping_error(&e)
        self._initialized = True
        self._generation = aring_fork_generation()
        self._thread = _threading.Thread(target=self._run, name="aring-relay-engine", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            aring_engine_stop(&self._e)
            with nogil:
                aring_engine_run(&self._e)   # leaves at once: refuses every start
            raise

    def __dealloc__(self):
        # The running thread holds a reference: reached only once it has left
        # (or never ran), and every EngineConnection (which holds one too) is gone.
        if self._initialized:
            aring_engine_destroy(&self._e)

    def _run(self):
        """The thread's body: forwards until stop(); OSError if epoll failed."""
        cdef int error
        with nogil:
            error = aring_engine_run(&self._e)
        if error:
            raise OSError(error, _os.strerror(error))

    cdef int _check_process(self) except -1:
        if aring_fork_generation() != self._generation:
            raise ForkedError("this relay engine's thread runs in the parent process")
        return 0

    @property
    def done_fd(self):
        """Readable when connections have ended: call finished()."""
        return self._e.done_fd

    @property
    def running(self):
        """Whether the thread still takes connections."""
        return bool(aring_engine_accepting(&self._e))

    def finished(self):
        """Ids of connections that ended since the last call (see EngineConnection.id)."""
        cdef aring_engine_conn *batch[64]
        cdef size_t n, i
        self._check_process()
        done = []
        while True:
            n = aring_engine_take_done(&self._e, batch, 64)
            for i in range(n):
                done.append(<uint64_t> <uintptr_t> batch[i])
            if n < 64:
                return done

    def stop(self):
        """Ask the thread to end every connection (ESHUTDOWN) and leave; returns at once."""
        if aring_fork_generation() == self._generation:
            aring_engine_stop(&self._e)

    def join(self, timeout=None):
        """Wait for the thread to leave (after stop())."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


cdef class EngineConnection:
    """One relayed connection: two rings of ``capacity`` bytes, one per direction.

    ``double_map=False`` (for tests) maps each ring once: every recv and send
    then stops at the wrap, as where double mapping fails.
    ``start(fd0, fd1)`` hands the two sockets to the engine, which then moves
    fd0 -> fd1 and fd1 -> fd0 until both directions ended (each end is passed
    on as a half-close), a peer failed, or ``abort()``.  Until ``finished``
    the caller must not close either socket.
    """

    cdef RelayEngine _engine
    cdef aring_engine_conn *_c
    cdef bint _started

    def __cinit__(self, RelayEngine engine not None, capacity, *, bint double_map=True):
        cdef aring_error e
        cdef Py_ssize_t cap = _rounded_capacity(capacity, 1)
        engine._check_process()
        self._engine = engine
        self._c = aring_engine_conn_new(<size_t> cap, double_map, &e)
        if self._c == NULL:
            raise _mapping_error(&e)

    def __dealloc__(self):
        if self._c == NULL:
            return
        if aring_fork_generation() != self._engine._generation:
            return   # the thread is in the parent: leak rather than free what it may use
        with nogil:
            aring_engine_abort(&self._engine._e, self._c)
        if aring_engine_releasable(&self._engine._e, self._c):
            aring_engine_conn_free(self._c)
        self._c = NULL

    cdef aring_engine_conn *_live(self) except NULL:
        if self._c == NULL:
            raise ClosedResourceError("this relayed connection was released")
        return self._c

    @property
    def id(self):
        """What RelayEngine.finished() reports when this connection ends."""
        return <uint64_t> <uintptr_t> self._live()

    @property
    def capacity(self):
        return self._live().cap

    @property
    def mirrored(self):
        """Whether the rings are double-mapped (else each region stops at the wrap)."""
        return bool(self._live().mirrored)

    def start(self, int fd0, int fd1):
        cdef aring_engine_conn *c = self._live()
        self._engine._check_process()
        if fd0 < 0 or fd1 < 0 or fd0 == fd1:
            raise ValueError(f"start needs two distinct open fds, got {fd0} and {fd1}")
        if aring_engine_start(&self._engine._e, c, fd0, fd1) < 0:
            if errno == ESHUTDOWN:
                raise ClosedResourceError("the relay engine has stopped")
            if errno == EALREADY:
                raise BusyResourceError("this connection was started already")
            if errno == EINVAL:
                raise ValueError("the relay engine needs non-blocking sockets (sock.setblocking(False))")
            raise OSError(errno, f"start: fd {fd0} or {fd1}: {_os.strerror(errno)}")
        self._started = True

    def abort(self):
        """End the connection if it still runs; returns once the engine let go of it."""
        cdef aring_engine_conn *c = self._c
        if c == NULL:
            return   # released: the engine had let go of it
        self._engine._check_process()
        with nogil:
            aring_engine_abort(&self._engine._e, c)

    @property
    def finished(self):
        """Whether the engine let go of it (then ``error`` says why it ended)."""
        return bool(aring_engine_let_go(&self._engine._e, self._live()))

    @property
    def error(self):
        """0 if both directions ended cleanly, else the errno that ended it
        (ECANCELED: abort(), ESHUTDOWN: the engine stopped); None while running."""
        cdef aring_engine_conn *c = self._live()
        if not self._started or not aring_engine_let_go(&self._engine._e, c):
            return None
        return c.error

    def counters(self):
        """(bytes fd0->fd1, bytes fd1->fd0, regions sent, sends refused for now,
        wake-ups, passes), both directions: safe to read while it runs."""
        cdef aring_engine_conn *c = self._live()
        return (
            aring_engine_load(&c.dir[0].bytes),
            aring_engine_load(&c.dir[1].bytes),
            aring_engine_load(&c.dir[0].regions) + aring_engine_load(&c.dir[1].regions),
            aring_engine_load(&c.dir[0].waits) + aring_engine_load(&c.dir[1].waits),
            aring_engine_load(&c.wakeups),
            aring_engine_load(&c.steps),
        )

    def release(self):
        """Free the rings now; refused while the engine still runs the connection."""
        if self._c == NULL:
            return
        if not aring_engine_releasable(&self._engine._e, self._c):
            raise BusyResourceError("the relay engine still runs this connection: abort() first")
        aring_engine_conn_free(self._c)
        self._c = NULL
