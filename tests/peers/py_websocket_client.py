#!/usr/bin/env python3
"""Matrix client on Python `websocket-client` (no compression: it has none).

Usage: py_websocket_client.py URL --mode create_connection|app
                              [--cafile F] [--timeout 60] [--sizes a,b,..]
  create_connection: blocking create_connection(), send()/recv(), close().
  app:               WebSocketApp with on_open/on_message/on_error/on_close
                     and run_forever(); each echo triggers the next send.
Checks every echo byte-for-byte and by type (str for text, bytes for binary),
closes with 1000 and expects the server's close frame with code 1000.
Prints `OK <n> messages` and exits 0, or `ERROR ...` and exits 1.
"""

import struct
import sys
import time

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

import websocket  # noqa: E402

NAME = "py_websocket_client"


def sslopt_for(args):
    ctx = c.client_ssl_context(args.url, args.cafile)
    return {"context": ctx} if ctx is not None else None


def check(label, payload, got):
    if type(got) is not type(payload) or got != payload:
        raise AssertionError("%s: %s" % (label, c.describe_mismatch(payload, got)))


def close_code(frame):
    if frame is None:
        return None
    if len(frame.data) < 2:
        return 1005
    return struct.unpack("!H", frame.data[:2])[0]


def run_create_connection(args, msgs):
    ws = websocket.create_connection(args.url, timeout=args.timeout,
                                     sslopt=sslopt_for(args))
    c.log("%s: connected (create_connection)" % NAME)
    try:
        for label, payload in msgs:
            t0 = time.monotonic()
            if isinstance(payload, str):
                ws.send_text(payload)
            else:
                ws.send_bytes(payload)
            got = ws.recv()
            check(label, payload, got)
            c.log("%s: %s echoed in %.3f s" % (NAME, label, time.monotonic() - t0))
        ws.close(status=websocket.STATUS_NORMAL, timeout=10)
        code = close_code(ws.close_frame)
        if code is None:
            raise AssertionError("no close frame received from server")
        if code != 1000:
            raise AssertionError("server close code %d (expected 1000)" % code)
    finally:
        ws.shutdown()


def run_app(args, msgs):
    state = {"i": 0, "t0": 0.0, "error": None, "close": "on_close not called",
             "opened": False, "done": False}

    def send_next(ws):
        label, payload = msgs[state["i"]]
        state["t0"] = time.monotonic()
        if isinstance(payload, str):
            ws.send_text(payload)
        else:
            ws.send_bytes(payload)

    def on_open(ws):
        state["opened"] = True
        c.log("%s: connected (WebSocketApp)" % NAME)
        if msgs:
            send_next(ws)
        else:
            state["done"] = True
            ws.close(status=websocket.STATUS_NORMAL, timeout=10)

    def on_message(ws, got):
        try:
            if state["done"]:
                raise AssertionError("unexpected extra message (%d bytes)" % len(got))
            label, payload = msgs[state["i"]]
            check(label, payload, got)
            c.log("%s: %s echoed in %.3f s" % (NAME, label, time.monotonic() - state["t0"]))
            state["i"] += 1
            if state["i"] < len(msgs):
                send_next(ws)
            else:
                state["done"] = True
                ws.close(status=websocket.STATUS_NORMAL, timeout=10)
        except Exception as e:  # noqa: BLE001
            state["error"] = state["error"] or "%s: %s" % (type(e).__name__, e)
            ws.close(status=1011, timeout=2)

    def on_error(ws, err):
        state["error"] = state["error"] or "on_error: %s: %s" % (type(err).__name__, err)

    def on_close(ws, code, reason):
        state["close"] = (code, reason)

    app = websocket.WebSocketApp(args.url, on_open=on_open, on_message=on_message,
                                 on_error=on_error, on_close=on_close)
    app.run_forever(sslopt=sslopt_for(args))
    if state["error"]:
        raise AssertionError(state["error"])
    if not state["opened"]:
        raise AssertionError("connection never opened")
    if not state["done"]:
        raise AssertionError("connection closed after %d of %d messages, close=%r"
                             % (state["i"], len(msgs), state["close"]))
    if not isinstance(state["close"], tuple) or state["close"][0] is None:
        raise AssertionError("no close frame received from server (%r)" % (state["close"],))
    if state["close"][0] != 1000:
        raise AssertionError("server close code %r (expected 1000)" % (state["close"][0],))


def main():
    p = c.client_argparser(__doc__)
    p.add_argument("--mode", choices=("create_connection", "app"), required=True)
    args = p.parse_args()
    c.start_watchdog(args.timeout, "%s --mode %s" % (NAME, args.mode))
    try:
        msgs = c.matrix(args.sizes)
        if args.mode == "create_connection":
            run_create_connection(args, msgs)
        else:
            run_app(args, msgs)
    except Exception as e:  # noqa: BLE001
        print("ERROR %s --mode %s: %s: %s" % (NAME, args.mode, type(e).__name__, e),
              flush=True)
        sys.exit(1)
    print("OK %d messages" % len(msgs), flush=True)


if __name__ == "__main__":
    main()
