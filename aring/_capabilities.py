"""What this platform offers, probed once."""

from __future__ import annotations

import functools
from typing import NamedTuple

from . import _native

__all__ = ["Capabilities", "capabilities"]


class Capabilities(NamedTuple):
    """What the platform offers the ring.

    ``strategy`` is what ``strategy="auto"`` picks; ``reason`` says why a
    faster option is missing ("" when nothing is).  ``has_memfd``,
    ``has_shm_open`` and ``has_mmap`` say whether each way of mapping works
    here (memfd_create and POSIX shm double-mapped, a plain shared mmap for
    the copy strategy).  When ``strategy="auto"`` falls back, the ring also
    logs the reason once (logger ``"aring"``, level WARNING).
    """

    double_mapped: bool
    strategy: str
    notifier: str
    page_size: int
    allocation_granularity: int
    reason: str
    has_memfd: bool
    has_shm_open: bool
    has_mmap: bool


@functools.cache
def capabilities() -> Capabilities:
    """Probe (once) which mapping and notifier work here."""
    strategy, notifier, reason, works = _native._probe_platform()
    return Capabilities(
        double_mapped=strategy != "copy",
        strategy=strategy,
        notifier=notifier,
        page_size=_native.PAGE_SIZE,
        allocation_granularity=_native.ALLOCATION_GRANULARITY,
        reason=reason,
        has_memfd=works["memfd"],
        has_shm_open=works["shm"],
        has_mmap=works["copy"],
    )
