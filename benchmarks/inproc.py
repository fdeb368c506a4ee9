"""Task -> task hand-over in one process: aring beside anyio's memory object stream.

Each case moves N MiB in CHUNK-byte pieces.  The producer makes every piece by
copying it from a source block (one copy, as a recv would); the consumer
touches each piece's length.  Rounds interleave the cases so machine drift hits
all alike; each figure is the median of the rounds with min-max, and the ratio
to the anyio memory object stream on the same backend is printed beside it.

Cases per backend (asyncio, uvloop, trio):
  anyio-mem     anyio.create_memory_object_stream(64): send(bytes(piece)) / async for
  aring-send    writer.send(piece) / reader.receive(chunk): a copy in and a copy out
  aring-view    writer.reserve + commit / reader.peek + consume: one copy in, zero out
  aring-batch   as aring-view, but the producer fills every piece that fits in the free
                space one reserve() hands out, then commits them at once
plus memcpy (the limit: one copy per piece, no hand-over).

Run: python benchmarks/inproc.py [--mib 256] [--chunk 65536] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable

import anyio

import aring

BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}
RING_CAPACITY = 1 << 20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def case_memcpy(src: memoryview, total: int) -> int:
    dst = bytearray(len(src))
    moved = 0
    while moved < total:
        dst[:] = src
        moved += len(src)
    return moved


async def anyio_mem(src: memoryview, total: int) -> int:
    send, receive = anyio.create_memory_object_stream[bytes](64)
    got = 0

    async def produce() -> None:
        async with send:
            for _ in range(total // len(src)):
                await send.send(bytes(src))

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        async with receive:
            async for piece in receive:
                got += len(piece)
    return got


async def aring_send(src: memoryview, total: int) -> int:
    got = 0
    chunk = len(src)
    async with aring.open(RING_CAPACITY) as (writer, reader):

        async def produce() -> None:
            async with writer:
                for _ in range(total // chunk):
                    await writer.send(src)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async for piece in _receive_all(reader, chunk):
                got += len(piece)
    return got


async def _receive_all(reader: aring.Reader, chunk: int):  # type: ignore[no-untyped-def]
    while True:
        try:
            yield await reader.receive(chunk)
        except anyio.EndOfStream:
            return


async def aring_view(src: memoryview, total: int) -> int:
    got = 0
    chunk = len(src)
    async with aring.open(RING_CAPACITY) as (writer, reader):

        async def produce() -> None:
            async with writer:
                for _ in range(total // chunk):
                    view = await writer.reserve(chunk)
                    view[:chunk] = src
                    writer.commit(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            while True:
                try:
                    view = await reader.peek(1)
                except anyio.EndOfStream:
                    break
                n = len(view)
                got += n
                reader.consume(n)
    return got


async def aring_batch(src: memoryview, total: int) -> int:
    """The ring's own idiom: one await hands out all free space (all readable bytes)."""
    got = 0
    chunk = len(src)
    async with aring.open(RING_CAPACITY) as (writer, reader):

        async def produce() -> None:
            pieces = total // chunk
            async with writer:
                while pieces:
                    view = await writer.reserve(chunk)
                    fit = min(len(view) // chunk, pieces)
                    for i in range(fit):
                        view[i * chunk : (i + 1) * chunk] = src  # one copy per piece
                    writer.commit(fit * chunk)
                    pieces -= fit

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            while True:
                try:
                    view = await reader.peek(1)
                except anyio.EndOfStream:
                    break
                n = len(view)
                got += n
                reader.consume(n)
    return got


ASYNC_CASES = {
    "anyio-mem": anyio_mem,
    "aring-send": aring_send,
    "aring-view": aring_view,
    "aring-batch": aring_batch,
}


def make_cases(src: memoryview, total: int) -> dict[str, Callable[[], int]]:
    cases: dict[str, Callable[[], int]] = {"memcpy": lambda: case_memcpy(src, total)}
    for backend_name, (backend, options) in BACKENDS.items():
        for case_name, case in ASYNC_CASES.items():

            def run(case=case, backend=backend, options=options) -> int:  # type: ignore[no-untyped-def]
                return anyio.run(case, src, total, backend=backend, backend_options=options)  # type: ignore[no-any-return]

            cases[f"{case_name}-{backend_name}"] = run
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    args = parser.parse_args()
    src = memoryview(os.urandom(args.chunk))
    total = (args.mib << 20) // args.chunk * args.chunk
    cases = make_cases(src, total)
    names = args.cases or list(cases)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            cpu_start, start = cpu_seconds(), time.perf_counter()
            moved = cases[name]()
            elapsed, used = time.perf_counter() - start, cpu_seconds() - cpu_start
            assert moved == total, f"{name} moved {moved} of {total} bytes"
            rates[name].append(moved / elapsed / 1e9)
            cpu[name].append(used / (moved / 1e9))
    print(
        f"{args.mib} MiB in {args.chunk} B pieces, median (min-max) of {args.rounds} rounds; "
        "x = GB/s relative to anyio-mem on the same backend"
    )
    print(f"{'case':<22} {'GB/s':>7} {'(min-max)':>13} {'CPU s/GB':>9} {'x':>6}")
    for name in names:
        median = statistics.median(rates[name])
        backend = name.rsplit("-", 1)[-1]
        peer = rates.get(f"anyio-mem-{backend}")
        ratio = f"{median / statistics.median(peer):6.2f}" if peer else ""
        spread = f"({min(rates[name]):.2f}-{max(rates[name]):.2f})"
        print(
            f"{name:<22} {median:7.2f} {spread:>13} {statistics.median(cpu[name]):9.3f} {ratio:>6}"
        )


if __name__ == "__main__":
    main()
