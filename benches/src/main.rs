//! `tether-bench`: echo-server benchmark of tether against
//! tokio-tungstenite, fastwebsockets and a raw TCP echo (the ceiling).
//!
//! Each server runs in a child process (this binary, `server <kind>
//! <port>`) on a current-thread runtime pinned to one CPU; the load client
//! runs in this process on a current-thread runtime pinned to the other.
//! Runs are interleaved (A, B, C, D, A, B, C, D, ...) and the medians are
//! printed as a markdown table. See `benches/README.md`.

mod client;
mod fanout;
mod handshakes;
mod idle;
mod loadgen;
mod servers;
mod sys;
mod wire;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use crate::servers::ServerKind;

/// Echo-server benchmark: tether against tokio-tungstenite, fastwebsockets
/// and raw TCP, each server pinned to one core, the client to the other.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,

    /// Scenarios to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "S0,S1,S2,S3,S4", ignore_case = true)]
    scenarios: Vec<Scenario>,

    /// Servers to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "raw,tether-reactor,tether,tokio-tungstenite,fastwebsockets"
    )]
    servers: Vec<ServerKind>,

    /// Counted seconds per throughput run.
    #[arg(long, default_value_t = 3.0)]
    duration_secs: f64,

    /// Seconds of load before counting starts.
    #[arg(long, default_value_t = 0.5)]
    warmup_secs: f64,

    /// Repetitions of each (scenario, server) pair; the median is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,

    /// Connections held open in S4.
    #[arg(long, default_value_t = 10_000)]
    idle_conns: usize,

    /// Seconds the S4 connections sit idle before the RSS is read.
    #[arg(long, default_value_t = 1.0)]
    idle_secs: f64,

    /// CPU the load client is pinned to.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,

    /// CPU the servers are pinned to.
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,

    /// Read size of the raw TCP server, KiB (its buffer is shared by all
    /// connections).
    #[arg(long, default_value_t = servers::DEFAULT_RAW_CHUNK >> 10)]
    raw_buf_kib: usize,

    /// Override the message size of the throughput scenarios, bytes (for
    /// exploring; the table's labels keep the scenario's own size).
    #[arg(long)]
    message_bytes: Option<usize>,

    /// Override the messages in flight per connection of the throughput
    /// scenarios (for exploring).
    #[arg(long)]
    in_flight: Option<usize>,

    /// Read size of the load client, KiB (one buffer for all connections).
    #[arg(long, default_value_t = client::DEFAULT_READ_BUF >> 10)]
    client_buf_kib: usize,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one echo server (used by the benchmark itself): prints `PORT <n>`
    /// once listening, then serves until killed.
    Server {
        /// Which server.
        #[arg(value_enum)]
        kind: ServerKind,
        /// Port on 127.0.0.1 (0: any free port).
        port: u16,
        /// CPU to pin to (with one thread).
        #[arg(long, default_value_t = 1)]
        cpu: usize,
        /// Event loops of the reactor server; with more than one the server
        /// is not pinned and may use every CPU.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Read size of the raw server, KiB.
        #[arg(long, default_value_t = servers::DEFAULT_RAW_CHUNK >> 10)]
        raw_buf_kib: usize,
    },
    /// Print the in-memory sizes of per-connection types and futures (to
    /// explain S4) and exit.
    Sizes,
    /// Broadcast throughput and latency: tether's hub against
    /// tokio-tungstenite with a channel per client (F1, F2).
    Fanout(fanout::FanoutArgs),
    /// Opening handshakes per second (connect, upgrade, close) against the
    /// echo servers.
    Handshakes(handshakes::HandshakeArgs),
    /// Many idle connections held by `tether serve` through its keepalive
    /// pings: memory per connection, CPU per heartbeat round, ping lateness.
    Idle(idle::IdleArgs),
    /// `tether bench` against the minimal client, loading the same server
    /// in turn (the load generator must keep up with the fastest client).
    Loadgen(loadgen::LoadgenArgs),
    /// Run one fan-out server (used by `fanout` itself): prints `PORT <n>`
    /// once listening, then serves until killed.
    #[command(hide = true)]
    FanoutServer {
        /// Which server.
        #[arg(value_enum)]
        kind: fanout::FanoutKind,
        /// Port on 127.0.0.1 (0: any free port).
        port: u16,
        /// CPU to pin to (with one thread).
        #[arg(long, default_value_t = 1)]
        cpu: usize,
        /// Event loops of the reactor server; with more than one the server
        /// is not pinned and may use every CPU.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Fan out through this Redis (`tether-redis`).
        #[arg(long)]
        redis: Option<String>,
    },
}

/// The scenarios of the issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
enum Scenario {
    /// 100 connections, 20-byte messages, 1 in flight each.
    #[value(name = "S0")]
    S0,
    /// 100 connections, 16-byte messages, 16 in flight each.
    #[value(name = "S1")]
    S1,
    /// 10 connections, 16 KiB messages, 4 in flight each.
    #[value(name = "S2")]
    S2,
    /// 1 connection, 1 MiB messages, 2 in flight.
    #[value(name = "S3")]
    S3,
    /// Idle connections: server RSS per connection.
    #[value(name = "S4")]
    S4,
}

impl Scenario {
    /// (connections, message size, in flight), for the throughput scenarios.
    fn shape(self) -> Option<(usize, usize, usize)> {
        match self {
            Scenario::S0 => Some((100, 20, 1)),
            Scenario::S1 => Some((100, 16, 16)),
            Scenario::S2 => Some((10, 16 << 10, 4)),
            Scenario::S3 => Some((1, 1 << 20, 2)),
            Scenario::S4 => None,
        }
    }

    fn label(self, idle_conns: usize) -> String {
        match self {
            Scenario::S0 => "S0 100 conns × 20 B, 1 in flight (msg/s)".into(),
            Scenario::S1 => "S1 100 conns × 16 B, 16 in flight (msg/s)".into(),
            Scenario::S2 => "S2 10 conns × 16 KiB, 4 in flight (MB/s)".into(),
            Scenario::S3 => "S3 1 conn × 1 MiB, 2 in flight (MB/s)".into(),
            Scenario::S4 => format!("S4 {idle_conns} idle conns (RSS bytes/conn, lower is better)"),
        }
    }

    /// Whether the reported number is payload MB/s rather than messages/s.
    fn in_megabytes(self) -> bool {
        matches!(self, Scenario::S2 | Scenario::S3)
    }
}

/// How the scale subcommands repeat and place a run: counted time after a
/// warm-up, repetitions (the median is reported), and the CPUs of the load
/// client and the server.
#[derive(clap::Args, Debug)]
pub struct Rounds {
    /// Counted seconds per run.
    #[arg(long, default_value_t = 3.0)]
    duration_secs: f64,
    /// Seconds of load before counting starts.
    #[arg(long, default_value_t = 0.5)]
    warmup_secs: f64,
    /// Repetitions of each server; the median is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// CPU the load client (or generator) is pinned to.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
    /// CPU the servers are pinned to.
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,
    /// Event loops of the tether reactor server (`Reactor::bind_threads`);
    /// with more than one, the server is not pinned: it may use every CPU,
    /// the client's included, so compare its figures per server CPU-second.
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
}

/// A running server child; killed and reaped when dropped (also on panic).
struct ServerGuard {
    child: Child,
    addr: SocketAddr,
}

impl ServerGuard {
    fn spawn(kind: ServerKind, cpu: usize, raw_buf_kib: usize) -> std::io::Result<ServerGuard> {
        ServerGuard::spawn_threads(kind, cpu, raw_buf_kib, 1)
    }

    /// [`spawn`](Self::spawn), the reactor with `threads` event loops.
    fn spawn_threads(kind: ServerKind, cpu: usize, raw_buf_kib: usize, threads: usize) -> std::io::Result<ServerGuard> {
        let (cpu, raw_buf_kib, threads) = (cpu.to_string(), raw_buf_kib.to_string(), threads.to_string());
        ServerGuard::spawn_args(
            kind.name(),
            &["server", kind.arg(), "0", "--cpu", &cpu, "--raw-buf-kib", &raw_buf_kib, "--threads", &threads],
        )
    }

    /// Runs this binary with `args` (a server subcommand that prints
    /// `PORT <n>` once listening) and waits for its port.
    fn spawn_args(name: &str, args: &[&str]) -> std::io::Result<ServerGuard> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        // The guard exists before the port is read, so a failure kills the child.
        let mut guard = ServerGuard { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("{name} server did not start (said {line:?})")))?;
        guard.addr.set_port(port);
        Ok(guard)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CPU use of one throughput run.
#[derive(Clone, Copy, Debug)]
struct CpuNote {
    /// The run's measured value (messages/s or MB/s).
    value: f64,
    /// Fraction of a CPU the server used.
    server: f64,
    /// Fraction of a CPU the client used.
    client: f64,
}

/// One measured value per (scenario, server), all repetitions.
type Results = HashMap<(Scenario, ServerKind), Vec<f64>>;

fn main() {
    let cli = Cli::parse();
    if let Some(Cmd::Server { kind, port, cpu, threads, raw_buf_kib }) = cli.command {
        sys::die_with_parent();
        if threads <= 1 {
            if let Err(error) = sys::pin_to_cpu(cpu) {
                eprintln!("warning: cannot pin the {} server to CPU {cpu}: {error}", kind.name());
            }
        }
        let _ = sys::raise_nofile_limit();
        if let Err(error) = servers::run(kind, port, raw_buf_kib << 10, threads) {
            eprintln!("{} server: {error}", kind.name());
            std::process::exit(1);
        }
        return;
    }
    if let Some(Cmd::FanoutServer { kind, port, cpu, threads, redis }) = cli.command {
        sys::die_with_parent();
        if threads <= 1 {
            if let Err(error) = sys::pin_to_cpu(cpu) {
                eprintln!("warning: cannot pin the {} fan-out server to CPU {cpu}: {error}", kind.name());
            }
        }
        let _ = sys::raise_nofile_limit();
        if let Err(error) = fanout::run_server(kind, port, threads, redis.as_deref()) {
            eprintln!("{} fan-out server: {error}", kind.name());
            std::process::exit(1);
        }
        return;
    }
    let outcome = match &cli.command {
        Some(Cmd::Fanout(args)) => Some(fanout::bench(args)),
        Some(Cmd::Handshakes(args)) => Some(handshakes::bench(args)),
        Some(Cmd::Idle(args)) => Some(idle::bench(args)),
        Some(Cmd::Loadgen(args)) => Some(loadgen::bench(args)),
        _ => None,
    };
    if let Some(outcome) = outcome {
        if let Err(error) = outcome {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
        return;
    }
    if let Some(Cmd::Sizes) = cli.command {
        if let Err(error) = print_sizes() {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(error) = bench(&cli) {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn bench(cli: &Cli) -> std::io::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("warning: only {cpus} CPU available; client and server will share it");
    }
    if let Err(error) = sys::pin_to_cpu(cli.client_cpu) {
        eprintln!("warning: cannot pin the client to CPU {}: {error}", cli.client_cpu);
    }
    let nofile = sys::raise_nofile_limit()?;
    let mut idle_conns = cli.idle_conns;
    if cli.scenarios.contains(&Scenario::S4) {
        // Each process holds one end of every connection, plus a few more fds.
        let fit = usize::try_from(nofile.saturating_sub(100)).unwrap_or(usize::MAX);
        if idle_conns > fit {
            eprintln!("warning: RLIMIT_NOFILE hard limit is {nofile}: S4 uses {fit} connections, not {idle_conns}");
            idle_conns = fit;
        }
    }
    let warmup = Duration::from_secs_f64(cli.warmup_secs);
    let duration = Duration::from_secs_f64(cli.duration_secs);
    let idle = Duration::from_secs_f64(cli.idle_secs);
    let mut servers = cli.servers.clone();
    servers.dedup();
    let mut scenarios = cli.scenarios.clone();
    scenarios.dedup();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let mut results: Results = HashMap::new();
    let mut cpu_notes: HashMap<(Scenario, ServerKind), Vec<CpuNote>> = HashMap::new();
    // The most CPU other processes took during any counted window.
    let mut max_other: f64 = 0.0;
    for &scenario in &scenarios {
        for rep in 1..=cli.reps {
            for &kind in &servers {
                let server = ServerGuard::spawn(kind, cli.server_cpu, cli.raw_buf_kib)?;
                let local = tokio::task::LocalSet::new();
                let value = match scenario.shape() {
                    Some((conns, size, in_flight)) => {
                        let size = cli.message_bytes.unwrap_or(size).max(1);
                        let in_flight = cli.in_flight.unwrap_or(in_flight).max(1);
                        let load = client::Load {
                            conns,
                            size,
                            in_flight,
                            websocket: kind.is_websocket(),
                            warmup,
                            duration,
                            read_buf: cli.client_buf_kib.max(1) << 10,
                        };
                        match runtime.block_on(local.run_until(client::run_load(server.addr, server.pid(), load))) {
                            Ok(measured) => {
                                let value = if scenario.in_megabytes() {
                                    measured.messages_per_sec * size as f64 / 1e6
                                } else {
                                    measured.messages_per_sec
                                };
                                eprintln!(
                                    "[{:>5.1}s] {scenario:?} rep {rep} {:<17} {:>14} (cpu: server {:>3.0}%, client {:>3.0}%, others {:>3.0}%)",
                                    started.elapsed().as_secs_f64(),
                                    kind.name(),
                                    format_value(scenario, value),
                                    measured.server_cpu * 100.0,
                                    measured.client_cpu * 100.0,
                                    measured.other_cpu * 100.0,
                                );
                                max_other = max_other.max(measured.other_cpu);
                                cpu_notes.entry((scenario, kind)).or_default().push(CpuNote {
                                    value,
                                    server: measured.server_cpu,
                                    client: measured.client_cpu,
                                });
                                Some(value)
                            }
                            Err(error) => {
                                eprintln!("{scenario:?} rep {rep} {}: FAILED: {error}", kind.name());
                                None
                            }
                        }
                    }
                    None => match runtime.block_on(local.run_until(client::run_idle(
                        server.addr,
                        server.pid(),
                        kind.is_websocket(),
                        idle_conns,
                        idle,
                    ))) {
                        Ok(measured) => {
                            let per_conn =
                                measured.rss_after.saturating_sub(measured.rss_before) as f64 / measured.conns as f64;
                            eprintln!(
                                "[{:>5.1}s] S4 rep {rep} {:<17} {:>8.0} B/conn (RSS {:.1} MiB -> {:.1} MiB with {} conns)",
                                started.elapsed().as_secs_f64(),
                                kind.name(),
                                per_conn,
                                measured.rss_before as f64 / 1048576.0,
                                measured.rss_after as f64 / 1048576.0,
                                measured.conns,
                            );
                            Some(per_conn)
                        }
                        Err(error) => {
                            eprintln!("S4 rep {rep} {}: FAILED: {error}", kind.name());
                            None
                        }
                    },
                };
                // Close the client's ends before killing the server.
                drop(local);
                drop(server);
                if let Some(value) = value {
                    results.entry((scenario, kind)).or_default().push(value);
                }
                // Let the kernel settle (TIME_WAIT, freed memory) between runs.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    eprintln!("total time {:.1}s", started.elapsed().as_secs_f64());
    print!("{}", report(&scenarios, &servers, &results, &cpu_notes, idle_conns, cli));
    if !cpu_notes.is_empty() {
        println!("\nOther processes took up to {:.0}% of a CPU during a counted window.", max_other * 100.0);
        if max_other > 0.1 {
            println!("WARNING: the machine was not quiet; these numbers are disturbed.");
        }
    }
    Ok(())
}

/// Sizes of what each idle connection keeps inline, as far as the public
/// APIs let them be named. A spawned task is at least as large as the
/// largest state of its future, handshake included, for as long as it lives.
fn print_sizes() -> std::io::Result<()> {
    use std::mem::{size_of, size_of_val};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (_client, (server_side, _)) = tokio::try_join!(tokio::net::TcpStream::connect(addr), listener.accept())?;
        let config = tether::ServerConfig::default();
        // Created, never polled: only their sizes are read.
        let tether_accept = tether::accept(server_side, &config);
        println!("tether::WebSocket                          {:>6} B", size_of::<tether::WebSocket>());
        println!("tether::proto::Connection                  {:>6} B", size_of::<tether::proto::Connection>());
        println!("tether::accept(..) future (handshake)      {:>6} B", size_of_val(&tether_accept));
        drop(tether_accept);
        let (_client, (server_side, _)) = tokio::try_join!(tokio::net::TcpStream::connect(addr), listener.accept())?;
        let tungstenite_accept = tokio_tungstenite::accept_async(server_side);
        println!(
            "tokio_tungstenite::WebSocketStream         {:>6} B",
            size_of::<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>()
        );
        println!("tokio_tungstenite::accept_async future     {:>6} B", size_of_val(&tungstenite_accept));
        println!(
            "fastwebsockets::WebSocket<TcpStream>       {:>6} B",
            size_of::<fastwebsockets::WebSocket<tokio::net::TcpStream>>()
        );
        println!("tokio::net::TcpStream                      {:>6} B", size_of::<tokio::net::TcpStream>());
        Ok(())
    })
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 })
}

fn format_value(scenario: Scenario, value: f64) -> String {
    match scenario {
        Scenario::S4 => format!("{value:.0} B"),
        s if s.in_megabytes() => format!("{value:.0} MB/s"),
        _ => format!("{value:.0} msg/s"),
    }
}

fn format_cell(scenario: Scenario, value: f64) -> String {
    match scenario {
        Scenario::S4 => format!("{value:.0}"),
        s if s.in_megabytes() => format!("{value:.0}"),
        _ if value >= 1e6 => format!("{:.2} M", value / 1e6),
        _ => format!("{:.0} k", value / 1e3),
    }
}

/// `tether/<peer>`, the name of a ratio column.
fn ratio_name(peer: ServerKind) -> String {
    format!("tether/{}", if peer == ServerKind::Raw { "raw" } else { peer.name() })
}

/// A table's header and alignment rows.
fn header_row(out: &mut String, columns: &[ServerKind], extra: &[String]) {
    use std::fmt::Write;
    let _ = write!(out, "| scenario |");
    for kind in columns {
        let _ = write!(out, " {} |", kind.name());
    }
    for name in extra {
        let _ = write!(out, " {name} |");
    }
    let _ = writeln!(out);
    let _ = write!(out, "|---|");
    for _ in 0..columns.len() + extra.len() {
        let _ = write!(out, "---:|");
    }
    let _ = writeln!(out);
}

fn report(
    scenarios: &[Scenario],
    servers: &[ServerKind],
    results: &Results,
    cpu_notes: &HashMap<(Scenario, ServerKind), Vec<CpuNote>>,
    idle_conns: usize,
    cli: &Cli,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let order = [
        ServerKind::Raw,
        ServerKind::TetherReactor,
        ServerKind::Tether,
        ServerKind::Tungstenite,
        ServerKind::Fastwebsockets,
    ];
    let columns: Vec<ServerKind> = order.into_iter().filter(|kind| servers.contains(kind)).collect();
    let has_tether = columns.contains(&ServerKind::Tether);
    let peers: Vec<ServerKind> = columns
        .iter()
        .copied()
        .filter(|&kind| !matches!(kind, ServerKind::Tether | ServerKind::TetherReactor))
        .collect();

    let _ = writeln!(
        out,
        "\nMedians of {} repetitions; {:.1} s counted after {:.1} s warm-up; servers pinned to CPU {}, client to CPU {}.\n",
        cli.reps, cli.duration_secs, cli.warmup_secs, cli.server_cpu, cli.client_cpu
    );
    let ratio_columns: Vec<String> =
        if has_tether { peers.iter().map(|p| ratio_name(*p)).collect() } else { Vec::new() };
    header_row(&mut out, &columns, &ratio_columns);
    for &scenario in scenarios {
        let _ = write!(out, "| {} |", scenario.label(idle_conns));
        let medians: HashMap<ServerKind, f64> = columns
            .iter()
            .filter_map(|&kind| results.get(&(scenario, kind)).and_then(|v| median(v)).map(|m| (kind, m)))
            .collect();
        for kind in &columns {
            match medians.get(kind) {
                Some(&value) => {
                    let _ = write!(out, " {} |", format_cell(scenario, value));
                }
                None => {
                    let _ = write!(out, " failed |");
                }
            }
        }
        if has_tether {
            for peer in &peers {
                match (medians.get(&ServerKind::Tether), medians.get(peer)) {
                    (Some(&ours), Some(&theirs)) if theirs > 0.0 => {
                        let _ = write!(out, " {:.2} |", ours / theirs);
                    }
                    _ => {
                        let _ = write!(out, " – |");
                    }
                }
            }
        }
        let _ = writeln!(out);
    }

    // CPU use during the counted time: a server near 100% and a client
    // below it means the server was the bottleneck, as intended.
    if !cpu_notes.is_empty() {
        let throughput: Vec<Scenario> = scenarios.iter().copied().filter(|s| s.shape().is_some()).collect();
        let _ = writeln!(out, "\nCPU use during the counted time, median (server % / client %):\n");
        header_row(&mut out, &columns, &[]);
        for &scenario in &throughput {
            let _ = write!(out, "| {scenario:?} |");
            for kind in &columns {
                match cpu_notes.get(&(scenario, *kind)) {
                    Some(notes) => {
                        let server = median(&notes.iter().map(|n| n.server).collect::<Vec<_>>()).unwrap_or(0.0);
                        let client = median(&notes.iter().map(|n| n.client).collect::<Vec<_>>()).unwrap_or(0.0);
                        let _ = write!(out, " {:.0} / {:.0} |", server * 100.0, client * 100.0);
                    }
                    None => {
                        let _ = write!(out, " – |");
                    }
                }
            }
            let _ = writeln!(out);
        }

        // Throughput per CPU-second of the server: what each server gets
        // out of its core, also where the server was not saturated (a run
        // limited by latency or by the client).
        let ratio_columns: Vec<String> =
            if has_tether { peers.iter().map(|p| ratio_name(*p)).collect() } else { Vec::new() };
        let _ = writeln!(out, "\nThroughput per CPU-second of the server (median over runs of value / server CPU):\n");
        header_row(&mut out, &columns, &ratio_columns);
        for &scenario in &throughput {
            let _ = write!(out, "| {scenario:?} |");
            let per_cpu: HashMap<ServerKind, f64> = columns
                .iter()
                .filter_map(|&kind| {
                    let notes = cpu_notes.get(&(scenario, kind))?;
                    let values: Vec<f64> =
                        notes.iter().filter(|n| n.server > 0.0).map(|n| n.value / n.server).collect();
                    median(&values).map(|m| (kind, m))
                })
                .collect();
            for kind in &columns {
                match per_cpu.get(kind) {
                    Some(&value) => {
                        let _ = write!(out, " {} |", format_cell(scenario, value));
                    }
                    None => {
                        let _ = write!(out, " – |");
                    }
                }
            }
            if has_tether {
                for peer in &peers {
                    match (per_cpu.get(&ServerKind::Tether), per_cpu.get(peer)) {
                        (Some(&ours), Some(&theirs)) if theirs > 0.0 => {
                            let _ = write!(out, " {:.2} |", ours / theirs);
                        }
                        _ => {
                            let _ = write!(out, " – |");
                        }
                    }
                }
            }
            let _ = writeln!(out);
        }
    }
    out
}
