//! Serving: accept TCP connections, optionally TLS, run the opening
//! handshake under a deadline, and give each connection to a handler in its
//! own task (the seeds' `serve(handler, host, port)`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_proto::handshake::{accept_request, HeadReader, Rejection, Request, ServerHandshakeConfig};
use tether_proto::time::{Deadline, Timeout};
use tether_proto::{Config, Connection, HandshakeLimits, Role};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::error::{Error, Result};
use crate::handshake::{read_head, HeadReadError};
use crate::heartbeat::Responder;
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

struct Shared {
    config: ServerConfig,
    handshake: ServerHandshakeConfig,
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
        let handshake = config.handshake_config();
        Ok(Server { listener, shared: Arc::new(Shared { config, handshake }) })
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
        let handler = Arc::new(handler);
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let shared = self.shared.clone();
            let handler = handler.clone();
            // The handshake runs in a short-lived task of its own; the
            // handler then gets a task holding only its own future, so the
            // handshake's state (TLS, the head reader) does not size every
            // connection's task for its whole life.
            tokio::spawn(async move {
                match accept_with(tcp, peer, &shared).await {
                    Ok(socket) => drop(tokio::spawn(handler(socket))),
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
    let shared = Shared { handshake: config.handshake_config(), config: config.clone() };
    accept_with(tcp, peer, &shared).await
}

async fn accept_with(tcp: TcpStream, peer: SocketAddr, shared: &Shared) -> Result<WebSocket> {
    let config = &shared.config;
    let deadline = Deadline::after(tokio::time::Instant::now().into_std(), Some(config.open_timeout));
    let at = deadline.at().map_or_else(far_future, tokio::time::Instant::from_std);
    tokio::time::timeout_at(at, async {
        tcp.set_nodelay(true)?;
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
    let accepted = match accept_request(&request, &shared.handshake) {
        Ok(accepted) => accepted,
        Err(rejection) => return Err(refuse(&mut stream, rejection).await),
    };
    let response = accepted.response(&config.headers);
    if traced {
        crate::trace::handshake(&peer.to_string(), "response", &response);
    }
    stream.write_all(&response).await?;
    stream.flush().await?;
    let mut connection = Connection::new(Role::Server, config.protocol.clone(), accepted.deflate);
    if traced {
        connection.set_frame_observer(crate::trace::frame_observer(peer.to_string()));
    }
    let info = ConnectionInfo {
        peer_addr: Some(peer),
        handshake: Handshake::Request(request),
        protocol: accepted.protocol.map(Into::into),
        responder: config.heartbeat_responder.clone(),
        socket,
    };
    Ok(WebSocket::new(stream, connection, info, &leftover))
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
