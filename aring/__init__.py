"""aring: an async-first double-mapped byte ring for Python I/O."""

from ._capabilities import Capabilities, capabilities
from ._file_worker import FileSync
from ._io import TransferStats, fill, pump, sendfile
from ._native import DoubleMappedBuffer, ForkedError, MappingError
from ._persist import attach
from ._records import (
    Claim,
    RecordReader,
    RecordRing,
    RecordWriter,
    SyncRecordReader,
    SyncRecordWriter,
    open_records,
)
from ._ring import Checkpoints, Ring, open
from ._streams import Reader, RingAttribute, Writer
from ._sync import SyncReader, SyncWriter
from ._tcp import RingSocketListener, RingSocketStream, connect_tcp, create_tcp_listener
from ._udp import RingUDPSocket, UDPStats, create_udp_socket

__all__ = [
    "Capabilities",
    "Checkpoints",
    "Claim",
    "DoubleMappedBuffer",
    "FileSync",
    "ForkedError",
    "MappingError",
    "Reader",
    "RecordReader",
    "RecordRing",
    "RecordWriter",
    "Ring",
    "RingAttribute",
    "RingSocketListener",
    "RingSocketStream",
    "RingUDPSocket",
    "SyncReader",
    "SyncRecordReader",
    "SyncRecordWriter",
    "SyncWriter",
    "TransferStats",
    "UDPStats",
    "Writer",
    "attach",
    "capabilities",
    "connect_tcp",
    "create_tcp_listener",
    "create_udp_socket",
    "fill",
    "open",
    "open_records",
    "pump",
    "sendfile",
]
