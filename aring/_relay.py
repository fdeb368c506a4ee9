"""A TCP relay through rings: every accepted connection is forwarded to one target.

Each direction of a connection owns a ring: ``fill`` receives from one socket
straight into the ring's free space, ``pump`` sends each readable region to the
other socket, so every byte is copied once into the ring and once out, with one
``recv_into`` and one ``send`` per region.  A half-close (EOF) travels with the
data: when one side stops sending, the other side's write half is shut down
once the ring drained, and the opposite direction keeps flowing.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio import BrokenResourceError, create_task_group
from anyio.abc import TaskStatus

from ._backends import FdWaiter
from ._common import connect_socket
from ._io import TransferStats, fill, pump
from ._ring import open as open_ring

__all__ = ["RelayStats", "parse_address", "serve_relay"]

# Large regions mean few system calls and full TCP segments: 1 MiB per
# direction measured 0.31 CPU s/GB against 0.51 with 256 KiB (loopback, iperf3).
DEFAULT_CAPACITY = 1 << 20


@dataclass
class RelayStats:
    """What a relay has done so far; read it while the relay runs."""

    accepted: int = 0
    active: int = 0
    failed: int = 0
    finished_bytes: int = 0
    _live: dict[int, TransferStats] = field(default_factory=dict, repr=False)

    @property
    def bytes(self) -> int:
        """Bytes forwarded in both directions, finished and running connections."""
        return self.finished_bytes + sum(t.bytes for t in self._live.values())

    def _track(self, transfer: TransferStats) -> Callable[[], None]:
        key = id(transfer)
        self._live[key] = transfer

        def done() -> None:
            self.finished_bytes += transfer.bytes
            del self._live[key]

        return done


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8000"``, ``"[::1]:8000"``, ``"localhost:80"`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (IPv6 as [::1]:PORT), got {text!r}")
    return host.strip("[]"), int(port)


async def _forward(
    src: socket.socket, dst: socket.socket, capacity: int, stats: RelayStats
) -> None:
    """One direction: src -> ring -> dst, half-closing dst at src's EOF."""
    transfer = TransferStats()
    done = stats._track(transfer)
    try:
        async with open_ring(capacity) as (writer, reader), create_task_group() as tg:
            tg.start_soon(fill, writer, src)
            await pump(reader, dst, stats=transfer)
    finally:
        done()


async def _connection(
    client: socket.socket,
    target: tuple[int, tuple[str, int]],
    capacity: int,
    stats: RelayStats,
) -> None:
    stats.accepted += 1
    stats.active += 1
    try:
        with client:
            family, address = target
            upstream = await connect_socket(family, address)
            with upstream:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                async with create_task_group() as tg:
                    tg.start_soon(_forward, client, upstream, capacity, stats)
                    tg.start_soon(_forward, upstream, client, capacity, stats)
    except* (OSError, BrokenResourceError):
        # A peer reset or refused: this connection ends, the relay serves on.
        stats.failed += 1
    finally:
        stats.active -= 1


async def serve_relay(
    listen: tuple[str, int],
    target: tuple[str, int],
    *,
    capacity: int = DEFAULT_CAPACITY,
    stats: RelayStats | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on ``listen`` and forward each connection to ``target`` until cancelled.

    ``task_status.started()`` reports the listening port (useful with port 0).
    """
    stats = stats if stats is not None else RelayStats()
    infos = await anyio.getaddrinfo(target[0], target[1], type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {target[0]}:{target[1]}")
    family, _, _, _, address = infos[0]
    resolved = (int(family), (str(address[0]), int(address[1])))
    listener = socket.create_server(listen, backlog=1024, reuse_port=False)
    waiter = FdWaiter(listener.fileno())
    with listener:
        listener.setblocking(False)
        task_status.started(listener.getsockname()[1])
        try:
            async with create_task_group() as tg:
                while True:
                    await waiter.wait_readable()
                    while True:
                        try:
                            client, _ = listener.accept()
                        except BlockingIOError:
                            break
                        except OSError:  # EMFILE and friends: try again on the next wakeup
                            with contextlib.suppress(Exception):
                                await anyio.sleep(0.01)
                            break
                        client.setblocking(False)
                        tg.start_soon(_connection, client, resolved, capacity, stats)
        finally:
            waiter.notify_closing()  # the loop forgets the fd before it is closed
