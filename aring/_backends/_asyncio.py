"""asyncio and uvloop: one persistent ``add_reader``/``add_writer`` per fd per loop.

Registering for every wait costs about five times a wakeup, so an interest
registers once and stays registered while tasks keep waiting.  When the fd
fires with no task waiting (a stale wakeup, or a thread now blocks on the
same notifier with ``poll()``), the interest unregisters instead of acting, so
a wakeup meant for a thread is never eaten by the loop and a level-triggered
fd does not spin the loop; the next wait registers again.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import types
from collections.abc import Awaitable, Callable, Generator

from anyio import ClosedResourceError

# anyio's per-task cancel scope state on asyncio: read (never written) by the
# budget mode's cancellation check, which would otherwise cost a loop pass.
# A private name: tests/test_budget.py fails if a new anyio renames it.
from anyio._backends._asyncio import _task_states as _anyio_task_states

from .._native import drain_notifier
from . import (
    AGAIN,
    DONE,
    GO_ON,
    NEED_SOURCE,
    NEED_TARGET,
    OTHER_TASK,
    YIELD_NOW,
    BudgetCalls,
    task_slice,
)

__all__ = ["backend"]


@types.coroutine
def _yield_to_loop() -> Generator[None, None, None]:
    # What asyncio.sleep(0) does, one frame shorter: a bare yield makes the
    # Task reschedule itself, and a pending cancellation is raised here.
    yield


class _Interest:
    """One direction of interest in one fd: registered on first wait, kept while used."""

    __slots__ = (
        "_add",
        "_attempt",
        "_fd",
        "_future",
        "_loop",
        "_on_ready",
        "_registered",
        "_remove",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        writable: bool,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self._fd = fd
        self._add = loop.add_writer if writable else loop.add_reader
        self._remove = loop.remove_writer if writable else loop.remove_reader
        self._on_ready = on_ready
        self._future: asyncio.Future[None] | None = None
        self._attempt: Callable[[], bool] | None = None
        self._registered = False

    async def wait(self, attempt: Callable[[], bool] | None = None) -> None:
        if not self._registered:
            self._add(self._fd, self._fire)
            self._registered = True
        future = self._loop.create_future()
        self._future = future
        self._attempt = attempt
        try:
            await future
        finally:
            self._future = self._attempt = None

    def _fire(self) -> None:
        future = self._future
        if future is None:
            self._remove(self._fd)
            self._registered = False
            return
        if future.done():
            # Woken already, its task not run yet: the fd stays ready until it
            # does.  Unregistering here would cost two epoll_ctl per wait.
            return
        if self._on_ready is not None:
            self._on_ready()
        attempt = self._attempt
        if attempt is not None:
            # The I/O runs here, as a transport's would: an event the selector
            # saw before the task drained the fd finds nothing, and the task
            # sleeps on instead of waking to an EAGAIN.
            try:
                if not attempt():
                    return
            except Exception as exc:
                future.set_exception(exc)
                return
        future.set_result(None)

    def stop(self, error: BaseException | None = None) -> None:
        """Unregister; a waiting task wakes (with ``error`` if given)."""
        if self._registered:
            self._remove(self._fd)
            self._registered = False
        future = self._future
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


class AsyncioWatch:
    """A ring end's notifier in one loop: the watch owns its duplicate fd."""

    __slots__ = ("_closed", "_fd", "_interest", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, kind: str) -> None:
        self._loop = loop
        self._fd = fd
        self._interest = _Interest(loop, fd, False, lambda: drain_notifier(fd, kind))
        self._closed = False

    @property
    def key(self) -> object:
        return self._loop

    async def wait(self) -> None:
        if not self._closed:
            await self._interest.wait()

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
        self._interest.stop()
        os.close(self._fd)

    def __del__(self) -> None:
        # Reached only when no loop holds our callback: nothing watches the fd.
        if not self._closed:
            self._closed = True
            os.close(self._fd)


class AsyncioSocketWatch:
    """A socket or pipe fd in one loop; the caller owns the fd."""

    __slots__ = ("_loop", "_read", "_write")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._read = _Interest(loop, fd, False)
        self._write = _Interest(loop, fd, True)

    @property
    def key(self) -> object:
        return self._loop

    def wait_readable(self, attempt: Callable[[], bool] | None = None) -> Awaitable[None]:
        return self._read.wait(attempt)

    def wait_writable(self) -> Awaitable[None]:
        return self._write.wait()

    def release(self) -> None:
        self._read.stop()
        self._write.stop()

    def notify_closing(self) -> None:
        self._read.stop(ClosedResourceError())
        self._write.stop(ClosedResourceError())


class _Driver:
    """Runs a step in readiness callbacks: bytes move in the pass that saw the fd ready."""

    __slots__ = ("_future", "_loop", "_registered", "_source", "_step", "_target")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, source: int, target: int, step: Callable[[], int]
    ) -> None:
        self._loop = loop
        self._source = source
        self._target = target
        self._step = step
        self._registered = 0
        self._future: asyncio.Future[None] = loop.create_future()

    def run(self) -> None:
        if self._future.done():   # cancelled, or a stale call_soon
            return
        try:
            need = self._step()
        except Exception as exc:
            self.stop()
            self._future.set_exception(exc)
            return
        if need == DONE:
            self.stop()
            self._future.set_result(None)
        elif need & AGAIN:
            self._register(0)
            self._loop.call_soon(self.run)
        else:
            self._register(need)

    def _register(self, need: int) -> None:
        changed = need ^ self._registered
        if changed & NEED_SOURCE:
            if need & NEED_SOURCE:
                self._loop.add_reader(self._source, self.run)
            else:
                self._loop.remove_reader(self._source)
        if changed & NEED_TARGET:
            if need & NEED_TARGET:
                self._loop.add_writer(self._target, self.run)
            else:
                self._loop.remove_writer(self._target)
        self._registered = need

    def stop(self) -> None:
        self._register(0)

    async def wait(self) -> None:
        try:
            await self._future
        finally:
            self.stop()


async def _drive(source: int, target: int, step: Callable[[], int]) -> None:
    driver = _Driver(asyncio.get_running_loop(), source, target, step)
    driver.run()
    await driver.wait()


def _current_task_reader(loop: asyncio.AbstractEventLoop, task: object) -> Callable[[], object]:
    """A cheap asyncio.current_task() for this loop.

    On 3.11 asyncio.current_task() (through get_running_loop) makes a getpid
    system call; asyncio's own table of current tasks is a dict lookup.  Used
    only where it agrees with current_task() now (a later CPython may keep
    current tasks elsewhere); a stale answer only makes the budget yield.
    """
    table = getattr(asyncio.tasks, "_current_tasks", None)
    if isinstance(table, dict) and table.get(loop) is task:
        # The loop's entry says which task it runs, not that this thread runs it.
        thread = threading.get_ident()
        get_ident = threading.get_ident
        return lambda: table.get(loop) if get_ident() == thread else None

    def current() -> object:
        try:
            return asyncio.current_task()
        except RuntimeError:  # no asyncio loop here (the end moved to a trio run)
            return None

    return current


def _yield_budget(calls: int, seconds: float) -> BudgetCalls:
    task = asyncio.current_task()
    assert task is not None, "called from a task"
    current_task = _current_task_reader(asyncio.get_running_loop(), task)
    monotonic = time.monotonic  # not loop.time(): uvloop's may be cached per pass
    # anyio's state of the task, made once (when the task first enters a cancel scope)
    state = _anyio_task_states.get(task)
    left_of = task_slice(task)

    def spend() -> int:
        nonlocal state
        if current_task() is not task:
            return OTHER_TASK
        left_of.left -= 1
        # task.cancelling(): asyncio's own cancellation (task.cancel()) is pending
        if left_of.left >= 0 and monotonic() < left_of.until and not task.cancelling():
            # anyio's cancel scopes around the task (CancelScope, fail_after,
            # task groups): one cancelled, and not behind a shield, means yield
            if state is None:
                state = _anyio_task_states.get(task)
            scope = state.cancel_scope if state is not None else None
            while scope is not None:
                if scope._cancel_called:
                    break
                if scope._shield:
                    return GO_ON
                scope = scope._parent_scope
            else:
                return GO_ON
        restart()
        return YIELD_NOW

    def restart() -> None:
        left_of.left = calls
        left_of.until = monotonic() + seconds

    restart()
    return spend, restart


class AsyncioBackend:
    yields_before_sleep = 1

    def loop_key(self) -> object:
        return asyncio.get_running_loop()

    def watch(self, fd: int, kind: str) -> AsyncioWatch:
        return AsyncioWatch(asyncio.get_running_loop(), fd, kind)

    def socket_watch(self, fd: int) -> AsyncioSocketWatch:
        return AsyncioSocketWatch(asyncio.get_running_loop(), fd)

    def checkpoint(self) -> Awaitable[None]:
        return _yield_to_loop()

    def yield_budget(self, calls: int, seconds: float) -> BudgetCalls:
        return _yield_budget(calls, seconds)

    def call_soon_threadsafe(self) -> Callable[[Callable[[], None]], None]:
        loop = asyncio.get_running_loop()

        def soon(callback: Callable[[], None]) -> None:
            loop.call_soon_threadsafe(callback)

        return soon

    def drive(self, source: int, target: int, step: Callable[[], int]) -> Awaitable[None]:
        return _drive(source, target, step)


backend = AsyncioBackend()
