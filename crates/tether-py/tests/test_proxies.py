"""The asyncio client through real proxies (``tests/peers/proxy.py``:
tinyproxy for HTTP CONNECT, pproxy and dante for SOCKS5), chosen as
websockets 15 chooses: ``proxy=`` a URL, ``True`` (the default) the
environment's (``no_proxy`` honoured), ``None`` none."""

import asyncio
import os
import pathlib
import ssl
import subprocess

import pytest

from conftest import ROOT, ListeningPeer, start_tether
from tether import websockets

USER, PASSWORD = "alice", "s3cret"


def deps_python():
    deps = os.environ.get("TETHER_DEPS") or os.path.expanduser("~/.cache/tether-deps")
    python = pathlib.Path(deps) / "py3" / "bin" / "python"
    if not python.exists():
        pytest.skip("no peers' venv at %s (scripts/install-deps.sh)" % python)
    return str(python)


class Proxy(ListeningPeer):
    def __init__(self, kind, engine, auth):
        argv = [deps_python(), str(ROOT / "tests" / "peers" / "proxy.py"), "--kind", kind, "--engine", engine]
        if auth:
            argv += ["--user", USER, "--password", PASSWORD]
        super().__init__(argv)

    def url(self, scheme, auth=True):
        credentials = "%s:%s@" % (USER, PASSWORD) if auth else ""
        return "%s://%s127.0.0.1:%d" % (scheme, credentials, self.port)


@pytest.fixture
def proxies():
    started = []

    def start(kind, engine, auth=True):
        proxy = Proxy(kind, engine, auth)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


async def round_trip(uri, **kwargs):
    async with websockets.connect(uri, **kwargs) as ws:
        await ws.send("through")
        return await ws.recv()


def test_http_connect_through_tinyproxy_with_basic_auth(tether_server, proxies):
    proxy = proxies("http", "tinyproxy")
    assert asyncio.run(round_trip(tether_server.url, proxy=proxy.url("http"))) == "through"


def test_wss_through_an_http_proxy(proxies, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server = start_tether("--tls-cert", str(cert), "--tls-key", str(key))
    try:
        proxy = proxies("http", "tinyproxy")
        context = ssl.create_default_context(cafile=str(cert))
        uri = "wss://localhost:%d/" % server.port
        assert asyncio.run(round_trip(uri, proxy=proxy.url("http"), ssl=context)) == "through"
    finally:
        server.stop()


def test_socks5_with_a_password_through_pproxy_and_without_through_dante(tether_server, proxies):
    pproxy = proxies("socks5", "pproxy")
    # socks5h: the proxy resolves the name.
    uri = tether_server.url.replace("127.0.0.1", "localhost")
    assert asyncio.run(round_trip(uri, proxy=pproxy.url("socks5h"))) == "through"
    dante = proxies("socks5", "dante", auth=False)
    assert asyncio.run(round_trip(tether_server.url, proxy=dante.url("socks5", auth=False))) == "through"


def test_a_proxy_that_refuses_is_a_proxy_error(tether_server, proxies):
    proxy = proxies("http", "tinyproxy")
    for url in (proxy.url("http", auth=False), "http://%s:wrong@127.0.0.1:%d" % (USER, proxy.port)):
        with pytest.raises(websockets.ProxyError, match="credentials"):
            asyncio.run(round_trip(tether_server.url, proxy=url))
    # A tunnel the proxy cannot open: its status comes along.
    with pytest.raises(websockets.InvalidProxyStatus) as refused:
        asyncio.run(round_trip("ws://127.0.0.1:9/", proxy=proxy.url("http")))
    assert 500 <= refused.value.response.status_code < 600, refused.value


def test_the_environment_names_the_proxy_unless_told_otherwise(tether_server, monkeypatch):
    # A proxy that is not there: going through it fails, so the outcome
    # says whether the client went through it.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    # Without no_proxy, loopback goes direct (as websocket-client decides).
    assert asyncio.run(round_trip(tether_server.url)) == "through"
    monkeypatch.setenv("no_proxy", "example.invalid")
    with pytest.raises(OSError):
        asyncio.run(round_trip(tether_server.url))
    assert asyncio.run(round_trip(tether_server.url, proxy=None)) == "through"
    monkeypatch.setenv("no_proxy", "example.invalid,127.0.0.1")
    assert asyncio.run(round_trip(tether_server.url)) == "through"
