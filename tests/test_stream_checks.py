"""The ring as a one-way stream, held to trio's generic stream checks.

``test_trio_check_one_way_stream`` runs ``trio.testing.check_one_way_stream``
itself through a thin view that speaks trio's stream interface.  The other
tests port the same checks to anyio so that they run on asyncio, asyncio with
uvloop, and trio alike.
"""

from __future__ import annotations

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
from asyncutil import assert_checkpoint, assert_schedule_point, ring_pair
from streamcheck import check_one_way

import aring

pytestmark = pytest.mark.anyio


async def send_and_check(writer: aring.Writer, data: bytes | bytearray | memoryview) -> None:
    assert await assert_schedule_point(lambda: writer.send(data)) is None


async def test_simple_sending_and_argument_types() -> None:
    with anyio.fail_after(10):
        async with ring_pair() as (w, r):
            for data, expected in [
                (b"x", b"x"),
                (b"", None),
                (b"y", b"y"),
                (bytearray(b"1"), b"1"),
                (memoryview(b"2"), b"2"),
            ]:
                async with create_task_group() as tg:
                    tg.start_soon(send_and_check, w, data)
                    if expected is not None:
                        assert await assert_schedule_point(lambda: r.receive(1)) == expected
            # max_bytes must be a positive int
            with pytest.raises(ValueError, match="max_bytes must be >= 1"):
                await r.receive(-1)
            with pytest.raises(ValueError, match="max_bytes must be >= 1"):
                await r.receive(0)
            with pytest.raises(TypeError, match="max_bytes must be an int"):
                await r.receive(1.5)  # type: ignore[arg-type]
            # and can be left out
            async with create_task_group() as tg:
                tg.start_soon(send_and_check, w, b"x")
                assert await r.receive() == b"x"


async def test_concurrent_receives_are_busy() -> None:
    with anyio.fail_after(10):
        async with ring_pair() as (_w, r):
            with pytest.RaisesGroup(BusyResourceError):
                async with create_task_group() as tg:
                    tg.start_soon(r.receive, 1)
                    tg.start_soon(r.receive, 1)


async def test_closing_the_reader_breaks_the_writer_and_closes_the_reader() -> None:
    with anyio.fail_after(10):
        async with ring_pair(4096) as (w, r):

            async def send_until_broken() -> None:
                with pytest.raises(BrokenResourceError):
                    while True:
                        await w.send(b"x" * 100)

            async with create_task_group() as tg:
                tg.start_soon(send_until_broken)
                tg.start_soon(r.aclose)
            # once broken, it stays broken, also for an empty send
            with pytest.raises(BrokenResourceError):
                await w.send(b"x" * 100)
            with pytest.raises(BrokenResourceError):
                await w.send(b"")
            with pytest.raises(ClosedResourceError):
                await r.receive(4096)
            await assert_schedule_point(r.aclose)  # closing again is fine
            await r.aclose()
            await w.aclose()
            with pytest.raises(ClosedResourceError):
                await w.send(b"x" * 100)
            with pytest.raises(ClosedResourceError):
                await w.send(b"")
            with pytest.raises(ClosedResourceError):
                await w.reserve(1)
            await w.aclose()
            await w.aclose()


async def test_send_then_close_delivers_the_data_then_end_of_stream() -> None:
    with anyio.fail_after(10):
        async with ring_pair() as (w, r):

            async def send_then_close() -> None:
                await send_and_check(w, b"y")
                await assert_schedule_point(w.aclose)

            async def receive_send_then_close() -> None:
                await wait_all_tasks_blocked()
                assert await r.receive(1) == b"y"
                with pytest.raises(EndOfStream):
                    await r.receive(1)
                await r.aclose()

            async with create_task_group() as tg:
                tg.start_soon(send_then_close)
                tg.start_soon(receive_send_then_close)


async def test_forceful_close_of_either_side() -> None:
    with anyio.fail_after(10):
        async with ring_pair(4096) as (w, r):
            await anyio.aclose_forcefully(r)
            with pytest.raises(BrokenResourceError):
                while True:
                    await w.send(b"x" * 100)
            with pytest.raises(ClosedResourceError):
                await r.receive(4096)
        async with ring_pair() as (w, r):
            await anyio.aclose_forcefully(w)
            with pytest.raises(ClosedResourceError):
                await w.send(b"123")
            with pytest.raises(EndOfStream):
                await r.receive(1)


async def test_cancelled_aclose_still_closes() -> None:
    with anyio.fail_after(10):
        async with ring_pair() as (w, r):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await r.aclose()
            with anyio.CancelScope() as scope:
                scope.cancel()
                await w.aclose()
            assert r.closed and w.closed
            with pytest.raises(ClosedResourceError):
                await w.send(b"123")
            with pytest.raises(ClosedResourceError):
                await r.receive(4096)


async def test_operations_in_a_cancelled_scope_are_cancelled_and_close_still_works() -> None:
    with anyio.fail_after(10):
        async with ring_pair() as (w, r):
            for call in (lambda: w.send(b"x"), lambda: r.receive(1)):
                await assert_checkpoint(call)
            async with create_task_group() as tg:
                tg.start_soon(w.aclose)
                tg.start_soon(r.aclose)


async def test_closing_the_reader_wakes_a_blocked_receive() -> None:
    with anyio.fail_after(10):
        async with ring_pair() as (_w, r):

            async def receive_expecting_closed() -> None:
                with pytest.raises(ClosedResourceError):
                    await r.receive(10)

            async with create_task_group() as tg:
                tg.start_soon(receive_expecting_closed)
                await wait_all_tasks_blocked()
                await anyio.aclose_forcefully(r)


async def test_clogged_writer_waits_for_the_reader() -> None:
    with anyio.fail_after(10):
        async with ring_pair(4096, clogged=True) as (w, r):
            record: list[str] = []

            async def waiter() -> None:
                record.append("waiter sleeping")
                view = await w.reserve(1)
                assert len(view) >= 1
                w.commit(0)
                record.append("waiter woke up")
                tg.cancel_scope.cancel()

            async def receiver() -> None:
                await wait_all_tasks_blocked()
                record.append("receiver starting")
                while True:
                    await r.receive(16834)

            async with create_task_group() as tg:
                tg.start_soon(waiter)
                await wait_all_tasks_blocked()
                tg.start_soon(receiver)
            assert record == ["waiter sleeping", "receiver starting", "waiter woke up"]


@pytest.mark.parametrize(
    "pair",
    [("reserve", "reserve"), ("reserve", "send"), ("send", "send")],
    ids=lambda p: "+".join(p),
)
async def test_two_blocked_writers_are_busy(pair: tuple[str, str]) -> None:
    with anyio.fail_after(10):
        async with ring_pair(4096, clogged=True) as (w, _r):
            calls = {"reserve": lambda: w.reserve(1), "send": lambda: w.send(b"123")}
            with pytest.RaisesGroup(BusyResourceError):
                async with create_task_group() as tg:
                    for name in pair:
                        tg.start_soon(calls[name])


async def test_closing_the_reader_wakes_a_clogged_writer() -> None:
    with anyio.fail_after(10):
        async with ring_pair(4096, clogged=True) as (w, r):

            async def close_soon() -> None:
                await wait_all_tasks_blocked()
                await anyio.aclose_forcefully(r)

            async with create_task_group() as tg:
                tg.start_soon(close_soon)
                with pytest.raises(BrokenResourceError):
                    await w.reserve(1)


@pytest.mark.parametrize("call", ["send", "reserve"])
async def test_closing_the_writer_wakes_its_blocked_task(call: str) -> None:
    with anyio.fail_after(10):
        async with ring_pair(4096, clogged=True) as (w, _r):

            async def close_soon() -> None:
                await wait_all_tasks_blocked()
                await anyio.aclose_forcefully(w)

            async with create_task_group() as tg:
                tg.start_soon(close_soon)
                with pytest.raises(ClosedResourceError):
                    if call == "send":
                        await w.send(b"xyzzy")
                    else:
                        await w.reserve(1)


# --- trio's own checks through a translating view ---------------------------------------


async def test_generic_anyio_one_way_checks() -> None:
    """The same port the TCP adapter runs (tests/streamcheck.py), on the ring's ends."""
    with anyio.fail_after(60):
        await check_one_way(lambda: ring_pair(4096))
