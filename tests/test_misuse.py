"""Misuse from other threads and processes ends in a Python exception, never a signal.

Each scenario runs in a fresh interpreter so a crash (SIGSEGV, SIGBUS, abort)
fails the test with the signal's name instead of killing pytest.  A script
prints one ``OUTCOME ...`` line per thing it checked; the test asserts on them.
"""

from __future__ import annotations

import sys

import pytest
from scenario import run_scenario

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="scenarios use fork()")

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
            # Not synchronisation: vary how far the copier got, so the close
            # lands at different points of its copy loop across attempts.
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
        while 0 not in ring._waiters()["readers"]:  # until it sleeps inside poll()
            time.sleep(0.0005)
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


def test_writer_closed_during_a_large_copy_publishes_nothing_after_eof() -> None:
    outcomes = run_scenario(
        """
        payload = os.urandom(16 << 20)
        late = published_after_close = silently_dropped = 0
        errors = set()
        for attempt in range(60):
            ring = aring.Ring(32 << 20)
            w, r = ring.writer(), ring.reader()
            started = threading.Event()
            wrote = []
            def write():
                started.set()
                try:
                    wrote.append(w.try_write(payload))   # copies 16 MiB without the GIL
                except ClosedResourceError as exc:
                    errors.add(str(exc))
            t = threading.Thread(target=write)
            t.start()
            started.wait()
            time.sleep(0.0002 * (attempt % 10))  # vary where in the copy the close lands
            w.close()
            eof_at = r.readable()  # what the reader can see once the writer closed
            t.join()
            if r.readable() != eof_at:
                published_after_close += 1
            if wrote and eof_at != len(payload):  # "written", yet not there at EOF
                silently_dropped += 1
            ring.close()
        outcome("published after close", lambda: published_after_close)
        outcome("silently dropped", lambda: silently_dropped)
        outcome("errors", lambda: sorted(errors))
        """
    )
    assert outcomes["published after close"] == "returned 0"
    assert outcomes["silently dropped"] == "returned 0"
    # the close landed inside a copy at least once, and that writer was told
    assert "'the writer was closed during the copy'" in outcomes["errors"], outcomes["errors"]


def test_a_forked_reader_that_dies_does_not_wedge_the_writer() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(1 << 16, readers=2)
        w = ring.writer()
        mine = ring.reader()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            theirs = ring.reader()   # a slot held by this child, never closed
            os.write(ready_w, b"!")
            os._exit(0)              # dies without closing (and stays a zombie below)
        os.read(ready_r, 1)
        # Fill the ring: the dead child's reader holds back the writer.
        w.try_write(b"a" * ring.capacity)
        mine.consume(mine.readable())
        start = time.monotonic()
        outcome("send past the dead reader", lambda: w.sync.send(b"b" * 1000, timeout=20))
        outcome("within seconds", lambda: time.monotonic() - start < 10)
        outcome("dead readers", lambda: ring.dead_readers)
        outcome("mine still reads", lambda: mine.sync.receive(timeout=5))
        os.waitpid(pid, 0)
        """
    )
    assert outcomes["send past the dead reader"] == "returned None"
    assert outcomes["within seconds"] == "returned True"
    assert outcomes["dead readers"] == "returned 1"
    assert outcomes["mine still reads"] == "returned " + repr(b"b" * 1000)


def test_a_reader_whose_pid_was_reused_is_taken_for_dead() -> None:
    """A slot's pid alone is not its owner: a live process with another start time
    (the pid was reused after the owner died) must not hold the writer back."""
    outcomes = run_scenario(
        """
        import mmap
        ring = aring.Ring(4096, strategy="memfd", readers=2)
        w, r = ring.writer(), ring.reader()
        other = ring.reader()   # slot 1: made to look like another process's below
        layout = ring._layout()
        m = mmap.mmap(ring.buffer.fileno(), layout["data"] + ring.capacity)
        slot1 = layout["slots"] + layout["slot_size"]
        def owner(pid, start):
            at = slot1 + layout["slot_pid"]
            m[at:at + 4] = pid.to_bytes(4, "little")
            at = slot1 + layout["slot_start"]
            m[at:at + 8] = start.to_bytes(8, "little")
        w.try_write(b"x" * ring.capacity)
        r.consume(ring.capacity)
        # pid 1 lives; start time unknown (0): it may be the owner, so it holds the writer
        owner(1, 0)
        outcome("unknown start", lambda: w.sync.send(b"y", timeout=0.6))
        # pid 1 lives, but started at another time than the slot's owner: a reused pid
        owner(1, 12345)
        outcome("reused pid", lambda: w.sync.send(b"y", timeout=20))
        outcome("dead readers", lambda: ring.dead_readers)
        """
    )
    assert outcomes["unknown start"].startswith("TimeoutError"), outcomes["unknown start"]
    assert outcomes["reused pid"] == "returned None"
    assert outcomes["dead readers"] == "returned 1"


def test_a_forked_writer_that_dies_is_reported_not_taken_for_eof() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(1 << 16)
        w, r = ring.writer(), ring.reader()
        pid = os.fork()
        if pid == 0:
            w.reattach()             # the child takes the writer over
            w.try_write(b"partial")
            os._exit(0)              # and dies without closing it
        data = b""
        def drain():
            global data
            while True:
                data += r.sync.receive(timeout=20)
        outcome("reader", drain)
        outcome("data", lambda: data)
        os.waitpid(pid, 0)
        """
    )
    assert outcomes["reader"].startswith("BrokenResourceError")
    assert "died without closing" in outcomes["reader"]
    assert outcomes["data"] == "returned b'partial'"


def test_closing_the_ring_while_readers_are_made_in_another_thread() -> None:
    outcomes = run_scenario(
        """
        import sys
        sys.setswitchinterval(1e-6)   # switch threads as often as possible
        failures, still_open, waiter_outcomes = [], 0, set()
        for attempt in range(3000):
            ring = aring.Ring(1 << 12, readers=5)
            w = ring.writer()
            waiter = None
            if attempt % 10 == 0:  # and a reader asleep in a blocking receive meanwhile
                first = ring.reader()
                def wait_for_data(first=first):
                    try:
                        first.sync.receive(timeout=30)
                    except BaseException as exc:
                        waiter_outcomes.add(type(exc).__name__)
                waiter = threading.Thread(target=wait_for_data)
                waiter.start()
                while first.slot not in ring._waiters()["readers"]:
                    time.sleep(0.0001)  # poll interval: until the header says it sleeps
            def make_readers():
                try:
                    for _ in range(4):
                        ring.reader()
                except ClosedResourceError:
                    pass
                except BaseException as exc:
                    failures.append(repr(exc))
            t = threading.Thread(target=make_readers)
            t.start()
            try:
                ring.close()
            except BaseException as exc:
                failures.append(repr(exc))
            t.join()
            if waiter is not None:
                waiter.join(30)
                if waiter.is_alive():
                    waiter_outcomes.add("still asleep after close")
            still_open += not ring.closed
        outcome("failures", lambda: sorted(set(failures)))
        outcome("still open", lambda: still_open)
        outcome("waiters", lambda: sorted(waiter_outcomes))
        """,
        timeout=120,
    )
    assert outcomes["failures"] == "returned []"
    assert outcomes["still open"] == "returned 0"
    assert outcomes["waiters"] == "returned ['ClosedResourceError']"


def test_python_code_run_inside_a_call_closes_the_ring() -> None:
    # Inside a native call, Python code runs wherever an allocation starts a
    # collection (gc callbacks, finalizers) or the call asks an argument for
    # its value (__index__); at those points another thread may run too.
    # Here each such point in turn closes the ring (the 1st collection, the
    # 2nd, ...): the calls must end in an exception, never touch the memory.
    outcomes = run_scenario(
        """
        import socket
        from anyio import BrokenResourceError, WouldBlock
        closing = {"ring": None, "at": 0, "seen": 0, "in_index": False}
        def close_now():
            try:
                closing["ring"].close()
            except BufferError:   # a view is out: the ring refuses, stays open
                pass
        def on_collection(phase, info):
            if phase == "start" and closing["ring"] is not None:
                closing["seen"] += 1
                if closing["seen"] == closing["at"]:
                    close_now()
        gc.callbacks.append(on_collection)
        class Count:
            def __init__(self, n):
                self.n = n
            def __index__(self):
                if closing["in_index"] and closing["ring"] is not None:
                    close_now()
                return self.n
        def calls(ring):
            w, r, other = ring.writer(), ring.reader(), ring.reader()
            w.writable(); w.try_write(b"abc" * 10)
            view = w.try_reserve(Count(8))
            if view is not None:
                try:
                    view[:3] = b"xyz"
                except ValueError:   # closed meanwhile: the view was released, as promised
                    if not ring.closed:
                        raise
                del view
                w.commit(Count(3))
            w.try_write(bytearray(100), partial=True)
            w.send_nowait(b"0123456789")
            w.arm(Count(1)); w.wait(Count(1), timeout=0)
            w.sync.send(b"s" * 5, timeout=0)
            r.readable(); r.at_eof(); r.arm(Count(1))
            view = r.try_peek(Count(1), limit=Count(50))
            if view is not None:
                try:
                    bytes(view[:2])
                except ValueError:   # closed meanwhile (3.12 collects at other points)
                    if not ring.closed:
                        raise
                del view
                r.consume(Count(2))
            r.try_read(Count(7)); r.try_read_into(bytearray(9))
            r.receive_nowait(5); r.sync.receive(10, timeout=0)
            r.wait(1, timeout=0); r.drain(); w.drain()
            ring.notifier_writes; ring.dead_readers; ring._waiters()
            a, b = socket.socketpair()
            with a, b:
                a.setblocking(False)
                b.setblocking(False)
                a.send(b"from the socket")
                aring._native._forward(w, other, b.fileno(), a.fileno(), 4)
            other.close(); w.close(); r.try_read(1 << 16); r.close()
        expected = (ClosedResourceError, BrokenResourceError, EndOfStream, WouldBlock,
                    TimeoutError, BufferError)
        def run(at, in_index):
            ring = aring.Ring(1 << 12, readers=3)
            closing.update(ring=ring, at=at, seen=0, in_index=in_index)
            gc.set_threshold(1, 1, 1)
            try:
                calls(ring)
                error = None
            except expected:
                error = None
            except BaseException as exc:
                error = repr(exc)
            finally:
                gc.set_threshold(700, 10, 10)
                closing["ring"] = None
            ring.close()
            return error
        run(0, False)   # count the collections one pass makes
        points = closing["seen"]
        errors = {run(at, False) for at in range(1, points + 1)} | {run(0, True)}
        outcome("collections", lambda: points > 20)
        outcome("unexpected errors", lambda: sorted(errors - {None}))
        """,
        timeout=120,
    )
    assert outcomes["collections"] == "returned True"
    assert outcomes["unexpected errors"] == "returned []"


@pytest.mark.parametrize(
    "call",
    ["commit", "try_write", "consume", "try_read", "try_read_into", "forward in", "forward out"],
)
def test_a_lent_view_whose_release_closes_the_ring(call: str) -> None:
    # The call ends the borrow of a view nobody references any more: the view
    # dies there and its weakref callback (any Python code; another thread may
    # run too) closes the ring before the call moves the cursor.
    outcomes = run_scenario(
        f"""
        import socket, weakref
        ring = aring.Ring(4096)
        w, r = ring.writer(), ring.reader()
        w.try_write(b"0123456789")
        call = {call!r}
        lent = r.try_peek(1) if call in ("consume", "try_read", "try_read_into", "forward out") \\
            else w.try_reserve(1)
        ref = weakref.ref(lent, lambda _: ring.close())
        del lent
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        a.send(b"from the socket")
        calls = {{
            "commit": lambda: w.commit(1),
            "try_write": lambda: w.try_write(b"x"),
            "consume": lambda: r.consume(1),
            "try_read": lambda: r.try_read(4),
            "try_read_into": lambda: r.try_read_into(bytearray(4)),
            "forward in": lambda: aring._native._forward(w, r, b.fileno(), a.fileno(), 1 << 20),
            "forward out": lambda: aring._native._forward(w, r, -1, a.fileno(), 1 << 20),
        }}
        outcome("call", calls[call])
        outcome("closed", lambda: ring.closed)
        """
    )
    assert outcomes["call"] == "ClosedResourceError: the ring is closed"
    assert outcomes["closed"] == "returned True"


def test_a_patched_clock_that_closes_the_ring_during_a_wait() -> None:
    # Clock-patching tools make time.monotonic Python code; whatever it runs
    # (here: closing the ring) must not leave wait() polling a closed fd.
    outcomes = run_scenario(
        """
        ring = aring.Ring(4096)
        w, r = ring.writer(), ring.reader()
        real, calls = time.monotonic, [0]
        def patched():
            calls[0] += 1
            if calls[0] == 2:
                ring.close()
            return real()
        time.monotonic = patched
        outcome("wait", lambda: r.wait(1, timeout=5))
        """
    )
    assert outcomes["wait"] == "ClosedResourceError: the ring is closed"


def test_python_code_run_while_an_end_closes() -> None:
    outcomes = run_scenario(
        """
        import weakref
        # A lent view's release inside close() closes the same end again.
        ring = aring.Ring(4096)
        w, r = ring.writer(), ring.reader()
        w.try_write(b"abc")
        ref = weakref.ref(r.try_peek(1), lambda _: r.close())
        outcome("close from a view's release", r.close)
        outcome("the writer sees the reader gone", w.writable)
        ring.close()
        # Leaving compares ends by identity: a user subclass's __eq__ (Python
        # code, here closing the ring) never runs between the slot's address
        # and its release.
        ring = aring.Ring(4096)
        class NosyWriter(aring.Writer):
            def __eq__(self, other):
                ring.close()
                return NotImplemented
            __hash__ = object.__hash__
        nosy = NosyWriter(ring)
        r = ring.reader()
        outcome("close next to a nosy end", r.close)
        outcome("ring", lambda: ring.closed)
        """
    )
    assert outcomes["close from a view's release"] == "returned None"
    assert outcomes["the writer sees the reader gone"] == (
        "BrokenResourceError: every reader of the ring has closed"
    )
    assert outcomes["close next to a nosy end"] == "returned None"
    assert outcomes["ring"] == "returned False"


def test_busy_messages_say_what_is_busy() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(1 << 16)
        w, r = ring.writer(), ring.reader()
        inside = threading.Event()
        leave = threading.Event()
        def hold():
            token = r._acquire()
            inside.set()
            leave.wait()
            r._release(token)
        t = threading.Thread(target=hold)
        t.start()
        inside.wait()
        outcome("thread", lambda: r.try_peek(1))
        leave.set()
        t.join()
        token = w._acquire(True)
        outcome("task", lambda: w._acquire(True))
        """
    )
    assert outcomes["thread"] == "BusyResourceError: another thread is using this reader"
    assert outcomes["task"] == "BusyResourceError: another task is already using this writer"


def test_a_signal_handler_closing_the_ring_during_a_sliced_wait() -> None:
    outcomes = run_scenario(
        """
        import mmap, signal
        ring = aring.Ring(4096, strategy="memfd")
        w, r = ring.writer(), ring.reader()
        layout = ring._layout()
        m = mmap.mmap(ring.buffer.fileno(), layout["data"] + ring.capacity)
        # The reader looks like another live process's (pid 1, start time not
        # recorded): the writer's wait is cut into peer-check slices, with a
        # signal handler running in between.
        pid_at = layout["slots"] + layout["slot_pid"]
        start_at = layout["slots"] + layout["slot_start"]
        m[pid_at:pid_at + 4] = (1).to_bytes(4, "little")
        m[start_at:start_at + 8] = bytes(8)
        m.close()
        w.try_write(b"x" * ring.capacity)
        signal.signal(signal.SIGALRM, lambda *args: ring.close())
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        outcome("send", lambda: w.sync.send(b"y", timeout=10))
        """
    )
    assert outcomes["send"].startswith("ClosedResourceError")


def test_a_child_closing_an_inherited_ring_waits_for_its_own_copies() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(128 << 20)
        pid = os.fork()
        if pid == 0:
            # New ends on the inherited ring, no reattach() needed; a thread of
            # the child copies without the GIL while the child closes the ring.
            w, r = ring.writer(), ring.reader()
            w.try_write(b"x" * (128 << 20))
            buffer = bytearray(128 << 20)
            started = threading.Event()
            def read():
                started.set()
                try:
                    for _ in range(20):
                        r.try_read_into(buffer)
                except ClosedResourceError:
                    pass
            t = threading.Thread(target=read)
            t.start()
            started.wait()
            while buffer[0] != ord("x"):  # the copy has begun (it runs without the GIL)
                pass
            ring.close()
            t.join()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        outcome("child", lambda: os.waitstatus_to_exitcode(status))
        """
    )
    assert outcomes["child"] == "returned 0"


def test_closing_a_stale_copy_never_frees_a_slot_claimed_again() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(4096)
        w = ring.writer()
        r1 = ring.reader()
        pid = os.fork()
        if pid == 0:  # a worker takes r1 over, then closes it: the slot is free
            r1.reattach()
            r1.close()
            os._exit(0)
        os.waitpid(pid, 0)
        r2 = ring.reader()  # gets the same slot
        outcome("same slot", lambda: r1.slot == r2.slot)
        r1.close()  # the parent's stale copy of the handed-over end
        w.try_write(b"A" * 4096)
        outcome("second full write", lambda: w.try_write(b"B" * 4096))
        outcome("r2 reads", lambda: r2.try_read(4))
        outcome("another reader", ring.reader)
        """
    )
    assert outcomes["same slot"] == "returned True"
    assert outcomes["second full write"] == "returned 0", "r2's unread bytes were overwritten"
    assert outcomes["r2 reads"] == "returned b'AAAA'"
    assert outcomes["another reader"].startswith("RuntimeError: all 1 reader slots")


def test_short_timeouts_still_find_a_dead_reader() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(4096, readers=2)
        w, mine = ring.writer(), ring.reader()
        pid = os.fork()
        if pid == 0:
            ring.reader()  # a slot held by this child, which dies
            os._exit(0)
        os.waitpid(pid, 0)
        w.try_write(b"x" * ring.capacity)
        mine.consume(ring.capacity)
        start, tries = time.monotonic(), 0
        while True:  # each wait is shorter than the peer-check interval
            tries += 1
            try:
                w.sync.send(b"y", timeout=0.05)
                break
            except TimeoutError:
                if time.monotonic() - start > 10:
                    break
        outcome("found within", lambda: time.monotonic() - start < 5)
        outcome("dead readers", lambda: ring.dead_readers)
        """
    )
    assert outcomes["found within"] == "returned True"
    assert outcomes["dead readers"] == "returned 1"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ in Python needs 3.12")
def test_a_buffer_that_closes_the_ring_while_it_is_asked_for() -> None:
    outcomes = run_scenario(
        """
        ring = aring.Ring(4096)
        w, r = ring.writer(), ring.reader()
        w.try_write(b"x" * 100)
        class Closing:
            def __buffer__(self, flags):
                ring.close()
                return memoryview(bytearray(100))
        outcome("read into", lambda: r.try_read_into(Closing()))
        """
    )
    assert outcomes["read into"].startswith("ClosedResourceError")


def test_a_forked_child_starts_with_an_empty_ring_pool() -> None:
    outcomes = run_scenario(
        """
        from aring import _ring_pool
        _ring_pool.give_back(_ring_pool.take(4096))
        outcome("parent keeps", lambda: sum(map(len, _ring_pool._free.values())))
        pid = os.fork()
        if pid == 0:
            os._exit(sum(map(len, _ring_pool._free.values())))
        _, status = os.waitpid(pid, 0)
        outcome("child keeps", lambda: os.waitstatus_to_exitcode(status))
        """
    )
    assert outcomes["parent keeps"] == "returned 1"
    assert outcomes["child keeps"] == "returned 0"


def test_a_ring_out_of_the_pool_when_the_process_forked_is_never_kept() -> None:
    # The child may hold views of the same memory: reusing the ring in the
    # parent would show the child the parent's next connection.
    outcomes = run_scenario(
        """
        from aring import _ring_pool
        lease = _ring_pool.take(4096)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        _ring_pool.give_back(lease)
        outcome("kept", lambda: sum(map(len, _ring_pool._free.values())))
        outcome("closed", lambda: lease[0].closed)
        _ring_pool.give_back(_ring_pool.take(4096))  # one taken after the fork is kept
        outcome("kept after", lambda: sum(map(len, _ring_pool._free.values())))
        """
    )
    assert outcomes["kept"] == "returned 0"
    assert outcomes["closed"] == "returned True"
    assert outcomes["kept after"] == "returned 1"
