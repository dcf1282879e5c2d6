//! WebSockets inside another HTTP server (hyper, axum, anything that hands
//! over an upgraded connection), and over a transport you bring yourself.
//!
//! An [`Upgrader`] holds what a tether server holds: the configuration,
//! the hub, the metrics, the hook. Given a request the framework parsed,
//! it decides exactly as `tether::Server` and the reactor do (routes,
//! origins, the hook, the protocol checks, permessage-deflate): either an
//! [`Upgrade`], whose `101` answer the framework sends before it hands the
//! connection over, or the [`HttpAnswer`] to send instead. The connection
//! then joins the hub, is counted in the metrics and carries the hook's
//! state ([`WebSocket::state`], [`WebSocket::hub`]), as on every tether server.
//!
//! ```no_run
//! # async fn example(request: tether::proto::handshake::Request, peer: std::net::SocketAddr) -> tether::Result<()> {
//! let upgrader = tether::Upgrader::new(tether::ServerConfig::default())?;
//! match upgrader.upgrade(request, peer) {
//!     Ok(upgrade) => {
//!         let answer = upgrade.answer(); // 101 and its headers: the framework sends them
//!         # let stream = tokio::io::duplex(64).0;
//!         let mut ws = upgrade.into_websocket(stream); // the upgraded connection
//!         ws.send("welcome").await?;
//!     }
//!     Err(refusal) => { /* send refusal.status, refusal.headers, refusal.body */ }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`Upgrader::accept`] and [`connect_over`](crate::client::connect_over) do the whole
//! opening handshake themselves over any transport (tokio-tungstenite's
//! `accept_hdr_async` and `client_async`).

use std::net::SocketAddr;
use std::sync::Arc;

use tether_proto::handshake::{HeadReader, Request};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::handshake::{read_head, HeadReadError};
use crate::websocket::{ConnectionInfo, Core, Handshake, WebSocket};
use crate::ServerConfig;

/// Admits WebSocket requests for an HTTP server that is not tether's.
/// Cheap to clone (share one per endpoint).
#[derive(Clone, Debug)]
pub struct Upgrader {
    shared: Arc<tether_server::Shared>,
}

/// An HTTP answer, for the framework to send: the `101` of an [`Upgrade`],
/// or a refusal (its status, headers, and a plain-text body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status, e.g. `101`, `403`, `426`.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for a `101`).
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The same as an `http` response, for hyper and axum (feature `http`).
    ///
    /// # Panics
    /// Never: tether's statuses and headers are valid HTTP.
    #[cfg(feature = "http")]
    #[must_use]
    pub fn into_http(self) -> http::Response<Vec<u8>> {
        let mut response = http::Response::new(self.body);
        *response.status_mut() =
            http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(&value))
            {
                response.headers_mut().append(name, value);
            }
        }
        response
    }

    /// Reads back an answer tether wrote (a status line, headers, a body).
    fn from_bytes(bytes: &[u8]) -> HttpAnswer {
        let split = bytes.windows(4).position(|window| window == b"\r\n\r\n").map_or(bytes.len(), |at| at + 4);
        let (head, body) = bytes.split_at(split);
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split("\r\n");
        let status =
            lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).unwrap_or(500);
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        HttpAnswer { status, headers, body: body.to_vec() }
    }
}

/// An `http` request (hyper's, axum's) as tether's handshake reads one
/// (feature `http`): method, target, version and headers; the body is not
/// needed.
#[cfg(feature = "http")]
#[must_use]
pub fn request_from_http<B>(request: &http::Request<B>) -> Request {
    let mut headers = tether_proto::handshake::Headers::new();
    for (name, value) in request.headers() {
        headers.push(name.as_str(), value.as_bytes());
    }
    // HTTP/2 and HTTP/3 have no `Host` header, only the URI's authority.
    if request.headers().get(http::header::HOST).is_none() {
        if let Some(authority) = request.uri().authority() {
            headers.push("Host", authority.as_str());
        }
    }
    let minor_version = match request.version() {
        http::Version::HTTP_09 | http::Version::HTTP_10 => 0,
        _ => 1,
    };
    let target = request.uri().path_and_query().map_or_else(|| "/".to_owned(), |target| target.as_str().to_owned());
    Request { method: request.method().as_str().to_owned(), target, minor_version, headers }
}

/// An admitted upgrade request: send [`answer`](Self::answer), then make
/// the connection with [`into_websocket`](Self::into_websocket).
pub struct Upgrade {
    opened: tether_server::Opened,
    peer: SocketAddr,
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade").field("peer", &self.peer).field("path", &self.opened.request.path()).finish()
    }
}

impl Upgrader {
    /// An endpoint with `config` (its hub, metrics, hook, limits,
    /// keepalive, allowed origins; `tls` is the framework's business).
    ///
    /// # Errors
    /// The configuration cannot work.
    pub fn new(config: ServerConfig) -> Result<Upgrader> {
        Ok(Upgrader { shared: Arc::new(tether_server::Shared::new(config)?) })
    }

    /// The configuration (and through it the hub and the metrics).
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        self.shared.config()
    }

    /// Admission for `request` from `peer`, as every tether server does it.
    ///
    /// # Errors
    /// The request is refused (or is plain HTTP that the configuration
    /// answers, such as `/metrics`): send the answer and close.
    pub fn upgrade(&self, request: Request, peer: SocketAddr) -> std::result::Result<Upgrade, HttpAnswer> {
        let now = tokio::time::Instant::now().into_std();
        match tether_server::open_request(&self.shared, request, peer, now) {
            Ok(opened) => Ok(Upgrade { opened, peer }),
            Err(refused) => Err(HttpAnswer::from_bytes(&refused.answer)),
        }
    }

    /// The whole opening handshake over `stream`, a transport that has
    /// not spoken yet (tokio-tungstenite's `accept_hdr_async`): the
    /// request is read, admitted and answered here.
    ///
    /// # Errors
    /// The transport failed, or the request was refused (the refusal was
    /// sent).
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        peer: SocketAddr,
    ) -> Result<WebSocket<S>> {
        let mut reader = HeadReader::new(self.shared.config().limits.clone());
        let leftover = match read_head(&mut stream, &mut reader).await {
            Ok(leftover) => leftover,
            Err(HeadReadError::Io(error)) => return Err(error.into()),
            Err(HeadReadError::Head(error)) => {
                let refused = tether_server::Refused::head(&error, peer);
                let _ = stream.write_all(&refused.answer).await;
                let _ = stream.shutdown().await;
                return Err(Error::from(refused.rejection));
            }
        };
        let now = tokio::time::Instant::now().into_std();
        let opened = match tether_server::open(&self.shared, &reader, peer, now) {
            Ok(opened) => opened,
            Err(refused) => {
                let _ = stream.write_all(&refused.answer).await;
                let _ = stream.shutdown().await;
                return Err(Error::from(refused.rejection));
            }
        };
        stream.write_all(&opened.response).await?;
        stream.flush().await?;
        Ok(Upgrade { opened, peer }.make(stream, &leftover))
    }
}

impl Upgrade {
    /// The `101 Switching Protocols` answer to send: `Upgrade`,
    /// `Connection`, `Sec-WebSocket-Accept`, and the subprotocol,
    /// extensions and extra headers agreed on.
    #[must_use]
    pub fn answer(&self) -> HttpAnswer {
        HttpAnswer::from_bytes(&self.opened.response)
    }

    /// The request.
    #[must_use]
    pub fn request(&self) -> &Request {
        &self.opened.request
    }

    /// The connection, over the transport the framework upgraded (after
    /// it sent the answer).
    #[must_use]
    pub fn into_websocket<S: AsyncRead + AsyncWrite + Unpin>(self, stream: S) -> WebSocket<S> {
        self.make(stream, &[])
    }

    fn make<S: AsyncRead + AsyncWrite + Unpin>(self, stream: S, leftover: &[u8]) -> WebSocket<S> {
        let tether_server::Opened { session, request, .. } = self.opened;
        let info = ConnectionInfo {
            peer_addr: Some(self.peer),
            handshake: Handshake::Request(request),
            ..ConnectionInfo::default()
        };
        WebSocket::new(stream, Core::Server(Box::new(session)), info, leftover)
    }
}
