"""Regular files for ``pump`` and ``fill``: one worker thread per transfer, not one hop per region.

Files cannot be polled, so their system calls run in a thread.  Handing each
region to a pool thread costs two loop passes and two thread switches per
region; here one worker thread owns the ring end for the whole transfer: it
waits on the ring with the blocking wait (GIL released), makes one
``write(2)``/``readv(2)`` per contiguous region and moves the cursor, while
the task only awaits the end, an error or its own cancellation.

Cancellation tells the worker to stop and waits for it (shielded) before
returning, so the caller may close the fd as soon as ``pump``/``fill``
returns: no system call on it is still running.  A worker waiting on the ring
looks at the stop request every ``STOP_CHECK`` seconds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from anyio import EndOfStream

from ._items import commit_read, end_reservation
from ._streams import Reader, Writer

if TYPE_CHECKING:
    from ._io import TransferStats

__all__ = ["fill_file", "pump_file"]

#: seconds a waiting worker sleeps before it looks whether it was told to stop
STOP_CHECK = 0.05


async def _run_worker(work: Callable[[threading.Event], None]) -> None:
    """Run ``work(stop)`` in a thread; on cancellation set ``stop`` and wait for it to return."""
    stop = threading.Event()
    finished = threading.Event()

    def run() -> None:
        try:
            work(stop)
        finally:
            finished.set()

    try:
        await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    finally:
        if not finished.is_set():
            stop.set()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(finished.wait)


async def pump_file(reader: Reader, fd: int, stats: TransferStats) -> None:
    """Every region the ring receives, to ``fd`` with one ``write(2)``, until end of stream."""
    item = reader.item_size

    def work(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                view = reader.try_peek(1)
            except EndOfStream:
                return
            if view is None:
                reader.wait(1, STOP_CHECK)
                continue
            stats.regions += 1
            stats.syscalls += 1
            written = os.write(fd, view)
            while written % item:  # a partial item: finish it before the region is released
                stats.syscalls += 1
                written += os.write(fd, view[written : written - written % item + item])
            reader.consume(written)  # releases the view: the region leaves the ring
            stats.bytes += written

    await _run_worker(work)


async def fill_file(writer: Writer, fd: int, stats: TransferStats) -> None:
    """``readv(2)`` from ``fd`` into each free region until the file ends."""

    def work(stop: threading.Event) -> None:
        held = 0  # bytes of an unfinished item, kept at the start of the free space
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

    await _run_worker(work)

