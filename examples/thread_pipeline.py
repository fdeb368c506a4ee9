"""A producer thread hands data to a consumer through a ring, zero-copy on the way out.

The producer writes into the ring's free space in place (``sync.reserve`` then
``commit``); the consumer looks at each contiguous region (``sync.peek``),
processes it where it lies and releases it (``consume``).  Regions stay
contiguous across the wrap because the ring's memory is mapped twice.

Run: python examples/thread_pipeline.py
"""

from __future__ import annotations

import hashlib
import threading

from anyio import EndOfStream

import aring

TOTAL = 64 << 20  # bytes the producer generates


def produce(writer: aring.Writer) -> str:
    """Fill free space with a counter pattern in place; returns the SHA-256 of all of it."""
    digest = hashlib.sha256()
    written = 0
    with writer:  # closing the writer is end-of-stream for the reader
        while written < TOTAL:
            view = writer.sync.reserve(4096)  # all free space, at least 4 KiB
            n = min(len(view), TOTAL - written, 1 << 20)
            view[:n] = bytes((written + i) & 0xFF for i in range(256)) * (n // 256)
            digest.update(view[:n])
            writer.commit(n)  # publish; the view is released here
            written += n
    return digest.hexdigest()


def main() -> None:
    with aring.Ring(1 << 20) as ring:  # rounded up to whole pages
        writer, reader = ring.writer(), ring.reader()
        result: list[str] = []
        thread = threading.Thread(target=lambda: result.append(produce(writer)))
        thread.start()
        digest = hashlib.sha256()
        received = 0
        with reader:
            while True:
                try:
                    view = reader.sync.peek(1, timeout=10)  # all readable bytes
                except EndOfStream:
                    break
                n = len(view)
                digest.update(view)
                reader.consume(n)  # releases the view: using it now raises ValueError
                received += n
        thread.join()
    assert digest.hexdigest() == result[0], "the consumer saw different bytes"
    print(f"received {received} bytes, SHA-256 matches: {digest.hexdigest()[:16]}...")


if __name__ == "__main__":
    main()
