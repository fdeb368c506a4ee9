"""``python -m aring demo``: 1 GiB through the aring relay and through a plain Python relay.

On loopback: a sink thread, a relay in its own process, and a source thread
that sends the data and half-closes.  The peer is the relay most Python code
would write on the same event loop as aring's (``serve_asyncio_streams`` on
asyncio and uvloop, ``serve_trio_streams`` on trio; run as ``python -m
aring._cli.relay_demo --listen HOST:PORT --to HOST:PORT --loop LOOP``), with
reads as large as aring's ring.  Each relay is measured the same way in the
same run: wall time from the first byte sent to the last byte received, and
the relay process's CPU seconds per GB while it moved the bytes (read from
``/proc/PID/stat`` before the first byte and after the last, so interpreter
start-up is left out).  The sink checksums every byte.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
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

__all__ = ["RelayRun", "process_cpu", "run_relay_demo", "serve_asyncio_streams"]

_PATTERN = 1 << 20
_BUFFER = 1 << 20   # aring's ring per direction, and the peer's read size


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


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, reaped children included) of a live process, or None.

    From ``/proc/PID/stat``, so the relay's own start-up can be left out by
    reading it before the first byte and after the last; None without /proc.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the ")" closing the command name: state is field 3, utime 14 ... cstime 17.
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[str]) -> float:
    """SIGTERM, wait, and the process's CPU seconds (user + system) over its life."""
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
    cpu_before = cpu_after = None
    try:
        with socket.create_connection(("127.0.0.1", port)) as source:
            cpu_before = process_cpu(proc.pid)
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
            cpu_after = process_cpu(proc.pid)
            meter.update(sink.received)
            meter.finish()
    finally:
        lifetime_cpu = _stop(proc)
        sink.close()
    # Without /proc the whole life counts, start-up included, for both relays alike.
    no_proc = cpu_before is None or cpu_after is None
    cpu = lifetime_cpu if no_proc else cpu_after - cpu_before  # type: ignore[operator]
    intact = sink.crc == expected and sink.received == size
    return RelayRun(name, elapsed, cpu, sink.received, intact)


def run_relay_demo(*, size: int, loop: str, out: TextIO, progress: TextIO) -> int:
    """Move ``size`` bytes through each relay; 0 if every byte arrived intact."""
    if size < 1:
        raise ValueError(f"--size must be at least 1 byte, got {size}")
    python = sys.executable
    peer = "trio streams" if loop == "trio" else f"asyncio streams ({loop})"
    relays = {
        f"aring ({loop})": [
            python, "-m", "aring", "relay", "--listen", "127.0.0.1:0",
            "--to", "127.0.0.1:{target}", "--loop", loop, "--capacity", str(_BUFFER),
        ],
        peer: [
            python, "-m", "aring._cli.relay_demo", "--listen", "127.0.0.1:0",
            "--to", "127.0.0.1:{target}", "--loop", loop, "--read-size", str(_BUFFER),
        ],
    }
    out.write(
        f"aring demo: {format_size(size)} source -> relay -> sink on loopback, each relay in "
        f"its own process on {loop}, {format_size(_BUFFER)} buffers per direction, measured "
        "the same way in this run\n"
    )
    out.flush()
    runs = [_one(name, command, size, progress, out) for name, command in relays.items()]
    width = max(len(run.name) for run in runs) + 2
    out.write(f"{'relay':<{width}} {'GB/s':>7} {'CPU s/GB':>9}  {'checksum'}\n")
    for run in runs:
        out.write(
            f"{run.name:<{width}} {run.gbytes_per_second:7.2f} {run.cpu_per_gb:9.3f}  "
            f"{'ok' if run.intact else 'FAILED'}\n"
        )
    ours, theirs = runs
    out.write(
        f"aring moved {ours.gbytes_per_second / theirs.gbytes_per_second:.2f}x the bytes per "
        f"second of the {theirs.name} relay, using "
        f"{ours.cpu_per_gb / theirs.cpu_per_gb:.2f}x its CPU per GB\n"
    )
    return 0 if all(run.intact for run in runs) else 1


# -- the peers: streams, one read of up to read_size per pass, one coroutine per direction


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read_size: int) -> None:
    while data := await reader.read(read_size):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def serve_asyncio_streams(
    listen: tuple[str, int], target: tuple[str, int], read_size: int = _BUFFER
) -> None:
    """The asyncio streams relay: ``read(read_size)``, ``write``, ``drain``.

    The streams keep their default buffer limit (64 KiB): larger limits made
    them slower here (with 1 MiB, 3.2 CPU s/GB against 0.89 on uvloop).
    """

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.open_connection(*target)
        except OSError:
            c_writer.close()
            return
        with contextlib.suppress(OSError):
            await asyncio.gather(
                _pipe(c_reader, t_writer, read_size), _pipe(t_reader, c_writer, read_size)
            )
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


async def serve_trio_streams(
    listen: tuple[str, int], target: tuple[str, int], read_size: int = _BUFFER
) -> None:
    """The trio streams relay: ``receive_some(read_size)`` then ``send_all``."""
    import trio

    async def forward(src: trio.SocketStream, dst: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await src.receive_some(read_size):
                await dst.send_all(data)
            await dst.send_eof()

    async def handle(client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*target)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(forward, client, upstream)
            nursery.start_soon(forward, upstream, client)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, handle, listen[1], host=listen[0])
            )
            port = listeners[0].socket.getsockname()[1]
            print(f"trio-streams relay: {listen[0]}:{port} -> {target[0]}:{target[1]}",
                  file=sys.stderr)
            sys.stderr.flush()
            async for _ in signals:
                nursery.cancel_scope.cancel()


def _main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m aring._cli.relay_demo", description="the demo's asyncio streams relay"
    )
    parser.add_argument("--listen", required=True, type=parse_address)
    parser.add_argument("--to", required=True, type=parse_address)
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "trio"), default="asyncio")
    parser.add_argument("--read-size", type=int, default=_BUFFER, help="bytes per read (1 MiB)")
    args = parser.parse_args()
    if args.read_size < 1:
        parser.error(f"--read-size must be at least 1, got {args.read_size}")
    if args.loop == "trio":
        import trio

        trio.run(serve_trio_streams, args.listen, args.to, args.read_size)
    elif args.loop == "uvloop":
        import uvloop

        uvloop.run(serve_asyncio_streams(args.listen, args.to, args.read_size))
    else:
        asyncio.run(serve_asyncio_streams(args.listen, args.to, args.read_size))


if __name__ == "__main__":
    _main()
