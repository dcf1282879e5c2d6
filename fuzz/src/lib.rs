//! Helpers shared by the fuzz targets of `tether-proto`: splitting an input
//! into reads, the small limits the targets run with, re-parsing what a
//! connection wrote, and checking that negotiated deflate parameters work.
//!
//! Every check here panics (so libFuzzer records a crash) when the core
//! breaks one of its documented promises.

use std::cell::RefCell;
use std::collections::HashSet;

use tether_proto::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD};
use tether_proto::handshake::{HeadError, HeadReader};
use tether_proto::{CloseCode, Config, Connection, DeflateConfig, DeflateParams, Event, HandshakeLimits, Message, Role};

/// Splits `data` into the non-empty pieces of a sequence of reads, chosen
/// by `seed`: 0 is one read of everything, 1 is one byte per read, anything
/// else is pseudo-random sizes (mostly 1–64 bytes, sometimes up to 1 KiB).
#[derive(Clone, Debug)]
pub struct Chunks<'a> {
    data: &'a [u8],
    seed: u8,
    rng: Rng,
}

impl<'a> Chunks<'a> {
    /// The reads of `data` chosen by `seed`.
    #[must_use]
    pub fn new(data: &'a [u8], seed: u8) -> Chunks<'a> {
        Chunks { data, seed, rng: Rng::new(seed) }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.data.is_empty() {
            return None;
        }
        let len = match self.seed {
            0 => self.data.len(),
            1 => 1,
            _ => {
                let r = self.rng.next();
                if r & 0x100 != 0 {
                    1 + (r >> 9) as usize % 1024
                } else {
                    1 + (r & 0x3f) as usize
                }
            }
        }
        .min(self.data.len());
        let (chunk, rest) = self.data.split_at(len);
        self.data = rest;
        Some(chunk)
    }
}

/// A tiny deterministic generator (xorshift32): fuzz runs must be reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u32);

impl Rng {
    /// A generator seeded from one input byte.
    #[must_use]
    pub fn new(seed: u8) -> Rng {
        Rng(u32::from(seed).wrapping_mul(0x9e37_79b9) | 1)
    }

    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// Largest frame the fuzzed connection accepts.
pub const MAX_FRAME: usize = 1024;
/// Largest message the fuzzed connection accepts.
pub const MAX_MESSAGE: usize = 2048;
/// Most frames in one message.
pub const MAX_FRAGMENTS: usize = 8;
/// Outgoing fragment size of the targets' connections.
pub const FRAGMENT_SIZE: usize = 512;

/// The small limits the fuzzed connections run with, so that the fuzzer
/// reaches every limit with short inputs.
#[must_use]
pub fn small_config() -> Config {
    let mut deflate = DeflateConfig::default();
    deflate.min_size = 8;
    let mut config = Config::default().with_deflate(Some(deflate));
    config.max_frame_size = MAX_FRAME;
    config.max_message_size = MAX_MESSAGE;
    config.max_fragments = MAX_FRAGMENTS;
    // Small enough that echoes of the larger messages go out fragmented,
    // through the backlog that lets control frames in between.
    config.fragment_size = FRAGMENT_SIZE;
    config
}

/// Negotiated permessage-deflate parameters chosen by two bits of input:
/// none, the defaults, no context takeover both ways, or small windows
/// (including the 8-bit window zlib cannot do natively).
#[must_use]
pub fn deflate_params(choice: u8) -> Option<DeflateParams> {
    let params = |snct, cnct, sbits, cbits| DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    };
    match choice & 3 {
        0 => None,
        1 => Some(params(false, false, 15, 15)),
        2 => Some(params(true, true, 15, 15)),
        _ => Some(params(true, false, 9, 8)),
    }
}

/// The role at the other end.
#[must_use]
pub fn opposite(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}

/// One frame written by a connection, unmasked.
#[derive(Clone, Debug)]
pub struct WireFrame {
    /// Its header.
    pub header: FrameHeader,
    /// Its payload, unmasked.
    pub payload: Vec<u8>,
}

/// Re-parses everything `role` wrote, checking that it is a sequence of
/// complete, well-formed frames as RFC 6455 requires of a sender: masked
/// exactly when the sender is a client, no RSV2/RSV3, RSV1 only on data
/// frames and only with deflate, control frames final and at most 125
/// bytes, close frames with a sendable code and a UTF-8 reason, data
/// fragments of at most `FRAGMENT_SIZE` in a valid sequence, and nothing
/// after the close frame.
///
/// # Panics
/// On any violation.
#[must_use]
pub fn parse_output(mut wire: &[u8], role: Role, deflate: bool) -> Vec<WireFrame> {
    let mut frames: Vec<WireFrame> = Vec::new();
    let mut in_message = false;
    while !wire.is_empty() {
        assert!(!frames.last().is_some_and(|f| f.header.opcode == OpCode::Close), "bytes after our close frame");
        let (header, header_len) =
            FrameHeader::decode(wire).expect("our own header decodes").expect("our own output holds whole headers");
        let len = usize::try_from(header.payload_len).unwrap();
        assert!(wire.len() >= header_len + len, "our own output holds whole frames");
        let mut payload = wire[header_len..header_len + len].to_vec();
        wire = &wire[header_len + len..];
        assert_eq!(header.mask.is_some(), role == Role::Client, "masking");
        if let Some(key) = header.mask {
            tether_proto::frame::apply_mask(&mut payload, key, 0);
        }
        assert!(!header.rsv2 && !header.rsv3);
        assert!(!header.rsv1 || (deflate && !header.opcode.is_control()));
        if !header.opcode.is_control() {
            // Messages over FRAGMENT_SIZE go out in fragments of that size:
            // a continuation only inside a message, RSV1 only on its first.
            assert_eq!(header.opcode == OpCode::Continuation, in_message, "fragments follow their message");
            assert!(!(header.rsv1 && header.opcode == OpCode::Continuation), "RSV1 on a continuation");
            assert!(len <= FRAGMENT_SIZE, "a fragment of {len} bytes");
            in_message = !header.fin;
        }
        if header.opcode.is_control() {
            assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        }
        if header.opcode == OpCode::Close {
            assert!(payload.len() >= 2, "we always send a status code");
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            assert!(code.is_sendable(), "we sent {code:?}");
            assert!(std::str::from_utf8(&payload[2..]).is_ok());
        }
        frames.push(WireFrame { header, payload });
    }
    frames
}

/// The close code of a close frame's payload.
#[must_use]
pub fn close_code(frame: &WireFrame) -> CloseCode {
    CloseCode(u16::from_be_bytes([frame.payload[0], frame.payload[1]]))
}

/// Takes everything `connection` wants to transmit, through
/// `pending_transmit` and `advance_transmit` in pieces chosen by `rng`,
/// appending it to `wire`.
pub fn drain_output(connection: &mut Connection, rng: &mut Rng, wire: &mut Vec<u8>) {
    while connection.wants_transmit() {
        let pending = connection.pending_transmit();
        assert!(!pending.is_empty(), "wants_transmit but nothing pending");
        let n = match rng.next() % 4 {
            0 => pending.len(),
            _ => (1 + rng.next() as usize % 97).min(pending.len()),
        };
        wire.extend_from_slice(&pending[..n]);
        connection.advance_transmit(n);
    }
    assert_eq!(connection.unsent_len(), 0);
}

/// Checks that parameters a handshake negotiated are in range and actually
/// work: a client and a server built with them exchange compressed
/// messages both ways, several times (context takeover). Each distinct set
/// of parameters is checked once per process, since it costs two zlib
/// streams each way.
///
/// # Panics
/// If a message does not arrive intact.
pub fn check_negotiated(params: DeflateParams) {
    assert!((8..=15).contains(&params.server_max_window_bits), "{params:?}");
    assert!((8..=15).contains(&params.client_max_window_bits), "{params:?}");
    thread_local! {
        static CHECKED: RefCell<HashSet<(bool, bool, u8, u8)>> = RefCell::new(HashSet::new());
    }
    let key = (
        params.server_no_context_takeover,
        params.client_no_context_takeover,
        params.server_max_window_bits,
        params.client_max_window_bits,
    );
    if !CHECKED.with(|checked| checked.borrow_mut().insert(key)) {
        return;
    }
    let config = Config::default();
    let mut client = Connection::new(Role::Client, config.clone(), Some(params));
    let mut server = Connection::new(Role::Server, config, Some(params));
    let text = "permessage-deflate κόσμε 🎉 ".repeat(20);
    let binary: Vec<u8> = (0..1500u32).map(|i| (i * i % 251) as u8).collect();
    for _ in 0..3 {
        for message in [Message::from(text.as_str()), Message::from(binary.clone())] {
            deliver(&mut client, &mut server, &message, params);
            deliver(&mut server, &mut client, &message, params);
        }
    }
}

fn deliver(from: &mut Connection, to: &mut Connection, message: &Message, params: DeflateParams) {
    from.send(message).unwrap();
    let wire = from.pending_transmit().to_vec();
    from.advance_transmit(wire.len());
    to.handle_read(&wire).unwrap_or_else(|e| panic!("{params:?}: {e}"));
    assert_eq!(to.poll_event(), Some(Event::Message(message.clone())));
}

/// What a refused head must look like: a limit (431, at most the limit
/// buffered), or bytes that are not HTTP (400), refused at the first byte
/// of the first line that no request or status line may hold.
pub fn check_head_refusal(error: &HeadError, reader: &HeadReader, limits: &HandshakeLimits) {
    assert!(reader.buffered() <= limits.max_head_bytes);
    match *error {
        HeadError::TooLarge { limit } => assert_eq!(limit, limits.max_head_bytes),
        HeadError::TooManyHeaders { limit } => assert_eq!(limit, limits.max_headers),
        HeadError::LineTooLong { limit } => assert_eq!(limit, limits.max_line_len),
        HeadError::NotHttp { byte, offset } => {
            assert_eq!(error.status(), 400);
            let seen = reader.head();
            assert_eq!(offset + 1, seen.len(), "refused at the byte that was not HTTP");
            assert_eq!(seen[offset], byte);
            assert!(!seen[..offset].contains(&b'\n'), "only the first line is checked");
            assert!(!(byte.is_ascii_graphic() || matches!(byte, b' ' | b'\t' | b'\r' | b'\n')), "{byte:#04x}");
            return;
        }
        _ => panic!("feed refuses only on limits and non-HTTP bytes: {error:?}"),
    }
    assert_eq!(error.status(), 431);
}
