"""``pump``/``fill`` for record rings: one datagram per record on a UDP socket.

``pump(record_reader, sock)`` sends each record as one datagram on a
connected datagram socket until the ring's end of stream; ``fill(record_writer,
sock)`` makes each datagram received one record until cancelled (a datagram
socket has no end).  ``aring.pump``/``aring.fill`` come here when given a
record end.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from anyio import BrokenResourceError, ClosedResourceError, EndOfStream

from ._backends import FdWaiter
from ._common import BROKEN_ERRORS

if TYPE_CHECKING:
    from ._io import TransferStats
    from ._records import RecordReader, RecordWriter

#: the largest UDP payload (IPv4); bigger datagrams cannot exist
_MAX_DATAGRAM = 65507


def _datagram_socket(sock: object, what: str, connected: bool) -> socket.socket:
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_DGRAM:
        raise TypeError(
            f"{what} of a record ring must be a datagram socket.socket (one datagram per "
            f"record), not {type(sock).__name__}"
        )
    if connected:
        try:
            sock.getpeername()
        except OSError:
            raise ValueError(
                f"{what} must be connected (sock.connect(address)): each record is sent to its peer"
            ) from None
    sock.setblocking(False)
    return sock


async def pump_records(reader: RecordReader, dst: object, stats: TransferStats) -> int:
    """Each record as one datagram on ``dst`` until end of stream; the bytes sent."""
    sock = _datagram_socket(dst, "dst", connected=True)
    fd = FdWaiter(sock.fileno())
    try:
        while True:
            try:
                batch = await reader.receive_batch()
            except EndOfStream:
                return stats.bytes
            stats.regions += 1
            for view in batch:
                while True:
                    try:
                        stats.syscalls += 1
                        sock.send(view)
                        break
                    except BlockingIOError:
                        stats.waits += 1
                        await fd.wait_writable()
                    except BROKEN_ERRORS as exc:
                        raise BrokenResourceError(f"the peer is gone: {exc}") from exc
                    except ValueError:
                        if reader.closed:  # the ring was closed: its views were released
                            raise ClosedResourceError(
                                "the ring was closed during the pump"
                            ) from None
                        raise
                stats.bytes += len(view)
    finally:
        fd.release()


async def fill_records(writer: RecordWriter, src: object, stats: TransferStats) -> int:
    """Each datagram ``src`` receives as one record, until cancelled (or the ring ends).

    A datagram is received whole into a buffer one byte longer than the
    largest record the ring holds (at most a UDP payload), then copied in as
    one record; one that fills the buffer was longer than a record can be and
    is dropped, counted in ``stats.dropped``.
    """
    sock = _datagram_socket(src, "src", connected=False)
    fd = FdWaiter(sock.fileno())
    limit = min(writer.max_record, _MAX_DATAGRAM)
    buffer = bytearray(limit + 1)  # one byte more: a datagram that fills it was cut
    view = memoryview(buffer)
    try:
        while True:
            try:
                stats.syscalls += 1
                n = sock.recv_into(view)
            except BlockingIOError:
                stats.waits += 1
                await fd.wait_readable()
                continue
            if n > limit:
                stats.dropped += 1
                continue
            await writer.send(view[:n])
            stats.regions += 1
            stats.bytes += n
    finally:
        fd.release()
