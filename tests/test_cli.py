"""The command line: `python -m aring demo` moves data and reports it; bad input is refused."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest

from aring._cli import main
from aring._cli.demo import run_demo
from aring._cli.units import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1), ("64KiB", 65536), ("1 MiB", 1 << 20), ("2GiB", 2 << 30), ("1_000kb", 1_000_000)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "KiB", "1.5MiB", "-1", "12 parsecs"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid size"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(512) == "512 B"
    assert format_size(1 << 30) == "1.00 GiB"


@pytest.mark.parametrize("strategy", ["auto", "copy"])
def test_demo_moves_every_byte(strategy: str) -> None:
    out, progress = io.StringIO(), io.StringIO()
    status = run_demo(
        size=(8 << 20) + 12345,
        capacity=64 << 10,
        chunk=100_000,
        notifier="pipe",
        strategy=strategy,
        verify=True,
        out=out,
        progress=progress,
    )
    text = out.getvalue()
    assert status == 0, text
    assert "checksum ok" in text
    assert "GB/s" in text and "CPU s/GB" in text
    assert "100%" in progress.getvalue()


def test_thread_demo_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aring", "demo", "--threads", "--size", "16MiB",
         "--capacity", "1MiB"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "checksum ok" in done.stdout


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "trio"])
def test_relay_demo_moves_every_byte_through_both_relays(loop: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aring", "demo", "--size", "32MiB", "--loop", loop],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith(f"aring ({loop})") and line.endswith(" ok") for line in lines)
    peer = "trio streams" if loop == "trio" else f"asyncio streams ({loop})"
    assert any(line.startswith(peer) and line.endswith(" ok") for line in lines)
    assert "CPU per GB" in done.stdout
    assert "100%" in done.stderr  # progress output


def test_demo_rejects_zero_chunk(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--threads", "--chunk", "0"])
    assert exit_info.value.code == 2
    assert "--chunk must be at least 1 byte" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_relay_refuses_a_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["relay", "--listen", "nowhere", "--to", "127.0.0.1:1"])
    assert exit_info.value.code == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_relay_reports_a_port_in_use() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "aring", "relay", "--listen", f"127.0.0.1:{port}",
             "--to", "127.0.0.1:9"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert "aring relay: error:" in done.stderr and "in use" in done.stderr
