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

Peers: anyio memory object stream, asyncio.Queue (asyncio, uvloop), trio memory
channel (trio), memcpy (the limit).

Run: python benchmarks/inproc.py [--mib 256] [--chunk 65536] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import anyio
from _common import Scenario, add_ratios, interleave, print_scenario, timed

import aring

BACKENDS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}
RING_CAPACITY = 1 << 20


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


async def asyncio_queue(src: memoryview, total: int) -> int:
    import asyncio

    queue: asyncio.Queue[bytes | None] = asyncio.Queue(64)
    got = 0

    async def produce() -> None:
        for _ in range(total // len(src)):
            await queue.put(bytes(src))
        await queue.put(None)

    task = asyncio.ensure_future(produce())
    while (piece := await queue.get()) is not None:
        got += len(piece)
    await task
    return got


async def trio_channel(src: memoryview, total: int) -> int:
    import trio

    send, receive = trio.open_memory_channel[bytes](64)
    got = 0

    async def produce() -> None:
        async with send:
            for _ in range(total // len(src)):
                await send.send(bytes(src))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
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


async def _timed_inside(case, src: memoryview, total: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    moved = await case(src, total)
    return moved, time.perf_counter() - start


def make_cases(src: memoryview, total: int) -> dict[str, tuple[str, Callable[[], Any]]]:
    cases: dict[str, tuple[str, Callable[[], Any]]] = {
        "memcpy": ("limit", lambda: case_memcpy(src, total))
    }
    for backend_name, (backend, options) in BACKENDS.items():
        async_cases = dict(ASYNC_CASES)
        async_cases["asyncio.Queue" if backend == "asyncio" else "trio-channel"] = (
            asyncio_queue if backend == "asyncio" else trio_channel
        )
        for case_name, case in async_cases.items():

            def run(case=case, backend=backend, options=options):  # type: ignore[no-untyped-def]
                return anyio.run(_timed_inside, case, src, total, backend=backend,
                                 backend_options=options)

            kind = "aring" if case_name.startswith("aring") else "peer"
            cases[f"{case_name}-{backend_name}"] = (kind, run)
    return cases


def scenario(chunk: int, mib: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    src = memoryview(os.urandom(chunk))
    total = (mib << 20) // chunk * chunk
    cases = {
        name: (kind, (lambda work=work: _with_items(timed(work), chunk)))
        for name, (kind, work) in make_cases(src, total).items()
    }
    rows = interleave(cases, rounds, progress)
    pairs = {}
    for row in rows:
        if row.kind == "aring":
            backend = row.name.rsplit("-", 1)[-1]
            pairs[row.name] = f"anyio-mem-{backend}"
    add_ratios(rows, pairs, ["GB/s"])
    add_ratios(rows, {r.name: "memcpy" for r in rows if r.name.startswith("aring-batch")}, ["GB/s"])
    size = f"{chunk // 1024} KiB" if chunk >= 1024 else f"{chunk} B"
    return Scenario(
        key=f"task-to-task-{chunk}",
        title=f"task -> task, {size} pieces ({mib} MiB per round)",
        metrics={"GB/s": "GB/s", "items/s": "items/s (M)", "CPU s/GB": "CPU s/GB"},
        higher_is_better={"GB/s": True, "items/s": True, "CPU s/GB": False},
        rows=rows,
        notes=[
            "aring-send: send/receive per piece; aring-view: reserve/commit + peek/consume per "
            "piece; aring-batch: one reserve hands out all free space, pieces are filled and "
            "committed at once, the consumer peeks everything readable",
        ],
    )


def _with_items(metrics: dict[str, float], chunk: int) -> dict[str, float]:
    metrics["items/s"] = metrics["GB/s"] * 1e9 / chunk / 1e6
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_scenario(scenario(args.chunk, args.mib, args.rounds))


if __name__ == "__main__":
    main()
