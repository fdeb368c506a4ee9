# read(2)/write(2) between a file descriptor and the ring's memory: the
# zero-copy path of pump, fill and the relay.  One system call per region, the
# GIL released around large ones (the in-flight count keeps the memory mapped).


cdef Py_ssize_t _fd_call(RingCore core, bint reading, int fd, char *at, Py_ssize_t n) except -2:
    """read(fd) into ``at`` or write(fd) from it: bytes moved, or -1 if it would block.

    Other failures raise the OSError subclass for the errno (BrokenPipeError,
    ConnectionResetError...), as Python's own socket and os calls do.
    """
    cdef ssize_t done
    cdef int err
    if n >= NOGIL_COPY:
        core._inflight += 1
        with nogil:
            done = read(fd, at, n) if reading else write(fd, at, n)
            err = errno
        core._inflight -= 1
    else:
        done = read(fd, at, n) if reading else write(fd, at, n)
        err = errno
    if done < 0 and err == EINTR:
        PyErr_CheckSignals()   # a handler may close the ring: looked at next
    # Another thread, or a signal handler, may have closed the ring meanwhile:
    # the caller must not touch the header again.
    core._check_open()
    if done >= 0:
        return done
    if err == EAGAIN or err == EWOULDBLOCK or err == EINTR:
        return -1
    raise OSError(err, _os.strerror(err))


# What ended a _forward call (its third result).
cdef enum:
    _FORWARD_BUDGET = 1      # moved ``budget`` bytes: yield to the loop, then call again
    _FORWARD_STALLED = 2     # neither side can move now: wait for one (see _forward)
    _FORWARD_SOURCE_END = 4  # the source reached its end (read returned 0)

FORWARD_BUDGET = _FORWARD_BUDGET
FORWARD_STALLED = _FORWARD_STALLED
FORWARD_SOURCE_END = _FORWARD_SOURCE_END


def _forward(WriterEnd writer not None, ReaderEnd reader not None, int src_fd, int dst_fd,
             Py_ssize_t budget):
    """Move bytes src_fd -> ring -> dst_fd in a loop of read(2)/write(2) calls, in C.

    ``writer`` and ``reader`` are the two ends of one ring of bytes, used by
    this caller only; ``src_fd`` -1 only writes (the source already ended).  Each turn reads into all free space and writes all
    readable bytes (one call each, the GIL released around large ones), until
    ``budget`` bytes were written or a turn moves nothing.  Returns
    ``(received, sent, why, regions)`` where ``why`` holds FORWARD_* bits and
    ``regions`` counts the writes that moved bytes; STALLED with
    bytes still readable means the destination takes no more now, with none
    readable that the source has nothing now.  A relay pays the interpreter
    once per call instead of once per region.
    """
    cdef RingCore core = writer._core
    cdef Py_ssize_t received = 0, sent = 0, regions = 0, got, put, space, avail
    cdef uint64_t w
    cdef bint eof
    cdef int why = 0
    cdef unsigned long wtoken, rtoken
    if reader._core is not core:
        raise ValueError("_forward needs the two ends of one ring")
    if core._item != 1:
        raise ValueError("_forward needs a ring of bytes (item_size 1)")
    wtoken = writer._acquire()
    try:
        rtoken = reader._acquire()
        try:
            while True:
                got = put = 0
                if src_fd >= 0 and not why & _FORWARD_SOURCE_END:
                    space = core._space()
                    if space:
                        writer._take_back_views()
                        writer._reserved = 0
                        w = aring_load_relaxed_u64(&core._hdr.write_position.value)
                        got = _fd_call(
                            core, True, src_fd, core._data + <Py_ssize_t> (w % core._cap), space
                        )
                        if writer._closed:
                            raise ClosedResourceError("the writer was closed during the read")
                        if got == 0:
                            why |= _FORWARD_SOURCE_END
                        elif got > 0:
                            if core._mirrored:
                                core._buffer._mirror(<Py_ssize_t> (w % core._cap), got)
                            aring_store_release_u64(&core._hdr.write_position.value, w + got)
                            core._wake_readers(False)
                            received += got
                avail = reader._readable(&eof)
                if avail:
                    put = _fd_call(
                        core, False, dst_fd,
                        core._data + <Py_ssize_t> (core._hdr.slots[reader._slot].position % core._cap),
                        avail,
                    )
                    if reader._closed:
                        raise ClosedResourceError("the reader was closed during the write")
                    if put > 0:
                        reader._take_back_views()
                        reader._advance(put)
                        sent += put
                        regions += 1
                if got <= 0 and put <= 0:
                    why |= _FORWARD_STALLED
                    break
                if sent >= budget:
                    why |= _FORWARD_BUDGET
                    break
        finally:
            reader._release(rtoken)
    finally:
        writer._release(wtoken)
    return received, sent, why, regions
