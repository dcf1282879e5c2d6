//! `tether-bench fanout`: broadcast throughput and latency, tether's hub
//! against the channel-per-client loop a tokio-tungstenite user writes.
//!
//! Both servers treat a connection to `/pub` as the publisher (each of its
//! messages is published to topic `t`) and a connection to `/sub` as a
//! subscriber of `t`. They run in a child process (`tether-bench
//! fanout-server <kind> <port>`) pinned to one CPU on a current-thread
//! runtime, as the echo servers do.
//!
//! The load client (this process, the other CPU, one current-thread
//! runtime) holds the publisher and every subscriber, so the send time
//! stamped into each message and the arrival time read on receipt come
//! from the same clock. Each message's payload starts with its sequence
//! number and send time (nanoseconds since a shared `Instant`, both
//! big-endian `u64`); every subscriber checks it sees 0, 1, 2, … exactly
//! once and in order.
//!
//! - **F1**: the publisher keeps a window of W messages outstanding, a
//!   message leaving the window once every subscriber has it: published
//!   as fast as delivered.
//! - **F2**: the publisher sends at a fixed rate whatever happens; the
//!   question is whether deliveries keep up with what was offered.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::wire::{self, opcode, FrameReader};

/// The topic everything is published to.
const TOPIC: &str = "t";

/// The sequence number of the probes sent before the run, until every
/// subscriber has shown it is subscribed by receiving one.
const PROBE: u64 = u64::MAX;

/// How long subscribers may take to be subscribed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections being opened at once.
const OPEN_CONCURRENCY: usize = 256;

/// Source addresses the subscribers are spread over.
const SOURCES: usize = 16;

/// Which fan-out server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum FanoutKind {
    /// tether: hub topics (`subscribe`, `Hub::publish`), compression off,
    /// a tokio task per connection (`tether::Server`).
    Tether,
    /// tether's reactor (`tether::reactor`, what `tether serve` runs on):
    /// the same hub topics, one event loop for every connection.
    #[value(name = "tether-reactor", alias = "reactor")]
    TetherReactor,
    /// tokio-tungstenite: a `Mutex<Vec<(id, UnboundedSender)>>` and a
    /// writer task per client.
    #[value(name = "tokio-tungstenite", alias = "tungstenite")]
    Tungstenite,
    /// Two tether reactor servers sharing one `redis-server` (started by
    /// the benchmark): the subscribers split between them, the publisher on
    /// the first; every publication goes through Redis (pipelined) to both.
    #[value(name = "tether-redis", alias = "redis")]
    TetherRedis,
}

/// Servers of the cross-server run (`tether-redis`).
const REDIS_SERVERS: usize = 2;

impl FanoutKind {
    /// The name in flags and in the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FanoutKind::Tether => "tether",
            FanoutKind::TetherReactor => "tether reactor",
            FanoutKind::Tungstenite => "tokio-tungstenite",
            FanoutKind::TetherRedis => "tether reactor ×2 via Redis",
        }
    }

    /// The name on the command line (`fanout-server <kind> <port>`).
    #[must_use]
    pub fn arg(self) -> &'static str {
        match self {
            FanoutKind::Tether => "tether",
            FanoutKind::TetherReactor => "tether-reactor",
            FanoutKind::Tungstenite => "tokio-tungstenite",
            FanoutKind::TetherRedis => "tether-redis",
        }
    }
}

/// The two scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum FanoutScenario {
    /// Window of W outstanding messages: as fast as delivered.
    #[value(name = "F1")]
    F1,
    /// Fixed publishing rate, many subscribers.
    #[value(name = "F2")]
    F2,
}

/// Flags of `tether-bench fanout`.
#[derive(clap::Args, Debug)]
pub struct FanoutArgs {
    /// Scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "F1,F2", ignore_case = true)]
    scenarios: Vec<FanoutScenario>,
    /// Servers to measure, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tether-reactor,tether,tokio-tungstenite")]
    servers: Vec<FanoutKind>,
    /// Subscribers in F1.
    #[arg(long, default_value_t = 1000)]
    f1_subscribers: usize,
    /// Messages outstanding in F1 (published, not yet received by every
    /// subscriber).
    /// 32 lets each subscriber's connection take several messages per
    /// wake-up, as under real load; smaller windows measure one write per
    /// message per subscriber (see the README).
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Counted seconds of an F1 run.
    #[arg(long, default_value_t = 3.0)]
    duration_secs: f64,
    /// Subscribers in F2.
    #[arg(long, default_value_t = 10_000)]
    f2_subscribers: usize,
    /// Messages published per second in F2.
    #[arg(long, default_value_t = 100.0)]
    f2_rate: f64,
    /// Counted seconds of an F2 run.
    #[arg(long, default_value_t = 10.0)]
    f2_secs: f64,
    /// Payload bytes per message (at least 16: sequence number and send time).
    #[arg(long, default_value_t = 64)]
    message_bytes: usize,
    /// Seconds of publishing before counting starts.
    #[arg(long, default_value_t = 0.5)]
    warmup_secs: f64,
    /// Repetitions of each (scenario, server); medians are reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// CPU the load client is pinned to.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
    /// CPU the servers are pinned to.
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,
    /// Event loops of the tether reactor server; with more than one the
    /// server is not pinned (it may use every CPU, the client's included):
    /// compare per server CPU-second.
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Read size of the load client, KiB (one buffer for all connections).
    #[arg(long, default_value_t = 256)]
    client_buf_kib: usize,
}

// ---- servers ----------------------------------------------------------------------

/// Runs the `kind` fan-out server on `127.0.0.1:port` on a current-thread
/// runtime; prints `PORT <n>` once listening.
///
/// # Errors
/// The runtime cannot be built or the port bound.
pub fn run_server(kind: FanoutKind, port: u16, threads: usize, redis: Option<&str>) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let on_runtime = |server: std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<()>>>>| {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(server)
    };
    match kind {
        FanoutKind::TetherReactor | FanoutKind::TetherRedis => reactor_server(addr, threads, redis),
        FanoutKind::Tether => on_runtime(Box::pin(tether_server(addr))),
        FanoutKind::Tungstenite => on_runtime(Box::pin(tungstenite_server(addr))),
    }
}

/// tether: hub topics, compression off, default keepalive.
async fn tether_server(addr: SocketAddr) -> io::Result<()> {
    let mut config = tether::ServerConfig::default();
    config.protocol = config.protocol.with_deflate(None);
    config.hub = Some(tether::Hub::default());
    let server = tether::Server::bind(addr, config).await?;
    crate::servers::announce(server.local_addr()?)?;
    server
        .serve(|mut ws: tether::WebSocket| async move {
            if ws.request().is_some_and(|request| request.path() == "/pub") {
                while let Ok(Some(message)) = ws.recv().await {
                    if let Some(hub) = ws.hub() {
                        hub.publish(TOPIC, &message);
                    }
                }
            } else {
                ws.subscribe(TOPIC);
                // recv also moves the hub's mailbox to the socket.
                while let Ok(Some(_)) = ws.recv().await {}
            }
        })
        .await
}

/// tether's reactor: the same topics, callbacks on one event loop.
fn reactor_server(addr: SocketAddr, threads: usize, redis: Option<&str>) -> io::Result<()> {
    use tether::reactor::{Conn, Reactor, Service};

    struct Topics;
    impl Service for Topics {
        fn on_open(&mut self, conn: &mut Conn<'_>) {
            if conn.path() != "/pub" {
                conn.subscribe(TOPIC);
            }
        }
        fn on_message(&mut self, conn: &mut Conn<'_>, message: tether::Message) {
            if let Some(hub) = conn.hub() {
                hub.publish(TOPIC, &message);
            }
        }
    }

    let mut config = tether::ServerConfig::default();
    config.protocol = config.protocol.with_deflate(None);
    // The Redis engine's connections run on a runtime of their own thread;
    // the reactor's loop on this one.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    config.hub = Some(match redis {
        Some(url) => {
            let _entered = runtime.enter();
            let hub = tether::Hub::with_redis(tether::hub::HubConfig::default(), url)?;
            // Subscribers may arrive before fan-out is up: wait for it.
            let started = Instant::now();
            while !hub.fanout_status().is_some_and(tether::fanout::FanoutStatus::is_up) {
                if started.elapsed() > Duration::from_secs(10) {
                    return Err(io::Error::other("redis fan-out did not come up"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            hub
        }
        None => tether::Hub::default(),
    });
    let reactor = Reactor::bind_threads(addr, config, threads.max(1))?;
    crate::servers::announce(reactor.local_addr()?)?;
    reactor.run_with(|_| Topics)
}

/// The subscribers of the tokio-tungstenite server: what a user writes
/// without a hub.
type Subscribers = Arc<Mutex<Vec<(u64, tokio::sync::mpsc::UnboundedSender<tokio_tungstenite::tungstenite::Message>)>>>;

async fn tungstenite_server(addr: SocketAddr) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    crate::servers::announce(listener.local_addr()?)?;
    let subscribers: Subscribers = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("accept: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        next_id += 1;
        tokio::spawn(tungstenite_client(tcp, subscribers.clone(), next_id));
    }
}

async fn tungstenite_client(tcp: TcpStream, subscribers: Subscribers, id: u64) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    let mut path = String::new();
    // The error type is tungstenite's (its `Callback` trait), not ours.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        path = request.uri().path().to_owned();
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    if path == "/pub" {
        while let Some(Ok(message)) = stream.next().await {
            if message.is_binary() || message.is_text() {
                let list = subscribers.lock().unwrap_or_else(PoisonError::into_inner);
                for (_, sender) in list.iter() {
                    let _ = sender.send(message.clone());
                }
            }
        }
        return;
    }
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    subscribers.lock().unwrap_or_else(PoisonError::into_inner).push((id, sender));
    let writer = tokio::spawn(async move {
        while let Some(message) = receiver.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(_)) = stream.next().await {}
    subscribers.lock().unwrap_or_else(PoisonError::into_inner).retain(|(other, _)| *other != id);
    writer.abort();
}

// ---- load client ------------------------------------------------------------------

/// How the publisher paces itself.
#[derive(Clone, Copy, Debug)]
enum Pace {
    /// Keep this many messages outstanding.
    Window(usize),
    /// Send this many messages per second.
    Rate(f64),
}

/// One fan-out run.
#[derive(Clone, Copy, Debug)]
struct Load {
    subscribers: usize,
    message_bytes: usize,
    pace: Pace,
    warmup: Duration,
    duration: Duration,
    read_buf: usize,
}

/// What one run measured.
#[derive(Debug)]
struct Measured {
    /// Messages received per second, summed over subscribers.
    deliveries_per_sec: f64,
    /// Messages published per second during the counted time.
    published_per_sec: f64,
    /// Latency of every message received in the counted time, ns.
    latency: Histogram<u64>,
    server_cpu: f64,
    client_cpu: f64,
    /// CPUs' worth of time other processes used meanwhile (near 0 on a quiet machine).
    other_cpu: f64,
    /// Messages seen out of sequence (gaps, repeats, reordering).
    violations: u64,
    /// The first few violations, described.
    violation_samples: Vec<String>,
    /// Subscribers whose connection ended during the run.
    lost_subscribers: usize,
    /// Messages published but not yet received by everyone when counting ended.
    backlog: u64,
}

/// State shared by the publisher and the subscribers of one run.
struct Shared {
    /// The clock of the send-time stamps.
    origin: Instant,
    /// Next sequence number to publish.
    next_seq: Cell<u64>,
    /// Lowest sequence number not yet received by every subscriber.
    base: Cell<u64>,
    /// For each of `base..next_seq`, subscribers yet to receive it.
    pending: RefCell<VecDeque<u32>>,
    /// Woken when `base` moves.
    progress: Notify,
    /// Subscribers that received a probe.
    ready: Cell<usize>,
    /// Data messages received (all subscribers).
    delivered: Cell<u64>,
    /// Whether latencies are recorded now.
    counting: Cell<bool>,
    latency: RefCell<Histogram<u64>>,
    violations: Cell<u64>,
    violation_samples: RefCell<Vec<String>>,
    lost: Cell<usize>,
    first_error: RefCell<Option<String>>,
    read_buf: RefCell<Box<[u8]>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn violation(&self, text: String) {
        self.violations.set(self.violations.get() + 1);
        let mut samples = self.violation_samples.borrow_mut();
        if samples.len() < 5 {
            samples.push(text);
        }
    }

    /// One subscriber received `seq`: retire it, and every message
    /// before it that everyone has, from the outstanding window.
    fn received(&self, seq: u64) {
        let base = self.base.get();
        if seq < base || seq >= self.next_seq.get() {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        let slot = &mut pending[(seq - base) as usize];
        *slot = slot.saturating_sub(1);
        if seq == base && *slot == 0 {
            let mut moved = 0;
            while pending.front() == Some(&0) {
                pending.pop_front();
                moved += 1;
            }
            self.base.set(base + moved);
            self.progress.notify_one();
        }
    }
}

/// A subscriber: reads, checks the sequence, records latency.
async fn subscriber(mut tcp: TcpStream, leftover: Vec<u8>, shared: Rc<Shared>, index: usize) {
    let mut reader = FrameReader::default();
    let mut expected: u64 = 0;
    let mut ready = false;
    let mut pongs: Vec<u8> = Vec::new();
    let mut handle = |data: &[u8], pongs: &mut Vec<u8>| {
        let now = shared.now_ns();
        let counting = shared.counting.get();
        let mut latency = shared.latency.borrow_mut();
        let mut received = 0u64;
        reader.feed(data, |frame| match frame.opcode {
            opcode::BINARY if frame.head.len() >= 16 => {
                let seq = u64::from_be_bytes(frame.head[..8].try_into().unwrap_or_default());
                let sent = u64::from_be_bytes(frame.head[8..16].try_into().unwrap_or_default());
                if seq == PROBE {
                    if !ready {
                        ready = true;
                        shared.ready.set(shared.ready.get() + 1);
                    }
                    return;
                }
                if seq != expected {
                    shared.violation(format!("subscriber {index}: expected #{expected}, got #{seq}"));
                }
                expected = seq.wrapping_add(1);
                received += 1;
                if counting {
                    latency.saturating_record(now.saturating_sub(sent));
                }
                shared.received(seq);
            }
            opcode::PING => wire::push_masked(pongs, opcode::PONG, frame.head),
            opcode::CLOSE => {}
            _ => shared.violation(format!("subscriber {index}: unexpected frame, opcode {}", frame.opcode)),
        });
        shared.delivered.set(shared.delivered.get() + received);
    };
    handle(&leftover, &mut pongs);
    let error = loop {
        if !pongs.is_empty() {
            // Rare (a keepalive ping every 20 s); a partial write here would
            // corrupt the stream, so wait for it.
            if let Err(error) = tcp.write_all(&pongs).await {
                break error;
            }
            pongs.clear();
        }
        if let Err(error) = tcp.readable().await {
            break error;
        }
        let mut buf = shared.read_buf.borrow_mut();
        match tcp.try_read(&mut buf) {
            Ok(0) => break io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"),
            Ok(n) => handle(&buf[..n], &mut pongs),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => break error,
        }
    };
    shared.lost.set(shared.lost.get() + 1);
    shared.first_error.borrow_mut().get_or_insert_with(|| format!("subscriber {index}: {error}"));
}

/// Appends one publisher frame carrying `seq` and the time now.
fn push_message(out: &mut Vec<u8>, payload: &mut [u8], seq: u64, shared: &Shared) {
    payload[..8].copy_from_slice(&seq.to_be_bytes());
    payload[8..16].copy_from_slice(&shared.now_ns().to_be_bytes());
    wire::push_masked(out, opcode::BINARY, payload);
}

/// The publisher: probes until everyone is subscribed (not timed), then
/// publishes at `pace` until aborted.
async fn publisher(mut tcp: TcpStream, load: Load, shared: Rc<Shared>, started: Rc<Notify>) -> io::Result<()> {
    let mut payload: Vec<u8> = (0..load.message_bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let mut out = Vec::with_capacity(64 << 10);
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    while shared.ready.get() < load.subscribers {
        if tokio::time::Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("only {} of {} subscribers got a probe", shared.ready.get(), load.subscribers),
            ));
        }
        out.clear();
        push_message(&mut out, &mut payload, PROBE, &shared);
        tcp.write_all(&out).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.notify_one();
    match load.pace {
        Pace::Window(window) => loop {
            out.clear();
            while shared.next_seq.get() < shared.base.get() + window as u64 {
                let seq = shared.next_seq.get();
                push_message(&mut out, &mut payload, seq, &shared);
                shared.pending.borrow_mut().push_back(load.subscribers as u32);
                shared.next_seq.set(seq + 1);
            }
            tcp.write_all(&out).await?;
            shared.progress.notified().await;
        },
        Pace::Rate(rate) => {
            let start = tokio::time::Instant::now();
            let period = Duration::from_secs_f64(1.0 / rate);
            loop {
                let seq = shared.next_seq.get();
                tokio::time::sleep_until(start + period.mul_f64(seq as f64)).await;
                out.clear();
                push_message(&mut out, &mut payload, seq, &shared);
                shared.pending.borrow_mut().push_back(load.subscribers as u32);
                shared.next_seq.set(seq + 1);
                tcp.write_all(&out).await?;
            }
        }
    }
}

/// Runs one fan-out load against the server at `addr` (process
/// `server_pid`). Must be called inside a `LocalSet`.
/// Every server's CPU seconds so far.
fn servers_cpu(pids: &[u32]) -> io::Result<f64> {
    pids.iter().map(|&pid| crate::sys::cpu_seconds(pid)).sum()
}

/// Subscribers are spread over `addrs` in turn; the publisher is on the
/// first. The server CPU is that of every process in `server_pids`.
async fn run_load(addrs: &[SocketAddr], server_pids: &[u32], load: Load) -> io::Result<Measured> {
    let addr = addrs[0];
    let shared = Rc::new(Shared {
        origin: Instant::now(),
        next_seq: Cell::new(0),
        base: Cell::new(0),
        pending: RefCell::new(VecDeque::new()),
        progress: Notify::new(),
        ready: Cell::new(0),
        delivered: Cell::new(0),
        counting: Cell::new(false),
        latency: RefCell::new(Histogram::new_with_bounds(1, 600_000_000_000, 3).map_err(io::Error::other)?),
        violations: Cell::new(0),
        violation_samples: RefCell::new(Vec::new()),
        lost: Cell::new(0),
        first_error: RefCell::new(None),
        read_buf: RefCell::new(vec![0; load.read_buf].into_boxed_slice()),
    });
    let mut tasks = JoinSet::new();
    // Subscribers first, then the publisher.
    let open = async {
        let mut opening = JoinSet::new();
        let mut opened = 0;
        let mut started = 0;
        while opened < load.subscribers {
            while started < load.subscribers && opening.len() < OPEN_CONCURRENCY {
                let source = wire::source_ip(started % SOURCES);
                let index = started;
                let to = addrs[index % addrs.len()];
                opening.spawn_local(async move { (index, wire::open_ws(to, source, "/sub").await) });
                started += 1;
            }
            match opening.join_next().await {
                Some(Ok((index, Ok((tcp, leftover))))) => {
                    tasks.spawn_local(subscriber(tcp, leftover, shared.clone(), index));
                    opened += 1;
                }
                Some(Ok((index, Err(error)))) => {
                    return Err(io::Error::new(error.kind(), format!("subscriber {index}: {error}")))
                }
                Some(Err(error)) => return Err(io::Error::other(error)),
                None => break,
            }
        }
        let (tcp, _) = wire::open_ws(addr, wire::source_ip(SOURCES), "/pub").await?;
        Ok::<_, io::Error>(tcp)
    };
    let publisher_tcp = tokio::time::timeout(SETUP_TIMEOUT, open)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "opening the connections"))??;
    let started = Rc::new(Notify::new());
    let mut publishing = tokio::task::spawn_local(publisher(publisher_tcp, load, shared.clone(), started.clone()));
    tokio::select! {
        () = started.notified() => {}
        result = &mut publishing => {
            return Err(match result {
                Ok(Err(error)) => error,
                Ok(Ok(())) => io::Error::other("publisher stopped"),
                Err(error) => io::Error::other(error),
            });
        }
    }
    tokio::time::sleep(load.warmup).await;
    let (delivered0, published0, t0) = (shared.delivered.get(), shared.next_seq.get(), Instant::now());
    let (client0, server0) = (crate::sys::cpu_seconds(std::process::id())?, servers_cpu(server_pids)?);
    let machine0 = crate::sys::machine_busy_seconds()?;
    shared.latency.borrow_mut().reset();
    shared.counting.set(true);
    tokio::time::sleep(load.duration).await;
    shared.counting.set(false);
    let (delivered1, published1, t1) = (shared.delivered.get(), shared.next_seq.get(), Instant::now());
    let (client1, server1) = (crate::sys::cpu_seconds(std::process::id())?, servers_cpu(server_pids)?);
    let machine1 = crate::sys::machine_busy_seconds()?;
    tasks.abort_all();
    if publishing.is_finished() {
        return Err(match publishing.await {
            Ok(Err(error)) => io::Error::new(error.kind(), format!("publisher: {error}")),
            Ok(Ok(())) => io::Error::other("publisher stopped"),
            Err(error) => io::Error::other(error),
        });
    }
    publishing.abort();
    let secs = (t1 - t0).as_secs_f64();
    let latency = shared.latency.borrow().clone();
    let backlog = shared.next_seq.get() - shared.base.get();
    let violation_samples = shared.violation_samples.borrow().clone();
    if let Some(error) = shared.first_error.borrow().as_ref() {
        eprintln!("  a subscriber ended: {error}");
    }
    Ok(Measured {
        deliveries_per_sec: (delivered1 - delivered0) as f64 / secs,
        published_per_sec: (published1 - published0) as f64 / secs,
        latency,
        server_cpu: (server1 - server0) / secs,
        client_cpu: (client1 - client0) / secs,
        other_cpu: ((machine1 - machine0) - (client1 - client0) - (server1 - server0)).max(0.0) / secs,
        violations: shared.violations.get(),
        violation_samples,
        lost_subscribers: shared.lost.get(),
        backlog,
    })
}

/// A `redis-server` for the cross-server run, on a free port, killed when
/// dropped.
struct RedisServer {
    child: std::process::Child,
    port: u16,
}

impl RedisServer {
    fn start() -> io::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|error| io::Error::new(error.kind(), format!("redis-server: {error}")))?;
        let server = RedisServer { child, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::other("redis-server did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the benchmark -------------------------------------------------------------------

/// One run's numbers, as reported.
#[derive(Debug, Clone)]
struct RunNote {
    measured_rate: f64,
    published_rate: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    server_cpu: f64,
    client_cpu: f64,
    other_cpu: f64,
    violations: u64,
    lost: usize,
    backlog: u64,
    rss_peak: u64,
    rss_end: u64,
}

/// Runs `tether-bench fanout`.
///
/// # Errors
/// Setting up the client process failed (pinning is only warned about).
pub fn bench(args: &FanoutArgs) -> io::Result<()> {
    if let Err(error) = crate::sys::pin_to_cpu(args.client_cpu) {
        eprintln!("warning: cannot pin the client to CPU {}: {error}", args.client_cpu);
    }
    let need = (args.f1_subscribers.max(args.f2_subscribers) as u64) * 2 + 1000;
    let nofile = crate::sys::raise_nofile_to(need)?;
    if nofile < need {
        eprintln!("warning: RLIMIT_NOFILE is {nofile}, fewer than the {need} file descriptors asked for");
    }
    let message_bytes = args.message_bytes.max(16);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let began = Instant::now();
    let mut notes: Vec<(FanoutScenario, FanoutKind, RunNote)> = Vec::new();
    let mut scenarios = args.scenarios.clone();
    scenarios.dedup();
    let mut servers = args.servers.clone();
    servers.dedup();
    for &scenario in &scenarios {
        let load = match scenario {
            FanoutScenario::F1 => Load {
                subscribers: args.f1_subscribers,
                message_bytes,
                pace: Pace::Window(args.window.max(1)),
                warmup: Duration::from_secs_f64(args.warmup_secs),
                duration: Duration::from_secs_f64(args.duration_secs),
                read_buf: args.client_buf_kib.max(1) << 10,
            },
            FanoutScenario::F2 => Load {
                subscribers: args.f2_subscribers,
                message_bytes,
                pace: Pace::Rate(args.f2_rate.max(0.1)),
                warmup: Duration::from_secs_f64(args.warmup_secs),
                duration: Duration::from_secs_f64(args.f2_secs),
                read_buf: args.client_buf_kib.max(1) << 10,
            },
        };
        for rep in 1..=args.reps {
            for &kind in &servers {
                let redis = (kind == FanoutKind::TetherRedis).then(RedisServer::start).transpose()?;
                let mut spawn = vec![
                    "fanout-server".to_owned(),
                    kind.arg().to_owned(),
                    "0".to_owned(),
                    "--cpu".to_owned(),
                    args.server_cpu.to_string(),
                    "--threads".to_owned(),
                    args.server_threads.to_string(),
                ];
                if let Some(redis) = &redis {
                    spawn.extend(["--redis".to_owned(), redis.url()]);
                }
                let spawn: Vec<&str> = spawn.iter().map(String::as_str).collect();
                let count = if redis.is_some() { REDIS_SERVERS } else { 1 };
                let servers = (0..count)
                    .map(|_| crate::ServerGuard::spawn_args(kind.name(), &spawn))
                    .collect::<io::Result<Vec<_>>>()?;
                let addrs: Vec<SocketAddr> = servers.iter().map(|server| server.addr).collect();
                let mut pids: Vec<u32> = servers.iter().map(crate::ServerGuard::pid).collect();
                pids.extend(redis.as_ref().map(RedisServer::pid));
                let local = tokio::task::LocalSet::new();
                let result = runtime.block_on(local.run_until(run_load(&addrs, &pids, load)));
                let rss = |field| {
                    servers.iter().map(|server| crate::sys::status_bytes(server.pid(), field).unwrap_or(0)).sum()
                };
                let (rss_peak, rss_end) = (rss("VmHWM"), rss("VmRSS"));
                drop(local);
                drop(servers);
                drop(redis);
                match result {
                    Ok(measured) => {
                        let note = RunNote {
                            measured_rate: measured.deliveries_per_sec,
                            published_rate: measured.published_per_sec,
                            p50_us: measured.latency.value_at_quantile(0.5) as f64 / 1e3,
                            p99_us: measured.latency.value_at_quantile(0.99) as f64 / 1e3,
                            max_us: measured.latency.max() as f64 / 1e3,
                            server_cpu: measured.server_cpu,
                            client_cpu: measured.client_cpu,
                            other_cpu: measured.other_cpu,
                            violations: measured.violations,
                            lost: measured.lost_subscribers,
                            backlog: measured.backlog,
                            rss_peak,
                            rss_end,
                        };
                        eprintln!(
                            "[{:>5.1}s] {scenario:?} rep {rep} {:<17} {:>6.2} M deliveries/s ({:.0} msg/s published), latency p50 {:.0} µs p99 {:.0} µs max {:.0} µs, cpu server {:.0}% client {:.0}% others {:.0}%, violations {}, lost {}, backlog {}, server RSS peak {:.1} MB",
                            began.elapsed().as_secs_f64(),
                            kind.name(),
                            note.measured_rate / 1e6,
                            note.published_rate,
                            note.p50_us,
                            note.p99_us,
                            note.max_us,
                            note.server_cpu * 100.0,
                            note.client_cpu * 100.0,
                            note.other_cpu * 100.0,
                            note.violations,
                            note.lost,
                            note.backlog,
                            note.rss_peak as f64 / 1e6,
                        );
                        for sample in &measured.violation_samples {
                            eprintln!("  violation: {sample}");
                        }
                        if note.client_cpu > 0.9 && note.server_cpu < 0.9 {
                            eprintln!(
                                "  WARNING: the client ({:.0}% CPU) was the bottleneck, not the server ({:.0}%)",
                                note.client_cpu * 100.0,
                                note.server_cpu * 100.0
                            );
                        }
                        notes.push((scenario, kind, note));
                    }
                    Err(error) => eprintln!("{scenario:?} rep {rep} {}: FAILED: {error}", kind.name()),
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    eprintln!("total time {:.1}s", began.elapsed().as_secs_f64());
    print!("{}", report(args, &scenarios, &servers, &notes, message_bytes));
    Ok(())
}

fn median_of(notes: &[&RunNote], value: impl Fn(&RunNote) -> f64) -> f64 {
    crate::median(&notes.iter().map(|note| value(note)).collect::<Vec<_>>()).unwrap_or(0.0)
}

fn report(
    args: &FanoutArgs,
    scenarios: &[FanoutScenario],
    servers: &[FanoutKind],
    notes: &[(FanoutScenario, FanoutKind, RunNote)],
    message_bytes: usize,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut client_bound = false;
    for &scenario in scenarios {
        let _ = match scenario {
            FanoutScenario::F1 => writeln!(
                out,
                "\nF1: {} subscribers × {message_bytes}-byte binary messages, window {} messages; medians of {} runs of {:.1} s after {:.1} s warm-up (max latency: the largest of all runs)\n",
                args.f1_subscribers, args.window, args.reps, args.duration_secs, args.warmup_secs
            ),
            FanoutScenario::F2 => writeln!(
                out,
                "\nF2: {} subscribers × {message_bytes}-byte binary messages, published at {} msg/s ({:.2} M deliveries/s offered); medians of {} runs of {:.1} s after {:.1} s warm-up\n",
                args.f2_subscribers,
                args.f2_rate,
                args.f2_rate * args.f2_subscribers as f64 / 1e6,
                args.reps,
                args.f2_secs,
                args.warmup_secs
            ),
        };
        let _ = writeln!(
            out,
            "| server | deliveries/s | of offered | latency p50 | p99 | max | server CPU | client CPU | server RSS peak / end | sequence violations | subscribers lost |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut rates = Vec::new();
        for &kind in servers {
            let runs: Vec<&RunNote> =
                notes.iter().filter(|(s, k, _)| *s == scenario && *k == kind).map(|(_, _, note)| note).collect();
            if runs.is_empty() {
                let _ = writeln!(out, "| {} | failed | | | | | | | | | |", kind.name());
                continue;
            }
            let rate = median_of(&runs, |n| n.measured_rate);
            rates.push((kind, rate));
            let offered = match scenario {
                FanoutScenario::F1 => "–".to_owned(),
                FanoutScenario::F2 => {
                    let offered = args.f2_rate * args.f2_subscribers as f64;
                    format!("{:.1} %", rate / offered * 100.0)
                }
            };
            let server_cpu = median_of(&runs, |n| n.server_cpu);
            let client_cpu = median_of(&runs, |n| n.client_cpu);
            client_bound |= client_cpu > 0.9 && server_cpu < 0.9;
            let _ = writeln!(
                out,
                "| {} | {:.2} M | {offered} | {} | {} | {} | {:.0} % | {:.0} % | {:.0} / {:.0} MB | {} | {} |",
                kind.name(),
                rate / 1e6,
                format_us(median_of(&runs, |n| n.p50_us)),
                format_us(median_of(&runs, |n| n.p99_us)),
                format_us(runs.iter().map(|n| n.max_us).fold(0.0, f64::max)),
                server_cpu * 100.0,
                client_cpu * 100.0,
                median_of(&runs, |n| n.rss_peak as f64) / 1e6,
                median_of(&runs, |n| n.rss_end as f64) / 1e6,
                runs.iter().map(|n| n.violations).sum::<u64>(),
                runs.iter().map(|n| n.lost).sum::<usize>(),
            );
        }
        if let Some((_, theirs)) = rates.iter().find(|(k, _)| *k == FanoutKind::Tungstenite) {
            for ours in [FanoutKind::TetherReactor, FanoutKind::Tether] {
                if let Some((_, rate)) = rates.iter().find(|(k, _)| *k == ours) {
                    if *theirs > 0.0 {
                        let _ = writeln!(out, "\n{}/tokio-tungstenite deliveries/s: {:.2}", ours.name(), rate / theirs);
                    }
                }
            }
        }
        let backlog: Vec<String> = servers
            .iter()
            .filter_map(|&kind| {
                let runs: Vec<&RunNote> =
                    notes.iter().filter(|(s, k, _)| *s == scenario && *k == kind).map(|(_, _, n)| n).collect();
                (!runs.is_empty()).then(|| {
                    format!(
                        "{} {:.0} msg/s published, {:.0} behind at the end",
                        kind.name(),
                        median_of(&runs, |n| n.published_rate),
                        median_of(&runs, |n| n.backlog as f64)
                    )
                })
            })
            .collect();
        let _ = writeln!(out, "\nPublished (median): {}.", backlog.join("; "));
    }
    if notes.iter().any(|(_, _, n)| n.violations > 0 || n.lost > 0) {
        let _ =
            writeln!(out, "\nINVALID: some subscriber missed, repeated or reordered messages, or was disconnected.");
    }
    let max_other = notes.iter().map(|(_, _, n)| n.other_cpu).fold(0.0, f64::max);
    let _ = writeln!(out, "\nOther processes took up to {:.0} % of a CPU during a counted window.", max_other * 100.0);
    if max_other > 0.1 {
        let _ = writeln!(out, "WARNING: the machine was not quiet; these numbers are disturbed.");
    }
    if client_bound {
        let _ = writeln!(
            out,
            "\nWARNING: in some runs the client used more than 90 % of its CPU while the server used less: the client was the bottleneck there."
        );
    }
    out
}

fn format_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}
