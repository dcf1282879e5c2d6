"""``tether.websockets`` behaves as Python websockets does where programs
depend on it (the seeds' programs cover the common paths; this file the
corners)."""

import array
import asyncio

from tether import websockets


def test_every_bytes_like_payload_is_sent_as_the_bytes_it_holds(echo_url):
    data = bytes(range(256)) * 257
    payloads = [
        data,
        bytearray(data),
        memoryview(data),
        memoryview(data)[1000:5000],  # a slice, in place
        memoryview(data)[::3],  # not contiguous: copied once
        memoryview(array.array("I", range(1000))),  # items of four bytes
    ]

    async def main():
        async with websockets.connect(echo_url, max_size=None) as ws:
            for payload in payloads:
                await ws.send(payload)
                assert await ws.recv() == bytes(payload), type(payload)

    asyncio.run(main())


def test_broadcast_takes_bytes_like_payloads_too():
    async def main():
        async def handler(ws):
            websockets.broadcast([ws], bytearray(b"from a bytearray"))
            websockets.broadcast([ws], memoryview(b"from a memoryview")[5:])
            await ws.wait_closed()

        async with websockets.serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect("ws://127.0.0.1:%d/" % port) as ws:
                assert await ws.recv() == b"from a bytearray"
                assert await ws.recv() == b"a memoryview"

    asyncio.run(main())
