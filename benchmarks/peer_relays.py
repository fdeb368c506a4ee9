"""The peer relays the relay benchmark runs beside aring's (each its own process).

usage: python benchmarks/peer_relays.py NAME LISTEN_PORT TARGET_PORT [BUFFER]
NAME: splice (os.splice through a pipe, threads: the kernel's limit), asyncio-proto /
uvloop-proto (BufferedProtocol), uvloop-streams (asyncio streams on uvloop), trio
(trio.serve_tcp, receive_some/send_all), anyio-asyncio / anyio-uvloop / anyio-trio
(anyio TCP streams, receive/send).
Each forwards both directions with reads of BUFFER bytes (default 256 KiB; the
splice relay's pipe holds BUFFER too), forwards half-closes, and exits on SIGTERM.
The benchmark gives every relay in a row the same BUFFER as aring's ring.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import sys
import threading
from typing import Any

CHUNK = 256 << 10  # set from the command line before any relay starts


def splice_relay(listen: int, target: int) -> None:
    def forward(src: socket.socket, dst: socket.socket) -> None:
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):  # a pipe as large as the others' buffers
            fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
        try:
            while True:
                n = os.splice(src.fileno(), write_end, CHUNK)
                if n == 0:
                    break
                while n:
                    n -= os.splice(read_end, dst.fileno(), n)
        except OSError:
            pass
        finally:
            os.close(read_end)
            os.close(write_end)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def connection(client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", target)) as upstream:
            back = threading.Thread(target=forward, args=(upstream, client))
            back.start()
            forward(client, upstream)
            back.join()

    server = socket.create_server(("127.0.0.1", listen))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        client, _ = server.accept()
        threading.Thread(target=connection, args=(client,), daemon=True).start()


class _Side(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.view = memoryview(bytearray(CHUNK))
        self.peer: _Side | None = None
        self.transport: Any = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        if self.peer is None:  # one read may arrive before pause_reading takes hold
            self.pending.append(bytes(self.view[:nbytes]))
        else:  # uvloop sends what it can at once and copies only the rest
            self.peer.transport.write(self.view[:nbytes])

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.resume_reading()

    def eof_received(self) -> bool:
        if self.peer is not None and self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def uvloop_proto_relay(listen: int, target: int) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    class Client(_Side):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.pause_reading()  # until the upstream connection exists
            tasks.add(task := loop.create_task(self.connect()))
            task.add_done_callback(tasks.discard)

        async def connect(self) -> None:
            upstream = _Side()
            upstream.peer = self
            await loop.create_connection(lambda: upstream, "127.0.0.1", target)
            self.peer = upstream
            for data in self.pending:
                upstream.transport.write(data)
            self.pending.clear()
            self.transport.resume_reading()

    server = await loop.create_server(Client, "127.0.0.1", listen)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


def trio_relay(listen: int, target: int) -> None:
    import trio

    async def forward(src: Any, dst: Any) -> None:
        try:
            while data := await src.receive_some(CHUNK):
                await dst.send_all(data)
            await dst.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def handle(client: Any) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", target)
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(forward, client, upstream)
            nursery.start_soon(forward, upstream, client)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_tcp, handle, listen)
                async for _ in signals:
                    nursery.cancel_scope.cancel()

    trio.run(main)


def anyio_relay(
    listen: int, target: int, backend: str, options: dict[str, bool] | None = None
) -> None:
    import anyio

    async def forward(src: Any, dst: Any) -> None:
        try:
            while True:
                try:
                    data = await src.receive(CHUNK)
                except anyio.EndOfStream:
                    break
                await dst.send(data)
            await dst.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    async def handle(client: Any) -> None:
        upstream = await anyio.connect_tcp("127.0.0.1", target)
        async with client, upstream, anyio.create_task_group() as tg:
            tg.start_soon(forward, client, upstream)
            tg.start_soon(forward, upstream, client)

    async def main() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                listener = await anyio.create_tcp_listener(
                    local_host="127.0.0.1", local_port=listen
                )
                tg.start_soon(listener.serve, handle)
                async for _ in signals:
                    tg.cancel_scope.cancel()

    anyio.run(main, backend=backend, backend_options=options or {})


def main() -> None:
    global CHUNK
    name, listen, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 4:
        CHUNK = int(sys.argv[4])
    if name == "splice":
        splice_relay(listen, target)
    elif name == "uvloop-proto":
        import uvloop

        uvloop.run(uvloop_proto_relay(listen, target))
    elif name == "asyncio-proto":
        asyncio.run(uvloop_proto_relay(listen, target))
    elif name == "uvloop-streams":
        import uvloop

        from aring._cli.relay_demo import serve_asyncio_streams

        uvloop.run(serve_asyncio_streams(("127.0.0.1", listen), ("127.0.0.1", target), CHUNK))
    elif name == "trio":
        trio_relay(listen, target)
    elif name in ("anyio-asyncio", "anyio-trio"):
        anyio_relay(listen, target, name.split("-", 1)[1])
    elif name == "anyio-uvloop":
        anyio_relay(listen, target, "asyncio", {"use_uvloop": True})
    else:
        sys.exit(f"unknown relay {name!r}")


if __name__ == "__main__":
    main()
