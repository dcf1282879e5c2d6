#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (fuzz/corpus/<target>/).

Deterministic: running it again rewrites the same files. Each seed starts
with the target's selector bytes (see the doc comment at the top of each
target in fuzz_targets/). Run from anywhere: python3 fuzz/gen_corpus.py
"""

import base64
import hashlib
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 §5.7's example key


def frame(opcode, payload, fin=True, rsv1=False, mask=MASK):
    head = bytearray([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(bit | n)
    elif n < 65536:
        head.append(bit | 126)
        head += struct.pack(">H", n)
    else:
        head.append(bit | 127)
        head += struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


def deflate(message, wbits=15, level=6, compressor=None):
    """One permessage-deflate message: raw deflate, sync flush, trailer removed."""
    c = compressor or zlib.compressobj(level, zlib.DEFLATED, -wbits)
    data = c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def write(target, name, data):
    path = os.path.join(ROOT, target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


# ---- frame_decoder: [selector, split_seed, wire...] -------------------------
# selector: bit0 client, bits1-2 deflate choice, bit3 echo, bit4 lazy events,
# bit5 close first.
SERVER, CLIENT = 0x00, 0x01
DEFLATE, DEFLATE_NCT, DEFLATE_SMALL = 0x02, 0x04, 0x06
ECHO, LAZY, CLOSE_FIRST = 0x08, 0x10, 0x20


def fd(name, selector, seed, wire):
    write("frame_decoder", name, bytes([selector, seed]) + wire)


hello = frame(TEXT, b"Hello")
fd("text_masked", SERVER | ECHO, 0, hello)
fd("text_bytewise", SERVER | ECHO, 1, hello + frame(BINARY, bytes(range(40))))
fd("text_unmasked_client", CLIENT | ECHO, 7, frame(TEXT, b"Hello", mask=None))
utf8 = "κόσμε 🎉 ok".encode()
fd(
    "fragmented_utf8_with_ping",
    SERVER | ECHO,
    9,
    frame(TEXT, utf8[:3], fin=False)
    + frame(PING, b"ping!")
    + frame(CONT, utf8[3:9], fin=False)
    + frame(CONT, utf8[9:])
    + frame(PONG, b""),
)
fd(
    "fragmented_binary_client",
    CLIENT | LAZY,
    3,
    frame(BINARY, b"\x00\x01", fin=False, mask=None)
    + frame(CONT, b"\x02" * 200, fin=False, mask=None)
    + frame(CONT, b"", mask=None),
)
fd("close_normal", SERVER, 0, frame(CLOSE, close_payload(1000, b"bye")))
fd("close_empty_client", CLIENT, 0, frame(CLOSE, b"", mask=None))
fd(
    "close_after_our_close",
    SERVER | CLOSE_FIRST,
    5,
    frame(PING, b"x") + frame(CLOSE, close_payload(1001)),
)
fd("message_then_close_lazy", SERVER | ECHO | LAZY, 0, hello + frame(CLOSE, close_payload(4000, "ок".encode())))
# A read that ends inside a ping's payload, right after a message the
# application echoes (compressed) before the rest of the ping arrives.
fd("echo_between_reads_of_a_ping", SERVER | DEFLATE | ECHO, 5, frame(TEXT, b"Hello world!!") + frame(PING, b"abcdefghij"))
fd("echo_between_reads_of_a_close", SERVER | DEFLATE | ECHO, 5, frame(TEXT, b"Hello world!!") + frame(CLOSE, close_payload(1000, b"12345678")))
# Errors, one per rule.
fd("err_unmasked_to_server", SERVER, 0, frame(TEXT, b"Hello", mask=None))
fd("err_masked_to_client", CLIENT, 0, hello)
fd("err_frame_too_large", SERVER, 11, frame(BINARY, b"z" * 1100))
fd("err_invalid_utf8", SERVER | ECHO, 0, hello + frame(TEXT, b"\xce\xba\xff"))
fd("err_bad_close_code", SERVER, 0, frame(CLOSE, close_payload(1005)))
fd("err_reserved_opcode", SERVER, 0, frame(0x3, b""))
fd("err_continuation_first", SERVER, 0, frame(CONT, b"x"))
fd("err_rsv1_without_deflate", SERVER, 0, frame(TEXT, b"x", rsv1=True))
fd("err_too_many_fragments", SERVER, 2, b"".join(frame(BINARY if i == 0 else CONT, b"ab", fin=(i == 9)) for i in range(10)))
fd("err_long_ping", SERVER, 0, frame(PING, b"p" * 126))
# permessage-deflate.
rfc_hello = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])  # RFC 7692 §7.2.3.1
fd("deflate_hello", SERVER | DEFLATE | ECHO, 0, frame(TEXT, rfc_hello, rsv1=True))
fd("deflate_hello_client", CLIENT | DEFLATE | ECHO, 1, frame(TEXT, rfc_hello, rsv1=True, mask=None))
ctx = zlib.compressobj(6, zlib.DEFLATED, -15)
m1 = deflate(b'{"type":"chat","text":"hello hello hello"}', compressor=ctx)
m2 = deflate(b'{"type":"chat","text":"hello again"}', compressor=ctx)
fd(
    "deflate_context_takeover",
    SERVER | DEFLATE | ECHO,
    13,
    frame(TEXT, m1, rsv1=True) + frame(TEXT, m2, rsv1=True),
)
big = deflate(("tether " * 150).encode())
fd(
    "deflate_fragmented",
    SERVER | DEFLATE_NCT | ECHO,
    4,
    frame(TEXT, big[:5], fin=False, rsv1=True) + frame(PING, b"") + frame(CONT, big[5:]),
)
fd("deflate_small_window", SERVER | DEFLATE_SMALL | ECHO, 0, frame(BINARY, deflate(bytes(range(256)) * 3, wbits=8 + 1), rsv1=True))
fd("err_deflate_bomb", SERVER | DEFLATE, 0, frame(BINARY, deflate(b"\0" * 100000, level=9), rsv1=True))
fd("err_deflate_garbage", SERVER | DEFLATE, 0, frame(BINARY, b"\xff\xff\xff\xff\x00\x12", rsv1=True))
fd("err_deflate_rsv1_continuation", SERVER | DEFLATE, 0, frame(TEXT, rfc_hello, fin=False, rsv1=True) + frame(CONT, b"", rsv1=True))

# ---- handshake_request: [selector, split_seed, head...] ---------------------
# selector: bits0-1 our deflate preferences, bit2 no subprotocols,
# bit7 the bytes are a Sec-WebSocket-Extensions value.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def req(lines):
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def hr(name, selector, seed, data):
    write("handshake_request", name, bytes([selector, seed]) + data)


base = [
    "GET /chat?room=1 HTTP/1.1",
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
]
hr("rfc_sample", 0, 0, req(base + ["Origin: http://example.com", "Sec-WebSocket-Protocol: chat, superchat"]))
hr(
    "deflate_offer_bytewise",
    0,
    1,
    req(base + ["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"]),
)
hr(
    "deflate_offers_small_windows",
    1,
    6,
    req(
        base
        + [
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8; client_max_window_bits=9",
            'Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits="10"',
        ]
    ),
)
hr("lowercase_keepalive", 2, 8, "\r\n".join(
    ["GET / HTTP/1.1", "host: a", "upgrade: WebSocket", "connection: keep-alive, Upgrade",
     f"sec-websocket-key: {KEY}", "sec-websocket-version: 13", "sec-websocket-protocol: v2.json.tether", "", ""]
).encode() + frame(TEXT, b"early frame"))
hr("err_post", 0, 0, req(["POST /chat HTTP/1.1"] + base[1:]))
hr("err_http10", 0, 0, req(["GET /chat HTTP/1.0"] + base[1:]))
hr("err_version_8", 0, 0, req(base[:-1] + ["Sec-WebSocket-Version: 8"]))
hr("err_missing_key", 0, 0, req(base[:4] + base[5:]))
hr("err_bad_key", 0, 0, req(base[:4] + ["Sec-WebSocket-Key: short"] + base[5:]))
hr("err_two_hosts", 0, 0, req(base + ["Host: evil.example.com"]))
hr("err_no_upgrade", 0, 0, req([base[0], base[1]]))
hr("err_bad_extension_syntax", 0, 0, req(base + ['Sec-WebSocket-Extensions: permessage-deflate; a="unclosed']))
hr("err_line_too_long", 0, 5, req(base + ["X-Long: " + "a" * 600]))
hr("err_malformed", 0, 0, b"GET\x00/ HTTP/1.1\r\n\r\n")
hr("ext_offers", 0x80, 0, b'permessage-deflate; client_max_window_bits; server_max_window_bits="10" , x-foo,permessage-deflate')
hr("ext_no_context", 0x82, 0, b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=8")
hr("ext_escaped_quotes", 0x81, 0, b'a; b="x\\"y\\\\z"; c=tok, ,  ,d')
hr("ext_bad_bits", 0x80, 0, b"permessage-deflate; server_max_window_bits=07; client_max_window_bits=16")

# ---- handshake_response: [selector, split_seed, head...] --------------------
# selector: bits0-1 our deflate offer, bit2 no subprotocols.
ACCEPT = base64.b64encode(hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
assert ACCEPT == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def hs(name, selector, seed, data):
    write("handshake_response", name, bytes([selector, seed]) + data)


ok = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {ACCEPT}"]
hs("rfc_sample", 0, 0, req(ok + ["Sec-WebSocket-Protocol: chat"]))
hs("no_protocol_bytewise", 4, 1, req(ok) + frame(TEXT, b"first", mask=None))
hs("deflate_defaults", 1, 0, req(ok + ["Sec-WebSocket-Extensions: permessage-deflate"]))
hs(
    "deflate_params",
    2,
    7,
    req(ok + ["Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=9"]),
)
hs("deflate_server_window", 3, 0, req(ok + ["Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10"]))
hs("err_403", 0, 0, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
hs("err_wrong_accept", 0, 0, req(ok[:3] + ["Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA="]))
hs("err_missing_upgrade", 0, 0, req([ok[0], ok[2], ok[3]]))
hs("err_unoffered_protocol", 0, 0, req(ok + ["Sec-WebSocket-Protocol: mqtt"]))
hs("err_unoffered_extension", 0, 0, req(ok + ["Sec-WebSocket-Extensions: permessage-deflate"]))
hs("err_window_too_large", 3, 0, req(ok + ["Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=15"]))
hs("err_missing_snct", 2, 0, req(ok + ["Sec-WebSocket-Extensions: permessage-deflate"]))
hs("err_two_extensions", 1, 0, req(ok + ["Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate"]))
hs("err_http_09", 0, 0, b"HTTP/1.1 101\r\n\r\n")

# ---- deflate_decoder: [selector, limit/8, split_seed, bytes...] ------------
# selector: bits0-2 window bits - 8, bit3 no context takeover, bits4-7 level.


def dd(name, selector, limit8, seed, data):
    write("deflate_decoder", name, bytes([selector, limit8, seed]) + data)


W15 = 7
dd("rfc_hello", W15 | 0x10, 255, 0, rfc_hello)
dd("rfc_hello_bytewise", W15 | 0x60, 255, 1, rfc_hello)
dd("json_split", W15 | 0x90, 64, 9, deflate(b'{"id":1,"name":"tether","tags":["ws","deflate"]}' * 4))
dd("exact_limit", W15, 100, 0, deflate(b"x" * 800))
dd("over_limit_bomb", W15 | 0x90, 16, 0, deflate(b"\0" * 50000, level=9))
dd("small_window", 1 | 0x8, 200, 5, deflate(bytes(range(256)) * 4, wbits=9))
final = zlib.compressobj(6, zlib.DEFLATED, -15)
dd("bfinal_stream", W15, 255, 0, final.compress(b"the end") + final.flush())
c = zlib.compressobj(1, zlib.DEFLATED, -15)
stored = zlib.compressobj(0, zlib.DEFLATED, -15)
dd("stored_block", W15, 255, 3, deflate(bytes(range(200)), compressor=stored))
dd("two_flushes", W15 | 0x8, 255, 2, c.compress(b"abcabcabc") + c.flush(zlib.Z_SYNC_FLUSH) + deflate(b"abcabc!", compressor=c))
dd("garbage", W15, 100, 0, b"\xff\xff\xff\xff\x00\x12")
dd("empty", W15 | 0x50, 0, 0, b"")

if __name__ == "__main__":
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"wrote {sum(len(fs) for _, _, fs in os.walk(ROOT))} seeds, {total} bytes, under {ROOT}")
