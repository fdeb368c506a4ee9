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
