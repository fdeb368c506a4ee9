"""The relay: in process on every backend, and as a command line against socat and iperf3."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import create_task_group

import aring
from aring._relay import RelayStats, parse_address, serve_relay

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["thread", "loop"])
def relay_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test runs on each relay engine: it becomes serve_relay's default."""
    assert serve_relay.__kwdefaults__ is not None
    monkeypatch.setitem(serve_relay.__kwdefaults__, "engine", request.param)
    return str(request.param)


async def _echo_server(task_status: anyio.abc.TaskStatus[int]) -> None:
    """Echo every byte back, then close: the half-close must reach it and come back."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))

        async def echo(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                async for chunk in stream:
                    await stream.send(chunk)
                await stream.send_eof()

        await listener.serve(echo)


async def _client(port: int, payload: bytes) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream, create_task_group() as tg:

        async def send_all() -> None:
            view = memoryview(payload)
            for start in range(0, len(view), 50_000):
                await stream.send(view[start : start + 50_000])
            await stream.send_eof()  # the half-close the relay must forward

        tg.start_soon(send_all)
        got = bytearray()
        async for chunk in stream:
            got += chunk
        return bytes(got)


@pytest.mark.usefixtures("relay_engine")
async def test_relay_forwards_100_connections_both_ways_with_half_close() -> None:
    stats = RelayStats()
    with anyio.fail_after(60):
        async with create_task_group() as tg:
            target = await tg.start(_echo_server)
            port = await tg.start(
                lambda task_status: serve_relay(
                    ("127.0.0.1", 0),
                    ("127.0.0.1", target),
                    capacity=64 << 10,  # smaller than each payload: the rings wrap
                    stats=stats,
                    task_status=task_status,
                )
            )
            payloads = [os.urandom(100_000 + i * 997) for i in range(100)]
            results: dict[int, bytes] = {}

            async def one(i: int) -> None:
                results[i] = await _client(port, payloads[i])

            async with create_task_group() as clients:
                for i in range(100):
                    clients.start_soon(one, i)
            tg.cancel_scope.cancel()
    assert all(results[i] == payloads[i] for i in range(100))
    assert stats.accepted == 100 and stats.failed == 0 and stats.active == 0
    assert stats.bytes == 2 * sum(map(len, payloads))


@pytest.mark.usefixtures("relay_engine")
async def test_relay_survives_a_target_that_refuses() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    stats = RelayStats()
    with anyio.fail_after(30):
        async with create_task_group() as tg:
            port = await tg.start(
                lambda task_status: serve_relay(
                    ("127.0.0.1", 0), ("127.0.0.1", dead_port), stats=stats, task_status=task_status
                )
            )
            for _ in range(3):
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                        await stream.receive()
            tg.cancel_scope.cancel()
    assert stats.failed == 3 and stats.active == 0


def _serve_relay(stats: RelayStats, target: int, **options: Any) -> Any:
    return lambda task_status: serve_relay(
        ("127.0.0.1", 0), ("127.0.0.1", target), stats=stats, task_status=task_status, **options
    )


@pytest.mark.usefixtures("relay_engine")
async def test_relay_closes_a_connection_idle_for_its_timeout() -> None:
    stats = RelayStats()
    with anyio.fail_after(30):
        async with create_task_group() as tg:
            target = await tg.start(_echo_server)
            port = await tg.start(_serve_relay(stats, target, idle_timeout=0.4))
            async with await anyio.connect_tcp("127.0.0.1", port) as busy, await anyio.connect_tcp(
                "127.0.0.1", port
            ) as idle:
                # The busy one talks more often than the timeout: it stays up.
                for _ in range(6):
                    await busy.send(b"ping")
                    assert await busy.receive() == b"ping"
                    await anyio.sleep(0.15)
                # The idle one has been silent for 0.9 s by now: the relay closed it.
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await idle.receive()
                await busy.send(b"still")
                assert await busy.receive() == b"still"
            tg.cancel_scope.cancel()
    assert stats.idle_closed == 1


def _blackhole() -> tuple[socket.socket, socket.socket]:
    """A port that never completes a connect: its backlog of one is taken and never accepted."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    return listener, filler


@pytest.mark.usefixtures("relay_engine")
async def test_relay_gives_up_on_a_target_that_does_not_answer() -> None:
    stats = RelayStats()
    listener, filler = _blackhole()
    with listener, filler, anyio.fail_after(30):
        async with create_task_group() as tg:
            port = await tg.start(
                _serve_relay(stats, listener.getsockname()[1], connect_timeout=0.3)
            )
            start = anyio.current_time()
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()
            assert anyio.current_time() - start < 10
            tg.cancel_scope.cancel()
    assert stats.failed == 1 and stats.active == 0


async def _resetting_server(task_status: anyio.abc.TaskStatus[int]) -> None:
    """Sends half a reply, then resets the connection (SO_LINGER 0)."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))

        async def reply_then_reset(stream: anyio.abc.SocketStream) -> None:
            await stream.receive()
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()

        await listener.serve(reply_then_reset)


@pytest.mark.usefixtures("relay_engine")
async def test_relay_forwards_a_reset_as_a_reset() -> None:
    stats = RelayStats()
    with anyio.fail_after(30):
        async with create_task_group() as tg:
            target = await tg.start(_resetting_server)
            port = await tg.start(_serve_relay(stats, target))
            got = b""
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(b"GET / HTTP/1.1\r\n\r\n")
                with pytest.raises(anyio.BrokenResourceError):  # a reset, not an end of stream
                    while True:
                        got += await stream.receive()
            assert got.endswith(b"partial")
            tg.cancel_scope.cancel()
    assert stats.resets == 1


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.usefixtures("relay_engine")
async def test_relay_listens_and_connects_on_ipv6_and_host_names() -> None:
    stats = RelayStats()
    with anyio.fail_after(30):
        async with create_task_group() as tg:
            target = await tg.start(_echo_server)
            port = await tg.start(
                lambda task_status: serve_relay(
                    ("::1", 0), ("localhost", target), stats=stats, task_status=task_status
                )
            )
            async with await anyio.connect_tcp("::1", port) as stream:
                await stream.send(b"over ipv6")
                assert await stream.receive() == b"over ipv6"
            named = await tg.start(
                lambda task_status: serve_relay(
                    ("localhost", 0), ("127.0.0.1", target), stats=stats, task_status=task_status
                )
            )
            async with await anyio.connect_tcp("localhost", named) as stream:
                await stream.send(b"by name")
                assert await stream.receive() == b"by name"
            tg.cancel_scope.cancel()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc")
async def test_a_relayed_connection_costs_its_sockets_and_ring_memory_only(
    relay_engine: str,
) -> None:
    stats = RelayStats()
    with anyio.fail_after(30):
        async with create_task_group() as tg:
            target = await tg.start(_echo_server)
            port = await tg.start(_serve_relay(stats, target))
            async with await anyio.connect_tcp("127.0.0.1", port) as warm:
                await warm.send(b"x")
                await warm.receive()
            before = _open_fds()
            streams = []
            for _ in range(20):
                stream = await anyio.connect_tcp("127.0.0.1", port)
                await stream.send(b"x")
                assert await stream.receive() == b"x"
                streams.append(stream)
            # Per connection, this process holds: the client's socket and the
            # echo server's (the test's), and the relay's two sockets, plus on
            # the loop engine two rings' memory fds (the thread engine closes
            # them once mapped); no notifier fds.
            per_connection = (_open_fds() - before) / 20
            for stream in streams:
                await stream.aclose()
            tg.cancel_scope.cancel()
    assert per_connection <= 2 + (2 if relay_engine == "thread" else 4), per_connection


@pytest.mark.usefixtures("relay_engine")
async def test_a_relay_that_cannot_make_any_connection_fails_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unsupported(self: object, options: object) -> None:
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    monkeypatch.setattr(aring._relay._Prepared, "__init__", unsupported)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    client = None
    with (
        anyio.fail_after(20),
        pytest.RaisesGroup(
            pytest.RaisesExc(OSError, match="Address family not supported"),
            flatten_subgroups=True,
        ),
    ):
        async with create_task_group() as tg:
            tg.start_soon(ticker)
            port = await tg.start(
                lambda task_status: serve_relay(
                    ("127.0.0.1", 0), ("127.0.0.1", 9), task_status=task_status
                )
            )
            client = socket.create_connection(("127.0.0.1", port))
            await anyio.sleep_forever()  # until the relay fails (fail_after bounds it)
    if client is not None:
        client.close()
    assert ticks > 0, "the event loop was starved"


async def test_bad_options_are_refused_before_anything_listens() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        await serve_relay(("127.0.0.1", 0), ("127.0.0.1", 1), capacity=0)
    with pytest.raises(ValueError, match="idle_timeout must be None"):
        await serve_relay(("127.0.0.1", 0), ("127.0.0.1", 1), idle_timeout=0)
    with pytest.raises(TypeError, match="timeout must be None or a number"):
        await serve_relay(("127.0.0.1", 0), ("127.0.0.1", 1), connect_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="engine must be 'auto', 'thread' or 'loop'"):
        await serve_relay(("127.0.0.1", 0), ("127.0.0.1", 1), engine="threads")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        await aring.create_tcp_listener(local_host="127.0.0.1", capacity=0)
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        await aring.connect_tcp("127.0.0.1", 1, capacity=0)


def test_auto_engine_is_the_thread_where_epoll_exists_else_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aring import _native, _relay

    assert _relay._choose_engine("auto") is _native.RELAY_ENGINE_AVAILABLE
    assert _relay._choose_engine("loop") is False
    monkeypatch.setattr(_native, "RELAY_ENGINE_AVAILABLE", False)  # a platform without epoll
    assert _relay._choose_engine("auto") is False
    with pytest.raises(ValueError, match="engine='thread' needs epoll"):
        _relay._choose_engine("thread")


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_address("[::1]:8080") == ("::1", 8080)
    assert parse_address("localhost:8080") == ("localhost", 8080)
    for bad in ("localhost", ":80", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)


# --- the command line against real peers --------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 10) -> None:
    # Polls the observable state (a connect succeeds); the sleep is the poll's interval.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def _wait_listening_quietly(
    port: int, timeout: float = 30, proc: subprocess.Popen[str] | None = None
) -> None:
    """Until something listens on ``port``, without connecting (a one-off server would
    take the probe for its client): the kernel's socket table says it."""
    deadline = time.monotonic() + timeout
    suffix = f":{port:04X}"
    while time.monotonic() < deadline:
        if proc is not None:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as f:
                # column 2 is local address:port, column 4 the state (0A: LISTEN)
                if any(
                    line.split()[1].endswith(suffix) and line.split()[3] == "0A"
                    for line in f.readlines()[1:]
                ):
                    return
        time.sleep(0.01)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture(
    params=[
        (loop, engine) for engine in ("thread", "loop") for loop in ("asyncio", "uvloop", "trio")
    ],
    ids=lambda param: "-".join(param),
)
def relay_cli(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Start `python -m aring relay` towards a port; yields (relay port, target port, proc)."""
    loop, engine = request.param
    procs: list[subprocess.Popen[str]] = []

    def start(target: int, *extra: str, probe: bool = True) -> tuple[int, subprocess.Popen[str]]:
        """``probe=False``: wait without connecting (the relay carries a probe on)."""
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "aring", "relay", "--listen", f"127.0.0.1:{port}",
             "--to", f"127.0.0.1:{target}", "--loop", loop, "--engine", engine, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        if probe:
            _wait_listening(port, proc)
        else:
            _wait_listening_quietly(port, proc=proc)
        return port, proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.skipif(shutil.which("socat") is None, reason="no socat (.ci/run installs it)")
def test_cli_relay_between_socat_peers_100_connections(relay_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    echo_port = _free_port()
    echo = subprocess.Popen(
        ["socat", f"TCP-LISTEN:{echo_port},bind=127.0.0.1,reuseaddr,fork,backlog=256", "PIPE"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_listening(echo_port, echo)  # type: ignore[arg-type]
        port, relay = relay_cli(echo_port)
        inputs, clients = [], []
        for i in range(100):
            data = tmp_path / f"in{i}"
            data.write_bytes(os.urandom(20_000 + 313 * i))
            inputs.append(data)
            with data.open("rb") as stdin:  # socat sends stdin, then half-closes
                clients.append(
                    subprocess.Popen(
                        ["socat", "-t", "10", "-", f"TCP:127.0.0.1:{port}"],
                        stdin=stdin,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    )
                )
        for data, client in zip(inputs, clients, strict=True):
            out, err = client.communicate(timeout=60)
            assert client.returncode == 0, err
            assert hashlib.sha256(out).digest() == hashlib.sha256(data.read_bytes()).digest()
        relay.send_signal(signal.SIGTERM)
        _, err = relay.communicate(timeout=20)
        assert relay.returncode == 0, err
        assert "SIGTERM, shutting down" in err
        assert "over 101 connections (0 failed," in err  # 100 clients and the probe
    finally:
        echo.kill()
        echo.wait(10)


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="no iperf3 (.ci/run installs it)")
def test_cli_relay_carries_iperf3_with_stats(relay_cli) -> None:  # type: ignore[no-untyped-def]
    server_port = _free_port()
    # No probe connection: the relay would carry it to the one-off iperf3 server
    # (once that listens, which on a loaded machine can be before the relay
    # gets to it), and the server would take it for its one client.
    port, relay = relay_cli(server_port, "--stats", probe=False)
    server = subprocess.Popen(
        ["iperf3", "-s", "-1", "-p", str(server_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening_quietly(server_port)
        done = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "1.5", "-J"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        import json

        received = json.loads(done.stdout)["end"]["sum_received"]["bytes"]
        assert received > 10 << 20, done.stdout
        relay.send_signal(signal.SIGINT)
        _, err = relay.communicate(timeout=20)
        assert relay.returncode == 0, err
        assert "Gbit/s" in err and "active" in err, err  # the live stats line
        # what each region cost the relay
        assert "wakeups/region" in err and "steps/region" in err and "waits/region" in err, err
    finally:
        server.kill()
        server.wait(10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--capacity", "0"], "capacity must be >= 1, got 0"),
        (["--idle-timeout", "0"], "expected a number of seconds > 0"),
        (["--connect-timeout", "soon"], "expected a number of seconds"),
        (["--listen", "[::1:80"], "brackets"),
    ],
)
def test_cli_relay_refuses_bad_options_with_one_line(args: list[str], message: str) -> None:
    base = {"--listen": "127.0.0.1:0", "--to": "127.0.0.1:9"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    command = [sys.executable, "-m", "aring", "relay"]
    for flag, value in base.items():
        command += [flag, value]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("aring relay: error:")


@pytest.mark.parametrize("loop", ["uvloop", "trio"])
def test_cli_says_what_to_install_for_a_missing_loop(loop: str) -> None:
    code = (
        f"import sys; sys.modules[{loop!r}] = None\n"  # as if it were not installed
        "from aring._cli import main\n"
        "sys.exit(main(['relay', '--listen', '127.0.0.1:0', '--to', '127.0.0.1:9', "
        f"'--loop', {loop!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert f"pip install 'aring[{loop}]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_extras_the_cli_names_exist_and_the_readme_shows_them() -> None:
    root = Path(__file__).parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    readme = (root / "README.md").read_text()
    for loop in ("uvloop", "trio"):
        assert any(req.startswith(loop) for req in extras[loop]), extras.get(loop)
        assert f"aring[{loop}]" in readme


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("host", ["::1", "localhost"])
def test_cli_relay_on_ipv6_and_host_names(host: str) -> None:
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    shown = "[::1]" if host == "::1" else host
    with socket.create_server((host, 0), family=family) as target:
        target_port = target.getsockname()[1]
        port = _free_port_v6() if host == "::1" else _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "aring", "relay", "--listen", f"{shown}:{port}",
             "--to", f"{shown}:{target_port}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            assert f"{shown}:{port} -> {shown}:{target_port}" in proc.stderr.readline()
            with socket.create_connection((host, port), timeout=10) as client:
                server, _ = target.accept()
                with server:
                    client.sendall(b"v6")
                    assert server.recv(2) == b"v6"
        finally:
            proc.terminate()
            proc.wait(10)


def _free_port_v6() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return int(s.getsockname()[1])


class _ThreadedEcho:
    """An echo server in threads: each connection echoes until EOF, then closes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.served = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.served += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@pytest.mark.skipif(sys.platform != "linux", reason="sets RLIMIT_NOFILE")
def test_cli_relay_out_of_fds_queues_clients_logs_once_and_recovers() -> None:
    import resource

    echo = _ThreadedEcho()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aring", "relay", "--listen", f"127.0.0.1:{port}",
         "--to", f"127.0.0.1:{echo.port}", "--loop", "asyncio"],
        stderr=subprocess.PIPE,
        text=True,
        # Enough for the interpreter and about ten connections at 4 fds each.
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)),
    )
    clients: list[socket.socket] = []
    try:
        assert proc.stderr is not None
        proc.stderr.readline()  # listening
        for _ in range(30):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=20))
        # The first ones are served; the rest wait in the backlog, not dropped.
        for client in clients[:5]:
            client.sendall(b"early")
            assert client.recv(16) == b"early"
        served_while_full = echo.served
        assert 5 <= served_while_full < 30
        # As the served ones finish, the queued ones get their turn: every
        # client is answered in the end.
        for i, client in enumerate(clients):
            client.sendall(b"turn %d" % i)
            assert client.recv(16) == b"turn %d" % i
            client.close()
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        assert err.count("accept failed:") == 1, err  # once per burst
        assert "Too many open files" in err
        assert "(0 failed," in err, err
    finally:
        for client in clients:
            client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        echo.close()


@pytest.mark.parametrize("strategy", ["auto", "copy"])
def test_forward_moves_every_byte_across_the_wrap_and_says_why_it_stopped(strategy: str) -> None:
    """The relay's native loop: read into the ring, write from it, in C, until stalled."""
    from aring import _native

    forward = _native._forward
    no_limit = 1 << 30  # the budget: never reached here
    payload = os.urandom(3 * 4096 * 7 + 123)  # many laps of a 4 KiB ring
    src_in, src_out = socket.socketpair()
    dst_in, dst_out = socket.socketpair()
    for sock in (src_out, dst_in, dst_out):
        sock.setblocking(False)
    with aring.Ring(4096, notifier="none", strategy=strategy) as ring:
        writer, reader = ring.writer(), ring.reader()
        got = bytearray()
        sent_total = regions_total = 0
        view = memoryview(payload)
        while True:
            if view:
                view = view[src_in.send(view[:50_000]) :]
            elif src_in.fileno() >= 0:
                src_in.shutdown(socket.SHUT_WR)
                src_in.close()
            _, sent, why, regions = forward(
                writer, reader, src_out.fileno(), dst_in.fileno(), no_limit
            )
            sent_total += sent
            regions_total += regions
            assert (regions == 0) == (sent == 0)
            with contextlib.suppress(BlockingIOError):
                while chunk := dst_out.recv(65536):
                    got += chunk
            if why & _native.FORWARD_SOURCE_END and not reader.readable():
                break
            assert why & _native.FORWARD_STALLED  # the budget is never reached here
        assert bytes(got) == payload
        assert sent_total == len(payload)
        # one write per region, and a region is at most the ring's capacity
        assert len(payload) / 4096 <= regions_total <= len(payload)
        # A destination that takes nothing: stalled with bytes still readable.
        src_a, src_b = socket.socketpair()
        with src_a, src_b:
            src_b.setblocking(False)
            src_a.sendall(b"x" * 4096)
            dst_in.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            filler = b"f" * (1 << 20)
            with contextlib.suppress(BlockingIOError):
                while True:
                    dst_in.send(filler)  # nobody reads dst_out now
            _, sent, why, _ = forward(writer, reader, src_b.fileno(), dst_in.fileno(), no_limit)
            assert sent == 0 and why & _native.FORWARD_STALLED
            assert reader.readable() == 4096
    for sock in (src_out, dst_in, dst_out):
        sock.close()
