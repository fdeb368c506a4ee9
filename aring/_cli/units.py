"""Byte sizes as people write them on a command line: ``64KiB``, ``1GiB``, ``1_000_000``."""

from __future__ import annotations

import argparse
import re

__all__ = ["format_size", "parse_size"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
}
_SIZE = re.compile(r"\s*(\d[\d_]*)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """``"64KiB"`` -> 65536; argparse shows the ValueError's message."""
    match = _SIZE.fullmatch(text)
    unit = match and _UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: expected a number with an optional unit "
            "(B, KiB, MiB, GiB, KB, MB, GB)"
        )
    return int(match.group(1)) * unit


def format_size(n: float) -> str:
    """1073741824 -> ``"1.00 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
