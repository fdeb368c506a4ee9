"""UDP with a datagram ring: ``RingUDPSocket`` and ``create_udp_socket``.

An ``anyio.abc.UnreliableObjectStream`` over a raw non-blocking UDP socket
(``recvmsg_into``/``sendto`` directly: uvloop has no ``sock_recvfrom``).  Each
``receive`` first drains every datagram the kernel holds into the ring as a
record (header + payload, never split: the ring's memory is mapped twice), then
hands out the oldest.  A burst is thus moved out of the kernel's small socket
buffer at the first chance, and nothing is capped silently: datagrams the
kernel dropped for lack of buffer space (``SO_RXQ_OVFL`` on Linux) and
datagrams larger than ``max_datagram`` (truncated by the kernel, so discarded)
are counted in ``stats``.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

from anyio import ClosedResourceError
from anyio.abc import UnreliableObjectStream

from ._backends import FdWaiter, current_backend
from ._common import busy
from ._ring import Ring

__all__ = ["RingUDPSocket", "UDPStats", "create_udp_socket"]

UDPPacket = tuple[bytes, tuple[str, int]]

DEFAULT_CAPACITY = 1 << 20
MAX_UDP_PAYLOAD = 65507
# record: payload length, port, family, address length, then the address bytes
# (16 reserved) and the payload; records are padded to 8 bytes.
_HEADER = struct.Struct("<IHBB16s")
_ALIGN = 8
_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", None)
_ANC_SIZE = socket.CMSG_SPACE(4) if _RXQ_OVFL is not None else 0


@dataclass
class UDPStats:
    """What the socket saw: ``received`` datagrams handed to the ring, ``kernel_drops``
    the kernel discarded for lack of buffer space (Linux), ``truncated`` ones larger
    than ``max_datagram`` (discarded, never returned cut)."""

    received: int = 0
    kernel_drops: int = 0
    truncated: int = 0

    @property
    def dropped(self) -> int:
        return self.kernel_drops + self.truncated


class RingUDPSocket(UnreliableObjectStream[UDPPacket]):
    """A UDP socket whose received datagrams queue in a ring of ``capacity`` bytes."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        capacity: int = DEFAULT_CAPACITY,
        max_datagram: int = MAX_UDP_PAYLOAD,
    ) -> None:
        if not 1 <= max_datagram <= MAX_UDP_PAYLOAD:
            raise ValueError(
                f"max_datagram must be between 1 and {MAX_UDP_PAYLOAD}, got {max_datagram}"
            )
        self._record_max = _round(_HEADER.size + max_datagram)
        if self._record_max > capacity // 2:
            raise ValueError(
                f"capacity ({capacity}) must hold at least two records of max_datagram "
                f"({max_datagram}) bytes plus a {_HEADER.size}-byte header each"
            )
        sock.setblocking(False)
        if _RXQ_OVFL is not None:
            sock.setsockopt(socket.SOL_SOCKET, _RXQ_OVFL, 1)
        self._sock = sock
        self._fd = FdWaiter(sock.fileno())
        self._max_datagram = max_datagram
        # Used only by this socket's own calls, never waited on: no notifier fds.
        self._ring = Ring(capacity, item_size=_ALIGN, notifier="none")
        self._writer = self._ring.writer()
        self._reader = self._ring.reader()
        self._stats = UDPStats()
        self._closed = False
        self._receiving = False

    @property
    def max_datagram(self) -> int:
        return self._max_datagram

    @property
    def stats(self) -> UDPStats:
        """The counters, with the kernel's drop count read fresh where the OS tells it.

        A drop is reported in a packet's ancillary data only when a later packet
        arrives; Linux also shows each socket's drops in /proc/net/udp, read here.
        """
        if not self._closed:
            drops = _proc_udp_drops(self._sock)
            if drops is not None and drops > self._stats.kernel_drops:
                self._stats.kernel_drops = drops
        return self._stats

    def _drain_kernel(self) -> None:
        """Every datagram the kernel holds, into the ring, while a whole record fits."""
        while True:
            view = self._writer.try_reserve(self._record_max)
            if view is None:
                return  # the ring is full: the kernel keeps (or drops, counted) the rest
            payload = view[_HEADER.size : _HEADER.size + self._max_datagram]
            try:
                nbytes, ancdata, flags, address = self._sock.recvmsg_into([payload], _ANC_SIZE)
            except BlockingIOError:
                self._writer.commit(0)
                return
            except OSError:
                self._writer.commit(0)
                if self._closed:
                    raise ClosedResourceError("this socket was closed") from None
                raise
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == _RXQ_OVFL and len(data) >= 4:
                    total = struct.unpack("=I", data[:4])[0]  # cumulative for the socket
                    self._stats.kernel_drops = total
            if flags & socket.MSG_TRUNC:
                self._stats.truncated += 1
                self._writer.commit(0)
                continue
            packed = socket.inet_pton(self._sock.family, address[0])
            _HEADER.pack_into(view, 0, nbytes, address[1], self._sock.family, len(packed), packed)
            self._stats.received += 1
            self._writer.commit(_round(_HEADER.size + nbytes))

    def _pop(self) -> UDPPacket | None:
        view = self._reader.try_peek(_ALIGN)
        if view is None:
            return None
        nbytes, port, family, alen, packed = _HEADER.unpack_from(view)
        data = bytes(view[_HEADER.size : _HEADER.size + nbytes])
        host = socket.inet_ntop(family, packed[:alen])
        self._reader.consume(_round(_HEADER.size + nbytes))
        return data, (host, port)

    async def receive(self) -> UDPPacket:
        """The oldest datagram and its sender's (host, port)."""
        await current_backend().checkpoint()
        if self._closed:
            raise ClosedResourceError("this socket is closed")
        if self._receiving:
            raise busy("another task is already receiving from this socket")
        self._receiving = True
        try:
            while True:
                self._drain_kernel()
                packet = self._pop()
                if packet is not None:
                    return packet
                try:
                    await self._fd.wait_readable()
                except ClosedResourceError:
                    raise ClosedResourceError("this socket was closed") from None
                if self._closed:
                    raise ClosedResourceError("this socket was closed")
        finally:
            self._receiving = False

    async def send(self, item: UDPPacket) -> None:
        """Send ``(data, (host, port))``."""
        data, address = item
        await self.sendto(data, address[0], address[1])

    async def sendto(self, data: bytes | bytearray | memoryview, host: str, port: int) -> None:
        size = memoryview(data).nbytes
        if size > self._max_datagram:
            raise ValueError(
                f"datagram of {size} bytes is larger than max_datagram ({self._max_datagram})"
            )
        await current_backend().checkpoint()
        while True:
            if self._closed:
                raise ClosedResourceError("this socket is closed")
            try:
                self._sock.sendto(data, (host, port))
                return
            except BlockingIOError:
                await self._fd.wait_writable()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._fd.notify_closing()
            self._sock.close()
            self._ring.close()
        await current_backend().checkpoint()

    @property
    def extra_attributes(self) -> Any:
        from anyio.abc import SocketAttribute

        return {
            SocketAttribute.family: lambda: self._sock.family,
            SocketAttribute.local_address: lambda: self._sock.getsockname()[:2],
            SocketAttribute.local_port: lambda: self._sock.getsockname()[1],
            SocketAttribute.raw_socket: lambda: self._sock,
        }


def _proc_udp_drops(sock: socket.socket) -> int | None:
    """The socket's drop counter from /proc/net/udp{,6} (Linux), or None."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)  # the column names
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == inode:
                        return int(fields[12])
        except OSError:
            continue
    return None


def _round(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


async def create_udp_socket(
    *,
    local_host: str | None = None,
    local_port: int = 0,
    family: socket.AddressFamily = socket.AF_INET,
    capacity: int = DEFAULT_CAPACITY,
    max_datagram: int = MAX_UDP_PAYLOAD,
    receive_buffer: int | None = None,
) -> RingUDPSocket:
    """A bound UDP socket; ``receive_buffer`` sets SO_RCVBUF (the kernel's own queue)."""
    await current_backend().checkpoint()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        default_host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        sock.bind((local_host or default_host, local_port))
        return RingUDPSocket(sock, capacity=capacity, max_datagram=max_datagram)
    except BaseException:
        sock.close()
        raise
