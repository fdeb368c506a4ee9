"""The command line's arguments: one parser, with a subcommand per command."""

from __future__ import annotations

import argparse
import importlib
import importlib.util

from .._native import _ring_capacity
from .._relay import DEFAULT_CAPACITY, DEFAULT_CONNECT_TIMEOUT, parse_address
from .units import parse_size

__all__ = ["LOOPS", "build_parser", "installed"]

LOOPS = ("asyncio", "uvloop", "trio")


def build_parser() -> argparse.ArgumentParser:
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
        "--engine",
        choices=("auto", "thread", "loop"),
        default="auto",
        help=(
            "what moves the bytes: 'thread' one native thread in epoll for every connection "
            "(a message is sent on in the wake-up that received it), 'loop' the event loop's "
            "own callbacks and tasks; 'auto' (default) the thread where epoll exists"
        ),
    )
    relay.add_argument(
        "--capacity",
        type=_capacity,
        default=DEFAULT_CAPACITY,
        help=f"ring size per direction and connection ({DEFAULT_CAPACITY // 1024}KiB)",
    )
    relay.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="close a connection after this long without a byte either way (default: never)",
    )
    relay.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on the target after this long ({DEFAULT_CONNECT_TIMEOUT:g} s)",
    )
    relay.add_argument(
        "--stats",
        action="store_true",
        help="print throughput and what each region cost (wake-ups, passes) once a second",
    )

    inspect = commands.add_parser(
        "inspect",
        help="show a ring file: its header, readers, and the unread data as a hexdump",
        description=(
            "Print a ring file's header (geometry, positions, every reader with its lag and "
            "whether its process lives) and a hexdump of each reader's unread data, or of "
            "each record with --records.  Read only: the file is never changed, and it may "
            "be in use."
        ),
    )
    inspect.add_argument("path", help="the ring file")
    inspect.add_argument(
        "-n",
        "--bytes",
        type=_count,
        default=256,
        metavar="BYTES",
        help="bytes to dump per reader (or per record) (default: 256; 0: none)",
    )
    inspect.add_argument(
        "--records", action="store_true", help="walk a RecordRing's records, each with its header"
    )
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead")
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bytes, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of bytes >= 0, got {text!r}")
    return value


def _capacity(text: str) -> int:
    size = parse_size(text)
    try:
        return _ring_capacity(size)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def installed(module: str) -> bool:
    """Whether ``module`` imports (an event loop the user may not have installed)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _default_loop() -> str:
    # find_spec, not an import: building the parser (for --help too) must not load uvloop
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
