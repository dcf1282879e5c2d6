#!/usr/bin/env python3
"""A client that connects and then only keeps the connection (Python `websockets`).

Usage: py_quiet_client.py URL
Connects with its own keepalive off (ping_interval=None), so the only pings
are the server's, which `websockets` answers by itself. Prints `CONNECTED`
once open, then reads until the connection ends and prints
`CLOSED <code> <reason>`. Freezing it (SIGSTOP) makes it a peer that is
connected but answers nothing.
"""

import asyncio
import sys

sys.dont_write_bytecode = True

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402


async def main():
    async with connect(sys.argv[1], ping_interval=None) as ws:
        print("CONNECTED", flush=True)
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
        print("CLOSED %s %s" % (ws.close_code, ws.close_reason), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
