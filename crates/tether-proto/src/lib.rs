//! The WebSocket protocol (RFC 6455) with permessage-deflate (RFC 7692),
//! as a pure state machine: bytes and time in, bytes and events out.
//!
//! This crate performs no I/O. It never opens a socket, spawns a task,
//! reads a clock or sleeps; it has no async runtime as a dependency. The
//! `tether` crate drives it over tokio, and a blocking client drives it over
//! `std::net`; a test drives it with byte slices. Because nothing here can
//! block or race, every rule of the protocol is tested deterministically.
//!
//! Time comes in as an argument too: the keepalive schedule, the pong,
//! idle and close deadlines are computed from instants the caller passes
//! to [`Connection::handle_timeout`], and [`Connection::poll_timeout`] says
//! when to call it next. So they are written once, for every I/O layer,
//! and tested without sleeping.
//!
//! What it deliberately does not do: DNS, TLS, sockets (proxies included:
//! their exchanges are state machines here too), sleeping, and
//! buffering beyond what the protocol needs (one partial message, one
//! output buffer, one message being fragmented).
//!
//! # Layout
//! - [`frame`]: header codec, opcodes, close codes, masking.
//! - [`handshake`]: the opening handshake for both roles, with bounded parsing.
//! - [`deflate`]: permessage-deflate negotiation and codec.
//! - [`connection`]: the state machine of an open connection.
//! - [`config`]: every limit and timer, with its default and why.
//! - [`proxy`]: HTTP CONNECT and SOCKS5 tunnels, and proxies from the environment.
//! - [`backoff`]: reconnection delays, exponential with jitter.
//! - [`time`]: which deadline passed ([`Timeout`]), and the opening handshake's [`Deadline`].
//! - [`message`]: messages as the application sees them.
//! - [`error`]: protocol violations and misuse.
//! - `trace` (feature `trace`): handshakes and frames as log lines, for the I/O layers.
//!
//! # Example
//! ```
//! use tether_proto::{Config, Connection, Event, Message, Role};
//!
//! let mut server = Connection::new(Role::Server, Config::default(), None);
//! let mut client = Connection::new(Role::Client, Config::default(), None);
//! client.send_text("hello").unwrap();
//! let wire = client.pending_transmit().to_vec();
//! client.advance_transmit(wire.len());
//! server.handle_read(&wire).unwrap();
//! assert_eq!(server.poll_event(), Some(Event::Message(Message::from("hello"))));
//! ```

pub mod backoff;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod position;
pub mod prepared;
pub mod proxy;
pub mod time;
#[cfg(feature = "trace")]
pub mod trace;

mod assemble;
mod backlog;
mod keepalive;
mod transmit;

pub use bytes::Bytes;
pub use config::{Config, ConfigError, HandshakeLimits};
pub use connection::{Connection, Direction, Event, FrameObserver, Settings, State};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{ProtocolError, UsageError};
pub use frame::{CloseCode, MaskSource, OpCode};
pub use keepalive::RoundTrip;
pub use message::{CloseFrame, Message, Text};
pub use prepared::PreparedMessage;
pub use time::{Deadline, Timeout};

/// Which end of the connection we are: it decides who masks (RFC 6455 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Initiates the connection and masks every frame it sends.
    Client,
    /// Accepts the connection and never masks.
    Server,
}
