//! The server side of tether, without a runtime: what a server decides
//! about its connections, written once and driven by every server.
//!
//! `tether` has two servers: [`tether::Server`] gives each connection a
//! tokio task and an `async` handler; [`tether::reactor`] runs every
//! connection on one event loop with callbacks. Both are thin loops around
//! the same [`session::Session`]: admission, the `101`, the protocol core,
//! trace, the hub, metrics, the heartbeat responder, the hook's state and
//! the accounting at the end are decided here, so the servers cannot drift
//! apart. `tether` re-exports everything; a client-only build of `tether`
//! (`default-features = false`) does not build this crate at all.
//!
//! What it deliberately does not do: sockets, TLS, timers, tasks. The
//! hub's [`wait_empty`](hub::Hub::wait_empty) and the Redis bridge (feature
//! `redis`) run in the caller's tokio runtime.
//!
//! [`tether::Server`]: https://docs.rs/tether/latest/tether/struct.Server.html
//! [`tether::reactor`]: https://docs.rs/tether/latest/tether/reactor/index.html
//!
//! # Layout
//! - [`config`]: [`ServerConfig`], every server's settings.
//! - [`admission`]: who gets in: the hook, origins, auth, plain HTTP.
//! - [`session`]: one connection from its request to its last byte.
//! - [`hub`]: the exact registry of clients, broadcast, topics, mailboxes.
//! - [`metrics`]: Prometheus metrics.
//! - [`descriptors`]: accepting when the process is out of file descriptors.
//! - [`history`]: topic history with offsets, for recovery after a reconnect.
//! - [`fanout`]: fan-out across processes, whatever the engine; loss counted.
//! - `redis` (feature `redis`): the Redis engine.

pub mod admission;
pub mod config;
pub mod descriptors;
pub mod fanout;
pub mod history;
pub mod hub;
pub mod metrics;
#[cfg(feature = "redis")]
pub mod redis;
pub mod session;

pub use config::{Responder, ServerConfig};
pub use hub::Hub;
pub use session::{open, open_request, Opened, Refused, Session, Shared};
