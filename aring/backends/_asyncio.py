"""asyncio and uvloop: one persistent ``add_reader`` per end per loop.

Registering a reader for every wait costs about five times a wakeup, so a
watch registers once and stays registered while tasks keep waiting.  When the
fd fires with no task waiting (a stale wakeup, or a thread now blocks on the
same end with ``poll()``), the watch unregisters instead of draining, so a
wakeup meant for a thread is never eaten by the loop; the next wait registers
again.
"""

from __future__ import annotations

import asyncio
import os
import types
from collections.abc import Awaitable, Generator

import anyio.lowlevel

from . import drain_notifier

__all__ = ["backend"]


@types.coroutine
def _yield_to_loop() -> Generator[None, None, None]:
    # What asyncio.sleep(0) does, one frame shorter: a bare yield makes the
    # Task reschedule itself, and a pending cancellation is raised here.
    yield


class AsyncioWatch:
    __slots__ = ("_closed", "_fd", "_future", "_loop", "_pipe", "_registered")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, pipe: bool) -> None:
        self._loop = loop
        self._fd = fd
        self._pipe = pipe
        self._future: asyncio.Future[None] | None = None
        self._registered = False
        self._closed = False

    @property
    def key(self) -> object:
        return self._loop

    async def wait(self) -> None:
        if self._closed:
            return
        if not self._registered:
            self._loop.add_reader(self._fd, self._on_readable)
            self._registered = True
        future = self._loop.create_future()
        self._future = future
        try:
            await future
        finally:
            self._future = None

    def _on_readable(self) -> None:
        future = self._future
        if future is None or future.done():
            self._loop.remove_reader(self._fd)
            self._registered = False
            return
        drain_notifier(self._fd, self._pipe)
        future.set_result(None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if asyncio._get_running_loop() is self._loop:
            self._teardown()
            return
        try:
            self._loop.call_soon_threadsafe(self._teardown)
        except RuntimeError:  # the loop is closed, and its selector with it
            os.close(self._fd)

    def _teardown(self) -> None:
        if self._registered:
            self._loop.remove_reader(self._fd)
            self._registered = False
        os.close(self._fd)
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def __del__(self) -> None:
        # Reached only when no loop holds our callback: nothing watches the fd.
        if not self._closed:
            self._closed = True
            os.close(self._fd)


class AsyncioBackend:
    name = "asyncio"
    yields_before_sleep = 1

    def loop_key(self) -> object:
        return asyncio.get_running_loop()

    def watch(self, fd: int, pipe: bool) -> AsyncioWatch:
        return AsyncioWatch(asyncio.get_running_loop(), fd, pipe)

    def checkpoint(self) -> Awaitable[None]:
        return _yield_to_loop()

    async def checkpoint_if_cancelled(self) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def cancel_shielded_checkpoint(self) -> None:
        await anyio.lowlevel.cancel_shielded_checkpoint()


backend = AsyncioBackend()
