"""Relays aring is measured against, in the same run: ``python -m aring._peers NAME ...``.

``asyncio-streams`` is the relay most Python code would write: asyncio streams
with a 256 KiB read per step, one coroutine per direction, half-close
forwarded with ``write_eof``.  It prints one line to stderr once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from ._relay import parse_address

__all__ = ["serve_asyncio_streams"]

_READ_SIZE = 256 << 10


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(_READ_SIZE):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def serve_asyncio_streams(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.open_connection(*target)
        except OSError:
            c_writer.close()
            return
        with contextlib.suppress(OSError):
            await asyncio.gather(_pipe(c_reader, t_writer), _pipe(t_reader, c_writer))
        for w in (c_writer, t_writer):
            w.close()

    server = await asyncio.start_server(handle, *listen)
    port = server.sockets[0].getsockname()[1]
    print(f"asyncio-streams relay: {listen[0]}:{port} -> {target[0]}:{target[1]}", file=sys.stderr)
    sys.stderr.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m aring._peers")
    parser.add_argument("name", choices=["asyncio-streams"])
    parser.add_argument("--listen", required=True, type=parse_address)
    parser.add_argument("--to", required=True, type=parse_address)
    args = parser.parse_args()
    asyncio.run(serve_asyncio_streams(args.listen, args.to))


if __name__ == "__main__":
    main()
