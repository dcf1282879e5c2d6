//! permessage-deflate (RFC 7692): negotiating its four parameters, and the
//! codec that compresses outgoing and inflates incoming messages, with the
//! inflated size capped by the message limit.
//!
//! # Memory
//! Each direction's zlib state is allocated when the first compressed
//! message goes that way and kept for the life of the connection (reset
//! between messages without context takeover). The compressor's cost grows
//! with its window and `mem_level`, the decompressor's with the peer's
//! window; `docs/memory.md` has the measured figures, and
//! `tests/limits.rs` measures them on every run.

mod codec;
mod extension;
mod negotiation;

pub use codec::{Compressor, Decompressor};
pub use extension::{parse_extensions, ExtensionOffer, ExtensionParseError};
pub use negotiation::{DeflateError, DeflateParams};

/// Our permessage-deflate preferences, as a client (what we offer) or as a
/// server (what we accept and ask of the client).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The server resets its compression context after each message (a
    /// server says so in its answer; a client asks for it in its offer).
    ///
    /// Default true, for servers at scale: a server compressing each
    /// message on its own keeps no compressor per connection (a thread's
    /// compressor serves all of them, where context takeover costs about
    /// 300 KiB per connection), and compresses a broadcast once for every
    /// subscriber. The price is ratio on small similar messages (chat,
    /// JSON), which compress better against the previous ones: set it false
    /// where bandwidth matters more than memory.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    /// Default false, for the same reason.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window (in bits, 8–15) the server compresses with.
    /// Default 15, the RFC's default, which every peer accepts.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window (in bits, 8–15) the client compresses with.
    /// Default 15.
    pub client_max_window_bits: u8,
    /// zlib compression level, 0–9. Default 1: the fastest level keeps most
    /// of the gain on the short, repetitive messages WebSockets carry.
    pub level: u32,
    /// zlib `memLevel`, 1–9: the size of the compressor's hash table and
    /// output buffer, and so most of its memory. Default 5, as Python
    /// `websockets`: far less memory than zlib's 8 for a small loss of ratio
    /// (figures in `docs/memory.md`).
    pub mem_level: u8,
    /// Messages shorter than this are sent uncompressed (RSV1 clear), since
    /// deflate's framing overhead outweighs the gain on a few bytes.
    /// Default 64 bytes.
    pub min_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 1,
            mem_level: 5,
            min_size: 64,
        }
    }
}

/// The trailer a sync flush leaves at the end of each message, which the
/// sender removes and the receiver appends back (RFC 7692 §7.2.1, §7.2.2).
pub(crate) const SYNC_TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
