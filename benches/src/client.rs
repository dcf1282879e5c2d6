//! The load client: a minimal hand-rolled WebSocket client built to cost
//! less CPU than any server it measures.
//!
//! - The opening handshake is one fixed request (fixed key) and a check
//!   for `101` in the answer.
//! - The masked frames are built once up front (fixed mask key); sending
//!   never masks or copies.
//! - Each connection keeps `in_flight` messages outstanding. Every read
//!   counts the echoed messages it completed (server frames are parsed for
//!   their length only), and one write then sends that many frames at once.
//! - Payload it need not look at is discarded in the kernel (`recv` with
//!   `MSG_TRUNC`): the rest of a frame of 8 KiB or more, and everything the
//!   raw server echoes. A large message then costs the client one copy (its
//!   send) and the server two.
//! - All connections share one read buffer; everything runs on one
//!   current-thread runtime inside a `LocalSet`.
//!
//! For the raw TCP server the "messages" are fixed-size records without
//! framing, counted as received bytes over the record size.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// The fixed mask key of every client frame.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Default size of the read buffer shared by all connections.
pub const DEFAULT_READ_BUF: usize = 256 << 10;

/// Payload still to come in the current frame from which on the client
/// discards it in the kernel (`recv` with `MSG_TRUNC`) instead of copying it
/// out: large messages then cost the client one copy (its send), the
/// server two.
const SKIP_MIN: usize = 8 << 10;

/// Most bytes discarded by one `MSG_TRUNC` receive.
const SKIP_MAX: usize = 4 << 20;

/// How many connections are being opened at once.
const CONNECT_CONCURRENCY: usize = 256;

/// How long opening all connections may take before the run is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// What one load run does.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Connections.
    pub conns: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages outstanding per connection.
    pub in_flight: usize,
    /// Whether to speak WebSocket (else raw records).
    pub websocket: bool,
    /// Time before counting starts.
    pub warmup: Duration,
    /// Time counted.
    pub duration: Duration,
    /// Size of the read buffer shared by all connections.
    pub read_buf: usize,
}

/// What one load run measured.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Messages echoed per second during the counted time.
    pub messages_per_sec: f64,
    /// Fraction of one CPU this (client) process used meanwhile.
    pub client_cpu: f64,
    /// Fraction of one CPU the server process used meanwhile.
    pub server_cpu: f64,
    /// CPUs' worth of time that other processes of the machine used
    /// meanwhile: near 0 on a quiet machine.
    pub other_cpu: f64,
}

/// Builds one client frame: FIN + binary, masked with [`MASK`].
#[must_use]
pub fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x82);
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ MASK[i % 4]));
    frame
}

/// Counts complete messages in the server's byte stream.
#[derive(Debug, Default)]
pub struct FrameCounter {
    header: [u8; 14],
    header_len: usize,
    body_left: u64,
    /// The frame being read ends a data message.
    ends_message: bool,
}

/// Header length implied by the second header byte.
fn header_len(b1: u8) -> usize {
    let extended = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// Payload length and whether the frame ends a data message, from a
/// complete header.
fn parse_header(header: &[u8]) -> (u64, bool) {
    let len = match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[2..10]);
            u64::from_be_bytes(bytes)
        }
        len => u64::from(len),
    };
    let fin = header[0] & 0x80 != 0;
    let data = header[0] & 0x0f < 8;
    (len, fin && data)
}

impl FrameCounter {
    /// Feeds received bytes; returns how many messages they completed.
    pub fn feed(&mut self, mut data: &[u8]) -> usize {
        let mut done = 0;
        while !data.is_empty() {
            if self.body_left > 0 {
                let take = self.body_left.min(data.len() as u64);
                self.body_left -= take;
                data = &data[take as usize..];
                if self.body_left == 0 && self.ends_message {
                    done += 1;
                }
                continue;
            }
            let (len, ends_message) = if self.header_len == 0 && data.len() >= 2 && data.len() >= header_len(data[1]) {
                // Fast path: the whole header is in this read.
                let need = header_len(data[1]);
                let parsed = parse_header(&data[..need]);
                data = &data[need..];
                parsed
            } else {
                self.header[self.header_len] = data[0];
                self.header_len += 1;
                data = &data[1..];
                if self.header_len < 2 || self.header_len < header_len(self.header[1]) {
                    continue;
                }
                self.header_len = 0;
                parse_header(&self.header)
            };
            if len == 0 {
                done += usize::from(ends_message);
            } else {
                self.body_left = len;
                self.ends_message = ends_message;
            }
        }
        done
    }

    /// Payload bytes of the current frame still to come, which need not be
    /// looked at.
    fn body_left(&self) -> u64 {
        self.body_left
    }

    /// Accounts for `n <= body_left` payload bytes received unseen; returns
    /// how many messages they completed (0 or 1).
    fn skip(&mut self, n: usize) -> usize {
        self.body_left -= n as u64;
        usize::from(self.body_left == 0 && self.ends_message)
    }
}

/// Counts the echo: WebSocket frames, or raw fixed-size records.
#[derive(Debug)]
enum Counter {
    Frames(FrameCounter),
    Records { size: usize, partial: usize },
}

impl Counter {
    fn feed(&mut self, data: &[u8]) -> usize {
        match self {
            Counter::Frames(frames) => frames.feed(data),
            Counter::Records { .. } => self.skip(data.len()),
        }
    }

    /// How many of the next bytes can be discarded unseen.
    fn skippable(&self) -> usize {
        match self {
            Counter::Frames(frames) => usize::try_from(frames.body_left()).unwrap_or(usize::MAX),
            Counter::Records { .. } => usize::MAX,
        }
    }

    /// Accounts for `n` bytes (at most [`skippable`](Self::skippable))
    /// received unseen; returns the messages they completed.
    fn skip(&mut self, n: usize) -> usize {
        match self {
            Counter::Frames(frames) => frames.skip(n),
            Counter::Records { size, partial } => {
                let total = *partial + n;
                *partial = total % *size;
                total / *size
            }
        }
    }
}

/// Receives and discards up to `len` bytes without copying them out
/// (`recv(MSG_TRUNC)`, which TCP supports since Linux 2.4).
fn recv_discard(tcp: &TcpStream, len: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    tcp.try_io(Interest::READABLE, || {
        // SAFETY: with MSG_TRUNC a TCP socket discards the data and writes
        // nothing to the buffer, so a null buffer of any length is fine;
        // the fd is owned by `tcp`, alive for the call.
        let n = unsafe { libc::recv(tcp.as_raw_fd(), std::ptr::null_mut(), len, libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Opens a TCP connection to `addr` and, if `websocket`, does the opening
/// handshake (fixed key, no extensions offered).
///
/// # Errors
/// Connecting failed, or the server did not answer `101`.
pub async fn open(addr: SocketAddr, websocket: bool) -> io::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    if !websocket {
        return Ok(tcp);
    }
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            if !head.starts_with(b"HTTP/1.1 101") {
                let line =
                    String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)]).into_owned();
                return Err(io::Error::other(format!("handshake refused: {line}")));
            }
            if end + 4 != head.len() {
                return Err(io::Error::other("server sent data right after its 101"));
            }
            return Ok(tcp);
        }
        if head.len() > 16 << 10 {
            return Err(io::Error::other("handshake answer too long"));
        }
    }
}

/// Opens `count` connections, `CONNECT_CONCURRENCY` at a time.
///
/// # Errors
/// Any connection failed, or all of them took longer than a minute.
pub async fn open_many(addr: SocketAddr, websocket: bool, count: usize) -> io::Result<Vec<TcpStream>> {
    let work = async {
        let mut streams = Vec::with_capacity(count);
        let mut set = JoinSet::new();
        let mut started = 0;
        while streams.len() < count {
            while started < count && set.len() < CONNECT_CONCURRENCY {
                set.spawn_local(open(addr, websocket));
                started += 1;
            }
            match set.join_next().await {
                Some(Ok(Ok(tcp))) => streams.push(tcp),
                Some(Ok(Err(error))) => return Err(error),
                Some(Err(error)) => return Err(io::Error::other(error)),
                None => break,
            }
        }
        Ok(streams)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("opening {count} connections")))?
}

/// State shared by the connections of one run.
struct Shared {
    /// Messages echoed so far, all connections together.
    echoed: Cell<u64>,
    /// The first failure of any connection.
    failure: RefCell<Option<io::Error>>,
    /// The one read buffer.
    read_buf: RefCell<Box<[u8]>>,
}

/// Keeps `in_flight` messages outstanding on `tcp` until aborted.
///
/// `frames` holds `in_flight` copies of the message back to back. The bytes
/// still to send are always the window `frames[pos..pos + owed]`:
/// frames are identical, so the window can start where the last partial
/// write stopped, and what is unsent never exceeds `in_flight` frames.
async fn pump(tcp: TcpStream, frames: Rc<[u8]>, frame_len: usize, mut counter: Counter, shared: Rc<Shared>) {
    let mut owed = frames.len();
    let mut pos = 0;
    let result: io::Result<()> = async {
        loop {
            if owed > 0 {
                match tcp.try_write(&frames[pos..pos + owed]) {
                    Ok(n) => {
                        owed -= n;
                        pos = (pos + n) % frame_len;
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error),
                }
            }
            let interest = if owed > 0 { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let ready = tcp.ready(interest).await?;
            if !ready.is_readable() {
                continue;
            }
            let skippable = counter.skippable();
            let completed = if skippable >= SKIP_MIN {
                match recv_discard(&tcp, skippable.min(SKIP_MAX)) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection")),
                    Ok(n) => counter.skip(n),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(error) => return Err(error),
                }
            } else {
                let mut buf = shared.read_buf.borrow_mut();
                match tcp.try_read(&mut buf) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection")),
                    Ok(n) => counter.feed(&buf[..n]),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(error) => return Err(error),
                }
            };
            if completed > 0 {
                shared.echoed.set(shared.echoed.get() + completed as u64);
                owed += completed * frame_len;
                debug_assert!(pos + owed <= frames.len());
            }
        }
    }
    .await;
    if let Err(error) = result {
        shared.failure.borrow_mut().get_or_insert(error);
    }
}

/// Runs `load` against the server at `addr` (process `server_pid`). Must
/// be called inside a `LocalSet`.
///
/// # Errors
/// Opening the connections failed, or a connection failed during the run.
pub async fn run_load(addr: SocketAddr, server_pid: u32, load: Load) -> io::Result<Measured> {
    let payload: Vec<u8> = (0..load.size).map(|i| b'a' + (i % 26) as u8).collect();
    let one = if load.websocket { client_frame(&payload) } else { payload };
    let frame_len = one.len();
    let frames: Rc<[u8]> = one.repeat(load.in_flight).into();

    let streams = open_many(addr, load.websocket, load.conns).await?;
    let shared = Rc::new(Shared {
        echoed: Cell::new(0),
        failure: RefCell::new(None),
        read_buf: RefCell::new(vec![0; load.read_buf].into_boxed_slice()),
    });
    let mut tasks = JoinSet::new();
    for tcp in streams {
        let counter = if load.websocket {
            Counter::Frames(FrameCounter::default())
        } else {
            Counter::Records { size: load.size, partial: 0 }
        };
        tasks.spawn_local(pump(tcp, frames.clone(), frame_len, counter, shared.clone()));
    }

    tokio::time::sleep(load.warmup).await;
    let (count0, t0) = (shared.echoed.get(), Instant::now());
    let (client0, server0) = (crate::sys::cpu_seconds(std::process::id())?, crate::sys::cpu_seconds(server_pid)?);
    let machine0 = crate::sys::machine_busy_seconds()?;
    tokio::time::sleep(load.duration).await;
    let (count1, t1) = (shared.echoed.get(), Instant::now());
    let (client1, server1) = (crate::sys::cpu_seconds(std::process::id())?, crate::sys::cpu_seconds(server_pid)?);
    let machine1 = crate::sys::machine_busy_seconds()?;
    tasks.abort_all();
    drop(tasks);

    if let Some(error) = shared.failure.borrow_mut().take() {
        return Err(error);
    }
    let secs = (t1 - t0).as_secs_f64();
    Ok(Measured {
        messages_per_sec: (count1 - count0) as f64 / secs,
        client_cpu: (client1 - client0) / secs,
        server_cpu: (server1 - server0) / secs,
        other_cpu: ((machine1 - machine0) - (client1 - client0) - (server1 - server0)).max(0.0) / secs,
    })
}

/// What the idle-connections run measured.
#[derive(Clone, Copy, Debug)]
pub struct IdleMeasured {
    /// Connections actually held open.
    pub conns: usize,
    /// Server RSS before opening them, bytes.
    pub rss_before: u64,
    /// Server RSS with all of them open and idle, bytes.
    pub rss_after: u64,
}

/// Opens `conns` connections (handshake included), lets them sit idle for
/// `idle`, and reads the server's RSS before and after.
///
/// # Errors
/// Opening the connections failed, or the server's RSS could not be read.
pub async fn run_idle(
    addr: SocketAddr,
    server_pid: u32,
    websocket: bool,
    conns: usize,
    idle: Duration,
) -> io::Result<IdleMeasured> {
    // Settle the server first: one connection opened and closed, so
    // one-time allocations (buffers per thread, the handshake path) are in
    // the baseline and not counted per connection.
    drop(open(addr, websocket).await?);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = crate::sys::rss_bytes(server_pid)?;
    let streams = open_many(addr, websocket, conns).await?;
    tokio::time::sleep(idle).await;
    let rss_after = crate::sys::rss_bytes(server_pid)?;
    let held = streams.len();
    drop(streams);
    Ok(IdleMeasured { conns: held, rss_before, rss_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(payload_len: usize, fin: bool, opcode: u8) -> Vec<u8> {
        let mut frame = client_frame(&vec![7; payload_len]);
        frame[0] = if fin { 0x80 } else { 0 } | opcode;
        // Unmask: clear the bit and drop the key (payload content does not matter).
        frame[1] &= 0x7f;
        let key_at = header_len(frame[1]);
        frame.drain(key_at..key_at + 4);
        frame
    }

    #[test]
    fn counts_frames_split_anywhere() {
        let mut stream = Vec::new();
        for len in [0, 1, 20, 125, 126, 200, 65535, 65536, 70000] {
            stream.extend(server_frame(len, true, 2));
        }
        stream.extend(server_frame(5, false, 2));
        stream.extend(server_frame(0, true, 9)); // a ping in between
        stream.extend(server_frame(5, true, 0));
        for chunk in [1, 2, 3, 7, 100, 4096, stream.len()] {
            let mut counter = FrameCounter::default();
            let total: usize = stream.chunks(chunk).map(|c| counter.feed(c)).sum();
            assert_eq!(total, 10, "chunk {chunk}");
        }
    }

    #[test]
    fn client_frame_lengths() {
        assert_eq!(client_frame(&[0; 20]).len(), 2 + 4 + 20);
        assert_eq!(client_frame(&[0; 16384]).len(), 4 + 4 + 16384);
        assert_eq!(client_frame(&vec![0; 1 << 20]).len(), 10 + 4 + (1 << 20));
    }

    #[test]
    fn skipping_payload_counts_like_reading_it() {
        let frame = server_frame(70000, true, 2);
        let mut counter = FrameCounter::default();
        assert_eq!(counter.feed(&frame[..100]), 0);
        let left = usize::try_from(counter.body_left()).unwrap();
        assert_eq!(left, frame.len() - 100);
        assert_eq!(counter.skip(left - 1), 0);
        assert_eq!(counter.skip(1), 1);
        assert_eq!(counter.feed(&server_frame(3, true, 2)), 1);
    }

    #[test]
    fn records() {
        let mut counter = Counter::Records { size: 16, partial: 0 };
        assert_eq!(counter.feed(&[0; 10]), 0);
        assert_eq!(counter.feed(&[0; 30]), 2);
        assert_eq!(counter.feed(&[0; 8]), 1);
    }
}
