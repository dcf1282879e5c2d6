#!/usr/bin/env python3
"""TCP forwarder that can go silent without closing: a half-open connection.

Usage: stall_proxy.py --target HOST:PORT [--host 127.0.0.1] [--port 0]
Prints `LISTENING <port>` once ready. Every accepted connection is forwarded
to the target, both ways. On SIGUSR1 it stops forwarding and stops reading
in both directions, but keeps every socket open: to each end, the other is
still connected and simply never answers (a cable cut, a NAT entry dropped,
a peer host frozen). Runs until SIGTERM/SIGINT.
"""

import argparse
import asyncio
import signal
import sys

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

stalled = asyncio.Event()


async def pump(reader, writer):
    while not stalled.is_set():
        read = asyncio.ensure_future(reader.read(65536))
        stall = asyncio.ensure_future(stalled.wait())
        done, _ = await asyncio.wait({read, stall}, return_when=asyncio.FIRST_COMPLETED)
        if stall in done:
            read.cancel()
            return
        stall.cancel()
        data = read.result()
        if not data:
            writer.close()
            return
        writer.write(data)
        await writer.drain()


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    target_host, target_port = args.target.rsplit(":", 1)
    held = []  # sockets kept open after the stall

    async def handle(client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection(target_host, int(target_port))
        held.extend([client_writer, server_writer])
        await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))
        # Stalled (or one side closed): hold on, never read, never close.
        await asyncio.Event().wait()

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))

    def on_stall():
        c.log("stall_proxy: stalling, sockets stay open")
        stalled.set()

    loop.add_signal_handler(signal.SIGUSR1, on_stall)
    server = await asyncio.start_server(handle, args.host, args.port)
    print("LISTENING %d" % server.sockets[0].getsockname()[1], flush=True)
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
