"""``tether.websockets`` batches writes per loop turn (see the docs of
``tether.websockets.connection``): the first message after a read goes out
at once, later ones and broadcasts leave in one write per connection when
the turn ends. These tests pin down what a program can observe: order,
the number of writes, and the write limit still holding a sender back."""

import asyncio

from conftest import holding_server
from tether import websockets
from tether.websockets import connection as connection_module


def count_writes(ws):
    """Wraps the transport's ``write`` to count calls."""
    calls = []
    write = ws.transport.write

    def counting(data):
        calls.append(len(data))
        write(data)

    ws.transport.write = counting
    return calls


async def turns(n=3):
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_burst_of_sends_in_one_turn_leaves_in_two_writes_and_in_order(echo_url):
    async def main():
        async with websockets.connect(echo_url, compression=None) as ws:
            writes = count_writes(ws)
            for n in range(100):
                await ws.send("message %d" % n)  # no yield between them
            await turns()
            assert len(writes) == 2, "the first at once, the other 99 together: %s" % writes
            for n in range(100):
                assert await ws.recv() == "message %d" % n

    asyncio.run(main())


def test_a_reply_after_a_read_goes_out_at_once(echo_url):
    async def main():
        async with websockets.connect(echo_url, compression=None) as ws:
            writes = count_writes(ws)
            await ws.send("ping 0")
            for n in range(1, 20):
                assert await ws.recv() == "ping %d" % (n - 1)
                before = len(writes)
                await ws.send("ping %d" % n)
                assert len(writes) == before + 1, "a reply waited for the end of the turn"

    asyncio.run(main())


def test_broadcast_then_send_to_the_same_client_arrives_in_that_order():
    async def main():
        async def handler(ws):
            for n in range(10):
                websockets.broadcast([ws], "broadcast %d" % n)
                await ws.send("sent %d" % n)
            await ws.wait_closed()

        async with websockets.serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect("ws://127.0.0.1:%d/" % port) as ws:
                got = [await ws.recv() for _ in range(20)]
        assert got == [word for n in range(10) for word in ("broadcast %d" % n, "sent %d" % n)]

    asyncio.run(main())


def test_many_broadcasts_in_one_turn_make_one_write_per_client():
    async def main():
        async with holding_server(compression=None) as (url, server, joined):
            clients = [await websockets.connect(url, compression=None) for _ in range(3)]
            server_side = [await joined.get() for _ in range(3)]
            writes = [count_writes(ws) for ws in server_side]
            for n in range(50):
                websockets.broadcast(server.connections, "news %d" % n)
            await turns()
            assert [len(w) for w in writes] == [1, 1, 1], writes
            for client in clients:
                assert [await client.recv() for _ in range(50)] == ["news %d" % n for n in range(50)]
                await client.close()

    asyncio.run(main())


def test_a_sender_that_never_yields_is_still_held_by_the_write_limit():
    async def main():
        release = asyncio.Event()

        async def handler(ws):
            await release.wait()  # reads nothing: the client's writes back up
            async for _ in ws:
                pass

        async with websockets.serve(handler, "127.0.0.1", 0, compression=None, max_queue=1) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect("ws://127.0.0.1:%d/" % port, compression=None,
                                          write_limit=2**15) as ws:
                chunk = b"x" * 1024
                sent = 0

                async def flood():
                    nonlocal sent
                    while sent < 100_000:
                        await ws.send(chunk)
                        sent += 1

                flooding = asyncio.ensure_future(flood())
                await asyncio.sleep(1.0)
                assert not flooding.done(), "100 MB went out to a peer that reads nothing"
                held = ws.transport.get_write_buffer_size()
                assert held <= 2**15 + connection_module.QUEUE_LIMIT + len(chunk) + 64, held
                flooding.cancel()
                release.set()

    asyncio.run(main())


def test_a_burst_of_broadcasts_in_one_turn_stays_bounded_for_a_client_that_reads_nothing():
    async def main():
        async with holding_server(compression=None, write_limit=2**16) as (url, server, joined):
            port = server.sockets[0].getsockname()[1]
            # A raw socket that completes the handshake and then reads nothing.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            slow = await joined.get()
            payload = b"x" * 10_000
            skipped = 0
            for _ in range(3_000):  # 30 MB in one turn
                try:
                    websockets.broadcast([slow], payload, raise_exceptions=True)
                except Exception as group:  # noqa: BLE001 (an ExceptionGroup)
                    skipped += len(group.exceptions)
            held = slow.transport.get_write_buffer_size()
            assert skipped > 0, "30 MB queued for a client that reads nothing"
            assert held <= 2**16 + connection_module.QUEUE_LIMIT + len(payload) + 64, held
            writer.close()

    asyncio.run(main())
