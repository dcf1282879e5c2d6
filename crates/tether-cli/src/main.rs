//! `tether`: an echo server and an interactive client.
//!
//! - `tether serve` echoes every message back (the seeds' echo server).
//! - `tether connect URL` sends each line typed and prints each message
//!   received (`python -m websockets URL`).
//! - `tether bench URL` simulates many clients and reports throughput and
//!   latency (seed 001's load generator).

mod bench;
mod memory;
mod topics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use tether::reactor::{Conn, Reactor};
use tether::{ClientConfig, CloseCode, Config, Message, Server, ServerConfig, TrustRoots, WebSocket};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
#[command(name = "tether", version, about = "WebSocket echo server and interactive client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an echo server: every text or binary message is sent back.
    Serve(ServeArgs),
    /// Open an interactive session: lines typed are sent, messages received are printed.
    Connect(ConnectArgs),
    /// Simulate many clients against a server: throughput, latency percentiles, errors.
    Bench(bench::BenchArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
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
    /// Serve the files under DIR over plain HTTP on the same port.
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Fan broadcasts and topics out to every server using this Redis (redis://host:port).
    #[arg(long)]
    redis: Option<String>,
    /// Serve Prometheus metrics at /metrics on the same port.
    #[arg(long)]
    metrics: bool,
    /// Seconds to wait for clients' close handshakes at shutdown (SIGINT, SIGTERM).
    #[arg(long, default_value_t = 10.0)]
    close_timeout: f64,
}

#[derive(Args)]
struct ConnectArgs {
    /// ws:// or wss:// URL.
    url: String,
    /// PEM file of certificate authorities to trust for wss:// (default: Mozilla's roots).
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// Extra handshake header, as "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Subprotocol to offer (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
}

fn main() -> anyhow::Result<()> {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| "warn".into());
    if tether::trace::is_enabled() {
        // TETHER_TRACE=1: the handshake and every frame, whatever TETHER_LOG says.
        filter = filter.add_directive("tether::trace=info".parse()?);
    }
    // A closed stderr (its reader gone) must not make a log line panic a task.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init()
        .ok();
    let cli = Cli::parse();
    #[cfg(unix)]
    if matches!(cli.command, Command::Serve(_) | Command::Bench(_)) {
        if let Err(error) = memory::raise_open_file_limit() {
            tracing::warn!(%error, "cannot raise the open-file limit");
        }
    }
    if let Command::Bench(args) = cli.command {
        // Its own threads, each an event loop: no async runtime.
        return bench::run(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Connect(args) => connect(args).await,
            Command::Bench(_) => unreachable!("run above"),
        }
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig::default();
    config.protocol = Config::default().with_max_message_size(args.max_message_size);
    if args.no_compression {
        config.protocol = config.protocol.with_deflate(None);
    }
    let scheme = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            config.tls = Some(tether::tls::server_config_from_pem(cert, key)?);
            "wss"
        }
        _ => "ws",
    };
    let close_timeout = Duration::from_secs_f64(args.close_timeout);
    config.protocol = config.protocol.with_close_timeout(close_timeout);
    let hub = match &args.redis {
        Some(url) => tether::Hub::with_redis(tether::hub::HubConfig::default(), url)?,
        None => tether::Hub::default(),
    };
    config.hub = Some(hub.clone());
    tokio::spawn(memory::trim_after_departures(hub.clone()));
    if args.metrics {
        config.metrics = Some(tether::metrics::Metrics::new().with_hub(hub.clone()));
    }
    config.http = http_handler(args.demo, args.static_dir.clone());
    let role = match (args.broadcast, args.topics || args.demo) {
        (true, _) => Role::Broadcast,
        (_, true) => Role::Topics,
        _ => Role::Echo,
    };
    if config.tls.is_some() {
        return serve_tls(args.listen, config, role, &hub, close_timeout).await;
    }
    // Plain TCP: the reactor, one event loop for every connection (no task
    // per connection: an idle client costs a few hundred bytes).
    let reactor = Reactor::bind(args.listen, config).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = reactor.local_addr()?;
    eprintln!("tether: {} server listening on {scheme}://{addr}/", role.name());
    let handle = reactor.handle();
    let mut running = tokio::task::spawn_blocking(move || reactor.run(Serving { role }));
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

/// What the server does with each message.
#[derive(Clone, Copy)]
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

/// `wss://`: the tokio server, a task per connection.
async fn serve_tls(
    listen: SocketAddr,
    config: ServerConfig,
    role: Role,
    hub: &tether::Hub,
    close_timeout: Duration,
) -> anyhow::Result<()> {
    let server = Server::bind(listen, config).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = server.local_addr()?;
    eprintln!("tether: {} server listening on wss://{addr}/", role.name());
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

/// Plain HTTP on the server's port: the demo page at `/` (and `/demo`),
/// then the static files, if asked for.
fn http_handler(demo: bool, static_dir: Option<PathBuf>) -> Option<tether::admission::HttpHandler> {
    use tether::admission::{static_files, HttpResponse};
    if !demo && static_dir.is_none() {
        return None;
    }
    let files = static_dir.map(static_files);
    Some(std::sync::Arc::new(move |request: &tether::proto::handshake::Request| {
        if demo && matches!(request.path(), "/" | "/demo") {
            return Some(HttpResponse::new(200, "text/html; charset=utf-8", include_str!("demo.html")));
        }
        files.as_ref().and_then(|files| files(request))
    }))
}

/// A line on stderr that cannot fail: a server whose stderr was closed
/// (its supervisor went away) must still shut down gracefully.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
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

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn connect(args: ConnectArgs) -> anyhow::Result<()> {
    let mut config = ClientConfig::default();
    config.protocol = Config::default().with_max_message_size(args.max_message_size);
    config.protocols = args.protocols;
    if let Some(cafile) = args.cafile {
        config.trust = TrustRoots::CaFile(cafile);
    }
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            bail!("--header must look like 'Name: value', got {header:?}");
        };
        config.headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut socket =
        tether::connect_with(&args.url, &config).await.with_context(|| format!("cannot connect to {}", args.url))?;
    eprintln!("Connected to {}.", args.url);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut close_deadline = None;
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line? {
                Some(line) => socket.send(line).await?,
                None => {
                    // End of input: close, but keep printing what is still in flight.
                    stdin_open = false;
                    socket.send_close(CloseCode::NORMAL, "").await?;
                    close_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(10));
                }
            },
            received = socket.recv() => match received {
                Ok(Some(Message::Text(text))) => println!("< {text}"),
                Ok(Some(Message::Binary(bytes))) => println!("< (binary) {} bytes: {}", bytes.len(), hex_preview(&bytes)),
                Ok(None) => break,
                Err(error) => bail!("connection failed: {error}"),
            },
            () = sleep_until(close_deadline) => bail!("the server did not answer the close within 10 s"),
        }
    }
    match socket.close_frame() {
        Some(frame) => eprintln!("Connection closed: {frame}."),
        None => eprintln!("Connection closed."),
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn hex_preview(bytes: &[u8]) -> String {
    let mut preview: String = bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 32 {
        preview.push('…');
    }
    preview
}
