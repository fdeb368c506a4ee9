"""Producer threads log variable-length messages; an async task batches them out.

Each thread claims room for a message in a shared RecordRing
(``multi_producer=True``: no lock, a CAS per claim), writes it in place and
commits it; the task takes every finished message at once with
``receive_batch`` (zero-copy views) and checks that each thread's messages
arrive whole and in its order.  Typical of a logging or telemetry pipeline
where many threads write and one task ships.

Run: python examples/log_records.py [--loop asyncio|uvloop|trio]
"""

from __future__ import annotations

import struct
import threading

import anyio
from _loops import run

import aring

THREADS = 4
MESSAGES = 20_000
HEAD = struct.Struct("<HI")  # thread number, sequence number


def log(writer: aring.RecordWriter, thread: int) -> None:
    for sequence in range(MESSAGES):
        text = f"thread {thread} says hello #{sequence}".encode()
        claim = writer.sync.claim(HEAD.size + len(text))  # waits while the ring is full
        with claim as view:  # commits on exit (aborts if the block raised)
            HEAD.pack_into(view, 0, thread, sequence)
            view[HEAD.size :] = text


async def main() -> None:
    async with aring.open_records(1 << 16, multi_producer=True) as (writer, reader):
        threads = [threading.Thread(target=log, args=(writer, t)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        following = [0] * THREADS
        batches = 0
        while sum(following) < THREADS * MESSAGES:
            for message in await reader.receive_batch():  # every finished record, as views
                thread, sequence = HEAD.unpack_from(message)
                assert sequence == following[thread], f"thread {thread}: message lost"
                following[thread] += 1
            batches += 1
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join)
        print(
            f"received {sum(following)} messages from {THREADS} threads, each in order, "
            f"in {batches} batches"
        )


if __name__ == "__main__":
    run(main, __doc__.splitlines()[0])
