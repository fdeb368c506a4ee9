"""``python -m aring relay``: run the relay on the chosen loop until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any, TextIO

import anyio

from .._relay import RelayEngineKind, RelayStats, check_relay_options, serve_relay
from .units import format_size

__all__ = ["run_relay"]

_LOOPS: dict[str, tuple[str, dict[str, Any]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


async def _report(stats: RelayStats, out: TextIO) -> None:
    last_time = time.monotonic()
    last = (stats.bytes, stats.regions, stats.wakeups, stats.steps, stats.waits)
    while True:
        await anyio.sleep(1)
        now = time.monotonic()
        current = (stats.bytes, stats.regions, stats.wakeups, stats.steps, stats.waits)
        moved, regions, wakeups, steps, waits = (b - a for a, b in zip(last, current, strict=True))
        rate = moved * 8 / (now - last_time) / 1e9
        # What each region sent cost: wake-ups of the relay, passes over the
        # forwarding loop, and sends the target refused for now.
        per_region = 1 / regions if regions else 0.0
        out.write(
            f"{rate:7.2f} Gbit/s  {format_size(current[0]):>12} total  {stats.active} active  "
            f"{stats.accepted} accepted  {stats.failed} failed  "
            f"{format_size(moved // regions) if regions else '-':>9}/region  "
            f"{wakeups * per_region:.2f} wakeups/region  "
            f"{steps * per_region:.2f} steps/region  "
            f"{waits * per_region:.2f} waits/region\n"
        )
        out.flush()
        last, last_time = current, now


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _main(
    listen: tuple[str, int],
    target: tuple[str, int],
    options: dict[str, Any],
    show_stats: bool,
    out: TextIO,
) -> None:
    stats = RelayStats()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                lambda task_status: serve_relay(
                    listen, target, **options, stats=stats, task_status=task_status
                )
            )
            out.write(
                f"aring relay: {_host(listen[0])}:{port} -> {_host(target[0])}:{target[1]}\n"
            )
            out.flush()
            if show_stats:
                tg.start_soon(_report, stats, out)
            async for signum in signals:
                out.write(f"aring relay: {signal.Signals(signum).name}, shutting down\n")
                tg.cancel_scope.cancel()
                break
    out.write(
        f"aring relay: forwarded {format_size(stats.bytes)} over {stats.accepted} "
        f"connections ({stats.failed} failed, {stats.resets} reset, "
        f"{stats.idle_closed} closed idle)\n"
    )


def run_relay(
    *,
    listen: tuple[str, int],
    target: tuple[str, int],
    loop: str,
    engine: RelayEngineKind,
    capacity: int,
    idle_timeout: float | None,
    connect_timeout: float | None,
    show_stats: bool,
    out: TextIO,
) -> int:
    backend, backend_options = _LOOPS[loop]
    check_relay_options(capacity, idle_timeout, connect_timeout)
    options: dict[str, Any] = {
        "capacity": capacity,
        "engine": engine,
        "idle_timeout": idle_timeout,
        "connect_timeout": connect_timeout,
    }
    # Accept errors (out of fds...) are logged once per burst, on the same stream.
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("aring relay: %(message)s"))
    logger = logging.getLogger("aring.relay")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        anyio.run(
            _main, listen, target, options, show_stats, out, backend=backend,
            backend_options=backend_options,
        )
    except BaseExceptionGroup as group:
        # A start-up failure (address in use, cannot resolve) arrives wrapped by
        # the task group; the caller reports a plain OSError.
        errors = _leaves(group)
        if errors and all(isinstance(e, OSError) for e in errors):
            raise errors[0] from None
        raise
    finally:
        logger.removeHandler(handler)
    return 0


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
