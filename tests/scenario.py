"""Run a scenario in a fresh interpreter, so a crash fails a test instead of killing pytest.

A script prints one ``OUTCOME label: text`` line per thing it checked (see
``outcome`` in the prelude); the test asserts on them.  A scenario that dies
of a signal (SIGSEGV, SIGBUS, abort) fails with the signal's name.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import gc, os, sys, threading, time
import aring
from anyio import BusyResourceError, ClosedResourceError, EndOfStream

def outcome(label, call):
    try:
        result = call()
    except BaseException as exc:
        print(f"OUTCOME {label}: {type(exc).__name__}: {exc}", flush=True)
    else:
        print(f"OUTCOME {label}: returned {result!r}", flush=True)
"""


def run_scenario(
    body: str, timeout: float = 60, prefix: list[str] | None = None
) -> dict[str, str]:
    """Run ``body`` in a child interpreter; its OUTCOME lines as {label: text}.

    ``prefix`` runs the interpreter under another command (``unshare ...``).
    """
    code = PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [*(prefix or []), sys.executable, "-X", "faulthandler", "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        pytest.fail(f"the scenario died of {name}:\n{done.stdout}\n{done.stderr}")
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    outcomes = {}
    for line in done.stdout.splitlines():
        if line.startswith("OUTCOME "):
            label, _, text = line[len("OUTCOME ") :].partition(": ")
            outcomes[label] = text
    return outcomes


def with_tmpfs(mountpoint: str, size_kib: int) -> list[str] | None:
    """A command prefix that runs a program with a tmpfs of ``size_kib`` on ``mountpoint``.

    In a mount namespace of its own (a user namespace where allowed, else as
    root); None where neither is possible.
    """
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    script = f'mount -t tmpfs -o size={size_kib}k tmpfs {mountpoint} && exec "$@"'
    for flags in (["-rm"], ["-m"]):
        prefix = [unshare, *flags, "sh", "-c", script, "sh"]
        probe = subprocess.run([*prefix, "df", "-k", mountpoint], capture_output=True, check=False)
        if probe.returncode == 0 and str(size_kib).encode() in probe.stdout:
            return prefix
    return None
