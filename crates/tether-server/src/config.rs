//! [`ServerConfig`]: how a server admits and runs connections, the same
//! for every server that drives a [`Session`](crate::session::Session).

use std::sync::Arc;
use std::time::Duration;

use tether_proto::handshake::ServerHandshakeConfig;
use tether_proto::{Config, HandshakeLimits, Message};

use crate::admission::{Hook, HttpHandler};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// A server's automatic answer to application heartbeat pings: given a
/// message, the reply to send instead of delivering it, or `None` to
/// deliver it (e.g. `tether::heartbeat::json_responder`).
pub type Responder = Arc<dyn Fn(&Message) -> Option<Message> + Send + Sync>;

/// How a server accepts connections. Start from [`ServerConfig::default`].
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Limits, permessage-deflate, keepalive (`ping_interval`,
    /// `ping_timeout`), `close_timeout` and `idle_timeout` for each open
    /// connection; each documented with its default on [`Config`].
    pub protocol: Config,
    /// Subprotocols spoken; the client's first choice among them is taken.
    pub protocols: Vec<String>,
    /// Headers added to every `101` answer.
    pub headers: Vec<(String, String)>,
    /// Limits on the request head (over them: 431).
    pub limits: HandshakeLimits,
    /// Deadline for TLS and the opening handshake together, from accept.
    /// Default 10 s: a client that trickles its request (slowloris) is
    /// dropped then, however steadily it sends.
    pub open_timeout: Duration,
    /// TLS (`wss://`), if set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answers application heartbeat pings before the application sees
    /// them. Default: none.
    pub heartbeat_responder: Option<Responder>,
    /// Decides, for every valid upgrade request, whether to accept it (and
    /// how) or refuse it (with what). Default: accept all. See
    /// [`crate::admission`], also for [`basic_auth`](crate::admission::basic_auth)
    /// and [`bearer_auth`](crate::admission::bearer_auth).
    pub hook: Option<Hook>,
    /// Browser origins allowed (`Origin` header, compared without case);
    /// others get 403. Requests without `Origin` pass. Default: all.
    pub allowed_origins: Option<Vec<String>>,
    /// Most connections open at once (handshakes included); past it, new
    /// ones get `503 Service Unavailable` with `Retry-After: 1` at once.
    /// Default: none (the open-file limit is the bound; past it, new
    /// clients get the same 503).
    pub max_connections: Option<usize>,
    /// Answers plain HTTP requests (no `Upgrade`) on the same port, e.g.
    /// [`health_check`](crate::admission::health_check); unanswered ones
    /// get 426 as usual. Default: none.
    pub http: Option<HttpHandler>,
    /// The kernel's send buffer for each accepted socket (`SO_SNDBUF`).
    /// Default: the system's, which on Linux grows to 4 MiB per socket:
    /// lower it to bound what a slow client can hold in the kernel, so
    /// the hub's overflow policy takes over sooner. Linux doubles the value.
    pub send_buffer: Option<usize>,
    /// Keep [`Metrics`]. They are served at `/metrics` on the WebSocket
    /// port only to requests that pass the origin check and the
    /// [`hook`](Self::hook) (so an authenticating hook protects them too);
    /// or serve them on an address of their own. Default: none.
    pub metrics: Option<Metrics>,
    /// The registry every connection joins: broadcast, topics, closing
    /// everyone at shutdown ([`Hub`]). Default: none.
    pub hub: Option<Hub>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("protocol", &self.protocol)
            .field("protocols", &self.protocols)
            .field("headers", &self.headers)
            .field("limits", &self.limits)
            .field("open_timeout", &self.open_timeout)
            .field("tls", &self.tls.is_some())
            .field("heartbeat_responder", &self.heartbeat_responder.is_some())
            .field("hook", &self.hook.is_some())
            .field("allowed_origins", &self.allowed_origins)
            .field("max_connections", &self.max_connections)
            .field("http", &self.http.is_some())
            .field("hub", &self.hub)
            .field("send_buffer", &self.send_buffer)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            protocol: Config::default(),
            protocols: Vec::new(),
            headers: vec![("Server".into(), concat!("tether/", env!("CARGO_PKG_VERSION")).into())],
            limits: HandshakeLimits::default(),
            open_timeout: Duration::from_secs(10),
            tls: None,
            heartbeat_responder: None,
            hook: None,
            allowed_origins: None,
            max_connections: None,
            http: None,
            hub: None,
            send_buffer: None,
            metrics: None,
        }
    }
}

impl ServerConfig {
    pub(crate) fn handshake_config(&self) -> ServerHandshakeConfig {
        let mut config = ServerHandshakeConfig::default();
        config.protocols = self.protocols.clone();
        config.deflate = self.protocol.deflate.clone();
        config
    }
}
