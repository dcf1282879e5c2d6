//! A message framed once for many connections (broadcast): the frame's
//! bytes are built once and shared by every server connection that sends
//! it, so a thousand subscribers cost a thousand references, not a
//! thousand copies or a thousand encodings. Likewise its compressed form:
//! made by the first connection that compresses each message on its own
//! (`server_no_context_takeover`), then shared by every other such one.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::deflate::Compressor;
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::message::Message;

/// A data message as one final, unmasked, uncompressed frame, and, once a
/// connection has asked for it, as one compressed frame.
///
/// Only servers can send it as is (clients must mask each frame with a
/// fresh key); a client connection given one frames the payload itself.
///
/// Cloning it (once per recipient) is one reference count increment.
#[derive(Clone, Debug)]
pub struct PreparedMessage {
    inner: Arc<Prepared>,
}

#[derive(Debug)]
struct Prepared {
    frame: Bytes,
    header_len: u8,
    opcode: OpCode,
    /// Made by the first connection that compresses, for all the others.
    compressed: OnceLock<Option<CompressedFrame>>,
}

/// The compressed frame (RSV1 set), and the LZ77 window its compressor
/// used: a peer that accepts at least that window can inflate it.
#[derive(Debug)]
pub(crate) struct CompressedFrame {
    pub(crate) frame: Bytes,
    pub(crate) header_len: u8,
    pub(crate) window_bits: u8,
}

/// Two prepared messages are equal when their messages are: whether one
/// has been compressed yet is not part of its value.
impl PartialEq for PreparedMessage {
    fn eq(&self, other: &Self) -> bool {
        self.inner.opcode == other.inner.opcode && self.inner.frame == other.inner.frame
    }
}

impl Eq for PreparedMessage {}

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
        let prepared =
            Prepared { frame: frame.freeze(), header_len: header_len as u8, opcode, compressed: OnceLock::new() };
        PreparedMessage { inner: Arc::new(prepared) }
    }

    /// The compressed frame for a connection whose `compressor` keeps no
    /// context between messages: compressed by the first such connection,
    /// shared by the rest. `None` when compressing does not make the message
    /// smaller, or when it was compressed with a larger window than this
    /// connection's peer accepts.
    pub(crate) fn compressed_for(&self, compressor: &mut Compressor) -> Option<&CompressedFrame> {
        debug_assert!(compressor.is_stateless(), "a compressor with context cannot share its output");
        let inner = &*self.inner;
        let compressed = inner.compressed.get_or_init(|| {
            let payload = &inner.frame[usize::from(inner.header_len)..];
            let mut deflated = Vec::new();
            compressor.compress_message(payload, &mut deflated);
            if deflated.len() >= payload.len() {
                return None;
            }
            let header = FrameHeader { rsv1: true, ..FrameHeader::new(inner.opcode, deflated.len() as u64) };
            let mut encoded = [0u8; MAX_HEADER_LEN];
            let header_len = header.encode(&mut encoded);
            let mut frame = BytesMut::with_capacity(header_len + deflated.len());
            frame.extend_from_slice(&encoded[..header_len]);
            frame.extend_from_slice(&deflated);
            Some(CompressedFrame {
                frame: frame.freeze(),
                header_len: header_len as u8,
                window_bits: compressor.window_bits(),
            })
        });
        compressed.as_ref().filter(|compressed| compressed.window_bits <= compressor.window_bits())
    }

    /// The length of the compressed frame, once a connection has
    /// compressed the message (`None` before, or if compression did not
    /// make it smaller).
    #[must_use]
    pub fn compressed_len(&self) -> Option<usize> {
        self.inner.compressed.get().and_then(Option::as_ref).map(|compressed| compressed.frame.len())
    }

    /// The whole frame, header included.
    #[must_use]
    pub fn frame(&self) -> &Bytes {
        &self.inner.frame
    }

    /// The payload's length.
    #[must_use]
    pub fn payload_len(&self) -> usize {
        self.inner.frame.len() - usize::from(self.inner.header_len)
    }

    /// The length of the uncompressed frame's header.
    pub(crate) fn header_len(&self) -> u8 {
        self.inner.header_len
    }

    /// The payload alone (a view into the frame).
    #[must_use]
    pub fn payload(&self) -> Bytes {
        self.inner.frame.slice(usize::from(self.inner.header_len)..)
    }

    /// Text or binary.
    #[must_use]
    pub fn opcode(&self) -> OpCode {
        self.inner.opcode
    }

    /// Bytes on the wire.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.frame.len()
    }

    /// Whether the frame is empty (never: a frame has a header).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.frame.is_empty()
    }
}
