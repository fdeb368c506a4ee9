"""Progress output for long jobs: a live line on a terminal, a line per quarter elsewhere."""

from __future__ import annotations

import time
from typing import TextIO

from .units import format_size

__all__ = ["Progress"]

_PROGRESS_EVERY = 0.25


class Progress:
    """A one-line progress meter on a terminal, a line per quarter elsewhere."""

    def __init__(self, stream: TextIO, total: int, label: str = "") -> None:
        self._stream = stream
        self._total = total
        self._label = f"{label} " if label else ""
        self._tty = stream.isatty()
        self._start = time.monotonic()
        self._next_time = self._start + _PROGRESS_EVERY
        self._next_quarter = 1

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self._tty:
            if now < self._next_time:
                return
            self._next_time = now + _PROGRESS_EVERY
            rate = done / max(now - self._start, 1e-9) / 1e9
            pct = 100 * done / self._total
            self._stream.write(
                f"\r  {self._label}{pct:5.1f}%  {format_size(done)}  {rate:.2f} GB/s "
            )
            self._stream.flush()
        elif done * 4 >= self._next_quarter * self._total:
            while done * 4 >= self._next_quarter * self._total and self._next_quarter <= 4:
                self._next_quarter += 1
            self._stream.write(
                f"  {self._label}{100 * done // self._total}% ({format_size(done)})\n"
            )
            self._stream.flush()

    def finish(self) -> None:
        if self._tty:
            self._stream.write("\r" + " " * 50 + "\r")
            self._stream.flush()
