"""``python -m aring demo``: 1 GiB through the aring relay and through a plain asyncio relay.

On loopback: a sink thread, a relay in its own process, and a source thread
that sends the data and half-closes.  The peer is the relay most Python code
would write (``serve_asyncio_streams`` below, run as ``python -m
aring._cli.relay_demo --listen HOST:PORT --to HOST:PORT``).  Each relay is measured the same way in
the same run: wall time from the first byte sent to the last byte received,
and the relay process's CPU seconds (``wait4``) per GB.  The sink checksums
every byte.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from typing import TextIO

from .._relay import parse_address
from .progress import Progress
from .units import format_size

__all__ = ["RelayRun", "run_relay_demo", "serve_asyncio_streams"]

_PATTERN = 1 << 20
_READ_SIZE = 256 << 10


@dataclass
class RelayRun:
    name: str
    seconds: float
    cpu_seconds: float
    received: int
    intact: bool

    @property
    def gbytes_per_second(self) -> float:
        return self.received / self.seconds / 1e9

    @property
    def cpu_per_gb(self) -> float:
        return self.cpu_seconds / (self.received / 1e9)


class _Sink:
    """Accepts connections and counts (and checksums) what arrives, in a thread."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self.crc = 0
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="aring-demo-sink", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        buffer = memoryview(bytearray(1 << 20))
        with conn:
            while n := conn.recv_into(buffer):
                self.crc = zlib.crc32(buffer[:n], self.crc)
                self.received += n
        self.finished.set()

    def close(self) -> None:
        self.listener.close()


def _start_relay(command: list[str], out: TextIO) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "<name> relay: 127.0.0.1:PORT -> ..."
    if ":" not in line or proc.poll() is not None:
        raise OSError(f"the relay did not start: {line.strip()} {proc.stderr.read().strip()}")
    port = int(line.split(" -> ")[0].rsplit(":", 1)[1])
    return proc, port


def _stop(proc: subprocess.Popen[str]) -> float:
    """SIGTERM, wait, and the process's CPU seconds (user + system)."""
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr is not None:
        proc.stderr.close()
    return usage.ru_utime + usage.ru_stime


def _one(name: str, command: list[str], size: int, progress: TextIO, out: TextIO) -> RelayRun:
    sink = _Sink()
    command = [part.replace("{target}", str(sink.port)) for part in command]
    proc, port = _start_relay(command, out)
    pattern = memoryview(os.urandom(_PATTERN))
    expected = 0
    try:
        with socket.create_connection(("127.0.0.1", port)) as source:
            start = time.perf_counter()
            meter = Progress(progress, size, name)
            sent = 0
            while sent < size:
                n = min(_PATTERN, size - sent)
                source.sendall(pattern[:n])
                expected = zlib.crc32(pattern[:n], expected)
                sent += n
                meter.update(sink.received)
            source.shutdown(socket.SHUT_WR)  # the relay forwards the half-close
            if not sink.finished.wait(120):
                raise TimeoutError(f"{name}: the sink saw no end of stream within 120 s")
            elapsed = time.perf_counter() - start
            meter.update(sink.received)
            meter.finish()
    finally:
        cpu = _stop(proc)
        sink.close()
    intact = sink.crc == expected and sink.received == size
    return RelayRun(name, elapsed, cpu, sink.received, intact)


def run_relay_demo(*, size: int, loop: str, out: TextIO, progress: TextIO) -> int:
    """Move ``size`` bytes through each relay; 0 if every byte arrived intact."""
    if size < 1:
        raise ValueError(f"--size must be at least 1 byte, got {size}")
    python = sys.executable
    relays = {
        f"aring ({loop})": [
            python, "-m", "aring", "relay", "--listen", "127.0.0.1:0",
            "--to", "127.0.0.1:{target}", "--loop", loop,
        ],
        "asyncio streams": [
            python, "-m", "aring._cli.relay_demo", "--listen", "127.0.0.1:0",
            "--to", "127.0.0.1:{target}",
        ],
    }
    out.write(
        f"aring demo: {format_size(size)} source -> relay -> sink on loopback, each relay in "
        "its own process, measured the same way in this run\n"
    )
    out.flush()
    runs = [_one(name, command, size, progress, out) for name, command in relays.items()]
    out.write(f"{'relay':<18} {'GB/s':>7} {'CPU s/GB':>9}  {'checksum'}\n")
    for run in runs:
        out.write(
            f"{run.name:<18} {run.gbytes_per_second:7.2f} {run.cpu_per_gb:9.3f}  "
            f"{'ok' if run.intact else 'FAILED'}\n"
        )
    ours, peer = runs
    out.write(
        f"aring moved {ours.gbytes_per_second / peer.gbytes_per_second:.2f}x the bytes per "
        f"second of the asyncio streams relay, using {ours.cpu_per_gb / peer.cpu_per_gb:.2f}x "
        "its CPU per GB\n"
    )
    return 0 if all(run.intact for run in runs) else 1


# -- the peer: asyncio streams, 256 KiB per read, one coroutine per direction


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(_READ_SIZE):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def serve_asyncio_streams(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.open_connection(*target)
        except OSError:
            c_writer.close()
            return
        with contextlib.suppress(OSError):
            await asyncio.gather(_pipe(c_reader, t_writer), _pipe(t_reader, c_writer))
        for w in (c_writer, t_writer):
            w.close()

    server = await asyncio.start_server(handle, *listen)
    port = server.sockets[0].getsockname()[1]
    print(f"asyncio-streams relay: {listen[0]}:{port} -> {target[0]}:{target[1]}", file=sys.stderr)
    sys.stderr.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def _main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m aring._cli.relay_demo", description="the demo's asyncio streams relay"
    )
    parser.add_argument("--listen", required=True, type=parse_address)
    parser.add_argument("--to", required=True, type=parse_address)
    args = parser.parse_args()
    asyncio.run(serve_asyncio_streams(args.listen, args.to))


if __name__ == "__main__":
    _main()
