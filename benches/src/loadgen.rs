//! `tether-bench loadgen`: `tether bench` (the CLI's load generator)
//! against this benchmark's minimal client, loading the same echo server
//! in turn, so that the load generator is shown able to measure servers
//! at least as fast as the client the server benchmarks use.
//!
//! Both run on one CPU (the client CPU), the server on the other, with the
//! same shape: C connections, M-byte binary messages, K in flight per
//! connection (default S1's 100 × 16 in flight, with 24-byte messages: the
//! smallest `tether bench` sends, as it stamps each with its client,
//! sequence and send time). The minimal client's rate is counted after a
//! warm-up; `tether bench` reports its whole run (warm-up included, so its
//! figure is, if anything, low). CPU use is read from `/proc` over the
//! counted window for both.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{self, Load};
use crate::servers::ServerKind;
use crate::sys;
use crate::ServerGuard;

/// Flags of `tether-bench loadgen`.
#[derive(clap::Args, Debug)]
pub struct LoadgenArgs {
    /// The `tether` binary whose `bench` is measured.
    #[arg(long, default_value = "target/release/tether")]
    tether: PathBuf,
    /// Servers to load, comma-separated (WebSocket servers only).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tether-reactor,fastwebsockets")]
    servers: Vec<ServerKind>,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Message size, bytes (at least 24).
    #[arg(long, default_value_t = 24)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    #[command(flatten)]
    run: crate::Rounds,
}

/// One run: messages/s, and the CPU fractions of client and server.
#[derive(Clone, Copy, Debug)]
struct Run {
    rate: f64,
    client: f64,
    server: f64,
}

/// Runs the comparison and prints a table.
///
/// # Errors
/// A server or `tether bench` did not start, or a run failed.
pub fn bench(args: &LoadgenArgs) -> io::Result<()> {
    if !args.tether.exists() {
        return Err(io::Error::other(format!(
            "{} not found: build it first (cargo build --release -p tether-cli)",
            args.tether.display()
        )));
    }
    let mut results: Vec<(ServerKind, Vec<Run>, Vec<Run>)> =
        args.servers.iter().map(|&kind| (kind, Vec::new(), Vec::new())).collect();
    let started = Instant::now();
    for rep in 1..=args.run.reps {
        for (kind, minimal, ours) in &mut results {
            let progress = |who: &str, run: Run| {
                let at = started.elapsed().as_secs_f64();
                eprintln!("[{at:5.1}s] rep {rep} {:<16} {who:<14} {}", kind.name(), show(run));
                run
            };
            minimal.push(progress("minimal client", minimal_client(args, *kind)?));
            ours.push(progress("tether bench", tether_bench(args, *kind)?));
        }
    }
    println!(
        "\n`tether bench` against the minimal client, {} connections × {} B, {} in flight; medians of {} runs; \
         load generator on CPU {}, server on CPU {}.\n",
        args.conns, args.size, args.in_flight, args.run.reps, args.run.client_cpu, args.run.server_cpu
    );
    println!(
        "| server | minimal client msg/s (client / server CPU) | tether bench msg/s (client / server CPU) | ratio |"
    );
    println!("|---|---:|---:|---:|");
    for (kind, minimal, ours) in &results {
        let (a, b) = (median(minimal), median(ours));
        println!(
            "| {} | {:.2} M ({:.0} % / {:.0} %) | {:.2} M ({:.0} % / {:.0} %) | {:.2} |",
            kind.name(),
            a.rate / 1e6,
            a.client * 100.0,
            a.server * 100.0,
            b.rate / 1e6,
            b.client * 100.0,
            b.server * 100.0,
            b.rate / a.rate
        );
    }
    Ok(())
}

fn show(run: Run) -> String {
    format!("{:>9.0} msg/s (cpu: client {:3.0}%, server {:3.0}%)", run.rate, run.client * 100.0, run.server * 100.0)
}

/// The median run by rate.
fn median(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    sorted[sorted.len() / 2]
}

fn minimal_client(args: &LoadgenArgs, kind: ServerKind) -> io::Result<Run> {
    let server = ServerGuard::spawn(kind, args.run.server_cpu, crate::servers::DEFAULT_RAW_CHUNK >> 10)?;
    let load = Load {
        conns: args.conns,
        size: args.size,
        in_flight: args.in_flight,
        websocket: true,
        warmup: Duration::from_secs_f64(args.run.warmup_secs),
        duration: Duration::from_secs_f64(args.run.duration_secs),
        read_buf: client::DEFAULT_READ_BUF,
    };
    // Pinned in a thread of its own, so this thread's affinity is left alone.
    let (addr, pid, cpu) = (server.addr, server.pid(), args.run.client_cpu);
    let measured = std::thread::spawn(move || -> io::Result<client::Measured> {
        if let Err(error) = sys::pin_to_cpu(cpu) {
            eprintln!("warning: cannot pin the client to CPU {cpu}: {error}");
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, client::run_load(addr, pid, load))
    })
    .join()
    .map_err(|_| io::Error::other("the minimal client panicked"))??;
    Ok(Run { rate: measured.messages_per_sec, client: measured.client_cpu, server: measured.server_cpu })
}

fn tether_bench(args: &LoadgenArgs, kind: ServerKind) -> io::Result<Run> {
    let server = ServerGuard::spawn(kind, args.run.server_cpu, crate::servers::DEFAULT_RAW_CHUNK >> 10)?;
    let url = format!("ws://{}/", server.addr);
    let total = args.run.warmup_secs + args.run.duration_secs;
    let child = Command::new("taskset")
        .args(["-c", &args.run.client_cpu.to_string()])
        .arg(&args.tether)
        .args(["bench", &url, "--json", "--quiet", "--threads", "1"])
        .args(["--clients", &args.conns.to_string(), "--pipeline", &args.in_flight.to_string()])
        .args(["--size", &args.size.to_string(), "--duration", &total.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs_f64(args.run.warmup_secs));
    let (client0, server0, t0) = (sys::cpu_seconds(pid)?, sys::cpu_seconds(server.pid())?, Instant::now());
    std::thread::sleep(Duration::from_secs_f64(args.run.duration_secs * 0.95));
    let (client1, server1, t1) = (sys::cpu_seconds(pid)?, sys::cpu_seconds(server.pid())?, Instant::now());
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!("tether bench failed: {}", output.status)));
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(io::Error::other)?;
    let errors = report["errors"].as_object().map_or(0, serde_json::Map::len);
    if errors > 0 {
        return Err(io::Error::other(format!("tether bench saw errors: {}", report["errors"])));
    }
    let rate = report["messages"]["per_second"].as_f64().ok_or_else(|| io::Error::other("no rate in the report"))?;
    let secs = (t1 - t0).as_secs_f64();
    Ok(Run { rate, client: (client1 - client0) / secs, server: (server1 - server0) / secs })
}
