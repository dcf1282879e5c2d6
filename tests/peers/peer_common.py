"""Shared helpers for the Python interop peers (payload matrix, TLS, watchdog).

Not a peer itself: imported by py_websockets_*.py and py_websocket_client.py.
"""

import argparse
import hashlib
import os
import ssl
import sys
import threading

# The interop matrix: every size is sent once as text and once as binary.
SIZES = (0, 125, 126, 64 * 1024, 16 * 1024 * 1024)
# Message size limit configured on every peer (must exceed the largest size).
MAX_MESSAGE = 64 * 1024 * 1024
# Per-client wall clock limit in seconds.
DEFAULT_TIMEOUT = 60.0

# Characters the text payloads are drawn from: single-byte ASCII, plus 2-, 3-
# and 4-byte UTF-8 sequences, plus a few longer words so that deflate finds
# repeats. Each byte of a SHAKE-256 stream picks one entry.
_TOKENS = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_!?")
    + ["é", "ß", "ñ", "ø", "Ω", "д", "ж", "λ", "ü", "ç"]  # 2 bytes
    + ["€", "中", "文", "日", "本", "✓", "→", "…", "한", "あ"]  # 3 bytes
    + ["😀", "🦀", "𝄞", "🚀", "🌍"]  # 4 bytes
    + ["tether ", "websocket ", "permessage-deflate ", "\n"]
)
_TOKEN_TABLE = [_TOKENS[i % len(_TOKENS)] for i in range(256)]


def _stream(label, n):
    """n deterministic pseudo-random bytes for a label."""
    return hashlib.shake_256(label.encode()).digest(n) if n else b""


def binary_payload(n):
    """n bytes: alternating 4 KiB blocks of pseudo-random bytes and of a
    repeated pattern (so both the stored and compressed deflate paths run)."""
    rnd = _stream("tether-binary-%d" % n, n)
    pattern = (bytes(range(256)) + b"tether-binary-pattern\x00\xff") * 17
    parts = []
    block = 4096
    for off in range(0, n, block):
        end = min(n, off + block)
        if (off // block) % 2 == 0:
            parts.append(rnd[off:end])
        else:
            parts.append(pattern[: end - off])
    data = b"".join(parts)
    assert len(data) == n
    return data


def text_payload(n):
    """A str whose UTF-8 encoding is exactly n bytes and which contains
    multi-byte characters (2, 3 and 4 byte) whenever n allows."""
    if n == 0:
        return ""
    chunks = []
    total = 0
    counter = 0
    while total < n:
        rnd = _stream("tether-text-%d-%d" % (n, counter), max(64, (n - total) // 2 + 16))
        piece = "".join(map(_TOKEN_TABLE.__getitem__, rnd))
        chunks.append(piece)
        total += len(piece.encode("utf-8"))
        counter += 1
    # Guarantee at least one char of each width when there is room.
    head = "é€🦀" if n >= 9 else ""
    raw = (head + "".join(chunks)).encode("utf-8")[:n]
    # Cut at a character boundary, then pad with ASCII to the exact size.
    text = raw.decode("utf-8", "ignore")
    text += "x" * (n - len(text.encode("utf-8")))
    assert len(text.encode("utf-8")) == n
    return text


def matrix(sizes=SIZES):
    """List of (label, payload): for each size a text (str) then a binary
    (bytes) message."""
    out = []
    for n in sizes:
        out.append(("text/%d" % n, text_payload(n)))
        out.append(("binary/%d" % n, binary_payload(n)))
    return out


def describe_mismatch(expected, got):
    if type(expected) is not type(got):
        return "type mismatch: expected %s, got %s" % (
            type(expected).__name__,
            type(got).__name__,
        )
    if len(expected) != len(got):
        return "length mismatch: expected %d, got %d" % (len(expected), len(got))
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return "content mismatch at index %d (expected %r, got %r)" % (i, a, b)
    return "no mismatch"


def parse_sizes(s):
    return tuple(int(x) for x in s.split(",") if x.strip() != "")


def client_argparser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("url", help="ws://127.0.0.1:PORT/ or wss://127.0.0.1:PORT/")
    p.add_argument("--cafile", help="PEM CA/cert to trust for wss://")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="overall time limit in seconds (default 60)")
    p.add_argument("--sizes", type=parse_sizes, default=SIZES,
                   help="comma-separated sizes (default 0,125,126,65536,16777216)")
    return p


def server_argparser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert", help="PEM certificate chain (enables TLS)")
    p.add_argument("--key", help="PEM private key")
    return p


def client_ssl_context(url, cafile):
    if not url.startswith("wss://"):
        return None
    return ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()


def server_ssl_context(cert, key):
    if not cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def start_watchdog(seconds, name):
    """Hard-exit with status 1 if the client has not finished in time."""

    def fire():
        print("ERROR %s: timed out after %.0f s" % (name, seconds), flush=True)
        os._exit(1)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t


def log(msg):
    print(msg, file=sys.stderr, flush=True)
