"""Python websockets' asyncio API on tether's Rust core.

A program written for websockets runs with its import changed::

    from tether import websockets     # instead of: import websockets

``connect`` (``await``, ``async with``, ``async for`` to reconnect), ``serve``,
``broadcast``, connections with ``recv``/``send``/``ping`` (an awaitable
pong)/``close`` and ``async for``, ``exceptions.ConnectionClosed`` and the
rest of websockets' exception names. The protocol itself is tether's
sans-I/O core, driven from asyncio's own transports (``connection``).
"""

from . import exceptions, frames, protocol
from .client import ClientConnection, connect
from .datastructures import Headers
from .exceptions import *  # noqa: F401,F403
from .frames import Close, CloseCode
from .http11 import Request, Response
from .protocol import State
from .server import Server, ServerConnection, basic_auth, broadcast, serve

__all__ = [
    "connect", "serve", "broadcast", "basic_auth", "ClientConnection", "ServerConnection", "Server", "Headers",
    "Request", "Response", "Close", "CloseCode", "State", "exceptions", "frames", "protocol",
] + exceptions.__all__
