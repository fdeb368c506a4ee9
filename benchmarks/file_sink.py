"""File sink: bytes from a ring to a regular file, syscalls per GB and GB/s.

aring: ``pump(reader, file)``, one ``os.write`` per contiguous ring region (the
double mapping never splits one), from its worker thread; the pieces come from
a producer thread (``writer.sync.send``, the recorder's shape) or from a task
(``await writer.send``).  Peers: a plain ring (one N-byte buffer) that must
split a region at the wrap into two writes, and a plain ``os.write`` of each
piece, both synchronous in one thread.  Each to a file on the disk (the temp
directory) and on tmpfs (/dev/shm), written once before the rounds and then
overwritten in place by every case: on a VM whose host reclaims freed guest
memory, a write into new page-cache pages pays host page faults (0.4-0.9 CPU
s/GB here, varying from run to run, against 0.17 for an overwrite) that would
swamp the sink's own cost and fall on whichever case comes first.  CPU is the
whole process's.

Run: python benchmarks/file_sink.py [--mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from functools import partial

import anyio
from _common import Scenario, add_ratios, interleave, print_scenario, timed

import aring

PIECE = 48 << 10  # not a divisor of the ring: regions wrap at every position
RING = 1 << 20


@contextlib.contextmanager
def _overwrite(path: str) -> Iterator[int]:
    """The pre-written file, opened for writing from its start (not truncated)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def aring_pump(
    total: int, counts: dict[str, int], path: str, thread: bool,
    ring_size: int = RING, piece: int = PIECE, sync: aring.FileSync | None = None,
    checkpoints: aring.Checkpoints = "always",
) -> int:
    src = memoryview(os.urandom(piece))

    async def main() -> int:
        stats = aring.TransferStats()
        with _overwrite(path) as f:
            async with aring.open(ring_size, checkpoints=checkpoints) as (
                writer, reader
            ), anyio.create_task_group() as tg:
                if thread:

                    def produce_in_thread() -> None:
                        send = writer.sync.send
                        for _ in range(total // piece):
                            send(src)
                        writer.close()

                    producer = threading.Thread(target=produce_in_thread)
                    producer.start()
                else:

                    async def produce() -> None:
                        async with writer:
                            for _ in range(total // piece):
                                await writer.send(src)

                    tg.start_soon(produce)
                await aring.pump(reader, f, stats=stats, sync=sync)
                if thread:
                    producer.join()
        counts["writes"] = stats.syscalls
        return stats.bytes

    return anyio.run(main)  # type: ignore[no-any-return]


def aring_one_thread(
    total: int, counts: dict[str, int], path: str,
    ring_size: int = RING, piece: int = PIECE, flush_at: int = RING // 2,
) -> int:
    """The two-write ring's job on aring's ring: the same flushes, one write each."""
    src = memoryview(os.urandom(piece))
    writes = written = pending = 0
    with aring.Ring(ring_size) as ring, _overwrite(path) as fd:
        w, r = ring.writer(), ring.reader()
        for _ in range(total // piece):
            w.try_write(src)  # fits: a flush leaves room for a piece
            pending += piece
            if pending >= flush_at:  # flush what is there, as the two-write ring does
                view = r.try_peek(1)
                assert view is not None
                n = os.write(fd, view)
                r.consume(n)
                written += n
                writes += 1
                pending -= n
    counts["writes"] = writes
    return written


def split_ring(
    total: int, counts: dict[str, int], path: str,
    ring_size: int = RING, piece: int = PIECE, flush_at: int = RING // 2,
) -> int:
    """A ring in one N-byte buffer: a region that crosses the end takes two writes."""
    src = memoryview(os.urandom(piece))
    buffer = bytearray(ring_size)
    view = memoryview(buffer)
    writes = written = position = 0
    with _overwrite(path) as fd:
        pending = 0
        for _ in range(total // piece):
            at = position % ring_size
            first = min(piece, ring_size - at)
            view[at : at + first] = src[:first]
            view[: piece - first] = src[first:]
            position += piece
            pending += piece
            if pending >= flush_at:  # flush what is there, as a consumer would
                start = (position - pending) % ring_size
                end = start + pending
                if end <= ring_size:
                    written += os.write(fd, view[start:end])
                    writes += 1
                else:
                    written += os.write(fd, view[start:])
                    written += os.write(fd, view[: end - ring_size])
                    writes += 2
                pending = 0
    counts["writes"] = writes
    return written


def plain_write(total: int, counts: dict[str, int], path: str) -> int:
    src = os.urandom(PIECE)
    with _overwrite(path) as fd:
        for _ in range(total // PIECE):
            os.write(fd, src)
    counts["writes"] = total // PIECE
    return total // PIECE * PIECE


def _run_cases(cases, total: int, rounds: int, progress):  # type: ignore[no-untyped-def]
    """Interleaved rounds of ``{name: (kind, fn(total, counts))}``, with write(2) calls per GB."""

    def measured(fn):  # type: ignore[no-untyped-def]
        def case():  # type: ignore[no-untyped-def]
            counts: dict[str, int] = {}
            metrics = timed(lambda: fn(total, counts))
            metrics["writes/GB"] = counts["writes"] / (total / 1e9)
            return metrics

        return case

    return interleave({name: (kind, measured(fn)) for name, (kind, fn) in cases.items()},
                      rounds, progress)


def scenario(mib: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    total = (mib << 20) // PIECE * PIECE
    places = {"disk": None, "tmpfs": "/dev/shm"} if os.path.isdir("/dev/shm") else {"disk": None}
    files = {}
    for place, where in places.items():
        handle, files[place] = tempfile.mkstemp(prefix="aring-file-sink-", dir=where)
        with os.fdopen(handle, "wb") as f:  # written once: the rounds overwrite cached pages
            block = bytes(1 << 20)
            for _ in range(-(-total // len(block))):
                f.write(block)
    cases = {}
    for place, path in files.items():
        for name, kind, fn in [
            ("aring, producer thread", "aring", partial(aring_pump, path=path, thread=True)),
            ("aring, producer task", "aring", partial(aring_pump, path=path, thread=False)),
            ("aring, producer task, budget", "aring",
             partial(aring_pump, path=path, thread=False, checkpoints="budget")),
            ("aring ring, one thread", "aring", partial(aring_one_thread, path=path)),
            ("two-write ring", "peer", partial(split_ring, path=path)),
            ("write per piece", "peer", partial(plain_write, path=path)),
        ]:

            cases[f"{name} ({place})"] = (kind, fn)
    try:
        rows = _run_cases(cases, total, rounds, progress)
    finally:
        for path in files.values():
            os.unlink(path)
    for place in places:
        for producer in ("thread", "task", "task, budget"):
            ours = f"aring, producer {producer} ({place})"
            add_ratios(rows, {ours: f"two-write ring ({place})"}, ["GB/s", "writes/GB"])
            add_ratios(rows, {ours: f"write per piece ({place})"}, ["GB/s"])
        same_job = f"aring ring, one thread ({place})"
        add_ratios(rows, {same_job: f"two-write ring ({place})"}, ["GB/s", "writes/GB"])
    return Scenario(
        key="file-sink",
        title=f"file sink, {PIECE >> 10} KiB pieces through a {RING >> 20} MiB ring ({mib} MiB)",
        metrics={"GB/s": "GB/s", "writes/GB": "write(2) per GB", "CPU s/GB": "CPU s/GB"},
        higher_is_better={"GB/s": True, "writes/GB": False, "CPU s/GB": False},
        rows=rows,
        notes=[
            "what it measures: 48 KiB pieces copied into a 1 MiB ring and written over a "
            "file already in the page cache (on disk, and on tmpfs); GB/s, write(2) calls and "
            "the whole "
            "process's CPU per GB; the peers are synchronous in one thread, aring's producer "
            "is a thread (sync.send) or a task (await send; 'budget': a ring opened with "
            "checkpoints='budget', a loop pass only to wait or once per 64 calls) and its "
            "writer the pump's worker",
            "aring pump: exactly one write per region (tests/test_io.py checks it with strace); "
            "the two-write ring flushes every half ring, splitting at the wrap; 'aring ring, "
            "one thread' does the two-write ring's job on aring's double-mapped ring in the "
            "same thread (try_write per piece, one write per flush): like for like with it",
        ],
    )


SMALL_RING = 64 << 10
SMALL_PIECE = 12 << 10  # not a divisor of the ring: flushes start at every offset


def wraps_scenario(mib: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    """write(2) calls per GB where the wrap is frequent: a 64 KiB ring."""
    total = (mib << 20) // SMALL_PIECE * SMALL_PIECE
    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    handle, path = tempfile.mkstemp(prefix="aring-file-sink-", dir=where)
    with os.fdopen(handle, "wb") as f:
        f.write(bytes(total))
    small = {"ring_size": SMALL_RING, "piece": SMALL_PIECE}
    cases = {}
    for label, flush_at in [("half", SMALL_RING // 2), ("full", SMALL_RING - SMALL_PIECE)]:
        for name, kind, fn in [
            ("aring ring, one thread", "aring", aring_one_thread),
            ("two-write ring", "peer", split_ring),
        ]:
            cases[f"{name}, flush at {label}"] = (
                kind, partial(fn, path=path, flush_at=flush_at, **small)
            )
    cases["aring pump, producer thread"] = (
        "aring", partial(aring_pump, path=path, thread=True, **small)
    )

    try:
        rows = _run_cases(cases, total, rounds, progress)
    finally:
        os.unlink(path)
    for label in ("half", "full"):
        add_ratios(rows, {f"aring ring, one thread, flush at {label}":
                          f"two-write ring, flush at {label}"}, ["writes/GB", "GB/s"])
    return Scenario(
        key="file-sink-wraps",
        title=f"file sink, {SMALL_PIECE >> 10} KiB pieces through a {SMALL_RING >> 10} KiB ring "
              f"({mib} MiB, tmpfs)",
        metrics={"writes/GB": "write(2) per GB", "GB/s": "GB/s", "CPU s/GB": "CPU s/GB"},
        higher_is_better={"writes/GB": False, "GB/s": True, "CPU s/GB": False},
        rows=rows,
        notes=[
            "what it measures: the write(2) calls a ring sink makes when its region often "
            "crosses the end (a small ring); the same flush rule on both rings: when half the "
            "ring is pending, or when it is as full as a piece allows ('full'); aring pump "
            "writes whatever is readable each time its worker wakes",
            "the two-write ring splits a flush that crosses the end in two; aring's double "
            "mapping never does: the ratio is 1 / (1 + the share of flushes that cross the end)",
        ],
    )


DURABLE_EVERY = 64 << 20


def write_and_sync(total: int, counts: dict[str, int], path: str) -> int:
    """The peer: os.write per piece, fdatasync every DURABLE_EVERY bytes and at the end."""
    src = os.urandom(PIECE)
    writes = syncs = unsynced = 0
    with _overwrite(path) as fd:
        for _ in range(total // PIECE):
            os.write(fd, src)
            writes += 1
            unsynced += PIECE
            if unsynced >= DURABLE_EVERY:
                os.fdatasync(fd)
                syncs += 1
                unsynced = 0
        os.fdatasync(fd)
    counts["writes"] = writes
    return total // PIECE * PIECE


def direct_writes(total: int, counts: dict[str, int], path: str) -> int:
    """O_DIRECT: pieces gathered into 1 MiB page-aligned blocks, each written past the cache."""
    import mmap

    block = mmap.mmap(-1, RING)  # page-aligned, as O_DIRECT needs
    src = memoryview(os.urandom(PIECE))
    writes = 0
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        view = memoryview(block)
        filled = 0
        for _ in range(total // PIECE):
            first = min(PIECE, RING - filled)
            view[filled : filled + first] = src[:first]
            filled += first
            if filled == RING:
                os.write(fd, view)
                writes += 1
                filled = PIECE - first
                view[:filled] = src[first:]
        if filled:  # the tail: O_DIRECT needs whole blocks, so pad the last one
            os.write(fd, view[: -(-filled // 4096) * 4096])
            writes += 1
        os.fdatasync(fd)
    finally:
        os.close(fd)
        view.release()
        block.close()
    counts["writes"] = writes
    return total // PIECE * PIECE


def durable_scenario(mib: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    """To the disk with everything durable at the end, and what O_DIRECT would give."""
    total = (mib << 20) // PIECE * PIECE
    handle, path = tempfile.mkstemp(prefix="aring-file-sink-")
    with os.fdopen(handle, "wb") as f:
        block = bytes(1 << 20)
        for _ in range(-(-total // len(block))):
            f.write(block)
        os.fsync(f.fileno())
    every = aring.FileSync(every_bytes=DURABLE_EVERY)
    dropping = aring.FileSync(every_bytes=DURABLE_EVERY, drop_cache=True)
    cases = {
        "aring pump, sync every 64 MiB": (
            "aring", partial(aring_pump, path=path, thread=True, sync=every)),
        "aring pump, sync + drop cache": (
            "aring", partial(aring_pump, path=path, thread=True, sync=dropping)),
        "write per piece + fdatasync every 64 MiB": ("peer", partial(write_and_sync, path=path)),
        "O_DIRECT, 1 MiB aligned blocks": ("peer", partial(direct_writes, path=path)),
    }

    try:
        rows = _run_cases(cases, total, rounds, progress)
    finally:
        os.unlink(path)
    for ours in ("aring pump, sync every 64 MiB", "aring pump, sync + drop cache"):
        for peer in ("write per piece + fdatasync every 64 MiB", "O_DIRECT, 1 MiB aligned blocks"):
            add_ratios(rows, {ours: peer}, ["GB/s"])
    return Scenario(
        key="file-sink-durable",
        title=f"durable file sink: {PIECE >> 10} KiB pieces to the disk, synced ({mib} MiB)",
        metrics={"GB/s": "GB/s", "writes/GB": "write(2) per GB", "CPU s/GB": "CPU s/GB"},
        higher_is_better={"GB/s": True, "writes/GB": False, "CPU s/GB": False},
        rows=rows,
        notes=[
            "what it measures: GB/s until everything is on the disk (the clock stops after "
            "the last fdatasync), overwriting a file already on the disk; aring: pump with "
            "FileSync(every_bytes=64 MiB), and with drop_cache (posix_fadvise DONTNEED of "
            "each synced range); peers: os.write per piece with fdatasync every 64 MiB, and "
            "O_DIRECT writes of 1 MiB page-aligned blocks (what aring would do with O_DIRECT)",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("sink", "wraps", "durable"), default=None)
    args = parser.parse_args()
    if args.only in (None, "sink"):
        print_scenario(scenario(args.mib, args.rounds))
    if args.only in (None, "wraps"):
        print_scenario(wraps_scenario(args.mib, args.rounds))
    if args.only in (None, "durable"):
        print_scenario(durable_scenario(args.mib, args.rounds))


if __name__ == "__main__":
    main()
