"""Fixtures: echo servers on free loopback ports, started and stopped by PID.

``tether_server``: ``tether serve`` (``TETHER_BIN``, default the repository's
release or debug build). ``websockets_server``: Python websockets. ``echo_url``
runs a test against each in turn.
"""

import asyncio
import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
HERE = pathlib.Path(__file__).resolve().parent


def tether_bin():
    if os.environ.get("TETHER_BIN"):
        return os.environ["TETHER_BIN"]
    for profile in ("release", "debug"):
        candidate = ROOT / "target" / profile / "tether"
        if candidate.exists():
            return str(candidate)
    pytest.skip("no tether binary: build it, or set TETHER_BIN")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, process, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError("the server exited with %s" % process.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not listen on %d" % port)


class Server:
    def __init__(self, argv, port):
        self.port = port
        self.url = "ws://127.0.0.1:%d/" % port
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(port, self.process)

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.process.stderr.close()


class ListeningPeer:
    """A peer process that prints ``LISTENING <port>`` once it listens
    (``tests/peers``' common interface); stopped by PID."""

    def __init__(self, argv, env=None):
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError("%s: %r %s" % (" ".join(argv), line, self.process.stderr.read()))
        self.port = int(line.split()[1])

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.asynccontextmanager
async def holding_server(**options):
    """A ``tether.websockets`` server on a free loopback port whose handler
    hands each connection to a queue and holds it open until it closes:
    yields (url, server, queue of server-side connections)."""
    from tether import websockets

    joined = asyncio.Queue()

    async def handler(ws):
        await joined.put(ws)
        await ws.wait_closed()

    async with websockets.serve(handler, "127.0.0.1", 0, **options) as server:
        yield "ws://127.0.0.1:%d/" % server.sockets[0].getsockname()[1], server, joined


def start_tether(*flags):
    port = free_port()
    return Server([tether_bin(), "serve", "--listen", "127.0.0.1:%d" % port, *flags], port)


def start_websockets():
    port = free_port()
    return Server([sys.executable, str(HERE / "peers" / "websockets_echo.py"), str(port)], port)


@pytest.fixture
def tether_server():
    server = start_tether()
    yield server
    server.stop()


@pytest.fixture(params=["tether", "websockets"])
def echo_url(request):
    server = start_tether() if request.param == "tether" else start_websockets()
    yield server.url
    server.stop()
