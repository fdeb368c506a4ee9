"""HTTP/1.1 server: requests per second of the same minimal server on aring, anyio and asyncio.

Each server parses the request head up to the blank line and answers with a
fixed 14-byte body; keep-alive unless the request is HTTP/1.0 without it.
The same handler on three stacks, each in its own process on each loop:
aring (``create_tcp_listener``, ``receive_until`` on the ring), plain anyio
(``BufferedByteReceiveStream.receive_until``) and asyncio streams
(``StreamReader.readuntil``; asyncio and uvloop only).  Load: ``wrk -t1 -c50``
(keep-alive) and ``ab -c50`` (a new connection per request), on loopback.

Run: python benchmarks/http_server.py [--seconds 4] [--rounds 3]
     python benchmarks/http_server.py serve STACK LOOP PORT   (one server, until SIGTERM)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
import sys
from typing import Any

from _common import Scenario, add_ratios, interleave, print_scenario
from relay import _free_port, _wait_listening

BODY = b"Hello, world!\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
    % (len(BODY), BODY)
)
HEAD_LIMIT = 65536
LOOPS = {"asyncio": ("asyncio", {}), "uvloop": ("asyncio", {"use_uvloop": True}),
         "trio": ("trio", {})}
STACKS = ["aring", "aring budget", "anyio", "asyncio streams"]


def _keeps_alive(head: bytes) -> bool:
    first, _, headers = head.partition(b"\r\n")
    if first.endswith(b"HTTP/1.0"):
        return b"keep-alive" in headers.lower()
    return b"connection: close" not in headers.lower()


# -- the servers --------------------------------------------------------------------


async def _serve_aring(port: int, checkpoints: str = "always") -> None:
    import anyio

    import aring

    async def handle(stream: Any) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead,
                                     anyio.BrokenResourceError):
                while True:
                    head = await stream.receive_until(b"\r\n\r\n", HEAD_LIMIT)
                    alive = _keeps_alive(bytes(head))
                    await stream.send(RESPONSE)
                    if not alive:
                        return

    listener = await aring.create_tcp_listener(
        local_host="127.0.0.1", local_port=port, checkpoints=checkpoints  # type: ignore[arg-type]
    )
    await _until_sigterm(listener, handle)


async def _serve_anyio(port: int) -> None:
    import anyio
    from anyio.streams.buffered import BufferedByteReceiveStream

    async def handle(stream: Any) -> None:
        async with stream:
            buffered = BufferedByteReceiveStream(stream)
            with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead,
                                     anyio.BrokenResourceError):
                while True:
                    head = await buffered.receive_until(b"\r\n\r\n", HEAD_LIMIT)
                    alive = _keeps_alive(head)
                    await stream.send(RESPONSE)
                    if not alive:
                        return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    await _until_sigterm(listener, handle)


async def _until_sigterm(listener: Any, handle: Any) -> None:
    import anyio

    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            async for _ in signals:
                tg.cancel_scope.cancel()


async def _serve_asyncio_streams(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                alive = _keeps_alive(head)
                writer.write(RESPONSE)
                await writer.drain()
                if not alive:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=65536)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


def serve(stack: str, loop: str, port: int) -> None:
    if stack == "asyncio streams":
        if loop == "uvloop":
            import uvloop

            uvloop.run(_serve_asyncio_streams(port))
        else:
            asyncio.run(_serve_asyncio_streams(port))
        return
    import anyio

    backend, options = LOOPS[loop]
    if stack == "anyio":
        anyio.run(_serve_anyio, port, backend=backend, backend_options=options)
    else:
        mode = "budget" if stack == "aring budget" else "always"
        anyio.run(_serve_aring, port, mode, backend=backend, backend_options=options)


# -- the load -----------------------------------------------------------------------


def _load(tool: str, port: int, seconds: float) -> float:
    url = f"http://127.0.0.1:{port}/"
    if tool == "wrk":
        command = ["wrk", "-t1", "-c50", f"-d{seconds:g}s", url]
        pattern = r"Requests/sec:\s+([\d.]+)"
    else:
        command = ["ab", "-q", "-c", "50", "-t", f"{seconds:g}", "-n", "10000000", url]
        pattern = r"Requests per second:\s+([\d.]+)"
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    found = re.search(pattern, done.stdout)
    if found is None:
        raise RuntimeError(f"{tool} printed no rate:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1))


def one(stack: str, loop: str, seconds: float) -> dict[str, float]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", stack, loop, str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, f"the {stack} server on {loop}", server)
        return {
            "keep-alive": _load("wrk", port, seconds) / 1000,
            "new connection": _load("ab", port, seconds) / 1000,
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def missing_tools() -> list[str]:
    names = {"wrk": "wrk", "ab": "apache2-utils"}
    return [package for tool, package in names.items() if shutil.which(tool) is None]


def scenario(seconds: float, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    title = f"HTTP/1.1 server, 14-byte responses, wrk -c50 and ab -c50 for {seconds:g} s"
    missing = missing_tools()
    if missing:
        return Scenario("http-server", title, {}, {}, [],
                        pending=f"apt-get install -y {' '.join(missing)}")
    cases = {}
    for loop in LOOPS:
        for stack in STACKS:
            if stack == "asyncio streams" and loop == "trio":
                continue
            cases[f"{stack}-{loop}"] = (
                "aring" if stack.startswith("aring") else "peer",
                lambda s=stack, lp=loop: one(s, lp, seconds),
            )
    rows = interleave(cases, rounds, progress)
    for loop in LOOPS:
        for ours in ("aring", "aring budget"):
            for peer in ("asyncio streams", "anyio"):
                add_ratios(rows, {f"{ours}-{loop}": f"{peer}-{loop}"},
                           ["keep-alive", "new connection"])
    return Scenario(
        key="http-server",
        title=title,
        metrics={"keep-alive": "keep-alive kreq/s", "new connection": "new conn kreq/s"},
        higher_is_better={"keep-alive": True, "new connection": True},
        rows=rows,
        notes=[
            "what it measures: the same minimal HTTP/1.1 server (head parsed up to the blank "
            "line with each stack's receive_until/readuntil, a fixed 14-byte body) in its own "
            "process on each loop, loaded by wrk -t1 -c50 (keep-alive) and ab -c50 (a new "
            "connection per request) on loopback; thousands of requests per second",
            "stacks: aring (create_tcp_listener, RingSocketStream.receive_until on the ring; "
            "'aring budget': the same with checkpoints='budget', a loop pass only to wait or "
            "once per 64 calls, as asyncio streams' write/drain do not yield), "
            "plain anyio (BufferedByteReceiveStream.receive_until), asyncio streams "
            "(StreamReader.readuntil, asyncio and uvloop)",
        ],
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_scenario(scenario(args.seconds, args.rounds,
                            lambda msg: print(msg, file=sys.stderr, flush=True)))


if __name__ == "__main__":
    main()
