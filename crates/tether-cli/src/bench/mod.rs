//! `tether bench URL`: the load generator of seed 001 — many simulated
//! clients against one server, with a live progress line and a report.
//!
//! Each client opens a connection (spread over `--ramp-up`), then sends
//! messages of `--size` bytes, either at `--rate` per second or as fast as
//! the echoes come back with `--pipeline` messages in flight, until
//! `--duration` passes or `--messages` echoes arrived in all. Every message
//! carries its client, sequence number and send time, so the latency of
//! each echo is measured (into an HDR histogram) and a message that comes
//! back from another client (a broadcast server) is counted, not timed.
//! `--reconnect-every` drops every connection at once and reconnects (a
//! reconnect storm); `--ping-interval` turns keepalive on.
//!
//! The clients are spread over `--threads` worker threads (one per CPU by
//! default), each an event loop that drives its clients through tether's
//! protocol core directly (`worker`); this thread only watches the shared
//! counters. The connection goes straight to the URL's address: no proxy.

mod probe;
mod transport;
mod worker;

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use tether::proto::handshake::Target;
use tether::{ClientConfig, Config, TrustRoots};

use self::probe::HEADER;

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// ws:// or wss:// URL of the server (an echo server, or a broadcast one).
    url: String,
    /// Number of simulated clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Open the connections evenly over this many seconds.
    #[arg(long, default_value_t = 0.0)]
    ramp_up: f64,
    /// Message size in bytes (at least 24: client, sequence and timestamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per second per client; without it, as fast as echoes return.
    #[arg(long)]
    rate: Option<f64>,
    /// Messages in flight per client when no --rate is given.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Stop after this many seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop once this many echoes arrived, in all clients (before --duration).
    #[arg(long)]
    messages: Option<u64>,
    /// Keepalive ping interval in seconds (timeout the same); default off.
    #[arg(long)]
    ping_interval: Option<f64>,
    /// Drop every connection at once every this many seconds, and reconnect.
    #[arg(long)]
    reconnect_every: Option<f64>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Threads running the clients (default: one per available CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds a connection may take to open (TCP, TLS and the upgrade).
    #[arg(long, default_value_t = 10.0)]
    open_timeout: f64,
    /// PEM file of certificate authorities to trust for wss:// (default: Mozilla's roots).
    #[arg(long)]
    cafile: Option<std::path::PathBuf>,
}

/// Counters shared by every worker thread (each adds what it counted a few
/// times a second), and the main thread's commands to them.
#[derive(Default)]
struct Totals {
    established: AtomicU64,
    failed: AtomicU64,
    reconnects: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    foreign: AtomicU64,
    bytes_received: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Set when the run is over: the clients close and the workers return.
    stop: AtomicBool,
    /// Bumped for each reconnect storm.
    storm: AtomicU64,
}

fn error_kind(error: &tether::Error) -> &'static str {
    if let Some(timeout) = error.timeout() {
        return match timeout {
            tether::Timeout::Open => "open timeout",
            tether::Timeout::Ping => "keepalive timeout",
            _ => "timeout",
        };
    }
    if error.http_status().is_some() {
        "handshake refused"
    } else if error.is_tls() {
        "tls"
    } else if error.is_protocol() {
        "protocol"
    } else if error.is_closed() {
        "closed"
    } else {
        "io"
    }
}

/// Runs the load: worker threads drive the clients (see `worker`), this
/// thread shows progress, starts the storms, stops the run and reports.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.size >= HEADER, "--size must be at least {HEADER} bytes");
    anyhow::ensure!(args.clients > 0 && args.pipeline > 0, "--clients and --pipeline must be at least 1");
    anyhow::ensure!(args.rate.is_none_or(|rate| rate > 0.0), "--rate must be positive");
    anyhow::ensure!(args.open_timeout > 0.0, "--open-timeout must be positive");
    let target = Target::parse(&args.url)?;
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{} has no address", target.host))?;
    let tls = if target.secure {
        let trust = args.cafile.clone().map_or(ClientConfig::default().trust, TrustRoots::CaFile);
        let name = rustls_pki_types::ServerName::try_from(target.host.clone())
            .map_err(|_| anyhow::anyhow!("invalid TLS server name {:?}", target.host))?;
        Some((tether::tls::client_config(&trust)?, name))
    } else {
        None
    };
    let mut protocol = Config::default().with_keepalive(None, None).with_deflate(None);
    if let Some(interval) = args.ping_interval {
        let interval = Duration::from_secs_f64(interval);
        protocol = protocol.with_keepalive(Some(interval), Some(interval));
    }
    protocol.validate()?;
    let started = Instant::now();
    let plan = Arc::new(worker::Plan {
        target,
        addr,
        tls,
        protocol,
        limits: ClientConfig::default().limits,
        size: args.size,
        send_every: args.rate.map(|rate| Duration::from_secs_f64(1.0 / rate)),
        pipeline: args.pipeline,
        open_timeout: Duration::from_secs_f64(args.open_timeout),
        started,
    });
    let totals = Arc::new(Totals {
        latency: Mutex::new(Some(Histogram::new_with_bounds(1, 60_000_000, 3)?)),
        ..Totals::default()
    });

    // Clients dealt round-robin to the threads, each with its ramp-up delay.
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .clamp(1, args.clients);
    let mut shares: Vec<Vec<(u32, Duration)>> = vec![Vec::new(); threads];
    for id in 0..args.clients {
        let delay = if args.clients > 1 { args.ramp_up * id as f64 / (args.clients - 1) as f64 } else { 0.0 };
        shares[id % threads].push((id as u32, Duration::from_secs_f64(delay)));
    }
    let workers: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(index, share)| {
            let (plan, totals) = (plan.clone(), totals.clone());
            std::thread::Builder::new().name(format!("bench-{index}")).spawn(move || worker::run(&plan, &totals, share))
        })
        .collect::<Result<_, _>>()?;

    let progress = (!args.quiet).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        bar
    });
    let deadline = started + Duration::from_secs_f64(args.duration);
    let mut next_storm = args.reconnect_every.map(|every| started + Duration::from_secs_f64(every));
    let mut last = (started, 0u64);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        let received = totals.received.load(Ordering::Relaxed);
        if let Some(bar) = progress.as_ref().filter(|_| now >= last.0 + Duration::from_millis(250)) {
            let rate = (received - last.1) as f64 / (now - last.0).as_secs_f64();
            let p99 = totals.latency.lock().unwrap().as_ref().map_or(0, |h| h.value_at_quantile(0.99));
            bar.set_message(format!(
                "{:>5.1}s  connections {}/{} (failed {})  echoes {}  {:.0}/s  p99 {:.2} ms",
                (now - started).as_secs_f64(),
                totals.established.load(Ordering::Relaxed),
                args.clients,
                totals.failed.load(Ordering::Relaxed),
                received,
                rate,
                p99 as f64 / 1000.0
            ));
            bar.tick();
            last = (now, received);
        }
        if next_storm.is_some_and(|at| now >= at) {
            totals.storm.fetch_add(1, Ordering::Relaxed);
            next_storm = args.reconnect_every.map(|every| now + Duration::from_secs_f64(every));
        }
        let enough = args.messages.is_some_and(|n| received >= n);
        if now >= deadline || enough {
            break;
        }
    }
    totals.stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for worker in workers {
        match worker.join() {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("a bench thread panicked"),
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    report(&args, &totals, elapsed)
}

fn report(args: &BenchArgs, totals: &Totals, elapsed: Duration) -> anyhow::Result<()> {
    let seconds = elapsed.as_secs_f64();
    let received = totals.received.load(Ordering::Relaxed);
    let bytes = totals.bytes_received.load(Ordering::Relaxed);
    let latency = totals.latency.lock().unwrap();
    let histogram = latency.as_ref().expect("the histogram");
    let millis = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let errors = totals.errors.lock().unwrap().clone();
    let report = serde_json::json!({
        "url": args.url,
        "clients": args.clients,
        "seconds": seconds,
        "connections": {
            "established": totals.established.load(Ordering::Relaxed),
            "failed": totals.failed.load(Ordering::Relaxed),
            "reconnects": totals.reconnects.load(Ordering::Relaxed),
        },
        "messages": {
            "sent": totals.sent.load(Ordering::Relaxed),
            "echoed": received,
            "from_others": totals.foreign.load(Ordering::Relaxed),
            "per_second": received as f64 / seconds,
        },
        "megabytes_per_second": bytes as f64 / seconds / 1e6,
        "latency_ms": {
            "p50": millis(0.5),
            "p90": millis(0.9),
            "p99": millis(0.99),
            "max": histogram.max() as f64 / 1000.0,
        },
        "errors": errors,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("tether bench {} — {} clients, {:.1} s", args.url, args.clients, seconds);
    println!(
        "connections: {} established, {} failed, {} reconnects",
        report["connections"]["established"], report["connections"]["failed"], report["connections"]["reconnects"]
    );
    println!(
        "messages:    {} sent, {} echoed ({:.0}/s, {:.2} MB/s), {} from other clients",
        report["messages"]["sent"],
        received,
        received as f64 / seconds,
        bytes as f64 / seconds / 1e6,
        report["messages"]["from_others"]
    );
    println!(
        "latency:     p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        millis(0.5),
        millis(0.9),
        millis(0.99),
        histogram.max() as f64 / 1000.0
    );
    if errors.is_empty() {
        println!("errors:      none");
    } else {
        let list: Vec<String> = errors.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        println!("errors:      {}", list.join(", "));
    }
    Ok(())
}
