"""websocket-client's exception names, and the translation of tether's one
Rust error (``tether._tether.Error``) into them."""

import os
import re
import ssl


class WebSocketException(Exception):
    """The base of every WebSocket error."""


class WebSocketProtocolException(WebSocketException):
    """The peer broke the protocol."""


class WebSocketPayloadException(WebSocketException):
    """A message's payload is invalid (text that is not UTF-8)."""


class WebSocketConnectionClosedException(WebSocketException):
    """The connection is closed: the peer went away, or it was closed."""


class WebSocketTimeoutException(WebSocketException):
    """A timeout passed: ``recv``'s, the opening's, or the keepalive's."""


class WebSocketProxyException(WebSocketException):
    """The proxy refused the tunnel."""


class WebSocketBadStatusException(WebSocketException):
    """The server answered the opening handshake with another status than 101."""

    def __init__(self, message, status_code, status_message=None, resp_headers=None, resp_body=None):
        super().__init__(message)
        self.status_code = status_code
        self.status_message = status_message
        self.resp_headers = resp_headers
        self.resp_body = resp_body


class WebSocketAddressException(WebSocketException):
    """The host name could not be resolved."""


_OS_ERROR = re.compile(r"os error (\d+)")


def translate(error):
    """The websocket-client exception for a ``tether._tether.Error``."""
    kind = getattr(error, "kind", "io")
    message = str(error)
    if kind == "timeout":
        return WebSocketTimeoutException(message)
    if kind == "status":
        status = error.status
        return WebSocketBadStatusException(
            "Handshake status %d %s" % (status, message), status, message, dict(error.headers), None
        )
    if kind == "closed":
        return WebSocketConnectionClosedException(message or "Connection to remote host was lost.")
    if kind == "protocol":
        if error.code == 1007:
            return WebSocketPayloadException(message)
        return WebSocketProtocolException(message)
    if kind == "proxy":
        return WebSocketProxyException(message)
    if kind == "tls":
        if "certificate" in message.lower():
            return ssl.SSLCertVerificationError(message)
        return ssl.SSLError(message)
    if kind == "config":
        return ValueError(message)
    if kind == "handshake":
        return WebSocketException(message)
    if "lookup address" in message or "has no address" in message:
        return WebSocketAddressException(message)
    found = _OS_ERROR.search(message)
    if found:
        number = int(found.group(1))
        # OSError(errno, text) becomes the matching subclass
        # (ConnectionRefusedError, ConnectionResetError, ...).
        return OSError(number, os.strerror(number))
    if "closed without a close frame" in message.lower() or error.code == 1006:
        return WebSocketConnectionClosedException("Connection to remote host was lost.")
    return OSError(message)
