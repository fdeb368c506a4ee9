# DoubleMappedBuffer: N bytes mapped twice, back to back, and the probe of
# which strategies this platform can map.

cdef dict _STRATEGY_CODES = {
    "memfd": ARING_STRATEGY_MEMFD,
    "shm": ARING_STRATEGY_SHM,
    "file": ARING_STRATEGY_FILE,
    "copy": ARING_STRATEGY_COPY,
}
cdef dict _STRATEGY_NAMES = {v: k for k, v in _STRATEGY_CODES.items()}

# Failures that mean "this platform cannot do that": auto moves on to the next
# strategy.  Anything else (ENOMEM, EMFILE, ENOSPC...) is the caller's problem
# to see, not to be papered over by a slower fallback.
cdef frozenset _UNSUPPORTED = frozenset(
    {_errno.ENOSYS, _errno.EINVAL, _errno.EPERM, _errno.EACCES, _errno.EOPNOTSUPP}
)


cdef tuple _probe_mapping():
    """The best double-mapping strategy here, why faster ones failed, and which strategies work."""
    why = {}
    works = {}
    for name in ("memfd", "shm", "copy"):
        try:
            buf = DoubleMappedBuffer(1, strategy=name)
        except MappingError as exc:
            why[name] = f"{name}: {exc}"
            works[name] = False
            continue
        view = memoryview(buf)
        view[0] = 0x5A
        works[name] = view[buf.size] == 0x5A or name == "copy"
        view.release()
        buf.close()
        if not works[name]:
            why[name] = f"{name}: the second view does not alias the first"
    best = next((name for name in ("memfd", "shm") if works[name]), "copy")
    faster = ("memfd", "shm")[: ("memfd", "shm", "copy").index(best)]
    return best, [why[name] for name in faster], works


cdef object _fallback_logged = set()


cdef void _log_fallback(str reason) noexcept:
    """Say once per process why strategy="auto" passed over a faster mapping."""
    if reason in _fallback_logged:
        return
    _fallback_logged.add(reason)
    try:
        _logging.getLogger("aring").warning(
            "strategy='auto' fell back to a slower mapping: %s", reason
        )
    except Exception:
        pass


def _check_ring_file(fd, path):
    """MappingError unless ``fd`` (opened without following links) is a regular
    file of this user that nobody else may read or write."""
    st = _os.fstat(fd)
    where = _os.fsdecode(path)
    if not _stat.S_ISREG(st.st_mode):
        raise MappingError(_errno.EINVAL, f"open: {where!r} is not a regular file")
    if st.st_uid != _os.geteuid():
        raise MappingError(
            _errno.EPERM,
            f"open: {where!r} belongs to uid {st.st_uid}, not to this user (uid {_os.geteuid()})",
        )
    if st.st_mode & 0o077:
        raise MappingError(
            _errno.EPERM,
            f"open: others may read or write {where!r} (mode {st.st_mode & 0o777:04o}); "
            "a ring file must be 0600",
        )


cdef int _refuse_existing(bytes path) except -1:
    """MappingError naming what is at ``path`` already (a ring file is never opened in place yet)."""
    try:
        fd = _os.open(path, _os.O_RDONLY | _os.O_NOFOLLOW | _os.O_NONBLOCK | _os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        if exc.errno == _errno.ELOOP:
            raise MappingError(
                _errno.ELOOP,
                f"open: {_os.fsdecode(path)!r} is a symbolic link; aring does not follow links",
            ) from None
        return 0   # the creation below reports it (no such directory, no permission...)
    try:
        _check_ring_file(fd, path)
    finally:
        _os.close(fd)
    raise MappingError(_errno.EEXIST, f"open: a file already exists at {_os.fsdecode(path)!r}")


cdef class DoubleMappedBuffer:
    """``size`` bytes of memory mapped twice, back to back.

    The buffer protocol exposes the 2*size window: byte ``i`` and byte
    ``i + size`` are the same memory, so any region of up to ``size`` bytes
    starting in the first half is one contiguous view.  With the ``"copy"``
    strategy the two halves are separate memory that ``mirror()`` keeps equal.

    ``header`` bytes (page-rounded) are mapped once before the window; the ring
    keeps its control header there so other processes see it.

    ``populate=True`` faults every page in at creation (``MAP_POPULATE``, or
    a read of each page where that is missing): the memory is allocated (or a
    file's pages read in) now, not by the first pass of the writer.

    ``path`` names a new file to keep the memory in (``strategy="file"``).  It
    is created owner-only (0600) and appears at ``path`` only once complete
    (with ``publish=False``, only once ``publish()`` is called, so the caller
    can initialise it first); nothing existing at ``path`` is ever opened,
    followed or replaced.
    """

    def __cinit__(self, size, *, strategy="auto", path=None, header=0, bint publish=True,
                  int fd=-1, bint populate=False):
        self._fd = -1
        self._populate = populate
        self._base = NULL
        self._closed = True
        self._fallback_reason = ""
        cdef Py_ssize_t page = aring_page_size()
        cdef Py_ssize_t n = _as_positive_size(size, "size")
        cdef Py_ssize_t hdr = _as_size(header, "header")
        cdef aring_error e
        if not isinstance(strategy, str):
            raise TypeError(f"strategy must be a str, not {type(strategy).__name__}")
        if strategy != "auto" and strategy not in _STRATEGY_CODES:
            raise ValueError(
                f"unknown strategy {strategy!r}; expected 'auto', 'memfd', 'shm', 'file' or 'copy'"
            )
        if path is not None:
            if strategy == "auto":
                strategy = "file"
            elif strategy != "file":
                raise ValueError(f"path= needs strategy='file' (or 'auto'), not {strategy!r}")
            path = _os.fsencode(path)
            if b"\0" in path:
                raise ValueError("path must not contain a NUL byte")
            if not path:
                raise ValueError("path must not be empty")
        self._size = _round_up(n, page)
        _check_capacity(self._size, n, "size")
        self._header = _round_up(hdr, page)
        self._total = self._header + 2 * self._size
        if fd >= 0:
            # An existing ring file, opened and checked by the caller (persistence.pxi):
            # mapped as it is; the descriptor is ours from here on, also on failure.
            if aring_map_double_populated(fd, self._header, self._size, populate, &self._base, &e) < 0:
                aring_close_fd(fd)
                raise _mapping_error(&e)
            if populate:
                aring_touch_pages(self._base, self._header + self._size, aring_page_size())
            self._fd = fd
            self._data = self._base + self._header
            self._strategy = ARING_STRATEGY_FILE
            self._closed = False
            return
        if strategy == "auto":
            reasons = []
            for name in ("memfd", "shm", "copy"):
                try:
                    self._map(_STRATEGY_CODES[name], None)
                except MappingError as exc:
                    if exc.errno not in _UNSUPPORTED:
                        raise
                    reasons.append(f"{name}: {exc}")
                    continue
                break
            self._fallback_reason = "; ".join(reasons)
            if reasons:
                _log_fallback(self._fallback_reason)
        else:
            self._map(_STRATEGY_CODES[strategy], path)
        self._closed = False
        if publish:
            self.publish()

    cdef _map(self, int code, bytes path):
        cdef aring_error e
        cdef int fd = -1
        cdef int rc
        cdef char *base = NULL
        cdef size_t file_size = self._header + self._size
        cdef char tmpname[4096]
        if code == ARING_STRATEGY_COPY:
            if aring_map_copy_populated(self._total, self._populate, &base, &e) < 0:
                raise _mapping_error(&e)
        else:
            if code == ARING_STRATEGY_MEMFD:
                rc = aring_create_memfd(file_size, &fd, &e)
            elif code == ARING_STRATEGY_SHM:
                rc = aring_create_shm(file_size, &fd, &e)
            elif path is None:
                rc = aring_create_temp_file(_os.fsencode(_tempfile.gettempdir()), file_size, &fd, &e)
            else:
                _refuse_existing(path)
                rc = aring_create_unnamed(
                    _os.path.dirname(path) or b".", file_size, &fd, tmpname, sizeof(tmpname), &e
                )
                if rc == 0:
                    self._path = path
                    self._tmpname = tmpname
            if rc < 0:
                raise _mapping_error(&e)
            if aring_map_double_populated(fd, self._header, self._size, self._populate, &base, &e) < 0:
                aring_close_fd(fd)
                self._discard_unpublished()
                raise _mapping_error(&e)
        self._fd = fd
        self._base = base
        self._data = base + self._header
        self._strategy = code
        if self._populate:
            aring_touch_pages(base, self._total if code == ARING_STRATEGY_COPY else self._header + self._size,
                              aring_page_size())

    def publish(self):
        """Give a new ``path=`` file its name (done at creation unless ``publish=False``).

        ``MappingError`` (EEXIST) if a file appeared at the path meanwhile: of
        several processes creating the same path, exactly one wins.  A no-op
        without ``path`` or once published.
        """
        cdef aring_error e
        if self._path is None:
            return
        if self._closed:
            raise ValueError("the DoubleMappedBuffer is closed")
        path, self._path = self._path, None
        tmpname, self._tmpname = self._tmpname or b"", None
        if aring_publish_file(self._fd, tmpname, path, &e) < 0:
            raise _mapping_error(&e)

    cdef void _discard_unpublished(self) noexcept:
        # A file that never got its name leaves nothing behind.
        self._path = None
        if self._tmpname:
            unlink(self._tmpname)
        self._tmpname = None

    def __dealloc__(self):
        # Reached only when no view holds us (a view keeps its exporter alive).
        self._discard_unpublished()
        if self._base != NULL:
            aring_unmap(self._base, self._total)
            self._base = NULL
        if self._fd >= 0:
            aring_close_fd(self._fd)
            self._fd = -1

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self._closed:
            raise ValueError("the DoubleMappedBuffer is closed")
        PyBuffer_FillInfo(buffer, self, self._data, 2 * self._size, 0, flags)
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self._exports -= 1

    def __len__(self):
        return 2 * self._size

    @property
    def size(self):
        """N: the ring's size; the window is 2*N bytes."""
        return self._size

    @property
    def strategy(self):
        """The strategy in use: ``"memfd"``, ``"shm"``, ``"file"`` or ``"copy"``."""
        return _STRATEGY_NAMES[self._strategy]

    @property
    def double_mapped(self):
        """True when the second half aliases the first (every strategy but copy)."""
        return self._strategy != ARING_STRATEGY_COPY

    @property
    def fallback_reason(self):
        """With strategy="auto": why faster strategies were passed over ("" if none)."""
        return self._fallback_reason

    @property
    def closed(self):
        return self._closed

    @property
    def exports(self):
        """How many buffer exports (memoryviews and the like) are alive."""
        return self._exports

    def fileno(self):
        """The descriptor backing the mapping, or None (the copy strategy)."""
        if self._closed:
            raise ValueError("the DoubleMappedBuffer is closed")
        return self._fd if self._fd >= 0 else None

    cdef int _mirror(self, Py_ssize_t offset, Py_ssize_t n) except -1 nogil:
        # Bytes in the first half are copied to the second and vice versa;
        # with a real double mapping both are the same memory already.
        cdef Py_ssize_t size = self._size
        cdef Py_ssize_t low_end
        if self._strategy != ARING_STRATEGY_COPY or n == 0:
            return 0
        if offset < size:
            low_end = offset + n if offset + n < size else size
            memcpy(self._data + offset + size, self._data + offset, low_end - offset)
            if offset + n > size:
                memcpy(self._data, self._data + size, offset + n - size)
        else:
            memcpy(self._data + offset - size, self._data + offset, n)
        return 0

    def mirror(self, offset, n):
        """Make ``[offset, offset+n)`` of the window and its twin hold the same bytes.

        Call after writing through a view with the copy strategy; a no-op for
        the double-mapped strategies.  ``n`` may be at most ``size``.
        """
        cdef Py_ssize_t off = _as_size(offset, "offset")
        cdef Py_ssize_t count = _as_size(n, "n")
        if self._closed:
            raise ValueError("the DoubleMappedBuffer is closed")
        if count > self._size:
            raise ValueError(f"n must be <= size ({self._size}), got {count}")
        if off + count > 2 * self._size:
            raise ValueError(f"offset + n ({off + count}) is past the window ({2 * self._size})")
        self._mirror(off, count)

    def close(self):
        """Unmap.  BufferError while views are alive (as ``mmap`` does), or
        while a ring uses the buffer (close the ring instead)."""
        if self._closed:
            return
        if self._owner is not None:
            raise BufferError(
                f"this buffer belongs to {self._owner}; close the ring instead (ring.close())"
            )
        if self._exports:
            raise BufferError(
                f"cannot close: {self._exports} exported view(s) of the buffer are alive; "
                "release them first"
            )
        self._closed = True
        self._discard_unpublished()
        aring_unmap(self._base, self._total)
        self._base = NULL
        self._data = NULL
        if self._fd >= 0:
            aring_close_fd(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else f"size={self._size}"
        return f"<DoubleMappedBuffer {state} strategy={self.strategy}>"
