"""A JSON heartbeat responder written with Python websockets (seed 003's
manual heartbeat server, in websockets 15's API): ``python
websockets_json_pong.py PORT``."""

import asyncio
import json
import sys

import websockets


async def answer(websocket):
    async for message in websocket:
        data = json.loads(message)
        if data.get("type") == "ping":
            await websocket.send(json.dumps({"type": "pong", "timestamp": data.get("timestamp")}))


async def main(port):
    async with websockets.serve(answer, "127.0.0.1", port):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
