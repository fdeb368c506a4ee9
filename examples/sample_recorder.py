"""Record samples to a file: a producer thread -> a ring -> a file, one write per region.

A thread produces complex64 I/Q samples of a tone at a fixed rate, as a radio
would, and hands them to the ring with ``writer.sync.send`` (blocking only if
the disk falls a whole ring behind).  ``aring.pump`` writes the ring to the
file from one worker thread with one ``write(2)`` per contiguous region, never
two at the wrap; the ring is made of whole samples (``item_size=8``), so no
write ever splits one.  A progress line runs while it records; at the end the
file is checked against what was produced and the write(2) count per GB is
printed.  The recording is synced to the disk every quarter second (and at the
end) with ``aring.FileSync``, and the synced pages are dropped from the cache.
With a paced producer the worker keeps up and writes each block as
it arrives; a faster producer (or a slower disk) makes the regions, and so the
writes, larger.

Run: python examples/sample_recorder.py [--loop asyncio|uvloop|trio]
"""

from __future__ import annotations

import array
import cmath
import sys
import tempfile
import threading
import time
import zlib

import anyio
from _loops import run

import aring

SAMPLE = 8  # complex64: two float32
BLOCK = 4096  # samples per send
RATE = 16_000_000  # samples per second (128 MB/s)
SECONDS = 1.0


def tone_block(cycles_per_block: int = 37) -> bytes:
    """One block of a complex tone, as interleaved float32 I/Q."""
    samples = array.array("f")
    for n in range(BLOCK):
        z = cmath.exp(2j * cmath.pi * cycles_per_block * n / BLOCK)
        samples.extend((z.real, z.imag))
    return samples.tobytes()


def produce(writer: aring.Writer, blocks: int, crc: list[int]) -> None:
    """Send ``blocks`` blocks at RATE samples/s, then close: end of stream for the pump."""
    block = tone_block()
    start = time.monotonic()
    try:
        for i in range(blocks):
            due = start + i * BLOCK / RATE
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the radio's pace
            writer.sync.send(block)
            crc[0] = zlib.crc32(block, crc[0])
    finally:
        writer.close()


async def show_progress(stats: aring.TransferStats, total: int) -> None:
    while True:
        print(
            f"\r  recorded {stats.bytes / 1e6:8.1f} of {total / 1e6:.1f} MB "
            f"({stats.syscalls} writes)",
            end="",
            file=sys.stderr,
            flush=True,
        )
        await anyio.sleep(0.1)


async def main() -> None:
    blocks = int(RATE * SECONDS) // BLOCK
    total = blocks * BLOCK * SAMPLE
    stats = aring.TransferStats()
    crc = [0]
    with tempfile.TemporaryFile() as recording:
        async with aring.open(1 << 20, item_size=SAMPLE) as (writer, reader):
            producer = threading.Thread(target=produce, args=(writer, blocks, crc))
            started = time.monotonic()
            producer.start()
            async with anyio.create_task_group() as tg:
                tg.start_soon(show_progress, stats, total)
                # Durable as it goes: fdatasync every 0.25 s (and at the end), and the synced
                # pages leave the page cache, as a long recording's should.
                durable = aring.FileSync(every_seconds=0.25, drop_cache=True)
                await aring.pump(reader, recording, stats=stats, sync=durable)
                tg.cancel_scope.cancel()
            elapsed = time.monotonic() - started
            producer.join()
        print(file=sys.stderr)
        recording.seek(0)
        written = 0
        check = 0
        while chunk := recording.read(1 << 20):
            written += len(chunk)
            check = zlib.crc32(chunk, check)
    assert written == total == stats.bytes, (written, total, stats.bytes)
    assert check == crc[0], "the recording differs from what was produced"
    gb = total / 1e9
    print(
        f"recorded {total / 1e6:.1f} MB of samples in {elapsed:.2f} s "
        f"({total / elapsed / 1e6:.0f} MB/s, produced at {RATE * SAMPLE / 1e6:.0f} MB/s): "
        f"{stats.syscalls} write(2) calls for {stats.regions} regions, "
        f"{stats.syscalls / gb:.0f} per GB, {stats.syncs} fdatasync; checksum ok"
    )


if __name__ == "__main__":
    run(main, __doc__.splitlines()[0])
