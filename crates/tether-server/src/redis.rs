//! Fan-out across server processes through Redis pub/sub, for when one
//! process is not enough: a [`Hub`](crate::hub::Hub) with a Redis URL
//! publishes its broadcasts and topic publications to Redis, and delivers
//! to its own clients what comes back from Redis — its own publications
//! included — so every subscriber on every process gets each message once.
//!
//! Channels: `tether:b` for broadcasts, `tether:t:<topic>` for topics; each
//! process subscribes to `tether:*`. A message travels as one byte (`t`
//! text, `b` binary) followed by its payload.
//!
//! If Redis goes away, each process keeps serving its own clients: what is
//! published meanwhile is delivered locally only, counted
//! ([`RedisStatus::local_only`]) and reported in the log; the bridge
//! reconnects with backoff and fan-out resumes. Messages published during
//! the outage are not replayed to the other processes.
//!
//! The client speaks the few RESP commands it needs (`PSUBSCRIBE`,
//! `PUBLISH`) itself: two connections, one subscribed, one publishing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether_proto::backoff::{Backoff, BackoffPolicy};
use tether_proto::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Where a message is going.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    All,
    Topic(String),
}

impl Target {
    fn channel(&self) -> String {
        match self {
            Target::All => "tether:b".to_owned(),
            Target::Topic(topic) => format!("tether:t:{topic}"),
        }
    }

    fn from_channel(channel: &[u8]) -> Option<Target> {
        let channel = std::str::from_utf8(channel).ok()?;
        if channel == "tether:b" {
            Some(Target::All)
        } else {
            channel.strip_prefix("tether:t:").map(|topic| Target::Topic(topic.to_owned()))
        }
    }
}

fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 1);
    out.push(if message.is_text() { b't' } else { b'b' });
    out.extend_from_slice(message.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<Message> {
    match bytes.split_first()? {
        (b't', text) => Some(Message::from(std::str::from_utf8(text).ok()?.to_owned())),
        (b'b', data) => Some(Message::from(data.to_vec())),
        _ => None,
    }
}

/// The bridge's state, for the program and for metrics.
#[derive(Debug, Default)]
pub struct RedisStatus {
    up: AtomicBool,
    publisher_up: AtomicBool,
    /// Bumped at each (re)subscription: a publishing connection older than
    /// it may be dead without knowing it, and is replaced before use.
    generation: AtomicU64,
    outages: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    local_only: AtomicU64,
}

impl RedisStatus {
    /// Whether both connections to Redis are up.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed) && self.publisher_up.load(Ordering::Relaxed)
    }

    /// How many times the connection was lost.
    #[must_use]
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// Messages published to Redis.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Messages received from Redis and delivered here.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Messages published while Redis was away: delivered to this
    /// process's subscribers only.
    #[must_use]
    pub fn local_only(&self) -> u64 {
        self.local_only.load(Ordering::Relaxed)
    }
}

/// The publishing side, held by the hub.
#[derive(Debug)]
pub(crate) struct Bridge {
    outgoing: mpsc::Sender<(Target, Vec<u8>)>,
    pub(crate) status: Arc<RedisStatus>,
}

/// Most messages waiting for the publishing connection; past it, they are
/// delivered locally only (and counted), rather than queued without bound.
const PUBLISH_QUEUE: usize = 4096;

impl Bridge {
    /// Starts the two connections (in the background, reconnecting for
    /// ever); `deliver` hands what Redis sends to the local clients.
    pub(crate) fn start(
        url: &str,
        deliver: impl Fn(Target, Message) + Send + Sync + 'static,
    ) -> std::io::Result<Bridge> {
        let address = parse_url(url)?;
        let status = Arc::new(RedisStatus::default());
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        let deliver: Deliver = Arc::new(deliver);
        tokio::spawn(subscriber(address.clone(), status.clone(), deliver.clone()));
        tokio::spawn(publisher(address, status.clone(), queue, deliver));
        Ok(Bridge { outgoing, status })
    }

    /// Publishes through Redis; `false` when Redis is away or behind (the
    /// caller then delivers locally).
    pub(crate) fn publish(&self, target: Target, message: &Message) -> bool {
        if !self.status.is_up() || self.outgoing.try_send((target, encode(message))).is_err() {
            self.status.local_only.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

fn parse_url(url: &str) -> std::io::Result<String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not a redis:// URL: {url}")))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    Ok(if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:6379") })
}

fn backoff() -> Backoff {
    Backoff::new(BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(5)))
}

/// One RESP command: an array of bulk strings.
fn command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A RESP value, as much of it as we need.
#[derive(Debug)]
enum Value {
    Simple,
    Integer,
    Bulk(Option<Vec<u8>>),
    Array(Vec<Value>),
}

/// Most bytes of one bulk string we accept from Redis (a message).
const MAX_BULK: usize = 64 << 20;

async fn read_value(reader: &mut BufReader<TcpStream>) -> std::io::Result<Value> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("redis: {why}"));
    let text = std::str::from_utf8(&line[1..]).map_err(|_| invalid("bad line"))?.trim_end();
    match line.first() {
        Some(b'+') => Ok(Value::Simple),
        Some(b'-') => Err(invalid(text)),
        Some(b':') => Ok(Value::Integer),
        Some(b'$') => {
            let len: i64 = text.parse().map_err(|_| invalid("bad length"))?;
            if len < 0 {
                return Ok(Value::Bulk(None));
            }
            let len = usize::try_from(len).map_err(|_| invalid("bad length"))?;
            if len > MAX_BULK {
                return Err(invalid("bulk string too long"));
            }
            let mut data = vec![0u8; len + 2];
            reader.read_exact(&mut data).await?;
            data.truncate(len);
            Ok(Value::Bulk(Some(data)))
        }
        Some(b'*') => {
            let count: i64 = text.parse().map_err(|_| invalid("bad count"))?;
            let mut items = Vec::new();
            for _ in 0..count.clamp(0, 16) {
                items.push(Box::pin(read_value(reader)).await?);
            }
            Ok(Value::Array(items))
        }
        _ => Err(invalid("unknown reply type")),
    }
}

type Deliver = Arc<dyn Fn(Target, Message) + Send + Sync>;

async fn subscriber(address: String, status: Arc<RedisStatus>, deliver: Deliver) {
    let mut backoff = backoff();
    loop {
        let result: std::io::Result<()> = async {
            let tcp = TcpStream::connect(&address).await?;
            let mut reader = BufReader::new(tcp);
            reader.get_mut().write_all(&command(&[b"PSUBSCRIBE", b"tether:*"])).await?;
            read_value(&mut reader).await?; // the subscription's confirmation
            backoff.reset();
            status.generation.fetch_add(1, Ordering::Relaxed);
            status.up.store(true, Ordering::Relaxed);
            tracing::info!(%address, "redis: subscribed");
            loop {
                // ["pmessage", pattern, channel, payload]
                if let Value::Array(items) = read_value(&mut reader).await? {
                    if let [_, _, Value::Bulk(Some(channel)), Value::Bulk(Some(payload))] = items.as_slice() {
                        if let (Some(target), Some(message)) = (Target::from_channel(channel), decode(payload)) {
                            status.received.fetch_add(1, Ordering::Relaxed);
                            deliver(target, message);
                        }
                    }
                }
            }
        }
        .await;
        if status.up.swap(false, Ordering::Relaxed) {
            status.outages.fetch_add(1, Ordering::Relaxed);
        }
        let delay = backoff.next_delay().unwrap_or(Duration::from_secs(5));
        if let Err(error) = result {
            tracing::warn!(%address, %error, "redis away: serving local clients only, retrying in {delay:?}");
        }
        tokio::time::sleep(delay).await;
    }
}

async fn publisher(
    address: String,
    status: Arc<RedisStatus>,
    mut queue: mpsc::Receiver<(Target, Vec<u8>)>,
    deliver: Deliver,
) {
    let mut backoff = backoff();
    // A message taken from the queue when the connection turned out stale.
    let mut waiting: Option<(Target, Vec<u8>)> = None;
    loop {
        let mut in_flight = None;
        let result: std::io::Result<bool> = async {
            let generation = status.generation.load(Ordering::Relaxed);
            let tcp = TcpStream::connect(&address).await?;
            let mut reader = BufReader::new(tcp);
            backoff.reset();
            status.publisher_up.store(true, Ordering::Relaxed);
            loop {
                let next = match waiting.take() {
                    Some(next) => Some(next),
                    None => queue.recv().await,
                };
                let Some((target, payload)) = next else { return Ok(true) };
                if status.generation.load(Ordering::Relaxed) != generation {
                    // Redis was lost and found again since we connected:
                    // this connection is likely dead; start a fresh one.
                    waiting = Some((target, payload));
                    return Ok(false);
                }
                let channel = target.channel();
                let sending = command(&[b"PUBLISH", channel.as_bytes(), &payload]);
                in_flight = Some((target, payload));
                reader.get_mut().write_all(&sending).await?;
                read_value(&mut reader).await?;
                in_flight = None;
                status.published.fetch_add(1, Ordering::Relaxed);
            }
        }
        .await;
        match result {
            Ok(true) => return, // the hub is gone
            Ok(false) => continue,
            Err(_) => {}
        }
        status.publisher_up.store(false, Ordering::Relaxed);
        // The message Redis may not have taken still reaches local clients.
        if let Some((target, payload)) = in_flight {
            if let Some(message) = decode(&payload) {
                status.local_only.fetch_add(1, Ordering::Relaxed);
                deliver(target, message);
            }
        }
        tokio::time::sleep(backoff.next_delay().unwrap_or(Duration::from_secs(5))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_channels_round_trip() {
        for message in [Message::from("héllo"), Message::from(vec![0u8, 255]), Message::from("")] {
            assert_eq!(decode(&encode(&message)), Some(message));
        }
        assert_eq!(
            Target::from_channel(Target::Topic("room:1".into()).channel().as_bytes()),
            Some(Target::Topic("room:1".into()))
        );
        assert_eq!(Target::from_channel(b"tether:b"), Some(Target::All));
        assert_eq!(Target::from_channel(b"other"), None);
        assert_eq!(parse_url("redis://127.0.0.1:7000/0").unwrap(), "127.0.0.1:7000");
        assert_eq!(parse_url("redis://localhost").unwrap(), "localhost:6379");
        assert!(parse_url("http://x").is_err());
    }

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        assert_eq!(command(&[b"PUBLISH", b"c", b"hi"]), b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\nhi\r\n");
    }
}
