import asyncio
from tether import websockets
import time

async def ws_client(url):
    for i in range(1, 40):
        async with websockets.connect(url) as websocket:
            await websocket.send(f"[{i}] - 客户端 → 服务端.")

            # 接收服务端返回的消息
            response = await websocket.recv()
        print(response)
        time.sleep(1)

asyncio.run(ws_client('ws://localhost:9999'))
