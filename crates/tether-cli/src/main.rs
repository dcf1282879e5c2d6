//! `tether`: an echo server and an interactive client.
//!
//! - `tether serve` echoes every message back (the seeds' echo server).
//! - `tether connect URL` sends each line typed and prints each message
//!   received (`python -m websockets URL`).
//! - `tether bench URL` simulates many clients and reports throughput and
//!   latency (seed 001's load generator).

mod bench;
mod connect;
mod memory;
mod serve;
mod topics;

use clap::{Parser, Subcommand, ValueEnum};

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
    Connect(connect::ConnectArgs),
    /// Simulate many clients against a server: throughput, latency percentiles, errors.
    Bench(bench::BenchArgs),
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
    let verbose = cli.verbose > 0;
    if verbose && matches!(cli.command, Command::Connect(_)) {
        // `tether connect -v` shows the handshake and every frame (wsdump's
        // -v), which the logger must know before it starts.
        tether::trace::enable(true);
    }
    init_logging(cli.verbose, cli.log_format)?;
    #[cfg(unix)]
    if matches!(cli.command, Command::Serve(_) | Command::Bench(_)) {
        if let Err(error) = memory::raise_open_file_limit() {
            tracing::warn!(%error, "cannot raise the open-file limit");
        }
    }
    if let Command::Bench(args) = cli.command {
        // Its own threads, each an event loop: no async runtime.
        // Exit status 1 when a connection failed (the report says why).
        return match bench::run(args)? {
            true => Ok(()),
            false => {
                std::io::Write::flush(&mut std::io::stdout())?;
                std::process::exit(1)
            }
        };
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
            Command::Connect(args) => connect::connect(args, verbose).await,
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
