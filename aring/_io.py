"""Moving bytes between a ring and the kernel: ``pump`` (ring -> target), ``fill`` (back).

One system call per contiguous region: a ring view is handed straight to
``send``/``os.write`` (``recv_into``/``os.readv`` when filling), the double
mapping making every region one buffer even across the wrap.  Bytes leave the
ring only once the call that wrote them has returned, so a cancelled transfer
loses nothing it reported as moved.

Targets, by type:

* ``socket.socket``: made non-blocking; waits for readiness on EAGAIN with the
  running loop's fd wait (the socket is never handed to a loop transport).
* ``int``: a pipe or socket fd, made non-blocking (the caller keeps ownership;
  the fd is never closed here).
* a regular file (an ``int`` fd or an object with ``fileno()``): files cannot
  be polled, so one worker thread owns the ring end for the whole transfer and
  makes one ``os.write``/``os.readv`` per region (``_file_worker``).
* an anyio ``ByteSendStream``/``ByteReceiveStream``: ``send`` gets a copy of the
  region, since asyncio transports may keep a reference to the buffer they were
  given after ``send`` returns (CPython 3.12+ and uvloop do), and the ring
  would reuse that memory.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream
from anyio.abc import ByteReceiveStream, ByteSendStream

from ._backends import FdWaiter, current_backend
from ._common import BROKEN_ERRORS, shutdown_write
from ._file_worker import FileSync, fill_file, pump_file
from ._items import commit_read, end_reservation, ended_mid_item
from ._record_io import fill_records, pump_records
from ._records import RecordReader, RecordWriter
from ._streams import Reader, Writer

__all__ = ["TransferStats", "fill", "pump", "sendfile"]

#: the most one ``send``/``write`` to a stream copy takes, so copies stay cache-sized
_COPY_LIMIT = 1 << 20


@dataclass
class TransferStats:
    """Counters of one ``pump`` or ``fill``, updated as it runs.

    ``syscalls`` counts the data-moving calls (send/recv_into/write/readv or
    stream sends; for the relay, its steps: calls into its C loop of reads
    and writes); ``regions`` the ring regions handed to them; ``waits`` the
    times the target was not ready (EAGAIN) and the transfer waited for it.
    """

    bytes: int = 0
    syscalls: int = 0
    regions: int = 0
    waits: int = 0
    #: fdatasync/fsync calls made for ``pump(..., sync=aring.FileSync(...))``
    syncs: int = 0
    #: datagrams ``fill`` into a record ring dropped: longer than its largest record
    dropped: int = 0


def _is_regular_file(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _fileno(target: object) -> int | None:
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    fileno = getattr(target, "fileno", None)
    if callable(fileno) and not isinstance(target, socket.socket):
        try:
            fd = fileno()
        except (OSError, ValueError):
            return None
        return fd if isinstance(fd, int) else None
    return None


@contextmanager
def _closed_ring_is_closed(end: Reader | Writer) -> Iterator[None]:
    """The end (or its ring) closed during the transfer: ``ClosedResourceError``.

    The transfer may be waiting on its socket or stream, which the close does
    not touch: a hook on the end cancels the transfer from whichever thread
    closes it.  A region released under us is the same error, not a
    released-memoryview ``ValueError``.
    """
    scope = anyio.CancelScope()
    soon = current_backend().call_soon_threadsafe()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop already ended
            soon(scope.cancel)

    end._on_close = (*end._on_close, wake)
    try:
        with scope:
            yield
    except ValueError as exc:
        if end.closed:
            raise ClosedResourceError(
                "the ring was closed while one of its regions was being moved"
            ) from exc
        raise
    finally:
        end._on_close = tuple(hook for hook in end._on_close if hook is not wake)
    if scope.cancelled_caught:  # only the hook cancels this scope, once the end closed
        raise ClosedResourceError("the ring was closed during the transfer")


async def pump(
    reader: Reader | RecordReader,
    dst: object,
    *,
    eof: bool = True,
    stats: TransferStats | None = None,
    sync: FileSync | None = None,
) -> int:
    """Move everything ``reader`` receives to ``dst`` until the ring's end of stream.

    Returns the number of bytes moved.  With ``eof=True`` the destination is
    half-closed at the end (``shutdown(SHUT_WR)`` for a socket, ``send_eof()``
    for an anyio stream that has it); it is never closed.  A peer that went
    away raises ``anyio.BrokenResourceError``.  ``sync=aring.FileSync(...)``
    (regular files only) syncs the file as it goes and at the end.

    A ``RecordReader`` sends each record as one datagram on a connected
    datagram socket (``eof`` does not apply).
    """
    if isinstance(reader, RecordReader):
        if sync is not None:
            raise ValueError("sync= applies to regular files, not to records")
        stats = stats if stats is not None else TransferStats()
        return await pump_records(reader, dst, stats)
    if sync is not None:
        if not isinstance(sync, FileSync):
            raise TypeError(f"sync must be an aring.FileSync, not {type(sync).__name__}")
        fd = None if isinstance(dst, socket.socket | ByteSendStream) else _fileno(dst)
        if fd is None or not _is_regular_file(fd):
            raise ValueError("sync= applies to regular files only, and dst is not one")
    stats = stats if stats is not None else TransferStats()
    with _closed_ring_is_closed(reader):
        if isinstance(dst, socket.socket):
            dst.setblocking(False)
            await _pump_pollable(reader, dst, dst.send, stats, "the peer closed the connection")
            if eof:
                shutdown_write(dst)
        elif isinstance(dst, ByteSendStream):
            await _pump_stream(reader, dst, stats)
            if eof and hasattr(dst, "send_eof"):
                await dst.send_eof()
        else:
            fd = _fileno(dst)
            if fd is None:
                raise TypeError(
                    "dst must be a socket.socket, a file descriptor, a file object or an "
                    f"anyio ByteSendStream, not {type(dst).__name__}"
                )
            if _is_regular_file(fd):
                flush = getattr(dst, "flush", None)
                if callable(flush):
                    flush()  # keep the order of what the file object buffered before us
                await pump_file(reader, fd, stats, sync)
            else:
                os.set_blocking(fd, False)
                write = functools.partial(os.write, fd)
                await _pump_pollable(reader, fd, write, stats, "the reading end went away")
    return stats.bytes


async def _next_region(reader: Reader) -> memoryview | None:
    try:
        return await reader.peek(1)
    except EndOfStream:
        return None


async def _call_when_ready(
    call: Callable[[memoryview], int],
    view: memoryview,
    start: int,
    stop: int,
    wait: Callable[[], Awaitable[None]],
    stats: TransferStats,
    gone: str,
) -> int:
    """``call(view[start:stop])`` on a non-blocking fd, waiting with ``wait`` while it would block.

    The slice lives only during the call: while waiting, only ``view`` (which
    the ring can release if it is closed meanwhile) is held.
    """
    while True:
        try:
            stats.syscalls += 1
            return call(view if start == 0 and stop == len(view) else view[start:stop])
        except BlockingIOError:
            stats.waits += 1
            await wait()
        except BROKEN_ERRORS as exc:
            raise BrokenResourceError(f"{gone}: {exc}") from exc


# ``move(view, start, stop)`` makes one system call with ``view[start:stop]``
# of a region (or waits for the target and makes it then) and says how many
# bytes it moved.
_Move = Callable[[memoryview, int, int], Awaitable[int]]


def _pollable_move(
    call: Callable[[memoryview], int],
    wait: Callable[[], Awaitable[None]],
    stats: TransferStats,
    gone: str,
) -> _Move:
    return lambda view, start, stop: _call_when_ready(call, view, start, stop, wait, stats, gone)


async def _pump_regions(reader: Reader, move: _Move, stats: TransferStats) -> None:
    """Each readable region to ``move``; only whole items leave the ring."""
    item = reader.item_size
    while (view := await _next_region(reader)) is not None:
        stats.regions += 1
        written = await move(view, 0, len(view))
        while written % item:  # a partial item: finish it before the region is released
            written += await move(view, written, written - written % item + item)
        reader.consume(written)
        stats.bytes += written


async def _pump_pollable(
    reader: Reader,
    target: socket.socket | int,
    write: Callable[[memoryview], int],
    stats: TransferStats,
    gone: str,
) -> None:
    """One ``write`` per region into a non-blocking socket or fd."""
    fd = FdWaiter(target if isinstance(target, int) else target.fileno())
    try:
        await _pump_regions(reader, _pollable_move(write, fd.wait_writable, stats, gone), stats)
    finally:
        fd.release()


async def _pump_stream(reader: Reader, dst: ByteSendStream, stats: TransferStats) -> None:
    item = reader.item_size
    limit = max(item, _COPY_LIMIT - _COPY_LIMIT % item)
    while (view := await _next_region(reader)) is not None:
        stats.regions += 1
        n = min(len(view), limit)
        stats.syscalls += 1
        await dst.send(bytes(view[:n]))  # a copy: the transport may keep what it is given
        reader.consume(n)
        stats.bytes += n


async def fill(
    writer: Writer | RecordWriter,
    src: object,
    *,
    eof: bool = True,
    stats: TransferStats | None = None,
) -> int:
    """Move everything ``src`` produces into ``writer`` until ``src`` ends.

    Returns the number of bytes moved.  With ``eof=True`` the writer is closed
    at the end, which is end of stream for the ring's readers.  ``src`` is
    never closed.

    A ``RecordWriter`` makes each datagram a datagram socket receives one
    record, until cancelled (a datagram socket has no end); datagrams longer
    than the ring's largest record are dropped and counted in
    ``stats.dropped``.
    """
    stats = stats if stats is not None else TransferStats()
    if isinstance(writer, RecordWriter):
        await fill_records(writer, src, stats)
        if eof:
            await writer.aclose()
        return stats.bytes
    with _closed_ring_is_closed(writer):
        if isinstance(src, socket.socket):
            src.setblocking(False)
            await _fill_pollable(writer, src, src.recv_into, stats, "the peer reset the connection")
        elif isinstance(src, ByteReceiveStream):
            await _fill_stream(writer, src, stats)
        else:
            fd = _fileno(src)
            if fd is None:
                raise TypeError(
                    "src must be a socket.socket, a file descriptor, a file object or an "
                    f"anyio ByteReceiveStream, not {type(src).__name__}"
                )
            if _is_regular_file(fd):
                await fill_file(writer, fd, stats)
            else:
                os.set_blocking(fd, False)
                gone = "the writing end went away"
                read = functools.partial(_readv_one, fd)
                await _fill_pollable(writer, fd, read, stats, gone)
    if eof:
        await writer.aclose()
    return stats.bytes


async def _fill_regions(writer: Writer, move: _Move, stats: TransferStats) -> None:
    """``move`` into each free region; only whole items are committed."""
    held = 0  # bytes of an unfinished item, kept at the start of the free space
    while True:
        view = await writer.reserve(held + 1)
        stats.regions += 1
        try:
            got = await move(view, held, len(view))
        except BaseException:
            end_reservation(writer)
            raise
        held = commit_read(writer, held, got, stats)
        if not got:
            return


async def _fill_pollable(
    writer: Writer,
    source: socket.socket | int,
    read: Callable[[memoryview], int],
    stats: TransferStats,
    gone: str,
) -> None:
    """One ``read`` per free region from a non-blocking socket or fd."""
    fd = FdWaiter(source if isinstance(source, int) else source.fileno())
    try:
        await _fill_regions(writer, _pollable_move(read, fd.wait_readable, stats, gone), stats)
    finally:
        fd.release()


def _readv_one(fd: int, view: memoryview) -> int:
    """One read(2) into ``view`` (os.read would allocate; readv fills it in place)."""
    return os.readv(fd, [view])


async def _fill_stream(writer: Writer, src: ByteReceiveStream, stats: TransferStats) -> None:
    item = writer.item_size
    held = b""  # an unfinished item: it goes in with the bytes that finish it
    while True:
        try:
            data = await src.receive(min(writer.capacity, _COPY_LIMIT))
        except EndOfStream:
            if held:
                raise ended_mid_item(len(held), item) from None
            return
        stats.syscalls += 1
        stats.regions += 1
        if held or len(data) % item:
            data = held + data
            cut = len(data) - len(data) % item
            data, held = data[:cut], data[cut:]
        await writer.send(data)
        stats.bytes += len(data)


async def sendfile(
    file: object,
    sock: socket.socket,
    *,
    offset: int = 0,
    count: int | None = None,
    stats: TransferStats | None = None,
) -> int:
    """File -> socket without the ring: ``os.sendfile`` from ``offset``, ``count`` bytes
    (or to the end of the file).  The kernel copies; nothing passes through Python.

    Returns the bytes sent.  The socket is made non-blocking and waited on with
    the running loop's fd wait; neither the file nor the socket is closed.
    """
    fd = _fileno(file)
    if fd is None or not _is_regular_file(fd):
        raise TypeError(
            f"file must be a regular file (fd or file object), not {type(file).__name__}"
        )
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
    if offset < 0 or (count is not None and count < 0):
        raise ValueError("offset and count must be >= 0")
    stats = stats if stats is not None else TransferStats()
    flush = getattr(file, "flush", None)
    if callable(flush):
        flush()
    end = os.fstat(fd).st_size if count is None else offset + count
    sock.setblocking(False)
    position = offset
    waiter = FdWaiter(sock.fileno())
    try:
        while position < end:
            await anyio.lowlevel.checkpoint()
            try:
                stats.syscalls += 1
                sent = os.sendfile(sock.fileno(), fd, position, min(end - position, 1 << 30))
            except BlockingIOError:
                stats.waits += 1
                await waiter.wait_writable()
                continue
            except BROKEN_ERRORS as exc:
                raise BrokenResourceError(f"the peer closed the connection: {exc}") from exc
            if sent == 0:
                break  # the file is shorter than asked: stop at its end
            position += sent
            stats.bytes += sent
    finally:
        waiter.release()
    return stats.bytes
