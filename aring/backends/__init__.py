"""How a task waits on a notifier fd on each event loop: one module per backend.

The streams ask :func:`current_backend` once per call; it looks at the running
loop (asyncio, uvloop, or trio) and returns that backend's module-level object.
Each backend hands out :class:`Watch` objects: one per end per event loop,
watching the end's own duplicate of its notifier fd, so the ring may close its
fds from any thread without pulling an fd out from under a loop.
"""

from __future__ import annotations

import os
import sys
from asyncio import _get_running_loop
from collections.abc import Awaitable
from typing import Protocol

__all__ = ["Backend", "Watch", "current_backend", "drain_notifier"]


class Watch(Protocol):
    """Sleeping on one end's notifier in one event loop."""

    @property
    def key(self) -> object:
        """The loop (asyncio) or run (trio token) this watch belongs to."""

    async def wait(self) -> None:
        """Until the notifier fired (and was drained) or the watch was closed.

        Callers re-check the ring afterwards: a wakeup is a hint, never a promise.
        """

    def close(self) -> None:
        """Stop watching and release the fd; safe from any thread; idempotent.

        A task sleeping in ``wait()`` is woken.
        """


class Backend(Protocol):
    name: str
    #: how often a task yields and looks again before it arms and sleeps
    yields_before_sleep: int

    def loop_key(self) -> object: ...

    def watch(self, fd: int, pipe: bool) -> Watch:
        """A watch on ``fd`` (a duplicate it now owns) in the running loop."""

    def checkpoint(self) -> Awaitable[None]:
        """A cancel point and a schedule point."""

    async def checkpoint_if_cancelled(self) -> None: ...

    async def cancel_shielded_checkpoint(self) -> None: ...


def drain_notifier(fd: int, pipe: bool) -> None:
    """Reset a notifier after it fired: one read of an eventfd, a pipe emptied."""
    try:
        if pipe:
            while len(os.read(fd, 65536)) == 65536:
                pass
        else:
            os.read(fd, 8)
    except (BlockingIOError, InterruptedError):
        pass


_asyncio_backend: Backend | None = None
_trio_backend: Backend | None = None


def current_backend() -> Backend:
    """The backend of the event loop running this task."""
    global _asyncio_backend, _trio_backend
    if _get_running_loop() is not None:
        if _asyncio_backend is None:
            from ._asyncio import backend

            _asyncio_backend = backend
        return _asyncio_backend
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_task():
        if _trio_backend is None:
            from ._trio import backend as trio_backend

            _trio_backend = trio_backend
        return _trio_backend
    raise RuntimeError(
        "aring's async methods need a running asyncio (or uvloop) or trio event loop; "
        "from a thread, use the blocking flavour: end.sync"
    )
