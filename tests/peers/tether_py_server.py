#!/usr/bin/env python3
"""Echo server on the tether Python package (``tether.websockets.serve``,
permessage-deflate on), for the interop matrix.

Usage: tether_py_server.py [--host 127.0.0.1] [--port 0] [--cert F --key F]
Prints `LISTENING <port>` on stdout once ready; runs until SIGTERM/SIGINT.
Run it with a Python that has the tether wheel installed.
"""

import asyncio
import signal
import sys

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

from tether import websockets  # noqa: E402


async def echo(ws):
    c.log("tether_py_server: connection from %s" % (ws.remote_address,))
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    c.log("tether_py_server: closed code=%s reason=%r" % (ws.close_code, ws.close_reason))


async def main():
    args = c.server_argparser(__doc__).parse_args()
    ssl_ctx = c.server_ssl_context(args.cert, args.key)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with websockets.serve(echo, args.host, args.port, ssl=ssl_ctx, compression="deflate",
                                max_size=c.MAX_MESSAGE, ping_interval=None) as server:
        print("LISTENING %d" % server.sockets[0].getsockname()[1], flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
