"""The exceptions of Python websockets, under the same names."""

__all__ = [
    "WebSocketException", "ConnectionClosed", "ConnectionClosedOK", "ConnectionClosedError", "InvalidURI",
    "InvalidHandshake", "SecurityError", "InvalidMessage", "InvalidStatus", "InvalidHeader",
    "InvalidHeaderFormat", "InvalidHeaderValue", "InvalidOrigin", "InvalidUpgrade", "NegotiationError",
    "ProtocolError", "PayloadTooBig", "InvalidState", "ConcurrencyError", "ProxyError", "InvalidProxyMessage",
    "InvalidProxyStatus",
]

OK_CLOSE_CODES = (1000, 1001)


class WebSocketException(Exception):
    """The base of every exception here."""


class ConnectionClosed(WebSocketException):
    """The connection is closed; ``rcvd`` and ``sent`` are the close frames
    received and sent (``frames.Close``, or None)."""

    def __init__(self, rcvd, sent, rcvd_then_sent=None):
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        super().__init__(self._describe())

    def _describe(self):
        if self.rcvd is None and self.sent is None:
            return "no close frame received or sent"
        if self.rcvd is None:
            return "sent %s; no close frame received" % (self.sent,)
        if self.sent is None:
            return "received %s; no close frame sent" % (self.rcvd,)
        if self.rcvd_then_sent is False:
            return "sent %s; then received %s" % (self.sent, self.rcvd)
        return "received %s; then sent %s" % (self.rcvd, self.sent)

    # websockets < 13 names, still read by programs.
    @property
    def code(self):
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self):
        return "" if self.rcvd is None else self.rcvd.reason


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally (1000 or 1001 both ways)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed on an error, or without a closing handshake."""


class InvalidURI(WebSocketException):
    def __init__(self, uri, msg):
        self.uri = uri
        self.msg = msg
        super().__init__("%s isn't a valid URI: %s" % (uri, msg))


class InvalidHandshake(WebSocketException):
    """The opening handshake failed."""


class SecurityError(InvalidHandshake):
    """A limit of the handshake was exceeded."""


class InvalidMessage(InvalidHandshake):
    """The handshake's HTTP message is malformed."""


class InvalidStatus(InvalidHandshake):
    """The server answered with another status than 101; ``response``."""

    def __init__(self, response):
        self.response = response
        super().__init__("server rejected WebSocket connection: HTTP %d" % response.status_code)


class ProxyError(InvalidHandshake):
    """The proxy could not open a tunnel to the server."""


class InvalidProxyMessage(ProxyError):
    """The proxy's answer is malformed."""


class InvalidProxyStatus(ProxyError):
    """The HTTP proxy refused the tunnel; ``response``."""

    def __init__(self, response):
        self.response = response
        super().__init__("proxy rejected connection: HTTP %d" % response.status_code)


class InvalidHeader(InvalidHandshake):
    def __init__(self, name, value=None):
        self.name = name
        self.value = value
        super().__init__("invalid %s header%s" % (name, "" if value is None else ": %s" % value))


class InvalidHeaderFormat(InvalidHeader):
    pass


class InvalidHeaderValue(InvalidHeader):
    pass


class InvalidOrigin(InvalidHeader):
    def __init__(self, origin):
        super().__init__("Origin", origin)


class InvalidUpgrade(InvalidHeader):
    pass


class NegotiationError(InvalidHandshake):
    pass


class ProtocolError(WebSocketException):
    """The peer broke the protocol."""


class PayloadTooBig(ProtocolError):
    """A message exceeded ``max_size``."""


class InvalidState(WebSocketException):
    """An operation the connection's state does not allow."""


class ConcurrencyError(WebSocketException, RuntimeError):
    """Two coroutines did what only one may do at a time."""
