"""A TCP relay in 20 lines: each direction is fill (socket -> ring) and pump (ring -> socket).

Half-closes travel with the data: when one side stops sending, ``fill`` closes
its ring's writer and ``pump`` shuts down the other socket's write half once
the ring has drained.  (``python -m aring relay`` is the full version.)

Run: python examples/relay.py [--loop asyncio|uvloop|trio]
"""

from __future__ import annotations

import socket

import anyio
from _loops import run

import aring


async def forward(src: socket.socket, dst: socket.socket) -> None:
    async with aring.open(1 << 20) as (writer, reader), anyio.create_task_group() as tg:
        tg.start_soon(aring.fill, writer, src)
        await aring.pump(reader, dst)


async def relay(client: socket.socket, target: tuple[str, int]) -> None:
    upstream = socket.create_connection(target)  # blocking connect: fine for an example
    with client, upstream:
        async with anyio.create_task_group() as tg:
            tg.start_soon(forward, client, upstream)
            tg.start_soon(forward, upstream, client)


# --- the demonstration: an uppercasing server behind the relay -----------------------


async def main() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    front = socket.create_server(("127.0.0.1", 0))
    with server, front:

        def upper_server() -> None:
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(65536):
                    conn.sendall(chunk.upper())

        def client() -> bytes:
            with socket.create_connection(front.getsockname()) as c:
                c.sendall(b"through the relay " * 100_000)
                c.shutdown(socket.SHUT_WR)  # the half-close must travel through
                return b"".join(iter(lambda: c.recv(65536), b""))

        async with anyio.create_task_group() as tg:
            replies: list[bytes] = []

            async def run_client() -> None:
                replies.append(await anyio.to_thread.run_sync(client))

            tg.start_soon(anyio.to_thread.run_sync, upper_server)
            tg.start_soon(run_client)
            await anyio.wait_readable(front)
            conn, _ = front.accept()
            conn.setblocking(False)
            await relay(conn, server.getsockname())
    assert replies == [b"THROUGH THE RELAY " * 100_000]
    print(f"relayed {len(replies[0])} bytes each way, half-close included")


if __name__ == "__main__":
    run(main, __doc__.splitlines()[0])
