"""Records: variable-length messages on a double-mapped ring (``RecordRing``).

A record is a 16-byte header and its payload, padded to 8 bytes; thanks to
the double mapping it is never split or padded at the wrap, so every record
a reader sees is one contiguous view.  A producer *claims* room for a record,
writes the payload in place through ``claim.view`` and *commits* it (or
*aborts* it: readers skip it).  Readers are the byte ring's readers: they
only ever see finished records, in claim order, and each sees every record.

``multi_producer=True`` lets many threads and tasks use the one writer at
once: claims move a shared cursor with a CAS, and whoever finishes a record
publishes every finished record at the head.  The protocol and the layout
are in ``aring/includes/header.h``; the native part in ``_core/records.pxi``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
from anyio import BusyResourceError, ClosedResourceError, WouldBlock
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from . import _native
from ._backends import Backend, checkpoint_within, current_backend
from ._native import (
    _check_timeout,
    _record_abandon,
    _record_batch,
    _record_read,
    _record_stalled,
)
from ._ring import Checkpoints, check_checkpoints
from ._streams import Reader, RingAttribute, _TaskSide
from ._sync import _timed_out

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "Claim",
    "RecordReader",
    "RecordRing",
    "RecordWriter",
    "SyncRecordReader",
    "SyncRecordWriter",
    "open_records",
]

_T = TypeVar("_T")

#: seconds a claim may hold the readers back before they drop it
DEFAULT_CLAIM_TIMEOUT = 10.0


def _busy(message: str) -> BusyResourceError:
    exc = BusyResourceError("using")
    exc.args = (message,)
    return exc


class RecordRing(_native.RingCore):
    """A ring of variable-length records: ``writer()`` claims and sends, ``reader()`` receives.

    ``capacity`` bytes (rounded up to the page size) hold records of up to
    ``max_record`` bytes each (the capacity minus a 16-byte header).
    ``multi_producer=True``: the writer may be used by many threads and tasks
    at once.  ``readers=k``: up to k readers, each seeing every record.
    ``strategy``, ``notifier`` and ``checkpoints`` are as for ``aring.Ring``.
    ``claim_timeout``: a claim left open longer than this (seconds) while it
    holds the readers back is dropped by them (its commit then raises
    ``BrokenResourceError``), so one stuck producer cannot stall the ring.
    """

    checkpoints: Checkpoints
    multi_producer: bool
    claim_timeout: float

    def __new__(
        cls,
        capacity: int,
        *,
        multi_producer: bool = False,
        readers: int = 1,
        strategy: str = "auto",
        path: str | bytes | None = None,
        notifier: str = "auto",
        checkpoints: Checkpoints = "always",
        claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
        flush_every: float | None = None,
        populate: bool = False,
        _attach: bool = False,
    ) -> RecordRing:
        check_checkpoints(checkpoints)
        if not isinstance(multi_producer, bool):
            raise TypeError(f"multi_producer must be a bool, not {type(multi_producer).__name__}")
        if isinstance(claim_timeout, bool) or not isinstance(claim_timeout, (int, float)):
            raise TypeError(f"claim_timeout must be a number, not {type(claim_timeout).__name__}")
        if not 0 < claim_timeout < float("inf"):
            raise ValueError(f"claim_timeout must be > 0 seconds and finite, got {claim_timeout}")
        ring = super().__new__(
            cls,
            capacity,
            readers=readers,
            strategy=strategy,
            path=path,
            notifier=notifier,
            records=True,
            multi_producer=multi_producer,
            flush_every=flush_every,
            populate=populate,
            _attach=_attach,
        )
        ring.checkpoints = checkpoints
        ring.multi_producer = ring._multi_producer  # a ring file says what it was made with
        ring.claim_timeout = float(claim_timeout)
        return ring

    def __init__(
        self,
        capacity: int,
        *,
        multi_producer: bool = False,
        readers: int = 1,
        strategy: str = "auto",
        path: str | bytes | None = None,
        notifier: str = "auto",
        checkpoints: Checkpoints = "always",
        claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
        flush_every: float | None = None,
        populate: bool = False,
        _attach: bool = False,
    ) -> None:
        self._writer: RecordWriter | None = None

    @property
    def max_record(self) -> int:
        """The largest record (payload bytes) this ring holds."""
        return min(self.capacity - _native.RECORD_HEADER, _native.RECORD_LENGTH_LIMIT)

    def writer(self) -> RecordWriter:
        """The ring's one writer end (the same object on every call)."""
        if self.closed:
            raise ClosedResourceError("the ring is closed")
        if self._writer is None:
            self._writer = RecordWriter(self)
        return self._writer

    def reader(self, *, name: str | None = None) -> RecordReader:
        """A new reader; it starts at the oldest record still held for the others.

        ``name``: a named reader of a ring file (see ``Ring.reader``).
        """
        if self.closed:
            raise ClosedResourceError("the ring is closed")
        return RecordReader(self, name=name)

    def __enter__(self) -> Self:
        return self

    def __repr__(self) -> str:
        if self.closed:
            return "<aring.RecordRing closed>"
        return (
            f"<aring.RecordRing capacity={self.capacity} readers={self.max_readers} "
            f"multi_producer={self.multi_producer} strategy={self.strategy}>"
        )


class Claim:
    """Room for one record, claimed and not yet committed: fill ``view``, then ``commit()``.

    ``abort()`` drops the record (readers skip it).  ``with claim as view:``
    commits on a normal exit and aborts on an exception.  A claim dropped
    without either is aborted.  ``view`` is released once the claim is
    finished: writing through it afterwards raises ``ValueError``.
    """

    __slots__ = ("_position", "_writer", "view")

    def __init__(self, writer: RecordWriter, position: int, view: memoryview) -> None:
        self._writer: RecordWriter | None = writer
        self._position = position
        #: the record's payload, writable, exactly as long as claimed
        self.view = view

    @property
    def open(self) -> bool:
        """True until the claim is committed or aborted."""
        return self._writer is not None

    def commit(self) -> None:
        """Publish the record.  ClosedResourceError if the writer or ring was closed first
        (the record was dropped then)."""
        writer = self._take("commit")
        if not writer._finish(self._position, True, self.view):
            raise ClosedResourceError(
                "the writer or the ring was closed while the claim was open; the record was dropped"
            )

    def abort(self) -> None:
        """Drop the record: readers skip it.  Nothing happens if the writer already dropped it."""
        writer = self._take("abort")
        writer._finish(self._position, False, self.view)

    def _take(self, what: str) -> RecordWriter:
        writer = self._writer
        if writer is None:
            raise ValueError(f"cannot {what}: the claim was already committed or aborted")
        self._writer = None
        writer._claim_ended()
        return writer

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._writer is None:
            return  # finished inside the block
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __del__(self) -> None:
        writer = self._writer
        if writer is not None:
            self._writer = None
            with contextlib.suppress(Exception):
                writer._claim_ended()
                writer._finish(self._position, False, self.view)

    def __repr__(self) -> str:
        state = "open" if self.open else "finished"
        return f"<aring.Claim {len(self.view) if self.open else '-'} bytes {state}>"


class RecordWriter(_native.RecordWriterEnd, _TaskSide, ObjectSendStream[bytes]):
    """The writer of a RecordRing, and an ``anyio.abc.ObjectSendStream`` of records.

    Async: ``claim``, ``send``, ``aclose``.  Nonblocking: ``try_claim``,
    ``send_nowait``.  Blocking, for threads: ``writer.sync``.  Closing it
    aborts the claims still open; readers see the end of stream after the
    last record.
    """

    def __init__(self, ring: RecordRing) -> None:
        self._init_task_side(ring)  # type: ignore[arg-type]
        self._multi = ring.multi_producer
        self._single_claim_open = False
        self._sync: SyncRecordWriter | None = None
        # One task per event loop (one thread) sleeps on the notifier at a
        # time; the others wait for it here, then look again.
        self._sleep_locks: dict[object, anyio.Lock] = {}
        self._thread_sleep = threading.Lock()

    @property
    def sync(self) -> SyncRecordWriter:
        """The blocking flavour of this end, for threads."""
        if self._sync is None:
            self._sync = SyncRecordWriter(self)
        return self._sync

    def reattach(self) -> None:
        """Produce from this process too, with the writer inherited through ``fork()``.

        The other processes keep producing; the stream ends once every process
        closed the writer (or died).  ``ClosedResourceError`` if every other
        process had closed it already.  Without ``multi_producer=True`` this is
        a hand-over, as for the byte ends: the other processes must stop
        producing (one producer at a time).
        """
        super().reattach()
        # The parent's threads are not here: a lock one of them held at fork()
        # would stay held for ever, and its loops' watches are not ours.
        self._thread_sleep = threading.Lock()
        self._sleep_locks = {}
        self._single_claim_open = False
        self._watch = None

    # -- claims --------------------------------------------------------------------------

    def try_claim(self, n: int) -> Claim | None:
        """Room for a record of ``n`` bytes now, or None when it does not fit yet.

        ``ValueError`` if it can never fit (more than ``max_record``).
        """
        size = self._size_of(n)
        return self._try_claim_sized(n, size)

    def _try_claim_sized(self, n: int, size: int) -> Claim | None:
        if not self._multi and self._single_claim_open:
            raise _busy(
                "a claim of this writer is still open: commit or abort it first "
                "(RecordRing(multi_producer=True) allows several)"
            )
        position = self._try_claim(n)
        if position is None:
            return None
        if not self._multi:
            self._single_claim_open = True
        try:
            return Claim(self, position, self._claim_view(position))
        except BaseException:
            self._claim_ended()
            self._finish(position, False)
            raise

    def _claim_ended(self) -> None:
        self._single_claim_open = False

    async def claim(self, n: int) -> Claim:
        """Room for a record of ``n`` bytes, waiting for it.  A cancelled call claimed nothing."""
        size = self._size_of(n)
        await checkpoint_within(self._budget)
        claim = self._try_claim_sized(n, size)
        while claim is None:
            await self._wait_for_room(current_backend(), size)
            claim = self._try_claim_sized(n, size)
        return claim

    async def _wait_for_room(self, backend: Backend, size: int) -> None:
        await backend.checkpoint()  # the readers, on this loop, often make room meanwhile
        if self._ready(size):
            return
        key = backend.loop_key()
        lock = self._sleep_locks.get(key)
        if lock is None:
            self._sleep_locks.clear()  # a loop that is gone holds nothing
            lock = self._sleep_locks[key] = anyio.Lock()
        async with lock:
            if not self.arm(size):
                return
            if self._multi:
                # A thread of this writer may share the notifier and drain our
                # wakeup: look again now and then instead of sleeping for ever.
                with anyio.move_on_after(_native.RECORD_WAIT_SLICE):
                    await self._sleep_on_notifier(backend, size)
            else:
                await self._sleep_on_notifier(backend, size)
        if self._budget is not None:
            self._budget.restart()

    # -- one call per record ---------------------------------------------------------

    def send_nowait(self, item: Buffer) -> None:
        """Copy ``item`` in as one record now, or ``anyio.WouldBlock`` when it does not fit yet."""
        if not self._try_send(item):
            raise WouldBlock

    async def send(self, item: Buffer) -> None:
        """Copy ``item`` in as one record, waiting for room.  Cancelled: nothing was sent."""
        size = self._size_of(_record_length(item))
        await checkpoint_within(self._budget)
        while not self._try_send(item):
            await self._wait_for_room(current_backend(), size)

    def try_send_batch(self, records: Sequence[Buffer]) -> int:
        """Copy in as many of ``records`` as fit now, in order, with one claim; how many.

        One call for the lot: the claim, the copies and the wakeup are shared.
        ``ValueError`` (nothing sent) if one of them can never fit.
        """
        return int(self._try_send_batch(_as_list(records), 0))

    async def send_batch(self, records: Sequence[Buffer]) -> None:
        """Copy ``records`` in, in order, each as one record, waiting for room as needed.

        As many as fit go in per claim.  A cancelled call may have sent a
        prefix of them (it never sends a part of one record); ``send`` one by
        one for all-or-nothing.
        """
        batch = _as_list(records)
        await checkpoint_within(self._budget)
        sent = self._try_send_batch(batch, 0)
        while sent < len(batch):
            await self._wait_for_room(current_backend(), self._size_of(_record_length(batch[sent])))
            sent += self._try_send_batch(batch, sent)

    def close(self) -> None:
        """No new claims; open ones are aborted; readers see the end after the last record."""
        super().close()
        self._close_watch()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {
            RingAttribute.capacity: lambda: self.capacity,
            RingAttribute.ring: lambda: self._ring,
            RingAttribute.writable: self.writable,
        }


def _as_list(records: Sequence[Buffer]) -> list[Buffer]:
    if isinstance(records, (bytes, bytearray, memoryview)):
        raise TypeError("records must be a sequence of bytes-like objects, not a single one")
    return records if type(records) is list else list(records)


def _record_length(item: Buffer) -> int:
    try:
        with memoryview(item) as view:
            return view.nbytes
    except TypeError:
        kind = type(item).__name__
        raise TypeError(f"a record must be a bytes-like object, not {kind}") from None


class SyncRecordWriter:
    """Blocking calls on a record writer, for threads (``writer.sync``)."""

    __slots__ = ("_end",)

    def __init__(self, end: RecordWriter) -> None:
        self._end = end

    def claim(self, n: int, timeout: float | None = None) -> Claim:
        """Room for a record of ``n`` bytes, waiting for it; TimeoutError after ``timeout`` s."""
        end = self._end
        size = end._size_of(n)
        _check_timeout(timeout)
        claim = end._try_claim_sized(n, size)
        if claim is not None:
            return claim
        deadline = None if timeout is None else time.monotonic() + timeout
        with end._thread_sleep:  # one thread sleeps on the notifier at a time
            while True:
                claim = end._try_claim_sized(n, size)
                if claim is not None:
                    return claim
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not end._wait_for_space(size, left):
                    raise _timed_out(f"claim({n})", timeout)

    def send(self, data: Buffer, timeout: float | None = None) -> None:
        """Copy ``data`` in as one record, waiting for room; TimeoutError after ``timeout`` s."""
        end = self._end
        _check_timeout(timeout)
        if end._try_send(data):
            return
        size = end._size_of(_record_length(data))
        deadline = None if timeout is None else time.monotonic() + timeout
        with end._thread_sleep:  # one thread sleeps on the notifier at a time
            while not end._try_send(data):
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not end._wait_for_space(size, left):
                    raise _timed_out("send", timeout)


    def send_batch(self, records: Sequence[Buffer], timeout: float | None = None) -> None:
        """Copy ``records`` in, in order, waiting for room; TimeoutError names how many went in."""
        end = self._end
        _check_timeout(timeout)
        batch = _as_list(records)
        sent = end._try_send_batch(batch, 0)
        if sent == len(batch):
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with end._thread_sleep:
            while sent < len(batch):
                sent += end._try_send_batch(batch, sent)
                if sent == len(batch):
                    return
                size = end._size_of(_record_length(batch[sent]))
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not end._wait_for_space(size, left):
                    raise _timed_out(f"send_batch (after {sent} of {len(batch)} records)", timeout)


class RecordReader(ObjectReceiveStream[bytes]):
    """A reader of a RecordRing, and an ``anyio.abc.ObjectReceiveStream`` of records.

    Async: ``receive``, ``receive_batch``, ``aclose``, ``async for``.
    Nonblocking: ``receive_nowait``, ``try_receive_batch``.  Blocking, for
    threads: ``reader.sync``.  ``anyio.EndOfStream`` once the writer closed
    and every record was read.  The views ``receive_batch`` returns are valid
    until the next call on this reader.
    """

    def __init__(self, ring: RecordRing, *, name: str | None = None) -> None:
        self._bytes = Reader(ring, name=name)  # type: ignore[arg-type]
        self._lent = 0  # bytes spanned by the last batch, consumed by the next call
        self._sync: SyncRecordReader | None = None
        self._claim_timeout = ring.claim_timeout
        self._stall: tuple[int, float] | None = None  # (open claim's position, seen since)

    def _stalled_for(self, now: float) -> float | None:
        """None if no open claim holds this reader back, else the seconds left to wait for it.

        Past claim_timeout, the claim is dropped here (and 0 returned: look again).
        """
        position = _record_stalled(self._bytes)
        if position < 0:
            self._stall = None
            return None
        if self._stall is None or self._stall[0] != position:
            self._stall = (position, now)
        left = self._stall[1] + self._claim_timeout - now
        if left > 0:
            return left
        _record_abandon(self._bytes, position)
        self._stall = None
        return 0.0

    @property
    def slot(self) -> int:
        return self._bytes.slot

    @property
    def closed(self) -> bool:
        return bool(self._bytes.closed)

    @property
    def sync(self) -> SyncRecordReader:
        """The blocking flavour of this end, for threads."""
        if self._sync is None:
            self._sync = SyncRecordReader(self)
        return self._sync

    def _release_lent(self) -> None:
        if self._lent:
            lent, self._lent = self._lent, 0
            self._bytes.consume(lent)

    def receive_nowait(self) -> bytes:
        """The next record now, or ``anyio.WouldBlock``."""
        self._release_lent()
        data = _record_read(self._bytes)
        if data is None:
            raise WouldBlock
        return data

    def try_receive_batch(self, max_records: int | None = None) -> list[memoryview]:
        """Every record readable now (at most ``max_records``), as read-only views; [] if none.

        Zero-copy: the views are valid until the next call on this reader.
        """
        limit = _check_max_records(max_records)
        self._release_lent()
        views, spanned, eof = _record_batch(self._bytes, limit)
        if views:
            self._lent = spanned
            return views
        if spanned:  # aborted records only
            self._bytes.consume(spanned)
        if eof:
            _record_read(self._bytes)  # nothing is left: raises the end of stream
        return []

    async def receive(self) -> bytes:
        """The next record, waiting for it.  A cancelled call consumed nothing."""
        return await self._run(lambda: _record_read(self._bytes))

    async def receive_batch(self, max_records: int | None = None) -> list[memoryview]:
        """At least one record, and every other one readable now (at most ``max_records``).

        Zero-copy: read-only views valid until the next call on this reader.
        """
        limit = _check_max_records(max_records)
        return await self._run(lambda: self.try_receive_batch(limit) or None)

    async def _run(self, attempt: Callable[[], _T | None]) -> _T:
        end = self._bytes
        await checkpoint_within(end._budget)
        self._release_lent()
        token = end._acquire(True)
        try:
            result = attempt()
            while result is None:
                left = self._stalled_for(anyio.current_time())
                if left is None:
                    # A claim opened while this reader sleeps would wake no one:
                    # look again after claim_timeout at the latest.
                    left = self._claim_timeout
                if left > 0:
                    with anyio.move_on_after(left):
                        await end._wait_until_ready(current_backend(), 1)
                result = attempt()
            return result
        finally:
            end._release(token, True)

    def reattach(self) -> None:
        """Take over this reader, inherited through ``fork()``, in this process.

        As for the byte ends: until then its calls raise ``ForkedError``, and
        the parent must stop using it.
        """
        self._bytes.reattach()
        self._lent = 0
        self._stall = None

    def close(self) -> None:
        """Leave the ring: the slot is freed and the writer no longer waits for this reader."""
        self._lent = 0
        self._bytes.close()

    async def aclose(self) -> None:
        self.close()
        await current_backend().checkpoint()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {
            RingAttribute.capacity: lambda: self._bytes.capacity,
            RingAttribute.readable: self._bytes.readable,
            RingAttribute.ring: lambda: self._bytes._ring,
        }


def _check_max_records(max_records: int | None) -> int:
    if max_records is None:
        return 1 << 62
    if isinstance(max_records, bool) or not isinstance(max_records, int):
        raise TypeError(f"max_records must be an int or None, not {type(max_records).__name__}")
    if max_records < 1:
        raise ValueError(f"max_records must be >= 1, got {max_records}")
    return max_records


class SyncRecordReader:
    """Blocking calls on a record reader, for threads (``reader.sync``)."""

    __slots__ = ("_end",)

    def __init__(self, end: RecordReader) -> None:
        self._end = end

    def _until(self, attempt: Callable[[], _T | None], timeout: float | None, what: str) -> _T:
        _check_timeout(timeout)
        end = self._end
        end._release_lent()
        deadline = None if timeout is None else time.monotonic() + timeout
        result = attempt()
        while result is None:
            now = time.monotonic()
            left = None if deadline is None else max(0.0, deadline - now)
            stall = end._stalled_for(now)
            if stall is None:
                stall = end._claim_timeout  # a claim opened meanwhile would wake no one
            if left is None or stall < left:
                end._bytes.wait(1, stall)  # then look at the claims again
            elif not end._bytes.wait(1, left):
                raise _timed_out(what, timeout)
            result = attempt()
        return result

    def receive(self, timeout: float | None = None) -> bytes:
        """The next record, waiting for it; TimeoutError after ``timeout`` s."""
        end = self._end
        _check_timeout(timeout)
        if not end._lent:  # the hot path: a record is there
            data = _record_read(end._bytes)
            if data is not None:
                return data
        return self._until(lambda: _record_read(end._bytes), timeout, "receive")

    def receive_batch(
        self, max_records: int | None = None, timeout: float | None = None
    ) -> list[memoryview]:
        """At least one record and every other one readable now, as views (see receive_batch)."""
        limit = _check_max_records(max_records)
        return self._until(
            lambda: self._end.try_receive_batch(limit) or None, timeout, "receive_batch"
        )


def open_records(
    capacity: int,
    *,
    multi_producer: bool = False,
    readers: int = 1,
    strategy: str = "auto",
    notifier: str = "auto",
    checkpoints: Checkpoints = "always",
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
) -> contextlib.AbstractAsyncContextManager[tuple[RecordWriter, *tuple[RecordReader, ...]]]:
    """A new RecordRing's ends for ``async with``: ``(writer, reader)``, or ``(writer, *readers)``.

    ``readers=k`` attaches k readers, each seeing every record.  On exit the
    ends and the ring are closed.
    """
    options: dict[str, Any] = {
        "multi_producer": multi_producer,
        "readers": readers,
        "strategy": strategy,
        "notifier": notifier,
        "checkpoints": checkpoints,
        "claim_timeout": claim_timeout,
    }
    return _opened(capacity, options)


@contextlib.asynccontextmanager
async def _opened(
    capacity: int, options: dict[str, Any]
) -> AsyncIterator[tuple[RecordWriter, *tuple[RecordReader, ...]]]:
    ring = RecordRing(capacity, **options)
    try:
        writer = ring.writer()
        readers = [ring.reader() for _ in range(ring.max_readers)]
        yield (writer, *readers)
    finally:
        ring.close()
