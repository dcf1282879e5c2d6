"""Close frames and codes, as Python websockets names them."""

import dataclasses
import enum

__all__ = ["Close", "CloseCode", "Opcode"]


class Opcode(enum.IntEnum):
    CONT, TEXT, BINARY = 0x00, 0x01, 0x02
    CLOSE, PING, PONG = 0x08, 0x09, 0x0A


class CloseCode(enum.IntEnum):
    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


@dataclasses.dataclass
class Close:
    """A close frame: its code and reason."""

    code: int
    reason: str

    def __str__(self):
        try:
            name = CloseCode(self.code).name.replace("_", " ").lower()
        except ValueError:
            name = "registered" if 3000 <= self.code < 5000 else "unknown"
        text = "%d (%s)" % (self.code, name)
        return "%s %s" % (text, self.reason) if self.reason else text
