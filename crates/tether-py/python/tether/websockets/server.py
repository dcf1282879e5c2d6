"""The server: ``serve`` (awaitable, ``async with``), ``Server``,
``ServerConnection`` and ``broadcast``, as in Python websockets.

Each connection reads the request with tether's core (limits on the head,
RFC 6455's checks, permessage-deflate and subprotocol negotiation), lets
``process_request`` answer instead if it wants, then runs the handler in
a task of its own. The handler returning closes with 1000; raising, with
1011. A handler written for websockets < 10, ``handler(websocket, path)``,
gets the path too.
"""

import asyncio
import http
import inspect
import logging

from .. import _tether
from .connection import QUEUE_LIMIT, Connection, _flush_turn, _pending_flushes
from .datastructures import Headers
from .http11 import Request, Response
from .protocol import State

__all__ = ["serve", "Server", "ServerConnection", "broadcast", "basic_auth"]

SERVER = "Python/tether"


def _wants_path(handler):
    try:
        parameters = [p for p in inspect.signature(handler).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(parameters) >= 2


class ServerConnection(Connection):
    """One client of the server."""

    def __init__(self, protocol, server, **kwargs):
        super().__init__(protocol, **kwargs)
        self.server = server
        self.handler_task = None
        self._open_timer = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.server._connections.add(self)
        timeout = self.server._open_timeout
        if timeout is not None:
            self._open_timer = self.loop.call_later(timeout, self._opening_too_slow)

    def _opening_too_slow(self):
        if self.protocol.state == "connecting" and not self._lost:
            self.logger.info("opening handshake timed out")
            self.transport.abort()

    def _opened(self):
        super()._opened()
        self.server._open.add(self)

    def _not_open(self):
        super()._not_open()
        self.server._open.discard(self)

    def connection_lost(self, exc):
        super().connection_lost(exc)
        self.server._connections.discard(self)
        if self._open_timer is not None:
            self._open_timer.cancel()

    def respond(self, status, text):
        """A plain-text HTTP response, for ``process_request`` to return."""
        body = text.encode("utf-8")
        headers = Headers([("Content-Type", "text/plain; charset=utf-8")])
        return Response(int(status), http.HTTPStatus(int(status)).phrase, headers, body)

    def _handshake_event(self, event):
        kind = event[0]
        if kind == _tether.EV_REQUEST:
            _, _method, target, headers = event
            self.request = Request(target, Headers(headers))
            self.loop.create_task(self._decide())
        elif kind == _tether.EV_BAD_REQUEST:
            _, status, message = event
            self._answer(Response(status, http.HTTPStatus(status).phrase, Headers(), (message + "\n").encode()))

    def _answer(self, response):
        headers = response.headers.raw_items() if isinstance(response.headers, Headers) else list(response.headers)
        if not any(name.lower() == "content-type" for name, _ in headers) and response.body:
            headers.append(("Content-Type", "text/plain; charset=utf-8"))
        self.transport.write(self.protocol.reject(response.status_code, headers, bytes(response.body)))
        self.transport.close()

    async def _decide(self):
        server = self.server
        try:
            origins = server._origins
            if origins is not None:
                origin = self.request.headers.get("Origin")
                if origin not in origins:
                    self._answer(self.respond(403, "Failed to open a WebSocket connection: invalid Origin header.\n"))
                    return
            if server._process_request is not None:
                answer = server._process_request(self, self.request)
                if inspect.isawaitable(answer):
                    answer = await answer
                if answer is not None:
                    self._answer(answer)
                    return
            if self._lost:
                return
            extra = []
            if server._server_header:
                extra.append(("Server", server._server_header))
            out, accepted, subprotocol = self.protocol.accept(extra)
            self.transport.write(out)
            if not accepted:
                self.transport.close()
                return
            self.subprotocol = subprotocol
            self.response = Response(101, "Switching Protocols", Headers())
            self._opened()
            if self._open_timer is not None:
                self._open_timer.cancel()
                self._open_timer = None
            # Frames the client sent right behind its request.
            events = self.protocol.receive_data(b"")
            if events:
                self._process(events)
            self._flush_and_check()
        except Exception:
            self.logger.exception("opening handshake failed")
            if not self._lost:
                self._answer(self.respond(500, "Failed to open a WebSocket connection.\n"))
            return
        self.handler_task = asyncio.current_task()
        await self._run_handler()

    async def _run_handler(self):
        handler = self.server._handler
        try:
            if _wants_path(handler):
                await handler(self, self.request.path)
            else:
                await handler(self)
        except Exception:
            self.logger.error("connection handler failed", exc_info=True)
            await self.close(1011)
        else:
            await self.close()


class Server:
    """A listening server: its ``connections``, ``sockets``; ``close()``,
    ``wait_closed()``, ``serve_forever()``, ``async with``."""

    def __init__(self, handler, *, process_request=None, origins=None, server_header=SERVER, open_timeout=10,
                 logger=None):
        self._handler = handler
        self._process_request = process_request
        self._origins = None if origins is None else list(origins)
        self._server_header = server_header
        self._open_timeout = open_timeout
        self.logger = logger if logger is not None else logging.getLogger("websockets.server")
        self._connections = set()
        # The open ones, kept as they open and close (``connections``).
        self._open = set()
        self.server = None
        self._closed = None

    @property
    def connections(self):
        """The open connections (a new set each time: iterate it freely)."""
        return set(self._open)

    @property
    def sockets(self):
        return self.server.sockets

    def close(self, close_connections=True):
        """Stops accepting, and closes every connection with 1001."""
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_task(self._close(close_connections))

    async def _close(self, close_connections):
        self.server.close()
        await self.server.wait_closed()
        if close_connections:
            await asyncio.gather(*(connection.close(1001) for connection in list(self._connections)),
                                 return_exceptions=True)
        tasks = [connection.handler_task for connection in list(self._connections)
                 if connection.handler_task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_closed(self):
        if self._closed is None:
            await self.server.wait_closed()
        else:
            await asyncio.shield(self._closed)

    async def serve_forever(self):
        await self.server.serve_forever()

    def is_serving(self):
        return self.server.is_serving()

    async def start_serving(self):
        await self.server.start_serving()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
        await self.wait_closed()


class serve:
    """Starts a server (``await serve(handler, host, port)``, or ``async
    with serve(...) as server``): one ``handler(websocket)`` per client."""

    def __init__(self, handler, host=None, port=None, *, origins=None, extensions=None, subprotocols=None,
                 select_subprotocol=None, compression="deflate", process_request=None, process_response=None,
                 server_header=SERVER, open_timeout=10, ping_interval=20, ping_timeout=20, close_timeout=10,
                 max_size=2**20, max_queue=16, write_limit=2**15, logger=None, create_connection=None, **kwargs):
        if compression not in (None, "deflate"):
            raise ValueError("unsupported compression: %s" % compression)
        self.handler = handler
        self.host = host
        self.port = port
        self.subprotocols = list(subprotocols or [])
        self.options = {
            "compression": compression == "deflate",
            "max_size": max_size,
            "ping_interval": ping_interval,
            # websockets: no keepalive pings means no pong to wait for.
            "ping_timeout": ping_timeout if ping_interval is not None else None,
            "close_timeout": close_timeout,
        }
        self.server = Server(handler, process_request=process_request, origins=origins, server_header=server_header,
                             open_timeout=open_timeout, logger=logger)
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.logger = self.server.logger
        self.kwargs = kwargs

    def _factory(self):
        protocol = _tether.Protocol.server(self.options, self.subprotocols, [])
        return ServerConnection(protocol, self.server, max_queue=self.max_queue, write_limit=self.write_limit,
                                close_timeout=self.close_timeout, logger=self.logger)

    async def _start(self):
        loop = asyncio.get_running_loop()
        kwargs = dict(self.kwargs)
        if kwargs.pop("unix", False):
            self.server.server = await loop.create_unix_server(self._factory, kwargs.pop("path", None), **kwargs)
        elif "sock" in kwargs:
            self.server.server = await loop.create_server(self._factory, **kwargs)
        else:
            self.server.server = await loop.create_server(self._factory, self.host, self.port, **kwargs)
        return self.server

    def __await__(self):
        return self._start().__await__()

    async def __aenter__(self):
        return await self._start()

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def broadcast(connections, message, raise_exceptions=False):
    """Sends ``message`` to every open connection of ``connections`` without
    waiting. The message is framed once (and compressed once, for the
    connections with permessage-deflate). A connection that is not open, or
    whose write buffer is above its limit (a slow reader), is skipped and
    logged; with ``raise_exceptions``, the skips are raised together as an
    ExceptionGroup.

    The frames wait in each connection's core until the loop turn ends,
    then go out in one write per connection: a server relaying many
    messages in one turn makes one system call per client, not one per
    message and client. Order is kept: anything the program sends on a
    connection afterwards goes out behind them.
    """
    if not isinstance(message, (str, bytes, bytearray, memoryview)):
        raise TypeError("data must be str or bytes-like")
    prepared = _tether.Prepared(message)
    pending = None
    errors = []
    for connection in connections:
        if not connection._open:
            continue
        if connection._writing_paused:
            error = ConnectionError("skipped broadcast: the client reads too slowly")
            connection.logger.warning("skipped broadcast to %s: write buffer full", connection.remote_address)
            errors.append(error)
            continue
        try:
            queued = connection.protocol.queue_prepared(prepared)
        except Exception as error:
            connection.logger.warning("skipped broadcast: %s", error)
            errors.append(error)
            continue
        # Connection._defer_flush, inlined: this loop runs once per
        # recipient, and the pending list is looked up once per broadcast.
        if queued >= QUEUE_LIMIT:
            # Out now: the transport's limit then marks a slow reader.
            connection._flush_queued()
        elif not connection._flush_pending:
            connection._flush_pending = True
            if pending is None:
                pending = _pending_flushes(connection.loop)
                if not pending:
                    connection.loop.call_soon(_flush_turn, pending)
            pending.append(connection)
    if raise_exceptions and errors:
        raise ExceptionGroup("skipped broadcast", errors)  # noqa: F821 (Python 3.11+)


def basic_auth(realm="", credentials=None, check_credentials=None):
    """A ``process_request`` that requires HTTP Basic credentials."""
    import base64
    import hmac

    if credentials is not None:
        pairs = [credentials] if isinstance(credentials, tuple) else list(credentials)
        known = dict(pairs)

        def check_credentials(username, password):  # noqa: F811
            expected = known.get(username)
            return expected is not None and hmac.compare_digest(expected, password)

    def process_request(connection, request):
        authorization = request.headers.get("Authorization", "")
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                username, _, password = base64.b64decode(encoded).decode().partition(":")
            except Exception:
                username = password = None
            if username is not None and check_credentials(username, password):
                connection.username = username
                return None
        response = connection.respond(401, "Missing or invalid credentials.\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="%s"' % realm
        return response

    return process_request
