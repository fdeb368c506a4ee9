"""Backend.drive: steps in readiness callbacks (asyncio, uvloop) or in a task (trio)."""

from __future__ import annotations

import socket

import anyio
import pytest

from aring._backends import AGAIN, DONE, NEED_SOURCE, NEED_TARGET, current_backend

pytestmark = pytest.mark.anyio


async def test_each_step_runs_once_what_it_asked_for_is_ready() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        seen: list[bytes] = []

        def step() -> int:
            try:
                data = b.recv(100)
            except BlockingIOError:
                return NEED_SOURCE
            seen.append(data)
            return DONE if data.endswith(b"!") else NEED_SOURCE

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(current_backend().drive, b.fileno(), a.fileno(), step)
                for piece in (b"one ", b"two ", b"three!"):
                    await anyio.wait_all_tasks_blocked()
                    a.send(piece)
        assert b"".join(seen) == b"one two three!"


async def test_a_step_error_is_raised_in_the_awaiting_task() -> None:
    a, b = socket.socketpair()
    with a, b:
        calls = 0

        def step() -> int:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise ConnectionResetError("the peer reset")
            return NEED_TARGET  # a socketpair is writable at once

        with anyio.fail_after(10), pytest.raises(ConnectionResetError, match="the peer reset"):
            await current_backend().drive(b.fileno(), a.fileno(), step)
        assert calls == 3


async def test_again_lets_other_tasks_run_between_steps() -> None:
    a, b = socket.socketpair()
    with a, b:
        order: list[str] = []
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            order.append("step")
            return DONE if steps == 4 else AGAIN

        async def other() -> None:
            for _ in range(3):
                order.append("other")
                await anyio.sleep(0)  # a schedule point, not a wait: lets a step run between

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(current_backend().drive, b.fileno(), a.fileno(), step)
                tg.start_soon(other)
        assert order.count("step") == 4
        last_step = len(order) - 1 - order[::-1].index("step")
        assert "other" in order[order.index("step") : last_step]


async def test_a_cancelled_drive_steps_no_more_and_leaves_the_fd_free() -> None:
    a, b = socket.socketpair()
    with a, b:
        calls = 0

        def step() -> int:
            nonlocal calls
            calls += 1
            return NEED_SOURCE

        with anyio.fail_after(10):
            with anyio.move_on_after(0.05):
                await current_backend().drive(b.fileno(), a.fileno(), step)
            before = calls
            a.send(b"data the cancelled drive must not see")
            # The fd can be waited on again (nothing is left registered on it),
            # and the cancelled drive's step is not called once it is ready.
            await anyio.wait_readable(b)
            for _ in range(3):  # loop passes in which a stale registration would fire
                await anyio.sleep(0)
        assert calls == before == 1
