//! `tether bench URL…`: the load generator of seed 001 — many simulated
//! clients against one server (or several, round-robin), with a live
//! progress line, a report, and a plot if asked (`--plot FILE.svg`).
//!
//! Each client opens a connection (spread over `--ramp-up`), then sends
//! messages of `--size` bytes, either at `--rate` per second or as fast as
//! the echoes come back with `--pipeline` messages in flight, until
//! `--duration` passes or `--messages` echoes arrived in all. Every message
//! carries its client, sequence number and send time, so the latency of
//! each echo is measured (into an HDR histogram) and a message that comes
//! back from another client (a broadcast server) is counted, not timed.
//! At a fixed `--rate`, a message is stamped with the time it was due, not
//! the time it left, so a server that holds the clients up is charged for
//! the wait (latency corrected for coordinated omission, as wrk2 does).
//! The exit status is 1 when any connection failed.
//! `--reconnect-every` drops every connection at once and reconnects (a
//! reconnect storm); `--ping-interval` turns keepalive on.
//!
//! The clients are spread over `--threads` worker threads (one per CPU by
//! default), each an event loop that drives its clients through tether's
//! protocol core directly (`worker`); this thread only watches the shared
//! counters. The connection goes straight to the URL's address: no proxy.

mod plot;
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
use tether::proto::handshake::{ClientHandshakeConfig, Target};
use tether::{ClientConfig, Config, DeflateConfig, TrustRoots};

use self::probe::{HEADER, TEXT_HEADER};

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// ws:// or wss:// URL of the server (an echo server, or a broadcast one); several spread
    /// the clients over them, round-robin.
    #[arg(required = true)]
    urls: Vec<String>,
    /// Number of simulated clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Open the connections evenly over this many seconds.
    #[arg(long, default_value_t = 0.0)]
    ramp_up: f64,
    /// Message size in bytes (at least 24, 44 with --text: client, sequence and timestamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Send text messages (the stamp in hexadecimal) instead of binary ones.
    #[arg(long)]
    text: bool,
    /// The payload after the stamp: this file's bytes (UTF-8 with --text), instead of --size.
    #[arg(long, value_name = "FILE")]
    payload_file: Option<std::path::PathBuf>,
    /// Extra handshake header, as "Name: value" (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Subprotocol to offer (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Offer permessage-deflate (off by default: it measures the server's compressor too).
    #[arg(long)]
    compression: bool,
    /// Write latency (p50, p99, max) and echoes per second over time as an SVG plot.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
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
    /// What the first server to accept agreed to: subprotocol, compression.
    negotiated: Mutex<Option<(Option<String>, bool)>>,
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

/// Where one URL's clients go: its address and, for `wss://`, the TLS
/// client configuration and server name.
fn endpoint(url: &str, args: &BenchArgs) -> anyhow::Result<worker::Endpoint> {
    let target = Target::parse(url)?;
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
    Ok(worker::Endpoint { target, addr, tls })
}

/// The opening handshake every client offers: `-H`, `--protocol`,
/// `--compression`.
fn handshake(args: &BenchArgs) -> anyhow::Result<ClientHandshakeConfig> {
    let mut handshake = ClientHandshakeConfig::default();
    for header in &args.headers {
        let (name, value) =
            header.split_once(':').ok_or_else(|| anyhow::anyhow!("-H {header:?}: expected \"Name: value\""))?;
        anyhow::ensure!(!name.trim().is_empty(), "-H {header:?}: the header has no name");
        handshake.headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    handshake.protocols.clone_from(&args.protocols);
    handshake.deflate = args.compression.then(DeflateConfig::default);
    Ok(handshake)
}

/// The message every client sends (only its stamp changes): `--size`
/// bytes, or the stamp and `--payload-file`.
fn message(args: &BenchArgs) -> anyhow::Result<Vec<u8>> {
    let header = if args.text { TEXT_HEADER } else { HEADER };
    let payload = match &args.payload_file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            anyhow::ensure!(
                !args.text || std::str::from_utf8(&bytes).is_ok(),
                "{}: --text needs a UTF-8 payload",
                path.display()
            );
            Some(bytes)
        }
        None => {
            anyhow::ensure!(args.size >= header, "--size must be at least {header} bytes (the stamp)");
            None
        }
    };
    Ok(probe::template(args.size, args.text, payload.as_deref()))
}

/// Runs the load: worker threads drive the clients (see `worker`), this
/// thread shows progress, starts the storms, stops the run and reports.
/// `Ok(false)` when a connection failed (the exit status says so).
pub fn run(args: BenchArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.clients > 0 && args.pipeline > 0, "--clients and --pipeline must be at least 1");
    anyhow::ensure!(args.rate.is_none_or(|rate| rate > 0.0), "--rate must be positive");
    anyhow::ensure!(args.open_timeout > 0.0, "--open-timeout must be positive");
    let targets = args.urls.iter().map(|url| endpoint(url, &args)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut protocol = Config::default().with_keepalive(None, None).with_deflate(None);
    if let Some(interval) = args.ping_interval {
        let interval = Duration::from_secs_f64(interval);
        protocol = protocol.with_keepalive(Some(interval), Some(interval));
    }
    if args.compression {
        protocol = protocol.with_deflate(Some(DeflateConfig::default()));
    }
    protocol.validate()?;
    let started = Instant::now();
    let plan = Arc::new(worker::Plan {
        targets,
        handshake: handshake(&args)?,
        protocol,
        limits: ClientConfig::default().limits,
        message: message(&args)?,
        text: args.text,
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
    let mut series = Series::new(started, args.plot.is_some());
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
        series.sample(now, received, &totals);
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
    series.sample_last(Instant::now(), totals.received.load(Ordering::Relaxed), &totals);
    if let Some(path) = &args.plot {
        let title = format!("tether bench {} — {} clients", args.urls.join(" "), args.clients);
        std::fs::write(path, plot::svg(&title, &series.samples))
            .map_err(|error| anyhow::anyhow!("--plot {}: {error}", path.display()))?;
    }
    report(&args, &totals, elapsed)?;
    let failed = totals.failed.load(Ordering::Relaxed) > 0 || !totals.errors.lock().unwrap().is_empty();
    Ok(!failed)
}

/// Latency and throughput second by second, for `--plot`: each sample is
/// what the shared histogram gained since the previous one.
struct Series {
    started: Instant,
    enabled: bool,
    next: Instant,
    previous: Option<Histogram<u64>>,
    received: u64,
    last_at: Instant,
    samples: Vec<plot::Sample>,
}

impl Series {
    const EVERY: Duration = Duration::from_secs(1);

    fn new(started: Instant, enabled: bool) -> Series {
        Series {
            started,
            enabled,
            next: started + Self::EVERY,
            previous: None,
            received: 0,
            last_at: started,
            samples: Vec::new(),
        }
    }

    /// Takes a sample if a second has passed since the last one.
    fn sample(&mut self, now: Instant, received: u64, totals: &Totals) {
        if self.enabled && now >= self.next {
            self.take(now, received, totals);
            self.next += Self::EVERY;
        }
    }

    /// The end of the run: whatever came in since the last sample.
    fn sample_last(&mut self, now: Instant, received: u64, totals: &Totals) {
        if self.enabled && now > self.last_at + Duration::from_millis(100) {
            self.take(now, received, totals);
        }
    }

    fn take(&mut self, now: Instant, received: u64, totals: &Totals) {
        let Some(cumulative) = totals.latency.lock().unwrap().clone() else { return };
        let mut interval = cumulative.clone();
        if let Some(previous) = &self.previous {
            let _ = interval.subtract(previous);
        }
        let millis = |value: u64| value as f64 / 1000.0;
        let latency_ms = (!interval.is_empty()).then(|| {
            [millis(interval.value_at_quantile(0.5)), millis(interval.value_at_quantile(0.99)), millis(interval.max())]
        });
        let seconds = (now - self.last_at).as_secs_f64().max(1e-3);
        self.samples.push(plot::Sample {
            at: (now - self.started).as_secs_f64(),
            per_second: (received - self.received) as f64 / seconds,
            latency_ms,
        });
        self.previous = Some(cumulative);
        self.received = received;
        self.last_at = now;
    }
}

fn report(args: &BenchArgs, totals: &Totals, elapsed: Duration) -> anyhow::Result<()> {
    let seconds = elapsed.as_secs_f64();
    let received = totals.received.load(Ordering::Relaxed);
    let bytes = totals.bytes_received.load(Ordering::Relaxed);
    let latency = totals.latency.lock().unwrap();
    let histogram = latency.as_ref().expect("the histogram");
    let millis = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let errors = totals.errors.lock().unwrap().clone();
    let negotiated = totals.negotiated.lock().unwrap().clone();
    let report = serde_json::json!({
        "url": args.urls[0],
        "urls": args.urls,
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
        "negotiated": negotiated.as_ref().map(|(protocol, compression)| serde_json::json!({
            "protocol": protocol,
            "compression": compression,
        })),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("tether bench {} — {} clients, {:.1} s", args.urls.join(" "), args.clients, seconds);
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
    if let Some((protocol, compression)) = &negotiated {
        println!(
            "negotiated:  subprotocol {}, permessage-deflate {}",
            protocol.as_deref().unwrap_or("none"),
            if *compression { "on" } else { "off" }
        );
    }
    if errors.is_empty() {
        println!("errors:      none");
    } else {
        let list: Vec<String> = errors.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        println!("errors:      {}", list.join(", "));
    }
    Ok(())
}
