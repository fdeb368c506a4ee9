"""An anyio port of trio.testing's generic stream checks, runnable on every backend.

``maker`` is an async context manager factory yielding a connected
(send side, receive side) pair; it closes them on exit.  trio's
``wait_send_all_might_not_block`` has no anyio counterpart and is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest
from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
    create_task_group,
    wait_all_tasks_blocked,
)
from asyncutil import assert_schedule_point

Maker = Callable[[], AbstractAsyncContextManager[tuple[Any, Any]]]


async def _receive_or_empty(stream: Any, max_bytes: int = 65536) -> bytes:
    try:
        return bytes(await stream.receive(max_bytes))
    except EndOfStream:
        return b""


async def check_one_way(maker: Maker) -> None:
    async with maker() as (s, r):

        async def send(data: bytes | bytearray | memoryview) -> None:
            assert await assert_schedule_point(lambda: s.send(data)) is None

        async def receive_1(expected: bytes) -> None:
            assert await assert_schedule_point(lambda: _receive_or_empty(r, 1)) == expected

        for data, expected in [(b"x", b"x"), (bytearray(b"1"), b"1"), (memoryview(b"2"), b"2")]:
            async with create_task_group() as tg:
                tg.start_soon(send, data)
                tg.start_soon(receive_1, expected)

        async def send_empty_then_y() -> None:
            await send(b"")
            await send(b"y")

        async with create_task_group() as tg:
            tg.start_soon(send_empty_then_y)
            tg.start_soon(receive_1, b"y")

        for bad, exc in [(-1, ValueError), (0, ValueError), (1.5, TypeError)]:
            with pytest.raises(exc):
                await r.receive(bad)

        with pytest.RaisesGroup(BusyResourceError):
            async with create_task_group() as tg:
                tg.start_soon(r.receive, 1)
                tg.start_soon(r.receive, 1)

        async def send_until_broken() -> None:
            with pytest.raises(BrokenResourceError):
                while True:
                    await s.send(b"x" * 100)

        async with create_task_group() as tg:
            tg.start_soon(send_until_broken)
            tg.start_soon(r.aclose)
        with pytest.raises(BrokenResourceError):
            await s.send(b"x" * 100)
        with pytest.raises(ClosedResourceError):
            await r.receive(4096)
        await r.aclose()
        await s.aclose()
        with pytest.raises(ClosedResourceError):
            await s.send(b"x")
        with pytest.raises(ClosedResourceError):
            await s.send(b"")
        await s.aclose()

    async with maker() as (s, r):  # send, then close: data, then end of stream

        async def send_then_close() -> None:
            await s.send(b"y")
            await s.aclose()

        async def receive_send_then_close() -> None:
            await wait_all_tasks_blocked()
            assert await _receive_or_empty(r, 1) == b"y"
            assert await _receive_or_empty(r, 1) == b""

        async with create_task_group() as tg:
            tg.start_soon(send_then_close)
            tg.start_soon(receive_send_then_close)

    async with maker() as (s, r):  # cancelled aclose still closes
        with anyio.CancelScope() as scope:
            scope.cancel()
            await r.aclose()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await s.aclose()
        with pytest.raises(ClosedResourceError):
            await s.send(b"123")
        with pytest.raises(ClosedResourceError):
            await r.receive(4096)

    async with maker() as (s, r):  # closing the receiver wakes a blocked receive

        async def receive_expecting_closed() -> None:
            with pytest.raises(ClosedResourceError):
                await r.receive(10)

        async with create_task_group() as tg:
            tg.start_soon(receive_expecting_closed)
            await wait_all_tasks_blocked()
            await anyio.aclose_forcefully(r)


async def check_two_way(maker: Maker) -> None:
    await check_one_way(maker)

    def flipped() -> AbstractAsyncContextManager[tuple[Any, Any]]:
        return _Flipped(maker())

    await check_one_way(flipped)

    async with maker() as (a, b):  # both directions at once
        payload = bytes(range(256)) * 2000

        async def send(stream: Any) -> None:
            await stream.send(payload)

        async def receive(stream: Any) -> None:
            got = bytearray()
            while len(got) < len(payload):
                got += await stream.receive()
            assert bytes(got) == payload

        async with create_task_group() as tg:
            tg.start_soon(send, a)
            tg.start_soon(send, b)
            tg.start_soon(receive, a)
            tg.start_soon(receive, b)


async def check_half_closeable(maker: Maker) -> None:
    await check_two_way(maker)
    async with maker() as (a, b):

        async def send_x_then_eof(stream: Any) -> None:
            await stream.send(b"x")
            await assert_schedule_point(stream.send_eof)

        async def expect_x_then_eof(stream: Any) -> None:
            await wait_all_tasks_blocked()
            assert await _receive_or_empty(stream, 10) == b"x"
            assert await _receive_or_empty(stream, 10) == b""

        async with create_task_group() as tg:
            tg.start_soon(send_x_then_eof, a)
            tg.start_soon(expect_x_then_eof, b)
        with pytest.raises(ClosedResourceError):
            await a.send(b"y")
        await a.send_eof()  # again: fine
        async with create_task_group() as tg:  # the other direction still works
            tg.start_soon(send_x_then_eof, b)
            tg.start_soon(expect_x_then_eof, a)


class _Flipped:
    def __init__(self, inner: AbstractAsyncContextManager[tuple[Any, Any]]) -> None:
        self._inner = inner

    async def __aenter__(self) -> tuple[Any, Any]:
        a, b = await self._inner.__aenter__()
        return b, a

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._inner.__aexit__(*exc_info)
