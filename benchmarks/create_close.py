"""Ring create+close time, beside the peers a user could allocate instead.

Each figure is the median over rounds (min-max beside it) of the mean time of
one create+close in a batch; the rounds interleave the variants so machine
drift hits all alike.

Run: python benchmarks/create_close.py [--rounds 7] [--batch 200]
"""

from __future__ import annotations

import argparse
import mmap
import time
from collections.abc import Callable

from _common import Scenario, add_ratios, interleave, print_scenario

import aring

SIZES = {"64 KiB": 64 << 10, "1 MiB": 1 << 20, "64 MiB": 64 << 20}


def ring(size: int, strategy: str, populate: bool = False) -> Callable[[], None]:
    def once() -> None:
        aring.Ring(size, strategy=strategy, populate=populate).close()

    return once


def buffer(size: int, strategy: str) -> Callable[[], None]:
    def once() -> None:
        aring.DoubleMappedBuffer(size, strategy=strategy).close()

    return once


def anonymous_mmap(size: int) -> Callable[[], None]:
    def once() -> None:
        mmap.mmap(-1, size).close()

    return once


def plain_bytearray(size: int) -> Callable[[], None]:
    def once() -> None:
        bytearray(size)

    return once


def scenario(rounds: int, batch: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    strategies = list(dict.fromkeys([aring.capabilities().strategy, "copy"]))
    cases = {}
    for label, size in SIZES.items():
        for strategy in strategies:
            cases[f"{label} aring.Ring ({strategy})"] = ("aring", ring(size, strategy))
        cases[f"{label} aring.Ring ({strategies[0]}, populate=True)"] = (
            "aring",
            ring(size, strategies[0], populate=True),
        )
        cases[f"{label} mmap.mmap(-1)"] = ("peer", anonymous_mmap(size))
        cases[f"{label} bytearray"] = ("peer", plain_bytearray(size))

    def per_call(once: Callable[[], None]) -> Callable[[], dict[str, float]]:
        def measure() -> dict[str, float]:
            once()  # warm
            start = time.perf_counter()
            for _ in range(batch):
                once()
            return {"us": (time.perf_counter() - start) / batch * 1e6}

        return measure

    rows = interleave({n: (k, per_call(c)) for n, (k, c) in cases.items()}, rounds, progress)
    for label in SIZES:
        add_ratios(
            rows,
            {f"{label} aring.Ring ({strategies[0]})": f"{label} mmap.mmap(-1)"},
            ["us"],
        )
    return Scenario(
        key="create-close",
        title=f"ring create+close, microseconds per ring ({batch} per round)",
        metrics={"us": "us per create+close"},
        higher_is_better={"us": False},
        rows=rows,
        notes=[
            "target: 1 MiB aring.Ring <= 50 us; populate=True also faults every page in "
            "(what the first pass would otherwise pay: see first-pass)"
        ],
    )


def first_pass_scenario(rounds: int, size: int = 64 << 20, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    """A new ring, then its whole capacity written and read once in 64 KiB pieces."""
    piece = memoryview(bytes(64 << 10))
    sink = bytearray(len(piece))

    def case(populate: bool) -> Callable[[], dict[str, float]]:
        def measure() -> dict[str, float]:
            start = time.perf_counter()
            ring = aring.Ring(size, populate=populate)
            made = time.perf_counter()
            writer, reader = ring.writer(), ring.reader()
            for _ in range(size // len(piece)):
                writer.try_write(piece)
                reader.try_read_into(sink)
            done = time.perf_counter()
            ring.close()
            return {
                "create ms": (made - start) * 1e3,
                "pass ms": (done - made) * 1e3,
                "total ms": (done - start) * 1e3,
            }

        return measure

    def fresh_bytearray() -> dict[str, float]:
        start = time.perf_counter()
        target = bytearray(size)
        made = time.perf_counter()
        for offset in range(0, size, len(piece)):
            target[offset : offset + len(piece)] = piece
        done = time.perf_counter()
        return {
            "create ms": (made - start) * 1e3,
            "pass ms": (done - made) * 1e3,
            "total ms": (done - start) * 1e3,
        }

    rows = interleave(
        {
            "aring.Ring": ("aring", case(False)),
            "aring.Ring populate=True": ("aring", case(True)),
            "bytearray, written once": ("limit", fresh_bytearray),
        },
        rounds,
        progress,
    )
    return Scenario(
        key="first-pass",
        title=f"a new {size >> 20} MiB ring's first pass: create, then write and read it once",
        metrics={"create ms": "ms to create", "pass ms": "ms first pass", "total ms": "ms total"},
        higher_is_better={"create ms": False, "pass ms": False, "total ms": False},
        rows=rows,
        notes=[
            "64 KiB pieces, writer and reader in one thread (try_write, try_read_into); "
            "populate=True moves the page faults from the pass to the creation; the limit row "
            "writes a fresh bytearray once (one copy, its own first-touch faults)"
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    print_scenario(scenario(args.rounds, args.batch))
    print_scenario(first_pass_scenario(args.rounds))


if __name__ == "__main__":
    main()
