"""Ring files: how long opening one takes, and records written to disk against
the persistent queues Python users pick (persist-queue, queuelib).

ring-file-attach: microseconds to open (and, separately, to close) a 1 MiB
ring file: ``aring.attach(path)`` (open, check the file and its geometry, map
it twice, open its FIFOs, reclaim dead owners) and ``Ring(capacity, path=)`` of
an existing file; beside them a new in-memory ring (memfd) and, as the floor,
``open`` + ``mmap`` + ``close`` of the same file.

records-1024-durable: 1 KiB records, each on disk before the next (the
producer alone: no consumer anywhere).  aring: ``RecordRing(path=,
flush_every=0)``, one ``send_nowait`` = msync of the ring file.  persist-queue's
SQLiteQueue (``auto_commit=True``: one SQLite commit per put, WAL);
persist-queue's file Queue and queuelib's FifoDiskQueue with an ``os.fsync`` of
their data file after each put, since neither syncs per item on its own.
Rows ``flush_every=0.01`` and ``None`` show what the policy costs.

records-1024-page-cache: the same without syncing: what survives a killed
process, not a power cut (queuelib keeps its index in memory until close, so
a killed process loses its queue).

Run: python benchmarks/persistent.py [--records 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import tempfile
import time
from collections.abc import Callable

from _common import Row, Scenario, add_ratios, cpu_seconds, interleave, print_scenario

import aring

RECORD = 1024


def _fresh_dir() -> str:
    return tempfile.mkdtemp(prefix="aring-bench-", dir=os.environ.get("ARING_BENCH_DIR"))


def attach_scenario(
    rounds: int, opens: int, progress: Callable[[str], None] | None = None
) -> Scenario:
    directory = _fresh_dir()
    path = os.path.join(directory, "q.ring")
    aring.Ring(1 << 20, path=path).close()

    def measure(open_: Callable[[], object], close: Callable[[object], None]) -> dict[str, float]:
        opened = closed = 0.0
        for _ in range(opens):
            start = time.perf_counter()
            thing = open_()
            middle = time.perf_counter()
            close(thing)
            opened += middle - start
            closed += time.perf_counter() - middle
        return {"open µs": opened / opens * 1e6, "close µs": closed / opens * 1e6}

    def plain_map() -> object:
        fd = os.open(path, os.O_RDWR)
        try:
            return mmap.mmap(fd, 0)
        finally:
            os.close(fd)

    cases = {
        "aring.attach (1 MiB file)": (
            "aring",
            lambda: measure(lambda: aring.attach(path), lambda r: r.close()),  # type: ignore[attr-defined]
        ),
        "aring.Ring(path=) reopen": (
            "aring",
            lambda: measure(lambda: aring.Ring(1 << 20, path=path), lambda r: r.close()),  # type: ignore[attr-defined]
        ),
        "aring.Ring in memory (memfd)": (
            "aring",
            lambda: measure(lambda: aring.Ring(1 << 20), lambda r: r.close()),  # type: ignore[attr-defined]
        ),
        "open + mmap (1 MiB file)": ("limit", lambda: measure(plain_map, lambda m: m.close())),  # type: ignore[attr-defined]
    }
    try:
        rows = interleave(cases, rounds, progress)
    finally:
        shutil.rmtree(directory)
    add_ratios(rows, {"aring.attach (1 MiB file)": "open + mmap (1 MiB file)"}, ["open µs"])
    return Scenario(
        key="ring-file-attach",
        title=f"opening a 1 MiB ring file ({opens} opens per round)",
        metrics={"open µs": "µs per open", "close µs": "µs per close"},
        higher_is_better={"open µs": False, "close µs": False},
        rows=rows,
        notes=[
            "open: aring.attach checks the file (owner, mode, magic, version, checksum, size, "
            "every cursor), maps it twice, opens its 2 FIFOs and reclaims dead owners; "
            "the limit row only opens and maps the file once",
        ],
    )


def _aring_writer(directory: str, count: int, flush_every: float | None) -> Callable[[], None]:
    ring = aring.RecordRing(
        (count + 1) * (RECORD + 16), path=os.path.join(directory, "r.ring"), flush_every=flush_every
    )
    writer = ring.writer()
    record = os.urandom(RECORD)

    def run() -> None:
        for _ in range(count):
            writer.send_nowait(record)
        writer.close()
        ring.close()

    return run


def _sqlite_writer(directory: str, count: int, _sync: bool) -> Callable[[], None]:
    import persistqueue

    queue = persistqueue.SQLiteQueue(os.path.join(directory, "sq"), auto_commit=True)
    record = os.urandom(RECORD)

    def run() -> None:
        for _ in range(count):
            queue.put(record)

    return run


def _persist_file_writer(directory: str, count: int, sync: bool) -> Callable[[], None]:
    import persistqueue

    queue = persistqueue.Queue(os.path.join(directory, "fq"), tempdir=directory)
    record = os.urandom(RECORD)

    def run() -> None:
        for _ in range(count):
            queue.put(record)
            if sync:
                os.fsync(queue.headf.fileno())

    return run


def _queuelib_writer(directory: str, count: int, sync: bool) -> Callable[[], None]:
    from queuelib import FifoDiskQueue

    queue = FifoDiskQueue(os.path.join(directory, "ql"))
    record = os.urandom(RECORD)

    def run() -> None:
        for _ in range(count):
            queue.push(record)
            if sync:
                os.fsync(queue.headf.fileno())
        queue.close()

    return run


def _floor_writer(directory: str, count: int, _sync: bool) -> Callable[[], None]:
    """The floor: 1 KiB written in place into a preallocated file, then fdatasync."""
    fd = os.open(os.path.join(directory, "floor"), os.O_RDWR | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, count * RECORD)
    os.fsync(fd)
    record = os.urandom(RECORD)

    def run() -> None:
        for i in range(count):
            os.pwrite(fd, record, i * RECORD)
            os.fdatasync(fd)
        os.close(fd)

    return run


def _measured(make: Callable[[str], Callable[[], None]], count: int) -> dict[str, float]:
    directory = _fresh_dir()
    try:
        run = make(directory)  # set-up (files made, queue opened) is not timed
        cpu0, start = cpu_seconds(), time.perf_counter()
        run()
        elapsed, used = time.perf_counter() - start, cpu_seconds() - cpu0
    finally:
        shutil.rmtree(directory)
    megabytes = count * RECORD / 1e6
    return {
        "MB/s": megabytes / elapsed,
        "records/s": count / elapsed,
        "CPU ms/MB": used / megabytes * 1e3,
    }


def records_scenario(
    durable: bool, count: int, rounds: int, progress: Callable[[str], None] | None = None
) -> Scenario:
    def case(make: Callable[[str], Callable[[], None]]) -> Callable[[], dict[str, float]]:
        return lambda: _measured(make, count)

    cases: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {}
    if durable:
        cases["aring flush_every=0"] = ("aring", case(lambda d: _aring_writer(d, count, 0)))
        cases["aring flush_every=0.01"] = ("aring", case(lambda d: _aring_writer(d, count, 0.01)))
        cases["aring flush_every=None"] = ("aring", case(lambda d: _aring_writer(d, count, None)))
    else:
        cases["aring"] = ("aring", case(lambda d: _aring_writer(d, count, None)))
    peers = {}
    try:
        import persistqueue  # noqa: F401

        if durable:
            peers["persist-queue SQLiteQueue"] = lambda d: _sqlite_writer(d, count, True)
        peers["persist-queue Queue" + (" + fsync" if durable else "")] = lambda d: (
            _persist_file_writer(d, count, durable)
        )
    except ImportError:
        pass
    try:
        import queuelib  # noqa: F401

        peers["queuelib FifoDiskQueue" + (" + fsync" if durable else "")] = lambda d: (
            _queuelib_writer(d, count, durable)
        )
    except ImportError:
        pass
    for name, make in peers.items():
        cases[name] = ("peer", case(make))
    if durable:
        cases["pwrite + fdatasync (the floor)"] = (
            "limit",
            case(lambda d: _floor_writer(d, count, True)),
        )
    rows: list[Row] = interleave(cases, rounds, progress)
    mine = "aring flush_every=0" if durable else "aring"
    for peer in peers:
        add_ratios(rows, {mine: peer}, ["MB/s", "CPU ms/MB"])
    what = "each on disk (synced) before the next" if durable else "page cache, no sync"
    return Scenario(
        key="records-1024-durable" if durable else "records-1024-page-cache",
        title=f"1 KiB records into a persistent queue, {what} ({count} per round)",
        metrics={"MB/s": "MB/s", "records/s": "records/s", "CPU ms/MB": "CPU ms/MB"},
        higher_is_better={"MB/s": True, "records/s": True, "CPU ms/MB": False},
        rows=rows,
        notes=[
            "like for like: one producer, one put per 1 KiB record, no consumer; "
            + (
                "every row makes each record durable before the next: aring msyncs its file, "
                "SQLiteQueue commits (WAL), the file queues get an os.fsync of their data file; "
                "the flush_every=0.01 and None rows show aring's policy costs; the floor row "
                "writes 1 KiB in place into a preallocated file and fdatasyncs it: one device "
                "flush per record, which no durable queue can beat"
                if durable
                else "nothing is synced: every row survives a killed process but not a power cut, "
                "except queuelib, whose index lives in memory until close"
            ),
            "files on the benchmark machine's disk (ext4 on a virtual disk); persist-queue "
            "pickles each record, queuelib and aring take the bytes",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_scenario(attach_scenario(args.rounds, 200))
    print_scenario(records_scenario(True, args.records, args.rounds))
    print_scenario(records_scenario(False, args.records * 20, args.rounds))


if __name__ == "__main__":
    main()
