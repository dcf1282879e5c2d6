"""Seeds 002 and 003's websockets programs, run unchanged but for the import
line (``tests/seeds/``): against each other, against the same programs on
Python websockets itself, and against ``tether serve``.

The seeds listen on and connect to fixed ports (9999, 8765); each run
moves them to a free port (the one text change made at run time), so that
runs can go side by side.
"""

import pathlib
import queue
import re
import subprocess
import sys
import threading
import time

import pytest

from conftest import HERE, ROOT, free_port, start_tether, wait_for_port

SEEDS = HERE / "seeds"
ORIGINALS = ROOT.parent / "shared" / "seeds"


def program(name, port, original_port, on_websockets=False):
    """The seed's code on ``port``; with ``on_websockets``, the very seed
    (its own import line) for Python websockets."""
    code = (SEEDS / name).read_text(encoding="utf-8").replace(str(original_port), str(port))
    if on_websockets:
        code = code.replace("from tether import websockets\n", "import websockets\n")
    return code


class Running:
    """A program started with ``python -c``; its output lines as they come."""

    def __init__(self, code, stdin=None):
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        if stdin is not None:
            self.process.stdin.write(stdin)
            self.process.stdin.flush()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, pattern, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if re.search(pattern, line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line matches %r in:\n%s" % (pattern, "\n".join(self.lines)))
            try:
                self.lines.append(self._queue.get(timeout=left))
            except queue.Empty:
                pass

    def finish(self, timeout=60):
        code = self.process.wait(timeout)
        time.sleep(0.1)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return code

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def test_002_the_reply_server_and_39_short_connections_on_both_sides():
    # Three pairs side by side (each client takes 39 s: it sleeps 1 s per round):
    # ours with ours, our client with websockets' server, websockets' client with ours.
    pairs = []
    for server_on_websockets, client_on_websockets in ((False, False), (True, False), (False, True)):
        port = free_port()
        server = Running(program("seed_002_b_reply_server.py", port, 9999, server_on_websockets))
        wait_for_port(port, server.process)
        client = Running(program("seed_002_d_short_connections.py", port, 9999, client_on_websockets))
        pairs.append((server, client, (server_on_websockets, client_on_websockets)))
    try:
        for server, client, which in pairs:
            assert client.finish(timeout=90) == 0, (which, client.lines)
            replies = [line for line in client.lines if line.startswith("Data received as")]
            assert len(replies) == 39, (which, client.lines)
            for i, reply in enumerate(replies, 1):
                assert re.fullmatch(r'Data received as "\[%d\] - 客户端 → 服务端\."\.  time: \S+ \S+' % i, reply), reply
            # The server printed each reply too.
            server.wait_for(r'Data received as "\[39\] - 客户端 → 服务端\."')
    finally:
        for server, client, _ in pairs:
            server.stop()
            client.stop()


def test_003_protocol_heartbeat_server_and_client():
    port = free_port()
    server = Running(program("seed_003_b_heartbeat_server.py", port, 8765))
    try:
        wait_for_port(port, server.process)
        client = Running(program("seed_003_a_heartbeat_client.py", port, 8765), stdin="hello\n")
        try:
            client.wait_for(r"已连接到服务器: ws://localhost:%d" % port)
            server.wait_for(r"INFO:root:新客户端连接: \('(127\.0\.0\.1|::1)'")
            # The server's own ping (awaited), and the client's message.
            server.wait_for(r"已向 .* 发送 ping")
            server.wait_for(r"收到消息: hello")
            client.process.stdin.write("exit\n")
            client.process.stdin.flush()
            assert client.finish(timeout=20) == 0, client.lines
            # The server saw the client leave and forgot it.
            server.wait_for(r"已从列表中移除")
        finally:
            client.stop()
    finally:
        server.stop()


@pytest.mark.parametrize("peer", ["websockets", "tether serve"])
def test_003_protocol_heartbeat_client_against_other_servers(peer):
    if peer == "tether serve":
        server = start_tether()
        port = server.port
    else:
        port = free_port()
        server = Running(open(HERE / "peers" / "websockets_echo.py").read().replace(
            'if __name__ == "__main__":\n    asyncio.run(main(int(sys.argv[1])))',
            "asyncio.run(main(%d))" % port))
        wait_for_port(port, server.process)
    client = Running(program("seed_003_a_heartbeat_client.py", port, 8765).replace("localhost", "127.0.0.1"),
                     stdin="echo me\n")
    try:
        client.wait_for(r"已连接到服务器")
        client.wait_for(r"收到消息: echo me")
        client.process.stdin.write("EXIT\n")
        client.process.stdin.flush()
        assert client.finish(timeout=20) == 0, client.lines
    finally:
        client.stop()
        server.stop()


@pytest.mark.parametrize("peer", ["seed server", "websockets"])
def test_003_manual_json_heartbeat(peer):
    port = free_port()
    if peer == "seed server":
        server = Running(program("seed_003_d_manual_heartbeat_server.py", port, 8765))
    else:
        server = Running("import runpy, sys; sys.argv = ['', '%d']; runpy.run_path(%r, run_name='__main__')"
                         % (port, str(HERE / "peers" / "websockets_json_pong.py")))
    try:
        wait_for_port(port, server.process)
        client = Running(program("seed_003_c_manual_heartbeat_client.py", port, 8765))
        try:
            client.wait_for(r"连接已建立")
            client.wait_for(r"已发送心跳 ping")
            pong = client.wait_for(r"收到心跳 pong: ")
            assert '"type": "pong"' in pong and '"timestamp": ' in pong, pong
            if peer == "seed server":
                server.wait_for(r"回复 pong")
        finally:
            client.stop()
    finally:
        server.stop()


@pytest.mark.skipif(not ORIGINALS.is_dir(), reason="the seeds are not beside this checkout")
def test_the_programs_here_are_the_seeds_but_for_the_import_line():
    texts = {name: (ORIGINALS / name).read_text(encoding="utf-8")
             for name in ("002_ebd60389d85baebd.txt", "003_086a275959c6c79b.txt")}
    for seed in sorted(SEEDS.glob("seed_00[23]_*.py")):
        ours = seed.read_text(encoding="utf-8")
        original = ours.replace("from tether import websockets\n", "import websockets\n", 1)
        assert original != ours, seed.name
        assert any(original.strip() in text for text in texts.values()), seed.name
