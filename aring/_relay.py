"""A TCP relay through rings: every accepted connection is forwarded to one target.

Each direction of a connection is one task with a ring of its own.  A loop
in C (``_native._forward``) reads from one socket into the ring's free space
and writes the readable region to the other socket, for as long as either
side moves (up to a budget, then the task yields), so the interpreter runs
once per batch of regions; the task waits only when neither side can move
(for the target to take more, or for the source to send more).  Every byte is
copied once into the ring and once out, with one ``read`` and one ``write``
per region; no second task is woken per region, and a ring only its own task
uses needs no notifier fds (a connection costs its two sockets and the two
rings' memory fds).

A half-close (EOF) travels with the data: when one side stops sending, the
other side's write half is shut down once the ring drained, and the opposite
direction keeps flowing.  A reset travels too: if either peer resets its
connection (or the target refuses more data), both sockets are closed with
SO_LINGER 0, so the other peer sees a reset, not a clean end of a truncated
stream.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio import create_task_group
from anyio.abc import TaskStatus

from . import _native
from ._backends import AGAIN, DONE, NEED_SOURCE, NEED_TARGET, FdWaiter, current_backend
from ._common import BROKEN_ERRORS, connect_socket, listen_socket, shutdown_write
from ._io import TransferStats
from ._ring import Ring

__all__ = ["RelayStats", "check_relay_options", "parse_address", "serve_relay"]

log = logging.getLogger("aring.relay")

# Large regions mean few system calls and full TCP segments: 1 MiB per
# direction measured 0.31 CPU s/GB against 0.51 with 256 KiB (loopback, iperf3).
DEFAULT_CAPACITY = 1 << 20
#: how long connecting to the target may take before the client is dropped
DEFAULT_CONNECT_TIMEOUT = 30.0
# A forwarding task yields to the loop after this many ring-fulls in a row.
_PASS_BUDGET_REGIONS = 8
# accept() failures that mean "no resources now" (fds, memory): wait for a
# connection to close, then accept again.
_NO_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass
class RelayStats:
    """What a relay has done so far; read it while the relay runs.

    ``failed`` counts connections that ended in an error (target refused or
    unreachable, connect timeout, a reset); ``resets`` the resets among them,
    forwarded as resets; ``idle_closed`` connections closed by the idle
    timeout; ``accept_errors`` failed ``accept()`` calls (out of fds...).
    ``steps`` counts the interpreter's passes over the forwarding loop (each
    moves one or more regions in C) and ``waits`` the times a target took no
    more and the relay waited for it, both directions of every connection.
    """

    accepted: int = 0
    active: int = 0
    failed: int = 0
    resets: int = 0
    idle_closed: int = 0
    accept_errors: int = 0
    finished_bytes: int = 0
    finished_steps: int = 0
    finished_waits: int = 0
    _live: dict[int, TransferStats] = field(default_factory=dict, repr=False)

    @property
    def bytes(self) -> int:
        """Bytes forwarded in both directions, finished and running connections."""
        return self.finished_bytes + sum(t.bytes for t in self._live.values())

    @property
    def steps(self) -> int:
        return self.finished_steps + sum(t.syscalls for t in self._live.values())

    @property
    def waits(self) -> int:
        return self.finished_waits + sum(t.waits for t in self._live.values())

    def _track(self, transfer: TransferStats) -> Callable[[], None]:
        key = id(transfer)
        self._live[key] = transfer

        def done() -> None:
            self.finished_bytes += transfer.bytes
            self.finished_steps += transfer.syscalls
            self.finished_waits += transfer.waits
            del self._live[key]

        return done


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8000"``, ``"[::1]:8000"``, ``"localhost:80"`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (IPv6 as [::1]:PORT), got {text!r}")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"unbalanced brackets in {text!r}; IPv6 is written [::1]:PORT")
    return host.strip("[]"), int(port)


def check_relay_options(
    capacity: int, idle_timeout: float | None, connect_timeout: float | None
) -> None:
    """ValueError/TypeError for options the relay cannot run with, before it listens."""
    _native._ring_capacity(capacity)
    for name, value in (("idle_timeout", idle_timeout), ("connect_timeout", connect_timeout)):
        _native._check_timeout(value)
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be None (no limit) or > 0 seconds, got {value}")


class _PeerReset(Exception):
    """A peer reset its connection (or refused our data): abort the other side too."""


async def _forward(
    src: socket.socket, dst: socket.socket, ring: Ring, transfer: TransferStats
) -> None:
    """One direction, src -> ring -> dst; dst is half-closed at src's EOF.

    Each step reads into the free space and writes what is readable in a
    loop in C for as long as either side moves (up to the budget), so the
    interpreter runs once per batch of regions.  On asyncio and uvloop the
    steps run in the loop's readiness callbacks: a request is forwarded in
    the loop pass that saw it arrive, with no task switch.
    """
    src_fd, dst_fd = src.fileno(), dst.fileno()
    writer, reader = ring.writer(), ring.reader()
    budget = _PASS_BUDGET_REGIONS * ring.capacity
    src_done = False

    def step() -> int:
        nonlocal src_done
        try:
            _, sent, why = _native._forward(
                writer, reader, -1 if src_done else src_fd, dst_fd, budget
            )
        except BROKEN_ERRORS as exc:
            raise _PeerReset(str(exc)) from exc
        transfer.bytes += sent
        transfer.syscalls += 1  # for the relay: steps, each one call into the C loop
        src_done = src_done or bool(why & _native.FORWARD_SOURCE_END)
        if src_done and not reader.readable():
            shutdown_write(dst)
            return DONE
        if why & _native.FORWARD_BUDGET:
            return AGAIN  # fairness: other connections run too
        if reader.readable():
            transfer.waits += 1
            return NEED_TARGET  # the target takes no more for now
        return NEED_SOURCE  # nothing to send: wait for the source

    await current_backend().drive(src_fd, dst_fd, step)


class _IdleWatch:
    """Cancels a connection once no byte moved either way for ``timeout`` seconds.

    It samples the byte counters eight times per timeout, so the forwarding
    tasks pay nothing for it: a connection is closed between 1 and 1.125
    timeouts after its last byte.
    """

    def __init__(
        self,
        timeout: float,
        transfers: tuple[TransferStats, TransferStats],
        scope: anyio.CancelScope,
    ) -> None:
        self._timeout = timeout
        self._transfers = transfers
        self._scope = scope
        self.fired = False

    async def run(self) -> None:
        seen = -1
        quiet_since = anyio.current_time()
        while True:
            total = self._transfers[0].bytes + self._transfers[1].bytes
            now = anyio.current_time()
            if total != seen:
                seen, quiet_since = total, now
            elif now - quiet_since >= self._timeout:
                self.fired = True
                self._scope.cancel()
                return
            await anyio.sleep(self._timeout / 8)


def _abort(*socks: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer sees a reset, not an end of stream."""
    for sock in socks:
        with contextlib.suppress(OSError):  # already gone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.close()


@dataclass
class _Options:
    target: tuple[int, tuple[str, int]]
    capacity: int
    idle_timeout: float | None
    connect_timeout: float | None


class _Freed:
    """Set each time a connection ends (and gives its fds back)."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self, at_most: float) -> None:
        with anyio.move_on_after(at_most):
            await self._event.wait()


def _no_resources(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _NO_RESOURCES


class _Prepared:
    """What one more connection needs besides its client socket, made before accepting it.

    Out of fds, the listener then accepts nobody: clients wait in the backlog
    until a connection closes, instead of being accepted and dropped.
    """

    def __init__(self, options: _Options) -> None:
        family, _ = options.target
        self.upstream = socket.socket(family, socket.SOCK_STREAM)
        rings: list[Ring] = []
        try:
            for _ in range(2):
                rings.append(Ring(options.capacity, notifier="none"))
        except BaseException:
            for ring in rings:
                ring.close()
            self.upstream.close()
            raise
        self.rings = (rings[0], rings[1])

    def close(self) -> None:
        self.upstream.close()
        for ring in self.rings:
            ring.close()


async def _connect(options: _Options, sock: socket.socket) -> None:
    family, address = options.target
    if options.connect_timeout is None:
        await connect_socket(family, address, sock=sock)
        return
    try:
        with anyio.fail_after(options.connect_timeout):
            await connect_socket(family, address, sock=sock)
    except TimeoutError:
        raise TimeoutError(
            f"connecting to {address[0]}:{address[1]} took more than "
            f"{options.connect_timeout} s"
        ) from None


async def _connection(
    client: socket.socket,
    prepared: _Prepared,
    options: _Options,
    stats: RelayStats,
    freed: _Freed,
) -> None:
    stats.accepted += 1
    stats.active += 1
    transfers = (TransferStats(), TransferStats())
    finished = [stats._track(t) for t in transfers]
    upstream = prepared.upstream
    out_ring, back_ring = prepared.rings
    try:
        with client, upstream, out_ring, back_ring:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await _connect(options, upstream)
            idle = None
            try:
                async with create_task_group() as tg:
                    if options.idle_timeout is not None:
                        idle = _IdleWatch(options.idle_timeout, transfers, tg.cancel_scope)
                        tg.start_soon(idle.run)
                    async with create_task_group() as both:
                        both.start_soon(_forward, client, upstream, out_ring, transfers[0])
                        both.start_soon(_forward, upstream, client, back_ring, transfers[1])
                    tg.cancel_scope.cancel()  # both directions ended: stop the idle watch
            except* _PeerReset:
                stats.resets += 1
                _abort(client, upstream)
                raise  # counted as failed below, once
            if idle is not None and idle.fired:
                stats.idle_closed += 1
    except* (_PeerReset, OSError, TimeoutError) as group:
        # A reset, a refused or unreachable target, a connect timeout: this
        # connection ends, the relay serves on.
        stats.failed += 1
        log.debug("connection failed: %s", group.exceptions[0])
    finally:
        stats.active -= 1
        for done in finished:
            done()
        freed.set()


async def serve_relay(
    listen: tuple[str, int],
    target: tuple[str, int],
    *,
    capacity: int = DEFAULT_CAPACITY,
    idle_timeout: float | None = None,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    stats: RelayStats | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on ``listen`` and forward each connection to ``target`` until cancelled.

    ``capacity``: the ring per direction and connection.  ``idle_timeout``:
    close a connection after that many seconds without a byte either way (None:
    never).  ``connect_timeout``: give up on the target after that long (None:
    the OS's own timeout, minutes).  Hosts may be names, IPv4 or IPv6
    addresses.  ``task_status.started()`` reports the listening port (useful
    with port 0).  Options are checked before anything listens.
    """
    check_relay_options(capacity, idle_timeout, connect_timeout)
    stats = stats if stats is not None else RelayStats()
    infos = await anyio.getaddrinfo(target[0], target[1], type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {target[0]}:{target[1]}")
    family, _, _, _, address = infos[0]
    options = _Options(
        (int(family), (str(address[0]), int(address[1]))),
        capacity,
        idle_timeout,
        connect_timeout,
    )
    listener = await listen_socket(listen[0], listen[1], backlog=1024)
    waiter = FdWaiter(listener.fileno())
    freed = _Freed()
    report = _AcceptReport(stats)
    prepared: _Prepared | None = None
    with listener:
        task_status.started(listener.getsockname()[1])
        try:
            async with create_task_group() as tg:
                while True:
                    await waiter.wait_readable()
                    while True:  # everyone queued now, in one pass
                        if prepared is None:
                            try:
                                prepared = _Prepared(options)
                            except OSError as exc:
                                if not _no_resources(exc):
                                    raise  # no connection could ever be served
                                stats.accept_errors += 1
                                report.failed(exc)
                                await freed.wait(at_most=0.1)  # or sooner, when fds free up
                                break
                        try:
                            client, _ = listener.accept()
                        except BlockingIOError:
                            break
                        except OSError as exc:
                            stats.accept_errors += 1
                            if not _no_resources(exc):
                                continue  # that one client is gone (ECONNABORTED...)
                            report.failed(exc)
                            await freed.wait(at_most=0.1)  # or sooner, when fds free up
                            break
                        report.accepted()
                        client.setblocking(False)
                        tg.start_soon(_connection, client, prepared, options, stats, freed)
                        prepared = None
        finally:
            waiter.notify_closing()  # the loop forgets the fd before it is closed
            if prepared is not None:
                prepared.close()


class _AcceptReport:
    """Logs running out of fds once per burst, not once per failed accept.

    A burst starts with a failure and ends once accepting has gone 5 s
    without one; a burst that goes on is summed up every 30 s.
    """

    def __init__(self, stats: RelayStats) -> None:
        self._stats = stats
        self._failures = 0
        self._last_failure = self._last_report = 0.0

    def failed(self, exc: OSError) -> None:
        now = time.monotonic()
        if not self._failures:
            log.warning(
                "accept failed: %s; %d connections open; clients wait in the backlog and "
                "are accepted as connections close",
                exc.strerror or exc,
                self._stats.active,
            )
            self._last_report = now
        elif now - self._last_report >= 30:
            log.warning(
                "still out of resources: %d failed accepts so far; %d connections open",
                self._failures,
                self._stats.active,
            )
            self._last_report = now
        self._failures += 1
        self._last_failure = now

    def accepted(self) -> None:
        if self._failures and time.monotonic() - self._last_failure >= 5:
            log.warning("accepting normally again after %d failed accepts", self._failures)
            self._failures = 0
