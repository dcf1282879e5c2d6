"""The client: ``connect`` (awaitable, ``async with``, ``async for`` to
reconnect) and ``ClientConnection``, as in Python websockets."""

import asyncio
import logging
import os
import random
import socket
import ssl as ssl_module
import urllib.parse

from .. import _tether
from .connection import Connection
from .datastructures import Headers
from .exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidURI,
    ProxyError,
    SecurityError,
)
from .http11 import Response

__all__ = ["connect", "ClientConnection", "process_exception"]

USER_AGENT = "Python/tether"


class ClientConnection(Connection):
    """A client connection; ``handshake`` completes when the 101 arrives."""

    def __init__(self, protocol, **kwargs):
        super().__init__(protocol, **kwargs)
        self.handshake = self.loop.create_future()

    def _handshake_event(self, event):
        kind = event[0]
        if kind == _tether.EV_OPEN:
            _, status, headers, subprotocol = event
            self.response = Response(status, "Switching Protocols", Headers(headers))
            self.subprotocol = subprotocol
            self._opened()
            if not self.handshake.done():
                self.handshake.set_result(None)
        elif kind == _tether.EV_REJECTED:
            _, status, reason, headers, body = event
            if status == 0:
                error = InvalidHandshake(reason)
            elif status in (400, 431) and not headers:
                error = SecurityError(reason) if status == 431 else InvalidMessage(reason)
            else:
                error = InvalidStatus(Response(status, reason, Headers(headers), body))
            if not self.handshake.done():
                self.handshake.set_exception(error)
            self.transport.close()

    def _handshake_lost(self):
        if not self.handshake.done():
            self.handshake.set_exception(InvalidMessage("did not receive a valid HTTP response"))


async def _connect_socket(loop, host, port):
    """A non-blocking TCP socket connected to ``host``, trying each address."""
    last = None
    for family, kind, proto, _, address in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except BaseException as error:
            sock.close()
            if not isinstance(error, OSError):
                raise
            last = error
    raise last if last is not None else OSError("%s has no address" % host)


def process_exception(exc):
    """Whether ``async for ... in connect(...)`` retries after ``exc``
    (None) or gives up (the exception to raise), as websockets decides."""
    if isinstance(exc, (EOFError, OSError, asyncio.TimeoutError)):
        return None
    if isinstance(exc, InvalidMessage) or (
            isinstance(exc, InvalidStatus) and exc.response.status_code in (500, 502, 503, 504)):
        return None
    return exc


class connect:
    """Opens a client connection (``await connect(uri)``), used as ``async
    with connect(uri) as websocket`` or, to reconnect with backoff whenever
    it drops, ``async for websocket in connect(uri)``."""

    def __init__(self, uri, *, origin=None, extensions=None, subprotocols=None, compression="deflate",
                 additional_headers=None, user_agent_header=USER_AGENT, proxy=True,
                 process_exception=process_exception, open_timeout=10, ping_interval=20, ping_timeout=20,
                 close_timeout=10, max_size=2**20, max_queue=16, write_limit=2**15, logger=None,
                 create_connection=None, **kwargs):
        if compression not in (None, "deflate"):
            raise ValueError("unsupported compression: %s" % compression)
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
            raise InvalidURI(uri, "scheme isn't ws or wss" if parsed.scheme not in ("ws", "wss") else "no host")
        self.uri = uri
        self.secure = parsed.scheme == "wss"
        self.host = parsed.hostname
        self.port = parsed.port or (443 if self.secure else 80)
        headers = []
        if additional_headers is not None:
            items = additional_headers.raw_items() if isinstance(additional_headers, Headers) else (
                additional_headers.items() if hasattr(additional_headers, "items") else additional_headers)
            headers.extend((str(name), str(value)) for name, value in items)
        if origin is not None:
            headers.append(("Origin", str(origin)))
        if user_agent_header is not None:
            headers.append(("User-Agent", user_agent_header))
        self.options = {
            "headers": headers,
            "subprotocols": list(subprotocols or []),
            "compression": compression == "deflate",
            "max_size": max_size,
            "ping_interval": ping_interval,
            # websockets: no keepalive pings means no pong to wait for.
            "ping_timeout": ping_timeout if ping_interval is not None else None,
            "close_timeout": close_timeout,
            # websockets reads its bound on redirects from the environment.
            "max_redirects": int(os.environ.get("WEBSOCKETS_MAX_REDIRECTS", "10")),
            # True: the environment's proxy (``no_proxy`` honoured); None: none.
            "proxy": None if proxy is True else ("" if proxy is None else str(proxy)),
        }
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.logger = logger if logger is not None else logging.getLogger("websockets.client")
        self.process_exception = process_exception
        self.kwargs = kwargs
        self.connection = None

    async def _open(self):
        # Where to connect, redirect after redirect (tether's decision: at
        # most max_redirects, never wss:// to ws://, Authorization and
        # Cookie only to the first origin).
        plan = _tether.Redirects(self.uri, self.options)
        while True:
            protocol, request = plan.open()
            connection = await self._connect(plan, protocol)
            connection.transport.write(request)
            try:
                await connection.handshake
                return connection
            except InvalidStatus:
                connection.transport.abort()
                if any(name in self.kwargs for name in ("sock", "path", "host", "port")):
                    raise  # a socket or address of the caller's own goes nowhere else
                try:
                    again = plan.follow(protocol)
                except _tether.Error as error:
                    raise SecurityError(str(error)) from None
                if not again:
                    raise
                self.logger.debug("redirected to %s", plan.url)
            except BaseException:
                connection.transport.abort()
                raise

    async def _connect(self, plan, protocol):
        """A transport to where ``plan`` points now, through a proxy if one
        applies, with TLS for ``wss://``."""
        loop = asyncio.get_running_loop()
        kwargs = dict(self.kwargs)
        ssl = kwargs.pop("ssl", None)
        if plan.secure:
            if ssl is None:
                ssl = ssl_module.create_default_context()
            if plan.host == self.host:
                kwargs.setdefault("server_hostname", plan.host)
            else:
                kwargs["server_hostname"] = plan.host
        elif ssl is not None:
            raise ValueError("ssl given for a ws:// URI")
        factory = lambda: ClientConnection(protocol, max_queue=self.max_queue, write_limit=self.write_limit,
                                           close_timeout=self.close_timeout, logger=self.logger)
        sock = kwargs.pop("sock", None)
        if sock is not None:
            _, connection = await loop.create_connection(factory, sock=sock, ssl=ssl, **kwargs)
        elif "path" in kwargs:
            _, connection = await loop.create_unix_connection(factory, kwargs.pop("path"), ssl=ssl, **kwargs)
        elif "host" not in kwargs and "port" not in kwargs and (tunnel := await self._tunnel(plan.url)) is not None:
            _, connection = await loop.create_connection(factory, sock=tunnel, ssl=ssl, **kwargs)
        else:
            host = kwargs.pop("host", plan.host)
            port = kwargs.pop("port", plan.port)
            _, connection = await loop.create_connection(factory, host, port, ssl=ssl, **kwargs)
        return connection

    async def _tunnel(self, uri):
        """A socket tunnelled through the proxy to the server, or None to go
        straight there (tether's core chooses the proxy and speaks to it;
        see ``_tether.Tunnel``)."""
        try:
            opened = _tether.Tunnel.open(uri, self.options)
        except _tether.Error as error:
            raise ProxyError(str(error)) from None
        if opened is None:
            return None
        tunnel, host, port = opened
        loop = asyncio.get_running_loop()
        sock = await _connect_socket(loop, host, port)
        try:
            out, want = tunnel.start()
            while True:
                if out:
                    await loop.sock_sendall(sock, out)
                if not want:
                    return sock
                out, want = tunnel.feed(await loop.sock_recv(sock, want))
        except _tether.Error as error:
            sock.close()
            if error.kind == "proxy" and error.status is not None:
                raise InvalidProxyStatus(Response(error.status, str(error), Headers())) from None
            if error.kind == "io":
                raise OSError(str(error)) from None
            raise ProxyError(str(error)) from None
        except BaseException:
            sock.close()
            raise

    async def _open_bounded(self):
        if self.open_timeout is None:
            return await self._open()
        return await asyncio.wait_for(self._open(), self.open_timeout)

    def __await__(self):
        return self._open_bounded().__await__()

    async def __aenter__(self):
        self.connection = await self._open_bounded()
        return self.connection

    async def __aexit__(self, exc_type, exc_value, traceback):
        await self.connection.close()

    def __aiter__(self):
        return self._reconnecting()

    async def _reconnecting(self):
        # websockets' backoff: 3 s at first, times 1.618 up to 90 s, with jitter.
        delay = None
        while True:
            try:
                connection = await self._open_bounded()
            except Exception as exc:
                verdict = self.process_exception(exc)
                if verdict is not None:
                    raise verdict from exc
                delay = 3.0 * random.random() if delay is None else min(delay * 1.618, 90.0)
                self.logger.info("connect failed; reconnecting in %.1f seconds: %s", delay, exc)
                await asyncio.sleep(delay)
                continue
            delay = None
            try:
                yield connection
            except GeneratorExit:
                await connection.close()
                raise
            # The loop body returned: go on with a new connection.
