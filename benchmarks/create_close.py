"""Ring create+close time, beside the peers a user could allocate instead.

Each figure is the median over rounds (min-max beside it) of the mean time of
one create+close in a batch; the rounds interleave the variants so machine
drift hits all alike.

Run: python benchmarks/create_close.py [--rounds 7] [--batch 200]
"""

from __future__ import annotations

import argparse
import mmap
import statistics
import time
from collections.abc import Callable

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    strategies = [aring.capabilities().strategy, "copy"]
    variants: dict[str, Callable[[], None]] = {}
    for label, size in SIZES.items():
        for strategy in dict.fromkeys(strategies):
            variants[f"{label:>6}  aring.Ring ({strategy})"] = ring(size, strategy)
        variants[f"{label:>6}  aring.DoubleMappedBuffer ({strategies[0]})"] = buffer(
            size, strategies[0]
        )
        variants[f"{label:>6}  mmap.mmap(-1, size) (peer)"] = anonymous_mmap(size)
        variants[f"{label:>6}  bytearray(size) (peer)"] = plain_bytearray(size)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, once in variants.items():
            once()  # warm
            start = time.perf_counter()
            for _ in range(args.batch):
                once()
            samples[name].append((time.perf_counter() - start) / args.batch * 1e6)
    print(f"create+close, µs per ring: median (min-max) of {args.rounds} rounds x {args.batch}")
    for name, values in samples.items():
        print(
            f"{name:<48} {statistics.median(values):9.1f}  ({min(values):.1f}-{max(values):.1f})"
        )


if __name__ == "__main__":
    main()
