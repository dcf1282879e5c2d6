"""websocket-client's API on tether's Rust core.

A program written for websocket-client runs with its import changed::

    from tether import websocket      # instead of: import websocket
    from tether.websocket import create_connection

``WebSocketApp`` (callbacks, ``run_forever`` with ``ping_interval``,
``ping_timeout`` and ``reconnect``), ``create_connection`` and ``WebSocket``,
``ABNF``, the ``STATUS_*`` codes, the exception names, ``enableTrace``,
``setdefaulttimeout``.
"""

import logging

from .. import _tether
from ._abnf import *  # noqa: F401,F403  (ABNF, STATUS_*)
from ._abnf import ABNF
from ._app import WebSocketApp
from ._core import WebSocket, create_connection
from ._exceptions import (
    WebSocketAddressException,
    WebSocketBadStatusException,
    WebSocketConnectionClosedException,
    WebSocketException,
    WebSocketPayloadException,
    WebSocketProtocolException,
    WebSocketProxyException,
    WebSocketTimeoutException,
)
from ._options import getdefaulttimeout, setdefaulttimeout

__all__ = [
    "ABNF", "WebSocketApp", "WebSocket", "create_connection", "enableTrace", "setdefaulttimeout",
    "getdefaulttimeout", "WebSocketException", "WebSocketProtocolException", "WebSocketPayloadException",
    "WebSocketConnectionClosedException", "WebSocketTimeoutException", "WebSocketProxyException",
    "WebSocketBadStatusException", "WebSocketAddressException",
]


_default_handler = logging.StreamHandler()


def enableTrace(traceable, handler=_default_handler, level="DEBUG"):
    """Turns on (or off) the trace of every handshake and frame of the
    connections opened afterwards, as websocket-client does: the lines go
    to the ``websocket`` logger at DEBUG, which gets ``handler`` (a
    ``logging.StreamHandler`` on standard error by default) and ``level``."""
    logger = logging.getLogger("websocket")
    if traceable:
        logger.setLevel(getattr(logging, level) if isinstance(level, str) else level)
        if handler is not None and handler not in logger.handlers:
            logger.addHandler(handler)
        _tether.enable_trace(True, logger)
    else:
        _tether.enable_trace(False)
