"""Task -> task hand-over in one process: aring beside anyio's memory object stream.

Each case moves N MiB in CHUNK-byte pieces.  The producer makes every piece by
copying it from a source block (one copy, as a recv would); the consumer only
takes each piece's length (no consumer touches the bytes, aring's or a peer's).
Every buffer holds the same bytes: the ring has RING_CAPACITY bytes, a peer's
queue RING_CAPACITY // CHUNK pieces.  Rounds interleave the cases so machine
drift hits all alike; each figure is the median of the rounds with min-max.

Two families per backend (asyncio, uvloop, trio), each compared only within itself:

one call per piece (one await per piece on both sides):
  aring-send          writer.send(piece) / reader.receive(chunk): a copy in and a copy out
  aring-send-budget   the same calls on a ring with checkpoints="budget": each still a cancel
                      point, a yield to the loop only per 64 calls (or 1 ms) or to wait
  aring-view          writer.reserve + commit / reader.peek(chunk) + consume(chunk) per piece:
                      one copy in, zero out
  anyio-mem           anyio.create_memory_object_stream: send(bytes(piece)) / async for
  asyncio.Queue       (asyncio, uvloop) put(bytes(piece)) / get()
  trio-channel        (trio) trio.open_memory_channel: send(bytes(piece)) / async for

batched (one await per batch on both sides):
  aring-batch         one reserve() hands out all free space: the producer fills every piece
                      that fits and commits them at once; one peek() takes everything readable
  anyio-mem-batch     one await send(), then send_nowait until the buffer is full; one
                      await receive(), then receive_nowait until it is empty
  asyncio.Queue-batch the same with put/put_nowait and get/get_nowait
  trio-channel-batch  the same with a trio memory channel

plus memcpy, the limit: aring-batch's producer loop (one copy per piece into a
RING_CAPACITY buffer, memoryview slice assignment: one memcpy, no temporary) and
no hand-over.

Run: python benchmarks/inproc.py [--mib 256] [--chunk 65536] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import tracemalloc
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


def peer_items(chunk: int) -> int:
    """A peer queue's size in pieces: the ring's bytes."""
    return max(1, RING_CAPACITY // chunk)


def check_one_copy() -> None:
    """memcpy's slice assignment must not build a temporary (``bytearray[:] = view`` does)."""
    size = 1 << 20
    src, dst = memoryview(bytes(size)), memoryview(bytearray(size))
    tracemalloc.start()
    try:
        dst[:size] = src
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if peak >= size // 2:
        raise RuntimeError(f"memcpy copies twice: {peak} bytes allocated for a {size}-byte copy")


def case_memcpy(src: memoryview, total: int) -> int:
    """aring-batch's producer loop without the ring: one memcpy per piece, cycling one buffer."""
    chunk = len(src)
    dst = memoryview(bytearray(peer_items(chunk) * chunk))
    per_lap = len(dst) // chunk
    pieces = total // chunk
    while pieces:
        fit = min(per_lap, pieces)
        for i in range(fit):
            dst[i * chunk : (i + 1) * chunk] = src  # a memoryview target: one copy
        pieces -= fit
    return total // chunk * chunk


async def anyio_mem(src: memoryview, total: int) -> int:
    send, receive = anyio.create_memory_object_stream[bytes](peer_items(len(src)))
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


async def _send_batches(  # type: ignore[no-untyped-def]
    src: memoryview, pieces: int, send, send_nowait, full: type[Exception] | tuple[Any, ...]
) -> None:
    """One await per batch, as aring-batch's reserve(): send_nowait until the buffer is full."""
    item: bytes | None = None
    while pieces:
        await send(bytes(src) if item is None else item)
        pieces -= 1
        item = None
        while pieces:
            item = bytes(src)
            try:
                send_nowait(item)
            except full:
                break  # kept for the next await
            pieces -= 1
            item = None


async def _receive_batches(  # type: ignore[no-untyped-def]
    receive, receive_nowait, empty: tuple[Any, ...], end: type[Exception]
) -> int:
    """One await per batch, as aring-batch's peek(): receive_nowait until the buffer is empty."""
    got = 0
    while True:
        try:
            piece = await receive()
        except end:
            return got
        got += len(piece)
        while True:
            try:
                piece = receive_nowait()
            except empty:
                break
            got += len(piece)


async def anyio_mem_batch(src: memoryview, total: int) -> int:
    send, receive = anyio.create_memory_object_stream[bytes](peer_items(len(src)))

    async def produce() -> None:
        async with send:
            await _send_batches(src, total // len(src), send.send, send.send_nowait,
                                anyio.WouldBlock)

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        async with receive:
            return await _receive_batches(
                receive.receive, receive.receive_nowait,
                (anyio.WouldBlock, anyio.EndOfStream), anyio.EndOfStream,
            )


async def asyncio_queue(src: memoryview, total: int) -> int:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(peer_items(len(src)))
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


async def asyncio_queue_batch(src: memoryview, total: int) -> int:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(peer_items(len(src)))

    class End(Exception):
        pass

    async def produce() -> None:
        await _send_batches(src, total // len(src), queue.put, queue.put_nowait,
                            asyncio.QueueFull)
        await queue.put(None)

    async def get() -> bytes:
        if (piece := await queue.get()) is None:
            raise End
        return piece

    def get_nowait() -> bytes:
        if (piece := queue.get_nowait()) is None:
            raise End
        return piece

    task = asyncio.ensure_future(produce())
    got = await _receive_batches(get, get_nowait, (asyncio.QueueEmpty, End), End)
    await task
    return got


async def trio_channel(src: memoryview, total: int) -> int:
    import trio

    send, receive = trio.open_memory_channel[bytes](peer_items(len(src)))
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


async def trio_channel_batch(src: memoryview, total: int) -> int:
    import trio

    send, receive = trio.open_memory_channel[bytes](peer_items(len(src)))

    async def produce() -> None:
        async with send:
            await _send_batches(src, total // len(src), send.send, send.send_nowait,
                                trio.WouldBlock)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        async with receive:
            return await _receive_batches(
                receive.receive, receive.receive_nowait,
                (trio.WouldBlock, trio.EndOfChannel), trio.EndOfChannel,
            )


async def aring_send(src: memoryview, total: int, checkpoints: str = "always") -> int:
    got = 0
    chunk = len(src)
    async with aring.open(RING_CAPACITY, checkpoints=checkpoints) as (writer, reader):  # type: ignore[call-overload]

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
    """One await per piece on each side, zero-copy out: peek(chunk) + consume(chunk)."""
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
                    view = await reader.peek(chunk)
                except anyio.EndOfStream:
                    break
                n = min(len(view), chunk)  # one piece, though more may be readable
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


# (mode, case name without backend, function); per piece first, then batched.
async def aring_send_budget(src: memoryview, total: int) -> int:
    """aring-send with checkpoints="budget": the same calls, a yield per 64 calls or 1 ms."""
    return await aring_send(src, total, "budget")


PIECE_CASES = {
    "aring-send": aring_send,
    "aring-send-budget": aring_send_budget,
    "aring-view": aring_view,
    "anyio-mem": anyio_mem,
}
BATCH_CASES = {"aring-batch": aring_batch, "anyio-mem-batch": anyio_mem_batch}
NATIVE_PEERS = {  # the backend's own queue, per piece and batched
    "asyncio": {"asyncio.Queue": asyncio_queue, "asyncio.Queue-batch": asyncio_queue_batch},
    "trio": {"trio-channel": trio_channel, "trio-channel-batch": trio_channel_batch},
}


async def _timed_inside(case, src: memoryview, total: int) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    moved = await case(src, total)
    if moved != total:
        raise RuntimeError(f"{case.__name__} moved {moved} of {total} bytes")
    return moved, time.perf_counter() - start


def backend_cases(backend: str) -> dict[str, Callable[..., Any]]:
    """The backend's cases in display order: per piece, then batched."""
    native = NATIVE_PEERS[backend]
    piece = {name: fn for name, fn in native.items() if "batch" not in name}
    batch = {name: fn for name, fn in native.items() if "batch" in name}
    return {**PIECE_CASES, **piece, **BATCH_CASES, **batch}


def make_cases(src: memoryview, total: int) -> dict[str, tuple[str, Callable[[], Any]]]:
    cases: dict[str, tuple[str, Callable[[], Any]]] = {
        "memcpy": ("limit", lambda: case_memcpy(src, total))
    }
    for backend_name, (backend, options) in BACKENDS.items():
        for case_name, case in backend_cases(backend).items():

            def run(case=case, backend=backend, options=options):  # type: ignore[no-untyped-def]
                return anyio.run(_timed_inside, case, src, total, backend=backend,
                                 backend_options=options)

            kind = "aring" if case_name.startswith("aring") else "peer"
            cases[f"{case_name}-{backend_name}"] = (kind, run)
    return cases


def like_for_like() -> dict[str, list[str]]:
    """Each aring row -> the peer rows of its own family (per piece or batched), same backend."""
    pairs: dict[str, list[str]] = {}
    for backend_name, (backend, _) in BACKENDS.items():
        names = list(backend_cases(backend))
        for name in names:
            if name.startswith("aring"):
                mode = "batch" in name
                pairs[f"{name}-{backend_name}"] = [
                    f"{peer}-{backend_name}"
                    for peer in names
                    if not peer.startswith("aring") and ("batch" in peer) == mode
                ]
    return pairs


def scenario(chunk: int, mib: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    check_one_copy()
    src = memoryview(os.urandom(chunk))
    total = (mib << 20) // chunk * chunk
    cases = {
        name: (kind, (lambda work=work: _with_items(timed(work), chunk)))
        for name, (kind, work) in make_cases(src, total).items()
    }
    rows = interleave(cases, rounds, progress)
    for name, peers in like_for_like().items():
        for peer in peers:
            add_ratios(rows, {name: peer}, ["GB/s"])
    add_ratios(rows, {r.name: "memcpy" for r in rows if r.name.startswith("aring-batch")}, ["GB/s"])
    size = f"{chunk // 1024} KiB" if chunk >= 1024 else f"{chunk} B"
    return Scenario(
        key=f"task-to-task-{chunk}",
        title=f"task -> task, {size} pieces ({mib} MiB per round)",
        metrics={"GB/s": "GB/s", "items/s": "items/s (M)", "CPU s/GB": "CPU s/GB"},
        higher_is_better={"GB/s": True, "items/s": True, "CPU s/GB": False},
        rows=rows,
        notes=[
            "like for like: rows named *-batch take one await per batch on both sides, the "
            "others one await per piece; ratios only pair rows of the same family and backend; "
            f"every buffer holds {RING_CAPACITY >> 20} MiB ({peer_items(chunk)} pieces); one copy "
            "in per piece everywhere; no consumer touches the bytes",
            "aring-send: send/receive per piece (a copy out too); aring-send-budget: the same "
            "calls with checkpoints='budget' (a loop pass per 64 calls, not per call); "
            "aring-view: reserve/commit + "
            "peek(chunk)/consume(chunk) per piece; aring-batch: one reserve hands out all free "
            "space, pieces are filled and committed at once, one peek takes everything readable; "
            "peers' *-batch: one await, then send_nowait/put_nowait until full and "
            "receive_nowait/get_nowait until empty; asyncio.Queue's put/get do not suspend while "
            "there is room/data, so even its per-piece row switches tasks only when it fills or "
            "empties",
            "memcpy (the limit): aring-batch's producer loop into a buffer of the ring's size, "
            "one memcpy per piece (memoryview slice assignment, checked to make no temporary), "
            "no hand-over",
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
