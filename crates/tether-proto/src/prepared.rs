//! A message framed once for many connections (broadcast): the frame's
//! bytes are built once and shared by every server connection that sends
//! it, so a thousand subscribers cost a thousand references, not a
//! thousand copies or a thousand encodings.

use bytes::{Bytes, BytesMut};

use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::message::Message;

/// A data message as one final, unmasked, uncompressed frame.
///
/// Only servers can send it as is (clients must mask each frame with a
/// fresh key); a client connection given one frames the payload itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedMessage {
    frame: Bytes,
    header_len: u8,
    opcode: OpCode,
}

impl PreparedMessage {
    /// Frames `message` once.
    #[must_use]
    pub fn new(message: &Message) -> PreparedMessage {
        let opcode = if message.is_text() { OpCode::Text } else { OpCode::Binary };
        let payload = message.as_bytes();
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = FrameHeader::new(opcode, payload.len() as u64).encode(&mut header);
        let mut frame = BytesMut::with_capacity(header_len + payload.len());
        frame.extend_from_slice(&header[..header_len]);
        frame.extend_from_slice(payload);
        PreparedMessage { frame: frame.freeze(), header_len: header_len as u8, opcode }
    }

    /// The whole frame, header included.
    #[must_use]
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The payload's length.
    #[must_use]
    pub fn payload_len(&self) -> usize {
        self.frame.len() - usize::from(self.header_len)
    }

    /// The payload alone (a view into the frame).
    #[must_use]
    pub fn payload(&self) -> Bytes {
        self.frame.slice(usize::from(self.header_len)..)
    }

    /// Text or binary.
    #[must_use]
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// Bytes on the wire.
    #[must_use]
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Whether the frame is empty (never: a frame has a header).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }
}
