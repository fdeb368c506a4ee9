"""Ring files: reopened after a restart, attached from unrelated processes,
named readers that resume, one writer across processes, flush/stats/reset.

Hostile and damaged files, kill -9 and the inspect command: test_persist_crash.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from anyio import BusyResourceError, EndOfStream, WouldBlock

import aring

PAGE = aring.capabilities().page_size


def spawn(body: str, *args: str) -> subprocess.Popen[str]:
    """An unrelated process (not a fork): it knows the ring only by its path."""
    code = "import os, sys, time\nimport aring\n" + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 30) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"exit {process.returncode}:\n{out}\n{err}"
    return out


def test_a_ring_file_is_reopened_with_its_bytes_and_named_readers(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path) as ring:
        created = ring.created
        ring.writer().try_write(b"first second")
        indexer = ring.reader(name="indexer")
        assert indexer.try_read(6) == b"first "
        assert indexer.name == "indexer"
    # A restart: the same call opens the file again.
    with aring.Ring(PAGE, path=path) as ring:
        assert ring.created == created and ring.path == str(path)
        indexer = ring.reader(name="indexer")
        assert indexer.try_read() == b"second", (
            "a named reader resumes after its last consumed byte"
        )
        stats = ring.stats()
        assert stats["written"] == 12
        assert [(r["name"], r["position"], r["state"]) for r in stats["readers"]] == [
            ("indexer", 12, "active")
        ]
        # The writer closed in the first run; a new one goes on with the stream.
        ring.writer().try_write(b" third")
        assert indexer.try_read() == b" third"


def test_reopening_with_another_geometry_or_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    aring.Ring(PAGE, path=path, readers=2).close()
    with pytest.raises(aring.MappingError, match=r"capacity=4096 \(asked 8192\)") as info:
        aring.Ring(2 * PAGE, path=path, readers=2)
    assert "aring.attach()" in str(info.value)
    with pytest.raises(aring.MappingError, match=r"max_readers=2 \(asked 1\)"):
        aring.Ring(PAGE, path=path)
    with pytest.raises(aring.MappingError, match="holds a Ring, not a RecordRing"):
        aring.RecordRing(PAGE, path=path)
    with pytest.raises(ValueError, match="FIFOs beside it"):
        aring.Ring(PAGE, path=path, readers=2, notifier="eventfd")
    with aring.attach(path) as ring:
        assert type(ring) is aring.Ring and ring.capacity == PAGE and ring.max_readers == 2


def test_attach_opens_either_kind_and_refuses_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(aring.MappingError, match="there is no ring file") as info:
        aring.attach(tmp_path / "missing.ring")
    assert info.value.errno == 2
    with aring.RecordRing(PAGE, path=tmp_path / "r.ring", multi_producer=True) as ring:
        ring.writer().send_nowait(b"one record")
    with aring.attach(tmp_path / "r.ring", claim_timeout=3) as ring:
        assert isinstance(ring, aring.RecordRing)
        assert ring.multi_producer and ring.claim_timeout == 3
        assert ring.reader().receive_nowait() == b"one record"


def test_a_record_ring_counts_records_published_dropped_and_read(tmp_path: Path) -> None:
    path = tmp_path / "r.ring"
    with aring.RecordRing(PAGE, path=path) as ring:
        writer, reader = ring.writer(), ring.reader(name="audit")
        for record in (b"one", b"two", b"three"):
            writer.send_nowait(record)
        writer.try_claim(10).abort()  # type: ignore[union-attr]
        writer.send_nowait(b"four")
        assert reader.receive_nowait() == b"one"
        assert ring.stats()["readers"][0]["records"] == 1
        assert [bytes(v) for v in reader.try_receive_batch()] == [b"two", b"three", b"four"]
        assert ring.stats()["readers"][0]["records"] == 1, "a batch counts once it is consumed"
        assert reader.try_receive_batch() == []
        stats = ring.stats()
        assert (stats["records"], stats["dropped"]) == (4, 1)
        assert stats["readers"][0]["records"] == 4
    with aring.attach(path) as ring:
        assert ring.reader(name="audit").receive_nowait is not None
        assert ring.stats()["readers"][0]["records"] == 4, "a named reader's count is kept"


def test_a_named_reader_is_one_at_a_time_and_can_be_removed(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path, readers=2) as ring, aring.attach(path) as again:
        first = ring.reader(name="shipper")
        with pytest.raises(
            BusyResourceError, match=f"'shipper' is open \\(process {os.getpid()}\\)"
        ):
            again.reader(name="shipper")
        with pytest.raises(BusyResourceError, match="close it first"):
            ring.remove_reader("shipper")
        first.close()
        assert [r["state"] for r in ring.stats()["readers"]] == ["parked"]
        again.remove_reader("shipper")
        assert ring.stats()["readers"] == []
        with pytest.raises(KeyError, match="no reader named 'shipper'"):
            ring.remove_reader("shipper")


@pytest.mark.parametrize(
    ("name", "error"),
    [(7, TypeError), ("", ValueError), ("x" * 64, ValueError), ("a\0b", ValueError)],
)
def test_a_bad_reader_name_is_refused_up_front(tmp_path: Path, name: object, error: type) -> None:
    with aring.Ring(PAGE, path=tmp_path / "q.ring") as ring:
        with pytest.raises(error, match="name must be"):
            ring.reader(name=name)  # type: ignore[arg-type]
        assert ring.stats()["readers"] == [], "nothing was claimed"


def test_a_named_reader_needs_a_ring_file() -> None:
    with aring.Ring(PAGE) as ring, pytest.raises(ValueError, match="make the ring with path="):
        ring.reader(name="indexer")


def test_a_parked_reader_holds_its_bytes_until_it_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path, readers=2) as ring:
        writer = ring.writer()
        ring.reader(name="slow").close()  # parked at 0
        live = ring.reader()
        writer.try_write(b"x" * PAGE)
        assert live.try_read(PAGE) == b"x" * PAGE
        assert writer.writable() == 0, "the parked reader has not read any of it"
        with pytest.raises(WouldBlock):
            writer.send_nowait(b"y")
        ring.remove_reader("slow")
        assert writer.writable() == PAGE


def test_one_writer_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path) as ring:
        writer = ring.writer()
        other = spawn(
            """
            ring = aring.attach(sys.argv[1])
            try:
                ring.writer()
            except Exception as exc:
                print(type(exc).__name__, exc)
            """,
            str(path),
        )
        out = finish(other)
        assert out.startswith("BusyResourceError") and f"process {os.getpid()}" in out
        writer.close()
        finish(spawn("aring.attach(sys.argv[1]).writer().try_write(b'from the other')", str(path)))
        assert ring.reader().try_read() == b"from the other"


def test_flush_writes_a_ring_file_and_refuses_memory_rings(tmp_path: Path) -> None:
    with aring.Ring(PAGE, path=tmp_path / "q.ring") as ring:
        ring.writer().try_write(b"durable")
        ring.flush()
        with open(tmp_path / "q.ring", "rb") as f:
            f.seek(ring._layout()["data"])
            assert f.read(7) == b"durable"
    with aring.Ring(PAGE) as ring, pytest.raises(ValueError, match="made without path="):
        ring.flush()


def test_flush_every_flushes_on_commits_when_due_and_on_close(tmp_path: Path) -> None:
    with aring.Ring(PAGE, path=tmp_path / "each.ring", flush_every=0) as ring:
        writer, reader = ring.writer(), ring.reader()
        for piece in (b"a", b"b", b"c"):
            writer.try_write(piece)
        view = writer.try_reserve(1)
        assert view is not None
        view[0] = ord("d")
        writer.commit(1)
        assert ring.stats()["flushes"] == 4, "one per commit"
        assert reader.try_read() == b"abcd"
    with aring.RecordRing(PAGE, path=tmp_path / "hourly.ring", flush_every=3600) as ring:
        assert ring.flush_every == 3600
        writer = ring.writer()
        for _ in range(5):
            writer.send_nowait(b"record")
        assert ring.stats()["flushes"] == 1, "the first commit; the others are within the hour"
        writer.close()
        assert ring.stats()["flushes"] == 2, "the writer's close flushes what is left"
    with aring.Ring(PAGE, path=tmp_path / "never.ring") as ring:
        assert ring.flush_every is None
        ring.writer().try_write(b"x")
        assert ring.stats()["flushes"] == 0


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("1", TypeError, "must be None or a number"),
        (True, TypeError, "must be None or a number"),
        (-1, ValueError, ">= 0 seconds"),
        (float("inf"), ValueError, ">= 0 seconds"),
    ],
)
def test_a_bad_flush_every_is_refused(
    tmp_path: Path, value: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        aring.Ring(PAGE, path=tmp_path / "q.ring", flush_every=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is for ring files"):
        aring.Ring(PAGE, flush_every=1)


def test_reset_empties_the_ring_but_not_under_another_process(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path, readers=2) as ring:
        ring.writer().try_write(b"old data")
        ring.reader(name="archive").close()
        holder = spawn(
            """
            ring = aring.attach(sys.argv[1])
            reader = ring.reader()
            print("ready", flush=True)
            time.sleep(30)
            """,
            str(path),
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
            with pytest.raises(
                BusyResourceError, match=f"reader slot 1 \\(process {holder.pid}\\)"
            ):
                ring.reset()
        finally:
            holder.kill()
            holder.wait()
        ring.reset()  # the holder is dead: its slot no longer counts
        stats = ring.stats()
        assert [(r["name"], r["lag"]) for r in stats["readers"]] == [("archive", 0)]
        assert ring.reader(name="archive").try_read() is None, (
            "the named reader skipped the old data"
        )


def test_a_writer_of_a_ring_file_after_the_last_one_closed_continues_the_stream(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path) as ring:
        reader = ring.reader(name="r")
        writer = ring.writer()
        writer.try_write(b"run 1")
        writer.close()
        assert reader.try_read() == b"run 1"
        with pytest.raises(EndOfStream):
            reader.try_read()
        reader.close()
    finish(spawn("aring.attach(sys.argv[1]).writer().try_write(b'run 2')", str(path)))
    with aring.attach(path) as ring:
        reader = ring.reader(name="r")
        assert reader.try_read() == b"run 2"


@pytest.mark.anyio
async def test_a_reader_awaits_bytes_written_by_an_unrelated_process(tmp_path: Path) -> None:
    """The wake-up crosses processes through the FIFO beside the file (no polling)."""
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path) as ring:
        reader = ring.reader()
        writer_process = spawn(
            """
            ring = aring.attach(sys.argv[1])
            writer = ring.writer()
            for _ in range(3):
                deadline = time.monotonic() + 20
                while not ring._waiters()["readers"]:   # until the reader sleeps
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                writer.try_write(b"ping")
            writer.close()
            """,
            str(path),
        )
        got = []
        with anyio.fail_after(30):
            wakeups = ring.notifier_writes
            while True:
                try:
                    got.append(await reader.receive())
                except EndOfStream:
                    break
        finish(writer_process)
        assert b"".join(got) == b"ping" * 3
        assert ring.notifier_writes - wakeups >= 3, "each ping woke the reader through its FIFO"


@pytest.mark.anyio
async def test_a_writer_awaits_space_freed_by_an_unrelated_process(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path) as ring:
        writer = ring.writer()
        reader_process = spawn(
            """
            ring = aring.attach(sys.argv[1])
            reader = ring.reader(name="far")
            print("ready", flush=True)
            total = 0
            while total < 4 * 4096:
                if not ring._waiters()["writer"]:
                    time.sleep(0.001)
                    continue
                data = reader.try_read(4096)
                total += len(data or b"")
            print(total, flush=True)
            """,
            str(path),
        )
        assert reader_process.stdout is not None
        assert reader_process.stdout.readline() == "ready\n"
        with anyio.fail_after(30):
            for _ in range(5):
                await writer.send(b"z" * PAGE)
        assert finish(reader_process).strip() == str(4 * PAGE)
