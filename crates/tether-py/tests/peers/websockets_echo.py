"""An echo server written with Python websockets (a peer nobody here wrote):
``python websockets_echo.py PORT``. Prints "ready" once listening."""

import asyncio
import sys

import websockets


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, ping_interval=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
