"""The blocking flavour of the ends (``end.sync``), for threads.

Each call sleeps in ``poll()`` on the end's notifier fd with the GIL released,
never in a polling loop.  ``timeout=None`` waits forever; on timeout
``TimeoutError`` is raised.  Another thread using the same end meanwhile gets
``anyio.BusyResourceError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ._native import ReaderEnd, WriterEnd, _check_timeout

if TYPE_CHECKING:
    from typing_extensions import Buffer

from ._common import DEFAULT_MAX_BYTES, part_wait

__all__ = ["SyncReader", "SyncWriter"]


_T = TypeVar("_T")


def _timed_out(what: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"{what} did not complete within {timeout} s")


def _until(
    end: WriterEnd | ReaderEnd,
    attempt: Callable[[], _T | None],
    n: int | Callable[[], int],
    timeout: float | None,
    what: str | Callable[[], str],
) -> _T:
    """``attempt()`` until it has a result, waiting for ``n`` bytes between tries.

    ``timeout`` bounds the whole call; ``n`` and ``what`` may be computed per wait.
    """
    _check_timeout(timeout)
    result = attempt()
    left = timeout
    start = time.monotonic()
    while result is None:
        if not end.wait(n() if callable(n) else n, left):
            raise _timed_out(what() if callable(what) else what, timeout)
        result = attempt()
        if timeout is not None:
            left = max(0.0, timeout - (time.monotonic() - start))
    return result


class SyncWriter:
    """Blocking calls on a writer end."""

    __slots__ = ("_end",)

    def __init__(self, end: WriterEnd) -> None:
        self._end = end

    def send(self, data: Buffer, timeout: float | None = None) -> None:
        """Copy all of ``data`` in, waiting for space.

        Data up to the capacity goes in whole (a timeout means none of it was
        sent); larger data goes in parts as space frees up, so a timeout can
        leave a prefix sent (the message says how much).
        """
        end = self._end
        _check_timeout(timeout)
        token = end._acquire()
        try:
            view = memoryview(data).cast("B")
            total = len(view)
            if total <= end.capacity:
                if total:
                    _until(end, lambda: end.try_write(view) or None, total, timeout, "send")
                else:
                    end.writable()  # an empty send still raises if every reader left
                return
            sent = 0

            def part() -> bool | None:
                nonlocal sent
                sent += end.try_write(view[sent:], partial=True)
                return True if sent == total else None

            _until(
                end,
                part,
                lambda: part_wait(end, total - sent),
                timeout,
                lambda: f"send (after {sent} of {total} bytes)",
            )
        finally:
            end._release(token)

    def reserve(self, n: int = 1, timeout: float | None = None) -> memoryview:
        """A writable view of all free space, len >= n, waiting for it."""
        end = self._end
        return _until(end, lambda: end.try_reserve(n), n, timeout, f"reserve({n})")


class SyncReader:
    """Blocking calls on a reader end; ``anyio.EndOfStream`` once the writer
    closed and everything was read."""

    __slots__ = ("_end",)

    def __init__(self, end: ReaderEnd) -> None:
        self._end = end

    def receive(self, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes`` bytes, waiting for at least one."""
        end = self._end
        return _until(end, lambda: end.try_read(max_bytes), 1, timeout, "receive")

    def receive_into(self, buffer: Buffer, timeout: float | None = None) -> int:
        """Fill ``buffer`` with what is readable (at least one byte); the count."""
        end = self._end
        return _until(end, lambda: end.try_read_into(buffer), 1, timeout, "receive_into")

    def peek(self, n: int = 1, timeout: float | None = None) -> memoryview:
        """A read-only view of all readable bytes, len >= n (or the rest at EOF)."""
        end = self._end
        return _until(end, lambda: end.try_peek(n), n, timeout, f"peek({n})")
