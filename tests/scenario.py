"""Run a scenario in a fresh interpreter, so a crash fails a test instead of killing pytest.

A script prints one ``OUTCOME label: text`` line per thing it checked (see
``outcome`` in the prelude); the test asserts on them.  A scenario that dies
of a signal (SIGSEGV, SIGBUS, abort) fails with the signal's name.
"""

from __future__ import annotations

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
