"""Ring semantics through the nonblocking calls: capacity, cursors, EOF, readers."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream

import aring

PAGE = aring.capabilities().page_size


def test_capacity_is_rounded_to_page_and_item_size() -> None:
    with aring.Ring(1) as ring:
        assert ring.capacity == PAGE
    with aring.Ring(PAGE + 1) as ring:
        assert ring.capacity == 2 * PAGE
    with aring.Ring(1, item_size=3) as ring:
        assert ring.capacity == 3 * PAGE  # lcm(page, 3)
    with aring.Ring(PAGE, item_size=8) as ring:
        assert ring.capacity == PAGE
    with aring.Ring(10 * PAGE, item_size=24) as ring:
        assert ring.capacity % 24 == 0 and ring.capacity % PAGE == 0
        assert 10 * PAGE <= ring.capacity < 10 * PAGE + 3 * PAGE


def test_the_full_capacity_is_usable(strategy: str) -> None:
    with aring.Ring(PAGE, strategy=strategy) as ring:
        w, r = ring.writer(), ring.reader()
        assert w.writable() == ring.capacity
        view = w.try_reserve(ring.capacity)
        assert view is not None and len(view) == ring.capacity
        view[:] = b"z" * ring.capacity
        w.commit(ring.capacity)
        assert w.writable() == 0
        assert w.try_reserve(1) is None
        assert w.try_write(b"x") == 0
        assert r.readable() == ring.capacity
        assert bytes(r.try_peek(ring.capacity)) == b"z" * ring.capacity  # type: ignore[arg-type]


def test_wrap_is_contiguous_for_writer_and_reader(strategy: str) -> None:
    with aring.Ring(PAGE, strategy=strategy) as ring:
        w, r = ring.writer(), ring.reader()
        n = ring.capacity
        w.try_write(b"a" * (n - 100))
        r.consume(n - 100)
        # Free space now starts 100 bytes before the seam and crosses it.
        view = w.try_reserve(n)
        assert view is not None and len(view) == n
        payload = bytes(i % 251 for i in range(n))
        view[:] = payload
        w.commit(n)
        peek = r.try_peek(n)
        assert peek is not None and peek.readonly
        assert bytes(peek) == payload
        r.consume(n)
        assert r.readable() == 0


def test_views_are_released_by_commit_and_consume() -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        view = w.try_reserve(4)
        assert view is not None
        view[:4] = b"abcd"
        w.commit(4)
        with pytest.raises(ValueError, match="released"):
            view[0] = 1
        peek = r.try_peek(4)
        assert peek is not None
        r.consume(2)
        with pytest.raises(ValueError, match="released"):
            bytes(peek)
        assert bytes(r.try_peek(2)) == b"cd"  # type: ignore[arg-type]


def test_try_peek_returns_none_then_everything_then_rest_at_eof() -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        assert r.try_peek() is None
        w.try_write(b"hello")
        assert r.try_peek(6) is None
        assert bytes(r.try_peek(5)) == b"hello"  # type: ignore[arg-type]
        w.close()
        assert bytes(r.try_peek(6)) == b"hello"  # type: ignore[arg-type]  # the rest at EOF
        assert not r.at_eof()
        r.consume(5)
        assert r.at_eof()
        with pytest.raises(EndOfStream):
            r.try_peek()
        with pytest.raises(EndOfStream):
            r.try_read()
        with pytest.raises(EndOfStream):
            r.try_read_into(bytearray(4))


def test_try_read_and_read_into_copy_and_consume() -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        assert r.try_read() is None
        assert r.try_read_into(bytearray(3)) is None
        w.try_write(b"0123456789")
        assert r.try_read(4) == b"0123"
        buf = bytearray(4)
        assert r.try_read_into(buf) == 4 and buf == b"4567"
        assert r.try_read() == b"89"
        assert r.readable() == 0


def test_send_larger_than_capacity_is_refused_whole_unless_partial() -> None:
    with aring.Ring(PAGE) as ring:
        w, _r = ring.writer(), ring.reader()
        with pytest.raises(ValueError, match="larger than the capacity"):
            w.try_write(b"x" * (PAGE + 1))
        assert w.try_write(b"x" * (PAGE + 1), partial=True) == PAGE


def test_every_reader_sees_every_byte_and_the_slowest_bounds_the_writer() -> None:
    with aring.Ring(PAGE, readers=3) as ring:
        w = ring.writer()
        readers = [ring.reader() for _ in range(3)]
        w.try_write(b"abc" * 100)
        for r in readers:
            assert bytes(r.try_peek(300)) == b"abc" * 100  # type: ignore[arg-type]
        readers[0].consume(300)
        readers[1].consume(100)
        assert w.writable() == ring.capacity - 300  # reader 2 has consumed nothing
        readers[2].consume(300)
        assert w.writable() == ring.capacity - 200  # now reader 1 is the slowest
        with pytest.raises(RuntimeError, match="all 3 reader slots"):
            ring.reader()
        readers[0].close()
        again = ring.reader()  # a closed reader frees its slot
        assert again.slot == readers[0].slot
        # A late reader joins at the oldest byte still held for the others.
        assert again.readable() == 200


def test_first_reader_sees_what_was_written_before_it_attached() -> None:
    with aring.Ring(PAGE, readers=2) as ring:
        w = ring.writer()
        w.try_write(b"early")
        assert w.writable() == ring.capacity - 5  # held for the reader to come
        r = ring.reader()
        assert r.try_read() == b"early"


def test_late_reader_with_no_others_joins_at_the_write_cursor() -> None:
    with aring.Ring(PAGE, readers=2) as ring:
        w = ring.writer()
        first = ring.reader()
        w.try_write(b"old")
        first.consume(3)
        first.close()
        late = ring.reader()
        assert late.readable() == 0
        w.try_write(b"new")
        assert late.try_read() == b"new"


def test_writer_is_broken_once_every_reader_closed() -> None:
    with aring.Ring(PAGE, readers=2) as ring:
        w = ring.writer()
        r1, r2 = ring.reader(), ring.reader()
        r1.close()
        assert w.try_write(b"still fine") == 10
        r2.close()
        for call in (lambda: w.try_write(b"x"), lambda: w.try_reserve(1), w.writable):
            with pytest.raises(BrokenResourceError, match="every reader"):
                call()


def test_closed_ends_and_ring_raise_closed_resource_error() -> None:
    ring = aring.Ring(PAGE)
    w, r = ring.writer(), ring.reader()
    w.close()
    w.close()
    with pytest.raises(ClosedResourceError, match="writer is closed"):
        w.try_write(b"x")
    r.close()
    with pytest.raises(ClosedResourceError, match="reader is closed"):
        r.try_peek()
    assert ring.writer() is w
    r2 = ring.reader()
    ring.close()
    ring.close()
    assert ring.closed and r2.closed
    with pytest.raises(ClosedResourceError):
        ring.reader()
    with pytest.raises(ClosedResourceError):
        ring.writer()
    with pytest.raises(ClosedResourceError):
        r2.try_read()


def test_ring_close_refuses_while_a_slice_of_a_view_is_alive() -> None:
    ring = aring.Ring(PAGE)
    w = ring.writer()
    view = w.try_reserve(10)
    assert view is not None
    piece = view[:5]  # a new view on the same export: commit cannot release it
    with pytest.raises(BufferError, match="alive"):
        ring.close()
    assert not ring.closed
    piece[0] = 1  # still mapped
    piece.release()
    ring.close()
    assert ring.closed


def test_ring_close_releases_views_it_handed_out() -> None:
    ring = aring.Ring(PAGE)
    w, r = ring.writer(), ring.reader()
    w.try_write(b"abc")
    peek = r.try_peek()
    reserved = w.try_reserve()
    ring.close()
    for view in (peek, reserved):
        with pytest.raises(ValueError, match="released"):
            bytes(view)  # type: ignore[arg-type]


def test_item_size_keeps_items_whole() -> None:
    with aring.Ring(PAGE, item_size=8) as ring:
        w, r = ring.writer(), ring.reader()
        w.try_write(b"12345678" * 3)
        assert r.try_read(20) == b"12345678" * 2  # rounded down to whole items
        with pytest.raises(ValueError, match="multiple of the item size"):
            r.consume(3)
        with pytest.raises(ValueError, match="multiple of the item size"):
            w.try_write(b"123")
        with pytest.raises(ValueError, match="smaller than the item size"):
            r.try_read(4)


def test_notifier_writes_are_counted_only_when_someone_sleeps(notifier: str) -> None:
    with aring.Ring(PAGE, notifier=notifier) as ring:
        assert ring.notifier == notifier
        w, r = ring.writer(), ring.reader()
        for _ in range(100):
            w.try_write(b"x")
        r.consume(100)
        assert ring.notifier_writes == 0  # nobody slept: no syscalls
        assert r.arm(1) is True  # the reader goes to sleep
        w.try_write(b"y")
        w.try_write(b"z")
        assert ring.notifier_writes == 1  # a burst costs one wakeup


Call = Callable[[aring.Writer, aring.Reader], Any]

BAD_ARGUMENTS: list[tuple[str, Call, type[Exception], str]] = [
    ("reserve 0", lambda w, r: w.try_reserve(0), ValueError, "n must be >= 1"),
    ("reserve -1", lambda w, r: w.try_reserve(-1), ValueError, "n must be >= 1"),
    ("reserve > capacity", lambda w, r: w.try_reserve(PAGE + 1), ValueError, "<= the capacity"),
    ("reserve float", lambda w, r: w.try_reserve(1.0), TypeError, "must be an int, not float"),
    ("reserve str", lambda w, r: w.try_reserve("1"), TypeError, "must be an int, not str"),
    ("reserve huge", lambda w, r: w.try_reserve(1 << 70), ValueError, "too large"),
    ("commit unreserved", lambda w, r: w.commit(1), ValueError, "more than the 0 bytes reserved"),
    ("commit -1", lambda w, r: w.commit(-1), ValueError, "n must be >= 0"),
    ("commit None", lambda w, r: w.commit(None), TypeError, "must be an int, not NoneType"),
    ("peek 0", lambda w, r: r.try_peek(0), ValueError, "n must be >= 1"),
    ("peek > capacity", lambda w, r: r.try_peek(PAGE + 1), ValueError, "<= the capacity"),
    ("consume unreadable", lambda w, r: r.consume(1), ValueError, "more than the 0 bytes"),
    ("consume float", lambda w, r: r.consume(0.5), TypeError, "must be an int"),
    ("read 0", lambda w, r: r.try_read(0), ValueError, "max_bytes must be >= 1"),
    ("read str", lambda w, r: r.try_read("8"), TypeError, "max_bytes must be an int"),
    ("write str", lambda w, r: w.try_write("text"), TypeError, "bytes-like object, not str"),
    ("write int", lambda w, r: w.try_write(5), TypeError, "bytes-like object, not int"),
    ("read_into bytes", lambda w, r: r.try_read_into(b"ro"), TypeError, "writable bytes-like"),
    ("read_into empty", lambda w, r: r.try_read_into(bytearray()), ValueError, "must not be empty"),
    ("wait timeout -1", lambda w, r: r.wait(1, -1), ValueError, "timeout must be None or >= 0"),
    ("wait timeout nan", lambda w, r: w.wait(1, float("nan")), ValueError, "timeout must be"),
    ("wait timeout str", lambda w, r: r.wait(1, "1"), TypeError, "timeout must be None or a num"),
    ("sync timeout str", lambda w, r: r.sync.receive(timeout="1"), TypeError, "a number of sec"),
    ("sync timeout list", lambda w, r: w.sync.reserve(1, timeout=[]), TypeError, "not list"),
    ("sync send str", lambda w, r: w.sync.send("x"), TypeError, "bytes-like object"),
]


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [pytest.param(c, e, m, id=name) for name, c, e, m in BAD_ARGUMENTS],
)
def test_bad_arguments(call: Call, exc: type[Exception], match: str) -> None:
    with aring.Ring(PAGE) as ring:
        w, r = ring.writer(), ring.reader()
        with pytest.raises(exc, match=match):
            call(w, r)
        # Nothing moved and the ends still work.
        assert w.try_write(b"ok") == 2
        assert r.try_read() == b"ok"


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"capacity": 0}, ValueError, "capacity must be >= 1, got 0"),
        ({"capacity": -1}, ValueError, "capacity must be >= 1, got -1"),
        ({"capacity": 1 << 41}, ValueError, "more than the largest ring"),
        # an item size sharing no factor with the page size: rounding multiplies them
        ({"capacity": 1, "item_size": 1073741789}, ValueError, "rounds up to 4398046367744"),
        ({"capacity": 1.5}, TypeError, "capacity must be an int"),
        ({"capacity": PAGE, "readers": 0}, ValueError, "readers must be between 1 and 64"),
        ({"capacity": PAGE, "readers": 65}, ValueError, "readers must be between 1 and 64"),
        ({"capacity": PAGE, "item_size": 0}, ValueError, "item_size must be >= 1"),
        ({"capacity": PAGE, "item_size": 1 << 31}, ValueError, "item_size must be <= "),
        ({"capacity": PAGE, "notifier": "signal"}, ValueError, "unknown notifier"),
        ({"capacity": PAGE, "strategy": "huge"}, ValueError, "unknown strategy"),
    ],
)
def test_bad_ring_arguments(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        aring.Ring(**kwargs)


def test_a_ring_without_notifier_polls_and_refuses_to_wait() -> None:
    fd_dir = "/proc/self/fd"
    before = len(os.listdir(fd_dir)) if os.path.isdir(fd_dir) else None
    with aring.Ring(PAGE, readers=2, notifier="none") as ring:
        if before is not None:
            assert len(os.listdir(fd_dir)) - before <= 1  # the memory's fd only
        assert ring.notifier == "none"
        w, r = ring.writer(), ring.reader()
        assert w.try_write(b"polled")
        assert r.sync.receive(timeout=1) == b"polled"  # data there: no wait needed
        with pytest.raises(RuntimeError, match="notifier='none'"):
            r.sync.receive(timeout=0.1)
        assert w.try_write(b"f" * PAGE)  # full now
        with pytest.raises(RuntimeError, match="notifier='none'"):
            w.sync.reserve(1, timeout=0.1)
        with pytest.raises(RuntimeError, match="notifier='none'"):
            r.notifier_fd  # noqa: B018
        assert r.try_read(PAGE) == b"f" * PAGE
        w.close()  # closing still works without fds to signal
        with pytest.raises(EndOfStream):
            r.try_read()


def test_waits_on_a_ring_of_items_mean_at_least_one_item() -> None:
    with aring.Ring(PAGE, item_size=24) as ring:  # rounded to 3 pages: 512 items
        w, r = ring.writer(), ring.reader()
        assert r.try_peek() is None
        assert r.wait(timeout=0) is False  # n=1: one item, not a ValueError
        view = w.try_reserve()  # n=1: at least one item
        assert view is not None and len(view) == ring.capacity
        view[:24] = bytes(range(24))
        w.commit(24)
        assert r.wait(timeout=0) is True
        assert r.sync.peek(timeout=1).tobytes() == bytes(range(24))
        assert r.try_peek(5) is not None  # 5 bytes: rounded up to one item, which is there
        assert r.try_peek(25) is None  # two items are not
        assert r.sync.receive(timeout=1) == bytes(range(24))
        with pytest.raises(TimeoutError):
            r.sync.receive(timeout=0.01)
        assert w.sync.reserve(timeout=1) is not None
        w.commit(0)
        assert w.try_write(b"\1" * ring.capacity)
        assert w.wait(timeout=0) is False  # full: no room for one item
        with pytest.raises(ValueError, match="multiple of the item size"):
            r.consume(5)
