"""pump and fill against sockets, pipes, regular files and anyio streams, on every backend."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from anyio import BrokenResourceError, create_task_group, wait_all_tasks_blocked
from observe import until_async
from scenario import run_scenario, with_tmpfs

import aring
from aring import TransferStats

pytestmark = pytest.mark.anyio

PAYLOAD = os.urandom(3 << 20)  # many times the 64 KiB ring: it wraps about 50 times


async def _feed(writer: aring.Writer, data: bytes) -> None:
    async with writer:
        await writer.send(data)


async def _drain(reader: aring.Reader) -> bytes:
    got = bytearray()
    async for chunk in reader:
        got += chunk
    return bytes(got)


async def test_pump_and_fill_over_a_socketpair_with_half_close() -> None:
    left, right = socket.socketpair()
    with left, right, anyio.fail_after(30):
        async with aring.open(1 << 16) as (w_out, r_out), aring.open(1 << 16) as (w_in, r_in):
            out_stats, in_stats = TransferStats(), TransferStats()
            received: list[bytes] = []
            async with create_task_group() as tg:
                tg.start_soon(_feed, w_out, PAYLOAD)
                tg.start_soon(lambda: aring.pump(r_out, left, stats=out_stats))
                tg.start_soon(lambda: aring.fill(w_in, right, stats=in_stats))

                async def drain() -> None:
                    received.append(await _drain(r_in))

                tg.start_soon(drain)
            assert received == [PAYLOAD]
            assert out_stats.bytes == in_stats.bytes == len(PAYLOAD)
            # one send per region handed out, plus retries after EAGAIN
            assert out_stats.syscalls == out_stats.regions + out_stats.waits
            assert in_stats.syscalls == in_stats.regions + in_stats.waits
            # the half-close went through: right saw EOF, left can still receive
            right.send(b"back")
            assert left.recv(4) == b"back"


async def test_pump_and_fill_over_pipes() -> None:
    rfd, wfd = os.pipe()
    try:
        with anyio.fail_after(30):
            async with aring.open(1 << 16) as (w1, r1), aring.open(1 << 16) as (w2, r2):
                received: list[bytes] = []
                async with create_task_group() as tg:
                    tg.start_soon(_feed, w1, PAYLOAD)

                    async def pump_then_close() -> None:
                        await aring.pump(r1, wfd)
                        os.close(wfd)  # pump never closes a borrowed fd

                    tg.start_soon(pump_then_close)
                    tg.start_soon(aring.fill, w2, rfd)

                    async def drain() -> None:
                        received.append(await _drain(r2))

                    tg.start_soon(drain)
                assert received == [PAYLOAD]
    finally:
        os.close(rfd)
        with contextlib.suppress(OSError):
            os.close(wfd)


async def test_pump_to_and_fill_from_a_regular_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with anyio.fail_after(30):
        async with aring.open(1 << 16) as (w, r):
            with target.open("wb") as f:
                f.write(b"header:")  # buffered by the file object: pump flushes it first
                async with create_task_group() as tg:
                    tg.start_soon(_feed, w, PAYLOAD)
                    moved = await aring.pump(r, f)
            assert moved == len(PAYLOAD)
        assert target.read_bytes() == b"header:" + PAYLOAD
        async with aring.open(1 << 16) as (w, r):
            with target.open("rb") as f:
                stats = TransferStats()
                async with create_task_group() as tg:
                    tg.start_soon(lambda: aring.fill(w, f, stats=stats))
                    data = await _drain(r)
            assert data == b"header:" + PAYLOAD
            assert stats.syscalls == stats.regions  # files never say EAGAIN


async def test_pump_and_fill_with_anyio_streams() -> None:
    with anyio.fail_after(30):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with create_task_group() as tg, aring.open(1 << 16) as (w1, r1):
                got: list[bytes] = []

                async def serve() -> None:
                    async def echo_into_ring(stream: anyio.abc.SocketStream) -> None:
                        async with aring.open(1 << 16) as (w2, r2), create_task_group() as inner:
                            inner.start_soon(aring.fill, w2, stream)

                            async def collect() -> None:
                                got.append(await _drain(r2))

                            inner.start_soon(collect)
                        tg.cancel_scope.cancel()

                    await listener.serve(echo_into_ring)

                tg.start_soon(serve)
                stream = await anyio.connect_tcp("127.0.0.1", port)
                async with stream:
                    tg.start_soon(_feed, w1, PAYLOAD)
                    await aring.pump(r1, stream)  # eof=True: send_eof() on the stream
            assert got == [PAYLOAD]


async def test_a_peer_reset_is_a_broken_resource() -> None:
    left, right = socket.socketpair()
    with left, anyio.fail_after(30):
        right.close()
        async with aring.open(1 << 16) as (w, r):
            w.try_write(b"x" * 1000)
            with pytest.raises(BrokenResourceError, match="peer closed"):
                await aring.pump(r, left)
            assert r.readable() == 1000  # nothing was reported as moved


async def test_cancelled_pump_loses_no_byte_it_reported() -> None:
    left, right = socket.socketpair()
    with left, right, anyio.fail_after(30):
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        async with aring.open(1 << 16) as (w, r):
            stats = TransferStats()
            async with create_task_group() as tg:
                tg.start_soon(_feed, w, PAYLOAD[: 1 << 20])
                tg.start_soon(lambda: aring.pump(r, left, stats=stats))
                # right is not read: pump fills the socket, then waits on it
                await until_async(lambda: stats.waits, "pump waiting on a full socket")
                tg.cancel_scope.cancel()
            assert 0 < stats.bytes < 1 << 20
            right.setblocking(False)
            got = bytearray()
            while True:
                try:
                    chunk = right.recv(1 << 20)
                except BlockingIOError:
                    break
                got += chunk
            assert len(got) == stats.bytes
            assert bytes(got) == PAYLOAD[: stats.bytes]
            assert bytes(r.try_peek(1) or b"")[:16] == PAYLOAD[stats.bytes : stats.bytes + 16]


async def test_a_cancelled_pump_to_a_file_stops_its_worker_and_loses_nothing(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out.bin"
    with anyio.fail_after(30), target.open("wb") as f:
        async with aring.open(1 << 16) as (w, r):
            stats = TransferStats()
            async with create_task_group() as tg:
                tg.start_soon(_feed, w, PAYLOAD)
                with anyio.CancelScope() as pumping:
                    async with create_task_group() as inner:
                        inner.start_soon(lambda: aring.pump(r, f, stats=stats))
                        await until_async(lambda: stats.bytes >= 1 << 19, "half a MiB pumped")
                        pumping.cancel()
                written = os.fstat(f.fileno()).st_size
                following = bytes(r.try_peek(1) or b"")[:16]
                # Once pump returned, its worker makes no more write(2): the
                # file and the ring stay as they are (4 stop checks later).
                await anyio.sleep(4 * aring._file_worker.STOP_CHECK)
                assert os.fstat(f.fileno()).st_size == written
                tg.cancel_scope.cancel()
        assert 1 << 19 <= stats.bytes < len(PAYLOAD)
        assert written == stats.bytes
        assert target.read_bytes() == PAYLOAD[:written]
        assert following == PAYLOAD[written : written + 16]


async def test_a_cancelled_fill_from_a_file_commits_what_it_read(tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(PAYLOAD)
    with anyio.fail_after(30), source.open("rb") as f:
        async with aring.open(1 << 16) as (w, r):
            stats = TransferStats()
            with anyio.CancelScope() as filling:
                async with create_task_group() as tg:
                    tg.start_soon(lambda: aring.fill(w, f, stats=stats))
                    await until_async(
                        lambda: r.readable() == r.capacity, "the ring full: fill waits"
                    )
                    filling.cancel()
            assert stats.bytes == r.readable() == f.tell() == 1 << 16
            assert bytes(r.try_peek(1) or b"") == PAYLOAD[: 1 << 16]


async def test_a_file_write_error_reaches_the_pumping_task(tmp_path: Path) -> None:
    target = tmp_path / "read-only.bin"
    target.write_bytes(b"")
    with anyio.fail_after(30), target.open("rb") as f:  # write(2) on it: EBADF
        async with aring.open(1 << 16) as (w, r):
            async with create_task_group() as tg:
                tg.start_soon(_feed, w, PAYLOAD[:1000])
                with pytest.raises(OSError) as raised:
                    await aring.pump(r, f)
            assert raised.value.errno == errno.EBADF
            assert r.readable() == 1000  # nothing was consumed that was not written


def test_a_full_disk_stops_pump_with_enospc_and_the_file_holds_what_was_counted() -> None:
    # A 256 KiB tmpfs of its own (a mount namespace), on every backend in turn.
    prefix = with_tmpfs("/mnt", 256)
    if prefix is None:
        pytest.skip("cannot mount a small tmpfs here (needs unshare and a mount namespace)")
    outcomes = run_scenario(
        """
        import errno, anyio
        from anyio import create_task_group
        payload = os.urandom(1 << 20)
        async def main():
            stats = aring.TransferStats()
            with open("/mnt/out.bin", "wb") as f:
                async with aring.open(1 << 16) as (w, r):
                    async def feed():
                        async with w:
                            await w.send(payload)
                    try:
                        async with create_task_group() as tg:
                            tg.start_soon(feed)
                            await aring.pump(r, f, stats=stats)
                    except* OSError as group:
                        error = group.exceptions[0]
                    else:
                        error = None
            data = open("/mnt/out.bin", "rb").read()
            os.unlink("/mnt/out.bin")
            return (error is not None and error.errno == errno.ENOSPC,
                    0 < stats.bytes < len(payload), len(data) == stats.bytes,
                    data == payload[: len(data)])
        for name, backend, options in [("asyncio", "asyncio", {}),
                                       ("uvloop", "asyncio", {"use_uvloop": True}),
                                       ("trio", "trio", {})]:
            outcome(name, lambda: anyio.run(main, backend=backend, backend_options=options))
        """,
        prefix=prefix,
    )
    for backend in ("asyncio", "uvloop", "trio"):
        assert outcomes[backend] == "returned (True, True, True, True)", outcomes


@pytest.mark.parametrize("closer", ["task", "thread"])
async def test_closing_the_ring_wakes_a_pump_waiting_on_its_socket(closer: str) -> None:
    left, right = socket.socketpair()
    with left, right, anyio.fail_after(10):
        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        async with aring.open(1 << 16) as (w, r):
            await w.send(PAYLOAD[:60000])  # more than the socket takes: pump waits on it
            stats = TransferStats()

            async def close_once_waiting() -> None:
                await until_async(lambda: stats.waits > 0, "pump waiting on the socket")
                if closer == "task":
                    w.extra(aring.RingAttribute.ring).close()
                else:
                    await anyio.to_thread.run_sync(w.extra(aring.RingAttribute.ring).close)

            async with create_task_group() as tg:
                tg.start_soon(close_once_waiting)
                with pytest.raises(anyio.ClosedResourceError, match="closed during the transfer"):
                    await aring.pump(r, left, stats=stats)
            assert 0 < stats.bytes < 60000


async def test_closing_the_writer_wakes_a_fill_waiting_on_its_socket() -> None:
    left, right = socket.socketpair()
    with left, right, anyio.fail_after(10):
        async with aring.open(1 << 16) as (w, _reader):
            stats = TransferStats()
            async with create_task_group() as tg:

                async def close_once_waiting() -> None:
                    await until_async(lambda: stats.waits > 0, "fill waiting on the socket")
                    w.close()

                tg.start_soon(close_once_waiting)
                with pytest.raises(anyio.ClosedResourceError):
                    await aring.fill(w, right, stats=stats)


async def test_bad_targets_are_refused() -> None:
    async with aring.open(4096) as (w, r):
        with pytest.raises(TypeError, match="dst must be a socket"):
            await aring.pump(r, "not a target")
        with pytest.raises(TypeError, match="src must be a socket"):
            await aring.fill(w, 3.5)


def _strace_works() -> bool:
    """strace exists and may trace here (containers can deny ptrace)."""
    if shutil.which("strace") is None:
        return False
    probe = subprocess.run(
        ["strace", "-f", "-o", os.devnull, sys.executable, "-c", "pass"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _strace_works(), reason="strace is missing or may not ptrace here")
def test_one_write_per_region_under_strace(tmp_path: Path) -> None:
    """The kernel's own count: write(2) calls on the target fd equal the regions pumped."""
    script = tmp_path / "pump_to_pipe.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, anyio, aring, threading

            async def main():
                rfd, wfd = os.pipe()
                def sink():
                    while os.read(rfd, 1 << 20):
                        pass
                t = threading.Thread(target=sink)
                t.start()
                stats = aring.TransferStats()
                async with aring.open(1 << 16) as (w, r):
                    async with anyio.create_task_group() as tg:
                        async def feed():
                            async with w:
                                for _ in range(400):
                                    await w.send(b"z" * 40000)  # wraps the ring many times
                        tg.start_soon(feed)
                        await aring.pump(r, wfd, eof=False, stats=stats)
                os.close(wfd)
                t.join()
                print(wfd, stats.regions, stats.syscalls, stats.waits)

            anyio.run(main)
            """
        )
    )
    log = tmp_path / "strace.log"
    done = subprocess.run(
        ["strace", "-f", "-e", "trace=write", "-e", "abbrev=all", "-o", str(log),
         sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    wfd, regions, syscalls, waits = map(int, done.stdout.split())
    assert regions > 100
    assert syscalls == regions + waits
    # strace -f prefixes lines with the pid: "1234  write(7, ..."
    counted = sum(
        1 for line in log.read_text().splitlines() if f"write({wfd}," in line.split(None, 1)[-1]
    )
    assert counted == syscalls, (regions, syscalls, counted)


async def test_sendfile_moves_a_file_to_a_socket_without_the_ring(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(PAYLOAD)
    left, right = socket.socketpair()
    with left, right, anyio.fail_after(30), path.open("rb") as f:
        got = bytearray()

        async def receive_all() -> None:
            right.setblocking(False)
            while len(got) < len(PAYLOAD) - 1000:
                await anyio.wait_readable(right)
                got.extend(right.recv(1 << 20))

        stats = TransferStats()
        async with create_task_group() as tg:
            tg.start_soon(receive_all)
            sent = await aring.sendfile(f, left, offset=1000, stats=stats)
        assert sent == len(PAYLOAD) - 1000 == stats.bytes
        assert bytes(got) == PAYLOAD[1000:]
        with pytest.raises(TypeError, match="regular file"):
            await aring.sendfile(right.fileno(), left)


async def test_ring_closed_from_another_thread_while_pump_holds_a_region() -> None:
    left, right = socket.socketpair()
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    with left, right, anyio.fail_after(30):
        ring = aring.Ring(1 << 20)
        writer, reader = ring.writer(), ring.reader()
        writer.try_write(b"x" * (1 << 20))
        stats = TransferStats()
        failure: list[BaseException] = []

        async def pump() -> None:
            try:
                await aring.pump(reader, left, stats=stats)
            except BaseException as exc:
                failure.append(exc)

        async with create_task_group() as tg:
            tg.start_soon(pump)
            # the socket is full: pump waits, holding its region
            await until_async(lambda: stats.waits, "the transfer waiting")
            await anyio.to_thread.run_sync(ring.close)
            right.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while right.recv(1 << 16):  # the socket drains: pump wakes and looks again
                    pass
        assert len(failure) == 1
        assert isinstance(failure[0], anyio.ClosedResourceError), repr(failure[0])


async def test_fill_into_a_ring_closed_from_another_thread() -> None:
    left, right = socket.socketpair()
    with left, right, anyio.fail_after(30):
        ring = aring.Ring(1 << 16)
        writer, _reader = ring.writer(), ring.reader()
        stats = TransferStats()
        failure: list[BaseException] = []

        async def fill() -> None:
            try:
                await aring.fill(writer, right, stats=stats)
            except BaseException as exc:
                failure.append(exc)

        async with create_task_group() as tg:
            tg.start_soon(fill)
            # nothing to receive: fill waits, holding free space
            await until_async(lambda: stats.waits, "the transfer waiting")
            await anyio.to_thread.run_sync(ring.close)
            left.send(b"late bytes")
        assert len(failure) == 1
        assert isinstance(failure[0], anyio.ClosedResourceError), repr(failure[0])


@pytest.mark.parametrize("item_size", [8, 24])
async def test_pump_and_fill_on_a_ring_of_items(item_size: int) -> None:
    payload = os.urandom(item_size * 40_000)
    left, right = socket.socketpair()
    with left, right, anyio.fail_after(30):
        async with (
            aring.open(1 << 16, item_size=item_size) as (w_out, r_out),
            aring.open(1 << 16) as (w_in, r_in),
        ):
            received: list[bytes] = []
            async with create_task_group() as tg:
                tg.start_soon(_feed, w_out, payload)
                tg.start_soon(lambda: aring.pump(r_out, left))
                tg.start_soon(lambda: aring.fill(w_in, right))

                async def drain() -> None:
                    received.append(await _drain(r_in))

                tg.start_soon(drain)
            assert received == [payload]


async def test_fill_from_a_source_that_ends_mid_item() -> None:
    left, right = socket.socketpair()
    with left, right, anyio.fail_after(30):
        async with aring.open(1 << 16, item_size=8) as (writer, reader):
            left.sendall(b"12345678" * 3 + b"abc")  # three items and three bytes
            left.shutdown(socket.SHUT_WR)
            with pytest.raises(anyio.IncompleteRead, match="3 of its 8 bytes"):
                await aring.fill(writer, right)
            assert reader.try_read() == b"12345678" * 3  # the whole items arrived


async def test_a_pump_cancelled_before_its_worker_started_returns_and_never_starts(
    tmp_path: Path,
) -> None:
    """All of anyio's worker threads are busy: pump waits for one; cancelled, it returns at once.

    (It waited for a worker that anyio would never start, for ever, when the
    cancellation came before a thread picked the call up.)  Nothing is written
    later either: the ring keeps its bytes and the file stays empty.
    """
    limiter = anyio.to_thread.current_default_thread_limiter()
    holders = [object() for _ in range(int(limiter.total_tokens))]
    target = tmp_path / "out.bin"
    with anyio.fail_after(30), target.open("wb") as f:
        async with aring.open(1 << 16) as (w, r):
            await w.send(b"x" * 1000)
            for holder in holders:
                await limiter.acquire_on_behalf_of(holder)
            try:
                with anyio.CancelScope() as scope:
                    async with create_task_group() as tg:
                        tg.start_soon(lambda: aring.pump(r, f))
                        await wait_all_tasks_blocked()
                        scope.cancel()
                assert scope.cancelled_caught
            finally:
                for holder in holders:
                    limiter.release_on_behalf_of(holder)
            await anyio.sleep(0.05)  # a worker that started late would write now
            assert r.readable() == 1000
        assert target.read_bytes() == b""
