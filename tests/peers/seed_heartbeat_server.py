#!/usr/bin/env python3
"""Seed 003's manual (application-level, JSON) heartbeat server, on Python
`websockets` 15 (asyncio API).

Usage: seed_heartbeat_server.py [--host 127.0.0.1] [--port 0]
                                [--cert F --key F] [--echo] [--max-pongs N]
Prints `LISTENING <port>` on stdout once ready; runs until SIGTERM/SIGINT.

Per message, as in seed 003 (`manual_handler`):
  - JSON object with "type" == "ping": reply with the text message
    json.dumps({"type": "pong", "timestamp": <the ping's "timestamp", or null>})
    i.e. `{"type": "pong", "timestamp": 12.5}` (Python's default separators).
  - any other JSON object: logged as a business message, no reply
    (`--echo` enables the seed's commented-out reply `Echo: <python dict repr>`).
  - invalid JSON: logged as a warning, no reply, connection stays open.
  - JSON that is not an object (e.g. `[1]`, `5`): the seed's `data.get` raises,
    the handler fails and websockets closes with 1011; reproduced explicitly.
Binary messages go through json.loads too (it accepts UTF-8 bytes), so a
binary ping gets a text pong, as in the seed.

Deviations from the seed, for testing: protocol keepalive pings are off
(ping_interval=None) so only the application heartbeat is exercised;
`--max-pongs N` answers only the first N pings of each connection and then
ignores pings (keeps reading), to test a client's pong timeout.
"""

import asyncio
import json
import signal
import sys

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

NAME = "seed_heartbeat_server"


def make_handler(echo, max_pongs):
    async def manual_handler(websocket):
        peer = websocket.remote_address
        c.log("%s: new client %s" % (NAME, peer))
        pongs = 0
        try:
            async for message in websocket:
                try:
                    data = json.loads(message)
                except json.JSONDecodeError:
                    c.log("%s: invalid JSON message: %r" % (NAME, message))
                    continue
                if not isinstance(data, dict):
                    # Seed: `data.get(...)` raises AttributeError, the handler
                    # fails and websockets closes the connection with 1011.
                    c.log("%s: JSON is not an object (%r): closing with 1011" % (NAME, data))
                    await websocket.close(1011)
                    return
                if data.get("type") == "ping":
                    if max_pongs is not None and pongs >= max_pongs:
                        c.log("%s: ping from %s ignored (--max-pongs %d)" % (NAME, peer, max_pongs))
                        continue
                    pong_message = {"type": "pong", "timestamp": data.get("timestamp")}
                    await websocket.send(json.dumps(pong_message))
                    pongs += 1
                    c.log("%s: answered pong to %s" % (NAME, peer))
                else:
                    c.log("%s: business message: %r" % (NAME, data))
                    if echo:
                        await websocket.send(f"Echo: {data}")
        except ConnectionClosed:
            pass
        c.log("%s: client %s disconnected code=%s reason=%r"
              % (NAME, peer, websocket.close_code, websocket.close_reason))

    return manual_handler


async def main():
    p = c.server_argparser(__doc__)
    p.add_argument("--echo", action="store_true",
                   help="reply `Echo: <dict>` to non-ping JSON objects (commented out in the seed)")
    p.add_argument("--max-pongs", type=int, default=None,
                   help="answer only the first N pings per connection, then ignore pings")
    args = p.parse_args()
    ssl_ctx = c.server_ssl_context(args.cert, args.key)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(
        make_handler(args.echo, args.max_pongs),
        args.host,
        args.port,
        ssl=ssl_ctx,
        ping_interval=None,  # no protocol keepalive: only the JSON heartbeat
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print("LISTENING %d" % port, flush=True)
        await stop
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
