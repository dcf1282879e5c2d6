//! Every limit and option of a connection, each with its default and the
//! reason for it.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::deflate::DeflateConfig;
use crate::frame::MAX_CONTROL_PAYLOAD;

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
    /// Outgoing messages larger than this are sent as fragments of this
    /// size, so that a ping, a pong or a close frame is never stuck behind
    /// a large message: control frames go out between fragments.
    ///
    /// Default 64 KiB: a pong waits behind at most about five fragments
    /// (four are framed ahead, so that one write carries them; about 25 ms
    /// at 100 Mbit/s), while the per-fragment cost (a 4–14 byte header)
    /// stays below 0.03 %.
    pub fragment_size: usize,
    /// How often to send a keepalive ping; `None` sends none.
    ///
    /// Default 20 s, as Python `websockets`: often enough to keep NAT and
    /// proxy mappings (commonly 30–60 s) alive and to notice a dead peer
    /// within a minute, rare enough to cost nothing. The next ping is due
    /// one interval after the previous one was sent, and never while one
    /// is still unanswered.
    pub ping_interval: Option<Duration>,
    /// How long to wait for the pong to a keepalive ping before declaring
    /// the peer dead: the connection is then closed with 1011 and the
    /// reason "keepalive ping timeout". `None` waits forever (pings then
    /// only keep middleboxes awake and measure the round-trip time).
    ///
    /// Default 20 s, as Python `websockets`. Data arriving from the peer
    /// while it is late pushes the deadline back (a peer busy sending a
    /// large message cannot answer until it is done, but is alive), and
    /// so does our output draining while data is still queued for it.
    pub ping_timeout: Option<Duration>,
    /// The payload of keepalive pings (`websocket-client`'s `ping_payload`).
    /// `None` sends a 4-byte sequence number, so that a pong is matched to
    /// the very ping it answers.
    ///
    /// Default `None`. With a fixed payload, a pong carrying it is taken
    /// as the answer whichever ping it answers.
    pub ping_payload: Option<Bytes>,
    /// How long to wait, after our close frame is sent, for the peer to
    /// answer it (and for our last frames to be written).
    ///
    /// Default 10 s, as Python `websockets`: generous for any live peer,
    /// and a bound on what a dead one costs when closing.
    pub close_timeout: Duration,
    /// Close the connection (1001, "idle timeout") when no data message
    /// has gone either way for this long. Pings and pongs do not count:
    /// they prove the peer is alive, not that it has anything to say.
    ///
    /// Default `None`: most applications want to keep quiet connections.
    pub idle_timeout: Option<Duration>,
    /// Also hand out each data frame as it arrives
    /// ([`Event::Fragment`](crate::Event::Fragment)), before the whole
    /// message: `websocket-client`'s `on_cont_message` and `on_data`.
    ///
    /// Default `false`: each fragment is then a copy the application
    /// rarely wants.
    pub fragment_events: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 1 << 17,
            deflate: Some(DeflateConfig::default()),
            fragment_size: 64 << 10,
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Some(Duration::from_secs(20)),
            ping_payload: None,
            close_timeout: Duration::from_secs(10),
            idle_timeout: None,
            fragment_events: false,
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

    /// Sets the keepalive: a ping every `interval`, answered within
    /// `timeout`. `None` disables either.
    #[must_use]
    pub fn with_keepalive(mut self, interval: Option<Duration>, timeout: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self.ping_timeout = timeout;
        self
    }

    /// Sets the payload of keepalive pings.
    #[must_use]
    pub fn with_ping_payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.ping_payload = Some(payload.into());
        self
    }

    /// Sets how long the closing handshake may take.
    #[must_use]
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets or disables the idle timeout.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the size of outgoing fragments.
    #[must_use]
    pub fn with_fragment_size(mut self, bytes: usize) -> Self {
        self.fragment_size = bytes;
        self
    }

    /// Checks that the options can work together. The I/O layers call
    /// this before connecting or listening, so a mistake is reported at
    /// once rather than as a mysterious disconnect later.
    ///
    /// Both keepalive styles of the seeds are valid: a ping every 60 s
    /// answered within 5 s, and a ping every 20 s answered within 30 s
    /// (a ping is never sent while the previous one is unanswered, so a
    /// timeout longer than the interval simply spaces the pings out).
    ///
    /// # Errors
    /// What cannot work, and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let zero = |value: Option<Duration>| value.is_some_and(|value| value.is_zero());
        if zero(self.ping_interval) {
            return Err(ConfigError(
                "ping_interval is zero: that would ping without pause; use None to send no pings".into(),
            ));
        }
        if zero(self.ping_timeout) {
            return Err(ConfigError(
                "ping_timeout is zero: no pong can arrive in no time; use None to wait forever".into(),
            ));
        }
        if self.ping_timeout.is_some() && self.ping_interval.is_none() {
            return Err(ConfigError(
                "ping_timeout is set but ping_interval is None: no ping is ever sent, so no pong is \
                 awaited and dead peers would go unnoticed; set ping_interval too, or ping_timeout to None"
                    .into(),
            ));
        }
        if let Some(payload) = &self.ping_payload {
            if payload.len() > MAX_CONTROL_PAYLOAD {
                return Err(ConfigError(format!(
                    "ping_payload is {} bytes; a ping carries at most {MAX_CONTROL_PAYLOAD}",
                    payload.len()
                )));
            }
        }
        if self.close_timeout.is_zero() {
            return Err(ConfigError("close_timeout is zero: the peer could never answer our close frame".into()));
        }
        if zero(self.idle_timeout) {
            return Err(ConfigError(
                "idle_timeout is zero: every connection would be closed at once; use None to keep idle ones".into(),
            ));
        }
        if self.fragment_size == 0 {
            return Err(ConfigError("fragment_size is zero: a fragment must carry at least one byte".into()));
        }
        if self.max_message_size == 0 || self.max_frame_size == 0 {
            return Err(ConfigError("max_message_size and max_frame_size must be at least 1".into()));
        }
        Ok(())
    }
}

/// A [`Config`] whose options cannot work together; the message says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

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
