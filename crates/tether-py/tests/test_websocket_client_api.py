"""``tether.websocket`` behaves as websocket-client does where programs
depend on it: return types, exception names and attributes, timeouts,
callbacks and their arguments, ``run_forever``'s checks and result."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import start_tether
from tether import websocket
from tether.websocket import ABNF, create_connection


# -- create_connection --------------------------------------------------------------


def test_text_comes_back_as_str_and_binary_as_bytes(echo_url):
    ws = create_connection(echo_url)
    ws.send("κόσμε")
    assert ws.recv() == "κόσμε"
    ws.send_binary(b"\x00\xff")
    assert ws.recv() == b"\x00\xff"
    ws.send(bytearray(b"raw"), ABNF.OPCODE_BINARY)
    assert ws.recv_data() == (ABNF.OPCODE_BINARY, b"raw")
    ws.send("text")
    assert ws.recv_data() == (ABNF.OPCODE_TEXT, b"text")
    assert ws.connected and ws.getstatus() == 101
    ws.close()
    assert not ws.connected


def test_pings_and_pongs_are_frames_to_whoever_asks_for_control_frames(tether_server):
    ws = create_connection(tether_server.url)
    ws.ping("are you there")
    assert ws.recv_data(control_frame=True) == (ABNF.OPCODE_PONG, b"are you there")
    ws.close()


def test_a_recv_timeout_raises_and_leaves_the_connection_usable(tether_server):
    ws = create_connection(tether_server.url, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    assert 0.15 < time.monotonic() - started < 2
    ws.send("still here")
    assert ws.recv() == "still here"
    ws.close()


def test_a_refused_handshake_says_its_status_and_headers():
    server = start_tether("--bearer-token", "sesame")
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            create_connection(server.url)
        assert refused.value.status_code == 401
        assert "www-authenticate" in refused.value.resp_headers
        ws = create_connection(server.url, header=["Authorization: Bearer sesame"])
        ws.send("let in")
        assert ws.recv() == "let in"
        ws.close()
    finally:
        server.stop()


def test_subprotocols_and_headers_are_offered():
    server = start_tether("--subprotocol", "chat")
    try:
        ws = create_connection(server.url, subprotocols=["superchat", "chat"], header={"X-Test": "1"})
        assert ws.getsubprotocol() == "chat"
        assert ws.getheaders()["sec-websocket-protocol"] == "chat"
        ws.close()
    finally:
        server.stop()


def test_nobody_listening_is_connection_refused():
    with pytest.raises(ConnectionRefusedError):
        create_connection("ws://127.0.0.1:1/")


def test_after_the_server_closes_recv_returns_empty_then_raises_connection_closed():
    server = start_tether("--max-message-size", "4")
    try:
        ws = create_connection(server.url)
        ws.send("too long for the server")
        assert ws.recv() == ""  # the close frame (1009)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            ws.recv()
    finally:
        server.stop()


def test_a_blocked_recv_lets_other_python_threads_run(tether_server):
    ws = create_connection(tether_server.url, timeout=1.0)
    counted = []

    def count():
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            counted.append(1)

    worker = threading.Thread(target=count)
    worker.start()
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    worker.join()
    assert len(counted) > 10_000, "the interpreter was held while waiting"
    ws.close()


def test_one_thread_sends_while_another_waits_in_recv(echo_url):
    ws = create_connection(echo_url, timeout=5)
    received = []
    receiver = threading.Thread(target=lambda: received.append(ws.recv()))
    receiver.start()
    time.sleep(0.1)  # the receiver is waiting
    started = time.monotonic()
    ws.send("hello")
    assert time.monotonic() - started < 1, "send waited for the receiver"
    receiver.join(5)
    assert received == ["hello"]
    ws.close()


def test_abort_wakes_a_thread_waiting_in_recv(echo_url):
    ws = create_connection(echo_url, timeout=10)
    outcome = []

    def receive():
        try:
            outcome.append(ws.recv())
        except Exception as error:  # noqa: BLE001 (the outcome is the test)
            outcome.append(error)

    receiver = threading.Thread(target=receive)
    receiver.start()
    time.sleep(0.1)
    started = time.monotonic()
    ws.abort()
    receiver.join(5)
    assert time.monotonic() - started < 2, "recv went on waiting after abort"
    # The end is reported as websocket-client reports a lost connection:
    # the empty close, or the closed exception.
    assert outcome == [""] or isinstance(outcome[0], websocket.WebSocketException), outcome


# -- WebSocketApp -------------------------------------------------------------------


def test_run_forever_refuses_a_ping_timeout_not_below_the_interval():
    app = websocket.WebSocketApp("ws://127.0.0.1:1/")
    with pytest.raises(websocket.WebSocketException, match="Ensure ping_interval > ping_timeout"):
        app.run_forever(ping_interval=5, ping_timeout=5)
    with pytest.raises(websocket.WebSocketException, match="Ensure ping_timeout > 0"):
        app.run_forever(ping_interval=5, ping_timeout=0)


def test_callbacks_get_websocket_client_arguments(echo_url):
    events = []

    def on_open(ws):
        events.append(("open", ws is app))
        ws.send("one")
        ws.send(b"two", ABNF.OPCODE_BINARY)

    def on_message(ws, message):
        events.append(("message", message))
        if message == b"two":
            ws.close(status=1000, reason="done")

    def on_close(ws, code, reason):
        events.append(("close", code, reason))

    app = websocket.WebSocketApp(echo_url, on_open=on_open, on_message=on_message, on_close=on_close)
    assert app.run_forever() is False
    assert events[:3] == [("open", True), ("message", "one"), ("message", b"two")]
    assert events[3][0] == "close"


def test_an_exception_in_a_callback_goes_to_on_error_and_the_app_goes_on(echo_url):
    errors = []

    def on_message(ws, message):
        if message == "boom":
            raise RuntimeError("callback failed")
        ws.close()

    def on_open(ws):
        ws.send("boom")
        ws.send("bye")

    app = websocket.WebSocketApp(echo_url, on_open=on_open, on_message=on_message,
                                 on_error=lambda ws, error: errors.append(error))
    app.run_forever()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)


def test_a_failed_connection_reaches_on_error_and_run_forever_returns_true():
    errors, closes = [], []
    app = websocket.WebSocketApp("ws://127.0.0.1:1/", on_error=lambda ws, e: errors.append(e),
                                 on_close=lambda ws, *args: closes.append(args))
    assert app.run_forever() is True
    assert isinstance(errors[0], ConnectionRefusedError)


def test_reconnect_comes_back_after_the_server_restarts():
    server = start_tether()
    port = server.port
    opened, messages = [], []

    def on_open(ws):
        opened.append(time.monotonic())
        ws.send("hello %d" % len(opened))

    def on_message(ws, message):
        messages.append(message)
        if len(messages) == 2:
            ws.close()

    app = websocket.WebSocketApp(server.url, on_open=on_open, on_message=on_message)
    runner = threading.Thread(target=app.run_forever, kwargs={"reconnect": 0.2})
    runner.start()
    deadline = time.monotonic() + 10
    while not messages and time.monotonic() < deadline:
        time.sleep(0.02)
    server.stop()
    # Same port, new process.
    restarted = start_tether_on(port)
    try:
        runner.join(15)
        assert not runner.is_alive()
        assert messages == ["hello 1", "hello 2"]
    finally:
        restarted.stop()


def start_tether_on(port):
    from conftest import Server, tether_bin

    deadline = time.monotonic() + 5
    while True:
        try:
            return Server([tether_bin(), "serve", "--listen", "127.0.0.1:%d" % port], port)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("where", ["waiting", "in a callback"])
def test_ctrl_c_ends_run_forever_with_a_close(tether_server, where):
    # Ctrl-C while the app waits in Rust, or while a callback runs Python.
    pause = "time.sleep(3)" if where == "in a callback" else "None"
    program = (
        "import sys, time\n"
        "from tether import websocket\n"
        "def on_open(ws):\n"
        "    print('open', flush=True)\n"
        "    %s\n"
        "app = websocket.WebSocketApp(sys.argv[1], on_open=on_open)\n"
        "print('returned', app.run_forever(), flush=True)\n" % pause
    )
    child = subprocess.Popen([sys.executable, "-c", program, tether_server.url], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "open\n"
    if where == "waiting":
        time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, _ = child.communicate(timeout=10)
    assert child.returncode == 0
    assert "returned False" in out, out
    assert time.monotonic() - started < (4 if where == "in a callback" else 1.5)


def test_enable_trace_hands_the_handshake_and_frames_to_python_logging(tether_server):
    import logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    collect = Collect()
    websocket.enableTrace(True, handler=collect)
    try:
        ws = create_connection(tether_server.url)
        ws.send("traced")
        assert ws.recv() == "traced"
        ws.close()
    finally:
        websocket.enableTrace(False)
        logging.getLogger("websocket").removeHandler(collect)
    text = "\n".join(collect.lines)
    assert "GET / HTTP/1.1" in text and "101 Switching Protocols" in text, text
    assert '> TEXT fin=1 rsv1=0 len=6 "traced"' in text and '< TEXT' in text, text
    assert "CLOSE" in text, text
    # Off again: nothing more.
    count = len(collect.lines)
    ws = create_connection(tether_server.url)
    ws.close()
    assert len(collect.lines) == count


def test_a_recv_timeout_does_not_hide_the_close_that_comes_later():
    server = start_tether("--max-message-size", "4")
    try:
        ws = create_connection(server.url, timeout=0.2)
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()
        ws.send("too long for the server")
        assert ws.recv() == ""  # the close frame (1009), still handed out
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            ws.recv()
        ws.close()  # closing a closed connection is harmless
    finally:
        server.stop()
