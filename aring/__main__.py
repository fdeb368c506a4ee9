"""``python -m aring``: the command line (also installed as ``aring``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._demo import run_demo
from ._relay import DEFAULT_CAPACITY, parse_address
from ._units import parse_size

LOOPS = ("asyncio", "uvloop", "trio")

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aring", description="aring: a double-mapped byte ring for Python I/O."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="1 GiB through the aring relay and a plain asyncio relay, on loopback",
        description=(
            "Starts a sink, a relay and a source on loopback, moves --size bytes through the "
            "aring relay and then through a plain asyncio streams relay, and prints GB/s and "
            "the relay's CPU seconds per GB for both. With --threads: a producer thread feeds "
            "a consumer through one ring in this process instead."
        ),
    )
    demo.add_argument("--size", type=parse_size, default="1GiB", help="bytes to move (1GiB)")
    demo.add_argument(
        "--loop", choices=LOOPS, default=_default_loop(), help="the aring relay's event loop"
    )
    demo.add_argument("--threads", action="store_true", help="the in-process thread demo")
    threads = demo.add_argument_group("with --threads")
    threads.add_argument("--capacity", type=parse_size, default="4MiB", help="ring size (4MiB)")
    threads.add_argument("--chunk", type=parse_size, default="256KiB", help="send size (256KiB)")
    threads.add_argument("--notifier", choices=("auto", "eventfd", "pipe"), default="auto")
    threads.add_argument(
        "--strategy", choices=("auto", "memfd", "shm", "file", "copy"), default="auto"
    )
    threads.add_argument("--no-verify", action="store_true", help="skip the CRC-32 check")

    commands.add_parser(
        "bench",
        help="run benchmarks/run.py (from a source checkout): aring against its peers",
        add_help=False,
    )

    relay = commands.add_parser(
        "relay",
        help="forward TCP connections through rings",
        description=(
            "Accept TCP connections on --listen and forward each to --to, both directions "
            "through a ring (one recv_into and one send per region); half-closes are "
            "forwarded. Runs until SIGINT or SIGTERM."
        ),
    )
    relay.add_argument("--listen", required=True, type=_address, metavar="HOST:PORT")
    relay.add_argument("--to", required=True, type=_address, metavar="HOST:PORT")
    relay.add_argument("--loop", choices=LOOPS, default=_default_loop())
    relay.add_argument(
        "--capacity",
        type=parse_size,
        default=DEFAULT_CAPACITY,
        help=f"ring size per direction and connection ({DEFAULT_CAPACITY // 1024}KiB)",
    )
    relay.add_argument("--stats", action="store_true", help="print throughput once a second")
    return parser


def _bench(argv: list[str], parser: argparse.ArgumentParser) -> int:
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
    if not script.exists():
        parser.exit(2, "aring bench: benchmarks/ ships with the source checkout, not the wheel\n")
    return subprocess.call([sys.executable, str(script), *argv])


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:], parser)
    args = parser.parse_args(argv)
    if args.command == "demo" and not args.threads:
        from ._relay_demo import run_relay_demo

        try:
            return run_relay_demo(
                size=args.size, loop=args.loop, out=sys.stdout, progress=sys.stderr
            )
        except (ValueError, OSError) as exc:
            parser.exit(2, f"aring demo: error: {exc}\n")
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
    if args.command == "relay":
        from ._relay_cli import run_relay

        try:
            return run_relay(
                listen=args.listen,
                target=args.to,
                loop=args.loop,
                capacity=args.capacity,
                show_stats=args.stats,
                out=sys.stderr,
            )
        except OSError as exc:
            parser.exit(1, f"aring relay: error: {exc}\n")
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
