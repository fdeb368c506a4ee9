"""TCP relay: iperf3 client -> relay -> iperf3 server on loopback, Gbit/s and relay CPU s/GB.

Like for like: every relay in a table has the same buffer per direction
(socat ``-b``, the Python peers' read size, the splice pipe, aring's
``--capacity``).  Two tables: 256 KiB (the Python peers' usual read size) and
1 MiB (aring's default ring).  Each relay runs in its own process; its CPU is
read from ``/proc/PID/stat`` (user + system, plus the reaped children that
socat forks per connection) just before iperf3 starts and after its
connections are gone, so interpreter start-up and idle time are left out.
Rounds interleave the relays.

Run: python benchmarks/relay.py [--seconds 4] [--rounds 3] [--buffer 262144] [RELAY ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import ARING_ENGINES_NOTE, Scenario, add_ratios, interleave, print_scenario

from aring._cli.relay_demo import process_cpu

PEER_RELAYS = [
    "splice", "uvloop-streams", "asyncio-proto", "uvloop-proto", "trio",
    "anyio-asyncio", "anyio-uvloop", "anyio-trio",
]
# aring-LOOP: the relay's default thread engine (the loop only accepts and
# connects); aring-loop-LOOP: the bytes moved in that loop's own callbacks/tasks.
ARING_RELAYS = [
    "aring-asyncio", "aring-uvloop", "aring-trio",
    "aring-loop-asyncio", "aring-loop-uvloop", "aring-loop-trio",
]
RELAYS = ["direct", "splice", "socat", "asyncio streams", *PEER_RELAYS[1:], *ARING_RELAYS]
# At aring's default ring size, the peers that do best at 256 KiB (a shorter table).
RELAYS_1MIB = ["direct", "splice", "socat", "uvloop-proto", "trio", *ARING_RELAYS]
KINDS = {"direct": "limit", "splice": "limit"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _relay_command(name: str, listen: int, target: int, buffer: int) -> list[str] | None:
    py = sys.executable
    if name == "direct":
        return None
    if name == "socat":
        return ["socat", "-b", str(buffer), f"TCP-LISTEN:{listen},reuseaddr,fork,bind=127.0.0.1",
                f"TCP:127.0.0.1:{target}"]
    if name == "asyncio streams":
        return [py, "-m", "aring._cli.relay_demo", "--listen", f"127.0.0.1:{listen}",
                "--to", f"127.0.0.1:{target}", "--read-size", str(buffer)]
    if name in PEER_RELAYS:
        return [py, str(Path(__file__).with_name("peer_relays.py")), name, str(listen),
                str(target), str(buffer)]
    if name in ARING_RELAYS:
        engine, loop = ("loop", name.rsplit("-", 1)[1]) if "-loop-" in name else (
            "thread", name.split("-", 1)[1])
        return [py, "-m", "aring", "relay", "--listen", f"127.0.0.1:{listen}",
                "--to", f"127.0.0.1:{target}", "--loop", loop, "--engine", engine,
                "--capacity", str(buffer)]
    raise ValueError(f"unknown relay {name!r}; choose from {RELAYS}")


def _listening(port: int) -> bool:
    """Whether something listens on the port, IPv4 or IPv6 (from /proc, without
    connecting: a probe connection would use up the one-off iperf3 server)."""
    suffix = f":{port:04X}"
    try:
        lines = [
            line.split()
            for table in ("/proc/net/tcp", "/proc/net/tcp6")
            for line in Path(table).read_text().splitlines()[1:]
        ]
    except OSError:
        time.sleep(1.0)  # no /proc: give it a fixed while
        return True
    return any(fields[1].endswith(suffix) and fields[3] == "0A" for fields in lines)


def _wait_listening(port: int, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start listening on port {port}")
        time.sleep(0.05)


def _relay_cpu(pid: int) -> float:
    cpu = process_cpu(pid)
    if cpu is None:
        raise RuntimeError("the relay benchmark reads relay CPU from /proc, which is missing here")
    return cpu


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def one(name: str, seconds: float, buffer: int) -> dict[str, float]:
    target = _free_port()
    listen = _free_port()
    command = _relay_command(name, listen, target, buffer)
    relay = None
    if command is not None:
        relay = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(listen, " ".join(command), relay)
        time.sleep(0.2)  # settle: the interpreter may still be importing after listen()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(target)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_listening(target, "iperf3 -s", server)
    try:
        cpu_before = _relay_cpu(relay.pid) if relay else 0.0
        done = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(listen if relay else target),
             "-t", str(seconds), "-l", "128K", "-J"],
            capture_output=True, text=True, timeout=seconds + 30, check=False,
        )
        report = json.loads(done.stdout)
        if "error" in report:
            raise RuntimeError(f"iperf3 through {name}: {report['error']}")
        result = report["end"]["sum_received"]
        server.wait(timeout=10)
        metrics = {"Gbit/s": result["bits_per_second"] / 1e9, "CPU s/GB": 0.0}
        if relay is not None:
            # socat forks a process per connection: wait until they exited and
            # were reaped, so their CPU is in the parent's cutime/cstime.
            deadline = time.monotonic() + 5
            while _children(relay.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.05)
            used = _relay_cpu(relay.pid) - cpu_before
            metrics["CPU s/GB"] = used / (result["bytes"] / 1e9)
        return metrics
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if relay is not None:
            relay.kill()
            relay.wait()


def missing_tools() -> list[str]:
    return [tool for tool in ("iperf3", "socat") if shutil.which(tool) is None]


def _size(buffer: int) -> str:
    return f"{buffer >> 20} MiB" if buffer >= 1 << 20 else f"{buffer >> 10} KiB"


def scenario(  # type: ignore[no-untyped-def]
    seconds: float, rounds: int, progress=None, buffer: int = 256 << 10, relays=None
) -> Scenario:
    key = f"relay-{_size(buffer).replace(' ', '').lower()}"
    title = f"TCP relay, {_size(buffer)} buffers for every relay, iperf3 for {seconds:g} s"
    missing = missing_tools()
    if missing:
        return Scenario(key, title, {}, {}, [], pending=f"apt-get install -y {' '.join(missing)}")
    names = relays or RELAYS
    cases = {
        name: (KINDS.get(name, "aring" if name in ARING_RELAYS else "peer"),
               lambda n=name: one(n, seconds, buffer))
        for name in names
    }
    rows = interleave(cases, rounds, progress)
    for name in ARING_RELAYS:
        add_ratios(rows, {name: "socat"}, ["Gbit/s", "CPU s/GB"])
        add_ratios(rows, {name: "uvloop-proto"}, ["CPU s/GB"])
    return Scenario(
        key=key,
        title=title,
        metrics={"Gbit/s": "Gbit/s", "CPU s/GB": "relay CPU s/GB"},
        higher_is_better={"Gbit/s": True, "CPU s/GB": False},
        rows=rows,
        notes=[
            f"what it measures: one iperf3 TCP stream (128 KiB writes) through each relay, "
            f"every relay with {_size(buffer)} per direction (socat -b, the peers' read size, "
            "the splice pipe, aring --capacity); CPU is the relay process's user + system "
            "time (socat's forked children included) from just before iperf3 starts to "
            "after its connections closed, per GB delivered",
            "direct: iperf3 without a relay (no relay CPU); splice: os.splice through a pipe, "
            "the kernel's zero-copy floor (bypasses user memory)",
            "peers (benchmarks/peer_relays.py): socat; asyncio streams on asyncio and uvloop "
            "(read(n), write, drain; default 64 KiB stream limit, which was faster than a "
            "larger one); BufferedProtocol on asyncio and uvloop; trio streams; anyio streams "
            "on each backend",
            ARING_ENGINES_NOTE,
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--buffer", type=int, default=256 << 10, help="bytes per direction")
    parser.add_argument("relays", nargs="*", help=f"a subset of {RELAYS}")
    args = parser.parse_args()
    unknown = set(args.relays) - set(RELAYS)
    if unknown:
        parser.error(f"unknown relay(s) {sorted(unknown)}; choose from {RELAYS}")
    print_scenario(
        scenario(args.seconds, args.rounds,
                 lambda msg: print(msg, file=sys.stderr, flush=True), args.buffer,
                 args.relays or None)
    )


if __name__ == "__main__":
    main()
