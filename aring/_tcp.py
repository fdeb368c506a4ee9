"""TCP with a receive ring: ``RingSocketStream``, ``connect_tcp``, ``create_tcp_listener``.

A ``RingSocketStream`` is an ``anyio.abc.SocketStream`` over a raw non-blocking
socket that is never handed to a loop transport.  Received bytes land in a ring
with one ``recv_into`` per free region, so a parser can look at them where they
lie: ``peek(n)``/``consume(n)``, ``receive_exactly(n)`` and
``receive_until(delimiter)`` return views that are contiguous even across the
wrap (what anyio's ``BufferedByteReceiveStream`` does with copies).

A view from ``receive_exactly``/``receive_until`` is a loan: its bytes are
released by the next receive-side call, after which using it raises
``ValueError``.  Sends go straight from the caller's buffer to the socket.
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
from collections.abc import Callable
from typing import Any

import anyio
from anyio import (
    BrokenResourceError,
    ClosedResourceError,
    DelimiterNotFound,
    EndOfStream,
    IncompleteRead,
)
from anyio.abc import SocketListener, SocketStream, TaskGroup

from . import _ring_pool
from ._backends import GO_ON, FdWaiter, YieldBudget, checkpoint_within, current_backend
from ._common import (
    BROKEN_ERRORS,
    DEFAULT_MAX_BYTES,
    busy,
    check_max_bytes,
    connect_socket,
    listen_socket,
    shutdown_write,
)
from ._native import _ring_capacity
from ._ring import Checkpoints, check_checkpoints

__all__ = ["RingSocketListener", "RingSocketStream", "connect_tcp", "create_tcp_listener"]

DEFAULT_CAPACITY = 256 << 10

#: ``serve`` accepts up to this many queued connections per wake-up (asyncio's
#: servers take up to their backlog, 100 by default)
ACCEPT_BATCH = 64


@functools.lru_cache(maxsize=64)
def _delimiter_pattern(delimiter: bytes) -> re.Pattern[bytes]:
    # Compiled once per delimiter: receive_until runs once per request in servers.
    return re.compile(re.escape(delimiter))


class RingSocketStream(SocketStream):
    """A TCP connection whose receive side is a double-mapped ring of ``capacity`` bytes."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        capacity: int = DEFAULT_CAPACITY,
        checkpoints: Checkpoints = "always",
    ) -> None:
        check_checkpoints(checkpoints)
        sock.setblocking(False)
        # checkpoints="budget": one budget per direction (often two tasks)
        budgeted = checkpoints == "budget"
        self._receive_budget = YieldBudget() if budgeted else None
        self._send_budget = YieldBudget() if budgeted else None
        self._sock = sock
        self._fd = FdWaiter(sock.fileno())
        # Filled and read by this stream's own calls, never waited on: no notifier fds;
        # taken from the rings earlier streams gave back when there is one (_ring_pool).
        self._lease = _ring_pool.take(capacity)
        self._ring, self._writer, self._reader, _ = self._lease
        self._capacity = self._ring.capacity
        self._loaned = 0  # bytes of the last receive_exactly/until view, released next call
        self._eof = False
        self._eof_sent = False
        self._closed = False
        self._receiving = False
        self._drained = False  # the last recv seemed to empty the socket
        self._sending = False

    # -- the receive side --------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Bytes the receive ring holds: the most ``peek``/``receive_exactly`` can return."""
        return self._capacity

    def _enter_receive(self) -> None:
        if self._closed:
            raise ClosedResourceError("this stream is closed")
        if self._receiving:
            raise busy("another task is already receiving from this stream")
        self._receiving = True
        if self._loaned:
            self._reader.consume(self._loaned)
            self._loaned = 0

    def _fill_once(self) -> bool:
        """One recv_into the ring's free space; True if it made progress.

        Progress: bytes, the peer's end, or a full ring (the caller has what it
        can get).  ``_drained`` keeps a guess that the socket is now empty
        (EAGAIN, or fewer bytes than the space offered); the loop's
        level-triggered readiness corrects a wrong guess at the cost of a pass.
        """
        view = self._writer.try_reserve(1)
        if view is None:
            return True
        offered = len(view)
        try:
            got = self._sock.recv_into(view)
        except BlockingIOError:
            self._writer.commit(0)
            self._drained = True
            return False
        except BROKEN_ERRORS as exc:
            self._writer.commit(0)
            raise BrokenResourceError(f"the peer reset the connection: {exc}") from exc
        except OSError as exc:
            self._writer.commit(0)
            if self._closed:
                raise ClosedResourceError("this stream was closed") from exc
            raise
        self._writer.commit(got)
        if not got:
            self._eof = True
        self._drained = got < offered
        return True

    async def _fill_until(self, n: int, yielded: bool) -> int:
        """Until ``n`` bytes are readable or the peer finished; the readable count.

        A call that has not yielded since a recv emptied the socket waits
        before it calls recv again: in a request/response exchange the next
        request is rarely there yet, and the EAGAIN would be wasted.
        """
        readable = self._reader.readable()
        wait_first = self._drained and not yielded
        while readable < n and not self._eof:
            if wait_first or not self._fill_once():
                await self._wait_readable()  # which receives, once the socket is ready
            wait_first = self._drained
            readable = self._reader.readable()
        return readable

    async def _receive_checkpoint(self) -> bool:
        """The receive's cancel point; True if it also yielded to the loop."""
        budget = self._receive_budget
        if budget is None:
            await current_backend().checkpoint()
            return True
        code = budget.spend()
        if code == GO_ON:
            return False
        await budget.checkpoint(code)
        return True

    async def _wait_readable(self) -> None:
        try:
            await self._fd.wait_readable(self._fill_once)
        except ClosedResourceError:
            raise ClosedResourceError("this stream was closed") from None
        if self._receive_budget is not None:  # the task yielded while it waited
            self._receive_budget.restart()
        if self._closed:
            raise ClosedResourceError("this stream was closed")

    async def receive(self, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
        check_max_bytes(max_bytes)
        yielded = await self._receive_checkpoint()
        self._enter_receive()
        try:
            if not await self._fill_until(1, yielded):
                raise EndOfStream
            data = self._reader.try_read(max_bytes)
            assert data is not None
            return data
        finally:
            self._receiving = False

    async def peek(self, n: int = 1) -> memoryview:
        """A read-only view of every byte received and not consumed, ``len >= n``.

        Waits for ``n`` bytes; at end of stream it returns what is left, and raises
        ``EndOfStream`` when nothing is.  ``consume(k)`` releases bytes.
        """
        self._check_n(n)
        yielded = await self._receive_checkpoint()
        self._enter_receive()
        try:
            if not await self._fill_until(n, yielded):
                raise EndOfStream
            view = self._reader.try_peek(1)
            assert view is not None
            return view
        finally:
            self._receiving = False

    def consume(self, n: int) -> None:
        """Release the first ``n`` bytes that ``peek`` showed."""
        if self._closed:
            raise ClosedResourceError("this stream is closed")
        if self._loaned:
            self._reader.consume(self._loaned)
            self._loaned = 0
        self._reader.consume(n)

    async def receive_exactly(self, nbytes: int) -> memoryview:
        """The next ``nbytes`` bytes as a view (a loan until the next receive-side call).

        ``IncompleteRead`` if the stream ends first.
        """
        self._check_n(nbytes)
        yielded = await self._receive_checkpoint()
        self._enter_receive()
        try:
            if await self._fill_until(nbytes, yielded) < nbytes:
                raise IncompleteRead
            view = self._reader.try_peek(nbytes, limit=nbytes)
            assert view is not None
            self._loaned = nbytes
            return view
        finally:
            self._receiving = False

    async def receive_until(self, delimiter: bytes, max_bytes: int) -> memoryview:
        """The bytes before the next ``delimiter`` as a view (a loan, like receive_exactly).

        The delimiter is consumed too.  ``DelimiterNotFound`` if ``max_bytes`` bytes
        pass without one; ``IncompleteRead`` if the stream ends first.
        """
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be an int, not {type(max_bytes).__name__}")
        if not 1 <= max_bytes <= self.capacity - len(delimiter):
            raise ValueError(
                f"max_bytes must be between 1 and the capacity minus the delimiter "
                f"({self.capacity - len(delimiter)}), got {max_bytes}"
            )
        pattern = _delimiter_pattern(bytes(delimiter))
        yielded = await self._receive_checkpoint()
        self._enter_receive()
        try:
            searched = 0
            while True:
                view = self._reader.try_peek(1)
                if view is not None:
                    # re searches the ring's memory in place: no copy of the region.
                    found = pattern.search(view, searched, max_bytes + len(delimiter))
                    if found is not None:
                        index = found.start()
                        self._loaned = index + len(delimiter)
                        if index == 0:
                            return memoryview(b"")
                        # a view of just the record, tracked so the loan can end
                        record = self._reader.try_peek(index, limit=index)
                        assert record is not None
                        return record
                    if len(view) > max_bytes:
                        raise DelimiterNotFound(max_bytes)
                    searched = max(0, len(view) - len(delimiter) + 1)
                before = self._reader.readable()
                if self._eof:
                    raise IncompleteRead
                if before >= self.capacity:
                    raise DelimiterNotFound(max_bytes)
                await self._fill_until(before + 1, yielded)
                yielded = False
        finally:
            self._receiving = False

    def _check_n(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if not 1 <= n <= self.capacity:
            raise ValueError(f"n must be between 1 and the capacity ({self.capacity}), got {n}")

    # -- the send side -----------------------------------------------------------------

    async def send(self, item: bytes | bytearray | memoryview) -> None:
        view = memoryview(item).cast("B")
        await checkpoint_within(self._send_budget)
        if self._closed:
            raise ClosedResourceError("this stream is closed")
        if self._eof_sent:
            raise ClosedResourceError("the sending side was closed with send_eof()")
        if self._sending:
            raise busy("another task is already sending on this stream")
        self._sending = True
        try:
            while view:
                try:
                    sent = self._sock.send(view)
                except BlockingIOError:
                    try:
                        await self._fd.wait_writable()
                    except ClosedResourceError:
                        raise ClosedResourceError("this stream was closed") from None
                    if self._closed:
                        raise ClosedResourceError("this stream was closed") from None
                    if self._send_budget is not None:  # the task yielded while it waited
                        self._send_budget.restart()
                    continue
                except BROKEN_ERRORS as exc:
                    raise BrokenResourceError(f"the peer closed the connection: {exc}") from exc
                view = view[sent:]
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        await current_backend().checkpoint()
        if self._closed:
            raise ClosedResourceError("this stream is closed")
        if self._sending:
            raise busy("another task is sending on this stream")
        self._eof_sent = True
        shutdown_write(self._sock)

    async def aclose(self) -> None:
        """Close: tasks blocked on the socket wake with ``ClosedResourceError``.

        Views this stream lent are released (using one raises ``ValueError``);
        the ring goes back to the pool for the next stream, unless a slice of a
        view is still alive, which keeps the old bytes mapped for it alone.
        """
        if not self._closed:
            self._closed = True
            self._fd.notify_closing()  # wake waiters before the fd goes
            self._sock.close()
            self._loaned = 0
            # Every later call checks _closed before it touches the ring, so
            # the next stream may have it as soon as this returns.
            _ring_pool.give_back(self._lease)
            # Nothing of this stream may reach the ring again: the next stream has it.
            del self._lease, self._ring, self._writer, self._reader
            for budget in (self._receive_budget, self._send_budget):
                if budget is not None:
                    budget.forget()  # keeps no finished task alive
        await current_backend().checkpoint()

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock


async def _connect(host: str, port: int, local_host: str | None) -> socket.socket:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    errors: list[OSError] = []
    for family, _, _, _, address in infos:
        try:
            return await connect_socket(family, address, local_host)
        except OSError as exc:
            errors.append(exc)
    raise OSError(f"cannot connect to {host}:{port}: {errors or 'no address'}")


async def connect_tcp(
    host: str,
    port: int,
    *,
    capacity: int = DEFAULT_CAPACITY,
    local_host: str | None = None,
    checkpoints: Checkpoints = "always",
) -> RingSocketStream:
    """Connect to ``host:port``; the stream receives into a ring of ``capacity`` bytes.

    ``checkpoints="budget"``: the stream's calls yield to the loop only when they
    wait or once per budget, as a ring's ends do (see ``aring.Ring``).
    """
    _ring_capacity(capacity)
    check_checkpoints(checkpoints)
    sock = await _connect(host, port, local_host)
    return RingSocketStream(sock, capacity=capacity, checkpoints=checkpoints)


class RingSocketListener(SocketListener):
    """Accepts TCP connections as ``RingSocketStream`` objects."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        capacity: int = DEFAULT_CAPACITY,
        checkpoints: Checkpoints = "always",
    ) -> None:
        _ring_capacity(capacity)
        check_checkpoints(checkpoints)
        sock.setblocking(False)
        self._sock = sock
        self._fd = FdWaiter(sock.fileno())
        self._capacity = capacity
        self._checkpoints: Checkpoints = checkpoints
        self._closed = False

    async def accept(self) -> RingSocketStream:
        await current_backend().checkpoint()
        while True:
            stream = self._accept_nowait()
            if stream is not None:
                return stream
            await self._fd.wait_readable()

    def _accept_nowait(self) -> RingSocketStream | None:
        """A connection the kernel has queued, or None."""
        if self._closed:
            raise ClosedResourceError("this listener is closed")
        try:
            client, _ = self._sock.accept()
        except BlockingIOError:
            return None
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return RingSocketStream(client, capacity=self._capacity, checkpoints=self._checkpoints)

    async def serve(
        self,
        handler: Callable[[RingSocketStream], Any],
        task_group: TaskGroup | None = None,
    ) -> None:
        """Accept connections for ever, each handled by ``handler`` in a task of its own.

        ``handler`` is called with the ``RingSocketStream`` (so it may use
        ``receive_until``, ``peek``... with their types), in ``task_group`` if
        given.
        """
        async with contextlib.AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            while True:
                task_group.start_soon(handler, await self.accept())
                # The listener was readable: take what else the kernel queued
                # before yielding again, as asyncio's own accept loop does.
                for _ in range(ACCEPT_BATCH - 1):
                    stream = self._accept_nowait()
                    if stream is None:
                        break
                    task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._fd.notify_closing()
            self._sock.close()
        await current_backend().checkpoint()

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock


async def create_tcp_listener(
    *,
    local_host: str | None = None,
    local_port: int = 0,
    capacity: int = DEFAULT_CAPACITY,
    backlog: int = 65536,
    reuse_port: bool = False,
    checkpoints: Checkpoints = "always",
) -> RingSocketListener:
    """Listen on ``local_host:local_port`` (all interfaces if ``local_host`` is None).

    ``local_host`` may be a host name, an IPv4 or an IPv6 address.  A bad
    ``capacity`` or ``checkpoints`` is refused here, before anything listens.
    ``checkpoints`` is given to every accepted stream (see ``connect_tcp``).
    """
    _ring_capacity(capacity)
    check_checkpoints(checkpoints)
    sock = await listen_socket(local_host, local_port, backlog=backlog, reuse_port=reuse_port)
    return RingSocketListener(sock, capacity=capacity, checkpoints=checkpoints)
