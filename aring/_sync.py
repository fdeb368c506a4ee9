"""The blocking flavour of the ends (``end.sync``), for threads.

Each call sleeps in ``poll()`` on the end's notifier fd with the GIL released,
never in a polling loop.  ``timeout=None`` waits forever; on timeout
``TimeoutError`` is raised.  Another thread using the same end meanwhile gets
``anyio.BusyResourceError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._native import ReaderEnd, WriterEnd

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["DEFAULT_MAX_BYTES", "SyncReader", "SyncWriter", "check_max_bytes", "part_wait"]

DEFAULT_MAX_BYTES: Final = 65536


def check_max_bytes(max_bytes: int) -> None:
    """TypeError for a non-int, ValueError below 1: what every receive checks up front."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes must be an int, not {type(max_bytes).__name__}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")


def part_wait(end: WriterEnd, left: int) -> int:
    """How much space to wait for before the next part of a send larger than the ring.

    Half the ring (or what is left): waking for every freed byte would cost a
    wakeup per consume, waiting for the whole ring would idle the reader.
    """
    capacity = end.capacity
    item = end.item_size
    half = max(item, (capacity // 2) // item * item)
    return min(left, half)


def _timed_out(what: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"{what} did not complete within {timeout} s")


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
        token = end._acquire()
        try:
            view = memoryview(data).cast("B")
            total = len(view)
            if total <= end.capacity:
                if not end.try_write(view) and total:
                    if not end.wait(total, timeout):
                        raise _timed_out("send", timeout)
                    end.try_write(view)
                return
            sent = 0
            while sent < total:
                sent += end.try_write(view[sent:], partial=True)
                if sent < total and not end.wait(part_wait(end, total - sent), timeout):
                    raise _timed_out(f"send (after {sent} of {total} bytes)", timeout)
        finally:
            end._release(token)

    def reserve(self, n: int = 1, timeout: float | None = None) -> memoryview:
        """A writable view of all free space, len >= n, waiting for it."""
        end = self._end
        view = end.try_reserve(n)
        while view is None:
            if not end.wait(n, timeout):
                raise _timed_out(f"reserve({n})", timeout)
            view = end.try_reserve(n)
        return view


class SyncReader:
    """Blocking calls on a reader end; ``anyio.EndOfStream`` once the writer
    closed and everything was read."""

    __slots__ = ("_end",)

    def __init__(self, end: ReaderEnd) -> None:
        self._end = end

    def receive(self, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes`` bytes, waiting for at least one."""
        end = self._end
        data = end.try_read(max_bytes)
        while data is None:
            if not end.wait(1, timeout):
                raise _timed_out("receive", timeout)
            data = end.try_read(max_bytes)
        return data

    def receive_into(self, buffer: Buffer, timeout: float | None = None) -> int:
        """Fill ``buffer`` with what is readable (at least one byte); the count."""
        end = self._end
        count = end.try_read_into(buffer)
        while count is None:
            if not end.wait(1, timeout):
                raise _timed_out("receive_into", timeout)
            count = end.try_read_into(buffer)
        return count

    def peek(self, n: int = 1, timeout: float | None = None) -> memoryview:
        """A read-only view of all readable bytes, len >= n (or the rest at EOF)."""
        end = self._end
        view = end.try_peek(n)
        while view is None:
            if not end.wait(n, timeout):
                raise _timed_out(f"peek({n})", timeout)
            view = end.try_peek(n)
        return view

