"""Small pieces the ends, the I/O adapters and the network adapters all use.

One place for each: the checks every receive makes, the errors that mean
"the peer went away", and the socket calls more than one adapter needs.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Any, Final

import anyio

if TYPE_CHECKING:
    from ._native import WriterEnd

__all__ = [
    "BROKEN_ERRORS",
    "DEFAULT_MAX_BYTES",
    "busy",
    "check_max_bytes",
    "connect_socket",
    "listen_socket",
    "part_wait",
    "shutdown_write",
]

#: what ``receive()`` returns at most when not told otherwise (anyio's default too)
DEFAULT_MAX_BYTES: Final = 65536

#: errors that mean the peer went away: BrokenResourceError for the caller
BROKEN_ERRORS: Final = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def busy(message: str) -> anyio.BusyResourceError:
    """A BusyResourceError that says ``message`` (anyio's constructor takes a verb
    phrase and builds its own sentence around it)."""
    error = anyio.BusyResourceError("using")
    error.args = (message,)
    return error


def check_max_bytes(max_bytes: int) -> None:
    """TypeError for a non-int, ValueError below 1: what every receive checks up front."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes must be an int, not {type(max_bytes).__name__}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")


def part_wait(end: WriterEnd, left: int) -> int:
    """How much space to wait for before the next part of a send larger than the ring.

    Half the ring (or what is left): waking for every freed byte would cost a
    wakeup per consume, waiting for the whole ring would idle the reader.
    """
    item = end.item_size
    half = max(item, (end.capacity // 2) // item * item)
    return min(left, half)


def shutdown_write(sock: socket.socket) -> None:
    """Half-close: the peer sees end of stream; a socket never connected is left alone."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise


async def connect_socket(
    family: int,
    address: tuple[Any, ...],
    local_host: str | None = None,
    *,
    sock: socket.socket | None = None,
) -> socket.socket:
    """A connected non-blocking TCP socket; the connect waits with the loop's fd wait.

    ``sock``: a socket made beforehand to connect (it is closed on failure too).
    """
    sock = sock if sock is not None else socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if local_host is not None:
            sock.bind((local_host, 0))
        try:
            sock.connect(address)
        except BlockingIOError:
            await anyio.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                name = errno.errorcode.get(error, str(error))
                raise OSError(error, f"connecting to {address[0]}:{address[1]}: {name}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


async def listen_socket(
    host: str | None, port: int, *, backlog: int, reuse_port: bool = False
) -> socket.socket:
    """A non-blocking listening TCP socket on a host name, an IPv4 or an IPv6 address.

    ``host`` None or "" listens on every interface.
    """
    infos = await anyio.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    if not infos:
        raise OSError(f"cannot resolve {host}:{port}")
    family, _, _, _, address = infos[0]
    sock = socket.create_server(
        address, family=family, backlog=min(backlog, socket.SOMAXCONN), reuse_port=reuse_port
    )
    sock.setblocking(False)
    return sock
