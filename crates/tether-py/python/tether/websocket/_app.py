"""websocket-client's ``WebSocketApp`` on tether's long-lived client.

Keepalive, reconnection and the order of events are tether's (decided in
Rust, ``tether::App``); this class routes each event to the callbacks the
way websocket-client does: ``callback(ws, *args)``, an exception in a
callback logged and handed to ``on_error``.

Two things work here that websocket-client's current versions break:
a callback that takes fewer arguments than websocket-client passes gets
only those it takes (``def on_close(ws)``, as older websocket-client
allowed), and a subclass's ``on_message``/``on_open``/... methods are
used when no callback of that name is passed to the constructor.
"""

import inspect
import logging

from .. import _tether
from ._abnf import ABNF, STATUS_NORMAL
from ._exceptions import WebSocketConnectionClosedException, WebSocketException, translate
from ._options import core_options

_logger = logging.getLogger("websocket")

_CALLBACKS = ("on_open", "on_reconnect", "on_message", "on_error", "on_close", "on_ping", "on_pong",
              "on_cont_message", "on_data")


def _arity(callback):
    """How many positional arguments ``callback`` takes (None: any number)."""
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


class WebSocketApp:
    """A long-lived connection driven by callbacks; ``run_forever`` blocks."""

    def __init__(self, url, header=None, on_open=None, on_reconnect=None, on_message=None, on_error=None,
                 on_close=None, on_ping=None, on_pong=None, on_cont_message=None, keep_running=True,
                 get_mask_key=None, cookie=None, subprotocols=None, on_data=None, socket=None):
        self.url = url
        self.header = header if header is not None else []
        self.cookie = cookie
        self.subprotocols = subprotocols
        self.keep_running = False
        self.get_mask_key = get_mask_key
        self.sock = None
        self.has_errored = False
        self.last_ping_tm = self.last_pong_tm = 0
        given = dict(on_open=on_open, on_reconnect=on_reconnect, on_message=on_message, on_error=on_error,
                     on_close=on_close, on_ping=on_ping, on_pong=on_pong, on_cont_message=on_cont_message,
                     on_data=on_data)
        for name in _CALLBACKS:
            callback = given[name]
            if callback is None and getattr(type(self), name, None) is not None:
                callback = getattr(self, name)  # a subclass's method, bound
            # An instance attribute, so that assigning one later works too.
            self.__dict__[name] = callback

    # -- sending from any thread ----------------------------------------------------

    def send(self, data, opcode=ABNF.OPCODE_TEXT):
        """Sends a message (queued while reconnecting)."""
        app = self.sock
        if app is None:
            raise WebSocketConnectionClosedException("Connection is already closed.")
        if opcode == ABNF.OPCODE_TEXT:
            if not isinstance(data, str):
                data = bytes(data).decode("utf-8")
            sent = app.send_text(data)
        elif opcode == ABNF.OPCODE_BINARY:
            sent = app.send_binary(data)
        else:
            raise ValueError("WebSocketApp.send sends text or binary messages, not opcode %r" % (opcode,))
        if not sent:
            raise WebSocketConnectionClosedException("Connection is already closed.")

    def send_text(self, text_data):
        self.send(text_data, ABNF.OPCODE_TEXT)

    def send_bytes(self, data):
        self.send(data, ABNF.OPCODE_BINARY)

    def close(self, status=STATUS_NORMAL, reason="", **kwargs):
        """Closes the connection and ends ``run_forever`` (no reconnection)."""
        self.keep_running = False
        app = self.sock
        if app is not None:
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8")
            app.close(status, reason)

    # -- running --------------------------------------------------------------------

    def run_forever(self, sockopt=None, sslopt=None, ping_interval=0, ping_timeout=None, ping_payload="",
                    http_proxy_host=None, http_proxy_port=None, http_no_proxy=None, http_proxy_auth=None,
                    http_proxy_timeout=None, skip_utf8_validation=False, host=None, origin=None, dispatcher=None,
                    suppress_origin=False, proxy_type=None, reconnect=None):
        """Connects and dispatches events until the app is closed.

        Returns False after a close (by the program, the server, or Ctrl-C)
        and True when it stopped on an error, as websocket-client does.
        """
        if ping_timeout is not None and ping_timeout <= 0:
            raise WebSocketException("Ensure ping_timeout > 0")
        if ping_interval is not None and ping_interval < 0:
            raise WebSocketException("Ensure ping_interval >= 0")
        if ping_timeout and ping_interval and ping_interval <= ping_timeout:
            raise WebSocketException("Ensure ping_interval > ping_timeout")
        if dispatcher is not None:
            raise WebSocketException("tether runs its own event loop: dispatcher is not supported")
        if self.sock is not None:
            raise WebSocketException("socket is already opened")
        settings = core_options(
            self.url, timeout=http_proxy_timeout, subprotocols=self.subprotocols, header=self.header,
            cookie=self.cookie, host=host, origin=origin, suppress_origin=suppress_origin, sslopt=sslopt,
            http_proxy_host=http_proxy_host, http_proxy_port=http_proxy_port, http_no_proxy=http_no_proxy,
            http_proxy_auth=http_proxy_auth, proxy_type=proxy_type)
        settings["ping_interval"] = ping_interval or None
        settings["ping_timeout"] = ping_timeout if ping_interval else None
        if ping_payload:
            settings["ping_payload"] = ping_payload.encode("utf-8") if isinstance(ping_payload, str) else bytes(ping_payload)
        settings["fragment_events"] = self.on_data is not None or self.on_cont_message is not None
        try:
            app = _tether.App(self.url, settings, reconnect)
        except _tether.Error as error:
            raise translate(error) from None
        self.sock = app
        self.keep_running = True
        self.has_errored = False
        try:
            stopped = app.run(self._dispatch)
        finally:
            self.sock = None
            self.keep_running = False
        if stopped == "interrupted":
            return False
        return stopped in ("failed", "gave up") or self.has_errored

    # -- events ---------------------------------------------------------------------

    def _dispatch(self, kind, *args):
        if kind == "message":
            opcode, data = args
            if self.on_data is not None:
                self._callback(self.on_data, data, opcode, True)
            self._callback(self.on_message, data)
        elif kind == "open":
            self._callback(self.on_open)
        elif kind == "close":
            self._callback(self.on_close, *args)
        elif kind == "error":
            self.has_errored = True
            self._callback(self.on_error, translate(args[0]))
        elif kind == "ping":
            self._callback(self.on_ping, args[0])
        elif kind == "pong":
            self._callback(self.on_pong, args[0])
        elif kind == "data":
            opcode, data, fin = args
            if not fin or opcode == ABNF.OPCODE_CONT:
                self._callback(self.on_data, data, opcode, fin)
                if self.on_cont_message is not None:
                    self._callback(self.on_cont_message, data, fin)
        elif kind == "reconnect":
            self._callback(self.on_reconnect)

    def _callback(self, callback, *args):
        if callback is None:
            return
        bound = getattr(callback, "__self__", None) is self
        arguments = args if bound else (self,) + args
        count = _arity(callback)
        if count is not None and count < len(arguments):
            arguments = arguments[:count]
        try:
            callback(*arguments)
        except Exception as error:
            _logger.error("error from callback %r: %s", callback, error)
            if callback is not self.on_error and self.on_error is not None:
                self._callback(self.on_error, error)
