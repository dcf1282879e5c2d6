"""The opening handshake's request and response, as websockets shapes them."""

import dataclasses

from .datastructures import Headers

__all__ = ["Request", "Response"]


@dataclasses.dataclass
class Request:
    """The client's upgrade request: its target (path and query) and headers."""

    path: str
    headers: Headers


@dataclasses.dataclass
class Response:
    """An HTTP response: the 101 of an opening, or another answer."""

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = b""
