//! What can go wrong in the core, split by whose fault it is: the peer broke
//! the protocol ([`ProtocolError`]), or the application asked for something
//! the connection cannot do ([`UsageError`]).

use std::fmt;

use crate::frame::CloseCode;

/// The peer broke a rule of RFC 6455 or RFC 7692, or exceeded a limit.
/// Each variant names the rule and maps to the close code we send
/// ([`ProtocolError::close_code`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// §5.2: opcodes 0x3–0x7 and 0xB–0xF are reserved.
    ReservedOpCode(u8),
    /// §5.2: RSV bits MUST be 0 unless an extension defines them.
    ReservedBitsSet,
    /// §5.2: the most significant bit of a 64-bit length MUST be 0.
    LengthTopBitSet,
    /// §5.1: a server MUST close the connection on an unmasked client frame.
    UnmaskedClientFrame,
    /// §5.1: a client MUST close the connection on a masked server frame.
    MaskedServerFrame,
    /// §5.5: control frames MUST NOT be fragmented.
    FragmentedControlFrame,
    /// §5.5: control frames carry at most 125 bytes of payload.
    ControlFrameTooLong(u64),
    /// §5.4: a continuation frame arrived with no message in progress.
    UnexpectedContinuation,
    /// §5.4: a new text or binary frame arrived while a fragmented message was in progress.
    ExpectedContinuation,
    /// §5.5.1: a close payload of one byte cannot hold a status code.
    CloseFrameTooShort,
    /// §7.4: the close code received is reserved or unassigned.
    InvalidCloseCode(u16),
    /// §8.1: text message (or close reason) is not valid UTF-8.
    InvalidUtf8,
    /// RFC 7692 §6.1: RSV1 on a control frame or a continuation frame.
    CompressedControlOrContinuation,
    /// RFC 7692 §6.2: the compressed data could not be inflated.
    InvalidCompressedData,
    /// A frame's declared length exceeds `max_frame_size`.
    FrameTooLarge {
        /// The configured limit.
        limit: usize,
        /// The declared length.
        actual: u64,
    },
    /// A message (after decompression) exceeds `max_message_size`.
    MessageTooLarge {
        /// The configured limit.
        limit: usize,
        /// The size reached when the limit was crossed (a lower bound of the real size).
        actual: u64,
    },
    /// A fragmented message exceeds `max_fragments`.
    TooManyFragments {
        /// The configured limit.
        limit: usize,
    },
}

impl ProtocolError {
    /// The close code this error is reported with (RFC 6455 §7.4.1).
    #[must_use]
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooLarge { .. }
            | ProtocolError::MessageTooLarge { .. }
            | ProtocolError::TooManyFragments { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpCode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::ReservedBitsSet => f.write_str("reserved bits set without a negotiated extension"),
            ProtocolError::LengthTopBitSet => f.write_str("64-bit payload length has its most significant bit set"),
            ProtocolError::UnmaskedClientFrame => f.write_str("client frame is not masked"),
            ProtocolError::MaskedServerFrame => f.write_str("server frame is masked"),
            ProtocolError::FragmentedControlFrame => f.write_str("control frame is fragmented"),
            ProtocolError::ControlFrameTooLong(len) => {
                write!(f, "control frame payload of {len} bytes exceeds 125")
            }
            ProtocolError::UnexpectedContinuation => f.write_str("continuation frame with no message in progress"),
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is in progress")
            }
            ProtocolError::CloseFrameTooShort => f.write_str("close frame payload of 1 byte"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            ProtocolError::CompressedControlOrContinuation => {
                f.write_str("RSV1 set on a control or continuation frame")
            }
            ProtocolError::InvalidCompressedData => f.write_str("invalid permessage-deflate data"),
            ProtocolError::FrameTooLarge { limit, actual } => {
                write!(f, "frame of {actual} bytes exceeds the limit of {limit}")
            }
            ProtocolError::MessageTooLarge { limit, actual } => {
                write!(f, "message of at least {actual} bytes exceeds the limit of {limit}")
            }
            ProtocolError::TooManyFragments { limit } => {
                write!(f, "message has more than {limit} fragments")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The application asked the connection for something it cannot do now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// The closing handshake has started: no more data or pings may be sent.
    Closed,
    /// A control frame payload (ping, pong, close reason) longer than 125 bytes.
    ControlPayloadTooLong(usize),
    /// A close code that may not be sent (1005, 1006, 1015, or outside the valid ranges).
    UnsendableCloseCode(u16),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Closed => f.write_str("the connection is closing or closed"),
            UsageError::ControlPayloadTooLong(len) => {
                write!(f, "control frame payload of {len} bytes exceeds 125 (close reasons: 123)")
            }
            UsageError::UnsendableCloseCode(code) => write!(f, "close code {code} may not be sent"),
        }
    }
}

impl std::error::Error for UsageError {}
