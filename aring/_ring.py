"""The ring, and ``aring.open()`` for async code.

A ``Ring`` owns one shared mapping and control header; ``writer()`` gives its
single writer end and ``reader()`` up to ``readers`` reader ends, each of
which sees every byte.  The ends are anyio streams (``_streams``) with
nonblocking calls and a blocking flavour under ``.sync`` for threads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, overload

from anyio import ClosedResourceError

from . import _native
from ._streams import Reader, Writer

__all__ = ["Checkpoints", "Ring", "open"]

#: when the ends' async calls yield to the event loop (see ``Ring``)
Checkpoints = Literal["always", "budget"]


def check_checkpoints(checkpoints: object) -> None:
    """TypeError or ValueError unless ``checkpoints`` is "always" or "budget"."""
    if checkpoints not in ("always", "budget"):
        if not isinstance(checkpoints, str):
            raise TypeError(f"checkpoints must be a str, not {type(checkpoints).__name__}")
        raise ValueError(f"checkpoints must be 'always' or 'budget', not {checkpoints!r}")


class Ring(_native.RingCore):
    """A double-mapped byte ring with one writer and up to ``readers`` readers.

    ``capacity`` is rounded up to a multiple of the page size and of
    ``item_size``; all of it is usable.  ``strategy`` picks the mapping
    (``"auto"``, ``"memfd"``, ``"shm"``, ``"file"``, ``"copy"``).  ``path``
    keeps the ring in that file: created if missing, else opened again if it
    holds a ring of the same geometry (``MappingError`` if not), so it
    outlives the process; other processes open it with ``aring.attach()``
    (docs/persistence.rst).  ``flush_every`` (ring files): a commit also
    flushes the file to disk when the last such flush is that many seconds
    old (0: every commit), and the writer's close flushes; None (the
    default): only ``flush()`` does.  ``populate=True`` faults every page in
    at creation (allocates a memfd ring's memory, reads a ring file's pages),
    so the first pass of the writer takes no page faults.  ``notifier`` picks how
    waiters sleep (``"auto"``, ``"eventfd"``, ``"pipe"``); ``"none"`` makes a
    ring that is only polled (``try_*``): it opens no fds, and a call that
    would have to wait raises ``RuntimeError``.

    ``checkpoints`` says when the ends' async calls yield to the event loop:
    ``"always"`` (the default, trio's rule: every call is a cancel point and a
    schedule point) or ``"budget"`` (every call is still a cancel point, but
    it yields only when it must wait, or once ``BUDGET_CALLS`` calls or
    ``BUDGET_SECONDS`` went by without a yield; see docs/async.rst).

    Closing the ring closes its ends; it raises ``BufferError`` while views of
    its memory are alive.
    """

    #: when the ends' async calls yield: "always" or "budget"
    checkpoints: Checkpoints

    def __new__(
        cls, capacity: int, *, checkpoints: Checkpoints = "always", **options: Any
    ) -> Ring:
        check_checkpoints(checkpoints)  # before anything is mapped; the core never sees it
        ring = super().__new__(cls, capacity, **options)
        ring.checkpoints = checkpoints
        return ring

    def __init__(
        self,
        capacity: int,
        *,
        readers: int = 1,
        item_size: int = 1,
        strategy: str = "auto",
        path: str | bytes | None = None,
        notifier: str = "auto",
        checkpoints: Checkpoints = "always",
        flush_every: float | None = None,
        populate: bool = False,
        _attach: bool = False,
    ) -> None:
        self._writer: Writer | None = None

    def writer(self) -> Writer:
        """The ring's one writer end (the same object on every call)."""
        if self.closed:
            raise ClosedResourceError("the ring is closed")
        if self._writer is None:
            self._writer = Writer(self)
        return self._writer

    def reader(self, *, name: str | None = None) -> Reader:
        """A new reader end; it starts at the oldest byte still held for the others.

        ``name`` (a ring file's readers only): the reader's position lives in
        the file under that name.  Opening the name again, in this or a later
        process, resumes right after the last byte it consumed; closed, it
        stays parked and holds the writer back (``remove_reader`` forgets it).
        """
        if self.closed:
            raise ClosedResourceError("the ring is closed")
        return Reader(self, name=name)

    def __enter__(self) -> Ring:
        return self

    def __repr__(self) -> str:
        if self.closed:
            return "<aring.Ring closed>"
        return (
            f"<aring.Ring capacity={self.capacity} readers={self.max_readers} "
            f"strategy={self.strategy} notifier={self.notifier}>"
        )


@overload
def open(
    capacity: int,
    *,
    readers: Literal[1] = 1,
    item_size: int = 1,
    strategy: str = "auto",
    path: str | bytes | None = None,
    notifier: str = "auto",
    checkpoints: Checkpoints = "always",
    populate: bool = False,
) -> AbstractAsyncContextManager[tuple[Writer, Reader]]: ...


@overload
def open(
    capacity: int,
    *,
    readers: Literal[2],
    item_size: int = 1,
    strategy: str = "auto",
    path: str | bytes | None = None,
    notifier: str = "auto",
    checkpoints: Checkpoints = "always",
    populate: bool = False,
) -> AbstractAsyncContextManager[tuple[Writer, Reader, Reader]]: ...


@overload
def open(
    capacity: int,
    *,
    readers: Literal[3],
    item_size: int = 1,
    strategy: str = "auto",
    path: str | bytes | None = None,
    notifier: str = "auto",
    checkpoints: Checkpoints = "always",
    populate: bool = False,
) -> AbstractAsyncContextManager[tuple[Writer, Reader, Reader, Reader]]: ...


@overload
def open(
    capacity: int,
    *,
    readers: Literal[4],
    item_size: int = 1,
    strategy: str = "auto",
    path: str | bytes | None = None,
    notifier: str = "auto",
    checkpoints: Checkpoints = "always",
    populate: bool = False,
) -> AbstractAsyncContextManager[tuple[Writer, Reader, Reader, Reader, Reader]]: ...


@overload
def open(
    capacity: int,
    *,
    readers: int,
    item_size: int = 1,
    strategy: str = "auto",
    path: str | bytes | None = None,
    notifier: str = "auto",
    checkpoints: Checkpoints = "always",
    populate: bool = False,
) -> AbstractAsyncContextManager[tuple[Writer, *tuple[Reader, ...]]]: ...


def open(
    capacity: int,
    *,
    readers: int = 1,
    item_size: int = 1,
    strategy: str = "auto",
    path: str | bytes | None = None,
    notifier: str = "auto",
    checkpoints: Checkpoints = "always",
    populate: bool = False,
) -> AbstractAsyncContextManager[tuple[Writer, *tuple[Reader, ...]]]:
    """A new ring's ends for ``async with``: ``(writer, reader)``, or ``(writer, *readers)``.

    ``readers=k`` attaches k readers, each seeing every byte.  On exit the ends
    and the ring are closed (``BufferError`` if views of the ring's memory are
    still referenced then).
    """
    options = {
        "item_size": item_size,
        "strategy": strategy,
        "path": path,
        "notifier": notifier,
        "checkpoints": checkpoints,
        "populate": populate,
    }
    return _opened(capacity, readers, options)


@asynccontextmanager
async def _opened(
    capacity: int, readers: int, options: dict[str, Any]
) -> AsyncIterator[tuple[Writer, *tuple[Reader, ...]]]:
    ring = Ring(capacity, readers=readers, **options)  # on entry, not when open() is called
    try:
        writer = ring.writer()
        ends = [ring.reader() for _ in range(ring.max_readers)]
        yield (writer, *ends)
    finally:
        ring.close()
