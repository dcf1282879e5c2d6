#!/usr/bin/env python3
"""Seed 003's manual (application-level, JSON) heartbeat client, on Python
`websockets` 15 (asyncio API).

Usage: seed_heartbeat_client.py URL [--interval 20] [--timeout 30] [--count N]
                                [--cafile CA.pem] [--close-timeout 10]
                                [--protocol-pings]

As in seed 003 (`manual_heartbeat_client`), two tasks run side by side:
  - heartbeat: send the text message
      json.dumps({"type": "ping", "timestamp": loop.time()})
    e.g. `{"type": "ping", "timestamp": 1234.5678}` (loop.time() is the event
    loop's monotonic clock, in seconds), then sleep --interval; the first ping
    goes out right after the handshake.
  - receiver: every recv() is bounded by --timeout; ANY message (not only a
    pong) resets that timer. A JSON object with "type" == "pong" is a
    heartbeat answer; anything else is a business message.
When one task ends the other is cancelled and the connection is closed with
1000 (leaving `async with connect(...)`).

stdout (one line each):
  CONNECTED                     once the handshake is done
  PONG rtt_ms=<float>           per pong; RTT from the echoed timestamp
                                (`nan` if it is not a number we can use)
  MESSAGE <text>                JSON that is not a pong (newlines escaped)
  NONJSON <text>                a message that is not JSON (seed: warning)
  DONE pongs=<n>                --count reached; closed with 1000; exit 0
  TIMEOUT                       nothing received for --timeout s; the client
                                then closes with 1000 (as the seed does); exit 2
  CLOSED code=<c> reason=<r>    the connection closed first; exit 1 (exit 0
                                without --count if the code is 1000 or 1001)
  ERROR seed_heartbeat_client: <reason>   connect/other failure; exit 1
Logs go to stderr. Bad arguments: argparse usage, exit 2.

Deviations from the seed, for testing: --count; protocol keepalive pings are
off unless --protocol-pings (the seed's bare connect() keeps websockets'
defaults, ping_interval=20 / ping_timeout=20); JSON that is not an object is
reported as MESSAGE (the seed's `message.get` would raise and end the
receiver task).
"""

import argparse
import asyncio
import json
import math
import sys

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

NAME = "seed_heartbeat_client"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_TIMEOUT = 2


def out(line):
    print(line, flush=True)


def one_line(msg):
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "backslashreplace")
    return msg.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


async def send_heartbeat(websocket, interval, sent):
    """Send {"type": "ping", "timestamp": loop.time()} every `interval` s."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            ts = loop.time()
            sent.add(ts)
            await websocket.send(json.dumps({"type": "ping", "timestamp": ts}))
            c.log("%s: sent heartbeat ping timestamp=%r" % (NAME, ts))
            await asyncio.sleep(interval)
        except ConnectionClosed:
            c.log("%s: connection closed while sending heartbeat" % NAME)
            return "closed"


async def handle_responses(websocket, timeout, count, sent):
    """Receive everything; a missing message for `timeout` s ends the run."""
    loop = asyncio.get_running_loop()
    pongs = 0
    while True:
        try:
            response = await asyncio.wait_for(websocket.recv(), timeout=timeout)
        except asyncio.TimeoutError:
            c.log("%s: nothing received within %s s: peer considered gone" % (NAME, timeout))
            return "timeout"
        except ConnectionClosed:
            c.log("%s: connection closed" % NAME)
            return "closed"
        now = loop.time()
        try:
            message = json.loads(response)
        except (json.JSONDecodeError, UnicodeDecodeError):
            c.log("%s: non-JSON message" % NAME)
            out("NONJSON %s" % one_line(response))
            continue
        if isinstance(message, dict) and message.get("type") == "pong":
            ts = message.get("timestamp")
            if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
                rtt = (now - ts) * 1000.0
                if ts not in sent:
                    c.log("%s: pong timestamp %r matches no ping sent" % (NAME, ts))
            else:
                rtt = float("nan")
                c.log("%s: pong without a usable timestamp: %r" % (NAME, ts))
            pongs += 1
            out("PONG rtt_ms=%.3f" % rtt)
            if count and pongs >= count:
                return "done"
        else:
            out("MESSAGE %s" % one_line(response))


async def run(args):
    ssl_ctx = c.client_ssl_context(args.url, args.cafile)
    kwargs = {}
    if not args.protocol_pings:
        kwargs["ping_interval"] = None
    sent = set()
    try:
        async with connect(args.url, ssl=ssl_ctx, close_timeout=args.close_timeout,
                           **kwargs) as websocket:
            out("CONNECTED")
            heartbeat_task = asyncio.create_task(
                send_heartbeat(websocket, args.interval, sent))
            receive_task = asyncio.create_task(
                handle_responses(websocket, args.timeout, args.count, sent))
            done, pending = await asyncio.wait(
                [heartbeat_task, receive_task], return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            status = receive_task.result() if receive_task in done else heartbeat_task.result()
            if status == "timeout":
                out("TIMEOUT")  # before the (possibly slow) closing handshake
            elif status == "done":
                out("DONE pongs=%d" % args.count)
            # Leaving the block closes with 1000 (a no-op if already closed).
    except (OSError, asyncio.TimeoutError, ConnectionClosed) as e:
        out("ERROR %s: %s: %s" % (NAME, type(e).__name__, e))
        return EXIT_ERROR
    except Exception as e:  # handshake rejected, bad URL, ...
        out("ERROR %s: %s: %s" % (NAME, type(e).__name__, e))
        return EXIT_ERROR
    c.log("%s: closed code=%s reason=%r" % (NAME, websocket.close_code, websocket.close_reason))
    if status == "timeout":
        return EXIT_TIMEOUT
    if status == "done":
        return EXIT_OK
    out("CLOSED code=%s reason=%s" % (websocket.close_code, one_line(websocket.close_reason or "")))
    if not args.count and websocket.close_code in (1000, 1001):
        return EXIT_OK
    return EXIT_ERROR


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="ws://127.0.0.1:PORT/ or wss://127.0.0.1:PORT/")
    p.add_argument("--interval", type=float, default=20.0,
                   help="seconds between heartbeat pings (seed: 20)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds without any message before giving up (seed: 30)")
    p.add_argument("--count", type=int, default=0,
                   help="stop after N pongs, close with 1000, exit 0 (default 0: run forever)")
    p.add_argument("--cafile", help="PEM CA/cert to trust for wss://")
    p.add_argument("--close-timeout", type=float, default=10.0,
                   help="closing handshake limit in seconds (websockets default 10)")
    p.add_argument("--protocol-pings", action="store_true",
                   help="keep websockets' own keepalive pings (20 s / 20 s) as the seed does")
    args = p.parse_args()
    if args.interval <= 0 or args.timeout <= 0 or args.count < 0:
        p.error("--interval and --timeout must be > 0, --count >= 0")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
