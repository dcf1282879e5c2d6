#!/usr/bin/env python3
"""Matrix client on headless Chromium's native `WebSocket`, driven over CDP.

Usage: chromium_client.py URL [--cafile F] [--timeout 60] [--sizes a,b,..]
                          [--chromium /usr/bin/chromium] [--ignore-cert-errors]
Starts `chromium --headless ... --user-data-dir=<tmp> --remote-debugging-port=0
about:blank` (plus --ignore-certificate-errors for wss:// URLs or when
--ignore-cert-errors is given; --cafile is accepted for symmetry with the other
clients but Chromium does not use it), reads the DevTools port from
<tmp>/DevToolsActivePort, attaches to the page target with websocket-client
and Runtime.evaluate()s (awaitPromise) peer_matrix.js's runMatrix() with
`new WebSocket(URL)` and binaryType 'arraybuffer'. The page's console lines
(per-message timings) are copied to stderr. Chromium negotiates
permessage-deflate by itself.
Prints `OK <n> messages` and exits 0, or `ERROR ...` and exits 1. Chromium is
always killed (its process group, by PID) and the temp dir removed.
"""

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402

import websocket  # noqa: E402

NAME = "chromium_client"
HERE = os.path.dirname(os.path.abspath(__file__))

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Browser:
    def __init__(self, chromium, ignore_cert_errors):
        self.tmp = tempfile.mkdtemp(prefix="tether-chromium-")
        self.log_path = os.path.join(self.tmp, "chromium.log")
        self._lock = threading.Lock()
        self._cleaned = False
        args = [chromium] + CHROMIUM_FLAGS + [
            "--user-data-dir=" + self.tmp,
            "--remote-debugging-port=0",
        ]
        if ignore_cert_errors:
            args.append("--ignore-certificate-errors")
        args.append("about:blank")
        self._log = open(self.log_path, "wb")
        # Own session/process group so the renderer/zygote/utility children
        # can be killed together by the browser's PID.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        c.log("%s: started chromium pid %d, profile %s" % (NAME, self.proc.pid, self.tmp))

    def devtools_port(self, deadline):
        path = os.path.join(self.tmp, "DevToolsActivePort")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("chromium exited early with status %s; log tail:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                with open(path) as f:
                    lines = f.read().splitlines()
                if len(lines) >= 2 and lines[0].strip().isdigit():
                    return int(lines[0])
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise RuntimeError("no DevToolsActivePort after waiting; log tail:\n" + self.log_tail())

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def _signal_group_and_wait(self, pid, sig):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self):
        with self._lock:
            if self._cleaned:
                return
            self._cleaned = True
        pid = self.proc.pid
        try:
            if self.proc.poll() is None:
                self._signal_group_and_wait(pid, signal.SIGTERM)
            # Children (renderer, zygote, ...) share the group; make sure
            # none survive the browser process.
            self._signal_group_and_wait(pid, signal.SIGKILL)
        finally:
            self._log.close()
            for _ in range(20):
                shutil.rmtree(self.tmp, ignore_errors=True)
                if not os.path.exists(self.tmp):
                    break
                time.sleep(0.1)


def page_ws_url(port, deadline):
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                targets = json.load(r)
            for t in targets:
                if t.get("type") == "page" and t.get("webSocketDebuggerUrl"):
                    return t["webSocketDebuggerUrl"]
            last = "no page target in %r" % [t.get("type") for t in targets]
        except OSError as e:
            last = repr(e)
        time.sleep(0.1)
    raise RuntimeError("could not find the page target: %s" % last)


class Cdp:
    def __init__(self, ws_url, timeout):
        # Chromium refuses DevTools websockets that carry an Origin header
        # unless --remote-allow-origins is given: send none.
        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.ids = itertools.count(1)
        self.last_page_log = None

    def call(self, method, params, deadline):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("CDP %s timed out" % method)
            self.ws.settimeout(remaining)
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                raise TimeoutError("no answer to CDP %s in time (last page log: %r)"
                                   % (method, self.last_page_log)) from None
            if msg.get("method") == "Runtime.consoleAPICalled":
                args = msg["params"].get("args", [])
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                self.last_page_log = text
                c.log("%s: page: %s" % (NAME, text))
                continue
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError("CDP %s failed: %r" % (method, msg["error"]))
                return msg["result"]

    def close(self):
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001
            pass


def page_expression(url, sizes):
    with open(os.path.join(HERE, "peer_matrix.js"), encoding="utf-8") as f:
        src = f.read()
    return (
        "(function () {\n" + src + "\n"
        "return runMatrix(function () { return new WebSocket(%s); }, %s,\n"
        "                 function (m) { console.log(m); })\n"
        "  .then(function (n) { return {ok: true, n: n}; },\n"
        "        function (e) { return {ok: false, error: String(e && e.message || e)}; });\n"
        "})()" % (json.dumps(url), json.dumps(list(sizes)))
    )


def run(args, browser, deadline):
    port = browser.devtools_port(deadline)
    c.log("%s: DevTools on port %d" % (NAME, port))
    cdp = Cdp(page_ws_url(port, deadline), max(1.0, deadline - time.monotonic()))
    try:
        cdp.call("Runtime.enable", {}, deadline)
        t0 = time.monotonic()
        res = cdp.call("Runtime.evaluate", {
            "expression": page_expression(args.url, args.sizes),
            "awaitPromise": True,
            "returnByValue": True,
        }, deadline)
        c.log("%s: matrix ran in %.2f s" % (NAME, time.monotonic() - t0))
    finally:
        cdp.close()
    if "exceptionDetails" in res:
        raise RuntimeError("page exception: %s" % json.dumps(res["exceptionDetails"])[:2000])
    value = res.get("result", {}).get("value")
    if not isinstance(value, dict):
        raise RuntimeError("unexpected evaluate result: %r" % (res,))
    if not value.get("ok"):
        raise RuntimeError(value.get("error", "unknown page error"))
    return value["n"]


def main():
    p = c.client_argparser(__doc__)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--ignore-cert-errors", action="store_true",
                   help="pass --ignore-certificate-errors (implied by a wss:// URL)")
    args = p.parse_args()
    deadline = time.monotonic() + args.timeout - 3  # leave time for cleanup

    browser = None
    state = {"browser": None}

    def on_timeout():
        print("ERROR %s: timed out after %.0f s" % (NAME, args.timeout), flush=True)
        if state["browser"] is not None:
            state["browser"].cleanup()
        os._exit(1)

    watchdog = threading.Timer(args.timeout, on_timeout)
    watchdog.daemon = True
    watchdog.start()

    def on_sigterm(signum, frame):
        raise SystemExit("ERROR %s: terminated by signal %d" % (NAME, signum))

    signal.signal(signal.SIGTERM, on_sigterm)

    rc = 1
    try:
        browser = Browser(args.chromium, args.ignore_cert_errors or args.url.startswith("wss://"))
        state["browser"] = browser
        n = run(args, browser, deadline)
        print("OK %d messages" % n, flush=True)
        rc = 0
    except SystemExit as e:
        print(e.code if isinstance(e.code, str) else "ERROR %s: exit" % NAME, flush=True)
    except BaseException as e:  # noqa: BLE001
        print("ERROR %s: %s: %s" % (NAME, type(e).__name__, e), flush=True)
    finally:
        watchdog.cancel()
        if browser is not None:
            browser.cleanup()
    sys.exit(rc)


if __name__ == "__main__":
    main()
