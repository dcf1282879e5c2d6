//! Connecting: TCP, optional TLS, the opening handshake, all under one deadline.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tether_proto::handshake::{ClientAccepted, ClientHandshake, ClientHandshakeConfig, HeadReader, Response, Target};
use tether_proto::time::{Deadline, Timeout};
use tether_proto::{Config, Connection, HandshakeLimits, Role};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Kind, Result};
use crate::handshake::{read_head, HeadReadError};
use crate::proxy::{open_tcp, ProxyChoice};
use crate::stream::MaybeTlsStream;
use crate::tls::{client_config, TrustRoots};
use crate::websocket::{ConnectionInfo, Core, Handshake, WebSocket};

/// How long each step of opening a connection took (curl's `-w` timings;
/// `tether connect --timings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenTimings {
    /// Resolving the host name (`None` through a proxy, which resolves it).
    pub resolve: Option<Duration>,
    /// The TCP connection (through a proxy: to it, and the tunnel).
    pub connect: Duration,
    /// The TLS handshake (`None` for `ws://`).
    pub tls: Option<Duration>,
    /// The opening handshake: the request sent, the `101` read.
    pub handshake: Duration,
}

impl OpenTimings {
    /// All of it.
    #[must_use]
    pub fn total(&self) -> Duration {
        self.resolve.unwrap_or_default() + self.connect + self.tls.unwrap_or_default() + self.handshake
    }
}

/// A source of mask keys for the frames a client sends (the seeds'
/// `get_mask_key`); the default is the CSPRNG.
pub type MaskKeyFn = Arc<dyn Fn() -> [u8; 4] + Send + Sync>;

/// How a client connects. Start from [`ClientConfig::default`].
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Limits, permessage-deflate, keepalive (`ping_interval`,
    /// `ping_timeout`), `close_timeout` and `idle_timeout` for the open
    /// connection; each documented with its default on [`Config`].
    pub protocol: Config,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Extra handshake headers (`Origin`, `Cookie`, `Authorization`, …).
    pub headers: Vec<(String, String)>,
    /// Limits on the server's response head.
    pub limits: HandshakeLimits,
    /// Deadline for TCP connect, TLS and the opening handshake together.
    /// Default 10 s, as Python `websockets`' `open_timeout`.
    pub open_timeout: Option<Duration>,
    /// Certificate authorities trusted for `wss://`. Default: Mozilla's.
    pub trust: TrustRoots,
    /// Where mask keys come from. Default: the CSPRNG.
    pub mask_key: Option<MaskKeyFn>,
    /// The proxy to go through. Default: the environment's
    /// (`https_proxy`/`http_proxy`/`all_proxy`, minus `no_proxy`).
    pub proxy: ProxyChoice,
    /// Redirects (`301`, `302`, `303`, `307`, `308` with a `Location`)
    /// followed in a row before giving up; 0 follows none. Default 10, as
    /// Python `websockets`. A redirect from `wss://` to `ws://` is refused;
    /// `Authorization` and `Cookie` headers, and the URL's user and
    /// password, go only to the first URL's scheme, host and port. The
    /// open timeout covers them all.
    pub max_redirects: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            protocol: Config::default(),
            protocols: Vec::new(),
            headers: Vec::new(),
            limits: HandshakeLimits::default(),
            open_timeout: Some(Duration::from_secs(10)),
            trust: TrustRoots::default(),
            mask_key: None,
            proxy: ProxyChoice::default(),
            max_redirects: tether_proto::handshake::DEFAULT_MAX_REDIRECTS,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("protocol", &self.protocol)
            .field("protocols", &self.protocols)
            .field("headers", &self.headers)
            .field("open_timeout", &self.open_timeout)
            .field("trust", &self.trust)
            .field("proxy", &self.proxy)
            .field("max_redirects", &self.max_redirects)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Adds a handshake header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol.
    #[must_use]
    pub fn protocol_offer(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Sets the trusted certificate authorities.
    #[must_use]
    pub fn trust(mut self, trust: TrustRoots) -> Self {
        self.trust = trust;
        self
    }

    /// Sets the connection limits and options.
    #[must_use]
    pub fn protocol_config(mut self, protocol: Config) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets the keepalive: a ping every `interval`, declared dead if its
    /// pong does not come within `timeout` (`None` disables either).
    #[must_use]
    pub fn keepalive(mut self, interval: Option<Duration>, timeout: Option<Duration>) -> Self {
        self.protocol.ping_interval = interval;
        self.protocol.ping_timeout = timeout;
        self
    }

    /// Connects through `proxy` (see [`Proxy::parse`](crate::proxy::Proxy::parse)).
    #[must_use]
    pub fn proxy(mut self, proxy: crate::proxy::Proxy) -> Self {
        self.proxy = ProxyChoice::Via(proxy);
        self
    }

    /// Sets the deadline for connecting, TLS and the opening handshake.
    #[must_use]
    pub fn open_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Sets how long the closing handshake may take.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.protocol.close_timeout = timeout;
        self
    }
}

/// Connects to a `ws://` or `wss://` URL with the default configuration.
///
/// # Errors
/// A bad URL, a refused connection, a TLS failure, a refused or invalid
/// handshake (see [`Error::http_status`]), or the 10 s open timeout
/// ([`Timeout::Open`]).
pub async fn connect(url: &str) -> Result<WebSocket> {
    connect_with(url, &ClientConfig::default()).await
}

/// Connects to a `ws://` or `wss://` URL.
///
/// # Errors
/// As [`connect`], and a configuration that cannot work
/// ([`Config::validate`]), before anything is sent.
pub async fn connect_with(url: &str, config: &ClientConfig) -> Result<WebSocket> {
    config.protocol.validate()?;
    let first = Target::parse(url)?;
    let attempt = async {
        let mut redirects = Redirects::new(first, config.clone());
        loop {
            let error = match connect_target(redirects.target(), redirects.config()).await {
                Ok(socket) => return Ok(socket),
                Err(error) => error,
            };
            redirects.follow(error)?;
        }
    };
    let deadline = Deadline::after(tokio::time::Instant::now().into_std(), config.open_timeout);
    match deadline.at() {
        Some(at) => tokio::time::timeout_at(at.into(), attempt).await.map_err(|_| Error::timed_out(Timeout::Open))?,
        None => attempt.await,
    }
}

/// Where a client is sent, redirect after redirect: the same for the
/// async and blocking clients, and public for I/O layers of one's own (the
/// Python package's asyncio client). Connect to [`target`](Self::target)
/// with [`config`](Self::config); when the attempt fails, hand the error to
/// [`follow`](Self::follow): `Ok` means try again.
#[derive(Debug)]
pub struct Redirects {
    first: Target,
    target: Target,
    config: ClientConfig,
    /// The configuration without secret headers, once a redirect left the
    /// first URL's origin.
    elsewhere: Option<ClientConfig>,
    followed: usize,
}

impl Redirects {
    /// Starts at `first`, with `config` (its `max_redirects` bounds the
    /// redirects followed).
    #[must_use]
    pub fn new(first: Target, config: ClientConfig) -> Redirects {
        Redirects { target: first.clone(), first, config, elsewhere: None, followed: 0 }
    }

    /// Where to connect now.
    #[must_use]
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// With what: without `Authorization` and `Cookie` headers once a
    /// redirect left the first URL's origin.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        self.elsewhere.as_ref().unwrap_or(&self.config)
    }

    /// An attempt failed with `error`: if it was a redirect to follow, the
    /// next target is set; otherwise the error (or why the redirect is not
    /// followed) is returned.
    ///
    /// # Errors
    /// `error` itself when it is no redirect; a redirect refused (more than
    /// `max_redirects`, `wss://` to `ws://`, a `Location` that is no URI).
    pub fn follow(&mut self, error: Error) -> Result<()> {
        use tether_proto::handshake::{redirect, same_origin, HandshakeError, RedirectError};
        let Kind::Handshake(HandshakeError::Status { status, headers, .. }) = &error.kind else { return Err(error) };
        let Some(next) = redirect(&self.target, *status, headers) else { return Err(error) };
        let refused = |why| Error::new(Kind::Handshake(HandshakeError::Redirect(why)));
        let next = next.map_err(refused)?;
        if self.followed >= self.config.max_redirects {
            return Err(refused(RedirectError::TooMany(self.config.max_redirects)));
        }
        self.followed += 1;
        tracing::debug!(status, from = %self.target, to = %next, "following a redirect");
        if !same_origin(&self.first, &next) && self.elsewhere.is_none() {
            let mut config = self.config.clone();
            config.headers.retain(|(name, _)| {
                !name.eq_ignore_ascii_case("authorization") && !name.eq_ignore_ascii_case("cookie")
            });
            self.elsewhere = Some(config);
        }
        self.target = next;
        Ok(())
    }
}

/// The opening request for `target` (traced if asked), and the state that
/// checks the server's answer: the same for the async and blocking clients.
///
/// Public for I/O layers of one's own (the Python package drives the core
/// from asyncio's transports): the request to write, and the handshake to
/// check the answer with, as tether's clients make them (traced).
///
/// # Errors
/// A header that cannot be sent (a reserved name, a line break).
pub fn opening_request(target: &Target, config: &ClientConfig) -> Result<(ClientHandshake, Vec<u8>)> {
    let mut handshake_config = ClientHandshakeConfig::default();
    handshake_config.protocols.clone_from(&config.protocols);
    handshake_config.headers.clone_from(&config.headers);
    handshake_config.deflate.clone_from(&config.protocol.deflate);
    let (handshake, request) = ClientHandshake::new(target, handshake_config)?;
    if crate::trace::is_enabled() {
        crate::trace::handshake(&target.to_string(), "request", &request);
    }
    Ok((handshake, request))
}

/// Checks the server's answer head in `reader` and makes the open
/// connection: traced, with the configured mask source. Shared by the
/// async and blocking clients.
///
/// Public for I/O layers of one's own, as [`opening_request`].
///
/// # Errors
/// The answer is malformed or refuses the upgrade.
pub fn open_connection(
    target: &Target,
    config: &ClientConfig,
    handshake: ClientHandshake,
    reader: &HeadReader,
) -> Result<(Connection, ClientAccepted)> {
    let response = Response::parse(reader)?;
    let traced = crate::trace::is_enabled();
    if traced {
        crate::trace::handshake(&target.to_string(), "response", reader.head());
    }
    let accepted = handshake.verify(response)?;
    let mut connection = Connection::new(Role::Client, config.protocol.clone(), accepted.deflate);
    if traced {
        connection.set_frame_observer(crate::trace::frame_observer(target.to_string()));
    }
    if let Some(mask_key) = &config.mask_key {
        let mask_key = mask_key.clone();
        connection.set_mask_source(Box::new(move || mask_key()));
    }
    Ok((connection, accepted))
}

async fn connect_target(target: &Target, config: &ClientConfig) -> Result<WebSocket> {
    let started = std::time::Instant::now();
    let proxy = config.proxy.resolve(target)?;
    let (tcp, resolve) = open_tcp(target, proxy.as_ref()).await?;
    let connected = std::time::Instant::now();
    tcp.set_nodelay(true)?;
    let peer_addr = tcp.peer_addr().ok();
    let socket = crate::kernel::raw_socket(&tcp);
    let stream = if target.secure {
        let tls = client_config(&config.trust)?;
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| Error::config(format!("invalid TLS server name {:?}", target.host)))?;
        let tls_stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
        MaybeTlsStream::ClientTls(Box::new(tls_stream))
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    let secured = std::time::Instant::now();
    let info = ConnectionInfo { peer_addr, socket, ..ConnectionInfo::default() };
    let timings = |info: &mut ConnectionInfo| {
        info.timings = Some(Box::new(OpenTimings {
            resolve,
            connect: connected.duration_since(started) - resolve.unwrap_or_default(),
            tls: target.secure.then(|| secured.duration_since(connected)),
            handshake: secured.elapsed(),
        }));
    };
    open_over(target, config, stream, info, timings).await
}

/// Connects over `stream`, a transport you opened yourself (a Unix socket,
/// an in-memory pipe, TLS you set up, a tunnel): only the opening
/// handshake for `url` is done here (tokio-tungstenite's `client_async`).
/// The URL gives the `Host`, the path and the credentials; its scheme
/// says nothing about the transport.
///
/// ```no_run
/// # async fn example() -> tether::Result<()> {
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:9001").await?;
/// let mut ws = tether::client::connect_over("ws://127.0.0.1:9001/chat", tcp, &tether::ClientConfig::default()).await?;
/// ws.send("hello").await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// As [`connect_with`] (redirects are not followed: the transport goes to
/// one place).
pub async fn connect_over<S: AsyncRead + AsyncWrite + Unpin>(
    url: &str,
    stream: S,
    config: &ClientConfig,
) -> Result<WebSocket<S>> {
    config.protocol.validate()?;
    let target = Target::parse(url)?;
    let attempt = open_over(&target, config, stream, ConnectionInfo::default(), |_| {});
    let deadline = Deadline::after(tokio::time::Instant::now().into_std(), config.open_timeout);
    match deadline.at() {
        Some(at) => tokio::time::timeout_at(at.into(), attempt).await.map_err(|_| Error::timed_out(Timeout::Open))?,
        None => attempt.await,
    }
}

/// The opening handshake over `stream`; `done` completes the connection's
/// `info` once the answer is in.
async fn open_over<S: AsyncRead + AsyncWrite + Unpin>(
    target: &Target,
    config: &ClientConfig,
    mut stream: S,
    mut info: ConnectionInfo,
    done: impl FnOnce(&mut ConnectionInfo),
) -> Result<WebSocket<S>> {
    let (handshake, request) = opening_request(target, config)?;
    stream.write_all(&request).await?;
    stream.flush().await?;
    let mut reader = HeadReader::new(config.limits.clone());
    let leftover = read_head(&mut stream, &mut reader).await.map_err(|error| match error {
        HeadReadError::Io(error) => Error::from(error),
        HeadReadError::Head(error) => Error::from(error),
    })?;
    let (connection, accepted) = open_connection(target, config, handshake, &reader)?;
    info.handshake = Handshake::Response(accepted.response);
    info.protocol = accepted.protocol.map(Into::into);
    done(&mut info);
    Ok(WebSocket::new(stream, Core::Client(connection), info, &leftover))
}

impl From<HeadReadError> for Error {
    fn from(error: HeadReadError) -> Self {
        match error {
            HeadReadError::Io(error) => Error::from(error),
            HeadReadError::Head(error) => {
                Error::new(Kind::Handshake(tether_proto::handshake::HandshakeError::Head(error)))
            }
        }
    }
}
