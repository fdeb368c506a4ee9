"""Shared fixtures, and which plugin runs which async test.

Two pytest plugins run async tests here, each owning its own marker, so no
test is handled twice:

* anyio's plugin owns ``@pytest.mark.anyio`` (most modules set it as
  ``pytestmark``): such a test runs once per ``anyio_backend`` param below, on
  asyncio, asyncio with uvloop, and trio.  This is how every behaviour is
  checked on all three loops.
* pytest-trio owns ``@pytest.mark.trio`` (``test_trio_native.py``): trio-native
  tests, trio.testing's stream checks and timeouts under trio's MockClock
  (its ``autojump_clock`` fixture).  ``trio_mode`` is off (pyproject.toml), so
  pytest-trio touches nothing that is not marked ``trio``.

A module uses one marker or the other, never both.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

import aring

# Every async test runs on asyncio, asyncio+uvloop and trio (anyio's own
# tests/conftest.py overrides the same fixture).
_BACKENDS: list[Any] = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("trio", {}), id="trio"),
]
if sys.platform != "win32":
    _BACKENDS.insert(1, pytest.param(("asyncio", {"use_uvloop": True}), id="asyncio+uvloop"))


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def available_strategies() -> list[str]:
    """Every strategy this platform can map (memfd is Linux only)."""
    names = ["shm", "file", "copy"]
    if aring.capabilities().strategy == "memfd":
        names.insert(0, "memfd")
    return names


STRATEGIES = available_strategies()


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["eventfd", "pipe"] if sys.platform == "linux" else ["pipe"])
def notifier(request: pytest.FixtureRequest) -> str:
    return str(request.param)
