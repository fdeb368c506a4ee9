# Errors of the native layer, and the argument checks every other part uses.

class MappingError(OSError):
    """A step of creating a mapping or notifier failed, or was refused.

    ``errno`` is the OS error code; ``step`` names the call that failed
    (``"memfd_create"``, ``"mmap(second view)"``, ``"posix_fallocate"``...),
    or, as ``"call: reason"``, why aring refused to go on (a symbolic link
    or someone else's file at ``path``...).
    """

    step: str

    def __init__(self, err: int, step: str) -> None:
        name = _errno.errorcode.get(err, str(err))
        if ": " in step:
            message = f"{step} ({name})"
        else:
            message = f"{step} failed: {_os.strerror(err)} ({name})"
        hint = _STEP_HINTS.get(step) or _HINTS.get(err)
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
    _errno.EEXIST: (
        "a DoubleMappedBuffer's path= must not exist; aring.Ring(path=...) and aring.attach() "
        "open existing ring files"
    ),
}
# More precise advice for a step whose errno alone says too little.
_STEP_HINTS = {
    "posix_fallocate(/dev/shm)": (
        "the shared-memory filesystem (/dev/shm) is too small or full: free space there, "
        "enlarge it (docker run --shm-size=...), or use strategy='memfd'"
    ),
}

# The largest ring: 1 TiB (twice that of address space for the double
# mapping).  Beyond it a request is a mistake, most often an item size that
# shares no factor with the page size, so that rounding multiplies the two.
MAX_CAPACITY = 1 << 40


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


cdef Py_ssize_t _as_positive_size(object value, str what) except -1:
    """An int >= 1, or TypeError/ValueError naming ``what``."""
    if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    cdef Py_ssize_t n = _as_size(value, what)
    if n < 1:
        raise ValueError(f"{what} must be >= 1, got {n}")
    return n


cdef int _check_capacity(Py_ssize_t rounded, Py_ssize_t requested, str what) except -1:
    """ValueError when ``requested`` rounds up to more than MAX_CAPACITY."""
    if rounded > MAX_CAPACITY:
        raise ValueError(
            f"{what} {requested} rounds up to {rounded} bytes (a multiple of the page size "
            f"and of the item size), more than the largest ring ({MAX_CAPACITY} bytes); "
            "use an item size that divides the page size or is a multiple of it"
        )
    return 0


cdef double _as_timeout(object timeout) except? -2.0:
    """``None`` -> -1 (forever), else seconds >= 0: TypeError/ValueError otherwise."""
    if timeout is None:
        return -1.0
    if isinstance(timeout, bool) or not isinstance(timeout, _numbers.Real):
        raise TypeError(f"timeout must be None or a number of seconds, not {type(timeout).__name__}")
    cdef double seconds = timeout
    if seconds != seconds or seconds < 0:
        raise ValueError(f"timeout must be None or >= 0, got {timeout!r}")
    return seconds


def _check_timeout(timeout):
    """``timeout`` as the blocking calls take it (None or seconds >= 0), checked up front."""
    _as_timeout(timeout)
    return timeout


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
