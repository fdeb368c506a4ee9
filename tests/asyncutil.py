"""Helpers for the async tests: checkpoint assertions and a ring-backed stream maker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import pytest
import trio
import trio.testing

import aring


async def assert_checkpoint(call: Callable[[], Awaitable[Any]]) -> Any:
    """``call`` is a cancel point and a schedule point.

    Cancel point: in a cancelled scope it raises the cancellation (the scope
    catches it).  Schedule point: see :func:`assert_schedule_point`.  Returns
    what the second, uncancelled call returned.
    """
    with anyio.CancelScope() as scope:
        scope.cancel()
        await call()
        pytest.fail("the call did not raise the cancellation of its scope")
    assert scope.cancelled_caught
    return await assert_schedule_point(call)


async def assert_schedule_point(call: Callable[[], Awaitable[Any]]) -> Any:
    """``call`` lets other tasks run even when it need not wait; returns its result.

    On trio, whose scheduler runs a batch in random order, trio's own counters
    say it (``trio.testing.assert_checkpoints``); on asyncio, a task started just
    before the call must have run when it returns.
    """
    if trio.lowlevel.in_trio_task():
        with trio.testing.assert_checkpoints():
            return await call()

    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        result = await call()
        assert ran, "the call did not let another task run"
    return result


@asynccontextmanager
async def ring_pair(
    capacity: int = 1 << 16, *, clogged: bool = False, **options: Any
) -> AsyncIterator[tuple[aring.Writer, aring.Reader]]:
    """A writer and reader; ``clogged``: the ring is full, so the next send waits."""
    async with aring.open(capacity, **options) as (writer, reader):
        if clogged:
            assert writer.try_write(b"\0" * writer.capacity)
        yield writer, reader


@contextmanager
def as_trio_errors() -> Iterator[None]:
    """anyio's resource errors as trio's, for views that trio.testing checks."""
    try:
        yield
    except anyio.BusyResourceError as exc:
        raise trio.BusyResourceError(*exc.args) from exc
    except anyio.ClosedResourceError as exc:
        raise trio.ClosedResourceError(*exc.args) from exc
    except anyio.BrokenResourceError as exc:
        raise trio.BrokenResourceError(*exc.args) from exc
