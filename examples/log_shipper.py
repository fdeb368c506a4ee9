"""A crash-safe log shipper: a producer process logs into a ring file, a
consumer process ships the records to a log file, and the consumer is killed
with SIGKILL halfway and started again: every record arrives once, in order.

The ring is a RecordRing kept in a file (``path=``); the consumer is a named
reader, so its position lives in the file: killed, it resumes after the last
record it consumed (the producer, meanwhile, waits for it: a parked named
reader holds its records).  A batch is consumed only when the next one is
asked for, after it was written and fsync'ed, so a kill repeats at most the
last batch, which the consumer recognises by its sequence numbers.

Run: python examples/log_shipper.py [--loop asyncio|uvloop|trio]
(``produce DIR`` and ``consume DIR`` are the two processes it starts.)
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from _loops import LOOPS
from anyio import EndOfStream

import aring

RECORDS = 20_000
HEAD = struct.Struct("<I")  # sequence number, then the message


def produce(directory: Path) -> None:
    """Log RECORDS messages; a ring file of 64 KiB, made by whichever side comes first."""
    ring = aring.RecordRing(1 << 16, path=directory / "logs.ring")
    with ring, ring.writer() as writer:
        for seq in range(RECORDS):
            message = f"{time.time():.6f} worker-{seq % 7} handled request {seq}".encode()
            writer.sync.send(HEAD.pack(seq) + message)


def last_shipped(out: Path) -> int:
    """The sequence number of the last line in the shipped log, or -1."""
    if not out.exists() or out.stat().st_size == 0:
        return -1
    with open(out, "rb") as f:
        f.seek(max(0, out.stat().st_size - 4096))
        return int(f.read().splitlines()[-1].split(b" ", 1)[0])


async def consume(directory: Path) -> None:
    """Ship every record to shipped.log; safe to kill at any point and run again."""
    out = directory / "shipped.log"
    done = last_shipped(out)
    ring = aring.RecordRing(1 << 16, path=directory / "logs.ring")
    with ring, open(out, "ab") as log:
        reader = ring.reader(name="shipper")  # resumes where the last run consumed
        while True:
            try:
                batch = await reader.receive_batch()  # consumes the previous batch
            except EndOfStream:  # the producer closed, and everything was shipped
                break
            lines = []
            for record in batch:
                seq = HEAD.unpack_from(record)[0]
                if seq > done:  # a batch shipped just before a kill comes again: skip it
                    lines.append(b"%d %s\n" % (seq, bytes(record[HEAD.size :])))
                    done = seq
            log.write(b"".join(lines))
            log.flush()
            os.fsync(log.fileno())
            print(f"shipped {done + 1}", flush=True)


def start(command: str, directory: Path, loop: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, command, str(directory), "--loop", loop],
        stdout=subprocess.PIPE,
        text=True,
    )


def demo(loop: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        producer = start("produce", directory, loop)
        consumer = start("consume", directory, loop)
        assert consumer.stdout is not None
        while int(consumer.stdout.readline().split()[1]) < RECORDS // 3:
            pass
        consumer.send_signal(signal.SIGKILL)
        consumer.wait()
        print(f"consumer killed with SIGKILL after {last_shipped(directory / 'shipped.log') + 1}")
        inspect = subprocess.run(
            [sys.executable, "-m", "aring", "inspect", str(directory / "logs.ring"), "-n", "48"],
            capture_output=True,
            text=True,
            check=True,
        )
        print(inspect.stdout.replace(str(directory), "$DIR"), end="")
        consumer = start("consume", directory, loop)  # resumes
        consumer.communicate(timeout=60)
        producer.wait(timeout=60)
        assert producer.returncode == 0 and consumer.returncode == 0
        shipped = (directory / "shipped.log").read_bytes().splitlines()
        seqs = [int(line.split(b" ", 1)[0]) for line in shipped]
        assert seqs == list(range(RECORDS)), "every record once, in order"
        print(f"restarted consumer finished: {len(seqs)} records shipped, each once, in order")


def main() -> None:
    args = sys.argv[1:]
    loop = "asyncio"
    if "--loop" in args:
        at = args.index("--loop")
        loop = args[at + 1]
        del args[at : at + 2]
    if loop not in LOOPS:
        sys.exit(f"--loop must be one of {', '.join(LOOPS)}")
    if args[:1] == ["produce"]:
        produce(Path(args[1]))
    elif args[:1] == ["consume"]:
        backend, options = LOOPS[loop]
        anyio.run(consume, Path(args[1]), backend=backend, backend_options=options)
    else:
        demo(loop)


if __name__ == "__main__":
    main()
