import asyncio
from tether import websockets
import logging
# 设置日志,方便查看连接状态
logging.basicConfig(level=logging.INFO)
async def heartbeat_client(uri):
    """
    带有心跳机制的 WebSocket 客户端
    :param uri: WebSocket 服务器的 URI
    """
    try:
        # ping_interval: 每 20 秒发送一次 ping
        # ping_timeout: 等待 pong 响应的超时时间为 30 秒
        # close_timeout: 关闭连接的超时时间
        async with websockets.connect(
            uri,
            ping_interval=20,  # 心跳间隔,单位:秒
            ping_timeout=30,    # 心跳超时,单位:秒
            close_timeout=2     # 关闭连接的超时时间
        ) as websocket:
            logging.info(f"已连接到服务器: {uri}")
            # 启动一个任务来接收服务器的消息
            receive_task = asyncio.create_task(receive_messages(websocket))
            # 启动一个任务来发送消息
            send_task = asyncio.create_task(send_user_input(websocket))
            # 等待接收或发送任务完成
            done, pending = await asyncio.wait(
                [receive_task, send_task],
                return_when=asyncio.FIRST_COMPLETED
            )
            # 如果一个任务完成,取消另一个任务
            for task in pending:
                task.cancel()
    except websockets.exceptions.ConnectionClosed as e:
        logging.error(f"连接已关闭: {e}")
        # 在这里可以触发重连逻辑
        await asyncio.sleep(5) # 等待5秒后重连
        # asyncio.create_task(heartbeat_client(uri)) # 取消注释以实现自动重连
    except Exception as e:
        logging.error(f"发生错误: {e}")
async def receive_messages(websocket):
    """接收来自服务器的消息"""
    try:
        async for message in websocket:
            logging.info(f"收到消息: {message}")
    except websockets.exceptions.ConnectionClosed:
        logging.info("接收消息时连接已关闭。")
async def send_user_input(websocket):
    """从用户输入获取并发送消息"""
    while True:
        try:
            message = await asyncio.to_thread(input, "请输入要发送的消息 (或 'exit' 退出): ")
            if message.lower() == 'exit':
                break
            await websocket.send(message)
        except websockets.exceptions.ConnectionClosed:
            logging.info("发送消息时连接已关闭。")
            break
if __name__ == "__main__":
    # 替换为你的 WebSocket 服务器地址
    WEBSOCKET_URI = "ws://localhost:8765"
    asyncio.run(heartbeat_client(WEBSOCKET_URI))
