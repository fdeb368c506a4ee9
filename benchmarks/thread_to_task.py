"""Thread -> task hand-over: a blocking producer thread, an async consumer.

The producer thread copies each piece from a source block (one copy in); the
consumer only takes each piece's length (no consumer touches the bytes, aring's
or a peer's).  Every buffer holds the same bytes: the ring has RING_CAPACITY
bytes, a peer's queue RING_CAPACITY // CHUNK pieces (``call_soon_threadsafe``'s
unbounded queue is bounded by a semaphore of as many slots).

Two families per loop, each compared only within itself; in both the thread
makes one call per piece (janus and culsans have no batched put):

one await per piece in the task:
  aring                  writer.sync.send(piece) / await reader.peek(chunk) + consume(chunk)
  janus, culsans         sync_q.put(bytes(piece)) / await async_q.get()
  call_soon_threadsafe   loop.call_soon_threadsafe(queue.put_nowait, bytes(piece)) /
                         await queue.get()

one await per batch in the task (it then takes everything already there):
  aring-batch            writer.sync.send(piece) / one await reader.peek() takes all readable
  janus-batch, ...       the same puts / one await get(), then get_nowait() until empty

plus aring-reserve-batch (aring only, no ratio: no peer can batch the thread's
side): writer.sync.reserve hands out all free space, the thread fills every
piece that fits and commits them at once; the task takes all readable.
aring also runs on trio (per piece and batched); janus and culsans need asyncio.

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
RING_CAPACITY = 1 << 20
PEERS = ("janus", "culsans", "call_soon_threadsafe")


def peer_items(chunk: int) -> int:
    """A peer queue's size in pieces: the ring's bytes."""
    return max(1, RING_CAPACITY // chunk)


def aring_reserve_case(
    src: memoryview, total: int, options: dict[str, bool]
) -> tuple[int, float]:
    """The producer fills every piece that fits in one reserve(), then commits them at once."""

    async def main() -> tuple[int, float]:
        got = 0
        chunk = len(src)
        start = time.perf_counter()
        async with aring.open(RING_CAPACITY) as (writer, reader):

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
    src: memoryview, total: int, backend: str, options: dict[str, bool], batch: bool = True
) -> tuple[int, float]:
    """sync.send per piece; the task peeks one piece per await, or (batch) all readable."""

    async def main() -> tuple[int, float]:
        got = 0
        chunk = len(src)
        want = 1 if batch else chunk
        start = time.perf_counter()
        async with aring.open(RING_CAPACITY) as (writer, reader):

            def produce() -> None:
                with writer:
                    for _ in range(total // chunk):
                        writer.sync.send(src)

            thread = threading.Thread(target=produce)
            thread.start()
            while True:
                try:
                    view = await reader.peek(want)
                except anyio.EndOfStream:
                    break
                n = len(view) if batch else min(len(view), chunk)
                got += n
                reader.consume(n)
            thread.join()
        return got, time.perf_counter() - start

    return anyio.run(main, backend=backend, backend_options=options)  # type: ignore[no-any-return]


def queue_case(
    src: memoryview, total: int, kind: str, options: dict[str, bool], batch: bool = False
) -> tuple[int, float]:
    """put per piece in the thread; await get() per piece, or (batch) get_nowait after one."""

    async def main() -> tuple[int, float]:
        got = 0
        pieces = total // len(src)
        items = peer_items(len(src))
        release: Callable[[int], None] = lambda n: None  # noqa: E731
        if kind == "janus":
            import janus

            queue: janus.Queue[bytes | None] = janus.Queue(items)
            put, get, get_nowait = queue.sync_q.put, queue.async_q.get, queue.async_q.get_nowait
        elif kind == "culsans":
            import culsans

            cq: culsans.Queue[bytes | None] = culsans.Queue(items)
            put, get, get_nowait = cq.sync_q.put, cq.async_q.get, cq.async_q.get_nowait
        else:  # call_soon_threadsafe into an asyncio.Queue, bounded by a semaphore
            loop = asyncio.get_running_loop()
            aq: asyncio.Queue[bytes | None] = asyncio.Queue()
            slots = threading.Semaphore(items)

            def put(item: bytes | None) -> None:
                if item is not None:
                    slots.acquire()
                loop.call_soon_threadsafe(aq.put_nowait, item)

            get, get_nowait, release = aq.get, aq.get_nowait, slots.release

        def produce() -> None:
            for _ in range(pieces):
                put(bytes(src))
            put(None)

        start = time.perf_counter()
        thread = threading.Thread(target=produce)
        thread.start()
        if batch:
            done = False
            while not done and (piece := await get()) is not None:
                n, taken = len(piece), 1
                while True:
                    try:
                        piece = get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if piece is None:
                        done = True
                        break
                    n += len(piece)
                    taken += 1
                got += n
                release(taken)
        else:
            while (piece := await get()) is not None:
                got += len(piece)
                release(1)
        thread.join()
        if kind == "janus":
            await queue.aclose()
        return got, time.perf_counter() - start

    return anyio.run(main, backend="asyncio", backend_options=options)  # type: ignore[no-any-return]


def scenario(chunk: int, mib: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    src = memoryview(os.urandom(chunk))
    total = (mib << 20) // chunk * chunk

    def checked(work: Callable[[], tuple[int, float]]) -> dict[str, float]:
        def run() -> tuple[int, float]:
            moved, seconds = work()
            if moved != total:
                raise RuntimeError(f"moved {moved} of {total} bytes")
            return moved, seconds

        return timed(run)

    cases: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {}
    for loop, options in LOOPS.items():
        for batch, suffix in ((False, ""), (True, "-batch")):
            cases[f"aring{suffix}-{loop}"] = (
                "aring",
                lambda o=options, b=batch: checked(lambda: aring_case(src, total, "asyncio", o, b)),
            )
            for kind in PEERS:
                cases[f"{kind}{suffix}-{loop}"] = (
                    "peer",
                    lambda k=kind, o=options, b=batch: checked(
                        lambda: queue_case(src, total, k, o, b)
                    ),
                )
        cases[f"aring-reserve-batch-{loop}"] = (
            "aring",
            lambda o=options: checked(lambda: aring_reserve_case(src, total, o)),
        )
    cases["aring-trio"] = (
        "aring", lambda: checked(lambda: aring_case(src, total, "trio", {}, False))
    )
    cases["aring-batch-trio"] = (
        "aring", lambda: checked(lambda: aring_case(src, total, "trio", {}, True))
    )
    rows = interleave(cases, rounds, progress)
    for loop in LOOPS:
        for suffix in ("", "-batch"):
            for kind in PEERS:
                add_ratios(rows, {f"aring{suffix}-{loop}": f"{kind}{suffix}-{loop}"}, ["GB/s"])
    size = f"{chunk // 1024} KiB" if chunk >= 1024 else f"{chunk} B"
    return Scenario(
        key=f"thread-to-task-{chunk}",
        title=f"thread -> task, {size} pieces ({mib} MiB per round)",
        metrics={"GB/s": "GB/s", "CPU s/GB": "CPU s/GB"},
        higher_is_better={"GB/s": True, "CPU s/GB": False},
        rows=rows,
        notes=[
            "like for like: the thread makes one call per piece in every paired row; the task "
            "makes one await per piece (rows without -batch) or one await per batch, then takes "
            "what is already there (-batch: aring's peek of all readable vs the peers' "
            "get_nowait until empty); ratios pair only rows of the same family and loop; every "
            f"buffer holds {RING_CAPACITY >> 20} MiB ({peer_items(chunk)} pieces); no consumer "
            "touches the bytes",
            "aring: writer.sync.send per piece, reader.peek(chunk)/consume(chunk) per piece; "
            "aring-batch: the same sends, the task peeks everything readable; "
            "aring-reserve-batch (no peer can match it, no ratio): writer.sync.reserve hands out "
            "all free space, the thread fills every piece that fits and commits them at once",
            "janus and culsans run on asyncio (and uvloop); aring also on trio; "
            "call_soon_threadsafe's queue is bounded by a threading.Semaphore of as many slots",
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
