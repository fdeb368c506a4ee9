"""TCP relay: iperf3 client -> relay -> iperf3 server on loopback, Gbit/s and relay CPU s/GB.

Each relay runs in its own process; its CPU comes from ``wait4`` after SIGTERM.
Rounds interleave the relays.  Peers: no relay (direct), socat (-b 262144),
a plain asyncio streams relay (``python -m aring._cli.relay_demo``, the demo's peer), and
the relays in peer_relays.py (splice, uvloop BufferedProtocol, trio, anyio).

Run: python benchmarks/relay.py [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from _common import Scenario, add_ratios, interleave, print_scenario


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _relay_command(name: str, listen: int, target: int) -> list[str] | None:
    py = sys.executable
    if name == "direct":
        return None
    if name == "socat":
        return ["socat", "-b", "262144", f"TCP-LISTEN:{listen},reuseaddr,fork,bind=127.0.0.1",
                f"TCP:127.0.0.1:{target}"]
    if name == "asyncio streams":
        return [py, "-m", "aring._cli.relay_demo", "--listen", f"127.0.0.1:{listen}",
                "--to", f"127.0.0.1:{target}"]
    if name in PEER_RELAYS:
        return [py, str(Path(__file__).with_name("peer_relays.py")), name, str(listen), str(target)]
    loop = name.split("-", 1)[1]
    return [py, "-m", "aring", "relay", "--listen", f"127.0.0.1:{listen}",
            "--to", f"127.0.0.1:{target}", "--loop", loop]


def one(name: str, seconds: float) -> dict[str, float]:
    target = _free_port()
    listen = _free_port()
    command = _relay_command(name, listen, target)
    relay = None
    if command is not None:
        relay = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.8)  # no probe: a probe would use up the one-off iperf3 server
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(target)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        done = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(listen if relay else target),
             "-t", str(seconds), "-l", "128K", "-J"],
            capture_output=True, text=True, timeout=seconds + 30, check=False,
        )
        report = json.loads(done.stdout)
        if "error" in report:
            raise RuntimeError(f"iperf3 through {name}: {report['error']}")
        result = report["end"]["sum_received"]
    finally:
        server.kill()
        server.wait()
    metrics = {"Gbit/s": result["bits_per_second"] / 1e9}
    if relay is not None:
        # Let per-connection processes and threads (socat forks) finish and be
        # reaped, so their CPU is in the relay's rusage.
        time.sleep(0.5)
        relay.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(relay.pid, 0)
        relay.returncode = 0
        metrics["CPU s/GB"] = (usage.ru_utime + usage.ru_stime) / (result["bytes"] / 1e9)
    else:
        metrics["CPU s/GB"] = 0.0
    return metrics


PEER_RELAYS = [
    "splice", "uvloop-streams", "asyncio-proto", "uvloop-proto", "trio",
    "anyio-asyncio", "anyio-uvloop", "anyio-trio",
]
ARING_RELAYS = ["aring-asyncio", "aring-uvloop", "aring-trio"]
RELAYS = ["direct", "splice", "socat", "asyncio streams", *PEER_RELAYS[1:], *ARING_RELAYS]


def missing_tools() -> list[str]:
    return [tool for tool in ("iperf3", "socat") if shutil.which(tool) is None]


def scenario(seconds: float, rounds: int, progress=None) -> Scenario:  # type: ignore[no-untyped-def]
    missing = missing_tools()
    if missing:
        names = " ".join(missing)
        return Scenario(
            "relay", "TCP relay", {}, {}, [], pending=f"apt-get install -y {names}"
        )
    kinds = {name: "peer" for name in ["socat", "asyncio streams", *PEER_RELAYS]}
    kinds["direct"] = kinds["splice"] = "limit"
    cases = {name: (kinds.get(name, "aring"), lambda n=name: one(n, seconds)) for name in RELAYS}
    rows = interleave(cases, rounds, progress)
    for name in ARING_RELAYS:
        add_ratios(rows, {name: "socat"}, ["Gbit/s", "CPU s/GB"])
        add_ratios(rows, {name: "uvloop-proto"}, ["CPU s/GB"])
    return Scenario(
        key="relay",
        title=f"TCP relay, iperf3 through each relay for {seconds:g} s",
        metrics={"Gbit/s": "Gbit/s", "CPU s/GB": "relay CPU s/GB"},
        higher_is_better={"Gbit/s": True, "CPU s/GB": False},
        rows=rows,
        notes=[
            "direct: iperf3 without a relay (CPU column not applicable); splice: os.splice "
            "through a pipe, the kernel's zero-copy limit (bypasses user memory entirely)",
            "peers: socat -b 262144, asyncio streams on asyncio and uvloop, BufferedProtocol "
            "on asyncio and uvloop, trio streams, anyio streams on each backend "
            "(benchmarks/peer_relays.py); each relay's CPU includes its interpreter start-up, "
            "which weighs more in short runs",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_scenario(scenario(args.seconds, args.rounds))


if __name__ == "__main__":
    main()
