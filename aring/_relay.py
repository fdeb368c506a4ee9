"""A TCP relay through rings: every accepted connection is forwarded to one target.

Two engines move the bytes (``serve_relay(engine=...)``):

- ``"thread"`` (the default where epoll exists): one native thread per relay
  (``_relay_engine``) waits in epoll on every connection's sockets and
  forwards each direction through a private double-mapped ring, with no
  interpreter in the way: a request is read and sent on in the wake-up that
  saw it, as socat does, whatever the loop.  The loop only accepts, connects
  and hears when a connection ended.
- ``"loop"``: each direction is one task with a ring of its own; a loop in C
  (``_native._forward``) reads from one socket into the ring's free space and
  writes the readable region to the other socket for as long as either side
  moves (up to a budget, then the task yields), run from the loop's readiness
  callbacks on asyncio and uvloop.

Either way every byte is copied once into the ring and once out, with one
``recv`` and one ``send`` per region, and a ring only its own connection uses
needs no notifier fds.

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
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio
from anyio import create_task_group
from anyio.abc import TaskStatus

from . import _native
from ._backends import AGAIN, DONE, NEED_SOURCE, NEED_TARGET, FdWaiter, current_backend
from ._common import BROKEN_ERRORS, connect_socket, listen_socket, shutdown_write
from ._io import TransferStats
from ._relay_engine import ENDED_BY_US, Counts, EngineDispatch, counts
from ._ring import Ring

__all__ = ["RelayEngineKind", "RelayStats", "check_relay_options", "parse_address", "serve_relay"]

RelayEngineKind = Literal["auto", "thread", "loop"]

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
    The counters below sum both directions of every connection, finished and
    running: ``bytes`` forwarded, ``regions`` sends that moved bytes,
    ``waits`` sends the target refused for now (the relay then waited for
    it), ``wakeups`` the times a connection was woken (an epoll event on the
    thread engine, a readiness callback or a task step on the loop engine)
    and ``steps`` the passes over a connection's forwarding loop.
    """

    accepted: int = 0
    active: int = 0
    failed: int = 0
    resets: int = 0
    idle_closed: int = 0
    accept_errors: int = 0
    _finished: list[int] = field(default_factory=lambda: [0] * 5, repr=False)
    _live: dict[int, Callable[[], Counts]] = field(default_factory=dict, repr=False)

    def _total(self, index: int) -> int:
        return self._finished[index] + sum(sample()[index] for sample in self._live.values())

    @property
    def bytes(self) -> int:
        return self._total(0)

    @property
    def regions(self) -> int:
        return self._total(1)

    @property
    def waits(self) -> int:
        return self._total(2)

    @property
    def wakeups(self) -> int:
        return self._total(3)

    @property
    def steps(self) -> int:
        return self._total(4)

    def _track(self, sample: Callable[[], Counts]) -> Callable[[], None]:
        key = id(sample)
        self._live[key] = sample

        def done() -> None:
            for index, value in enumerate(sample()):
                self._finished[index] += value
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
            _, sent, why, regions = _native._forward(
                writer, reader, -1 if src_done else src_fd, dst_fd, budget
            )
        except BROKEN_ERRORS as exc:
            raise _PeerReset(str(exc)) from exc
        transfer.bytes += sent
        transfer.regions += regions
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
    pays nothing for it: a connection is closed between 1 and 1.125 timeouts
    after its last byte.
    """

    def __init__(self, timeout: float, moved: Callable[[], int], scope: anyio.CancelScope) -> None:
        self._timeout = timeout
        self._moved = moved
        self._scope = scope
        self.fired = False

    async def run(self) -> None:
        seen = -1
        quiet_since = anyio.current_time()
        while True:
            total = self._moved()
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
    dispatch: EngineDispatch | None  # None: the loop engine


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
        self.engine_connection: _native.EngineConnection | None = None
        self.rings: tuple[Ring, Ring] | None = None
        rings: list[Ring] = []
        try:
            if options.dispatch is not None:
                self.engine_connection = options.dispatch.connection(options.capacity)
            else:
                for _ in range(2):
                    rings.append(Ring(options.capacity, notifier="none"))
                self.rings = (rings[0], rings[1])
        except BaseException:
            for ring in rings:
                ring.close()
            self.upstream.close()
            raise

    def close(self) -> None:
        """Give back the fds and memory (after the engine let go of the connection)."""
        self.upstream.close()
        if self.engine_connection is not None:
            self.engine_connection.abort()  # a no-op unless it still runs
            self.engine_connection.release()
        for ring in self.rings or ():
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


async def _loop_engine(
    client: socket.socket,
    upstream: socket.socket,
    rings: tuple[Ring, Ring],
    idle_timeout: float | None,
    stats: RelayStats,
) -> bool:
    """Both directions as tasks on the loop; whether the idle timeout ended it."""
    transfers = (TransferStats(), TransferStats())

    def sample() -> Counts:
        out, back = transfers
        steps = out.syscalls + back.syscalls  # each step is one wake-up of its task
        moved, regions = out.bytes + back.bytes, out.regions + back.regions
        return moved, regions, out.waits + back.waits, steps, steps

    finished = stats._track(sample)
    idle = None
    try:
        with rings[0], rings[1]:
            async with create_task_group() as tg:
                if idle_timeout is not None:
                    idle = _IdleWatch(
                        idle_timeout, lambda: transfers[0].bytes + transfers[1].bytes,
                        tg.cancel_scope,
                    )
                    tg.start_soon(idle.run)
                async with create_task_group() as both:
                    both.start_soon(_forward, client, upstream, rings[0], transfers[0])
                    both.start_soon(_forward, upstream, client, rings[1], transfers[1])
                tg.cancel_scope.cancel()  # both directions ended: stop the idle watch
    finally:
        finished()
    return idle is not None and idle.fired


async def _thread_engine(
    client: socket.socket,
    upstream: socket.socket,
    connection: _native.EngineConnection,
    dispatch: EngineDispatch,
    idle_timeout: float | None,
    stats: RelayStats,
) -> bool:
    """Both directions on the engine thread; whether the idle timeout ended it."""
    finished = stats._track(lambda: counts(connection))
    idle = None
    try:
        async with create_task_group() as tg:
            if idle_timeout is not None:
                idle = _IdleWatch(idle_timeout, lambda: counts(connection)[0], tg.cancel_scope)
                tg.start_soon(idle.run)
            error = await dispatch.forward(connection, client.fileno(), upstream.fileno())
            tg.cancel_scope.cancel()  # both directions ended: stop the idle watch
    finally:
        finished()  # the engine let go of it: its counters are final
        connection.release()
    if idle is not None and idle.fired:
        return True
    if error not in ENDED_BY_US:
        raise _PeerReset(os.strerror(error))
    return False


async def _connection(
    client: socket.socket,
    prepared: _Prepared,
    options: _Options,
    stats: RelayStats,
    freed: _Freed,
) -> None:
    stats.accepted += 1
    stats.active += 1
    upstream = prepared.upstream
    try:
        with client, upstream:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                await _connect(options, upstream)
                try:
                    if prepared.engine_connection is not None:
                        assert options.dispatch is not None
                        idled = await _thread_engine(
                            client, upstream, prepared.engine_connection, options.dispatch,
                            options.idle_timeout, stats,
                        )
                    else:
                        assert prepared.rings is not None
                        idled = await _loop_engine(
                            client, upstream, prepared.rings, options.idle_timeout, stats
                        )
                except* _PeerReset:
                    stats.resets += 1
                    _abort(client, upstream)
                    raise  # counted as failed below, once
            finally:
                prepared.close()  # memory of a connection that never started, too
            if idled:
                stats.idle_closed += 1
    except* (_PeerReset, OSError, TimeoutError) as group:
        # A reset, a refused or unreachable target, a connect timeout: this
        # connection ends, the relay serves on.
        stats.failed += 1
        log.debug("connection failed: %s", group.exceptions[0])
    finally:
        stats.active -= 1
        freed.set()


def _choose_engine(engine: RelayEngineKind) -> bool:
    """Whether to use the thread engine; ValueError for an unknown or unavailable one."""
    if engine == "auto":
        return _native.RELAY_ENGINE_AVAILABLE
    if engine == "thread":
        if not _native.RELAY_ENGINE_AVAILABLE:
            raise ValueError("engine='thread' needs epoll (Linux); use engine='loop' here")
        return True
    if engine == "loop":
        return False
    raise ValueError(f"engine must be 'auto', 'thread' or 'loop', got {engine!r}")


async def serve_relay(
    listen: tuple[str, int],
    target: tuple[str, int],
    *,
    capacity: int = DEFAULT_CAPACITY,
    idle_timeout: float | None = None,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    engine: RelayEngineKind = "auto",
    stats: RelayStats | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on ``listen`` and forward each connection to ``target`` until cancelled.

    ``capacity``: the ring per direction and connection.  ``idle_timeout``:
    close a connection after that many seconds without a byte either way (None:
    never).  ``connect_timeout``: give up on the target after that long (None:
    the OS's own timeout, minutes).  ``engine``: ``"thread"`` moves the bytes
    on one native thread in epoll, ``"loop"`` in the event loop's own
    callbacks and tasks, ``"auto"`` the thread where epoll exists (see the
    module's documentation).  Hosts may be names, IPv4 or IPv6 addresses.
    ``task_status.started()`` reports the listening port (useful with port 0).
    Options are checked before anything listens.
    """
    check_relay_options(capacity, idle_timeout, connect_timeout)
    use_thread = _choose_engine(engine)
    stats = stats if stats is not None else RelayStats()
    infos = await anyio.getaddrinfo(target[0], target[1], type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {target[0]}:{target[1]}")
    family, _, _, _, address = infos[0]
    listener = await listen_socket(listen[0], listen[1], backlog=1024)
    with listener:
        dispatch = EngineDispatch() if use_thread else None
        options = _Options(
            (int(family), (str(address[0]), int(address[1]))),
            capacity,
            idle_timeout,
            connect_timeout,
            dispatch,
        )
        try:
            async with create_task_group() as outer:
                if dispatch is not None:
                    outer.start_soon(dispatch.run)
                try:
                    await _accept_loop(listener, options, stats, task_status)
                finally:
                    if dispatch is not None:
                        dispatch.close()  # every connection has ended
        finally:
            if dispatch is not None:
                dispatch.close()


async def _accept_loop(
    listener: socket.socket, options: _Options, stats: RelayStats, task_status: TaskStatus[int]
) -> None:
    waiter = FdWaiter(listener.fileno())
    freed = _Freed()
    report = _AcceptReport(stats)
    prepared: _Prepared | None = None
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
