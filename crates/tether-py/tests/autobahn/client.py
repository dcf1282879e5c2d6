"""The Autobahn TestSuite's testee client on the tether Python package:
runs every case of a fuzzingserver with ``tether.websockets.connect``,
echoing each message, then asks for the reports.

``python client.py --url ws://127.0.0.1:PORT --agent NAME``"""

import argparse
import asyncio
import sys

from tether import websockets


async def run(url, agent):
    async with websockets.connect("%s/getCaseCount" % url) as ws:
        count = int(await ws.recv())
    print("client.py: %d cases" % count, file=sys.stderr)
    for case in range(1, count + 1):
        try:
            async with websockets.connect("%s/runCase?case=%d&agent=%s" % (url, case, agent),
                                          max_size=16 * 2**20, ping_interval=None, compression="deflate",
                                          close_timeout=5) as ws:
                async for message in ws:
                    await ws.send(message)
        except websockets.ConnectionClosed:
            pass
        except Exception as error:
            print("client.py: case %d: %r" % (case, error), file=sys.stderr)
    async with websockets.connect("%s/updateReports?agent=%s" % (url, agent), open_timeout=600) as ws:
        try:
            await ws.recv()
        except websockets.ConnectionClosed:
            pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="ws://127.0.0.1:9001")
    parser.add_argument("--agent", default="tether-python")
    arguments = parser.parse_args()
    asyncio.run(run(arguments.url, arguments.agent))
