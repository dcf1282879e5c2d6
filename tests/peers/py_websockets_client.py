#!/usr/bin/env python3
"""Matrix client on Python `websockets` (asyncio API, permessage-deflate on).

Usage: py_websockets_client.py URL [--cafile F] [--timeout 60] [--sizes a,b,..]
Sends each matrix message (text and binary of every size) to an echo server,
one at a time, and checks the echo byte-for-byte and by type (str for text,
bytes for binary). Then closes with 1000 and expects the server's close frame.
Prints `OK <n> messages` and exits 0, or `ERROR ...` and exits 1.
"""

import asyncio
import sys
import time

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

from websockets.asyncio.client import connect  # noqa: E402

NAME = "py_websockets_client"


async def run(args):
    ssl_ctx = c.client_ssl_context(args.url, args.cafile)
    msgs = c.matrix(args.sizes)
    async with connect(
        args.url,
        ssl=ssl_ctx,
        compression="deflate",
        max_size=c.MAX_MESSAGE,
        ping_interval=None,
        open_timeout=20,
        close_timeout=10,
    ) as ws:
        c.log("%s: connected, extensions=%r" % (
            NAME, ws.response.headers.get("Sec-WebSocket-Extensions")))
        for label, payload in msgs:
            t0 = time.monotonic()
            await ws.send(payload)
            got = await ws.recv()
            if type(got) is not type(payload) or got != payload:
                raise AssertionError("%s: %s" % (label, c.describe_mismatch(payload, got)))
            c.log("%s: %s echoed in %.3f s" % (NAME, label, time.monotonic() - t0))
        await ws.close(code=1000)
        rcvd = ws.protocol.close_rcvd
        if rcvd is None:
            raise AssertionError("no close frame received from server")
        if rcvd.code != 1000:
            raise AssertionError("server close code %d (expected 1000)" % rcvd.code)
    return len(msgs)


def main():
    args = c.client_argparser(__doc__).parse_args()
    c.start_watchdog(args.timeout, NAME)
    try:
        n = asyncio.run(run(args))
    except Exception as e:  # noqa: BLE001
        print("ERROR %s: %s: %s" % (NAME, type(e).__name__, e), flush=True)
        sys.exit(1)
    print("OK %d messages" % n, flush=True)


if __name__ == "__main__":
    main()
