"""``python -m aring demo``: a producer thread feeds a consumer through a ring.

The producer copies slices of a random pattern in with ``writer.sync.send``
(one copy, GIL released for large pieces); the consumer peeks each contiguous
region, checksums it in place and consumes it: no second copy.  The figures are
printed beside a plain ``memcpy`` of the same amount measured in the same run.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from typing import TextIO

from anyio import EndOfStream

from .._ring import Ring
from .progress import Progress
from .units import format_size

__all__ = ["run_demo"]

_PATTERN_BYTES = 4 << 20


def _pieces(size: int, chunk: int) -> list[tuple[int, int]]:
    """(offset in the pattern, length) of each send; cut so no send crosses the pattern's end."""
    pieces = []
    offset = sent = 0
    while sent < size:
        n = min(chunk, size - sent, _PATTERN_BYTES - offset)
        pieces.append((offset, n))
        sent += n
        offset = (offset + n) % _PATTERN_BYTES
    return pieces


def _memcpy_rate(pattern: memoryview, pieces: list[tuple[int, int]], capacity: int) -> float:
    """GB/s of the same copies into a plain ``capacity``-byte buffer, in one thread.

    Same sources, same sizes, same cache footprint as the ring: the limit a
    ring copy-in could reach, without the handoff to another thread.
    """
    dst = memoryview(bytearray(capacity))
    position = 0
    start = time.perf_counter()
    for offset, n in pieces:
        while n:
            at = position % capacity
            part = min(n, capacity - at)
            dst[at : at + part] = pattern[offset : offset + part]
            position += part
            offset += part
            n -= part
    return position / (time.perf_counter() - start) / 1e9


def run_demo(
    *,
    size: int,
    capacity: int,
    chunk: int,
    notifier: str,
    strategy: str,
    verify: bool,
    out: TextIO,
    progress: TextIO,
) -> int:
    """Move ``size`` bytes thread -> consumer; 0 if every byte arrived intact."""
    if size < 1:
        raise ValueError(f"--size must be at least 1 byte, got {size}")
    if chunk < 1:
        raise ValueError(f"--chunk must be at least 1 byte, got {chunk}")
    pattern = memoryview(os.urandom(_PATTERN_BYTES))
    pieces = _pieces(size, chunk)
    expected = 0
    if verify:
        for offset, n in pieces:
            expected = zlib.crc32(pattern[offset : offset + n], expected)

    with Ring(capacity, strategy=strategy, notifier=notifier) as ring:
        writer, reader = ring.writer(), ring.reader()
        out.write(
            f"aring demo: {format_size(size)} from a producer thread to a consumer through a "
            f"{format_size(ring.capacity)} ring (strategy={ring.strategy}, "
            f"notifier={ring.notifier}, sends of {format_size(min(chunk, size))})\n"
        )
        out.flush()
        failure: list[BaseException] = []

        def produce() -> None:
            try:
                with writer:
                    for offset, n in pieces:
                        writer.sync.send(pattern[offset : offset + n])
            except BaseException as exc:  # reported by the consumer below
                failure.append(exc)

        meter = Progress(progress, size)
        received = crc = 0
        cpu_start = time.process_time()
        start = time.perf_counter()
        producer = threading.Thread(target=produce, name="aring-demo-producer")
        producer.start()
        try:
            with reader:
                while True:
                    try:
                        view = reader.sync.peek(1)
                    except EndOfStream:
                        break
                    n = len(view)
                    if verify:
                        crc = zlib.crc32(view, crc)
                    reader.consume(n)
                    received += n
                    meter.update(received)
        finally:
            producer.join()
            meter.finish()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        if failure:
            raise failure[0]
        wakeups = ring.notifier_writes

    rate = received / elapsed / 1e9
    memcpy = _memcpy_rate(pattern, pieces, capacity)
    after = "a CRC-32 pass over each region" if verify else "no pass over the data"
    out.write(
        f"moved {format_size(received)} in {elapsed:.3f} s: {rate:.2f} GB/s, "
        f"{cpu / (received / 1e9):.2f} CPU s/GB, {wakeups} notifier writes for "
        f"{len(pieces)} sends\n"
        f"same run, the same copies into a plain buffer in one thread (memcpy): "
        f"{memcpy:.2f} GB/s; the ring ran at {rate / memcpy:.2f}x that, copying in on "
        f"one thread and making {after} on the other\n"
    )
    if received != size:
        out.write(f"FAILED: {received} of {size} bytes arrived\n")
        return 1
    if verify:
        if crc != expected:
            out.write(f"FAILED: CRC-32 {crc:#010x}, expected {expected:#010x}\n")
            return 1
        out.write(f"checksum ok (CRC-32 {crc:#010x})\n")
    return 0
