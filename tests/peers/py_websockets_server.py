#!/usr/bin/env python3
"""Echo server on Python `websockets` (asyncio API, permessage-deflate on).

Usage: py_websockets_server.py [--host 127.0.0.1] [--port 0] [--cert F --key F]
Prints `LISTENING <port>` on stdout once ready; runs until SIGTERM/SIGINT.
Every text message is echoed as text and every binary message as binary.
"""

import asyncio
import signal
import sys

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402


async def echo(ws):
    ext = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
    c.log("py_websockets_server: connection from %s, extensions=%r" % (ws.remote_address, ext))
    try:
        async for msg in ws:  # str for text, bytes for binary
            await ws.send(msg)
    except ConnectionClosed:
        pass
    c.log("py_websockets_server: closed code=%s reason=%r" % (ws.close_code, ws.close_reason))


async def main():
    args = c.server_argparser(__doc__).parse_args()
    ssl_ctx = c.server_ssl_context(args.cert, args.key)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None))
    async with serve(
        echo,
        args.host,
        args.port,
        ssl=ssl_ctx,
        compression="deflate",
        max_size=c.MAX_MESSAGE,
        max_queue=16,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print("LISTENING %d" % port, flush=True)
        await stop
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
