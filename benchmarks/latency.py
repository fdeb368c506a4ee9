"""Relay latency: 64-byte request/response round trips through each relay to an echo server.

A client thread sends 64 bytes and waits for the 64-byte answer, ``count``
times in a row, through the relay to a threaded echo server (both with
TCP_NODELAY, on loopback); each round trip is timed.  Every relay has the
same 256 KiB buffer per direction and sends small writes at once (socat with
``nodelay``; asyncio, uvloop and aring set TCP_NODELAY themselves).  The
figure that matters is what a relay *adds* over the direct connection.

Run: python benchmarks/latency.py [--count 20000] [--rounds 3] [RELAY ...]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time

from _common import ARING_ENGINES_NOTE, Row, Scenario, interleave, print_scenario
from relay import _free_port, _relay_command, _wait_listening

# Each aring loop has its own-loop peers: asyncio-proto/asyncio streams, uvloop-proto/
# uvloop-streams, trio (streams): what the loop itself costs per message.
RELAYS = [
    "direct", "socat", "asyncio-proto", "uvloop-proto", "trio", "asyncio streams",
    "uvloop-streams", "aring-asyncio", "aring-uvloop", "aring-trio",
    "aring-loop-asyncio", "aring-loop-uvloop", "aring-loop-trio",
]
ARING_RELAYS = [name for name in RELAYS if name.startswith("aring")]
_SAME_LOOP_PEER = {
    "aring-asyncio": "asyncio-proto", "aring-uvloop": "uvloop-proto", "aring-trio": "trio",
    "aring-loop-asyncio": "asyncio-proto", "aring-loop-uvloop": "uvloop-proto",
    "aring-loop-trio": "trio",
}
MESSAGE = 64
BUFFER = 256 << 10


class _EchoServer:
    """Answers every message with itself, one thread per connection."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()


def _round_trips(port: int, count: int) -> list[float]:
    """Microseconds per round trip, after 200 untimed ones (connection warm-up)."""
    message = bytes(range(MESSAGE))
    answer = bytearray(MESSAGE)
    view = memoryview(answer)
    times = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count + 200):
            start = time.perf_counter_ns()
            sock.sendall(message)
            got = 0
            while got < MESSAGE:
                n = sock.recv_into(view[got:])
                if n == 0:
                    raise ConnectionError("the relay closed the connection")
                got += n
            if i >= 200:
                times.append((time.perf_counter_ns() - start) / 1000)
        if answer != message:
            raise AssertionError("the echo came back changed")
    return times


def one(name: str, count: int) -> dict[str, float]:
    echo = _EchoServer()
    relay = None
    try:
        port = echo.port
        if name != "direct":
            port = _free_port()
            command = _relay_command(name, port, echo.port, BUFFER)
            assert command is not None
            if name == "socat":  # small writes at once, as the other relays do
                command[3] += ",nodelay"
                command[4] += ",nodelay"
            relay = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            _wait_listening(port, " ".join(command), relay)
            time.sleep(0.2)
        times = sorted(_round_trips(port, count))
    finally:
        if relay is not None:
            relay.kill()
            relay.wait()
        echo.close()
    return {
        "p50": statistics.median(times),
        "p99": times[int(len(times) * 0.99)],
    }


def scenario(count: int, rounds: int, progress=None, relays=None) -> Scenario:  # type: ignore[no-untyped-def]
    names = relays or RELAYS
    cases = {
        name: ("limit" if name == "direct" else "aring" if name in ARING_RELAYS else "peer",
               lambda n=name: one(n, count))
        for name in names
    }
    rows = interleave(cases, rounds, progress)
    _add_latency_ratios(rows)
    return Scenario(
        key="relay-latency",
        title=f"Relay latency, {MESSAGE}-byte request/response, {count} round trips",
        metrics={"p50": "p50 µs", "p99": "p99 µs"},
        higher_is_better={"p50": False, "p99": False},
        rows=rows,
        notes=[
            f"what it measures: one client thread sends {MESSAGE} bytes and waits for the echo, "
            f"{count} times, through each relay (each its own process, {BUFFER >> 10} KiB per "
            "direction, TCP_NODELAY on every socket: socat with nodelay) to a threaded echo "
            "server; p50/p99 of the round trips, medians over the rounds",
            "added: a relay's p50 minus the direct connection's p50 in the same run; "
            "the ratio compares what aring adds with what socat adds; 'p50 vs' the relay "
            "written natively on the same loop (BufferedProtocol on asyncio and uvloop, "
            "trio streams): what that loop costs per message",
            ARING_ENGINES_NOTE,
        ],
    )


def _add_latency_ratios(rows: list[Row]) -> None:
    by_name = {row.name: row for row in rows}
    direct = by_name.get("direct")
    socat = by_name.get("socat")
    if direct is None or socat is None:
        return
    socat_added = socat.median["p50"] - direct.median["p50"]
    for name in ARING_RELAYS:
        row = by_name.get(name)
        if row is None:
            continue
        added = row.median["p50"] - direct.median["p50"]
        row.ratios["added p50 vs socat's"] = added / socat_added if socat_added > 0 else 0.0
        row.ratios["p99 vs socat"] = row.median["p99"] / socat.median["p99"]
        own = by_name.get(_SAME_LOOP_PEER[name])
        if own is not None:  # the loop's own relay: what the loop costs per message
            row.ratios[f"p50 vs {own.name}"] = row.median["p50"] / own.median["p50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("relays", nargs="*", help=f"a subset of {RELAYS}")
    args = parser.parse_args()
    unknown = set(args.relays) - set(RELAYS)
    if unknown:
        parser.error(f"unknown relay(s) {sorted(unknown)}; choose from {RELAYS}")
    print_scenario(
        scenario(args.count, args.rounds, lambda msg: print(msg, file=sys.stderr, flush=True),
                 args.relays or None)
    )


if __name__ == "__main__":
    main()
