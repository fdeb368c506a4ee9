"""Typing checks of the public API: `make lint` runs mypy --strict on this file.

Each function is what a user writes; mypy must accept it against the installed
package (and reveal_type lines document what the user gets).  It is not run.
"""

from __future__ import annotations

from typing import assert_type

import anyio

import aring


async def handler(stream: aring.RingSocketStream) -> None:
    view = await stream.receive_until(b"\r\n", 1024)
    assert_type(view, memoryview)
    await stream.send(b"ok")


async def serve() -> None:
    listener = await aring.create_tcp_listener(local_host="127.0.0.1")
    assert_type(listener, aring.RingSocketListener)
    await listener.serve(handler)  # a handler typed for RingSocketStream
    stream = await listener.accept()
    assert_type(stream, aring.RingSocketStream)


async def one_reader() -> None:
    async with aring.open(1 << 16) as (writer, reader):
        assert_type(writer, aring.Writer)
        assert_type(reader, aring.Reader)


async def two_readers() -> None:
    async with aring.open(1 << 16, readers=2) as (writer, r1, r2):
        assert_type(writer, aring.Writer)
        assert_type(r1, aring.Reader)
        assert_type(r2, aring.Reader)


async def three_readers() -> None:
    async with aring.open(1 << 16, readers=3) as (writer, r1, r2, r3):
        assert_type(
            (writer, r1, r2, r3), tuple[aring.Writer, aring.Reader, aring.Reader, aring.Reader]
        )


async def many_readers(n: int) -> None:
    async with aring.open(1 << 16, readers=n) as (writer, *readers):
        assert_type(writer, aring.Writer)
        assert_type(readers, list[aring.Reader])


def blocking() -> None:
    with aring.Ring(1 << 16) as ring:
        writer, reader = ring.writer(), ring.reader()
        writer.sync.send(b"x", timeout=1.0)
        assert_type(reader.sync.receive(timeout=None), bytes)
        view = writer.try_reserve()
        if view is not None:
            writer.commit(0)
        assert_type(ring.dead_readers, int)


async def moving(reader: aring.Reader, writer: aring.Writer) -> None:
    stats = aring.TransferStats()
    assert_type(await aring.pump(reader, 1, stats=stats), int)
    assert_type(await aring.fill(writer, 0), int)
    async with await anyio.connect_tcp("127.0.0.1", 1) as stream:
        await aring.pump(reader, stream)
