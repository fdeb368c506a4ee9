"""RingUDPSocket: datagrams queue as records in a ring; drops are counted, never hidden."""

from __future__ import annotations

import socket
import struct
import sys
import zlib

import anyio
import pytest
from anyio import BusyResourceError, ClosedResourceError, create_task_group
from anyio.abc import SocketAttribute

import aring

pytestmark = pytest.mark.anyio


async def test_round_trip_with_addresses() -> None:
    with anyio.fail_after(10):
        async with await aring.create_udp_socket(local_host="127.0.0.1") as a, \
                await aring.create_udp_socket(local_host="127.0.0.1") as b:
            b_port = b.extra(SocketAttribute.local_port)
            a_port = a.extra(SocketAttribute.local_port)
            for size in (0, 1, 1000, 65507):
                payload = bytes([size % 251]) * size
                await a.send((payload, ("127.0.0.1", b_port)))
                data, sender = await b.receive()
                assert data == payload
                assert sender == ("127.0.0.1", a_port)
            assert b.stats.received == 4 and b.stats.dropped == 0


async def test_a_flood_is_counted_and_nothing_is_corrupted() -> None:
    sent = 20_000
    received: list[int] = []
    with anyio.fail_after(60):
        async with await aring.create_udp_socket(
            local_host="127.0.0.1", capacity=256 << 10, receive_buffer=64 << 10
        ) as rx:
            port = rx.extra(SocketAttribute.local_port)

            def flood() -> None:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                    for seq in range(sent):
                        body = struct.pack("<I", seq) * 50
                        tx.sendto(struct.pack("<I", zlib.crc32(body)) + body, ("127.0.0.1", port))

            # Nobody receives during the flood: the kernel's 64 KiB queue overflows.
            await anyio.to_thread.run_sync(flood)
            while True:
                with anyio.move_on_after(0.5) as scope:
                    data, _ = await rx.receive()
                if scope.cancelled_caught:
                    break
                crc, body = struct.unpack("<I", data[:4])[0], data[4:]
                assert zlib.crc32(body) == crc, "a datagram was corrupted"
                seq = struct.unpack("<I", body[:4])[0]
                assert not received or seq > received[-1], "datagrams out of order"
                received.append(seq)
            stats = rx.stats
    assert stats.received == len(received) > 0
    if sys.platform == "linux":  # SO_RXQ_OVFL: the kernel tells how many it dropped
        assert stats.kernel_drops > 0
        assert stats.received + stats.dropped == sent


async def test_oversized_datagrams_are_counted_not_cut() -> None:
    async with await aring.create_udp_socket(
        local_host="127.0.0.1", capacity=64 << 10, max_datagram=1000
    ) as rx:
        port = rx.extra(SocketAttribute.local_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(b"x" * 1001, ("127.0.0.1", port))
            tx.sendto(b"fits", ("127.0.0.1", port))
        data, _ = await rx.receive()
        assert data == b"fits"
        assert rx.stats.truncated == 1
        with pytest.raises(ValueError, match="larger than max_datagram"):
            await rx.sendto(b"y" * 1001, "127.0.0.1", port)


async def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_datagram must be between"):
        await aring.create_udp_socket(max_datagram=70_000)
    with pytest.raises(ValueError, match="must hold at least two records"):
        await aring.create_udp_socket(capacity=4096, max_datagram=4000)


async def test_busy_and_closed() -> None:
    with anyio.fail_after(10):
        rx = await aring.create_udp_socket(local_host="127.0.0.1")
        with pytest.RaisesGroup(
            pytest.RaisesExc(
                BusyResourceError, match="^another task is already receiving from this socket$"
            )
        ):
            async with create_task_group() as tg:
                tg.start_soon(rx.receive)
                tg.start_soon(rx.receive)

        async def receive_expecting_closed() -> None:
            with pytest.raises(ClosedResourceError):
                await rx.receive()

        async with create_task_group() as tg:
            tg.start_soon(receive_expecting_closed)
            await anyio.wait_all_tasks_blocked()
            await rx.aclose()
        with pytest.raises(ClosedResourceError):
            await rx.sendto(b"x", "127.0.0.1", 9)

