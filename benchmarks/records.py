"""Records, thread -> thread: a RecordRing against the Python queues that carry messages.

A producer thread sends ``count`` records of ``size`` bytes; a consumer
thread takes them and reads only their lengths (no consumer touches the
bytes).  The ring and faster-fifo hold 1 MiB; SimpleQueue is unbounded, as
users run it (the issue's peer).

one call per record on both sides:
  aring            writer.sync.send(record) / reader.sync.receive()
  SimpleQueue      put(record) / get()                  (passes the object: no copy)
  faster-fifo      put(record) / get()                  (copies in and out, as aring)

BATCH records per call on both sides:
  aring-batch        writer.sync.send_batch(records) / reader.sync.receive_batch() (views)
  SimpleQueue-batch  put(list of records) / get() a list
  faster-fifo-batch  put_many(records) / get_many()

and, with --producers, 4 producer threads or forked processes -> one consumer
thread, one call per record (aring: each process calls writer.reattach()).

Run: python benchmarks/records.py [--size 64] [--count 200000] [--rounds 3] [--producers]
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
import time
from collections.abc import Callable

import anyio
from _common import Scenario, add_ratios, cpu_seconds, interleave, print_scenario

import aring

RING_CAPACITY = 1 << 20
BATCH = 256


def _run(produce: Callable[[], None], consume: Callable[[], int], count: int) -> dict[str, float]:
    cpu0, start = cpu_seconds(), time.perf_counter()
    thread = threading.Thread(target=produce)
    thread.start()
    got = consume()
    thread.join()
    elapsed, used = time.perf_counter() - start, cpu_seconds() - cpu0
    assert got == count, f"{got} of {count} records"
    return {"M records/s": count / elapsed / 1e6, "CPU us/record": used / count * 1e6}


def aring_case(size: int, count: int, batch: bool) -> dict[str, float]:
    record = os.urandom(size)
    with aring.RecordRing(RING_CAPACITY) as ring:
        writer, reader = ring.writer(), ring.reader()

        def produce() -> None:
            if batch:
                send_batch, records = writer.sync.send_batch, [record] * BATCH
                for start in range(0, count, BATCH):
                    send_batch(records[: min(BATCH, count - start)])
            else:
                send = writer.sync.send
                for _ in range(count):
                    send(record)
            writer.close()

        def consume() -> int:
            got = 0
            try:
                if batch:
                    receive_batch = reader.sync.receive_batch
                    while True:
                        for view in receive_batch():
                            got += len(view) >= 0
                else:
                    receive = reader.sync.receive
                    while True:
                        got += len(receive()) >= 0
            except anyio.EndOfStream:
                return got

        return _run(produce, consume, count)


def simple_queue_case(size: int, count: int, batch: bool) -> dict[str, float]:
    record = os.urandom(size)
    q: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()  # unbounded, as users run it

    def produce() -> None:
        step = BATCH if batch else 1
        for start in range(0, count, step):
            q.put([record] * min(step, count - start))
        q.put(None)

    def consume() -> int:
        got = 0
        while True:
            items = q.get()
            if items is None:
                return got
            for item in items:
                got += len(item) >= 0

    return _run(produce, consume, count)


def faster_fifo_case(size: int, count: int, batch: bool) -> dict[str, float]:
    import faster_fifo

    record = os.urandom(size)
    # bytes in, bytes out: a copy each way, as aring's send and receive
    q = faster_fifo.Queue(max_size_bytes=RING_CAPACITY, dumps=lambda b: b, loads=bytes)

    def produce() -> None:
        if batch:
            records = [record] * BATCH
            for start in range(0, count, BATCH):
                q.put_many(records[: min(BATCH, count - start)], timeout=60)
        else:
            for _ in range(count):
                q.put(record, timeout=60)
        q.put(b"", timeout=60)

    def consume() -> int:
        got = 0
        while True:
            items = q.get_many(timeout=60) if batch else [q.get(timeout=60)]
            for item in items:
                if not item:
                    return got
                got += 1

    return _run(produce, consume, count)


def scenario(
    size: int, count: int, rounds: int, progress: Callable[[str], None] | None = None
) -> Scenario:
    cases: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {}
    for batch in (False, True):
        suffix = "-batch" if batch else ""
        cases[f"aring{suffix}"] = ("aring", lambda b=batch: aring_case(size, count, b))
        cases[f"SimpleQueue{suffix}"] = ("peer", lambda b=batch: simple_queue_case(size, count, b))
        try:
            import faster_fifo  # noqa: F401
        except ImportError:
            pass
        else:
            cases[f"faster-fifo{suffix}"] = (
                "peer",
                lambda b=batch: faster_fifo_case(size, count, b),
            )
    rows = interleave(cases, rounds, progress)
    for suffix in ("", "-batch"):
        for peer in ("SimpleQueue", "faster-fifo"):
            pair = {f"aring{suffix}": f"{peer}{suffix}"}
            add_ratios(rows, pair, ["M records/s", "CPU us/record"])
    return Scenario(
        key=f"records-{size}",
        title=(
            f"records of {size} B, thread -> thread, one record per call or {BATCH} per call on "
            "both sides (M records/s, CPU us/record, both threads)"
        ),
        metrics={"M records/s": "M records/s", "CPU us/record": "CPU us/record"},
        higher_is_better={"M records/s": True, "CPU us/record": False},
        rows=rows,
        notes=[
            "SimpleQueue passes the producer's objects (no copy) and is unbounded (the issue's "
            "peer; batched, it carries lists); aring and faster-fifo copy in and out, each "
            "holding 1 MiB.",
        ],
    )


# -- many producers -> one consumer ---------------------------------------------------

PRODUCERS = 4


def _many(
    start: Callable[[int], Callable[[], None]],
    consume: Callable[[], int],
    count: int,
    processes: bool,
) -> dict[str, float]:
    """PRODUCERS producers (threads or forked processes) each sending count // PRODUCERS."""
    cpu0, start_time = cpu_seconds() + cpu_seconds(children=True), time.perf_counter()
    threads, pids = [], []
    for producer in range(PRODUCERS):
        produce = start(producer)
        if processes:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - a producer process
                code = 1
                try:
                    produce()
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        else:
            thread = threading.Thread(target=produce)
            thread.start()
            threads.append(thread)
    got = consume()
    for thread in threads:
        thread.join()
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, "a producer failed"
    elapsed = time.perf_counter() - start_time
    used = cpu_seconds() + cpu_seconds(children=True) - cpu0
    assert got == count, f"{got} of {count} records"
    return {"M records/s": count / elapsed / 1e6, "CPU us/record": used / count * 1e6}


def aring_many_case(size: int, count: int, processes: bool) -> dict[str, float]:
    record = os.urandom(size)
    each = count // PRODUCERS
    with aring.RecordRing(RING_CAPACITY, multi_producer=True) as ring:
        writer, reader = ring.writer(), ring.reader()

        def start(_producer: int) -> Callable[[], None]:
            def produce() -> None:
                if processes:
                    writer.reattach()  # this process produces too
                send = writer.sync.send
                for _ in range(each):
                    send(record)
                if processes:
                    writer.close()

            return produce

        def consume() -> int:
            receive = reader.sync.receive
            return sum(len(receive()) >= 0 for _ in range(each * PRODUCERS))

        return _many(start, consume, each * PRODUCERS, processes)


def faster_fifo_many_case(size: int, count: int, processes: bool) -> dict[str, float]:
    import faster_fifo

    record = os.urandom(size)
    each = count // PRODUCERS
    q = faster_fifo.Queue(max_size_bytes=RING_CAPACITY, dumps=lambda b: b, loads=bytes)

    def start(_producer: int) -> Callable[[], None]:
        def produce() -> None:
            for _ in range(each):
                q.put(record, timeout=60)

        return produce

    def consume() -> int:
        return sum(len(q.get(timeout=60)) >= 0 for _ in range(each * PRODUCERS))

    return _many(start, consume, each * PRODUCERS, processes)


def producers_scenario(
    size: int, count: int, rounds: int, progress: Callable[[str], None] | None = None
) -> Scenario:
    cases: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {}
    for processes in (False, True):
        kind = "processes" if processes else "threads"
        cases[f"aring-{kind}"] = ("aring", lambda p=processes: aring_many_case(size, count, p))
        try:
            import faster_fifo  # noqa: F401
        except ImportError:
            continue
        cases[f"faster-fifo-{kind}"] = (
            "peer",
            lambda p=processes: faster_fifo_many_case(size, count, p),
        )
    rows = interleave(cases, rounds, progress)
    for kind in ("threads", "processes"):
        add_ratios(rows, {f"aring-{kind}": f"faster-fifo-{kind}"}, ["M records/s", "CPU us/record"])
    return Scenario(
        key=f"records-{PRODUCERS}-producers-{size}",
        title=(
            f"records of {size} B, {PRODUCERS} producer threads or forked processes -> one "
            "consumer, one record per call (M records/s, CPU us/record, every process)"
        ),
        metrics={"M records/s": "M records/s", "CPU us/record": "CPU us/record"},
        higher_is_better={"M records/s": True, "CPU us/record": False},
        rows=rows,
        notes=[
            "Both copy in and out of 1 MiB of shared memory; the consumer reads lengths only.",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--producers", action="store_true", help="the many-producers table")
    args = parser.parse_args()
    if args.producers:
        print_scenario(producers_scenario(args.size, args.count, args.rounds, print))
    else:
        print_scenario(scenario(args.size, args.count, args.rounds, print))


if __name__ == "__main__":
    main()
