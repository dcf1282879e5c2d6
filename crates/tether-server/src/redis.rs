//! Fan-out across server processes through Redis pub/sub (the
//! [`Engine`] a [`Hub`](crate::hub::Hub) made by
//! [`Hub::with_redis`](crate::hub::Hub::with_redis) publishes through).
//!
//! Channels: `<prefix>:b` for broadcasts, `<prefix>:t:<topic>` for topics,
//! `<prefix>:h` for heartbeats; each process subscribes to `<prefix>:*`.
//! Two deployments with different prefixes share one Redis without seeing
//! each other. Publications travel as [`Frame`]s (numbered per publisher,
//! see [`fanout`](crate::fanout)), so loss is counted, never silent.
//!
//! Two connections: one subscribed, checked by a `PING` every health
//! interval (a half-open link, which TCP may not notice for many minutes,
//! is noticed within the health timeout); one publishing, which sends
//! whatever has queued up as one pipeline, and a heartbeat every health
//! interval. If Redis goes away, each process keeps serving its own
//! clients: what is published meanwhile reaches them only, counted and
//! logged; the bridge reconnects with backoff, logs the recovery, and
//! fan-out resumes.
//!
//! The URL takes what the `redis` crate takes:
//! `redis[s]://[[user]:password@]host[:port][/db]`. For `rediss://` with a
//! private CA, give its PEM in [`RedisConfig::ca_pem`]. Behind Sentinel
//! ([`RedisConfig::sentinel`]) the master is asked for at every
//! connection; on a cluster ([`RedisConfig::cluster`]) the URL lists seed
//! nodes.
//!
//! With history ([`RedisConfig::history`]), a topic publication goes
//! through one Lua script that takes its offset, appends it to the topic's
//! stream and publishes it; a subscription that missed some reads them
//! back from the stream (see [`history`](crate::history)).
//!
//! On a cluster with [`RedisConfig::sharded`], topics use sharded pub/sub
//! instead (see the `sharded` module): broadcasts and heartbeats stay classic.

mod sharded;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use redis::aio::{MultiplexedConnection, PubSubSink};
use redis::{AsyncConnectionConfig, Client};
use tether_proto::backoff::{Backoff, BackoffPolicy};
use tether_proto::Message;
use tokio::sync::{mpsc, watch};

use crate::fanout::{Deliver, Engine, FanoutStatus, Frame, Gap, Own, Receiver, Target};
use crate::history::{BrokerHistory, HistoryConfig, Position};

/// How to reach Redis, and how to use it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://` or `rediss://`, with user, password and database if
    /// needed.
    pub url: String,
    /// The channels' namespace: letters, digits, `_`, `-` and `.`.
    /// Default `tether`.
    pub prefix: String,
    /// PEM certificates to trust for `rediss://` instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// A PEM certificate and key for Redis servers that ask for one.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// How often the subscription is checked and heartbeats are sent.
    /// Default 1 s.
    pub health_interval: Duration,
    /// How long Redis has to answer a `PING`, a publication or a
    /// connection attempt before the link is declared dead. Default 2 s.
    pub health_timeout: Duration,
    /// Topic history in Redis Streams (set by
    /// [`Hub::with_redis`](crate::hub::Hub::with_redis) from the hub's
    /// [`history`](crate::hub::HubConfig::history)): each topic
    /// publication gets its offset from Redis and is kept in the stream
    /// `<prefix>:s:{<topic>}` (its epoch and top offset in the hash
    /// `<prefix>:m:{<topic>}`), so every process agrees on offsets and any
    /// of them can give back what its subscription missed.
    pub history: Option<HistoryConfig>,
    /// Redis behind Sentinel: the master's address is asked of these
    /// sentinels (`host:port`) at every connection, so a failover is
    /// followed; the URL's host and port are then not used (its user,
    /// password, database and scheme are).
    pub sentinel: Option<SentinelConfig>,
    /// Redis Cluster: `url` lists the seed nodes, comma-separated (all
    /// `redis://` or all `rediss://`, with [`ca_pem`](Self::ca_pem) for a
    /// private CA). Keyed
    /// commands (a topic's history) go to the node of their slot, one at
    /// a time (a pipeline may not span slots); publications use classic
    /// pub/sub, which a cluster delivers to every node, so the
    /// subscription is made on any one node.
    pub cluster: bool,
    /// On a cluster (Redis 7+), topic publications use sharded pub/sub:
    /// each stays in the shard of its topic's slot (classic pub/sub copies
    /// every publication to every node), and a process subscribes only
    /// to the topics its clients follow (the hub says which). Needs
    /// [`history`](Self::history): publications of different topics then
    /// travel different paths, and only a topic's own offsets order them
    /// and show what was missed.
    pub sharded: bool,
}

/// Where the sentinels are, and the master's name among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelConfig {
    /// The sentinels, `host:port`.
    pub nodes: Vec<String>,
    /// The name the sentinels monitor the master under.
    pub master: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .field("health_interval", &self.health_interval)
            .field("health_timeout", &self.health_timeout)
            .field("history", &self.history)
            .field("sentinel", &self.sentinel)
            .field("cluster", &self.cluster)
            .field("sharded", &self.sharded)
            .finish()
    }
}

impl RedisConfig {
    /// Redis at `url`, with the defaults.
    #[must_use]
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "tether".to_owned(),
            ca_pem: None,
            client_cert: None,
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(2),
            history: None,
            sentinel: None,
            cluster: false,
            sharded: false,
        }
    }

    /// The same, with channels under `prefix`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }

    /// The client for Redis now: the URL's, or the master the sentinels
    /// name.
    async fn connect_to(&self, fixed: &Client) -> Result<Client, String> {
        let Some(sentinel) = &self.sentinel else { return Ok(fixed.clone()) };
        let mut errors = Vec::new();
        for node in &sentinel.nodes {
            let asked = async {
                let mut connection = Client::open(format!("redis://{node}"))
                    .map_err(|error| error.to_string())?
                    .get_multiplexed_async_connection_with_config(&options(self))
                    .await
                    .map_err(|error| error.to_string())?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&sentinel.master)
                    .query_async::<Option<(String, u16)>>(&mut connection)
                    .await
                    .map_err(|error| error.to_string())
            };
            match tokio::time::timeout(self.health_timeout, asked).await {
                Ok(Ok(Some((host, port)))) => {
                    let url = with_address(&self.url, &host, port);
                    return self.client_for(&url).map_err(|error| error.to_string());
                }
                Ok(Ok(None)) => errors.push(format!("{node}: no master named {:?}", sentinel.master)),
                Ok(Err(error)) => errors.push(format!("{node}: {error}")),
                Err(_) => errors.push(format!("{node}: no answer")),
            }
        }
        Err(format!("no sentinel named the master: {}", errors.join("; ")))
    }

    fn client(&self) -> std::io::Result<Client> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        if self.sharded && !self.cluster {
            return Err(invalid("redis: sharded pub/sub is for a cluster (--redis-cluster)".to_owned()));
        }
        if self.sharded && self.history.is_none() {
            return Err(invalid(
                "redis: sharded pub/sub needs topic history (--history N): topics travel through different \
                 shards, and only their offsets show what was missed"
                    .to_owned(),
            ));
        }
        if self.cluster {
            // Checked now (every URL and the cluster client's rules); the
            // subscription's client is made per node as it connects.
            if self.sentinel.is_some() {
                return Err(invalid(
                    "redis: a cluster fails over by itself; Sentinel is for a single master".to_owned(),
                ));
            }
            self.cluster_client(None).map_err(|error| invalid(format!("redis cluster: {error}")))?;
            return self.client_for(self.nodes()[0]);
        }
        self.client_for(&self.url)
    }

    /// The URLs of the nodes (one, unless a cluster's seeds).
    fn nodes(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).filter(|url| !url.is_empty()).collect()
    }

    /// A connection for commands: to Redis (or the master the sentinels
    /// name), or to the cluster.
    async fn link(&self, fixed: &Client) -> Result<Link, String> {
        if self.cluster {
            let client = self.cluster_client(None).map_err(|error| error.to_string())?;
            let cluster = client.get_async_connection().await.map_err(|error| error.to_string())?;
            let node = self
                .subscription_client(fixed)
                .await?
                .get_multiplexed_async_connection_with_config(&options(self))
                .await
                .map_err(|error| error.to_string())?;
            return Ok(Link::Cluster { cluster, node });
        }
        let client = self.connect_to(fixed).await?;
        client
            .get_multiplexed_async_connection_with_config(&options(self))
            .await
            .map(Link::Single)
            .map_err(|error| error.to_string())
    }

    /// The client to subscribe with: Redis's, the master's, or the first
    /// cluster node that answers (every node gets every publication).
    async fn subscription_client(&self, fixed: &Client) -> Result<Client, String> {
        if !self.cluster {
            return self.connect_to(fixed).await;
        }
        let mut errors = Vec::new();
        for node in self.nodes() {
            let client = self.client_for(node).map_err(|error| error.to_string())?;
            match tokio::time::timeout(self.health_timeout, client.get_multiplexed_async_connection()).await {
                Ok(Ok(_)) => return Ok(client),
                Ok(Err(error)) => errors.push(format!("{}: {error}", redact(node))),
                Err(_) => errors.push(format!("{}: no answer", redact(node))),
            }
        }
        Err(format!("no cluster node answered: {}", errors.join("; ")))
    }

    /// A cluster client for the seed nodes, with the certificates if
    /// any; with `pushes`, on RESP3, sending what nodes push there.
    fn cluster_client(
        &self,
        pushes: Option<mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let mut builder = redis::cluster::ClusterClientBuilder::new(self.nodes())
            .connection_timeout(self.health_timeout)
            .response_timeout(self.health_timeout);
        if let Some(certificates) = self.certificates() {
            builder = builder.certs(certificates);
        }
        if let Some(pushes) = pushes {
            builder = builder.use_protocol(redis::ProtocolVersion::RESP3).push_sender(pushes);
        }
        builder.build()
    }

    /// The certificates to use instead of the system's, if any.
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        if self.ca_pem.is_none() && self.client_cert.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .client_cert
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() }),
            root_cert: self.ca_pem.clone(),
        })
    }

    fn client_for(&self, url: &str) -> std::io::Result<Client> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if self.prefix.is_empty() || !self.prefix.chars().all(valid) {
            return Err(invalid(format!(
                "redis prefix {:?}: use letters, digits, '_', '-' and '.' (':' separates the prefix from the channel)",
                self.prefix
            )));
        }
        let shown = redact(url);
        let client = match self.certificates() {
            Some(certificates) => Client::build_with_tls(url, certificates),
            None => Client::open(url),
        };
        client.map_err(|error| invalid(format!("redis URL {shown}: {error}")))
    }

    /// A target's channel; with sharded pub/sub a topic's is in the slot
    /// of its history keys, so the history script may `SPUBLISH` to it.
    fn channel(&self, target: &Target) -> String {
        match target {
            Target::All => format!("{}:b", self.prefix),
            Target::Topic(topic) if self.sharded => format!("{}:t:{{{}}}", self.prefix, slot_tag(topic)),
            Target::Topic(topic) => format!("{}:t:{topic}", self.prefix),
        }
    }

    /// A topic's stream and its meta hash (epoch `e`, top offset `s`);
    /// the braces keep both in one Redis Cluster slot.
    fn history_keys(&self, topic: &str) -> (String, String) {
        let tag = slot_tag(topic);
        (format!("{}:s:{{{tag}}}", self.prefix), format!("{}:m:{{{tag}}}", self.prefix))
    }

    fn heartbeat_channel(&self) -> String {
        format!("{}:h", self.prefix)
    }

    /// What a channel is for: a target, or heartbeats (`Some(None)`).
    fn target(&self, channel: &str) -> Option<Option<Target>> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        match rest {
            "b" => Some(Some(Target::All)),
            "h" => Some(None),
            _ if self.sharded => {
                let tag = rest.strip_prefix("t:{")?.strip_suffix('}')?;
                Some(Some(Target::Topic(from_slot_tag(tag)?)))
            }
            _ => rest.strip_prefix("t:").map(|topic| Some(Target::Topic(topic.to_owned()))),
        }
    }
}

/// A topic as a Redis Cluster hash tag (what sits between `{` and `}`):
/// the topic itself when it can be, else with `%`, `{` and `}`
/// percent-escaped, and `%` alone for the empty topic (a tag must not be
/// empty or hold a brace, or the slot would be the whole key's). One
/// topic, one tag; two topics, two tags.
fn slot_tag(topic: &str) -> std::borrow::Cow<'_, str> {
    if topic.is_empty() {
        return "%".into();
    }
    if !topic.contains(['%', '{', '}']) {
        return topic.into();
    }
    let mut tag = String::with_capacity(topic.len() + 8);
    for c in topic.chars() {
        match c {
            '%' => tag.push_str("%25"),
            '{' => tag.push_str("%7B"),
            '}' => tag.push_str("%7D"),
            c => tag.push(c),
        }
    }
    tag.into()
}

/// The topic a [`slot_tag`] was made from.
fn from_slot_tag(tag: &str) -> Option<String> {
    if tag == "%" {
        return Some(String::new());
    }
    let mut topic = String::with_capacity(tag.len());
    let mut rest = tag;
    while let Some(at) = rest.find('%') {
        topic.push_str(&rest[..at]);
        let escaped = rest.get(at..at + 3)?;
        topic.push(match escaped {
            "%25" => '%',
            "%7B" => '{',
            "%7D" => '}',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    topic.push_str(rest);
    Some(topic)
}

impl From<&str> for RedisConfig {
    fn from(url: &str) -> RedisConfig {
        RedisConfig::new(url)
    }
}

impl From<String> for RedisConfig {
    fn from(url: String) -> RedisConfig {
        RedisConfig::new(url)
    }
}

/// A connection for commands, to one Redis or to a cluster.
#[derive(Clone)]
enum Link {
    Single(MultiplexedConnection),
    /// Keyed commands go to their slot's node; publications without a key
    /// all go through one node, so they stay in order (the cluster hands
    /// them to every node).
    Cluster {
        cluster: redis::cluster_async::ClusterConnection,
        node: MultiplexedConnection,
    },
}

impl Link {
    /// Sends `unkeyed` (publications, heartbeats: in this order) and
    /// `keyed` (publications with history: in order per topic).
    async fn send(&mut self, unkeyed: &redis::Pipeline, keyed: &redis::Pipeline) -> redis::RedisResult<()> {
        if !unkeyed.is_empty() {
            match self {
                Link::Single(connection) | Link::Cluster { node: connection, .. } => {
                    unkeyed.query_async::<redis::Value>(connection).await?;
                }
            }
        }
        if !keyed.is_empty() {
            self.run::<redis::Value>(keyed).await?;
        }
        Ok(())
    }

    /// Runs `pipe`'s commands: as one pipeline, or — on a cluster, where a
    /// pipeline may not span slots — each on its own, all sent before any
    /// answer is awaited (those for one node leave in order).
    async fn run<T: redis::FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> redis::RedisResult<T> {
        match self {
            Link::Single(connection) => pipe.query_async(connection).await,
            Link::Cluster { cluster: connection, .. } => {
                let sends = pipe.cmd_iter().map(|command| {
                    let mut connection = connection.clone();
                    let command = command.clone();
                    async move { command.query_async::<redis::Value>(&mut connection).await }
                });
                let answers: Vec<redis::Value> =
                    futures_util::future::join_all(sends).await.into_iter().collect::<Result<_, _>>()?;
                redis::from_redis_value(redis::Value::Array(answers)).map_err(Into::into)
            }
        }
    }
}

impl redis::aio::ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Link::Single(connection) => connection.req_packed_command(cmd),
            Link::Cluster { cluster, .. } => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Link::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster { cluster, .. } => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster { cluster, .. } => cluster.get_db(),
        }
    }
}

/// `url` with its host and port replaced.
fn with_address(url: &str, host: &str, port: u16) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let path = rest.find('/').map_or("", |at| &rest[at..]);
    format!("{scheme}://{credentials}{host}:{port}{path}")
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// Most publications waiting for the publishing connection; past it, they
/// reach local clients only (and are counted), rather than queue without
/// bound.
const PUBLISH_QUEUE: usize = 8192;

/// Most publications in one pipeline.
const BATCH: usize = 512;

/// A topic publication with history, in one step: the next offset from
/// the topic's meta hash (made with the given epoch if the stream is new,
/// or was lost), the frame — its head, `offset:epoch\n`, the payload — into
/// the stream (trimmed to the size, kept for the time to live) and out to
/// the topic's channel. Atomic, so offsets, the stream and what
/// subscribers see are in one order.
///
/// KEYS: stream, meta. ARGV: head, payload, size, ttl (s), channel, new
/// epoch, meta ttl (s), `publish` or `spublish` (sharded pub/sub).
const PUBLISH_WITH_HISTORY: &str = r"
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[6]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch)
end
local offset = redis.call('hincrby', KEYS[2], 's', 1)
redis.call('expire', KEYS[2], ARGV[7])
local frame = ARGV[1] .. offset .. ':' .. epoch .. '\n' .. ARGV[2]
redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[3], offset .. '-0', 'f', frame)
redis.call('expire', KEYS[1], ARGV[4])
redis.call(ARGV[8], ARGV[5], frame)
return offset
";

/// The Redis engine: the publishing side, held by the hub; the two
/// connections run as tasks in the runtime it was started in.
#[derive(Debug)]
pub struct Redis {
    outgoing: mpsc::Sender<(Target, Message)>,
    status: Arc<FanoutStatus>,
    /// Dropped with the engine: the subscription ends (the publisher ends
    /// when the queue closes).
    _stop: watch::Sender<()>,
    history: bool,
    /// Reads topic histories for subscribers (see [`Engine::read_history`]).
    reader: Arc<HistoryReader>,
    links: Arc<Links>,
    /// What the hub follows, to the sharded subscription (with sharded
    /// pub/sub only).
    follow: Option<mpsc::UnboundedSender<sharded::Follow>>,
    health_timeout: Duration,
}

/// A connection for reading histories, made on first use and again after
/// it fails; the runtime the engine was started in runs the reads.
struct HistoryReader {
    client: Client,
    config: Arc<RedisConfig>,
    runtime: tokio::runtime::Handle,
    connection: tokio::sync::Mutex<Option<Link>>,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryReader").finish_non_exhaustive()
    }
}

/// Where a topic's stream is, made if it does not exist yet (so a
/// subscriber's position is one later publications continue): its epoch
/// and top offset. KEYS: meta, stream. ARGV: new epoch, meta ttl (s).
const STREAM_TOP: &str = r"
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', epoch, 's', 0)
  redis.call('expire', KEYS[1], ARGV[2])
end
return {epoch, redis.call('hget', KEYS[1], 's') or '0'}
";

impl HistoryReader {
    async fn read(&self, topic: &str, after: Option<u64>) -> Result<BrokerHistory, String> {
        let mut connection = {
            let mut held = self.connection.lock().await;
            match held.as_ref() {
                Some(connection) => connection.clone(),
                None => {
                    let made = self.config.link(&self.client).await?;
                    *held = Some(made.clone());
                    made
                }
            }
        };
        let result = self.read_with(&mut connection, topic, after).await;
        if result.is_err() {
            *self.connection.lock().await = None;
        }
        result
    }

    async fn read_with(&self, connection: &mut Link, topic: &str, after: Option<u64>) -> Result<BrokerHistory, String> {
        let config = &self.config;
        let (stream, meta) = config.history_keys(topic);
        let ttl =
            config.history.as_ref().map_or(86_400, |history| history.ttl.as_secs().saturating_mul(100).max(86_400));
        let (epoch, top): (String, u64) = redis::Script::new(STREAM_TOP)
            .key(&meta)
            .key(&stream)
            .arg(format!("{:016x}", rand::random::<u64>()))
            .arg(ttl)
            .invoke_async(connection)
            .await
            .map_err(|error| error.to_string())?;
        let mut publications = Vec::new();
        if let Some(after) = after.filter(|after| *after < top) {
            for frame in read_stream(connection, config, topic, after, top).await? {
                if let (Some(message), Some(position)) = (frame.message, frame.position) {
                    publications.push((position, message));
                }
            }
        }
        Ok(BrokerHistory { top: Position { offset: top, epoch }, publications })
    }
}

/// The connections' state: fan-out is up when all are.
#[derive(Debug, Default)]
struct Links {
    subscribed: std::sync::atomic::AtomicBool,
    publishing: std::sync::atomic::AtomicBool,
    /// The sharded subscription (always up without sharded pub/sub).
    sharded: std::sync::atomic::AtomicBool,
    /// When fan-out went down, for the recovery's log line.
    down_since: std::sync::Mutex<Option<Instant>>,
}

impl Links {
    fn set(&self, link: &std::sync::atomic::AtomicBool, up: bool, status: &FanoutStatus, config: &RedisConfig) {
        use std::sync::atomic::Ordering::Relaxed;
        link.store(up, Relaxed);
        let both = self.subscribed.load(Relaxed) && self.publishing.load(Relaxed) && self.sharded.load(Relaxed);
        let was = status.set_up(both);
        let mut down_since = self.down_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if was && !both {
            status.count_outage();
            *down_since = Some(Instant::now());
            tracing::warn!(
                url = %redact(&config.url),
                "redis: fan-out down; publications reach this server's clients only until it is back"
            );
        } else if !was && both {
            let url = redact(&config.url);
            match down_since.take() {
                // Said at the default level, with what the outage cost
                // (publications from other servers missed meanwhile show
                // up as they are detected, each with a warning of its own).
                Some(since) => tracing::warn!(
                    %url,
                    down_for = ?since.elapsed(),
                    local_only_total = status.local_only(),
                    unconfirmed_total = status.unconfirmed(),
                    "redis: fan-out back"
                ),
                None => tracing::info!(%url, prefix = %config.prefix, "redis: fan-out up"),
            }
        }
    }
}

impl Redis {
    /// Starts both connections (in the background, reconnecting for ever;
    /// must be called inside a tokio runtime); `deliver` hands what Redis
    /// sends to the local clients.
    ///
    /// # Errors
    /// The configuration is unusable (the URL, the prefix, the
    /// certificates). Redis being away is not an error.
    pub fn start(config: RedisConfig, deliver: Deliver) -> std::io::Result<Redis> {
        let client = config.client()?;
        let history = config.history.is_some();
        let config = Arc::new(config);
        let status = Arc::new(FanoutStatus::default());
        let own = Arc::new(Own::new());
        let links = Arc::new(Links::default());
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        let (stop, stopped) = watch::channel(());
        let reader = Arc::new(HistoryReader {
            client: client.clone(),
            config: config.clone(),
            runtime: tokio::runtime::Handle::current(),
            connection: tokio::sync::Mutex::new(None),
        });
        let receiver = Receiver::new(own.clone(), deliver.clone(), status.clone());
        let health_timeout = config.health_timeout;
        let sharded = config.sharded;
        let context = Context { client, config, status: status.clone(), links: links.clone() };
        let follow = if sharded {
            let (follow, commands) = mpsc::unbounded_channel();
            let receiver = Receiver::new(own.clone(), deliver.clone(), status.clone());
            tokio::spawn(sharded::run(context.clone(), receiver, commands, stopped.clone()));
            Some(follow)
        } else {
            links.sharded.store(true, std::sync::atomic::Ordering::Relaxed);
            None
        };
        tokio::spawn(subscriber(context.clone(), receiver, stopped));
        tokio::spawn(publisher(context, own, queue, deliver));
        Ok(Redis { outgoing, status, _stop: stop, history, reader, links, follow, health_timeout })
    }
}

impl Engine for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// Only the publishing link must be up: what our own subscription
    /// misses meanwhile comes back to our clients when it resubscribes
    /// (kept here, or read from the topic's history).
    fn publish(&self, target: &Target, message: &Message) -> bool {
        let publishing = self.links.publishing.load(std::sync::atomic::Ordering::Relaxed);
        if !publishing || self.outgoing.try_send((target.clone(), message.clone())).is_err() {
            let n = self.status.count_local_only();
            // The first of an outage is logged when it goes down; a full
            // queue is logged once per thousand.
            if publishing && n % 1000 == 1 {
                tracing::warn!(
                    local_only = n,
                    "redis: publishing is behind; publications reach this server's clients only"
                );
            }
            return false;
        }
        true
    }

    fn status(&self) -> &FanoutStatus {
        &self.status
    }

    fn keeps_history(&self) -> bool {
        self.history
    }

    fn hears_every_topic(&self) -> bool {
        self.follow.is_none()
    }

    fn follow(&self, topic: &str, follow: bool) {
        if let Some(commands) = &self.follow {
            let command = if follow { sharded::Follow::Start } else { sharded::Follow::Stop };
            let _ = commands.send(command(topic.to_owned()));
        }
    }

    fn read_history(&self, topic: &str, after: Option<u64>, done: Box<dyn FnOnce(Option<BrokerHistory>) + Send>) {
        let reader = self.reader.clone();
        let topic = topic.to_owned();
        // With sharded pub/sub, the topic is subscribed before its stream
        // is read.
        let barrier = self.follow.as_ref().map(|commands| {
            let (answer, barrier) = tokio::sync::oneshot::channel();
            let _ = commands.send(sharded::Follow::Barrier(answer));
            barrier
        });
        let limit = self.health_timeout;
        self.reader.runtime.spawn(async move {
            if let Some(barrier) = barrier {
                if !sharded::passed(barrier, limit).await {
                    tracing::warn!(%topic, "redis: the sharded subscription is down; the subscriber is told recovery failed");
                    done(None);
                    return;
                }
            }
            match reader.read(&topic, after).await {
                Ok(history) => done(Some(history)),
                Err(error) => {
                    tracing::warn!(%topic, %error, "redis: cannot read the topic's history; the subscriber is told recovery failed");
                    done(None);
                }
            }
        });
    }
}

#[derive(Clone)]
struct Context {
    client: Client,
    config: Arc<RedisConfig>,
    status: Arc<FanoutStatus>,
    links: Arc<Links>,
}

fn backoff() -> Backoff {
    Backoff::new(BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(5)))
}

/// Why a link ended.
enum Ended {
    /// The engine was dropped.
    Stopped,
    Failed(String),
}

async fn subscriber(context: Context, mut receiver: Receiver, mut stopped: watch::Receiver<()>) {
    let Context { config, status, links, .. } = &context;
    let mut backoff = backoff();
    loop {
        let ended = tokio::select! {
            ended = subscribe(&context, &mut receiver, &mut backoff) => ended,
            _ = stopped.changed() => Ended::Stopped,
        };
        links.set(&links.subscribed, false, status, config);
        let Ended::Failed(error) = ended else { return };
        let delay = backoff.next_delay().unwrap_or(Duration::from_secs(5));
        tracing::warn!(url = %redact(&config.url), %error, "redis: subscription lost; retrying in {delay:?}");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stopped.changed() => return,
        }
    }
}

async fn subscribe(context: &Context, receiver: &mut Receiver, backoff: &mut Backoff) -> Ended {
    let Context { client, config, status, links } = context;
    let timeout = config.health_timeout;
    let subscribing = match config.subscription_client(client).await {
        Ok(client) => client,
        Err(error) => return Ended::Failed(error),
    };
    let pubsub = match tokio::time::timeout(timeout, subscribing.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(error)) => return Ended::Failed(error.to_string()),
        Err(_) => return Ended::Failed(format!("no answer within {timeout:?}")),
    };
    let (mut sink, mut stream) = pubsub.split();
    let pattern = format!("{}:*", config.prefix);
    match tokio::time::timeout(timeout, sink.psubscribe(&pattern)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Ended::Failed(error.to_string()),
        Err(_) => return Ended::Failed(format!("no answer to PSUBSCRIBE within {timeout:?}")),
    }
    // With history, a second connection reads the streams: what the
    // subscription missed while it was down, and any gap it finds.
    let mut reader = match &config.history {
        None => None,
        Some(_) => match config.link(client).await {
            Ok(reader) => Some(reader),
            Err(error) => return Ended::Failed(error),
        },
    };
    if let Some(reader) = &mut reader {
        if let Err(error) = catch_up(reader, config, receiver).await {
            return Ended::Failed(error);
        }
    }
    backoff.reset();
    links.set(&links.subscribed, true, status, config);
    let mut check = tokio::time::interval(config.health_interval);
    check.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return Ended::Failed("connection closed".to_owned()) };
                // Heartbeats come on their own channel, for no target.
                let Some(target) = config.target(message.get_channel_name()) else { continue };
                let Some(frame) = Frame::decode(message.get_payload_bytes()) else { continue };
                if let Err(error) = receive(&mut reader, config, receiver, target.unwrap_or(Target::All), frame).await {
                    return Ended::Failed(error);
                }
            }
            _ = check.tick() => {
                if let Err(error) = ping(&mut sink, timeout).await {
                    return Ended::Failed(error);
                }
            }
        }
    }
}

/// Delivers what arrived on `target`'s channel, after what is missing
/// before it in its topic (read from the stream, if there is a `reader`).
async fn receive(
    reader: &mut Option<Link>,
    config: &RedisConfig,
    receiver: &mut Receiver,
    target: Target,
    frame: Frame,
) -> Result<(), String> {
    if let (Some(reader), Some(gap)) = (&mut *reader, receiver.gap(&target, &frame)) {
        fill(reader, config, receiver, &gap).await?;
    }
    let missed = receiver.accept(target, frame, Instant::now());
    if let (Some(reader), true) = (reader, missed > 0) {
        // Other topics may have lost publications too.
        catch_up(reader, config, receiver).await?;
    }
    Ok(())
}

fn options(config: &RedisConfig) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.health_timeout))
        .set_response_timeout(Some(config.health_timeout))
}

/// Most publications read from a stream at once.
const READ_AT_ONCE: usize = 1000;

/// Reads the publications of `topic` after offset `after` (up to `upto`)
/// from its stream.
async fn read_stream(
    reader: &mut Link,
    config: &RedisConfig,
    topic: &str,
    after: u64,
    upto: u64,
) -> Result<Vec<Frame>, String> {
    let (stream, _) = config.history_keys(topic);
    let mut frames = Vec::new();
    let mut next = after + 1;
    while next <= upto {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(format!("{next}-0"))
            .arg(format!("{upto}-0"))
            .arg("COUNT")
            .arg(READ_AT_ONCE)
            .query_async(reader)
            .await
            .map_err(|error| error.to_string())?;
        let read = reply.ids.len();
        for entry in reply.ids {
            let bytes = entry.map.get("f").cloned().and_then(|value| redis::from_redis_value::<Vec<u8>>(value).ok());
            if let Some(frame) = bytes.as_deref().and_then(Frame::decode) {
                next = frame.position.as_ref().map_or(next, |position| position.offset + 1);
                frames.push(frame);
            }
        }
        if read < READ_AT_ONCE {
            break;
        }
    }
    Ok(frames)
}

/// Closes a gap in a topic from its stream (what Redis still keeps of it).
async fn fill(reader: &mut Link, config: &RedisConfig, receiver: &mut Receiver, gap: &Gap) -> Result<(), String> {
    let frames = read_stream(reader, config, &gap.topic, gap.after, gap.upto).await?;
    receiver.fill(gap, frames);
    Ok(())
}

/// For every topic with history seen here, reads what was published
/// since the last publication delivered here (after a reconnect, or once
/// a publisher's numbers showed that some were missed).
async fn catch_up(reader: &mut Link, config: &RedisConfig, receiver: &mut Receiver) -> Result<(), String> {
    let known: Vec<(String, Position)> =
        receiver.tops().map(|(topic, position)| (topic.clone(), position.clone())).collect();
    if known.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (topic, _) in &known {
        pipe.cmd("HMGET").arg(config.history_keys(topic).1).arg("e").arg("s");
    }
    let tops: Vec<(Option<String>, Option<u64>)> = reader.run(&pipe).await.map_err(|error| error.to_string())?;
    for ((topic, position), (epoch, top)) in known.into_iter().zip(tops) {
        let (Some(epoch), Some(top)) = (epoch, top) else { continue };
        if epoch == position.epoch && top > position.offset {
            let gap = Gap { topic, after: position.offset, upto: top, epoch };
            fill(reader, config, receiver, &gap).await?;
        }
    }
    Ok(())
}

/// A `PING` on the subscribed connection, answered within `timeout`.
async fn ping(sink: &mut PubSubSink, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer to PING within {timeout:?} (a half-open link)")),
    }
}

async fn publisher(context: Context, own: Arc<Own>, mut queue: mpsc::Receiver<(Target, Message)>, deliver: Deliver) {
    let Context { client, config, status, links } = &context;
    let mut backoff = backoff();
    loop {
        let ended = match config.link(client).await {
            Ok(connection) => {
                backoff.reset();
                links.set(&links.publishing, true, status, config);
                publish(connection, &context, &own, &mut queue, &deliver).await
            }
            Err(error) => Ended::Failed(error),
        };
        links.set(&links.publishing, false, status, config);
        match ended {
            Ended::Stopped => return,
            Ended::Failed(error) => {
                let delay = backoff.next_delay().unwrap_or(Duration::from_secs(5));
                tracing::warn!(url = %redact(&config.url), %error, "redis: publishing connection lost; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn publish(
    mut connection: Link,
    context: &Context,
    own: &Own,
    queue: &mut mpsc::Receiver<(Target, Message)>,
    deliver: &Deliver,
) -> Ended {
    let Context { config, status, .. } = context;
    let heartbeat_channel = config.heartbeat_channel();
    // A restarted Redis has forgotten its scripts: loaded on every connection.
    let script = match &config.history {
        None => None,
        Some(history) => match redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(PUBLISH_WITH_HISTORY)
            .query_async::<String>(&mut connection)
            .await
        {
            Ok(sha) => Some((sha, history.clone())),
            Err(error) => return Ended::Failed(format!("cannot load the history script: {error}")),
        },
    };
    let mut heartbeat = tokio::time::interval(config.health_interval);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Publications and heartbeats; publications with history (keyed by
        // their topic: on a cluster each goes to its topic's node).
        let (mut pipe, mut keyed) = (redis::pipe(), redis::pipe());
        tokio::select! {
            taken = queue.recv_many(&mut batch, BATCH) => {
                if taken == 0 {
                    return Ended::Stopped; // the hub is gone
                }
            }
            _ = heartbeat.tick() => {
                pipe.publish(&heartbeat_channel, own.heartbeat().encode()).ignore();
            }
        }
        let mut sent = Batch::default();
        for (target, message) in batch.drain(..) {
            let history = match (&script, &target) {
                (Some(script), Target::Topic(topic)) => Some((script, topic)),
                _ => None,
            };
            let frame = own.number(&target, &message, history.is_some());
            sent.add(&frame);
            match history {
                None => {
                    pipe.publish(config.channel(&target), frame.encode()).ignore();
                }
                Some(((sha, history), topic)) => {
                    let (stream, meta) = config.history_keys(topic);
                    let ttl = history.ttl.as_secs().max(1);
                    keyed
                        .cmd("EVALSHA")
                        .arg(sha)
                        .arg(2)
                        .arg(stream)
                        .arg(meta)
                        .arg(frame.head(true))
                        .arg(message.as_bytes())
                        .arg(history.size.max(1))
                        .arg(ttl)
                        .arg(config.channel(&target))
                        .arg(format!("{:016x}", rand::random::<u64>()))
                        .arg(ttl.saturating_mul(100).max(86_400))
                        .arg(if config.sharded { "spublish" } else { "publish" })
                        .ignore();
                }
            }
        }
        if let Err(error) = connection.send(&pipe, &keyed).await {
            if let Some(last) = sent.last_numbered {
                // Redis may or may not have taken them: our clients get
                // them now (once), other servers perhaps not.
                let unconfirmed = own.deliver_unconfirmed(last, deliver, status);
                if unconfirmed > 0 {
                    tracing::warn!(
                        unconfirmed,
                        "redis: publications on their way when the link failed; delivered here, other servers may not have them"
                    );
                }
            }
            if sent.in_history > 0 {
                // Those Redis took come back, or are read from the stream;
                // the others reached nobody.
                status.count_unconfirmed(sent.in_history);
                tracing::warn!(
                    unconfirmed = sent.in_history,
                    "redis: topic publications on their way when the link failed; whoever's Redis took reach every server, \
                     the others reach none"
                );
            }
            return Ended::Failed(error.to_string());
        }
        status.count_published(sent.publications);
    }
}

/// What one pipeline carries, for when it fails.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    /// The last publication numbered here (those up to it not yet
    /// delivered here are, if the pipeline fails).
    last_numbered: Option<u64>,
    /// Publications in all.
    publications: usize,
    /// Topic publications into a history: numbered by the broker, not here.
    in_history: u64,
}

impl Batch {
    fn add(&mut self, frame: &Frame) {
        self.publications += 1;
        if frame.position.is_none() && frame.seq == 0 {
            self.in_history += 1;
        } else {
            self.last_numbered = Some(frame.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_keeps_its_credentials_and_database_when_its_address_changes() {
        assert_eq!(with_address("redis://u:p@old:1/3", "10.0.0.2", 6380), "redis://u:p@10.0.0.2:6380/3");
        assert_eq!(with_address("rediss://old", "h", 1), "rediss://h:1");
        assert_eq!(redact("redis://user:secret@host:1/0"), "redis://user:***@host:1/0");
        assert_eq!(redact("redis://host"), "redis://host");
    }

    #[test]
    fn channels_are_named_under_the_prefix_and_read_back() {
        let config = RedisConfig::new("redis://x").with_prefix("blue");
        for target in [Target::All, Target::Topic("room:1".into())] {
            assert_eq!(config.target(&config.channel(&target)), Some(Some(target)));
        }
        assert_eq!(config.target(&config.heartbeat_channel()), Some(None));
        assert_eq!(config.target("green:b"), None);
        assert_eq!(config.target("bluex:b"), None);
        assert_eq!(config.history_keys("room"), ("blue:s:{room}".to_owned(), "blue:m:{room}".to_owned()));
        let mut sharded = config.clone();
        sharded.sharded = true;
        assert_eq!(sharded.channel(&Target::Topic("room".into())), "blue:t:{room}");
        for topic in ["room", "", "%", "{", "}x", "a{b}c%7B", "100%"] {
            let target = Target::Topic(topic.into());
            assert_eq!(sharded.target(&sharded.channel(&target)), Some(Some(target)), "{topic:?}");
        }
        assert_eq!(sharded.target(&sharded.channel(&Target::All)), Some(Some(Target::All)));
    }

    #[test]
    fn a_failed_batch_knows_its_last_numbered_publication_whatever_follows_it() {
        let own = Own::new();
        let mut batch = Batch::default();
        let room = Target::Topic("room".into());
        batch.add(&own.number(&Target::All, &Message::from("x"), false));
        batch.add(&own.number(&room, &Message::from("y"), true));
        assert_eq!(batch, Batch { last_numbered: Some(1), publications: 2, in_history: 1 });
    }

    #[test]
    fn every_topic_has_its_own_hash_tag_without_braces_in_it() {
        let topics = ["room", "", "%", "%25", "{", "%7B", "}x", "a{b}c", "é{"];
        let tags: Vec<String> = topics.iter().map(|topic| slot_tag(topic).into_owned()).collect();
        for (topic, tag) in topics.iter().zip(&tags) {
            assert!(!tag.is_empty() && !tag.contains(['{', '}']), "{topic:?} -> {tag:?}");
            assert_eq!(from_slot_tag(tag).as_deref(), Some(*topic));
        }
        let distinct: std::collections::HashSet<&String> = tags.iter().collect();
        assert_eq!(distinct.len(), topics.len(), "{tags:?}");
        assert_eq!(slot_tag("room"), "room", "a plain topic is its own tag");
        assert_eq!(from_slot_tag("%7"), None);
    }
}
