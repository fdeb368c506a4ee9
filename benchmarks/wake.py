"""Wake-up latency: a thread signals, a sleeping task wakes; p50 and p99 in microseconds.

The thread waits ~0.5 ms between signals so the task is asleep each time, then
stamps ``perf_counter_ns`` and signals; the task measures when it runs again.
aring: ``writer.sync.send(stamp)`` -> ``await reader.receive()``; it sleeps on an
eventfd (``add_reader`` on asyncio/uvloop, ``trio.lowlevel.wait_readable`` on trio).
The like-for-like peer on each loop is the same mechanism without the ring: a raw
eventfd written by the thread and watched by ``loop.add_reader`` (asyncio,
uvloop) or awaited with ``trio.lowlevel.wait_readable`` (trio); every ratio pairs
rows on the same loop.  Other peers, shown without a ratio: ``call_soon_threadsafe``
into an ``asyncio.Queue`` (asyncio, uvloop), ``TrioToken.run_sync_soon`` into a
memory channel (trio).

Run: python benchmarks/wake.py [-n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import struct
import threading
import time
from collections.abc import Callable

import anyio
from _common import Scenario, add_ratios, interleave, print_scenario

import aring

STAMP = struct.Struct("<q")
GAP = 0.0005


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples.sort()
    return {
        "p50 us": statistics.median(samples),
        "p99 us": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    }


def aring_wake(n: int, backend: str, options: dict[str, bool]) -> dict[str, float]:
    async def main() -> list[float]:
        latencies: list[float] = []
        async with aring.open(4096) as (writer, reader):

            def signal() -> None:
                for _ in range(n):
                    time.sleep(GAP)
                    writer.sync.send(STAMP.pack(time.perf_counter_ns()))

            thread = threading.Thread(target=signal)
            thread.start()
            for _ in range(n):
                data = await reader.receive(STAMP.size)
                latencies.append((time.perf_counter_ns() - STAMP.unpack(data)[0]) / 1000)
            thread.join()
        return latencies

    return _percentiles(anyio.run(main, backend=backend, backend_options=options))


def eventfd_wake(n: int, options: dict[str, bool]) -> dict[str, float]:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        stamps: list[int] = []
        latencies: list[float] = []
        signals = 0
        waiter: asyncio.Future[None] | None = None

        def on_readable() -> None:
            nonlocal signals
            signals += os.eventfd_read(fd)  # the counter: several signals, one read
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        loop.add_reader(fd, on_readable)

        def signal() -> None:
            for _ in range(n):
                time.sleep(GAP)
                stamps.append(time.perf_counter_ns())
                os.eventfd_write(fd, 1)

        thread = threading.Thread(target=signal)
        thread.start()
        for i in range(n):
            while signals <= i:  # counted, so no signal is lost between waits
                waiter = loop.create_future()
                await waiter
                waiter = None
            latencies.append((time.perf_counter_ns() - stamps[i]) / 1000)
        thread.join()
        loop.remove_reader(fd)
        os.close(fd)
        return latencies

    return _percentiles(anyio.run(main, backend="asyncio", backend_options=options))


def threadsafe_wake(n: int, options: dict[str, bool]) -> dict[str, float]:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int] = asyncio.Queue()
        latencies: list[float] = []

        def signal() -> None:
            for _ in range(n):
                time.sleep(GAP)
                loop.call_soon_threadsafe(queue.put_nowait, time.perf_counter_ns())

        thread = threading.Thread(target=signal)
        thread.start()
        for _ in range(n):
            stamp = await queue.get()
            latencies.append((time.perf_counter_ns() - stamp) / 1000)
        thread.join()
        return latencies

    return _percentiles(anyio.run(main, backend="asyncio", backend_options=options))


def trio_eventfd_wake(n: int) -> dict[str, float]:
    """The thread writes an eventfd; the task awaits it with trio.lowlevel.wait_readable."""
    import trio

    async def main() -> list[float]:
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        stamps: list[int] = []
        latencies: list[float] = []
        signals = 0

        def signal() -> None:
            for _ in range(n):
                time.sleep(GAP)
                stamps.append(time.perf_counter_ns())
                os.eventfd_write(fd, 1)

        thread = threading.Thread(target=signal)
        thread.start()
        try:
            for i in range(n):
                while signals <= i:  # counted, so no signal is lost between waits
                    await trio.lowlevel.wait_readable(fd)
                    with contextlib.suppress(BlockingIOError):  # woken, then nothing to read
                        signals += os.eventfd_read(fd)  # several signals, one read
                latencies.append((time.perf_counter_ns() - stamps[i]) / 1000)
        finally:
            thread.join()
            os.close(fd)
        return latencies

    return _percentiles(trio.run(main))


def trio_token_wake(n: int) -> dict[str, float]:
    import trio

    async def main() -> list[float]:
        token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[int](n)
        latencies: list[float] = []

        def signal() -> None:
            for _ in range(n):
                time.sleep(GAP)
                token.run_sync_soon(send.send_nowait, time.perf_counter_ns())

        thread = threading.Thread(target=signal)
        thread.start()
        for _ in range(n):
            stamp = await receive.receive()
            latencies.append((time.perf_counter_ns() - stamp) / 1000)
        thread.join()
        return latencies

    return _percentiles(trio.run(main))


def scenario(n: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    uv = {"use_uvloop": True}
    cases: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {
        "aring-asyncio": ("aring", lambda: aring_wake(n, "asyncio", {})),
        "eventfd+add_reader-asyncio": ("peer", lambda: eventfd_wake(n, {})),
        "call_soon_threadsafe-asyncio": ("peer", lambda: threadsafe_wake(n, {})),
        "aring-uvloop": ("aring", lambda: aring_wake(n, "asyncio", uv)),
        "eventfd+add_reader-uvloop": ("peer", lambda: eventfd_wake(n, uv)),
        "call_soon_threadsafe-uvloop": ("peer", lambda: threadsafe_wake(n, uv)),
        "aring-trio": ("aring", lambda: aring_wake(n, "trio", {})),
        "eventfd+wait_readable-trio": ("peer", lambda: trio_eventfd_wake(n)),
        "trio token-trio": ("peer", lambda: trio_token_wake(n)),
    }
    rows = interleave(cases, rounds, progress)
    for loop in ("asyncio", "uvloop"):
        add_ratios(rows, {f"aring-{loop}": f"eventfd+add_reader-{loop}"}, ["p50 us", "p99 us"])
    add_ratios(rows, {"aring-trio": "eventfd+wait_readable-trio"}, ["p50 us", "p99 us"])
    return Scenario(
        key="wake-latency",
        title=f"wake-up latency, thread signal -> sleeping task ({n} wakeups per round)",
        metrics={"p50 us": "p50 us", "p99 us": "p99 us"},
        higher_is_better={"p50 us": False, "p99 us": False},
        rows=rows,
        notes=[
            "like for like: each aring row is paired with a raw eventfd on the same loop, "
            "written by the thread and awaited the way aring awaits (add_reader on asyncio/"
            "uvloop, trio.lowlevel.wait_readable on trio); call_soon_threadsafe and trio token "
            "rows are other peers, shown without a ratio",
            "aring's path includes the data: an 8-byte send and a receive; the eventfd peers "
            "pass the stamp through a list",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_scenario(scenario(args.n, args.rounds))


if __name__ == "__main__":
    main()
