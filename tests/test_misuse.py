"""Misuse from other threads and processes ends in a Python exception, never a signal.

Each scenario runs in a fresh interpreter so a crash (SIGSEGV, SIGBUS, abort)
fails the test with the signal's name instead of killing pytest.  A script
prints one ``OUTCOME ...`` line per thing it checked; the test asserts on them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="scenarios use fork()")

PRELUDE = """
import gc, os, sys, threading, time
import aring
from anyio import BusyResourceError, ClosedResourceError, EndOfStream

def outcome(label, call):
    try:
        result = call()
    except BaseException as exc:
        print(f"OUTCOME {label}: {type(exc).__name__}: {exc}", flush=True)
    else:
        print(f"OUTCOME {label}: returned {result!r}", flush=True)
"""


def run_scenario(body: str, timeout: float = 60) -> dict[str, str]:
    """Run ``body`` in a child interpreter; its OUTCOME lines as {label: text}."""
    code = PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        pytest.fail(f"the scenario died of {name}:\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    outcomes = {}
    for line in done.stdout.splitlines():
        if line.startswith("OUTCOME "):
            label, _, text = line[len("OUTCOME ") :].partition(": ")
            outcomes[label] = text
    return outcomes


@pytest.mark.parametrize("strategy", ["auto", "copy"])
def test_close_during_a_32_mib_copy_in_another_thread(strategy: str) -> None:
    outcomes = run_scenario(
        f"""
        payload = os.urandom(32 << 20)
        results = []
        for attempt in range(20):
            ring = aring.Ring(64 << 20, strategy={strategy!r})
            w, r = ring.writer(), ring.reader()
            started = threading.Event()
            def copy():
                started.set()
                try:
                    while True:
                        if not w.try_write(payload):
                            r.consume(r.readable())
                except ClosedResourceError as exc:
                    results.append(str(exc))
            t = threading.Thread(target=copy)
            t.start()
            started.wait()
            time.sleep(0.001 * (attempt % 5))
            while True:
                try:
                    ring.close()  # may meet the writer's view bookkeeping; retry
                    break
                except BufferError:
                    time.sleep(0.0005)
            t.join()
        outcome("copier", lambda: sorted(set(results)))
        outcome("views after close", lambda: memoryview(ring.buffer))
        """
    )
    assert outcomes["copier"].startswith("returned [")
    assert "closed" in outcomes["copier"]
    assert outcomes["views after close"].startswith("ValueError")


def test_view_used_after_consume_commit_and_close() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(1 << 16)
        w, r = ring.writer(), ring.reader()
        view = w.try_reserve(4)
        view[:4] = b"abcd"
        w.commit(4)
        outcome("write after commit", lambda: view.__setitem__(0, 1))
        peeked = r.try_peek(4)
        r.consume(4)
        outcome("read after consume", lambda: bytes(peeked))
        w.try_write(b"xyz")
        kept = r.try_peek(1)
        ring.close()
        outcome("read after ring close", lambda: kept[0])
        outcome("peek after ring close", lambda: r.try_peek(1))
        """
    )
    assert outcomes["write after commit"].startswith("ValueError")
    assert outcomes["read after consume"].startswith("ValueError")
    assert outcomes["read after ring close"].startswith("ValueError")
    assert outcomes["peek after ring close"].startswith("ClosedResourceError")


def test_exported_view_keeps_memory_mapped_even_when_the_ring_is_dropped() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(1 << 16)
        w, r = ring.writer(), ring.reader()
        w.try_write(b"kept alive")
        exported = memoryview(ring.buffer)[:10]  # the user's own export
        outcome("close while exported", ring.close)
        del ring, w, r
        gc.collect()
        outcome("read the export", lambda: bytes(exported))
        """
    )
    assert outcomes["close while exported"].startswith("BufferError")
    assert outcomes["read the export"] == "returned b'kept alive'"


def test_fork_then_use() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(1 << 16)
        w, r = ring.writer(), ring.reader()
        w.try_write(b"before fork")
        pid = os.fork()
        if pid == 0:
            outcome("child uses writer", lambda: w.try_write(b"x"))
            outcome("child uses reader", lambda: r.try_peek(1))
            outcome("child closes reader", r.close)  # local only: the parent keeps its slot
            w.reattach()
            outcome("child after reattach", lambda: w.try_write(b" and after"))
            w.close()
            sys.stdout.flush()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        outcome("child status", lambda: status)
        # The parent's reader still works and sees what the child wrote.
        data = b""
        while True:
            try:
                data += r.sync.receive(timeout=5)
            except EndOfStream:
                break
        outcome("parent reads", lambda: data)
        """
    )
    assert outcomes["child uses writer"].startswith("ForkedError")
    assert "reattach()" in outcomes["child uses writer"]
    assert outcomes["child uses reader"].startswith("ForkedError")
    assert outcomes["child closes reader"] == "returned None"
    assert outcomes["child after reattach"] == "returned 10"
    assert outcomes["child status"] == "returned 0"
    assert outcomes["parent reads"] == "returned b'before fork and after'"


def test_two_threads_on_one_end() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(1 << 16)
        w, r = ring.writer(), ring.reader()
        blocked = threading.Event()
        errors = []
        def waiting_receiver():
            blocked.set()
            try:
                r.sync.receive(timeout=10)
            except BaseException as exc:
                errors.append(exc)
        t = threading.Thread(target=waiting_receiver)
        t.start()
        blocked.wait()
        time.sleep(0.05)  # let it sleep inside poll()
        outcome("second thread receives", lambda: r.sync.receive(timeout=0.1))
        outcome("second thread peeks", lambda: r.try_peek(1))
        outcome("second thread consumes", lambda: r.consume(0))
        r.close()  # close is allowed from any thread and wakes the waiter
        t.join(10)
        outcome("waiter", lambda: (t.is_alive(), [type(e).__name__ for e in errors]))
        """
    )
    assert outcomes["second thread receives"].startswith("BusyResourceError")
    assert outcomes["second thread peeks"].startswith("BusyResourceError")
    assert outcomes["second thread consumes"].startswith("BusyResourceError")
    assert outcomes["waiter"] == "returned (False, ['ClosedResourceError'])"


def test_buffer_closed_from_another_thread_while_a_view_is_used() -> None:
    outcomes = run_scenario(
        """
        buf = aring.DoubleMappedBuffer(1 << 20)
        view = memoryview(buf)
        stop = threading.Event()
        def reader():
            while not stop.is_set():
                bytes(view[: 1 << 20])
        t = threading.Thread(target=reader)
        t.start()
        refused = 0
        for _ in range(200):
            try:
                buf.close()
            except BufferError:
                refused += 1
        stop.set()
        t.join()
        outcome("closes refused", lambda: refused)
        view.release()
        outcome("close after release", buf.close)
        """
    )
    assert outcomes["closes refused"] == "returned 200"
    assert outcomes["close after release"] == "returned None"
