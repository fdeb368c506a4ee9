"""Mixed worlds: a thread on one end, a task on the other, on every backend.

The thread sleeps in poll() on its end's notifier; the task sleeps in its event
loop on the other end's notifier.  Neither side polls in a loop or posts a
callback per item: the notifier-write counter shows how many wakeups it took.
"""

from __future__ import annotations

import random
import zlib

import anyio
import pytest
from anyio import EndOfStream
from observe import reader_asleep, until_async, writer_asleep

import aring
from aring import RingAttribute

pytestmark = pytest.mark.anyio

TOTAL = 256 << 20
CHUNKS = (1, 7, 512, 4096, 65536, 300_000)


def pattern_source(seed: int) -> tuple[memoryview, random.Random]:
    rng = random.Random(seed)
    return memoryview(rng.randbytes(1 << 20) * 2), rng


def produce_in_thread(writer: aring.Writer, seed: int) -> tuple[int, int]:
    """Send TOTAL bytes in random chunk sizes; (CRC-32, number of sends)."""
    source, rng = pattern_source(seed)
    crc = sent = sends = 0
    with writer:
        while sent < TOTAL:
            n = min(rng.choice(CHUNKS), TOTAL - sent)
            piece = source[sent % (1 << 20) :][:n]
            writer.sync.send(piece)
            crc = zlib.crc32(piece, crc)
            sent += n
            sends += 1
    return crc, sends


def consume_in_thread(reader: aring.Reader) -> tuple[int, int]:
    """Read to end of stream with peek/consume; (CRC-32, bytes)."""
    crc = got = 0
    while True:
        try:
            view = reader.sync.peek(1, timeout=60)
        except EndOfStream:
            return crc, got
        n = len(view)
        crc = zlib.crc32(view, crc)
        reader.consume(n)
        got += n


@pytest.mark.parametrize("zero_copy", [False, True], ids=["receive", "peek"])
async def test_thread_to_task_moves_256_mib_intact(zero_copy: bool) -> None:
    crc = got = receives = 0
    with anyio.fail_after(120):
        async with aring.open(1 << 20) as (writer, reader), anyio.create_task_group() as tg:
            result: list[tuple[int, int]] = []

            async def run_producer() -> None:
                result.append(await anyio.to_thread.run_sync(produce_in_thread, writer, 1))

            tg.start_soon(run_producer)
            while True:
                try:
                    if zero_copy:
                        view = await reader.peek(1)
                        n = len(view)
                        crc = zlib.crc32(view, crc)
                        reader.consume(n)
                    else:
                        data = await reader.receive(1 << 20)
                        n = len(data)
                        crc = zlib.crc32(data, crc)
                except EndOfStream:
                    break
                got += n
                receives += 1
    expected_crc, _sends = result[0]
    # Integrity is the point here.  How many wakeups it took depends on the
    # scheduler, so it is a benchmark figure; the tests below pin the mechanism.
    assert got == TOTAL
    assert crc == expected_crc


async def test_task_to_thread_moves_256_mib_intact() -> None:
    source, rng = pattern_source(2)
    crc = sent = sends = 0
    with anyio.fail_after(120):
        async with aring.open(1 << 20) as (writer, reader), anyio.create_task_group() as tg:
            result: list[tuple[int, int]] = []

            async def run_consumer() -> None:
                result.append(await anyio.to_thread.run_sync(consume_in_thread, reader))

            tg.start_soon(run_consumer)
            async with writer:
                while sent < TOTAL:
                    n = min(rng.choice(CHUNKS), TOTAL - sent)
                    piece = source[sent % (1 << 20) :][:n]
                    await writer.send(piece)
                    crc = zlib.crc32(piece, crc)
                    sent += n
                    sends += 1
    assert result[0] == (crc, TOTAL)  # integrity; wakeups are a benchmark figure


async def test_a_task_waiting_for_n_bytes_is_woken_once_by_a_thread_burst() -> None:
    with anyio.fail_after(30):
        async with aring.open(1 << 16) as (writer, reader):
            ring = writer.extra(RingAttribute.ring)
            seen: list[int] = []

            async def wait_for_2000() -> None:
                seen.append(len(await reader.peek(2000)))

            def burst() -> None:
                for _ in range(2000):  # one byte at a time, from a thread
                    assert writer.try_write(b"x")

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_2000)
                await until_async(reader_asleep(ring), "the task sleeps wanting 2000 bytes")
                await anyio.to_thread.run_sync(burst)
            assert seen == [2000]
            assert ring.notifier_writes == 1  # not one per byte: the threshold held it


async def test_a_task_waiting_for_space_is_woken_once_by_a_thread_consuming() -> None:
    with anyio.fail_after(30):
        async with aring.open(4096) as (writer, reader):
            ring = writer.extra(RingAttribute.ring)
            assert writer.try_write(b"\0" * 4096)

            def consume_slowly() -> None:
                for _ in range(1000):  # a byte at a time: 1000 bytes free in the end
                    reader.consume(1)

            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.send, b"y" * 1000)
                await until_async(writer_asleep(ring), "the send waits for 1000 free bytes")
                await anyio.to_thread.run_sync(consume_slowly)
            assert ring.notifier_writes == 1
            assert reader.readable() == 4096
