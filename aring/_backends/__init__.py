"""How a task waits on an fd on each event loop: one module per backend.

The streams ask :func:`current_backend` once per call; it looks at the running
loop (asyncio, uvloop, or trio) and returns that backend's module-level object.
Each backend hands out two kinds of watches, both registered with the loop
once and kept while tasks keep waiting:

* :class:`Watch`: one per ring end per event loop, on the end's own
  duplicate of its notifier fd, so the ring may close its fds from any
  thread without pulling an fd out from under a loop;
* :class:`SocketWatch`: one per socket (or pipe fd) an adapter moves bytes
  through; the adapter owns the fd and tells the watch before closing it.
"""

from __future__ import annotations

import sys
import weakref
from asyncio import _get_running_loop
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = [
    "Backend",
    "FdWaiter",
    "SocketWatch",
    "TaskSlice",
    "Watch",
    "YieldBudget",
    "checkpoint_within",
    "current_backend",
    "task_slice",
]


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


class SocketWatch(Protocol):
    """Waiting for a socket or pipe fd (owned by the caller) in one event loop."""

    @property
    def key(self) -> object:
        """The loop (asyncio) or run (trio token) this watch belongs to."""

    def wait_readable(self, attempt: Callable[[], bool] | None = None) -> Awaitable[None]:
        """Until the fd is readable (a hint: the caller retries its call).

        With ``attempt``: until ``attempt()`` (the caller's read, run once the
        fd looks readable, on asyncio in the loop's callback) returned True;
        its exceptions are raised here.
        ``anyio.ClosedResourceError`` if ``notify_closing`` ends the wait.
        """

    def wait_writable(self) -> Awaitable[None]:
        """Until the fd is writable; ``anyio.ClosedResourceError`` as above."""

    def release(self) -> None:
        """Stop watching; the fd stays open.  Call from the loop's thread."""

    def notify_closing(self) -> None:
        """The fd is about to be closed: waiting tasks get ``ClosedResourceError``."""


#: What ``YieldBudget.spend()`` says (see :meth:`Backend.yield_budget`).
GO_ON = 1
YIELD_NOW = 0
OTHER_TASK = -1

#: (spend, restart) of one task's yield budget
BudgetCalls = tuple[Callable[[], int], Callable[[], None]]

#: ``checkpoints="budget"``: an async call yields to the loop once this many
#: calls went by without a yield ...
BUDGET_CALLS = 64
#: ... or once this long (seconds of the loop's clock) passed since the last one
BUDGET_SECONDS = 0.001


#: What a step given to :meth:`Backend.drive` asks for next (DONE: return).
DONE = 0
NEED_SOURCE = 1   # call it again once the source fd is readable
NEED_TARGET = 2   # ... once the target fd is writable
AGAIN = 4         # ... once other tasks had their turn


class Backend(Protocol):
    #: how often a task yields and looks again before it arms and sleeps
    yields_before_sleep: int

    def loop_key(self) -> object: ...

    def watch(self, fd: int, kind: str) -> Watch:
        """A watch on notifier ``fd`` of ``kind`` (a duplicate it now owns) in the running loop."""

    def socket_watch(self, fd: int) -> SocketWatch:
        """A watch on a socket or pipe ``fd`` the caller keeps owning, in the running loop."""

    def checkpoint(self) -> Awaitable[None]:
        """A cancel point and a schedule point."""

    def yield_budget(self, calls: int, seconds: float) -> BudgetCalls:
        """A budget of ``calls`` calls or ``seconds`` without a yield, for the running task.

        ``spend()`` (from that task, once per async call) says whether the
        call may go on without yielding: GO_ON, YIELD_NOW (also when the task
        is cancelled; the budget restarts, as the caller yields now) or
        OTHER_TASK (make a budget for the task now running).  ``restart()``:
        the task yielded some other way (it waited).  Cancellation is seen as
        trio's ``checkpoint_if_cancelled`` sees it: a cancel scope cancelled
        from the task itself, or by the loop at its last pass; a deadline
        that passed since then, at the next yield.
        """

    def call_soon_threadsafe(self) -> Callable[[Callable[[], None]], None]:
        """A function that runs a callback soon in the running loop, called from any thread."""

    def drive(self, source: int, target: int, step: Callable[[], int]) -> Awaitable[None]:
        """Call ``step()`` until it returns DONE, each time once what it asked for is ready.

        On asyncio and uvloop the calls run in the loop's readiness callbacks,
        so moving bytes between two fds costs no task switch; step's
        exceptions are raised in the awaiting task.  The caller owns both fds
        and closes them only after this returns.
        """


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


class FdWaiter:
    """Waits for one socket or pipe fd in whichever loop runs the caller.

    The watch is made on first use and made again if the caller moved to
    another loop (or trio run); the caller owns the fd and calls
    :meth:`notify_closing` before closing it, or :meth:`release` when done
    with it.
    """

    __slots__ = ("_fd", "_watch")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._watch: SocketWatch | None = None

    def _current(self) -> SocketWatch:
        backend = current_backend()
        watch = self._watch
        if watch is None or watch.key is not backend.loop_key():
            # A watch of a loop that is gone has nothing left registered.
            watch = self._watch = backend.socket_watch(self._fd)
        return watch

    async def wait_readable(self, attempt: Callable[[], bool] | None = None) -> None:
        await self._current().wait_readable(attempt)

    async def wait_writable(self) -> None:
        await self._current().wait_writable()

    def release(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.release()

    def notify_closing(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.notify_closing()


class TaskSlice:
    """What is left of one task's time slice: shared by every budget the task uses.

    A task that waits on one stream (or end) has yielded for all of them: an
    HTTP handler that slept in ``receive`` may ``send`` without another loop
    pass.  Budgets of one direction alone would each see their own last yield,
    long ago, and yield on nearly every call.
    """

    __slots__ = ("left", "until")

    def __init__(self) -> None:
        self.left = 0
        self.until = 0.0


_task_slices: weakref.WeakKeyDictionary[object, TaskSlice] = weakref.WeakKeyDictionary()


def task_slice(task: object) -> TaskSlice:
    """``task``'s slice (made on first use, dropped with the task)."""
    found = _task_slices.get(task)
    if found is None:
        found = _task_slices[task] = TaskSlice()
    return found


def _other_task() -> int:
    return OTHER_TASK


def _nothing() -> None:
    pass


class YieldBudget:
    """``checkpoints="budget"`` for one end or stream direction: calls it may make unyielded.

    Per async call, from the task using it: ``spend()`` says GO_ON (no loop
    pass needed) or not; if not, ``await checkpoint(code)`` with what it said
    yields (and makes a budget for a task that is new to it).  ``spend`` is a
    plain attribute (a closure), so the hot path is one call.  ``restart()``
    after the task yielded another way (it waited).
    """

    __slots__ = ("restart", "spend")
    spend: Callable[[], int]
    restart: Callable[[], None]

    def __init__(self) -> None:
        self.forget()

    async def checkpoint(self, code: int) -> None:
        backend = current_backend()
        if code == OTHER_TASK:  # the task using this now starts with a yield
            self.spend, self.restart = backend.yield_budget(BUDGET_CALLS, BUDGET_SECONDS)
        await backend.checkpoint()

    def forget(self) -> None:
        """Drop the task (keeps no finished task alive)."""
        self.spend = _other_task
        self.restart = _nothing


async def checkpoint_within(budget: YieldBudget | None) -> None:
    """A cancel point; a schedule point too, unless ``budget`` allows one more call without.

    ``None``: ``checkpoints="always"``.  The two hottest calls (``Writer.send``,
    ``Reader.receive``) inline this to save a frame.
    """
    if budget is None:
        await current_backend().checkpoint()
    elif (code := budget.spend()) != GO_ON:
        await budget.checkpoint(code)
