"""A line-echo server on RingSocketStream: lines are parsed where they lie in the receive ring.

``receive_until(b"\\n")`` returns a view of the line inside the ring (contiguous
even when the line straddles the wrap); the view is valid until the next
receive call, which is all a line handler needs.  The demo part connects a few
clients and checks every echoed line.

Run: python examples/echo_server.py [--loop asyncio|uvloop|trio]
"""

from __future__ import annotations

import anyio
from _loops import run
from anyio.abc import SocketAttribute

import aring


async def handle(stream: aring.RingSocketStream) -> None:
    async with stream:
        while True:
            try:
                line = await stream.receive_until(b"\n", 1024)
            except (anyio.IncompleteRead, anyio.EndOfStream):
                return  # the client is done
            await stream.send(bytes(line).upper() + b"\n")


async def client(port: int, n: int) -> None:
    async with await aring.connect_tcp("127.0.0.1", port) as stream:
        for i in range(1000):
            await stream.send(b"client %d line %d\n" % (n, i))
            reply = await stream.receive_until(b"\n", 1024)
            assert reply == b"CLIENT %d LINE %d" % (n, i), bytes(reply)


async def main() -> None:
    listener = await aring.create_tcp_listener(local_host="127.0.0.1", capacity=4096)
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        async with anyio.create_task_group() as clients:
            for n in range(5):
                clients.start_soon(client, port, n)
        tg.cancel_scope.cancel()
    print("5 clients x 1000 lines echoed through 4 KiB receive rings")


if __name__ == "__main__":
    run(main, __doc__.splitlines()[0])
