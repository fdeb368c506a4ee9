"""RecordRing: claims that commit or abort, records in order, many producers, every reader.

The async tests run on asyncio, asyncio+uvloop and trio; the thread tests
are bounded by timeouts; a Hypothesis model drives random claims, commits,
aborts and receives across the wrap on every strategy.
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import random
import signal
import socket
import struct
import sys
import threading
import time
import zlib

import anyio
import pytest
from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
    WouldBlock,
    create_task_group,
    wait_all_tasks_blocked,
)
from conftest import STRATEGIES
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from scenario import run_scenario

import aring
from aring._native import PAGE_SIZE, RECORD_HEADER

# -- one thread, nonblocking -------------------------------------------------------------


def test_records_arrive_whole_in_order_and_aborted_ones_are_skipped() -> None:
    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        writer.send_nowait(b"first")
        claim = writer.try_claim(6)
        assert claim is not None and len(claim.view) == 6
        claim.view[:] = b"second"
        claim.commit()
        dropped = writer.try_claim(3)
        assert dropped is not None
        dropped.abort()
        writer.send_nowait(b"")  # an empty record is a record
        with writer.try_claim(4) as view:  # type: ignore[union-attr]
            view[:] = b"last"
        assert [reader.receive_nowait() for _ in range(4)] == [b"first", b"second", b"", b"last"]
        with pytest.raises(WouldBlock):
            reader.receive_nowait()


def test_a_claim_left_by_an_exception_or_dropped_is_aborted() -> None:
    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        with pytest.raises(RuntimeError), writer.try_claim(3) as view:  # type: ignore[union-attr]
            view[:] = b"bad"
            raise RuntimeError
        claim = writer.try_claim(4)
        assert claim is not None
        claim.view[:] = b"lost"
        del claim, view
        gc.collect()
        assert writer.open_claims == 0
        writer.send_nowait(b"kept")
        assert reader.receive_nowait() == b"kept"


def test_a_finished_claim_cannot_be_written_or_finished_again() -> None:
    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        claim = writer.try_claim(2)
        assert claim is not None
        view = claim.view
        claim.commit()
        with pytest.raises(ValueError, match="released"):
            view[0] = 1  # readers may see it now: it must not change
        with pytest.raises(ValueError, match="already committed or aborted"):
            claim.commit()
        with pytest.raises(ValueError, match="already committed or aborted"):
            claim.abort()
        assert len(reader.receive_nowait()) == 2  # old bytes: a claim is not cleared


def test_each_claim_keeps_its_own_view_even_when_contents_match() -> None:
    """A view exported further cannot be released at commit; the others stay tracked.

    (Views were untracked by equality, which compares contents: committing one
    claim could forget another's identical view, and the ring then refused to
    close while that view lived.)
    """
    ring = aring.RecordRing(4096, multi_producer=True)
    writer = ring.writer()
    first, second = writer.try_claim(4), writer.try_claim(4)
    assert first is not None and second is not None
    first.view[:] = second.view[:] = b"same"
    held = pickle.PickleBuffer(second.view)  # an export: second's view cannot be released
    second.commit()
    with pytest.raises(BufferError):
        ring.close()  # held keeps the memory mapped: refused, nothing unmapped
    held.release()
    ring.close()  # first's view is still known to the ring and released here
    with pytest.raises(ValueError, match="released"):
        first.view[0] = 1


def test_record_sizes_are_checked_up_front() -> None:
    with aring.RecordRing(4096) as ring:
        writer = ring.writer()
        assert ring.max_record == 4096 - RECORD_HEADER
        with pytest.raises(ValueError, match="the largest this ring holds is 4080 bytes"):
            writer.try_claim(4081)
        with pytest.raises(ValueError, match="largest this ring holds"):
            writer.send_nowait(b"x" * 5000)
        with pytest.raises(ValueError, match=">= 0"):
            writer.try_claim(-1)
        with pytest.raises(TypeError):
            writer.try_claim("3")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="bytes-like"):
            writer.send_nowait("text")  # type: ignore[arg-type]
        assert writer.try_claim(4080) is not None  # the largest fits, once


def test_a_full_ring_says_so_and_frees_room_as_records_are_read() -> None:
    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        sent = 0
        while True:
            try:
                writer.send_nowait(b"r" * 100)  # 16 + 104 bytes each
            except WouldBlock:
                break
            sent += 1
        assert sent == 4096 // 120
        assert reader.receive_nowait() == b"r" * 100
        writer.send_nowait(b"s" * 100)
        got = [reader.receive_nowait() for _ in range(sent)]
        assert got[-1] == b"s" * 100


def test_one_producer_has_one_claim_open_at_a_time_several_producers_many() -> None:
    with aring.RecordRing(4096) as ring:
        writer = ring.writer()
        first = writer.try_claim(1)
        with pytest.raises(BusyResourceError, match="multi_producer=True"):
            writer.try_claim(1)
        assert first is not None
        first.commit()
        assert writer.try_claim(1) is not None
    with aring.RecordRing(4096, multi_producer=True) as ring:
        writer, reader = ring.writer(), ring.reader()
        claims = [writer.try_claim(1) for _ in range(3)]
        for index, claim in reversed(list(enumerate(claims))):  # finished out of order
            assert claim is not None
            claim.view[0] = index
            claim.commit()
            if index:
                with pytest.raises(WouldBlock):  # the first claim holds the others back
                    reader.receive_nowait()
        assert [reader.receive_nowait() for _ in range(3)] == [b"\0", b"\1", b"\2"]


def test_closing_the_writer_drops_open_claims_and_ends_the_stream_after_the_rest() -> None:
    with aring.RecordRing(4096, multi_producer=True) as ring:
        writer, reader = ring.writer(), ring.reader()
        writer.send_nowait(b"before")
        open_claim = writer.try_claim(5)
        assert open_claim is not None
        writer.close()
        with pytest.raises(ClosedResourceError, match="record was dropped"):
            open_claim.commit()
        with pytest.raises(ClosedResourceError):
            writer.try_claim(1)
        assert reader.receive_nowait() == b"before"
        with pytest.raises(EndOfStream):
            reader.receive_nowait()


def test_a_batch_goes_in_with_one_claim_as_far_as_it_fits() -> None:
    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        records = [bytes([n]) * n for n in range(80)]  # 4480 bytes with headers and padding
        sent = writer.try_send_batch(records)
        assert 0 < sent < len(records)
        next_size = RECORD_HEADER + (len(records[sent]) + 7) // 8 * 8
        assert writer.writable() < next_size  # it stopped at the first one that did not fit
        assert [bytes(v) for v in reader.try_receive_batch()] == records[:sent]
        assert writer.try_send_batch(records[sent:]) == 0  # lent views hold their room
        assert reader.try_receive_batch() == []  # the next call gives it back
        assert writer.try_send_batch(records[sent:]) == len(records) - sent
        assert [bytes(v) for v in reader.try_receive_batch()] == records[sent:]
        assert writer.try_send_batch([]) == 0
        with pytest.raises(ValueError, match=r"record 1 \(5000 bytes\) does not fit"):
            writer.try_send_batch([b"ok", b"x" * 5000])
        with pytest.raises(TypeError, match="bytes-like"):
            writer.try_send_batch([b"ok", "text"])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="not a single one"):
            writer.try_send_batch(b"abc")
        with pytest.raises(WouldBlock):
            reader.receive_nowait()  # nothing of the refused batches went in


def test_a_thread_sending_a_batch_larger_than_the_ring_times_out_saying_how_far() -> None:
    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        with pytest.raises(TimeoutError, match=r"after \d+ of 100 records"):
            writer.sync.send_batch([b"r" * 100] * 100, timeout=0.05)
        assert reader.receive_nowait() == b"r" * 100


def test_batch_views_are_lent_until_the_next_call() -> None:
    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        for data in (b"a", b"bb", b"ccc"):
            writer.send_nowait(data)
        batch = reader.try_receive_batch()
        assert [bytes(v) for v in batch] == [b"a", b"bb", b"ccc"]
        assert batch[0].readonly
        assert reader.try_receive_batch() == []
        with pytest.raises(ValueError, match="released"):
            bytes(batch[1])
        writer.send_nowait(b"d")
        writer.send_nowait(b"e")
        assert [bytes(v) for v in reader.try_receive_batch(max_records=1)] == [b"d"]
        assert reader.receive_nowait() == b"e"
        with pytest.raises(ValueError, match="max_records must be >= 1"):
            reader.try_receive_batch(0)


def test_every_reader_sees_every_record() -> None:
    with aring.RecordRing(4096, readers=3) as ring:
        writer = ring.writer()
        readers = [ring.reader() for _ in range(3)]
        records = [os.urandom(n) for n in (0, 1, 7, 8, 9, 300)]
        for record in records:
            writer.send_nowait(record)
        for reader in readers:
            assert [reader.receive_nowait() for _ in records] == records


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_records_across_the_wrap_are_whole_on_every_strategy(strategy: str) -> None:
    rng = random.Random(7)
    with aring.RecordRing(PAGE_SIZE, strategy=strategy) as ring:
        writer, reader = ring.writer(), ring.reader()
        for _ in range(2000):
            record = rng.randbytes(rng.randrange(0, 300))
            writer.send_nowait(record)
            if rng.random() < 0.3:
                writer.try_claim(rng.randrange(0, 50)).abort()  # type: ignore[union-attr]
            assert reader.receive_nowait() == record
            batch = [rng.randbytes(rng.randrange(0, 100)) for _ in range(rng.randrange(1, 6))]
            assert writer.try_send_batch(batch) == len(batch)
            assert [bytes(v) for v in reader.try_receive_batch()] == batch


def test_a_corrupt_record_header_is_an_error_not_a_crash() -> None:
    """The header is shared memory: a length past what was published is refused, not used."""
    with aring.RecordRing(4096, strategy="shm") as ring:
        writer, reader = ring.writer(), ring.reader()
        writer.send_nowait(b"x" * 10)
        with mmap.mmap(ring.buffer.fileno(), ring._layout()["data"] + ring.capacity) as shared:
            length_field = ring._layout()["data"] + 8  # the first record's length
            shared[length_field : length_field + 4] = struct.pack("<I", 1 << 30)
        with pytest.raises(BrokenResourceError, match="length 1073741824"):
            reader.receive_nowait()
        with pytest.raises(BrokenResourceError, match="length 1073741824"):
            reader.try_receive_batch()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_four_forked_processes_produce_each_in_its_own_order() -> None:
    producers, count = 4, 3000
    with aring.RecordRing(1 << 16, multi_producer=True) as ring:
        writer, reader = ring.writer(), ring.reader()
        pids = []
        for producer in range(producers):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - a child
                code = 1
                try:
                    writer.reattach()
                    rng = random.Random(producer)
                    for sequence in range(count):
                        writer.sync.send(_record(producer, sequence, rng), timeout=30)
                    writer.close()
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        # The parent keeps its writer open until the children are done: the
        # stream ends when the last process holding the writer closes it.
        following = [0] * producers
        for _ in range(producers * count):
            record = reader.sync.receive(timeout=30)
            head, crc = record[:-4], struct.unpack("<I", record[-4:])[0]
            assert zlib.crc32(head) == crc
            producer, sequence = struct.unpack("<HI", head[:6])
            assert sequence == following[producer]
            following[producer] += 1
        for pid in pids:
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert following == [count] * producers
        with pytest.raises(WouldBlock):
            reader.receive_nowait()  # the parent still holds the writer: no end yet
        writer.close()
        with pytest.raises(EndOfStream):
            reader.sync.receive(timeout=10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_producer_killed_holding_a_claim_is_noticed_and_reported() -> None:
    """Its claim is dropped once a reader finds the process gone: long before claim_timeout."""
    with aring.RecordRing(4096, multi_producer=True, claim_timeout=300) as ring:
        writer, reader = ring.writer(), ring.reader()
        ready, told = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                writer.reattach()
                claim = writer.try_claim(10)
                assert claim is not None
                os.write(told, b"c")
                time.sleep(60)
            finally:
                os._exit(1)
        os.read(ready, 1)
        os.close(ready)
        os.close(told)
        writer.send_nowait(b"after")  # behind the child's open claim
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert reader.sync.receive(timeout=10) == b"after"  # the dead claim was dropped
        writer.close()  # the dead child still holds a producer slot until a reader looks
        with pytest.raises(BrokenResourceError, match="died"):
            reader.sync.receive(timeout=10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_that_drops_the_parents_claims_does_not_abort_them() -> None:
    """A child exiting normally collects its copies of the parent's Claim objects."""
    with aring.RecordRing(4096, multi_producer=True) as ring:
        writer, reader = ring.writer(), ring.reader()
        claim, other = writer.try_claim(6), writer.try_claim(5)
        assert claim is not None and other is not None
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                del claim  # its __del__ must not abort the parent's claim
                gc.collect()
                try:
                    other.commit()
                except aring.ForkedError as exc:
                    code = 0 if "only the parent" in str(exc) else 2
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        claim.view[:] = b"parent"
        claim.commit()  # still the parent's, still open
        other.abort()
        assert reader.receive_nowait() == b"parent"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_reattaching_after_every_other_process_closed_is_told() -> None:
    with aring.RecordRing(4096, multi_producer=True) as ring:
        writer, reader = ring.writer(), ring.reader()
        writer.close()  # before the child takes it over: the stream ended
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                writer.reattach()
            except ClosedResourceError:
                code = 0
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        with pytest.raises(EndOfStream):
            reader.receive_nowait()


def test_a_byte_writer_is_refused_on_a_record_ring() -> None:
    with aring.RecordRing(4096) as ring, pytest.raises(TypeError, match="RecordWriter"):
        aring.Writer(ring)  # type: ignore[arg-type]


# -- threads ---------------------------------------------------------------------------


def _record(producer: int, sequence: int, rng: random.Random) -> bytes:
    body = rng.randbytes(rng.randrange(0, 200))
    head = struct.pack("<HI", producer, sequence) + body
    return head + struct.pack("<I", zlib.crc32(head))


def test_eight_producer_threads_each_keep_their_order_and_lose_nothing() -> None:
    producers, count = 8, 4000
    with aring.RecordRing(1 << 16, multi_producer=True) as ring:
        writer, reader = ring.writer(), ring.reader()
        failures: list[BaseException] = []

        def produce(producer: int) -> None:
            rng = random.Random(producer)
            try:
                for sequence in range(count):
                    writer.sync.send(_record(producer, sequence, rng), timeout=30)
            except BaseException as exc:  # reported by the test
                failures.append(exc)

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
        for thread in threads:
            thread.start()
        following = [0] * producers
        for _ in range(producers * count):
            record = reader.sync.receive(timeout=30)
            head, crc = record[:-4], struct.unpack("<I", record[-4:])[0]
            assert zlib.crc32(head) == crc
            producer, sequence = struct.unpack("<HI", head[:6])
            assert sequence == following[producer]
            following[producer] += 1
        for thread in threads:
            thread.join(30)
        assert not failures
        assert following == [count] * producers
        with pytest.raises(WouldBlock):
            reader.receive_nowait()


def test_a_thread_waiting_for_room_times_out_and_claims_nothing() -> None:
    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        writer.send_nowait(b"x" * 4000)
        with pytest.raises(TimeoutError, match="claim"):
            writer.sync.claim(100, timeout=0.05)
        assert writer.open_claims == 0
        assert reader.receive_nowait() == b"x" * 4000


def test_closing_the_ring_wakes_a_blocked_producer_and_takes_back_open_claims() -> None:
    """ring.close() from another thread: no hang, no crash, each party told."""
    ring = aring.RecordRing(4096, multi_producer=True)
    writer, reader = ring.writer(), ring.reader()
    writer.send_nowait(b"x" * 4000)  # full
    claim = writer.try_claim(0)  # an open claim elsewhere (its view is empty: still lent)
    assert claim is not None
    outcome: list[BaseException] = []

    def produce() -> None:
        try:
            writer.sync.send(b"y" * 100, timeout=30)
        except BaseException as exc:  # reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 10
    while not ring._waiters()["writer"] and time.monotonic() < deadline:
        time.sleep(0.001)  # until the producer is asleep for room
    ring.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ClosedResourceError), outcome
    with pytest.raises(ClosedResourceError):
        claim.commit()
    with pytest.raises(ClosedResourceError):
        reader.receive_nowait()


def test_a_reader_thread_blocked_on_an_empty_ring_sees_the_writer_close() -> None:
    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        threading.Timer(0.05, writer.close).start()
        with pytest.raises(EndOfStream):
            reader.sync.receive(timeout=10)


# -- async, on every loop ------------------------------------------------------------

pytestmark_anyio = pytest.mark.anyio


@pytestmark_anyio
async def test_async_round_trip_across_the_wrap_with_a_slow_reader() -> None:
    rng = random.Random(3)
    records = [rng.randbytes(rng.randrange(0, 900)) for _ in range(500)]
    with anyio.fail_after(30):
        async with aring.open_records(PAGE_SIZE) as (writer, reader):

            async def produce() -> None:
                for record in records:
                    await writer.send(record)
                await writer.aclose()

            got = []
            async with create_task_group() as tg:
                tg.start_soon(produce)
                async for record in reader:
                    got.append(record)
            assert got == records


@pytestmark_anyio
async def test_send_batch_waits_for_room_and_keeps_the_order() -> None:
    records = [struct.pack("<I", n) * (n % 30) for n in range(3000)]
    with anyio.fail_after(30):
        async with aring.open_records(PAGE_SIZE) as (writer, reader):

            async def produce() -> None:
                for start in range(0, len(records), 500):  # each far more than the ring holds
                    await writer.send_batch(records[start : start + 500])
                await writer.aclose()

            got: list[bytes] = []
            async with create_task_group() as tg:
                tg.start_soon(produce)
                async for record in reader:
                    got.append(record)
            assert got == records


@pytestmark_anyio
async def test_many_tasks_produce_and_one_batches() -> None:
    with anyio.fail_after(30):
        async with aring.open_records(PAGE_SIZE, multi_producer=True) as (writer, reader):

            async def produce(producer: int) -> None:
                for sequence in range(300):
                    await writer.send(struct.pack("<HI", producer, sequence) * (sequence % 7))

            following = [0] * 4
            async with create_task_group() as tg:
                for producer in range(4):
                    tg.start_soon(produce, producer)
                received = 0
                while received < 4 * 300:
                    for view in await reader.receive_batch():
                        if len(view):
                            producer, sequence = struct.unpack("<HI", view[:6])
                        else:
                            producer = next(p for p in range(4) if following[p] % 7 == 0)
                            sequence = following[producer]
                        assert sequence == following[producer]
                        following[producer] += 1
                        received += 1
            assert following == [300] * 4


@pytestmark_anyio
async def test_a_cancelled_receive_consumes_nothing_and_a_cancelled_claim_claims_nothing() -> None:
    with anyio.fail_after(10):
        async with aring.open_records(4096) as (writer, reader):
            with anyio.move_on_after(0.05):
                await reader.receive()
            writer.send_nowait(b"x" * 4000)  # full: a claim must wait
            with anyio.CancelScope() as scope:
                async with create_task_group() as tg:
                    tg.start_soon(writer.claim, 100)
                    await wait_all_tasks_blocked()
                    scope.cancel()
            assert writer.open_claims == 0
            assert await reader.receive() == b"x" * 4000
            with anyio.CancelScope() as scope:
                scope.cancel()
                await reader.receive()  # cancelled at its checkpoint
            claim = await writer.claim(100)  # room now
            claim.view[:] = b"z" * 100
            claim.commit()
            assert await reader.receive() == b"z" * 100


@pytestmark_anyio
async def test_a_claim_waits_for_room_and_gets_it_when_the_reader_reads() -> None:
    with anyio.fail_after(10):
        async with aring.open_records(4096) as (writer, reader):
            writer.send_nowait(b"x" * 4000)
            got: list[bytes] = []

            async def read_later() -> None:
                await wait_all_tasks_blocked()
                got.append(await reader.receive())

            async with create_task_group() as tg:
                tg.start_soon(read_later)
                await writer.send(b"y" * 500)
            assert got == [b"x" * 4000]
            assert await reader.receive() == b"y" * 500


@pytestmark_anyio
async def test_a_reader_waiting_on_a_closed_writer_sees_the_end() -> None:
    with anyio.fail_after(10):
        async with aring.open_records(4096) as (writer, reader):

            async def close_later() -> None:
                await wait_all_tasks_blocked()
                await writer.aclose()

            async with create_task_group() as tg:
                tg.start_soon(close_later)
                with pytest.raises(EndOfStream):
                    await reader.receive_batch()


@pytestmark_anyio
async def test_a_claim_left_open_past_claim_timeout_is_dropped_and_the_rest_flows() -> None:
    with anyio.fail_after(10):
        async with aring.open_records(4096, multi_producer=True, claim_timeout=0.2) as (
            writer,
            reader,
        ):
            stuck = writer.try_claim(8)  # a producer that never finishes
            assert stuck is not None
            writer.send_nowait(b"behind it")
            start = anyio.current_time()
            assert await reader.receive() == b"behind it"
            # not before claim_timeout (uvloop's clock has millisecond steps)
            assert anyio.current_time() - start >= 0.2 - 0.002
            with pytest.raises(BrokenResourceError, match="claim_timeout"):
                stuck.commit()
            writer.send_nowait(b"next")
            assert await reader.receive() == b"next"


def test_a_thread_reader_drops_a_stuck_claim_too_and_a_quick_claim_is_kept() -> None:
    with aring.RecordRing(4096, multi_producer=True, claim_timeout=0.2) as ring:
        writer, reader = ring.writer(), ring.reader()
        quick = writer.try_claim(5)
        assert quick is not None
        writer.send_nowait(b"second")
        threading.Timer(
            0.05, lambda: (quick.view.__setitem__(slice(None), b"first"), quick.commit())
        ).start()
        assert reader.sync.receive(timeout=5) == b"first"  # finished in time: kept
        assert reader.sync.receive(timeout=5) == b"second"
        stuck = writer.try_claim(3)
        writer.send_nowait(b"third")
        assert reader.sync.receive(timeout=5) == b"third"
        assert stuck is not None
        with pytest.raises(BrokenResourceError, match="claim_timeout"):
            stuck.commit()
        stuck_again = writer.try_claim(3)
        assert stuck_again is not None
        with pytest.raises(TimeoutError):  # nothing behind it: nothing to deliver
            reader.sync.receive(timeout=0.4)
        stuck_again.abort()  # already dropped: nothing happens


def test_claim_timeout_is_checked() -> None:
    with pytest.raises(ValueError, match="claim_timeout must be > 0"):
        aring.RecordRing(4096, claim_timeout=0)
    with pytest.raises(TypeError, match="claim_timeout must be a number"):
        aring.RecordRing(4096, claim_timeout="1")  # type: ignore[arg-type]


@pytestmark_anyio
async def test_pump_sends_one_datagram_per_record() -> None:
    records = [b"", b"a", os.urandom(1000), os.urandom(4000)]
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sender, receiver, anyio.fail_after(10):
        async with aring.open_records(1 << 16) as (writer, reader):
            for record in records:
                writer.send_nowait(record)
            writer.close()
            stats = aring.TransferStats()
            moved = await aring.pump(reader, sender, stats=stats)
            assert moved == stats.bytes == sum(map(len, records))
        receiver.setblocking(False)
        assert [receiver.recv(65536) for _ in records] == records


@pytestmark_anyio
async def test_fill_makes_each_datagram_a_record_and_drops_what_cannot_be_one() -> None:
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sender, receiver, anyio.fail_after(10):
        async with aring.open_records(4096) as (writer, reader):
            stats = aring.TransferStats()
            async with create_task_group() as tg:
                tg.start_soon(lambda: aring.fill(writer, receiver, stats=stats))
                sender.send(b"one")
                sender.send(b"x" * 5000)  # longer than any record here: dropped
                sender.send(b"")
                sender.send(b"two")
                assert [await reader.receive() for _ in range(3)] == [b"one", b"", b"two"]
                tg.cancel_scope.cancel()
            assert stats.dropped == 1
            assert stats.bytes == 6


def test_record_pump_and_fill_want_datagram_sockets() -> None:
    async def main() -> None:
        async with aring.open_records(4096) as (writer, reader):
            a, b = socket.socketpair()
            with a, b:
                with pytest.raises(TypeError, match="datagram socket"):
                    await aring.pump(reader, a)
                with pytest.raises(TypeError, match="datagram socket"):
                    await aring.fill(writer, b)
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as loose,
                pytest.raises(ValueError, match="must be connected"),
            ):
                await aring.pump(reader, loose)

    anyio.run(main)


# -- the model -------------------------------------------------------------------------


class RecordModel(RuleBasedStateMachine):
    """Claims, commits, aborts and receives against a list of committed records."""

    def __init__(self) -> None:
        super().__init__()
        self.ring: aring.RecordRing | None = None
        self.open: list[tuple[aring.Claim, bytes]] = []  # in claim order
        self.delivered: list[bytes] = []  # what the reader will see, in claim order
        self.finished: dict[int, bytes | None] = {}  # claim index -> record, None if aborted
        self.claimed = 0
        self.received = 0

    @initialize(strategy=st.sampled_from(STRATEGIES), pages=st.integers(1, 2))
    def create(self, strategy: str, pages: int) -> None:
        self.ring = aring.RecordRing(pages * PAGE_SIZE, multi_producer=True, strategy=strategy)
        self.writer, self.reader = self.ring.writer(), self.ring.reader()
        self.index: dict[int, int] = {}

    def teardown(self) -> None:
        self.open.clear()
        if self.ring is not None:
            self.ring.close()

    @precondition(lambda self: not self.open)  # a batch behind open claims waits: kept simple
    @rule(batch=st.lists(st.binary(max_size=300), max_size=6))
    def send_batch(self, batch: list[bytes]) -> None:
        sent = self.writer.try_send_batch(batch)
        for data in batch[:sent]:
            self.finished[self.claimed] = data
            self.claimed += 1

    @rule(data=st.binary(max_size=700))
    def claim(self, data: bytes) -> None:
        claim = self.writer.try_claim(len(data))
        if claim is None:
            return
        claim.view[:] = data
        self.index[id(claim)] = self.claimed
        self.claimed += 1
        self.open.append((claim, data))

    @precondition(lambda self: self.open)
    @rule(pick=st.integers(0, 100), commit=st.booleans())
    def finish(self, pick: int, commit: bool) -> None:
        claim, data = self.open.pop(pick % len(self.open))
        index = self.index.pop(id(claim))
        if commit:
            claim.commit()
            self.finished[index] = data
        else:
            claim.abort()
            self.finished[index] = None

    @rule()
    def receive(self) -> None:
        try:
            got: bytes | None = self.reader.receive_nowait()
        except WouldBlock:
            got = None
        expected = self._next_published()
        assert got == expected

    @rule(limit=st.integers(1, 5))
    def receive_batch(self, limit: int) -> None:
        views = self.reader.try_receive_batch(limit)
        for view in views:
            assert bytes(view) == self._next_published()
        if len(views) < limit:
            assert self._next_published(peek=True) is None

    def _next_published(self, peek: bool = False) -> bytes | None:
        """The next committed record the reader may see: only finished records at the head count."""
        index = self.received
        while index in self.finished and self.finished[index] is None:
            index += 1
        if index not in self.finished:
            if not peek:
                self.received = index  # the aborted ones were passed
            return None
        if not peek:
            self.received = index + 1
        return self.finished[index]

    @invariant()
    def nothing_open_is_lost(self) -> None:
        if self.ring is not None:
            assert self.writer.open_claims == len(self.open)


RecordModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRecordModel = RecordModel.TestCase


class TwoReaderModel(RuleBasedStateMachine):
    """Two readers each see every finished record in claim order, at their own pace."""

    def __init__(self) -> None:
        super().__init__()
        self.ring: aring.RecordRing | None = None
        self.open: list[tuple[aring.Claim, bytes, int]] = []
        self.finished: dict[int, bytes | None] = {}
        self.claimed = 0
        self.next = [0, 0]  # per reader: the claim index it has passed

    @initialize(strategy=st.sampled_from(STRATEGIES))
    def create(self, strategy: str) -> None:
        self.ring = aring.RecordRing(PAGE_SIZE, multi_producer=True, readers=2, strategy=strategy)
        self.writer = self.ring.writer()
        self.readers = [self.ring.reader(), self.ring.reader()]

    def teardown(self) -> None:
        self.open.clear()
        if self.ring is not None:
            self.ring.close()

    @rule(data=st.binary(max_size=500))
    def send(self, data: bytes) -> None:
        try:
            self.writer.send_nowait(data)
        except WouldBlock:
            return
        self.finished[self.claimed] = data
        self.claimed += 1

    @rule(data=st.binary(max_size=300))
    def claim(self, data: bytes) -> None:
        claim = self.writer.try_claim(len(data))
        if claim is not None:
            claim.view[:] = data
            self.open.append((claim, data, self.claimed))
            self.claimed += 1

    @precondition(lambda self: self.open)
    @rule(pick=st.integers(0, 100), commit=st.booleans())
    def finish(self, pick: int, commit: bool) -> None:
        claim, data, index = self.open.pop(pick % len(self.open))
        if commit:
            claim.commit()
        else:
            claim.abort()
        self.finished[index] = data if commit else None

    def _expected(self, which: int, limit: int) -> list[bytes]:
        out: list[bytes] = []
        index = self.next[which]
        while index in self.finished and len(out) < limit:
            record = self.finished[index]
            if record is not None:
                out.append(record)
            index += 1
        return out

    @rule(which=st.integers(0, 1), limit=st.integers(1, 4))
    def receive_batch(self, which: int, limit: int) -> None:
        expected = self._expected(which, limit)
        got = [bytes(v) for v in self.readers[which].try_receive_batch(limit)]
        assert got == expected
        # pass what was delivered, and the aborted ones before the next record
        seen = 0
        while self.next[which] in self.finished and (
            seen < len(got) or self.finished[self.next[which]] is None
        ):
            if self.finished[self.next[which]] is not None:
                if seen == len(got):
                    break
                seen += 1
            self.next[which] += 1

    @rule(which=st.integers(0, 1))
    def receive(self, which: int) -> None:
        expected = self._expected(which, 1)
        try:
            got = [self.readers[which].receive_nowait()]
        except WouldBlock:
            got = []
        assert got == expected
        if got:
            while self.finished[self.next[which]] is None:
                self.next[which] += 1
            self.next[which] += 1


TwoReaderModel.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTwoReaderModel = TwoReaderModel.TestCase


@pytest.mark.skipif(sys.version_info < (3, 12), reason="__buffer__ in Python needs 3.12")
def test_a_batch_whose_list_changes_under_it_is_dropped_whole_and_the_ring_flows() -> None:
    """An item that stops being bytes-like between sizing and copying: nothing is left half-made."""

    class Shifty:
        """bytes-like the first time it is asked, not the second."""

        def __init__(self) -> None:
            self.asked = 0

        def __buffer__(self, flags: int) -> memoryview:
            self.asked += 1
            if self.asked > 1:
                raise TypeError("changed")
            return memoryview(b"shifty")

    with aring.RecordRing(4096) as ring:
        writer, reader = ring.writer(), ring.reader()
        with pytest.raises(TypeError):
            writer.try_send_batch([b"one", Shifty(), b"three"])
        writer.send_nowait(b"after")
        assert reader.receive_nowait() == b"after"  # the dropped claim did not block the ring


def test_python_code_run_inside_a_record_call_closes_the_ring() -> None:
    """A collection inside each record call in turn closes the ring: exceptions, never a crash.

    (As tests/test_misuse.py does for the byte ends.  Header reads after an
    allocation in receive_batch, receive and send_batch touched unmapped
    memory when the collection it ran closed the ring.)
    """
    outcomes = run_scenario(
        """
        from anyio import BrokenResourceError, WouldBlock
        closing = {"ring": None, "at": 0, "seen": 0}
        def close_now():
            try:
                closing["ring"].close()
            except BufferError:   # a view is out: the ring refuses, stays open
                pass
        def on_collection(phase, info):
            if phase == "start" and closing["ring"] is not None:
                closing["seen"] += 1
                if closing["seen"] == closing["at"]:
                    close_now()
        gc.callbacks.append(on_collection)
        def calls(ring):
            w, r, other = ring.writer(), ring.reader(), ring.reader()
            w.send_nowait(b"abc" * 10)
            w.try_send_batch([b"x" * n for n in range(20)])
            claim = w.try_claim(8)
            if claim is not None:
                try:
                    claim.view[:3] = b"xyz"
                except ValueError:   # closed meanwhile: the view was released
                    if not ring.closed:
                        raise
                claim.commit()
            w.sync.send(b"s" * 5, timeout=0)
            r.receive_nowait()
            [bytes(v) for v in r.try_receive_batch()]
            r.sync.receive(timeout=0)
            other.try_receive_batch(3)
            aring._native._record_stalled(r._bytes)
            w.close()
            r.try_receive_batch()
            r.close()
        expected = (ClosedResourceError, BrokenResourceError, EndOfStream, WouldBlock,
                    TimeoutError, BufferError, ValueError)
        def run(at):
            ring = aring.RecordRing(1 << 12, readers=2, multi_producer=True)
            closing.update(ring=ring, at=at, seen=0)
            gc.set_threshold(1, 1, 1)
            try:
                calls(ring)
                error = None
            except expected as exc:
                error = None if not isinstance(exc, ValueError) or ring.closed else repr(exc)
            except BaseException as exc:
                error = repr(exc)
            finally:
                gc.set_threshold(700, 10, 10)
                closing["ring"] = None
            ring.close()
            return error
        run(0)   # count the collections one pass makes
        points = closing["seen"]
        errors = {run(at) for at in range(1, points + 1)}
        outcome("collections", lambda: points > 10)  # 3.12 collects less often than 3.11
        outcome("unexpected errors", lambda: sorted(errors - {None}))
        """,
        timeout=120,
    )
    assert outcomes["collections"] == "returned True"
    assert outcomes["unexpected errors"] == "returned []"


def test_a_claim_whose_header_is_not_written_yet_is_waited_for_not_corruption() -> None:
    """A fresh ring's zeros at position 0 look like this lap's header with state 0."""
    with aring.RecordRing(4096, strategy="shm") as ring:
        _writer, reader = ring.writer(), ring.reader()
        layout = ring._layout()
        with mmap.mmap(ring.buffer.fileno(), layout["data"] + ring.capacity) as shared:
            # another process moved the claim cursor and has not written the header yet
            shared[layout["claim_position"] : layout["claim_position"] + 8] = struct.pack("<Q", 64)
        with pytest.raises(WouldBlock):
            reader.receive_nowait()
        assert aring._native._record_stalled(reader._bytes) == 0  # timed as a stalled claim


def test_a_reader_asleep_before_a_claim_opened_still_drops_it_after_claim_timeout() -> None:
    with aring.RecordRing(4096, multi_producer=True, claim_timeout=0.3) as ring:
        writer, reader = ring.writer(), ring.reader()
        got: list[bytes] = []
        thread = threading.Thread(target=lambda: got.append(reader.sync.receive(timeout=20)))
        thread.start()
        deadline = time.monotonic() + 10
        while not ring._waiters()["readers"] and time.monotonic() < deadline:
            time.sleep(0.001)  # until the reader sleeps on an empty ring
        stuck = writer.try_claim(4)
        writer.send_nowait(b"behind")  # publishes nothing: wakes no one
        thread.join(20)
        assert got == [b"behind"]  # within twice claim_timeout, not the 20 s timeout
        assert stuck is not None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_closing_the_ring_in_the_producer_process_ends_the_stream_elsewhere() -> None:
    """ring.close() closes its ends with the memory still mapped: claims dropped, slot freed."""
    ring = aring.RecordRing(4096, multi_producer=True, readers=2, claim_timeout=300)
    writer, _reader = ring.writer(), ring.reader()
    writer.try_claim(5)  # left open
    writer.send_nowait(b"hello")
    joined, told = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the reading child
        code = 1
        try:
            reader = ring.reader()  # a reader of its own, at the oldest record held
            os.write(told, b"j")
            if reader.sync.receive(timeout=20) == b"hello":
                try:
                    reader.sync.receive(timeout=20)
                except EndOfStream:
                    code = 0
        finally:
            os._exit(code)
    os.read(joined, 1)
    os.close(joined)
    os.close(told)
    ring.close()  # the parent: no writer.close() first
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_producers_behind_a_fast_reader_never_report_corruption() -> None:
    """A producer's claim cursor may be stale (others claimed, published, and the
    reader read past it): that reader holds nothing back.  Taken for corruption,
    it made a producer fail with BrokenResourceError and its records never came."""
    producers, count = 4, 1500
    for _ in range(8):
        with aring.RecordRing(1 << 14, multi_producer=True) as ring:
            writer, reader = ring.writer(), ring.reader()
            pids = []
            for producer in range(producers):
                pid = os.fork()
                if pid == 0:  # pragma: no cover - a child
                    code = 1
                    try:
                        writer.reattach()
                        for sequence in range(count):
                            writer.sync.send(struct.pack("<HI", producer, sequence), timeout=30)
                        writer.close()
                        code = 0
                    finally:
                        os._exit(code)
                pids.append(pid)
            following = [0] * producers
            for _ in range(producers * count):
                producer, sequence = struct.unpack("<HI", reader.sync.receive(timeout=30))
                assert sequence == following[producer]
                following[producer] += 1
            assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids] == [0] * 4
