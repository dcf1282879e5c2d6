"""The Autobahn TestSuite's testee server on the tether Python package: an
echo server made with ``tether.websockets.serve`` (permessage-deflate on,
messages up to 16 MiB, no keepalive pings to disturb the cases).

``python server.py PORT``"""

import asyncio
import sys

from tether import websockets


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, max_size=16 * 2**20, ping_interval=None,
                                compression="deflate"):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
