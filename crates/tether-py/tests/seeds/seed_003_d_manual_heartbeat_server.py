import asyncio
from tether import websockets
import json
import logging
logging.basicConfig(level=logging.INFO)
async def manual_handler(websocket, path):
    logging.info(f"新客户端连接: {websocket.remote_address}")
    try:
        async for message in websocket:
            try:
                data = json.loads(message)
                if data.get("type") == "ping":
                    # 回复一个自定义的 pong 消息
                    pong_message = {"type": "pong", "timestamp": data.get("timestamp")}
                    await websocket.send(json.dumps(pong_message))
                    logging.info(f"已向 {websocket.remote_address} 回复 pong")
                else:
                    # 处理其他业务消息
                    logging.info(f"收到业务消息: {data}")
                    # await websocket.send(f"Echo: {data}")
            except json.JSONDecodeError:
                logging.warning(f"收到无效的 JSON 消息: {message}")
    except websockets.exceptions.ConnectionClosed:
        logging.info(f"客户端 {websocket.remote_address} 断开连接")
if __name__ == "__main__":
    start_server = websockets.serve(manual_handler, "localhost", 8765)
    logging.info("支持手动心跳的 WebSocket 服务器启动")
    asyncio.get_event_loop().run_until_complete(start_server)
    asyncio.get_event_loop().run_forever()
