"""Record a TCP stream to a file: the socket fills a ring, the ring is pumped to the file.

``aring.fill`` does one ``recv_into`` per free region of the ring; ``aring.pump``
does one ``os.write`` per readable region, in a worker thread (files cannot be
polled).  A slow disk never stalls the socket for longer than the ring is
large, and the counters show one write per region.

Run: python examples/tcp_recorder.py [--loop asyncio|uvloop|trio]
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile

import anyio
from _loops import run

import aring

SIZE = 64 << 20


async def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    data = os.urandom(1 << 20)
    with listener, tempfile.TemporaryFile() as recording:

        def sender() -> None:  # any TCP peer; a blocking one here
            with socket.create_connection(("127.0.0.1", port)) as s:
                for _ in range(SIZE // len(data)):
                    s.sendall(data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, sender)
            await anyio.wait_readable(listener)
            conn, _ = listener.accept()
            with conn:
                written = aring.TransferStats()
                async with aring.open(4 << 20) as (writer, reader):
                    tg.start_soon(aring.fill, writer, conn)  # closes the writer at EOF
                    await aring.pump(reader, recording, stats=written)
        recording.seek(0)
        digest = hashlib.sha256(recording.read()).hexdigest()
    assert digest == hashlib.sha256(data * (SIZE // len(data))).hexdigest()
    print(
        f"recorded {written.bytes >> 20} MiB intact with {written.syscalls} writes "
        f"for {written.regions} ring regions"
    )


if __name__ == "__main__":
    run(main, __doc__.splitlines()[0])
