"""Regular files for ``pump`` and ``fill``: one worker thread per transfer, not one hop per region.

Files cannot be polled, so their system calls run in a thread.  Handing each
region to a pool thread costs two loop passes and two thread switches per
region; here one worker thread owns the ring end for the whole transfer,
while the task only awaits the end, an error or its own cancellation.

The worker's loop runs in native code (``file_loops.pxi``): it waits on the
ring, makes one ``write(2)`` (pump) or ``read(2)`` (fill) per contiguous
region and moves the cursor without taking the GIL, so a thread or task
holding the GIL on the other side never stalls it; it comes back to Python
once per ``PROGRESS_BYTES`` (``stats``), to sync (``FileSync``), at the end,
on an error or when told to stop.  Where the other side is another process
the loops run in Python (``wait`` watches that process): one
``write(2)``/``readv(2)`` per region, waits with the GIL released.

Cancellation tells the worker to stop and waits for it (shielded) before
returning, so the caller may close the fd as soon as ``pump``/``fill``
returns: no system call on it is still running.  The native pump is woken at
once; a Python worker waiting on the ring looks at the stop request every
``STOP_CHECK`` seconds.
"""

from __future__ import annotations

import fcntl
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio import EndOfStream

from ._items import commit_read, end_reservation, ended_mid_item
from ._native import (
    PUMP_END,
    PUMP_MID_ITEM,
    PUMP_PEER,
    PUMP_STOPPED,
    _fill_from_fd,
    _pump_to_fd,
)
from ._streams import Reader, Writer

if TYPE_CHECKING:
    from ._io import TransferStats

__all__ = ["FileSync", "fill_file", "pump_file"]

#: seconds a waiting worker sleeps before it looks whether it was told to stop
#: (the Python loops; the native ones are woken by ``_interrupt_native``)
STOP_CHECK = 0.05

#: the native pump updates ``TransferStats`` once per this many bytes (or per
#: ring-full, if more): each update takes the GIL once
PROGRESS_BYTES = 1 << 20

_NO_LIMIT = 1 << 62

# _run_worker's call: not started yet, running, or never to start
_PENDING, _RUNNING, _ABANDONED = range(3)


async def _run_worker(
    work: Callable[[threading.Event], None], interrupt: Callable[[], None] | None = None
) -> None:
    """Run ``work(stop)`` in a thread; on cancellation set ``stop`` and wait for it to return.

    ``interrupt()`` (from the loop's thread) wakes a worker asleep in native code.
    """
    stop = threading.Event()
    finished = threading.Event()
    # A task cancelled before a pool thread picked the call up never runs it
    # (anyio skips a call whose future is cancelled): waiting for it to finish
    # would wait for ever.  Whether it started is decided under this lock.
    lock = threading.Lock()
    state = _PENDING

    def run() -> None:
        nonlocal state
        with lock:
            if state == _ABANDONED:
                return
            state = _RUNNING
        try:
            work(stop)
        finally:
            finished.set()

    try:
        await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    finally:
        with lock:
            if state == _PENDING:
                state = _ABANDONED  # it will not start now
        if state == _RUNNING and not finished.is_set():
            stop.set()
            if interrupt is not None:
                interrupt()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(finished.wait)


@dataclass(frozen=True)
class FileSync:
    """How ``pump`` makes what it wrote to a regular file durable (``pump(..., sync=)``).

    ``fdatasync`` (``fsync`` with ``metadata=True``) once ``every_bytes`` were
    written since the last one, or ``every_seconds`` after the last one while
    written bytes wait, and always once more at the end of stream, so what
    ``pump`` returned is on the disk.  ``drop_cache`` then tells the kernel it
    may drop the synced range from the page cache (``posix_fadvise``
    ``DONTNEED``), so a long recording does not fill memory with pages nobody
    reads again.  A cancelled ``pump`` does not sync what it wrote last.
    """

    every_bytes: int | None = None
    every_seconds: float | None = None
    metadata: bool = False
    drop_cache: bool = False

    def __post_init__(self) -> None:
        if self.every_bytes is not None:
            if isinstance(self.every_bytes, bool) or not isinstance(self.every_bytes, int):
                raise TypeError(
                    f"every_bytes must be an int, not {type(self.every_bytes).__name__}"
                )
            if self.every_bytes < 1:
                raise ValueError(f"every_bytes must be >= 1, got {self.every_bytes}")
        if self.every_seconds is not None:
            if isinstance(self.every_seconds, bool) or not isinstance(
                self.every_seconds, int | float
            ):
                raise TypeError(
                    f"every_seconds must be a number, not {type(self.every_seconds).__name__}"
                )
            if not 0 < self.every_seconds < math.inf:
                raise ValueError(f"every_seconds must be > 0 and finite, got {self.every_seconds}")


class _Syncer:
    """FileSync's bookkeeping for one transfer (in the worker thread)."""

    def __init__(self, fd: int, policy: FileSync, stats: TransferStats) -> None:
        self._fd = fd
        self._policy = policy
        self._stats = stats
        self._sync = os.fsync if policy.metadata else os.fdatasync
        self._unsynced = 0
        self._last = time.monotonic()
        self._synced_to = 0
        if policy.drop_cache:  # where our writes start: the end of the file if appending
            appending = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
            self._synced_to = os.fstat(fd).st_size if appending else os.lseek(fd, 0, os.SEEK_CUR)

    def wrote(self, n: int) -> None:
        self._unsynced += n
        every = self._policy.every_bytes
        if every is not None and self._unsynced >= every:
            self.sync()
        else:
            self._sync_if_due()

    @property
    def timed(self) -> bool:
        return self._policy.every_seconds is not None

    def next_due(self) -> tuple[int, float]:
        """Bytes, and seconds (-1: none), the worker may write or wait before a sync is due."""
        every = self._policy.every_bytes
        limit = _NO_LIMIT if every is None else max(1, every - self._unsynced)
        seconds = self._sync_if_due()
        return limit, -1.0 if seconds == math.inf else seconds

    def wait_limit(self) -> float:
        """How long the worker may wait for bytes before a timed sync is due."""
        return min(STOP_CHECK, self._sync_if_due())

    def _sync_if_due(self) -> float:
        """The timed sync, if ``every_seconds`` passed with bytes waiting; seconds to the next."""
        every = self._policy.every_seconds
        if every is None or not self._unsynced:
            return math.inf
        due = self._last + every - time.monotonic()
        if due > 0:
            return due
        self.sync()
        return math.inf

    def sync(self) -> None:
        self._sync(self._fd)
        self._stats.syncs += 1
        self._unsynced = 0
        self._last = time.monotonic()
        if self._policy.drop_cache:
            end = os.lseek(self._fd, 0, os.SEEK_CUR)
            if end > self._synced_to:
                os.posix_fadvise(
                    self._fd, self._synced_to, end - self._synced_to, os.POSIX_FADV_DONTNEED
                )
            self._synced_to = end


async def pump_file(
    reader: Reader, fd: int, stats: TransferStats, sync: FileSync | None = None
) -> None:
    """Every region the ring receives, to ``fd`` with one ``write(2)``, until end of stream."""
    if reader._peers_are_local():
        reader._interrupt_native(False)  # an earlier cancelled transfer's request is done with
        await _run_worker(
            lambda stop: _pump_natively(reader, fd, stats, sync, stop),
            lambda: reader._interrupt_native(True),
        )
    else:
        await _run_worker(
            lambda stop: _pump_in_python(
                reader, fd, stats, _Syncer(fd, sync, stats) if sync is not None else None, stop
            )
        )


def _pump_natively(
    reader: Reader, fd: int, stats: TransferStats, sync: FileSync | None, stop: threading.Event
) -> None:
    """The worker: regions written by native code that never takes the GIL (file_loops.pxi).

    It returns to Python once per PROGRESS_BYTES (to update ``stats``), to
    sync (FileSync), at the end, on an error or when the task is cancelled
    (``_interrupt_native``).
    """
    syncer = _Syncer(fd, sync, stats) if sync is not None else None
    # back in Python once per this many bytes, so that ``stats`` shows progress
    progress = max(PROGRESS_BYTES, reader.capacity)
    while not stop.is_set():
        limit, timeout, until_idle = progress, -1.0, False
        if syncer is not None:
            due, timeout = syncer.next_due()
            limit = min(limit, due)
            # a timed sync's clock starts with the first unsynced byte: come back then
            until_idle = timeout < 0 and syncer.timed
        written, regions, calls, why = _pump_to_fd(reader, fd, limit, timeout, until_idle)
        stats.bytes += written
        stats.regions += regions
        stats.syscalls += calls
        if why < 0:
            raise OSError(-why, os.strerror(-why))
        if syncer is not None:
            syncer.wrote(written)
        if why == PUMP_END:
            if syncer is not None:
                syncer.sync()  # what pump returns is on the disk
            return
        if why == PUMP_STOPPED:
            return
        if why == PUMP_PEER:  # the writer moved to another process: wait() watches it
            _pump_in_python(reader, fd, stats, syncer, stop)
            return


def _pump_in_python(
    reader: Reader, fd: int, stats: TransferStats, syncer: _Syncer | None, stop: threading.Event
) -> None:
    """The worker for a ring whose writer is another process (``wait`` watches it die)."""
    item = reader.item_size
    while not stop.is_set():
        try:
            view = reader.try_peek(1)
        except EndOfStream:
            if syncer is not None:
                syncer.sync()  # what pump returns is on the disk
            return
        if view is None:
            reader.wait(1, STOP_CHECK if syncer is None else syncer.wait_limit())
            continue
        stats.regions += 1
        stats.syscalls += 1
        written = os.write(fd, view)
        while written % item:  # a partial item: finish it before the region is released
            stats.syscalls += 1
            written += os.write(fd, view[written : written - written % item + item])
        reader.consume(written)  # releases the view: the region leaves the ring
        stats.bytes += written
        if syncer is not None:
            syncer.wrote(written)


async def fill_file(writer: Writer, fd: int, stats: TransferStats) -> None:
    """``read(2)`` from ``fd`` into each free region until the file ends."""
    if writer._peers_are_local():
        writer._interrupt_native(False)  # an earlier cancelled transfer's request is done with
        await _run_worker(
            lambda stop: _fill_natively(writer, fd, stats, stop),
            lambda: writer._interrupt_native(True),
        )
    else:
        await _run_worker(lambda stop: _fill_in_python(writer, fd, stats, stop))


def _fill_natively(writer: Writer, fd: int, stats: TransferStats, stop: threading.Event) -> None:
    """The worker: regions read by native code that never takes the GIL (file_loops.pxi)."""
    progress = max(PROGRESS_BYTES, writer.capacity)
    held = 0  # bytes of an unfinished item, kept at the start of the free space
    while not stop.is_set():
        moved, regions, calls, held, why = _fill_from_fd(writer, fd, progress, held)
        stats.bytes += moved
        stats.regions += regions
        stats.syscalls += calls
        if why < 0:
            raise OSError(-why, os.strerror(-why))
        if why == PUMP_MID_ITEM:
            raise ended_mid_item(held, writer.item_size)
        if why in (PUMP_END, PUMP_STOPPED):
            return
        if why == PUMP_PEER:  # a reader in another process joined: wait() watches it
            _fill_in_python(writer, fd, stats, stop, held)
            return


def _fill_in_python(
    writer: Writer, fd: int, stats: TransferStats, stop: threading.Event, held: int = 0
) -> None:
    """The worker for a ring with readers in other processes (``wait`` watches them).

    ``held``: bytes of an unfinished item kept at the start of the free space.
    """
    while not stop.is_set():
        view = writer.try_reserve(held + 1)
        if view is None:
            writer.wait(held + 1, STOP_CHECK)
            continue
        stats.regions += 1
        stats.syscalls += 1
        try:
            got = os.readv(fd, [view[held:] if held else view])
        except BaseException:
            end_reservation(writer)
            raise
        held = commit_read(writer, held, got, stats)
        if not got:
            return
