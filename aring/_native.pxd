# The native core's declarations: the C helpers it calls (aring/includes/*.h)
# and the layout of its extension types.  _native.pyx includes one .pxi per
# concern (aring/_core/) and the fields below are shared between them.

from cpython.object cimport PyObject
from libc.stdint cimport uint32_t, uint64_t


cdef extern from "includes/aring.h" nogil:
    # error.h
    ctypedef struct aring_error:
        const char *step
        int err

    # atomics.h
    uint64_t aring_load_acquire_u64(uint64_t *p)
    uint64_t aring_load_relaxed_u64(uint64_t *p)
    void aring_store_release_u64(uint64_t *p, uint64_t v)
    uint32_t aring_load_acquire_u32(uint32_t *p)
    void aring_store_seqcst_u32(uint32_t *p, uint32_t v)
    uint32_t aring_exchange_u32(uint32_t *p, uint32_t v)
    int aring_cas_u64(uint64_t *p, uint64_t expected, uint64_t desired)
    int aring_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired)
    void aring_store_seqcst_u64(uint64_t *p, uint64_t v)
    void aring_store_release_u32(uint32_t *p, uint32_t v)
    uint32_t aring_fetch_or_u32(uint32_t *p, uint32_t v)
    uint64_t aring_fetch_or_u64(uint64_t *p, uint64_t v)
    uint64_t aring_fetch_and_u64(uint64_t *p, uint64_t v)
    uint32_t aring_fetch_and_u32(uint32_t *p, uint32_t v)
    uint64_t aring_fetch_add_u64(uint64_t *p, uint64_t v)
    void aring_fence_seqcst()
    int aring_ctz64(uint64_t v)
    void aring_cpu_relax()
    uint64_t aring_now_ns()

    # header.h
    uint64_t ARING_MAGIC
    uint32_t ARING_LAYOUT_VERSION
    int ARING_MAX_READERS
    int ARING_MAX_PRODUCERS
    uint32_t ARING_FLAG_WRITER_CLOSED
    uint32_t ARING_FLAG_WRITER_DIED
    uint32_t ARING_FLAG_READER_ATTACHED
    uint32_t ARING_FLAG_RECORDS
    uint32_t ARING_FLAG_RECORDS_CLOSING
    uint32_t ARING_FLAG_MULTI_PRODUCER
    uint32_t ARING_FLAG_PERSISTENT
    uint32_t ARING_FLAG_KNOWN
    int ARING_NAME_MAX
    uint32_t ARING_RECORD_HEADER
    uint32_t ARING_RECORD_CLAIMED
    uint32_t ARING_RECORD_COMMITTED
    uint32_t ARING_RECORD_SKIPPED
    uint32_t ARING_SLOT_FREE
    uint32_t ARING_SLOT_CLAIMED
    uint32_t ARING_SLOT_ACTIVE
    uint32_t ARING_SLOT_PARKED

    ctypedef struct aring_geometry:
        uint64_t magic
        uint32_t version
        uint32_t header_size
        uint64_t capacity
        uint32_t page_size
        uint32_t item_size
        uint32_t max_readers
        uint32_t strategy
        uint32_t flags
        uint32_t checksum
        uint64_t created

    ctypedef struct aring_owner:
        uint32_t pid
        uint32_t seq
        uint64_t start

    ctypedef struct aring_line_u64:
        uint64_t value

    ctypedef struct aring_write_line:
        uint64_t value
        uint64_t records
        uint64_t dropped

    ctypedef struct aring_waiter:
        uint32_t flag
        uint64_t wake_at

    ctypedef struct aring_slot:
        uint64_t word
        uint64_t position
        uint64_t wake_at
        aring_owner owner
        uint64_t records
        char name[64]

    ctypedef struct aring_header:
        aring_geometry geometry
        aring_write_line write_position
        aring_waiter writer_waiting
        aring_line_u64 readers_waiting
        aring_line_u64 notifier_writes
        aring_line_u64 dead_readers
        aring_owner writer
        uint64_t writer_word
        aring_line_u64 claim_position
        aring_line_u64 registry_lock
        aring_slot producers[16]
        aring_slot slots[1]   # flexible array member in C

    ctypedef struct aring_record:
        uint64_t position
        uint32_t length
        uint32_t state

    uint64_t aring_record_size(uint64_t length)
    uint32_t aring_geometry_checksum(const aring_geometry *g)

    size_t aring_header_bytes(size_t max_readers)
    uint64_t aring_slot_mask(uint32_t max_readers)
    uint32_t aring_slot_state(uint64_t word)
    uint32_t aring_slot_claims(uint64_t word)
    uint64_t aring_slot_word(uint32_t state, uint32_t claims)

    # mapping.h
    int ARING_STRATEGY_MEMFD
    int ARING_STRATEGY_SHM
    int ARING_STRATEGY_FILE
    int ARING_STRATEGY_COPY
    long aring_page_size()
    long aring_allocation_granularity()
    int aring_create_memfd(size_t size, int *fd, aring_error *e)
    int aring_create_shm(size_t size, int *fd, aring_error *e)
    int aring_create_temp_file(const char *dir, size_t size, int *out, aring_error *e)
    int aring_create_unnamed(const char *dir, size_t size, int *out, char *tmpname,
                             size_t tmpname_size, aring_error *e)
    int aring_publish_file(int fd, const char *tmpname, const char *path, aring_error *e)
    int aring_map_double(int fd, size_t hdr, size_t n, char **base, aring_error *e)
    int aring_map_copy(size_t total, char **base, aring_error *e)
    int aring_map_double_populated(int fd, size_t hdr, size_t n, int populate, char **base,
                                   aring_error *e)
    int aring_map_copy_populated(size_t total, int populate, char **base, aring_error *e)
    void aring_touch_pages(const char *p, size_t n, size_t page)
    int aring_unmap(char *base, size_t total)
    int aring_close_fd(int fd)

    # notifier.h
    int ARING_NOTIFIER_NONE
    int ARING_NOTIFIER_EVENTFD
    int ARING_NOTIFIER_PIPE
    int ARING_NOTIFIER_FIFO
    int aring_notifier_open(int kind, int *rfd, int *wfd, aring_error *e)
    int aring_notifier_signal(int kind, int wfd)
    void aring_notifier_drain(int kind, int rfd)

    # process.h
    int aring_install_fork_hook()
    unsigned long aring_fork_generation()
    int ARING_PROCESS_DEAD
    uint64_t aring_self_start()
    int aring_process_alive(uint32_t pid, uint64_t start)
    int aring_process_alive_masked(uint32_t pid, uint64_t start, uint64_t mask)

    # relay_engine.h
    int ARING_HAVE_RELAY_ENGINE

    ctypedef struct aring_engine_direction:
        uint64_t bytes
        uint64_t waits
        uint64_t regions

    ctypedef struct aring_engine_conn:
        size_t cap
        int mirrored
        aring_engine_direction dir[2]
        uint64_t wakeups
        uint64_t steps
        int error

    ctypedef struct aring_engine:
        int done_fd

    int aring_engine_init(aring_engine *e, uint64_t budget_factor, aring_error *err)
    void aring_engine_destroy(aring_engine *e)
    aring_engine_conn *aring_engine_conn_new(size_t cap, int double_map, aring_error *err)
    void aring_engine_conn_free(aring_engine_conn *c)
    int aring_engine_run(aring_engine *e)
    int aring_engine_start(aring_engine *e, aring_engine_conn *c, int fd0, int fd1)
    void aring_engine_abort(aring_engine *e, aring_engine_conn *c)
    int aring_engine_releasable(aring_engine *e, aring_engine_conn *c)
    int aring_engine_accepting(aring_engine *e)
    int aring_engine_let_go(aring_engine *e, aring_engine_conn *c)
    size_t aring_engine_take_done(aring_engine *e, aring_engine_conn **out, size_t max)
    void aring_engine_stop(aring_engine *e)
    uint64_t aring_engine_load(uint64_t *p)


cdef extern from "Python.h":
    # Py_REFCNT on a borrowed pointer: through an ``object`` argument Cython
    # would count its own temporary reference too.
    Py_ssize_t _borrowed_refcount "Py_REFCNT"(PyObject *o)


cdef extern from "<poll.h>" nogil:
    cdef struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN


cdef extern from "<unistd.h>" nogil:
    int usleep(unsigned int usec)
    int getpid()
    int unlink(const char *path)
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t write(int fd, const void *buf, size_t count)


cdef extern from "<errno.h>":
    int EAGAIN
    int EWOULDBLOCK


cdef class DoubleMappedBuffer:
    cdef char *_base           # start of the mapping (the header, if any)
    cdef char *_data           # first byte of the 2N window
    cdef Py_ssize_t _size      # N
    cdef Py_ssize_t _header    # bytes before the window, page-rounded
    cdef Py_ssize_t _total     # header + 2N: what is unmapped
    cdef int _fd
    cdef int _strategy
    cdef Py_ssize_t _exports
    cdef bint _closed
    cdef object _fallback_reason
    cdef object _owner            # the ring using the buffer: only it may close it
    cdef bytes _path              # a new file's path until it is published
    cdef bytes _tmpname           # its temporary name where it could not be made unnamed

    cdef int _mirror(self, Py_ssize_t offset, Py_ssize_t n) except -1 nogil
    cdef bint _populate           # fault the pages in at creation (populate=True)
    cdef _map(self, int code, bytes path)
    cdef void _discard_unpublished(self) noexcept


cdef class RingCore:
    cdef DoubleMappedBuffer _buffer
    cdef aring_header *_hdr
    cdef char *_data
    cdef uint64_t _cap
    cdef uint32_t _item
    cdef uint32_t _max_readers
    cdef int _notifier
    cdef int _writer_rfd
    cdef int _writer_wfd
    cdef int _reader_rfd[64]
    cdef int _reader_wfd[64]
    cdef bint _mirrored
    cdef bint _closed
    cdef int _inflight            # GIL-free copies, spins and polls running now
    cdef unsigned long _generation
    cdef object _window
    cdef object _rwindow
    cdef bint _has_writer
    cdef bint _records            # a RecordRing (records.pxi)
    cdef list _ends
    cdef bytes _path              # a ring file's path (persistence.pxi), else None
    cdef long long _flush_ns      # flush_every in ns: -1 never, 0 every commit
    cdef uint64_t _flushed_at     # aring_now_ns() of the last flush by a commit
    cdef uint64_t _flushes        # flushes this process made (stats())
    cdef bint _populate           # populate=True: pages faulted in when mapped

    cdef _create(self, capacity, readers, item_size, strategy, bytes path, str notifier,
                 bint multi_producer)

    cdef int _check_open(self) except -1
    cdef object _view(self, Py_ssize_t offset, Py_ssize_t n, bint writable)
    cdef Py_ssize_t _space(self) except -2
    cdef object _corrupt(self, str what)
    cdef object _corrupt_slot(self, int slot, uint64_t w)
    cdef int _reap_dead_readers(self) except -1
    cdef int _committed(self) except -1
    cdef bint _foreign_readers(self) noexcept
    cdef void _wake_readers(self, bint everyone) noexcept nogil
    cdef void _wake_writer(self, uint64_t position) noexcept nogil
    cdef int _copy_in(self, uint64_t position, const char *src, Py_ssize_t n) except -1
    cdef int _copy_out(self, uint64_t position, char *dst, Py_ssize_t n) except -1
    cdef void _signal_all(self) noexcept
    cdef void _adopt_generation(self) noexcept
    cdef _close_fds(self)
    cdef bint _take_back_memory(self) except -1


cdef class _End:
    cdef RingCore _core
    cdef str _kind                # "writer" or "reader", for messages
    cdef bint _closed
    cdef unsigned long _owner     # the thread using the end now (0: none)
    cdef bint _task_busy          # an async call of some task is in progress
    cdef unsigned long _generation
    cdef list _views
    cdef uint64_t _spin_ns        # adaptive: how long wait() spins before it sleeps
    cdef uint64_t _peers_checked_ns   # when a peer in another process was last looked at
    cdef bint _in_native_loop     # a thread runs a GIL-free file loop on this end (file_loops.pxi)
    cdef int _native_stop         # what that loop is asked (ends.pxi: _NATIVE_GO_ON...)

    cdef int _check_usable(self) except -1
    cpdef unsigned long _acquire(self, bint task=*) except? 1
    cpdef _release(self, unsigned long token, bint task=*)
    cdef void _release_views(self) noexcept
    cdef int _take_back_views(self) except -1
    cdef object _hand_out(self, Py_ssize_t offset, Py_ssize_t n, bint writable)
    cdef Py_ssize_t _count_arg(self, object n, str what, Py_ssize_t low) except -1
    cdef Py_ssize_t _need_arg(self, object n) except -1
    cdef Py_ssize_t _amount_arg(self, object n) except -1
    cdef int _check_notifier(self) except -1
    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil
    cdef int _notifier_rfd(self) noexcept
    cdef int _notifier_wfd(self) noexcept
    cdef _leave(self)
    cdef _take_over(self)
    cdef bint _foreign_peer(self) noexcept
    cdef int _check_peers(self) except -1
    cdef bint _peers_due(self) noexcept


cdef class WriterEnd(_End):
    cdef Py_ssize_t _reserved
    cdef uint32_t _writer_claims  # the header's writer word's claim count when this end took it

    cdef Py_ssize_t _try_write(self, const char *src, Py_ssize_t n, bint partial) except -1


cdef class RecordWriterEnd(_End):
    cdef int _copying             # GIL-free copies into claims of this end running now
    cdef int _producer            # this process's producer slot
    cdef uint32_t _producer_claims  # that slot's claim count when this process took it
    cdef dict _open               # this end's open claims: position -> payload length
    cdef uint32_t _writer_claims  # the header's writer word's claim count (single producer), else 0

    cdef int _check_claimable(self) except -1
    cdef int _free_producer_slot(self) except -1
    cdef bint _claim_at(self, Py_ssize_t length, uint64_t *position) except -1
    cdef bint _settle(self, uint64_t position, uint64_t size, uint32_t state) except -1
    cdef void _mirror_record(self, uint64_t position, uint64_t size) noexcept
    cdef Py_ssize_t _claim_space(self, uint64_t c) except -2


cdef class ReaderEnd(_End):
    cdef int _slot
    cdef uint32_t _claims         # the slot's claim count when this end took it
    cdef bint _named              # a named reader: parked, not freed, when it leaves
    cdef Py_ssize_t _lent_records # RecordRing: records in the lent batch, counted when consumed
    cdef str _name

    cdef Py_ssize_t _readable(self, bint *eof) except -1
    cdef object _end_of_stream(self)
    cdef void _advance(self, Py_ssize_t count) noexcept

