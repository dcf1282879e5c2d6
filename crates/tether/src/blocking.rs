//! A client that needs no async runtime: `websocket-client`'s
//! `create_connection`, on `std::net` sockets (and rustls for `wss://`),
//! driving the same sans-I/O core as the async client.
//!
//! ```no_run
//! # fn main() -> tether::Result<()> {
//! let mut ws = tether::blocking::connect("ws://127.0.0.1:9001/")?;
//! ws.send("Hello, World")?;
//! let answer = ws.recv()?;
//! ws.close(tether::CloseCode::NORMAL, "")?;
//! # Ok(())
//! # }
//! ```
//!
//! The connection's timers (keepalive pings and their deadline, the close
//! timeout) run while the program is inside `recv`, `send` or `close`: the
//! socket's read and write timeouts are set to the core's next deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tether_proto::handshake::{HeadReader, Response, Target};
use tether_proto::proxy::{check_connect_response, connect_request, Proxy, ProxyKind, Socks5Handshake, Socks5Step};
use tether_proto::time::{Deadline, Timeout};
use tether_proto::{CloseCode, CloseFrame, Connection, Event, HandshakeLimits, Message, RoundTrip, State};

use crate::client::{open_connection, opening_request, ClientConfig};
use crate::error::{Error, Kind, Result};
use crate::tls::client_config;

/// How much one read asks the socket for.
const READ_CHUNK: usize = 64 << 10;

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// A blocking WebSocket client connection.
pub struct WebSocket {
    stream: Stream,
    connection: Connection,
    response: Response,
    protocol: Option<String>,
    buf: Box<[u8]>,
    /// The default limit of [`recv`](Self::recv) (`settimeout`).
    timeout: Option<Duration>,
    peer_close: Option<CloseFrame>,
    failure: Option<Error>,
    done: bool,
    /// Whether a signal that interrupts a read or write is reported
    /// (`set_interruptible`) rather than retried.
    interruptible: bool,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::WebSocket").field("connection", &self.connection).finish_non_exhaustive()
    }
}

/// Connects with the default configuration (`create_connection(url)`).
///
/// # Errors
/// As [`crate::connect`].
pub fn connect(url: &str) -> Result<WebSocket> {
    connect_with(url, &ClientConfig::default())
}

/// Connects with `config`: the same options as the async client (headers,
/// subprotocols, TLS roots, proxy, limits, keepalive, timeouts).
///
/// # Errors
/// As [`crate::connect_with`].
pub fn connect_with(url: &str, config: &ClientConfig) -> Result<WebSocket> {
    config.protocol.validate()?;
    let first = Target::parse(url)?;
    let deadline = Deadline::after(Instant::now(), config.open_timeout);
    let mut redirects = crate::client::Redirects::new(&first, config);
    loop {
        match connect_target(redirects.target(), redirects.config(), &deadline) {
            Ok(socket) => return Ok(socket),
            Err(error) => redirects.follow(error)?,
        }
    }
}

fn connect_target(target: &Target, config: &ClientConfig, deadline: &Deadline) -> Result<WebSocket> {
    let proxy = config.proxy.resolve(target)?;
    let tcp = open_tcp(target, proxy.as_ref(), deadline)?;
    tcp.set_nodelay(true)?;
    set_timeouts(&tcp, deadline.remaining(Instant::now()))?;
    let mut stream = if target.secure {
        let tls = client_config(&config.trust)?;
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| Error::config(format!("invalid TLS server name {:?}", target.host)))?;
        let connection = rustls::ClientConnection::new(Arc::clone(&tls), name)
            .map_err(|error| Error::config(format!("TLS: {error}")))?;
        Stream::Tls(Box::new(rustls::StreamOwned::new(connection, tcp)))
    } else {
        Stream::Plain(tcp)
    };
    let (handshake, request) = opening_request(target, config)?;
    let mut opening = || -> Result<(HeadReader, Vec<u8>)> {
        stream.write_all(&request)?;
        stream.flush()?;
        let mut reader = HeadReader::new(config.limits.clone());
        let leftover = read_head(&mut stream, &mut reader)?;
        Ok((reader, leftover))
    };
    let (reader, leftover) = opening().map_err(|error| open_timeout_or(error, deadline))?;
    let (mut connection, accepted) = open_connection(target, config, handshake, &reader)?;
    let failure = connection.handle_read(&leftover).err().map(Error::from);
    connection.handle_timeout(Instant::now());
    set_timeouts(stream.tcp(), None)?;
    Ok(WebSocket {
        stream,
        connection,
        response: accepted.response,
        protocol: accepted.protocol,
        buf: vec![0; READ_CHUNK].into_boxed_slice(),
        timeout: None,
        peer_close: None,
        failure,
        done: false,
        interruptible: false,
    })
}

/// A read or write that timed out while the open deadline ran is the open timeout.
fn open_timeout_or(error: Error, deadline: &Deadline) -> Error {
    if deadline.check(Instant::now()).is_err() && error.is_io() {
        Error::timed_out(Timeout::Open)
    } else {
        error
    }
}

fn set_timeouts(tcp: &TcpStream, limit: Option<Duration>) -> io::Result<()> {
    // A zero timeout means "none" to the OS: never pass one.
    let limit = limit.map(|limit| limit.max(Duration::from_millis(1)));
    tcp.set_read_timeout(limit)?;
    tcp.set_write_timeout(limit)
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn read_head(stream: &mut impl Read, reader: &mut HeadReader) -> Result<Vec<u8>> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(
                io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed during the opening handshake").into()
            );
        }
        if let Some(used) = reader.feed(&buf[..n])? {
            return Ok(buf[used..n].to_vec());
        }
    }
}

fn connect_tcp(host: &str, port: u16, deadline: &Deadline) -> Result<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        let attempt = match deadline.remaining(Instant::now()) {
            Some(left) if left.is_zero() => return Err(Error::timed_out(Timeout::Open)),
            Some(left) => TcpStream::connect_timeout(&addr, left),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(tcp) => return Ok(tcp),
            Err(error) if is_timeout(&error) => return Err(Error::timed_out(Timeout::Open)),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host has no address")).into())
}

fn open_tcp(target: &Target, proxy: Option<&Proxy>, deadline: &Deadline) -> Result<TcpStream> {
    let Some(proxy) = proxy else {
        return connect_tcp(&target.host, target.port, deadline);
    };
    let mut tcp = connect_tcp(&proxy.host, proxy.port, deadline)?;
    set_timeouts(&tcp, deadline.remaining(Instant::now()))?;
    match proxy.kind {
        ProxyKind::Http => {
            tcp.write_all(&connect_request(&target.host, target.port, proxy.credentials.as_ref()))?;
            let mut reader = HeadReader::new(HandshakeLimits::default());
            let leftover = read_head(&mut tcp, &mut reader)?;
            check_connect_response(&Response::parse(&reader)?)?;
            if !leftover.is_empty() {
                let reason = "data after the tunnel answer".into();
                return Err(tether_proto::proxy::ProxyError::Refused { status: 200, reason }.into());
            }
        }
        ProxyKind::Socks5 => {
            let mut socks = Socks5Handshake::new(&target.host, target.port, proxy.credentials.clone());
            let mut step = socks.start();
            let mut buf = [0u8; 300];
            loop {
                step = match step {
                    Socks5Step::Write(bytes) => {
                        tcp.write_all(&bytes)?;
                        socks.next(&[])?
                    }
                    Socks5Step::Read(n) => match tcp.read_exact(&mut buf[..n]) {
                        Ok(()) => socks.next(&buf[..n])?,
                        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                            return Err(socks.closed_early().into())
                        }
                        Err(error) => return Err(error.into()),
                    },
                    Socks5Step::Done => break,
                };
            }
        }
    }
    Ok(tcp)
}

impl WebSocket {
    /// The server's `101` response (headers, cookies).
    #[must_use]
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The negotiated subprotocol.
    #[must_use]
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The peer's address.
    #[must_use]
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.tcp().peer_addr().ok()
    }

    /// The protocol state machine.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The keepalive round-trip time, once measured.
    #[must_use]
    pub fn round_trip(&self) -> Option<RoundTrip> {
        self.connection.round_trip()
    }

    /// The server's close frame, once it sent one.
    #[must_use]
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.peer_close.as_ref()
    }

    /// Report a read or write interrupted by a signal (`EINTR`) as an
    /// [`io::ErrorKind::Interrupted`] error instead of retrying it, so that
    /// a caller with signal handlers of its own (Python's Ctrl-C) can run
    /// them and call again: the connection stays as it was.
    pub fn set_interruptible(&mut self, interruptible: bool) {
        self.interruptible = interruptible;
    }

    /// The default limit of [`recv`](Self::recv) (`settimeout`); `None`
    /// waits as long as the connection lives.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    // ---- sending -------------------------------------------------------------------

    /// Sends a message and writes it out.
    ///
    /// # Errors
    /// The connection is closing or closed; the transport failed; the
    /// peer stopped reading and a keepalive or close deadline passed.
    pub fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        let message = message.into();
        self.connection.send(&message).map_err(|error| self.usage(error))?;
        self.write_out()
    }

    /// Sends a ping (at most 125 bytes).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn ping(&mut self, payload: impl AsRef<[u8]>) -> Result<()> {
        self.connection.send_ping(payload.as_ref()).map_err(|error| self.usage(error))?;
        self.write_out()
    }

    /// Sends an unsolicited pong.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn pong(&mut self, payload: impl AsRef<[u8]>) -> Result<()> {
        self.connection.send_pong(payload.as_ref()).map_err(|error| self.usage(error))?;
        self.write_out()
    }

    fn usage(&self, error: tether_proto::UsageError) -> Error {
        match error {
            tether_proto::UsageError::Closed => Error::new(Kind::Closed(self.peer_close.clone())),
            other => other.into(),
        }
    }

    /// Writes everything queued; the core's deadlines bound the wait.
    fn write_out(&mut self) -> Result<()> {
        while self.connection.wants_transmit() {
            let limit = self.connection.poll_timeout().map(|at| at.saturating_duration_since(Instant::now()));
            set_timeouts(self.stream.tcp(), limit)?;
            let chunk = self.connection.pending_transmit();
            match self.stream.write(chunk) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => self.connection.advance_transmit(n),
                Err(error) if is_timeout(&error) => {
                    self.report_transport_queue();
                    if let Some(timeout) = self.tick() {
                        if matches!(timeout, Timeout::Ping | Timeout::Close) {
                            return Err(Error::timed_out(timeout));
                        }
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                    if self.interruptible {
                        return Err(error.into());
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        self.stream.flush()?;
        Ok(())
    }

    /// At a deadline: what the kernel still holds for the peer (see
    /// [`Connection::handle_transport_queue`]).
    fn report_transport_queue(&mut self) {
        if let Some(queued) = crate::kernel::raw_socket(self.stream.tcp()).and_then(crate::kernel::unsent_bytes) {
            self.connection.handle_transport_queue(queued);
        }
    }

    fn tick(&mut self) -> Option<Timeout> {
        let timeout = self.connection.handle_timeout(Instant::now());
        if let Some(timeout) = timeout {
            self.failure.get_or_insert(Error::timed_out(timeout));
        }
        timeout
    }

    // ---- receiving -----------------------------------------------------------------

    /// The next message, waiting at most the [`set_timeout`](Self::set_timeout)
    /// limit; `Ok(None)` once the connection closed cleanly.
    ///
    /// # Errors
    /// The limit passed ([`Timeout::Receive`]: the connection stays open),
    /// or as the async [`recv`](crate::WebSocket::recv).
    pub fn recv(&mut self) -> Result<Option<Message>> {
        self.recv_timeout_opt(self.timeout)
    }

    /// The next message, waiting at most `limit`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_timeout(&mut self, limit: Duration) -> Result<Option<Message>> {
        self.recv_timeout_opt(Some(limit))
    }

    fn recv_timeout_opt(&mut self, limit: Option<Duration>) -> Result<Option<Message>> {
        let deadline = limit.and_then(|limit| Instant::now().checked_add(limit));
        loop {
            match self.next_event(deadline)? {
                Some(Event::Message(message)) => return Ok(Some(message)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next event (message, ping, pong, close frame, fragment), as
    /// the async [`recv_event`](crate::WebSocket::recv_event).
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_event(&mut self) -> Result<Option<Event>> {
        let deadline = self.timeout.and_then(|limit| Instant::now().checked_add(limit));
        self.next_event(deadline)
    }

    fn next_event(&mut self, deadline: Option<Instant>) -> Result<Option<Event>> {
        loop {
            if self.done {
                return self.failure.take().map_or(Ok(None), Err);
            }
            if let Some(event) = self.connection.poll_event() {
                if let Event::Close(frame) = &event {
                    self.peer_close.clone_from(frame);
                }
                return Ok(Some(event));
            }
            if let Err(error) = self.write_out() {
                // An interruption leaves the connection as it was.
                self.done = !matches!(&error.kind, Kind::Io(cause) if cause.kind() == io::ErrorKind::Interrupted);
                return Err(error);
            }
            if self.connection.is_finished() {
                self.done = true;
                let _ = self.stream.tcp().shutdown(std::net::Shutdown::Both);
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return Err(Error::timed_out(Timeout::Receive));
            }
            let wake = match (deadline, self.connection.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            set_timeouts(self.stream.tcp(), wake.map(|wake| wake.saturating_duration_since(now)))?;
            match self.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    let clean = self.connection.handle_eof();
                    let failure = self.failure.take();
                    return match (clean, failure) {
                        (_, Some(failure)) => Err(failure),
                        (true, None) => Ok(None),
                        (false, None) => Err(Error::new(Kind::AbnormalClosure)),
                    };
                }
                Ok(n) => {
                    if let Err(error) = self.connection.handle_read(&self.buf[..n]) {
                        self.failure.get_or_insert(error.into());
                    }
                    self.tick();
                }
                Err(error) if is_timeout(&error) => {
                    self.report_transport_queue();
                    self.tick();
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                    if self.interruptible {
                        return Err(error.into());
                    }
                }
                Err(error) => {
                    self.done = true;
                    self.connection.handle_eof();
                    return Err(error.into());
                }
            }
        }
    }

    // ---- closing -------------------------------------------------------------------

    /// Closes: sends a close frame, waits up to the close timeout for the
    /// server's, and closes the socket. Messages arriving meanwhile are
    /// discarded.
    ///
    /// # Errors
    /// An invalid code or reason, the close timeout, a transport error.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if self.done {
            return Ok(());
        }
        if self.connection.state() == State::Open {
            self.connection.close(code, reason)?;
        }
        loop {
            match self.next_event(None) {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }
}
