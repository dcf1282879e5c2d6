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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use tether::{ClientConfig, CloseCode, Config, Message};

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
}

const MAGIC: [u8; 4] = *b"tbn1";
const HEADER: usize = 24;

/// Counters shared by every client.
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
}

impl Totals {
    fn error(&self, kind: &str) {
        *self.errors.lock().unwrap().entry(kind.to_owned()).or_default() += 1;
    }
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

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.size >= HEADER, "--size must be at least {HEADER} bytes");
    anyhow::ensure!(args.clients > 0 && args.pipeline > 0, "--clients and --pipeline must be at least 1");
    let totals = Arc::new(Totals {
        latency: Mutex::new(Some(Histogram::new_with_bounds(1, 60_000_000, 3)?)),
        ..Totals::default()
    });
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let storm = Arc::new(AtomicU64::new(0));
    let mut config = ClientConfig::default();
    config.protocol = Config::default().with_keepalive(None, None).with_deflate(None);
    if let Some(interval) = args.ping_interval {
        let interval = Duration::from_secs_f64(interval);
        config.protocol = config.protocol.with_keepalive(Some(interval), Some(interval));
    }
    let config = Arc::new(config);

    let mut clients = Vec::new();
    for id in 0..args.clients {
        let delay = if args.clients > 1 { args.ramp_up * id as f64 / (args.clients - 1) as f64 } else { 0.0 };
        let (args, totals, stop, storm, config) =
            (args.clone(), totals.clone(), stop.clone(), storm.clone(), config.clone());
        clients.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(delay)).await;
            client(id as u32, &args, &config, &totals, &stop, &storm, started).await;
        }));
    }

    let progress = (!args.quiet).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        bar
    });
    let deadline = started + Duration::from_secs_f64(args.duration);
    let mut next_storm = args.reconnect_every.map(|every| started + Duration::from_secs_f64(every));
    let mut last = (started, 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Instant::now();
        let received = totals.received.load(Ordering::Relaxed);
        if let Some(bar) = &progress {
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
        }
        last = (now, received);
        if next_storm.is_some_and(|at| now >= at) {
            storm.fetch_add(1, Ordering::Relaxed);
            next_storm = args.reconnect_every.map(|every| now + Duration::from_secs_f64(every));
        }
        let enough = args.messages.is_some_and(|n| received >= n);
        if now >= deadline || enough {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for client in clients {
        let _ = tokio::time::timeout(Duration::from_secs(15), client).await;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    report(&args, &totals, elapsed)
}

/// One simulated client: connects, sends, times the echoes; reconnects on
/// a storm or a lost connection, until told to stop.
async fn client(
    id: u32,
    args: &BenchArgs,
    config: &ClientConfig,
    totals: &Totals,
    stop: &AtomicBool,
    storm: &AtomicU64,
    started: Instant,
) {
    let mut sequence = 0u64;
    let mut first = true;
    // Latencies are recorded here and merged into the shared histogram a
    // few times a second, so clients do not contend for a lock per echo.
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let merge = |local: &mut Histogram<u64>| {
        if let Some(shared) = totals.latency.lock().unwrap().as_mut() {
            let _ = shared.add(&*local);
        }
        local.reset();
    };
    while !stop.load(Ordering::Relaxed) {
        let mut ws = match tether::connect_with(&args.url, config).await {
            Ok(ws) => ws,
            Err(error) => {
                totals.failed.fetch_add(1, Ordering::Relaxed);
                totals.error(error_kind(&error));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if first {
            totals.established.fetch_add(1, Ordering::Relaxed);
            first = false;
        } else {
            totals.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let storm_seen = storm.load(Ordering::Relaxed);
        let mut in_flight = 0usize;
        let mut ticker = args.rate.map(|rate| tokio::time::interval(Duration::from_secs_f64(1.0 / rate)));
        let mut check = tokio::time::interval(Duration::from_millis(50));
        let ending: Result<(), tether::Error> = async {
            loop {
                if stop.load(Ordering::Relaxed) || storm.load(Ordering::Relaxed) != storm_seen {
                    return Ok(());
                }
                if ticker.is_none() && in_flight < args.pipeline {
                    // One clock reading and one shared count per batch: the
                    // load generator must cost less than the servers it loads.
                    let now = started.elapsed().as_nanos() as u64;
                    let batch = args.pipeline - in_flight;
                    for _ in 0..batch {
                        ws.send(payload(id, sequence, now, args.size)).await?;
                        sequence += 1;
                    }
                    in_flight += batch;
                    totals.sent.fetch_add(batch as u64, Ordering::Relaxed);
                }
                tokio::select! {
                    received = ws.recv() => match received? {
                        Some(message) => {
                            totals.bytes_received.fetch_add(message.len() as u64, Ordering::Relaxed);
                            match parse(&message) {
                                Some((from, sent_at)) if from == id => {
                                    let now = started.elapsed().as_nanos() as u64;
                                    let _ = local.record((now.saturating_sub(sent_at) / 1000).max(1));
                                    totals.received.fetch_add(1, Ordering::Relaxed);
                                    in_flight = in_flight.saturating_sub(1);
                                }
                                _ => {
                                    totals.foreign.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        None => return Err(tether::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset))),
                    },
                    _ = tick(&mut ticker) => {
                        ws.send(payload(id, sequence, started.elapsed().as_nanos() as u64, args.size)).await?;
                        sequence += 1;
                        totals.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    _ = check.tick() => merge(&mut local),
                }
            }
        }
        .await;
        merge(&mut local);
        match ending {
            Ok(()) if stop.load(Ordering::Relaxed) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(CloseCode::NORMAL, "")).await;
                return;
            }
            Ok(()) => drop(ws), // a storm: drop without closing, as a crash would
            Err(error) => totals.error(error_kind(&error)),
        }
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A message: magic, client id, sequence, send time (ns since start), padding.
fn payload(client: u32, sequence: u64, sent_at: u64, size: usize) -> Message {
    let mut bytes = vec![b'.'; size];
    bytes[..4].copy_from_slice(&MAGIC);
    bytes[4..8].copy_from_slice(&client.to_be_bytes());
    bytes[8..16].copy_from_slice(&sequence.to_be_bytes());
    bytes[16..24].copy_from_slice(&sent_at.to_be_bytes());
    Message::from(bytes)
}

fn parse(message: &Message) -> Option<(u32, u64)> {
    let bytes = message.as_bytes();
    if bytes.len() < HEADER || bytes[..4] != MAGIC {
        return None;
    }
    let client = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
    let sent_at = u64::from_be_bytes(bytes[16..24].try_into().ok()?);
    Some((client, sent_at))
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
