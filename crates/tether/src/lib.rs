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
//! - [`metrics`]: Prometheus metrics at `/metrics`.
//! - [`redis`]: fan-out across processes through Redis pub/sub.
//! - [`hub`]: the server's registry, broadcast and topics with bounded mailboxes.
//! - [`proxy`]: HTTP and SOCKS5 proxies.
//! - [`server`]: `serve`, [`Server`], [`ServerConfig`], [`Routes`], `accept`.
//! - [`admission`]: who gets in: the handshake hook, origins, auth, the connection cap, plain HTTP.
//! - [`WebSocket`]: an open connection; `split` into [`WebSocketReader`]/[`WebSocketWriter`].
//! - [`tls`]: rustls configuration for both sides.
//! - [`trace`]: print handshakes and frames (`TETHER_TRACE=1`).
//! - [`Error`]: the one error type.

pub mod admission;
pub mod app;
pub mod blocking;
pub mod client;
mod error;
mod handshake;
pub mod heartbeat;
pub mod hub;
mod kernel;
pub mod metrics;
pub mod proxy;
pub mod reactor;
pub mod reconnect;
pub mod redis;
pub mod server;
mod split;
mod stream;
pub mod tls;
pub mod trace;
mod websocket;

pub use app::{App, AppHandle, Handler, Reconnect, Stopped};
pub use client::{connect, connect_with, ClientConfig};
pub use error::{Error, Result};
pub use hub::Hub;
pub use server::{accept, serve, Routes, Server, ServerConfig};
pub use split::{WebSocketReader, WebSocketWriter};
pub use stream::MaybeTlsStream;
pub use tether_proto as proto;
pub use tether_proto::{Bytes, CloseCode, CloseFrame, Config, DeflateConfig, Event, Message, RoundTrip, Text, Timeout};
pub use tls::TrustRoots;
pub use websocket::WebSocket;
