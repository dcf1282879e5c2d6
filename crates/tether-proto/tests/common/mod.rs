//! Helpers shared by the core's behaviour tests: frame builders and a
//! harness that feeds bytes to a `Connection` and collects what comes out.

#![allow(dead_code)]

use tether_proto::connection::Event;
use tether_proto::frame::{apply_mask, FrameHeader, OpCode, MAX_HEADER_LEN};
use tether_proto::{CloseCode, Config, Connection, ProtocolError, Role};

/// A fixed mask key, so frames are reproducible.
pub const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// One frame's bytes, built by hand so tests can break any rule.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
    /// Overrides the declared length (to lie about it).
    pub declared_len: Option<u64>,
}

impl FrameSpec {
    /// A final, masked (client-to-server) frame.
    pub fn client(opcode: OpCode, payload: &[u8]) -> FrameSpec {
        FrameSpec {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode: opcode.as_u8(),
            mask: Some(MASK),
            payload: payload.to_vec(),
            declared_len: None,
        }
    }

    /// A final, unmasked (server-to-client) frame.
    pub fn server(opcode: OpCode, payload: &[u8]) -> FrameSpec {
        FrameSpec { mask: None, ..FrameSpec::client(opcode, payload) }
    }

    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    pub fn rsv1(mut self) -> Self {
        self.rsv1 = true;
        self
    }

    pub fn raw_opcode(mut self, opcode: u8) -> Self {
        self.opcode = opcode;
        self
    }

    pub fn declared_len(mut self, len: u64) -> Self {
        self.declared_len = Some(len);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let len = self.declared_len.unwrap_or(self.payload.len() as u64);
        let mut out = Vec::new();
        out.push(
            u8::from(self.fin) << 7
                | u8::from(self.rsv1) << 6
                | u8::from(self.rsv2) << 5
                | u8::from(self.rsv3) << 4
                | (self.opcode & 0x0f),
        );
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        match len {
            0..=125 => out.push(mask_bit | len as u8),
            126..=0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        let mut payload = self.payload.clone();
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
            apply_mask(&mut payload, key, 0);
        }
        out.extend_from_slice(&payload);
        out
    }
}

/// A close frame payload: code then reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

/// A connection under test and everything it produced.
pub struct Harness {
    pub connection: Connection,
    /// The peer's role: frames we parse from the output are from us to it.
    pub role: Role,
}

impl Harness {
    pub fn server(config: Config) -> Harness {
        Harness { connection: Connection::new(Role::Server, config, None), role: Role::Server }
    }

    pub fn client(config: Config) -> Harness {
        Harness { connection: Connection::new(Role::Client, config, None), role: Role::Client }
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.connection.handle_read(bytes)
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.connection.poll_event()).collect()
    }

    /// Everything transmitted so far, parsed into (opcode, payload) frames.
    pub fn sent_frames(&mut self) -> Vec<(OpCode, bool, Vec<u8>)> {
        parse_frames(&drain(&mut self.connection))
    }

    /// The close code we sent, if we sent a close frame.
    pub fn sent_close_code(&mut self) -> Option<u16> {
        self.sent_frames()
            .into_iter()
            .find(|(opcode, _, _)| *opcode == OpCode::Close)
            .map(|(_, _, payload)| u16::from_be_bytes([payload[0], payload[1]]))
    }
}

/// Everything the connection has to transmit, in order, marked as sent.
pub fn drain(connection: &mut Connection) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let chunk = connection.pending_transmit();
        if chunk.is_empty() {
            return bytes;
        }
        let n = chunk.len();
        bytes.extend_from_slice(chunk);
        connection.advance_transmit(n);
    }
}

/// Parses a byte stream into (opcode, rsv1, payload) frames (unmasking if
/// needed). Panics on garbage: it is only used on our own output, which
/// must always parse.
pub fn parse_frames(bytes: &[u8]) -> Vec<(OpCode, bool, Vec<u8>)> {
    walk_frames(bytes).into_iter().map(|(header, payload)| (header.opcode, header.rsv1, payload)).collect()
}

/// Every frame's header and unmasked payload.
fn walk_frames(mut bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (header, header_len) = FrameHeader::decode(bytes).expect("valid header").expect("complete header");
        let end = header_len + header.payload_len as usize;
        let mut payload = bytes[header_len..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        frames.push((header, payload));
        bytes = &bytes[end..];
    }
    frames
}

/// Parses a byte stream into (opcode, fin, payload) frames.
pub fn parse_frames_with_fin(bytes: &[u8]) -> Vec<(OpCode, bool, Vec<u8>)> {
    walk_frames(bytes).into_iter().map(|(header, payload)| (header.opcode, header.fin, payload)).collect()
}

/// Asserts the connection failed with `code`, sent it, and is closed.
pub fn assert_failed_with(harness: &mut Harness, result: Result<(), ProtocolError>, code: CloseCode) {
    let error = result.expect_err("the input must be refused");
    assert_eq!(error.close_code(), code, "{error}");
    let _ = harness.events();
    assert_eq!(harness.sent_close_code(), Some(code.0));
    assert_eq!(harness.connection.state(), tether_proto::State::Closed);
}

#[allow(unused)]
pub const HEADER_ROOM: usize = MAX_HEADER_LEN;
