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

use tether_proto::handshake::HeadReader;
use tether_proto::time::{Deadline, Timeout};
use tether_proto::{CloseCode, CloseFrame};
use tether_server::descriptors::{busy_answer, is_out_of_descriptors, Reserve, ACCEPT_RETRY};
use tether_server::Refused;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::error::{Error, Result};
use crate::handshake::{read_head, HeadReadError};
use crate::stream::MaybeTlsStream;
use crate::websocket::{ConnectionInfo, Core, Handshake, Parts, WebSocket};

pub use tether_server::ServerConfig;

/// What the accept loop shares with every connection's task.
struct Shared {
    session: Arc<tether_server::Shared>,
    /// Connections open now, handshakes included.
    active: Arc<AtomicUsize>,
}

/// Counts one open connection until dropped.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type BoxedHandler = Arc<dyn Fn(WebSocket) -> Pin<Box<dyn Future<Output = CloseFrame> + Send>> + Send + Sync>;

/// What a handler's end means for its connection, if the handler leaves it
/// open: returning (`()` or `Ok`) closes it with 1000, failing (`Err`, or
/// a panic) closes it with 1011 "internal error", after the error is
/// logged. The close handshake then runs as usual, within the close
/// timeout: clients see a clean close, never a cut connection (1006).
///
/// A handler that closed its connection itself, or that hands it to
/// someone else (a registry, another task), is not affected: a connection
/// is closed this way only when it is dropped while still open.
pub trait HandlerOutput: Send + 'static {
    /// The close frame to send.
    fn into_close_frame(self) -> CloseFrame;
}

impl HandlerOutput for () {
    fn into_close_frame(self) -> CloseFrame {
        CloseFrame::new(CloseCode::NORMAL, "")
    }
}

impl<E: std::fmt::Display + Send + 'static> HandlerOutput for std::result::Result<(), E> {
    fn into_close_frame(self) -> CloseFrame {
        match self {
            Ok(()) => CloseFrame::new(CloseCode::NORMAL, ""),
            Err(error) => {
                tracing::warn!(%error, "connection handler failed");
                internal_error()
            }
        }
    }
}

/// Itself: what routes hand over once their handler's output is known.
impl HandlerOutput for CloseFrame {
    fn into_close_frame(self) -> CloseFrame {
        self
    }
}

fn internal_error() -> CloseFrame {
    CloseFrame::new(CloseCode::INTERNAL_ERROR, "internal error")
}

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
        F: Future + Send + 'static,
        F::Output: HandlerOutput,
    {
        let handler: BoxedHandler = Arc::new(move |socket| {
            let future = handler(socket);
            Box::pin(async move { future.await.into_close_frame() })
        });
        self.routes.push((path.into(), handler));
        self
    }

    fn handler(&self, path: &str) -> Option<&BoxedHandler> {
        self.routes.iter().find(|(route, _)| route == path).map(|(_, handler)| handler)
    }
}

/// A bound listening socket that serves WebSocket connections, each in a
/// tokio task of its own with an `async` handler. Everything a connection
/// means to the server (admission, the hub, metrics, heartbeat answers)
/// is its [`Session`](tether_server::Session), the same as on the
/// [`reactor`](crate::reactor).
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    paths: Option<Vec<String>>,
}

impl Server {
    /// Binds `addr` with `config`.
    ///
    /// # Errors
    /// The configuration cannot work ([`Config::validate`](tether_proto::Config::validate), reported as
    /// [`io::ErrorKind::InvalidInput`] with the reason), or the address
    /// cannot be bound.
    pub async fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> io::Result<Server> {
        let session =
            tether_server::Shared::new(config).map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let listener = TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared { session: Arc::new(session), active: Arc::default() });
        Ok(Server { listener, shared, paths: None })
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
    /// A handler returns `()` or `Result<(), E>`. When it ends with its
    /// connection still open, the connection is closed for it: 1000 if it
    /// returned (or `Ok`), 1011 if it failed (`Err`, logged) or panicked
    /// (see [`HandlerOutput`]).
    ///
    /// # Errors
    /// Only if accepting fails in a way that will not pass (not for
    /// transient errors such as running out of file descriptors, which are
    /// logged and retried after a pause).
    pub async fn serve<H, F>(self, handler: H) -> io::Result<()>
    where
        H: Fn(WebSocket) -> F + Send + Sync + 'static,
        F: Future + Send + 'static,
        F::Output: HandlerOutput,
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
        F: Future + Send + 'static,
        F::Output: HandlerOutput,
        S: Future<Output = ()>,
    {
        let hub = self.shared.session.config().hub.clone();
        let close_timeout = self.shared.session.config().protocol.close_timeout;
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
        self.paths = Some(routes.routes.iter().map(|(path, _)| path.clone()).collect());
        self.accept_loop(move |socket: WebSocket| {
            let path = socket.request().map(|request| request.path().to_owned()).unwrap_or_default();
            routes.handler(&path).map(|handler| handler(socket))
        })
        .await
    }

    /// The accept loop; `start` gives the handler's future for a socket
    /// (`None`: drop it).
    async fn accept_loop<S, F>(mut self, start: S) -> io::Result<()>
    where
        S: Fn(WebSocket) -> Option<F> + Send + Sync + 'static,
        F: Future + Send + 'static,
        F::Output: HandlerOutput,
    {
        if let Some(paths) = self.paths.take() {
            let config = self.shared.session.config().clone();
            let session = tether_server::Shared::new(config)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?
                .with_paths(paths);
            self.shared = Arc::new(Shared { session: Arc::new(session), active: self.shared.active.clone() });
        }
        let handler = Arc::new(start);
        let mut reserve = Reserve::new();
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) if is_out_of_descriptors(&error) => {
                    // Tell the clients waiting in the backlog at once rather
                    // than let them hang (see `tether_server::descriptors`).
                    let plain = self.shared.session.config().tls.is_none();
                    if !refuse_one_without_descriptors(&self.listener, &mut reserve, plain).await {
                        tracing::warn!(%error, "accept failed: out of file descriptors; retrying");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            let active = self.shared.active.fetch_add(1, Ordering::Relaxed) + 1;
            let guard = ActiveGuard(self.shared.active.clone());
            if self.shared.session.config().max_connections.is_some_and(|max| active > max) {
                if self.shared.session.config().tls.is_none() {
                    tokio::spawn(refuse_busy(tcp, guard));
                }
                // A TLS client could not read a plain-text 503 (it would take
                // the server for a ws:// one): it is closed, as the reactor does.
                continue;
            }
            let shared = self.shared.clone();
            let handler = handler.clone();
            // The handshake runs in a short-lived task of its own; the
            // handler then gets a task holding only its own future, so the
            // handshake's state (TLS, the head reader) does not size every
            // connection's task for its whole life.
            tokio::spawn(async move {
                match accept_with(tcp, peer, &shared.session).await {
                    Ok(mut socket) => {
                        let (handover, handed_over) = tokio::sync::oneshot::channel();
                        socket.set_handover(Box::new(move |parts| {
                            let _ = handover.send(parts);
                        }));
                        if let Some(future) = handler(socket) {
                            drop(tokio::spawn(async move {
                                let _guard = guard;
                                run_handler(future, handed_over).await;
                            }));
                        }
                    }
                    // Refusals were logged by the session.
                    Err(error) if error.http_status().is_some() => {}
                    Err(error) => tracing::debug!(%peer, %error, "handshake failed"),
                }
            });
        }
    }
}

/// Runs a connection's handler, then closes the connection if the handler
/// dropped it open: 1000 if it returned, 1011 if it failed or panicked.
async fn run_handler<F>(handler: F, handed_over: tokio::sync::oneshot::Receiver<Parts<MaybeTlsStream>>)
where
    F: Future + Send + 'static,
    F::Output: HandlerOutput,
{
    let frame = match (CatchUnwind { future: Box::pin(handler) }).await {
        Ok(output) => output.into_close_frame(),
        Err(panic) => {
            let why = panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(String::as_str));
            tracing::error!(panic = why.unwrap_or("(not a string)"), "connection handler panicked");
            internal_error()
        }
    };
    // Resolves when the connection is dropped: at once if the handler held
    // it; later if it gave it away; with an error if it was already over.
    if let Ok(parts) = handed_over.await {
        let mut socket = WebSocket::from_parts(parts);
        if let Err(error) = socket.close(frame.code, &frame.reason).await {
            tracing::debug!(peer = ?socket.peer_addr(), %error, "closing after the handler ended");
        }
    }
}

/// A future whose panic is caught and returned, as the task it runs in
/// must go on to close the connection.
struct CatchUnwind<F> {
    future: Pin<Box<F>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let future = self.future.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

/// Out of descriptors: frees the reserve, accepts one waiting client and
/// answers it 503 (closes it, if the port speaks TLS), takes the reserve
/// back. Whether a client was answered.
async fn refuse_one_without_descriptors(listener: &TcpListener, reserve: &mut Reserve, plain: bool) -> bool {
    if !reserve.release() {
        return false;
    }
    let accepted = tokio::time::timeout(Duration::from_millis(10), listener.accept()).await;
    let refused = match accepted {
        Ok(Ok((tcp, peer))) => {
            tracing::warn!(%peer, "out of file descriptors: refused a connection with 503");
            if let Ok(mut std) = tcp.into_std() {
                use std::io::Write as _;
                let _ = std.set_nonblocking(true);
                if plain {
                    let _ = std.write(&busy_answer());
                }
                let _ = std.shutdown(std::net::Shutdown::Write);
                use std::os::fd::AsFd as _;
                reserve.restore_from(std::os::fd::OwnedFd::from(std), listener.as_fd());
            }
            true
        }
        _ => false,
    };
    reserve.restore();
    refused
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
    F: Future + Send + 'static,
    F::Output: HandlerOutput,
{
    Server::bind(addr, ServerConfig::default()).await?.serve(handler).await
}

/// Runs the server side of the handshake on an accepted TCP connection
/// (for servers that run their own accept loop).
///
/// # Errors
/// An invalid configuration, TLS failure, a refused request (answered
/// before returning), the open timeout.
pub async fn accept(tcp: TcpStream, config: &ServerConfig) -> Result<WebSocket> {
    let shared = Arc::new(tether_server::Shared::new(config.clone())?);
    let peer = tcp.peer_addr()?;
    accept_with(tcp, peer, &shared).await
}

async fn accept_with(tcp: TcpStream, peer: SocketAddr, shared: &Arc<tether_server::Shared>) -> Result<WebSocket> {
    let config = shared.config();
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
                // Every TLS connection opens with a handshake record (0x16);
                // anything else is plain text, answered in plain text.
                let mut first = [0u8; 1];
                if tcp.peek(&mut first).await? == 1 && first[0] != 0x16 {
                    let mut tcp = tcp;
                    let _ = tcp.write_all(tether_server::session::PLAIN_TEXT_ON_A_TLS_PORT).await;
                    let _ = tcp.shutdown().await;
                    let why = "plain text on a TLS port";
                    return Err(Error::from(io::Error::new(io::ErrorKind::InvalidData, why)));
                }
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

/// Reads the request and hands it to the session, which decides the rest;
/// this only moves the bytes.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    socket: Option<crate::kernel::RawSocket>,
    shared: &Arc<tether_server::Shared>,
) -> Result<WebSocket<S>> {
    let mut reader = HeadReader::new(shared.config().limits.clone());
    let leftover = match read_head(&mut stream, &mut reader).await {
        Ok(leftover) => leftover,
        Err(HeadReadError::Io(error)) => return Err(error.into()),
        Err(HeadReadError::Head(error)) => return Err(refuse(&mut stream, Refused::head(&error, peer)).await),
    };
    let now = tokio::time::Instant::now().into_std();
    let opened = match tether_server::open(shared, &reader, peer, now) {
        Ok(opened) => opened,
        Err(refused) => return Err(refuse(&mut stream, refused).await),
    };
    drop(reader);
    stream.write_all(&opened.response).await?;
    stream.flush().await?;
    let info = ConnectionInfo {
        peer_addr: Some(peer),
        handshake: Handshake::Request(opened.request),
        protocol: None,
        socket,
        ..ConnectionInfo::default()
    };
    Ok(WebSocket::new(stream, Core::Server(Box::new(opened.session)), info, &leftover))
}

/// Serves `metrics` at `/metrics` (Prometheus text) to plain HTTP
/// requests on `listener`: an address of their own, e.g. one only the
/// monitoring network reaches, away from the public WebSocket port. Other
/// paths get 404. Runs until the listener fails for good.
///
/// # Errors
/// Never returns but for a listener that cannot accept at all.
pub async fn serve_metrics(listener: TcpListener, metrics: tether_server::metrics::Metrics) -> io::Result<()> {
    use tether_server::admission::HttpResponse;
    loop {
        let (mut tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "metrics: accept failed; retrying");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut reader = HeadReader::new(tether_proto::HandshakeLimits::default());
            let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut tcp, &mut reader)).await;
            let answer = match head {
                Ok(Ok(_)) => match tether_proto::handshake::Request::parse(&reader) {
                    Ok(request) if request.path() == "/metrics" => {
                        HttpResponse::new(200, "text/plain; version=0.0.4", metrics.render())
                    }
                    Ok(_) => HttpResponse::text(404, "not found: the metrics are at /metrics\n"),
                    Err(error) => HttpResponse::text(error.status(), format!("{error}\n")),
                },
                Ok(Err(HeadReadError::Head(error))) => HttpResponse::text(error.status(), format!("{error}\n")),
                Ok(Err(HeadReadError::Io(_))) | Err(_) => return,
            };
            let _ = tcp.write_all(&answer.to_bytes()).await;
            let _ = tcp.shutdown().await;
        });
    }
}

/// Refuses a connection past `max_connections` with 503, without reading
/// its request; briefly drains what it sends so the close is clean (no reset).
async fn refuse_busy(mut tcp: TcpStream, guard: ActiveGuard) {
    let _ = tcp.write_all(&busy_answer()).await;
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while matches!(tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    drop(guard);
}

/// Answers a refused handshake and closes; returns the error describing it.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refused: Refused) -> Error {
    let _ = stream.write_all(&refused.answer).await;
    let _ = stream.shutdown().await;
    refused.rejection.into()
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
