//! `tether serve`: an echo, broadcast or topics server with what the
//! library offers exposed as flags.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use tether::hub::{HubConfig, Overflow};
use tether::reactor::{Conn, Reactor};
use tether::{CloseCode, Config, Message, Server, ServerConfig, WebSocket};

use crate::{memory, say, shutdown_signal, topics};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on: an IP address or a host name, with a port.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: String,
    /// Largest message accepted, in bytes (decompressed); larger ones are refused with 1009.
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// PEM certificate chain: serve wss:// (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Do not negotiate permessage-deflate.
    #[arg(long)]
    no_compression: bool,
    /// Send every message a client sends to every connected client (instead of echoing it).
    #[arg(long, conflicts_with = "topics")]
    broadcast: bool,
    /// Topics: clients subscribe and publish with JSON messages (see `tether-cli/src/topics.rs`).
    #[arg(long)]
    topics: bool,
    /// Serve a small chat page at / (on top of --topics, which it implies).
    #[arg(long)]
    demo: bool,
    /// Serve the files under DIR over plain HTTP on the same port (read once, at start).
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Answer `GET PATH` with 200 "ok" on the same port (a health check for load balancers).
    #[arg(long, value_name = "PATH")]
    health: Option<String>,
    /// Fan broadcasts and topics out to every server using this Redis:
    /// `redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The Redis channels' namespace: servers with different prefixes on one Redis do not see
    /// each other's messages.
    #[arg(long, value_name = "PREFIX", default_value = "tether", requires = "redis")]
    redis_prefix: String,
    /// Redis behind Sentinel: ask these sentinels (HOST:PORT, comma-separated) for the
    /// master at every connection, so a failover is followed; --redis then gives the
    /// scheme, user, password and database.
    #[arg(long, value_name = "HOST:PORT,…", value_delimiter = ',', requires = "redis")]
    redis_sentinel: Vec<String>,
    /// --redis lists the seed nodes of a Redis Cluster, comma-separated.
    #[arg(long, requires = "redis")]
    redis_cluster: bool,
    /// On the cluster (Redis 7+), topics use sharded pub/sub: a publication stays in its
    /// topic's shard, and each server subscribes only to the topics its clients follow.
    /// Needs --history.
    #[arg(long, requires_all = ["redis_cluster", "history"])]
    redis_sharded: bool,
    /// The master's name among the sentinels.
    #[arg(long, value_name = "NAME", default_value = "mymaster", requires = "redis_sentinel")]
    redis_master: String,
    /// PEM certificates to trust for a rediss:// URL, instead of the system's.
    #[arg(long, value_name = "FILE", requires = "redis")]
    redis_ca: Option<PathBuf>,
    /// Check the Redis links every this many milliseconds (PING, heartbeats); a link silent
    /// for twice as long is declared dead and reconnected.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "redis")]
    redis_health_ms: u64,
    /// Serve Prometheus metrics at /metrics on the WebSocket port, behind --allowed-origin,
    /// --basic-auth and --bearer-token like any request.
    #[arg(long)]
    metrics: bool,
    /// Serve Prometheus metrics at /metrics on an address of their own (HOST:PORT), not on
    /// the WebSocket port.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Seconds to wait for clients' close handshakes (at shutdown, SIGINT or SIGTERM, and for
    /// every close).
    #[arg(long, default_value_t = 10.0)]
    close_timeout: f64,
    /// Which server runs the connections: `reactor` (event loops with callbacks, one per
    /// --threads; the default) or `tokio` (a task per connection). Both serve ws:// and wss://.
    #[arg(long, value_enum, default_value_t = Engine::Reactor)]
    engine: Engine,
    /// Event loops (reactor) or worker threads (tokio). Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Most connections open at once (all threads together); past it, new ones get 503 at once.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Browser origin allowed to connect (repeatable); others get 403. Default: all.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Seconds between keepalive pings to each client, or `off`.
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = seconds_or_off)]
    ping_interval: SecondsOrOff,
    /// Seconds to wait for a pong before closing with 1011, or `off`.
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = seconds_or_off)]
    ping_timeout: SecondsOrOff,
    /// Seconds without any frame from a client before closing it with 1001, or `off`.
    #[arg(long, value_name = "SECS", default_value = "off", value_parser = seconds_or_off)]
    idle_timeout: SecondsOrOff,
    /// Seconds a client has for TLS and its upgrade request.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    open_timeout: f64,
    /// What to do with a client whose mailbox is full (--broadcast, --topics).
    #[arg(long, value_enum, default_value_t = OverflowArg::Close)]
    overflow: OverflowArg,
    /// Most bytes waiting for one client before --overflow applies.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_buffered: usize,
    /// Keep the last N publications of each topic (--topics), so a client that reconnects
    /// with its last offset gets what it missed. With --redis, in Redis Streams: every server
    /// agrees on offsets.
    #[arg(long, value_name = "N")]
    history: Option<usize>,
    /// How long each publication is kept in the history.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "history")]
    history_ttl: u64,
    /// Require HTTP Basic credentials, as USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "bearer_token")]
    basic_auth: Option<String>,
    /// Require `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN")]
    bearer_token: Option<String>,
    /// A subprotocol the server speaks (repeatable); the client's first choice among them is taken.
    #[arg(long = "subprotocol", value_name = "NAME")]
    subprotocols: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Engine {
    Reactor,
    Tokio,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OverflowArg {
    /// Drop the message that does not fit.
    DropNewest,
    /// Drop the oldest waiting messages until it fits.
    DropOldest,
    /// Keep only the newest message.
    KeepLatest,
    /// Close the client with 1013 (try again later).
    Close,
}

/// A duration in seconds, or `off` (`None`).
#[derive(Clone, Copy)]
struct SecondsOrOff(Option<Duration>);

impl ServeArgs {
    /// Event loops or worker threads to run.
    pub fn threads(&self) -> usize {
        self.threads.map_or_else(|| std::thread::available_parallelism().map_or(1, usize::from), usize::from)
    }
}

fn seconds_or_off(text: &str) -> Result<SecondsOrOff, String> {
    if matches!(text, "off" | "none") {
        return Ok(SecondsOrOff(None));
    }
    let seconds: f64 = text.parse().map_err(|_| format!("{text:?} is neither a number of seconds nor `off`"))?;
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text} is not a positive number of seconds (say `off` to turn it off)"));
    }
    Ok(SecondsOrOff(Some(Duration::from_secs_f64(seconds))))
}

/// The first address `text` resolves to (`localhost:9001` as well as `127.0.0.1:9001`).
fn resolve(text: &str) -> anyhow::Result<SocketAddr> {
    let mut addresses = text.to_socket_addrs().with_context(|| format!("cannot resolve {text:?} (HOST:PORT)"))?;
    addresses.next().with_context(|| format!("{text:?} resolves to no address"))
}

/// What the server does with each message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Echo,
    Broadcast,
    Topics,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Echo => "echo",
            Role::Broadcast => "broadcast",
            Role::Topics => "topics",
        }
    }
}

/// The server's configuration from the flags.
fn config(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::default();
    let mut protocol = Config::default()
        .with_max_message_size(args.max_message_size)
        .with_close_timeout(Duration::from_secs_f64(args.close_timeout))
        .with_keepalive(args.ping_interval.0, args.ping_timeout.0)
        .with_idle_timeout(args.idle_timeout.0);
    if args.no_compression {
        protocol = protocol.with_deflate(None);
    }
    protocol.validate().context("invalid --ping-interval/--ping-timeout/--idle-timeout")?;
    config.protocol = protocol;
    config.open_timeout = Duration::from_secs_f64(args.open_timeout);
    config.max_connections = args.max_connections;
    if !args.allowed_origins.is_empty() {
        config.allowed_origins = Some(args.allowed_origins.clone());
    }
    config.protocols.clone_from(&args.subprotocols);
    if let Some(credentials) = &args.basic_auth {
        let Some((user, password)) = credentials.split_once(':') else {
            bail!("--basic-auth must be USER:PASSWORD");
        };
        config.hook = Some(tether::admission::basic_auth("tether", user, password));
    }
    if let Some(token) = &args.bearer_token {
        config.hook = Some(tether::admission::bearer_auth(token));
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(tether::tls::server_config_from_pem(cert, key)?);
    }
    config.http = http_handler(args.demo, args.static_dir.clone(), args.health.clone())?;
    Ok(config)
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = config(&args)?;
    let listen = resolve(&args.listen)?;
    let close_timeout = config.protocol.close_timeout;
    let mut metrics_at = None;
    let mut hub_config = HubConfig::default();
    hub_config.max_buffered = args.max_buffered;
    hub_config.overflow = match args.overflow {
        OverflowArg::DropNewest => Overflow::DropNewest,
        OverflowArg::DropOldest => Overflow::DropOldest,
        OverflowArg::KeepLatest => Overflow::KeepLatest,
        OverflowArg::Close => Overflow::Close(CloseCode(1013)),
    };
    hub_config.history = args
        .history
        .map(|size| tether::history::HistoryConfig::new(size, std::time::Duration::from_secs(args.history_ttl)));
    let hub = match &args.redis {
        Some(url) => {
            let mut redis = tether::redis::RedisConfig::new(url.as_str()).with_prefix(args.redis_prefix.as_str());
            if let Some(path) = &args.redis_ca {
                let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
                redis.ca_pem = Some(pem);
            }
            redis.cluster = args.redis_cluster;
            redis.sharded = args.redis_sharded;
            if !args.redis_sentinel.is_empty() {
                redis.sentinel = Some(tether::redis::SentinelConfig {
                    nodes: args.redis_sentinel.clone(),
                    master: args.redis_master.clone(),
                });
            }
            redis.health_interval = std::time::Duration::from_millis(args.redis_health_ms.max(1));
            redis.health_timeout = redis.health_interval * 2;
            tether::Hub::with_redis(hub_config, redis)?
        }
        None => tether::Hub::new(hub_config),
    };
    config.hub = Some(hub.clone());
    tokio::spawn(memory::trim_after_departures(hub.clone()));
    if args.metrics || args.metrics_listen.is_some() {
        let metrics = tether::metrics::Metrics::new().with_hub(hub.clone());
        if let Some(address) = &args.metrics_listen {
            let address = resolve(address)?;
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} for metrics"))?;
            metrics_at = Some(listener.local_addr()?);
            tokio::spawn(tether::server::serve_metrics(listener, metrics.clone()));
        }
        if args.metrics {
            config.metrics = Some(metrics);
        } else {
            // Counted, but served only on their own address.
            config.metrics = Some(metrics.hidden());
        }
    }
    let role = match (args.broadcast, args.topics || args.demo) {
        (true, _) => Role::Broadcast,
        (_, true) => Role::Topics,
        _ => Role::Echo,
    };
    if role == Role::Topics {
        hub.set_render(topics::render());
    }
    if args.engine == Engine::Tokio {
        return serve_tokio(listen, config, role, &hub, metrics_at).await;
    }
    // The reactor: event loops own the connections (no task per
    // connection: an idle client costs a few hundred bytes), TLS included.
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
    let threads = args.threads();
    let reactor =
        Reactor::bind_threads(listen, config, threads).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = reactor.local_addr()?;
    announce(role, scheme, addr, metrics_at);
    let handle = reactor.handle();
    let mut running = tokio::task::spawn_blocking(move || reactor.run_with(|_| Serving { role }));
    tokio::select! {
        result = &mut running => result??,
        () = shutdown_signal() => {
            say(&format!("tether: shutting down, closing {} connections", hub.count()));
            // Graceful: no new connections, 1001 to everyone, wait for
            // their close handshakes (each bounded by the close timeout).
            handle.shutdown();
            if tokio::time::timeout(close_timeout + Duration::from_secs(1), running).await.is_err() {
                say(&format!("tether: {} connections did not close in time", hub.count()));
            }
        }
    }
    Ok(())
}

/// The reactor's service: the role's answer to each message.
struct Serving {
    role: Role,
}

impl tether::reactor::Service for Serving {
    fn on_message(&mut self, conn: &mut Conn<'_>, message: Message) {
        match self.role {
            Role::Echo => {
                let _ = conn.send(&message);
            }
            Role::Broadcast => {
                if let Some(hub) = conn.hub() {
                    hub.broadcast(&message);
                }
            }
            Role::Topics => {
                if let Some(answer) = topics::answer(conn, &message) {
                    let _ = conn.send(&answer);
                }
            }
        }
    }
}

/// The tokio server, a task per connection.
async fn serve_tokio(
    listen: SocketAddr,
    config: ServerConfig,
    role: Role,
    hub: &tether::Hub,
    metrics_at: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
    let close_timeout = config.protocol.close_timeout;
    let server = Server::bind(listen, config).await.with_context(|| format!("cannot listen on {listen}"))?;
    announce(role, scheme, server.local_addr()?, metrics_at);
    let serving = match role {
        Role::Broadcast => tokio::spawn(server.serve(broadcast)),
        Role::Topics => tokio::spawn(server.serve(topics::handler)),
        Role::Echo => tokio::spawn(server.serve(echo)),
    };
    tokio::select! {
        result = serving => result??,
        () = shutdown_signal() => {
            let clients = hub.count();
            say(&format!("tether: shutting down, closing {clients} connections"));
            hub.close_all(CloseCode::GOING_AWAY, "server shutting down");
            if !hub.wait_empty(close_timeout + Duration::from_millis(500)).await {
                say(&format!("tether: {} connections did not close in time", hub.count()));
            }
        }
    }
    Ok(())
}

/// Where the server listens, on its first line (checks outside read it).
fn announce(role: Role, scheme: &str, addr: SocketAddr, metrics_at: Option<SocketAddr>) {
    eprintln!("tether: {} server listening on {scheme}://{addr}/", role.name());
    if let Some(metrics) = metrics_at {
        eprintln!("tether: metrics at http://{metrics}/metrics");
    }
}

/// Plain HTTP on the server's port: the demo page at `/` (and `/demo`),
/// the health check, then the static files, if asked for.
fn http_handler(
    demo: bool,
    static_dir: Option<PathBuf>,
    health: Option<String>,
) -> anyhow::Result<Option<tether::admission::HttpHandler>> {
    use tether::admission::{static_files, HttpResponse};
    if !demo && static_dir.is_none() && health.is_none() {
        return Ok(None);
    }
    let files = match static_dir {
        Some(dir) => {
            Some(static_files(&dir).with_context(|| format!("cannot serve the files under {}", dir.display()))?)
        }
        None => None,
    };
    Ok(Some(Arc::new(move |request: &tether::proto::handshake::Request| {
        if demo && matches!(request.path(), "/" | "/demo") {
            return Some(HttpResponse::new(200, "text/html; charset=utf-8", include_str!("demo.html")));
        }
        if health.as_deref() == Some(request.path()) {
            return Some(HttpResponse::text(200, "ok\n"));
        }
        files.as_ref().and_then(|files| files(request))
    })))
}

/// `--broadcast`: every message goes to every client, the sender included.
async fn broadcast(mut socket: WebSocket) {
    while let Ok(Some(message)) = socket.recv().await {
        if let Some(hub) = socket.hub() {
            hub.broadcast(&message);
        }
    }
}

async fn echo(mut socket: WebSocket) {
    loop {
        match socket.recv().await {
            Ok(Some(message)) => {
                if socket.send(message).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(peer = ?socket.peer_addr(), %error, "connection ended");
                return;
            }
        }
    }
}
