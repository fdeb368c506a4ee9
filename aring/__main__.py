"""``python -m aring``: the command line (also installed as ``aring``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._demo import run_demo
from ._units import parse_size

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aring", description="aring: a double-mapped byte ring for Python I/O."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="move data from a producer thread to a consumer through a ring and print GB/s",
        description=(
            "A producer thread copies data into a ring with writer.sync.send; the consumer "
            "peeks each contiguous region (zero-copy), checksums it and consumes it."
        ),
    )
    demo.add_argument("--size", type=parse_size, default="1GiB", help="bytes to move (1GiB)")
    demo.add_argument("--capacity", type=parse_size, default="4MiB", help="ring size (4MiB)")
    demo.add_argument("--chunk", type=parse_size, default="256KiB", help="send size (256KiB)")
    demo.add_argument("--notifier", choices=("auto", "eventfd", "pipe"), default="auto")
    demo.add_argument(
        "--strategy", choices=("auto", "memfd", "shm", "file", "copy"), default="auto"
    )
    demo.add_argument("--no-verify", action="store_true", help="skip the CRC-32 check")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        try:
            return run_demo(
                size=args.size,
                capacity=args.capacity,
                chunk=args.chunk,
                notifier=args.notifier,
                strategy=args.strategy,
                verify=not args.no_verify,
                out=sys.stdout,
                progress=sys.stderr,
            )
        except (ValueError, OSError) as exc:
            parser.exit(2, f"aring demo: error: {exc}\n")
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
