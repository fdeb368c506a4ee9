"""The ends as anyio streams: ``Writer`` is a ByteSendStream, ``Reader`` a ByteReceiveStream.

Every ``async`` method is a checkpoint, also when it can finish at once.  As
anyio's memory object streams do, it yields first (a cancel point and a
schedule point) and only then does its work, which is synchronous unless it
has to wait: a call cancelled at its checkpoint or while waiting has done
nothing.  ``send`` of up to ``capacity`` bytes copies all or nothing,
``receive`` consumes nothing unless it returns.  asyncio, uvloop and trio
cancel alike.

A task that must wait first yields and looks again (a producer on the same
loop usually refills the ring meanwhile, and no wakeup is needed: once more on
asyncio, whose ready queue is FIFO; a few times on trio, whose batches run in
random order), then arms the end's waiter flag and sleeps on the end's
notifier through its event loop's backend.  Threads use the same ends through
``end.sync``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
from anyio import TypedAttributeSet, WouldBlock, typed_attribute
from anyio.abc import ByteReceiveStream, ByteSendStream

from . import _native
from ._backends import GO_ON, Backend, Watch, YieldBudget, checkpoint_within, current_backend
from ._common import DEFAULT_MAX_BYTES, check_max_bytes, part_wait
from ._sync import SyncReader, SyncWriter

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from ._ring import Ring

__all__ = ["Reader", "RingAttribute", "Writer"]

_T = TypeVar("_T")


class RingAttribute(TypedAttributeSet):
    """Typed attributes of the ends, read with ``end.extra(RingAttribute.capacity)``."""

    #: bytes the ring holds
    capacity: int = typed_attribute()
    #: bytes readable now (reader ends)
    readable: int = typed_attribute()
    #: bytes free now (the writer end)
    writable: int = typed_attribute()
    #: the end's notifier fd: readable when the end should look again
    notifier_fd: int = typed_attribute()
    #: the ring this end belongs to (``notifier_writes``, ``strategy``...)
    ring: Ring = typed_attribute()


def _bytes_view(data: Buffer) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"data must be a bytes-like object, not {type(data).__name__}") from None
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class _TaskSide:
    """What both ends share on the async side: task exclusion and sleeping on the notifier."""

    # Class defaults: close() may run (ring.close() in another thread) before
    # __init__ has set them.
    _watch: Watch | None = None
    _ring: Ring
    # Called (from the closing thread) when this end closes: a transfer waiting
    # on something else than the ring (a socket, a stream) is woken this way.
    _on_close: tuple[Callable[[], None], ...] = ()
    # checkpoints="budget": how many calls may go on without a loop pass
    _budget: YieldBudget | None = None

    if TYPE_CHECKING:
        # Provided by the native end this mixes into.
        @property
        def notifier_fd(self) -> int: ...
        def arm(self, n: int = 1) -> bool: ...
        def _acquire(self, task: bool = False) -> int: ...
        def _release(self, token: int, task: bool = False) -> None: ...
        def _ready(self, n: int) -> bool: ...
        def _watch_peers(self) -> float | None: ...
        def close(self) -> None: ...
        @property
        def capacity(self) -> int: ...

    def _init_task_side(self, ring: Ring) -> None:
        self._ring = ring
        self._budget = YieldBudget() if ring.checkpoints == "budget" else None

    async def _run(self, attempt: Callable[[], _T | None], n: int) -> _T:
        """Checkpoint, then ``attempt()`` until it has a result, waiting for ``n`` between tries."""
        # checkpoint_within inlined: reserve, peek and receive_into come here.
        budget = self._budget
        if budget is None:
            await current_backend().checkpoint()
        elif (code := budget.spend()) != GO_ON:
            await budget.checkpoint(code)
        token = self._acquire(True)
        try:
            result = attempt()
            while result is None:
                await self._wait_until_ready(current_backend(), n)
                result = attempt()
            return result
        finally:
            self._release(token, True)

    async def _wait_until_ready(self, backend: Backend, n: int) -> None:
        """Return once ``arm(n)`` says the end is ready; its errors (closed, broken) propagate."""
        for _ in range(backend.yields_before_sleep):
            await backend.checkpoint()
            if self._ready(n):
                break
        else:
            if self.arm(n):
                await self._sleep_on_notifier(backend, n)
        if self._budget is not None:  # the task yielded while it waited
            self._budget.restart()

    async def _sleep_on_notifier(self, backend: Backend, n: int) -> None:
        """Armed for ``n``: sleep on the end's notifier until ``arm(n)`` says it is ready."""
        watch = self._watch
        if watch is None or watch.key is not backend.loop_key():
            if watch is not None:
                watch.close()
            watch = self._watch = backend.watch(os.dup(self.notifier_fd), self._ring.notifier)
        while True:
            interval = self._watch_peers()
            if interval is None:
                await watch.wait()
            else:
                # The other side is another process: if it dies it cannot wake
                # us, so look whether it still lives now and then.
                with anyio.move_on_after(interval):
                    await watch.wait()
            if not self.arm(n):
                return

    async def aclose(self) -> None:
        """``close()``, then a checkpoint: a cancelled ``aclose`` has still closed."""
        self.close()
        await current_backend().checkpoint()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ring_attributes(self) -> dict[Any, Callable[[], Any]]:
        return {
            RingAttribute.capacity: lambda: self.capacity,
            RingAttribute.notifier_fd: lambda: self.notifier_fd,
            RingAttribute.ring: lambda: self._ring,
        }

    def _close_watch(self) -> None:
        if self._budget is not None:
            self._budget.forget()
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        for hook in self._on_close:
            hook()

    def __del__(self) -> None:
        watch = self._watch
        if watch is not None:
            watch.close()


class Writer(_native.WriterEnd, _TaskSide, ByteSendStream):
    """The writer end of a ring, and an ``anyio.abc.ByteSendStream``.

    Async: ``send``, ``reserve``, ``aclose``.  Nonblocking: ``send_nowait``,
    ``try_reserve``/``commit`` (zero-copy), ``try_write``.  Blocking, for
    threads: ``writer.sync``.  A view from ``reserve``/``try_reserve`` is valid
    until the next ``commit``; using it afterwards raises ``ValueError``.
    """

    def __init__(self, ring: Ring) -> None:
        self._sync: SyncWriter | None = None
        self._init_task_side(ring)

    @property
    def sync(self) -> SyncWriter:
        """The blocking flavour of this end, for threads."""
        if self._sync is None:
            self._sync = SyncWriter(self)
        return self._sync

    async def send(self, item: Buffer) -> None:
        """Copy ``item`` in, waiting for space.

        Up to ``capacity`` bytes go in whole: if the call is cancelled, nothing
        was sent.  Larger data goes in parts as the readers free space (half the
        ring at a time), so a cancelled call may have sent a prefix.
        ``BrokenResourceError`` once every reader has closed.
        """
        view = item if type(item) is bytes else _bytes_view(item)
        total = len(view)
        if total <= self.capacity:
            if total == 0:
                await self._run(self._nothing_to_send, 1)
                return
            # _run (and checkpoint_within) inlined: this is the hot path.
            budget = self._budget
            if budget is None:
                await current_backend().checkpoint()
            elif (code := budget.spend()) != GO_ON:
                await budget.checkpoint(code)
            token = self._acquire(True)
            try:
                while not self.try_write(view):
                    await self._wait_until_ready(current_backend(), total)
            finally:
                self._release(token, True)
            return
        view = _bytes_view(item)
        await checkpoint_within(self._budget)
        backend = current_backend()
        token = self._acquire(True)
        try:
            sent = 0
            while True:
                sent += self.try_write(view[sent:], partial=True)
                if sent == total:
                    return
                await self._wait_until_ready(backend, part_wait(self, total - sent))
        finally:
            self._release(token, True)

    def _nothing_to_send(self) -> bool:
        self.writable()  # an empty send still raises if every reader left
        return True

    def send_nowait(self, item: Buffer) -> None:
        """Copy ``item`` in whole now, or raise ``anyio.WouldBlock`` (nothing sent)."""
        view = _bytes_view(item)
        if not self.try_write(view) and len(view):
            raise WouldBlock
        if not len(view):
            self.writable()

    async def reserve(self, n: int = 1) -> memoryview:
        """A writable view of all free space (len >= n), waiting for it; then ``commit``."""
        self._check_size(n)
        return await self._run(lambda: self.try_reserve(n), n)

    def close(self) -> None:
        """End of stream for the readers once they drain what is left.  Idempotent."""
        super().close()
        self._close_watch()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {**self._ring_attributes(), RingAttribute.writable: self.writable}


class Reader(_native.ReaderEnd, _TaskSide, ByteReceiveStream):
    """A reader end of a ring, and an ``anyio.abc.ByteReceiveStream``.

    Async: ``receive``, ``receive_into``, ``peek``, ``aclose``.  Nonblocking:
    ``receive_nowait``, ``try_peek``/``consume`` (zero-copy), ``try_read``,
    ``try_read_into``.  Blocking, for threads: ``reader.sync``.  A view from
    ``peek``/``try_peek`` is valid until the next ``consume``.
    ``anyio.EndOfStream`` once the writer closed and everything was read.
    """

    def __init__(self, ring: Ring, *, name: str | None = None) -> None:
        self._sync: SyncReader | None = None
        self._init_task_side(ring)

    @property
    def sync(self) -> SyncReader:
        """The blocking flavour of this end, for threads."""
        if self._sync is None:
            self._sync = SyncReader(self)
        return self._sync

    async def receive(self, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        """Up to ``max_bytes`` bytes, waiting for at least one.

        A cancelled call consumed nothing.
        """
        if type(max_bytes) is not int or max_bytes < 1:
            check_max_bytes(max_bytes)
        # _run (and checkpoint_within) inlined: this is the hot path.
        budget = self._budget
        if budget is None:
            await current_backend().checkpoint()
        elif (code := budget.spend()) != GO_ON:
            await budget.checkpoint(code)
        token = self._acquire(True)
        try:
            data = self.try_read(max_bytes)
            while data is None:
                await self._wait_until_ready(current_backend(), 1)
                data = self.try_read(max_bytes)
            return data
        finally:
            self._release(token, True)

    def receive_nowait(self, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        """Up to ``max_bytes`` readable bytes now, or ``anyio.WouldBlock``."""
        check_max_bytes(max_bytes)
        data = self.try_read(max_bytes)
        if data is None:
            raise WouldBlock
        return data

    async def receive_into(self, buffer: Buffer) -> int:
        """Copy readable bytes into ``buffer`` (at least one, waiting for it); the count."""
        return await self._run(lambda: self.try_read_into(buffer), 1)

    async def peek(self, n: int = 1) -> memoryview:
        """A read-only view of all readable bytes (len >= n, or the rest at EOF), waiting for n."""
        self._check_size(n)
        return await self._run(lambda: self.try_peek(n), n)

    def close(self) -> None:
        """Leave the ring: the slot is freed and the writer no longer waits for us."""
        super().close()
        self._close_watch()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {**self._ring_attributes(), RingAttribute.readable: self.readable}
