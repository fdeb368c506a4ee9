"""Process -> process: a parent produces, a forked child consumes.

aring: the ring is created before ``fork()``; the child calls ``reattach()`` on
its reader end and reads with ``reader.sync.peek``/``consume`` (zero-copy, the
memory is shared), sleeping on the inherited eventfd.  Peers: faster-fifo,
``multiprocessing.Pipe`` and ``multiprocessing.Queue`` (fork context).  The
parent makes one call per piece everywhere, copying each piece from a source
block.  Every child does the same job on the bytes it is given: it reads every
byte once (copies it into a reused sink) -- aring's child included, though its
view costs no copy to get.  CPU is the parent's plus the child's (reaped before
the figure is taken).  Buffers: a 4 MiB ring, faster-fifo's 4 MiB, a
multiprocessing.Queue of 4 MiB worth of pieces; a Pipe has the kernel's.

Two families, each compared only within itself:
  aring (fork)          the child peeks one piece per call: peek(chunk) + consume(chunk)
  multiprocessing.Pipe  recv_bytes() per piece
  multiprocessing.Queue get() per piece
  faster-fifo           get() per piece
and
  aring-batch (fork)    the child peeks everything readable per call
  faster-fifo-batch     get_many() per call: every message there
  aring (attached file) a ring file the child opens by path (aring.attach), per piece

Run: python benchmarks/process_to_process.py [--mib 512] [--chunk 65536] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable

from _common import Scenario, add_ratios, interleave, print_scenario, timed
from anyio import EndOfStream

import aring

CONTEXT = multiprocessing.get_context("fork")
BUFFER = 4 << 20


def _sink(size: int) -> memoryview:
    """Where a child reads its bytes to: the same job for every child."""
    return memoryview(bytearray(max(size, BUFFER)))


def aring_case(
    src: memoryview, total: int, batch: bool = False, attached: bool = False
) -> tuple[int, float]:
    """``attached``: a ring file the child opens by its path (as an unrelated
    process would), its own mapping and reader, woken through the FIFOs."""
    chunk = len(src)
    directory = tempfile.mkdtemp(prefix="aring-bench-") if attached else None
    path = os.path.join(directory, "q.ring") if directory else None
    with aring.Ring(BUFFER, path=path) as ring:
        writer = ring.writer()
        reader = None if attached else ring.reader()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: the reader end is ours now
            code = 1
            try:
                if reader is None:
                    reader = aring.attach(path).reader()  # type: ignore[arg-type]
                else:
                    reader.reattach()
                sink = _sink(chunk)
                want = 1 if batch else chunk
                got = 0
                while True:
                    try:
                        view = reader.sync.peek(want, timeout=60)
                    except EndOfStream:
                        break
                    n = len(view) if batch else min(len(view), chunk)
                    sink[:n] = view[:n]  # read every byte once
                    got += n
                    reader.consume(n)
                code = 0 if got == total else 2
            finally:
                os._exit(code)
        with writer:
            for _ in range(total // chunk):
                writer.sync.send(src)
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the aring child failed: status {status}")
    if directory:
        shutil.rmtree(directory)
    return total, elapsed


def _run_child(
    target: Callable[..., None], args: tuple[object, ...], produce: Callable[[], None]
) -> float:
    child = CONTEXT.Process(target=target, args=args)
    start = time.perf_counter()
    child.start()
    produce()
    child.join()  # reaped: its CPU is in RUSAGE_CHILDREN from here on
    if child.exitcode != 0:
        raise RuntimeError(f"the {target.__name__} child failed: exit code {child.exitcode}")
    return time.perf_counter() - start


def _consume_pipe(conn: object, total: int) -> None:
    sink = _sink(0)
    got = 0
    while got < total:
        piece = conn.recv_bytes()  # type: ignore[attr-defined]
        sink[: len(piece)] = piece
        got += len(piece)


def pipe_case(src: memoryview, total: int) -> tuple[int, float]:
    receiving, sending = CONTEXT.Pipe(duplex=False)

    def produce() -> None:
        for _ in range(total // len(src)):
            sending.send_bytes(src)

    return total, _run_child(_consume_pipe, (receiving, total), produce)


def _consume_queue(queue: object, total: int) -> None:
    sink = _sink(0)
    got = 0
    while got < total:
        piece = queue.get()  # type: ignore[attr-defined]
        sink[: len(piece)] = piece
        got += len(piece)


def queue_case(src: memoryview, total: int) -> tuple[int, float]:
    queue = CONTEXT.Queue(max(1, BUFFER // len(src)))

    def produce() -> None:
        for _ in range(total // len(src)):
            queue.put(bytes(src))

    return total, _run_child(_consume_queue, (queue, total), produce)


def _consume_fifo(queue: object, total: int, batch: bool) -> None:
    sink = _sink(0)
    got = 0
    while got < total:
        pieces = (
            queue.get_many(timeout=60)  # type: ignore[attr-defined]
            if batch
            else [queue.get(timeout=60)]  # type: ignore[attr-defined]
        )
        for piece in pieces:
            sink[: len(piece)] = piece
            got += len(piece)


def fifo_case(src: memoryview, total: int, batch: bool = False) -> tuple[int, float]:
    import faster_fifo

    queue = faster_fifo.Queue(max_size_bytes=BUFFER)

    def produce() -> None:
        for _ in range(total // len(src)):
            queue.put(bytes(src), timeout=60)

    return total, _run_child(_consume_fifo, (queue, total, batch), produce)


def scenario(chunk: int, mib: int, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    src = memoryview(os.urandom(chunk))
    total = (mib << 20) // chunk * chunk

    def measured(work: Callable[[], tuple[int, float]]) -> dict[str, float]:
        return timed(work, children=True)

    cases: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {
        "aring (fork)": ("aring", lambda: measured(lambda: aring_case(src, total))),
        "aring (attached file)": (
            "aring",
            lambda: measured(lambda: aring_case(src, total, attached=True)),
        ),
        "multiprocessing.Pipe": ("peer", lambda: measured(lambda: pipe_case(src, total))),
        "multiprocessing.Queue": ("peer", lambda: measured(lambda: queue_case(src, total))),
    }
    try:
        import faster_fifo  # noqa: F401

        cases["faster-fifo"] = ("peer", lambda: measured(lambda: fifo_case(src, total)))
    except ImportError:
        pass
    cases["aring-batch (fork)"] = (
        "aring",
        lambda: measured(lambda: aring_case(src, total, batch=True)),
    )
    if "faster-fifo" in cases:
        cases["faster-fifo-batch"] = (
            "peer",
            lambda: measured(lambda: fifo_case(src, total, batch=True)),
        )
    rows = interleave(cases, rounds, progress)
    for peer in ("faster-fifo", "multiprocessing.Pipe", "multiprocessing.Queue"):
        add_ratios(rows, {"aring (fork)": peer}, ["GB/s", "CPU s/GB"])
    for peer in ("aring (fork)", "faster-fifo", "multiprocessing.Pipe"):
        add_ratios(rows, {"aring (attached file)": peer}, ["GB/s", "CPU s/GB"])
    add_ratios(rows, {"aring-batch (fork)": "faster-fifo-batch"}, ["GB/s", "CPU s/GB"])
    size = f"{chunk // 1024} KiB" if chunk >= 1024 else f"{chunk} B"
    return Scenario(
        key="process-to-process",
        title=f"process -> process, {size} pieces ({mib} MiB per round)",
        metrics={"GB/s": "GB/s", "CPU s/GB": "CPU s/GB, parent+child"},
        higher_is_better={"GB/s": True, "CPU s/GB": False},
        rows=rows,
        notes=[
            "like for like: the parent makes one call per piece everywhere; every child reads "
            "every byte once (a copy into a reused sink), one piece per call, or (-batch) all "
            "that is there per call; CPU counts parent and child; ratios pair only rows of the "
            "same family",
            "aring (fork): a memfd ring whose reader the forked child takes over; aring "
            "(attached file): a ring file on disk that the child opens by its path "
            "(aring.attach), as an unrelated process would, woken through the FIFOs beside it; "
            "buffers: 4 MiB ring, 4 MiB faster-fifo, a multiprocessing."
            "Queue of 4 MiB of pieces, the kernel's pipe buffer for multiprocessing.Pipe",
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
