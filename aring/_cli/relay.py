"""``python -m aring relay``: run the relay on the chosen loop until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import time
from typing import Any, TextIO

import anyio

from .._relay import RelayStats, serve_relay
from .units import format_size

__all__ = ["run_relay"]

_LOOPS: dict[str, tuple[str, dict[str, Any]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


async def _report(stats: RelayStats, out: TextIO) -> None:
    last_bytes, last_time = stats.bytes, time.monotonic()
    while True:
        await anyio.sleep(1)
        now, total = time.monotonic(), stats.bytes
        rate = (total - last_bytes) * 8 / (now - last_time) / 1e9
        out.write(
            f"{rate:7.2f} Gbit/s  {format_size(total):>12} total  {stats.active} active  "
            f"{stats.accepted} accepted  {stats.failed} failed\n"
        )
        out.flush()
        last_bytes, last_time = total, now


async def _main(
    listen: tuple[str, int],
    target: tuple[str, int],
    capacity: int,
    show_stats: bool,
    out: TextIO,
) -> None:
    stats = RelayStats()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                lambda task_status: serve_relay(
                    listen, target, capacity=capacity, stats=stats, task_status=task_status
                )
            )
            out.write(f"aring relay: {listen[0]}:{port} -> {target[0]}:{target[1]}\n")
            out.flush()
            if show_stats:
                tg.start_soon(_report, stats, out)
            async for signum in signals:
                out.write(f"aring relay: {signal.Signals(signum).name}, shutting down\n")
                tg.cancel_scope.cancel()
                break
    out.write(
        f"aring relay: forwarded {format_size(stats.bytes)} over {stats.accepted} "
        f"connections ({stats.failed} failed)\n"
    )


def run_relay(
    *,
    listen: tuple[str, int],
    target: tuple[str, int],
    loop: str,
    capacity: int,
    show_stats: bool,
    out: TextIO,
) -> int:
    backend, options = _LOOPS[loop]
    try:
        anyio.run(
            _main, listen, target, capacity, show_stats, out, backend=backend,
            backend_options=options,
        )
    except BaseExceptionGroup as group:
        # A start-up failure (address in use, cannot resolve) arrives wrapped by
        # the task group; the caller reports a plain OSError.
        errors = _leaves(group)
        if errors and all(isinstance(e, OSError) for e in errors):
            raise errors[0] from None
        raise
    return 0


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
