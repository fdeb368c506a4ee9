"""Receive rings of TCP streams, kept for the next connection instead of unmapped.

Making a ring costs a memfd, a truncate and three mappings (~40 µs here), a
fifth of what a server spends on a short connection.  A stream that closes
gives its ring back; the next stream takes it.  An empty ring at any cursor
position is as good as a new one: a reader sees only bytes written after it,
so nothing of the old connection can be read through the new one.

A ring is kept only when nothing of the old stream can still see its memory:
every view the ends lent is released (a loan used afterwards raises
``ValueError``, as after any ``consume``), and no export of it is left (a
slice the user cut from a loan keeps the memory mapped for that slice, so
such a ring is closed, not reused).  A child of ``fork()`` starts with an
empty pool: its rings share memory with the parent's.
"""

from __future__ import annotations

import contextlib
import os
import threading

from ._native import ReaderEnd, WriterEnd, _ring_capacity
from ._ring import Ring

__all__ = ["give_back", "take"]

#: rings kept per capacity (256 KiB each by default: 16 MiB)
KEEP = 64

_free: dict[int, list[tuple[Ring, WriterEnd, ReaderEnd]]] = {}
_lock = threading.Lock()  # loops in several threads share the pool


def _forget_after_fork() -> None:
    global _free, _lock
    _free = {}
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def take(capacity: int) -> tuple[Ring, WriterEnd, ReaderEnd]:
    """An empty ring of ``capacity`` (rounded as ``Ring`` rounds), with its two ends."""
    with _lock:
        kept = _free.get(_ring_capacity(capacity))
        if kept:
            return kept.pop()
    ring = Ring(capacity, notifier="none")  # used by its stream's own calls only: no fds
    return ring, ring.writer(), ring.reader()


def give_back(ring: Ring, writer: WriterEnd, reader: ReaderEnd) -> None:
    """The stream is done with the ring: keep it for the next one, or close it."""
    try:
        if not ring.closed:
            reader.consume(reader.readable())  # what was not read goes; lent views end
        reusable = (
            not ring.closed and writer.writable() == ring.capacity and ring._reusable()
        )
    except Exception:  # anything odd about the ring: do not reuse it
        reusable = False
    if reusable:
        with _lock:
            kept = _free.setdefault(ring.capacity, [])
            if len(kept) < KEEP:
                kept.append((ring, writer, reader))
                return
    # A slice of a loan still alive keeps the memory until the last of them goes.
    with contextlib.suppress(BufferError):
        ring.close()
