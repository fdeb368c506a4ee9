"""Shared by the examples: run an async main on the loop named on the command line."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

import anyio

LOOPS = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


def run(main: Callable[[], Awaitable[None]], description: str) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--loop", choices=sorted(LOOPS), default="asyncio")
    args = parser.parse_args()
    backend, options = LOOPS[args.loop]
    anyio.run(main, backend=backend, backend_options=options)
