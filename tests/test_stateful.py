"""The ring against a model: a bytearray of everything committed and each reader's position.

Hypothesis drives random reserve/commit/write/peek/consume/read sequences, with
readers joining and leaving, on every mapping strategy and with 1-3 readers, and
checks every view the ring hands out against the model.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile

import pytest
from anyio import EndOfStream
from conftest import STRATEGIES
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

import aring
from aring._native import PAGE_SIZE


class RingModel(RuleBasedStateMachine):
    readers = Bundle("readers")

    def __init__(self) -> None:
        super().__init__()
        self.ring: aring.Ring | None = None
        self.path: str | None = None
        self.stream = bytearray()  # every byte ever committed
        self.position: dict[aring.Reader, int] = {}
        self.reserved: memoryview | None = None
        self.writer_closed = False

    @initialize(
        target=readers,
        strategy=st.sampled_from(STRATEGIES),
        max_readers=st.integers(1, 3),
        pages=st.integers(1, 2),
        notifier=st.sampled_from(["auto", "pipe"]),
    )
    def create(self, strategy: str, max_readers: int, pages: int, notifier: str) -> aring.Reader:
        if strategy == "file":
            self.path = os.path.join(tempfile.mkdtemp(prefix="aring-model-"), "ring")
        self.ring = aring.Ring(
            pages * PAGE_SIZE - 100,  # rounded up to whole pages
            readers=max_readers,
            strategy=strategy,
            path=self.path,
            notifier="auto" if self.path else notifier,  # a ring file's notifiers are FIFOs
        )
        assert self.ring.capacity == pages * PAGE_SIZE
        self.writer = self.ring.writer()
        first = self.ring.reader()
        self.position[first] = 0
        return first

    def teardown(self) -> None:
        if self.ring is not None:
            self.reserved = None
            self.ring.close()
        if self.path is not None:
            shutil.rmtree(os.path.dirname(self.path))

    # -- the model's view of the ring ------------------------------------------------

    @property
    def cap(self) -> int:
        assert self.ring is not None
        return self.ring.capacity

    def space(self) -> int:
        if not self.position:
            return self.cap  # (readers that left no longer hold the writer back)
        return self.cap - (len(self.stream) - min(self.position.values()))

    def readable(self, reader: aring.Reader) -> int:
        return len(self.stream) - self.position[reader]

    # -- writer ------------------------------------------------------------------------

    @precondition(lambda self: not self.writer_closed and self.position)
    @rule(n=st.integers(1, 2 * PAGE_SIZE), seed=st.integers(0, 2**32))
    def reserve(self, n: int, seed: int) -> None:
        n = min(n, self.cap)
        view = self.writer.try_reserve(n)
        space = self.space()
        if space < n:
            assert view is None
            return
        assert view is not None and len(view) == space
        view[:] = random.Random(seed).randbytes(space)
        self.reserved = view

    @precondition(lambda self: self.reserved is not None)
    @rule(fraction=st.floats(0, 1))
    def commit(self, fraction: float) -> None:
        assert self.reserved is not None
        count = int(len(self.reserved) * fraction)
        self.stream += self.reserved[:count]
        self.writer.commit(count)
        with pytest.raises(ValueError):
            self.reserved[0]  # the loan ended with the commit
        self.reserved = None

    @precondition(lambda self: self.reserved is not None)
    @rule()
    def commit_too_much(self) -> None:
        assert self.reserved is not None
        with pytest.raises(ValueError, match=r"reserved|capacity"):
            self.writer.commit(len(self.reserved) + 1)

    @precondition(lambda self: not self.writer_closed and self.position)
    @rule(payload=st.binary(max_size=2 * PAGE_SIZE), partial=st.booleans())
    def write(self, payload: bytes, partial: bool) -> None:
        if len(payload) > self.cap and not partial:
            with pytest.raises(ValueError, match="larger than the capacity"):
                self.writer.try_write(payload)
            return
        space = self.space()
        written = self.writer.try_write(payload, partial=partial)
        if partial:
            assert written == min(space, len(payload))
        else:
            assert written == (len(payload) if len(payload) <= space else 0)
        if written:
            self.reserved = None  # a copy-in ends any earlier loan
        self.stream += payload[:written]

    @precondition(lambda self: not self.writer_closed)
    @rule()
    def close_writer(self) -> None:
        self.writer.close()
        self.writer_closed = True
        self.reserved = None

    # -- readers -----------------------------------------------------------------------

    @rule(reader=readers, n=st.integers(1, 2 * PAGE_SIZE))
    def peek(self, reader: aring.Reader, n: int) -> None:
        n = min(n, self.cap)
        available = self.readable(reader)
        if available == 0 and self.writer_closed:
            with pytest.raises(EndOfStream):
                reader.try_peek(n)
            return
        view = reader.try_peek(n)
        if available < n and not self.writer_closed:
            assert view is None
            return
        assert view is not None
        start = self.position[reader]
        assert bytes(view) == bytes(self.stream[start : start + available])

    @rule(reader=readers, fraction=st.floats(0, 1))
    def consume(self, reader: aring.Reader, fraction: float) -> None:
        count = int(self.readable(reader) * fraction)
        reader.consume(count)
        self.position[reader] += count

    @rule(reader=readers)
    def consume_too_much(self, reader: aring.Reader) -> None:
        if self.readable(reader) < self.cap:
            with pytest.raises(ValueError):
                reader.consume(self.readable(reader) + 1)

    @rule(reader=readers, max_bytes=st.integers(1, 3 * PAGE_SIZE))
    def read(self, reader: aring.Reader, max_bytes: int) -> None:
        available = self.readable(reader)
        start = self.position[reader]
        if available == 0:
            if self.writer_closed:
                with pytest.raises(EndOfStream):
                    reader.try_read(max_bytes)
            else:
                assert reader.try_read(max_bytes) is None
            return
        got = reader.try_read(max_bytes)
        assert got == bytes(self.stream[start : start + min(available, max_bytes)])
        self.position[reader] += len(got)

    @precondition(lambda self: self.ring is not None and len(self.position) < self.ring.max_readers)
    @rule(target=readers)
    def join(self) -> aring.Reader:
        assert self.ring is not None
        reader = self.ring.reader()
        # A newcomer starts at the oldest byte still held for the others.
        self.position[reader] = min(self.position.values(), default=len(self.stream))
        return reader

    @rule(reader=consumes(readers))
    def leave(self, reader: aring.Reader) -> None:
        reader.close()
        del self.position[reader]

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def cursors_agree(self) -> None:
        if self.ring is None:
            return
        for reader in self.position:
            assert reader.readable() == self.readable(reader)
        if self.position and not self.writer_closed:
            assert self.writer.writable() == self.space()

    @invariant()
    def mirror_aliases(self) -> None:
        # Any byte still held shows up at i and at i + capacity: the wrap is seamless.
        if self.ring is None or not self.position or self.reserved is not None:
            return
        start = min(self.position.values())
        if start == len(self.stream):
            return
        with memoryview(self.ring.buffer) as window:
            at = start % self.cap
            assert window[at] == window[at + self.cap] == self.stream[start]


RingModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRingModel = RingModel.TestCase
