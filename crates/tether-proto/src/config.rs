//! Every limit and option of a connection, each with its default and the
//! reason for it.

use crate::deflate::DeflateConfig;

/// Limits and options of an open connection.
///
/// `#[non_exhaustive]`: build it with [`Config::default`] and set fields, so
/// that adding a limit later is not a breaking change.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload a single incoming frame may declare.
    ///
    /// Default 16 MiB, equal to the message limit: a larger frame could never
    /// be part of an acceptable message. A frame declaring more is refused
    /// with 1009 as soon as its header arrives, before any payload is read or
    /// any memory reserved.
    pub max_frame_size: usize,
    /// Largest incoming message, counted after decompression. The limit is
    /// inclusive: a message of exactly this size is delivered.
    ///
    /// Default 16 MiB: the largest message of the Autobahn suite and of the
    /// interop matrix, while 100 connections each holding a message at the
    /// limit still fit in 1.6 GiB. Applications with small messages should
    /// lower it (Python `websockets` uses 1 MiB).
    pub max_message_size: usize,
    /// Most frames one fragmented message may be made of.
    ///
    /// Default 131,072 (2^17): twice the 65,536 fragments of the Autobahn
    /// suite's finest fragmentation (4 MiB in 64-byte frames), while a peer
    /// dribbling one-byte continuations forever is closed with 1009 after
    /// 128 KiB of payload. Memory is bounded by `max_message_size` anyway,
    /// since fragments are copied into one buffer; this bounds the work.
    pub max_fragments: usize,
    /// permessage-deflate (RFC 7692): `None` disables it.
    ///
    /// Default: enabled, with the parameters of [`DeflateConfig::default`].
    pub deflate: Option<DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 1 << 17,
            deflate: Some(DeflateConfig::default()),
        }
    }
}

impl Config {
    /// Sets both the frame and the message limit to `bytes`: the one knob
    /// most applications want (`--max-message-size`).
    #[must_use]
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self.max_frame_size = bytes;
        self
    }

    /// Sets or disables permessage-deflate.
    #[must_use]
    pub fn with_deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }
}

/// Limits on the opening handshake's HTTP head, on either side.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// Most bytes of the request or response head (request line and headers).
    ///
    /// Default 16 KiB: twice what nginx and most proxies allow per line, room
    /// for large cookies, and a bound on what a slow or hostile peer can make
    /// us hold before the connection is even open (answered with 431).
    pub max_head_bytes: usize,
    /// Most header fields.
    ///
    /// Default 128: browsers send about 15; the bound stops a flood of tiny
    /// headers (answered with 431).
    pub max_headers: usize,
    /// Longest single line of the head.
    ///
    /// Default 8 KiB, the per-line limit of common proxies (answered with 431).
    pub max_line_len: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits { max_head_bytes: 16 << 10, max_headers: 128, max_line_len: 8 << 10 }
    }
}

impl HandshakeLimits {
    /// Sets the most bytes of the head.
    #[must_use]
    pub fn with_max_head_bytes(mut self, bytes: usize) -> Self {
        self.max_head_bytes = bytes;
        self
    }

    /// Sets the most header fields.
    #[must_use]
    pub fn with_max_headers(mut self, count: usize) -> Self {
        self.max_headers = count;
        self
    }

    /// Sets the longest line.
    #[must_use]
    pub fn with_max_line_len(mut self, bytes: usize) -> Self {
        self.max_line_len = bytes;
        self
    }
}
