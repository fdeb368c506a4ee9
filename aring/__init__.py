"""aring: an async-first double-mapped byte ring for Python I/O."""

from ._capabilities import Capabilities, capabilities
from ._native import DoubleMappedBuffer, ForkedError, MappingError
from ._ring import Reader, Ring, SyncReader, SyncWriter, Writer

__all__ = [
    "Capabilities",
    "DoubleMappedBuffer",
    "ForkedError",
    "MappingError",
    "Reader",
    "Ring",
    "SyncReader",
    "SyncWriter",
    "Writer",
    "capabilities",
]
