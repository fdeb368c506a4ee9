"""Receive rings of TCP streams, kept for the next connection instead of unmapped.

Making a ring costs a memfd, a truncate and three mappings (~40 µs here), a
fifth of what a server spends on a short connection.  A stream that closes
gives its ring back; the next stream takes it.  An empty ring at any cursor
position is as good as a new one: a reader sees only bytes written after it,
so nothing of the old connection can be read through the new one.

A ring is kept only when nothing of the old stream can still see its memory:
every view the ends lent is released (a loan used afterwards raises
``ValueError``, as after any ``consume``), no export of it is left (a slice
the user cut from a loan keeps the memory mapped for that slice, so such a
ring is closed, not reused), and nothing but the ring holds its buffer (a
view's ``.obj``).  A ring that was out of the pool when the process forked
is never kept: the child may hold views of the same memory.  A child of
``fork()`` starts with an empty pool.  At most ``KEEP`` rings per capacity
and ``KEEP_BYTES`` in all are kept.
"""

from __future__ import annotations

import contextlib
import os
import threading

from ._native import ReaderEnd, WriterEnd, _ring_capacity
from ._ring import Ring

__all__ = ["Lease", "give_back", "take"]

#: rings kept per capacity (256 KiB each by default: 16 MiB) ...
KEEP = 64
#: ... and bytes of rings kept in all
KEEP_BYTES = 64 << 20

Lease = tuple[Ring, WriterEnd, ReaderEnd, int]  # the ring, its ends, the fork epoch taken in

_free: dict[int, list[Lease]] = {}
_kept_bytes = 0
_lock = threading.Lock()  # loops in several threads share the pool
_fork_epoch = 0  # forks made by this process: a ring out of the pool then is never kept


def _before_fork() -> None:
    global _fork_epoch
    _fork_epoch += 1


def _forget_after_fork() -> None:
    global _free, _kept_bytes, _lock
    _free, _kept_bytes = {}, 0
    _lock = threading.Lock()


os.register_at_fork(before=_before_fork, after_in_child=_forget_after_fork)


def take(capacity: int) -> Lease:
    """An empty ring of ``capacity`` (rounded as ``Ring`` rounds), its two ends, the epoch."""
    global _kept_bytes
    with _lock:
        kept = _free.get(_ring_capacity(capacity))
        if kept:
            ring, writer, reader, _ = kept.pop()
            _kept_bytes -= ring.capacity
            return ring, writer, reader, _fork_epoch
    ring = Ring(capacity, notifier="none")  # used by its stream's own calls only: no fds
    return ring, ring.writer(), ring.reader(), _fork_epoch


def give_back(lease: Lease) -> None:
    """The stream is done with the ring: keep it for the next one, or close it."""
    global _kept_bytes
    ring, writer, reader, epoch = lease
    try:
        if not ring.closed:
            reader.consume(reader.readable())  # what was not read goes; lent views end
        reusable = (
            epoch == _fork_epoch
            and not ring.closed
            and writer.writable() == ring.capacity
            and ring._reusable()
        )
    except Exception:  # anything odd about the ring: do not reuse it
        reusable = False
    if reusable:
        with _lock:
            kept = _free.setdefault(ring.capacity, [])
            if len(kept) < KEEP and _kept_bytes + ring.capacity <= KEEP_BYTES:
                kept.append((ring, writer, reader, epoch))
                _kept_bytes += ring.capacity
                return
    # A slice of a loan still alive keeps the memory until the last of them goes.
    with contextlib.suppress(BufferError):
        ring.close()
