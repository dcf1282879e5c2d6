//! The frame header codec (RFC 6455 §5.2).

use super::OpCode;
use crate::error::ProtocolError;

/// The longest possible header: 2 fixed bytes, an 8-byte extended length, a 4-byte mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded frame header. The payload follows it on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of its message.
    pub fin: bool,
    /// RSV1: with permessage-deflate, "this message is compressed" (RFC 7692 §6).
    pub rsv1: bool,
    /// RSV2: no extension we negotiate uses it.
    pub rsv2: bool,
    /// RSV3: no extension we negotiate uses it.
    pub rsv3: bool,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key; present exactly on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A final, unmasked, uncompressed header for `opcode` and `payload_len`.
    #[must_use]
    pub const fn new(opcode: OpCode, payload_len: u64) -> FrameHeader {
        FrameHeader { fin: true, rsv1: false, rsv2: false, rsv3: false, opcode, mask: None, payload_len }
    }

    /// How many header bytes a buffer starting with `first_two` needs in all.
    #[must_use]
    pub const fn len_from_prefix(first_two: [u8; 2]) -> usize {
        let masked = first_two[1] & 0x80 != 0;
        let length_bytes = match first_two[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + length_bytes + if masked { 4 } else { 0 }
    }

    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` is too short to hold the whole header,
    /// and the header with its encoded length otherwise.
    ///
    /// # Errors
    /// A reserved opcode, or a 64-bit length with the most significant bit set
    /// (RFC 6455 §5.2: "the most significant bit MUST be 0").
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let header_len = Self::len_from_prefix([b0, b1]);
        if buf.len() < header_len {
            return Ok(None);
        }
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpCode(b0 & 0x0f))?;
        let (payload_len, mask_at) = match b1 & 0x7f {
            126 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 => {
                let mut wide = [0u8; 8];
                wide.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(wide);
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBitSet);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = (b1 & 0x80 != 0).then(|| [buf[mask_at], buf[mask_at + 1], buf[mask_at + 2], buf[mask_at + 3]]);
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, header_len)))
    }

    /// Encodes the header into `out`, using the shortest length form as
    /// RFC 6455 §5.2 requires, and returns how many bytes it wrote.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = u8::from(self.fin) << 7
            | u8::from(self.rsv1) << 6
            | u8::from(self.rsv2) << 5
            | u8::from(self.rsv3) << 4
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = match self.payload_len {
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(header: FrameHeader) {
        let mut out = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut out);
        assert_eq!(FrameHeader::len_from_prefix([out[0], out[1]]), len);
        let (decoded, used) = FrameHeader::decode(&out[..len]).unwrap().unwrap();
        assert_eq!((decoded, used), (header, len));
        for short in 0..len {
            assert_eq!(FrameHeader::decode(&out[..short]).unwrap(), None);
        }
    }

    #[test]
    fn lengths_use_the_shortest_form_and_round_trip() {
        for (len, expected_size) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (u64::MAX >> 1, 10)] {
            let mut header = FrameHeader::new(OpCode::Binary, len);
            let mut out = [0u8; MAX_HEADER_LEN];
            assert_eq!(header.encode(&mut out), expected_size);
            round_trip(header);
            header.mask = Some([9, 8, 7, 6]);
            header.fin = false;
            header.rsv1 = true;
            round_trip(header);
        }
    }

    #[test]
    fn sixty_four_bit_length_with_top_bit_is_rejected() {
        let mut buf = [0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0];
        buf[2] = 0x80;
        assert_eq!(FrameHeader::decode(&buf), Err(ProtocolError::LengthTopBitSet));
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in [0x3, 0x7, 0xB, 0xF] {
            assert_eq!(FrameHeader::decode(&[0x80 | op, 0]), Err(ProtocolError::ReservedOpCode(op)));
        }
    }
}
