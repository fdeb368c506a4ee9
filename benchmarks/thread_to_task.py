"""Thread -> task hand-over: a blocking producer thread, an async consumer.

The producer copies each piece from a source block; the consumer touches its
length.  aring: ``writer.sync.send`` in the thread, ``reader.peek``/``consume``
in the task.  Peers: janus and culsans queues, and ``call_soon_threadsafe``
into an ``asyncio.Queue`` (what code without a library does).

Run: python benchmarks/thread_to_task.py [--mib 256] [--chunk 65536] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Callable

import anyio
from _common import Scenario, add_ratios, interleave, print_scenario, timed

import aring

LOOPS = {"asyncio": {}, "uvloop": {"use_uvloop": True}}


def aring_batch_case(src: memoryview, total: int, options: dict[str, bool]) -> tuple[int, float]:
    """The producer fills every piece that fits in one reserve(), then commits them at once."""

    async def main() -> tuple[int, float]:
        got = 0
        chunk = len(src)
        start = time.perf_counter()
        async with aring.open(1 << 20) as (writer, reader):

            def produce() -> None:
                pieces = total // chunk
                with writer:
                    while pieces:
                        view = writer.sync.reserve(chunk)
                        fit = min(len(view) // chunk, pieces)
                        for i in range(fit):
                            view[i * chunk : (i + 1) * chunk] = src
                        writer.commit(fit * chunk)
                        pieces -= fit

            thread = threading.Thread(target=produce)
            thread.start()
            while True:
                try:
                    view = await reader.peek(1)
                except anyio.EndOfStream:
                    break
                got += len(view)
                reader.consume(len(view))
            thread.join()
        return got, time.perf_counter() - start

    return anyio.run(main, backend="asyncio", backend_options=options)  # type: ignore[no-any-return]


def aring_case(
    src: memoryview, total: int, backend: str, options: dict[str, bool]
) -> tuple[int, float]:
    async def main() -> tuple[int, float]:
        got = 0
        start = time.perf_counter()
        async with aring.open(1 << 20) as (writer, reader):

            def produce() -> None:
                with writer:
                    for _ in range(total // len(src)):
                        writer.sync.send(src)

            thread = threading.Thread(target=produce)
            thread.start()
            while True:
                try:
                    view = await reader.peek(1)
                except anyio.EndOfStream:
                    break
                got += len(view)
                reader.consume(len(view))
            thread.join()
        return got, time.perf_counter() - start

    return anyio.run(main, backend=backend, backend_options=options)  # type: ignore[no-any-return]


def queue_case(
    src: memoryview, total: int, kind: str, options: dict[str, bool]
) -> tuple[int, float]:
    async def main() -> tuple[int, float]:
        got = 0
        pieces = total // len(src)
        if kind == "janus":
            import janus

            queue: janus.Queue[bytes | None] = janus.Queue(64)
            put, get = queue.sync_q.put, queue.async_q.get
        elif kind == "culsans":
            import culsans

            cq: culsans.Queue[bytes | None] = culsans.Queue(64)
            put, get = cq.sync_q.put, cq.async_q.get
        else:  # call_soon_threadsafe into an unbounded asyncio.Queue
            loop = asyncio.get_running_loop()
            aq: asyncio.Queue[bytes | None] = asyncio.Queue()

            def put(item: bytes | None) -> None:
                loop.call_soon_threadsafe(aq.put_nowait, item)

            get = aq.get

        def produce() -> None:
            for _ in range(pieces):
                put(bytes(src))
            put(None)

        start = time.perf_counter()
        thread = threading.Thread(target=produce)
        thread.start()
        while (piece := await get()) is not None:
            got += len(piece)
        thread.join()
        return got, time.perf_counter() - start

    return anyio.run(main, backend="asyncio", backend_options=options)  # type: ignore[no-any-return]


def scenario(chunk: int, mib: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    src = memoryview(os.urandom(chunk))
    total = (mib << 20) // chunk * chunk
    cases: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {}
    for loop, options in LOOPS.items():
        cases[f"aring-{loop}"] = (
            "aring",
            lambda o=options: timed(lambda: aring_case(src, total, "asyncio", o)),
        )
        cases[f"aring-batch-{loop}"] = (
            "aring",
            lambda o=options: timed(lambda: aring_batch_case(src, total, o)),
        )
        for kind in ("janus", "culsans", "call_soon_threadsafe"):
            cases[f"{kind}-{loop}"] = (
                "peer",
                lambda k=kind, o=options: timed(lambda: queue_case(src, total, k, o)),
            )
    cases["aring-trio"] = ("aring", lambda: timed(lambda: aring_case(src, total, "trio", {})))
    rows = interleave(cases, rounds, progress)
    for loop in LOOPS:
        for name in (f"aring-{loop}", f"aring-batch-{loop}"):
            add_ratios(rows, {name: f"culsans-{loop}"}, ["GB/s"])
            add_ratios(rows, {name: f"janus-{loop}"}, ["GB/s"])
    size = f"{chunk // 1024} KiB" if chunk >= 1024 else f"{chunk} B"
    return Scenario(
        key=f"thread-to-task-{chunk}",
        title=f"thread -> task, {size} pieces ({mib} MiB per round)",
        metrics={"GB/s": "GB/s", "CPU s/GB": "CPU s/GB"},
        higher_is_better={"GB/s": True, "CPU s/GB": False},
        rows=rows,
        notes=[
            "aring: writer.sync.send per piece; aring-batch: writer.sync.reserve hands out all "
            "free space, the thread fills every piece that fits and commits them at once; the "
            "task peeks everything readable",
            "janus and culsans run on asyncio (and uvloop); aring also on trio",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_scenario(scenario(args.chunk, args.mib, args.rounds))


if __name__ == "__main__":
    main()
