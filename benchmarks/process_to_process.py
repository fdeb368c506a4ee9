"""Process -> process: a parent produces, a forked child consumes.

aring: the ring is created before ``fork()``; the child calls ``reattach()`` on
its reader end and reads with ``reader.sync.peek``/``consume`` (zero-copy, the
memory is shared), sleeping on the inherited eventfd.  Peers: faster-fifo,
``multiprocessing.Pipe`` and ``multiprocessing.Queue`` (fork context).  The
producer copies each piece from a source block; the consumer touches its length.
Rings cannot yet be attached by unrelated processes: fork is the way in.

Run: python benchmarks/process_to_process.py [--mib 512] [--chunk 65536] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Callable

from _common import Scenario, add_ratios, interleave, print_scenario, timed
from anyio import EndOfStream

import aring

CONTEXT = multiprocessing.get_context("fork")


def aring_case(src: memoryview, total: int) -> tuple[int, float]:
    with aring.Ring(4 << 20) as ring:
        writer, reader = ring.writer(), ring.reader()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: the reader end is ours now
            code = 1
            try:
                reader.reattach()
                got = 0
                while True:
                    try:
                        view = reader.sync.peek(1, timeout=60)
                    except EndOfStream:
                        break
                    got += len(view)
                    reader.consume(len(view))
                code = 0 if got == total else 2
            finally:
                os._exit(code)
        with writer:
            for _ in range(total // len(src)):
                writer.sync.send(src)
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the aring child failed: status {status}")
    return total, elapsed


def _consume_pipe(conn: object, total: int) -> None:
    got = 0
    while got < total:
        got += len(conn.recv_bytes())  # type: ignore[attr-defined]


def pipe_case(src: memoryview, total: int) -> tuple[int, float]:
    receiving, sending = CONTEXT.Pipe(duplex=False)
    child = CONTEXT.Process(target=_consume_pipe, args=(receiving, total))
    start = time.perf_counter()
    child.start()
    for _ in range(total // len(src)):
        sending.send_bytes(src)
    child.join()
    return total, time.perf_counter() - start


def _consume_queue(queue: object, total: int) -> None:
    got = 0
    while got < total:
        got += len(queue.get())  # type: ignore[attr-defined]


def queue_case(src: memoryview, total: int) -> tuple[int, float]:
    queue = CONTEXT.Queue(64)
    child = CONTEXT.Process(target=_consume_queue, args=(queue, total))
    start = time.perf_counter()
    child.start()
    for _ in range(total // len(src)):
        queue.put(bytes(src))
    child.join()
    return total, time.perf_counter() - start


def _consume_fifo(queue: object, total: int) -> None:
    got = 0
    while got < total:
        got += len(queue.get(timeout=60))  # type: ignore[attr-defined]


def fifo_case(src: memoryview, total: int) -> tuple[int, float]:
    import faster_fifo

    queue = faster_fifo.Queue(max_size_bytes=4 << 20)
    child = CONTEXT.Process(target=_consume_fifo, args=(queue, total))
    start = time.perf_counter()
    child.start()
    for _ in range(total // len(src)):
        queue.put(bytes(src), timeout=60)
    child.join()
    return total, time.perf_counter() - start


def scenario(chunk: int, mib: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    src = memoryview(os.urandom(chunk))
    total = (mib << 20) // chunk * chunk
    cases: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {
        "aring (fork)": ("aring", lambda: timed(lambda: aring_case(src, total))),
        "multiprocessing.Pipe": ("peer", lambda: timed(lambda: pipe_case(src, total))),
        "multiprocessing.Queue": ("peer", lambda: timed(lambda: queue_case(src, total))),
    }
    try:
        import faster_fifo  # noqa: F401

        cases["faster-fifo"] = ("peer", lambda: timed(lambda: fifo_case(src, total)))
    except ImportError:
        pass
    rows = interleave(cases, rounds, progress)
    add_ratios(rows, {"aring (fork)": "faster-fifo"}, ["GB/s"])
    add_ratios(rows, {"aring (fork)": "multiprocessing.Pipe"}, ["GB/s"])
    return Scenario(
        key="process-to-process",
        title=f"process -> process, {chunk // 1024} KiB pieces ({mib} MiB per round)",
        metrics={"GB/s": "GB/s", "CPU s/GB": "parent CPU s/GB"},
        higher_is_better={"GB/s": True, "CPU s/GB": False},
        rows=rows,
        notes=[
            "the ring is shared with a forked child (attaching from an unrelated process is "
            "not supported yet); CPU is the producing parent's only",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_scenario(scenario(args.chunk, args.mib, args.rounds))


if __name__ == "__main__":
    main()
