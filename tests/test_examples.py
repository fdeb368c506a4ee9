"""Every example runs to completion and reports success (they are the docs' promises)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted(
    path
    for path in (Path(__file__).parent.parent / "examples").glob("*.py")
    if not path.name.startswith("_")  # helpers the examples share
)
LOOPS = ["asyncio", "uvloop", "trio"]


def _runs(path: Path) -> list[list[str]]:
    """Async examples take --loop: they run on every loop, like the async tests."""
    if "--loop" in path.read_text():
        return [["--loop", loop] for loop in LOOPS]
    return [[]]


CASES = [
    pytest.param(path, args, id=" ".join([path.name, *args[1:]]))
    for path in EXAMPLES
    for args in _runs(path)
]


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/ holds no example"


@pytest.mark.parametrize(("path", "args"), CASES)
def test_example_runs(path: Path, args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"{path.name} failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip(), f"{path.name} printed nothing"


def test_readme_code_runs() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = [part.split("```", 1)[0] for part in readme.split("```python\n")[1:]]
    assert len(blocks) >= 2
    outputs = []
    for code in blocks:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "Capabilities(" in outputs[0]
    assert "b'hello, world'" in outputs[1]
    assert "[b'a record', b'hello']" in outputs[-2]
    assert outputs[-1] == "b'first '\nb'second'\n", "the named reader resumed in the reopened file"
