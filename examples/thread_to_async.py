"""A blocking producer thread feeds an async consumer through a ring.

The thread uses the writer's blocking flavour (``writer.sync.send``: it sleeps
in poll() with the GIL released when the ring is full); the task awaits the
reader, which sleeps in its event loop.  No callback is posted per item and no
one polls: the ring's notifier wakes whichever side waits, and only when it
waits.  Typical for a device, a C library or a legacy blocking API that
produces data for an async server.

Run: python examples/thread_to_async.py [--loop asyncio|uvloop|trio]
"""

from __future__ import annotations

import struct
import time

import anyio
from _loops import run

import aring

RECORD = struct.Struct("<Qd")  # sequence number, timestamp
COUNT = 200_000


def sensor(writer: aring.Writer) -> None:
    """A blocking producer: one small record at a time, as a device driver would."""
    with writer:  # closing the writer is end-of-stream for the reader
        for seq in range(COUNT):
            writer.sync.send(RECORD.pack(seq, time.time()))


async def main() -> None:
    async with aring.open(1 << 20, item_size=RECORD.size) as (writer, reader):
        ring = writer.extra(aring.RingAttribute.ring)
        expected = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, sensor, writer)
            while True:
                try:
                    view = await reader.peek(RECORD.size)  # all readable records, zero-copy
                except anyio.EndOfStream:
                    break
                for seq, _stamp in RECORD.iter_unpack(view):
                    assert seq == expected, f"record {expected} missing"
                    expected += 1
                reader.consume(len(view))
        print(
            f"received {expected} records in order; the notifier was written "
            f"{ring.notifier_writes} times ({ring.notifier_writes / COUNT:.4f} per record)"
        )


if __name__ == "__main__":
    run(main, __doc__.splitlines()[0])
