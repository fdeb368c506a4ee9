"""Two tasks and one ring: copying sends, and the zero-copy reserve/commit idiom.

``send``/``receive`` copy in and out, like any anyio byte stream.  The ring's
own idiom hands out every free byte with one ``await writer.reserve()`` and
every readable byte with one ``await reader.peek()``: a producer fills as many
records as fit, commits them at once, and the consumer parses them where they
lie, even across the wrap (the memory is mapped twice).

Run: python examples/task_to_task.py [--loop asyncio|uvloop|trio]
"""

from __future__ import annotations

import zlib

import anyio
from _loops import run

import aring

LINES = 100_000


async def copying(writer: aring.Writer, reader: aring.Reader) -> int:
    async def produce() -> None:
        async with writer:
            for i in range(LINES):
                await writer.send(b"line %d\n" % i)

    crc = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        async for chunk in reader:  # anyio.EndOfStream ends the loop
            crc = zlib.crc32(chunk, crc)
    return crc


async def zero_copy(writer: aring.Writer, reader: aring.Reader) -> int:
    async def produce() -> None:
        async with writer:
            i = 0
            while i < LINES:
                view = await writer.reserve(64)  # all free space, at least 64 bytes
                used = 0
                while i < LINES and len(view) - used >= 64:
                    line = b"line %d\n" % i
                    view[used : used + len(line)] = line
                    used += len(line)
                    i += 1
                writer.commit(used)  # publish them all; the view is released

    crc = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        while True:
            try:
                view = await reader.peek()  # every readable byte, contiguous
            except anyio.EndOfStream:
                break
            crc = zlib.crc32(view, crc)  # parse in place: no copy out
            reader.consume(len(view))
    return crc


async def main() -> None:
    expected = zlib.crc32(b"".join(b"line %d\n" % i for i in range(LINES)))
    for how in (copying, zero_copy):
        async with aring.open(64 << 10) as (writer, reader):
            start = anyio.current_time()
            crc = await how(writer, reader)
            elapsed = anyio.current_time() - start
        assert crc == expected, f"{how.__name__}: the bytes differ"
        print(f"{how.__name__:>9}: {LINES} lines intact in {elapsed * 1e3:.0f} ms")


if __name__ == "__main__":
    run(main, __doc__.splitlines()[0])
