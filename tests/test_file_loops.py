"""The native file loops (``_pump_to_fd``, ``_fill_from_fd``: file_loops.pxi) under misuse.

``pump`` to and ``fill`` from a regular file run these loops in their worker
thread without the GIL; they move the end's cursor and sleep on the end's
notifier.  A close of the end or of the whole ring from another thread must
stop them (ClosedResourceError in the looping thread), never leave one
moving a freed slot, publishing after end of stream, or touching unmapped
memory.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import anyio
import pytest
from observe import until

import aring
from aring._native import (
    PUMP_END,
    PUMP_LIMIT,
    PUMP_MID_ITEM,
    PUMP_STOPPED,
    _fill_from_fd,
    _pump_to_fd,
)


def _pump_in_thread(reader: aring.Reader, fd: int) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(_pump_to_fd(reader, fd, 1 << 62, -1))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("what", ["reader", "ring"])
@pytest.mark.parametrize("pump_state", ["asleep", "writing"])
def test_closing_under_a_native_pump_stops_it(what: str, pump_state: str) -> None:
    with open(os.devnull, "wb") as sink, aring.Ring(1 << 16) as ring:
        writer, reader = ring.writer(), ring.reader()
        producing = threading.Event()

        def produce() -> None:
            try:
                while producing.is_set():
                    writer.sync.send(b"w" * 4096, timeout=0.1)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, TimeoutError):
                pass

        producer = threading.Thread(target=produce)
        pump, outcome = _pump_in_thread(reader, sink.fileno())
        if pump_state == "asleep":
            until(lambda: reader.slot in ring._waiters()["readers"], "the pump asleep")
        else:
            producing.set()
            producer.start()
            time.sleep(0.05)  # the pump writes all the while
        (reader if what == "reader" else ring).close()
        pump.join(10)
        producing.clear()
        if producer.is_alive() or pump_state == "writing":
            producer.join(10)
        assert not pump.is_alive(), "the pump did not stop"
        assert len(outcome) == 1 and isinstance(outcome[0], anyio.ClosedResourceError), outcome
        if what == "reader":
            # The slot is free and whoever takes it next is not moved by the old loop.
            newcomer = ring.reader()
            start = newcomer.readable()
            time.sleep(0.01)
            assert newcomer.readable() >= start


def test_a_native_pump_is_interrupted_at_once_and_resumes_after() -> None:
    with open(os.devnull, "wb") as sink, aring.Ring(1 << 16) as ring:
        writer, reader = ring.writer(), ring.reader()
        pump, outcome = _pump_in_thread(reader, sink.fileno())
        until(lambda: reader.slot in ring._waiters()["readers"], "the pump asleep")
        started = time.monotonic()
        reader._interrupt_native(True)
        pump.join(10)
        assert outcome == [(0, 0, 0, PUMP_STOPPED)]
        assert time.monotonic() - started < 5
        # Sticky until cleared: a call that starts late still sees the request.
        assert _pump_to_fd(reader, sink.fileno(), 1 << 62, -1) == (0, 0, 0, PUMP_STOPPED)
        reader._interrupt_native(False)
        writer.try_write(b"x" * 5000)
        assert _pump_to_fd(reader, sink.fileno(), 4096, -1)[::3] == (5000, PUMP_LIMIT)
        writer.close()
        assert _pump_to_fd(reader, sink.fileno(), 1 << 62, -1) == (0, 0, 0, PUMP_END)


def test_a_native_pump_refuses_bad_arguments_and_other_users() -> None:
    with aring.Ring(1 << 16) as ring:
        _writer, reader = ring.writer(), ring.reader()
        with pytest.raises(ValueError, match="fd must be >= 0"):
            _pump_to_fd(reader, -1, 10, -1)
        with pytest.raises(ValueError, match="limit must be >= 1"):
            _pump_to_fd(reader, 1, 0, -1)
        with open(os.devnull, "wb") as sink:
            pump, outcome = _pump_in_thread(reader, sink.fileno())
            until(lambda: reader.slot in ring._waiters()["readers"], "the pump asleep")
            with pytest.raises(anyio.BusyResourceError):
                reader.try_peek(1)  # the pumping thread owns the reader
            reader._interrupt_native(True)
            pump.join(10)
        assert outcome == [(0, 0, 0, PUMP_STOPPED)]


def _fill_in_thread(writer: aring.Writer, fd: int) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(_fill_from_fd(writer, fd, 1 << 62))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("what", ["writer", "ring"])
@pytest.mark.parametrize("fill_state", ["asleep", "reading"])
def test_closing_under_a_native_fill_stops_it(what: str, fill_state: str) -> None:
    # /dev/zero never ends: the loop reads as fast as a reader drains
    with open("/dev/zero", "rb") as zeros, aring.Ring(1 << 16) as ring:
        writer, reader = ring.writer(), ring.reader()
        draining = threading.Event()

        def drain() -> None:
            try:
                while draining.is_set():
                    reader.sync.receive(1 << 16, timeout=0.1)
            except (anyio.ClosedResourceError, anyio.EndOfStream, TimeoutError):
                pass

        consumer = threading.Thread(target=drain)
        fill, outcome = _fill_in_thread(writer, zeros.fileno())
        if fill_state == "asleep":
            until(lambda: ring._waiters()["writer"], "the fill asleep on a full ring")
        else:
            draining.set()
            consumer.start()
            time.sleep(0.05)  # the fill reads all the while
        (writer if what == "writer" else ring).close()
        fill.join(10)
        draining.clear()
        if fill_state == "reading":
            consumer.join(10)
        assert not fill.is_alive(), "the fill did not stop"
        assert len(outcome) == 1 and isinstance(outcome[0], anyio.ClosedResourceError), outcome
        if what == "writer":
            # Closed means closed: the loop published nothing after the end of stream.
            left = reader.readable()
            time.sleep(0.01)
            assert reader.readable() == left


def test_a_native_fill_commits_whole_items_and_says_when_the_file_ends_mid_item(
    tmp_path: Path,
) -> None:
    source = tmp_path / "items.bin"
    payload = os.urandom(10 * 12 + 5)  # ten items of 12 bytes, then 5 bytes of an eleventh
    source.write_bytes(payload)
    with source.open("rb") as f, aring.Ring(4096, item_size=12) as ring:
        writer, reader = ring.writer(), ring.reader()
        moved, regions, calls, held, why = _fill_from_fd(writer, f.fileno(), 1 << 62)
        assert (moved, held, why) == (120, 5, PUMP_MID_ITEM)
        assert regions == calls >= 2  # the last read saw the end
        assert reader.try_read(4096) == payload[:120]  # the part of an item stays out


@pytest.mark.parametrize("strategy", ["memfd", "copy"])
def test_a_native_fill_keeps_a_part_item_that_crosses_the_end_of_the_ring(strategy: str) -> None:
    """Short reads leave part of an item held past the end; the next read finishes it.

    (On the copy strategy, whose second mapping is a copy, the held bytes were
    not copied to the start, and the item arrived with zeros in it.)
    """
    with aring.Ring(4096, item_size=12, strategy=strategy) as ring:
        writer, reader = ring.writer(), ring.reader()
        for _ in range(ring.capacity // 12 - 1):  # both cursors to the last item before the end
            writer.try_write(bytes(12))
            reader.try_read(12)
        items = bytes(range(1, 25))  # two items
        source, feed = os.pipe()
        try:
            os.write(feed, items[:19])  # one item and 7 bytes of the next: one short read
            first = _fill_from_fd(writer, source, 12)
            assert (first[0], first[3], first[4]) == (12, 7, PUMP_LIMIT)
            os.write(feed, items[19:])
            second = _fill_from_fd(writer, source, 12, first[3])
            assert (second[0], second[3], second[4]) == (12, 0, PUMP_LIMIT)
        finally:
            os.close(source)
            os.close(feed)
        assert reader.try_read(24) == items


def test_a_native_fill_refuses_readers_in_a_bad_state_and_bad_arguments() -> None:
    with aring.Ring(1 << 16) as ring:
        writer, reader = ring.writer(), ring.reader()
        with pytest.raises(ValueError, match="fd must be >= 0"):
            _fill_from_fd(writer, -1, 10)
        with pytest.raises(ValueError, match="limit must be >= 1"):
            _fill_from_fd(writer, 0, 0)
        with pytest.raises(ValueError, match="held must be between 0 and the item size"):
            _fill_from_fd(writer, 0, 10, 1)
        reader.close()
        with open("/dev/zero", "rb") as zeros, pytest.raises(anyio.BrokenResourceError):
            _fill_from_fd(writer, zeros.fileno(), 1 << 20)


def test_a_ring_closed_while_its_ends_close_slowly_stops_a_native_pump(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop sees the ring closed before its reader is: still ClosedResourceError.

    (It returned "stopped" as if cancelled, and pump returned normally, when
    closing the writer end took a while: any Python code in close can.)
    """
    real_close = aring.Writer.close

    def slow_close(self: aring.Writer) -> None:
        real_close(self)
        time.sleep(0.05)  # the GIL is free: the pumping thread runs meanwhile

    monkeypatch.setattr(aring.Writer, "close", slow_close)
    with open(os.devnull, "wb") as sink:
        ring = aring.Ring(1 << 16)
        _writer, reader = ring.writer(), ring.reader()
        pump, outcome = _pump_in_thread(reader, sink.fileno())
        until(lambda: reader.slot in ring._waiters()["readers"], "the pump asleep")
        ring.close()
        pump.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], anyio.ClosedResourceError), outcome


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_native_fill_hands_over_when_a_reader_in_another_process_joins(
    tmp_path: Path,
) -> None:
    """A reader from a forked child may die without closing; only wait() watches for that.

    The GIL-free fill, asleep on a full ring, notices the foreign reader within
    a peer-check interval and returns PUMP_PEER (fill goes on in Python).
    """
    from aring._native import PUMP_PEER

    source = tmp_path / "big.bin"
    source.write_bytes(b"f" * (1 << 20))
    with source.open("rb") as f, aring.Ring(1 << 16, readers=2) as ring:
        writer, _reader = ring.writer(), ring.reader()  # a local reader that reads nothing
        fill, outcome = _fill_in_thread(writer, f.fileno())
        until(lambda: ring._waiters()["writer"], "the fill asleep on a full ring")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            ring.reader()  # joins, then dies without closing
            os._exit(0)
        os.waitpid(pid, 0)
        fill.join(10)
        assert not fill.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], tuple), outcome
        assert outcome[0][-1] == PUMP_PEER
        # Called again (the caller had looked before the reader joined): at once.
        assert _fill_from_fd(writer, f.fileno(), 1 << 62) == (0, 0, 0, 0, PUMP_PEER)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_during_a_native_pump_reattaches_and_closes_the_reader() -> None:
    """The pump thread does not exist in the child: close() there must not wait for it.

    (The child inherited "in a native loop" and its close() waited for ever.)
    """
    with open(os.devnull, "wb") as sink, aring.Ring(1 << 16) as ring:
        _writer, reader = ring.writer(), ring.reader()
        pump, outcome = _pump_in_thread(reader, sink.fileno())
        until(lambda: reader.slot in ring._waiters()["readers"], "the pump asleep")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                reader.reattach()
                reader.close()
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 10
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if done[0] == 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        reader._interrupt_native(True)
        pump.join(10)
        assert done[0] == pid, "the child hung in close()"
        assert os.waitstatus_to_exitcode(done[1]) == 0
        assert outcome == [(0, 0, 0, PUMP_STOPPED)]
