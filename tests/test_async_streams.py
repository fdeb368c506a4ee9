"""The async ends on asyncio, asyncio+uvloop and trio: API, errors, checkpoints, cancellation."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
    TypedAttributeLookupError,
    WouldBlock,
    create_task_group,
    wait_all_tasks_blocked,
)
from asyncutil import assert_checkpoint, ring_pair
from observe import reader_asleep, until, until_async

import aring
from aring import RingAttribute

pytestmark = pytest.mark.anyio


async def test_open_yields_the_ends_and_closes_everything() -> None:
    async with aring.open(10_000) as (w, r):
        assert isinstance(w, anyio.abc.ByteSendStream)
        assert isinstance(r, anyio.abc.ByteReceiveStream)
        assert w.capacity % aring.capabilities().page_size == 0
        await w.send(b"hello")
        assert await r.receive() == b"hello"
    assert w.closed and r.closed
    with pytest.raises(ClosedResourceError):
        await r.receive()


async def test_open_with_several_readers_gives_each_every_byte() -> None:
    with anyio.fail_after(10):
        async with aring.open(4096, readers=3) as (w, *readers):
            assert len(readers) == 3
            payload = os.urandom(50_000)  # many times the capacity: the writer waits for all
            got = [bytearray() for _ in readers]

            async def drain(reader: aring.Reader, into: bytearray) -> None:
                async for chunk in reader:
                    into += chunk

            async with create_task_group() as tg:
                for reader, into in zip(readers, got, strict=True):
                    tg.start_soon(drain, reader, into)
                await w.send(payload)
                await w.aclose()
            assert all(bytes(g) == payload for g in got)


async def test_zero_copy_reserve_and_peek_are_contiguous_across_the_wrap() -> None:
    with anyio.fail_after(10):
        async with ring_pair(4096) as (w, r):
            await w.send(b"a" * 3000)
            assert len(await r.receive(3000)) == 3000
            view = await w.reserve(2000)  # runs over the end of the ring
            assert len(view) == w.capacity
            view[:2000] = bytes(range(250)) * 8
            w.commit(2000)
            peeked = await r.peek(2000)
            assert bytes(peeked) == bytes(range(250)) * 8
            r.consume(2000)
            with pytest.raises(ValueError, match="released"):
                peeked[0]


async def test_receive_into_and_nowait_calls() -> None:
    async with ring_pair(4096) as (w, r):
        with pytest.raises(WouldBlock):
            r.receive_nowait()
        w.send_nowait(b"abcdef")
        buffer = bytearray(4)
        assert await r.receive_into(buffer) == 4
        assert buffer == b"abcd"
        assert r.receive_nowait(10) == b"ef"
        w.send_nowait(b"x" * w.capacity)
        with pytest.raises(WouldBlock):
            w.send_nowait(b"y")
        w.send_nowait(b"")  # fits, always
        assert w.writable() == 0


async def test_receive_until_end_of_stream() -> None:
    async with ring_pair() as (w, r):
        await w.send(b"last words")
        await w.aclose()
        assert await r.receive() == b"last words"
        for call in (r.receive, lambda: r.receive_into(bytearray(1)), r.peek):
            with pytest.raises(EndOfStream):
                await call()


async def test_typed_attributes() -> None:
    async with ring_pair(4096) as (w, r):
        await w.send(b"12345")
        assert w.extra(RingAttribute.capacity) == r.extra(RingAttribute.capacity) == 4096
        assert r.extra(RingAttribute.readable) == 5
        assert w.extra(RingAttribute.writable) == 4096 - 5
        assert isinstance(r.extra(RingAttribute.notifier_fd), int)
        assert w.extra(RingAttribute.notifier_fd) != r.extra(RingAttribute.notifier_fd)
        with pytest.raises(TypedAttributeLookupError):
            r.extra(RingAttribute.writable)
        assert w.extra(RingAttribute.readable, None) is None


def _bad_calls(w: aring.Writer, r: aring.Reader) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "receive(0)": lambda: r.receive(0),
        "receive('1')": lambda: r.receive("1"),  # type: ignore[arg-type]
        "receive_into(str)": lambda: r.receive_into("text"),  # type: ignore[arg-type]
        "peek(0)": lambda: r.peek(0),
        "peek(capacity+1)": lambda: r.peek(w.capacity + 1),
        "peek(1.0)": lambda: r.peek(1.0),  # type: ignore[arg-type]
        "send(str)": lambda: w.send("text"),  # type: ignore[arg-type]
        "reserve(0)": lambda: w.reserve(0),
        "reserve(capacity+1)": lambda: w.reserve(w.capacity + 1),
    }


@pytest.mark.parametrize(
    ("name", "exc", "match"),
    [
        ("receive(0)", ValueError, "max_bytes must be >= 1"),
        ("receive('1')", TypeError, "max_bytes must be an int"),
        ("receive_into(str)", TypeError, "writable bytes-like object"),
        ("peek(0)", ValueError, "n must be >= 1"),
        ("peek(capacity+1)", ValueError, "n must be <= the capacity"),
        ("peek(1.0)", TypeError, "n must be an int"),
        ("send(str)", TypeError, "bytes-like object"),
        ("reserve(0)", ValueError, "n must be >= 1"),
        ("reserve(capacity+1)", ValueError, "n must be <= the capacity"),
    ],
)
async def test_bad_arguments_raise_up_front(name: str, exc: type[Exception], match: str) -> None:
    async with ring_pair(4096) as (w, r):
        with anyio.CancelScope() as scope:
            scope.cancel()  # checked before any checkpoint: same error on every backend
            with pytest.raises(exc, match=match):
                await _bad_calls(w, r)[name]()


async def test_commit_and_consume_past_what_is_there() -> None:
    async with ring_pair(4096) as (w, r):
        await w.send(b"x" * 100)
        view = await w.reserve(10)
        with pytest.raises(ValueError, match="more than the 3996 bytes reserved"):
            w.commit(len(view) + 1)
        w.commit(3)
        r.consume(100)
        await r.peek(3)
        with pytest.raises(ValueError, match="readable"):
            r.consume(4)


async def test_every_async_method_is_a_checkpoint_even_when_it_need_not_wait() -> None:
    with anyio.fail_after(10):
        async with ring_pair(4096) as (w, r):
            await assert_checkpoint(lambda: w.send(b"abc"))
            await assert_checkpoint(lambda: w.send(b""))
            assert r.readable() == 3  # the cancelled attempt sent nothing
            view = await assert_checkpoint(lambda: w.reserve(1))
            assert len(view) == w.capacity - 3
            w.commit(0)
            assert await assert_checkpoint(lambda: r.peek(3)) is not None
            assert await assert_checkpoint(lambda: r.receive(1)) == b"a"
            assert r.readable() == 2  # the cancelled attempt consumed nothing
            buffer = bytearray(1)
            assert await assert_checkpoint(lambda: r.receive_into(buffer)) == 1
            await w.aclose()
            assert await r.receive() == b"c"
            with anyio.CancelScope() as scope:  # EndOfStream is an answer: a checkpoint too
                scope.cancel()
                await r.receive()
            assert scope.cancelled_caught
            await assert_checkpoint(r.aclose)


async def test_sync_methods_never_checkpoint() -> None:
    async with ring_pair(4096) as (w, r):
        with anyio.CancelScope() as scope:
            scope.cancel()
            w.send_nowait(b"abc")
            view = w.try_reserve(1)
            assert view is not None
            w.commit(0)
            assert r.try_peek(1) is not None
            r.consume(1)
            assert r.receive_nowait() == b"bc"
        assert not scope.cancelled_caught


async def test_busy_between_a_task_and_a_thread() -> None:
    with anyio.fail_after(10):
        async with ring_pair() as (w, r):
            entered = threading.Event()

            def thread_receives() -> bytes:
                entered.set()
                return r.sync.receive(timeout=5)

            async with create_task_group() as tg:
                result: list[bytes] = []

                async def run_thread() -> None:
                    result.append(await anyio.to_thread.run_sync(thread_receives))

                tg.start_soon(run_thread)
                await anyio.to_thread.run_sync(entered.wait)
                ring = r.extra(RingAttribute.ring)
                await until_async(reader_asleep(ring), "the thread sleeps in poll()")
                with pytest.raises(BusyResourceError, match="another thread"):
                    await r.receive()
                await w.send(b"for the thread")
            assert result == [b"for the thread"]


async def test_closing_the_ring_from_a_thread_wakes_a_waiting_task() -> None:
    with anyio.fail_after(10):
        ring = aring.Ring(4096)
        r = ring.reader()
        ring.writer()
        async with create_task_group() as tg:

            async def close_from_thread() -> None:
                await wait_all_tasks_blocked()
                await anyio.to_thread.run_sync(ring.close)

            tg.start_soon(close_from_thread)
            with pytest.raises(ClosedResourceError):
                await r.receive()
        assert ring.closed


async def test_writer_is_broken_when_the_last_reader_leaves_while_it_waits() -> None:
    with anyio.fail_after(10):
        async with aring.open(4096, readers=2) as (w, r1, r2):
            assert w.try_write(b"\0" * 4096)
            await r1.aclose()  # one reader left: the writer still waits for it
            async with create_task_group() as tg:

                async def leave() -> None:
                    await wait_all_tasks_blocked()
                    await r2.aclose()

                tg.start_soon(leave)
                with pytest.raises(BrokenResourceError):
                    await w.send(b"more")


async def test_cancelled_sends_are_all_or_nothing_and_receives_lose_nothing() -> None:
    rng = random.Random(20261123)
    returned: list[bytes] = []
    received = bytearray()
    with anyio.fail_after(60):
        async with ring_pair(4096) as (w, r):

            async def writer() -> None:
                for i in range(1500):
                    chunk = bytes([i % 251]) * rng.randrange(1, 4097)
                    with anyio.move_on_after(rng.choice((0, 0.0001, 0.001, 1))):
                        await w.send(chunk)
                        returned.append(chunk)
                await w.aclose()

            async def reader() -> None:
                while True:
                    with anyio.move_on_after(rng.choice((0, 0.0001, 0.001, 1))):
                        if rng.random() < 0.1:
                            await anyio.sleep(0.0005)  # let the writer fill up and wait
                        try:
                            data = await r.receive(rng.randrange(1, 6000))
                        except EndOfStream:
                            return
                        received.extend(data)

            async with create_task_group() as tg:
                tg.start_soon(writer)
                tg.start_soon(reader)
    assert 0 < len(returned) < 1500, "the deadlines never (or always) hit: the test proves nothing"
    assert bytes(received) == b"".join(returned)


async def test_small_sends_on_one_loop_cost_few_wakeups() -> None:
    items = 20_000
    with anyio.fail_after(30):
        async with ring_pair(1 << 16) as (w, r):
            ring_writes_before = _notifier_writes(w)

            async def produce() -> None:
                for _ in range(items):
                    await w.send(b"m" * 64)
                await w.aclose()

            total = 0
            async with create_task_group() as tg:
                tg.start_soon(produce)
                async for chunk in r:
                    total += len(chunk)
            assert total == items * 64
            writes = _notifier_writes(w) - ring_writes_before
    assert writes < items / 20, f"{writes} notifier writes for {items} sends"


def _notifier_writes(end: aring.Writer) -> int:
    return end.extra(RingAttribute.ring).notifier_writes


async def test_an_end_used_by_a_task_then_a_thread_still_wakes_the_thread() -> None:
    with anyio.fail_after(10):
        async with ring_pair() as (w, r):
            # the task sleeps once, so its loop watches the reader's notifier...
            async with create_task_group() as tg:

                async def send_later() -> None:
                    await wait_all_tasks_blocked()
                    await w.send(b"to the task")

                tg.start_soon(send_later)
                assert await r.receive() == b"to the task"

            # ...and must not swallow a wakeup meant for a thread blocked on it.
            ring = r.extra(RingAttribute.ring)

            def send_after_a_while() -> None:
                until(reader_asleep(ring), "the thread sleeps on the reader")
                w.sync.send(b"to the thread")

            t = threading.Thread(target=send_after_a_while)
            t.start()
            got = await anyio.to_thread.run_sync(lambda: r.sync.receive(timeout=5))
            t.join()
            assert got == b"to the thread"


def test_async_methods_outside_an_event_loop_say_so() -> None:
    with aring.Ring(4096) as ring:
        coro = ring.reader().receive()
        with pytest.raises(RuntimeError, match=r"running asyncio .* or trio event loop"):
            coro.send(None)
        coro.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_one_ring_across_successive_event_loops_leaks_no_fd(backend: str) -> None:
    async def round_trip(w: aring.Writer, r: aring.Reader) -> None:
        async with create_task_group() as tg:

            async def send_later() -> None:
                await wait_all_tasks_blocked()
                await w.send(b"ping")

            tg.start_soon(send_later)
            assert await r.receive() == b"ping"

    fds_before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    with aring.Ring(4096) as ring:
        w, r = ring.writer(), ring.reader()
        for _ in range(5):
            anyio.run(round_trip, w, r, backend=backend)
    if fds_before is not None:
        assert len(os.listdir("/proc/self/fd")) <= fds_before


async def test_waits_on_a_ring_of_items_wait_for_one_item() -> None:
    async with aring.open(4096, item_size=24) as (writer, reader):
        items = [bytes([i % 256]) * 24 for i in range(1000)]  # several laps of the ring

        async def produce() -> None:
            async with writer:
                for item in items:
                    view = await writer.reserve()  # the n=1 default: one item
                    view[:24] = item
                    writer.commit(24)

        received = bytearray()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                while True:
                    try:
                        view = await reader.peek()  # one item
                    except anyio.EndOfStream:
                        break
                    assert len(view) % 24 == 0
                    received += view
                    reader.consume(len(view))
        assert bytes(received) == b"".join(items)
