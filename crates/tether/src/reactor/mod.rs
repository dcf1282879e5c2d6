//! A server without a task per connection: one thread runs an event loop
//! (epoll, through mio) that owns every connection, and a [`Service`]'s
//! callbacks see each one's messages.
//!
//! [`Server`](crate::Server) gives each connection a tokio task and an
//! `async` handler, which is the most natural way to write per-connection
//! logic, but a task and its socket registration alone cost about 1 KiB of
//! memory, idle or not. Here an idle connection is its protocol state
//! (`tether_proto::Connection`), its socket, and its place in the hub: no
//! future, no per-connection timer (one heap of deadlines serves them all),
//! no buffer while idle. Servers of many mostly idle clients (the seeds'
//! chat and push servers) are what it is for; `tether serve` runs on it.
//!
//! Everything a connection means to the server is its
//! [`Session`], the same as on the tokio server:
//! admission (hook, origins, plain HTTP, metrics), the `101`, the protocol
//! core with its keepalive, trace, the [`Hub`]'s mailboxes, metrics, the
//! heartbeat responder, the hook's state. This loop only moves bytes and
//! time. `wss://` runs on the loop too: rustls, driven by hand
//! (`transport`). Several loops can share a port, one per thread
//! ([`Reactor::bind_threads`]).
//!
//! ```no_run
//! use tether::reactor::{Conn, Reactor};
//! use tether::{Hub, Message, ServerConfig};
//!
//! # fn main() -> std::io::Result<()> {
//! let mut config = ServerConfig::default();
//! config.hub = Some(Hub::default());
//! // Two event loops on one port; every message goes to every client.
//! let reactor = Reactor::bind_threads("127.0.0.1:9001".parse().unwrap(), config, 2)?;
//! let shutdown = reactor.handle(); // `shutdown.shutdown()` from any thread closes with 1001
//! reactor.run_with(|_loop_index| {
//!     |conn: &mut Conn<'_>, message: Message| {
//!         if let Some(hub) = conn.hub() {
//!             hub.broadcast(&message);
//!         }
//!     }
//! })
//! # }
//! ```

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use tether_proto::handshake::HeadReader;
use tether_proto::{CloseCode, Event, Message, State, UsageError};
use tether_server::descriptors::{busy_answer, is_out_of_descriptors, Reserve, ACCEPT_RETRY};
use tether_server::hub::{LoopMail, MailSignal};
use tether_server::{Refused, ServerConfig, Session, Shared};

use self::deadlines::{Deadlines, Tick};

use crate::hub::{ClientId, Hub};

mod deadlines;
mod transport;
use transport::Transport;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
/// One read buffer for all connections of the loop.
const READ_BUFFER: usize = 256 << 10;
const WRITE_SLICES: usize = 16;
/// Reads from one connection per turn of the loop, so one fast sender
/// cannot starve the others; the rest is read on the next turn.
const READS_PER_TURN: usize = 16;
/// How often connections that went quiet give their buffers back. A
/// connection that sends to us keeps its input, output and event buffers
/// from turn to turn (freeing them after every turn cost a dozen
/// allocations per turn of a small-message echo); once it has sent nothing
/// for a whole period it frees them, so an idle connection holds none.
const RELEASE_PERIOD: Duration = Duration::from_millis(100);
/// Output queued while reading that is written before the next read: small
/// answers are batched into one write per turn, large ones flow back while
/// the rest of the input is still arriving (as a plain TCP echo would).
const WRITE_WHILE_READING: usize = 64 << 10;

/// Connections with mail driven per turn of the loop. A broadcast to many
/// connections is written out over several turns, and each turn first
/// polls the sockets: a publication read meanwhile reaches the connections
/// not yet visited in this round at once, instead of waiting for the round
/// to end (with 10,000 subscribers a round of sends takes tens of ms).
const MAIL_PER_TURN: usize = 1024;

/// What a reactor server does with its connections. Every callback runs
/// on the loop's thread: keep them short, and hand long work elsewhere
/// (what a callback sends is written when it returns).
pub trait Service: Send + 'static {
    /// A connection completed its opening handshake.
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let _ = conn;
    }

    /// A whole message arrived.
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message);

    /// A connection ended, by whatever path; `code` is the peer's close
    /// code, else ours, else `None` (it vanished without a close frame).
    fn on_close(&mut self, id: ConnId, code: Option<CloseCode>) {
        let _ = (id, code);
    }
}

/// A closure is a service that only handles messages.
impl<F: FnMut(&mut Conn<'_>, Message) + Send + 'static> Service for F {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        self(conn, message);
    }
}

/// A connection's number in its reactor, unique for the reactor's life.
pub type ConnId = u64;

/// One open connection, as a [`Service`] callback sees it.
pub struct Conn<'a> {
    id: ConnId,
    socket: &'a TcpStream,
    open: &'a mut Open,
}

impl Conn<'_> {
    /// Its number in the reactor.
    #[must_use]
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The client's address (asked of the socket: not kept per connection).
    #[must_use]
    pub fn peer(&self) -> Option<SocketAddr> {
        self.socket.peer_addr().ok()
    }

    /// The path of its opening request.
    #[must_use]
    pub fn path(&self) -> &str {
        self.open.session.path()
    }

    /// The negotiated subprotocol.
    #[must_use]
    pub fn protocol(&self) -> Option<&str> {
        self.open.session.protocol()
    }

    /// The protocol state machine, for its state and negotiated
    /// parameters (permessage-deflate, round-trip times).
    #[must_use]
    pub fn connection(&self) -> &tether_proto::Connection {
        self.open.session.connection()
    }

    /// What the handshake hook attached to this connection, if it is a `T`
    /// ([`Acceptance::state`](crate::admission::Acceptance::state)).
    #[must_use]
    pub fn state<T: std::any::Any>(&self) -> Option<&T> {
        self.open.session.state()
    }

    /// Queues a message (compressed if negotiated); it is written when the
    /// callback returns.
    ///
    /// # Errors
    /// The connection is closing.
    pub fn send(&mut self, message: &Message) -> Result<(), UsageError> {
        self.open.session.send(message, true)
    }

    /// Starts the closing handshake.
    ///
    /// # Errors
    /// An invalid code or reason.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), UsageError> {
        self.open.session.close(code, reason)
    }

    /// Bytes queued for the client and not yet written.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.open.session.connection().unsent_len()
    }

    /// The server's hub, if it has one.
    #[must_use]
    pub fn hub(&self) -> Option<&Hub> {
        self.open.session.hub()
    }

    /// Its number in the hub.
    #[must_use]
    pub fn client_id(&self) -> Option<ClientId> {
        self.open.session.client_id()
    }

    /// Subscribes it to `topic` in the hub; `false` without a hub.
    pub fn subscribe(&self, topic: &str) -> bool {
        self.open.session.subscribe(topic)
    }

    /// Unsubscribes it from `topic`.
    pub fn unsubscribe(&self, topic: &str) {
        self.open.session.unsubscribe(topic);
    }

    /// Gives it its own overflow policy in the hub; `false` without a hub.
    pub fn set_overflow(&self, overflow: crate::hub::Overflow) -> bool {
        self.open.session.set_overflow(overflow)
    }
}

/// What another thread uses to reach a running reactor.
#[derive(Clone)]
pub struct ReactorHandle {
    controls: Vec<Arc<Control>>,
}

impl ReactorHandle {
    /// Graceful shutdown: stop accepting, close every connection with 1001,
    /// wait for the close handshakes (each bounded by the close timeout),
    /// then [`Reactor::run`] returns.
    pub fn shutdown(&self) {
        for control in &self.controls {
            control.stop.store(true, Ordering::Release);
            let _ = control.waker.wake();
        }
    }
}

impl std::fmt::Debug for ReactorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stopping = self.controls.iter().any(|control| control.stop.load(Ordering::Relaxed));
        f.debug_struct("ReactorHandle").field("loops", &self.controls.len()).field("stopping", &stopping).finish()
    }
}

/// What the loop shares with other threads: the stop flag, and the
/// connections that hub mail is waiting for.
struct Control {
    stop: AtomicBool,
    waker: mio::Waker,
    mail: Mutex<Vec<usize>>,
}

/// The hub tells the loop which connection has mail: one signal for all
/// the loop's connections.
impl LoopMail for Control {
    fn mail_for(&self, token: usize) {
        let first = {
            let mut mail = self.mail.lock().unwrap_or_else(PoisonError::into_inner);
            mail.push(token);
            mail.len() == 1
        };
        if first {
            let _ = self.waker.wake();
        }
    }
}

/// A bound reactor server, ready to [`run`](Self::run): one event loop,
/// or one per thread ([`bind_threads`](Self::bind_threads)).
pub struct Reactor {
    loops: Vec<Bound>,
    shared: Arc<Shared>,
}

/// One loop's listening socket, poll and control.
struct Bound {
    listener: TcpListener,
    poll: Poll,
    control: Arc<Control>,
    /// Connections open now in all loops, handshakes included: the
    /// connection cap is global.
    active: Arc<AtomicUsize>,
    reserve: Arc<Mutex<Reserve>>,
}

impl Bound {
    fn new(mut listener: TcpListener, active: &Arc<AtomicUsize>, reserve: &Arc<Mutex<Reserve>>) -> io::Result<Bound> {
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let control = Arc::new(Control { stop: AtomicBool::new(false), waker, mail: Mutex::default() });
        Ok(Bound { listener, poll, control, active: active.clone(), reserve: reserve.clone() })
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("local_addr", &self.local_addr().ok())
            .field("threads", &self.loops.len())
            .finish_non_exhaustive()
    }
}

impl Reactor {
    /// Binds `addr` with `config` for one event loop (its `tls` aside,
    /// every field applies as for [`Server`](crate::Server)).
    ///
    /// With [`tls`](ServerConfig::tls) set it serves `wss://`: rustls runs
    /// on the loop, driven by hand, within the same open timeout.
    ///
    /// # Errors
    /// The configuration cannot work ([`Config::validate`](tether_proto::Config::validate),
    /// reported as [`io::ErrorKind::InvalidInput`] with the reason), or the
    /// address cannot be bound.
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<Reactor> {
        Reactor::bind_threads(addr, config, 1)
    }

    /// Binds `addr` for `threads` event loops, each with a listening socket
    /// of its own on the same port (`SO_REUSEPORT`: the kernel spreads new
    /// connections over them, with no lock and no thundering herd). They
    /// share the configuration, the hub, the metrics and the connection
    /// cap; a connection stays on the loop that accepted it.
    ///
    /// # Errors
    /// As [`bind`](Self::bind); also `threads` is 0.
    pub fn bind_threads(addr: SocketAddr, config: ServerConfig, threads: usize) -> io::Result<Reactor> {
        if threads == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a reactor needs at least one thread"));
        }
        let shared = Shared::new(config).map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let (active, reserve) = (Arc::default(), Arc::new(Mutex::new(Reserve::new())));
        let mut loops = Vec::with_capacity(threads);
        if threads == 1 {
            loops.push(Bound::new(TcpListener::bind(addr)?, &active, &reserve)?);
        } else {
            // The first listener settles the port (when `addr` asks for any).
            let first = reuse_port_listener(addr)?;
            let addr = first.local_addr()?;
            loops.push(Bound::new(first, &active, &reserve)?);
            for _ in 1..threads {
                loops.push(Bound::new(reuse_port_listener(addr)?, &active, &reserve)?);
            }
        }
        Ok(Reactor { loops, shared: Arc::new(shared) })
    }

    /// The address it listens on.
    ///
    /// # Errors
    /// As the system's `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.loops[0].listener.local_addr()
    }

    /// How many event loops it runs.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.loops.len()
    }

    /// A handle to shut it down from another thread.
    #[must_use]
    pub fn handle(&self) -> ReactorHandle {
        ReactorHandle { controls: self.loops.iter().map(|bound| bound.control.clone()).collect() }
    }

    /// Runs the loop on this thread until [`ReactorHandle::shutdown`] and
    /// the connections' close handshakes are done.
    ///
    /// # Errors
    /// The system's poll failed, or the reactor was bound for several
    /// threads (use [`run_with`](Self::run_with)).
    pub fn run(self, service: impl Service) -> io::Result<()> {
        if self.loops.len() > 1 {
            let why = "a reactor bound for several threads needs a service per thread: use run_with";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        let Reactor { mut loops, shared } = self;
        let bound = loops.pop().expect("one loop");
        run_loop(bound, shared, service)
    }

    /// Runs every loop, each on a thread of its own (the first on this
    /// one), with the service `make_service(index)` makes for it; returns
    /// when all have stopped ([`ReactorHandle::shutdown`]).
    ///
    /// # Errors
    /// A loop's poll failed (the first such error; the other loops are
    /// stopped).
    pub fn run_with<S, M>(self, make_service: M) -> io::Result<()>
    where
        S: Service,
        M: Fn(usize) -> S,
    {
        let Reactor { loops, shared } = self;
        let handle = ReactorHandle { controls: loops.iter().map(|bound| bound.control.clone()).collect() };
        let mut loops = loops.into_iter();
        let first = loops.next().expect("at least one loop");
        let mut threads = Vec::new();
        for (index, bound) in loops.enumerate() {
            let (shared, service) = (shared.clone(), make_service(index + 1));
            let handle = handle.clone();
            let thread = std::thread::Builder::new().name(format!("tether-loop-{}", index + 1)).spawn(move || {
                let result = run_loop(bound, shared, service);
                if result.is_err() {
                    handle.shutdown();
                }
                result
            })?;
            threads.push(thread);
        }
        let mut result = run_loop(first, shared, make_service(0));
        if result.is_err() {
            handle.shutdown();
        }
        for thread in threads {
            let joined = thread.join().unwrap_or_else(|_| Err(io::Error::other("an event loop panicked")));
            result = result.and(joined);
        }
        result
    }
}

/// A listening socket that shares its port with the other loops'.
fn reuse_port_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// One loop, on this thread, until it is stopped and its connections closed.
fn run_loop(bound: Bound, shared: Arc<Shared>, service: impl Service) -> io::Result<()> {
    let Bound { listener, mut poll, control, active, reserve } = bound;
    let mut event_loop = Loop {
        listener: Some(listener),
        shared,
        control,
        active,
        service,
        slots: Slots::default(),
        deadlines: Deadlines::new(Instant::now()),
        openings: VecDeque::new(),
        buffer: vec![0; READ_BUFFER],
        again: Vec::new(),
        mail: VecDeque::new(),
        reserve,
        accept_retry: None,
        keeping: Vec::new(),
        next_release: None,
    };
    let mut events = Events::with_capacity(1024);
    let mut stop_deadline = None;
    loop {
        let now = Instant::now();
        let timeout = if event_loop.again.is_empty() && event_loop.mail.is_empty() {
            event_loop.next_deadline().map(|at| at.saturating_duration_since(now))
        } else {
            Some(Duration::ZERO)
        };
        if let Err(error) = poll.poll(&mut events, timeout) {
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        let now = Instant::now();
        for event in &events {
            match event.token() {
                LISTENER => event_loop.accept(poll.registry(), now),
                WAKER => {}
                Token(token) => {
                    let cause =
                        if event.is_read_closed() || event.is_error() { Cause::SocketClosing } else { Cause::Socket };
                    event_loop.drive(poll.registry(), token, now, cause);
                }
            }
        }
        for token in std::mem::take(&mut event_loop.again) {
            event_loop.drive(poll.registry(), token, now, Cause::Socket);
        }
        event_loop.mail.extend(event_loop.control.mail.lock().unwrap_or_else(PoisonError::into_inner).drain(..));
        for _ in 0..MAIL_PER_TURN {
            let Some(token) = event_loop.mail.pop_front() else { break };
            event_loop.drive(poll.registry(), token, now, Cause::Mail);
        }
        event_loop.fire_deadlines(poll.registry(), now);
        event_loop.release_quiet(now);
        if stop_deadline.is_none() && event_loop.control.stop.load(Ordering::Acquire) {
            let close_timeout = event_loop.shared.config().protocol.close_timeout;
            stop_deadline = Some(now + close_timeout + Duration::from_millis(500));
            event_loop.begin_shutdown(poll.registry(), now);
        }
        if let Some(deadline) = stop_deadline {
            if event_loop.slots.is_empty() || now >= deadline {
                return Ok(());
            }
        }
    }
}

/// The loop's state: every connection, and one heap of their deadlines.
struct Loop<S> {
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    control: Arc<Control>,
    /// Connections open in every loop of the reactor.
    active: Arc<AtomicUsize>,
    service: S,
    slots: Slots,
    /// Each open connection's next deadline; entries whose slot has since
    /// moved its deadline (or closed) are skipped when they come up.
    deadlines: Deadlines,
    /// Opening handshakes' deadlines, in the order they expire (they all
    /// have the same timeout): a queue, not the heap, so a connection that
    /// has opened leaves no stale entry among the heap's.
    openings: VecDeque<(Instant, usize)>,
    buffer: Vec<u8>,
    /// Connections to drive again next turn (they had more to read).
    again: Vec<usize>,
    /// Connections whose mailbox woke them, in order, not yet driven.
    mail: VecDeque<usize>,
    /// A descriptor held back to answer clients when none is left, shared
    /// by the reactor's loops.
    reserve: Arc<Mutex<Reserve>>,
    /// When to try accepting again after a failure that left clients in
    /// the backlog (no readiness event would announce them again).
    accept_retry: Option<Instant>,
    /// Open connections that kept their buffers after their last turn.
    keeping: Vec<usize>,
    /// When [`Loop::release_quiet`] next looks at them.
    next_release: Option<Instant>,
}

/// What one accept gave.
enum Accepted {
    Client(TcpStream, SocketAddr),
    /// A client was answered 503 for want of descriptors: accept again
    /// (draining the backlog to `WouldBlock` re-arms the edge trigger).
    Refused,
    /// Nobody else is waiting.
    Drained,
    Failed(io::Error),
}

/// Accepts one client, or answers one 503 if the process is out of
/// descriptors (see `tether_server::descriptors`), and says whether more
/// may be waiting.
///
/// Every loop's accepts take the reserve's lock: the reserve's place,
/// freed for a moment, must go to this accept and not to another loop's,
/// or the reserve would be lost (and clients in this listener's backlog
/// left waiting). The kernel serialises descriptor allocation anyway.
fn accept_one(listener: &TcpListener, reserve: &Mutex<Reserve>, plain: bool) -> Accepted {
    use std::os::fd::AsFd as _;
    let mut reserve = reserve.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        match listener.accept() {
            Ok((socket, peer)) => return Accepted::Client(socket, peer),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Accepted::Drained,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if is_out_of_descriptors(&error) && reserve.release() => {
                // Linux reports EMFILE before it looks at the backlog, so
                // only this accept tells whether anyone is waiting.
                return match listener.accept() {
                    Ok((mut socket, peer)) => {
                        tracing::warn!(%peer, "out of file descriptors: refused a connection");
                        if plain {
                            refuse_busy(&mut socket);
                        }
                        let socket = std::os::fd::OwnedFd::from(std::net::TcpStream::from(socket));
                        reserve.restore_from(socket, listener.as_fd());
                        Accepted::Refused
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        reserve.restore();
                        Accepted::Drained
                    }
                    Err(error) => {
                        reserve.restore();
                        Accepted::Failed(error)
                    }
                };
            }
            Err(error) => {
                // A reserve lost earlier comes back once a place frees.
                reserve.restore();
                return Accepted::Failed(error);
            }
        }
    }
}

/// One connection.
struct Slot {
    socket: TcpStream,
    /// Plain, or TLS driven by hand.
    transport: Transport,
    phase: Phase,
    /// The deadline this slot has in the heap, if any.
    scheduled: Option<Tick>,
    /// Registered for writability (output waits for the socket).
    writable: bool,
    /// Reading stopped with data left in the kernel (our answers piled
    /// up); the next turn reads, whatever brought it.
    held_back: bool,
    /// In the loop's `keeping` list: it holds its buffers between turns.
    keeping: bool,
    /// Received a data message since the last release period began.
    busy: bool,
}

/// What gave a connection its turn. Only the socket's readiness (or data
/// left unread) makes it read: a turn for hub mail or a deadline would
/// only meet `WouldBlock`, a system call per delivery for nothing, and
/// epoll announces new data whatever turns come between.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    Socket,
    /// The peer's end of stream (or an error) is signalled: read until the
    /// socket says so, even past a short read.
    SocketClosing,
    Mail,
    Timer,
}

/// The slot itself is boxed, so the open state lives inline in it: boxing
/// it too would cost a second allocation per connection.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// Reading the opening request; boxed, as it lives only a moment.
    Opening(Box<Opening>),
    Open(Open),
}

struct Opening {
    reader: HeadReader,
    peer: SocketAddr,
    deadline: Instant,
}

/// An open connection's state.
pub struct Open {
    session: Session,
}

/// What a connection's turn ended in.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    End,
}

impl<S: Service> Loop<S> {
    fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            let Some(listener) = &self.listener else { return };
            let plain = self.shared.config().tls.is_none();
            let (mut socket, peer) = match accept_one(listener, &self.reserve, plain) {
                Accepted::Client(socket, peer) => (socket, peer),
                Accepted::Refused => continue,
                Accepted::Drained => return,
                Accepted::Failed(error) => {
                    // Clients may still wait in the backlog, and the edge
                    // trigger will not say so again: try again soon.
                    tracing::warn!(%error, "accept failed; retrying");
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            let config = self.shared.config();
            // Counted first, checked after: two loops accepting at once
            // cannot both take the last place.
            if config.max_connections.is_some_and(|max| self.active.fetch_add(1, Ordering::AcqRel) >= max) {
                self.active.fetch_sub(1, Ordering::AcqRel);
                if plain {
                    refuse_busy(&mut socket);
                }
                continue;
            }
            if config.max_connections.is_none() {
                self.active.fetch_add(1, Ordering::AcqRel);
            }
            let _ = socket.set_nodelay(true);
            if let Some(size) = config.send_buffer {
                let _ = socket2::SockRef::from(&socket).set_send_buffer_size(size);
            }
            let Ok(transport) = Transport::new(config.tls.as_ref()) else {
                self.active.fetch_sub(1, Ordering::AcqRel);
                continue;
            };
            let deadline = now + config.open_timeout;
            let reader = HeadReader::new(config.limits.clone());
            let opening = Box::new(Opening { reader, peer, deadline });
            let phase = Phase::Opening(opening);
            let slot = Slot {
                socket,
                transport,
                phase,
                scheduled: None,
                writable: false,
                held_back: false,
                keeping: false,
                busy: false,
            };
            let token = self.slots.insert(Box::new(slot));
            let slot = self.slots.get_mut(token).expect("just inserted");
            if registry.register(&mut slot.socket, Token(token), Interest::READABLE).is_err() {
                self.slots.remove(token);
                self.active.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            self.openings.push_back((deadline, token));
            // Its request may already be here (edge-triggered: no event
            // will say so again).
            self.drive(registry, token, now, Cause::Socket);
        }
    }

    /// Gives one connection its turn: read, deliver, take mail, write,
    /// check its deadlines; ends it if it is over.
    fn drive(&mut self, registry: &Registry, token: usize, now: Instant, cause: Cause) {
        let Some(slot) = self.slots.get_mut(token) else { return };
        let mut next = match slot.phase {
            Phase::Opening(_) => {
                let turn = Turn { token, registry, again: &mut self.again, now, cause };
                open(slot, turn, &self.shared, &self.control, &mut self.buffer, &mut self.service)
            }
            Phase::Open(_) => Next::Continue,
        };
        if next == Next::Continue && matches!(slot.phase, Phase::Open(_)) {
            let turn = Turn { token, registry, again: &mut self.again, now, cause };
            next = serve(slot, turn, &mut self.buffer, &mut self.service);
        }
        if next == Next::End {
            self.end(token);
            return;
        }
        let Phase::Open(open) = &slot.phase else { return };
        if slot.busy && !slot.keeping {
            slot.keeping = true;
            self.keeping.push(token);
            self.next_release.get_or_insert(now + RELEASE_PERIOD);
        }
        if let Some(at) = open.session.connection().poll_timeout() {
            let at = self.deadlines.tick(at);
            if slot.scheduled != Some(at) {
                slot.scheduled = Some(at);
                self.deadlines.push(at, token);
                if self.deadlines.len() > 2 * self.slots.len + 64 {
                    self.drop_stale_deadlines();
                }
            }
        }
    }

    /// Rebuilds the deadline heap from its live entries. A deadline that
    /// moves (a ping sent, its pong received) leaves its old entry behind
    /// until that time comes: with keepalive's 20 s timeout every
    /// connection left one or two such entries per heartbeat, and the heap
    /// (its capacity doubling) grew by ~100 B a connection.
    fn drop_stale_deadlines(&mut self) {
        let slots = &mut self.slots;
        self.deadlines.retain(|at, token| slots.get_mut(token).is_some_and(|slot| slot.scheduled == Some(at)));
    }

    fn next_deadline(&self) -> Option<Instant> {
        let open = self.deadlines.peek().map(|(at, _)| self.deadlines.instant(at));
        let opening = self.openings.front().map(|(at, _)| *at);
        open.into_iter().chain(opening).chain(self.accept_retry).chain(self.next_release).min()
    }

    /// Frees the buffers of connections that sent no message for a whole
    /// [`RELEASE_PERIOD`].
    fn release_quiet(&mut self, now: Instant) {
        if self.next_release.is_none_or(|at| now < at) {
            return;
        }
        let slots = &mut self.slots;
        self.keeping.retain(|&token| {
            let Some(slot) = slots.get_mut(token) else { return false };
            if std::mem::take(&mut slot.busy) {
                return true;
            }
            slot.keeping = false;
            if let Phase::Open(open) = &mut slot.phase {
                let connection = open.session.connection_mut();
                if !connection.wants_transmit() {
                    connection.release_memory();
                }
            }
            false
        });
        self.next_release = (!self.keeping.is_empty()).then(|| now + RELEASE_PERIOD);
    }

    fn fire_deadlines(&mut self, registry: &Registry, now: Instant) {
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            self.accept(registry, now);
        }
        while let Some(&(at, token)) = self.openings.front() {
            if at > now {
                break;
            }
            self.openings.pop_front();
            if let Some(Slot { phase: Phase::Opening(_), .. }) = self.slots.get_mut(token) {
                // The request did not arrive in time (slowloris).
                self.end(token);
            }
        }
        if self.openings.capacity() > 64 && self.openings.len() < self.openings.capacity() / 4 {
            self.openings.shrink_to(self.openings.len() * 2);
        }
        while let Some((at, token)) = self.deadlines.peek() {
            if !self.deadlines.is_due(at, now) {
                return;
            }
            self.deadlines.pop();
            let Some(slot) = self.slots.get_mut(token) else { continue };
            if slot.scheduled != Some(at) {
                continue; // moved since, or already handled
            }
            slot.scheduled = None;
            self.drive(registry, token, now, Cause::Timer);
        }
        self.deadlines.release_spare();
    }

    fn begin_shutdown(&mut self, registry: &Registry, now: Instant) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
        for token in self.slots.tokens() {
            let Some(slot) = self.slots.get_mut(token) else { continue };
            match &mut slot.phase {
                Phase::Opening(_) => {
                    self.end(token);
                    continue;
                }
                Phase::Open(open) => {
                    let _ = open.session.close(CloseCode::GOING_AWAY, "server shutting down");
                }
            }
            self.drive(registry, token, now, Cause::Timer);
        }
    }

    /// Removes a connection: it leaves the hub, the metrics count it
    /// closed, the service hears of it, the socket closes.
    fn end(&mut self, token: usize) {
        let Some(mut slot) = self.slots.remove(token) else { return };
        self.active.fetch_sub(1, Ordering::AcqRel);
        if slot.transport.is_tls() {
            // TLS's own goodbye (close_notify), best effort.
            let Slot { socket, transport, .. } = &mut *slot;
            transport.shutdown(socket);
        }
        let Phase::Open(mut open) = slot.phase else { return };
        let code = open.session.finish();
        self.service.on_close(self.slots.id(token), code);
    }
}

/// The opening handshake: read the request, let the session admit it,
/// answer `101`, and turn the slot into an open connection.
fn open(
    slot: &mut Slot,
    turn: Turn<'_>,
    shared: &Arc<Shared>,
    control: &Arc<Control>,
    buffer: &mut [u8],
    service: &mut impl Service,
) -> Next {
    let Turn { token, registry, now, .. } = turn;
    let Phase::Opening(opening) = &mut slot.phase else { return Next::Continue };
    let (consumed, read) = loop {
        let read = match slot.transport.read(&mut slot.socket, buffer) {
            Ok(0) => return Next::End,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if now >= opening.deadline {
                    return Next::End;
                }
                // The TLS handshake may have something to say.
                return match slot.transport.push(&mut slot.socket) {
                    Ok(done) => match want_writable(slot, token, registry, !done) {
                        Ok(()) => Next::Continue,
                        Err(_) => Next::End,
                    },
                    Err(_) => Next::End,
                };
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Next::End,
        };
        match opening.reader.feed(&buffer[..read]) {
            Ok(None) => {}
            Ok(Some(consumed)) => break (consumed, read),
            Err(error) => {
                let refused = Refused::head(&error, opening.peer);
                return refuse(slot, &refused);
            }
        }
    };
    let mut opened = match tether_server::open(shared, &opening.reader, opening.peer, now) {
        Ok(opened) => opened,
        Err(refused) => return refuse(slot, &refused),
    };
    // A fresh socket's send buffer takes a few hundred bytes at once.
    if slot.transport.write_all_now(&mut slot.socket, &opened.response).is_err() {
        return Next::End;
    }
    // Frames the client sent right behind its request.
    let _ = opened.session.handle_read(&buffer[consumed..read]);
    opened.session.signal_mail(MailSignal::Loop(control.clone(), token));
    let mut open = Open { session: opened.session };
    service.on_open(&mut Conn { id: token as u64, socket: &slot.socket, open: &mut open });
    slot.phase = Phase::Open(open);
    Next::Continue
}

/// What an open connection's turn needs of the loop.
struct Turn<'a> {
    token: usize,
    registry: &'a Registry,
    /// Connections to drive again next turn.
    again: &'a mut Vec<usize>,
    now: Instant,
    cause: Cause,
}

/// An open connection's turn.
fn serve(slot: &mut Slot, turn: Turn<'_>, buffer: &mut [u8], service: &mut impl Service) -> Next {
    let Turn { token, registry, again, now, cause } = turn;
    let Phase::Open(open) = &mut slot.phase else { return Next::Continue };
    let id = token as u64;
    let mut ended = false;
    let mut reads = 0;
    let mut messages = 0;
    // Read until the socket has nothing more (epoll is edge-triggered), unless
    // our answers pile up unread: then the peer must read before it may
    // send more, and the kernel's buffers hold the rest.
    let mut reading = matches!(cause, Cause::Socket | Cause::SocketClosing) || slot.held_back;
    while reading && open.session.connection().state() != State::Closed {
        if open.session.is_backlogged() {
            slot.held_back = true;
            break;
        }
        if reads == READS_PER_TURN {
            again.push(token);
            break;
        }
        let (result, asked) = read_some(&mut slot.socket, &mut slot.transport, open, buffer);
        match result {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(read) => {
                reads += 1;
                messages += deliver(open, id, &slot.socket, service);
                if read < asked && slot.transport.is_plain() && cause != Cause::SocketClosing {
                    // A short read emptied the kernel's receive queue, and
                    // Linux signals the next arrival as a new edge: the read
                    // that would only say `WouldBlock` is saved (a third of
                    // the system calls of a small-message echo). Tokio
                    // relies on the same rule.
                    slot.held_back = false;
                    reading = false;
                }
                if open.session.connection().unsent_len() >= WRITE_WHILE_READING
                    && flush(&mut slot.socket, &mut slot.transport, &mut slot.writable, open, (token, registry))
                        .is_err()
                {
                    return Next::End;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                slot.held_back = false;
                reading = false;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::End,
        }
    }
    if cause == Cause::Timer {
        let queued = crate::kernel::raw_socket(&slot.socket).and_then(crate::kernel::unsent_bytes);
        let _ = open.session.handle_timer(now, queued);
    } else {
        let _ = open.session.handle_timeout(now);
    }
    messages += deliver(open, id, &slot.socket, service);
    loop {
        let took = take_mail(open);
        if flush(&mut slot.socket, &mut slot.transport, &mut slot.writable, open, (token, registry)).is_err() {
            return Next::End;
        }
        if !took || open.session.connection().wants_transmit() {
            break;
        }
    }
    if ended {
        open.session.handle_eof();
        return Next::End;
    }
    if slot.held_back && !open.session.is_backlogged() {
        // Reading stopped for our backlog, which has drained since: what
        // waits in the kernel will not be announced again (edge-triggered).
        again.push(token);
    }
    if open.session.connection().is_finished() {
        return Next::End;
    }
    if messages > 0 || open.session.connection().is_receiving_message() {
        // It sends us messages: its buffers are kept for its next turns.
        slot.busy = true;
    } else if !slot.busy && !open.session.connection().wants_transmit() {
        // A turn for mail, a deadline or a heartbeat only (a subscriber
        // that never sends, a pong): a broadcast or a heartbeat round
        // reaches thousands of these, which give their buffers back at
        // once so that one serves the next.
        open.session.connection_mut().release_memory();
    }
    Next::Continue
}

/// Reads once and gives the session what came; what was read, of how much
/// was asked for. A large payload on a plain socket is read straight into
/// its message, anything else through the loop's buffer. A protocol error
/// queues the close frame and fails the connection: it ends once that is
/// written.
fn read_some(
    socket: &mut TcpStream,
    transport: &mut Transport,
    open: &mut Open,
    buffer: &mut [u8],
) -> (io::Result<usize>, usize) {
    if transport.is_plain() {
        if let Some(room) = open.session.connection_mut().payload_room() {
            let asked = room.len();
            let result = crate::kernel::recv_into(socket, room);
            if let Ok(read @ 1..) = result {
                // SAFETY: recv initialized the first `read` bytes of the room,
                // and nothing touched the connection since.
                let _ = unsafe { open.session.connection_mut().payload_received(read) };
            }
            return (result, asked);
        }
    }
    let result = transport.read(socket, buffer);
    if let Ok(read @ 1..) = result {
        let _ = open.session.handle_read(&buffer[..read]);
    }
    (result, buffer.len())
}

/// Hands every message that arrived to the service (the session has
/// answered heartbeats and counted them).
fn deliver(open: &mut Open, id: ConnId, socket: &TcpStream, service: &mut impl Service) -> usize {
    let mut messages = 0;
    while let Some(event) = open.session.poll_event() {
        if let Event::Message(message) = event {
            messages += 1;
            service.on_message(&mut Conn { id, socket, open }, message);
            // What the callback published to this connection too goes
            // out before anything later, a close echo included.
            take_mail(open);
        }
    }
    messages
}

/// Moves what the hub queued into the output, as room allows; whether it
/// took anything.
fn take_mail(open: &mut Open) -> bool {
    open.session.take_mail(None)
}

/// Writes what the connection has queued, as far as the socket takes it;
/// asks for writability while something waits, and stops asking after.
fn flush(
    socket: &mut TcpStream,
    transport: &mut Transport,
    writable: &mut bool,
    open: &mut Open,
    (token, registry): (usize, &Registry),
) -> io::Result<()> {
    loop {
        // What TLS already holds goes first.
        if !transport.push(socket)? {
            return set_writable(socket, writable, token, registry, true);
        }
        let connection = open.session.connection_mut();
        if !connection.wants_transmit() {
            return set_writable(socket, writable, token, registry, false);
        }
        let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
        let count = connection.pending_transmit_vectored(&mut slices);
        match transport.write(socket, &slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => connection.advance_transmit(written),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if transport.has_records() {
                    continue; // TLS's buffer is full: push it out first
                }
                return set_writable(socket, writable, token, registry, true);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// Registers for writability while output waits, and stops after.
fn set_writable(
    socket: &mut TcpStream,
    writable: &mut bool,
    token: usize,
    registry: &Registry,
    want: bool,
) -> io::Result<()> {
    if *writable != want {
        *writable = want;
        let interest = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
        registry.reregister(socket, Token(token), interest)?;
    }
    Ok(())
}

/// [`set_writable`] for a whole slot.
fn want_writable(slot: &mut Slot, token: usize, registry: &Registry, want: bool) -> io::Result<()> {
    set_writable(&mut slot.socket, &mut slot.writable, token, registry, want)
}

/// Answers a refused handshake and ends the connection.
fn refuse(slot: &mut Slot, refused: &Refused) -> Next {
    let _ = slot.transport.write_all_now(&mut slot.socket, &refused.answer);
    slot.transport.shutdown(&mut slot.socket);
    Next::End
}

/// Answers a plain-TCP client past a limit (connections, descriptors) with
/// 503 without reading its request; the socket closes when dropped. (A TLS
/// client is closed without a word: it cannot read plain HTTP.)
fn refuse_busy(socket: &mut TcpStream) {
    let _ = socket.write(&busy_answer());
    let _ = socket.shutdown(std::net::Shutdown::Write);
}

/// The connections, by token: an index into `entries` and the entry's
/// generation, so an event or a wake for a connection that has since
/// ended is never taken for the one that reuses its place.
#[derive(Default)]
struct Slots {
    entries: Vec<Option<Box<Slot>>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    len: usize,
}

impl Slots {
    const INDEX_BITS: u32 = 32;

    fn insert(&mut self, slot: Box<Slot>) -> usize {
        self.len += 1;
        let index = match self.free.pop() {
            Some(index) => index as usize,
            None => {
                self.entries.push(None);
                self.generations.push(0);
                self.entries.len() - 1
            }
        };
        self.entries[index] = Some(slot);
        (self.generations[index] as usize) << Self::INDEX_BITS | index
    }

    fn split(token: usize) -> (usize, u32) {
        (token & ((1 << Self::INDEX_BITS) - 1), (token >> Self::INDEX_BITS) as u32)
    }

    fn get_mut(&mut self, token: usize) -> Option<&mut Slot> {
        let (index, generation) = Self::split(token);
        if self.generations.get(index) != Some(&generation) {
            return None;
        }
        self.entries.get_mut(index)?.as_deref_mut()
    }

    fn remove(&mut self, token: usize) -> Option<Box<Slot>> {
        let (index, generation) = Self::split(token);
        if self.generations.get(index) != Some(&generation) {
            return None;
        }
        let slot = self.entries[index].take()?;
        self.len -= 1;
        // Past 2^31 generations a place retires rather than wrap around
        // to a token still in flight (and away from mio's reserved ones).
        if generation < i32::MAX as u32 {
            self.generations[index] = generation + 1;
            self.free.push(index as u32);
        }
        Some(slot)
    }

    fn id(&self, token: usize) -> ConnId {
        token as u64
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn tokens(&self) -> Vec<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.is_some())
            .map(|(index, _)| (self.generations[index] as usize) << Self::INDEX_BITS | index)
            .collect()
    }
}
