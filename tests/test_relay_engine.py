"""The relay's native engine (``_native.RelayEngine``): one epoll thread, many connections.

The relay on top of it is tested on every backend in test_relay.py; here the
engine itself: every byte both ways across the wrap, ends and resets passed
on, fairness between connections, and misuse from other threads and
processes (in a child interpreter, so a crash fails the test, not pytest).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import sys
import threading
import time

import pytest
from anyio import BusyResourceError, ClosedResourceError
from scenario import run_scenario

from aring import _native

pytestmark = [
    pytest.mark.skipif(not _native.RELAY_ENGINE_AVAILABLE, reason="the engine needs epoll"),
    pytest.mark.timeout(60),
]

RESET = struct.pack("ii", 1, 0)


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname())
        far, _ = listener.accept()
    return near, far


class _Relayed:
    """client <-> [relay_in | engine | relay_out] <-> server, over loopback TCP."""

    def __init__(self, engine: _native.RelayEngine, capacity: int, **options: bool) -> None:
        self.client, self.relay_in = _tcp_pair()
        self.relay_out, self.server = _tcp_pair()
        for sock in (self.relay_in, self.relay_out):
            sock.setblocking(False)
        self.connection = _native.EngineConnection(engine, capacity, **options)
        self.connection.start(self.relay_in.fileno(), self.relay_out.fileno())

    def close(self) -> None:
        self.connection.abort()
        for sock in (self.client, self.relay_in, self.relay_out, self.server):
            sock.close()


def _wait_ended(engine: _native.RelayEngine, connection: _native.EngineConnection) -> int:
    """Wait for the engine to report the connection's end; its errno."""
    deadline = time.monotonic() + 20
    while not connection.finished:
        assert time.monotonic() < deadline, "the connection never ended"
        select.select([engine.done_fd], [], [], 0.5)
        engine.finished()
    error = connection.error
    assert error is not None
    return error


def _send_all_then_end(sock: socket.socket, data: bytes) -> threading.Thread:
    def run() -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _receive_all(sock: socket.socket) -> bytes:
    got = bytearray()
    while chunk := sock.recv(1 << 20):
        got += chunk
    return bytes(got)


@pytest.fixture
def engine():  # type: ignore[no-untyped-def]
    engine = _native.RelayEngine()
    yield engine
    engine.stop()
    assert engine.join(10), "the engine thread did not leave"


@pytest.mark.parametrize("double_map", [True, False], ids=["double-mapped", "stops-at-wrap"])
def test_every_byte_both_ways_across_the_wrap_and_each_end_passed_on(
    engine: _native.RelayEngine, double_map: bool
) -> None:
    relayed = _Relayed(engine, 4096, double_map=double_map)
    try:
        assert relayed.connection.mirrored == double_map
        out = os.urandom(300_001)  # ~73 laps of a 4 KiB ring
        back = os.urandom(200_003)
        senders = [
            _send_all_then_end(relayed.client, out),
            _send_all_then_end(relayed.server, back),
        ]
        got_back: list[bytes] = []
        reader = threading.Thread(target=lambda: got_back.append(_receive_all(relayed.client)))
        reader.start()
        assert _receive_all(relayed.server) == out  # and the client's end arrived as EOF
        reader.join(20)
        assert got_back == [back]
        for sender in senders:
            sender.join(20)
        assert _wait_ended(engine, relayed.connection) == 0
        moved_out, moved_back, regions, _, wakeups, passes = relayed.connection.counters()
        assert (moved_out, moved_back) == (len(out), len(back))
        # one send per region, a region at most the ring
        assert (len(out) + len(back)) / 4096 <= regions <= len(out) + len(back)
        assert passes > 0 and wakeups > 0
    finally:
        relayed.close()


def test_a_reset_is_reported_with_its_errno_after_the_bytes_before_it(
    engine: _native.RelayEngine,
) -> None:
    relayed = _Relayed(engine, 65536)
    try:
        relayed.client.sendall(b"ping")
        assert relayed.server.recv(10) == b"ping"
        # the last bytes and the reset arrive together: the bytes go on first
        relayed.server.sendall(b"partial")
        relayed.server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
        relayed.server.close()
        assert _wait_ended(engine, relayed.connection) == errno.ECONNRESET
        assert relayed.client.recv(100) == b"partial"
    finally:
        relayed.close()


def test_a_reset_is_seen_when_neither_direction_reads_or_sends(engine: _native.RelayEngine) -> None:
    # The client's end went through (its direction reads no more) and the
    # server sends nothing: only the socket's error event tells of the reset.
    relayed = _Relayed(engine, 65536)
    try:
        relayed.client.shutdown(socket.SHUT_WR)
        assert relayed.server.recv(10) == b""
        relayed.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
        relayed.client.close()
        # a reset after the peer's end reads as EPIPE (Linux's tcp_reset)
        assert _wait_ended(engine, relayed.connection) in (errno.ECONNRESET, errno.EPIPE)
    finally:
        relayed.close()


def test_a_connection_with_endless_work_yields_after_its_budget() -> None:
    # Both sockets' buffers are large and the backlog is in place before the
    # engine starts, so the source never runs dry and the target never refuses
    # while 2 MiB move: only the budget (one 4 KiB ring-full per pass here)
    # ends a pass and lets other connections' events be handled.
    engine = _native.RelayEngine(budget_regions=1)
    client, relay_in = _tcp_pair()
    relay_out, server = _tcp_pair()
    for sock in (client, relay_out):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    for sock in (relay_in, server):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    backlog = 2 << 20
    client.sendall(b"b" * backlog)
    relay_in.setblocking(False)
    relay_out.setblocking(False)
    connection = _native.EngineConnection(engine, 4096)
    try:
        connection.start(relay_in.fileno(), relay_out.fileno())
        got = 0
        while got < backlog:
            got += len(server.recv(1 << 20))
        moved, _, _, _, _, passes = connection.counters()
        assert moved == backlog
        # a pass moves at most the budget plus the region that crossed it
        assert passes >= backlog / (2 * 4096), passes
    finally:
        connection.abort()
        engine.stop()
        engine.join(10)
        for sock in (client, relay_in, relay_out, server):
            sock.close()


def test_stop_ends_every_connection_and_refuses_new_ones() -> None:
    engine = _native.RelayEngine()
    relayed = [_Relayed(engine, 4096) for _ in range(3)]
    try:
        engine.stop()
        assert engine.join(10)
        assert not engine.running
        assert [_wait_ended(engine, r.connection) for r in relayed] == [errno.ESHUTDOWN] * 3
        spare = _native.EngineConnection(engine, 4096)
        with pytest.raises(ClosedResourceError, match="the relay engine has stopped"):
            spare.start(relayed[0].relay_in.fileno(), relayed[0].relay_out.fileno())
        spare.release()
    finally:
        for r in relayed:
            r.close()


def test_misuse_gets_clear_errors(engine: _native.RelayEngine) -> None:
    with pytest.raises(ValueError, match="budget_regions must be >= 1"):
        _native.RelayEngine(0)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        _native.EngineConnection(engine, 0)
    left, right = socket.socketpair()
    with left, right:
        connection = _native.EngineConnection(engine, 4096)
        with pytest.raises(ValueError, match="non-blocking sockets"):
            connection.start(left.fileno(), right.fileno())
        left.setblocking(False)
        right.setblocking(False)
        with pytest.raises(ValueError, match="two distinct open fds"):
            connection.start(left.fileno(), left.fileno())
        spare = socket.socket()
        closed_fd = spare.fileno()
        spare.close()
        with pytest.raises(OSError, match="Bad file descriptor"):
            connection.start(left.fileno(), closed_fd)
        assert connection.error is None  # not started
        connection.start(left.fileno(), right.fileno())
        with pytest.raises(BusyResourceError, match="started already"):
            connection.start(left.fileno(), right.fileno())
        with pytest.raises(BusyResourceError, match="abort\\(\\) first"):
            connection.release()
        assert connection.error is None and not connection.finished
        connection.abort()
        assert connection.finished and connection.error == errno.ECANCELED
        connection.release()
        connection.release()  # twice is fine
        connection.abort()  # so is aborting what was released
        with pytest.raises(ClosedResourceError, match="released"):
            connection.counters()


def test_threads_aborting_releasing_and_dropping_connections_never_crash() -> None:
    outcomes = run_scenario(
        """
        import socket
        from aring import _native

        def pair():
            with socket.create_server(("127.0.0.1", 0)) as listener:
                near = socket.create_connection(listener.getsockname())
                far, _ = listener.accept()
            return near, far

        engine = _native.RelayEngine(budget_regions=1)
        rounds = 0
        for _ in range(30):
            (client, relay_in), (relay_out, server) = pair(), pair()
            relay_in.setblocking(False)
            relay_out.setblocking(False)
            connection = _native.EngineConnection(engine, 4096)
            connection.start(relay_in.fileno(), relay_out.fileno())
            stop = threading.Event()
            def stream():
                try:
                    while not stop.is_set():
                        client.send(b"x" * 65536)
                except OSError:
                    pass
            def drain():
                try:
                    while server.recv(65536):
                        pass
                except OSError:
                    pass
            movers = [threading.Thread(target=stream), threading.Thread(target=drain)]
            for t in movers:
                t.start()
            released = []
            def release_when_possible():
                while True:
                    try:
                        connection.release()
                    except BusyResourceError:
                        time.sleep(0)
                    else:
                        released.append(True)
                        return
            racers = [threading.Thread(target=connection.abort) for _ in range(4)]
            racers.append(threading.Thread(target=release_when_possible))
            time.sleep(0.002)
            for t in racers:
                t.start()
            for t in racers:
                t.join()
            stop.set()
            for sock in (client, relay_in, relay_out, server):
                sock.close()
            for t in movers:
                t.join()
            assert released == [True]
            rounds += 1
        outcome("rounds", lambda: rounds)

        # A connection dropped while it runs (its last reference gone, in
        # another thread) is ended first; the engine goes on with the others.
        (client, relay_in), (relay_out, server) = pair(), pair()
        relay_in.setblocking(False)
        relay_out.setblocking(False)
        dropped = _native.EngineConnection(engine, 4096)
        dropped.start(relay_in.fileno(), relay_out.fileno())
        client.sendall(b"before")
        assert server.recv(10) == b"before"
        holder = [dropped]
        del dropped
        t = threading.Thread(target=holder.clear)
        t.start()
        t.join()
        gc.collect()
        (client2, relay_in2), (relay_out2, server2) = pair(), pair()
        relay_in2.setblocking(False)
        relay_out2.setblocking(False)
        survivor = _native.EngineConnection(engine, 4096)
        survivor.start(relay_in2.fileno(), relay_out2.fileno())
        client2.sendall(b"after")
        outcome("survivor", lambda: server2.recv(10))
        engine.stop()
        outcome("joined", lambda: engine.join(10))
        """,
        timeout=120,
    )
    assert outcomes == {
        "rounds": "returned 30",
        "survivor": "returned b'after'",
        "joined": "returned True",
    }, outcomes


@pytest.mark.skipif(sys.platform != "linux", reason="os.fork")
def test_a_forked_child_is_refused_and_exits_without_waiting_on_the_parents_thread() -> None:
    outcomes = run_scenario(
        """
        import socket
        from aring import _native

        engine = _native.RelayEngine()
        (client, relay_in), (relay_out, server) = (socket.socketpair(), socket.socketpair())
        relay_in.setblocking(False)
        relay_out.setblocking(False)
        connection = _native.EngineConnection(engine, 4096)
        connection.start(relay_in.fileno(), relay_out.fileno())
        pid = os.fork()
        if pid == 0:
            code = 0
            calls = (connection.abort, engine.finished, lambda: _native.EngineConnection(engine, 8))
            for call in calls:
                try:
                    call()
                    code += 1
                except aring.ForkedError:
                    pass
            del connection  # must not wait for a thread that is not in this process
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        outcome("child", lambda: os.waitstatus_to_exitcode(status))
        client.sendall(b"still")
        outcome("parent", lambda: server.recv(10))
        connection.abort()
        outcome("ended", lambda: connection.error)
        """,
        timeout=60,
    )
    assert outcomes == {
        "child": "returned 0",
        "parent": "returned b'still'",
        "ended": f"returned {errno.ECANCELED}",
    }, outcomes
