import asyncio
from tether import websockets
import logging
import json
# 设置日志
logging.basicConfig(level=logging.INFO)
# 存储所有连接的客户端
connected_clients = set()
async def handler(websocket, path):
    """
    处理每个 WebSocket 连接
    """
    client_address = websocket.remote_address
    logging.info(f"新客户端连接: {client_address}")
    connected_clients.add(websocket)
    try:
        # 启动一个任务来定期向客户端发送 ping
        ping_task = asyncio.create_task(periodic_ping(websocket))
        # 启动一个任务来接收客户端消息
        receive_task = asyncio.create_task(receive_from_client(websocket, client_address))
        # 等待任一任务完成(连接关闭或出错)
        done, pending = await asyncio.wait(
            [ping_task, receive_task],
            return_when=asyncio.FIRST_COMPLETED
        )
        # 清理任务
        for task in pending:
            task.cancel()
    except websockets.exceptions.ConnectionClosed as e:
        logging.info(f"客户端 {client_address} 断开连接: {e}")
    finally:
        connected_clients.remove(websocket)
        logging.info(f"客户端 {client_address} 已从列表中移除。")
async def periodic_ping(websocket):
    """
    定期向客户端发送 ping
    """
    while websocket.open:
        try:
            # await websocket.ping() 发送 ping 并等待 pong
            # 如果在 ping_timeout 时间内没有收到 pong,会抛出 ConnectionClosed
            await websocket.ping()
            logging.info(f"已向 {websocket.remote_address} 发送 ping")
            await asyncio.sleep(20)  # 每 20 秒 ping 一次
        except websockets.exceptions.ConnectionClosed:
            logging.info(f"客户端 {websocket.remote_address} 未响应 pong,连接已断开。")
            break # 退出循环,任务结束
async def receive_from_client(websocket, client_address):
    """
    接收来自客户端的消息
    """
    try:
        async for message in websocket:
            logging.info(f"从 {client_address} 收到消息: {message}")
            # 这里可以添加业务逻辑,例如将消息广播给所有客户端
            # await broadcast(message)
    except websockets.exceptions.ConnectionClosed:
        logging.info(f"接收消息时,客户端 {client_address} 连接已关闭。")
async def broadcast(message):
    """广播消息给所有连接的客户端"""
    if connected_clients:
        await asyncio.gather(
            *[client.send(message) for client in connected_clients],
            return_exceptions=True
        )
if __name__ == "__main__":
    start_server = websockets.serve(handler, "localhost", 8765)
    logging.info("WebSocket 服务器启动在 ws://localhost:8765")
    asyncio.get_event_loop().run_until_complete(start_server)
    asyncio.get_event_loop().run_forever()
