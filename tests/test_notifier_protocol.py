"""The low-level waiting protocol any event loop or GUI toolkit can use:
``notifier_fd``, ``arm(n)``, ``drain()``, and the waiter-flag rule (a
publisher writes the fd only for an armed waiter, once per arm)."""

from __future__ import annotations

import selectors
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from anyio import BrokenResourceError, EndOfStream

import aring

PAGE = aring.capabilities().page_size


def readable(fd: int, timeout: float = 0.0) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(timeout))


@pytest.fixture(params=["eventfd", "pipe", "fifo"])
def ring(request: pytest.FixtureRequest, tmp_path: Path) -> aring.Ring:
    if request.param == "fifo":
        return aring.Ring(PAGE, path=tmp_path / "q.ring")
    return aring.Ring(PAGE, notifier=request.param)


def test_arm_says_when_there_is_no_need_to_wait(ring: aring.Ring) -> None:
    with ring:
        writer, reader = ring.writer(), ring.reader()
        writer.try_write(b"abc")
        assert reader.arm(3) is False, "3 bytes are there: look, do not wait"
        assert reader.arm(4) is True, "armed for the 4th byte"
        assert not readable(reader.notifier_fd)
        writer.try_write(b"d")
        assert readable(reader.notifier_fd, 5)
        reader.drain()
        assert not readable(reader.notifier_fd), "drain() resets the notifier"
        assert reader.try_read() == b"abcd"


def test_one_wake_up_per_arm_and_none_without_one(ring: aring.Ring) -> None:
    with ring:
        writer, reader = ring.writer(), ring.reader()
        before = ring.notifier_writes
        for _ in range(10):
            writer.try_write(b"x")  # nobody armed: no syscall, no wake-up
        assert ring.notifier_writes == before and not readable(reader.notifier_fd)
        reader.try_read()
        assert reader.arm(1)
        for _ in range(10):
            writer.try_write(b"y")  # a burst: the first commit wakes, and disarms
        assert ring.notifier_writes == before + 1
        assert readable(reader.notifier_fd, 5)
        reader.drain()
        assert reader.try_read() == b"y" * 10


def test_an_armed_reader_is_woken_below_its_amount_only_by_the_end_of_stream(
    ring: aring.Ring,
) -> None:
    with ring:
        writer, reader = ring.writer(), ring.reader()
        assert reader.arm(100)
        writer.try_write(b"not yet")
        assert not readable(reader.notifier_fd), "7 bytes are not the 100 asked for"
        writer.close()
        assert readable(reader.notifier_fd, 5), "the end of the stream wakes it"
        reader.drain()
        assert reader.try_read() == b"not yet"
        with pytest.raises(EndOfStream):
            reader.try_read()


def test_an_armed_writer_is_woken_when_its_space_is_free(ring: aring.Ring) -> None:
    with ring:
        writer, reader = ring.writer(), ring.reader()
        writer.try_write(b"z" * PAGE)
        assert writer.arm(100)
        assert reader.try_read(50) is not None
        assert not readable(writer.notifier_fd), "50 bytes free, 100 asked for"
        assert reader.try_read(50) is not None
        assert readable(writer.notifier_fd, 5)
        writer.drain()
        assert writer.arm(100) is False


def test_a_selector_loop_moves_a_stream_from_a_thread(ring: aring.Ring) -> None:
    """The loop of examples/selectors_loop.py: arm, select, drain, look again."""
    total = 1 << 20
    with ring:
        writer, reader = ring.writer(), ring.reader()

        def produce() -> None:
            for _ in range(total // 1024):
                writer.sync.send(bytes(range(256)) * 4, timeout=30)
            writer.close()

        thread = threading.Thread(target=produce)
        thread.start()
        got = 0
        with selectors.DefaultSelector() as selector:
            selector.register(reader.notifier_fd, selectors.EVENT_READ)
            while True:
                try:
                    data = reader.try_read(65536)
                except EndOfStream:
                    break
                if data is not None:
                    got += len(data)
                    continue
                if reader.arm(1):
                    assert selector.select(30), "a wake-up must come"
                    reader.drain()
        thread.join()
        assert got == total


def test_re_arming_finds_a_writer_that_died_in_another_process(tmp_path: Path) -> None:
    """A dead process sends no wake-up: a loop that re-arms every PEER_CHECK_INTERVAL
    (select with that timeout) is told by arm() itself, and try_read says why."""
    path = tmp_path / "q.ring"
    with aring.Ring(PAGE, path=path) as ring:
        reader = ring.reader()
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import aring, sys, time\n"
                "w = aring.attach(sys.argv[1]).writer(); w.try_write(b'last words')\n"
                "print('ok', flush=True); time.sleep(60)",
                str(path),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdout.readline() == "ok\n"
        assert reader.try_read() == b"last words"
        writer.kill()
        writer.wait()
        interval = aring._native.PEER_CHECK_INTERVAL
        with selectors.DefaultSelector() as selector:
            selector.register(reader.notifier_fd, selectors.EVENT_READ)
            for _ in range(int(10 / interval)):
                if not reader.arm(1):
                    break
                selector.select(interval)
                reader.drain()
            else:
                pytest.fail("arm() never noticed the dead writer")
        with pytest.raises(BrokenResourceError, match="died without closing"):
            reader.try_read()
