"""Ring files: ``aring.attach()`` opens one that another process (or an earlier
run of this one) made with ``Ring(capacity, path=...)`` or
``RecordRing(capacity, path=...)``.

The native core (``_core/persistence.pxi``) checks the file, maps it and opens
the FIFO notifiers beside it (``<path>.wake/``); here only the choice of class.
See docs/persistence.rst for what survives what.
"""

from __future__ import annotations

import os

from . import _native
from ._records import DEFAULT_CLAIM_TIMEOUT, RecordRing
from ._ring import Checkpoints, Ring

__all__ = ["attach"]


def attach(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    checkpoints: Checkpoints = "always",
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
    flush_every: float | None = None,
) -> Ring | RecordRing:
    """Open the ring file at ``path``: a ``Ring`` or a ``RecordRing``, as it was made.

    Any process of the file's owner may attach, while others use the ring.
    ``MappingError`` (with the reason) if there is no file, or it is not a
    ring file this aring can open (damaged, another layout version, another
    user's, a link).  ``claim_timeout`` applies to a RecordRing's readers in
    this process; ``checkpoints`` and ``flush_every`` (this process's
    commits) as for ``Ring``.
    """
    path = os.fspath(path)
    info = _native._ring_file_info(path)
    if info["records"]:
        return RecordRing(
            info["capacity"],
            readers=info["max_readers"],
            path=path,
            checkpoints=checkpoints,
            claim_timeout=claim_timeout,
            flush_every=flush_every,
            _attach=True,
        )
    return Ring(
        info["capacity"],
        readers=info["max_readers"],
        item_size=info["item_size"],
        path=path,
        checkpoints=checkpoints,
        flush_every=flush_every,
        _attach=True,
    )
