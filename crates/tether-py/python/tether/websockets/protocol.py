"""The connection's state, as Python websockets names it."""

import enum

__all__ = ["State"]


class State(enum.IntEnum):
    CONNECTING, OPEN, CLOSING, CLOSED = range(4)


_BY_NAME = {"connecting": State.CONNECTING, "open": State.OPEN, "closing": State.CLOSING, "closed": State.CLOSED}
