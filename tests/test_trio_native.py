"""trio-native tests, run by pytest-trio (``@pytest.mark.trio``), not by anyio's plugin.

trio.testing's generic stream checks, and behaviour that is about time tested
under trio's ``MockClock`` with autojump (pytest-trio's ``autojump_clock``
fixture): sleeps and timeouts complete at once and in order, so a 10-minute
idle timeout takes milliseconds and nothing depends on the machine's speed.
Each of them also has a real-time test with generous bounds that runs on
asyncio, uvloop and trio (named in the docstring).
"""

from __future__ import annotations

import os
import socket

import pytest
import trio
import trio.testing
from trioviews import trio_ring_pair, trio_tcp_pair

import aring
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
    """Real-time twin: test_relay.py::test_relay_closes_a_connection_idle_for_its_timeout."""
    stats = RelayStats()
    async with trio.open_nursery() as nursery:
        target = await nursery.start(_echo_target)
        port = await nursery.start(
            lambda task_status: serve_relay(
                ("127.0.0.1", 0),
                ("127.0.0.1", target),
                idle_timeout=600,
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
