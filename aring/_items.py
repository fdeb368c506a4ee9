"""Whole items across a transfer: only whole items enter a ring of items.

``fill`` and its file worker share this: a read may end inside an item (the
part stays held at the start of the free space until the rest arrives), and a
source that ends there is an error, not a silent truncation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anyio import IncompleteRead

if TYPE_CHECKING:
    from ._io import TransferStats
    from ._streams import Writer

__all__ = ["commit_read", "end_reservation", "ended_mid_item"]


def ended_mid_item(held: int, item: int) -> IncompleteRead:
    """The error for a source that ended with part of an item (the part stays out)."""
    error = IncompleteRead()
    error.args = (
        f"the source ended in the middle of an item: {held} of its {item} bytes arrived; "
        "they were not put in the ring",
    )
    return error


def commit_read(writer: Writer, held: int, got: int, stats: TransferStats) -> int:
    """Commit the whole items among the ``held + got`` bytes at the start of the reservation.

    Returns the bytes of an unfinished item, still held.  ``got == 0`` (the
    source ended) with bytes held is ``IncompleteRead``.
    """
    held += got
    whole = held - held % writer.item_size
    writer.commit(whole)
    stats.bytes += whole
    held -= whole
    if not got and held:
        raise ended_mid_item(held, writer.item_size)
    return held


def end_reservation(writer: Writer) -> None:
    """A read failed: the reservation ends with nothing more committed."""
    if not writer.closed:  # a ring closed meanwhile has no reservation left to end
        writer.commit(0)
