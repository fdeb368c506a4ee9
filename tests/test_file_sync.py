"""``pump(reader, file, sync=aring.FileSync(...))``: durable recordings.

The sync calls are observed by wrapping ``os.fdatasync``/``os.fsync``/
``os.posix_fadvise`` (the real call still runs): what the file held when each
sync ran is what the policy promised to make durable.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import create_task_group
from observe import until_async

import aring

pytestmark = pytest.mark.anyio

PIECE = 48 << 10


def _record(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[Any, ...]]:
    """Wrap ``os.<name>``: each call's arguments and the file's size then, in order."""
    real: Callable[..., Any] = getattr(os, name)
    calls: list[tuple[Any, ...]] = []
    lock = threading.Lock()

    def wrapper(fd: int, *args: Any) -> Any:
        with lock:
            calls.append((os.fstat(fd).st_size, *args))
        return real(fd, *args)

    monkeypatch.setattr(os, name, wrapper)
    return calls


async def _produce(writer: aring.Writer, total: int) -> None:
    piece = os.urandom(PIECE)
    async with writer:
        for _ in range(total // PIECE):
            await writer.send(piece)


@pytest.mark.parametrize("metadata", [False, True])
async def test_pump_syncs_every_n_bytes_and_once_more_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metadata: bool
) -> None:
    syncs = _record(monkeypatch, "fsync" if metadata else "fdatasync")
    every = 256 << 10
    total = 40 * PIECE
    stats = aring.TransferStats()
    with (tmp_path / "rec").open("wb") as f, anyio.fail_after(30):
        async with aring.open(1 << 20) as (writer, reader), create_task_group() as tg:
            tg.start_soon(_produce, writer, total)
            moved = await aring.pump(
                reader, f, stats=stats, sync=aring.FileSync(every_bytes=every, metadata=metadata)
            )
    assert moved == total
    sizes = [size for (size,) in syncs]
    assert sizes[-1] == total, "the last sync ran once everything was written"
    gaps = [b - a for a, b in zip([0, *sizes], sizes, strict=False)]
    assert all(gap >= every for gap in gaps[:-1]), gaps
    assert all(gap < every + (1 << 20) for gap in gaps), f"a sync came late: {gaps}"
    assert len(sizes) == stats.syncs
    assert len(sizes) >= math.floor(total / (every + (1 << 20)))


async def test_pump_syncs_waiting_bytes_after_every_seconds_without_more_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = _record(monkeypatch, "fdatasync")
    with (tmp_path / "rec").open("wb") as f, anyio.fail_after(30):
        async with aring.open(1 << 16) as (writer, reader), create_task_group() as tg:
            tg.start_soon(
                lambda: aring.pump(reader, f, sync=aring.FileSync(every_seconds=0.05))
            )
            await writer.send(b"x" * 1000)
            # no more data comes: the timed sync must still happen
            await until_async(lambda: syncs, "a timed sync of the waiting bytes")
            assert syncs[0] == (1000,)
            await writer.aclose()
    assert syncs[-1] == (1000,)


async def test_drop_cache_advises_each_synced_range_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    advice = _record(monkeypatch, "posix_fadvise")
    total = 20 * PIECE
    with (tmp_path / "rec").open("wb") as f, anyio.fail_after(30):
        f.write(b"h" * 4096)  # the pump starts at the file's offset, not at 0
        async with aring.open(1 << 20) as (writer, reader), create_task_group() as tg:
            tg.start_soon(_produce, writer, total)
            policy = aring.FileSync(every_bytes=128 << 10, drop_cache=True)
            await aring.pump(reader, f, sync=policy)
    assert advice, "nothing was advised"
    at = 4096
    for size, offset, length, how in advice:
        assert how == os.POSIX_FADV_DONTNEED
        assert offset == at, "the ranges must follow each other with no gap or overlap"
        assert offset + length == size, "only what was written (and synced) is dropped"
        at = offset + length
    assert at == 4096 + total


def test_file_sync_refuses_bad_values() -> None:
    for kwargs, error, text in [
        ({"every_bytes": 0}, ValueError, "every_bytes must be >= 1, got 0"),
        ({"every_bytes": 1.5}, TypeError, "every_bytes must be an int, not float"),
        ({"every_seconds": 0}, ValueError, "every_seconds must be > 0 and finite, got 0"),
        ({"every_seconds": math.inf}, ValueError, "finite"),
        ({"every_seconds": "1"}, TypeError, "every_seconds must be a number, not str"),
    ]:
        with pytest.raises(error, match=text):
            aring.FileSync(**kwargs)


async def test_sync_is_refused_for_what_is_not_a_regular_file(tmp_path: Path) -> None:
    left, right = socket.socketpair()
    with left, right, (tmp_path / "rec").open("wb") as f:
        async with aring.open(4096) as (_writer, reader):
            with pytest.raises(ValueError, match="regular files only"):
                await aring.pump(reader, left, sync=aring.FileSync())
            with pytest.raises(TypeError, match=r"sync must be an aring\.FileSync, not dict"):
                await aring.pump(reader, f, sync={"every_bytes": 1})  # type: ignore[arg-type]


async def test_every_seconds_holds_while_bytes_keep_coming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk slower than the producer: the ring never empties, the timed syncs still come.

    On the Python worker (a writer in another process), whose ``os.write``
    can be slowed; the native worker's twin is
    test_the_native_pump_returns_for_a_timed_sync_while_it_keeps_writing.
    """
    monkeypatch.setattr(aring.Reader, "_peers_are_local", lambda self: False)
    syncs = _record(monkeypatch, "fdatasync")
    real_write = os.write

    def slow_write(fd: int, data: Any) -> int:
        time.sleep(0.01)  # a slow disk (stands in for writeback throttling)
        return real_write(fd, data)

    total = 64 * 4096
    with (tmp_path / "rec").open("wb") as f, anyio.fail_after(60):
        # a small ring: many writes, each slow, and the producer always has more
        async with aring.open(4 * 4096) as (writer, reader), create_task_group() as tg:

            async def produce() -> None:
                async with writer:
                    for _ in range(total // 4096):
                        await writer.send(b"s" * 4096)
                        await anyio.sleep(0)

            tg.start_soon(produce)
            monkeypatch.setattr(os, "write", slow_write)
            await aring.pump(reader, f, sync=aring.FileSync(every_seconds=0.02))
    during = [size for (size,) in syncs if size < total]
    assert len(during) >= 2, f"timed syncs while data kept coming: {syncs}"


async def test_drop_cache_on_an_appended_file_starts_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rec"
    path.write_bytes(b"old" * 4096)
    before = path.stat().st_size
    advice = _record(monkeypatch, "posix_fadvise")
    total = 10 * PIECE
    with path.open("ab") as f, anyio.fail_after(30):
        async with aring.open(1 << 20) as (writer, reader), create_task_group() as tg:
            tg.start_soon(_produce, writer, total)
            await aring.pump(reader, f, sync=aring.FileSync(every_bytes=PIECE, drop_cache=True))
    assert advice[0][1] == before, "the pages of what was there before are not ours to drop"
    assert advice[-1][1] + advice[-1][2] == before + total


def test_the_native_pump_returns_for_a_timed_sync_while_it_keeps_writing() -> None:
    """A sink slower than the producer: the native loop spends its time writing.

    Its deadline must still end the call, or a timed sync would wait for the
    end of the recording.  The slow sink is a pipe drained 4 KiB per ms.  (The
    loop also looks at the deadline when it finds the ring empty for an
    instant, which the producer's wake-up latency makes likely here: this
    test cannot tell the two checks apart.)
    """
    from aring._native import PUMP_TIMEOUT, _pump_to_fd

    slow_out, slow_in = os.pipe()
    draining = threading.Event()

    def drain() -> None:
        while not draining.is_set():
            time.sleep(0.001)
            try:
                os.read(slow_out, 4096)
            except OSError:
                return

    def produce() -> None:
        with contextlib.suppress(anyio.ClosedResourceError):
            while True:
                writer.sync.send(b"p" * 4096)

    with aring.Ring(1 << 16) as ring:
        writer, reader = ring.writer(), ring.reader()
        threads = [threading.Thread(target=drain), threading.Thread(target=produce)]
        for thread in threads:
            thread.start()
        try:
            started = time.monotonic()
            written, regions, calls, why = _pump_to_fd(reader, slow_in, 1 << 62, 0.05)
            elapsed = time.monotonic() - started
            assert why == PUMP_TIMEOUT
            assert written > 0 and regions > 0 and calls >= regions
            assert elapsed < 5, elapsed
        finally:
            draining.set()
            ring.close()  # the producer wakes with ClosedResourceError
            os.close(slow_in)  # the drain's read sees the end
            for thread in threads:
                thread.join(10)
            os.close(slow_out)
