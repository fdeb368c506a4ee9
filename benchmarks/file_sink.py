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


def aring_pump(total: int, counts: dict[str, int], path: str, thread: bool) -> int:
    src = memoryview(os.urandom(PIECE))

    async def main() -> int:
        stats = aring.TransferStats()
        with _overwrite(path) as f:
            async with aring.open(RING) as (writer, reader), anyio.create_task_group() as tg:
                if thread:

                    def produce_in_thread() -> None:
                        send = writer.sync.send
                        for _ in range(total // PIECE):
                            send(src)
                        writer.close()

                    producer = threading.Thread(target=produce_in_thread)
                    producer.start()
                else:

                    async def produce() -> None:
                        async with writer:
                            for _ in range(total // PIECE):
                                await writer.send(src)

                    tg.start_soon(produce)
                await aring.pump(reader, f, stats=stats)
                if thread:
                    producer.join()
        counts["writes"] = stats.syscalls
        return stats.bytes

    return anyio.run(main)  # type: ignore[no-any-return]


def aring_one_thread(total: int, counts: dict[str, int], path: str) -> int:
    """The two-write ring's job on aring's ring: the same flushes, one write each."""
    src = memoryview(os.urandom(PIECE))
    writes = written = pending = 0
    with aring.Ring(RING) as ring, _overwrite(path) as fd:
        w, r = ring.writer(), ring.reader()
        for _ in range(total // PIECE):
            w.try_write(src)  # fits: at most half the ring is pending
            pending += PIECE
            if pending >= RING // 2:  # flush what is there, as the two-write ring does
                view = r.try_peek(1)
                assert view is not None
                n = os.write(fd, view)
                r.consume(n)
                written += n
                writes += 1
                pending -= n
    counts["writes"] = writes
    return written


def split_ring(total: int, counts: dict[str, int], path: str) -> int:
    """A ring in one N-byte buffer: a region that crosses the end takes two writes."""
    src = memoryview(os.urandom(PIECE))
    buffer = bytearray(RING)
    view = memoryview(buffer)
    writes = written = position = 0
    with _overwrite(path) as fd:
        pending = 0
        for _ in range(total // PIECE):
            at = position % RING
            first = min(PIECE, RING - at)
            view[at : at + first] = src[:first]
            view[: PIECE - first] = src[first:]
            position += PIECE
            pending += PIECE
            if pending >= RING // 2:  # flush what is there, as a consumer would
                start = (position - pending) % RING
                end = start + pending
                if end <= RING:
                    written += os.write(fd, view[start:end])
                    writes += 1
                else:
                    written += os.write(fd, view[start:])
                    written += os.write(fd, view[: end - RING])
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
            ("aring ring, one thread", "aring", partial(aring_one_thread, path=path)),
            ("two-write ring", "peer", partial(split_ring, path=path)),
            ("write per piece", "peer", partial(plain_write, path=path)),
        ]:

            def case(fn=fn):  # type: ignore[no-untyped-def]
                counts: dict[str, int] = {}
                metrics = timed(lambda: fn(total, counts))
                metrics["writes/GB"] = counts["writes"] / (total / 1e9)
                return metrics

            cases[f"{name} ({place})"] = (kind, case)
    try:
        rows = interleave(cases, rounds, progress)
    finally:
        for path in files.values():
            os.unlink(path)
    for place in places:
        for producer in ("thread", "task"):
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
            "is a thread (sync.send) or a task (await send) and its writer the pump's worker",
            "aring pump: exactly one write per region (tests/test_io.py checks it with strace); "
            "the two-write ring flushes every half ring, splitting at the wrap; 'aring ring, "
            "one thread' does the two-write ring's job on aring's double-mapped ring in the "
            "same thread (try_write per piece, one write per flush): like for like with it",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_scenario(scenario(args.mib, args.rounds))


if __name__ == "__main__":
    main()
