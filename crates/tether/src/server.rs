//! Serving: accept TCP connections, optionally TLS, run the opening
//! handshake under a deadline, and give each connection to a handler in its
//! own task (the seeds' `serve(handler, host, port)`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use tether_proto::handshake::{accept_request, Accepted, HeadReader, Rejection, Request, ServerHandshakeConfig};
use tether_proto::time::{Deadline, Timeout};
use tether_proto::{CloseCode, Config, Connection, HandshakeLimits, Role};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::admission::{self, check_origin, is_upgrade, Acceptance, Admission, Hook, HttpHandler, HttpResponse};
use crate::error::{Error, Result};
use crate::handshake::{read_head, HeadReadError};
use crate::heartbeat::Responder;
use crate::hub::{Hub, Registration};
use crate::stream::MaybeTlsStream;
use crate::websocket::{ConnectionInfo, Handshake, WebSocket};

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
    /// Answers application heartbeat pings before the handler sees them
    /// (e.g. [`json_responder`](crate::heartbeat::json_responder)). Default: none.
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
    /// Default: none (the open-file limit is the bound).
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
    /// Keep [`Metrics`](crate::metrics::Metrics) and serve them at
    /// `/metrics` (Prometheus text) on the same port. Default: none.
    pub metrics: Option<crate::metrics::Metrics>,
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
    fn handshake_config(&self) -> ServerHandshakeConfig {
        let mut config = ServerHandshakeConfig::default();
        config.protocols = self.protocols.clone();
        config.deflate = self.protocol.deflate.clone();
        config
    }
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    handshake: ServerHandshakeConfig,
    /// The paths served, when serving [`Routes`]; `None` serves every path.
    paths: Option<Vec<String>>,
    /// Connections open now, handshakes included.
    active: Arc<AtomicUsize>,
}

impl Shared {
    pub(crate) fn new(config: ServerConfig) -> Shared {
        Shared { handshake: config.handshake_config(), config, paths: None, active: Arc::default() }
    }
}

/// Counts one open connection until dropped.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type BoxedHandler = Arc<dyn Fn(WebSocket) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Handlers by path, for [`Server::serve_routes`]: a request for a path
/// with no route is refused with 404 before the handshake completes.
#[derive(Default)]
pub struct Routes {
    routes: Vec<(String, BoxedHandler)>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes.iter().map(|(path, _)| path)).finish()
    }
}

impl Routes {
    /// No routes yet.
    #[must_use]
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Serves `path` (exactly, query aside) with `handler`.
    #[must_use]
    pub fn route<H, F>(mut self, path: impl Into<String>, handler: H) -> Routes
    where
        H: Fn(WebSocket) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handler: BoxedHandler = Arc::new(move |socket| Box::pin(handler(socket)));
        self.routes.push((path.into(), handler));
        self
    }

    fn handler(&self, path: &str) -> Option<&BoxedHandler> {
        self.routes.iter().find(|(route, _)| route == path).map(|(_, handler)| handler)
    }
}

/// A bound listening socket that serves WebSocket connections.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `addr` with `config`.
    ///
    /// # Errors
    /// The configuration cannot work ([`Config::validate`], reported as
    /// [`io::ErrorKind::InvalidInput`] with the reason), or the address
    /// cannot be bound.
    pub async fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Server> {
        config.protocol.validate().map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let listener = TcpListener::bind(addr).await?;
        Ok(Server { listener, shared: Arc::new(Shared::new(config)) })
    }

    /// The bound address (useful after binding port 0).
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever, running `handler` on each in its own
    /// task once its handshake succeeds. Refused or failed handshakes are
    /// answered (400/426/431) and logged at debug level; they never reach
    /// the handler.
    ///
    /// When the handler returns, the connection is dropped: call
    /// [`WebSocket::close`] first for a clean close.
    ///
    /// # Errors
    /// Only if accepting fails in a way that will not pass (not for
    /// transient errors such as running out of file descriptors, which are
    /// logged and retried after a pause).
    pub async fn serve<H, F>(self, handler: H) -> io::Result<()>
    where
        H: Fn(WebSocket) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        self.accept_loop(move |socket| Some(handler(socket))).await
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stops
    /// accepting, asks every connection to close with 1001 "server shutting
    /// down", and waits for their close handshakes, at most the close
    /// timeout (plus a moment). Needs a [`hub`](ServerConfig::hub) to reach
    /// the connections; without one they are left to their handlers.
    ///
    /// Returns whether every connection closed in time.
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    pub async fn serve_until<H, F, S>(self, handler: H, shutdown: S) -> io::Result<bool>
    where
        H: Fn(WebSocket) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
        S: Future<Output = ()>,
    {
        let hub = self.shared.config.hub.clone();
        let close_timeout = self.shared.config.protocol.close_timeout;
        tokio::select! {
            result = self.serve(handler) => result.map(|()| true),
            () = shutdown => {
                // The listener is dropped with the `serve` future: no new connections.
                let Some(hub) = hub else { return Ok(true) };
                hub.close_all(CloseCode::GOING_AWAY, "server shutting down");
                Ok(hub.wait_empty(close_timeout + Duration::from_millis(500)).await)
            }
        }
    }

    /// Accepts connections forever, each path served by its route's
    /// handler; other paths are refused with 404.
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    pub async fn serve_routes(mut self, routes: Routes) -> io::Result<()> {
        let paths = routes.routes.iter().map(|(path, _)| path.clone()).collect();
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared.paths = Some(paths),
            None => unreachable!("the server is not serving yet"),
        }
        self.accept_loop(move |socket: WebSocket| {
            let path = socket.request().map(|request| request.path().to_owned()).unwrap_or_default();
            routes.handler(&path).map(|handler| handler(socket))
        })
        .await
    }

    /// The accept loop; `start` gives the handler's future for a socket
    /// (`None`: drop it).
    async fn accept_loop<S, F>(self, start: S) -> io::Result<()>
    where
        S: Fn(WebSocket) -> Option<F> + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(start);
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let active = self.shared.active.fetch_add(1, Ordering::Relaxed) + 1;
            let guard = ActiveGuard(self.shared.active.clone());
            if self.shared.config.max_connections.is_some_and(|max| active > max) {
                tokio::spawn(refuse_busy(tcp, guard));
                continue;
            }
            let shared = self.shared.clone();
            let handler = handler.clone();
            // The handshake runs in a short-lived task of its own; the
            // handler then gets a task holding only its own future, so the
            // handshake's state (TLS, the head reader) does not size every
            // connection's task for its whole life.
            tokio::spawn(async move {
                match accept_with(tcp, peer, &shared).await {
                    Ok(socket) => {
                        if let Some(future) = handler(socket) {
                            drop(tokio::spawn(async move {
                                let _guard = guard;
                                future.await;
                            }));
                        }
                    }
                    Err(error) => tracing::debug!(%peer, %error, "handshake failed"),
                }
            });
        }
    }
}

/// Serves `handler` on `addr` with the default configuration, forever.
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// tether::serve("127.0.0.1:9001", |mut ws: tether::WebSocket| async move {
///     while let Ok(Some(message)) = ws.recv().await {
///         if ws.send(message).await.is_err() {
///             break;
///         }
///     }
/// })
/// .await
/// # }
/// ```
///
/// # Errors
/// The address cannot be bound.
pub async fn serve<H, F>(addr: impl ToSocketAddrs, handler: H) -> io::Result<()>
where
    H: Fn(WebSocket) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    Server::bind(addr, ServerConfig::default()).await?.serve(handler).await
}

/// Runs the server side of the handshake on an accepted TCP connection
/// (for servers that run their own accept loop).
///
/// # Errors
/// TLS failure, a refused request (answered before returning), the open
/// timeout.
pub async fn accept(tcp: TcpStream, config: &ServerConfig) -> Result<WebSocket> {
    config.protocol.validate()?;
    let peer = tcp.peer_addr()?;
    let shared = Shared::new(config.clone());
    accept_with(tcp, peer, &shared).await
}

async fn accept_with(tcp: TcpStream, peer: SocketAddr, shared: &Shared) -> Result<WebSocket> {
    let config = &shared.config;
    let deadline = Deadline::after(tokio::time::Instant::now().into_std(), Some(config.open_timeout));
    let at = deadline.at().map_or_else(far_future, tokio::time::Instant::from_std);
    tokio::time::timeout_at(at, async {
        tcp.set_nodelay(true)?;
        if let Some(bytes) = config.send_buffer {
            socket2::SockRef::from(&tcp).set_send_buffer_size(bytes)?;
        }
        let socket = crate::kernel::raw_socket(&tcp);
        let stream = match &config.tls {
            Some(tls) => {
                MaybeTlsStream::ServerTls(Box::new(tokio_rustls::TlsAcceptor::from(tls.clone()).accept(tcp).await?))
            }
            None => MaybeTlsStream::Plain(tcp),
        };
        handshake(stream, peer, socket, shared).await
    })
    .await
    .map_err(|_| Error::timed_out(Timeout::Open))?
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    socket: Option<crate::kernel::RawSocket>,
    shared: &Shared,
) -> Result<WebSocket<S>> {
    let config = &shared.config;
    let mut reader = HeadReader::new(config.limits.clone());
    let leftover = match read_head(&mut stream, &mut reader).await {
        Ok(leftover) => leftover,
        Err(HeadReadError::Io(error)) => return Err(error.into()),
        Err(HeadReadError::Head(error)) => {
            return Err(refuse(&mut stream, Rejection::new(error.status(), error.to_string())).await)
        }
    };
    let request = match Request::parse(&reader) {
        Ok(request) => request,
        Err(error) => return Err(refuse(&mut stream, Rejection::new(error.status(), error.to_string())).await),
    };
    let traced = crate::trace::is_enabled();
    if traced {
        crate::trace::handshake(&peer.to_string(), "request", reader.head());
    }
    drop(reader);
    let (mut accepted, acceptance) = match admit(&request, peer, shared) {
        Ok(admitted) => admitted,
        Err(Answer::Refuse(rejection)) => return Err(refuse(&mut stream, rejection).await),
        Err(Answer::Http(response)) => {
            let _ = stream.write_all(&response.to_bytes()).await;
            let _ = stream.shutdown().await;
            return Err(Rejection::new(response.status, "answered a plain HTTP request").into());
        }
    };
    let mut headers = config.headers.clone();
    headers.extend(acceptance.headers);
    if acceptance.protocol.is_some() {
        accepted.protocol = acceptance.protocol;
    }
    let response = accepted.response(&headers);
    if traced {
        crate::trace::handshake(&peer.to_string(), "response", &response);
    }
    stream.write_all(&response).await?;
    stream.flush().await?;
    let mut connection = Connection::new(Role::Server, config.protocol.clone(), accepted.deflate);
    if traced {
        connection.set_frame_observer(crate::trace::frame_observer(peer.to_string()));
    }
    let request_path = &request.path().to_owned();
    let info = ConnectionInfo {
        peer_addr: Some(peer),
        handshake: Handshake::Request(request),
        protocol: accepted.protocol.map(Into::into),
        responder: config.heartbeat_responder.clone(),
        socket,
        state: acceptance.state,
        metrics: config.metrics.clone().map(crate::metrics::Tracked::new),
        registration: config.hub.as_ref().map(|hub| {
            let (id, mailbox) = hub.join(Some(peer), request_path.as_str().into());
            Registration { hub: hub.clone(), id, mailbox }
        }),
    };
    Ok(WebSocket::new(stream, connection, info, &leftover))
}

/// Every decision between a parsed request and the `101`, in order (see
/// [`admission`](crate::admission)); `Err` is the answer to send instead.
pub(crate) fn admit(
    request: &Request,
    peer: SocketAddr,
    shared: &Shared,
) -> std::result::Result<(Accepted, Acceptance), Answer> {
    let config = &shared.config;
    if !is_upgrade(request) {
        if let (Some(metrics), "/metrics") = (&config.metrics, request.path()) {
            return Err(Answer::Http(HttpResponse::new(200, "text/plain; version=0.0.4", metrics.render())));
        }
        if let Some(answer) = config.http.as_ref().and_then(|http| http(request)) {
            return Err(Answer::Http(answer));
        }
    }
    if let Some(paths) = &shared.paths {
        if !paths.iter().any(|path| path == request.path()) {
            return Err(Rejection::new(404, format!("no WebSocket endpoint at {}", request.path())).into());
        }
    }
    check_origin(config.allowed_origins.as_deref(), request).map_err(|refusal| Answer::Refuse(refusal.0))?;
    let accepted = accept_request(request, &shared.handshake).map_err(Answer::Refuse)?;
    let acceptance = match config.hook.as_ref().map(|hook| hook(&admission::Handshake { request, peer })) {
        None => Acceptance::default(),
        Some(Admission::Accept(acceptance)) => acceptance,
        Some(Admission::Reject(refusal)) => return Err(Answer::Refuse(refusal.0)),
    };
    if let Some(protocol) = &acceptance.protocol {
        let offered = admission::Handshake { request, peer }.offered_protocols().contains(&protocol.as_str());
        if !offered {
            // A hook bug, not the client's: answer 500 rather than a 101 the
            // client must reject.
            let why = format!("the server chose subprotocol {protocol:?}, which was not offered");
            return Err(Rejection::new(500, why).into());
        }
    }
    Ok((accepted, acceptance))
}

/// What to answer instead of a `101`.
pub(crate) enum Answer {
    Refuse(Rejection),
    Http(HttpResponse),
}

impl From<Rejection> for Answer {
    fn from(rejection: Rejection) -> Answer {
        Answer::Refuse(rejection)
    }
}

/// Refuses a connection past `max_connections` with 503, without reading
/// its request; briefly drains what it sends so the close is clean (no reset).
async fn refuse_busy(mut tcp: TcpStream, guard: ActiveGuard) {
    let answer = Rejection::new(503, "too many connections; try again").with_header("Retry-After", "1");
    let _ = tcp.write_all(&answer.to_bytes()).await;
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while matches!(tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    drop(guard);
}

/// Answers a refused handshake and closes; returns the error describing it.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, rejection: Rejection) -> Error {
    let _ = stream.write_all(&rejection.to_bytes()).await;
    let _ = stream.shutdown().await;
    rejection.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a handler returns, without running it.
    fn future_size<H, F>(_: &H) -> usize
    where
        H: Fn(WebSocket) -> F,
    {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_open_connection_is_a_few_hundred_bytes_of_state() {
        // What an idle served connection holds, besides the socket's
        // registration and its task header: the handler's future, which
        // holds the WebSocket. The handshake's state is not part of it.
        let echo = |mut socket: WebSocket| async move {
            while let Ok(Some(message)) = socket.recv().await {
                if socket.send(message).await.is_err() {
                    break;
                }
            }
        };
        let websocket = std::mem::size_of::<WebSocket>();
        let task = future_size(&echo);
        println!("WebSocket {websocket} B, echo handler future {task} B");
        // The keepalive timers (core) and the timer handle added 168 B;
        // the `Sleep` they arm is boxed and counted in docs/memory.md.
        assert!(websocket <= 520, "WebSocket is {websocket} B");
        assert!(task <= 720, "the echo handler's future is {task} B");
    }
}
