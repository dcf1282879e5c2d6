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
//!
//! One connection serves several threads, as websocket-client's does: one
//! may wait in `recv` while another sends (every method takes `&self`; put
//! the socket in an `Arc`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
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
///
/// Every method takes `&self` and the type is `Sync`: one thread may wait
/// in [`recv`](Self::recv) while others [`send`](Self::send), ping or
/// [`close`](Self::close), as websocket-client allows. No lock is held
/// while the socket is waited on: a receiver reads the socket unlocked and
/// hands the bytes to the core under a short lock; a sender takes its bytes
/// out of the core under the same lock and writes them outside it.
pub struct WebSocket {
    /// Read and written without a lock (`&TcpStream` reads and writes).
    tcp: TcpStream,
    /// What both directions touch: the core and, for `wss://`, the TLS session.
    shared: Mutex<Shared>,
    /// Bytes taken from the core for the socket and not written yet. Its
    /// holder is the one thread writing (see [`flush`](Self::flush)).
    wire: Mutex<Wire>,
    /// One receiver at a time, with its read buffer.
    reader: Mutex<Box<[u8]>>,
    /// Threads between queueing a message and its last byte written: while
    /// there are any, a receiver leaves its pongs and close reply to them
    /// (so that it never blocks writing a sender's megabytes instead of
    /// reading).
    senders: AtomicUsize,
    response: Response,
    protocol: Option<String>,
    /// The default limit of [`recv`](Self::recv) (`settimeout`).
    timeout: Mutex<Option<Duration>>,
    /// Whether a signal that interrupts a read or write is reported
    /// (`set_interruptible`) rather than retried.
    interruptible: AtomicBool,
}

struct Shared {
    connection: Connection,
    tls: Option<Box<rustls::ClientConnection>>,
    peer_close: Option<CloseFrame>,
    failure: Option<Error>,
    done: bool,
}

#[derive(Default)]
struct Wire {
    bytes: Vec<u8>,
    written: usize,
}

impl Wire {
    fn is_written(&self) -> bool {
        self.written == self.bytes.len()
    }
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::WebSocket")
            .field("connection", &lock(&self.shared).connection)
            .finish_non_exhaustive()
    }
}

/// A poisoned lock (a thread panicked holding it) still guards consistent
/// state here: every critical section leaves the core whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

fn tls_error(error: rustls::Error) -> Error {
    io::Error::new(io::ErrorKind::InvalidData, error).into()
}

impl Shared {
    /// Whether the core or the TLS session has bytes for the peer.
    fn wants_transmit(&self) -> bool {
        self.connection.wants_transmit() || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Moves what the core has for the peer onto `wire` (encrypted first,
    /// for `wss://`).
    fn take_outgoing(&mut self, wire: &mut Vec<u8>) -> Result<()> {
        let Shared { connection, tls, .. } = self;
        let Some(tls) = tls else {
            while connection.wants_transmit() {
                let chunk = connection.pending_transmit();
                wire.extend_from_slice(chunk);
                let n = chunk.len();
                connection.advance_transmit(n);
            }
            return Ok(());
        };
        loop {
            while connection.wants_transmit() {
                let n = tls.writer().write(connection.pending_transmit())?;
                if n == 0 {
                    break; // the session's buffer is full: encrypt what it has first
                }
                connection.advance_transmit(n);
            }
            if !tls.wants_write() {
                return Ok(());
            }
            while tls.wants_write() {
                tls.write_tls(wire)?;
            }
        }
    }

    /// Bytes read from the socket: through TLS, if any, into the core. An
    /// error is the transport's (TLS); the peer's protocol violations are
    /// kept as the failure to report once the core has closed.
    fn receive(&mut self, mut raw: &[u8]) -> Result<()> {
        let Shared { connection, tls, failure, .. } = self;
        let Some(tls) = tls else {
            if let Err(error) = connection.handle_read(raw) {
                failure.get_or_insert(error.into());
            }
            return Ok(());
        };
        loop {
            let mut plain = [0u8; 16 << 10];
            loop {
                match tls.reader().read(&mut plain) {
                    Ok(0) => break, // the peer's close_notify
                    Ok(n) => {
                        if let Err(error) = connection.handle_read(&plain[..n]) {
                            failure.get_or_insert(error.into());
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(error.into()),
                }
            }
            if raw.is_empty() {
                return Ok(());
            }
            if tls.read_tls(&mut raw)? == 0 {
                return Ok(()); // after the peer's close_notify: nothing more is read
            }
            tls.process_new_packets().map_err(tls_error)?;
        }
    }

    fn tick(&mut self) -> Option<Timeout> {
        let timeout = self.connection.handle_timeout(Instant::now());
        if let Some(timeout) = timeout {
            self.failure.get_or_insert(Error::timed_out(timeout));
        }
        timeout
    }

    /// At a deadline: what the kernel still holds for the peer (see
    /// [`Connection::handle_transport_queue`]), then the core's timers.
    fn tick_at_deadline(&mut self, tcp: &TcpStream) -> Option<Timeout> {
        if let Some(queued) = crate::kernel::raw_socket(tcp).and_then(crate::kernel::unsent_bytes) {
            self.connection.handle_transport_queue(queued);
        }
        self.tick()
    }

    /// The keepalive or close deadline that ended the connection, if one
    /// did (whichever thread's tick noticed it): writing is over then.
    fn expired(&self) -> Option<Timeout> {
        self.connection.timeout().filter(|timeout| matches!(timeout, Timeout::Ping | Timeout::Close))
    }

    fn usage(&self, error: tether_proto::UsageError) -> Error {
        match error {
            tether_proto::UsageError::Closed => Error::new(Kind::Closed(self.peer_close.clone())),
            other => other.into(),
        }
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
    let mut redirects = crate::client::Redirects::new(first, config.clone());
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
    let (tcp, tls) = match stream {
        Stream::Plain(tcp) => (tcp, None),
        Stream::Tls(tls) => {
            let rustls::StreamOwned { conn, sock } = *tls;
            (sock, Some(Box::new(conn)))
        }
    };
    let mut shared = Shared { connection, tls, peer_close: None, failure, done: false };
    // What the session decrypted beyond the answer's head is the core's.
    shared.receive(&[])?;
    Ok(WebSocket {
        tcp,
        shared: Mutex::new(shared),
        wire: Mutex::new(Wire::default()),
        reader: Mutex::new(vec![0; READ_CHUNK].into_boxed_slice()),
        senders: AtomicUsize::new(0),
        response: accepted.response,
        protocol: accepted.protocol,
        timeout: Mutex::new(None),
        interruptible: AtomicBool::new(false),
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
    set_timeout(tcp, Direction::Read, limit)?;
    set_timeout(tcp, Direction::Write, limit)
}

enum Direction {
    Read,
    Write,
}

/// Bounds the socket's next reads or writes (each direction has its own
/// limit: a receiver and a sender may wait at once).
fn set_timeout(tcp: &TcpStream, direction: Direction, limit: Option<Duration>) -> io::Result<()> {
    // A zero timeout means "none" to the OS: never pass one.
    let limit = limit.map(|limit| limit.max(Duration::from_millis(1)));
    match direction {
        Direction::Read => tcp.set_read_timeout(limit),
        Direction::Write => tcp.set_write_timeout(limit),
    }
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
        self.tcp.peer_addr().ok()
    }

    /// Where the connection is in its life (open, closing, closed).
    #[must_use]
    pub fn state(&self) -> State {
        lock(&self.shared).connection.state()
    }

    /// Whether permessage-deflate was negotiated.
    #[must_use]
    pub fn is_compressed(&self) -> bool {
        lock(&self.shared).connection.is_compressed()
    }

    /// The keepalive round-trip time, once measured.
    #[must_use]
    pub fn round_trip(&self) -> Option<RoundTrip> {
        lock(&self.shared).connection.round_trip()
    }

    /// The server's close frame, once it sent one.
    #[must_use]
    pub fn close_frame(&self) -> Option<CloseFrame> {
        lock(&self.shared).peer_close.clone()
    }

    /// Report a read or write interrupted by a signal (`EINTR`) as an
    /// [`io::ErrorKind::Interrupted`] error instead of retrying it, so that
    /// a caller with signal handlers of its own (Python's Ctrl-C) can run
    /// them and call again: the connection stays as it was.
    pub fn set_interruptible(&self, interruptible: bool) {
        self.interruptible.store(interruptible, Ordering::Relaxed);
    }

    /// The default limit of [`recv`](Self::recv) (`settimeout`); `None`
    /// waits as long as the connection lives.
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        *lock(&self.timeout) = timeout;
    }

    fn interruptible(&self) -> bool {
        self.interruptible.load(Ordering::Relaxed)
    }

    // ---- sending -------------------------------------------------------------------

    /// Sends a message and writes it out (behind any other thread's
    /// message being written).
    ///
    /// # Errors
    /// The connection is closing or closed; the transport failed; the
    /// peer stopped reading and a keepalive or close deadline passed.
    pub fn send(&self, message: impl Into<Message>) -> Result<()> {
        let message = message.into();
        self.sending(|shared| shared.connection.send(&message))
    }

    /// Sends a ping (at most 125 bytes).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn ping(&self, payload: impl AsRef<[u8]>) -> Result<()> {
        self.sending(|shared| shared.connection.send_ping(payload.as_ref()))
    }

    /// Sends an unsolicited pong.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn pong(&self, payload: impl AsRef<[u8]>) -> Result<()> {
        self.sending(|shared| shared.connection.send_pong(payload.as_ref()))
    }

    /// Queues with `queue` and writes it out, counted as a sender meanwhile.
    fn sending(
        &self,
        queue: impl FnOnce(&mut Shared) -> std::result::Result<(), tether_proto::UsageError>,
    ) -> Result<()> {
        self.senders.fetch_add(1, Ordering::SeqCst);
        let queued = {
            let mut shared = lock(&self.shared);
            queue(&mut shared).map_err(|error| shared.usage(error))
        };
        let result = queued.and_then(|()| self.flush(true));
        self.senders.fetch_sub(1, Ordering::SeqCst);
        // A receiver that queued a pong or a close reply while this thread
        // counted as a sender left it here.
        if result.is_ok() && self.senders.load(Ordering::SeqCst) == 0 && lock(&self.shared).wants_transmit() {
            self.flush(false)?;
        }
        result
    }

    /// Writes what [`send`](Self::send) queued and could not write because
    /// a signal interrupted it (with [`set_interruptible`](Self::set_interruptible)):
    /// the message is queued already, so sending it again would send it
    /// twice.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn flush_queued(&self) -> Result<()> {
        self.sending(|_| Ok(()))
    }

    /// Writes everything queued in the core. A sender (`wait`) waits for
    /// its turn behind another thread's write; a receiver flushing pongs
    /// or a close reply does not wait: the thread writing picks its bytes
    /// up, since every writer looks at the core again after letting go of
    /// the wire.
    fn flush(&self, mut wait: bool) -> Result<()> {
        loop {
            let wire = if wait { Some(lock(&self.wire)) } else { try_lock(&self.wire) };
            let Some(mut wire) = wire else { return Ok(()) };
            self.write_wire(&mut wire)?;
            drop(wire);
            if !lock(&self.shared).wants_transmit() {
                return Ok(());
            }
            wait = false;
        }
    }

    /// Writes the wire and what the core queues meanwhile until both are
    /// empty; the core's deadlines bound the wait.
    fn write_wire(&self, wire: &mut Wire) -> Result<()> {
        loop {
            let deadline = {
                let mut shared = lock(&self.shared);
                if wire.is_written() {
                    wire.written = 0;
                    wire.bytes.clear();
                    shared.take_outgoing(&mut wire.bytes)?;
                    if wire.bytes.is_empty() {
                        if wire.bytes.capacity() > READ_CHUNK {
                            wire.bytes = Vec::new(); // nothing held while idle
                        }
                        return Ok(());
                    }
                }
                if let Some(timeout) = shared.expired() {
                    return Err(Error::timed_out(timeout));
                }
                shared.connection.poll_timeout()
            };
            let limit = deadline.map(|at| at.saturating_duration_since(Instant::now()));
            set_timeout(&self.tcp, Direction::Write, limit)?;
            match (&self.tcp).write(&wire.bytes[wire.written..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => wire.written += n,
                Err(error) if is_timeout(&error) => {
                    let mut shared = lock(&self.shared);
                    shared.tick_at_deadline(&self.tcp);
                    if let Some(timeout) = shared.expired() {
                        return Err(Error::timed_out(timeout));
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                    if self.interruptible() {
                        return Err(error.into()); // the rest stays on the wire
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    // ---- receiving -----------------------------------------------------------------

    /// The next message, waiting at most the [`set_timeout`](Self::set_timeout)
    /// limit; `Ok(None)` once the connection closed cleanly.
    ///
    /// # Errors
    /// The limit passed ([`Timeout::Receive`]: the connection stays open),
    /// or as the async [`recv`](crate::WebSocket::recv).
    pub fn recv(&self) -> Result<Option<Message>> {
        let limit = *lock(&self.timeout);
        self.recv_timeout_opt(limit)
    }

    /// The next message, waiting at most `limit`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_timeout(&self, limit: Duration) -> Result<Option<Message>> {
        self.recv_timeout_opt(Some(limit))
    }

    fn recv_timeout_opt(&self, limit: Option<Duration>) -> Result<Option<Message>> {
        let deadline = limit.and_then(|limit| Instant::now().checked_add(limit));
        let mut buf = lock(&self.reader);
        loop {
            match self.next_event(&mut buf, deadline)? {
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
    pub fn recv_event(&self) -> Result<Option<Event>> {
        let deadline = lock(&self.timeout).and_then(|limit| Instant::now().checked_add(limit));
        let mut buf = lock(&self.reader);
        self.next_event(&mut buf, deadline)
    }

    /// The receiver's loop; `buf` is the held reader lock.
    fn next_event(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<Option<Event>> {
        loop {
            {
                let mut shared = lock(&self.shared);
                if shared.done {
                    return shared.failure.take().map_or(Ok(None), Err);
                }
                if let Some(event) = shared.connection.poll_event() {
                    if let Event::Close(frame) = &event {
                        shared.peer_close.clone_from(frame);
                    }
                    return Ok(Some(event));
                }
            }
            if self.senders.load(Ordering::SeqCst) == 0 {
                if let Err(error) = self.flush(false) {
                    // An interruption leaves the connection as it was.
                    if !error.is_interrupted() {
                        lock(&self.shared).done = true;
                    }
                    return Err(error);
                }
            }
            let wake = {
                let shared = lock(&self.shared);
                if shared.connection.is_finished() {
                    let abandoned = shared.expired().is_some();
                    drop(shared);
                    // The last bytes (a close reply) may be on another
                    // thread's wire: let it finish before the socket shuts,
                    // unless a deadline ended the connection (a writer may
                    // wait on a peer that reads nothing: the shutdown wakes it).
                    if !abandoned {
                        let _ = self.flush(true);
                    }
                    lock(&self.shared).done = true;
                    let _ = self.tcp.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let now = Instant::now();
                if deadline.is_some_and(|deadline| now >= deadline) {
                    return Err(Error::timed_out(Timeout::Receive));
                }
                let wake = match (deadline, shared.connection.poll_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                wake.map(|wake| wake.saturating_duration_since(now))
            };
            set_timeout(&self.tcp, Direction::Read, wake)?;
            let read = (&self.tcp).read(buf);
            let mut shared = lock(&self.shared);
            match read {
                Ok(0) => {
                    shared.done = true;
                    let clean = shared.connection.handle_eof();
                    return match (clean, shared.failure.take()) {
                        (_, Some(failure)) => Err(failure),
                        (true, None) => Ok(None),
                        (false, None) => Err(Error::new(Kind::AbnormalClosure)),
                    };
                }
                Ok(n) => {
                    if let Err(error) = shared.receive(&buf[..n]) {
                        shared.done = true;
                        shared.connection.handle_eof();
                        return Err(error);
                    }
                    shared.tick();
                }
                Err(error) if is_timeout(&error) => {
                    shared.tick_at_deadline(&self.tcp);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                    if self.interruptible() {
                        return Err(error.into());
                    }
                }
                Err(error) => {
                    shared.done = true;
                    shared.connection.handle_eof();
                    return Err(error.into());
                }
            }
        }
    }

    // ---- closing -------------------------------------------------------------------

    /// Ends the connection without a close handshake: the socket is shut
    /// down, and a thread waiting in `recv` wakes with the connection
    /// ended (websocket-client's `abort`).
    pub fn abort(&self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }

    /// Closes: sends a close frame, waits up to the close timeout for the
    /// server's, and closes the socket. Messages arriving meanwhile are
    /// discarded. While another thread is in `recv`, that thread reads the
    /// server's close (and returns); past the close timeout the socket is
    /// shut under it, and the timeout is reported to that thread.
    ///
    /// # Errors
    /// An invalid code or reason, the close timeout, a transport error.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        {
            let mut shared = lock(&self.shared);
            if shared.done {
                return Ok(());
            }
            if shared.connection.state() == State::Open {
                shared.connection.close(code, reason)?;
                shared.tick(); // the close timeout starts
            }
        }
        if let Err(error) = self.flush(true) {
            if !error.is_interrupted() {
                lock(&self.shared).done = true;
            }
            return Err(error);
        }
        let mut buf = loop {
            if let Some(buf) = try_lock(&self.reader) {
                break buf;
            }
            // Another thread is receiving: it reads the server's close and
            // ends the connection. This one keeps the close timeout.
            let gave_up = {
                let mut shared = lock(&self.shared);
                if shared.done {
                    return Ok(());
                }
                shared.tick();
                shared.connection.is_finished()
            };
            if gave_up {
                // The receiver may wait on a read with no deadline: end
                // the connection under it.
                let _ = self.tcp.shutdown(std::net::Shutdown::Both);
                break lock(&self.reader);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        loop {
            match self.next_event(&mut buf, None) {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }
}
