from libc.stdint cimport uint32_t, uint64_t


cdef extern from "_aring.h" nogil:
    ctypedef struct aring_error:
        const char *step
        int err

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
        uint32_t writer_pid

    ctypedef struct aring_line_u64:
        uint64_t value

    ctypedef struct aring_line_u32:
        uint32_t value

    ctypedef struct aring_waiter:
        uint32_t flag
        uint64_t wake_at

    ctypedef struct aring_slot:
        uint32_t state
        uint32_t pid
        uint64_t position
        uint64_t wake_at

    ctypedef struct aring_header:
        aring_geometry geometry
        aring_line_u64 write_position
        aring_waiter writer_waiting
        aring_line_u64 readers_waiting
        aring_line_u64 notifier_writes
        aring_slot slots[1]   # flexible array member in C


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

    cdef int _mirror(self, Py_ssize_t offset, Py_ssize_t n) except -1 nogil
    cdef _map(self, int code, bytes path)


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
    cdef int _inflight
    cdef unsigned long _generation
    cdef object _window
    cdef object _rwindow
    cdef bint _has_writer
    cdef list _ends

    cdef int _check_open(self) except -1
    cdef object _windows(self)
    cdef Py_ssize_t _space(self) except -2
    cdef void _wake_readers(self, bint everyone) noexcept
    cdef void _wake_writer(self, uint64_t position) noexcept
    cdef int _poll(self, int fd, double timeout) except -1
    cdef int _copy_in(self, uint64_t position, const char *src, Py_ssize_t n) except -1
    cdef int _copy_out(self, uint64_t position, char *dst, Py_ssize_t n) except -1
    cdef void _signal_all(self) noexcept
    cdef _close_fds(self)


cdef class _End:
    cdef RingCore _core
    cdef bint _closed
    cdef unsigned long _owner
    cdef unsigned long _generation
    cdef list _views

    cdef uint64_t _spin_ns        # adaptive: how long wait() spins before it sleeps
    cdef bint _task_busy          # an async call of some task is in progress

    cdef int _enter(self) except -1
    cdef int _check_notifier(self) except -1
    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil
    cdef unsigned long _claim(self) except? 1
    cdef void _release_views(self) noexcept
    cdef Py_ssize_t _size_arg(self, object n, str what, bint allow_zero) except -1


cdef class WriterEnd(_End):
    cdef Py_ssize_t _reserved

    cdef Py_ssize_t _try_write(self, const char *src, Py_ssize_t n, bint partial) except -1
    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil


cdef class ReaderEnd(_End):
    cdef int _slot

    cdef Py_ssize_t _readable(self, bint *eof) except -1
    cdef bint _ready_nogil(self, Py_ssize_t need) noexcept nogil
    cdef uint64_t _join_position(self, aring_header *h, int own)
    cdef void _advance(self, Py_ssize_t count) noexcept
