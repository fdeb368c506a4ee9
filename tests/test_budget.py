"""``checkpoints="budget"``: fewer yields to the loop, every call still a cancel point.

The default (``"always"``) yields on every async call, as trio's rule asks.
In budget mode a call yields only when it must wait or once ``BUDGET_CALLS``
calls (or ``BUDGET_SECONDS``) went by without a yield; a cancelled task still
gets its exception at the call and the call did nothing.  The time slice is
set out of reach here so the counts do not depend on this machine's speed;
``test_trio_native.py`` checks the time slice under trio's MockClock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import uvloop
from anyio import create_task_group
from anyio.abc import SocketAttribute

import aring
from aring import _backends

pytestmark = pytest.mark.anyio

CALLS = _backends.BUDGET_CALLS


@pytest.fixture
def no_time_slice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_backends, "BUDGET_SECONDS", 3600.0)
    yield


def test_checkpoints_must_be_always_or_budget() -> None:
    with pytest.raises(ValueError, match="checkpoints must be 'always' or 'budget', not 'never'"):
        aring.Ring(4096, checkpoints="never")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="checkpoints must be a str, not int"):
        aring.Ring(4096, checkpoints=1)  # type: ignore[arg-type]
    with aring.Ring(4096, checkpoints="budget") as ring:
        assert ring.checkpoints == "budget"
    with aring.Ring(4096) as ring:
        assert ring.checkpoints == "always"


async def _count_loop_passes_during(work: object) -> int:
    """How many times a ticker task ran while ``work()`` (a coroutine function) ran."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await anyio.sleep(0)

    async with create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0)  # the ticker is running
        ticks = 0
        await work()  # type: ignore[operator]
        done = True
    return ticks


@pytest.mark.parametrize("mode", ["always", "budget"])
async def test_a_busy_producer_yields_at_least_once_per_budget(
    mode: str, no_time_slice: None
) -> None:
    sends = 5 * CALLS
    async with aring.open(1 << 20, checkpoints=mode) as (writer, reader):  # type: ignore[call-overload]

        async def produce() -> None:
            for _ in range(sends):
                await writer.send(b"x" * 64)  # never has to wait: the ring has room

        with anyio.fail_after(30):
            ticks = await _count_loop_passes_during(produce)
        assert reader.readable() == sends * 64
    if mode == "always":
        assert ticks >= sends - 1, "every call is a schedule point"
    else:
        # fair: the ticker ran about once per budget (give or take the passes at the
        # edges, which trio's random order within a batch may drop); cheap: not once per call
        assert sends // CALLS - 2 <= ticks <= sends // CALLS + 1, ticks


@pytest.mark.parametrize("mode", ["always", "budget"])
async def test_every_call_is_a_cancel_point_and_a_cancelled_call_did_nothing(
    mode: str, no_time_slice: None
) -> None:
    async with aring.open(1 << 16, checkpoints=mode) as (writer, reader):  # type: ignore[call-overload]
        with anyio.fail_after(30):
            for _ in range(3):  # the budget is live: these calls did not yield
                await writer.send(b"ab")
            assert await reader.receive(1) == b"a"
            calls = {
                "send": lambda: writer.send(b"never sent"),
                "reserve": lambda: writer.reserve(1),
                "receive": lambda: reader.receive(),
                "receive_into": lambda: reader.receive_into(bytearray(8)),
                "peek": lambda: reader.peek(1),
            }
            for name, call in calls.items():
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await call()
                    pytest.fail(f"{name} went on in a cancelled scope")  # pragma: no cover
                assert scope.cancelled_caught, name
                assert reader.readable() == 5, f"{name} moved bytes while cancelled"
            with anyio.CancelScope() as outer:
                outer.cancel()
                with anyio.CancelScope(shield=True):  # a shield hides the cancellation
                    await writer.send(b"c")
                    assert await reader.receive() == b"babab" + b"c"


async def test_a_new_task_gets_its_own_budget(no_time_slice: None) -> None:
    """The end's budget follows the task using it, so a cancelled second task raises."""
    async with aring.open(1 << 16, checkpoints="budget") as (writer, reader):
        with anyio.fail_after(30):
            await writer.send(b"first")

            async def cancelled_sender() -> None:
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await writer.send(b"never")
                assert scope.cancelled_caught

            async with create_task_group() as tg:
                tg.start_soon(cancelled_sender)
            assert await reader.receive() == b"first"


async def test_budget_mode_moves_every_byte_in_order() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB through a 64 KiB ring: many waits both ways
    async with aring.open(1 << 16, checkpoints="budget") as (writer, reader):
        got = bytearray()

        async def produce() -> None:
            async with writer:
                for at in range(0, len(payload), 1000):
                    await writer.send(payload[at : at + 1000])

        with anyio.fail_after(30):
            async with create_task_group() as tg:
                tg.start_soon(produce)
                async for chunk in reader:
                    got += chunk
        assert got == payload


async def test_tcp_streams_take_the_same_budget(no_time_slice: None) -> None:
    """A server reading pipelined requests yields once per budget, and still cancels cleanly."""
    lines = 5 * CALLS
    async with await aring.create_tcp_listener(
        local_host="127.0.0.1", checkpoints="budget"
    ) as listener:
        port = listener.extra(SocketAttribute.local_port)
        client = await aring.connect_tcp("127.0.0.1", port, checkpoints="budget")
        server = await listener.accept()
        async with client, server:
            with anyio.fail_after(30):
                await client.send(b"GET\r\n" * lines)
                assert (await server.peek(5 * lines)).nbytes == 5 * lines  # all arrived

                async def parse() -> None:
                    for _ in range(lines):
                        assert bytes(await server.receive_until(b"\r\n", 100)) == b"GET"

                ticks = await _count_loop_passes_during(parse)
                # the peek above started this task's budget: one yield fewer inside parse
                assert lines // CALLS - 2 <= ticks <= lines // CALLS + 1, ticks

                await client.send(b"left\r\n")
                for name, call in {
                    "receive_until": lambda: server.receive_until(b"\r\n", 100),
                    "send": lambda: server.send(b"never"),
                }.items():
                    with anyio.CancelScope() as scope:
                        scope.cancel()
                        await call()
                    assert scope.cancelled_caught, name
                assert bytes(await server.receive_until(b"\r\n", 100)) == b"left"
                await server.send_eof()
                with pytest.raises(anyio.EndOfStream):
                    await client.receive()  # the cancelled send sent nothing


async def test_tcp_listener_refuses_a_bad_checkpoints_before_listening() -> None:
    with pytest.raises(ValueError, match="checkpoints must be 'always' or 'budget'"):
        await aring.create_tcp_listener(local_host="127.0.0.1", checkpoints="sometimes")  # type: ignore[arg-type]


def test_an_end_used_by_a_task_of_another_threads_loop_checks_that_tasks_scopes() -> None:
    """The budget belongs to a task of one loop; a task of a loop in another thread
    (while the first loop still runs its task) must not pass for it."""
    ring = aring.Ring(4096, checkpoints="budget")
    writer, reader = ring.writer(), ring.reader()
    writer.try_write(b"first" + b"second")
    first_done, second_done = threading.Event(), threading.Event()
    seen: list[str] = []

    async def first() -> None:
        seen.append((await reader.receive(5)).decode())
        first_done.set()
        second_done.wait(30)  # keeps this loop inside this task meanwhile

    async def second() -> None:
        first_done.wait(30)
        with anyio.CancelScope() as scope:
            scope.cancel()
            seen.append((await reader.receive()).decode())
        seen.append("cancelled" if scope.cancelled_caught else "went on")
        second_done.set()

    threads = [threading.Thread(target=anyio.run, args=(f,)) for f in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with ring:
        assert seen == ["first", "cancelled"]
        assert reader.readable() == len(b"second"), "the cancelled receive consumed bytes"


def test_an_end_moves_from_a_trio_run_to_an_asyncio_loop_in_budget_mode() -> None:
    with aring.Ring(4096, checkpoints="budget") as ring:
        writer, reader = ring.writer(), ring.reader()

        async def round_trip(data: bytes) -> bytes:
            await writer.send(data)
            return await reader.receive()

        assert anyio.run(round_trip, b"on trio", backend="trio") == b"on trio"
        assert anyio.run(round_trip, b"on asyncio", backend="asyncio") == b"on asyncio"
        assert anyio.run(round_trip, b"on trio again", backend="trio") == b"on trio again"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncio_own_cancellation_is_a_cancel_point_in_budget_mode(loop: str) -> None:
    """task.cancel() by the task itself (no anyio scope) stops the next call."""

    async def main() -> str:
        async with aring.open(4096, checkpoints="budget") as (writer, reader):
            await writer.send(b"one")
            await reader.receive()  # the budget for this task is live now
            await writer.send(b"two")
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            try:
                await reader.receive()
            except asyncio.CancelledError:
                task.uncancel()
                return f"cancelled, {reader.readable()} left"
            return "went on"

    runner = asyncio.run if loop == "asyncio" else uvloop.run
    assert runner(main()) == "cancelled, 3 left"


async def test_a_waiting_receive_renews_the_slice_of_the_same_tasks_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler that slept in receive sends its reply without another loop pass.

    Budget mode keeps one time slice per task, whichever stream or direction
    spends it (MockClock twin in test_trio_native.py).
    """
    monkeypatch.setattr(_backends, "BUDGET_SECONDS", 0.25)
    async with await aring.create_tcp_listener(
        local_host="127.0.0.1", checkpoints="budget"
    ) as listener:
        port = listener.extra(SocketAttribute.local_port)
        client = await aring.connect_tcp("127.0.0.1", port)
        server = await listener.accept()
        async with client, server:
            with anyio.fail_after(30):
                await server.send(b"hello")  # the send side's slice starts here
                await anyio.sleep(0.5)  # ... and ends: a sleep outside aring renews nothing
                async with create_task_group() as tg:
                    tg.start_soon(client.send, b"request")
                    assert await server.receive() == b"request"
                ticks = await _count_loop_passes_during(lambda: server.send(b"response"))
                assert ticks == 0
                await server.send_eof()
                got = b""
                async for chunk in client:
                    got += chunk
                assert got == b"helloresponse"


class _CountingSocket(socket.socket):
    """A socket that counts its recv_into calls."""

    recvs = 0

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self.recvs += 1
        return super().recv_into(*args, **kwargs)


async def test_a_budget_mode_server_calls_recv_once_per_request() -> None:
    """Request/response in budget mode: one recv per request, none that finds nothing.

    The receive sleeps first when its last recv emptied the socket, and the
    loop's readiness callback does the recv (on asyncio and uvloop), so a
    readiness event seen before the socket was drained wakes nobody.
    """
    rounds = 200
    left, right = socket.socketpair()
    counted = _CountingSocket(fileno=left.detach())
    server = aring.RingSocketStream(counted, checkpoints="budget")
    client = aring.RingSocketStream(right)
    async with server, client:

        async def respond() -> None:
            for _ in range(rounds):
                assert bytes(await server.receive_until(b"\n", 100)) == b"ping"
                await server.send(b"pong\n")

        with anyio.fail_after(30):
            async with create_task_group() as tg:
                tg.start_soon(respond)
                for _ in range(rounds):
                    await client.send(b"ping\n")
                    assert bytes(await client.receive_until(b"\n", 100)) == b"pong"
    # the first receive tries before it sleeps: one EAGAIN in all
    assert rounds <= counted.recvs <= rounds + 1, counted.recvs
