"""The relay's connections on the native engine: a thread moves the bytes, the loop hears the ends.

``_native.RelayEngine`` is one thread per relay that waits in epoll on every
connection's two sockets and forwards each direction through a private
double-mapped ring, without the interpreter: a request is read and sent on in
the same wake-up, as socat does, and the event loop runs only to accept,
connect and learn that a connection ended.  The engine owns a connection from
``start`` until it reports the end (or ``abort`` returns), so its sockets are
closed only after that.
"""

from __future__ import annotations

import errno

import anyio

from . import _native
from ._backends import FdWaiter

__all__ = ["ENDED_BY_US", "Counts", "EngineDispatch", "counts"]

#: (bytes, regions, waits, wake-ups, passes) of one connection, both directions
Counts = tuple[int, int, int, int, int]

#: errors that mean the relay ended the connection itself, not a peer
ENDED_BY_US = frozenset({0, errno.ECANCELED, errno.ESHUTDOWN})


def counts(connection: _native.EngineConnection) -> Counts:
    out, back, regions, waits, wakeups, passes = connection.counters()
    return out + back, regions, waits, wakeups, passes


class EngineDispatch:
    """The relay's engine thread and the task that wakes each connection's task when it ends."""

    def __init__(self) -> None:
        self.engine = _native.RelayEngine()
        self._waiting: dict[int, anyio.Event] = {}
        # Shielded, and cancelled by close(): connections being cancelled
        # still hear their end while the relay shuts down.
        self._scope = anyio.CancelScope(shield=True)

    async def run(self) -> None:
        waiter = FdWaiter(self.engine.done_fd)
        try:
            with self._scope:
                while True:
                    await waiter.wait_readable()
                    for ident in self.engine.finished():
                        event = self._waiting.pop(ident, None)
                        if event is not None:
                            event.set()
        finally:
            waiter.notify_closing()

    def connection(self, capacity: int) -> _native.EngineConnection:
        return _native.EngineConnection(self.engine, capacity)

    async def forward(self, connection: _native.EngineConnection, fd0: int, fd1: int) -> int:
        """Relay fd0 <-> fd1 until both directions ended; the errno that ended it (0: clean).

        Cancelled, it ends the connection first: when this returns or raises,
        the engine no longer touches either socket.
        """
        ended = anyio.Event()
        ident = connection.id
        self._waiting[ident] = ended  # before start: the end may come at once
        try:
            connection.start(fd0, fd1)
            await ended.wait()
        finally:
            self._waiting.pop(ident, None)
            connection.abort()  # returns at once if it ended; else within microseconds
        error = connection.error
        assert error is not None, "an aborted connection has ended"
        return error

    def close(self) -> None:
        """Once every connection ended: stop the dispatching task and the thread."""
        self._scope.cancel()
        self.engine.stop()
