# Errors of the native layer, and the argument checks every other part uses.

class MappingError(OSError):
    """A step of creating a mapping or notifier failed.

    ``errno`` is the OS error code; ``step`` names the call that failed
    (``"memfd_create"``, ``"mmap(second view)"``, ``"posix_fallocate"``...).
    """

    step: str

    def __init__(self, err: int, step: str) -> None:
        name = _errno.errorcode.get(err, str(err))
        message = f"{step} failed: {_os.strerror(err)} ({name})"
        hint = _HINTS.get(err)
        if hint:
            message += f"; {hint}"
        super().__init__(err, message)
        self.step = step


class ForkedError(RuntimeError):
    """An end inherited through fork() was used before ``reattach()``."""


_HINTS = {
    _errno.ENOMEM: "the process may have reached vm.max_map_count or its memory limit",
    _errno.EMFILE: "the process has too many open files (raise `ulimit -n` or close rings)",
    _errno.ENFILE: "the system has too many open files",
    _errno.ENOSPC: "no space left on the device that holds the ring's file",
    _errno.EEXIST: "pass a new or empty file; attaching to an existing ring is not supported yet",
}


cdef inline object _mapping_error(aring_error *e):
    return MappingError(e.err, e.step.decode())


cdef inline Py_ssize_t _round_up(Py_ssize_t n, Py_ssize_t unit) noexcept nogil:
    return ((n + unit - 1) // unit) * unit


cdef Py_ssize_t _gcd(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    while b:
        a, b = b, a % b
    return a


cdef Py_ssize_t _as_size(object value, str what) except -1:
    """An int >= 0, or TypeError/ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        if hasattr(type(value), "__index__") and not isinstance(value, bool):
            value = _operator.index(value)
        else:
            raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    if value > (1 << 62):
        raise ValueError(f"{what} is too large: {value}")
    return value


cdef int _get_buffer(object obj, Py_buffer *view, bint writable, str what) except -1:
    """A contiguous buffer of ``obj``, or TypeError naming ``what`` and the type."""
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE | (PyBUF_WRITABLE if writable else 0))
    except (TypeError, BufferError):
        kind = "writable bytes-like object" if writable else "bytes-like object"
        if isinstance(obj, memoryview) and not obj.contiguous:
            kind = "contiguous " + kind
        raise TypeError(f"{what} must be a {kind}, not {type(obj).__name__}") from None
    return 0
