"""Waiting for observable state instead of sleeping and hoping.

A test that needs "the other thread is asleep in the ring now" waits until
the ring's header says that end is armed to sleep (``ring._waiters()``);
once armed, anything published past what it waits for wakes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

import aring


def until(condition: Callable[[], object], what: str, timeout: float = 10) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.0005)


async def until_async(condition: Callable[[], object], what: str, timeout: float = 10) -> None:
    """``until`` for tasks: the loop keeps running meanwhile."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.0005)


def reader_asleep(ring: aring.Ring, slot: int = 0) -> Callable[[], bool]:
    return lambda: slot in ring._waiters()["readers"]  # type: ignore[operator]


def writer_asleep(ring: aring.Ring) -> Callable[[], bool]:
    return lambda: bool(ring._waiters()["writer"])
