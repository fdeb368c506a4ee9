# Ring files: a ring kept in a named file that outlives its processes, opened
# again after a restart or by another process (aring.attach); the FIFOs that
# wake waiters across processes; named readers whose position lives in the
# file; and the tools on top (flush, stats, reset, the inspect command).
#
# A ring file is untrusted input: whatever opens it checks the file (regular,
# this user's, 0600, not through a link), then its geometry (magic, layout
# version, a checksum, sizes that agree with the file's), then every cursor and
# slot, before any of it sizes a mapping, a copy or a view.

import struct as _struct

# The geometry line as the file holds it (host byte order: the magic tells).
cdef object _GEOMETRY = _struct.Struct("=QIIQIIIIIIQ")

# How long a holder of the reader registry may keep it before it is taken
# from it: the registry is held for microseconds, so that long means dead.
cdef double _REGISTRY_STEAL_AFTER = 2.0

cdef tuple _SLOT_STATES = ("free", "claimed", "active", "parked")


cdef bytes _ring_path(object path):
    """``path`` as bytes, or TypeError/ValueError."""
    path = _os.fsencode(path)
    if b"\0" in path:
        raise ValueError("path must not contain a NUL byte")
    if not path:
        raise ValueError("path must not be empty")
    return path


cdef object _damaged(str where, str what):
    return MappingError(_errno.EINVAL, f"open: the ring file {where!r} is damaged: {what}")


cdef object _open_ring_file(bytes path, bint writable):
    """A descriptor of the ring file at ``path``, checked (_check_ring_file); None if there is none."""
    cdef int flags = _os.O_NOFOLLOW | _os.O_CLOEXEC | _os.O_NONBLOCK
    flags |= _os.O_RDWR if writable else _os.O_RDONLY
    where = _os.fsdecode(path)
    try:
        fd = _os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == _errno.ELOOP:
            raise MappingError(
                _errno.ELOOP, f"open: {where!r} is a symbolic link; aring does not follow links"
            ) from None
        raise MappingError(exc.errno, f"open: {where!r}: {exc.strerror}") from None
    try:
        _check_ring_file(fd, path)
    except BaseException:
        _os.close(fd)
        raise
    return fd


cdef dict _parse_geometry(bytes head, Py_ssize_t file_size, str where):
    """The geometry of a ring file from its first 64 bytes, checked; MappingError naming what is wrong."""
    cdef aring_geometry g
    cdef Py_ssize_t page = aring_page_size()
    if file_size < sizeof(aring_geometry) or len(head) < sizeof(aring_geometry):
        raise MappingError(
            _errno.EINVAL,
            f"open: {where!r} is not an aring ring file: it is {file_size} bytes, shorter than "
            f"a ring header ({sizeof(aring_geometry)})",
        )
    memcpy(&g, PyBytes_AS_STRING(head), sizeof(aring_geometry))
    if g.magic != ARING_MAGIC:
        raise MappingError(
            _errno.EINVAL, f"open: {where!r} is not an aring ring file (it does not start with aring's magic number)"
        )
    if g.version != ARING_LAYOUT_VERSION:
        raise MappingError(
            _errno.EINVAL,
            f"open: {where!r} has ring layout version {g.version}; this aring reads version "
            f"{ARING_LAYOUT_VERSION} (open it with the aring that made it)",
        )
    if aring_geometry_checksum(&g) != g.checksum:
        raise _damaged(where, "its header checksum does not match (the header was changed or damaged)")
    if g.page_size != <uint32_t> page:
        raise MappingError(
            _errno.EINVAL,
            f"open: {where!r} was made on a machine with {g.page_size}-byte pages; this one has {page}",
        )
    if not 1 <= g.max_readers <= ARING_MAX_READERS:
        raise _damaged(where, f"it says {g.max_readers} reader slots (1 to {ARING_MAX_READERS} allowed)")
    if not 1 <= g.item_size <= (1 << 30):
        raise _damaged(where, f"it says an item size of {g.item_size}")
    if (g.capacity == 0 or g.capacity > <uint64_t> MAX_CAPACITY or g.capacity % page
            or g.capacity % g.item_size):
        raise _damaged(
            where, f"its capacity ({g.capacity}) is not a multiple of the page size and item size "
            f"up to {MAX_CAPACITY}"
        )
    if g.header_size != <uint32_t> _round_up(aring_header_bytes(g.max_readers), page):
        raise _damaged(where, f"its header size ({g.header_size}) does not fit {g.max_readers} reader slots")
    if g.strategy != ARING_STRATEGY_FILE:
        raise _damaged(where, f"it says mapping strategy {g.strategy}, not a file")
    if g.flags & ~ARING_FLAG_KNOWN:
        raise _damaged(where, f"it has unknown flags ({g.flags:#x})")
    if not g.flags & ARING_FLAG_PERSISTENT:
        raise _damaged(where, "it is not marked as a ring file")
    if <uint64_t> file_size != g.header_size + g.capacity:
        raise _damaged(
            where, f"the file is {file_size} bytes, but its header says {g.header_size} + "
            f"{g.capacity} (truncated, or grown)"
        )
    return {
        "version": g.version,
        "capacity": g.capacity,
        "item_size": g.item_size,
        "max_readers": g.max_readers,
        "header_size": g.header_size,
        "page_size": g.page_size,
        "records": bool(g.flags & ARING_FLAG_RECORDS),
        "multi_producer": bool(g.flags & ARING_FLAG_MULTI_PRODUCER),
        "flags": g.flags,
        "created": g.created / 1e9,
    }


cdef object _slot_name(aring_slot *s):
    """A slot's reader name: None if unnamed, else str; ValueError if it cannot be one."""
    cdef Py_ssize_t n = 0
    while n < ARING_NAME_MAX and s.name[n] != 0:
        n += 1
    if n == 0:
        return None
    if n == ARING_NAME_MAX:
        raise ValueError("the name fills its field (no NUL)")
    return s.name[:n].decode("utf-8")


cdef bytes _reader_name(object name):
    """A reader's name as stored: 1 to 63 UTF-8 bytes, no NUL; else TypeError/ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    raw = name.encode("utf-8")
    if not 0 < len(raw) < ARING_NAME_MAX or b"\0" in raw:
        raise ValueError(
            f"name must be 1 to {ARING_NAME_MAX - 1} UTF-8 bytes without NUL, got {name!r}"
        )
    return raw


cdef bint _slot_named(aring_slot *s, bytes name) noexcept:
    cdef Py_ssize_t n = len(name)
    return memcmp(s.name, PyBytes_AS_STRING(name), n) == 0 and s.name[n] == 0


cdef int _open_fifo(int dir_fd, str name, str where) except -1:
    """One FIFO notifier in the ring's wake directory, made if missing, opened O_RDWR and checked."""
    cdef int flags = _os.O_RDWR | _os.O_NONBLOCK | _os.O_CLOEXEC | _os.O_NOFOLLOW
    try:
        # Opened first: it is there on every open but a ring's first.
        fd = _os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        try:
            _os.mkfifo(name, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            pass   # made meanwhile by another process
        except OSError as exc:
            raise MappingError(exc.errno, f"mkfifo: {where}/{name}: {exc.strerror}") from None
        try:
            fd = _os.open(name, flags, dir_fd=dir_fd)
        except OSError as exc:
            raise MappingError(exc.errno, f"open: {where}/{name}: {exc.strerror}") from None
    except OSError as exc:
        raise MappingError(exc.errno, f"open: {where}/{name}: {exc.strerror}") from None
    st = _os.fstat(fd)
    problem = None
    if not _stat.S_ISFIFO(st.st_mode):
        problem = "is not a FIFO"
    elif st.st_uid != _os.geteuid():
        problem = f"belongs to uid {st.st_uid}"
    elif st.st_mode & 0o077:
        problem = f"has mode {st.st_mode & 0o777:04o}, not 0600"
    if problem is not None:
        _os.close(fd)
        raise MappingError(_errno.EPERM, f"open: the ring's notifier {where}/{name} {problem}")
    return fd


cdef inline uint64_t _registry_word() noexcept:
    """This process as the registry's holder: pid, and the low 32 bits of its start time."""
    cdef uint64_t pid = _my_pid()
    return ((_identity_start & 0xFFFFFFFF) << 32) | pid


cdef int _lock_registry(RingCore core) except -1:
    """Hold the ring's reader registry (named readers, producers joining, reset), across processes.

    Held only for microseconds and never across a wait: a holder whose
    process is gone (pid and start time, as an end's owner) is replaced at
    once, and one that keeps it for _REGISTRY_STEAL_AFTER seconds too.
    """
    cdef uint64_t me = _registry_word()
    cdef uint64_t holder
    cdef double started = _time.monotonic()
    while True:
        holder = aring_load_acquire_u64(&core._hdr.registry_lock.value)
        if holder == 0:
            if aring_cas_u64(&core._hdr.registry_lock.value, 0, me):
                return 0
            continue
        # Our own word: left by an earlier process with our pid and start
        # (this process never holds it across a release of the GIL).
        if (holder == me
                or aring_process_alive_masked(
                    <uint32_t> holder, holder >> 32, 0xFFFFFFFF) == ARING_PROCESS_DEAD
                or _time.monotonic() - started > _REGISTRY_STEAL_AFTER):
            if aring_cas_u64(&core._hdr.registry_lock.value, holder, me):
                return 0
            continue
        core._inflight += 1   # close() from another thread waits; the mapping stays
        with nogil:
            usleep(500)
        core._inflight -= 1
        core._check_open()


cdef void _unlock_registry(RingCore core) noexcept:
    if core._hdr != NULL:
        aring_cas_u64(&core._hdr.registry_lock.value, _registry_word(), 0)


cdef uint32_t _claim_writer(RingCore core) except 0:
    """Make this process the ring's one writer (across processes); the claim count it took.

    BusyResourceError while a live process holds it; a dead holder's claim is
    taken over.
    """
    cdef aring_header *h = core._hdr
    cdef uint64_t word
    cdef uint32_t state, claims
    while True:
        word = aring_load_acquire_u64(&h.writer_word)
        state = aring_slot_state(word)
        claims = aring_slot_claims(word) + 1
        if claims == 0:
            claims = 1
        if state == ARING_SLOT_FREE or (state == ARING_SLOT_ACTIVE and _owner_dead(&h.writer)):
            if aring_cas_u64(&h.writer_word, word, aring_slot_word(ARING_SLOT_ACTIVE, claims)):
                break
            continue
        if state == ARING_SLOT_ACTIVE:
            raise _busy(
                f"the ring's writer is held by process {aring_load_acquire_u32(&h.writer.pid)}; "
                "a ring has one writer"
            )
        raise core._corrupt(f"the writer's slot is in state {state}")
    _record_owner(&h.writer)
    return claims


cdef void _release_writer(RingCore core, uint32_t claims) noexcept:
    if claims:
        aring_cas_u64(
            &core._hdr.writer_word,
            aring_slot_word(ARING_SLOT_ACTIVE, claims),
            aring_slot_word(ARING_SLOT_FREE, claims),
        )


cdef int _join_named(ReaderEnd end, RingCore core, bytes name) except -1:
    """Give ``end`` the slot of the reader called ``name``: its parked position, or a new slot."""
    cdef aring_header *h = core._hdr
    cdef aring_slot *s
    cdef uint64_t word, w, position
    cdef uint32_t i, state, claims
    cdef int found = -1
    _lock_registry(core)
    try:
        h = core._hdr
        for i in range(core._max_readers):
            state = aring_slot_state(aring_load_acquire_u64(&h.slots[i].word))
            if state != ARING_SLOT_FREE and _slot_named(&h.slots[i], name):
                found = i
                break
        if found < 0:
            _join_free_slot(end, core, name)
            return 0
        s = &h.slots[found]
        word = aring_load_acquire_u64(&s.word)
        state = aring_slot_state(word)
        claims = aring_slot_claims(word) + 1
        if state == ARING_SLOT_ACTIVE and not _owner_dead(&s.owner):
            raise _busy(
                f"the reader {name.decode()!r} is open (process "
                f"{aring_load_acquire_u32(&s.owner.pid)})"
            )
        if state != ARING_SLOT_PARKED and state != ARING_SLOT_ACTIVE:
            raise _busy(f"the reader {name.decode()!r} is being opened by another process")
        # Parked, or held by a process that died: resume at its position.
        w = aring_load_acquire_u64(&h.write_position.value)
        position = aring_load_acquire_u64(&s.position)
        if w - position > core._cap:
            raise core._corrupt(
                f"the reader {name.decode()!r} is at position {position}, the write position at "
                f"{w}, more than the capacity ({core._cap}) apart"
            )
        _record_owner(&s.owner)
        if not aring_cas_u64(&s.word, word, aring_slot_word(ARING_SLOT_ACTIVE, claims)):
            raise _busy(f"the reader {name.decode()!r} was taken meanwhile")
        end._slot = found
        end._claims = claims
        end._named = True
        end._name = name.decode()
        core._ends.append(end)
    finally:
        _unlock_registry(core)
    return 0


cdef int _join_free_slot(ReaderEnd end, RingCore core, bytes name) except -1:
    """Claim a free reader slot for ``end`` (named if ``name``) and join at the oldest byte held."""
    cdef aring_header *h = core._hdr
    cdef uint32_t i, claims
    cdef int slot = -1
    cdef uint64_t pos, again, word, active
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
    end._slot = slot
    end._claims = claims + 1
    end._named = name is not None
    end._name = name.decode() if name is not None else None
    active = aring_slot_word(ARING_SLOT_ACTIVE, end._claims)
    memset(h.slots[slot].name, 0, ARING_NAME_MAX)
    aring_store_release_u64(&h.slots[slot].records, 0)
    if name is not None:
        memcpy(h.slots[slot].name, PyBytes_AS_STRING(name), len(name))
    core._ends.append(end)
    _record_owner(&h.slots[slot].owner)
    if not (aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED):
        # The writer is held back by a virtual reader at 0: start there.
        aring_store_release_u64(&h.slots[slot].position, 0)
        aring_store_seqcst_u64(&h.slots[slot].word, active)
        aring_fetch_or_u32(&h.geometry.flags, ARING_FLAG_READER_ATTACHED)
        return 0
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
            return 0
        pos = again


cdef int _repair_records(RingCore core) except -1:
    """With no producer alive: finish what dead producers left between the write and claim cursors.

    Their open claims are dropped (skipped); a claim whose header was never
    written (its producer died right after claiming) cannot be measured, so
    the claim cursor is moved back to it: what was claimed after it was never
    published.  Caller holds the registry, so no producer joins meanwhile.
    """
    cdef aring_header *h = core._hdr
    cdef uint64_t w, c
    cdef uint32_t state
    while True:
        _publish_records(core)
        w = aring_load_acquire_u64(&h.write_position.value)
        c = aring_load_acquire_u64(&h.claim_position.value)
        if w == c:
            return 0
        if aring_load_acquire_u64(_record_position(core, w)) != w:
            aring_cas_u64(&h.claim_position.value, c, w)
            continue
        state = aring_load_acquire_u32(_record_state(core, w))
        if _is_claimed(state):
            aring_cas_u32(_record_state(core, w), state, ARING_RECORD_SKIPPED)
            continue
        raise core._corrupt(f"the record at position {w} is in state {state}")


cdef int _check_file_state(RingCore core, str where) except -1:
    """MappingError unless every cursor and slot of an opened ring file can be right."""
    cdef aring_header *h = core._hdr
    cdef uint64_t w = aring_load_acquire_u64(&h.write_position.value)
    cdef uint64_t cap = core._cap
    cdef uint64_t position, c
    cdef uint32_t i, state
    cdef uint32_t flags = aring_load_acquire_u32(&h.geometry.flags)
    if flags & ~ARING_FLAG_KNOWN:
        raise _damaged(where, f"it has unknown flags ({flags:#x})")
    if not flags & ARING_FLAG_READER_ATTACHED and w > cap:
        raise _damaged(where, f"its write position ({w}) is past the capacity before any reader joined")
    for i in range(core._max_readers):
        state = aring_slot_state(aring_load_acquire_u64(&h.slots[i].word))
        if state > ARING_SLOT_PARKED:
            raise _damaged(where, f"reader slot {i} is in state {state}")
        try:
            _slot_name(&h.slots[i])
        except ValueError as exc:
            raise _damaged(where, f"reader slot {i} has no valid name ({exc})") from None
        if state == ARING_SLOT_ACTIVE or state == ARING_SLOT_PARKED:
            position = aring_load_acquire_u64(&h.slots[i].position)
            if w - position > cap:
                raise _damaged(
                    where, f"reader slot {i} is at position {position}, the write position at "
                    f"{w}, more than the capacity ({cap}) apart"
                )
    if aring_slot_state(aring_load_acquire_u64(&h.writer_word)) > ARING_SLOT_ACTIVE:
        raise _damaged(where, "the writer's slot is in an unknown state")
    for i in range(ARING_MAX_PRODUCERS):
        if aring_slot_state(aring_load_acquire_u64(&h.producers[i].word)) > ARING_SLOT_ACTIVE:
            raise _damaged(where, f"producer slot {i} is in an unknown state")
    if core._records:
        c = aring_load_acquire_u64(&h.claim_position.value)
        if c - w > cap:
            raise _damaged(
                where, f"its claim position ({c}) is more than the capacity ({cap}) past the write "
                f"position ({w})"
            )
    elif aring_load_acquire_u64(&h.claim_position.value) != 0:
        raise _damaged(where, "a byte ring with a claim position")
    return 0


cdef _open_file(RingCore core, bytes path, capacity, readers, item_size, strategy, str notifier,
                bint multi_producer, bint attach):
    """Open the ring file at ``path`` if there is one (it must match what was asked), else create it."""
    cdef dict expect = None
    cdef Py_ssize_t nreaders
    where = _os.fsdecode(path)
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a str, not {type(strategy).__name__}")
    if strategy not in ("auto", "file"):
        raise ValueError(f"path= needs strategy='file' (or 'auto'), not {strategy!r}")
    if notifier == "auto":
        notifier = "fifo"
    if notifier not in ("fifo", "none"):
        raise ValueError(
            f"a ring file's waiters are woken through FIFOs beside it: notifier must be "
            f"'auto' or 'none' with path=, not {notifier!r}"
        )
    if not attach:
        nreaders = (
            _as_size(readers, "readers") if not isinstance(readers, int) or readers >= 0 else -1
        )
        if not 1 <= nreaders <= ARING_MAX_READERS:
            raise ValueError(f"readers must be between 1 and {ARING_MAX_READERS}, got {readers}")
        expect = {
            "capacity": _rounded_capacity(capacity, item_size),
            "max_readers": nreaders,
            "item_size": item_size,
            "multi_producer": multi_producer,
        }
    for _ in range(8):
        fd = _open_ring_file(path, True)
        if fd is not None:
            _attach_file(core, fd, path, expect, notifier)
            return
        if attach:
            raise MappingError(_errno.ENOENT, f"open: there is no ring file at {where!r}")
        try:
            core._create(capacity, readers, item_size, "file", path, notifier, multi_producer)
            return
        except MappingError as exc:
            if exc.errno != _errno.EEXIST:
                raise
            # Another process made it meanwhile: open theirs.
    raise MappingError(_errno.EAGAIN, f"open: the ring file {where!r} keeps appearing and vanishing")

cdef _attach_file(RingCore core, int fd, bytes path, dict expect, str notifier):
    """Map the ring file open at ``fd`` (ours from here on) once its geometry is checked."""
    where = _os.fsdecode(path)
    kind = "RecordRing" if core._records else "Ring"
    try:
        geometry = _parse_geometry(_os.pread(fd, sizeof(aring_geometry), 0), _os.fstat(fd).st_size, where)
        if geometry["records"] != core._records:
            other = "RecordRing" if geometry["records"] else "Ring"
            raise MappingError(
                _errno.EINVAL,
                f"open: {where!r} holds a {other}, not a {kind} (aring.attach() opens either)",
            )
        if expect is not None:
            asked = {k: geometry[k] for k in expect}
            if asked != expect:
                diff = ", ".join(
                    f"{k}={geometry[k]} (asked {expect[k]})" for k in expect if geometry[k] != expect[k]
                )
                raise MappingError(
                    _errno.EINVAL,
                    f"open: {where!r} holds a {kind} with {diff}; open it with aring.attach(), "
                    "or remove it to make a new one",
                )
    except BaseException:
        _os.close(fd)
        raise
    core._buffer = DoubleMappedBuffer(
        geometry["capacity"], strategy="file", header=geometry["header_size"], fd=fd,
        populate=core._populate,
    )
    core._buffer._owner = "a Ring"
    core._hdr = <aring_header *> core._buffer._base
    core._data = core._buffer._data
    core._cap = geometry["capacity"]
    core._item = geometry["item_size"]
    core._max_readers = geometry["max_readers"]
    core._mirrored = False
    core._notifier = _NOTIFIER_CODES[notifier]
    core._generation = aring_fork_generation()
    core._path = path
    try:
        _check_file_state(core, where)
        if core._notifier == ARING_NOTIFIER_FIFO:
            _open_fifos(core, path)
        core._closed = False
        _reclaim_dead_owners(core)
    except BaseException:
        core._closed = True
        core._close_fds()
        core._buffer._owner = None
        core._buffer.close()
        core._hdr = NULL
        core._data = NULL
        raise

cdef _open_fifos(RingCore core, bytes path):
    """The FIFO notifiers of a ring file, in the directory ``<path>.wake`` (made 0700 if missing)."""
    cdef Py_ssize_t i
    cdef bytes directory = path + b".wake"
    cdef int flags = _os.O_RDONLY | _os.O_DIRECTORY | _os.O_NOFOLLOW | _os.O_CLOEXEC
    where = _os.fsdecode(directory)
    for attempt in range(2):
        try:
            dir_fd = _os.open(directory, flags)
            break
        except FileNotFoundError:
            if attempt:
                raise MappingError(_errno.ENOENT, f"open: {where!r} vanished as it was made") from None
            try:
                _os.mkdir(directory, 0o700)
            except FileExistsError:
                pass   # made meanwhile by another process
            except OSError as exc:
                raise MappingError(exc.errno, f"mkdir: {where!r}: {exc.strerror}") from None
        except OSError as exc:
            raise MappingError(
                exc.errno, f"open: {where!r} (the ring's notifiers) is not a directory of ours: "
                f"{exc.strerror}"
            ) from None
    try:
        st = _os.fstat(dir_fd)
        if st.st_uid != _os.geteuid() or st.st_mode & 0o077:
            raise MappingError(
                _errno.EPERM,
                f"open: {where!r} (the ring's notifiers) must be this user's, mode 0700 "
                f"(it is uid {st.st_uid}, mode {st.st_mode & 0o777:04o})",
            )
        core._writer_rfd = core._writer_wfd = _open_fifo(dir_fd, "writer", where)
        for i in range(core._max_readers):
            core._reader_rfd[i] = core._reader_wfd[i] = _open_fifo(dir_fd, f"reader-{i}", where)
    finally:
        _os.close(dir_fd)

cdef int _reclaim_dead_owners(RingCore core) except -1:
    """Free what processes that died left held: reader slots, the writer, producer slots."""
    cdef aring_header *h = core._hdr
    cdef uint64_t word
    _lock_registry(core)
    try:
        core._reap_dead_readers()
        word = aring_load_acquire_u64(&h.writer_word)
        if aring_slot_state(word) == ARING_SLOT_ACTIVE and _owner_dead(&h.writer):
            if aring_cas_u64(&h.writer_word, word,
                             aring_slot_word(ARING_SLOT_FREE, aring_slot_claims(word))):
                aring_fetch_or_u32(&h.geometry.flags, ARING_FLAG_WRITER_DIED | ARING_FLAG_WRITER_CLOSED)
        if core._records:
            _reap_dead_producers(core)
            if _active_producers(core) == 0:
                _repair_records(core)
    finally:
        _unlock_registry(core)
    return 0


def _ring_file_info(path):
    """The checked geometry of the ring file at ``path`` (read only; aring.attach, inspect)."""
    cdef bytes bpath = _ring_path(path)
    where = _os.fsdecode(bpath)
    fd = _open_ring_file(bpath, False)
    if fd is None:
        raise MappingError(_errno.ENOENT, f"open: there is no ring file at {where!r}")
    try:
        return _parse_geometry(_os.pread(fd, sizeof(aring_geometry), 0), _os.fstat(fd).st_size, where)
    finally:
        _os.close(fd)


def _read_ring_file(path):
    """Everything ``python -m aring inspect`` shows, read from the file without changing it.

    ``{"geometry": ..., "header": ..., "data": bytes}``: the geometry
    checked, the header's cursors and slots as they are (they may be
    changing: a writer may run), and the data region as read.
    """
    cdef bytes bpath = _ring_path(path)
    cdef bytes raw
    cdef aring_header *h
    cdef aring_slot *s
    cdef uint32_t i, pid
    cdef uint64_t start
    where = _os.fsdecode(bpath)
    fd = _open_ring_file(bpath, False)
    if fd is None:
        raise MappingError(_errno.ENOENT, f"open: there is no ring file at {where!r}")
    try:
        geometry = _parse_geometry(_os.pread(fd, sizeof(aring_geometry), 0), _os.fstat(fd).st_size, where)
        raw = _os.pread(fd, geometry["header_size"], 0)
        data = _os.pread(fd, geometry["capacity"], geometry["header_size"])
    finally:
        _os.close(fd)
    if len(raw) != geometry["header_size"] or len(data) != geometry["capacity"]:
        raise _damaged(where, "it was truncated while being read")
    return {
        "geometry": geometry,
        "header": _describe(<aring_header *> PyBytes_AS_STRING(raw), geometry["max_readers"]),
        "data": data,
    }


cdef bint _alive(aring_owner *owner) noexcept:
    cdef uint32_t pid
    cdef uint64_t start
    if not _read_owner(owner, &pid, &start):
        return True   # being rewritten: by a live process
    return pid != 0 and aring_process_alive(pid, start) != ARING_PROCESS_DEAD


cdef dict _describe(aring_header *h, uint32_t max_readers):
    """The header's cursors, ends and counters as plain data (stats(), inspect)."""
    cdef aring_slot *s
    cdef uint32_t i, state
    cdef uint64_t w = aring_load_acquire_u64(&h.write_position.value)
    cdef uint64_t position
    cdef uint32_t flags = aring_load_acquire_u32(&h.geometry.flags)
    readers = []
    for i in range(max_readers):
        s = &h.slots[i]
        state = aring_slot_state(aring_load_acquire_u64(&s.word))
        if state == ARING_SLOT_FREE:
            continue
        try:
            name = _slot_name(s)
        except ValueError:
            name = None
        position = aring_load_acquire_u64(&s.position)
        readers.append({
            "slot": i,
            "name": name,
            "state": _SLOT_STATES[state] if state < 4 else f"unknown ({state})",
            "position": position,
            "lag": w - position,
            "records": aring_load_acquire_u64(&s.records),
            "pid": aring_load_acquire_u32(&s.owner.pid) if state == ARING_SLOT_ACTIVE else None,
            "alive": _alive(&s.owner) if state == ARING_SLOT_ACTIVE else False,
        })
    producers = []
    for i in range(ARING_MAX_PRODUCERS):
        s = &h.producers[i]
        if aring_slot_state(aring_load_acquire_u64(&s.word)) != ARING_SLOT_FREE:
            producers.append({
                "slot": i, "pid": aring_load_acquire_u32(&s.owner.pid), "alive": _alive(&s.owner)
            })
    writer_open = aring_slot_state(aring_load_acquire_u64(&h.writer_word)) == ARING_SLOT_ACTIVE
    return {
        "written": w,
        "claimed": aring_load_acquire_u64(&h.claim_position.value),
        "records": aring_load_acquire_u64(&h.write_position.records),
        "dropped": aring_load_acquire_u64(&h.write_position.dropped),
        "writer": {
            "open": writer_open,
            "pid": aring_load_acquire_u32(&h.writer.pid) if writer_open else None,
            "alive": _alive(&h.writer) if writer_open else False,
            "closed": bool(flags & ARING_FLAG_WRITER_CLOSED),
            "died": bool(flags & ARING_FLAG_WRITER_DIED),
        },
        "readers": readers,
        "producers": producers,
        "dead_readers": aring_load_acquire_u64(&h.dead_readers.value),
        "wakeups": aring_load_acquire_u64(&h.notifier_writes.value),
    }


cdef int _flush(RingCore core) except -1:
    """msync the whole file: what was committed before is on disk when it returns."""
    cdef char *base = core._buffer._base
    cdef size_t n = core._buffer._header + core._cap
    cdef int rc
    core._inflight += 1
    with nogil:
        rc = msync(base, n, MS_SYNC)
    core._inflight -= 1
    if rc < 0:
        raise MappingError(errno, "msync")
    core._flushes += 1
    return 0


cdef void _flush_on_close(RingCore core) noexcept:
    """A writer closing a ring file with ``flush_every``: what it committed reaches the disk."""
    if core._flush_ns >= 0 and core._hdr != NULL:
        try:
            _flush(core)
        except MappingError:
            pass   # close() goes on; the next flush() reports the disk's error


cdef int _reset(RingCore core) except -1:
    """Empty the ring: every reader (parked ones too) moves to the write position."""
    cdef aring_header *h = core._hdr
    cdef uint32_t me = _my_pid()
    cdef uint32_t i, state
    cdef uint64_t w
    cdef _End end
    _reclaim_dead_owners(core)   # the dead hold nothing back, and do not refuse a reset
    _lock_registry(core)
    try:
        h = core._hdr
        others = []
        if (aring_slot_state(aring_load_acquire_u64(&h.writer_word)) == ARING_SLOT_ACTIVE
                and h.writer.pid != me and _alive(&h.writer)):
            others.append(f"its writer (process {h.writer.pid})")
        for i in range(core._max_readers):
            state = aring_slot_state(aring_load_acquire_u64(&h.slots[i].word))
            if (state == ARING_SLOT_ACTIVE or state == ARING_SLOT_CLAIMED) and (
                    h.slots[i].owner.pid != me and _alive(&h.slots[i].owner)):
                others.append(f"reader slot {i} (process {h.slots[i].owner.pid})")
        for i in range(ARING_MAX_PRODUCERS):
            if (aring_slot_state(aring_load_acquire_u64(&h.producers[i].word)) == ARING_SLOT_ACTIVE
                    and h.producers[i].owner.pid != me and _alive(&h.producers[i].owner)):
                others.append(f"a producer (process {h.producers[i].owner.pid})")
        if others:
            raise _busy(f"cannot reset the ring while other processes use it: {', '.join(others)}")
        w = aring_load_acquire_u64(&h.write_position.value)
        if core._records and aring_load_acquire_u64(&h.claim_position.value) != w:
            raise _busy("cannot reset the ring while claims are open (commit or abort them first)")
        for end in core._ends:
            end._release_views()
            if isinstance(end, WriterEnd):
                (<WriterEnd> end)._reserved = 0
        if not aring_load_acquire_u32(&h.geometry.flags) & ARING_FLAG_READER_ATTACHED:
            w = 0   # nobody ever read: start the file again at 0
            aring_store_release_u64(&h.write_position.value, 0)
            aring_store_release_u64(&h.claim_position.value, 0)
        for i in range(core._max_readers):
            state = aring_slot_state(aring_load_acquire_u64(&h.slots[i].word))
            if state == ARING_SLOT_ACTIVE or state == ARING_SLOT_PARKED:
                aring_store_release_u64(&h.slots[i].position, w)
    finally:
        _unlock_registry(core)
    core._wake_writer(<uint64_t> -1)
    return 0


cdef int _remove_reader(RingCore core, bytes name) except -1:
    """Forget the named reader ``name``: its position no longer holds the writer back."""
    cdef aring_header *h
    cdef aring_slot *s
    cdef uint64_t word
    cdef uint32_t i, state
    core._reap_dead_readers()   # a holder that died is parked first
    _lock_registry(core)
    try:
        h = core._hdr
        for i in range(core._max_readers):
            s = &h.slots[i]
            word = aring_load_acquire_u64(&s.word)
            state = aring_slot_state(word)
            if state == ARING_SLOT_FREE or not _slot_named(s, name):
                continue
            if state != ARING_SLOT_PARKED:
                raise _busy(
                    f"the reader {name.decode()!r} is open (process "
                    f"{aring_load_acquire_u32(&s.owner.pid)}); close it first"
                )
            memset(s.name, 0, ARING_NAME_MAX)
            aring_cas_u64(&s.word, word, aring_slot_word(ARING_SLOT_FREE, aring_slot_claims(word)))
            break
        else:
            raise KeyError(f"the ring has no reader named {name.decode()!r}")
    finally:
        _unlock_registry(core)
    core._wake_writer(<uint64_t> -1)
    return 0
