"""Waiting on a ring from any event loop: a plain ``selectors`` loop.

A GUI toolkit (Tk's ``createfilehandler``, Qt's ``QSocketNotifier``) or any
loop that watches file descriptors can wait on a ring the same way: each end
has a ``notifier_fd`` that becomes readable when the end should look again.
The protocol, in the loop below:

1. try the nonblocking call (``try_read``, ``try_peek``, ``try_write``...);
2. if it had nothing to do, ``arm(n)``: False means "n are there already,
   look again"; True means "wait for notifier_fd to be readable";
3. when it is, ``drain()`` it and go back to 1.

A publisher writes the fd only for an armed waiter, once per ``arm`` (a burst
of commits is one wake-up), so arm before every wait.  A process that dies
sends no wake-up: a loop whose peer may live in another process waits at most
``PEER_CHECK_INTERVAL`` seconds and arms again (``arm`` looks for a dead peer).

Here a producer thread writes a stream into a ring, and the main thread's
selectors loop forwards it to a nonblocking socket, waiting on the ring when
it is empty and on the socket when it is full.

Run: python examples/selectors_loop.py
"""

from __future__ import annotations

import selectors
import socket
import threading
import zlib

from anyio import EndOfStream

import aring

TOTAL = 32 << 20
PIECE = 1 << 16


def produce(writer: aring.Writer) -> None:
    block = bytes(range(256)) * (PIECE // 256)
    for _ in range(TOTAL // PIECE):
        writer.sync.send(block)
    writer.close()


def drain_socket(sock: socket.socket, result: list[int]) -> None:
    crc, got = 0, 0
    while data := sock.recv(1 << 20):
        crc, got = zlib.crc32(data, crc), got + len(data)
    result.extend((got, crc))


def main() -> None:
    ring = aring.Ring(1 << 20)
    writer, reader = ring.writer(), ring.reader()
    out, far = socket.socketpair()
    out.setblocking(False)
    received: list[int] = []
    threads = [
        threading.Thread(target=produce, args=(writer,)),
        threading.Thread(target=drain_socket, args=(far, received)),
    ]
    for thread in threads:
        thread.start()
    sent = crc = wakeups = 0
    with ring, selectors.DefaultSelector() as selector:
        selector.register(reader.notifier_fd, selectors.EVENT_READ, "ring")
        while True:
            try:
                view = reader.try_peek(1)  # all that is readable, zero-copy
            except EndOfStream:
                break
            if view is None:
                if reader.arm(1):  # nothing there: wait for the writer's wake-up
                    selector.select(0.25)  # at most: arm() looks for a dead peer
                    reader.drain()
                    wakeups += 1
                continue
            try:
                n = out.send(view)  # one send per contiguous region, even across the wrap
            except BlockingIOError:
                selector.unregister(reader.notifier_fd)
                selector.register(out, selectors.EVENT_WRITE, "socket")
                selector.select()  # the socket is full: wait until it takes more
                selector.unregister(out)
                selector.register(reader.notifier_fd, selectors.EVENT_READ, "ring")
                continue
            crc = zlib.crc32(view[:n], crc)
            sent += n
            del view
            reader.consume(n)
    out.close()
    for thread in threads:
        thread.join()
    assert received == [sent, crc] and sent == TOTAL, "every byte, in order"
    print(
        f"forwarded {sent >> 20} MiB from a ring to a socket in a selectors loop "
        f"({wakeups} wake-ups, CRC {crc:#010x} checked at the far end)"
    )


if __name__ == "__main__":
    main()
