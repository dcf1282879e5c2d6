"""The Python package against the Python WebSocket libraries people use,
in one run on one machine (loopback), compression off everywhere:

1. ping-pong: one client, 256-byte binary messages, one in flight, against
   ``tether serve`` (a fast Rust echo server, so the client is what is
   measured): round trips per second.
2. pipelined: the same with 100 messages in flight: messages per second.
3. broadcast: a server in each library relaying every message it receives
   to all of 1,000 clients (``tether bench`` drives the clients, timing each
   message's way back to its sender): deliveries per second kept up with,
   and latency.

Run with a venv holding the tether wheel (release build), websockets,
websocket-client, picows and aiohttp:
``python bench.py --tether-bin target/release/tether [--seconds 5]``.
Prints a table, and JSON with ``--json``.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

PAYLOAD = os.urandom(256)
WINDOW = 100


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port, deadline=10):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


# -- clients: (round trips or messages) in `seconds` --------------------------------


async def _pump(send, receive, seconds, window):
    """The asyncio clients' loop: ``window`` messages in flight, each one
    answered by the next until ``seconds`` pass; how many came back."""
    for _ in range(window):
        await send(PAYLOAD)
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        await receive()
        await send(PAYLOAD)
        count += 1
    return count


def _pump_blocking(send, receive, seconds, window):
    """``_pump`` for the blocking clients."""
    for _ in range(window):
        send(PAYLOAD)
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        receive()
        send(PAYLOAD)
        count += 1
    return count


async def _websockets_shaped(module, url, seconds, window):
    """The client for websockets' API, which tether.websockets shares."""
    async with module.connect(url, compression=None, ping_interval=None, max_size=2**20) as ws:
        return await _pump(ws.send, ws.recv, seconds, window)


async def tether_asyncio(url, seconds, window):
    from tether import websockets

    return await _websockets_shaped(websockets, url, seconds, window)


async def websockets_asyncio(url, seconds, window):
    import websockets

    return await _websockets_shaped(websockets, url, seconds, window)


async def aiohttp_asyncio(url, seconds, window):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, compress=0, autoping=True) as ws:
            return await _pump(ws.send_bytes, ws.receive, seconds, window)


async def picows_asyncio(url, seconds, window):
    import picows

    class Client(picows.WSListener):
        count = 0
        end = 0.0
        done = None

        def on_ws_connected(self, transport):
            self.end = time.perf_counter() + seconds
            for _ in range(window):
                transport.send(picows.WSMsgType.BINARY, PAYLOAD)

        def on_ws_frame(self, transport, frame):
            if frame.msg_type != picows.WSMsgType.BINARY:
                return
            self.count += 1
            if self.count % 64 == 0 and time.perf_counter() >= self.end:
                transport.send_close(picows.WSCloseCode.OK)
                transport.disconnect()
                return
            transport.send(picows.WSMsgType.BINARY, PAYLOAD)

    transport, client = await picows.ws_connect(Client, url)
    await transport.wait_disconnected()
    return client.count


def tether_sync(url, seconds, window):
    from tether import websocket

    ws = websocket.create_connection(url)
    count = _pump_blocking(ws.send_bytes, ws.recv, seconds, window)
    ws.close()
    return count


def websocket_client_sync(url, seconds, window):
    import websocket

    ws = websocket.create_connection(url, enable_multithread=False)
    count = _pump_blocking(ws.send_bytes, ws.recv, seconds, window)
    ws.close()
    return count


CLIENTS = {
    "tether (asyncio)": tether_asyncio,
    "tether (sync)": tether_sync,
    "picows": picows_asyncio,
    "websockets": websockets_asyncio,
    "aiohttp": aiohttp_asyncio,
    "websocket-client": websocket_client_sync,
}


def run_client(name, url, seconds, window):
    function = CLIENTS[name]
    started = time.perf_counter()
    if asyncio.iscoroutinefunction(function):
        count = asyncio.run(function(url, seconds, window))
    else:
        count = function(url, seconds, window)
    return count / max(time.perf_counter() - started, 1e-9)


# -- broadcast servers: each relays every message to every client --------------------


# The same program for websockets and tether.websockets: only the import differs.
_WEBSOCKETS_SERVER = """
import asyncio, sys
%s
async def handler(ws):
    async for message in ws:
        websockets.broadcast(server.connections, message)
async def main():
    global server
    server = await websockets.serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None,
                                    ping_interval=None, max_queue=None, write_limit=2**20)
    await asyncio.Future()
asyncio.run(main())
"""

SERVERS = {
    "tether": _WEBSOCKETS_SERVER % "from tether import websockets",
    "websockets": _WEBSOCKETS_SERVER % "import websockets",
    "picows": """
import asyncio, sys
import picows
clients = set()
class Server(picows.WSListener):
    def on_ws_connected(self, transport):
        self.transport = transport
        clients.add(transport)
    def on_ws_disconnected(self, transport):
        clients.discard(transport)
    def on_ws_frame(self, transport, frame):
        if frame.msg_type == picows.WSMsgType.BINARY:
            payload = frame.get_payload_as_bytes()
            for client in clients:
                client.send(picows.WSMsgType.BINARY, payload)
        elif frame.msg_type == picows.WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
async def main():
    server = await picows.ws_create_server(lambda request: Server(), "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
""",
    "aiohttp": """
import asyncio, sys
from aiohttp import web, WSMsgType
clients = set()
async def handler(request):
    ws = web.WebSocketResponse(compress=False, autoping=True)
    await ws.prepare(request)
    clients.add(ws)
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                for client in clients:
                    if not client.closed:
                        asyncio.ensure_future(client.send_bytes(message.data))
    finally:
        clients.discard(ws)
    return ws
app = web.Application()
app.router.add_get("/", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
""",
}


def run_broadcast(name, tether_bin, clients, rate, seconds):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVERS[name], str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_port(port)
        # The clients' first messages spread over one period, so that the
        # load is steady from the start: clients x rate broadcasts a second.
        ramp = max(1.0 / rate, 1.0)
        bench = subprocess.run(
            [tether_bin, "bench", "ws://127.0.0.1:%d/" % port, "--clients", str(clients), "--ramp-up", str(ramp),
             "--rate", str(rate), "--size", "64", "--duration", str(seconds + ramp), "--json", "--quiet",
             "--threads", "1"],
            capture_output=True, text=True, timeout=seconds + 120)
        report = json.loads(bench.stdout)
    finally:
        server.kill()
        server.wait()
    messages = report["messages"]
    delivered = messages["echoed"] + messages["from_others"]
    # What a server that keeps up delivers: each message to every client
    # connected when it was sent (clients join evenly over the ramp).
    expected = 0
    for client in range(clients):
        joined = ramp * client / clients
        sent_at = joined
        while sent_at < ramp + seconds:
            expected += min(clients, int(clients * sent_at / ramp) + 1)
            sent_at += 1.0 / rate
    expected *= messages["sent"] / max(1, sum(
        int((ramp + seconds - ramp * client / clients) * rate) + 1 for client in range(clients)))
    return {
        "deliveries_per_second": delivered / report["seconds"],
        "offered_per_second": expected / report["seconds"],
        "kept_up": delivered >= 0.95 * expected,
        "p50_ms": report["latency_ms"]["p50"],
        "p99_ms": report["latency_ms"]["p99"],
        "established": report["connections"]["established"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tether-bin", required=True)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rates", default="0.1,0.2,0.4,0.8,1.6",
                        help="messages per second per client tried for the broadcast row")
    parser.add_argument("--only", help="comma-separated rows: pingpong,pipelined,broadcast")
    parser.add_argument("--libraries", help="comma-separated libraries to run (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = set((args.only or "pingpong,pipelined,broadcast").split(","))
    results = {}

    port = free_port()
    echo = subprocess.Popen([args.tether_bin, "serve", "--listen", "127.0.0.1:%d" % port, "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        url = "ws://127.0.0.1:%d/" % port
        for row, window in (("pingpong", 1), ("pipelined", WINDOW)):
            if row not in rows:
                continue
            results[row] = {}
            for name in CLIENTS:
                if args.libraries and name.split(" ")[0] not in args.libraries.split(","):
                    continue
                results[row][name] = run_client(name, url, args.seconds, window)
                print("%-10s %-18s %12.0f /s" % (row, name, results[row][name]), file=sys.stderr, flush=True)
    finally:
        echo.kill()
        echo.wait()

    if "broadcast" in rows:
        results["broadcast"] = {}
        for name in SERVERS:
            if args.libraries and name not in args.libraries.split(","):
                continue
            best = None
            for rate in [float(r) for r in args.rates.split(",")]:
                outcome = run_broadcast(name, args.tether_bin, args.clients, rate, args.seconds)
                outcome["rate_per_client"] = rate
                print("broadcast  %-18s rate %.2f: %s" % (name, rate, outcome), file=sys.stderr, flush=True)
                if not outcome["kept_up"]:
                    break
                best = outcome
            results["broadcast"][name] = best
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for row in ("pingpong", "pipelined"):
        if row in results:
            base = results[row]["websockets"]
            print("\n%s (%s)" % (row, "round trips/s" if row == "pingpong" else "messages/s"))
            for name, value in sorted(results[row].items(), key=lambda item: -item[1]):
                print("  %-18s %10.0f  %5.2fx websockets" % (name, value, value / base))
    if "broadcast" in results:
        print("\nbroadcast to %d clients (highest load kept up with)" % args.clients)
        for name, best in results["broadcast"].items():
            if best is None:
                print("  %-18s did not keep up at the lowest rate" % name)
            else:
                print("  %-18s %10.0f deliveries/s  p50 %.1f ms  p99 %.1f ms" % (
                    name, best["deliveries_per_second"], best["p50_ms"], best["p99_ms"]))


if __name__ == "__main__":
    main()
