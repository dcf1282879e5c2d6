"""tether: WebSockets for Python on tether's Rust core.

Two APIs, each shaped like the library its users already know:

- ``tether.websocket``: websocket-client's (``WebSocketApp``, ``run_forever``,
  ``create_connection``), for threads and callbacks.

A program written for websocket-client runs with its import changed::

    from tether import websocket          # instead of: import websocket
"""

from ._tether import __version__

__all__ = ["__version__"]
