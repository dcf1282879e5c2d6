#!/usr/bin/env python3
"""Two headless Chromium pages chat on `tether serve --demo`.

Usage: chromium_demo.py URL --screenshot PNG [--timeout 60] [--chromium /usr/bin/chromium]
Opens URL?room=lobby&name=alice and URL?room=lobby&name=bob in two tabs of
one headless Chromium (driven over CDP, as chromium_client.py does), waits
until both pages say "connected", makes alice send a message (the page's own
demoSend, as the Send button does), waits until bob's page shows it, and
saves a screenshot of bob's page to PNG. Prints `OK` and exits 0, or
`ERROR ...` and exits 1. Chromium is always killed and its profile removed.
"""

import argparse
import base64
import json
import sys
import time
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True
import peer_common as c  # noqa: E402
from chromium_client import Browser, Cdp  # noqa: E402

MESSAGE = "hello from alice"


def new_page(port, url, deadline):
    """Opens a tab on `url`; its DevTools websocket URL."""
    # The page URL is the query: escape its own `?`, `&` and `=`.
    target = urllib.parse.quote(url, safe=":/")
    request = urllib.request.Request("http://127.0.0.1:%d/json/new?%s" % (port, target), method="PUT")
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return json.load(r)["webSocketDebuggerUrl"]
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise RuntimeError("could not open a tab: %r" % last)


def evaluate(cdp, expression, deadline):
    result = cdp.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, deadline)
    return result.get("result", {}).get("value")


def wait_until(cdp, expression, what, deadline):
    while time.monotonic() < deadline:
        if evaluate(cdp, expression, deadline):
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    browser = Browser(args.chromium, ignore_cert_errors=False)
    pages = []
    try:
        port = browser.devtools_port(deadline)
        base = args.url.rstrip("/") + "/"
        for name in ("alice", "bob"):
            pages.append(Cdp(new_page(port, "%s?room=lobby&name=%s" % (base, name), deadline), args.timeout))
        alice, bob = pages
        for page, name in ((alice, "alice"), (bob, "bob")):
            wait_until(page, "document.getElementById('status') && "
                             "document.getElementById('status').textContent === 'connected'",
                       name + "'s page to connect", deadline)
        evaluate(alice, "window.demoSend(%s)" % json.dumps(MESSAGE), deadline)
        wait_until(bob, "document.getElementById('messages').textContent.includes(%s)"
                   % json.dumps("alice: " + MESSAGE), "bob's page to show alice's message", deadline)
        shot = bob.call("Page.captureScreenshot", {"format": "png"}, deadline)
        with open(args.screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        shown = evaluate(bob, "document.getElementById('messages').textContent", deadline)
        c.log("chromium_demo: bob's page shows %r" % shown)
        print("OK", flush=True)
        return 0
    except Exception as e:  # noqa: BLE001
        print("ERROR %s" % e, flush=True)
        c.log("chromium_demo: %s; chromium log tail:\n%s" % (e, browser.log_tail()))
        return 1
    finally:
        for page in pages:
            page.close()
        browser.cleanup()


if __name__ == "__main__":
    sys.exit(main())
