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



def ring(size: int, strategy: str) -> Callable[[], None]:
    def once() -> None:
        aring.Ring(size, strategy=strategy).close()

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
        notes=["target: 1 MiB aring.Ring <= 50 us"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    print_scenario(scenario(args.rounds, args.batch))


if __name__ == "__main__":
    main()
