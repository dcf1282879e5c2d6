//! [`App`]: a long-lived client built from a URL and callbacks, as
//! `websocket-client`'s `WebSocketApp`, that keeps itself alive (keepalive
//! pings, an optional application heartbeat) and reconnects with backoff.
//!
//! ```no_run
//! use std::time::Duration;
//! use tether::{App, Reconnect};
//!
//! let app = App::new("ws://127.0.0.1:9001/")
//!     .on_open(|app| { let _ = app.send("hello"); })
//!     .on_message(|app, message| println!("{message:?}"))
//!     .on_close(|_, frame| println!("closed: {frame:?}"))
//!     .keepalive(Some(Duration::from_secs(20)), Some(Duration::from_secs(20)))
//!     .reconnect(Reconnect::default());
//! let handle = app.handle(); // send and close from any thread
//! let stopped = app.run_forever();
//! ```
//!
//! Callbacks run on the task that drives the connection, one at a time,
//! and get an [`AppHandle`] to send or close with; they should return
//! quickly (hand long work to a thread). The handle is `Clone + Send +
//! Sync`: keep one anywhere to send while the app runs.
//!
//! While the connection is down, messages sent through the handle wait
//! in a bounded queue and go out, in order, after the reconnection (or
//! are refused at once, by configuration). Nothing is dropped silently:
//! what could not be delivered when the app stops is handed back in
//! [`Stopped::undelivered`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tether_proto::backoff::{Backoff, BackoffPolicy};
use tether_proto::frame::OpCode;
use tether_proto::{CloseCode, CloseFrame, Event, Message, RoundTrip, Timeout};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::{connect_with, ClientConfig};
use crate::error::Error;
use crate::heartbeat::{Answer, Heartbeat};
use crate::reconnect::{classify_close, classify_error, Verdict};
use crate::websocket::WebSocket;

/// What to do with messages sent while the connection is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhileDown {
    /// Keep them, up to these bounds, and send them after reconnecting.
    Queue {
        /// Most messages kept.
        max_messages: usize,
        /// Most payload bytes kept.
        max_bytes: usize,
    },
    /// Refuse them at once: [`AppHandle::send`] hands the message back.
    Refuse,
}

/// The default bounds of the outgoing queue: a few minutes of chat-like
/// traffic while down, and the bound on a slow connection while up.
const QUEUE_MESSAGES: usize = 1000;
const QUEUE_BYTES: usize = 16 << 20;

/// Automatic reconnection. Start from [`Reconnect::default`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Reconnect {
    /// The delays between attempts (exponential, jittered, capped).
    pub backoff: BackoffPolicy,
    /// Whether a clean close by the server (1000, or no code) is followed
    /// by a reconnection. Default `false`: the server meant it. Codes that
    /// ask for a retry (1001, 1011–1014) always are; see [`reconnect`](crate::reconnect).
    pub after_normal_close: bool,
    /// Messages sent while down. Default: queue up to 1,000 messages and
    /// 16 MiB.
    pub while_down: WhileDown,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            backoff: BackoffPolicy::default(),
            after_normal_close: false,
            while_down: WhileDown::Queue { max_messages: QUEUE_MESSAGES, max_bytes: QUEUE_BYTES },
        }
    }
}

impl Reconnect {
    /// Reconnect with this backoff.
    #[must_use]
    pub fn with_backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets whether a normal close by the server is followed by a reconnection.
    #[must_use]
    pub fn after_normal_close(mut self, reconnect: bool) -> Self {
        self.after_normal_close = reconnect;
        self
    }

    /// Sets what happens to messages sent while down.
    #[must_use]
    pub fn while_down(mut self, while_down: WhileDown) -> Self {
        self.while_down = while_down;
        self
    }
}

/// Why [`AppHandle::send`] did not take a message; the message comes back.
#[derive(Debug)]
pub struct SendError {
    /// Why.
    pub reason: SendRefusal,
    /// The message, returned to the caller.
    pub message: Message,
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRefusal {
    /// The connection is down and the app refuses messages meanwhile.
    NotConnected,
    /// The queue is at its bound.
    QueueFull,
    /// The app has stopped (or is stopping).
    Stopped,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.reason {
            SendRefusal::NotConnected => "not connected (messages are refused while down)",
            SendRefusal::QueueFull => "the outgoing queue is full",
            SendRefusal::Stopped => "the app has stopped",
        })
    }
}

impl std::error::Error for SendError {}

/// A reconnection about to happen, as told to [`App::on_reconnect`].
#[derive(Debug)]
pub struct Reconnecting<'a> {
    /// The number of this attempt since the last successful connection (1, 2, …).
    pub attempt: u32,
    /// How long the app waits before it.
    pub delay: Duration,
    /// What ended the previous connection or attempt.
    pub cause: &'a Cause,
}

/// What ended a connection or an attempt.
#[derive(Debug)]
pub enum Cause {
    /// The server closed the connection with this frame (`None`: no code).
    ServerClosed(Option<CloseFrame>),
    /// The connection or the attempt failed.
    Failed(Error),
}

/// Why [`App::run`] returned.
#[derive(Debug)]
pub enum StopReason {
    /// The program closed the app ([`AppHandle::close`]).
    Closed,
    /// The server closed the connection and no reconnection followed.
    ServerClosed(Option<CloseFrame>),
    /// A failure that reconnecting cannot mend, or reconnection is off.
    Failed(Error),
    /// Reconnection gave up after its most attempts; the last failure.
    GaveUp(Error),
}

/// What [`App::run`] returns: why it stopped, and the messages it could
/// not deliver (sent through the handle but never written), in order.
#[derive(Debug)]
#[must_use]
pub struct Stopped {
    /// Why.
    pub reason: StopReason,
    /// Messages never sent.
    pub undelivered: Vec<Message>,
}

type Callback<A> = Option<Box<dyn FnMut(&AppHandle, A) + Send>>;
type OpenFn = Box<dyn FnMut(&AppHandle) + Send>;
type ErrorFn = Box<dyn FnMut(&AppHandle, &Error) + Send>;
type PayloadFn = Box<dyn FnMut(&AppHandle, &[u8]) + Send>;
type FragmentFn = Box<dyn FnMut(&AppHandle, &[u8], bool) + Send>;
type DataFn = Box<dyn FnMut(&AppHandle, &[u8], OpCode, bool) + Send>;
type ReconnectFn = Box<dyn FnMut(&AppHandle, &Reconnecting<'_>) + Send>;
type HeartbeatFn = Box<dyn FnMut(&AppHandle, Duration) + Send>;

#[derive(Default)]
struct Callbacks {
    open: Option<OpenFn>,
    message: Callback<Message>,
    error: Option<ErrorFn>,
    close: Callback<Option<CloseFrame>>,
    ping: Option<PayloadFn>,
    pong: Option<PayloadFn>,
    cont_message: Option<FragmentFn>,
    data: Option<DataFn>,
    reconnect: Option<ReconnectFn>,
    heartbeat: Option<HeartbeatFn>,
}

/// The callbacks as one type: implement what you need, then give it to
/// [`App::handler`]. The Rust counterpart of subclassing `WebSocketApp`.
#[allow(unused_variables)]
pub trait Handler: Send + 'static {
    /// A connection opened.
    fn on_open(&mut self, app: &AppHandle) {}
    /// A complete message arrived.
    fn on_message(&mut self, app: &AppHandle, message: Message) {}
    /// An attempt or a connection failed.
    fn on_error(&mut self, app: &AppHandle, error: &Error) {}
    /// A connection ended; the server's close frame if it sent one.
    fn on_close(&mut self, app: &AppHandle, frame: Option<CloseFrame>) {}
    /// A ping arrived (already answered).
    fn on_ping(&mut self, app: &AppHandle, payload: &[u8]) {}
    /// A pong arrived.
    fn on_pong(&mut self, app: &AppHandle, payload: &[u8]) {}
}

/// A long-lived client with callbacks. See the [module docs](self).
pub struct App {
    url: String,
    config: ClientConfig,
    reconnect: Option<Reconnect>,
    heartbeat: Option<Heartbeat>,
    callbacks: Callbacks,
    handle: AppHandle,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("url", &self.url)
            .field("config", &self.config)
            .field("reconnect", &self.reconnect)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl App {
    /// An app for `url` with the default client configuration (keepalive
    /// every 20 s, 20 s pong timeout), no reconnection, no callbacks.
    #[must_use]
    pub fn new(url: impl Into<String>) -> App {
        App {
            url: url.into(),
            config: ClientConfig::default(),
            reconnect: None,
            heartbeat: None,
            callbacks: Callbacks::default(),
            handle: AppHandle { shared: Arc::new(Shared::default()) },
        }
    }

    /// A handle to send and close from anywhere, before or while it runs.
    #[must_use]
    pub fn handle(&self) -> AppHandle {
        self.handle.clone()
    }

    // ---- options ----------------------------------------------------------------

    /// Replaces the client configuration (limits, TLS roots, timeouts…).
    #[must_use]
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a handshake header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.push((name.into(), value.into()));
        self
    }

    /// Sends this `Cookie` header.
    #[must_use]
    pub fn cookie(self, cookie: impl Into<String>) -> Self {
        self.header("Cookie", cookie)
    }

    /// Sends this `Origin` header.
    #[must_use]
    pub fn origin(self, origin: impl Into<String>) -> Self {
        self.header("Origin", origin)
    }

    /// Offers these subprotocols, in order of preference.
    #[must_use]
    pub fn subprotocols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, protocols: I) -> Self {
        self.config.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Where mask keys come from (the seeds' `get_mask_key`).
    #[must_use]
    pub fn mask_key(mut self, source: impl Fn() -> [u8; 4] + Send + Sync + 'static) -> Self {
        self.config.mask_key = Some(Arc::new(source));
        self
    }

    /// Protocol pings every `interval`, the peer declared dead if a pong
    /// does not come within `timeout` (`run_forever(ping_interval=…,
    /// ping_timeout=…)`). `None` disables either.
    #[must_use]
    pub fn keepalive(mut self, interval: Option<Duration>, timeout: Option<Duration>) -> Self {
        self.config.protocol.ping_interval = interval;
        self.config.protocol.ping_timeout = timeout;
        self
    }

    /// The payload of keepalive pings (`ping_payload`).
    #[must_use]
    pub fn ping_payload(mut self, payload: impl Into<tether_proto::Bytes>) -> Self {
        self.config.protocol.ping_payload = Some(payload.into());
        self
    }

    /// Reconnects automatically after a connection is lost.
    #[must_use]
    pub fn reconnect(mut self, reconnect: Reconnect) -> Self {
        self.handle.shared.lock().while_down = reconnect.while_down;
        self.reconnect = Some(reconnect);
        self
    }

    /// An application-level heartbeat (see [`heartbeat`](crate::heartbeat)).
    #[must_use]
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    // ---- callbacks -----------------------------------------------------------

    /// Routes every callback of [`Handler`] to `handler` (replacing those
    /// set one by one).
    #[must_use]
    pub fn handler(self, handler: impl Handler) -> Self {
        let shared = Arc::new(Mutex::new(handler));
        let lock = |shared: &Arc<Mutex<_>>| Arc::clone(shared);
        let (open, message, error, close, ping, pong) =
            (lock(&shared), lock(&shared), lock(&shared), lock(&shared), lock(&shared), shared);
        fn with<H, R>(handler: &Mutex<H>, f: impl FnOnce(&mut H) -> R) -> R {
            f(&mut handler.lock().unwrap_or_else(PoisonError::into_inner))
        }
        self.on_open(move |app| with(&open, |h| h.on_open(app)))
            .on_message(move |app, m| with(&message, |h| h.on_message(app, m)))
            .on_error(move |app, e| with(&error, |h| h.on_error(app, e)))
            .on_close(move |app, f| with(&close, |h| h.on_close(app, f)))
            .on_ping(move |app, p| with(&ping, |h| h.on_ping(app, p)))
            .on_pong(move |app, p| with(&pong, |h| h.on_pong(app, p)))
    }

    /// Called each time a connection opens (after every reconnection too).
    #[must_use]
    pub fn on_open(mut self, callback: impl FnMut(&AppHandle) + Send + 'static) -> Self {
        self.callbacks.open = Some(Box::new(callback));
        self
    }

    /// Called with each complete message, text or binary.
    #[must_use]
    pub fn on_message(mut self, callback: impl FnMut(&AppHandle, Message) + Send + 'static) -> Self {
        self.callbacks.message = Some(Box::new(callback));
        self
    }

    /// Called with each error: a failed attempt, a failed connection.
    #[must_use]
    pub fn on_error(mut self, callback: impl FnMut(&AppHandle, &Error) + Send + 'static) -> Self {
        self.callbacks.error = Some(Box::new(callback));
        self
    }

    /// Called when a connection ends, with the server's close frame if it
    /// sent one (code and reason), `None` otherwise.
    #[must_use]
    pub fn on_close(mut self, callback: impl FnMut(&AppHandle, Option<CloseFrame>) + Send + 'static) -> Self {
        self.callbacks.close = Some(Box::new(callback));
        self
    }

    /// Called with each ping's payload (the pong is already sent).
    #[must_use]
    pub fn on_ping(mut self, callback: impl FnMut(&AppHandle, &[u8]) + Send + 'static) -> Self {
        self.callbacks.ping = Some(Box::new(callback));
        self
    }

    /// Called with each pong's payload.
    #[must_use]
    pub fn on_pong(mut self, callback: impl FnMut(&AppHandle, &[u8]) + Send + 'static) -> Self {
        self.callbacks.pong = Some(Box::new(callback));
        self
    }

    /// Called with each continuation frame of a fragmented message and
    /// whether it is the final one. The whole message still goes to
    /// `on_message` after it.
    #[must_use]
    pub fn on_cont_message(mut self, callback: impl FnMut(&AppHandle, &[u8], bool) + Send + 'static) -> Self {
        self.callbacks.cont_message = Some(Box::new(callback));
        self.config.protocol.fragment_events = true;
        self
    }

    /// Called with each data frame: its payload, its opcode (text or
    /// binary for a message's first frame, continuation after) and
    /// whether it is the final one.
    #[must_use]
    pub fn on_data(mut self, callback: impl FnMut(&AppHandle, &[u8], OpCode, bool) + Send + 'static) -> Self {
        self.callbacks.data = Some(Box::new(callback));
        self.config.protocol.fragment_events = true;
        self
    }

    /// Called when the application heartbeat's answer arrives, with the
    /// round-trip time.
    #[must_use]
    pub fn on_heartbeat(mut self, callback: impl FnMut(&AppHandle, Duration) + Send + 'static) -> Self {
        self.callbacks.heartbeat = Some(Box::new(callback));
        self
    }

    /// Called before each reconnection with its attempt number, the delay
    /// and the cause; call [`AppHandle::close`] in it to stop instead.
    #[must_use]
    pub fn on_reconnect(mut self, callback: impl FnMut(&AppHandle, &Reconnecting<'_>) + Send + 'static) -> Self {
        self.callbacks.reconnect = Some(Box::new(callback));
        self
    }

    // ---- running -----------------------------------------------------------------

    /// Runs on a runtime of its own until the app stops (`run_forever`).
    /// Blocks the calling thread; from async code, use [`run`](Self::run).
    ///
    /// # Panics
    /// Called from within a tokio runtime, or the runtime cannot be built.
    pub fn run_forever(self) -> Stopped {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime for the app");
        runtime.block_on(self.run())
    }

    /// Runs until the app stops: closed by the program, closed by the
    /// server (without reconnection), a failure that reconnecting cannot
    /// mend, or reconnection giving up.
    pub async fn run(mut self) -> Stopped {
        if let Err(error) = self.config.protocol.validate() {
            return self.stop(StopReason::Failed(error.into()));
        }
        let mut backoff = self.reconnect.as_ref().map(|reconnect| Backoff::new(reconnect.backoff.clone()));
        let handle = self.handle.clone();
        loop {
            if handle.shared.lock().stopping.is_some() {
                return self.stop(StopReason::Closed);
            }
            let cause = match connect_with(&self.url, &self.config).await {
                Ok(ws) => {
                    let opened = Instant::now();
                    handle.shared.lock().connected = true;
                    if let Some(callback) = &mut self.callbacks.open {
                        callback(&handle);
                    }
                    let ending = self.drive(ws).await;
                    handle.shared.lock().connected = false;
                    if let Some(backoff) = &mut backoff {
                        backoff.connection_ended(opened.elapsed());
                    }
                    match ending {
                        Ending::ClosedByUs(frame) => {
                            if let Some(callback) = &mut self.callbacks.close {
                                callback(&handle, frame);
                            }
                            return self.stop(StopReason::Closed);
                        }
                        Ending::Ended(cause) => {
                            let frame = match &cause {
                                Cause::ServerClosed(frame) => frame.clone(),
                                Cause::Failed(error) => {
                                    if let Some(callback) = &mut self.callbacks.error {
                                        callback(&handle, error);
                                    }
                                    None
                                }
                            };
                            if let Some(callback) = &mut self.callbacks.close {
                                callback(&handle, frame);
                            }
                            cause
                        }
                    }
                }
                Err(error) => {
                    if let Some(callback) = &mut self.callbacks.error {
                        callback(&handle, &error);
                    }
                    Cause::Failed(error)
                }
            };
            let (Some(reconnect), Some(backoff)) = (&self.reconnect, &mut backoff) else {
                return self.stop(stop_reason(cause));
            };
            let verdict = match &cause {
                Cause::ServerClosed(frame) => classify_close(frame.as_ref(), reconnect.after_normal_close),
                Cause::Failed(error) => classify_error(error),
            };
            if verdict == Verdict::Stop {
                return self.stop(stop_reason(cause));
            }
            let Some(delay) = backoff.next_delay() else {
                let last = match cause {
                    Cause::Failed(error) => error,
                    Cause::ServerClosed(frame) => Error::new(crate::error::Kind::Closed(frame)),
                };
                return self.stop(StopReason::GaveUp(last));
            };
            if let Some(callback) = &mut self.callbacks.reconnect {
                callback(&handle, &Reconnecting { attempt: backoff.attempt(), delay, cause: &cause });
            }
            // Wait out the delay, unless the program closes the app meanwhile.
            let until = Instant::now() + delay;
            while Instant::now() < until && handle.shared.lock().stopping.is_none() {
                let _ = tokio::time::timeout_at(until, handle.shared.wake.notified()).await;
            }
        }
    }

    /// Drives one open connection until it ends.
    async fn drive(&mut self, mut ws: WebSocket) -> Ending {
        let handle = self.handle.clone();
        let mut heartbeat = self.heartbeat.as_mut().map(|heartbeat| HeartbeatState::new(heartbeat));
        let mut server_close: Option<CloseFrame> = None;
        loop {
            // Send what the program queued, oldest first; a message leaves the
            // queue only once written, so a failure keeps it for the next connection.
            loop {
                let next = handle.shared.lock().queue.front().cloned();
                let Some(message) = next else { break };
                if let Err(error) = ws.send(message).await {
                    return Ending::Ended(Cause::Failed(error));
                }
                handle.shared.lock().pop_sent();
            }
            let stopping = handle.shared.lock().stopping.clone();
            if let Some((code, reason)) = stopping {
                let _ = ws.close(code, &reason).await;
                return Ending::ClosedByUs(ws.close_frame().cloned());
            }
            let beat_at = heartbeat.as_ref().map(|state| state.next_deadline(self.heartbeat.as_ref()));
            tokio::select! {
                event = ws.recv_event() => match event {
                    Ok(Some(event)) => {
                        if let Some(frame) = self.dispatch(&handle, &ws, event, heartbeat.as_mut()) {
                            server_close = frame;
                        }
                    }
                    Ok(None) => return Ending::Ended(Cause::ServerClosed(server_close.or_else(|| ws.close_frame().cloned()))),
                    Err(error) => return Ending::Ended(Cause::Failed(error)),
                },
                () = handle.shared.wake.notified() => {}
                () = sleep_until_or_never(beat_at) => {
                    let (Some(state), Some(config)) = (heartbeat.as_mut(), self.heartbeat.as_mut()) else { continue };
                    if state.awaiting.is_some() {
                        // Unanswered: the peer is gone as far as the application can tell.
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.send_close(CloseCode::INTERNAL_ERROR, Timeout::Heartbeat.reason())).await;
                        return Ending::Ended(Cause::Failed(Error::timed_out(Timeout::Heartbeat)));
                    }
                    let ping = config.protocol.ping();
                    if let Err(error) = ws.send(ping.clone()).await {
                        return Ending::Ended(Cause::Failed(error));
                    }
                    state.sent(ping);
                }
            }
        }
    }

    /// Hands one event to the callbacks; returns the close frame if it is one.
    fn dispatch(
        &mut self,
        handle: &AppHandle,
        ws: &WebSocket,
        event: Event,
        heartbeat: Option<&mut HeartbeatState>,
    ) -> Option<Option<CloseFrame>> {
        let callbacks = &mut self.callbacks;
        match event {
            Event::Message(message) => {
                if let (Some(state), Some(config)) = (heartbeat, self.heartbeat.as_mut()) {
                    let answer = config.protocol.answer(state.last_ping.as_ref(), &message);
                    if answer == Answer::Current && state.awaiting.is_some() {
                        let rtt = state.answered();
                        handle.shared.lock().heartbeat_rtt = Some(rtt);
                        if let Some(callback) = &mut callbacks.heartbeat {
                            callback(handle, rtt);
                        }
                    }
                    if answer != Answer::NotHeartbeat && !config.deliver_answers {
                        return None;
                    }
                }
                if !self.config.protocol.fragment_events {
                    if let Some(callback) = &mut callbacks.data {
                        let opcode = if message.is_text() { OpCode::Text } else { OpCode::Binary };
                        callback(handle, message.as_bytes(), opcode, true);
                    }
                }
                if let Some(callback) = &mut callbacks.message {
                    callback(handle, message);
                }
            }
            Event::Ping(payload) => {
                if let Some(callback) = &mut callbacks.ping {
                    callback(handle, &payload);
                }
            }
            Event::Pong(payload) => {
                handle.shared.lock().round_trip = ws.round_trip();
                if let Some(callback) = &mut callbacks.pong {
                    callback(handle, &payload);
                }
            }
            Event::Fragment { opcode, payload, fin } => {
                if let Some(callback) = &mut callbacks.data {
                    callback(handle, &payload, opcode, fin);
                }
                if opcode == OpCode::Continuation {
                    if let Some(callback) = &mut callbacks.cont_message {
                        callback(handle, &payload, fin);
                    }
                }
            }
            Event::Close(frame) => return Some(frame),
        }
        None
    }

    fn stop(&self, reason: StopReason) -> Stopped {
        let mut shared = self.handle.shared.lock();
        shared.stopped = true;
        shared.connected = false;
        shared.queued_bytes = 0;
        Stopped { reason, undelivered: shared.queue.drain(..).collect() }
    }
}

fn stop_reason(cause: Cause) -> StopReason {
    match cause {
        Cause::ServerClosed(frame) => StopReason::ServerClosed(frame),
        Cause::Failed(error) => StopReason::Failed(error),
    }
}

async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

enum Ending {
    /// The program closed it; the server's answering close frame.
    ClosedByUs(Option<CloseFrame>),
    Ended(Cause),
}

/// The application heartbeat of one connection.
struct HeartbeatState {
    interval: Duration,
    next_ping: Instant,
    /// When the ping awaiting its answer was sent.
    awaiting: Option<Instant>,
    last_ping: Option<Message>,
}

impl HeartbeatState {
    fn new(config: &Heartbeat) -> HeartbeatState {
        HeartbeatState {
            interval: config.interval,
            next_ping: Instant::now() + config.interval,
            awaiting: None,
            last_ping: None,
        }
    }

    fn next_deadline(&self, config: Option<&Heartbeat>) -> Instant {
        match (self.awaiting, config) {
            (Some(sent), Some(config)) => sent + config.timeout,
            _ => self.next_ping,
        }
    }

    fn sent(&mut self, ping: Message) {
        self.awaiting = Some(Instant::now());
        self.last_ping = Some(ping);
    }

    /// The awaited answer arrived: the round trip, and the next ping is
    /// one interval after this one was sent.
    fn answered(&mut self) -> Duration {
        let sent = self.awaiting.take().unwrap_or_else(Instant::now);
        self.next_ping = sent + self.interval;
        sent.elapsed()
    }
}

// ---- the handle -------------------------------------------------------------------

#[derive(Default)]
struct Shared {
    state: Mutex<SharedState>,
    wake: Notify,
}

struct SharedState {
    connected: bool,
    stopped: bool,
    stopping: Option<(CloseCode, String)>,
    queue: VecDeque<Message>,
    queued_bytes: usize,
    /// Set by [`App::reconnect`]; without reconnection, messages sent
    /// before the connection opens wait for it within the default bounds.
    while_down: WhileDown,
    round_trip: Option<RoundTrip>,
    heartbeat_rtt: Option<Duration>,
}

impl Default for SharedState {
    fn default() -> Self {
        SharedState {
            connected: false,
            stopped: false,
            stopping: None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            while_down: Reconnect::default().while_down,
            round_trip: None,
            heartbeat_rtt: None,
        }
    }
}

impl SharedState {
    fn pop_sent(&mut self) {
        if let Some(message) = self.queue.pop_front() {
            self.queued_bytes -= message.len();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends and closes on a running [`App`], from any thread or task.
#[derive(Clone)]
pub struct AppHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AppHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("AppHandle")
            .field("connected", &state.connected)
            .field("queued", &state.queue.len())
            .finish_non_exhaustive()
    }
}

impl AppHandle {
    /// Sends a message: now if connected, after the reconnection if the
    /// connection is down and the app queues meanwhile.
    ///
    /// # Errors
    /// The message is handed back: the app has stopped, the queue is at
    /// its bound, or the connection is down and messages are refused then.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = message.into();
        let mut state = self.shared.lock();
        let refuse = |reason| Err(SendError { reason, message: message.clone() });
        if state.stopped || state.stopping.is_some() {
            return refuse(SendRefusal::Stopped);
        }
        // The same bounds hold while connected: a peer slower than the
        // program cannot make the queue grow without limit either.
        let (max_messages, max_bytes) = match state.while_down {
            WhileDown::Refuse if !state.connected => return refuse(SendRefusal::NotConnected),
            WhileDown::Refuse => (QUEUE_MESSAGES, QUEUE_BYTES),
            WhileDown::Queue { max_messages, max_bytes } => (max_messages, max_bytes),
        };
        if state.queue.len() >= max_messages || state.queued_bytes + message.len() > max_bytes {
            return refuse(SendRefusal::QueueFull);
        }
        state.queued_bytes += message.len();
        state.queue.push_back(message);
        drop(state);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Closes the connection (1000) and stops the app: no reconnection.
    pub fn close(&self) {
        self.close_with(CloseCode::NORMAL, "");
    }

    /// Closes with `code` and `reason` and stops the app.
    pub fn close_with(&self, code: CloseCode, reason: &str) {
        self.shared.lock().stopping.get_or_insert_with(|| (code, reason.to_owned()));
        self.shared.wake.notify_one();
    }

    /// Whether a connection is open now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// Messages waiting to be sent.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// The keepalive round-trip time, as of the latest pong.
    #[must_use]
    pub fn round_trip(&self) -> Option<RoundTrip> {
        self.shared.lock().round_trip
    }

    /// The application heartbeat's latest round-trip time.
    #[must_use]
    pub fn heartbeat_rtt(&self) -> Option<Duration> {
        self.shared.lock().heartbeat_rtt
    }
}
