//! `tether`: an echo server and an interactive client.
//!
//! - `tether serve` echoes every message back (the seeds' echo server).
//! - `tether connect URL` sends each line typed and prints each message
//!   received (`python -m websockets URL`).
//! - `tether bench URL` simulates many clients and reports throughput and
//!   latency (seed 001's load generator).

mod bench;
mod memory;
mod serve;
mod topics;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tether::{ClientConfig, CloseCode, Config, Message, TrustRoots};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
#[command(name = "tether", version, about = "WebSocket echo server and interactive client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log lines: -v info, -vv debug, -vvv trace (TETHER_LOG, a tracing filter, overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines as text or as JSON objects, one per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run an echo server: every text or binary message is sent back.
    Serve(Box<serve::ServeArgs>),
    /// Open an interactive session: lines typed are sent, messages received are printed.
    Connect(ConnectArgs),
    /// Simulate many clients against a server: throughput, latency percentiles, errors.
    Bench(bench::BenchArgs),
}

#[derive(Args)]
struct ConnectArgs {
    /// ws:// or wss:// URL.
    url: String,
    /// PEM file of certificate authorities to trust for wss:// (default: Mozilla's roots).
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// Accept any server certificate for wss:// (testing only: the connection is encrypted but
    /// not authenticated).
    #[arg(long, short = 'k', conflicts_with = "cafile")]
    insecure: bool,
    /// Extra handshake header, as "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Subprotocol to offer (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Print messages as they are, one per line, without the `< ` prefix
    /// (binary messages as raw bytes): for pipes.
    #[arg(long)]
    raw: bool,
}

/// The program's logger (the library never installs one): warnings by
/// default, more with `-v`, any filter with `TETHER_LOG`; trace lines
/// (`TETHER_TRACE=1`) whatever the filter says.
fn init_logging(verbose: u8, format: LogFormat) -> anyhow::Result<()> {
    let level = ["warn", "info", "debug", "trace"][usize::from(verbose.min(3))];
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG").unwrap_or_else(|_| level.into());
    if tether::trace::is_enabled() {
        filter = filter.add_directive("tether::trace=info".parse()?);
    }
    // A closed stderr (its reader gone) must not make a log line panic a task;
    // colours only for a terminal, not in a file or a pipe.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line, its causes joined by ": " (`{:#}`); the default
            // report would add anyhow's backtrace whenever RUST_BACKTRACE is set.
            say(&format!("error: {error:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_format)?;
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
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        // The tokio engine's workers; the reactor's loops are threads of
        // their own, and the runtime then only waits for signals.
        runtime.worker_threads(args.threads());
    }
    let runtime = runtime.enable_all().build()?;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::serve(*args).await,
            Command::Connect(args) => connect(args).await,
            Command::Bench(_) => unreachable!("run above"),
        }
    });
    // Standard input is read on a blocking thread that a terminal or pipe
    // may keep waiting forever: when the connection is over, do not wait
    // for it (the server closed us; the user has nothing more to type).
    runtime.shutdown_background();
    result
}

/// A line on stderr that cannot fail: a server whose stderr was closed
/// (its supervisor went away) must still shut down gracefully.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
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
    if args.insecure {
        config.trust = TrustRoots::InsecureAcceptAny;
    }
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
                Ok(Some(message)) => show(&message, args.raw)?,
                Ok(None) => break,
                Err(error) => bail!("connection failed: {error}"),
            },
            () = sleep_until(close_deadline) => bail!("the server did not answer the close within 10 s"),
        }
    }
    // The exit status says how it ended: 0 for a normal close (1000, 1001,
    // or no code), an error otherwise, as websocat and wsdump do.
    match socket.close_frame() {
        Some(frame) if ![CloseCode::NORMAL, CloseCode::GOING_AWAY].contains(&frame.code) => {
            bail!("connection closed: {frame}")
        }
        Some(frame) => eprintln!("Connection closed: {frame}."),
        None => eprintln!("Connection closed."),
    }
    Ok(())
}

/// Prints a received message: `< text`, or for pipes (`raw`) as it is.
fn show(message: &Message, raw: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match (message, raw) {
        (Message::Text(text), false) => writeln!(out, "< {text}")?,
        (Message::Binary(bytes), false) => writeln!(out, "< (binary) {} bytes: {}", bytes.len(), hex_preview(bytes))?,
        (Message::Text(text), true) => writeln!(out, "{text}")?,
        (Message::Binary(bytes), true) => {
            out.write_all(bytes)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
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
