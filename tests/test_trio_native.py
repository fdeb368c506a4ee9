"""trio-native tests, run by pytest-trio (``@pytest.mark.trio``), not by anyio's plugin.

trio.testing's generic stream checks, and behaviour that is about time tested
under trio's ``MockClock`` with autojump (pytest-trio's ``autojump_clock``
fixture): sleeps and timeouts complete at once and in order, so a 10-minute
idle timeout takes milliseconds and nothing depends on the machine's speed.
Each of them also has a real-time test with generous bounds that runs on
asyncio, uvloop and trio (named in the docstring).
"""

from __future__ import annotations

import math
import os
import socket

import anyio
import pytest
import trio
import trio.testing
from anyio.abc import SocketAttribute
from trioviews import trio_ring_pair, trio_tcp_pair

import aring
from aring import _backends
from aring._relay import RelayStats, serve_relay

pytestmark = pytest.mark.trio


async def test_trio_check_one_way_stream() -> None:
    async def maker() -> tuple[trio.abc.SendStream, trio.abc.ReceiveStream]:
        return await trio_ring_pair(clogged=False)

    async def clogged_maker() -> tuple[trio.abc.SendStream, trio.abc.ReceiveStream]:
        return await trio_ring_pair(clogged=True)

    with trio.fail_after(30):
        await trio.testing.check_one_way_stream(maker, clogged_maker)


async def test_trio_check_half_closeable_stream() -> None:
    with trio.fail_after(60):
        await trio.testing.check_half_closeable_stream(trio_tcp_pair, None)


async def _echo_target(task_status: trio.TaskStatus[int]) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])

    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            async for chunk in stream:
                await stream.send_all(chunk)

    await trio.serve_listeners(echo, listeners)


async def test_relay_closes_a_connection_idle_for_ten_minutes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Real-time twin: test_relay.py::test_relay_closes_a_connection_idle_for_its_timeout.

    On the loop engine: the autojump clock jumps whenever every task waits,
    and bytes the thread engine moves meanwhile happen outside trio's view.
    """
    stats = RelayStats()
    async with trio.open_nursery() as nursery:
        target = await nursery.start(_echo_target)
        port = await nursery.start(
            lambda task_status: serve_relay(
                ("127.0.0.1", 0),
                ("127.0.0.1", target),
                idle_timeout=600,
                engine="loop",
                stats=stats,
                task_status=task_status,
            )
        )
        client = await trio.open_tcp_stream("127.0.0.1", port)
        async with client:
            await client.send_all(b"hello")
            assert await client.receive_some() == b"hello"
            start = trio.current_time()
            await trio.sleep(599)  # quiet for just under the timeout: still up
            await client.send_all(b"still there")
            assert await client.receive_some() == b"still there"
            quiet_from = trio.current_time()
            assert await client.receive_some() == b""  # ...then silent: closed
            closed_after = trio.current_time() - quiet_from
        nursery.cancel_scope.cancel()
    assert 600 <= closed_after <= 600 * 1.125 + 1
    assert trio.current_time() - start > 1000  # simulated: the test took milliseconds
    assert stats.idle_closed == 1


async def test_relay_gives_up_on_a_target_after_its_connect_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Real-time twin: test_relay.py::test_relay_gives_up_on_a_target_that_does_not_answer."""
    stats = RelayStats()
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    filler = socket.create_connection(blackhole.getsockname())  # its one backlog slot
    with blackhole, filler:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: serve_relay(
                    ("127.0.0.1", 0),
                    blackhole.getsockname(),
                    connect_timeout=30,
                    stats=stats,
                    task_status=task_status,
                )
            )
            client = await trio.open_tcp_stream("127.0.0.1", port)
            async with client:
                start = trio.current_time()
                assert await client.receive_some() == b""
                waited = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert 30 <= waited < 31
    assert stats.failed == 1


async def test_a_writer_waiting_on_a_dead_forked_reader_frees_its_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Real-time twin: test_misuse.py::test_a_forked_reader_that_dies_does_not_wedge_the_writer.

    The writer task checks every PEER_CHECK_INTERVAL that the reader's
    process lives; with the mock clock the checks come at once, in order.
    """
    with aring.Ring(4096, readers=2) as ring:
        writer, mine = ring.writer(), ring.reader()
        pid = os.fork()
        if pid == 0:  # the child takes a reader slot and dies holding it
            ring.reader()
            os._exit(0)
        os.waitpid(pid, 0)  # reaped: the pid is gone for good
        assert writer.try_write(b"a" * 4096)
        mine.consume(4096)
        start = trio.current_time()
        with trio.fail_after(10):
            await writer.send(b"b" * 100)  # waits on the dead reader, then frees its slot
        assert trio.current_time() - start <= 2 * aring._native.PEER_CHECK_INTERVAL
        assert ring.dead_readers == 1
        assert mine.try_read() == b"b" * 100


async def test_a_budget_mode_producer_yields_within_its_time_slice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each send follows 0.4 ms of (simulated) work: the producer must yield every
    third call (a 1 ms slice), not once per BUDGET_CALLS calls.  Real-time twin (call
    count): test_budget.py::test_a_busy_producer_yields_at_least_once_per_budget."""
    work = 0.0004
    per_slice = math.ceil(_backends.BUDGET_SECONDS / work)
    sent = 0
    per_step: list[int] = []  # sends in each run of the producer between two yields

    class CountSteps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self.at = sent

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            if task is producer and sent > self.at:
                per_step.append(sent - self.at)

    async with aring.open(1 << 20, checkpoints="budget") as (writer, _reader):

        async def produce() -> None:
            nonlocal sent
            for _ in range(10 * per_slice):
                autojump_clock.jump(work)  # busy for 0.4 ms, as far as the loop's clock knows
                await writer.send(b"x")
                sent += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            producer = next(t for t in nursery.child_tasks if t.name.endswith("produce"))
            trio.lowlevel.add_instrument(instrument := CountSteps())
            try:
                while sent < 10 * per_slice:
                    await trio.lowlevel.checkpoint()
            finally:
                trio.lowlevel.remove_instrument(instrument)
    assert per_step, "the producer never ran"
    assert max(per_step) <= per_slice, f"ran longer than its time slice: {per_step}"
    assert min(per_step) >= 2, f"yielded on every call: {per_step}"


async def test_a_deadline_reaches_a_budget_mode_task_within_a_time_slice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A deadline that passes while the task does not yield is seen at its next yield."""
    async with aring.open(1 << 20, checkpoints="budget") as (writer, _reader):
        with trio.move_on_after(0.001) as scope:
            deadline = scope.deadline
            while True:
                autojump_clock.jump(0.0004)
                await writer.send(b"x")
        assert scope.cancelled_caught
        late = trio.current_time() - deadline
        assert 0 <= late <= _backends.BUDGET_SECONDS, late


async def test_every_call_checkpoints_by_default_and_budget_mode_skips_within_budget(
    mock_clock: trio.testing.MockClock,
) -> None:
    # Simulated time stands still: a slow machine cannot end the 1 ms slice mid-test.
    for mode in ("always", "budget"):
        async with aring.open(1 << 16, checkpoints=mode) as (writer, reader):  # type: ignore[call-overload]
            await writer.send(b"warm")  # budget mode: the budget for this task starts here
            assert await reader.receive() == b"warm"
            calls = [
                lambda: writer.send(b"abcd"),
                lambda: writer.reserve(1),
                lambda: reader.peek(1),
                lambda: reader.receive(1),
                lambda: reader.receive_into(bytearray(1)),
            ]
            for call in calls:
                check = (
                    trio.testing.assert_checkpoints()
                    if mode == "always"
                    else trio.testing.assert_no_checkpoints()
                )
                with check:
                    await call()


async def test_a_task_that_waited_on_one_direction_sends_without_another_yield(
    mock_clock: trio.testing.MockClock,
) -> None:
    """Budget mode: a task's slice is one, whichever stream or direction spent it.

    A request/response handler sleeps in ``receive``; its ``send`` right after
    must not pay a loop pass because the send side last yielded long ago (its
    own budget's clock said so before slices were shared, and the handler
    yielded on nearly every response).  Real-time twin on all loops:
    test_budget.py::test_a_waiting_receive_renews_the_slice_of_the_same_tasks_sends.
    """
    async with await aring.create_tcp_listener(
        local_host="127.0.0.1", checkpoints="budget"
    ) as listener:
        port = listener.extra(SocketAttribute.local_port)
        client = await aring.connect_tcp("127.0.0.1", port)
        server = await listener.accept()
        async with client, server:
            await server.send(b"hello")  # the send side's budget starts now
            mock_clock.jump(10 * _backends.BUDGET_SECONDS)  # ... and its slice is long over
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.send, b"request")
                assert await server.receive() == b"request"  # slept until it came
            with trio.testing.assert_no_checkpoints():
                await server.send(b"response")
            mock_clock.jump(10 * _backends.BUDGET_SECONDS)
            with trio.testing.assert_checkpoints():  # no wait since: the slice is over
                await server.send(b"late")
            await server.send_eof()
            got = b""
            async for chunk in client:
                got += chunk
            assert got == b"helloresponselate"


async def test_every_async_call_of_the_record_ends_is_a_checkpoint() -> None:
    """trio's rule, as for the byte ends: a checkpoint even when the call need not wait."""
    async with aring.open_records(1 << 16) as (writer, reader):
        with trio.testing.assert_checkpoints():
            await writer.send(b"one")
        with trio.testing.assert_checkpoints():
            await writer.send_batch([b"two", b"three"])
        with trio.testing.assert_checkpoints():
            claim = await writer.claim(4)
        claim.view[:] = b"four"
        claim.commit()
        with trio.testing.assert_checkpoints():
            assert await reader.receive() == b"one"
        with trio.testing.assert_checkpoints():
            batch = await reader.receive_batch()
        assert [bytes(v) for v in batch] == [b"two", b"three", b"four"]
        with trio.testing.assert_checkpoints():
            await writer.aclose()
        with trio.testing.assert_checkpoints(), pytest.raises(anyio.EndOfStream):
            await reader.receive()
