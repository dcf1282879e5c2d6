//! The frame opcode (RFC 6455 §5.2).

use std::fmt;

/// What a frame carries. Values 0x3–0x7 and 0xB–0xF are reserved and never
/// parse into an `OpCode`: a frame that uses them fails the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: the next fragment of a fragmented message.
    Continuation,
    /// 0x1: the first (or only) frame of a UTF-8 text message.
    Text,
    /// 0x2: the first (or only) frame of a binary message.
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a keepalive or liveness probe; answered with a pong.
    Ping,
    /// 0xA: the answer to a ping, or an unsolicited heartbeat.
    Pong,
}

impl OpCode {
    /// Parses the low four bits of the first header byte; `None` for reserved values.
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<OpCode> {
        Some(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The four-bit wire value.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) have the high opcode bit set (RFC 6455 §5.5).
    #[must_use]
    pub const fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

impl fmt::Display for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            OpCode::Continuation => "CONT",
            OpCode::Text => "TEXT",
            OpCode::Binary => "BINARY",
            OpCode::Close => "CLOSE",
            OpCode::Ping => "PING",
            OpCode::Pong => "PONG",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_opcode_round_trips_and_reserved_ones_do_not_parse() {
        for value in 0u8..16 {
            match OpCode::from_u8(value) {
                Some(op) => assert_eq!(op.as_u8(), value),
                None => assert!(matches!(value, 0x3..=0x7 | 0xB..=0xF)),
            }
        }
    }

    #[test]
    fn only_close_ping_pong_are_control() {
        assert!(OpCode::Close.is_control() && OpCode::Ping.is_control() && OpCode::Pong.is_control());
        assert!(!OpCode::Text.is_control() && !OpCode::Binary.is_control());
        assert!(!OpCode::Continuation.is_control());
    }
}
