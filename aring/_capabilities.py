"""What this platform offers, probed once."""

from __future__ import annotations

import functools
from typing import NamedTuple

from . import _native

__all__ = ["Capabilities", "capabilities"]


class Capabilities(NamedTuple):
    """What the platform offers the ring.

    ``strategy`` is what ``strategy="auto"`` picks; ``reason`` says why a
    faster option is missing ("" when nothing is).
    """

    double_mapped: bool
    strategy: str
    notifier: str
    page_size: int
    allocation_granularity: int
    reason: str


@functools.cache
def capabilities() -> Capabilities:
    """Probe (once) which mapping and notifier work here."""
    strategy, notifier, reason = _native._probe_platform()
    return Capabilities(
        double_mapped=strategy != "copy",
        strategy=strategy,
        notifier=notifier,
        page_size=_native.PAGE_SIZE,
        allocation_granularity=_native.ALLOCATION_GRANULARITY,
        reason=reason,
    )
