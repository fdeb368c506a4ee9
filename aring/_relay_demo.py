"""``python -m aring demo``: 1 GiB through the aring relay and through a plain asyncio relay.

On loopback: a sink thread, a relay in its own process, and a source thread
that sends the data and half-closes.  Each relay is measured the same way in
the same run: wall time from the first byte sent to the last byte received,
and the relay process's CPU seconds (``wait4``) per GB.  The sink checksums
every byte.
"""

from __future__ import annotations

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

from ._progress import Progress
from ._units import format_size

__all__ = ["RelayRun", "run_relay_demo"]

_PATTERN = 1 << 20


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
            python, "-m", "aring._peers", "asyncio-streams", "--listen", "127.0.0.1:0",
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
