"""The package's server (``tether.websockets.serve``) under the faults the
kernel and the network hand a server: input that is not HTTP, a client
whose socket stops taking bytes, no descriptor left to accept with. Each
test checks that the server answers or keeps serving, and that what is
lost is logged."""

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time

from conftest import free_port, holding_server, wait_for_port
from tether import websockets


def answer_to(port, data):
    """Writes ``data`` on a raw connection; what came back, and how long."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        started = time.monotonic()
        raw.sendall(data)
        answer = b""
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer.decode("latin-1"), time.monotonic() - started


async def echo(ws):
    async for message in ws:
        await ws.send(message)


def test_input_that_is_not_http_is_answered_400_at_once_and_the_server_goes_on():
    client_hello = bytes([0x16, 0x03, 0x01, 0x00, 0xA5, 0x01, 0x00, 0x00, 0xA1, 0x03, 0x03, 0x5E])
    junk = bytes([0x00, 0xFF, 0x13, 0x37, 0x80, 0x81]) + b"\r\n\r\n"
    not_an_upgrade = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

    async def main():
        async with websockets.serve(echo, "127.0.0.1", 0, open_timeout=10) as server:
            port = server.sockets[0].getsockname()[1]
            for data in (client_hello, junk, not_an_upgrade):
                answer, took = await asyncio.to_thread(answer_to, port, data)
                assert answer.startswith("HTTP/1.1 4"), (data, answer)
                assert took < 1, "held for %.1f s" % took
            async with websockets.connect("ws://127.0.0.1:%d/" % port) as ws:
                await ws.send("still serving")
                assert await ws.recv() == "still serving"

    asyncio.run(main())


def test_a_client_that_stops_reading_is_skipped_by_broadcast_and_logged_while_others_get_everything(caplog):
    async def main():
        async with holding_server(compression=None, write_limit=2**16) as (url, server, joined):
            fast = await websockets.connect(url, compression=None, max_queue=None, max_size=None)
            # The slow one: a blocking client on a thread, which never calls recv.
            from tether import websocket

            slow = await asyncio.to_thread(websocket.create_connection, url)
            await joined.get()
            await joined.get()
            payload = b"x" * 10_000
            count = 2_000
            received = []

            async def read_all():
                while len(received) < count:
                    received.append(await fast.recv())

            reading = asyncio.ensure_future(read_all())
            skipped = 0
            for n in range(count):
                try:
                    websockets.broadcast(server.connections, payload, raise_exceptions=True)
                except Exception as group:  # noqa: BLE001 (an ExceptionGroup)
                    skipped += len(group.exceptions)
                await asyncio.sleep(0)  # one turn per broadcast: a real relay's pace
            await asyncio.wait_for(reading, 30)
            assert len(received) == count, "the reading client lost messages"
            assert skipped > 0, "20 MB went to a client that reads nothing"
            await fast.close()
            await asyncio.to_thread(slow.abort)
            return skipped

    with caplog.at_level(logging.WARNING):
        skipped = asyncio.run(main())
    logged = [record for record in caplog.records if "skipped broadcast" in record.getMessage()]
    assert len(logged) == skipped, "every skip is logged"


EMFILE_SERVER = textwrap.dedent("""
    import asyncio, resource, sys
    from tether import websockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    async def echo(ws):
        async for message in ws:
            await ws.send(message)
    async def main():
        async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1])):
            await asyncio.Future()
    asyncio.run(main())
""")


def test_out_of_descriptors_on_accept_the_server_logs_it_and_serves_again_once_some_close():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", EMFILE_SERVER, str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    logged = []
    reader = threading.Thread(target=lambda: logged.extend(server.stderr), daemon=True)
    reader.start()

    def said(what):
        return any(what in line for line in logged)

    try:
        wait_for_port(port, server)
        # 80 connections against 64 descriptors: the kernel completes them
        # all (the listen backlog is 100, so none waits on a full queue),
        # the server's accept fails with EMFILE past its limit.
        hogs = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(80)]
        deadline = time.monotonic() + 15
        while not said(b"Too many open files") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert said(b"Too many open files"), b"".join(logged)[-2000:]
        assert server.poll() is None, "the server died"
        for hog in hogs:
            hog.close()

        async def talk():
            async with websockets.connect("ws://127.0.0.1:%d/" % port, open_timeout=15) as ws:
                await ws.send("after the storm")
                return await ws.recv()

        started = time.monotonic()
        try:
            assert asyncio.run(talk()) == "after the storm"
        except Exception as error:
            raise AssertionError("not served again: %r; the server said %s" % (error, b"".join(logged)[-3000:]))
        print("served again %.1f s after the descriptors were freed" % (time.monotonic() - started))
    finally:
        server.kill()
        server.wait()
        reader.join(5)
