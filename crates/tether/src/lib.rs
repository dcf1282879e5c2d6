//! WebSocket client and server on tokio, over the sans-I/O core in
//! [`tether_proto`].
//!
//! ```no_run
//! # async fn example() -> tether::Result<()> {
//! // Client: the short connection of the seeds.
//! let mut ws = tether::connect("ws://127.0.0.1:9001/").await?;
//! ws.send("Hello, world").await?;
//! let answer = ws.recv().await?;
//! ws.close(tether::CloseCode::NORMAL, "").await?;
//! # Ok(())
//! # }
//! ```
//!
//! This crate is the I/O layer only: sockets, TLS, deadlines, tasks. Every
//! rule of the protocol lives in `tether-proto`, which has no runtime.
//! There is no background task per connection: the task that calls `recv`
//! drives the connection (see [`WebSocket`]).
//!
//! # Layout
//! - [`client`]: `connect`, `connect_with`, [`ClientConfig`].
//! - [`blocking`]: the same client without an async runtime (`create_connection`).
//! - [`app`]: [`App`], callbacks, `run_forever`, reconnection ([`reconnect`] decides what is retried).
//! - [`heartbeat`]: an application-level heartbeat (JSON ping/pong messages).
//! - [`proxy`]: HTTP and SOCKS5 proxies.
//! - [`server`]: `serve`, [`Server`], [`ServerConfig`], [`Routes`], `accept`: a
//!   tokio task and an `async` handler per connection.
//! - [`reactor`]: the same server as one event loop with callbacks, no task per
//!   connection (what `tether serve` runs).
//! - From `tether-server` (feature `server`, on by default), shared by both
//!   servers: [`session`] (one connection from request to last byte),
//!   [`admission`] (who gets in: the hook, origins, auth, plain HTTP),
//!   [`hub`] (registry, broadcast, topics), [`metrics`] (Prometheus), and
//!   `redis` (fan-out across processes; feature `redis`).
//! - [`WebSocket`]: an open connection; `split` into [`WebSocketReader`]/[`WebSocketWriter`].
//! - [`tls`]: rustls configuration for both sides.
//! - [`trace`]: print handshakes and frames (`TETHER_TRACE=1`).
//!
//! # Features
//! - `server` (default): the servers and everything in `tether-server`, with
//!   `mio`. A client-only build (`default-features = false`) has none of it.
//! - `redis` (default): fan-out through Redis.
//! - [`Error`]: the one error type.

pub use tether_proto::trace;

/// The README's Rust examples, compiled by `cargo test --doc` so that they
/// keep working.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;

/// The tutorial's programs (`docs/tutorial.md`), compiled the same way.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/tutorial.md")]
struct TutorialExamples;

/// The side-by-side examples of `docs/coming-from.md`.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/coming-from.md")]
struct ComingFromExamples;
#[cfg(feature = "redis")]
pub use tether_server::redis;
/// The server session every server drives (see [`tether_server::session`]).
#[cfg(feature = "server")]
pub use tether_server::session;
#[cfg(feature = "server")]
pub use tether_server::{admission, fanout, history, hub, metrics};

pub mod app;
pub mod blocking;
pub mod client;
mod error;
mod handshake;
pub mod heartbeat;
mod kernel;
pub mod proxy;
#[cfg(feature = "server")]
pub mod reactor;
pub mod reconnect;
#[cfg(feature = "server")]
pub mod server;
mod split;
mod stream;
pub mod tls;
pub mod topics;
#[cfg(feature = "server")]
pub mod upgrade;
mod websocket;

pub use app::{App, AppHandle, Handler, Reconnect, Stopped};
pub use client::{connect, connect_with, ClientConfig, OpenTimings};
pub use error::{Error, Result};
#[cfg(feature = "server")]
pub use server::{accept, serve, HandlerOutput, Routes, Server, ServerConfig};
pub use split::{WebSocketReader, WebSocketWriter};
pub use stream::MaybeTlsStream;
pub use tether_proto as proto;
pub use tether_proto::{Bytes, CloseCode, CloseFrame, Config, DeflateConfig, Event, Message, RoundTrip, Text, Timeout};
#[cfg(feature = "server")]
pub use tether_server::Hub;
pub use tls::TrustRoots;
#[cfg(feature = "server")]
pub use upgrade::{HttpAnswer, Upgrade, Upgrader};
pub use websocket::{Pong, WebSocket};
