"""``python -m aring inspect FILE``: what a ring file holds, read without changing it.

The header first (geometry, cursors, the writer and every reader with its lag
and whether its process lives), then a hexdump with an ASCII column of each
reader's unread bytes, or, with ``--records``, of each record past the oldest
reader with its header.  The file may be in use: what is shown is a snapshot
whose parts were read a moment apart.
"""

from __future__ import annotations

import json
import struct
import time
from typing import IO, Any

from .. import _native

__all__ = ["hexdump", "run_inspect"]

_RECORD_HEADER = struct.Struct("=QII")  # position, length, state (includes/header.h)
_RECORD_STATES = {1: "claimed", 2: "committed", 3: "skipped"}
_FLAGS = {
    1: "writer-closed",
    2: "writer-died",
    4: "reader-attached",
    8: "records",
    16: "records-closing",
    32: "multi-producer",
    64: "persistent",
}


def hexdump(data: bytes, start: int = 0, indent: str = "    ") -> list[str]:
    """Lines of 16 bytes: the position, the bytes in hex, and printable ASCII."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{indent}{start + offset:>12}  {hexes:<47}  |{text}|")
    return lines


def _span(data: bytes, position: int, length: int) -> bytes:
    """``length`` bytes of the ring's data from ``position``, across the wrap."""
    capacity = len(data)
    if length <= 0:
        return b""
    begin = position % capacity
    end = begin + min(length, capacity)
    return data[begin:end] if end <= capacity else data[begin:] + data[: end - capacity]


def _records(data: bytes, start: int, end: int, limit: int) -> list[dict[str, Any]]:
    """The records from ``start`` to ``end`` (the write position), as far as they can be walked."""
    found: list[dict[str, Any]] = []
    position = start
    while position < end and len(found) < 10_000:
        raw = _span(data, position, _RECORD_HEADER.size)
        tag, length, state = _RECORD_HEADER.unpack(raw)
        if tag != position or length > len(data):
            found.append({"position": position, "error": "no record header here (damaged?)"})
            break
        kind = _RECORD_STATES.get(state & 0xFF, f"unknown ({state})")
        payload = _span(data, position + _RECORD_HEADER.size, min(length, limit))
        found.append({"position": position, "length": length, "state": kind, "payload": payload})
        position += _RECORD_HEADER.size + (length + 7) // 8 * 8
    return found


def run_inspect(
    path: str, *, limit: int = 256, records: bool = False, as_json: bool = False, out: IO[str]
) -> int:
    """Print what the ring file at ``path`` holds; MappingError (one line) if it is not one."""
    snapshot = _native._read_ring_file(path)
    geometry, header, data = snapshot["geometry"], snapshot["header"], snapshot["data"]
    if records and not geometry["records"]:
        raise ValueError(f"{path!r} is a byte Ring, not a RecordRing: drop --records")
    written = header["written"]
    held = [r for r in header["readers"] if r["state"] in ("active", "parked")]
    oldest = min((r["position"] for r in held), default=max(0, written - geometry["capacity"]))
    walked = _records(data, oldest, written, limit) if records else []
    if as_json:
        doc = {
            "path": path,
            "geometry": geometry,
            "header": header,
            "unread": {
                str(r["slot"]): _span(data, r["position"], min(r["lag"], limit)).hex()
                for r in held
                if 0 <= r["lag"] <= geometry["capacity"]
            },
            "records": [
                {**r, "payload": r["payload"].hex()} if "payload" in r else r for r in walked
            ],
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
        return 0
    flags = [name for bit, name in _FLAGS.items() if geometry["flags"] & bit]
    kind = "RecordRing" if geometry["records"] else "Ring"
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(geometry["created"]))
    writer = header["writer"]
    lines = [
        f"{path}: aring {kind}, layout version {geometry['version']}",
        f"  capacity        {geometry['capacity']} bytes (item size {geometry['item_size']}, "
        f"header {geometry['header_size']} bytes, {geometry['max_readers']} reader slot(s))",
        f"  created         {created}",
        f"  flags           {', '.join(flags) or '-'}",
        f"  written         {written} bytes in total (the write position)",
    ]
    if geometry["records"]:
        lines.append(f"  claimed         {header['claimed']} (claims up to here)")
        lines.append(
            f"  records         {header['records']} published, {header['dropped']} claims "
            "dropped (aborted or abandoned)"
        )
    if writer["open"]:
        state = "alive" if writer["alive"] else "DEAD (its slot is freed on the next attach)"
        lines.append(f"  writer          process {writer['pid']}, {state}")
    else:
        lines.append("  writer          none" + (" (the last one died)" if writer["died"] else ""))
    for p in header["producers"]:
        lines.append(
            f"  producer {p['slot']:<6} process {p['pid']}, {'alive' if p['alive'] else 'DEAD'}"
        )
    lines.append(
        f"  counters        {header['wakeups']} wake-ups sent, {header['dead_readers']} "
        "reader(s) reclaimed from dead processes"
    )
    if not held:
        lines.append("  readers         none")
    for r in held:
        name = repr(r["name"]) if r["name"] else "(unnamed)"
        owner = (
            f"process {r['pid']}, {'alive' if r['alive'] else 'DEAD'}"
            if r["state"] == "active"
            else "parked: no process holds it"
        )
        read = f", {r['records']} records read" if geometry["records"] else ""
        lines.append(
            f"  reader {r['slot']:<8} {name}, position {r['position']}, lag {r['lag']} bytes"
            f"{read}, {owner}"
        )
    if records:
        lines.append(f"records from position {oldest} (the oldest reader):")
        for r in walked:
            if "error" in r:
                lines.append(f"  @{r['position']}: {r['error']}")
                continue
            lines.append(f"  @{r['position']}: {r['state']}, {r['length']} bytes")
            lines.extend(hexdump(r["payload"], 0))
    elif limit:
        for r in held:
            if not 0 <= r["lag"] <= geometry["capacity"]:
                lines.append(f"reader {r['slot']}: its position is not within the ring (damaged)")
                continue
            shown = min(r["lag"], limit)
            lines.append(
                f"reader {r['slot']} unread: {r['lag']} bytes"
                + (f" (first {shown} shown)" if shown < r["lag"] else "")
            )
            lines.extend(hexdump(_span(data, r["position"], shown), r["position"]))
    out.write("\n".join(lines) + "\n")
    return 0
