//! The server session: everything between a parsed upgrade request and a
//! connection's last byte, decided once for every server.
//!
//! A server is a loop that moves bytes between sockets and sessions: the
//! tokio `Server` (a task per connection) and the event-loop `Reactor` (one
//! thread for all) are such loops and nothing more. What a connection
//! means to the server lives here, so the two cannot disagree:
//!
//! - [`open`]: admission (routes, origin, the hook, plain HTTP, `/metrics`),
//!   the `101` answer, the protocol core, trace, joining the hub, metrics;
//! - [`Session::poll_event`]: heartbeat pings answered, messages and round
//!   trips counted, before the application sees anything;
//! - [`Session::take_mail`]: the hub's frames moved into the output as room
//!   allows, and the overflow policy's close request acted on even when
//!   there is no room (the connection it closes is the one that is full);
//! - [`Session::handle_timer`]: the deadlines, told what the kernel still
//!   holds for the peer (a slow reader is not a dead one);
//! - [`Session::finish`]: leaving the hub and counting the close code,
//!   exactly once, however the connection ends.
//!
//! No socket, task or clock in here: drivers pass bytes and instants in.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use std::time::Instant;

use tether_proto::handshake::{
    accept_request, Accepted, HeadError, HeadReader, Rejection, Request, ServerHandshakeConfig,
};
use tether_proto::{
    CloseCode, ConfigError, Connection, Event, Message, ProtocolError, Role, Settings, Timeout, UsageError,
};

use crate::admission::{self, check_origin, is_upgrade, Acceptance, Admission, HttpResponse, State};
use crate::config::ServerConfig;
use crate::hub::{ClientId, Hub, MailSignal, Overflow, Registration};
use crate::metrics::Tracked;

/// Output a connection may hold before its driver stops reading (the peer
/// must take our answers before it sends more) and before it takes more
/// hub mail (the rest waits in the bounded mailbox, where the overflow
/// policy applies).
pub const SEND_BACKLOG_LIMIT: usize = 64 << 10;

/// The answer to a client that speaks plain text (HTTP, `ws://`) to a
/// `wss://` port: in plain text, since it speaks no TLS, and at once.
pub const PLAIN_TEXT_ON_A_TLS_PORT: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
    Content-Length: 53\r\nConnection: close\r\n\r\nThis port speaks TLS: connect with wss://, not ws://\n";

/// What every session of one server shares: the configuration, checked
/// once, and what is derived from it.
pub struct Shared {
    config: ServerConfig,
    handshake: ServerHandshakeConfig,
    /// What every connection takes from the protocol configuration, once.
    settings: Arc<Settings>,
    /// The paths served, when a server has routes; `None` serves every path.
    paths: Option<Vec<String>>,
    /// Paths sessions share (see [`Shared::path`]).
    common_paths: Mutex<Vec<Arc<str>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).field("paths", &self.paths).finish_non_exhaustive()
    }
}

impl Shared {
    /// Checks `config` ([`Config::validate`](tether_proto::Config::validate))
    /// and prepares it for sessions.
    ///
    /// # Errors
    /// The configuration cannot work; the error says why.
    pub fn new(config: ServerConfig) -> Result<Shared, ConfigError> {
        config.protocol.validate()?;
        let settings = Settings::new(&config.protocol);
        let common_paths = Mutex::default();
        Ok(Shared { handshake: config.handshake_config(), settings, config, paths: None, common_paths })
    }

    /// Serves only these paths; others are refused with 404.
    #[must_use]
    pub fn with_paths(mut self, paths: Vec<String>) -> Shared {
        self.paths = Some(paths);
        self
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// `path` as a session keeps it. Most clients of a server connect to
    /// one of a few paths: the first few seen are allocated once and
    /// shared, not once per connection; others (say `/users/1234`) get
    /// their own.
    fn path(&self, path: &str) -> Arc<str> {
        const COMMON: usize = 16;
        if path.len() > 64 {
            return path.into();
        }
        let mut common = self.common_paths.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = common.iter().find(|known| ***known == *path) {
            return known.clone();
        }
        let path: Arc<str> = path.into();
        if common.len() < COMMON {
            common.push(path.clone());
        }
        path
    }

    /// Every decision between a parsed request and the `101`, in order
    /// (see [`admission`](crate::admission)); `Err` is the answer to send
    /// instead.
    fn admit(&self, request: &Request, peer: SocketAddr) -> Result<(Accepted, Acceptance), Refused> {
        let config = &self.config;
        let hook = |request| config.hook.as_ref().map(|hook| hook(&admission::Handshake { request, peer }));
        if !is_upgrade(request) {
            let exposed = config.metrics.as_ref().filter(|metrics| metrics.is_exposed());
            if let (Some(metrics), "/metrics") = (exposed, request.path()) {
                // Behind the same gates as a connection: a public port must
                // not show its metrics to whoever asks.
                check_origin(config.allowed_origins.as_deref(), request).map_err(|refusal| refusal.0)?;
                if let Some(Admission::Reject(refusal)) = hook(request) {
                    return Err(refusal.0.into());
                }
                let body = metrics.render();
                return Err(Refused::http(&HttpResponse::new(200, "text/plain; version=0.0.4", body)));
            }
            if let Some(answer) = config.http.as_ref().and_then(|http| http(request)) {
                return Err(Refused::http(&answer));
            }
        }
        if let Some(paths) = &self.paths {
            if !paths.iter().any(|path| path == request.path()) {
                return Err(Rejection::new(404, format!("no WebSocket endpoint at {}", request.path())).into());
            }
        }
        check_origin(config.allowed_origins.as_deref(), request).map_err(|refusal| refusal.0)?;
        let accepted = accept_request(request, &self.handshake)?;
        let acceptance = match hook(request) {
            None => Acceptance::default(),
            Some(Admission::Accept(acceptance)) => acceptance,
            Some(Admission::Reject(refusal)) => return Err(refusal.0.into()),
        };
        if let Some(protocol) = &acceptance.protocol {
            let offered = admission::Handshake { request, peer }.offered_protocols().contains(&protocol.as_str());
            if !offered {
                // A hook bug, not the client's: answer 500 rather than a 101
                // the client must reject.
                let why = format!("the server chose subprotocol {protocol:?}, which was not offered");
                return Err(Rejection::new(500, why).into());
            }
        }
        Ok((accepted, acceptance))
    }
}

/// A request that does not become a connection: the bytes to answer with
/// (then close), and why, for the log.
#[derive(Debug)]
pub struct Refused {
    /// The HTTP answer (a refusal, or a plain HTTP response).
    pub answer: Vec<u8>,
    /// Its status and reason.
    pub rejection: Rejection,
}

impl Refused {
    fn http(response: &HttpResponse) -> Refused {
        Refused {
            answer: response.to_bytes(),
            rejection: Rejection::new(response.status, "answered a plain HTTP request"),
        }
    }

    /// The answer to a request head from `peer` that broke a limit or is
    /// not HTTP (logged at debug level, as every refusal).
    #[must_use]
    pub fn head(error: &HeadError, peer: SocketAddr) -> Refused {
        let refused = Refused::from(Rejection::new(error.status(), error.to_string()));
        refused.log(peer);
        refused
    }

    fn log(&self, peer: SocketAddr) {
        let Rejection { status, reason, .. } = &self.rejection;
        tracing::debug!(%peer, status, reason = reason.as_str(), "request refused");
    }
}

impl From<Rejection> for Refused {
    fn from(rejection: Rejection) -> Refused {
        Refused { answer: rejection.to_bytes(), rejection }
    }
}

/// An upgrade request admitted: write `response`, then run `session`.
pub struct Opened {
    /// The connection from now on.
    pub session: Session,
    /// The `101 Switching Protocols` answer, to write before anything else.
    pub response: Vec<u8>,
    /// The request, for drivers that show it to the application (the
    /// session keeps only its path).
    pub request: Request,
}

/// Runs admission on the complete request head in `reader` and, if it is
/// admitted, opens the session: the protocol core (traced if
/// [`trace`](tether_proto::trace) is on), its clock started at `now`, a
/// place in the hub, a count in the metrics.
///
/// # Errors
/// The request is refused, or answered as plain HTTP: write
/// [`Refused::answer`] and close.
pub fn open(shared: &Arc<Shared>, reader: &HeadReader, peer: SocketAddr, now: Instant) -> Result<Opened, Refused> {
    let request = Request::parse(reader).map_err(|error| Refused::head(&error, peer))?;
    if tether_proto::trace::is_enabled() {
        tether_proto::trace::handshake(&peer.to_string(), "request", reader.head());
    }
    open_request(shared, request, peer, now)
}

/// [`open`], for a request another HTTP server parsed (hyper, axum): the
/// same admission and session; the driver sends [`Opened::response`]'s
/// status and headers its own way.
///
/// # Errors
/// As [`open`].
pub fn open_request(shared: &Arc<Shared>, request: Request, peer: SocketAddr, now: Instant) -> Result<Opened, Refused> {
    let traced = tether_proto::trace::is_enabled().then(|| peer.to_string());
    let config = &shared.config;
    let (mut accepted, acceptance) = shared.admit(&request, peer).inspect_err(|refused| refused.log(peer))?;
    let Acceptance { protocol, headers: extra_headers, state } = acceptance;
    if protocol.is_some() {
        accepted.protocol = protocol;
    }
    let mut headers = config.headers.clone();
    headers.extend(extra_headers);
    let response = accepted.response(&headers);
    let mut connection = Connection::with_settings(Role::Server, &shared.settings, accepted.deflate);
    if let Some(peer) = traced {
        tether_proto::trace::handshake(&peer, "response", &response);
        connection.set_frame_observer(tether_proto::trace::frame_observer(peer));
    }
    // Starts the connection's clock: the first ping is due an interval from now.
    let _ = connection.handle_timeout(now);
    let path = shared.path(request.path());
    let registration = config.hub.as_ref().map(|hub| {
        let member = hub.join(Some(peer), path.clone());
        Registration { hub: hub.clone(), member }
    });
    let session = Session {
        connection,
        shared: shared.clone(),
        path,
        registration,
        metrics: config.metrics.clone().map(|metrics| Box::new(Tracked::new(metrics))),
        extras: Extras::boxed(accepted.protocol.map(Into::into), state),
    };
    Ok(Opened { session, response, request })
}

/// One open server connection: the protocol core and what the server
/// keeps about it. Drivers feed it bytes and time, write what it queues,
/// and hand its events to the application.
pub struct Session {
    connection: Connection,
    shared: Arc<Shared>,
    /// Shared with the hub's entry (one allocation).
    path: Arc<str>,
    /// Membership in the hub; `None` once it has left (or without a hub).
    registration: Option<Registration>,
    /// Boxed: most servers keep no metrics.
    metrics: Option<Box<Tracked>>,
    /// Boxed: most connections have neither.
    extras: Option<Box<Extras>>,
}

/// What only some connections have: a subprotocol, state from the hook.
struct Extras {
    protocol: Option<Box<str>>,
    /// What the handshake hook attached.
    state: Option<State>,
}

impl Extras {
    fn boxed(protocol: Option<Box<str>>, state: Option<State>) -> Option<Box<Extras>> {
        (protocol.is_some() || state.is_some()).then(|| Box::new(Extras { protocol, state }))
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("connection", &self.connection)
            .field("path", &self.path)
            .field("client_id", &self.client_id())
            .finish_non_exhaustive()
    }
}

impl Session {
    // ---- what the application may ask ----------------------------------------------

    /// The protocol state machine, for its state and negotiated parameters.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The protocol state machine, to write its output and send control frames.
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }

    /// The path of the opening request.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The negotiated subprotocol.
    #[must_use]
    pub fn protocol(&self) -> Option<&str> {
        self.extras.as_ref()?.protocol.as_deref()
    }

    /// What the handshake hook attached, if it is a `T`
    /// ([`Acceptance::state`](crate::admission::Acceptance::state)).
    #[must_use]
    pub fn state<T: std::any::Any>(&self) -> Option<&T> {
        self.extras.as_ref()?.state.as_deref()?.downcast_ref()
    }

    /// Its number in the server's hub, while it is a member.
    #[must_use]
    pub fn client_id(&self) -> Option<ClientId> {
        self.registration.as_ref().map(Registration::id)
    }

    /// The server's hub, while it is a member.
    #[must_use]
    pub fn hub(&self) -> Option<&Hub> {
        self.registration.as_ref().map(|registration| &registration.hub)
    }

    /// Subscribes it to `topic` in the hub; `false` without a hub.
    pub fn subscribe(&self, topic: &str) -> bool {
        self.registration.as_ref().is_some_and(|registration| registration.hub.subscribe(registration.id(), topic))
    }

    /// Unsubscribes it from `topic`.
    pub fn unsubscribe(&self, topic: &str) {
        if let Some(registration) = &self.registration {
            registration.hub.unsubscribe(registration.id(), topic);
        }
    }

    /// Gives it its own overflow policy in the hub; `false` without a hub.
    pub fn set_overflow(&self, overflow: Overflow) -> bool {
        self.registration
            .as_ref()
            .is_some_and(|registration| registration.hub.set_overflow(registration.id(), overflow))
    }

    /// Whether its output is over [`SEND_BACKLOG_LIMIT`]: the driver stops
    /// reading until the peer takes some.
    #[must_use]
    pub fn is_backlogged(&self) -> bool {
        self.connection.unsent_len() >= SEND_BACKLOG_LIMIT
    }

    // ---- input ----------------------------------------------------------------------

    /// Bytes from the network.
    ///
    /// # Errors
    /// The peer broke the protocol: the close frame is queued and the
    /// events before the violation are still to be taken.
    pub fn handle_read(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.connection.handle_read(bytes)
    }

    /// The peer closed the transport; whether that was clean (after the
    /// close handshake).
    pub fn handle_eof(&mut self) -> bool {
        self.connection.handle_eof()
    }

    /// The clock, after input: which deadline ended the connection, if one did.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Timeout> {
        self.connection.handle_timeout(now)
    }

    /// A timer the driver set at [`Connection::poll_timeout`] fired.
    /// `unsent_in_kernel` is what the socket still holds for the peer
    /// (`SIOCOUTQ`) where the driver can tell: keepalive then tells a slow
    /// reader, whose queue shrinks, from a dead one.
    pub fn handle_timer(&mut self, now: Instant, unsent_in_kernel: Option<usize>) -> Option<Timeout> {
        if let Some(queued) = unsent_in_kernel {
            self.connection.handle_transport_queue(queued);
        }
        self.connection.handle_timeout(now)
    }

    /// The next event for the application. Heartbeat pings are answered
    /// here (a [`Responder`](crate::config::Responder)) and never shown;
    /// every message received counts in the metrics, heartbeats included,
    /// and so does every reply.
    pub fn poll_event(&mut self) -> Option<Event> {
        loop {
            let event = self.connection.poll_event()?;
            match &event {
                Event::Message(message) => {
                    if let Some(tracked) = &self.metrics {
                        tracked.metrics.message_in(message.len());
                    }
                    let responder = self.shared.config.heartbeat_responder.as_ref();
                    if let Some(reply) = responder.and_then(|responder| responder(message)) {
                        // Best effort: once closing, the ping needs no answer.
                        let _ = self.send(&reply, true);
                        continue;
                    }
                }
                Event::Pong(_) => {
                    if let Some(tracked) = &mut self.metrics {
                        tracked.round_trip(self.connection.round_trip().map(|rtt| rtt.last));
                    }
                }
                _ => {}
            }
            return Some(event);
        }
    }

    // ---- output -----------------------------------------------------------------------

    /// Queues a message, compressed if negotiated and `compress`.
    ///
    /// # Errors
    /// The connection is closing.
    pub fn send(&mut self, message: &Message, compress: bool) -> Result<(), UsageError> {
        self.connection.send_with(message, compress)?;
        if let Some(tracked) = &self.metrics {
            tracked.metrics.message_out(message.len());
        }
        Ok(())
    }

    /// Starts the closing handshake.
    ///
    /// # Errors
    /// An invalid code or reason.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), UsageError> {
        self.connection.close(code, reason)
    }

    /// Who the hub tells when mail comes for this connection, from now on
    /// (an event loop gives its shared signal and the connection's token
    /// once; a task may instead give its waker at each
    /// [`take_mail`](Self::take_mail)). Nothing without a hub.
    pub fn signal_mail(&self, signal: MailSignal) {
        if let Some(registration) = &self.registration {
            registration.member.set_signal(signal);
        }
    }

    /// Moves what the hub queued into the output, as far as
    /// [`SEND_BACKLOG_LIMIT`] leaves room (the rest waits in the bounded
    /// mailbox, where the overflow policy applies); `waker`, if given,
    /// is told of the next delivery (else the signal given to
    /// [`signal_mail`](Self::signal_mail) is). A close request from the hub (the overflow
    /// policy, shutdown) is acted on whatever the room: the close frame is
    /// queued and the close timeout bounds how long the peer has to take
    /// it; one from the overflow policy also takes the connection out of
    /// the hub at once. Whether it took anything.
    pub fn take_mail(&mut self, waker: Option<&Waker>) -> bool {
        let Some(registration) = &self.registration else { return false };
        let room = SEND_BACKLOG_LIMIT.saturating_sub(self.connection.unsent_len());
        let (connection, metrics) = (&mut self.connection, &self.metrics);
        let mut took = false;
        let close = registration.member.take(room, waker, |frame| {
            took = true;
            // Fails only once closing: the frames are moot then.
            if connection.send_prepared(frame).is_ok() {
                if let Some(tracked) = metrics {
                    tracked.metrics.message_out(frame.len());
                }
            }
        });
        if let Some(request) = close {
            let _ = self.connection.close(request.frame.code, &request.frame.reason);
            if request.evicted {
                // Closed for being too slow: gone from the registry now, so
                // the hub's gauges no longer count it. (A shutdown's close
                // keeps it counted until its handshake is done, which is
                // what `Hub::wait_empty` waits for.)
                self.registration = None;
            }
            took = true;
        }
        took
    }

    // ---- the end --------------------------------------------------------------------------

    /// The connection is over: it leaves the hub and the metrics count it
    /// closed with the peer's close code if it sent one, else ours, else
    /// 1006. Idempotent; dropping the session does it too.
    pub fn finish(&mut self) -> Option<CloseCode> {
        let code = self.close_code();
        self.registration = None;
        if let Some(tracked) = &mut self.metrics {
            tracked.ended(code.map_or(1006, |code| code.0));
        }
        code
    }

    /// The peer's close code if it sent one, else ours, else `None`.
    #[must_use]
    pub fn close_code(&self) -> Option<CloseCode> {
        let received = self.connection.close_received().flatten();
        received.or(self.connection.close_sent()).map(|frame| frame.code)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
    }
}
