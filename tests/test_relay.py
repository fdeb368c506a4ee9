"""The relay: in process on every backend, and as a command line against socat and iperf3."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from anyio import create_task_group

from aring._relay import RelayStats, parse_address, serve_relay

pytestmark = pytest.mark.anyio


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


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_address("[::1]:8080") == ("::1", 8080)
    for bad in ("localhost", ":80", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)


# --- the command line against real peers --------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture(params=["asyncio", "uvloop", "trio"])
def relay_cli(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Start `python -m aring relay` towards a port; yields (relay port, target port, proc)."""
    procs: list[subprocess.Popen[str]] = []

    def start(target: int, *extra: str) -> tuple[int, subprocess.Popen[str]]:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "aring", "relay", "--listen", f"127.0.0.1:{port}",
             "--to", f"127.0.0.1:{target}", "--loop", request.param, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        _wait_listening(port, proc)
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
        assert "over 101 connections (0 failed)" in err  # 100 clients and the probe
    finally:
        echo.kill()
        echo.wait(10)


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="no iperf3 (.ci/run installs it)")
def test_cli_relay_carries_iperf3_with_stats(relay_cli) -> None:  # type: ignore[no-untyped-def]
    server_port = _free_port()
    # The relay first: its readiness probe must not use up the one-off iperf3 server.
    port, relay = relay_cli(server_port, "--stats")
    server = subprocess.Popen(
        ["iperf3", "-s", "-1", "-p", str(server_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
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
        assert received > 10 << 20
        relay.send_signal(signal.SIGINT)
        _, err = relay.communicate(timeout=20)
        assert relay.returncode == 0, err
        assert "Gbit/s" in err and "active" in err  # the live stats line
    finally:
        server.kill()
        server.wait(10)
