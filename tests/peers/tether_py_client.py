#!/usr/bin/env python3
"""Matrix client on the tether Python package.

Usage: tether_py_client.py URL --mode asyncio|create_connection [--cafile F] [--timeout 60] [--sizes ..]
``asyncio``: ``tether.websockets.connect`` (permessage-deflate offered);
``create_connection``: ``tether.websocket.create_connection`` (blocking).
Sends each matrix message, checks the echo by type and byte for byte, closes
with 1000 and expects the server's 1000. Prints `OK <n> messages` and exits
0, or `ERROR ...` and exits 1. Run it with a Python that has the tether wheel.
"""

import asyncio
import ssl
import sys

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

from tether import websocket, websockets  # noqa: E402

NAME = "tether_py_client"


async def run_asyncio(args):
    ssl_ctx = c.client_ssl_context(args.url, args.cafile)
    messages = c.matrix(args.sizes)
    async with websockets.connect(args.url, ssl=ssl_ctx, compression="deflate", max_size=c.MAX_MESSAGE,
                                  ping_interval=None, open_timeout=20, close_timeout=10) as ws:
        for label, payload in messages:
            await ws.send(payload)
            got = await ws.recv()
            if type(got) is not type(payload) or got != payload:
                raise AssertionError("%s: %s" % (label, c.describe_mismatch(payload, got)))
        await ws.close(1000)
        if ws.close_code != 1000:
            raise AssertionError("server close code %s (expected 1000)" % ws.close_code)
    return len(messages)


def run_blocking(args):
    sslopt = {"ca_certs": args.cafile} if args.cafile else None
    messages = c.matrix(args.sizes)
    ws = websocket.create_connection(args.url, timeout=30, sslopt=sslopt)
    for label, payload in messages:
        if isinstance(payload, str):
            ws.send_text(payload)
        else:
            ws.send_bytes(payload)
        got = ws.recv()
        if type(got) is not type(payload) or got != payload:
            raise AssertionError("%s: %s" % (label, c.describe_mismatch(payload, got)))
    ws.close()
    return len(messages)


def main():
    parser = c.client_argparser(__doc__)
    parser.add_argument("--mode", choices=["asyncio", "create_connection"], required=True)
    args = parser.parse_args()
    c.start_watchdog(args.timeout, NAME)
    try:
        n = asyncio.run(run_asyncio(args)) if args.mode == "asyncio" else run_blocking(args)
    except Exception as e:  # noqa: BLE001
        print("ERROR %s: %s: %s" % (NAME, type(e).__name__, e), flush=True)
        sys.exit(1)
    print("OK %d messages" % n, flush=True)


if __name__ == "__main__":
    main()
