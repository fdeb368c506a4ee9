"""``python -m aring``: the command line (also installed as ``aring``).

Each command lives in its own module, imported only when it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .args import build_parser, installed

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    loop = getattr(args, "loop", None)
    if loop in ("uvloop", "trio") and not installed(loop):
        parser.exit(
            2,
            f"aring {args.command}: error: --loop {loop} needs {loop}, which is not installed: "
            f"pip install 'aring[{loop}]'\n",
        )
    if args.command == "demo" and not args.threads:
        from .relay_demo import run_relay_demo

        try:
            return run_relay_demo(
                size=args.size, loop=args.loop, out=sys.stdout, progress=sys.stderr
            )
        except (ValueError, OSError) as exc:
            parser.exit(2, f"aring demo: error: {exc}\n")
    if args.command == "demo":
        from .demo import run_demo

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
        from .relay import run_relay

        try:
            return run_relay(
                listen=args.listen,
                target=args.to,
                loop=args.loop,
                engine=args.engine,
                capacity=args.capacity,
                idle_timeout=args.idle_timeout,
                connect_timeout=args.connect_timeout,
                show_stats=args.stats,
                out=sys.stderr,
            )
        except OSError as exc:
            parser.exit(1, f"aring relay: error: {exc}\n")
    if args.command == "inspect":
        from .inspect import run_inspect

        try:
            return run_inspect(
                args.path, limit=args.bytes, records=args.records, as_json=args.json, out=sys.stdout
            )
        except (ValueError, OSError) as exc:
            parser.exit(1, f"aring inspect: {exc}\n")
    parser.print_help()
    return 2
