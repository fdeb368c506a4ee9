"""The ring and its ends: the Python policy on top of the native core.

A ``Ring`` owns one shared mapping and control header; ``writer()`` gives its
single writer end and ``reader()`` up to ``readers`` reader ends, each of
which sees every byte.  Each end has nonblocking calls (``try_*``,
``commit``, ``consume``) and a blocking flavour under ``.sync`` for threads.
"""

from __future__ import annotations

from typing import Final

from anyio import ClosedResourceError, EndOfStream

from . import _native

__all__ = ["Reader", "Ring", "SyncReader", "SyncWriter", "Writer"]

DEFAULT_MAX_BYTES: Final = 65536


def _timed_out(what: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"{what} did not complete within {timeout} s")


class Ring(_native.RingCore):
    """A double-mapped byte ring with one writer and up to ``readers`` readers.

    ``capacity`` is rounded up to a multiple of the page size and of
    ``item_size``; all of it is usable.  ``strategy`` picks the mapping
    (``"auto"``, ``"memfd"``, ``"shm"``, ``"file"``, ``"copy"``); ``path`` keeps
    the ring's memory in that (new or empty) file.  ``notifier`` picks how
    waiters sleep (``"auto"``, ``"eventfd"``, ``"pipe"``).

    Closing the ring closes its ends; it raises ``BufferError`` while views of
    its memory are alive.
    """

    def __init__(
        self,
        capacity: int,
        *,
        readers: int = 1,
        item_size: int = 1,
        strategy: str = "auto",
        path: str | bytes | None = None,
        notifier: str = "auto",
    ) -> None:
        self._writer: Writer | None = None

    def writer(self) -> Writer:
        """The ring's one writer end (the same object on every call)."""
        if self.closed:
            raise ClosedResourceError("the ring is closed")
        if self._writer is None:
            self._writer = Writer(self)
        return self._writer

    def reader(self) -> Reader:
        """A new reader end; it starts at the oldest byte still held for the others."""
        if self.closed:
            raise ClosedResourceError("the ring is closed")
        return Reader(self)

    def __enter__(self) -> Ring:
        return self

    def __repr__(self) -> str:
        if self.closed:
            return "<aring.Ring closed>"
        return (
            f"<aring.Ring capacity={self.capacity} readers={self.max_readers} "
            f"strategy={self.strategy} notifier={self.notifier}>"
        )


class Writer(_native.WriterEnd):
    """The writer end of a ring.

    Nonblocking: ``try_reserve(n)``/``commit(n)`` (zero-copy) and
    ``try_write(data)``.  Blocking, for threads: ``writer.sync``.  A view from
    ``try_reserve`` is valid until the next ``commit``; using it afterwards
    raises ``ValueError``.
    """

    def __init__(self, ring: Ring) -> None:
        self._sync: SyncWriter | None = None

    @property
    def sync(self) -> SyncWriter:
        """The blocking flavour of this end, for threads."""
        if self._sync is None:
            self._sync = SyncWriter(self)
        return self._sync

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Reader(_native.ReaderEnd):
    """A reader end of a ring.

    Nonblocking: ``try_peek(n)``/``consume(n)`` (zero-copy), ``try_read`` and
    ``try_read_into``.  Blocking, for threads: ``reader.sync``.  A view from
    ``try_peek`` is valid until the next ``consume``.
    """

    def __init__(self, ring: Ring) -> None:
        self._sync: SyncReader | None = None

    @property
    def sync(self) -> SyncReader:
        """The blocking flavour of this end, for threads."""
        if self._sync is None:
            self._sync = SyncReader(self)
        return self._sync

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SyncWriter:
    """Blocking calls on a writer end; they sleep on the notifier fd without the GIL.

    ``timeout=None`` waits forever; on timeout ``TimeoutError`` is raised and
    nothing was written.  Another thread using the same end meanwhile gets
    ``anyio.BusyResourceError``.
    """

    __slots__ = ("_end",)

    def __init__(self, end: Writer) -> None:
        self._end = end

    def send(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
        """Copy all of ``data`` in, waiting for space.

        Data up to the capacity goes in whole (a timeout means none of it was
        sent); larger data goes in parts as space frees up, so a timeout can
        leave a prefix sent.
        """
        end = self._end
        token = end._acquire()
        try:
            view = memoryview(data).cast("B")
            total = len(view)
            if total <= end.capacity:
                if not end.try_write(view):
                    if total and not end.wait(total, timeout):
                        raise _timed_out("send", timeout)
                    end.try_write(view)
                return
            sent = 0
            while sent < total:
                if not end.wait(1, timeout):
                    raise _timed_out(f"send (after {sent} of {total} bytes)", timeout)
                sent += end.try_write(view[sent:], partial=True)
        finally:
            end._release(token)

    def reserve(self, n: int = 1, timeout: float | None = None) -> memoryview:
        """A writable view of all free space, len >= n, waiting for it."""
        end = self._end
        view = end.try_reserve(n)
        if view is None:
            if not end.wait(n, timeout):
                raise _timed_out(f"reserve({n})", timeout)
            view = end.try_reserve(n)
            assert view is not None
        return view


class SyncReader:
    """Blocking calls on a reader end; ``anyio.EndOfStream`` once the writer
    closed and everything was read."""

    __slots__ = ("_end",)

    def __init__(self, end: Reader) -> None:
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

    def receive_into(self, buffer: bytearray | memoryview, timeout: float | None = None) -> int:
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
        if view is None:
            if not end.wait(n, timeout):
                raise _timed_out(f"peek({n})", timeout)
            view = end.try_peek(n)
            if view is None:  # pragma: no cover - wait() returned for EOF with data
                raise EndOfStream
        return view
