"""trio: ``trio.lowlevel.wait_readable``/``wait_writable`` on the fd.

Closing follows trio's rule: ``notify_closing`` (which wakes a task waiting on
the fd with ``trio.ClosedResourceError``) before ``os.close``, always in the
run's own thread; from other threads the teardown is posted with the run's
token.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import trio
from anyio import ClosedResourceError

from .._native import drain_notifier
from . import AGAIN, DONE, GO_ON, NEED_TARGET, OTHER_TASK, YIELD_NOW, BudgetCalls, task_slice

__all__ = ["backend"]


class TrioWatch:
    """A ring end's notifier in one run: the watch owns its duplicate fd."""

    __slots__ = ("_closed", "_fd", "_kind", "_token")

    def __init__(self, token: trio.lowlevel.TrioToken, fd: int, kind: str) -> None:
        self._token = token
        self._fd = fd
        self._kind = kind
        self._closed = False

    @property
    def key(self) -> object:
        return self._token

    async def wait(self) -> None:
        if self._closed:
            return
        try:
            await trio.lowlevel.wait_readable(self._fd)
        except trio.ClosedResourceError:  # closed by another task: the caller sees why
            return
        # A teardown posted from another thread may have run while this task
        # was being rescheduled; the fd number may even be reused by now.
        if self._fd >= 0:
            drain_notifier(self._fd, self._kind)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            here = trio.lowlevel.current_trio_token() is self._token
        except RuntimeError:
            here = False
        if here:
            self._teardown()
            return
        try:
            self._token.run_sync_soon(self._teardown)
        except trio.RunFinishedError:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _teardown(self) -> None:
        fd, self._fd = self._fd, -1
        trio.lowlevel.notify_closing(fd)
        os.close(fd)

    def __del__(self) -> None:
        if not self._closed:
            self._closed = True
            fd, self._fd = self._fd, -1
            os.close(fd)


class TrioSocketWatch:
    """A socket or pipe fd in one run; the caller owns the fd."""

    __slots__ = ("_fd", "_token")

    def __init__(self, token: trio.lowlevel.TrioToken, fd: int) -> None:
        self._token = token
        self._fd = fd

    @property
    def key(self) -> object:
        return self._token

    async def wait_readable(self, attempt: Callable[[], bool] | None = None) -> None:
        try:
            await trio.lowlevel.wait_readable(self._fd)
            while attempt is not None and not attempt():
                await trio.lowlevel.wait_readable(self._fd)
        except trio.ClosedResourceError:
            raise ClosedResourceError from None

    async def wait_writable(self) -> None:
        try:
            await trio.lowlevel.wait_writable(self._fd)
        except trio.ClosedResourceError:
            raise ClosedResourceError from None

    def release(self) -> None:
        pass  # trio registers per wait: nothing is left registered

    def notify_closing(self) -> None:
        trio.lowlevel.notify_closing(self._fd)


class TrioBackend:
    yields_before_sleep = 4

    def loop_key(self) -> object:
        return trio.lowlevel.current_trio_token()

    def watch(self, fd: int, kind: str) -> TrioWatch:
        return TrioWatch(trio.lowlevel.current_trio_token(), fd, kind)

    def socket_watch(self, fd: int) -> TrioSocketWatch:
        return TrioSocketWatch(trio.lowlevel.current_trio_token(), fd)

    def checkpoint(self) -> Awaitable[None]:
        return trio.lowlevel.checkpoint()

    def yield_budget(self, calls: int, seconds: float) -> BudgetCalls:
        current_task = trio.lowlevel.current_task
        current_time = trio.current_time  # the run's clock: a MockClock in tests
        task = current_task()
        left_of = task_slice(task)

        def spend() -> int:
            try:
                if current_task() is not task:
                    return OTHER_TASK
            except RuntimeError:  # not in a trio run (the end moved to asyncio)
                return OTHER_TASK
            left_of.left -= 1
            # What trio.lowlevel.checkpoint_if_cancelled() tests, without its
            # coroutine (a private attribute: tests/test_budget.py fails if a
            # new trio renames it).
            if (
                left_of.left >= 0
                and current_time() < left_of.until
                and not task._cancel_status.effectively_cancelled
            ):
                return GO_ON
            restart()
            return YIELD_NOW

        def restart() -> None:
            left_of.left = calls
            left_of.until = current_time() + seconds

        restart()
        return spend, restart

    def call_soon_threadsafe(self) -> Callable[[Callable[[], None]], None]:
        return trio.lowlevel.current_trio_token().run_sync_soon

    async def drive(self, source: int, target: int, step: Callable[[], int]) -> None:
        # trio has no readiness callbacks: the task waits, then steps.
        while (need := step()) != DONE:
            if need & AGAIN:
                await trio.lowlevel.checkpoint()
            elif need & NEED_TARGET:
                await trio.lowlevel.wait_writable(target)
            else:
                await trio.lowlevel.wait_readable(source)


backend = TrioBackend()
