"""Thin views that give aring's streams trio's stream interface, for trio.testing's checks."""

from __future__ import annotations

import trio
from anyio import ClosedResourceError, EndOfStream
from anyio.abc import SocketAttribute
from asyncutil import as_trio_errors

import aring


class TrioSendView(trio.abc.SendStream):
    def __init__(self, writer: aring.Writer) -> None:
        self.writer = writer

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with as_trio_errors():
            await self.writer.send(data)

    async def wait_send_all_might_not_block(self) -> None:
        with as_trio_errors():
            await self.writer.reserve(1)
            self.writer.commit(0)

    async def aclose(self) -> None:
        await self.writer.aclose()


class TrioReceiveView(trio.abc.ReceiveStream):
    def __init__(self, reader: aring.Reader) -> None:
        self.reader = reader

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with as_trio_errors():
            try:
                return await self.reader.receive(65536 if max_bytes is None else max_bytes)
            except EndOfStream:
                return b""

    async def aclose(self) -> None:
        await self.reader.aclose()


async def trio_ring_pair(clogged: bool) -> tuple[TrioSendView, TrioReceiveView]:
    ring = aring.Ring(4096)
    writer, reader = ring.writer(), ring.reader()
    if clogged:
        writer.try_write(b"\0" * ring.capacity)
    return TrioSendView(writer), TrioReceiveView(reader)


class TrioView(trio.abc.HalfCloseableStream):
    def __init__(self, stream: aring.RingSocketStream) -> None:
        self.stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with as_trio_errors():
            await self.stream.send(data)

    async def wait_send_all_might_not_block(self) -> None:
        with as_trio_errors():
            if self.stream._closed:
                raise ClosedResourceError
            await trio.lowlevel.wait_writable(self.stream.extra(SocketAttribute.raw_socket))

    async def send_eof(self) -> None:
        with as_trio_errors():
            await self.stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with as_trio_errors():
            try:
                return await self.stream.receive(65536 if max_bytes is None else max_bytes)
            except EndOfStream:
                return b""

    async def aclose(self) -> None:
        await self.stream.aclose()


async def trio_tcp_pair() -> tuple[TrioView, TrioView]:
    listener = await aring.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    client = await aring.connect_tcp("127.0.0.1", port)
    server = await listener.accept()
    await listener.aclose()
    return TrioView(client), TrioView(server)
