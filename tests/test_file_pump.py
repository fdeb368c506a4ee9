"""The native pump loop (``_pump_to_fd``, file_pump.pxi) under misuse from other threads.

``pump`` to a regular file runs this loop in its worker thread without the
GIL; it moves the reader's cursor and sleeps on the reader's notifier.  A
close of the reader or of the whole ring from another thread must stop it
(ClosedResourceError in the pumping thread), never leave it moving a freed
slot or touching unmapped memory.
"""

from __future__ import annotations

import os
import threading
import time

import anyio
import pytest
from observe import until

import aring
from aring._native import PUMP_END, PUMP_LIMIT, PUMP_STOPPED, _pump_to_fd


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
        reader._pump_interrupt(True)
        pump.join(10)
        assert outcome == [(0, 0, 0, PUMP_STOPPED)]
        assert time.monotonic() - started < 5
        # Sticky until cleared: a call that starts late still sees the request.
        assert _pump_to_fd(reader, sink.fileno(), 1 << 62, -1) == (0, 0, 0, PUMP_STOPPED)
        reader._pump_interrupt(False)
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
            reader._pump_interrupt(True)
            pump.join(10)
        assert outcome == [(0, 0, 0, PUMP_STOPPED)]
