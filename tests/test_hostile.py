"""Hostile input: a corrupt control header, planted files, a small /dev/shm.

Whatever another process (or a planted file) puts where aring looks ends in
a clear exception, never in a crash, a wild copy or a file written elsewhere.
Anything that could crash runs in a child interpreter (``run_scenario``).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import textwrap

import pytest
from scenario import run_scenario, with_tmpfs

import aring

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="scenarios use Linux /proc")

PAGE = aring.capabilities().page_size

# A second, independent mapping of a ring's memory (as another process would
# have) through its fd, and a helper to poke a 64-bit value into it.
CORRUPTOR = """
import mmap, struct
from anyio import BrokenResourceError

def second_mapping(ring):
    return mmap.mmap(ring.buffer.fileno(), ring._layout()["data"] + ring.capacity)

def poke(mapping, offset, value, size=8):
    mapping[offset:offset + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
"""


@pytest.mark.parametrize("strategy", ["memfd", "shm", "file"])
def test_a_reader_lagging_beyond_the_capacity_is_refused_not_copied(strategy: str) -> None:
    if strategy == "memfd" and aring.capabilities().strategy != "memfd":
        pytest.skip("no memfd here")
    outcomes = run_scenario(
        CORRUPTOR
        + textwrap.dedent(f"""
        ring = aring.Ring(4 * {PAGE}, strategy={strategy!r})
        w, r = ring.writer(), ring.reader()
        w.try_write(b"x" * 1000)
        layout = ring._layout()
        m = second_mapping(ring)
        slot0 = layout["slots"]
        # The reader "lags" by three capacities: the writer's free space would be negative.
        poke(m, slot0 + layout["slot_position"], 1000 - 3 * ring.capacity)
        outcome("partial write", lambda: w.try_write(b"y" * 100, partial=True))
        outcome("writable", w.writable)
        outcome("reserve", lambda: w.try_reserve(1))
        outcome("reader peek", lambda: r.try_peek(1))
        outcome("reader read", lambda: r.try_read(10))
        # A reader ahead of the writer's cursor.
        poke(m, slot0 + layout["slot_position"], 1000 + 8)
        outcome("reader ahead, write", lambda: w.try_write(b"z"))
        # A slot state no ring writes.
        poke(m, slot0 + layout["slot_position"], 1000)
        poke(m, slot0 + layout["slot_word"], 77, 4)  # the state: the word's low half
        outcome("bad state, write", lambda: w.try_write(b"z"))
        poke(m, slot0 + layout["slot_word"], 2, 4)
        outcome("repaired, write", lambda: w.try_write(b"z"))
        # Waiting bits for slots the ring does not have: a wakeup must not
        # index past the header's slots.
        poke(m, layout["readers_waiting"], 0xFFFFFFFFFFFFFFFF)
        outcome("stray waiting bits, write", lambda: w.try_write(b"z" * 10))
        # The write cursor itself corrupted, as a reader sees it.
        poke(m, layout["write_position"], 1 << 62)
        outcome("writer cursor, reader read", lambda: r.try_read(10))
        outcome("writer cursor, reader wait", lambda: r.sync.receive(timeout=1))
        poke(m, layout["write_position"], 1011)
        m.close()
        outcome("close", ring.close)
        """)
    )
    for label in ("partial write", "writable", "reserve", "reader peek", "reader read"):
        assert outcomes[label].startswith("BrokenResourceError"), (label, outcomes[label])
        assert "control header is corrupt" in outcomes[label]
    assert "reader slot 0" in outcomes["writable"]
    assert outcomes["reader ahead, write"].startswith("BrokenResourceError")
    assert outcomes["bad state, write"].startswith("BrokenResourceError")
    assert "state 77" in outcomes["bad state, write"]
    assert outcomes["repaired, write"] == "returned 1"
    assert outcomes["stray waiting bits, write"] == "returned 10"
    assert outcomes["writer cursor, reader read"].startswith("BrokenResourceError")
    assert outcomes["writer cursor, reader wait"].startswith("BrokenResourceError")
    assert outcomes["close"] == "returned None"


@pytest.mark.parametrize("position", [5 * PAGE, (1 << 63) + PAGE], ids=["past", "far past"])
def test_a_corrupt_write_cursor_before_any_reader_joined(position: int) -> None:
    outcomes = run_scenario(
        CORRUPTOR
        + textwrap.dedent(f"""
        ring = aring.Ring(4 * {PAGE}, strategy="memfd")
        w = ring.writer()  # no reader yet: the writer is held back by a virtual one at 0
        m = second_mapping(ring)
        poke(m, ring._layout()["write_position"], {position})
        outcome("partial write", lambda: w.try_write(b"y" * 64 * ring.capacity, partial=True))
        outcome("writable", w.writable)
        outcome("wait", lambda: w.wait(1, timeout=1))
        """)
    )
    for label in ("partial write", "writable"):
        assert outcomes[label].startswith("BrokenResourceError"), outcomes[label]
        assert "before any reader joined" in outcomes[label]
    assert outcomes["wait"].startswith("BrokenResourceError")


def test_closing_the_buffer_under_a_ring_is_refused() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(1 << 16)
        w, r = ring.writer(), ring.reader()
        outcome("buffer close", ring.buffer.close)
        def with_block():
            with ring.buffer:
                pass
        outcome("with buffer", with_block)
        outcome("write after", lambda: w.try_write(b"still mapped"))
        outcome("read after", lambda: r.try_read())
        ring.close()
        outcome("buffer closed with the ring", lambda: ring.buffer.closed)
        outcome("buffer close after ring", ring.buffer.close)
        """
    )
    assert outcomes["buffer close"].startswith("BufferError")
    assert "belongs to a Ring" in outcomes["buffer close"]
    assert outcomes["with buffer"].startswith("BufferError")
    assert outcomes["write after"] == "returned 12"
    assert outcomes["read after"] == "returned b'still mapped'"
    assert outcomes["buffer closed with the ring"] == "returned True"
    assert outcomes["buffer close after ring"] == "returned None"


def test_a_ring_larger_than_dev_shm_fails_at_creation_not_with_sigbus() -> None:
    prefix = with_tmpfs("/dev/shm", 16 << 10)
    if prefix is None:
        pytest.skip("cannot mount a small /dev/shm here (needs unshare and a mount namespace)")
    outcomes = run_scenario(
        """
        def big():
            ring = aring.Ring(64 << 20, strategy="shm")
            w = ring.writer()
            ring.reader()
            w.try_write(b"x" * (64 << 20))  # would fault past /dev/shm's 16 MiB
            return "written"
        outcome("64 MiB ring on a 16 MiB /dev/shm", big)
        outcome("64 MiB buffer", lambda: aring.DoubleMappedBuffer(64 << 20, strategy="shm"))
        def fits():
            with aring.Ring(4 << 20, strategy="shm") as ring:
                w, r = ring.writer(), ring.reader()
                return w.try_write(b"y" * (4 << 20))
        outcome("4 MiB ring", fits)
        """,
        prefix=prefix,
    )
    big = outcomes["64 MiB ring on a 16 MiB /dev/shm"]
    assert big.startswith("MappingError"), big
    assert "ENOSPC" in big and "/dev/shm" in big
    assert outcomes["64 MiB buffer"].startswith("MappingError")
    assert outcomes["4 MiB ring"] == f"returned {4 << 20}"


# -- path=: files in shared directories ------------------------------------------------


def test_a_symlink_at_the_path_is_never_followed(tmp_path: os.PathLike[str]) -> None:
    elsewhere = os.path.join(tmp_path, "elsewhere")
    existing = os.path.join(tmp_path, "existing")
    with open(existing, "wb") as f:
        f.write(b"not yours")
    for target in (elsewhere, existing):  # dangling, and onto a file
        link = os.path.join(tmp_path, "ring-" + os.path.basename(target))
        os.symlink(target, link)
        with pytest.raises(aring.MappingError) as info:
            aring.Ring(PAGE, path=link)
        assert info.value.errno == errno.ELOOP
        assert "symbolic link" in str(info.value)
    assert not os.path.exists(elsewhere), "a ring must not create a file through a link"
    with open(existing, "rb") as f:
        assert f.read() == b"not yours"


def test_a_file_others_may_read_is_refused_naming_its_mode(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "shared")
    with open(path, "wb"):
        pass
    os.chmod(path, 0o644)
    with pytest.raises(aring.MappingError) as info:
        aring.Ring(PAGE, path=path)
    assert info.value.errno == errno.EPERM
    assert "mode 0644" in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user owns needs root")
def test_a_file_of_another_user_is_refused(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "theirs")
    with open(path, "wb"):
        pass
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(aring.MappingError) as info:
        aring.Ring(PAGE, path=path)
    assert "belongs to uid 65534" in str(info.value)


def test_a_new_ring_file_is_private_and_complete(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "q.ring")
    os.umask(old := os.umask(0))  # whatever the umask, the file is 0600
    try:
        with aring.Ring(PAGE, path=path) as ring:
            st = os.stat(path)
            assert st.st_mode & 0o777 == 0o600
            assert st.st_size == ring._layout()["data"] + ring.capacity
            with open(path, "rb") as f:
                assert f.read(8) == b"A_ARING1", "the file is named only once its header is written"
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == ["q.ring", "q.ring.wake"], "no temporary file is left"
    wake = os.path.join(tmp_path, "q.ring.wake")
    assert os.stat(wake).st_mode & 0o777 == 0o700, "the notifiers' directory is private"
    for name in os.listdir(wake):
        st = os.stat(os.path.join(wake, name))
        assert stat.S_ISFIFO(st.st_mode) and st.st_mode & 0o777 == 0o600, name


@pytest.mark.parametrize("path", ["ring\0elsewhere", b"ring\0elsewhere", ""])
def test_a_path_with_a_nul_byte_or_empty_is_a_value_error(path: str | bytes) -> None:
    with pytest.raises(ValueError, match=r"NUL byte|must not be empty"):
        aring.Ring(PAGE, path=path)


def test_two_processes_creating_one_path_share_one_whole_ring(tmp_path: os.PathLike[str]) -> None:
    """One creates the file, the other opens that same ring: never two, never a half-made one."""
    outcomes = run_scenario(
        f"""
        rounds, apart = 300, 0
        for i in range(rounds):
            path = os.path.join({os.fspath(tmp_path)!r}, f"r{{i}}")
            go_r, go_w = os.pipe()
            seen_r, seen_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.read(go_r, 1)
                    with aring.Ring({PAGE}, path=path) as ring:
                        os.write(seen_w, str(ring.created).encode())
                    os._exit(0)
                except BaseException as exc:
                    os.write(seen_w, repr(exc).encode())
                    os._exit(1)
            os.write(go_w, b"!")
            try:
                with aring.Ring({PAGE}, path=path) as ring:
                    mine = str(ring.created)
            except BaseException as exc:
                print("OUTCOME error:", repr(exc), flush=True)
                mine = None
            _, status = os.waitpid(pid, 0)
            theirs = os.read(seen_r, 200).decode()
            if os.waitstatus_to_exitcode(status) != 0:
                print("OUTCOME error:", theirs, flush=True)
            apart += mine != theirs
            for fd in (go_r, go_w, seen_r, seen_w):
                os.close(fd)
        outcome("apart", lambda: apart)
        """,
        timeout=120,
    )
    assert "error" not in outcomes, outcomes.get("error")
    assert outcomes["apart"] == "returned 0", "both processes opened the same ring"
