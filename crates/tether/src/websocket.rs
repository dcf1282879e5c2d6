//! [`WebSocket`]: an open connection over any async transport, driven by
//! the caller's task.
//!
//! There is no background task per connection. `recv` reads the socket,
//! feeds the sans-I/O core and hands out its events; `send` queues frames
//! in the core's output buffer and writes them. Writes are batched: while
//! already-received messages wait to be handed out, `send` only queues, and
//! the next `recv` that has to wait for the network first writes everything
//! queued in one call. An echo loop answering 16 pipelined messages thus
//! makes one read and one write, not sixteen.
//!
//! Time is fed the same way: the core says when it next needs the clock
//! ([`Connection::poll_timeout`]), one `Sleep` per connection waits for
//! that instant while `recv` (or a blocked `send`) is pending, and the core
//! decides what is due: a keepalive ping, a dead peer, an idle limit, a
//! close handshake that took too long. Keepalive therefore runs while the
//! connection is being read, which is what every long-lived connection does.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use tether_proto::handshake::{Request, Response};
use tether_proto::{CloseCode, CloseFrame, Connection, Event, Message, RoundTrip, State, Timeout, UsageError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::error::{Error, Kind, Result};

/// How much one read asks the transport for. The buffer is per thread, not
/// per connection, so it can be large (fewer reads per big message) while
/// an idle connection holds no read buffer at all.
const READ_CHUNK: usize = 256 << 10;

/// Most slices handed to one vectored write.
const WRITE_SLICES: usize = 16;

/// Past this many queued bytes, `send` writes instead of only queueing, so
/// a sender faster than the network waits for it (backpressure).
const SEND_BACKLOG_LIMIT: usize = 64 << 10;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// What is known about the connection besides its bytes. Kept for the
/// connection's life, so kept small: a server holds the request, a client
/// the response, never both.
#[derive(Default)]
pub(crate) struct ConnectionInfo {
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) handshake: Handshake,
    /// A client's negotiated subprotocol (a server's is in its session).
    pub(crate) protocol: Option<Box<str>>,
    /// The TCP socket underneath, to ask the kernel what it still holds.
    pub(crate) socket: Option<crate::kernel::RawSocket>,
    /// Pings sent by [`WebSocket::ping`] whose pong has not come, oldest
    /// first (empty, without an allocation, on almost every connection).
    pub(crate) pings: std::collections::VecDeque<WaitingPing>,
    /// A client's: how long opening it took.
    pub(crate) timings: Option<Box<crate::client::OpenTimings>>,
}

/// A ping whose [`Pong`] someone may be waiting for.
pub(crate) struct WaitingPing {
    payload: Box<[u8]>,
    sent: std::time::Instant,
    answer: tokio::sync::oneshot::Sender<Duration>,
}

/// The answer to a [`WebSocket::ping`]: resolves with the round trip
/// once the pong arrives, as the `await ws.ping()` of Python `websockets`
/// does. Pongs are read by whoever receives on the connection (`recv` on
/// it, or its reading half after [`split`](WebSocket::split)): waiting for
/// a pong while nobody reads waits for ever. A pong answers the ping with
/// its payload and every earlier one (RFC 6455, 5.5.3: a pong may answer
/// only the latest ping). Dropping it is fine: the ping was sent anyway.
#[derive(Debug)]
pub struct Pong {
    answer: tokio::sync::oneshot::Receiver<Duration>,
}

impl Future for Pong {
    type Output = Result<Duration>;

    /// # Errors
    /// The connection ended before the pong came ([`Error::is_closed`]).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.answer).poll(cx).map_err(|_| Error::new(Kind::Closed(None)))
    }
}

/// What a [`WebSocket`] drives: the bare protocol core on a client; on a
/// server, the [`Session`](tether_server::Session) every server drives,
/// which owns the core and decides what the connection means to the
/// server (heartbeat answers, hub mail, metrics, the accounting at the
/// end). This layer only moves bytes and time.
///
/// The client's core is inline (no pointer to chase per operation); the
/// server's session is boxed, as it is larger still, and a server task
/// per connection holds the box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Core {
    Client(Connection),
    #[cfg(feature = "server")]
    Server(Box<tether_server::Session>),
}

impl Core {
    fn connection(&self) -> &Connection {
        match self {
            Core::Client(connection) => connection,
            #[cfg(feature = "server")]
            Core::Server(session) => session.connection(),
        }
    }

    fn connection_mut(&mut self) -> &mut Connection {
        match self {
            Core::Client(connection) => connection,
            #[cfg(feature = "server")]
            Core::Server(session) => session.connection_mut(),
        }
    }

    #[cfg(feature = "server")]
    fn session(&self) -> Option<&tether_server::Session> {
        match self {
            Core::Server(session) => Some(session),
            Core::Client(_) => None,
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        match self {
            Core::Client(connection) => connection.poll_event(),
            #[cfg(feature = "server")]
            Core::Server(session) => session.poll_event(),
        }
    }

    fn send(&mut self, message: &Message, compress: bool) -> Result<(), UsageError> {
        match self {
            Core::Client(connection) => connection.send_with(message, compress),
            #[cfg(feature = "server")]
            Core::Server(session) => session.send(message, compress),
        }
    }

    /// Hub mail into the output (servers only); whether any was taken.
    fn take_mail(&mut self, waker: &std::task::Waker) -> bool {
        match self {
            Core::Client(_) => {
                let _ = waker;
                false
            }
            #[cfg(feature = "server")]
            Core::Server(session) => session.take_mail(Some(waker)),
        }
    }

    fn handle_timer(&mut self, now: std::time::Instant, unsent_in_kernel: Option<usize>) -> Option<Timeout> {
        match self {
            Core::Client(connection) => {
                if let Some(queued) = unsent_in_kernel {
                    connection.handle_transport_queue(queued);
                }
                connection.handle_timeout(now)
            }
            #[cfg(feature = "server")]
            Core::Server(session) => session.handle_timer(now, unsent_in_kernel),
        }
    }

    fn finish(&mut self) {
        #[cfg(feature = "server")]
        if let Core::Server(session) = self {
            session.finish();
        }
    }
}

/// The other side's half of the opening handshake.
#[derive(Debug, Default)]
pub(crate) enum Handshake {
    /// Made by other means ([`WebSocket::from_raw`]).
    #[default]
    Unknown,
    /// A server's view: the client's request.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    Request(Request),
    /// A client's view: the server's response.
    Response(Response),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Closed in the core, output written; shutting the transport down.
    ShuttingDown,
    /// Everything is over; `recv` returns `Ok(None)`.
    Done,
}

/// An open WebSocket connection.
///
/// ```no_run
/// # async fn example() -> tether::Result<()> {
/// let mut ws = tether::connect("ws://127.0.0.1:9001/").await?;
/// ws.send("hello").await?;
/// while let Some(message) = ws.recv().await? {
///     println!("{message:?}");
/// }
/// # Ok(())
/// # }
/// ```
pub struct WebSocket<S = crate::MaybeTlsStream> {
    /// `ManuallyDrop` so that `drop` can hand the transport and the core
    /// over (see [`Handover`]); every other path uses them as plain fields.
    stream: ManuallyDrop<S>,
    core: ManuallyDrop<Core>,
    info: Box<ConnectionInfo>,
    /// Armed at the core's next deadline; created on first need.
    timer: Option<Pin<Box<Sleep>>>,
    phase: Phase,
    /// Unwritten output may still be in the transport's own buffer (TLS).
    needs_flush: bool,
    /// Boxed: nothing of it exists while the connection is open and well.
    ending: Option<Box<Ending>>,
    /// Who takes the connection if it is dropped while still open: the
    /// server, which then closes it properly (1000 when the handler
    /// returned, 1011 when it failed) instead of cutting the TCP
    /// connection (1006).
    handover: Option<Handover<S>>,
}

/// Receives a connection dropped while open (see [`WebSocket`]'s `handover`).
pub(crate) type Handover<S> = Box<dyn FnOnce(Parts<S>) + Send>;

/// A connection taken apart, to be put together again with
/// [`WebSocket::from_parts`] (by the server, which hands them over).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) struct Parts<S> {
    stream: S,
    core: Core,
    info: Box<ConnectionInfo>,
    ending: Option<Box<Ending>>,
}

impl<S> Drop for WebSocket<S> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once, and neither field is used after these
        // reads: each is either handed over or dropped here.
        let (stream, core) = unsafe { (ManuallyDrop::take(&mut self.stream), ManuallyDrop::take(&mut self.core)) };
        if let Some(handover) = self.handover.take() {
            if self.phase == Phase::Open && core.connection().state() != State::Closed {
                let info = std::mem::take(&mut self.info);
                handover(Parts { stream, core, info, ending: self.ending.take() });
            }
        }
    }
}

/// How the connection ended, as far as the application is told.
#[derive(Debug, Default)]
struct Ending {
    /// A failure to report once the events before it have been handed out.
    failure: Option<Error>,
    peer_close: Option<CloseFrame>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("connection", self.core.connection())
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a transport on which the opening handshake is done. `leftover`
    /// are bytes read past the handshake: the first frames.
    pub(crate) fn new(stream: S, mut core: Core, info: ConnectionInfo, leftover: &[u8]) -> WebSocket<S> {
        let connection = core.connection_mut();
        let ending = connection
            .handle_read(leftover)
            .err()
            .map(|error| Box::new(Ending { failure: Some(error.into()), peer_close: None }));
        // Starts the connection's clock: the first ping is due one interval from now.
        connection.handle_timeout(now());
        WebSocket {
            stream: ManuallyDrop::new(stream),
            core: ManuallyDrop::new(core),
            info: Box::new(info),
            timer: None,
            phase: Phase::Open,
            needs_flush: false,
            ending,
            handover: None,
        }
    }

    /// Puts a handed-over connection together again (without a handover).
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn from_parts(parts: Parts<S>) -> WebSocket<S> {
        let Parts { stream, core, info, ending } = parts;
        WebSocket {
            stream: ManuallyDrop::new(stream),
            core: ManuallyDrop::new(core),
            info,
            timer: None,
            phase: Phase::Open,
            needs_flush: true,
            ending,
            handover: None,
        }
    }

    /// Who takes this connection if it is dropped while open.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn set_handover(&mut self, handover: Handover<S>) {
        self.handover = Some(handover);
    }

    /// Wraps a transport on which a WebSocket handshake was already done by
    /// other means (e.g. an HTTP framework), with the negotiated core state.
    pub fn from_raw(stream: S, connection: Connection) -> WebSocket<S> {
        WebSocket::new(stream, Core::Client(connection), ConnectionInfo::default(), &[])
    }

    // ---- getters ---------------------------------------------------------------

    /// The peer's address.
    #[must_use]
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.info.peer_addr
    }

    /// On a server: the client's upgrade request (path, query, headers).
    #[must_use]
    pub fn request(&self) -> Option<&Request> {
        match &self.info.handshake {
            Handshake::Request(request) => Some(request),
            _ => None,
        }
    }

    /// On a client: the server's `101` response (headers, cookies).
    #[must_use]
    pub fn response(&self) -> Option<&Response> {
        match &self.info.handshake {
            Handshake::Response(response) => Some(response),
            _ => None,
        }
    }

    /// What the server's handshake hook attached to this connection, if it
    /// is a `T` ([`Acceptance::state`](crate::admission::Acceptance::state)).
    #[cfg(feature = "server")]
    #[must_use]
    pub fn state<T: std::any::Any>(&self) -> Option<&T> {
        self.core.session()?.state()
    }

    /// This connection's number in the server's [`Hub`](crate::hub::Hub), if it has one.
    #[cfg(feature = "server")]
    #[must_use]
    pub fn client_id(&self) -> Option<crate::hub::ClientId> {
        self.core.session()?.client_id()
    }

    /// The server's hub, if it has one.
    #[cfg(feature = "server")]
    #[must_use]
    pub fn hub(&self) -> Option<&crate::hub::Hub> {
        self.core.session()?.hub()
    }

    /// Subscribes this connection to `topic` in the server's hub; `false`
    /// without a hub.
    #[cfg(feature = "server")]
    pub fn subscribe(&self, topic: &str) -> bool {
        self.core.session().is_some_and(|session| session.subscribe(topic))
    }

    /// Unsubscribes this connection from `topic`.
    #[cfg(feature = "server")]
    pub fn unsubscribe(&self, topic: &str) {
        if let Some(session) = self.core.session() {
            session.unsubscribe(topic);
        }
    }

    /// Gives this connection its own overflow policy in the server's hub
    /// (see [`Hub::set_overflow`](crate::Hub::set_overflow)); `false`
    /// without a hub.
    #[cfg(feature = "server")]
    pub fn set_overflow(&self, overflow: crate::hub::Overflow) -> bool {
        self.core.session().is_some_and(|session| session.set_overflow(overflow))
    }

    /// The negotiated subprotocol.
    #[must_use]
    pub fn protocol(&self) -> Option<&str> {
        #[cfg(feature = "server")]
        if let Some(session) = self.core.session() {
            return session.protocol();
        }
        self.info.protocol.as_deref()
    }

    /// The protocol state machine, for its state and negotiated parameters.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        self.core.connection()
    }

    /// On a client made by [`connect`](crate::connect): how long each step
    /// of opening it took.
    #[must_use]
    pub fn open_timings(&self) -> Option<&crate::client::OpenTimings> {
        self.info.timings.as_deref()
    }

    /// The round-trip time measured by keepalive pings (last and smoothed),
    /// once a pong has answered one.
    #[must_use]
    pub fn round_trip(&self) -> Option<RoundTrip> {
        self.core.connection().round_trip()
    }

    /// The close frame the peer sent, once it has.
    #[must_use]
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.ending.as_ref()?.peer_close.as_ref()
    }

    fn ending(&mut self) -> &mut Ending {
        self.ending.get_or_insert_with(Box::default)
    }

    fn take_failure(&mut self) -> Option<Error> {
        self.ending.as_mut()?.failure.take()
    }

    /// The transport.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    // ---- receiving ------------------------------------------------------------

    /// The next message, or `Ok(None)` once the connection has closed
    /// cleanly. Pings are answered automatically.
    ///
    /// # Errors
    /// A protocol violation by the peer (after the close frame with the
    /// matching code was sent), an abnormal closure (1006), an I/O error.
    /// Messages that arrived before a violation are returned first.
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event: a message, and also each ping, pong and close frame
    /// from the peer, and each data frame if [`Config::fragment_events`](tether_proto::Config::fragment_events)
    /// is set (what callback APIs need). `Ok(None)` once the connection
    /// has closed cleanly. Pings are answered automatically either way.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub async fn recv_event(&mut self) -> Result<Option<Event>> {
        std::future::poll_fn(|cx| self.poll_event(cx, true)).await
    }

    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>>> {
        self.poll_event(cx, false).map_ok(|event| match event {
            Some(Event::Message(message)) => Some(message),
            _ => None,
        })
    }

    /// The next event; with `all` false, only messages (and the end).
    fn poll_event(&mut self, cx: &mut Context<'_>, all: bool) -> Poll<Result<Option<Event>>> {
        loop {
            match self.phase {
                Phase::Done => return Poll::Ready(Ok(None)),
                Phase::ShuttingDown => {
                    // Errors here change nothing: the connection is over.
                    let _ = ready!(Pin::new(&mut *self.stream).poll_shutdown(cx));
                    self.finish();
                    return Poll::Ready(self.take_failure().map_or(Ok(None), Err));
                }
                Phase::Open => {}
            }
            if let Some(event) = self.core.poll_event() {
                // Every event but a message is only shown to `recv_event`.
                match &event {
                    Event::Close(frame) => self.ending().peer_close.clone_from(frame),
                    Event::Pong(payload) if !self.info.pings.is_empty() => self.pong_arrived(payload),
                    _ => {}
                }
                if all || matches!(event, Event::Message(_)) {
                    return Poll::Ready(Ok(Some(event)));
                }
                continue;
            }
            self.core.take_mail(cx.waker());
            if let Poll::Ready(Err(error)) = self.poll_write_out(cx) {
                self.finish();
                return Poll::Ready(Err(error));
            }
            if self.core.connection().is_finished() {
                self.phase = Phase::ShuttingDown;
                continue;
            }
            if self.core.connection().state() == State::Closed {
                // Our last frames are still being written; poll_write_out
                // registered for writability, and the close deadline bounds it.
                ready!(self.poll_timer(cx));
                continue;
            }
            let read = match self.poll_read_once(cx) {
                Poll::Ready(read) => read,
                Poll::Pending => {
                    ready!(self.poll_timer(cx));
                    continue;
                }
            };
            match read {
                Ok(true) => self.tick(),
                Ok(false) => {
                    self.finish();
                    return Poll::Ready(if self.core.connection_mut().handle_eof() {
                        // Clean, but after a deadline we started (idle): say so.
                        self.take_failure().map_or(Ok(None), Err)
                    } else {
                        Err(self.take_failure().unwrap_or_else(|| Error::new(Kind::AbnormalClosure)))
                    });
                }
                Err(error) => {
                    self.core.connection_mut().handle_eof();
                    self.finish();
                    return Poll::Ready(Err(error.into()));
                }
            }
        }
    }

    /// Reads once into the per-thread buffer and feeds the core. `Ok(false)` at EOF.
    fn poll_read_once(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let Self { stream, core, ending, .. } = self;
        let (stream, connection) = (&mut **stream, core.connection_mut());
        let result = READ_BUF.with_borrow_mut(|buf| {
            let mut read_buf = ReadBuf::new(buf);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut read_buf))?;
            let filled = read_buf.filled();
            if filled.is_empty() {
                return Poll::Ready(Ok(false));
            }
            if let Err(error) = connection.handle_read(filled) {
                ending.get_or_insert_with(Box::default).failure.get_or_insert(error.into());
            }
            Poll::Ready(Ok(true))
        });
        let connection = self.core.connection_mut();
        if result.is_pending() && !connection.is_receiving_message() {
            connection.release_memory();
        }
        result
    }

    /// The connection is over: it leaves the hub at once, whatever the
    /// handler does with the `WebSocket` afterwards.
    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.core.finish();
        // No pong comes any more: whoever waits for one is told.
        self.info.pings.clear();
    }

    // ---- time --------------------------------------------------------------------

    /// Tells the core the time; records a deadline that ended the connection.
    fn tick(&mut self) {
        self.tick_with(false);
    }

    /// `from_timer`: a deadline is due, so also tell the core what the
    /// kernel still holds for the peer (a syscall, so not after every read).
    fn tick_with(&mut self, from_timer: bool) {
        let timeout = if from_timer {
            let queued = self.info.socket.and_then(crate::kernel::unsent_bytes);
            self.core.handle_timer(now(), queued)
        } else {
            self.core.connection_mut().handle_timeout(now())
        };
        if let Some(timeout) = timeout {
            self.ending().failure.get_or_insert(Error::timed_out(timeout));
        }
    }

    /// Waits for the core's next deadline, then ticks. Pending (with the
    /// timer registered) until then; pending forever if nothing is scheduled.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.core.connection().poll_timeout() else { return Poll::Pending };
        let deadline = Instant::from_std(deadline);
        let timer = match &mut self.timer {
            Some(timer) => {
                // A timer set for later is moved earlier; one set earlier is
                // left alone: it fires, the core finds nothing due, and it is
                // then re-armed. So a deadline that keeps moving later (the
                // idle timer on every message) costs no timer update at all.
                if timer.deadline() > deadline || timer.is_elapsed() {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        ready!(timer.as_mut().poll(cx));
        self.tick_with(true);
        Poll::Ready(())
    }

    // ---- sending ----------------------------------------------------------------

    /// Sends a message: text from `&str`/`String`, binary from
    /// `Vec<u8>`/`&[u8]`/`Bytes`.
    ///
    /// The frame is written before this returns, unless received messages
    /// are still waiting to be handed out: then it is only queued, and goes
    /// out with the others on the next `recv` (see the module docs).
    ///
    /// # Errors
    /// The connection is closing or closed, or the transport failed.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        self.queue(&message.into(), true)?;
        self.flush_unless_batching().await
    }

    /// Sends a message without permessage-deflate, whatever was negotiated
    /// (for data that is already compressed).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_uncompressed(&mut self, message: impl Into<Message>) -> Result<()> {
        self.queue(&message.into(), false)?;
        self.flush_unless_batching().await
    }

    pub(crate) fn queue(&mut self, message: &Message, compress: bool) -> Result<()> {
        self.core.send(message, compress).map_err(|error| self.usage_error(error))
    }

    fn usage_error(&self, error: UsageError) -> Error {
        match error {
            UsageError::Closed => Error::new(Kind::Closed(self.close_frame().cloned())),
            other => other.into(),
        }
    }

    async fn flush_unless_batching(&mut self) -> Result<()> {
        if self.core.connection().has_events() && self.core.connection().unsent_len() < SEND_BACKLOG_LIMIT {
            return Ok(());
        }
        self.flush().await
    }

    /// Sends a ping with `payload` (at most 125 bytes); the returned
    /// [`Pong`] resolves with the round trip when its pong arrives.
    ///
    /// ```no_run
    /// # async fn example(mut ws: tether::WebSocket) -> tether::Result<()> {
    /// let (mut reader, mut writer) = ws.split();
    /// tokio::spawn(async move { while let Ok(Some(_)) = reader.recv().await {} });
    /// let pong = writer.ping(b"are you there").await?;
    /// println!("round trip: {:?}", pong.await?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// A payload too long, the connection closing, or the transport failing.
    pub async fn ping(&mut self, payload: impl AsRef<[u8]>) -> Result<Pong> {
        let pong = self.queue_ping(payload.as_ref())?;
        self.flush().await?;
        Ok(pong)
    }

    /// Queues a ping and notes who waits for its pong.
    pub(crate) fn queue_ping(&mut self, payload: &[u8]) -> Result<Pong> {
        self.core.connection_mut().send_ping(payload).map_err(|error| self.usage_error(error))?;
        let (answer, waiter) = tokio::sync::oneshot::channel();
        // Waiters nobody holds any more are let go of here, not kept until
        // a pong that may never come.
        self.info.pings.retain(|ping| !ping.answer.is_closed());
        self.info.pings.push_back(WaitingPing { payload: payload.into(), sent: std::time::Instant::now(), answer });
        Ok(Pong { answer: waiter })
    }

    /// A pong arrived: it answers the ping with its payload and every
    /// earlier one. One that matches no ping (an unsolicited heartbeat, or
    /// keepalive's own) answers none.
    fn pong_arrived(&mut self, payload: &[u8]) {
        let Some(at) = self.info.pings.iter().position(|ping| *ping.payload == *payload) else { return };
        let now = std::time::Instant::now();
        for ping in self.info.pings.drain(..=at) {
            let _ = ping.answer.send(now.duration_since(ping.sent));
        }
    }

    /// Sends an unsolicited pong (a one-way heartbeat).
    ///
    /// # Errors
    /// As [`ping`](Self::ping).
    pub async fn pong(&mut self, payload: impl AsRef<[u8]>) -> Result<()> {
        self.core.connection_mut().send_pong(payload.as_ref()).map_err(|error| self.usage_error(error))?;
        self.flush().await
    }

    /// Writes everything queued.
    ///
    /// # Errors
    /// The transport failed.
    pub async fn flush(&mut self) -> Result<()> {
        std::future::poll_fn(|cx| self.poll_send_out(cx)).await
    }

    /// Writes everything queued, for a sender: while the peer does not
    /// read, the connection's deadlines still run, so a dead peer ends
    /// the wait with the keepalive or close timeout instead of never.
    pub(crate) fn poll_send_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            if let Poll::Ready(result) = self.poll_write_out(cx) {
                return Poll::Ready(result);
            }
            ready!(self.poll_timer(cx));
            if let Some(timeout @ (Timeout::Ping | Timeout::Close)) = self.core.connection().timeout() {
                return Poll::Ready(Err(Error::timed_out(timeout)));
            }
        }
    }

    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            if !self.core.connection().wants_transmit() {
                if self.needs_flush {
                    ready!(Pin::new(&mut *self.stream).poll_flush(cx))?;
                    self.needs_flush = false;
                }
                return Poll::Ready(Ok(()));
            }
            // Large payloads are queued by reference: one vectored write
            // sends them with the frames around them, without a copy.
            let written = if self.stream.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
                let count = self.core.connection_mut().pending_transmit_vectored(&mut slices);
                ready!(Pin::new(&mut *self.stream).poll_write_vectored(cx, &slices[..count]))?
            } else {
                let pending = self.core.connection_mut().pending_transmit();
                ready!(Pin::new(&mut *self.stream).poll_write(cx, pending))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            self.core.connection_mut().advance_transmit(written);
            self.needs_flush = true;
        }
    }

    // ---- closing -------------------------------------------------------------------

    /// Closes the connection: sends a close frame with `code` and `reason`,
    /// waits up to the close timeout ([`Config::close_timeout`](tether_proto::Config::close_timeout))
    /// for the peer's, and shuts the transport down. Messages arriving
    /// meanwhile are discarded.
    ///
    /// # Errors
    /// An invalid code or reason, the close timeout ([`Timeout::Close`]),
    /// or a transport error.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        if self.phase == Phase::Done {
            return Ok(());
        }
        self.core.connection_mut().close(code, reason)?;
        loop {
            match self.recv().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends a close frame and returns without waiting for the peer's:
    /// keep calling [`recv`](Self::recv) to read the messages still in
    /// flight, until it returns `Ok(None)` when the peer's close arrives.
    ///
    /// # Errors
    /// An invalid code or reason, or a transport error.
    pub async fn send_close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.start_close(code, reason)?;
        self.flush().await
    }

    /// Splits the connection into a receiving and a sending half that can
    /// be used from different tasks. The halves are also a `Stream` of
    /// messages and a `Sink` of messages, as the whole connection is.
    ///
    /// ```no_run
    /// use futures_util::{SinkExt as _, StreamExt as _};
    ///
    /// # async fn example() -> tether::Result<()> {
    /// let ws = tether::connect("ws://127.0.0.1:9001/").await?;
    /// let (mut reader, mut writer) = ws.split();
    /// // One task reads (and so answers pings and reads pongs) ...
    /// let reading = tokio::spawn(async move {
    ///     while let Some(message) = reader.next().await {
    ///         println!("{:?}", message?);
    ///     }
    ///     Ok::<_, tether::Error>(())
    /// });
    /// // ... while another writes.
    /// for n in 0..3 {
    ///     writer.send(tether::Message::from(format!("message {n}"))).await?;
    /// }
    /// writer.close(tether::CloseCode::NORMAL, "done").await?;
    /// reading.await.expect("the reader")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn split(self) -> (crate::split::WebSocketReader<S>, crate::split::WebSocketWriter<S>) {
        crate::split::split(self)
    }

    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.core.connection_mut().close(code, reason).map_err(|error| self.usage_error(error))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.core.connection().unsent_len() >= SEND_BACKLOG_LIMIT {
            ready!(this.poll_send_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<()> {
        self.get_mut().queue(&message, true)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_send_out(cx)
    }

    /// Sends a normal close frame and writes it; the peer's answer is read
    /// by the `Stream` side (or not at all).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.core.connection().state() == State::Open {
            this.start_close(CloseCode::NORMAL, "")?;
        }
        this.poll_send_out(cx)
    }
}

/// The time to hand the core: tokio's clock, so that tests running on
/// paused time see deadlines pass exactly when tokio's timers fire.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}
