"""Blocking (.sync) ends in threads: data integrity, wakeups, timeouts, misuse."""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable

import pytest
from anyio import BrokenResourceError, BusyResourceError, ClosedResourceError, EndOfStream
from observe import reader_asleep, until, writer_asleep

import aring

MIB = 1 << 20
PAGE = aring.capabilities().page_size


def _pattern(seed: int) -> memoryview:
    """2 MiB + a bit of random bytes: any slice up to 1 MiB is one contiguous piece."""
    block = random.Random(seed).randbytes(MIB + 4099)
    return memoryview(block + block)


class Thread(threading.Thread):
    """A thread whose exception is re-raised by join()."""

    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:
            self.error = exc

    def join_or_raise(self, timeout: float) -> None:
        self.join(timeout)
        assert not self.is_alive(), "thread did not finish in time"
        if self.error is not None:
            raise self.error


def _produce(w: aring.Writer, total: int, seed: int) -> tuple[int, int]:
    """Random sizes, alternating copy-in and zero-copy reserve/commit; (crc, items)."""
    rng = random.Random(seed)
    pattern = _pattern(seed)
    period = MIB + 4099
    crc = 0
    sent = 0
    items = 0
    while sent < total:
        choice = rng.choice((1, 7, 512, 4096, 65536, 300_000, rng.randrange(1, MIB)))
        size = min(choice, total - sent)
        start = sent % period
        piece = pattern[start : start + size]
        if rng.random() < 0.5:
            w.sync.send(piece)
        else:
            done = 0
            while done < size:
                view = w.sync.reserve(1)
                n = min(len(view), size - done)
                view[:n] = piece[done : done + n]
                w.commit(n)
                done += n
                items += 1
        items += 1
        crc = zlib.crc32(piece, crc)
        sent += size
    w.close()
    return crc, items


def _consume(r: aring.Reader, seed: int) -> tuple[int, int, int]:
    """Reads to EOF with random calls; (crc, bytes, calls)."""
    rng = random.Random(seed + 1)
    crc = 0
    got = 0
    calls = 0
    buf = bytearray(MIB)
    while True:
        calls += 1
        kind = rng.random()
        try:
            if kind < 0.4:
                data = r.sync.receive(rng.choice((1, 100, 65536, MIB)))
                crc = zlib.crc32(data, crc)
                got += len(data)
            elif kind < 0.7:
                n = r.sync.receive_into(memoryview(buf)[: rng.randrange(1, MIB)])
                crc = zlib.crc32(memoryview(buf)[:n], crc)
                got += n
            else:
                view = r.sync.peek(rng.choice((1, 4096, 200_000)))
                take = min(len(view), rng.randrange(1, 2 * MIB))
                crc = zlib.crc32(view[:take], crc)
                r.consume(take)
                got += take
        except EndOfStream:
            return crc, got, calls


@pytest.mark.parametrize("mib", [256])
def test_thread_to_thread_moves_every_byte_in_order(notifier: str, mib: int) -> None:
    total = mib * MIB
    with aring.Ring(4 * MIB, notifier=notifier) as ring:
        w, r = ring.writer(), ring.reader()
        result: dict[str, object] = {}
        producer = Thread(lambda: result.__setitem__("sent", _produce(w, total, 7)))
        consumer = Thread(lambda: result.__setitem__("got", _consume(r, 7)))
        consumer.start()
        producer.start()
        producer.join_or_raise(120)
        consumer.join_or_raise(120)
        crc, got, _calls = result["got"]  # type: ignore[misc]
        sent_crc, _items = result["sent"]  # type: ignore[misc]
        assert got == total
        assert crc == sent_crc
        # How many wakeups it took depends on the scheduler: a benchmark figure;
        # test_a_waiting_reader_is_woken_once_not_per_item pins the mechanism.


def test_a_waiting_reader_is_woken_once_not_per_item(notifier: str) -> None:
    with aring.Ring(MIB, notifier=notifier) as ring:
        w, r = ring.writer(), ring.reader()
        items = 2000
        got: list[int] = []
        consumer = Thread(lambda: got.append(len(r.sync.peek(items))))
        consumer.start()
        until(reader_asleep(ring), "the consumer sleeps wanting all items")
        for _ in range(items):
            w.try_write(b"x")
        consumer.join_or_raise(10)
        assert got == [items]
        assert ring.notifier_writes == 1


def test_writer_waits_for_space_then_sends_whole() -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        w.try_write(b"a" * (PAGE - 10))
        sender = Thread(lambda: w.sync.send(b"b" * 100))
        sender.start()
        until(writer_asleep(ring), "the send waits for 100 free bytes")
        assert r.readable() == PAGE - 10  # nothing of it went in yet
        r.consume(50)  # 60 free: still not enough, and no wakeup is sent for it
        assert writer_asleep(ring)() and ring.notifier_writes == 0
        assert r.readable() == PAGE - 60
        r.consume(50)
        sender.join_or_raise(10)
        assert ring.notifier_writes == 1
        assert r.readable() == (PAGE - 10) - 100 + 100


def test_large_send_goes_in_parts() -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        data = random.Random(3).randbytes(10 * PAGE + 17)
        sender = Thread(lambda: w.sync.send(data))
        sender.start()
        out = bytearray()
        while len(out) < len(data):
            out += r.sync.receive(timeout=10)
        sender.join_or_raise(10)
        assert out == data


def test_timeouts_raise_and_lose_nothing() -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"receive did not complete within 0\.05"):
            r.sync.receive(timeout=0.05)
        assert time.monotonic() - start >= 0.04
        with pytest.raises(TimeoutError):
            r.sync.peek(1, timeout=0)
        w.try_write(b"x" * PAGE)
        with pytest.raises(TimeoutError):
            w.sync.send(b"y", timeout=0.01)
        with pytest.raises(TimeoutError):
            w.sync.reserve(1, timeout=0.01)
        assert r.try_read(2 * PAGE) == b"x" * PAGE  # the timed-out send left nothing


def test_reader_closing_breaks_a_waiting_writer() -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        w.try_write(b"x" * PAGE)
        sender = Thread(lambda: w.sync.send(b"more"))
        sender.start()
        until(writer_asleep(ring), "the send waits for space")
        r.close()
        with pytest.raises(BrokenResourceError):
            sender.join_or_raise(10)


def test_writer_close_gives_eof_to_a_waiting_reader() -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        receiver = Thread(lambda: r.sync.receive())
        receiver.start()
        until(reader_asleep(ring), "the receive waits for data")
        w.close()
        with pytest.raises(EndOfStream):
            receiver.join_or_raise(10)


@pytest.mark.parametrize("who", ["end", "ring"])
def test_closing_from_another_thread_wakes_the_waiter(who: str) -> None:
    ring = aring.Ring(PAGE)
    w, r = ring.writer(), ring.reader()
    receiver = Thread(lambda: r.sync.receive())
    receiver.start()
    until(reader_asleep(ring), "the receive waits for data")
    (r.close if who == "end" else ring.close)()
    with pytest.raises(ClosedResourceError):
        receiver.join_or_raise(10)
    ring.close()
    assert ring.closed and w.closed


def test_a_second_thread_on_a_busy_end_gets_busy_resource_error() -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        receiver = Thread(lambda: r.sync.receive(timeout=10))
        receiver.start()
        until(reader_asleep(ring), "the receive waits for data")
        for call in (r.try_read, r.try_peek, lambda: r.sync.receive(timeout=1)):
            with pytest.raises(BusyResourceError, match="another thread is using this reader"):
                call()
        w.try_write(b"go")
        receiver.join_or_raise(10)
        assert r.try_read() is None  # free again for this thread
