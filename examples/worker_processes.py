"""One writer, reader processes that may die: a crashed reader never wedges the writer.

The parent writes numbered records into a ring shared with two forked worker
processes, each reading every record.  One worker gets stuck halfway; when a
send has waited a second, the parent kills it (SIGKILL: it cannot close
anything).  The writer, which would wait for the dead worker's slot for ever,
notices within a fraction of a second that its process is gone, frees the
slot (``ring.dead_readers``) and carries on with the surviving worker, which
checks that it saw every record in order.

Run: python examples/worker_processes.py
"""

from __future__ import annotations

import os
import signal
import struct
import time

from anyio import EndOfStream

import aring

RECORDS = 200_000
RECORD = struct.Struct("<Q")  # one 8-byte counter


def work(reader: aring.Reader, *, stall_after: int | None) -> None:
    """Read every record, checking the order; with ``stall_after``, hang after that many."""
    reader.reattach()  # this process takes over the reader it inherited
    expected = 0
    while True:
        try:
            view = reader.sync.peek(RECORD.size, timeout=30)
        except EndOfStream:
            break
        for (value,) in RECORD.iter_unpack(view):
            assert value == expected, f"record {expected} came as {value}"
            expected += 1
        reader.consume(len(view))
        if stall_after is not None and expected >= stall_after:
            time.sleep(3600)  # a stuck worker: the parent kills it
    assert expected == RECORDS, f"{expected} of {RECORDS} records"
    os._exit(0)


def main() -> None:
    with aring.Ring(1 << 16, readers=2, item_size=RECORD.size) as ring:
        writer = ring.writer()
        readers = [ring.reader(), ring.reader()]
        pids = []
        for i, reader in enumerate(readers):
            pid = os.fork()
            if pid == 0:
                try:
                    work(reader, stall_after=RECORDS // 2 if i == 0 else None)
                finally:
                    os._exit(1)
            pids.append(pid)
        # The parent leaves its copies of the readers alone: each child took its
        # reader over (reattach), and closing the ring later leaves their slots be.

        start = time.monotonic()
        n = 0
        while n < RECORDS:
            try:
                writer.sync.send(RECORD.pack(n), timeout=1.0)
            except TimeoutError:
                # A worker stopped reading (a real supervisor would know which from
                # its heartbeats; here it is the first): it dies holding its slot.
                os.kill(pids[0], signal.SIGKILL)
                continue
            n += 1
        writer.close()
        elapsed = time.monotonic() - start
        _, status = os.waitpid(pids[1], 0)
        os.waitpid(pids[0], 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the surviving worker failed"
        print(
            f"wrote {RECORDS} records in {elapsed:.2f} s to two worker processes; one was "
            f"killed holding its slot, and the ring freed {ring.dead_readers} dead reader(s); "
            "the other saw every record in order"
        )
        assert ring.dead_readers == 1


if __name__ == "__main__":
    main()
