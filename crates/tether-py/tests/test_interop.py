"""Interop of the package with peers nobody here wrote: its clients against
Python websockets, Node ws and ``tether serve``; its server against
websocket-client (both APIs), Python websockets, Node ws and headless
Chromium. Every pair runs the shared matrix of ``tests/peers`` (text and
binary messages of 0 B to 16 MiB, checked by type and byte for byte, then a
1000 close both ways)."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, ListeningPeer, start_tether

PEERS = ROOT / "tests" / "peers"
DEPS = pathlib.Path(os.environ.get("TETHER_DEPS", pathlib.Path.home() / ".cache" / "tether-deps"))
NODE_PATH = DEPS / "node" / "node_modules"


def node_command(script):
    if not shutil.which("node") or not (NODE_PATH / "ws").is_dir():
        pytest.skip("Node ws is not installed (scripts/install-deps.sh)")
    return ["node", str(PEERS / script)]


class Peer(ListeningPeer):
    """A peer server speaking the common interface (prints LISTENING port)."""

    def __init__(self, argv):
        env = dict(os.environ, NODE_PATH=str(NODE_PATH))
        super().__init__(argv + ["--host", "127.0.0.1", "--port", "0"], env=env)
        self.url = "ws://127.0.0.1:%d/" % self.port


def run_client(argv, url):
    env = dict(os.environ, NODE_PATH=str(NODE_PATH))
    done = subprocess.run(argv + [url], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.startswith("OK 10 messages"), (done.stdout, done.stderr[-3000:])


OUR_CLIENTS = {
    "asyncio": [sys.executable, str(PEERS / "tether_py_client.py"), "--mode", "asyncio"],
    "create_connection": [sys.executable, str(PEERS / "tether_py_client.py"), "--mode", "create_connection"],
}


@pytest.mark.parametrize("client", sorted(OUR_CLIENTS))
@pytest.mark.parametrize("server", ["python websockets", "node ws", "tether serve"])
def test_our_clients_against_other_servers(client, server):
    if server == "tether serve":
        running = start_tether("--max-message-size", str(64 * 2**20))
    elif server == "node ws":
        running = Peer(node_command("node_ws_server.js"))
    else:
        running = Peer([sys.executable, str(PEERS / "py_websockets_server.py")])
    try:
        run_client(OUR_CLIENTS[client], running.url)
    finally:
        running.stop()


def other_client(name):
    if name == "node ws":
        return node_command("node_ws_client.js")
    if name == "chromium":
        if not pathlib.Path("/usr/bin/chromium").exists():
            pytest.skip("Chromium is not installed (scripts/install-deps.sh)")
        return [sys.executable, str(PEERS / "chromium_client.py"), "--chromium", "/usr/bin/chromium"]
    if name == "python websockets":
        return [sys.executable, str(PEERS / "py_websockets_client.py")]
    mode = "create_connection" if name == "websocket-client create_connection" else "app"
    return [sys.executable, str(PEERS / "py_websocket_client.py"), "--mode", mode]


@pytest.mark.parametrize("client", ["websocket-client create_connection", "websocket-client app",
                                    "python websockets", "node ws", "chromium"])
def test_our_server_against_other_clients(client):
    argv = other_client(client)
    server = Peer([sys.executable, str(PEERS / "tether_py_server.py")])
    try:
        run_client(argv, server.url)
    finally:
        server.stop()
