"""Ring files under faults: damaged and hostile files are refused with the
reason (never a crash, even over 10,000 random corruptions), a writer or a
reader killed with SIGKILL at random points loses nothing it committed, and
``python -m aring inspect`` shows a file without changing it."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from anyio import BusyResourceError
from scenario import run_scenario

import aring

PAGE = aring.capabilities().page_size
GEOMETRY = struct.Struct("=QIIQIIIIIIQ")  # includes/header.h: aring_geometry
FIELDS = [
    "magic",
    "version",
    "header_size",
    "capacity",
    "page_size",
    "item_size",
    "max_readers",
    "strategy",
    "flags",
    "checksum",
    "created",
]


def fnv1a(data: bytes, h: int = 2166136261) -> int:
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def rewrite_geometry(path: Path, **changes: int) -> None:
    """Change geometry fields and fix the checksum, as a careful vandal would."""
    with open(path, "r+b") as f:
        values = dict(zip(FIELDS, GEOMETRY.unpack(f.read(GEOMETRY.size)), strict=True))
        values.update(changes)
        raw = bytearray(GEOMETRY.pack(*values.values()))
        if "checksum" not in changes:
            struct.pack_into("=I", raw, 44, fnv1a(bytes(raw[48:56]), fnv1a(bytes(raw[:40]))))
        f.seek(0)
        f.write(raw)


def poke(path: Path, offset: int, fmt: str, value: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


@pytest.fixture
def ring_file(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A ring file with a named reader and some data, and its header's layout."""
    path = tmp_path / "q.ring"
    with aring.Ring(4 * PAGE, path=path, readers=2) as ring:
        ring.writer().try_write(b"0123456789" * 100)
        ring.reader(name="keeper").close()
        layout = ring._layout()
    return path, layout


def refused(path: Path) -> str:
    with pytest.raises(aring.MappingError) as info:
        aring.attach(path)
    return str(info.value)


def test_the_checked_file_still_opens(ring_file: tuple[Path, dict[str, int]]) -> None:
    path, _ = ring_file
    rewrite_geometry(path)  # rewriting with a right checksum changes nothing
    with aring.attach(path) as ring:
        assert ring.reader(name="keeper").try_read(10) == b"0123456789"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ({"magic": 0x1234}, "not an aring ring file"),
        ({"version": 4}, "layout version 4; this aring reads version 5"),
        ({"page_size": 16384}, "16384-byte pages"),
        ({"max_readers": 65}, "65 reader slots"),
        ({"item_size": 0}, "item size of 0"),
        ({"capacity": 4 * PAGE + 1}, "is not a multiple of the page size"),
        ({"capacity": 8 * PAGE}, "but its header says"),
        ({"header_size": 2 * PAGE}, "does not fit 2 reader slots"),
        ({"strategy": 1}, "strategy 1, not a file"),
        ({"flags": 1 << 20}, "unknown flags"),
        ({"flags": 0}, "not marked as a ring file"),
    ],
)
def test_a_damaged_geometry_is_refused_with_its_reason(
    ring_file: tuple[Path, dict[str, int]], damage: dict[str, int], reason: str
) -> None:
    path, _ = ring_file
    rewrite_geometry(path, **damage)
    assert reason in refused(path)


def test_a_header_changed_by_hand_fails_its_checksum(
    ring_file: tuple[Path, dict[str, int]],
) -> None:
    path, _ = ring_file
    poke(path, 16, "=Q", 8 * PAGE)  # capacity, checksum left as it was
    assert "header checksum does not match" in refused(path)


@pytest.mark.parametrize("size", [0, 10, 63, 64, PAGE, 5 * PAGE - 1, 5 * PAGE + 1])
def test_a_truncated_or_grown_file_is_refused(
    ring_file: tuple[Path, dict[str, int]], size: int
) -> None:
    path, _ = ring_file
    os.truncate(path, size)
    assert re.search(r"shorter than a ring header|truncated, or grown|not an aring", refused(path))


@pytest.mark.parametrize(
    ("where", "fmt", "value", "reason"),
    [
        ("slot_position", "=Q", 1 << 40, "more than the capacity"),
        ("slot_word", "=Q", 7, "reader slot 0 is in state 7"),
        ("write_position", "=Q", 1 << 50, "more than the capacity"),
        ("claim_position", "=Q", 8, "a byte ring with a claim position"),
    ],
)
def test_cursors_out_of_range_are_refused(
    ring_file: tuple[Path, dict[str, int]], where: str, fmt: str, value: int, reason: str
) -> None:
    path, layout = ring_file
    offset = (
        layout[where] if where.startswith(("write", "claim")) else layout["slots"] + layout[where]
    )
    poke(path, offset, fmt, value)
    assert reason in refused(path)


def test_a_write_position_past_the_capacity_before_any_reader_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path) as ring:
        layout = ring._layout()
    poke(path, layout["write_position"], "=Q", 2 * PAGE)
    assert "past the capacity before any reader joined" in refused(path)


def test_a_name_without_its_end_is_refused(ring_file: tuple[Path, dict[str, int]]) -> None:
    path, layout = ring_file
    with open(path, "r+b") as f:
        f.seek(layout["slots"] + layout["slot_name"])
        f.write(b"n" * 64)
    assert "reader slot 0 has no valid name" in refused(path)


def test_links_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    aring.Ring(PAGE, path=path).close()
    os.symlink(path, tmp_path / "link.ring")
    assert "symbolic link" in refused(tmp_path / "link.ring")
    os.chmod(path, 0o644)
    assert "a ring file must be 0600" in refused(path)
    assert "not a regular file" in refused(tmp_path)
    (tmp_path / "plain").write_bytes(b"x" * 100)
    os.chmod(tmp_path / "plain", 0o600)
    assert "not an aring ring file" in refused(tmp_path / "plain")


def test_a_planted_notifier_directory_or_fifo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    aring.Ring(PAGE, path=path).close()
    os.chmod(tmp_path / "q.ring.wake", 0o755)
    assert "must be this user's, mode 0700" in refused(path)
    os.chmod(tmp_path / "q.ring.wake", 0o700)
    os.unlink(tmp_path / "q.ring.wake" / "writer")
    (tmp_path / "q.ring.wake" / "writer").write_bytes(b"")
    assert "notifier" in refused(path) and "is not a FIFO" in refused(path)
    os.unlink(tmp_path / "q.ring.wake" / "writer")
    os.symlink("/dev/null", tmp_path / "q.ring.wake" / "writer")
    assert "writer" in refused(path)


def test_ten_thousand_random_corruptions_never_crash(
    ring_file: tuple[Path, dict[str, int]],
) -> None:
    """Each attach either refuses with MappingError or gives a ring whose use
    raises only the library's errors; run in a child, so a crash fails the test."""
    path, layout = ring_file
    outcomes = run_scenario(
        f"""
        import random
        from anyio import BrokenResourceError, BusyResourceError, EndOfStream, WouldBlock
        path = {str(path)!r}
        pristine = open(path, "rb").read()
        header = {layout["data"]}
        rng = random.Random(1234)
        counts = {{"opened": 0, "refused": 0}}
        unexpected = []
        for _ in range(10_000):
            damaged = bytearray(pristine)
            for _ in range(rng.choice((1, 1, 2, 8))):
                # mostly the fields that matter: geometry, cursors, the first slots
                at = rng.choice((rng.randrange(64), rng.randrange(header)))
                damaged[at] ^= 1 << rng.randrange(8)
            with open(path, "r+b") as f:
                f.write(damaged)
            try:
                ring = aring.attach(path)
            except aring.MappingError:
                counts["refused"] += 1
                continue
            counts["opened"] += 1
            try:
                ring.stats()
                for call in (
                    lambda: ring.reader(name="keeper").try_read(),
                    lambda: ring.reader().try_read(),
                    lambda: ring.writer().try_write(b"more"),
                ):
                    try:
                        call()
                    except (BrokenResourceError, BusyResourceError, EndOfStream, WouldBlock,
                            RuntimeError) as exc:
                        pass
                    except Exception as exc:
                        unexpected.append(repr(exc))
            finally:
                ring.close()
        outcome("counts", lambda: counts)
        outcome("unexpected", lambda: unexpected[:5])
        """,
        timeout=300,
    )
    counts = eval(outcomes["counts"].removeprefix("returned "))
    assert counts["refused"] > 1000 and counts["opened"] > 1000, counts
    assert outcomes["unexpected"] == "returned []"


WRITER = """
import os, struct, sys
import aring
ring = aring.attach(sys.argv[1])
writer = ring.writer()
# Go on from whatever the last run committed: 8-byte counters, in uneven pieces.
counter = ring.stats()["written"] // 8
rng = __import__("random").Random(int(sys.argv[2]))
print("writing", flush=True)
while True:
    n = rng.randrange(1, 200)
    writer.sync.send(b"".join(struct.pack("<Q", c) for c in range(counter, counter + n)))
    counter += n
"""


def check_counters(data: bytes, first: int) -> int:
    values = struct.unpack(f"<{len(data) // 8}Q", data)
    assert len(data) % 8 == 0
    assert list(values) == list(range(first, first + len(values))), "a gap or a repeat"
    return first + len(values)


def test_a_writer_killed_at_random_points_loses_nothing_it_committed(tmp_path: Path) -> None:
    """50 times: kill -9 the writer while it writes; every committed counter is
    there, in order, and the next writer (a new process) takes over its slot."""
    path = tmp_path / "log.ring"
    rng = random.Random(7)
    with aring.Ring(64 * 1024, path=path) as ring:
        checker = ring.reader(name="checker")
        expected = 0
        for round_ in range(50):
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(path), str(round_)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
            deadline = time.monotonic() + rng.uniform(0, 0.03)
            while time.monotonic() < deadline:  # read some while it writes
                data = checker.try_read(rng.randrange(8, 4096, 8))
                if data:
                    expected = check_counters(data, expected)
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            stats = ring.stats()
            assert stats["written"] % 8 == 0, "only whole counters were committed"
            while data := checker.try_read(65536):
                expected = check_counters(data, expected)
            assert expected * 8 == stats["written"]
        assert expected > 0
    with aring.attach(path) as ring:
        assert ring.stats()["writer"]["died"], "the last writer's death is on record"
        ring.writer().close()  # its slot was reclaimed


READER = """
import os, struct, sys, time
import aring
ring = aring.attach(sys.argv[1])
reader = ring.reader(name="consumer")
print("reading", flush=True)
while True:
    data = reader.sync.receive(int(sys.argv[2]))
    os.write(1, struct.pack("<Q", struct.unpack_from("<Q", data, len(data) - 8)[0]))
    time.sleep(0.0002)  # a slow consumer: the kill lands mid-stream
"""


def test_a_reader_killed_mid_read_resumes_after_its_last_consumed_byte(tmp_path: Path) -> None:
    path = tmp_path / "log.ring"
    rng = random.Random(11)
    with aring.Ring(64 * 1024, path=path, readers=2) as ring:
        writer = ring.writer()
        written = 0
        for _ in range(30):
            while (room := writer.writable() // 8) > 0:
                chunk = min(room, rng.randrange(1, 500))
                writer.try_write(
                    b"".join(struct.pack("<Q", c) for c in range(written, written + chunk))
                )
                written += chunk
            consumer = subprocess.Popen(
                [sys.executable, "-c", READER, str(path), str(rng.randrange(8, 2048, 8))],
                stdout=subprocess.PIPE,
            )
            assert consumer.stdout is not None and consumer.stdout.readline() == b"reading\n"
            time.sleep(rng.uniform(0, 0.01))
            consumer.send_signal(signal.SIGKILL)
            consumer.wait()
            seen = consumer.stdout.read()
            last_reported = (
                struct.unpack_from("<Q", seen, len(seen) - 8)[0] if len(seen) >= 8 else -1
            )
            reader = ring.reader(name="consumer")  # the dead holder's slot is taken over
            position = next(
                r["position"] for r in ring.stats()["readers"] if r["name"] == "consumer"
            )
            assert position % 8 == 0 and position // 8 > last_reported
            first = reader.try_read(8)
            if first is not None:
                assert struct.unpack("<Q", first)[0] == position // 8, "it resumes right after"
            reader.close()
    assert written > 0


def test_a_killed_writer_does_not_block_a_reset_or_a_new_writer(tmp_path: Path) -> None:
    path = tmp_path / "q.ring"
    aring.Ring(PAGE, path=path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import aring, sys, time; w = aring.attach(sys.argv[1]).writer(); "
            "print('ok', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "ok\n"
    with aring.attach(path) as ring:
        with pytest.raises(BusyResourceError, match=f"held by process {holder.pid}"):
            ring.writer()
        holder.kill()
        holder.wait()
    with aring.attach(path) as ring:  # reclaimed on attach
        ring.reset()
        ring.writer().try_write(b"again")


def test_a_record_producer_killed_mid_claim_does_not_stall_the_ring(tmp_path: Path) -> None:
    path = tmp_path / "r.ring"
    aring.RecordRing(PAGE, path=path, multi_producer=True).close()
    producer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import aring, sys, time\n"
            "w = aring.attach(sys.argv[1]).writer()\n"
            "w.send_nowait(b'before')\n"
            "claim = w.try_claim(100)\n"
            "print('claimed', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert producer.stdout is not None and producer.stdout.readline() == "claimed\n"
    producer.kill()
    producer.wait()
    with aring.attach(path) as ring:
        reader = ring.reader()
        assert reader.receive_nowait() == b"before"
        ring.writer().send_nowait(b"after")
        assert reader.receive_nowait() == b"after", "the dead claim was dropped, not waited for"


def test_a_claim_whose_header_was_never_written_is_cut_off_on_reopen(tmp_path: Path) -> None:
    """A producer killed between moving the claim cursor and writing the record's
    header left bytes nobody can measure: with no producer alive, the next
    writer moves the claim cursor back to them instead of waiting for ever."""
    path = tmp_path / "r.ring"
    with aring.RecordRing(PAGE, path=path) as ring:
        ring.writer().send_nowait(b"kept")
        layout = ring._layout()
        end = ring.stats()["written"]
    poke(path, layout["claim_position"], "=Q", end + 64)  # claimed, header never written
    with aring.attach(path) as ring:
        assert ring.stats()["claimed"] == end, "repaired on attach: no producer is alive"
        reader = ring.reader()
        assert reader.receive_nowait() == b"kept"
        ring.writer().send_nowait(b"next")
        assert reader.receive_nowait() == b"next"


def run_inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aring", "inspect", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_inspect_shows_the_header_readers_and_unread_bytes_without_changing_the_file(
    ring_file: tuple[Path, dict[str, int]],
) -> None:
    path, _ = ring_file
    before = path.read_bytes(), os.stat(path).st_mtime_ns
    done = run_inspect(str(path), "-n", "32")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "aring Ring, layout version 5" in out
    assert "capacity        16384 bytes" in out
    assert "written         1000 bytes" in out
    assert "'keeper', position 0, lag 1000 bytes, parked" in out
    assert "reader 0 unread: 1000 bytes (first 32 shown)" in out
    assert "30 31 32 33 34 35 36 37 38 39 30 31 32 33 34 35  |0123456789012345|" in out
    doc = json.loads(run_inspect(str(path), "--json").stdout)
    assert doc["header"]["readers"][0]["name"] == "keeper"
    assert bytes.fromhex(doc["unread"]["0"]).startswith(b"0123456789")
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before, "inspect only reads"


def test_inspect_walks_records(tmp_path: Path) -> None:
    path = tmp_path / "r.ring"
    with aring.RecordRing(PAGE, path=path) as ring:
        writer = ring.writer()
        writer.send_nowait(b"alpha")
        writer.try_claim(3).abort()  # type: ignore[union-attr]
        writer.send_nowait(b"")
    out = run_inspect(str(path), "--records").stdout
    assert "@0: committed, 5 bytes" in out and "|alpha|" in out
    assert "@24: skipped, 3 bytes" in out
    assert "@48: committed, 0 bytes" in out


def test_inspect_refuses_what_is_not_a_ring_file_in_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"hello")
    os.chmod(plain, 0o600)
    done = run_inspect(str(plain))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "is not an aring ring file" in done.stderr
    assert run_inspect(str(tmp_path / "missing")).stderr.startswith("aring inspect: ")
