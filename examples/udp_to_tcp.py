"""Forward UDP datagrams to a TCP peer as length-prefixed records, counting every drop.

The UDP side queues datagrams in a ring as they are drained from the kernel;
the TCP side is a RingSocketStream.  The stats say how many datagrams arrived
and how many the kernel dropped (never a silent cap).

Run: python examples/udp_to_tcp.py [--loop asyncio|uvloop|trio]
"""

from __future__ import annotations

import struct

import anyio
from _loops import run
from anyio.abc import SocketAttribute

import aring

COUNT = 2000


async def forward(udp: aring.RingUDPSocket, tcp_port: int) -> None:
    """Until the UDP side has been quiet for a second."""
    async with await aring.connect_tcp("127.0.0.1", tcp_port) as tcp:
        while True:
            with anyio.move_on_after(1):
                data, _sender = await udp.receive()
                await tcp.send(struct.pack("<I", len(data)) + data)
                continue
            break
        await tcp.send_eof()


async def main() -> None:
    async with await aring.create_udp_socket(local_host="127.0.0.1") as udp, \
            await aring.create_tcp_listener(local_host="127.0.0.1") as listener:
        udp_port = udp.extra(SocketAttribute.local_port)
        tcp_port = listener.extra(SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:

            async def sink() -> None:  # the TCP peer: parses records where they lie
                async with await listener.accept() as peer:
                    seen, last = 0, -1
                    while True:
                        try:
                            (length,) = struct.unpack("<I", await peer.receive_exactly(4))
                        except anyio.IncompleteRead:
                            break
                        record = await peer.receive_exactly(length)  # a view in the ring
                        number = int(bytes(record).split()[1])
                        assert number > last, "out of order"
                        seen, last = seen + 1, number
                stats = udp.stats
                assert seen + stats.dropped == COUNT, "a datagram vanished uncounted"
                print(f"forwarded {seen} of {COUNT} datagrams in order; {stats}")

            tg.start_soon(sink)
            tg.start_soon(forward, udp, tcp_port)
            async with await aring.create_udp_socket(local_host="127.0.0.1") as sender:
                for i in range(COUNT):
                    await sender.sendto(b"datagram %d" % i, "127.0.0.1", udp_port)
                    if i % 100 == 99:
                        await anyio.sleep(0.001)  # a polite sender: loopback drops nothing


if __name__ == "__main__":
    run(main, __doc__.splitlines()[0])
