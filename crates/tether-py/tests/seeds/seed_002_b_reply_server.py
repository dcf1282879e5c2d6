import asyncio
from tether import websockets
from datetime import datetime

async def handler(websocket):
    # data = await websocket.recv()
    # reply = f"Data received as \"{data}\".  time: {datetime.now()}"
    # print(reply)
    # await websocket.send(reply)
    # print("Send reply")

    async for message in websocket:
        reply = f"Data received as \"{message}\".  time: {datetime.now()}"
        print(reply)
        await websocket.send(reply)


async def main():
    async with websockets.serve(handler, "localhost", 9999):
        await asyncio.Future()  # run forever

if __name__ == "__main__":
    asyncio.run(main())
