//! One bench thread: an event loop (mio) that drives its share of the
//! simulated clients straight through tether's sans-I/O core
//! (`tether::proto`), the way `tether::reactor` drives a server's.
//!
//! Why not one tokio task per client: a load generator must cost less than
//! the servers it measures. Here a read takes one clock reading for every
//! echo it holds, the replacements are framed into the connection's output
//! from one reused buffer (nothing allocated per message sent) and leave in
//! one write, and nothing is shared between threads but counters, added to
//! a few times a second.
//!
//! Time is read after each read (the receipt time of the echoes it holds,
//! and the send time of the messages that replace them) and once per turn
//! of the loop for the timers: ramp-up and reconnect delays, the `--rate`
//! ticks, the core's keepalive and close deadlines, the open timeout.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tether::proto::handshake::{ClientHandshake, ClientHandshakeConfig, HeadReader, Response, Target};
use tether::proto::{CloseCode, Config, Connection, Event, HandshakeLimits, Role, Timeout};

use super::probe;
use super::transport::{Failure, Transport};
use super::Totals;

/// What every worker does, shared read-only.
pub struct Plan {
    /// Where the clients go: client `id` to `targets[id % len]`.
    pub targets: Vec<Endpoint>,
    /// Headers, subprotocols and permessage-deflate to offer.
    pub handshake: ClientHandshakeConfig,
    pub protocol: Config,
    pub limits: HandshakeLimits,
    /// The message (see `probe::template`): only its stamp changes.
    pub message: Vec<u8>,
    /// Sent as text (its stamp is ASCII) rather than binary.
    pub text: bool,
    /// Time between two messages of a client (`--rate`); `None`: keep
    /// `pipeline` in flight.
    pub send_every: Option<Duration>,
    pub pipeline: usize,
    pub open_timeout: Duration,
    /// Time zero of the send stamps.
    pub started: Instant,
}

/// One server to load.
pub struct Endpoint {
    pub target: Target,
    pub addr: SocketAddr,
    pub tls: Option<(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
}

/// Sends the stamped `message`, as text or binary.
fn send(connection: &mut Connection, message: &[u8], text: bool) -> Result<(), tether::proto::UsageError> {
    if text {
        // The stamp is ASCII and the payload was checked to be UTF-8.
        connection.send_text(std::str::from_utf8(message).unwrap_or_default())
    } else {
        connection.send_binary(message)
    }
}

/// Delay before a client whose connection could not be opened tries again.
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// How long the clients may take to close cleanly once told to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Reads from one socket in one go before the others get their turn.
const READS_PER_TURN: usize = 16;

/// Shared counters are added to this often, the shared histogram merged
/// into four times as rarely.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

const READ_BUF: usize = 64 << 10;

/// Runs the clients `clients` (id and start delay) until the run stops.
///
/// # Errors
/// Only if the event loop itself cannot be set up.
pub fn run(plan: &Plan, totals: &Totals, clients: Vec<(u32, Duration)>) -> io::Result<()> {
    let mut worker = Worker::new(plan, totals, clients)?;
    worker.run()?;
    worker.publish(true);
    Ok(())
}

struct Worker<'a> {
    plan: &'a Plan,
    totals: &'a Totals,
    poll: Poll,
    clients: Vec<Client>,
    timers: BinaryHeap<Reverse<Timer>>,
    /// Clients that still had data to read when their turn ended.
    again: Vec<usize>,
    local: Local,
    handshake: ClientHandshakeConfig,
    read_buf: Box<[u8]>,
    /// The one message buffer: stamped and framed for every send.
    message: Vec<u8>,
    storm_seen: u64,
    /// Whether this worker reported what the server agreed to.
    negotiated_seen: bool,
    /// Set once told to stop: by when the clients must have closed.
    stopping: Option<Instant>,
    published: Instant,
    publications: u32,
}

/// What this worker counted since it last added to the shared totals.
#[derive(Default)]
struct Counts {
    established: u64,
    failed: u64,
    reconnects: u64,
    sent: u64,
    received: u64,
    foreign: u64,
    bytes_received: u64,
}

struct Local {
    counts: Counts,
    latency: Histogram<u64>,
    errors: BTreeMap<&'static str, u64>,
}

impl Local {
    fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

struct Client {
    id: u32,
    /// Bumped whenever a connection ends, so timers set for it are ignored.
    generation: u32,
    /// A connection was established once (the next ones are reconnects).
    was_open: bool,
    sequence: u64,
    link: Option<Link>,
}

struct Link {
    transport: Transport,
    phase: Phase,
    in_flight: usize,
    /// The earliest core deadline a timer is set for.
    armed: Option<Instant>,
}

enum Phase {
    Upgrading(Box<Upgrade>),
    Open(Box<Connection>),
}

struct Upgrade {
    connected: bool,
    handshake: ClientHandshake,
    request: Vec<u8>,
    written: usize,
    head: HeadReader,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    client: usize,
    generation: u32,
    kind: TimerKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// Open a connection (ramp-up, retry, reconnect).
    Connect,
    /// The opening handshake must be done by now.
    OpenDeadline,
    /// Send one message (`--rate`).
    Send,
    /// A deadline of the core (keepalive, close).
    Core,
}

/// How a connection ended, for the report and for what the client does next.
enum Ending {
    /// Cleanly, while stopping: the client is done.
    Done,
    /// It could not be opened: counted as failed, retried after a pause.
    NotOpened(&'static str),
    /// It broke or was closed by the server: reconnect at once.
    Lost(&'static str),
}

impl<'a> Worker<'a> {
    fn new(plan: &'a Plan, totals: &'a Totals, clients: Vec<(u32, Duration)>) -> io::Result<Worker<'a>> {
        let now = Instant::now();
        let mut timers = BinaryHeap::with_capacity(clients.len() * 2);
        let clients: Vec<Client> = clients
            .into_iter()
            .enumerate()
            .map(|(index, (id, delay))| {
                timers.push(Reverse(Timer { at: now + delay, client: index, generation: 0, kind: TimerKind::Connect }));
                Client { id, generation: 0, was_open: false, sequence: 0, link: None }
            })
            .collect();
        Ok(Worker {
            plan,
            totals,
            poll: Poll::new()?,
            clients,
            timers,
            again: Vec::new(),
            local: Local {
                counts: Counts::default(),
                latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
                errors: BTreeMap::new(),
            },
            handshake: plan.handshake.clone(),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            message: plan.message.clone(),
            storm_seen: totals.storm.load(Ordering::Relaxed),
            negotiated_seen: false,
            stopping: None,
            published: now,
            publications: 0,
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.obey(now);
            if let Some(deadline) = self.stopping {
                if now >= deadline || self.clients.iter().all(|client| client.link.is_none()) {
                    return Ok(());
                }
            }
            self.fire_timers(now);
            if now >= self.published + PUBLISH_EVERY {
                self.publish(false);
                self.published = now;
            }
            let timeout = if self.again.is_empty() {
                let next =
                    self.timers.peek().map_or(PUBLISH_EVERY, |Reverse(timer)| timer.at.saturating_duration_since(now));
                next.min(PUBLISH_EVERY)
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            for index in std::mem::take(&mut self.again) {
                self.drive(index);
            }
            for event in &events {
                self.drive(event.token().0);
            }
        }
    }

    /// Follows the main thread's commands: stop, or a reconnect storm.
    fn obey(&mut self, now: Instant) {
        if self.stopping.is_none() && self.totals.stop.load(Ordering::Relaxed) {
            self.stopping = Some(now + STOP_GRACE);
            for index in 0..self.clients.len() {
                self.close_for_stop(index);
            }
        }
        let storm = self.totals.storm.load(Ordering::Relaxed);
        if storm != self.storm_seen && self.stopping.is_none() {
            self.storm_seen = storm;
            // Every connection dropped at once, as a crash would, and reopened.
            for index in 0..self.clients.len() {
                if self.clients[index].link.take().is_some() {
                    self.clients[index].generation += 1;
                    self.open(index, now);
                }
            }
        }
    }

    fn close_for_stop(&mut self, index: usize) {
        let client = &mut self.clients[index];
        let Some(link) = &mut client.link else { return };
        match &mut link.phase {
            Phase::Open(connection) => {
                // Cannot fail: the code is sendable and there is no reason.
                let _ = connection.close(CloseCode::NORMAL, "");
                self.drive(index);
            }
            Phase::Upgrading(_) => {
                client.link = None;
                client.generation += 1;
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse(timer)) = self.timers.peek().copied() {
            if timer.at > now {
                return;
            }
            self.timers.pop();
            let client = &mut self.clients[timer.client];
            if timer.generation != client.generation {
                continue;
            }
            match timer.kind {
                TimerKind::Connect => {
                    if client.link.is_none() && self.stopping.is_none() {
                        self.open(timer.client, now);
                    }
                }
                TimerKind::OpenDeadline => {
                    if matches!(client.link, Some(Link { phase: Phase::Upgrading(_), .. })) {
                        self.end(timer.client, Ending::NotOpened("open timeout"), now);
                    }
                }
                TimerKind::Send => {
                    let Some(Link { phase: Phase::Open(connection), .. }) = &mut client.link else { continue };
                    if self.stopping.is_none() {
                        // Stamped with the time it was due, not the time it
                        // left: a server that stalls the sender is charged
                        // for the wait (no coordinated omission, as wrk2).
                        let due = elapsed_ns(self.plan.started, timer.at);
                        probe::stamp(&mut self.message, client.id, client.sequence, due);
                        if send(connection, &self.message, self.plan.text).is_ok() {
                            client.sequence += 1;
                            self.local.counts.sent += 1;
                        }
                        // On schedule: when behind, the next one is due
                        // at once and the schedule catches up.
                        let period = self.plan.send_every.unwrap_or(Duration::from_secs(1));
                        self.timers.push(Reverse(Timer { at: timer.at + period, ..timer }));
                        self.drive(timer.client);
                    }
                }
                TimerKind::Core => {
                    let Some(link) = &mut client.link else { continue };
                    let Phase::Open(connection) = &mut link.phase else { continue };
                    link.armed = None;
                    connection.handle_timeout(now);
                    self.drive(timer.client);
                }
            }
        }
    }

    /// Starts a connection for client `index`.
    fn open(&mut self, index: usize, now: Instant) {
        let plan = self.plan;
        let endpoint = &plan.targets[self.clients[index].id as usize % plan.targets.len()];
        let opened = TcpStream::connect(endpoint.addr).map_err(Failure::Io).and_then(|mut tcp| {
            self.poll.registry().register(&mut tcp, Token(index), Interest::READABLE | Interest::WRITABLE)?;
            Transport::new(tcp, endpoint.tls.as_ref())
        });
        let transport = match opened {
            Ok(transport) => transport,
            Err(failure) => {
                self.end(index, Ending::NotOpened(failure_kind(&failure)), now);
                return;
            }
        };
        let (handshake, request) = match ClientHandshake::new(&endpoint.target, self.handshake.clone()) {
            Ok(pair) => pair,
            Err(error) => {
                self.end(index, Ending::NotOpened(super::error_kind(&error.into())), now);
                return;
            }
        };
        let client = &mut self.clients[index];
        client.link = Some(Link {
            transport,
            phase: Phase::Upgrading(Box::new(Upgrade {
                connected: false,
                handshake,
                request,
                written: 0,
                head: HeadReader::new(plan.limits.clone()),
            })),
            in_flight: 0,
            armed: None,
        });
        let generation = client.generation;
        self.timers.push(Reverse(Timer {
            at: now + plan.open_timeout,
            client: index,
            generation,
            kind: TimerKind::OpenDeadline,
        }));
    }

    /// Does everything client `index` can do now without blocking: finish
    /// connecting, write, read, answer, and end if its connection is over.
    fn drive(&mut self, index: usize) {
        let Some(client) = self.clients.get_mut(index) else { return };
        let Some(link) = &mut client.link else { return };
        let outcome = match &mut link.phase {
            Phase::Upgrading(_) => self.upgrade(index),
            Phase::Open(_) => self.exchange(index),
        };
        if let Some(ending) = outcome {
            self.end(index, ending, Instant::now());
            return;
        }
        // Keep a timer set for the core's next deadline.
        let client = &mut self.clients[index];
        if let Some(Link { phase: Phase::Open(connection), armed, .. }) = &mut client.link {
            if let Some(deadline) = connection.poll_timeout() {
                if armed.is_none_or(|armed| deadline < armed) {
                    *armed = Some(deadline);
                    let generation = client.generation;
                    self.timers.push(Reverse(Timer { at: deadline, client: index, generation, kind: TimerKind::Core }));
                }
            }
        }
    }

    /// The opening handshake: connect, send the request, read the answer.
    fn upgrade(&mut self, index: usize) -> Option<Ending> {
        let plan = self.plan;
        let client = &mut self.clients[index];
        let link = client.link.as_mut()?;
        let Phase::Upgrading(upgrade) = &mut link.phase else { return None };
        if !upgrade.connected {
            let tcp = link.transport.tcp();
            match tcp.take_error() {
                Ok(Some(error)) | Err(error) => return Some(Ending::NotOpened(io_kind(&error))),
                Ok(None) => {}
            }
            match tcp.peer_addr() {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::NotConnected => return None,
                Err(error) => return Some(Ending::NotOpened(io_kind(&error))),
            }
            upgrade.connected = true;
            let _ = tcp.set_nodelay(true);
        }
        while upgrade.written < upgrade.request.len() {
            match link.transport.write(&upgrade.request[upgrade.written..]) {
                Ok(n) => upgrade.written += n,
                Err(failure) if would_block(&failure) => return None,
                Err(failure) => return Some(Ending::NotOpened(failure_kind(&failure))),
            }
        }
        let read = loop {
            match link.transport.read(&mut self.read_buf) {
                Ok(0) => return Some(Ending::NotOpened("io")),
                Ok(n) => match upgrade.head.feed(&self.read_buf[..n]) {
                    Ok(Some(used)) => break used..n,
                    Ok(None) => {}
                    Err(error) => return Some(Ending::NotOpened(super::error_kind(&error.into()))),
                },
                Err(failure) if would_block(&failure) => {
                    return match link.transport.flush() {
                        Err(failure) if !would_block(&failure) => Some(Ending::NotOpened(failure_kind(&failure))),
                        _ => None,
                    };
                }
                Err(failure) => return Some(Ending::NotOpened(failure_kind(&failure))),
            }
        };
        let accepted = match Response::parse(&upgrade.head) {
            Ok(response) => upgrade.handshake.verify(response).map_err(tether::Error::from),
            Err(error) => Err(error.into()),
        };
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(error) => return Some(Ending::NotOpened(super::error_kind(&error))),
        };
        if !self.negotiated_seen {
            self.negotiated_seen = true;
            let mut negotiated = self.totals.negotiated.lock().unwrap();
            negotiated.get_or_insert_with(|| (accepted.protocol.clone(), accepted.deflate.is_some()));
        }
        let mut connection = Box::new(Connection::new(Role::Client, plan.protocol.clone(), accepted.deflate));
        // Starts its clock: keepalive counts from now.
        connection.handle_timeout(Instant::now());
        // Frames that came with the answer (an error is the core's to act on).
        let _ = connection.handle_read(&self.read_buf[read]);
        link.phase = Phase::Open(connection);
        let counts = &mut self.local.counts;
        if std::mem::replace(&mut client.was_open, true) {
            counts.reconnects += 1;
        } else {
            counts.established += 1;
        }
        if plan.send_every.is_some() {
            let generation = client.generation;
            self.timers.push(Reverse(Timer { at: Instant::now(), client: index, generation, kind: TimerKind::Send }));
        }
        self.exchange(index)
    }

    /// An open connection: reads and times the echoes, tops the pipeline
    /// up, writes.
    fn exchange(&mut self, index: usize) -> Option<Ending> {
        let plan = self.plan;
        let stopping = self.stopping.is_some();
        let Worker { clients, read_buf, message, local, again, .. } = self;
        let client = &mut clients[index];
        let link = client.link.as_mut()?;
        let Phase::Open(connection) = &mut link.phase else { return None };
        // Frames that came with the handshake's answer, on the first turn.
        let mut now = None;
        if connection.has_events() {
            let at = Instant::now();
            now = Some(at);
            take_echoes(connection, &mut link.in_flight, client.id, elapsed_ns(plan.started, at), local);
        }
        let mut reads = 0;
        loop {
            if reads == READS_PER_TURN {
                again.push(index);
                break;
            }
            match link.transport.read(read_buf) {
                Ok(0) => {
                    let clean = connection.handle_eof();
                    return Some(why_over(connection, clean, stopping));
                }
                Ok(n) => {
                    reads += 1;
                    let at = Instant::now();
                    now = Some(at);
                    // An error here is the core's to act on: it closes, and
                    // the connection ends below once that is done.
                    let _ = connection.handle_read(&read_buf[..n]);
                    take_echoes(connection, &mut link.in_flight, client.id, elapsed_ns(plan.started, at), local);
                }
                Err(failure) if would_block(&failure) => break,
                Err(failure) => return Some(Ending::Lost(failure_kind(&failure))),
            }
        }
        if let Some(at) = now {
            // The core's timers learn when what they noted in those reads happened.
            connection.handle_timeout(at);
        }
        if plan.send_every.is_none() && !stopping && link.in_flight < plan.pipeline {
            // One clock reading for the whole batch: the last read's.
            let sent_at = elapsed_ns(plan.started, now.unwrap_or_else(Instant::now));
            while link.in_flight < plan.pipeline {
                probe::stamp(message, client.id, client.sequence, sent_at);
                if send(connection, message, plan.text).is_err() {
                    break; // closing
                }
                client.sequence += 1;
                link.in_flight += 1;
                local.counts.sent += 1;
            }
        }
        while connection.wants_transmit() {
            let pending = connection.pending_transmit();
            if pending.is_empty() {
                break;
            }
            match link.transport.write(pending) {
                Ok(n) => connection.advance_transmit(n),
                Err(failure) if would_block(&failure) => break,
                Err(failure) => return Some(Ending::Lost(failure_kind(&failure))),
            }
        }
        match link.transport.flush() {
            Err(failure) if !would_block(&failure) => return Some(Ending::Lost(failure_kind(&failure))),
            _ => {}
        }
        if connection.is_finished() {
            return Some(why_over(connection, true, stopping));
        }
        None
    }

    /// Client `index`'s connection is over: count why, and open the next
    /// one (unless stopping).
    fn end(&mut self, index: usize, ending: Ending, now: Instant) {
        let client = &mut self.clients[index];
        client.link = None;
        client.generation += 1;
        let retry_at = match ending {
            Ending::Done => return,
            Ending::NotOpened(kind) => {
                self.local.counts.failed += 1;
                self.local.error(kind);
                now + RETRY_DELAY
            }
            Ending::Lost(kind) => {
                if self.stopping.is_none() {
                    self.local.error(kind);
                }
                now
            }
        };
        if self.stopping.is_none() {
            let generation = client.generation;
            self.timers.push(Reverse(Timer { at: retry_at, client: index, generation, kind: TimerKind::Connect }));
        }
    }

    /// Adds what was counted to the shared totals; the latencies too every
    /// fourth time, and at the end.
    fn publish(&mut self, last: bool) {
        let counts = std::mem::take(&mut self.local.counts);
        let totals = self.totals;
        for (total, count) in [
            (&totals.established, counts.established),
            (&totals.failed, counts.failed),
            (&totals.reconnects, counts.reconnects),
            (&totals.sent, counts.sent),
            (&totals.received, counts.received),
            (&totals.foreign, counts.foreign),
            (&totals.bytes_received, counts.bytes_received),
        ] {
            if count > 0 {
                total.fetch_add(count, Ordering::Relaxed);
            }
        }
        if !self.local.errors.is_empty() {
            let mut errors = totals.errors.lock().unwrap();
            for (kind, count) in std::mem::take(&mut self.local.errors) {
                *errors.entry(kind.to_owned()).or_default() += count;
            }
        }
        self.publications += 1;
        if last || self.publications.is_multiple_of(4) {
            if let Some(shared) = totals.latency.lock().unwrap().as_mut() {
                let _ = shared.add(&self.local.latency);
            }
            self.local.latency.reset();
        }
    }
}

fn elapsed_ns(started: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(started).as_nanos()).unwrap_or(u64::MAX)
}

fn would_block(failure: &Failure) -> bool {
    matches!(failure, Failure::Io(error) if error.kind() == io::ErrorKind::WouldBlock)
}

fn io_kind(error: &io::Error) -> &'static str {
    if error.kind() == io::ErrorKind::TimedOut {
        "timeout"
    } else {
        "io"
    }
}

fn failure_kind(failure: &Failure) -> &'static str {
    match failure {
        Failure::Io(error) => io_kind(error),
        Failure::Tls(error) => {
            tracing::debug!(%error, "bench: TLS failed");
            "tls"
        }
    }
}

/// Counts the echoes among the events the core has decoded; a message
/// from another client (a broadcast server) is counted, not timed.
fn take_echoes(connection: &mut Connection, in_flight: &mut usize, id: u32, at_ns: u64, local: &mut Local) {
    while let Some(event) = connection.poll_event() {
        let Event::Message(received) = event else { continue };
        local.counts.bytes_received += received.len() as u64;
        match probe::read(received.as_bytes()) {
            Some((from, sent_at)) if from == id => {
                let _ = local.latency.record((at_ns.saturating_sub(sent_at) / 1000).max(1));
                local.counts.received += 1;
                *in_flight = in_flight.saturating_sub(1);
            }
            _ => local.counts.foreign += 1,
        }
    }
}

/// Why an open connection ended (`clean`: with a close handshake).
fn why_over(connection: &Connection, clean: bool, stopping: bool) -> Ending {
    if connection.error().is_some() {
        Ending::Lost("protocol")
    } else if let Some(timeout) = connection.timeout() {
        Ending::Lost(timeout_kind(timeout))
    } else if stopping {
        Ending::Done
    } else if clean {
        Ending::Lost("closed")
    } else {
        Ending::Lost("io")
    }
}

fn timeout_kind(timeout: Timeout) -> &'static str {
    match timeout {
        Timeout::Open => "open timeout",
        Timeout::Ping => "keepalive timeout",
        _ => "timeout",
    }
}
